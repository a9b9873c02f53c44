/*-------------------------------------------------------------------------
 * key_format.c
 *		Strict parsing of presented API keys and hex helpers.
 *
 * Pure C: no palloc, no ereport, so the fuzzer links this file as is.
 *-------------------------------------------------------------------------
 */
#include "key_format.h"

#include <string.h>

/*
 * Whether c is one of the characters allowed in a public id or a secret:
 * [0-9A-Za-z_-].  A table rather than isalnum(), so that the answer never
 * depends on the locale; a lookup, because every character of every
 * presented key goes through it.
 */
static const bool key_identifier_chars[256] = {
	['0'] = true, ['1'] = true, ['2'] = true, ['3'] = true, ['4'] = true,
	['5'] = true, ['6'] = true, ['7'] = true, ['8'] = true, ['9'] = true,
	['a'] = true, ['b'] = true, ['c'] = true, ['d'] = true, ['e'] = true,
	['f'] = true, ['g'] = true, ['h'] = true, ['i'] = true, ['j'] = true,
	['k'] = true, ['l'] = true, ['m'] = true, ['n'] = true, ['o'] = true,
	['p'] = true, ['q'] = true, ['r'] = true, ['s'] = true, ['t'] = true,
	['u'] = true, ['v'] = true, ['w'] = true, ['x'] = true, ['y'] = true,
	['z'] = true,
	['A'] = true, ['B'] = true, ['C'] = true, ['D'] = true, ['E'] = true,
	['F'] = true, ['G'] = true, ['H'] = true, ['I'] = true, ['J'] = true,
	['K'] = true, ['L'] = true, ['M'] = true, ['N'] = true, ['O'] = true,
	['P'] = true, ['Q'] = true, ['R'] = true, ['S'] = true, ['T'] = true,
	['U'] = true, ['V'] = true, ['W'] = true, ['X'] = true, ['Y'] = true,
	['Z'] = true,
	['_'] = true, ['-'] = true,
};

/* Whether c is a key identifier character (see the table above) */
bool
IsKeyIdentifierChar(unsigned char c)
{
	return key_identifier_chars[c];
}

/* Whether c is white space that a header value may carry around the key */
static bool
IsTrimmableSpace(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
		c == '\v' || c == '\f';
}

/* Whether every character of s[0..len) is a key identifier character */
static bool
AllIdentifierChars(const char *s, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
	{
		if (!key_identifier_chars[(unsigned char) s[i]])
			return false;
	}
	return true;
}

/*
 * Parse a presented key.  Leading and trailing white space is ignored; an
 * empty result counts as absent.  On KEY_WELL_FORMED, *out points into
 * text; it is left untouched otherwise.
 */
KeyParseResult
ParseApiKey(const char *text, size_t len, ParsedKey *out)
{
	size_t		start = 0;
	size_t		end = len;
	const char *body;
	size_t		body_len;
	const char *dot;
	size_t		id_len;
	size_t		secret_len;

	if (text == NULL)
		return KEY_ABSENT;
	while (start < end && IsTrimmableSpace((unsigned char) text[start]))
		start++;
	while (end > start && IsTrimmableSpace((unsigned char) text[end - 1]))
		end--;
	if (start == end)
		return KEY_ABSENT;

	if (end - start < KEY_PREFIX_LEN ||
		memcmp(text + start, KEY_PREFIX, KEY_PREFIX_LEN) != 0)
		return KEY_MALFORMED;

	body = text + start + KEY_PREFIX_LEN;
	body_len = end - start - KEY_PREFIX_LEN;
	dot = memchr(body, '.', body_len);
	if (dot == NULL)
		return KEY_MALFORMED;

	id_len = (size_t) (dot - body);
	secret_len = body_len - id_len - 1;
	if (id_len < PUBLIC_ID_MIN_LEN || id_len > PUBLIC_ID_MAX_LEN ||
		secret_len < SECRET_MIN_LEN || secret_len > SECRET_MAX_LEN)
		return KEY_MALFORMED;

	/* '.' is not an identifier character, so a second dot fails here */
	if (!AllIdentifierChars(body, id_len) ||
		!AllIdentifierChars(dot + 1, secret_len))
		return KEY_MALFORMED;

	out->public_id = body;
	out->public_id_len = id_len;
	out->secret = dot + 1;
	out->secret_len = secret_len;
	return KEY_WELL_FORMED;
}

/* Write len bytes as 2*len lowercase hex characters plus a terminating NUL */
void
EncodeHex(const unsigned char *bytes, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t		i;

	for (i = 0; i < len; i++)
	{
		out[2 * i] = digits[bytes[i] >> 4];
		out[2 * i + 1] = digits[bytes[i] & 0x0f];
	}
	out[2 * len] = '\0';
}

/* Value of a lowercase hex digit, or -1 */
static int
HexValue(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/*
 * Decode exactly 2*outlen lowercase hex characters into out.  Returns false
 * (leaving out unspecified) when the length or a character is wrong.
 */
bool
DecodeHexDigest(const char *hex, size_t len, unsigned char *out, size_t outlen)
{
	size_t		i;

	if (len != 2 * outlen)
		return false;
	for (i = 0; i < outlen; i++)
	{
		int			hi = HexValue((unsigned char) hex[2 * i]);
		int			lo = HexValue((unsigned char) hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (unsigned char) ((hi << 4) | lo);
	}
	return true;
}
