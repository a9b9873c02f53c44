/*-------------------------------------------------------------------------
 * rate_limit_math.h
 *		The generic cell rate algorithm (GCRA) of the rate limits, as pure
 *		arithmetic on nanoseconds (pure C: no backend, no shared memory).
 *
 * A limit of `requests` per `per` with a burst of `burst` admits one unit
 * every interval = per / requests and lets a bucket run ahead by at most
 * tolerance = burst * interval.  A bucket is one number, its theoretical
 * arrival time (TAT): a request of cost c is admitted when
 * max(TAT, now) + c * interval - now <= tolerance, and then moves TAT
 * there.  rate_limit.c keeps the TATs in shared memory and calls these
 * functions under the buckets' locks.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_RATE_LIMIT_MATH_H
#define ATHENA_RATE_LIMIT_MATH_H

#include <stdbool.h>
#include <stdint.h>

/*
 * The longest a bucket may hold, burst x interval: 101 years, a year
 * more than the admin functions and the table's CHECK allow, so that the
 * interval's rounding up to the nanosecond never refuses a stored limit;
 * every sum here then stays far below the range of int64.
 */
#define RATE_LIMIT_MAX_TOLERANCE_NS ((int64_t) 3187317600LL * 1000000000LL)

/* The fastest limit: one unit per microsecond */
#define RATE_LIMIT_MIN_INTERVAL_NS 1000

/* The largest cost one request may carry */
#define RATE_LIMIT_MAX_COST 1000000

/* One limit as stored in athena_keys.api_key_rate_limit */
typedef struct RateLimit
{
	uint32_t	table;			/* api_key_rate_limit's OID: a re-created table's ids are new */
	int64_t		id;				/* the row's id: names the bucket with table */
	int32_t		requests;		/* units per period */
	int64_t		per_us;			/* the period, microseconds */
	int32_t		burst;			/* units a full bucket holds */
	int64_t		interval_ns;	/* from RateLimitPrepare */
	int64_t		tolerance_ns;
	uint64_t	subject;		/* hash of the key id or client name it limits:
								 * ids start again after TRUNCATE ... RESTART
								 * IDENTITY, and another key's limit must not
								 * find this one's bucket */
} RateLimit;

/* What one limit says about one request */
typedef struct GcraResult
{
	bool		allowed;
	bool		never;			/* the cost exceeds the burst: never admitted */
	int64_t		new_tat;		/* the bucket's TAT if the request is taken */
	int64_t		retry_after_ns; /* denied: until the cost fits; else 0 */
	int64_t		remaining;		/* units left (after this request if allowed) */
	int64_t		reset_ns;		/* until the bucket is full again */
} GcraResult;

/* What all the limits of one request say together */
typedef struct RateLimitFinding
{
	bool		allowed;		/* every limit admits the request */
	bool		never;			/* some limit can never admit it */
	int64_t		retry_after_ns; /* denied: the longest wait of the denying limits */
	int			tightest;		/* index of the limit to report, -1: none */
} RateLimitFinding;

extern bool RateLimitPrepare(RateLimit *limit);
extern void GcraEvaluate(int64_t tat, int64_t now, const RateLimit *limit, int32_t cost,
						 GcraResult *result);
extern int64_t GcraClampTat(int64_t tat, int64_t now, const RateLimit *limit);
extern bool GcraBucketFull(int64_t tat, int64_t now);
extern void RateLimitCombine(const GcraResult *results, int n, RateLimitFinding *finding);
extern uint32_t RateLimitBucketHash(uint32_t database, uint32_t table, int64_t id,
									int64_t interval_ns, int64_t tolerance_ns, bool shadow);
extern int64_t RateLimitCeilDiv(int64_t value, int64_t unit);

#endif
