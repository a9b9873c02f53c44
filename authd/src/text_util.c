/*-------------------------------------------------------------------------
 * text_util.c
 *		Text handling for athena-authd (pure C, no I/O).
 *-------------------------------------------------------------------------
 */
#include "text_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* True for the blanks HTTP allows around list elements */
static bool
IsBlank(char c)
{
	return c == ' ' || c == '\t';
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
		while (start < end && IsBlank(*start))
			start++;
		while (end > start && IsBlank(end[-1]))
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
