/*-------------------------------------------------------------------------
 * key_format.h
 *		Parsing of presented API keys (pure C, no backend dependencies).
 *
 * A presented key has the shape ath_{public_id}.{secret}.  The parser is
 * strict and allocation-free so that it can be fuzzed outside the server.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_KEY_FORMAT_H
#define ATHENA_KEY_FORMAT_H

#include <stdbool.h>
#include <stddef.h>

#define KEY_PREFIX "ath_"
#define KEY_PREFIX_LEN 4
#define PUBLIC_ID_MIN_LEN 8
#define PUBLIC_ID_MAX_LEN 64
#define SECRET_MIN_LEN 16
#define SECRET_MAX_LEN 256

typedef enum KeyParseResult
{
	KEY_ABSENT,					/* NULL, empty, or only white space */
	KEY_MALFORMED,				/* anything that is not ath_{id}.{secret} */
	KEY_WELL_FORMED
} KeyParseResult;

typedef struct ParsedKey
{
	const char *public_id;		/* points into the presented text */
	size_t		public_id_len;
	const char *secret;			/* points into the presented text */
	size_t		secret_len;
} ParsedKey;

extern KeyParseResult ParseApiKey(const char *text, size_t len, ParsedKey *out);
extern bool IsKeyIdentifierChar(unsigned char c);
extern void EncodeHex(const unsigned char *bytes, size_t len, char *out);
extern bool DecodeHexDigest(const char *hex, size_t len, unsigned char *out, size_t outlen);

#endif
