/*-------------------------------------------------------------------------
 * unit_tests.c
 *		Plain C unit tests for the pure modules of athena_keys:
 *		key_format, key_digest, rights_match, ip_rules, ip_policy.
 *
 * No framework: every check prints "ok N - name" or "not ok N - name",
 * the last line is "P passed, F failed", and the exit status is 1 when
 * anything failed.  Inputs that a fuzzer found go in the "regressions"
 * section at the end (see test/fuzz/README.md).
 *-------------------------------------------------------------------------
 */
#include "ip_policy.h"
#include "ip_rules.h"
#include "key_digest.h"
#include "key_format.h"
#include "rights_match.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int	n_checks = 0;
static int	n_failed = 0;

static void
check(int cond, const char *fmt,...)
{
	va_list		ap;

	n_checks++;
	if (!cond)
		n_failed++;
	printf("%s %d - ", cond ? "ok" : "not ok", n_checks);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* ------------------------------------------------------------------ */
/* Key parser                                                          */
/* ------------------------------------------------------------------ */

static const char *
result_name(KeyParseResult r)
{
	switch (r)
	{
		case KEY_ABSENT:
			return "ABSENT";
		case KEY_MALFORMED:
			return "MALFORMED";
		case KEY_WELL_FORMED:
			return "WELL_FORMED";
	}
	return "?";
}

/* Parse text[0..len) and compare the result with want */
static void
expect_parse_len(const char *text, size_t len, KeyParseResult want, const char *name)
{
	ParsedKey	pk;
	KeyParseResult got;

	memset(&pk, 0, sizeof(pk));
	got = ParseApiKey(text, len, &pk);
	check(got == want, "parse %s: want %s, got %s", name, result_name(want), result_name(got));
}

static void
expect_parse(const char *text, KeyParseResult want, const char *name)
{
	expect_parse_len(text, text ? strlen(text) : 0, want, name);
}

/* Build "ath_" + id_len x id_char + "." + secret_len x secret_char */
static size_t
make_key(char *buf, size_t id_len, char id_char, size_t secret_len, char secret_char)
{
	size_t		n = 0;

	memcpy(buf, "ath_", 4);
	n = 4;
	memset(buf + n, id_char, id_len);
	n += id_len;
	buf[n++] = '.';
	memset(buf + n, secret_char, secret_len);
	n += secret_len;
	buf[n] = '\0';
	return n;
}

static void
test_key_parser(void)
{
	static char buf[2048];
	static const char issued[] =
		"ath_0123456789abcdef."
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	ParsedKey	pk;
	KeyParseResult r;
	size_t		len;
	int			c;
	int			bad;

	/* absent */
	expect_parse(NULL, KEY_ABSENT, "NULL");
	expect_parse_len(NULL, 10, KEY_ABSENT, "NULL with a length");
	expect_parse("", KEY_ABSENT, "empty");
	expect_parse(" ", KEY_ABSENT, "one space");
	expect_parse(" \t\r\n\v\f  ", KEY_ABSENT, "only white space");

	/* the issued shape and where the pointers go */
	memset(&pk, 0, sizeof(pk));
	r = ParseApiKey(issued, strlen(issued), &pk);
	check(r == KEY_WELL_FORMED, "parse issued key (16 hex . 64 hex)");
	check(r == KEY_WELL_FORMED && pk.public_id == issued + 4 && pk.public_id_len == 16,
		  "issued key: public_id points at offset 4, length 16");
	check(r == KEY_WELL_FORMED && pk.secret == issued + 21 && pk.secret_len == 64,
		  "issued key: secret points at offset 21, length 64");

	/* trimming */
	snprintf(buf, sizeof(buf), " \t\r\n\v\f%s\f\v\n\r\t ", issued);
	memset(&pk, 0, sizeof(pk));
	r = ParseApiKey(buf, strlen(buf), &pk);
	check(r == KEY_WELL_FORMED && pk.public_id == buf + 10 && pk.public_id_len == 16 &&
		  pk.secret_len == 64 && memcmp(pk.secret, issued + 21, 64) == 0,
		  "leading and trailing white space is trimmed");
	snprintf(buf, sizeof(buf), "ath_0123456789abcdef .%s", issued + 21);
	expect_parse(buf, KEY_MALFORMED, "space inside the key");
	snprintf(buf, sizeof(buf), "ath_0123456789abcdef.0123456789abcdef 0123456789abcdef");
	expect_parse(buf, KEY_MALFORMED, "space inside the secret");
	snprintf(buf, sizeof(buf), "\xc2\xa0%s", issued);
	expect_parse(buf, KEY_MALFORMED, "non-breaking space (UTF-8) is not trimmed");

	/* nothing on failure is written to *out */
	memset(&pk, 0x5a, sizeof(pk));
	{
		ParsedKey	before = pk;

		(void) ParseApiKey("ath_short.x", 11, &pk);
		(void) ParseApiKey("   ", 3, &pk);
		check(memcmp(&before, &pk, sizeof(pk)) == 0,
			  "*out untouched on MALFORMED and ABSENT");
	}

	/* prefix */
	expect_parse("ATH_0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED, "prefix ATH_ (case)");
	expect_parse("Ath_0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED, "prefix Ath_ (case)");
	expect_parse("ath-0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED, "prefix ath-");
	expect_parse("ath0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED, "prefix ath (no _)");
	expect_parse("xath_0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED, "text before prefix");
	expect_parse("0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED, "no prefix");
	expect_parse("ath__0123456789abcdef.0123456789abcdef0123", KEY_WELL_FORMED,
				 "ath__ (id starting with _) is allowed");
	expect_parse("a", KEY_MALFORMED, "one character");
	expect_parse("ath", KEY_MALFORMED, "ath");
	expect_parse("ath_", KEY_MALFORMED, "ath_ only");
	expect_parse("ath_.", KEY_MALFORMED, "ath_.");
	expect_parse("Bearer ath_0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED,
				 "Bearer scheme is not stripped");

	/* id length 8..64 */
	len = make_key(buf, 7, 'a', 16, 'b');
	expect_parse_len(buf, len, KEY_MALFORMED, "id length 7");
	len = make_key(buf, 8, 'a', 16, 'b');
	expect_parse_len(buf, len, KEY_WELL_FORMED, "id length 8");
	len = make_key(buf, 64, 'a', 16, 'b');
	expect_parse_len(buf, len, KEY_WELL_FORMED, "id length 64");
	len = make_key(buf, 65, 'a', 16, 'b');
	expect_parse_len(buf, len, KEY_MALFORMED, "id length 65");
	len = make_key(buf, 0, 'a', 16, 'b');
	expect_parse_len(buf, len, KEY_MALFORMED, "id length 0");

	/* secret length 16..256 */
	len = make_key(buf, 16, 'a', 15, 'b');
	expect_parse_len(buf, len, KEY_MALFORMED, "secret length 15");
	len = make_key(buf, 16, 'a', 16, 'b');
	expect_parse_len(buf, len, KEY_WELL_FORMED, "secret length 16");
	len = make_key(buf, 16, 'a', 256, 'b');
	expect_parse_len(buf, len, KEY_WELL_FORMED, "secret length 256");
	len = make_key(buf, 16, 'a', 257, 'b');
	expect_parse_len(buf, len, KEY_MALFORMED, "secret length 257");
	len = make_key(buf, 16, 'a', 0, 'b');
	expect_parse_len(buf, len, KEY_MALFORMED, "secret length 0");
	len = make_key(buf, 64, 'a', 256, 'b');
	expect_parse_len(buf, len, KEY_WELL_FORMED, "both at maximum (64, 256)");
	len = make_key(buf, 8, 'a', 16, 'b');
	expect_parse_len(buf, len, KEY_WELL_FORMED, "both at minimum (8, 16)");
	memset(buf, 'a', 1500);
	memcpy(buf, "ath_", 4);
	buf[40] = '.';
	expect_parse_len(buf, 1500, KEY_MALFORMED, "1500 characters");

	/* exactly one dot */
	expect_parse("ath_0123456789abcdef0123456789abcdef0123", KEY_MALFORMED, "no dot");
	expect_parse("ath_0123456789abcdef..123456789abcdef0123", KEY_MALFORMED, "two adjacent dots");
	expect_parse("ath_0123456789abcdef.0123456789.abcdef0123", KEY_MALFORMED, "second dot inside secret");
	expect_parse("ath_01234567.89abcdef.0123456789abcdef0123", KEY_MALFORMED, "dots in id and between");
	expect_parse("ath_0123456789abcdef.0123456789abcdef0123.", KEY_MALFORMED, "trailing dot");
	expect_parse("ath_.0123456789abcdef0123456789abcdef0123", KEY_MALFORMED, "dot right after prefix");

	/* allowed characters, every byte value, in both parts */
	for (c = 0; c < 256; c++)
		check(IsKeyIdentifierChar((unsigned char) c) ==
			  ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			   (c >= 'A' && c <= 'Z') || c == '_' || c == '-'),
			  "IsKeyIdentifierChar(0x%02x)", c);
	bad = 0;
	for (c = 0; c < 256; c++)
	{
		int			allowed = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			(c >= 'A' && c <= 'Z') || c == '_' || c == '-';
		KeyParseResult want = allowed ? KEY_WELL_FORMED : KEY_MALFORMED;

		len = make_key(buf, 16, 'a', 64, 'b');
		buf[4 + 7] = (char) c;	/* middle of the id */
		if (ParseApiKey(buf, len, &pk) != want)
		{
			printf("# byte 0x%02x in id: want %s\n", c, result_name(want));
			bad++;
		}
		len = make_key(buf, 16, 'a', 64, 'b');
		buf[4 + 16 + 1 + 30] = (char) c;	/* middle of the secret */
		if (ParseApiKey(buf, len, &pk) != want)
		{
			printf("# byte 0x%02x in secret: want %s\n", c, result_name(want));
			bad++;
		}
	}
	check(bad == 0, "every byte 0x00..0xff in id and secret: only [0-9A-Za-z_-] accepted");
	expect_parse("ath_ABCDEFGHIJKLMNOP.QRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
				 KEY_WELL_FORMED, "upper case, digits, _ and - in both parts");

	/* embedded NUL */
	len = make_key(buf, 16, 'a', 64, 'b');
	buf[4 + 3] = '\0';
	expect_parse_len(buf, len, KEY_MALFORMED, "NUL inside the id");
	len = make_key(buf, 16, 'a', 64, 'b');
	buf[len - 5] = '\0';
	expect_parse_len(buf, len, KEY_MALFORMED, "NUL inside the secret");
	len = make_key(buf, 16, 'a', 64, 'b');
	expect_parse_len(buf, len + 1, KEY_MALFORMED, "trailing NUL counted in the length");
	expect_parse_len(buf, len, KEY_WELL_FORMED, "same key, NUL not counted");
	memmove(buf + 1, buf, len + 1);
	buf[0] = '\0';
	expect_parse_len(buf, len + 1, KEY_MALFORMED, "leading NUL");

	/* non-ASCII bytes */
	expect_parse("ath_0123456789abcdef.0123456789abcd\xc3\xa9" "f0123", KEY_MALFORMED,
				 "UTF-8 e-acute in secret");
	expect_parse("ath_0123456789abc\xff\xfe.0123456789abcdef0123", KEY_MALFORMED,
				 "0xff 0xfe in id");
	expect_parse("ath_0123456789abcdef.0123456789abcdef012\x80", KEY_MALFORMED,
				 "0x80 at the end");
	expect_parse("ath_0123456789abcdef\xe2\x80\xa4" "0123456789abcdef0123", KEY_MALFORMED,
				 "U+2024 one dot leader instead of '.'");
	expect_parse("\xef\xbb\xbf" "ath_0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED,
				 "UTF-8 BOM before the key");
}

/* ------------------------------------------------------------------ */
/* Hex                                                                 */
/* ------------------------------------------------------------------ */

static void
test_hex(void)
{
	unsigned char bytes[4] = {0x00, 0x01, 0xab, 0xff};
	unsigned char all[256];
	unsigned char back[256];
	unsigned char out[32];
	char		hex[513];
	int			i;
	bool		ok;

	memset(hex, 'X', sizeof(hex));
	EncodeHex(bytes, 4, hex);
	check(strcmp(hex, "0001abff") == 0, "EncodeHex {00 01 ab ff} = 0001abff");
	memset(hex, 'X', sizeof(hex));
	EncodeHex(bytes, 0, hex);
	check(hex[0] == '\0', "EncodeHex of nothing is the empty string");

	for (i = 0; i < 256; i++)
		all[i] = (unsigned char) i;
	EncodeHex(all, 256, hex);
	check(strlen(hex) == 512 && strncmp(hex + 2 * 0x5a, "5a", 2) == 0 &&
		  strncmp(hex + 2 * 0xc3, "c3", 2) == 0, "EncodeHex of 0..255: length 512, lowercase");
	memset(back, 0, sizeof(back));
	ok = DecodeHexDigest(hex, 512, back, 256);
	check(ok && memcmp(all, back, 256) == 0, "DecodeHexDigest(EncodeHex(0..255)) round trip");

	ok = DecodeHexDigest("e0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f828", 64, out, 32);
	check(ok && out[0] == 0xe0 && out[1] == 0xda && out[31] == 0x28, "decode a 64-character digest");
	check(!DecodeHexDigest("E0DAAE7DDCA6117BAE5F642D182BF4C456A16FE195E74CCB38714372C533F828", 64, out, 32),
		  "upper-case hex is rejected");
	check(!DecodeHexDigest("e0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f82", 63, out, 32),
		  "63 characters rejected");
	check(!DecodeHexDigest("e0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f8280", 65, out, 32),
		  "65 characters rejected");
	check(!DecodeHexDigest("", 0, out, 32), "empty rejected for a 32-byte digest");
	check(DecodeHexDigest("", 0, out, 0), "empty accepted for a 0-byte output");
	check(!DecodeHexDigest("g0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f828", 64, out, 32),
		  "'g' rejected");
	check(!DecodeHexDigest("e0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f82 ", 64, out, 32),
		  "trailing space rejected");
	check(!DecodeHexDigest("e0daae7ddca6117bae5f642d182bf4c4\0" "6a16fe195e74ccb38714372c533f828", 64, out, 32),
		  "embedded NUL rejected");
	check(!DecodeHexDigest("0x", 2, out, 1), "0x rejected");
	check(!DecodeHexDigest(":/", 2, out, 1) && !DecodeHexDigest("`@", 2, out, 1) &&
		  !DecodeHexDigest("G0", 2, out, 1), "neighbours of the hex ranges rejected");
}

/* ------------------------------------------------------------------ */
/* Digest                                                              */
/* ------------------------------------------------------------------ */

static void
digest_hex(const char *salt, const char *secret, char *hex)
{
	unsigned char d[KEY_DIGEST_LEN];

	if (!ComputeKeyDigest(salt, strlen(salt), secret, strlen(secret), d))
	{
		strcpy(hex, "(ComputeKeyDigest failed)");
		return;
	}
	EncodeHex(d, KEY_DIGEST_LEN, hex);
}

static void
test_digest(void)
{
	char		hex[2 * KEY_DIGEST_LEN + 1];
	unsigned char a[KEY_DIGEST_LEN];
	unsigned char b[KEY_DIGEST_LEN];
	unsigned char r1[32];
	unsigned char r2[32];
	int			i;

	/* printf 'salt:secret' | sha256sum */
	digest_hex("salt", "secret", hex);
	check(strcmp(hex, "e0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f828") == 0,
		  "SHA-256(\"salt:secret\") known answer (got %s)", hex);
	/* printf ':' | sha256sum */
	digest_hex("", "", hex);
	check(strcmp(hex, "e7ac0786668e0ff0f02b62bd04f45ff636fd82db63b1104601c975dc005f3a67") == 0,
		  "SHA-256(\":\") known answer for empty salt and secret (got %s)", hex);
	/* the context is reused: a second call gives the same answer */
	digest_hex("salt", "secret", hex);
	check(strcmp(hex, "e0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f828") == 0,
		  "second call with the reused context gives the same digest");
	digest_hex("salt", "secreT", hex);
	check(strcmp(hex, "e0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f828") != 0,
		  "different secret, different digest");

	check(ComputeKeyDigest("salt", 4, "secret", 6, a) && ComputeKeyDigest("salt", 4, "secret", 6, b) &&
		  KeyDigestsEqual(a, b), "KeyDigestsEqual: equal digests");
	check(KeyDigestsEqual(a, a), "KeyDigestsEqual: same buffer");
	for (i = 0; i < KEY_DIGEST_LEN; i += 1)
	{
		memcpy(b, a, sizeof(a));
		b[i] ^= 0x01;
		if (KeyDigestsEqual(a, b))
			break;
	}
	check(i == KEY_DIGEST_LEN, "KeyDigestsEqual: one flipped bit at any of the 32 positions differs");
	memcpy(b, a, sizeof(a));
	b[31] ^= 0x80;
	check(!KeyDigestsEqual(a, b), "KeyDigestsEqual: last byte differs");

	check(FillRandomBytes(r1, sizeof(r1)) && FillRandomBytes(r2, sizeof(r2)),
		  "FillRandomBytes succeeds");
	check(memcmp(r1, r2, sizeof(r1)) != 0, "two 32-byte random draws differ");
	check(FillRandomBytes(r1, 0), "FillRandomBytes of 0 bytes succeeds");
}

/* ------------------------------------------------------------------ */
/* Rights (SPEC section 4, "Rights matching")                          */
/* ------------------------------------------------------------------ */

typedef struct RightCase
{
	const char *granted;
	const char *required;
	bool		want;
} RightCase;

static const RightCase right_cases[] = {
	/* "*" satisfies everything */
	{"*", "users.read", true},
	{"*", "gateway.rpc.execute", true},
	{"*", "anything", true},
	{"*", "", true},
	{"*", "*", true},
	/* equality, case-sensitive */
	{"users.read", "users.read", true},
	{"gateway.query", "gateway.query", true},
	{"users.read", "Users.read", false},
	{"users.read", "users.READ", false},
	{"Users.read", "users.read", false},
	{"users.read", "users.read ", false},
	{"users.read", "users.rea", false},
	{"users.rea", "users.read", false},
	{"users.read", "users.write", false},
	{"users", "users", true},
	/* P.* */
	{"gateway.*", "gateway.rpc.execute", true},
	{"gateway.*", "gateway.query", true},
	{"users.*", "users.read", true},
	{"users.*", "users.a.b.c", true},
	{"users.*", "users", false},	/* SPEC: users.* does not match users */
	{"users.*", "usersx.read", false},
	{"users.*", "user.read", false},
	{"users.*", "Users.read", false},
	{"users.*", "xusers.read", false},
	{"users.*", "orders.read", false},
	{"users.*", "users.*", true},	/* equality */
	{"a.b.*", "a.b.c", true},
	{"a.b.*", "a.b", false},
	{"a.b.*", "a.c.d", false},
	{"USERS.*", "users.read", false},
	/* *.A */
	{"*.read", "users.read", true},
	{"*.read", "a.b.read", true},
	{"*.read", "gateway.read", true},
	{"*.read", "users.write", false},
	{"*.read", "users.READ", false},
	{"*.read", "users.reader", false},
	{"*.read", "users.xread", false},
	{"*.read", "read.users", false},
	{"*.READ", "users.read", false},
	{"*.write", "users.write", true},
	{"*.delete", "users.delete", true},
	{"*.a.b", "x.a.b", false},	/* a last dot-segment never contains a dot */
	/* gateway.read / gateway.write / gateway.delete */
	{"gateway.read", "users.read", true},
	{"gateway.read", "orders.read", true},
	{"gateway.write", "users.write", true},
	{"gateway.delete", "users.delete", true},
	{"gateway.read", "users.write", false},
	{"gateway.write", "users.read", false},
	{"gateway.delete", "users.read", false},
	{"gateway.read", "a.b.read", false},	/* three segments */
	{"gateway.read", "read", false},	/* one segment */
	{"gateway.read", ".read", false},	/* empty resource */
	{"gateway.read", "users.", false},
	{"gateway.read", "users.Read", false},
	{"gateway.read", "users.reads", false},
	{"gateway.read", "gateway.read", true},
	{"Gateway.read", "users.read", false},
	{"gateway.READ", "users.read", false},
	{"gateway.query", "users.query", false},	/* only read/write/delete */
	{"gateway.rpc.execute", "users.rpc.execute", false},
	/* no other rule */
	{"read", "users.read", false},
	{"users", "users.read", false},
	{"users.read", "users", false},
	{"*x", "users.read", false},
	{"x*", "xusers", false},
	{"users*", "users.read", false},
	{"*users", "users", false},
	/* empty strings */
	{"", "users.read", false},
	{"users.read", "", false},
	{"users.*", "", false},
	{"*.read", "", false},
	{"gateway.read", "", false},
};

static void
test_rights(void)
{
	size_t		i;

	for (i = 0; i < sizeof(right_cases) / sizeof(right_cases[0]); i++)
	{
		const RightCase *rc = &right_cases[i];
		bool		got = RightSatisfies(rc->granted, strlen(rc->granted),
										 rc->required, strlen(rc->required));

		check(got == rc->want, "right granted '%s' %s required '%s'",
			  rc->granted, rc->want ? "satisfies" : "does not satisfy", rc->required);
	}

	/* lengths, not NUL terminators, delimit the strings */
	check(RightSatisfies("users.read/garbage", 10, "users.read", 10),
		  "RightSatisfies uses the lengths given (granted longer buffer)");
	check(!RightSatisfies("users.read", 10, "users.read\0x", 12),
		  "RightSatisfies: embedded NUL in required makes it different");
	check(RightSatisfies("*.read", 6, "users.read", 10) &&
		  !RightSatisfies("*.read", 6, "users.read", 9),
		  "RightSatisfies: *.read with a truncated required length");
}

/* ------------------------------------------------------------------ */
/* IP rules                                                            */
/* ------------------------------------------------------------------ */

/*
 * Parse "addr" or "addr/bits" into an IpNet (not normalised).  A bare
 * address gets the full prefix length.  Aborts on a typo in a test.
 */
static IpNet
raw_net(const char *text)
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
static IpNet
host(const char *text)
{
	IpNet		net = raw_net(text);

	IpNetNormalize(&net);
	return net;
}

#define MAX_TEST_RULES 32

typedef struct TestSet
{
	IpNet		rules[MAX_TEST_RULES];
	IpPrefixGroup groups[MAX_TEST_RULES];
	IpRuleSet	set;
	int			n;				/* after IpRulesPrepare */
} TestSet;

/* Build a rule set from a NULL-terminated list of CIDR texts */
static void
build_set(TestSet *ts, const char *const *texts)
{
	int			n = 0;
	int			ngroups;

	memset(ts, 0, sizeof(*ts));
	while (texts[n] != NULL)
	{
		ts->rules[n] = raw_net(texts[n]);
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

static bool
linear_contains(const TestSet *ts, const IpNet *h)
{
	int			i;

	for (i = 0; i < ts->n; i++)
		if (IpNetContains(&ts->rules[i], h))
			return true;
	return false;
}

static void
expect_contains(const TestSet *ts, const char *h, bool want, const char *setname)
{
	IpNet		hn = host(h);
	bool		got = IpRuleSetContains(&ts->set, &hn);

	check(got == want && linear_contains(ts, &hn) == want,
		  "%s %s %s", setname, want ? "contains" : "does not contain", h);
}

static bool
net_equals(const IpNet *a, const IpNet *b)
{
	return a->family == b->family && a->bits == b->bits && memcmp(a->addr, b->addr, 16) == 0;
}

/* Tiny deterministic PRNG so the randomised checks are reproducible */
static uint64_t prng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t
prng(void)
{
	prng_state ^= prng_state << 13;
	prng_state ^= prng_state >> 7;
	prng_state ^= prng_state << 17;
	return (uint32_t) (prng_state >> 11);
}

static void
test_ip_net_basics(void)
{
	unsigned char a4[4] = {10, 0, 0, 5};
	unsigned char a16[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
	IpNet		n;
	IpNet		m;

	check(!IpNetFromBytes(5, 8, a4, &n) && !IpNetFromBytes(0, 8, a4, &n),
		  "IpNetFromBytes rejects an unknown family");
	check(!IpNetFromBytes(IP_FAMILY_V4, -1, a4, &n) && !IpNetFromBytes(IP_FAMILY_V4, 33, a4, &n),
		  "IpNetFromBytes rejects v4 prefix -1 and 33");
	check(!IpNetFromBytes(IP_FAMILY_V6, -1, a16, &n) && !IpNetFromBytes(IP_FAMILY_V6, 129, a16, &n),
		  "IpNetFromBytes rejects v6 prefix -1 and 129");
	check(IpNetFromBytes(IP_FAMILY_V4, 32, a4, &n) && n.bits == 32 && n.addr[3] == 5,
		  "IpNetFromBytes v4 /32 keeps the address");
	check(IpNetFromBytes(IP_FAMILY_V6, 128, a16, &n) && n.bits == 128 && n.addr[15] == 1,
		  "IpNetFromBytes v6 /128 keeps the address");
	check(IpNetFromBytes(IP_FAMILY_V4, 24, a4, &n) && n.addr[3] == 0 && n.addr[0] == 10,
		  "IpNetFromBytes clears host bits (10.0.0.5/24 -> 10.0.0.0/24)");
	check(IpNetFromBytes(IP_FAMILY_V4, 0, a4, &n) && n.addr[0] == 0 && n.addr[3] == 0,
		  "IpNetFromBytes /0 clears every bit");
	n = raw_net("10.255.255.255/9");
	m = raw_net("10.128.0.0/9");
	check(net_equals(&n, &m), "IpNetFromBytes masks inside a byte (/9)");
	n = raw_net("10.0.0.5");
	check(n.addr[4] == 0 && n.addr[15] == 0, "v4 net: bytes past the fourth are zero");

	/* normalisation */
	n = raw_net("::ffff:10.0.0.0/104");
	IpNetNormalize(&n);
	m = raw_net("10.0.0.0/8");
	check(net_equals(&n, &m), "normalise ::ffff:10.0.0.0/104 -> 10.0.0.0/8");
	n = raw_net("::ffff:0:0/96");
	IpNetNormalize(&n);
	m = raw_net("0.0.0.0/0");
	check(net_equals(&n, &m), "normalise ::ffff:0:0/96 -> 0.0.0.0/0");
	n = raw_net("::ffff:192.0.2.1");
	IpNetNormalize(&n);
	m = raw_net("192.0.2.1/32");
	check(net_equals(&n, &m), "normalise ::ffff:192.0.2.1/128 -> 192.0.2.1/32");
	n = raw_net("::192.0.2.1");
	m = n;
	IpNetNormalize(&n);
	check(net_equals(&n, &m), "IPv4-compatible ::192.0.2.1 stays IPv6");
	n = raw_net("::fffe:0:0/95");
	m = n;
	IpNetNormalize(&n);
	check(net_equals(&n, &m), "a /95 around the mapped range stays IPv6");
	n = raw_net("2001:db8::/32");
	m = n;
	IpNetNormalize(&n);
	check(net_equals(&n, &m), "normalise leaves 2001:db8::/32 alone");
	n = raw_net("10.0.0.0/8");
	m = n;
	IpNetNormalize(&n);
	check(net_equals(&n, &m), "normalise leaves v4 alone");
	n = raw_net("::ffff:10.0.0.1");
	IpNetNormalize(&n);
	m = n;
	IpNetNormalize(&n);
	check(net_equals(&n, &m), "normalise is idempotent");

	/* IpNetContains */
	n = raw_net("10.0.0.0/8");
	m = host("10.1.2.3");
	check(IpNetContains(&n, &m), "10.0.0.0/8 contains 10.1.2.3");
	m = host("11.0.0.0");
	check(!IpNetContains(&n, &m), "10.0.0.0/8 does not contain 11.0.0.0");
	m = raw_net("0.0.0.0/0");
	check(!IpNetContains(&n, &m), "10.0.0.0/8 does not contain the wider 0.0.0.0/0");
	m = raw_net("10.1.0.0/16");
	check(IpNetContains(&n, &m), "10.0.0.0/8 contains the narrower 10.1.0.0/16");
	m = host("::a00:1");
	check(!IpNetContains(&n, &m), "v4 net does not contain a v6 host with the same low bytes");
}

static void
test_ip_rule_sets(void)
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

	build_set(&ts, none);
	h = host("10.0.0.1");
	check(ts.n == 0 && IpRuleSetIsEmpty(&ts.set) && !IpRuleSetContains(&ts.set, &h),
		  "empty rule set contains nothing");
	check(IpRuleSetIsEmpty(NULL) && !IpRuleSetContains(NULL, &h), "NULL rule set is empty");
	check(IpRulesPrepare(ts.rules, 0) == 0 && IpRulesPrepare(ts.rules, -1) == 0,
		  "IpRulesPrepare of 0 or negative rules is 0");

	build_set(&ts, v4);
	check(ts.n == 3 && ts.set.ngroups == 3, "v4 set: 3 rules, 3 prefix groups");
	expect_contains(&ts, "10.0.0.0", true, "v4 set");
	expect_contains(&ts, "10.255.255.255", true, "v4 set");
	expect_contains(&ts, "9.255.255.255", false, "v4 set");
	expect_contains(&ts, "11.0.0.0", false, "v4 set");
	expect_contains(&ts, "192.168.1.0", true, "v4 set");
	expect_contains(&ts, "192.168.1.255", true, "v4 set");
	expect_contains(&ts, "192.168.0.255", false, "v4 set");
	expect_contains(&ts, "192.168.2.0", false, "v4 set");
	expect_contains(&ts, "203.0.113.7", true, "v4 set (/32)");
	expect_contains(&ts, "203.0.113.6", false, "v4 set (/32)");
	expect_contains(&ts, "203.0.113.8", false, "v4 set (/32)");
	expect_contains(&ts, "::ffff:10.1.2.3", true, "v4 set (mapped host)");
	expect_contains(&ts, "::ffff:203.0.113.7", true, "v4 set (mapped host, /32 rule)");
	expect_contains(&ts, "::ffff:203.0.113.8", false, "v4 set (mapped host)");
	expect_contains(&ts, "::a00:1", false, "v4 set (v4-compatible v6 host)");
	expect_contains(&ts, "2001:db8::1", false, "v4 set (v6 host)");

	build_set(&ts, v6);
	check(ts.n == 4, "v6 set: 4 rules");
	expect_contains(&ts, "2001:db8::", true, "v6 set");
	expect_contains(&ts, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true, "v6 set");
	expect_contains(&ts, "2001:db9::", false, "v6 set");
	expect_contains(&ts, "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", false, "v6 set");
	expect_contains(&ts, "2001:db8:abcd:1::1", true, "v6 set");
	expect_contains(&ts, "::1", true, "v6 set (/128)");
	expect_contains(&ts, "::2", false, "v6 set (/128)");
	expect_contains(&ts, "::", false, "v6 set");
	expect_contains(&ts, "fe80::1", true, "v6 set (/10)");
	expect_contains(&ts, "febf:ffff::1", true, "v6 set (/10 upper end)");
	expect_contains(&ts, "fec0::1", false, "v6 set (/10 just past)");
	expect_contains(&ts, "127.0.0.1", false, "v6 set (v4 host)");
	expect_contains(&ts, "0.0.0.1", false, "v6 set (v4 0.0.0.1 is not ::1)");

	build_set(&ts, overlap);
	check(ts.n == 11 && ts.set.ngroups == 10,
		  "overlapping set: 11 rules in 10 (family, prefix) groups (got %d, %d)", ts.n, ts.set.ngroups);
	check(IpRulesCountGroups(ts.rules, ts.n) == 10, "IpRulesCountGroups = 10");
	for (i = 1; i < ts.n; i++)
	{
		const IpNet *x = &ts.rules[i - 1];
		const IpNet *y = &ts.rules[i];

		if (x->family > y->family || (x->family == y->family && x->bits > y->bits) ||
			(x->family == y->family && x->bits == y->bits && memcmp(x->addr, y->addr, 16) >= 0))
			break;
	}
	check(i >= ts.n, "prepared rules sorted by family, prefix, address, no duplicates");
	expect_contains(&ts, "10.1.2.3", true, "overlap set");
	expect_contains(&ts, "10.1.2.4", true, "overlap set");
	expect_contains(&ts, "10.1.2.200", true, "overlap set");
	expect_contains(&ts, "10.1.3.1", true, "overlap set");
	expect_contains(&ts, "10.2.0.0", true, "overlap set");
	expect_contains(&ts, "11.1.2.3", false, "overlap set");
	expect_contains(&ts, "172.16.5.5", true, "overlap set");
	expect_contains(&ts, "172.31.255.255", true, "overlap set");
	expect_contains(&ts, "172.32.0.0", false, "overlap set");
	expect_contains(&ts, "172.15.255.255", false, "overlap set");
	expect_contains(&ts, "2001:db8:1:2::7", true, "overlap set");
	expect_contains(&ts, "2001:db8:1:2::8", true, "overlap set");
	expect_contains(&ts, "2001:db8:2::1", true, "overlap set");
	expect_contains(&ts, "2001:db9::1", false, "overlap set");

	build_set(&ts, all4);
	check(ts.n == 1 && ts.set.ngroups == 1, "0.0.0.0/0: one rule");
	expect_contains(&ts, "0.0.0.0", true, "0.0.0.0/0");
	expect_contains(&ts, "255.255.255.255", true, "0.0.0.0/0");
	expect_contains(&ts, "::ffff:1.2.3.4", true, "0.0.0.0/0");
	expect_contains(&ts, "::", false, "0.0.0.0/0");
	expect_contains(&ts, "2001:db8::1", false, "0.0.0.0/0");

	build_set(&ts, all6);
	expect_contains(&ts, "::", true, "::/0");
	expect_contains(&ts, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, "::/0");
	expect_contains(&ts, "2001:db8::1", true, "::/0");
	expect_contains(&ts, "1.2.3.4", false, "::/0");
	/* SPEC 5: a mapped caller is matched as its IPv4 address, so ::/0 misses it */
	expect_contains(&ts, "::ffff:1.2.3.4", false, "::/0 (mapped caller matched as IPv4)");

	build_set(&ts, mapped_rules);
	check(ts.n == 2 && ts.rules[0].family == IP_FAMILY_V4 && ts.rules[1].family == IP_FAMILY_V4,
		  "mapped rules are stored as IPv4");
	expect_contains(&ts, "10.20.30.40", true, "::ffff:10.0.0.0/104 rule");
	expect_contains(&ts, "::ffff:10.20.30.40", true, "::ffff:10.0.0.0/104 rule");
	expect_contains(&ts, "11.0.0.0", false, "::ffff:10.0.0.0/104 rule");
	expect_contains(&ts, "192.0.2.1", true, "::ffff:192.0.2.1 rule");
	expect_contains(&ts, "192.0.2.2", false, "::ffff:192.0.2.1 rule");
	expect_contains(&ts, "::a00:1", false, "::ffff:10.0.0.0/104 rule (v4-compatible host)");

	build_set(&ts, mapped_all);
	expect_contains(&ts, "8.8.8.8", true, "::ffff:0:0/96 rule");
	expect_contains(&ts, "::ffff:8.8.8.8", true, "::ffff:0:0/96 rule");
	expect_contains(&ts, "2001:db8::1", false, "::ffff:0:0/96 rule");

	build_set(&ts, dups);
	check(ts.n == 3, "dedup: 9 rules, 3 distinct after masking and normalising (got %d)", ts.n);
	check(ts.set.ngroups == 3, "dedup: 3 groups");
	expect_contains(&ts, "10.9.9.9", true, "dedup set");
	expect_contains(&ts, "192.0.2.1", true, "dedup set");
	expect_contains(&ts, "2001:db8:5::", true, "dedup set");
}

/* Many random rules: the grouped binary search agrees with a linear scan */
static void
test_ip_rule_sets_random(void)
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
		int			fam = (prng() % 3);
		int			bits;

		for (j = 0; j < 16; j++)
			a[j] = (unsigned char) prng();
		if (fam == 0)
		{
			a[0] = 10;			/* keep them dense so hosts hit */
			bits = 8 + (int) (prng() % 25);
			IpNetFromBytes(IP_FAMILY_V4, bits, a, &rules[i]);
		}
		else if (fam == 1)
		{
			a[0] = 0x20;
			a[1] = 0x01;
			bits = 16 + (int) (prng() % 113);
			IpNetFromBytes(IP_FAMILY_V6, bits, a, &rules[i]);
		}
		else
		{
			memset(a, 0, 10);
			a[10] = a[11] = 0xff;
			a[12] = 10;
			bits = 96 + 8 + (int) (prng() % 25);
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
			a[j] = (unsigned char) prng();
		if (i % 3 == 0)
		{
			a[0] = 10;
			IpNetFromBytes(IP_FAMILY_V4, 32, a, &h);
		}
		else if (i % 3 == 1)
		{
			/* take a rule and keep only its prefix */
			const IpNet *r = &orig[prng() % NR];

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
	check(mismatches == 0 && hits > NH / 20,
		  "4000 random rules x 20000 hosts: set lookup equals linear scan (%d mismatches, %d hits)",
		  mismatches, hits);
}

/* ------------------------------------------------------------------ */
/* IP policy (SPEC section 5)                                          */
/* ------------------------------------------------------------------ */

static const char *
verdict_name(IpVerdict v)
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
expect_verdict(const IpPolicyInput *in, IpVerdict want, const char *name)
{
	IpVerdict	got = EvaluateIpPolicy(in);

	check(got == want, "policy: %s: want %s, got %s", name, verdict_name(want), verdict_name(got));
}

static void
test_ip_policy(void)
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

	build_set(&bl_all, s_bl_all);
	build_set(&bl_client, s_bl_client);
	build_set(&key_bl, s_key_bl);
	build_set(&wl_all, s_wl_all);
	build_set(&wl_client, s_wl_client);
	build_set(&key_wl, s_key_wl);
	build_set(&empty, s_none);
	build_set(&wide, s_wide);

	/* no rules at all */
	memset(&in, 0, sizeof(in));
	h = host("203.0.113.1");
	in.host = &h;
	expect_verdict(&in, IP_VERDICT_ALLOWED, "no rules, host known");
	in.host = NULL;
	expect_verdict(&in, IP_VERDICT_ALLOWED, "no rules, host NULL: IP not required");
	in.global_blacklist_all = &empty.set;
	in.global_blacklist_client = &empty.set;
	in.key_blacklist = &empty.set;
	in.global_whitelist_all = &empty.set;
	in.global_whitelist_client = &empty.set;
	in.key_whitelist = &empty.set;
	expect_verdict(&in, IP_VERDICT_ALLOWED, "only empty rule sets, host NULL: IP not required");
	check(EvaluateIpBlacklists(&in) == IP_VERDICT_ALLOWED && EvaluateIpWhitelists(&in) == IP_VERDICT_ALLOWED,
		  "policy halves with only empty sets and NULL host allow");

	/* blacklists win over whitelists */
	memset(&in, 0, sizeof(in));
	in.global_blacklist_all = &bl_all.set;
	in.global_blacklist_client = &bl_client.set;
	in.key_blacklist = &key_bl.set;
	in.global_whitelist_all = &wide.set;
	in.key_whitelist = &wide.set;
	h = host("198.51.100.9");
	in.host = &h;
	expect_verdict(&in, IP_VERDICT_BLOCKED, "global blacklist (all clients) beats whitelists");
	h = host("::ffff:198.51.100.9");
	expect_verdict(&in, IP_VERDICT_BLOCKED, "global blacklist blocks the mapped caller too");
	h = host("198.51.101.9");
	expect_verdict(&in, IP_VERDICT_BLOCKED, "global blacklist (this client) beats whitelists");
	h = host("10.0.0.66");
	expect_verdict(&in, IP_VERDICT_BLOCKED, "per-key blacklist beats whitelists");
	h = host("10.0.0.67");
	expect_verdict(&in, IP_VERDICT_ALLOWED, "blacklists present, not listed, whitelisted");
	in.host = NULL;
	expect_verdict(&in, IP_VERDICT_IP_REQUIRED, "blacklist present, host NULL");
	check(EvaluateIpBlacklists(&in) == IP_VERDICT_IP_REQUIRED, "EvaluateIpBlacklists: host NULL");
	in.global_blacklist_all = NULL;
	in.global_blacklist_client = NULL;
	in.global_whitelist_all = NULL;
	in.key_whitelist = NULL;
	expect_verdict(&in, IP_VERDICT_IP_REQUIRED, "only a per-key blacklist, host NULL");

	/* learning */
	memset(&in, 0, sizeof(in));
	in.key_learning = true;
	in.global_blacklist_all = &bl_all.set;
	in.global_whitelist_all = &wl_all.set;
	in.key_whitelist = &key_wl.set;
	h = host("203.0.113.1");
	in.host = &h;
	expect_verdict(&in, IP_VERDICT_LEARN, "learning: whitelists not consulted");
	check(EvaluateIpBlacklists(&in) == IP_VERDICT_LEARN, "EvaluateIpBlacklists returns LEARN");
	h = host("198.51.100.1");
	expect_verdict(&in, IP_VERDICT_BLOCKED, "learning: blacklist still applies first");
	in.host = NULL;
	expect_verdict(&in, IP_VERDICT_IP_REQUIRED, "learning with blacklist, host NULL");
	memset(&in, 0, sizeof(in));
	in.key_learning = true;
	expect_verdict(&in, IP_VERDICT_IP_REQUIRED, "learning, no rules, host NULL (learning needs the IP)");
	h = host("2001:db8::5");
	in.host = &h;
	expect_verdict(&in, IP_VERDICT_LEARN, "learning, no rules, v6 host");

	/* whitelists: both levels are gates */
	memset(&in, 0, sizeof(in));
	in.global_whitelist_all = &wl_all.set;
	in.global_whitelist_client = &wl_client.set;
	in.key_whitelist = &key_wl.set;
	in.host = &h;
	h = host("10.0.0.5");
	expect_verdict(&in, IP_VERDICT_ALLOWED, "in global (all) and per-key whitelist");
	h = host("192.168.1.5");
	expect_verdict(&in, IP_VERDICT_ALLOWED, "in global (client) and per-key whitelist");
	h = host("10.0.1.5");
	expect_verdict(&in, IP_VERDICT_NOT_ALLOWED, "in global whitelist, not in per-key: per-key still gates");
	h = host("192.168.2.5");
	expect_verdict(&in, IP_VERDICT_NOT_ALLOWED, "in global (client) whitelist, not in per-key");
	h = host("2001:db8::1");
	expect_verdict(&in, IP_VERDICT_NOT_ALLOWED, "in per-key whitelist, not in global");
	h = host("203.0.113.1");
	expect_verdict(&in, IP_VERDICT_NOT_ALLOWED, "in no whitelist");
	h = host("::ffff:10.0.0.5");
	expect_verdict(&in, IP_VERDICT_ALLOWED, "mapped caller in both whitelists");
	in.host = NULL;
	expect_verdict(&in, IP_VERDICT_IP_REQUIRED, "whitelists present, host NULL");
	in.host = &h;

	in.key_whitelist = NULL;
	h = host("10.200.0.1");
	expect_verdict(&in, IP_VERDICT_ALLOWED, "only global whitelists, in one");
	h = host("11.0.0.1");
	expect_verdict(&in, IP_VERDICT_NOT_ALLOWED, "only global whitelists, in none");
	in.global_whitelist_all = NULL;
	h = host("10.200.0.1");
	expect_verdict(&in, IP_VERDICT_NOT_ALLOWED, "only client-scoped global whitelist, not in it");
	in.host = NULL;
	expect_verdict(&in, IP_VERDICT_IP_REQUIRED, "only client-scoped global whitelist, host NULL");

	memset(&in, 0, sizeof(in));
	in.key_whitelist = &key_wl.set;
	in.global_whitelist_all = &empty.set;
	h = host("10.0.0.9");
	in.host = &h;
	expect_verdict(&in, IP_VERDICT_ALLOWED, "only per-key whitelist, in it");
	h = host("10.0.1.9");
	expect_verdict(&in, IP_VERDICT_NOT_ALLOWED, "only per-key whitelist, not in it");
	in.host = NULL;
	expect_verdict(&in, IP_VERDICT_IP_REQUIRED, "only per-key whitelist, host NULL");
	check(EvaluateIpBlacklists(&in) == IP_VERDICT_ALLOWED &&
		  EvaluateIpWhitelists(&in) == IP_VERDICT_IP_REQUIRED,
		  "halves: blacklists allow, whitelists need the IP");
}

/* ------------------------------------------------------------------ */
/* Regressions: inputs found by the fuzzers (see test/fuzz/README.md)  */
/* ------------------------------------------------------------------ */

static void
test_regressions(void)
{
	/*
	 * Found by fuzz_rights (input "users.*\nusers."): SPEC 4 says granted
	 * "P.*" satisfies a required right that starts with "P.", and "users."
	 * does; RightSatisfies used to demand a character after the dot.
	 */
	check(RightSatisfies("users.*", 7, "users.", 6),
		  "regression: granted 'users.*' satisfies required 'users.' (starts with 'users.')");
	check(RightSatisfies("gateway.*", 9, "gateway.", 8),
		  "regression: granted 'gateway.*' satisfies required 'gateway.'");
}

int
main(void)
{
	test_key_parser();
	test_hex();
	test_digest();
	test_rights();
	test_ip_net_basics();
	test_ip_rule_sets();
	test_ip_rule_sets_random();
	test_ip_policy();
	test_regressions();

	printf("%d passed, %d failed\n", n_checks - n_failed, n_failed);
	return n_failed == 0 ? 0 : 1;
}
