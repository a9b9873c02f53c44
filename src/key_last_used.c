/*-------------------------------------------------------------------------
 * key_last_used.c
 *		api_key.last_used_at kept within athena_keys.last_used_interval of
 *		the truth without writing the key row on every call.
 *
 * A call stamps only when the cached value says the stamp is due.  When
 * athena_keys is preloaded the call hands the stamp to the log writer
 * (last_used_queue.c), which applies the stamps of all keys due in one
 * statement per batch: an UPDATE of api_key compiles the row's CHECK
 * constraints at every execution, which cost a call many times its
 * decision.  Where the queue cannot take it, the call stamps with an
 * UPDATE of its own.  Where the call cannot write, the log writer stamps
 * it for the queued row.
 *-------------------------------------------------------------------------
 */
#include "key_last_used.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "athena_keys.h"
#include "cache_invalidation.h"
#include "last_used_queue.h"
#include "log_queue.h"
#include "shared_key_cache.h"
#include "spi_plans.h"

static SPIPlanPtr last_used_plan = NULL;

/* Whether this call has to stamp the key's last_used_at */
bool
KeyLastUsedStampDue(const CachedKey *key, TimestampTz now)
{
	return key->last_used_at == 0 ||
		now - key->last_used_at >= (int64) athena_last_used_interval * USECS_PER_SEC;
}

/*
 * Stamp the key's last_used_at (the caller holds the owner's rights).
 * SKIP LOCKED: a call never waits for another one stamping the same key.
 */
void
TouchKeyLastUsed(CachedKey *key, TimestampTz now)
{
	Datum		args[2];

	EnsureSpiConnected();
	if (last_used_plan == NULL)
	{
		Oid			argtypes[2] = {UUIDOID, INT4OID};

		last_used_plan = PrepareKeptPlan(
			"UPDATE athena_keys.api_key SET last_used_at = pg_catalog.now() "
			" WHERE id OPERATOR(pg_catalog.=) "
			"       (SELECT id FROM athena_keys.api_key "
			"         WHERE id OPERATOR(pg_catalog.=) $1 "
			"           AND (last_used_at IS NULL OR "
			"                last_used_at OPERATOR(pg_catalog.<) "
			"                (pg_catalog.now() OPERATOR(pg_catalog.-) "
			"                 pg_catalog.make_interval(secs => $2))) "
			"           FOR UPDATE SKIP LOCKED)",
			2, argtypes, 0);
	}
	args[0] = UUIDPGetDatum(&key->id);
	args[1] = Int32GetDatum(athena_last_used_interval);
	if (ExecuteKeptPlan(last_used_plan, args, NULL, 0) != SPI_OK_UPDATE)
		elog(ERROR, "athena_keys: updating last_used_at failed");
	key->last_used_at = now;
	SharedKeyCacheNoteUse(key, KeyTableOid());
}

/*
 * Hand a due stamp to the log writer instead of updating the key row in
 * the call; false when the queue cannot take it and the call must stamp
 * itself (TouchKeyLastUsed).
 */
bool
QueueKeyLastUsed(CachedKey *key, TimestampTz now)
{
	switch (QueueLastUse(KeyTableOid(), &key->id, now))
	{
		case LAST_USE_NOT_QUEUED:
			return false;
		case LAST_USE_RESERVED:

			/*
			 * Reserved first, then the writer: a writer leaving meanwhile
			 * either saw the reservation and stayed, or is gone and a new
			 * one starts.
			 */
			if (!LogQueueEnsureWriter())
			{
				ReleaseLatestLastUse();
				return false;
			}
			break;
		case LAST_USE_HELD:
			break;
	}
	key->last_used_at = now;
	SharedKeyCacheNoteUse(key, KeyTableOid());
	return true;
}

/*
 * The writer's statement for a batch of stamps, those of the stamp queue
 * and those carried by queued log rows alike: the latest use per key,
 * never backwards, rows locked in key order and skipped when another
 * transaction holds them (a later use stamps them), so the writer never
 * waits for an admin's open transaction.  A deleted key matches no row.
 */
void
StampLastUseBatch(Datum *ids, Datum *used_at, int n)
{
	static SPIPlanPtr batch_plan = NULL;
	Datum		args[2];

	if (n == 0)
		return;
	if (batch_plan == NULL)
	{
		Oid			argtypes[2] = {UUIDARRAYOID, TIMESTAMPTZARRAYOID};

		batch_plan = PrepareKeptPlan(
			"WITH u AS (SELECT x.id, pg_catalog.max(x.t) AS used_at "
			"             FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS x(id, t) "
			"            GROUP BY x.id), "
			"     due AS (SELECT k.id, u.used_at FROM athena_keys.api_key k, u "
			"              WHERE k.id OPERATOR(pg_catalog.=) u.id "
			"                AND (k.last_used_at IS NULL OR k.last_used_at OPERATOR(pg_catalog.<) u.used_at) "
			"              ORDER BY k.id FOR UPDATE OF k SKIP LOCKED) "
			"UPDATE athena_keys.api_key k SET last_used_at = due.used_at "
			"  FROM due WHERE k.id OPERATOR(pg_catalog.=) due.id",
			2, argtypes, 0);
	}
	args[0] = PointerGetDatum(construct_array(ids, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	args[1] = PointerGetDatum(construct_array(used_at, n, TIMESTAMPTZOID, sizeof(TimestampTz),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (ExecuteKeptPlan(batch_plan, args, NULL, 0) != SPI_OK_UPDATE)
		elog(ERROR, "athena_keys: stamping queued last_used_at failed");
}

/*
 * Stamp ids[0, n) in a subtransaction; false when the UPDATE raised (a
 * WARNING says why when one key was stamped alone).  A key row whose
 * UPDATE fails (a CHECK added NOT VALID that the row breaks, an
 * operator's trigger) would otherwise fail the writer's every batch: the
 * writer exits, the stamps stay queued, and no key of the database is
 * stamped again.
 */
static bool
TryStampLastUseBatch(Datum *ids, Datum *used_at, int n)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool stamped = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		StampLastUseBatch(ids, used_at, n);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		if (n == 1)
			ereport(WARNING,
					(errcode(edata->sqlerrcode),
					 errmsg("athena_keys could not stamp last_used_at of key %s: %s",
							DatumGetCString(DirectFunctionCall1(uuid_out, ids[0])),
							edata->message),
					 errdetail("The stamp was discarded; the other keys' stamps were applied."),
					 errhint("Fix the cause above; the key's next due use queues a stamp again.")));
		FreeErrorData(edata);
		stamped = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	CurrentResourceOwner = owner;
	return stamped;
}

/*
 * The log writer's turn at the stamps queued for its database: apply them
 * all in one statement, in a transaction of its own; when that statement
 * fails, each key alone, so that only the stamps that fail are lost.  Stamps for another
 * api_key table than today's (the extension was dropped, maybe created
 * again) are discarded.  Returns whether there were any.
 */
bool
ApplyQueuedLastUse(void)
{
	static LastUseStamp *stamps = NULL;
	static Datum *ids = NULL;
	static Datum *times = NULL;
	int			n;
	int			m = 0;
	int			i;
	Oid			schema;
	Oid			relid;

	if (stamps == NULL)
	{
		stamps = MemoryContextAlloc(TopMemoryContext,
									LAST_USED_QUEUE_ENTRIES * sizeof(LastUseStamp));
		ids = MemoryContextAlloc(TopMemoryContext, LAST_USED_QUEUE_ENTRIES * sizeof(Datum));
		times = MemoryContextAlloc(TopMemoryContext, LAST_USED_QUEUE_ENTRIES * sizeof(Datum));
	}
	n = LastUseQueueTake(MyDatabaseId, stamps, LAST_USED_QUEUE_ENTRIES);
	if (n == 0)
		return false;
	if (RecoveryInProgress())
	{
		/* Only a primary's calls queue stamps; nothing can apply them here */
		LastUseQueueApplied(MyDatabaseId, stamps, n);
		return true;
	}

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "athena_keys: stamping last_used_at");
	schema = get_namespace_oid("athena_keys", true);
	relid = OidIsValid(schema) ? get_relname_relid("api_key", schema) : InvalidOid;
	for (i = 0; i < n; i++)
	{
		if (stamps[i].relid != relid)
			continue;
		ids[m] = UUIDPGetDatum(&stamps[i].id);
		times[m] = TimestampTzGetDatum(stamps[i].used_at);
		m++;
	}
	if (m > 0)
	{
		/* Connected outside the subtransactions, so that their aborts keep SPI */
		EnsureSpiConnected();
		if (!TryStampLastUseBatch(ids, times, m) && m > 1)
			for (i = 0; i < m; i++)
				(void) TryStampLastUseBatch(&ids[i], &times[i], 1);
	}
	ResetSpiConnection();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);

	LastUseQueueApplied(MyDatabaseId, stamps, n);
	return true;
}
