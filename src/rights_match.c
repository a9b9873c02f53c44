/*-------------------------------------------------------------------------
 * rights_match.c
 *		The rights truth table of SPEC section 4 (pure C, case-sensitive).
 *
 * A required right is satisfied by a granted right when the granted right
 * is "*", equals it, is "P.*" and the required right starts with "P.", is
 * "*.A" and the required right's last dot-segment is A, or is one of
 * gateway.read / gateway.write / gateway.delete and the required right is a
 * two-segment resource right with the same action.
 *-------------------------------------------------------------------------
 */
#include "rights_match.h"

#include <string.h>

/* Whether s[0..len) equals the NUL-terminated literal lit */
static bool
EqualsLiteral(const char *s, size_t len, const char *lit)
{
	size_t		lit_len = strlen(lit);

	return len == lit_len && memcmp(s, lit, len) == 0;
}

/* Position just after the last '.' of s, or 0 when there is none */
static size_t
LastSegmentStart(const char *s, size_t len)
{
	size_t		i = len;

	while (i > 0)
	{
		if (s[i - 1] == '.')
			return i;
		i--;
	}
	return 0;
}

/*
 * Whether required is a two-segment resource right "R.A" (exactly one dot,
 * both sides non-empty) whose action A equals action.
 */
static bool
IsResourceRightWithAction(const char *required, size_t len, const char *action)
{
	const char *dot = memchr(required, '.', len);
	size_t		resource_len;

	if (dot == NULL)
		return false;
	resource_len = (size_t) (dot - required);
	if (resource_len == 0 || memchr(dot + 1, '.', len - resource_len - 1) != NULL)
		return false;
	return EqualsLiteral(dot + 1, len - resource_len - 1, action);
}

/* Whether the granted right satisfies the required one */
bool
RightSatisfies(const char *granted, size_t granted_len,
			   const char *required, size_t required_len)
{
	if (granted_len == 0)
		return false;
	if (EqualsLiteral(granted, granted_len, "*"))
		return true;
	if (granted_len == required_len &&
		memcmp(granted, required, granted_len) == 0)
		return true;

	/* "P.*": the prefix keeps its dot, so "users.*" never matches "users" */
	if (granted_len >= 3 &&
		granted[granted_len - 1] == '*' && granted[granted_len - 2] == '.')
	{
		size_t		prefix_len = granted_len - 1;

		if (required_len >= prefix_len &&
			memcmp(required, granted, prefix_len) == 0)
			return true;
	}

	/* "*.A": compare A with the last dot-segment of the required right */
	if (granted_len >= 3 && granted[0] == '*' && granted[1] == '.')
	{
		size_t		seg = LastSegmentStart(required, required_len);

		if (required_len - seg == granted_len - 2 &&
			memcmp(required + seg, granted + 2, granted_len - 2) == 0)
			return true;
	}

	if (EqualsLiteral(granted, granted_len, "gateway.read"))
		return IsResourceRightWithAction(required, required_len, "read");
	if (EqualsLiteral(granted, granted_len, "gateway.write"))
		return IsResourceRightWithAction(required, required_len, "write");
	if (EqualsLiteral(granted, granted_len, "gateway.delete"))
		return IsResourceRightWithAction(required, required_len, "delete");
	return false;
}
