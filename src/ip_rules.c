/*-------------------------------------------------------------------------
 * ip_rules.c
 *		Normalising, sorting and searching CIDR rule sets (pure C).
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) and networks inside
 * ::ffff:0:0/96 are turned into their IPv4 form on both sides, so a rule
 * written either way matches a caller presented either way.
 *-------------------------------------------------------------------------
 */
#include "ip_rules.h"

#include <stdlib.h>
#include <string.h>

static const unsigned char v4_mapped_prefix[12] =
{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* Number of address bytes for a family */
static int
FamilyBytes(unsigned char family)
{
	return family == IP_FAMILY_V4 ? 4 : 16;
}

/* Zero every bit of addr past the first bits bits */
static void
MaskAddress(unsigned char *addr, int nbytes, int bits)
{
	int			i;

	for (i = 0; i < nbytes; i++)
	{
		int			keep = bits - 8 * i;

		if (keep >= 8)
			continue;
		if (keep <= 0)
			addr[i] = 0;
		else
			addr[i] &= (unsigned char) (0xff << (8 - keep));
	}
}

/*
 * Build a network from raw parts (family 4 or 6).  Bits past the prefix
 * are cleared, so a host address with any prefix length is accepted.
 * Returns false for an unknown family or an impossible prefix length.
 */
bool
IpNetFromBytes(int family, int bits, const unsigned char *addr, IpNet *out)
{
	int			nbytes;

	if (family != IP_FAMILY_V4 && family != IP_FAMILY_V6)
		return false;
	nbytes = FamilyBytes((unsigned char) family);
	if (bits < 0 || bits > nbytes * 8)
		return false;
	memset(out, 0, sizeof(*out));
	out->family = (unsigned char) family;
	out->bits = (unsigned char) bits;
	memcpy(out->addr, addr, nbytes);
	MaskAddress(out->addr, nbytes, bits);
	return true;
}

/* Rewrite an IPv4-mapped IPv6 network as the IPv4 network it denotes */
void
IpNetNormalize(IpNet *net)
{
	if (net->family != IP_FAMILY_V6 || net->bits < 96 ||
		memcmp(net->addr, v4_mapped_prefix, 12) != 0)
		return;
	memmove(net->addr, net->addr + 12, 4);
	memset(net->addr + 4, 0, 12);
	net->family = IP_FAMILY_V4;
	net->bits = (unsigned char) (net->bits - 96);
}

/* qsort order: family, then prefix length, then address bytes */
static int
CompareIpNets(const void *a, const void *b)
{
	const IpNet *x = a;
	const IpNet *y = b;

	if (x->family != y->family)
		return x->family < y->family ? -1 : 1;
	if (x->bits != y->bits)
		return x->bits < y->bits ? -1 : 1;
	return memcmp(x->addr, y->addr, 16);
}

/*
 * Normalise, sort and de-duplicate rules in place.  Returns the number of
 * distinct rules left at the front of the array.  Rules that arrive in
 * order already (a key's rules of one prefix length come from the rule
 * table's index in address order) are only checked, not sorted again.
 */
int
IpRulesPrepare(IpNet *rules, int n)
{
	int			i;
	int			kept = 0;
	bool		sorted = true;

	if (n <= 0)
		return 0;
	for (i = 0; i < n; i++)
	{
		IpNetNormalize(&rules[i]);
		if (i > 0 && sorted && CompareIpNets(&rules[i - 1], &rules[i]) >= 0)
			sorted = false;
	}
	if (sorted)
		return n;
	qsort(rules, (size_t) n, sizeof(IpNet), CompareIpNets);
	for (i = 0; i < n; i++)
	{
		if (kept > 0 && CompareIpNets(&rules[kept - 1], &rules[i]) == 0)
			continue;
		if (kept != i)
			rules[kept] = rules[i];
		kept++;
	}
	return kept;
}

/* Number of distinct (family, prefix length) pairs in prepared rules */
int
IpRulesCountGroups(const IpNet *rules, int n)
{
	int			i;
	int			groups = 0;

	for (i = 0; i < n; i++)
	{
		if (i == 0 || rules[i].family != rules[i - 1].family ||
			rules[i].bits != rules[i - 1].bits)
			groups++;
	}
	return groups;
}

/*
 * Fill set over prepared rules, using groups (sized by
 * IpRulesCountGroups) as storage.  The set borrows both arrays.
 */
void
IpRuleSetBuild(IpRuleSet *set, const IpNet *rules, int n, IpPrefixGroup *groups)
{
	int			i;
	int			g = -1;

	for (i = 0; i < n; i++)
	{
		if (g < 0 || rules[i].family != groups[g].family ||
			rules[i].bits != groups[g].bits)
		{
			g++;
			groups[g].start = i;
			groups[g].count = 0;
			groups[g].family = rules[i].family;
			groups[g].bits = rules[i].bits;
		}
		groups[g].count++;
	}
	set->rules = rules;
	set->nrules = n;
	set->groups = groups;
	set->ngroups = g + 1;
}

/* Whether host (already normalised) lies inside net */
bool
IpNetContains(const IpNet *net, const IpNet *host)
{
	unsigned char masked[16];
	int			nbytes;

	if (net->family != host->family || host->bits < net->bits)
		return false;
	nbytes = FamilyBytes(net->family);
	memcpy(masked, host->addr, nbytes);
	MaskAddress(masked, nbytes, net->bits);
	return memcmp(masked, net->addr, nbytes) == 0;
}

/*
 * Whether any rule of set contains host.  host must be normalised with
 * IpNetNormalize; the caller passes a host address (/32 or /128).
 */
bool
IpRuleSetContains(const IpRuleSet *set, const IpNet *host)
{
	int			g;

	if (IpRuleSetIsEmpty(set))
		return false;
	for (g = 0; g < set->ngroups; g++)
	{
		const IpPrefixGroup *group = &set->groups[g];
		int			nbytes;
		unsigned char masked[16];
		int			lo;
		int			hi;

		if (group->family != host->family || group->bits > host->bits)
			continue;
		nbytes = FamilyBytes(group->family);
		memcpy(masked, host->addr, nbytes);
		MaskAddress(masked, nbytes, group->bits);

		lo = group->start;
		hi = group->start + group->count - 1;
		while (lo <= hi)
		{
			int			mid = lo + (hi - lo) / 2;
			int			cmp = memcmp(set->rules[mid].addr, masked, nbytes);

			if (cmp == 0)
				return true;
			if (cmp < 0)
				lo = mid + 1;
			else
				hi = mid - 1;
		}
	}
	return false;
}
