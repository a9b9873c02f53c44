/*-------------------------------------------------------------------------
 * text_util.c
 *		Text handling for athena-authd (pure C, no I/O).
 *-------------------------------------------------------------------------
 */
#include "text_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* U+FFFD REPLACEMENT CHARACTER, in UTF-8 */
#define REPLACEMENT_CHARACTER "\xef\xbf\xbd"

/* True for the blanks HTTP allows around list elements */
bool
IsHttpBlank(char c)
{
	return c == ' ' || c == '\t';
}

/* True when text is NULL or holds only blanks */
bool
IsBlankText(const char *text)
{
	if (text == NULL)
		return true;
	for (; *text; text++)
	{
		if (!IsHttpBlank(*text))
			return false;
	}
	return true;
}

/*
 * Turn an X-Athena-Rights header ("users.read, gateway.query") into the
 * comma list passed to the database ("users.read,gateway.query"): elements
 * trimmed of blanks, empty elements dropped.  NULL header gives "".
 * Returns a malloc'd string, or NULL when out of memory.
 */
char *
NormalizeRightsHeader(const char *header)
{
	const char *p = header ? header : "";
	char	   *out = malloc(strlen(p) + 1);
	size_t		used = 0;

	if (out == NULL)
		return NULL;
	while (*p)
	{
		const char *start = p;
		const char *end;

		while (*p && *p != ',')
			p++;
		end = p;
		if (*p == ',')
			p++;
		while (start < end && IsHttpBlank(*start))
			start++;
		while (end > start && IsHttpBlank(end[-1]))
			end--;
		if (start == end)
			continue;
		if (used > 0)
			out[used++] = ',';
		memcpy(out + used, start, (size_t) (end - start));
		used += (size_t) (end - start);
	}
	out[used] = '\0';
	return out;
}

/*
 * Escape text for use inside a JSON string literal: quote, backslash and
 * control characters are escaped; other bytes (UTF-8) pass through.
 * Returns a malloc'd string, or NULL when out of memory.
 */
char *
JsonEscape(const char *text)
{
	const char *p = text ? text : "";
	char	   *out = malloc(strlen(p) * 6 + 1);
	char	   *o = out;

	if (out == NULL)
		return NULL;
	for (; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		switch (c)
		{
			case '"':
				*o++ = '\\';
				*o++ = '"';
				break;
			case '\\':
				*o++ = '\\';
				*o++ = '\\';
				break;
			case '\n':
				*o++ = '\\';
				*o++ = 'n';
				break;
			case '\r':
				*o++ = '\\';
				*o++ = 'r';
				break;
			case '\t':
				*o++ = '\\';
				*o++ = 't';
				break;
			default:
				if (c < 0x20 || c == 0x7f)
					o += sprintf(o, "\\u%04x", c);
				else
					*o++ = (char) c;
		}
	}
	*o = '\0';
	return out;
}

/*
 * The error body every denial carries:
 * {"status":"error","message":"<message>"}.  Returns a malloc'd string,
 * or NULL when out of memory.
 */
char *
BuildErrorBody(const char *message)
{
	static const char prefix[] = "{\"status\":\"error\",\"message\":\"";
	static const char suffix[] = "\"}";
	char	   *escaped = JsonEscape(message);
	char	   *body;

	if (escaped == NULL)
		return NULL;
	body = malloc(sizeof(prefix) + strlen(escaped) + sizeof(suffix));
	if (body != NULL)
		sprintf(body, "%s%s%s", prefix, escaped, suffix);
	free(escaped);
	return body;
}

/* True when value may go into a response header: no control characters */
bool
IsSafeHeaderValue(const char *value)
{
	if (value == NULL)
		return false;
	for (const unsigned char *p = (const unsigned char *) value; *p; p++)
	{
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return false;
	}
	return true;
}

/*
 * Copy text for a quoted field of a one-line log entry: printable ASCII
 * and spaces kept, double quotes become single quotes, everything else
 * (control characters, backslashes, non-ASCII) becomes '?',
 * truncated with "..." to fit out_len.  NULL prints as "-".
 */
void
SanitizeForLog(const char *text, char *out, size_t out_len)
{
	size_t		used = 0;

	if (out_len == 0)
		return;
	if (text == NULL)
		text = "-";
	for (const unsigned char *p = (const unsigned char *) text; *p; p++)
	{
		if (used + 1 >= out_len)
		{
			if (out_len >= 4)
				memcpy(out + out_len - 4, "...", 3);
			used = out_len - 1;
			break;
		}
		if (*p == '"')
			out[used++] = '\'';
		else
			out[used++] = (*p >= 0x20 && *p < 0x7f && *p != '\\') ? (char) *p : '?';
	}
	out[used] = '\0';
}

/*
 * Length of the well-formed UTF-8 sequence at p (at most `available`
 * bytes), or 0 when it is not one.  Strict as PostgreSQL's check: no
 * overlong forms, no surrogates, nothing above U+10FFFF, no NUL.
 */
static size_t
Utf8SequenceLength(const unsigned char *p, size_t available)
{
	size_t		length;
	unsigned int code_point;

	if (p[0] == 0)
		return 0;
	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		length = 2, code_point = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		length = 3, code_point = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		length = 4, code_point = p[0] & 0x07;
	else
		return 0;
	if (available < length)
		return 0;
	for (size_t i = 1; i < length; i++)
	{
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		code_point = (code_point << 6) | (p[i] & 0x3f);
	}
	if ((length == 3 && code_point < 0x800) || (length == 4 && code_point < 0x10000) ||
		(code_point >= 0xd800 && code_point <= 0xdfff) || code_point > 0x10ffff)
		return 0;
	return length;
}

/* True when text (NUL-terminated) is entirely well-formed UTF-8 */
bool
IsValidUtf8(const char *text)
{
	const unsigned char *p = (const unsigned char *) text;
	size_t		remaining = strlen(text);

	while (remaining > 0)
	{
		size_t		length = Utf8SequenceLength(p, remaining);

		if (length == 0)
			return false;
		p += length;
		remaining -= length;
	}
	return true;
}

/*
 * A copy of text in which every byte that does not start a well-formed
 * UTF-8 sequence becomes U+FFFD, so PostgreSQL accepts it as text instead
 * of failing the whole call.  NULL stays NULL (*out_of_memory false);
 * returns NULL with *out_of_memory true when allocation fails.
 */
char *
RepairUtf8(const char *text, bool *out_of_memory)
{
	const unsigned char *p = (const unsigned char *) text;
	size_t		remaining;
	char	   *out;
	size_t		used = 0;

	*out_of_memory = false;
	if (text == NULL)
		return NULL;
	remaining = strlen(text);
	/* each bad byte grows to 3 bytes */
	out = malloc(remaining * 3 + 1);
	if (out == NULL)
	{
		*out_of_memory = true;
		return NULL;
	}
	while (remaining > 0)
	{
		size_t		length = Utf8SequenceLength(p, remaining);

		if (length == 0)
		{
			memcpy(out + used, REPLACEMENT_CHARACTER, 3);
			used += 3;
			length = 1;
		}
		else
		{
			memcpy(out + used, p, length);
			used += length;
		}
		p += length;
		remaining -= length;
	}
	out[used] = '\0';
	return out;
}
