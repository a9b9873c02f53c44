/*-------------------------------------------------------------------------
 * test_key_source.c
 *		Unit tests of athena-authd's key_source: which header carries the key.
 *		No database, no network.
 *
 * Built and run by make test (see test/unit/unit_check.h at the top level
 * for the output).
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "key_source.h"
#include "unit_check.h"

/* Parse a key-source list, "" on error */
static KeySourceList
Sources(const char *text)
{
	KeySourceList list;
	char		error[200];

	if (!ParseKeySources(text, &list, error, sizeof(error)))
		list.count = -1;
	return list;
}

/* Key sources: configuration, precedence, hints for unaccepted ones */
static void
TestKeySources(void)
{
	KeySourceList athena_only = Sources("x-athena-key");
	KeySourceList all = Sources("bearer, X-API-Key,x-athena-key");
	KeySourceList list;
	KeyHeaders	headers;
	KeyChoice	choice;
	char		error[200];
	char		text[100];

	CHECK(athena_only.count == 1 && athena_only.items[0] == KEY_SOURCE_ATHENA_KEY);
	CHECK(all.count == 3 && all.items[0] == KEY_SOURCE_BEARER && all.items[1] == KEY_SOURCE_API_KEY &&
		  all.items[2] == KEY_SOURCE_ATHENA_KEY);
	FormatKeySources(&all, text, sizeof(text));
	CHECK(strcmp(text, "bearer,x-api-key,x-athena-key") == 0);
	CHECK(!ParseKeySources("", &list, error, sizeof(error)));
	CHECK(!ParseKeySources("x-athena-key,cookie", &list, error, sizeof(error)) && strstr(error, "cookie"));
	CHECK(!ParseKeySources("bearer bearer", &list, error, sizeof(error)) && strstr(error, "twice"));

	CHECK(BearerToken(NULL) == NULL);
	CHECK(BearerToken("Basic dXNlcjpwdw==") == NULL);
	CHECK(BearerToken("Bearertoken") == NULL);
	CHECK(strcmp(BearerToken("Bearer ath_x.y"), "ath_x.y") == 0);
	CHECK(strcmp(BearerToken("  bearer \t ath_x.y"), "ath_x.y") == 0);

	/* default: X-Athena-Key only; a key elsewhere is named, not used */
	memset(&headers, 0, sizeof(headers));
	headers.api_key = "ath_a.b";
	ChooseKey(&athena_only, &headers, &choice);
	CHECK(choice.key == NULL && strcmp(choice.source, "none") == 0 && strcmp(choice.ignored, "x-api-key") == 0);
	headers.api_key = NULL;
	headers.authorization = "Bearer ath_a.b";
	ChooseKey(&athena_only, &headers, &choice);
	CHECK(choice.key == NULL && strcmp(choice.ignored, "bearer") == 0);
	headers.authorization = "Basic dXNlcjpwdw==";
	ChooseKey(&athena_only, &headers, &choice);
	CHECK(choice.key == NULL && choice.ignored == NULL);
	headers.athena_key = "ath_k.s";
	ChooseKey(&athena_only, &headers, &choice);
	CHECK(strcmp(choice.key, "ath_k.s") == 0 && strcmp(choice.source, "x-athena-key") == 0 && choice.ignored == NULL);

	/* precedence: the configured order, blank values skipped */
	headers.athena_key = "ath_1.1";
	headers.api_key = "ath_2.2";
	headers.authorization = "Bearer ath_3.3";
	ChooseKey(&all, &headers, &choice);
	CHECK(strcmp(choice.key, "ath_3.3") == 0 && strcmp(choice.source, "bearer") == 0);
	headers.authorization = "Bearer   ";
	ChooseKey(&all, &headers, &choice);
	CHECK(strcmp(choice.key, "ath_2.2") == 0 && strcmp(choice.source, "x-api-key") == 0);
	headers.api_key = " ";
	headers.athena_key = "";
	ChooseKey(&all, &headers, &choice);
	/* only blanks: the first blank value goes on (the extension: absent) */
	CHECK(choice.key != NULL && strcmp(choice.source, "none") == 0 && choice.ignored == NULL);
}

/* Run every key_source check and summarise */
int
main(void)
{
	TestKeySources();
	return CheckSummary();
}
