/*-------------------------------------------------------------------------
 * rate_limit_math.c
 *		GCRA arithmetic of the rate limits (pure C); see rate_limit_math.h.
 *
 * Every sum and product saturates at GCRA_TIME_CEILING, so that no stored
 * limit and no cost can overflow a bucket's time: a bucket that far ahead
 * is simply never admitted again, which is the truth for any request
 * made within the lifetime of the server.
 *-------------------------------------------------------------------------
 */
#include "rate_limit_math.h"

/* a + b for non-negative a and b, saturated */
static int64_t
SaturatingAdd(int64_t a, int64_t b)
{
	return a > GCRA_TIME_CEILING - b ? GCRA_TIME_CEILING : a + b;
}

/* a * b for non-negative a and b, saturated */
static int64_t
SaturatingMul(int64_t a, int64_t b)
{
	if (a == 0 || b == 0)
		return 0;
	return a > GCRA_TIME_CEILING / b ? GCRA_TIME_CEILING : a * b;
}

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
		limit->per_us > GCRA_TIME_CEILING / 1000)
		return false;
	limit->interval_ns = RateLimitCeilDiv(limit->per_us * 1000, limit->requests);
	if (limit->interval_ns < RATE_LIMIT_MIN_INTERVAL_NS)
		return false;
	limit->tolerance_ns = SaturatingMul(limit->burst, limit->interval_ns);
	return true;
}

/*
 * What one limit, whose bucket stands at tat, says about a request of cost
 * units at now.  A bucket behind now is as good as a full one; a request
 * is admitted when its units fit within the tolerance.  Remaining counts
 * whole units: those left after this request when admitted, those
 * available now when not.
 */
void
GcraEvaluate(int64_t tat, int64_t now, const RateLimit *limit, int32_t cost,
			 GcraResult *result)
{
	int64_t		base = tat > now ? tat : now;
	int64_t		ahead_before = base - now;
	int64_t		increment = SaturatingMul(cost, limit->interval_ns);
	int64_t		ahead_after = SaturatingAdd(ahead_before, increment);

	result->never = increment > limit->tolerance_ns;
	result->allowed = ahead_after <= limit->tolerance_ns;
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
		result->remaining = ahead_before >= limit->tolerance_ns ? 0 :
			(limit->tolerance_ns - ahead_before) / limit->interval_ns;
		result->reset_ns = ahead_before;
	}
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
 * its limit's row and parameters (a changed limit starts a new bucket) and
 * whether it counts shadow-mode requests.  splitmix64's finalizer, so that
 * consecutive ids spread over the table.
 */
uint32_t
RateLimitBucketHash(uint32_t database, int64_t id, int64_t interval_ns, int64_t tolerance_ns,
					bool shadow)
{
	uint64_t	x = ((uint64_t) id ^ ((uint64_t) database << 40)) * 0x9E3779B97F4A7C15ULL;

	x ^= (uint64_t) interval_ns + 0x632BE59BD9B4E019ULL + (x << 6) + (x >> 2);
	x ^= (uint64_t) tolerance_ns + 0x8CB92BA72F3D8DD7ULL + (x << 6) + (x >> 2);
	x ^= shadow ? 0xD6E8FEB86659FD93ULL : 0;
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
	x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
	x ^= x >> 31;
	return (uint32_t) (x ^ (x >> 32));
}
