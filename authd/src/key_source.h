/*-------------------------------------------------------------------------
 * key_source.h
 *		Where athena-authd takes the API key from: X-Athena-Key, X-API-Key
 *		and/or Authorization: Bearer, in a configured order of precedence.
 *
 * Pure C, no I/O: unit tested in test/test_key_source.c.
 *-------------------------------------------------------------------------
 */
#ifndef AUTHD_KEY_SOURCE_H
#define AUTHD_KEY_SOURCE_H

#include <stdbool.h>
#include <stddef.h>

/* One way a client can present a key */
typedef enum KeySource
{
	KEY_SOURCE_ATHENA_KEY,		/* X-Athena-Key: <key> */
	KEY_SOURCE_API_KEY,			/* X-API-Key: <key> */
	KEY_SOURCE_BEARER,			/* Authorization: Bearer <key> */
	KEY_SOURCE_COUNT
} KeySource;

/* The accepted sources, first = highest precedence */
typedef struct KeySourceList
{
	KeySource	items[KEY_SOURCE_COUNT];
	int			count;
} KeySourceList;

/* The first value of each header that can carry a key (NULL = absent) */
typedef struct KeyHeaders
{
	const char *athena_key;
	const char *api_key;
	const char *authorization;
} KeyHeaders;

/* Which key a request presents */
typedef struct KeyChoice
{
	const char *key;			/* NULL = no key presented in an accepted way */
	const char *source;			/* name of the source used, or "none" */
	const char *ignored;		/* a source that carried a key but is not accepted */
} KeyChoice;

extern bool ParseKeySources(const char *text, KeySourceList *out, char *error, size_t error_len);
extern const char *KeySourceName(KeySource source);
extern const char *BearerToken(const char *authorization);
extern void ChooseKey(const KeySourceList *accepted, const KeyHeaders *headers, KeyChoice *out);
extern void FormatKeySources(const KeySourceList *accepted, char *out, size_t out_len);

#endif							/* AUTHD_KEY_SOURCE_H */
