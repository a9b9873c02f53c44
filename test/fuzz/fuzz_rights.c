/*-------------------------------------------------------------------------
 * fuzz_rights.c
 *		libFuzzer harness for RightSatisfies.
 *
 * Input: granted right, a '\n', required right (no '\n': all of it is the
 * granted right and the required right is empty).  Both are arbitrary
 * bytes, NUL included.  RightSatisfies must agree with ref_satisfies, a
 * direct transcription of SPEC 4 "Rights matching" written without looking
 * at the implementation:
 *
 *   - granted is "*";
 *   - granted equals required;
 *   - granted is "P.*" and required starts with "P.";
 *   - granted is "*.A" and required's last dot-segment is A;
 *   - granted is gateway.read / gateway.write / gateway.delete and required
 *     is a two-segment resource right R.read / R.write / R.delete with the
 *     same action.
 *
 * Interpretations where SPEC is silent (documented, not bugs):
 *   - P and A are non-empty (".*" and "*." are not wildcard forms);
 *   - the last dot-segment of a right without a dot is the whole right;
 *   - in "R.action", R is non-empty;
 *   - an empty granted right satisfies nothing (the catalog cannot hold
 *     one: athena_create_right requires 1..200 characters).
 *-------------------------------------------------------------------------
 */
#include "rights_match.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool
bytes_eq(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && (alen == 0 || memcmp(a, b, alen) == 0);
}

static bool
starts_with(const char *s, size_t slen, const char *p, size_t plen)
{
	return slen >= plen && (plen == 0 || memcmp(s, p, plen) == 0);
}

static size_t
count_char(const char *s, size_t len, char c)
{
	size_t		n = 0;
	size_t		i;

	for (i = 0; i < len; i++)
		n += s[i] == c;
	return n;
}

static bool
ref_satisfies(const char *g, size_t glen, const char *r, size_t rlen)
{
	if (glen == 0)
		return false;
	if (bytes_eq(g, glen, "*", 1))
		return true;
	if (bytes_eq(g, glen, r, rlen))
		return true;

	/* "P.*", P non-empty: required starts with "P." */
	if (glen >= 3 && g[glen - 2] == '.' && g[glen - 1] == '*' &&
		starts_with(r, rlen, g, glen - 1))
		return true;

	/* "*.A", A non-empty: required's last dot-segment is A */
	if (glen >= 3 && g[0] == '*' && g[1] == '.')
	{
		const char *seg = r;
		size_t		seglen = rlen;
		size_t		i;

		for (i = 0; i < rlen; i++)
			if (r[i] == '.')
			{
				seg = r + i + 1;
				seglen = rlen - i - 1;
			}
		if (bytes_eq(seg, seglen, g + 2, glen - 2))
			return true;
	}

	/* gateway.read / gateway.write / gateway.delete */
	{
		static const char *const actions[] = {"read", "write", "delete"};
		int			k;

		for (k = 0; k < 3; k++)
		{
			char		name[32];
			size_t		alen = strlen(actions[k]);

			snprintf(name, sizeof(name), "gateway.%s", actions[k]);
			if (bytes_eq(g, glen, name, strlen(name)))
			{
				/* R.action: exactly one dot, R non-empty, action matches */
				return count_char(r, rlen, '.') == 1 && rlen > alen + 1 &&
					r[rlen - alen - 1] == '.' &&
					memcmp(r + rlen - alen, actions[k], alen) == 0;
			}
		}
	}
	return false;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t		glen = nl ? (size_t) (nl - data) : size;
	size_t		rlen = nl ? size - glen - 1 : 0;
	char	   *g = malloc(glen ? glen : 1);
	char	   *r = malloc(rlen ? rlen : 1);
	bool		got;
	bool		want;

	if (g == NULL || r == NULL)
		abort();
	/* exact-size copies, so that a read past either end is caught by ASan */
	memcpy(g, data, glen);
	if (rlen)
		memcpy(r, nl + 1, rlen);

	got = RightSatisfies(g, glen, r, rlen);
	want = ref_satisfies(g, glen, r, rlen);
	if (got != want)
	{
		fprintf(stderr, "RightSatisfies(\"%.*s\", \"%.*s\") = %d, SPEC says %d\n",
				(int) glen, g, (int) rlen, r, got, want);
		abort();
	}

	/* "*" satisfies any required right */
	if (!RightSatisfies("*", 1, r, rlen))
		abort();

	/* equality always satisfies (non-empty granted) */
	if (glen > 0 && !RightSatisfies(g, glen, g, glen))
		abort();

	free(g);
	free(r);
	return 0;
}
