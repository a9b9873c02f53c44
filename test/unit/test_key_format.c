/*-------------------------------------------------------------------------
 * test_key_format.c
 *		Unit tests of key_format: the key parser and the hex codec.
 *
 * Built and run by make -C test/unit test (see unit_check.h for the output).
 *-------------------------------------------------------------------------
 */
#include "key_format.h"
#include "unit_check.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Key parser                                                          */
/* ------------------------------------------------------------------ */

static const char *
ResultName(KeyParseResult r)
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
ExpectParseLen(const char *text, size_t len, KeyParseResult want, const char *name)
{
	ParsedKey	pk;
	KeyParseResult got;

	memset(&pk, 0, sizeof(pk));
	got = ParseApiKey(text, len, &pk);
	Check(got == want, "parse %s: want %s, got %s", name, ResultName(want), ResultName(got));
}

static void
ExpectParse(const char *text, KeyParseResult want, const char *name)
{
	ExpectParseLen(text, text ? strlen(text) : 0, want, name);
}

/* Build "ath_" + id_len x id_char + "." + secret_len x secret_char */
static size_t
MakeKey(char *buf, size_t id_len, char id_char, size_t secret_len, char secret_char)
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
TestKeyParser(void)
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
	ExpectParse(NULL, KEY_ABSENT, "NULL");
	ExpectParseLen(NULL, 10, KEY_ABSENT, "NULL with a length");
	ExpectParse("", KEY_ABSENT, "empty");
	ExpectParse(" ", KEY_ABSENT, "one space");
	ExpectParse(" \t\r\n\v\f  ", KEY_ABSENT, "only white space");

	/* the issued shape and where the pointers go */
	memset(&pk, 0, sizeof(pk));
	r = ParseApiKey(issued, strlen(issued), &pk);
	Check(r == KEY_WELL_FORMED, "parse issued key (16 hex . 64 hex)");
	Check(r == KEY_WELL_FORMED && pk.public_id == issued + 4 && pk.public_id_len == 16,
		  "issued key: public_id points at offset 4, length 16");
	Check(r == KEY_WELL_FORMED && pk.secret == issued + 21 && pk.secret_len == 64,
		  "issued key: secret points at offset 21, length 64");

	/* trimming */
	snprintf(buf, sizeof(buf), " \t\r\n\v\f%s\f\v\n\r\t ", issued);
	memset(&pk, 0, sizeof(pk));
	r = ParseApiKey(buf, strlen(buf), &pk);
	Check(r == KEY_WELL_FORMED && pk.public_id == buf + 10 && pk.public_id_len == 16 &&
		  pk.secret_len == 64 && memcmp(pk.secret, issued + 21, 64) == 0,
		  "leading and trailing white space is trimmed");
	snprintf(buf, sizeof(buf), "ath_0123456789abcdef .%s", issued + 21);
	ExpectParse(buf, KEY_MALFORMED, "space inside the key");
	snprintf(buf, sizeof(buf), "ath_0123456789abcdef.0123456789abcdef 0123456789abcdef");
	ExpectParse(buf, KEY_MALFORMED, "space inside the secret");
	snprintf(buf, sizeof(buf), "\xc2\xa0%s", issued);
	ExpectParse(buf, KEY_MALFORMED, "non-breaking space (UTF-8) is not trimmed");

	/* nothing on failure is written to *out */
	memset(&pk, 0x5a, sizeof(pk));
	{
		ParsedKey	before = pk;

		(void) ParseApiKey("ath_short.x", 11, &pk);
		(void) ParseApiKey("   ", 3, &pk);
		Check(memcmp(&before, &pk, sizeof(pk)) == 0,
			  "*out untouched on MALFORMED and ABSENT");
	}

	/* prefix */
	ExpectParse("ATH_0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED, "prefix ATH_ (case)");
	ExpectParse("Ath_0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED, "prefix Ath_ (case)");
	ExpectParse("ath-0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED, "prefix ath-");
	ExpectParse("ath0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED, "prefix ath (no _)");
	ExpectParse("xath_0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED, "text before prefix");
	ExpectParse("0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED, "no prefix");
	ExpectParse("ath__0123456789abcdef.0123456789abcdef0123", KEY_WELL_FORMED,
				 "ath__ (id starting with _) is allowed");
	ExpectParse("a", KEY_MALFORMED, "one character");
	ExpectParse("ath", KEY_MALFORMED, "ath");
	ExpectParse("ath_", KEY_MALFORMED, "ath_ only");
	ExpectParse("ath_.", KEY_MALFORMED, "ath_.");
	ExpectParse("Bearer ath_0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED,
				 "Bearer scheme is not stripped");

	/* id length 8..64 */
	len = MakeKey(buf, 7, 'a', 16, 'b');
	ExpectParseLen(buf, len, KEY_MALFORMED, "id length 7");
	len = MakeKey(buf, 8, 'a', 16, 'b');
	ExpectParseLen(buf, len, KEY_WELL_FORMED, "id length 8");
	len = MakeKey(buf, 64, 'a', 16, 'b');
	ExpectParseLen(buf, len, KEY_WELL_FORMED, "id length 64");
	len = MakeKey(buf, 65, 'a', 16, 'b');
	ExpectParseLen(buf, len, KEY_MALFORMED, "id length 65");
	len = MakeKey(buf, 0, 'a', 16, 'b');
	ExpectParseLen(buf, len, KEY_MALFORMED, "id length 0");

	/* secret length 16..256 */
	len = MakeKey(buf, 16, 'a', 15, 'b');
	ExpectParseLen(buf, len, KEY_MALFORMED, "secret length 15");
	len = MakeKey(buf, 16, 'a', 16, 'b');
	ExpectParseLen(buf, len, KEY_WELL_FORMED, "secret length 16");
	len = MakeKey(buf, 16, 'a', 256, 'b');
	ExpectParseLen(buf, len, KEY_WELL_FORMED, "secret length 256");
	len = MakeKey(buf, 16, 'a', 257, 'b');
	ExpectParseLen(buf, len, KEY_MALFORMED, "secret length 257");
	len = MakeKey(buf, 16, 'a', 0, 'b');
	ExpectParseLen(buf, len, KEY_MALFORMED, "secret length 0");
	len = MakeKey(buf, 64, 'a', 256, 'b');
	ExpectParseLen(buf, len, KEY_WELL_FORMED, "both at maximum (64, 256)");
	len = MakeKey(buf, 8, 'a', 16, 'b');
	ExpectParseLen(buf, len, KEY_WELL_FORMED, "both at minimum (8, 16)");
	memset(buf, 'a', 1500);
	memcpy(buf, "ath_", 4);
	buf[40] = '.';
	ExpectParseLen(buf, 1500, KEY_MALFORMED, "1500 characters");

	/* exactly one dot */
	ExpectParse("ath_0123456789abcdef0123456789abcdef0123", KEY_MALFORMED, "no dot");
	ExpectParse("ath_0123456789abcdef..123456789abcdef0123", KEY_MALFORMED, "two adjacent dots");
	ExpectParse("ath_0123456789abcdef.0123456789.abcdef0123", KEY_MALFORMED, "second dot inside secret");
	ExpectParse("ath_01234567.89abcdef.0123456789abcdef0123", KEY_MALFORMED, "dots in id and between");
	ExpectParse("ath_0123456789abcdef.0123456789abcdef0123.", KEY_MALFORMED, "trailing dot");
	ExpectParse("ath_.0123456789abcdef0123456789abcdef0123", KEY_MALFORMED, "dot right after prefix");

	/* allowed characters, every byte value, in both parts */
	for (c = 0; c < 256; c++)
		Check(IsKeyIdentifierChar((unsigned char) c) ==
			  ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			   (c >= 'A' && c <= 'Z') || c == '_' || c == '-'),
			  "IsKeyIdentifierChar(0x%02x)", c);
	bad = 0;
	for (c = 0; c < 256; c++)
	{
		int			allowed = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			(c >= 'A' && c <= 'Z') || c == '_' || c == '-';
		KeyParseResult want = allowed ? KEY_WELL_FORMED : KEY_MALFORMED;

		len = MakeKey(buf, 16, 'a', 64, 'b');
		buf[4 + 7] = (char) c;	/* middle of the id */
		if (ParseApiKey(buf, len, &pk) != want)
		{
			printf("# byte 0x%02x in id: want %s\n", c, ResultName(want));
			bad++;
		}
		len = MakeKey(buf, 16, 'a', 64, 'b');
		buf[4 + 16 + 1 + 30] = (char) c;	/* middle of the secret */
		if (ParseApiKey(buf, len, &pk) != want)
		{
			printf("# byte 0x%02x in secret: want %s\n", c, ResultName(want));
			bad++;
		}
	}
	Check(bad == 0, "every byte 0x00..0xff in id and secret: only [0-9A-Za-z_-] accepted");
	ExpectParse("ath_ABCDEFGHIJKLMNOP.QRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-",
				 KEY_WELL_FORMED, "upper case, digits, _ and - in both parts");

	/* embedded NUL */
	len = MakeKey(buf, 16, 'a', 64, 'b');
	buf[4 + 3] = '\0';
	ExpectParseLen(buf, len, KEY_MALFORMED, "NUL inside the id");
	len = MakeKey(buf, 16, 'a', 64, 'b');
	buf[len - 5] = '\0';
	ExpectParseLen(buf, len, KEY_MALFORMED, "NUL inside the secret");
	len = MakeKey(buf, 16, 'a', 64, 'b');
	ExpectParseLen(buf, len + 1, KEY_MALFORMED, "trailing NUL counted in the length");
	ExpectParseLen(buf, len, KEY_WELL_FORMED, "same key, NUL not counted");
	memmove(buf + 1, buf, len + 1);
	buf[0] = '\0';
	ExpectParseLen(buf, len + 1, KEY_MALFORMED, "leading NUL");

	/* non-ASCII bytes */
	ExpectParse("ath_0123456789abcdef.0123456789abcd\xc3\xa9" "f0123", KEY_MALFORMED,
				 "UTF-8 e-acute in secret");
	ExpectParse("ath_0123456789abc\xff\xfe.0123456789abcdef0123", KEY_MALFORMED,
				 "0xff 0xfe in id");
	ExpectParse("ath_0123456789abcdef.0123456789abcdef012\x80", KEY_MALFORMED,
				 "0x80 at the end");
	ExpectParse("ath_0123456789abcdef\xe2\x80\xa4" "0123456789abcdef0123", KEY_MALFORMED,
				 "U+2024 one dot leader instead of '.'");
	ExpectParse("\xef\xbb\xbf" "ath_0123456789abcdef.0123456789abcdef0123", KEY_MALFORMED,
				 "UTF-8 BOM before the key");
}

/* ------------------------------------------------------------------ */
/* Hex                                                                 */
/* ------------------------------------------------------------------ */

static void
TestHex(void)
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
	Check(strcmp(hex, "0001abff") == 0, "EncodeHex {00 01 ab ff} = 0001abff");
	memset(hex, 'X', sizeof(hex));
	EncodeHex(bytes, 0, hex);
	Check(hex[0] == '\0', "EncodeHex of nothing is the empty string");

	for (i = 0; i < 256; i++)
		all[i] = (unsigned char) i;
	EncodeHex(all, 256, hex);
	Check(strlen(hex) == 512 && strncmp(hex + 2 * 0x5a, "5a", 2) == 0 &&
		  strncmp(hex + 2 * 0xc3, "c3", 2) == 0, "EncodeHex of 0..255: length 512, lowercase");
	memset(back, 0, sizeof(back));
	ok = DecodeHexDigest(hex, 512, back, 256);
	Check(ok && memcmp(all, back, 256) == 0, "DecodeHexDigest(EncodeHex(0..255)) round trip");

	ok = DecodeHexDigest("e0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f828", 64, out, 32);
	Check(ok && out[0] == 0xe0 && out[1] == 0xda && out[31] == 0x28, "decode a 64-character digest");
	Check(!DecodeHexDigest("E0DAAE7DDCA6117BAE5F642D182BF4C456A16FE195E74CCB38714372C533F828", 64, out, 32),
		  "upper-case hex is rejected");
	Check(!DecodeHexDigest("e0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f82", 63, out, 32),
		  "63 characters rejected");
	Check(!DecodeHexDigest("e0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f8280", 65, out, 32),
		  "65 characters rejected");
	Check(!DecodeHexDigest("", 0, out, 32), "empty rejected for a 32-byte digest");
	Check(DecodeHexDigest("", 0, out, 0), "empty accepted for a 0-byte output");
	Check(!DecodeHexDigest("g0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f828", 64, out, 32),
		  "'g' rejected");
	Check(!DecodeHexDigest("e0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f82 ", 64, out, 32),
		  "trailing space rejected");
	Check(!DecodeHexDigest("e0daae7ddca6117bae5f642d182bf4c4\0" "6a16fe195e74ccb38714372c533f828", 64, out, 32),
		  "embedded NUL rejected");
	Check(!DecodeHexDigest("0x", 2, out, 1), "0x rejected");
	Check(!DecodeHexDigest(":/", 2, out, 1) && !DecodeHexDigest("`@", 2, out, 1) &&
		  !DecodeHexDigest("G0", 2, out, 1), "neighbours of the hex ranges rejected");
}


/* Run every key_format check and summarise */
int
main(void)
{
	TestKeyParser();
	TestHex();
	return CheckSummary();
}
