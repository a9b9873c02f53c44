/*-------------------------------------------------------------------------
 * rate_limit_rows.c
 *		Rows of athena_keys.api_key_rate_limit as the pure RateLimit that
 *		the key and config caches hold.
 *
 * The key cache reads a key's limits from the table (key_rows.c), the
 * config cache reads the clients' limits row by row through SQL.  Both go
 * through RateLimitFromValues, so a row the table's CHECKs would refuse (it
 * cannot exist, but a damaged row must not divide by zero) applies nowhere.
 *-------------------------------------------------------------------------
 */
#include "rate_limit_rows.h"

#include "common/hashfn.h"

#include "cache_invalidation.h"
#include "decision.h"

/*
 * A limit from its stored values, prepared; false for an impossible one.
 * The limit table's OID names the bucket with the row id: ids start again
 * in a re-created table (DROP and CREATE EXTENSION, a restore with
 * --clean), whose limits must not inherit the old buckets' counts.  The
 * subject's bytes (the key's id, or the client's name) name it too: in the
 * same table ids start again after TRUNCATE ... RESTART IDENTITY.
 */
bool
RateLimitFromValues(int64 id, const void *subject, int subject_len,
					int32 requests, int64 per_us, int32 burst, RateLimit *limit)
{
	limit->table = RateLimitTableOid();
	limit->id = id;
	limit->subject = hash_bytes_extended(subject, subject_len, 0);
	limit->requests = requests;
	limit->per_us = per_us;
	limit->burst = burst;
	return RateLimitPrepare(limit);
}
