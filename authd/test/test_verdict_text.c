/*-------------------------------------------------------------------------
 * test_verdict_text.c
 *		Unit tests of athena-authd's verdict_text: reading the compact
 *		verdict of athena_gateway_verdict().  No database, no network.
 *
 * Built and run by make test (see test/unit/unit_check.h at the top level
 * for the output).
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit_check.h"
#include "verdict_text.h"

/* Whether a field reads as want (NULL: SQL NULL) */
static int
FieldIs(const char *got, const char *want)
{
	if (got == NULL || want == NULL)
		return got == want;
	return strcmp(got, want) == 0;
}

/* An allowed verdict with every field, the client name holding separators */
static void
TestAllowed(void)
{
	AuthVerdict v;

	CHECK(ParseVerdictText("t|200|fail_closed|0b6f1d9e-4a3c-4f7e-9a51-2c9d8e7f6a5b|0123456789abcdef||||||Shop|eu|x", &v));
	CHECK(v.allowed);
	CHECK(v.status == 200);
	CHECK(FieldIs(v.fail_mode, "fail_closed"));
	CHECK(FieldIs(v.key_id, "0b6f1d9e-4a3c-4f7e-9a51-2c9d8e7f6a5b"));
	CHECK(FieldIs(v.public_id, "0123456789abcdef"));
	CHECK(FieldIs(v.reason, NULL));
	CHECK(FieldIs(v.client_name, "Shop|eu|x"));
	CHECK(!v.has_retry_after && !v.has_rate_limit);
	FreeAuthVerdict(&v);

	/* With a rate limit: its figures, and no wait */
	CHECK(ParseVerdictText("t|200|fail_closed|0b6f1d9e-4a3c-4f7e-9a51-2c9d8e7f6a5b|0123456789abcdef||"
						   "|10|19|100|web", &v));
	CHECK(!v.has_retry_after && v.has_rate_limit);
	CHECK(v.rate_limit == 10 && v.rate_remaining == 19 && v.rate_reset_ms == 100);
	CHECK(FieldIs(v.client_name, "web"));
	FreeAuthVerdict(&v);
}

/* A 429: its wait and the limit that refused */
static void
TestRateLimited(void)
{
	AuthVerdict v;

	CHECK(ParseVerdictText("f|429|fail_closed|0b6f1d9e-4a3c-4f7e-9a51-2c9d8e7f6a5b|0123456789abcdef|"
						   "Rate limit exceeded|100|10|0|2000|", &v));
	CHECK(!v.allowed && v.status == 429 && FieldIs(v.reason, "Rate limit exceeded"));
	CHECK(v.has_retry_after && v.retry_after_ms == 100);
	CHECK(v.has_rate_limit && v.rate_limit == 10 && v.rate_remaining == 0 && v.rate_reset_ms == 2000);
	FreeAuthVerdict(&v);
	/* A figure that is not a count is no figure */
	CHECK(ParseVerdictText("f|429|fail_closed|||Rate limit exceeded|-1|10|x|2000|", &v));
	CHECK(!v.has_retry_after && !v.has_rate_limit);
	FreeAuthVerdict(&v);
}

/* A refusal: the key's fields are empty, so NULL */
static void
TestRefused(void)
{
	AuthVerdict v;

	CHECK(ParseVerdictText("f|401|fail_open|||Invalid API key|||||", &v));
	CHECK(!v.allowed);
	CHECK(v.status == 401);
	CHECK(FieldIs(v.fail_mode, "fail_open"));
	CHECK(FieldIs(v.key_id, NULL));
	CHECK(FieldIs(v.public_id, NULL));
	CHECK(FieldIs(v.reason, "Invalid API key"));
	CHECK(FieldIs(v.client_name, NULL));
	FreeAuthVerdict(&v);
}

/* Anything else is not a verdict */
static void
TestMalformed(void)
{
	AuthVerdict v;

	CHECK(!ParseVerdictText(NULL, &v));
	CHECK(!ParseVerdictText("", &v));
	CHECK(!ParseVerdictText("t|200|fail_closed|||||||", &v));	/* a field short */
	CHECK(!ParseVerdictText("x|200|fail_closed||||||||", &v));
	CHECK(!ParseVerdictText("true|200|fail_closed||||||||", &v));
	CHECK(!ParseVerdictText("t||fail_closed||||", &v));
	CHECK(!ParseVerdictText("t|20x|fail_closed||||||||", &v));
	CHECK(!ParseVerdictText("t|99|fail_closed||||||||", &v));
	CHECK(!ParseVerdictText("t|2000|fail_closed||||||||", &v));
	CHECK(ParseVerdictText("t|204|fail_closed||||||||", &v));
	FreeAuthVerdict(&v);
}

/* An allow the extension made under fail_open is recognised as degraded */
static void
TestFailOpenAllow(void)
{
	AuthVerdict v;

	CHECK(ParseVerdictText("t|200|fail_open|0b6f1d9e-4a3c-4f7e-9a51-2c9d8e7f6a5b|0123456789abcdef|"
						   "API key policy unavailable|||||web", &v));
	CHECK(VerdictIsFailOpen(&v));
	FreeAuthVerdict(&v);
	CHECK(ParseVerdictText("t|200|fail_open|0b6f1d9e-4a3c-4f7e-9a51-2c9d8e7f6a5b|0123456789abcdef||||||web", &v));
	CHECK(!VerdictIsFailOpen(&v));	/* a plain allow */
	FreeAuthVerdict(&v);
	CHECK(ParseVerdictText("f|503|fail_closed||||API key policy unavailable|||||", &v));
	CHECK(!VerdictIsFailOpen(&v));	/* refused under fail_closed */
	FreeAuthVerdict(&v);
}

/* Run every verdict_text check and summarise */
int
main(void)
{
	TestAllowed();
	TestRefused();
	TestMalformed();
	TestRateLimited();
	TestFailOpenAllow();
	return CheckSummary();
}
