/*-------------------------------------------------------------------------
 * rate_limit.c
 *		The rate limit buckets: a fixed table in shared memory, one entry
 *		per (limit, enforced or shadow) holding its theoretical arrival
 *		time, and the consumption of one request's units.
 *
 * A bucket belongs to one limit row of one database (row ids repeat
 * across databases).  A request's limits are all judged, and then all consumed or none, while
 * the locks of their partitions are held, taken in ascending order: a
 * request refused by any limit takes nothing from the others, two
 * backends can never both take a bucket's last unit, and no two requests
 * can deadlock.  Nothing is written to a table, so a limit costs no WAL,
 * no row lock and no XID, and a hot standby enforces its own counts.
 *
 * The table is sized at server start (athena_keys.rate_limit_entries) and
 * never grows: a bucket is placed within a short probe window of its
 * partition, in an empty entry or one whose bucket is full again (its TAT
 * has passed, so it is no different from a fresh one).  When neither is
 * left, the request is answered "API key policy unavailable" under the
 * fail mode and a WARNING (at most one every 10 seconds per server) says
 * why.  Without athena_keys in shared_preload_libraries there is no table,
 * and every request a limit applies to gets the same answer.  Counts start
 * again when the server restarts.
 *
 * Shadow mode counts in buckets of its own: the finding is what
 * enforcement would have found, yet no unit taken while enforcement is
 * off counts against a request once it is on.
 *-------------------------------------------------------------------------
 */
#include "rate_limit.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include <time.h>

#include "settings.h"

#define RATE_LIMIT_TRANCHE "athena_keys rate limits"
#define RATE_LIMIT_MAX_PARTITIONS 64
#define RATE_LIMIT_ENTRIES_PER_PARTITION 256
#define RATE_LIMIT_PROBE 64
#define RATE_LIMIT_WARNING_INTERVAL_US (10 * USECS_PER_SEC)
#define RATE_LIMIT_STACK_LIMITS 8

/* One bucket; limit_id 0 marks an entry never used */
typedef struct RateBucket
{
	Oid			database;		/* limit ids are per database */
	Oid			table;			/* and per api_key_rate_limit, re-created or not */
	int64		limit_id;
	uint64		subject;		/* the key or client the limit is of */
	int64		interval_ns;
	int64		tolerance_ns;
	int64		tat;			/* nanoseconds of CLOCK_MONOTONIC */
	bool		shadow;
} RateBucket;

typedef struct RateLimitShared
{
	int			npartitions;
	int			partition_size;
	pg_atomic_uint64 last_full_warning; /* microseconds, CLOCK_MONOTONIC */
	LWLockPadded *locks;
	RateBucket	buckets[FLEXIBLE_ARRAY_MEMBER];
} RateLimitShared;

static RateLimitShared *rate_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* How many partitions (each with its lock) the setting's entries make */
static int
RateLimitPartitions(void)
{
	int			n = athena_rate_limit_entries / RATE_LIMIT_ENTRIES_PER_PARTITION;

	return Max(1, Min(RATE_LIMIT_MAX_PARTITIONS, n));
}

/* The table's shared memory */
static Size
RateLimitShmemSize(void)
{
	return add_size(offsetof(RateLimitShared, buckets),
					mul_size(athena_rate_limit_entries, sizeof(RateBucket)));
}

/* Ask for the table and one lock per partition */
static void
RateLimitShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(RateLimitShmemSize());
	RequestNamedLWLockTranche(RATE_LIMIT_TRANCHE, RateLimitPartitions());
}

/* Create (or attach to) the table; every entry starts unused */
static void
RateLimitShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	rate_shared = ShmemInitStruct(RATE_LIMIT_TRANCHE, RateLimitShmemSize(), &found);
	if (!found)
	{
		memset(rate_shared, 0, RateLimitShmemSize());
		rate_shared->npartitions = RateLimitPartitions();
		rate_shared->partition_size = athena_rate_limit_entries / rate_shared->npartitions;
		pg_atomic_init_u64(&rate_shared->last_full_warning, 0);
		rate_shared->locks = GetNamedLWLockTranche(RATE_LIMIT_TRANCHE);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Called from _PG_init: while shared_preload_libraries is processed,
 * install the shared memory hooks; otherwise there is no table.
 */
void
InitRateLimits(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = RateLimitShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = RateLimitShmemStartup;
}

/* Whether bucket b is the one of limit in this mode */
static bool
BucketIs(const RateBucket *b, const RateLimit *limit, bool shadow)
{
	return b->limit_id == limit->id && b->database == MyDatabaseId &&
		b->table == limit->table && b->subject == limit->subject &&
		b->interval_ns == limit->interval_ns &&
		b->tolerance_ns == limit->tolerance_ns && b->shadow == shadow;
}

/*
 * The bucket of limit in its partition (whose lock is held), placed in
 * the first free entry of its probe window when it has none: an unused
 * entry ends the search, since entries are never emptied and a bucket is
 * always placed in the first free one.  An entry another limit of this
 * request was just given is not free.  NULL when the window is full.
 */
static RateBucket *
FindBucket(const RateLimit *limit, bool shadow, uint32 hash, int64 now,
		   RateBucket *const *taken, int ntaken)
{
	int			partition = hash % rate_shared->npartitions;
	int			size = rate_shared->partition_size;
	RateBucket *first = &rate_shared->buckets[(Size) partition * size];
	int			start = (hash / rate_shared->npartitions) % size;
	RateBucket *free_entry = NULL;
	int			i;
	int			j;

	for (i = 0; i < Min(RATE_LIMIT_PROBE, size); i++)
	{
		RateBucket *b = &first[(start + i) % size];
		bool		is_taken = false;

		if (b->limit_id == 0)
		{
			if (free_entry == NULL)
				free_entry = b;
			break;
		}
		if (BucketIs(b, limit, shadow))
			return b;
		for (j = 0; j < ntaken; j++)
			is_taken |= taken[j] == b;
		if (free_entry == NULL && !is_taken && GcraBucketFull(b->tat, now))
			free_entry = b;
	}
	if (free_entry != NULL)
	{
		free_entry->limit_id = limit->id;
		free_entry->database = MyDatabaseId;
		free_entry->table = limit->table;
		free_entry->subject = limit->subject;
		free_entry->interval_ns = limit->interval_ns;
		free_entry->tolerance_ns = limit->tolerance_ns;
		free_entry->shadow = shadow;
		free_entry->tat = now;
	}
	return free_entry;
}

/*
 * Now, in nanoseconds of the system's monotonic clock: a wall clock that
 * steps (NTP, an operator) must neither lock keys out nor let them burst,
 * and the buckets only ever compare times of one boot.
 */
static int64
MonotonicNanoseconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Warn that the table is full, at most once per interval for the server */
static void
WarnTableFull(void)
{
	int64		now = MonotonicNanoseconds() / 1000;
	uint64		last = pg_atomic_read_u64(&rate_shared->last_full_warning);

	if ((last != 0 && now - (int64) last < RATE_LIMIT_WARNING_INTERVAL_US) ||
		!pg_atomic_compare_exchange_u64(&rate_shared->last_full_warning, &last, (uint64) now))
		return;
	ereport(WARNING,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("athena_keys rate limit table is full"),
			 errdetail("Every entry a limit could use holds a bucket that is not full again, so requests with that limit were answered \"API key policy unavailable\" under the fail mode."),
			 errhint("Raise athena_keys.rate_limit_entries (it takes effect at the next server start).")));
}

/*
 * Add partition to the ascending list of the n distinct partitions a
 * request locks (a request has a handful of limits: insertion is cheaper
 * than a pass over every partition).
 */
static int
AddPartition(int *partitions, int n, int partition)
{
	int			i = n;

	while (i > 0 && partitions[i - 1] > partition)
		i--;
	if (i > 0 && partitions[i - 1] == partition)
		return n;
	memmove(&partitions[i + 1], &partitions[i], sizeof(int) * (n - i));
	partitions[i] = partition;
	return n + 1;
}

/* Round nanoseconds up to milliseconds */
static int64
CeilMs(int64 ns)
{
	return RateLimitCeilDiv(ns, 1000000);
}

/* The report of a finding: the verdict and the tightest limit's figures */
static void
ReportFinding(const RateLimitFinding *finding, const RateLimit *const *limits,
			  const GcraResult *results, RateLimitReport *report)
{
	const GcraResult *tight = &results[finding->tightest];

	report->verdict = finding->allowed ? RATE_LIMIT_PASSED : RATE_LIMIT_EXCEEDED;
	report->has_retry_after = !finding->allowed && !finding->never;
	report->retry_after_ms = CeilMs(finding->retry_after_ns);
	report->has_tightest = true;
	report->limit = limits[finding->tightest]->requests;
	report->remaining = (int32) Min(tight->remaining, PG_INT32_MAX);
	report->reset_ms = CeilMs(tight->reset_ns);
}

/*
 * Judge a request of cost units against the key's and its client's limits
 * and, when every one admits it, consume the units from each; see the file
 * header.  shadow counts in the shadow-mode buckets.
 */
void
ConsumeRateLimits(const RateLimit *key_limits, int nkey,
				  const RateLimit *client_limits, int nclient,
				  int32 cost, bool shadow, RateLimitReport *report)
{
	const RateLimit *stack_limits[RATE_LIMIT_STACK_LIMITS];
	uint32		stack_hashes[RATE_LIMIT_STACK_LIMITS];
	RateBucket *stack_buckets[RATE_LIMIT_STACK_LIMITS];
	GcraResult	stack_results[RATE_LIMIT_STACK_LIMITS];
	int			stack_partitions[RATE_LIMIT_STACK_LIMITS];
	int			n = nkey + nclient;
	const RateLimit **limits = stack_limits;
	uint32	   *hashes = stack_hashes;
	RateBucket **buckets = stack_buckets;
	GcraResult *results = stack_results;
	int		   *partitions = stack_partitions;
	int			npartitions = 0;
	RateLimitFinding finding;
	bool		full = false;
	int64		now;
	int			i;

	memset(report, 0, sizeof(*report));
	if (rate_shared == NULL)
	{
		report->verdict = RATE_LIMIT_UNAVAILABLE;
		return;
	}
	if (n > RATE_LIMIT_STACK_LIMITS)
	{
		limits = palloc(sizeof(*limits) * n);
		hashes = palloc(sizeof(*hashes) * n);
		buckets = palloc(sizeof(*buckets) * n);
		results = palloc(sizeof(*results) * n);
		partitions = palloc(sizeof(*partitions) * n);
	}
	for (i = 0; i < n; i++)
	{
		limits[i] = i < nkey ? &key_limits[i] : &client_limits[i - nkey];
		hashes[i] = RateLimitBucketHash(MyDatabaseId, limits[i]->table, limits[i]->id,
										limits[i]->interval_ns, limits[i]->tolerance_ns, shadow);
		npartitions = AddPartition(partitions, npartitions,
								   hashes[i] % rate_shared->npartitions);
	}

	/* Every partition involved, in ascending order */
	for (i = 0; i < npartitions; i++)
		LWLockAcquire(&rate_shared->locks[partitions[i]].lock, LW_EXCLUSIVE);
	now = MonotonicNanoseconds();
	for (i = 0; i < n && !full; i++)
	{
		buckets[i] = FindBucket(limits[i], shadow, hashes[i], now, buckets, i);
		full = buckets[i] == NULL;
		if (!full)
		{
			buckets[i]->tat = GcraClampTat(buckets[i]->tat, now, limits[i]);
			GcraEvaluate(buckets[i]->tat, now, limits[i], cost, &results[i]);
		}
	}
	if (!full)
	{
		RateLimitCombine(results, n, &finding);
		if (finding.allowed)
			for (i = 0; i < n; i++)
				buckets[i]->tat = results[i].new_tat;
	}
	for (i = npartitions - 1; i >= 0; i--)
		LWLockRelease(&rate_shared->locks[partitions[i]].lock);

	if (full)
	{
		report->verdict = RATE_LIMIT_UNAVAILABLE;
		WarnTableFull();
		return;
	}
	ReportFinding(&finding, limits, results, report);
}
