/*-------------------------------------------------------------------------
 * rate_limit_rows.h
 *		Rows of athena_keys.api_key_rate_limit as the pure RateLimit that
 *		the caches hold.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_RATE_LIMIT_ROWS_H
#define ATHENA_RATE_LIMIT_ROWS_H

#include "postgres.h"

#include "rate_limit_math.h"

/*
 * The columns of a rate limit (alias l) in the order RateLimitFromValues
 * takes them, with the period in microseconds.
 */
#define RATE_LIMIT_ROW_COLUMNS \
	"l.id, l.requests, " \
	"pg_catalog.round(EXTRACT(epoch FROM l.per) OPERATOR(pg_catalog.*) 1000000)::bigint, l.burst"

extern bool RateLimitFromValues(int64 id, const void *subject, int subject_len,
								int32 requests, int64 per_us, int32 burst, RateLimit *limit);

#endif
