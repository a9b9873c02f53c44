/*-------------------------------------------------------------------------
 * test_failure_reasons.c
 *		Unit tests of failure_reasons.c: the texts of the troubleshooting
 *		page, their statuses, and reading a text back.
 *
 * Built and run by make -C test/unit test (see unit_check.h for the output).
 *-------------------------------------------------------------------------
 */
#include "failure_reasons.h"
#include "unit_check.h"

#include <string.h>

int
main(void)
{
	int			f;
	Failure		back;

	CHECK(FailureReason(FAILURE_NONE) == NULL && FailureStatus(FAILURE_NONE) == 200);
	CHECK(strcmp(FailureReason(FAILURE_INSUFFICIENT_RIGHTS), "Insufficient API key rights") == 0);
	CHECK(FailureStatus(FAILURE_EXPIRED_KEY) == 401);
	CHECK(FailureStatus(FAILURE_CLIENT_IP_REQUIRED) == 403);
	CHECK(FailureStatus(FAILURE_POLICY_UNAVAILABLE) == 503);
	CHECK(strcmp(FailureReason(FAILURE_RATE_LIMITED), "Rate limit exceeded") == 0);
	CHECK(FailureStatus(FAILURE_RATE_LIMITED) == 429);
	for (f = FAILURE_NONE + 1; f < FAILURE_COUNT; f++)
	{
		const char *text = FailureReason((Failure) f);
		int			status = FailureStatus((Failure) f);

		Check(text != NULL && (status == 401 || status == 403 || status == 429 || status == 503),
			  "failure %d has a text and a refusal status", f);
		Check(FailureFromReason(text, strlen(text), &back) && back == (Failure) f,
			  "\"%s\" reads back as its failure", text);
		Check(!FailureFromReason(text, strlen(text) - 1, &back),
			  "\"%s\" without its last character is no failure", text);
	}
	CHECK(!FailureFromReason("ip blocked", 10, &back));
	CHECK(!FailureFromReason("", 0, &back));
	return CheckSummary();
}
