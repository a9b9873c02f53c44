/*-------------------------------------------------------------------------
 * rate_limit.h
 *		The rate limit buckets in shared memory: consume the units of one
 *		request from every limit that applies to it, or none.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_RATE_LIMIT_H
#define ATHENA_RATE_LIMIT_H

#include "postgres.h"

#include "decision.h"
#include "rate_limit_math.h"

/* What a request's limits found, for the verdict and the result row */
typedef struct RateLimitReport
{
	RateLimitVerdict verdict;
	bool		has_retry_after;	/* exceeded and admissible later */
	int64		retry_after_ms; /* rounded up */
	bool		has_tightest;	/* a limit to report (not when unavailable) */
	int32		limit;			/* its requests per period */
	int32		remaining;
	int64		reset_ms;		/* rounded up */
} RateLimitReport;

extern void InitRateLimits(void);
extern void ConsumeRateLimits(const RateLimit *key_limits, int nkey,
							  const RateLimit *client_limits, int nclient,
							  int32 cost, bool shadow, RateLimitReport *report);

#endif
