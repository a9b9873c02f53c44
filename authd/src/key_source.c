/*-------------------------------------------------------------------------
 * key_source.c
 *		Choosing the API key among the headers that can carry one (pure C,
 *		no I/O).
 *
 * Only configured sources count, in their configured order; a value that
 * is blank counts as absent so the next source gets its turn.  A key
 * presented in a way that is not accepted (X-API-Key when only
 * X-Athena-Key is, say) is not used, but is named so the answer can say
 * why the key was not seen: wrong header schemes are the most common
 * cause of "my key is invalid" reports.
 *-------------------------------------------------------------------------
 */
#include "key_source.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "text_util.h"

static const char *const key_source_names[KEY_SOURCE_COUNT] = {
	"x-athena-key", "x-api-key", "bearer"
};

/* The configuration name of a source (also used in logs and hints) */
const char *
KeySourceName(KeySource source)
{
	return key_source_names[source];
}



/*
 * Parse a comma- or blank-separated list of source names; at least one,
 * none twice.  On failure writes a message into error.
 */
bool
ParseKeySources(const char *text, KeySourceList *out, char *error, size_t error_len)
{
	const char *p = text ? text : "";

	out->count = 0;
	while (*p)
	{
		const char *start;
		size_t		length;
		int			found = -1;

		while (*p == ',' || IsHttpBlank(*p))
			p++;
		if (*p == '\0')
			break;
		start = p;
		while (*p && *p != ',' && !IsHttpBlank(*p))
			p++;
		length = (size_t) (p - start);
		for (int i = 0; i < KEY_SOURCE_COUNT; i++)
		{
			if (strlen(key_source_names[i]) == length && strncasecmp(start, key_source_names[i], length) == 0)
				found = i;
		}
		if (found < 0)
		{
			snprintf(error, error_len, "unknown key source \"%.*s\" (expected x-athena-key, x-api-key or bearer)",
					 (int) (length > 64 ? 64 : length), start);
			return false;
		}
		for (int i = 0; i < out->count; i++)
		{
			if (out->items[i] == (KeySource) found)
			{
				snprintf(error, error_len, "key source \"%s\" listed twice", key_source_names[found]);
				return false;
			}
		}
		out->items[out->count++] = (KeySource) found;
	}
	if (out->count == 0)
	{
		snprintf(error, error_len, "at least one key source is needed");
		return false;
	}
	return true;
}

/*
 * The token of an "Authorization: Bearer <token>" value (scheme matched
 * case-insensitively, as RFC 7235 says), or NULL for any other scheme.
 */
const char *
BearerToken(const char *authorization)
{
	const char *p = authorization;

	if (p == NULL)
		return NULL;
	while (IsHttpBlank(*p))
		p++;
	if (strncasecmp(p, "Bearer", 6) != 0 || !IsHttpBlank(p[6]))
		return NULL;
	p += 6;
	while (IsHttpBlank(*p))
		p++;
	return p;
}

/* The key text a source carries in these headers, or NULL */
static const char *
SourceValue(KeySource source, const KeyHeaders *headers)
{
	switch (source)
	{
		case KEY_SOURCE_ATHENA_KEY:
			return headers->athena_key;
		case KEY_SOURCE_API_KEY:
			return headers->api_key;
		case KEY_SOURCE_BEARER:
			return BearerToken(headers->authorization);
		case KEY_SOURCE_COUNT:
			break;
	}
	return NULL;
}

/* True when the list accepts this source */
static bool
Accepts(const KeySourceList *accepted, KeySource source)
{
	for (int i = 0; i < accepted->count; i++)
	{
		if (accepted->items[i] == source)
			return true;
	}
	return false;
}

/*
 * Pick the key: the first accepted source, in precedence order, with a
 * non-blank value.  With none, a blank value of an accepted source is
 * still passed (the extension treats it as absent), and the first
 * source that is not accepted but carries a value is reported.
 */
void
ChooseKey(const KeySourceList *accepted, const KeyHeaders *headers, KeyChoice *out)
{
	out->key = NULL;
	out->source = "none";
	out->ignored = NULL;
	for (int i = 0; i < accepted->count; i++)
	{
		const char *value = SourceValue(accepted->items[i], headers);

		if (value == NULL)
			continue;
		if (!IsBlankText(value))
		{
			out->key = value;
			out->source = key_source_names[accepted->items[i]];
			return;
		}
		if (out->key == NULL)
			out->key = value;
	}
	for (int source = 0; source < KEY_SOURCE_COUNT; source++)
	{
		if (!Accepts(accepted, (KeySource) source) &&
			!IsBlankText(SourceValue((KeySource) source, headers)))
		{
			out->ignored = key_source_names[source];
			return;
		}
	}
}

/* The list as text ("x-athena-key,bearer"), for messages */
void
FormatKeySources(const KeySourceList *accepted, char *out, size_t out_len)
{
	size_t		used = 0;

	if (out_len == 0)
		return;
	out[0] = '\0';
	for (int i = 0; i < accepted->count && used < out_len; i++)
		used += (size_t) snprintf(out + used, out_len - used, "%s%s", i ? "," : "",
								  key_source_names[accepted->items[i]]);
}
