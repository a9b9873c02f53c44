/*-------------------------------------------------------------------------
 * rate_limit_rows.c
 *		Rows of athena_keys.api_key_rate_limit as the pure RateLimit that
 *		the key and config caches hold.
 *
 * The key cache reads a key's limits in its one statement, as a bigint[]
 * of (id, requests, per in microseconds, burst) groups; the config cache
 * reads the clients' limits row by row.  Both go through
 * RateLimitFromValues, so a row the table's CHECKs would refuse (it cannot
 * exist, but a damaged row must not divide by zero) applies nowhere.
 *-------------------------------------------------------------------------
 */
#include "rate_limit_rows.h"

#include "catalog/pg_type.h"
#include "utils/array.h"

#include "cache_invalidation.h"
#include "decision.h"

/*
 * A limit from its stored values, prepared; false for an impossible one.
 * The limit table's OID names the bucket with the row id: ids start again
 * in a re-created table (DROP and CREATE EXTENSION, a restore with
 * --clean), whose limits must not inherit the old buckets' counts.
 */
bool
RateLimitFromValues(int64 id, int32 requests, int64 per_us, int32 burst, RateLimit *limit)
{
	limit->table = RateLimitTableOid();
	limit->id = id;
	limit->requests = requests;
	limit->per_us = per_us;
	limit->burst = burst;
	return RateLimitPrepare(limit);
}

/*
 * The limits of a flat bigint[] of (id, requests, per_us, burst) groups,
 * allocated in target; *limits is NULL when there are none.
 */
void
RateLimitsFromFlatArray(Datum array, RateLimit **limits, int *n, MemoryContext target)
{
	ArrayType  *arr = DatumGetArrayTypeP(array);
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			i;
	int			kept = 0;

	deconstruct_array(arr, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, &nelems);
	*limits = nelems >= 4 ? MemoryContextAlloc(target, sizeof(RateLimit) * (nelems / 4)) : NULL;
	for (i = 0; i + 3 < nelems; i += 4)
	{
		if (nulls[i] || nulls[i + 1] || nulls[i + 2] || nulls[i + 3])
			continue;
		if (RateLimitFromValues(DatumGetInt64(elems[i]), (int32) DatumGetInt64(elems[i + 1]),
								DatumGetInt64(elems[i + 2]), (int32) DatumGetInt64(elems[i + 3]),
								&(*limits)[kept]))
			kept++;
	}
	*n = kept;
}
