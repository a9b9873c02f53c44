/*-------------------------------------------------------------------------
 * ip_fixtures.h
 *		Networks and rule sets written as text, for the ip_rules and
 *		ip_policy unit tests: a typo in a test aborts the program rather
 *		than testing something else.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_IP_FIXTURES_H
#define ATHENA_IP_FIXTURES_H

#include "ip_rules.h"

#define MAX_TEST_RULES 32

typedef struct TestSet
{
	IpNet		rules[MAX_TEST_RULES];
	IpPrefixGroup groups[MAX_TEST_RULES];
	IpRuleSet	set;
	int			n;				/* after IpRulesPrepare */
} TestSet;

extern IpNet RawNet(const char *text);
extern IpNet HostOf(const char *text);
extern void BuildSet(TestSet *ts, const char *const *texts);

#endif							/* ATHENA_IP_FIXTURES_H */
