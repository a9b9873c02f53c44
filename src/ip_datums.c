/*-------------------------------------------------------------------------
 * ip_datums.c
 *		inet and cidr datums to and from the pure IpNet and IpRuleSet.
 *-------------------------------------------------------------------------
 */
#include "ip_datums.h"

#include "utils/memutils.h"

/*
 * Convert an inet/cidr value into an IpNet.  With as_host the prefix length
 * is ignored and the full address is used (caller addresses); otherwise
 * the value's own prefix length is kept (rules).
 */
bool
IpNetFromInet(const inet *value, bool as_host, IpNet *out)
{
	int			family = ip_family(value) == PGSQL_AF_INET ? IP_FAMILY_V4 : IP_FAMILY_V6;
	int			max_bits = family == IP_FAMILY_V4 ? 32 : 128;

	if (!IpNetFromBytes(family, as_host ? max_bits : ip_bits(value),
						ip_addr(value), out))
		return false;
	IpNetNormalize(out);
	return true;
}

/* An inet datum holding net (a learned host address) */
Datum
InetDatumFromIpNet(const IpNet *net)
{
	inet	   *value = palloc0(sizeof(inet));
	int			nbytes = net->family == IP_FAMILY_V4 ? 4 : 16;

	value->inet_data.family = net->family == IP_FAMILY_V4 ? PGSQL_AF_INET : PGSQL_AF_INET6;
	value->inet_data.bits = net->bits;
	memcpy(value->inet_data.ipaddr, net->addr, nbytes);
	SET_INET_VARSIZE(value);
	return InetPGetDatum(value);
}

/* Prepare rules and build a rule set whose arrays live in target */
void
BuildOwnedRuleSet(OwnedRuleSet *owned, IpNet *rules, int n, MemoryContext target)
{
	int			kept;
	int			ngroups;

	memset(owned, 0, sizeof(*owned));
	if (n == 0)
		return;
	kept = IpRulesPrepare(rules, n);
	ngroups = IpRulesCountGroups(rules, kept);
	owned->rules = rules;
	owned->groups = MemoryContextAlloc(target, sizeof(IpPrefixGroup) * ngroups);
	IpRuleSetBuild(&owned->set, owned->rules, kept, owned->groups);
}
