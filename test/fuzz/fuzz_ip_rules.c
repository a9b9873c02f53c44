/*-------------------------------------------------------------------------
 * fuzz_ip_rules.c
 *		libFuzzer harness for ip_rules.c and ip_policy.c.
 *
 * The input describes up to 64 CIDR rules (IPv4, IPv6, IPv4-mapped IPv6,
 * or a near copy of an earlier rule), each assigned to one of the six
 * lists of the IP policy, then up to 64 caller addresses (raw, mapped, or
 * derived from a rule so that they often hit).  For every caller:
 *
 *   - IpRuleSetContains over the prepared set equals a linear scan with
 *     IpNetContains over the individually normalised rules, which equals
 *     a bit-by-bit containment test written here;
 *   - EvaluateIpPolicy equals the SPEC 5 order evaluated with linear
 *     scans, never returns a verdict outside the enum, and agrees with
 *     EvaluateIpBlacklists / EvaluateIpWhitelists composed.
 *
 * IpNetFromBytes, IpNetNormalize, IpRulesPrepare (sorted, de-duplicated,
 * same set of networks) and IpRulesCountGroups are checked on the way.
 * Arrays are allocated at their exact size so ASan sees any overrun.
 *-------------------------------------------------------------------------
 */
#include "ip_policy.h"
#include "ip_rules.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ASSERT(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "assertion failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
			abort(); \
		} \
	} while (0)

#define MAX_RULES 64
#define MAX_HOSTS 64
#define NLISTS 6

enum
{
	L_BL_ALL, L_BL_CLIENT, L_KEY_BL, L_WL_ALL, L_WL_CLIENT, L_KEY_WL
};

/* Outcome counts, printed at exit when FUZZ_IP_STATS is set (corpus health) */
static unsigned long stat_verdict[5];
static unsigned long stat_hits;
static unsigned long stat_misses;
static unsigned long stat_rules;
static unsigned long stat_dedup;

static void
print_stats(void)
{
	fprintf(stderr, "rules %lu (dropped as duplicates %lu), host lookups: %lu hits, %lu misses; "
			"verdicts: allowed %lu blocked %lu not_allowed %lu ip_required %lu learn %lu\n",
			stat_rules, stat_dedup, stat_hits, stat_misses, stat_verdict[0], stat_verdict[1],
			stat_verdict[2], stat_verdict[3], stat_verdict[4]);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void) argc;
	(void) argv;
	if (getenv("FUZZ_IP_STATS"))
		atexit(print_stats);
	return 0;
}

static const unsigned char mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

typedef struct Reader
{
	const uint8_t *p;
	size_t		n;
} Reader;

static uint8_t
take(Reader *r)
{
	uint8_t		c;

	if (r->n == 0)
		return 0;
	c = *r->p++;
	r->n--;
	return c;
}

static void
take_bytes(Reader *r, unsigned char *out, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i++)
		out[i] = take(r);
}

/* ---------------- independent reference helpers ---------------- */

static int
get_bit(const unsigned char *a, int b)
{
	return (a[b / 8] >> (7 - b % 8)) & 1;
}

/* family, prefix and bit-by-bit comparison of the first net.bits bits */
static bool
ref_contains(const IpNet *net, const IpNet *h)
{
	int			b;

	if (net->family != h->family || h->bits < net->bits)
		return false;
	for (b = 0; b < net->bits; b++)
		if (get_bit(net->addr, b) != get_bit(h->addr, b))
			return false;
	return true;
}

/* What IpNetNormalize must produce (SPEC 5: mapped callers match as IPv4) */
static IpNet
ref_normalize(const IpNet *in)
{
	IpNet		out = *in;

	if (in->family == IP_FAMILY_V6 && in->bits >= 96 &&
		memcmp(in->addr, mapped_prefix, 12) == 0)
	{
		memset(&out, 0, sizeof(out));
		out.family = IP_FAMILY_V4;
		out.bits = (unsigned char) (in->bits - 96);
		memcpy(out.addr, in->addr + 12, 4);
	}
	return out;
}

static bool
net_eq(const IpNet *a, const IpNet *b)
{
	return a->family == b->family && a->bits == b->bits && memcmp(a->addr, b->addr, 16) == 0;
}

static int
net_cmp(const IpNet *a, const IpNet *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	if (a->bits != b->bits)
		return a->bits < b->bits ? -1 : 1;
	return memcmp(a->addr, b->addr, 16);
}

/* Build a net and check IpNetFromBytes against the definition */
static bool
make_net(int family, int bits, const unsigned char *addr, IpNet *out)
{
	int			max = family == IP_FAMILY_V4 ? 32 : 128;
	int			nbytes = max / 8;
	bool		ok = IpNetFromBytes(family, bits, addr, out);
	int			b;

	FUZZ_ASSERT(ok == (bits >= 0 && bits <= max));
	if (!ok)
		return false;
	FUZZ_ASSERT(out->family == family && out->bits == bits);
	for (b = 0; b < max; b++)
		FUZZ_ASSERT(get_bit(out->addr, b) == (b < bits ? get_bit(addr, b) : 0));
	for (b = nbytes; b < 16; b++)
		FUZZ_ASSERT(out->addr[b] == 0);
	return true;
}

/* ---------------- one list: raw rules, normalised copy, prepared set ---------------- */

typedef struct List
{
	IpNet		raw[MAX_RULES];
	int			n;
	IpNet		norm[MAX_RULES];	/* each raw rule through IpNetNormalize */
	IpNet	   *prepared;		/* exact-size heap copy, then prepared */
	int			kept;
	IpPrefixGroup *groups;		/* exact size from IpRulesCountGroups */
	IpRuleSet	set;
} List;

static void
prepare_list(List *l)
{
	int			i;
	int			j;
	int			ngroups;
	int			distinct_groups = 0;

	for (i = 0; i < l->n; i++)
	{
		IpNet		want = ref_normalize(&l->raw[i]);

		l->norm[i] = l->raw[i];
		IpNetNormalize(&l->norm[i]);
		FUZZ_ASSERT(net_eq(&l->norm[i], &want));
	}

	l->prepared = malloc(sizeof(IpNet) * (l->n ? l->n : 1));
	FUZZ_ASSERT(l->prepared);
	if (l->n)
		memcpy(l->prepared, l->raw, sizeof(IpNet) * l->n);
	l->kept = IpRulesPrepare(l->prepared, l->n);
	FUZZ_ASSERT(l->kept >= 0 && l->kept <= l->n);
	FUZZ_ASSERT(l->n == 0 || l->kept >= 1);
	stat_rules += l->n;
	stat_dedup += l->n - l->kept;

	/* strictly ascending: sorted and without duplicates */
	for (i = 1; i < l->kept; i++)
		FUZZ_ASSERT(net_cmp(&l->prepared[i - 1], &l->prepared[i]) < 0);
	/* the same set of networks as the normalised input */
	for (i = 0; i < l->kept; i++)
	{
		bool		found = false;

		for (j = 0; j < l->n && !found; j++)
			found = net_eq(&l->prepared[i], &l->norm[j]);
		FUZZ_ASSERT(found);
	}
	for (j = 0; j < l->n; j++)
	{
		bool		found = false;

		for (i = 0; i < l->kept && !found; i++)
			found = net_eq(&l->prepared[i], &l->norm[j]);
		FUZZ_ASSERT(found);
	}

	for (i = 0; i < l->kept; i++)
		if (i == 0 || l->prepared[i].family != l->prepared[i - 1].family ||
			l->prepared[i].bits != l->prepared[i - 1].bits)
			distinct_groups++;
	ngroups = IpRulesCountGroups(l->prepared, l->kept);
	FUZZ_ASSERT(ngroups == distinct_groups);

	l->groups = malloc(sizeof(IpPrefixGroup) * (ngroups ? ngroups : 1));
	FUZZ_ASSERT(l->groups);
	IpRuleSetBuild(&l->set, l->prepared, l->kept, l->groups);
	FUZZ_ASSERT(l->set.nrules == l->kept && l->set.ngroups == ngroups);
	FUZZ_ASSERT(IpRuleSetIsEmpty(&l->set) == (l->n == 0));
	{
		int			covered = 0;

		for (i = 0; i < l->set.ngroups; i++)
		{
			const IpPrefixGroup *g = &l->set.groups[i];

			FUZZ_ASSERT(g->start == covered && g->count > 0);
			for (j = g->start; j < g->start + g->count; j++)
				FUZZ_ASSERT(l->prepared[j].family == g->family && l->prepared[j].bits == g->bits);
			covered += g->count;
		}
		FUZZ_ASSERT(covered == l->kept);
	}
}

static bool
list_linear(const List *l, const IpNet *h)
{
	int			i;
	bool		lin = false;
	bool		ref = false;

	for (i = 0; i < l->n; i++)
	{
		lin = lin || IpNetContains(&l->norm[i], h);
		ref = ref || ref_contains(&l->norm[i], h);
	}
	FUZZ_ASSERT(lin == ref);
	return ref;
}

/* ---------------- SPEC 5 policy with linear scans ---------------- */

static IpVerdict
ref_policy(List *lists, const IpNet *h, bool learning)
{
	bool		any_bl = lists[L_BL_ALL].n || lists[L_BL_CLIENT].n || lists[L_KEY_BL].n;
	bool		global_wl = lists[L_WL_ALL].n || lists[L_WL_CLIENT].n;

	/* 1-2: blacklists */
	if (any_bl)
	{
		if (h == NULL)
			return IP_VERDICT_IP_REQUIRED;
		if (list_linear(&lists[L_BL_ALL], h) || list_linear(&lists[L_BL_CLIENT], h) ||
			list_linear(&lists[L_KEY_BL], h))
			return IP_VERDICT_BLOCKED;
	}
	/* 3: learning records the IP, so it needs one */
	if (learning)
		return h == NULL ? IP_VERDICT_IP_REQUIRED : IP_VERDICT_LEARN;
	/* 4: global whitelist gate */
	if (global_wl)
	{
		if (h == NULL)
			return IP_VERDICT_IP_REQUIRED;
		if (!list_linear(&lists[L_WL_ALL], h) && !list_linear(&lists[L_WL_CLIENT], h))
			return IP_VERDICT_NOT_ALLOWED;
	}
	/* 5: per-key whitelist gate */
	if (lists[L_KEY_WL].n)
	{
		if (h == NULL)
			return IP_VERDICT_IP_REQUIRED;
		if (!list_linear(&lists[L_KEY_WL], h))
			return IP_VERDICT_NOT_ALLOWED;
	}
	return IP_VERDICT_ALLOWED;
}

static void
check_host(List *lists, const IpNet *h, bool learning, unsigned null_mask)
{
	IpPolicyInput in;
	const IpRuleSet *sets[NLISTS];
	IpVerdict	got;
	IpVerdict	want;
	IpVerdict	bl;
	int			i;

	if (h != NULL)
	{
		for (i = 0; i < NLISTS; i++)
		{
			bool		fast = IpRuleSetContains(&lists[i].set, h);

			FUZZ_ASSERT(fast == list_linear(&lists[i], h));
			if (lists[i].n)
			{
				if (fast)
					stat_hits++;
				else
					stat_misses++;
			}
		}
	}

	/* an empty list may reach the policy as NULL or as an empty set */
	for (i = 0; i < NLISTS; i++)
		sets[i] = (lists[i].n == 0 && (null_mask >> i & 1)) ? NULL : &lists[i].set;
	memset(&in, 0, sizeof(in));
	in.host = h;
	in.global_blacklist_all = sets[L_BL_ALL];
	in.global_blacklist_client = sets[L_BL_CLIENT];
	in.key_blacklist = sets[L_KEY_BL];
	in.key_learning = learning;
	in.global_whitelist_all = sets[L_WL_ALL];
	in.global_whitelist_client = sets[L_WL_CLIENT];
	in.key_whitelist = sets[L_KEY_WL];

	got = EvaluateIpPolicy(&in);
	FUZZ_ASSERT(got == IP_VERDICT_ALLOWED || got == IP_VERDICT_BLOCKED ||
				got == IP_VERDICT_NOT_ALLOWED || got == IP_VERDICT_IP_REQUIRED ||
				got == IP_VERDICT_LEARN);
	/* impossible verdicts */
	FUZZ_ASSERT(got != IP_VERDICT_LEARN || learning);
	FUZZ_ASSERT(got != IP_VERDICT_IP_REQUIRED || h == NULL);
	FUZZ_ASSERT(got != IP_VERDICT_NOT_ALLOWED || (!learning && h != NULL));
	FUZZ_ASSERT(got != IP_VERDICT_BLOCKED || h != NULL);
	FUZZ_ASSERT(!(learning && got == IP_VERDICT_ALLOWED));

	stat_verdict[got]++;
	want = ref_policy(lists, h, learning);
	if (got != want)
	{
		fprintf(stderr, "EvaluateIpPolicy = %d, SPEC order says %d\n", (int) got, (int) want);
		abort();
	}

	bl = EvaluateIpBlacklists(&in);
	FUZZ_ASSERT(bl != IP_VERDICT_NOT_ALLOWED);
	FUZZ_ASSERT(got == (bl != IP_VERDICT_ALLOWED ? bl : EvaluateIpWhitelists(&in)));
	{
		IpVerdict	wl = EvaluateIpWhitelists(&in);

		FUZZ_ASSERT(wl == IP_VERDICT_ALLOWED || wl == IP_VERDICT_NOT_ALLOWED ||
					wl == IP_VERDICT_IP_REQUIRED);
	}
}

/*
 * A caller address inside net (same family): the prefix of net, then the
 * host bits from r, or all ones when last.  An IPv4 net can be presented
 * as an IPv4-mapped IPv6 caller.  The result is normalised.
 */
static void
host_in(const IpNet *net, Reader *r, bool as_mapped, bool last, IpNet *out)
{
	unsigned char a[16];
	int			nbytes = net->family == IP_FAMILY_V4 ? 4 : 16;
	int			i;

	memset(a, 0, sizeof(a));
	for (i = 0; i < nbytes; i++)
	{
		int			keep = net->bits - 8 * i;
		unsigned char mask = keep >= 8 ? 0xff : keep <= 0 ? 0 : (unsigned char) (0xff << (8 - keep));
		unsigned char low = last ? 0xff : (keep >= 8 ? 0 : take(r));

		a[i] = (unsigned char) ((net->addr[i] & mask) | (low & ~mask));
	}
	if (net->family == IP_FAMILY_V4 && as_mapped)
	{
		unsigned char m[16];

		memcpy(m, mapped_prefix, 12);
		memcpy(m + 12, a, 4);
		make_net(IP_FAMILY_V6, 128, m, out);
	}
	else
		make_net(net->family, nbytes * 8, a, out);
	IpNetNormalize(out);
	/*
	 * By construction the host is inside the (normalised) net, unless an
	 * IPv6 net below /96 produced an IPv4-mapped host, which is IPv4 now.
	 */
	FUZZ_ASSERT(ref_contains(net, out) || out->family != net->family);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Reader		rd = {data, size};
	uint8_t		flags = take(&rd);
	bool		learning = flags & 1;
	unsigned	null_mask = take(&rd);
	int			nrules = take(&rd) % (MAX_RULES + 1);
	static List lists[NLISTS];
	IpNet		all[MAX_RULES];
	int			nall = 0;
	int			i;
	int			nhosts;

	for (i = 0; i < NLISTS; i++)
	{
		memset(&lists[i], 0, sizeof(lists[i]));
	}

	for (i = 0; i < nrules && rd.n > 0; i++)
	{
		uint8_t		kind = take(&rd);
		int			list = ((kind >> 2) & 7) % NLISTS;
		uint8_t		bits_byte = take(&rd);
		bool		raw_bits = (kind & 0x20) != 0;	/* may be out of range */
		unsigned char a[16];
		IpNet		net;
		bool		ok;

		memset(a, 0, sizeof(a));
		switch (kind & 3)
		{
			case 0:				/* IPv4 */
				take_bytes(&rd, a, 4);
				ok = make_net(IP_FAMILY_V4, raw_bits ? bits_byte : bits_byte % 33, a, &net);
				break;
			case 1:				/* IPv6 */
				take_bytes(&rd, a, 16);
				ok = make_net(IP_FAMILY_V6, raw_bits ? bits_byte : bits_byte % 129, a, &net);
				break;
			case 2:				/* IPv4-mapped IPv6, usually /96 or longer */
				memcpy(a, mapped_prefix, 12);
				take_bytes(&rd, a + 12, 4);
				ok = make_net(IP_FAMILY_V6, raw_bits ? bits_byte : 80 + bits_byte % 49, a, &net);
				break;
			default:			/* near copy of an earlier rule: dups and overlaps */
				if (nall == 0)
				{
					ok = false;
					break;
				}
				{
					const IpNet *base = &all[bits_byte % nall];
					int			max = base->family == IP_FAMILY_V4 ? 32 : 128;
					int			nb = (int) base->bits + (int) (int8_t) take(&rd) % 9;

					if (nb < 0)
						nb = 0;
					if (nb > max)
						nb = max;
					memcpy(a, base->addr, 16);
					if (kind & 0x40)
					{
						int			pos = take(&rd) % (max / 8);

						a[pos] ^= take(&rd);
					}
					ok = make_net(base->family, nb, a, &net);
					if (ok && (kind & 0x80) && base->family == IP_FAMILY_V4)
					{
						/* the same network written as IPv4-mapped IPv6 */
						unsigned char m[16];

						memcpy(m, mapped_prefix, 12);
						memcpy(m + 12, net.addr, 4);
						ok = make_net(IP_FAMILY_V6, net.bits + 96, m, &net);
					}
				}
				break;
		}
		if (!ok)
			continue;
		all[nall++] = net;
		lists[list].raw[lists[list].n++] = net;
	}
	for (i = 0; i < NLISTS; i++)
		prepare_list(&lists[i]);

	/* no caller IP */
	check_host(lists, NULL, learning, null_mask);

	/* the first and last address of every rule, raw and mapped */
	for (i = 0; i < nall; i++)
	{
		IpNet		h;
		IpNet		n = ref_normalize(&all[i]);

		host_in(&n, &rd, false, false, &h);
		check_host(lists, &h, learning, null_mask);
		host_in(&n, &rd, true, true, &h);
		check_host(lists, &h, learning, null_mask);
	}

	/* hosts described by the rest of the input */
	nhosts = 0;
	while (rd.n > 0 && nhosts < MAX_HOSTS)
	{
		uint8_t		sel = take(&rd);
		unsigned char a[16];
		IpNet		h;

		memset(a, 0, sizeof(a));
		switch (sel & 3)
		{
			case 0:
				take_bytes(&rd, a, 4);
				make_net(IP_FAMILY_V4, 32, a, &h);
				break;
			case 1:
				take_bytes(&rd, a, 16);
				make_net(IP_FAMILY_V6, 128, a, &h);
				break;
			case 2:
				memcpy(a, mapped_prefix, 12);
				take_bytes(&rd, a + 12, 4);
				make_net(IP_FAMILY_V6, 128, a, &h);
				break;
			default:
				if (nall == 0)
				{
					take_bytes(&rd, a, 4);
					make_net(IP_FAMILY_V4, 32, a, &h);
				}
				else
				{
					IpNet		n = ref_normalize(&all[take(&rd) % nall]);

					host_in(&n, &rd, (sel & 4) != 0, (sel & 8) != 0, &h);
				}
				break;
		}
		{
			IpNet		want = ref_normalize(&h);

			IpNetNormalize(&h);
			FUZZ_ASSERT(net_eq(&h, &want));
		}
		check_host(lists, &h, learning, null_mask);
		nhosts++;
	}

	for (i = 0; i < NLISTS; i++)
	{
		free(lists[i].prepared);
		free(lists[i].groups);
	}
	return 0;
}
