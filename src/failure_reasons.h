/*-------------------------------------------------------------------------
 * failure_reasons.h
 *		The failures a decision can end in, with the exact texts of the
 *		Athena troubleshooting page and their HTTP statuses (pure C).
 *
 * The one list of them: the decision, the result row, the log's
 * validation and athena-authd's metrics all read it.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_FAILURE_REASONS_H
#define ATHENA_FAILURE_REASONS_H

#include <stdbool.h>
#include <stddef.h>

/* In the decision order of SPEC section 4; the policy failure last */
typedef enum Failure
{
	FAILURE_NONE,
	FAILURE_KEY_REQUIRED,
	FAILURE_INVALID_KEY,
	FAILURE_INACTIVE_KEY,
	FAILURE_EXPIRED_KEY,
	FAILURE_CLIENT_MISMATCH,
	FAILURE_INSUFFICIENT_RIGHTS,
	FAILURE_IP_BLOCKED,
	FAILURE_IP_NOT_ALLOWED,
	FAILURE_CLIENT_IP_REQUIRED,
	FAILURE_RATE_LIMITED,
	FAILURE_POLICY_UNAVAILABLE
} Failure;

#define FAILURE_COUNT (FAILURE_POLICY_UNAVAILABLE + 1)

extern const char *FailureReason(Failure failure);
extern int	FailureStatus(Failure failure);
extern bool FailureFromReason(const char *reason, size_t len, Failure *failure);

#endif
