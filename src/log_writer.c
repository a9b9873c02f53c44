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
#include "subtransaction.h"

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
#include "utils/builtins.h"
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

/* One chunk of queued rows (up to LOG_INSERT_MAX_ROWS) and their stamps */
typedef struct LogChunk
{
	const Datum *values;		/* LOG_COLUMNS per row */
	const bool *nulls;
	int			nrows;
	Datum	   *stamp_ids;		/* the last_used_at stamps the rows ask for */
	Datum	   *stamp_times;
	int			nstamps;
} LogChunk;

/* Insert a chunk's rows and apply its stamps (run in a subtransaction) */
static Datum
InsertChunkBody(void *arg)
{
	const LogChunk *chunk = arg;

	if (!InsertLogBatch(chunk->values, chunk->nulls, chunk->nrows, true))
		InsertLogRows(chunk->values, chunk->nulls, chunk->nrows);
	StampLastUseBatch(chunk->stamp_ids, chunk->stamp_times, chunk->nstamps);
	return (Datum) 0;
}

/*
 * Whether error is about a row's content (a data exception, an integrity
 * constraint: class 22 or 23), which another row of the batch may not
 * share, rather than about the log or the server
 */
static bool
IsRowContentError(const ErrorData *error)
{
	int			class = ERRCODE_TO_CATEGORY(error->sqlerrcode);

	return class == ERRCODE_TO_CATEGORY(ERRCODE_DATA_EXCEPTION) ||
		class == ERRCODE_TO_CATEGORY(ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION);
}

/*
 * A chunk the log refused for a row's content, row by row, each in a
 * subtransaction of its own: a row that fails alone while another goes in
 * is one the log refuses for what the client sent (an operator's CHECK on
 * the client name's length, a unique index), and is dropped with a
 * WARNING, so that it does not hold every row queued behind it (which a
 * restart would then lose).  When no row goes in, the refusal is the
 * log's (a missing partition, a constraint no row meets): the chunk's
 * error is raised again and everything stays queued until it is fixed.
 */
static void
InsertChunkRowByRow(const LogChunk *chunk, const int *stamp_of_row, ErrorData *chunk_error)
{
	int			inserted = 0;
	int			i;
	ErrorData **errors = palloc0(sizeof(ErrorData *) * chunk->nrows);

	for (i = 0; i < chunk->nrows; i++)
	{
		LogChunk	row = {&chunk->values[i * LOG_COLUMNS], &chunk->nulls[i * LOG_COLUMNS], 1,
		NULL, NULL, 0};
		Datum		ignored;

		if (stamp_of_row[i] >= 0)
		{
			row.stamp_ids = &chunk->stamp_ids[stamp_of_row[i]];
			row.stamp_times = &chunk->stamp_times[stamp_of_row[i]];
			row.nstamps = 1;
		}
		if (CallInSubtransaction(InsertChunkBody, &row, &ignored, &errors[i]))
			inserted++;
		else if (!IsRowContentError(errors[i]))
			ReThrowError(errors[i]);
	}
	if (inserted == 0)
		ReThrowError(chunk_error);
	for (i = 0; i < chunk->nrows; i++)
	{
		const Datum *values = &chunk->values[i * LOG_COLUMNS];
		const bool *nulls = &chunk->nulls[i * LOG_COLUMNS];

		if (errors[i] == NULL)
			continue;
		ereport(WARNING,
				(errcode(errors[i]->sqlerrcode),
				 errmsg("athena_keys log writer dropped a queued decision the log refuses: %s",
						errors[i]->message != NULL ? errors[i]->message : ""),
				 errdetail("The decision of %s for public id %s was refused alone while %d other rows of its batch were inserted.",
						   timestamptz_to_str(DatumGetTimestampTz(values[LOG_COL_CREATED_AT])),
						   nulls[LOG_COL_API_KEY_PUBLIC_ID] ? "(none)" :
						   TextDatumGetCString(values[LOG_COL_API_KEY_PUBLIC_ID]),
						   inserted),
				 errhint("Make the log take every row a call can write (a constraint an operator added may refuse what clients send).")));
	}
}

/*
 * Insert the queued records of buffer[0, len) as log rows,
 * LOG_INSERT_MAX_ROWS at a time (straight into the partitions, or through
 * the statement where the log needs it), in the current transaction, and
 * stamp last use where a record asks for it.  Each chunk goes in a
 * subtransaction, so that one refused for a row's content can be tried
 * row by row (InsertChunkRowByRow).
 */
static void
InsertRecords(const char *buffer, uint64 len)
{
	Datum		values[LOG_INSERT_MAX_ROWS * LOG_COLUMNS];
	bool		nulls[LOG_INSERT_MAX_ROWS * LOG_COLUMNS];
	Datum		stamp_ids[LOG_INSERT_MAX_ROWS];
	Datum		stamp_times[LOG_INSERT_MAX_ROWS];
	int			stamp_of_row[LOG_INSERT_MAX_ROWS];
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

		stamp_of_row[nrows] = -1;
		if ((flags & LOG_RECORD_STAMP_LAST_USED) && !row_nulls[LOG_COL_API_KEY_ID])
		{
			stamp_of_row[nrows] = nstamps;
			stamp_ids[nstamps] = row_values[LOG_COL_API_KEY_ID];
			stamp_times[nstamps] = row_values[LOG_COL_CREATED_AT];
			nstamps++;
		}
		nrows++;
		pos += LogRecordLength(buffer + pos);
		if (nrows == LOG_INSERT_MAX_ROWS || pos >= len)
		{
			LogChunk	chunk = {values, nulls, nrows, stamp_ids, stamp_times, nstamps};
			Datum		ignored;
			ErrorData  *error;

			if (!CallInSubtransaction(InsertChunkBody, &chunk, &ignored, &error))
			{
				if (!IsRowContentError(error))
					ReThrowError(error);
				InsertChunkRowByRow(&chunk, stamp_of_row, error);
			}
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
