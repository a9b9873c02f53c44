/*-------------------------------------------------------------------------
 * fuzz_key_parser.c
 *		libFuzzer harness for ParseApiKey, EncodeHex and DecodeHexDigest.
 *
 * The input bytes are the presented key, as is (NUL bytes included).  The
 * harness classifies them with its own straightforward reading of SPEC 2
 * and checks that ParseApiKey agrees and that, when it accepts, the parts
 * it returns are inside the input, in range, made of allowed characters,
 * and put back together give the trimmed input.  The same bytes then feed
 * the hex helpers.
 *-------------------------------------------------------------------------
 */
#include "key_format.h"

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

/* SPEC 2: [0-9A-Za-z_-], written independently of IsKeyIdentifierChar */
static int
ref_ident(unsigned char c)
{
	return strchr("0123456789abcdefghijklmnopqrstuvwxyz"
				  "ABCDEFGHIJKLMNOPQRSTUVWXYZ_-", c) != NULL && c != '\0';
}

static int
ref_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/*
 * Reference classification.  Returns the KeyParseResult and, for a
 * well-formed key, the offsets of the id and secret.
 */
static KeyParseResult
ref_parse(const unsigned char *d, size_t n, size_t *id_off, size_t *id_len,
		  size_t *sec_off, size_t *sec_len)
{
	size_t		s = 0;
	size_t		e = n;
	size_t		i;
	size_t		dots = 0;
	size_t		dot = 0;

	while (s < e && ref_space(d[s]))
		s++;
	while (e > s && ref_space(d[e - 1]))
		e--;
	if (s == e)
		return KEY_ABSENT;
	if (e - s < 4 || d[s] != 'a' || d[s + 1] != 't' || d[s + 2] != 'h' || d[s + 3] != '_')
		return KEY_MALFORMED;
	for (i = s + 4; i < e; i++)
	{
		if (d[i] == '.')
		{
			dots++;
			dot = i;
		}
		else if (!ref_ident(d[i]))
			return KEY_MALFORMED;
	}
	if (dots != 1)
		return KEY_MALFORMED;
	*id_off = s + 4;
	*id_len = dot - (s + 4);
	*sec_off = dot + 1;
	*sec_len = e - (dot + 1);
	if (*id_len < 8 || *id_len > 64 || *sec_len < 16 || *sec_len > 256)
		return KEY_MALFORMED;
	return KEY_WELL_FORMED;
}

static void
check_parser(const uint8_t *data, size_t size)
{
	/* a private copy, so that reading past it is caught by ASan */
	char	   *text = malloc(size ? size : 1);
	ParsedKey	pk;
	ParsedKey	sentinel;
	KeyParseResult got;
	KeyParseResult want;
	size_t		id_off = 0,
				id_len = 0,
				sec_off = 0,
				sec_len = 0;

	FUZZ_ASSERT(text != NULL);
	memcpy(text, data, size);
	memset(&pk, 0xa5, sizeof(pk));
	sentinel = pk;

	got = ParseApiKey(text, size, &pk);
	want = ref_parse(data, size, &id_off, &id_len, &sec_off, &sec_len);
	if (got != want)
	{
		fprintf(stderr, "ParseApiKey returned %d, reference says %d\n", (int) got, (int) want);
		abort();
	}
	FUZZ_ASSERT(got == KEY_ABSENT || got == KEY_MALFORMED || got == KEY_WELL_FORMED);

	if (got != KEY_WELL_FORMED)
		FUZZ_ASSERT(memcmp(&pk, &sentinel, sizeof(pk)) == 0);	/* *out untouched */
	else
	{
		char		rebuilt[4 + 64 + 1 + 256];
		size_t		i;
		size_t		s = 0,
					e = size;

		/* pointers inside the input, lengths in range */
		FUZZ_ASSERT(pk.public_id >= text && pk.public_id + pk.public_id_len <= text + size);
		FUZZ_ASSERT(pk.secret >= text && pk.secret + pk.secret_len <= text + size);
		FUZZ_ASSERT(pk.public_id_len >= PUBLIC_ID_MIN_LEN && pk.public_id_len <= PUBLIC_ID_MAX_LEN);
		FUZZ_ASSERT(pk.secret_len >= SECRET_MIN_LEN && pk.secret_len <= SECRET_MAX_LEN);
		FUZZ_ASSERT((size_t) (pk.public_id - text) == id_off && pk.public_id_len == id_len);
		FUZZ_ASSERT((size_t) (pk.secret - text) == sec_off && pk.secret_len == sec_len);
		for (i = 0; i < pk.public_id_len; i++)
			FUZZ_ASSERT(ref_ident((unsigned char) pk.public_id[i]));
		for (i = 0; i < pk.secret_len; i++)
			FUZZ_ASSERT(ref_ident((unsigned char) pk.secret[i]));

		/* "ath_" + id + "." + secret is the trimmed input */
		memcpy(rebuilt, "ath_", 4);
		memcpy(rebuilt + 4, pk.public_id, pk.public_id_len);
		rebuilt[4 + pk.public_id_len] = '.';
		memcpy(rebuilt + 5 + pk.public_id_len, pk.secret, pk.secret_len);
		while (s < e && ref_space(data[s]))
			s++;
		while (e > s && ref_space(data[e - 1]))
			e--;
		FUZZ_ASSERT(e - s == 5 + pk.public_id_len + pk.secret_len);
		FUZZ_ASSERT(memcmp(rebuilt, data + s, e - s) == 0);

		/* the parse is stable: parsing the rebuilt key gives the same parts */
		{
			ParsedKey	again;

			FUZZ_ASSERT(ParseApiKey(rebuilt, e - s, &again) == KEY_WELL_FORMED);
			FUZZ_ASSERT(again.public_id_len == pk.public_id_len && again.secret_len == pk.secret_len);
		}
	}
	free(text);
}

static int
ref_hex_value(unsigned char c)
{
	const char *digits = "0123456789abcdef";
	const char *p = c ? strchr(digits, c) : NULL;

	return p ? (int) (p - digits) : -1;
}

static void
check_hex(const uint8_t *data, size_t size)
{
	unsigned char *decoded;
	char	   *encoded;
	size_t		outlen;
	size_t		i;
	bool		ok;
	bool		want_ok;

	/* EncodeHex then DecodeHexDigest gives the bytes back */
	encoded = malloc(2 * size + 1);
	decoded = malloc(size ? size : 1);
	FUZZ_ASSERT(encoded && decoded);
	EncodeHex(data, size, encoded);
	FUZZ_ASSERT(encoded[2 * size] == '\0');
	for (i = 0; i < 2 * size; i++)
		FUZZ_ASSERT(ref_hex_value((unsigned char) encoded[i]) >= 0);
	for (i = 0; i < size; i++)
		FUZZ_ASSERT(ref_hex_value((unsigned char) encoded[2 * i]) * 16 +
					ref_hex_value((unsigned char) encoded[2 * i + 1]) == data[i]);
	FUZZ_ASSERT(DecodeHexDigest(encoded, 2 * size, decoded, size));
	FUZZ_ASSERT(size == 0 || memcmp(decoded, data, size) == 0);
	free(encoded);
	free(decoded);

	/* DecodeHexDigest on the raw bytes agrees with a reference */
	outlen = size / 2;
	if (size & 1)
		outlen = (size + 1) / 2;	/* odd length: must be refused */
	decoded = malloc(outlen ? outlen : 1);
	encoded = malloc(2 * outlen + 1);
	FUZZ_ASSERT(encoded && decoded);
	{
		/* copy so that an over-read of the hex input is caught */
		char	   *hex = malloc(size ? size : 1);

		FUZZ_ASSERT(hex);
		memcpy(hex, data, size);
		ok = DecodeHexDigest(hex, size, decoded, outlen);
		free(hex);
	}
	want_ok = (size == 2 * outlen);
	for (i = 0; want_ok && i < size; i++)
		if (ref_hex_value(data[i]) < 0)
			want_ok = false;
	FUZZ_ASSERT(ok == want_ok);
	if (ok)
	{
		EncodeHex(decoded, outlen, encoded);
		FUZZ_ASSERT(memcmp(encoded, data, size) == 0);
	}
	free(encoded);
	free(decoded);

	/* and a fixed-size digest, as the cache decodes key_hash */
	{
		unsigned char digest[32];
		char	   *hex = malloc(size ? size : 1);

		FUZZ_ASSERT(hex);
		memcpy(hex, data, size);
		ok = DecodeHexDigest(hex, size, digest, sizeof(digest));
		free(hex);
		if (ok)
		{
			char		back[65];

			FUZZ_ASSERT(size == 64);
			EncodeHex(digest, 32, back);
			FUZZ_ASSERT(memcmp(back, data, 64) == 0);
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_parser(data, size);
	check_hex(data, size);
	return 0;
}
