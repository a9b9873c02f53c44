/*-------------------------------------------------------------------------
 * ip_policy.c
 *		Global blacklist, per-key blacklist, learning, global whitelist,
 *		per-key whitelist: first failure wins (pure C).
 *
 * The blacklist and whitelist halves are separate because a learning key
 * stops between them; when a concurrent lock-in is discovered the caller
 * runs the whitelist half against freshly read rules.
 *-------------------------------------------------------------------------
 */
#include "ip_policy.h"

/* Steps 1-3: blacklists, then the learning short-cut */
IpVerdict
EvaluateIpBlacklists(const IpPolicyInput *in)
{
	bool		any_blacklist = !IpRuleSetIsEmpty(in->global_blacklist_all) ||
		!IpRuleSetIsEmpty(in->global_blacklist_client) ||
		!IpRuleSetIsEmpty(in->key_blacklist);

	if (any_blacklist)
	{
		if (in->host == NULL)
			return IP_VERDICT_IP_REQUIRED;
		if (IpRuleSetContains(in->global_blacklist_all, in->host) ||
			IpRuleSetContains(in->global_blacklist_client, in->host))
			return IP_VERDICT_BLOCKED;
		if (IpRuleSetContains(in->key_blacklist, in->host))
			return IP_VERDICT_BLOCKED;
	}
	if (in->key_learning)
		return in->host == NULL ? IP_VERDICT_IP_REQUIRED : IP_VERDICT_LEARN;
	return IP_VERDICT_ALLOWED;
}

/* Steps 4-5: each non-empty whitelist level is a gate of its own */
IpVerdict
EvaluateIpWhitelists(const IpPolicyInput *in)
{
	bool		global_applies = !IpRuleSetIsEmpty(in->global_whitelist_all) ||
		!IpRuleSetIsEmpty(in->global_whitelist_client);

	if (global_applies)
	{
		if (in->host == NULL)
			return IP_VERDICT_IP_REQUIRED;
		if (!IpRuleSetContains(in->global_whitelist_all, in->host) &&
			!IpRuleSetContains(in->global_whitelist_client, in->host))
			return IP_VERDICT_NOT_ALLOWED;
	}
	if (!IpRuleSetIsEmpty(in->key_whitelist))
	{
		if (in->host == NULL)
			return IP_VERDICT_IP_REQUIRED;
		if (!IpRuleSetContains(in->key_whitelist, in->host))
			return IP_VERDICT_NOT_ALLOWED;
	}
	return IP_VERDICT_ALLOWED;
}

/* The whole order; IP_VERDICT_LEARN means the whitelists were not consulted */
IpVerdict
EvaluateIpPolicy(const IpPolicyInput *in)
{
	IpVerdict	verdict = EvaluateIpBlacklists(in);

	if (verdict != IP_VERDICT_ALLOWED)
		return verdict;
	return EvaluateIpWhitelists(in);
}
