/*-------------------------------------------------------------------------
 * test_ip_policy.c
 *		Unit tests of ip_policy (SPEC section 5): blacklists, whitelists,
 *		learning and the missing caller address.
 *
 * Built and run by make -C test/unit test (see unit_check.h for the output).
 *-------------------------------------------------------------------------
 */
#include "ip_fixtures.h"
#include "ip_policy.h"
#include "unit_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* IP policy (SPEC section 5)                                          */
/* ------------------------------------------------------------------ */

static const char *
VerdictName(IpVerdict v)
{
	switch (v)
	{
		case IP_VERDICT_ALLOWED:
			return "ALLOWED";
		case IP_VERDICT_BLOCKED:
			return "BLOCKED";
		case IP_VERDICT_NOT_ALLOWED:
			return "NOT_ALLOWED";
		case IP_VERDICT_IP_REQUIRED:
			return "IP_REQUIRED";
		case IP_VERDICT_LEARN:
			return "LEARN";
	}
	return "?";
}

static void
ExpectVerdict(const IpPolicyInput *in, IpVerdict want, const char *name)
{
	IpVerdict	got = EvaluateIpPolicy(in);

	Check(got == want, "policy: %s: want %s, got %s", name, VerdictName(want), VerdictName(got));
}

static void
TestIpPolicy(void)
{
	static const char *const s_bl_all[] = {"198.51.100.0/24", NULL};
	static const char *const s_bl_client[] = {"198.51.101.0/24", NULL};
	static const char *const s_key_bl[] = {"10.0.0.66", NULL};
	static const char *const s_wl_all[] = {"10.0.0.0/8", NULL};
	static const char *const s_wl_client[] = {"192.168.0.0/16", NULL};
	static const char *const s_key_wl[] = {"10.0.0.0/24", "192.168.1.0/24", "2001:db8::/32", NULL};
	static const char *const s_none[] = {NULL};
	static const char *const s_wide[] = {"0.0.0.0/0", NULL};
	static TestSet bl_all, bl_client, key_bl, wl_all, wl_client, key_wl, empty, wide;
	IpPolicyInput in;
	IpNet		h;

	BuildSet(&bl_all, s_bl_all);
	BuildSet(&bl_client, s_bl_client);
	BuildSet(&key_bl, s_key_bl);
	BuildSet(&wl_all, s_wl_all);
	BuildSet(&wl_client, s_wl_client);
	BuildSet(&key_wl, s_key_wl);
	BuildSet(&empty, s_none);
	BuildSet(&wide, s_wide);

	/* no rules at all */
	memset(&in, 0, sizeof(in));
	h = HostOf("203.0.113.1");
	in.host = &h;
	ExpectVerdict(&in, IP_VERDICT_ALLOWED, "no rules, host known");
	in.host = NULL;
	ExpectVerdict(&in, IP_VERDICT_ALLOWED, "no rules, host NULL: IP not required");
	in.global_blacklist_all = &empty.set;
	in.global_blacklist_client = &empty.set;
	in.key_blacklist = &empty.set;
	in.global_whitelist_all = &empty.set;
	in.global_whitelist_client = &empty.set;
	in.key_whitelist = &empty.set;
	ExpectVerdict(&in, IP_VERDICT_ALLOWED, "only empty rule sets, host NULL: IP not required");
	Check(EvaluateIpBlacklists(&in) == IP_VERDICT_ALLOWED && EvaluateIpWhitelists(&in) == IP_VERDICT_ALLOWED,
		  "policy halves with only empty sets and NULL host allow");

	/* blacklists win over whitelists */
	memset(&in, 0, sizeof(in));
	in.global_blacklist_all = &bl_all.set;
	in.global_blacklist_client = &bl_client.set;
	in.key_blacklist = &key_bl.set;
	in.global_whitelist_all = &wide.set;
	in.key_whitelist = &wide.set;
	h = HostOf("198.51.100.9");
	in.host = &h;
	ExpectVerdict(&in, IP_VERDICT_BLOCKED, "global blacklist (all clients) beats whitelists");
	h = HostOf("::ffff:198.51.100.9");
	ExpectVerdict(&in, IP_VERDICT_BLOCKED, "global blacklist blocks the mapped caller too");
	h = HostOf("198.51.101.9");
	ExpectVerdict(&in, IP_VERDICT_BLOCKED, "global blacklist (this client) beats whitelists");
	h = HostOf("10.0.0.66");
	ExpectVerdict(&in, IP_VERDICT_BLOCKED, "per-key blacklist beats whitelists");
	h = HostOf("10.0.0.67");
	ExpectVerdict(&in, IP_VERDICT_ALLOWED, "blacklists present, not listed, whitelisted");
	in.host = NULL;
	ExpectVerdict(&in, IP_VERDICT_IP_REQUIRED, "blacklist present, host NULL");
	Check(EvaluateIpBlacklists(&in) == IP_VERDICT_IP_REQUIRED, "EvaluateIpBlacklists: host NULL");
	in.global_blacklist_all = NULL;
	in.global_blacklist_client = NULL;
	in.global_whitelist_all = NULL;
	in.key_whitelist = NULL;
	ExpectVerdict(&in, IP_VERDICT_IP_REQUIRED, "only a per-key blacklist, host NULL");

	/* learning */
	memset(&in, 0, sizeof(in));
	in.key_learning = true;
	in.global_blacklist_all = &bl_all.set;
	in.global_whitelist_all = &wl_all.set;
	in.key_whitelist = &key_wl.set;
	h = HostOf("203.0.113.1");
	in.host = &h;
	ExpectVerdict(&in, IP_VERDICT_LEARN, "learning: whitelists not consulted");
	Check(EvaluateIpBlacklists(&in) == IP_VERDICT_LEARN, "EvaluateIpBlacklists returns LEARN");
	h = HostOf("198.51.100.1");
	ExpectVerdict(&in, IP_VERDICT_BLOCKED, "learning: blacklist still applies first");
	in.host = NULL;
	ExpectVerdict(&in, IP_VERDICT_IP_REQUIRED, "learning with blacklist, host NULL");
	memset(&in, 0, sizeof(in));
	in.key_learning = true;
	ExpectVerdict(&in, IP_VERDICT_IP_REQUIRED, "learning, no rules, host NULL (learning needs the IP)");
	h = HostOf("2001:db8::5");
	in.host = &h;
	ExpectVerdict(&in, IP_VERDICT_LEARN, "learning, no rules, v6 host");

	/* whitelists: both levels are gates */
	memset(&in, 0, sizeof(in));
	in.global_whitelist_all = &wl_all.set;
	in.global_whitelist_client = &wl_client.set;
	in.key_whitelist = &key_wl.set;
	in.host = &h;
	h = HostOf("10.0.0.5");
	ExpectVerdict(&in, IP_VERDICT_ALLOWED, "in global (all) and per-key whitelist");
	h = HostOf("192.168.1.5");
	ExpectVerdict(&in, IP_VERDICT_ALLOWED, "in global (client) and per-key whitelist");
	h = HostOf("10.0.1.5");
	ExpectVerdict(&in, IP_VERDICT_NOT_ALLOWED, "in global whitelist, not in per-key: per-key still gates");
	h = HostOf("192.168.2.5");
	ExpectVerdict(&in, IP_VERDICT_NOT_ALLOWED, "in global (client) whitelist, not in per-key");
	h = HostOf("2001:db8::1");
	ExpectVerdict(&in, IP_VERDICT_NOT_ALLOWED, "in per-key whitelist, not in global");
	h = HostOf("203.0.113.1");
	ExpectVerdict(&in, IP_VERDICT_NOT_ALLOWED, "in no whitelist");
	h = HostOf("::ffff:10.0.0.5");
	ExpectVerdict(&in, IP_VERDICT_ALLOWED, "mapped caller in both whitelists");
	in.host = NULL;
	ExpectVerdict(&in, IP_VERDICT_IP_REQUIRED, "whitelists present, host NULL");
	in.host = &h;

	in.key_whitelist = NULL;
	h = HostOf("10.200.0.1");
	ExpectVerdict(&in, IP_VERDICT_ALLOWED, "only global whitelists, in one");
	h = HostOf("11.0.0.1");
	ExpectVerdict(&in, IP_VERDICT_NOT_ALLOWED, "only global whitelists, in none");
	in.global_whitelist_all = NULL;
	h = HostOf("10.200.0.1");
	ExpectVerdict(&in, IP_VERDICT_NOT_ALLOWED, "only client-scoped global whitelist, not in it");
	in.host = NULL;
	ExpectVerdict(&in, IP_VERDICT_IP_REQUIRED, "only client-scoped global whitelist, host NULL");

	memset(&in, 0, sizeof(in));
	in.key_whitelist = &key_wl.set;
	in.global_whitelist_all = &empty.set;
	h = HostOf("10.0.0.9");
	in.host = &h;
	ExpectVerdict(&in, IP_VERDICT_ALLOWED, "only per-key whitelist, in it");
	h = HostOf("10.0.1.9");
	ExpectVerdict(&in, IP_VERDICT_NOT_ALLOWED, "only per-key whitelist, not in it");
	in.host = NULL;
	ExpectVerdict(&in, IP_VERDICT_IP_REQUIRED, "only per-key whitelist, host NULL");
	Check(EvaluateIpBlacklists(&in) == IP_VERDICT_ALLOWED &&
		  EvaluateIpWhitelists(&in) == IP_VERDICT_IP_REQUIRED,
		  "halves: blacklists allow, whitelists need the IP");
}


/* Run every ip_policy check and summarise */
int
main(void)
{
	TestIpPolicy();
	return CheckSummary();
}
