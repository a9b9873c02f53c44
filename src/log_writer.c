/*-------------------------------------------------------------------------
 * log_writer.c
 *		The log writer: a background worker per database that drains its
 *		ring of the log queue (log_queue.c) in batches.
 *
 * Every athena_keys.async_flush_interval (or when a backend finds the ring
 * half full) the writer inserts everything queued in one transaction and
 * stamps last_used_at where a record asks for it, then applies the due
 * last_used_at stamps calls queued (key_last_used.c); on a hot standby it
 * ships the batch to the primary instead (log_shipping.c), and after
 * promotion it inserts locally again.  It advances the ring only after its
 * batch committed, so a failed batch is retried.
 *
 * A writer that finds nothing to do for a second exits and frees its slot
 * (an idle connection would keep its database from being dropped); the
 * next backend that queues starts a new one.  Writers are never restarted
 * by the postmaster: after a crash shared memory is new, and the slot a
 * restarted writer would serve no longer exists.
 *
 * Loss window: rows not yet inserted (at most one flush interval plus one
 * batch) are lost if the server crashes.  On SIGTERM (any clean shutdown)
 * the writer keeps draining until the ring is empty and no reservation is
 * outstanding.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"
#include "key_last_used.h"
#include "log_row.h"
#include "log_insert.h"
#include "log_batch_insert.h"
#include "log_queue.h"
#include "log_record.h"
#include "log_shipping.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

PGDLLEXPORT void athena_log_writer_main(Datum main_arg);

static volatile sig_atomic_t worker_got_sigterm = false;
static char *worker_database_name = NULL;
static int	writer_slot = -1;
static uint64 writer_generation = 0;
static bool writer_connected = false;
static bool writer_released = false;

/*
 * The writer's working memory, kept for its life: the drained bytes, and
 * a context for one statement's rows whose first block outlives resets,
 * so that a busy writer does not pay for fresh memory at every drain.
 */
static char *drain_buffer = NULL;
static Size drain_buffer_size = 0;
static MemoryContext chunk_context = NULL;

#define CHUNK_CONTEXT_KEEP (512 * 1024)

/* SIGTERM: finish the queue, then exit */
static void
WriterSigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	worker_got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * Insert the queued records of buffer[0, len) as log rows,
 * LOG_INSERT_MAX_ROWS at a time (straight into the partitions, or through
 * the statement where the log needs it), in the current transaction, and
 * stamp last use where a record asks for it
 */
static void
InsertRecords(const char *buffer, uint64 len)
{
	Datum		values[LOG_INSERT_MAX_ROWS * LOG_COLUMNS];
	bool		nulls[LOG_INSERT_MAX_ROWS * LOG_COLUMNS];
	Datum		stamp_ids[LOG_INSERT_MAX_ROWS];
	Datum		stamp_times[LOG_INSERT_MAX_ROWS];
	int			nstamps = 0;
	MemoryContext old;
	uint64		pos = 0;
	int			nrows = 0;

	/* Connect first: SPI returns to the context current at connection */
	EnsureSpiConnected();
	if (chunk_context == NULL)
		chunk_context = AllocSetContextCreate(TopMemoryContext,
											  "athena_keys log chunk",
											  CHUNK_CONTEXT_KEEP,
											  CHUNK_CONTEXT_KEEP,
											  ALLOCSET_DEFAULT_MAXSIZE);
	old = MemoryContextSwitchTo(chunk_context);
	while (pos < len)
	{
		Datum	   *row_values = &values[nrows * LOG_COLUMNS];
		bool	   *row_nulls = &nulls[nrows * LOG_COLUMNS];
		uint16		flags = DecodeLogRecord(buffer + pos, row_values, row_nulls);

		if ((flags & LOG_RECORD_STAMP_LAST_USED) && !row_nulls[LOG_COL_API_KEY_ID])
		{
			stamp_ids[nstamps] = row_values[LOG_COL_API_KEY_ID];
			stamp_times[nstamps] = row_values[LOG_COL_CREATED_AT];
			nstamps++;
		}
		nrows++;
		pos += LogRecordLength(buffer + pos);
		if (nrows == LOG_INSERT_MAX_ROWS || pos >= len)
		{
			if (!InsertLogBatch(values, nulls, nrows, true))
				InsertLogRows(values, nulls, nrows);
			StampLastUseBatch(stamp_ids, stamp_times, nstamps);
			nrows = 0;
			nstamps = 0;
			MemoryContextReset(chunk_context);
		}
	}
	MemoryContextSwitchTo(old);
}

/*
 * Whether the log is there to insert into: false only when the extension
 * itself is gone (its queued rows are then discarded).  A log or schema
 * renamed away while the extension is installed is an error, so that the
 * writer stops and the rows stay queued until an operator puts it back,
 * as they stay for a row the log refuses.
 */
static bool
LogTableExists(void)
{
	Oid			schema;

	if (!OidIsValid(get_extension_oid("athena_keys", true)))
		return false;
	schema = get_namespace_oid("athena_keys", true);
	if (!OidIsValid(schema) || !OidIsValid(get_relname_relid("api_key_auth_log", schema)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("athena_keys log writer cannot find table athena_keys.api_key_auth_log"),
				 errdetail("The extension is installed, but its schema or its log table has been renamed or dropped; "
						   "the queued decisions are kept."),
				 errhint("Rename the schema or the table back to athena_keys.api_key_auth_log; "
						 "the writer then inserts the queued decisions.")));
	return true;
}

/*
 * Insert everything queued so far in one transaction (on a hot standby:
 * send it to the primary), then release it from the ring.  Returns the bytes
 * drained, 0 when the primary did not take them.  Rows of a database whose
 * extension was dropped are discarded (LogTableExists).
 */
static uint64
DrainSlot(int slot)
{
	uint64		start;
	uint64		end;
	char	   *buffer;
	bool		delivered = true;

	if (!LogQueuePending(slot, &start, &end))
		return 0;

	/* Only this worker consumes, and producers never touch [start, end) */
	if (drain_buffer_size < end - start)
	{
		if (drain_buffer != NULL)
			pfree(drain_buffer);
		drain_buffer = MemoryContextAllocHuge(TopMemoryContext, end - start);
		drain_buffer_size = end - start;
	}
	buffer = drain_buffer;
	LogQueueRead(slot, start, buffer, end - start);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "athena_keys: inserting queued log rows");

	if (RecoveryInProgress())
		delivered = ShipToPrimary(buffer, end - start, worker_database_name);
	else if (LogTableExists())
		InsertRecords(buffer, end - start);

	ResetSpiConnection();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	if (!delivered)
		return 0;				/* still queued: retried at the next flush */

	LogQueueConsumed(slot, end);
	return end - start;
}

/*
 * Exit callback of a writer, whatever ends it (idle, SIGTERM, an error, a
 * failed connection): give the slot back unless leaving idle already did.
 */
static void
WriterExitCallback(int code, Datum arg)
{
	if (writer_released || writer_slot < 0)
		return;
	LogQueueWriterGone(writer_slot, writer_generation, writer_connected, code != 0);
	writer_released = true;
}

/*
 * Leave when idle, so that an idle connection does not keep the database
 * from being dropped.  Returns when rows are queued or reserved after all.
 */
static void
ExitIfIdle(int slot)
{
	if (!LogQueueReleaseIfIdle(slot))
		return;
	writer_released = true;
	proc_exit(0);
}

/*
 * On SIGTERM, drain until quiet, then exit.  Backends may still be
 * committing.  A standby gives up after five seconds, since a primary it
 * cannot reach would otherwise hold up the shutdown; a primary's local
 * inserts always make progress.
 */
static void
DrainAndExit(int slot)
{
	int			quiet_rounds = 0;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);

	while (quiet_rounds < 5 &&
		   (!RecoveryInProgress() || GetCurrentTimestamp() < deadline))
	{
		bool		busy = LogQueueBusy(slot);
		bool		stamped;

		CHECK_FOR_INTERRUPTS();
		stamped = ApplyQueuedLastUse();
		if (DrainSlot(slot) > 0 || stamped || busy)
			quiet_rounds = 0;
		else
			quiet_rounds++;
		pg_usleep(10000L);
	}
	proc_exit(0);
}

/*
 * Say, at DEBUG1, which flush interval this writer now works with: a
 * reload reaches each writer when it wakes, and an operator (or a test)
 * changing the interval can see when it holds.
 */
static void
ReportWriterSettings(const char *event)
{
	elog(DEBUG1, "athena_keys: log writer %s: async_flush_interval %d ms",
		 event, athena_async_flush_interval_ms);
}

/*
 * The writer of one database: wake every flush interval (or when a
 * backend finds the ring half full), insert what is queued; on SIGTERM,
 * drain until nothing is queued or reserved, then exit.  It serves only
 * the claim of the slot it was started for: after a crash, or once the
 * slot was freed and claimed again, it leaves at once.
 */
void
athena_log_writer_main(Datum main_arg)
{
	int			slot = DatumGetInt32(main_arg);
	TimestampTz idle_since;
	bool		reloaded;
	Oid			dboid;

	pqsignal(SIGTERM, WriterSigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	memcpy(&writer_generation, MyBgworkerEntry->bgw_extra, sizeof(uint64));
	if (!LogQueueAttachWriter(slot, writer_generation, &dboid))
		proc_exit(0);

	writer_slot = slot;
	before_shmem_exit(WriterExitCallback, (Datum) 0);
	/* The log is written even while the database refuses new connections */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, BGWORKER_BYPASS_ALLOWCONN);
	writer_connected = true;

	/* The writer's own commits are durable: its batches are the log */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);
	/* Shipped timestamps must read back the same on the primary */
	SetConfigOption("datestyle", "ISO, YMD", PGC_SUSET, PGC_S_OVERRIDE);
	/* Only the extension's own, schema-qualified SQL runs here */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	StartTransactionCommand();
	{
		char	   *name = get_database_name(MyDatabaseId);

		if (name == NULL)
			proc_exit(0);		/* dropped while we connected */
		worker_database_name = MemoryContextStrdup(TopMemoryContext, name);
	}
	CommitTransactionCommand();

	LogQueueWriterStarted(slot, MyLatch);
	idle_since = GetCurrentTimestamp();
	ReportWriterSettings("started");

	for (;;)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 athena_async_flush_interval_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		/* Absorbs ProcSignalBarriers (DROP DATABASE waits for them) */
		CHECK_FOR_INTERRUPTS();
		reloaded = ConfigReloadPending;
		if (reloaded)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if ((DrainSlot(slot) > 0) | ApplyQueuedLastUse())	/* both, every time */
			idle_since = GetCurrentTimestamp();
		else if (!worker_got_sigterm &&
				 TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(), 1000))
			ExitIfIdle(slot);	/* idle for a second: let the database be dropped */

		if (worker_got_sigterm)
			DrainAndExit(slot);

		/*
		 * Said once this wake's rows are in: from here on, until the next
		 * wake, rows wait for the new interval.
		 */
		if (reloaded)
			ReportWriterSettings("applied its settings");
	}
}
