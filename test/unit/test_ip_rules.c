/*-------------------------------------------------------------------------
 * test_ip_rules.c
 *		Unit tests of ip_rules: networks, normalisation, rule sets and their
 *		grouped binary search against a linear scan.
 *
 * Built and run by make -C test/unit test (see unit_check.h for the output).
 *-------------------------------------------------------------------------
 */
#include "ip_fixtures.h"
#include "ip_rules.h"
#include "unit_check.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* IP rules                                                            */
/* ------------------------------------------------------------------ */

static bool
LinearContains(const TestSet *ts, const IpNet *h)
{
	int			i;

	for (i = 0; i < ts->n; i++)
		if (IpNetContains(&ts->rules[i], h))
			return true;
	return false;
}

static void
ExpectContains(const TestSet *ts, const char *h, bool want, const char *setname)
{
	IpNet		hn = HostOf(h);
	bool		got = IpRuleSetContains(&ts->set, &hn);

	Check(got == want && LinearContains(ts, &hn) == want,
		  "%s %s %s", setname, want ? "contains" : "does not contain", h);
}

static bool
NetEquals(const IpNet *a, const IpNet *b)
{
	return a->family == b->family && a->bits == b->bits && memcmp(a->addr, b->addr, 16) == 0;
}

/* Tiny deterministic PRNG so the randomised checks are reproducible */
static uint64_t prng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t
Prng(void)
{
	prng_state ^= prng_state << 13;
	prng_state ^= prng_state >> 7;
	prng_state ^= prng_state << 17;
	return (uint32_t) (prng_state >> 11);
}

static void
TestIpNetBasics(void)
{
	unsigned char a4[4] = {10, 0, 0, 5};
	unsigned char a16[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
	IpNet		n;
	IpNet		m;

	Check(!IpNetFromBytes(5, 8, a4, &n) && !IpNetFromBytes(0, 8, a4, &n),
		  "IpNetFromBytes rejects an unknown family");
	Check(!IpNetFromBytes(IP_FAMILY_V4, -1, a4, &n) && !IpNetFromBytes(IP_FAMILY_V4, 33, a4, &n),
		  "IpNetFromBytes rejects v4 prefix -1 and 33");
	Check(!IpNetFromBytes(IP_FAMILY_V6, -1, a16, &n) && !IpNetFromBytes(IP_FAMILY_V6, 129, a16, &n),
		  "IpNetFromBytes rejects v6 prefix -1 and 129");
	Check(IpNetFromBytes(IP_FAMILY_V4, 32, a4, &n) && n.bits == 32 && n.addr[3] == 5,
		  "IpNetFromBytes v4 /32 keeps the address");
	Check(IpNetFromBytes(IP_FAMILY_V6, 128, a16, &n) && n.bits == 128 && n.addr[15] == 1,
		  "IpNetFromBytes v6 /128 keeps the address");
	Check(IpNetFromBytes(IP_FAMILY_V4, 24, a4, &n) && n.addr[3] == 0 && n.addr[0] == 10,
		  "IpNetFromBytes clears host bits (10.0.0.5/24 -> 10.0.0.0/24)");
	Check(IpNetFromBytes(IP_FAMILY_V4, 0, a4, &n) && n.addr[0] == 0 && n.addr[3] == 0,
		  "IpNetFromBytes /0 clears every bit");
	n = RawNet("10.255.255.255/9");
	m = RawNet("10.128.0.0/9");
	Check(NetEquals(&n, &m), "IpNetFromBytes masks inside a byte (/9)");
	n = RawNet("10.0.0.5");
	Check(n.addr[4] == 0 && n.addr[15] == 0, "v4 net: bytes past the fourth are zero");

	/* normalisation */
	n = RawNet("::ffff:10.0.0.0/104");
	IpNetNormalize(&n);
	m = RawNet("10.0.0.0/8");
	Check(NetEquals(&n, &m), "normalise ::ffff:10.0.0.0/104 -> 10.0.0.0/8");
	n = RawNet("::ffff:0:0/96");
	IpNetNormalize(&n);
	m = RawNet("0.0.0.0/0");
	Check(NetEquals(&n, &m), "normalise ::ffff:0:0/96 -> 0.0.0.0/0");
	n = RawNet("::ffff:192.0.2.1");
	IpNetNormalize(&n);
	m = RawNet("192.0.2.1/32");
	Check(NetEquals(&n, &m), "normalise ::ffff:192.0.2.1/128 -> 192.0.2.1/32");
	n = RawNet("::192.0.2.1");
	m = n;
	IpNetNormalize(&n);
	Check(NetEquals(&n, &m), "IPv4-compatible ::192.0.2.1 stays IPv6");
	n = RawNet("::fffe:0:0/95");
	m = n;
	IpNetNormalize(&n);
	Check(NetEquals(&n, &m), "a /95 around the mapped range stays IPv6");
	n = RawNet("2001:db8::/32");
	m = n;
	IpNetNormalize(&n);
	Check(NetEquals(&n, &m), "normalise leaves 2001:db8::/32 alone");
	n = RawNet("10.0.0.0/8");
	m = n;
	IpNetNormalize(&n);
	Check(NetEquals(&n, &m), "normalise leaves v4 alone");
	n = RawNet("::ffff:10.0.0.1");
	IpNetNormalize(&n);
	m = n;
	IpNetNormalize(&n);
	Check(NetEquals(&n, &m), "normalise is idempotent");

	/* IpNetContains */
	n = RawNet("10.0.0.0/8");
	m = HostOf("10.1.2.3");
	Check(IpNetContains(&n, &m), "10.0.0.0/8 contains 10.1.2.3");
	m = HostOf("11.0.0.0");
	Check(!IpNetContains(&n, &m), "10.0.0.0/8 does not contain 11.0.0.0");
	m = RawNet("0.0.0.0/0");
	Check(!IpNetContains(&n, &m), "10.0.0.0/8 does not contain the wider 0.0.0.0/0");
	m = RawNet("10.1.0.0/16");
	Check(IpNetContains(&n, &m), "10.0.0.0/8 contains the narrower 10.1.0.0/16");
	m = HostOf("::a00:1");
	Check(!IpNetContains(&n, &m), "v4 net does not contain a v6 host with the same low bytes");
}

static void
TestIpRuleSets(void)
{
	static const char *const v4[] = {"10.0.0.0/8", "192.168.1.0/24", "203.0.113.7/32", NULL};
	static const char *const v6[] = {"2001:db8::/32", "2001:db8:abcd::/48", "::1/128",
	"fe80::/10", NULL};
	static const char *const overlap[] = {"10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24",
		"10.1.2.3/32", "10.1.2.128/25", "172.16.0.0/12", "172.16.5.0/24",
	"2001:db8::/32", "2001:db8:1::/48", "2001:db8:1:2::/64", "2001:db8:1:2::7/128", NULL};
	static const char *const all4[] = {"0.0.0.0/0", NULL};
	static const char *const all6[] = {"::/0", NULL};
	static const char *const mapped_rules[] = {"::ffff:10.0.0.0/104", "::ffff:192.0.2.1/128", NULL};
	static const char *const mapped_all[] = {"::ffff:0:0/96", NULL};
	static const char *const dups[] = {"10.0.0.0/8", "10.0.0.0/8", "10.1.2.3/8",
		"::ffff:10.0.0.0/104", "::ffff:10.9.9.9/104", "192.0.2.1", "::ffff:192.0.2.1",
	"2001:db8::/32", "2001:db8::1/32", NULL};
	static const char *const none[] = {NULL};
	TestSet		ts;
	IpNet		h;
	int			i;

	BuildSet(&ts, none);
	h = HostOf("10.0.0.1");
	Check(ts.n == 0 && IpRuleSetIsEmpty(&ts.set) && !IpRuleSetContains(&ts.set, &h),
		  "empty rule set contains nothing");
	Check(IpRuleSetIsEmpty(NULL) && !IpRuleSetContains(NULL, &h), "NULL rule set is empty");
	Check(IpRulesPrepare(ts.rules, 0) == 0 && IpRulesPrepare(ts.rules, -1) == 0,
		  "IpRulesPrepare of 0 or negative rules is 0");

	BuildSet(&ts, v4);
	Check(ts.n == 3 && ts.set.ngroups == 3, "v4 set: 3 rules, 3 prefix groups");
	ExpectContains(&ts, "10.0.0.0", true, "v4 set");
	ExpectContains(&ts, "10.255.255.255", true, "v4 set");
	ExpectContains(&ts, "9.255.255.255", false, "v4 set");
	ExpectContains(&ts, "11.0.0.0", false, "v4 set");
	ExpectContains(&ts, "192.168.1.0", true, "v4 set");
	ExpectContains(&ts, "192.168.1.255", true, "v4 set");
	ExpectContains(&ts, "192.168.0.255", false, "v4 set");
	ExpectContains(&ts, "192.168.2.0", false, "v4 set");
	ExpectContains(&ts, "203.0.113.7", true, "v4 set (/32)");
	ExpectContains(&ts, "203.0.113.6", false, "v4 set (/32)");
	ExpectContains(&ts, "203.0.113.8", false, "v4 set (/32)");
	ExpectContains(&ts, "::ffff:10.1.2.3", true, "v4 set (mapped host)");
	ExpectContains(&ts, "::ffff:203.0.113.7", true, "v4 set (mapped host, /32 rule)");
	ExpectContains(&ts, "::ffff:203.0.113.8", false, "v4 set (mapped host)");
	ExpectContains(&ts, "::a00:1", false, "v4 set (v4-compatible v6 host)");
	ExpectContains(&ts, "2001:db8::1", false, "v4 set (v6 host)");

	BuildSet(&ts, v6);
	Check(ts.n == 4, "v6 set: 4 rules");
	ExpectContains(&ts, "2001:db8::", true, "v6 set");
	ExpectContains(&ts, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true, "v6 set");
	ExpectContains(&ts, "2001:db9::", false, "v6 set");
	ExpectContains(&ts, "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", false, "v6 set");
	ExpectContains(&ts, "2001:db8:abcd:1::1", true, "v6 set");
	ExpectContains(&ts, "::1", true, "v6 set (/128)");
	ExpectContains(&ts, "::2", false, "v6 set (/128)");
	ExpectContains(&ts, "::", false, "v6 set");
	ExpectContains(&ts, "fe80::1", true, "v6 set (/10)");
	ExpectContains(&ts, "febf:ffff::1", true, "v6 set (/10 upper end)");
	ExpectContains(&ts, "fec0::1", false, "v6 set (/10 just past)");
	ExpectContains(&ts, "127.0.0.1", false, "v6 set (v4 host)");
	ExpectContains(&ts, "0.0.0.1", false, "v6 set (v4 0.0.0.1 is not ::1)");

	BuildSet(&ts, overlap);
	Check(ts.n == 11 && ts.set.ngroups == 10,
		  "overlapping set: 11 rules in 10 (family, prefix) groups (got %d, %d)", ts.n, ts.set.ngroups);
	Check(IpRulesCountGroups(ts.rules, ts.n) == 10, "IpRulesCountGroups = 10");
	for (i = 1; i < ts.n; i++)
	{
		const IpNet *x = &ts.rules[i - 1];
		const IpNet *y = &ts.rules[i];

		if (x->family > y->family || (x->family == y->family && x->bits > y->bits) ||
			(x->family == y->family && x->bits == y->bits && memcmp(x->addr, y->addr, 16) >= 0))
			break;
	}
	Check(i >= ts.n, "prepared rules sorted by family, prefix, address, no duplicates");
	ExpectContains(&ts, "10.1.2.3", true, "overlap set");
	ExpectContains(&ts, "10.1.2.4", true, "overlap set");
	ExpectContains(&ts, "10.1.2.200", true, "overlap set");
	ExpectContains(&ts, "10.1.3.1", true, "overlap set");
	ExpectContains(&ts, "10.2.0.0", true, "overlap set");
	ExpectContains(&ts, "11.1.2.3", false, "overlap set");
	ExpectContains(&ts, "172.16.5.5", true, "overlap set");
	ExpectContains(&ts, "172.31.255.255", true, "overlap set");
	ExpectContains(&ts, "172.32.0.0", false, "overlap set");
	ExpectContains(&ts, "172.15.255.255", false, "overlap set");
	ExpectContains(&ts, "2001:db8:1:2::7", true, "overlap set");
	ExpectContains(&ts, "2001:db8:1:2::8", true, "overlap set");
	ExpectContains(&ts, "2001:db8:2::1", true, "overlap set");
	ExpectContains(&ts, "2001:db9::1", false, "overlap set");

	BuildSet(&ts, all4);
	Check(ts.n == 1 && ts.set.ngroups == 1, "0.0.0.0/0: one rule");
	ExpectContains(&ts, "0.0.0.0", true, "0.0.0.0/0");
	ExpectContains(&ts, "255.255.255.255", true, "0.0.0.0/0");
	ExpectContains(&ts, "::ffff:1.2.3.4", true, "0.0.0.0/0");
	ExpectContains(&ts, "::", false, "0.0.0.0/0");
	ExpectContains(&ts, "2001:db8::1", false, "0.0.0.0/0");

	BuildSet(&ts, all6);
	ExpectContains(&ts, "::", true, "::/0");
	ExpectContains(&ts, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, "::/0");
	ExpectContains(&ts, "2001:db8::1", true, "::/0");
	ExpectContains(&ts, "1.2.3.4", false, "::/0");
	/* SPEC 5: a mapped caller is matched as its IPv4 address, so ::/0 misses it */
	ExpectContains(&ts, "::ffff:1.2.3.4", false, "::/0 (mapped caller matched as IPv4)");

	BuildSet(&ts, mapped_rules);
	Check(ts.n == 2 && ts.rules[0].family == IP_FAMILY_V4 && ts.rules[1].family == IP_FAMILY_V4,
		  "mapped rules are stored as IPv4");
	ExpectContains(&ts, "10.20.30.40", true, "::ffff:10.0.0.0/104 rule");
	ExpectContains(&ts, "::ffff:10.20.30.40", true, "::ffff:10.0.0.0/104 rule");
	ExpectContains(&ts, "11.0.0.0", false, "::ffff:10.0.0.0/104 rule");
	ExpectContains(&ts, "192.0.2.1", true, "::ffff:192.0.2.1 rule");
	ExpectContains(&ts, "192.0.2.2", false, "::ffff:192.0.2.1 rule");
	ExpectContains(&ts, "::a00:1", false, "::ffff:10.0.0.0/104 rule (v4-compatible host)");

	BuildSet(&ts, mapped_all);
	ExpectContains(&ts, "8.8.8.8", true, "::ffff:0:0/96 rule");
	ExpectContains(&ts, "::ffff:8.8.8.8", true, "::ffff:0:0/96 rule");
	ExpectContains(&ts, "2001:db8::1", false, "::ffff:0:0/96 rule");

	BuildSet(&ts, dups);
	Check(ts.n == 3, "dedup: 9 rules, 3 distinct after masking and normalising (got %d)", ts.n);
	Check(ts.set.ngroups == 3, "dedup: 3 groups");
	ExpectContains(&ts, "10.9.9.9", true, "dedup set");
	ExpectContains(&ts, "192.0.2.1", true, "dedup set");
	ExpectContains(&ts, "2001:db8:5::", true, "dedup set");
}

/* Many random rules: the grouped binary search agrees with a linear scan */
static void
TestIpRuleSetsRandom(void)
{
	enum
	{
		NR = 4000, NH = 20000
	};
	static IpNet rules[NR];
	static IpNet orig[NR];
	static IpPrefixGroup groups[NR];
	IpRuleSet	set;
	int			i;
	int			n;
	int			mismatches = 0;
	int			hits = 0;

	for (i = 0; i < NR; i++)
	{
		unsigned char a[16];
		int			j;
		int			fam = (Prng() % 3);
		int			bits;

		for (j = 0; j < 16; j++)
			a[j] = (unsigned char) Prng();
		if (fam == 0)
		{
			a[0] = 10;			/* keep them dense so hosts hit */
			bits = 8 + (int) (Prng() % 25);
			IpNetFromBytes(IP_FAMILY_V4, bits, a, &rules[i]);
		}
		else if (fam == 1)
		{
			a[0] = 0x20;
			a[1] = 0x01;
			bits = 16 + (int) (Prng() % 113);
			IpNetFromBytes(IP_FAMILY_V6, bits, a, &rules[i]);
		}
		else
		{
			memset(a, 0, 10);
			a[10] = a[11] = 0xff;
			a[12] = 10;
			bits = 96 + 8 + (int) (Prng() % 25);
			IpNetFromBytes(IP_FAMILY_V6, bits, a, &rules[i]);
		}
		orig[i] = rules[i];
		IpNetNormalize(&orig[i]);
	}
	n = IpRulesPrepare(rules, NR);
	IpRuleSetBuild(&set, rules, n, groups);
	for (i = 0; i < NH; i++)
	{
		unsigned char a[16];
		int			j;
		IpNet		h;
		bool		lin = false;
		bool		got;

		for (j = 0; j < 16; j++)
			a[j] = (unsigned char) Prng();
		if (i % 3 == 0)
		{
			a[0] = 10;
			IpNetFromBytes(IP_FAMILY_V4, 32, a, &h);
		}
		else if (i % 3 == 1)
		{
			/* take a rule and keep only its prefix */
			const IpNet *r = &orig[Prng() % NR];

			if (r->family == IP_FAMILY_V4)
			{
				memcpy(a + 12, r->addr, r->bits / 8);
				memset(a, 0, 10);
				a[10] = a[11] = 0xff;
				IpNetFromBytes(IP_FAMILY_V6, 128, a, &h);
			}
			else
			{
				memcpy(a, r->addr, r->bits / 8);
				IpNetFromBytes(IP_FAMILY_V6, 128, a, &h);
			}
		}
		else
		{
			a[0] = 0x20;
			a[1] = 0x01;
			IpNetFromBytes(IP_FAMILY_V6, 128, a, &h);
		}
		IpNetNormalize(&h);
		for (j = 0; j < NR && !lin; j++)
			lin = IpNetContains(&orig[j], &h);
		got = IpRuleSetContains(&set, &h);
		if (got != lin)
			mismatches++;
		hits += lin;
	}
	Check(mismatches == 0 && hits > NH / 20,
		  "4000 random rules x 20000 hosts: set lookup equals linear scan (%d mismatches, %d hits)",
		  mismatches, hits);
}

/*
 * Rules that arrive in order (as a key's rules of one prefix length come
 * from the rule table's index) are kept as they are; rules out of order,
 * with duplicates, or put out of order by normalisation are sorted.
 */
static void
TestIpRulesPrepareOrder(void)
{
	IpNet		sorted[3] = {RawNet("10.0.0.0/16"), RawNet("10.1.0.0/16"), RawNet("10.2.0.0/16")};
	IpNet		unsorted[3] = {RawNet("10.2.0.0/16"), RawNet("10.0.0.0/16"), RawNet("10.1.0.0/16")};
	IpNet		dupes[3] = {RawNet("10.0.0.0/16"), RawNet("10.0.0.0/16"), RawNet("10.1.0.0/16")};
	IpNet		mapped[2] = {RawNet("10.0.0.0/8"), RawNet("::ffff:9.0.0.0/104")};
	IpNet		want0 = RawNet("10.0.0.0/16");
	IpNet		want1 = RawNet("10.1.0.0/16");
	IpNet		want2 = RawNet("10.2.0.0/16");
	IpNet		want_mapped = RawNet("9.0.0.0/8");

	Check(IpRulesPrepare(sorted, 3) == 3 && NetEquals(&sorted[0], &want0) &&
		  NetEquals(&sorted[1], &want1) && NetEquals(&sorted[2], &want2),
		  "rules already in order stay as they are");
	Check(IpRulesPrepare(unsorted, 3) == 3 && NetEquals(&unsorted[0], &want0) &&
		  NetEquals(&unsorted[1], &want1) && NetEquals(&unsorted[2], &want2),
		  "rules out of order are sorted");
	Check(IpRulesPrepare(dupes, 3) == 2 && NetEquals(&dupes[0], &want0) &&
		  NetEquals(&dupes[1], &want1),
		  "rules in order with a duplicate are de-duplicated");
	Check(IpRulesPrepare(mapped, 2) == 2 && NetEquals(&mapped[0], &want_mapped),
		  "a rule that normalisation moves ahead is sorted");
}

/* Run every ip_rules check and summarise */
int
main(void)
{
	TestIpNetBasics();
	TestIpRuleSets();
	TestIpRuleSetsRandom();
	TestIpRulesPrepareOrder();
	return CheckSummary();
}
