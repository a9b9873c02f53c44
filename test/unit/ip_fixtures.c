/*-------------------------------------------------------------------------
 * ip_fixtures.c
 *		Networks and rule sets written as text, for the ip_rules and
 *		ip_policy unit tests (see ip_fixtures.h).
 *-------------------------------------------------------------------------
 */
#include "ip_fixtures.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Parse "addr" or "addr/bits" into an IpNet (not normalised).  A bare
 * address gets the full prefix length.  Aborts on a typo in a test.
 */
IpNet
RawNet(const char *text)
{
	char		addr[64];
	const char *slash = strchr(text, '/');
	unsigned char bytes[16];
	int			family;
	int			bits;
	IpNet		net;

	if (slash)
	{
		memcpy(addr, text, (size_t) (slash - text));
		addr[slash - text] = '\0';
	}
	else
		snprintf(addr, sizeof(addr), "%s", text);
	if (inet_pton(AF_INET, addr, bytes) == 1)
		family = IP_FAMILY_V4;
	else if (inet_pton(AF_INET6, addr, bytes) == 1)
		family = IP_FAMILY_V6;
	else
	{
		fprintf(stderr, "bad address in test: %s\n", text);
		exit(2);
	}
	bits = slash ? atoi(slash + 1) : (family == IP_FAMILY_V4 ? 32 : 128);
	if (!IpNetFromBytes(family, bits, bytes, &net))
	{
		fprintf(stderr, "IpNetFromBytes refused test network %s\n", text);
		exit(2);
	}
	return net;
}

/* A caller address, as the extension builds it: full length, normalised */
IpNet
HostOf(const char *text)
{
	IpNet		net = RawNet(text);

	IpNetNormalize(&net);
	return net;
}

/* Build a rule set from a NULL-terminated list of CIDR texts */
void
BuildSet(TestSet *ts, const char *const *texts)
{
	int			n = 0;
	int			ngroups;

	memset(ts, 0, sizeof(*ts));
	while (texts[n] != NULL)
	{
		ts->rules[n] = RawNet(texts[n]);
		n++;
	}
	ts->n = IpRulesPrepare(ts->rules, n);
	ngroups = IpRulesCountGroups(ts->rules, ts->n);
	IpRuleSetBuild(&ts->set, ts->rules, ts->n, ts->groups);
	if (ts->set.ngroups != ngroups)
	{
		fprintf(stderr, "group count mismatch %d vs %d\n", ts->set.ngroups, ngroups);
		exit(2);
	}
}
