/*-------------------------------------------------------------------------
 * test_rate_limit_math.c
 *		Unit tests of rate_limit_math.c: the GCRA arithmetic of the rate
 *		limits (intervals, bursts, costs, waits, saturation, combining).
 *
 * Built and run by make -C test/unit test (see unit_check.h for the output).
 *-------------------------------------------------------------------------
 */
#include "rate_limit_math.h"
#include "unit_check.h"

#define MS 1000000LL
#define SECOND (1000 * MS)

/* A prepared limit of requests per per_us with burst */
static RateLimit
Limit(int32_t requests, int64_t per_us, int32_t burst)
{
	RateLimit	limit = {0, 1, requests, per_us, burst, 0, 0, 0};

	Check(RateLimitPrepare(&limit), "%d per %lld us, burst %d, prepares",
		  requests, (long long) per_us, burst);
	return limit;
}

/* Admit requests of cost 1 at now until one is refused; the number admitted */
static int
AdmitAll(int64_t *tat, int64_t now, const RateLimit *limit)
{
	GcraResult	r;
	int			n = 0;

	for (;;)
	{
		GcraEvaluate(*tat, now, limit, 1, &r);
		if (!r.allowed)
			return n;
		*tat = r.new_tat;
		n++;
	}
}

int
main(void)
{
	RateLimit	ten = Limit(10, 1000000, 20);	/* 10 per second, burst 20 */
	RateLimit	third = Limit(3, 1000000, 3);
	RateLimit	bad = {0, 1, 0, 1000000, 1, 0, 0, 0};
	RateLimit	too_fast = {0, 1, 2000, 1000, 2000, 0, 0, 0};
	RateLimit	huge = {0, 1, 1, 31557600000000LL, 30, 0, 0, 0};	/* 1 a year, burst 30 */
	RateLimit	too_long = {0, 1, 1, 31557600000000LL, 200, 0, 0, 0}; /* 200 years */
	RateLimit	day_burst = {0, 1, 1, 86400000000LL, 100000, 0, 0, 0};	/* 274 years */
	GcraResult	r;
	GcraResult	results[3];
	RateLimitFinding finding;
	int64_t		now = 800000000LL * SECOND;
	int64_t		tat = 0;
	int			admitted;
	int			window;

	/* Intervals and tolerances */
	CHECK(ten.interval_ns == 100 * MS && ten.tolerance_ns == 2 * SECOND);
	CHECK(third.interval_ns == 333333334);	/* rounded up: never more than 3 a second */
	CHECK(!RateLimitPrepare(&bad));
	CHECK(!RateLimitPrepare(&too_fast));
	CHECK(RateLimitPrepare(&huge) && huge.tolerance_ns == 30 * huge.interval_ns);
	CHECK(!RateLimitPrepare(&too_long));	/* a bucket of more than 100 years */
	CHECK(!RateLimitPrepare(&day_burst));

	/* A fresh bucket admits the burst at once, then one per interval */
	admitted = AdmitAll(&tat, now, &ten);
	CHECK(admitted == 20);
	GcraEvaluate(tat, now, &ten, 1, &r);
	CHECK(!r.allowed && !r.never && r.retry_after_ns == 100 * MS && r.remaining == 0);
	CHECK(r.reset_ns == 2 * SECOND && r.new_tat == tat);
	GcraEvaluate(tat, now + 100 * MS - 1, &ten, 1, &r);
	CHECK(!r.allowed && r.retry_after_ns == 1);
	GcraEvaluate(tat, now + 100 * MS, &ten, 1, &r);
	CHECK(r.allowed && r.remaining == 0 && r.retry_after_ns == 0);

	/*
	 * Over many windows: the first second after a burst also takes what
	 * the burst left (19, within rate + burst), every later one the rate.
	 */
	tat = 0;
	admitted = AdmitAll(&tat, now, &ten);
	for (window = 1; window <= 5; window++)
	{
		int			in_window = 0;
		int			step;

		for (step = 0; step < 1000; step++)
			in_window += AdmitAll(&tat, now + window * SECOND + step * MS, &ten);
		Check(in_window == (window == 1 ? 19 : 10), "window %d admits %d", window, in_window);
	}

	/* Remaining and reset of an admitted request */
	tat = 0;
	GcraEvaluate(tat, now, &ten, 1, &r);
	CHECK(r.allowed && r.remaining == 19 && r.reset_ns == 100 * MS && r.new_tat == now + 100 * MS);

	/* Costs */
	GcraEvaluate(0, now, &ten, 20, &r);
	CHECK(r.allowed && r.remaining == 0);
	GcraEvaluate(0, now, &ten, 21, &r);
	CHECK(!r.allowed && r.never && r.retry_after_ns == 0);
	GcraEvaluate(now + SECOND, now, &ten, 5, &r);
	CHECK(r.allowed && r.remaining == 5);
	GcraEvaluate(now + 1800 * MS, now, &ten, 5, &r);
	CHECK(!r.allowed && !r.never && r.retry_after_ns == 300 * MS && r.remaining == 2);
	/* The largest buckets count exactly: 30 a year, then none */
	tat = 0;
	CHECK(AdmitAll(&tat, now, &huge) == 30);
	GcraEvaluate(tat, now, &huge, 1, &r);
	CHECK(!r.allowed && !r.never && r.retry_after_ns == huge.interval_ns && r.remaining == 0);
	GcraEvaluate(0, now, &huge, RATE_LIMIT_MAX_COST, &r);
	CHECK(!r.allowed && r.never && r.retry_after_ns == 0);
	GcraEvaluate(0, now, &huge, 30, &r);
	CHECK(r.allowed && r.remaining == 0 && r.reset_ns == huge.tolerance_ns);
	GcraEvaluate(0, now, &ten, RATE_LIMIT_MAX_COST, &r);
	CHECK(!r.allowed && r.never);

	/*
	 * A clock stepped back an hour: a bucket an hour ahead counts as just
	 * empty, so the wait is at most one interval, never the hour.
	 */
	tat = 0;
	(void) AdmitAll(&tat, now, &ten);
	GcraEvaluate(tat, now - 3600 * SECOND, &ten, 1, &r);
	CHECK(!r.allowed && r.retry_after_ns == 100 * MS && r.reset_ns == ten.tolerance_ns);
	tat = GcraClampTat(tat, now - 3600 * SECOND, &ten);
	CHECK(tat == now - 3600 * SECOND + ten.tolerance_ns);
	CHECK(GcraClampTat(now + SECOND, now, &ten) == now + SECOND);	/* within: unchanged */
	GcraEvaluate(tat, now - 3600 * SECOND + 100 * MS, &ten, 1, &r);
	CHECK(r.allowed && r.new_tat <= now - 3600 * SECOND + 100 * MS + ten.tolerance_ns);

	/* A bucket is as good as fresh once its TAT has passed */
	CHECK(GcraBucketFull(now, now) && GcraBucketFull(now - 1, now));
	CHECK(!GcraBucketFull(now + 1, now));

	/* Combining: the fewest left is reported; a refusal wins, the longest wait */
	GcraEvaluate(0, now, &ten, 1, &results[0]);
	GcraEvaluate(0, now, &third, 1, &results[1]);
	RateLimitCombine(results, 2, &finding);
	CHECK(finding.allowed && finding.tightest == 1 && finding.retry_after_ns == 0);
	GcraEvaluate(now + 2 * SECOND, now, &ten, 1, &results[0]);
	GcraEvaluate(now + SECOND, now, &third, 1, &results[1]);
	GcraEvaluate(0, now, &ten, 1, &results[2]);
	RateLimitCombine(results, 3, &finding);
	CHECK(!finding.allowed && finding.tightest == 1 && finding.retry_after_ns == 333333332);
	GcraEvaluate(0, now, &third, 4, &results[2]);
	RateLimitCombine(results, 3, &finding);
	CHECK(!finding.allowed && finding.never && finding.tightest == 2 && finding.retry_after_ns == 0);
	RateLimitCombine(results, 0, &finding);
	CHECK(finding.allowed && finding.tightest == -1);

	/* Buckets: the same limit hashes alike, a shadow, changed or other database's apart */
	CHECK(RateLimitBucketHash(1, 5, 7, 100, 2000, false) != RateLimitBucketHash(2, 5, 7, 100, 2000, false));
	CHECK(RateLimitBucketHash(1, 5, 7, 100, 2000, false) == RateLimitBucketHash(1, 5, 7, 100, 2000, false));
	CHECK(RateLimitBucketHash(1, 5, 7, 100, 2000, false) != RateLimitBucketHash(1, 5, 7, 100, 2000, true));
	CHECK(RateLimitBucketHash(1, 5, 7, 100, 2000, false) != RateLimitBucketHash(1, 5, 8, 100, 2000, false));
	CHECK(RateLimitBucketHash(1, 5, 7, 100, 2000, false) != RateLimitBucketHash(1, 5, 7, 100, 3000, false));
	CHECK(RateLimitBucketHash(1, 5, 7, 100, 2000, false) != RateLimitBucketHash(1, 6, 7, 100, 2000, false));
	CHECK(RateLimitCeilDiv(10, 3) == 4 && RateLimitCeilDiv(9, 3) == 3 && RateLimitCeilDiv(0, 3) == 0);
	return CheckSummary();
}
