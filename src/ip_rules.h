/*-------------------------------------------------------------------------
 * ip_rules.h
 *		CIDR rule sets with fast containment tests (pure C).
 *
 * A rule set is an array of networks sorted by (family, prefix length,
 * address) plus one group per distinct (family, prefix length).  A lookup
 * masks the caller address once per group and binary-searches the group,
 * so its cost depends on the number of distinct prefix lengths, not on the
 * number of rules.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_IP_RULES_H
#define ATHENA_IP_RULES_H

#include <stdbool.h>
#include <stddef.h>

#define IP_FAMILY_V4 4
#define IP_FAMILY_V6 6

typedef struct IpNet
{
	unsigned char family;		/* IP_FAMILY_V4 or IP_FAMILY_V6 */
	unsigned char bits;			/* prefix length */
	unsigned char addr[16];		/* network address, bits past the prefix zero */
} IpNet;

typedef struct IpPrefixGroup
{
	int			start;			/* first rule of the group */
	int			count;
	unsigned char family;
	unsigned char bits;
} IpPrefixGroup;

typedef struct IpRuleSet
{
	const IpNet *rules;
	int			nrules;
	const IpPrefixGroup *groups;
	int			ngroups;
} IpRuleSet;

extern bool IpNetFromBytes(int family, int bits, const unsigned char *addr,
						   IpNet *out);
extern void IpNetNormalize(IpNet *net);
extern int	IpRulesPrepare(IpNet *rules, int n);
extern int	IpRulesCountGroups(const IpNet *rules, int n);
extern void IpRuleSetBuild(IpRuleSet *set, const IpNet *rules, int n,
						   IpPrefixGroup *groups);
extern bool IpRuleSetContains(const IpRuleSet *set, const IpNet *host);
extern bool IpNetContains(const IpNet *net, const IpNet *host);

static inline bool
IpRuleSetIsEmpty(const IpRuleSet *set)
{
	return set == NULL || set->nrules == 0;
}

#endif
