/*-------------------------------------------------------------------------
 * rate_limit_math.c
 *		GCRA arithmetic of the rate limits (pure C); see rate_limit_math.h.
 *
 * A limit holds at most RATE_LIMIT_MAX_TOLERANCE_NS (RateLimitPrepare
 * refuses more), and a bucket is never judged further ahead than its
 * tolerance (a clock that stepped back cannot lock a key out), so every
 * sum and product below stays exact: a request is admitted by counting
 * the whole units that fit, never by comparing a saturated sum.
 *-------------------------------------------------------------------------
 */
#include "rate_limit_math.h"

/* value / unit rounded up, for non-negative value and positive unit */
int64_t
RateLimitCeilDiv(int64_t value, int64_t unit)
{
	return value / unit + (value % unit != 0);
}

/*
 * Derive a limit's interval and tolerance from what is stored.  The
 * interval is rounded up to the nanosecond, so a limit admits at most
 * what it says, never more; false for a limit the table's CHECKs would
 * refuse (it then applies nowhere).
 */
bool
RateLimitPrepare(RateLimit *limit)
{
	if (limit->requests < 1 || limit->burst < 1 || limit->per_us < 1 ||
		limit->per_us > RATE_LIMIT_MAX_TOLERANCE_NS / 1000)
		return false;
	limit->interval_ns = RateLimitCeilDiv(limit->per_us * 1000, limit->requests);
	if (limit->interval_ns < RATE_LIMIT_MIN_INTERVAL_NS ||
		limit->burst > RATE_LIMIT_MAX_TOLERANCE_NS / limit->interval_ns)
		return false;
	limit->tolerance_ns = limit->burst * limit->interval_ns;
	return true;
}

/*
 * What one limit, whose bucket stands at tat, says about a request of cost
 * units at now.  A bucket behind now is as good as a full one, and one
 * further ahead than its tolerance (only a clock stepped back puts it
 * there) counts as just empty.  A request is admitted when its units fit
 * in what the bucket holds; one costing more than the burst never is.
 * Remaining counts whole units: those left after this request when
 * admitted, those available now when not.
 */
void
GcraEvaluate(int64_t tat, int64_t now, const RateLimit *limit, int32_t cost,
			 GcraResult *result)
{
	int64_t		ahead_before = tat > now ? tat - now : 0;
	int64_t		room;
	int64_t		ahead_after;

	if (ahead_before > limit->tolerance_ns)
		ahead_before = limit->tolerance_ns;
	room = limit->tolerance_ns - ahead_before;
	result->never = cost > limit->tolerance_ns / limit->interval_ns;
	result->allowed = !result->never && cost <= room / limit->interval_ns;
	/* cost x interval <= tolerance whenever it is used below */
	ahead_after = result->never ? limit->tolerance_ns :
		ahead_before + (int64_t) cost * limit->interval_ns;
	if (result->allowed)
	{
		result->new_tat = now + ahead_after;
		result->retry_after_ns = 0;
		result->remaining = (limit->tolerance_ns - ahead_after) / limit->interval_ns;
		result->reset_ns = ahead_after;
	}
	else
	{
		result->new_tat = tat;
		result->retry_after_ns = result->never ? 0 : ahead_after - limit->tolerance_ns;
		result->remaining = room / limit->interval_ns;
		result->reset_ns = ahead_before;
	}
}

/*
 * A bucket's TAT as it may stand at now: never further ahead than the
 * tolerance.  Only a clock that stepped back puts it there; stored back
 * (refused or not), the bucket then fills again at its rate instead of
 * waiting for the clock to catch up.
 */
int64_t
GcraClampTat(int64_t tat, int64_t now, const RateLimit *limit)
{
	return tat - now > limit->tolerance_ns ? now + limit->tolerance_ns : tat;
}

/*
 * Whether a bucket standing at tat is full again at now, and so no
 * different from a fresh one: its entry may be given to another bucket.
 */
bool
GcraBucketFull(int64_t tat, int64_t now)
{
	return tat <= now;
}

/*
 * Combine the results of every limit of one request: it is admitted when
 * each admits it.  The limit reported is, for an admitted request, the one
 * with the fewest units left (the longest reset among equals); for a
 * refused one, the refusing limit with the longest wait.
 */
void
RateLimitCombine(const GcraResult *results, int n, RateLimitFinding *finding)
{
	int			i;

	finding->allowed = true;
	finding->never = false;
	finding->retry_after_ns = 0;
	finding->tightest = -1;
	for (i = 0; i < n; i++)
	{
		const GcraResult *r = &results[i];

		if (!r->allowed)
		{
			bool		first_refusal = finding->allowed;

			finding->allowed = false;
			finding->never |= r->never;
			if (first_refusal || r->never ||
				(!finding->never && r->retry_after_ns > finding->retry_after_ns))
			{
				finding->retry_after_ns = r->retry_after_ns;
				finding->tightest = i;
			}
		}
		else if (finding->allowed &&
				 (finding->tightest < 0 || r->remaining < results[finding->tightest].remaining ||
				  (r->remaining == results[finding->tightest].remaining &&
				   r->reset_ns > results[finding->tightest].reset_ns)))
			finding->tightest = i;
	}
	if (finding->never)
		finding->retry_after_ns = 0;
}

/*
 * The hash of a bucket: its database (row ids repeat across databases),
 * the limit table's OID (a re-created table's ids start again), its
 * limit's row and parameters (a changed limit starts a new bucket) and
 * whether it counts shadow-mode requests.  splitmix64's finalizer, so that
 * consecutive ids spread over the table.
 */
uint32_t
RateLimitBucketHash(uint32_t database, uint32_t table, int64_t id, int64_t interval_ns,
					int64_t tolerance_ns, bool shadow)
{
	uint64_t	x = ((uint64_t) id ^ ((uint64_t) database << 40)) * 0x9E3779B97F4A7C15ULL;

	x ^= (uint64_t) table + 0x2545F4914F6CDD1DULL + (x << 6) + (x >> 2);
	x ^= (uint64_t) interval_ns + 0x632BE59BD9B4E019ULL + (x << 6) + (x >> 2);
	x ^= (uint64_t) tolerance_ns + 0x8CB92BA72F3D8DD7ULL + (x << 6) + (x >> 2);
	x ^= shadow ? 0xD6E8FEB86659FD93ULL : 0;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	x ^= x >> 31;
	return (uint32_t) (x ^ (x >> 32));
}
