/*-------------------------------------------------------------------------
 * failure_reasons.c
 *		The table behind failure_reasons.h (pure C).
 *-------------------------------------------------------------------------
 */
#include "failure_reasons.h"

#include <string.h>

static const struct
{
	const char *reason;
	int			status;
}			failure_table[FAILURE_COUNT] =
{
	[FAILURE_NONE] = {NULL, 200},
	[FAILURE_KEY_REQUIRED] = {"API key required", 401},
	[FAILURE_INVALID_KEY] = {"Invalid API key", 401},
	[FAILURE_INACTIVE_KEY] = {"Inactive API key", 401},
	[FAILURE_EXPIRED_KEY] = {"Expired API key", 401},
	[FAILURE_CLIENT_MISMATCH] = {"API key client mismatch", 403},
	[FAILURE_INSUFFICIENT_RIGHTS] = {"Insufficient API key rights", 403},
	[FAILURE_IP_BLOCKED] = {"IP blocked", 403},
	[FAILURE_IP_NOT_ALLOWED] = {"IP not allowed", 403},
	[FAILURE_CLIENT_IP_REQUIRED] = {"Client IP required", 403},
	[FAILURE_RATE_LIMITED] = {"Rate limit exceeded", 429},
	[FAILURE_POLICY_UNAVAILABLE] = {"API key policy unavailable", 503},
};

/* The text a response carries for failure (NULL for none) */
const char *
FailureReason(Failure failure)
{
	return failure_table[failure].reason;
}

/* The HTTP status of a refusal for failure (200 for none) */
int
FailureStatus(Failure failure)
{
	return failure_table[failure].status;
}

/*
 * The failure whose text is exactly reason[0..len), for readers of logged
 * or shipped decisions; false for a text that is not one of them.
 */
bool
FailureFromReason(const char *reason, size_t len, Failure *failure)
{
	int			f;

	for (f = FAILURE_NONE + 1; f < FAILURE_COUNT; f++)
	{
		const char *text = failure_table[f].reason;

		if (strlen(text) == len && memcmp(text, reason, len) == 0)
		{
			*failure = (Failure) f;
			return true;
		}
	}
	return false;
}
