/*-------------------------------------------------------------------------
 * ip_datums.h
 *		inet and cidr datums to and from the pure IpNet and IpRuleSet.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_IP_DATUMS_H
#define ATHENA_IP_DATUMS_H

#include "postgres.h"

#include <sys/socket.h>

/* inet.h's macros need the varlena ones, in a header of their own from 16 */
#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif
#include "utils/inet.h"

#include "ip_rules.h"

/* A built rule set together with the arrays it borrows */
typedef struct OwnedRuleSet
{
	IpRuleSet	set;
	IpNet	   *rules;
	IpPrefixGroup *groups;
} OwnedRuleSet;

extern bool IpNetFromInet(const inet *value, bool as_host, IpNet *out);
extern Datum InetDatumFromIpNet(const IpNet *net);
extern void BuildOwnedRuleSet(OwnedRuleSet *owned, IpNet *rules, int n,
							  MemoryContext target);

#endif
