/*-------------------------------------------------------------------------
 * ip_policy.h
 *		The IP policy order of SPEC section 5 (pure C).
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_IP_POLICY_H
#define ATHENA_IP_POLICY_H

#include "ip_rules.h"

typedef enum IpVerdict
{
	IP_VERDICT_ALLOWED,
	IP_VERDICT_BLOCKED,			/* "IP blocked" */
	IP_VERDICT_NOT_ALLOWED,		/* "IP not allowed" */
	IP_VERDICT_IP_REQUIRED,		/* "Client IP required" */
	IP_VERDICT_LEARN			/* key is learning: record the IP, then allow */
} IpVerdict;

/*
 * Everything the policy looks at.  Global rules come in two parts: those
 * for every client and those scoped to the request's client.  Any set may
 * be NULL (no rules).  host is NULL when the caller IP is unknown.
 */
typedef struct IpPolicyInput
{
	const IpNet *host;
	const IpRuleSet *global_blacklist_all;
	const IpRuleSet *global_blacklist_client;
	const IpRuleSet *key_blacklist;
	bool		key_learning;
	const IpRuleSet *global_whitelist_all;
	const IpRuleSet *global_whitelist_client;
	const IpRuleSet *key_whitelist;
} IpPolicyInput;

extern IpVerdict EvaluateIpBlacklists(const IpPolicyInput *in);
extern IpVerdict EvaluateIpWhitelists(const IpPolicyInput *in);
extern IpVerdict EvaluateIpPolicy(const IpPolicyInput *in);

#endif
