/*-------------------------------------------------------------------------
 * test_text_util.c
 *		Unit tests of athena-authd's text_util: the rights header, JSON error
 *		bodies, header and log sanitising, UTF-8.
 *		No database, no network.
 *
 * Built and run by make test (see test/unit/unit_check.h at the top level
 * for the output).
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text_util.h"
#include "unit_check.h"

/* Normalize a rights header and compare, freeing the result */
static int
RightsAre(const char *header, const char *expected)
{
	char	   *normalized = NormalizeRightsHeader(header);
	int			same = normalized != NULL && strcmp(normalized, expected) == 0;

	if (!same)
		printf("# rights \"%s\" -> \"%s\", expected \"%s\"\n",
			   header ? header : "(null)", normalized ? normalized : "(null)", expected);
	free(normalized);
	return same;
}

/* The X-Athena-Rights header */
static void
TestRights(void)
{
	CHECK(RightsAre(NULL, ""));
	CHECK(RightsAre("", ""));
	CHECK(RightsAre("   ", ""));
	CHECK(RightsAre(",, ,", ""));
	CHECK(RightsAre("users.read", "users.read"));
	CHECK(RightsAre("users.read,gateway.query", "users.read,gateway.query"));
	CHECK(RightsAre(" users.read ,\tgateway.query\t", "users.read,gateway.query"));
	CHECK(RightsAre("users.read,,gateway.query,", "users.read,gateway.query"));
	CHECK(RightsAre("a b", "a b"));		/* inner blanks kept: the database judges */
	CHECK(RightsAre("Users.Read", "Users.Read"));
	CHECK(RightsAre("{x},\"y\"", "{x},\"y\""));	/* passed as data, never spliced */
}

/* Build an error body and compare, freeing the result */
static int
ErrorBodyIs(const char *message, const char *expected)
{
	char	   *body = BuildErrorBody(message);
	int			same = body != NULL && strcmp(body, expected) == 0;

	if (!same)
		printf("# body -> %s\n", body ? body : "(null)");
	free(body);
	return same;
}

/* JSON error bodies */
static void
TestJson(void)
{
	CHECK(ErrorBodyIs("Invalid API key", "{\"status\":\"error\",\"message\":\"Invalid API key\"}"));
	CHECK(ErrorBodyIs("", "{\"status\":\"error\",\"message\":\"\"}"));
	CHECK(ErrorBodyIs(NULL, "{\"status\":\"error\",\"message\":\"\"}"));
	CHECK(ErrorBodyIs("say \"hi\"\\", "{\"status\":\"error\",\"message\":\"say \\\"hi\\\"\\\\\"}"));
	CHECK(ErrorBodyIs("a\nb\tc\rd", "{\"status\":\"error\",\"message\":\"a\\nb\\tc\\rd\"}"));
	CHECK(ErrorBodyIs("\x01\x1f\x7f", "{\"status\":\"error\",\"message\":\"\\u0001\\u001f\\u007f\"}"));
	CHECK(ErrorBodyIs("caf\xc3\xa9", "{\"status\":\"error\",\"message\":\"caf\xc3\xa9\"}"));
	CHECK(ErrorBodyIs("</script>", "{\"status\":\"error\",\"message\":\"</script>\"}"));
}

/* Response header and log sanitising */
static void
TestSanitising(void)
{
	char		out[16];

	CHECK(IsSafeHeaderValue("web"));
	CHECK(IsSafeHeaderValue("{\"status\":\"error\"}"));
	CHECK(IsSafeHeaderValue("a\tb"));
	CHECK(!IsSafeHeaderValue(NULL));
	CHECK(!IsSafeHeaderValue("a\r\nSet-Cookie: x"));
	CHECK(!IsSafeHeaderValue("a\nb"));
	CHECK(!IsSafeHeaderValue("a\x7f"));

	SanitizeForLog("web client", out, sizeof(out));
	CHECK(strcmp(out, "web client") == 0);
	SanitizeForLog(NULL, out, sizeof(out));
	CHECK(strcmp(out, "-") == 0);
	SanitizeForLog("a\nb\"c\\d\xc3", out, sizeof(out));
	CHECK(strcmp(out, "a?b'c?d?") == 0);
	SanitizeForLog("0123456789abcdefXYZ", out, sizeof(out));
	CHECK(strlen(out) == 15 && strcmp(out + 12, "...") == 0);
	SanitizeForLog("0123456789abcde", out, sizeof(out));
	CHECK(strcmp(out, "0123456789abcde") == 0);
}

/* RepairUtf8 result compared with expected, freed */
static bool
RepairsTo(const char *input, const char *expected)
{
	bool		out_of_memory;
	char	   *repaired = RepairUtf8(input, &out_of_memory);
	bool		same = repaired != NULL && strcmp(repaired, expected) == 0;

	free(repaired);
	return same && !out_of_memory;
}

/* UTF-8: strict validation (as PostgreSQL's) and repair to U+FFFD */
static void
TestUtf8(void)
{
	bool		out_of_memory = true;

	CHECK(IsValidUtf8(""));
	CHECK(IsValidUtf8("ath_0123456789abcdef.secret"));
	CHECK(IsValidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
	CHECK(IsValidUtf8("\xf4\x8f\xbf\xbf"));	/* U+10FFFF */
	CHECK(!IsValidUtf8("\xff"));
	CHECK(!IsValidUtf8("ath_\xff"));
	CHECK(!IsValidUtf8("\xc3"));			/* truncated */
	CHECK(!IsValidUtf8("\xc3("));		/* bad continuation */
	CHECK(!IsValidUtf8("\xc0\xaf"));	/* overlong '/' */
	CHECK(!IsValidUtf8("\xe0\x80\xaf"));	/* overlong, 3 bytes */
	CHECK(!IsValidUtf8("\xf0\x80\x80\xaf"));	/* overlong, 4 bytes */
	CHECK(!IsValidUtf8("\xed\xa0\x80"));	/* surrogate U+D800 */
	CHECK(!IsValidUtf8("\xf4\x90\x80\x80"));	/* above U+10FFFF */
	CHECK(!IsValidUtf8("\xf8\x88\x80\x80\x80"));	/* 5-byte form */
	CHECK(!IsValidUtf8("\x80"));			/* lone continuation */

	CHECK(RepairsTo("plain", "plain"));
	CHECK(RepairsTo("caf\xc3\xa9", "caf\xc3\xa9"));
	CHECK(RepairsTo("\xff", "\xef\xbf\xbd"));
	CHECK(RepairsTo("a\xff" "b", "a\xef\xbf\xbd" "b"));
	CHECK(RepairsTo("\xc3(", "\xef\xbf\xbd("));
	CHECK(RepairsTo("\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
	CHECK(RepairsTo("x\xf0\x9f\x98", "x\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
	CHECK(RepairUtf8(NULL, &out_of_memory) == NULL && !out_of_memory);
	{
		bool		oom;
		char	   *repaired = RepairUtf8("ath_0123456789abcdef.\xff\xfe", &oom);

		/* a repaired key is valid UTF-8 and still not a well-formed key */
		CHECK(repaired != NULL && IsValidUtf8(repaired) && strchr(repaired, '.') != NULL &&
			  strstr(repaired, "\xef\xbf\xbd") != NULL);
		free(repaired);
	}
}

/* Run every text_util check and summarise */
int
main(void)
{
	TestRights();
	TestJson();
	TestSanitising();
	TestUtf8();
	return CheckSummary();
}
