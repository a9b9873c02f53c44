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
 * So a writer survives its own errors (a full disk, a cancel, a log
 * renamed away, a row the log refuses): it reports the error, aborts the
 * batch, which stays queued, and tries again after a second, doubling the
 * wait up to ten seconds while the error persists; a writer whose ring
 * still holds rows never leaves idle.  Only a FATAL error (or a crash)
 * ends it, and then the next backend that queues starts another.
 *
 * Loss window: rows not yet inserted (at most one flush interval plus one
 * batch) are lost if the server crashes.  On SIGTERM (any clean shutdown,
 * pg_terminate_backend, DROP DATABASE ... WITH (FORCE)) the writer keeps
 * draining until the ring is empty and no reservation is outstanding, for
 * at most five seconds: then it drains once more and exits, saying what is
 * left; a drain that fails is tried once more a second later, and then
 * the writer exits too.  Rows left (queued after that, or kept by an error
 * that persisted through the drain) stay in shared memory for the next
 * writer, which the next backend that queues starts; a server shutdown
 * loses them.
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
#include "spi_plans.h"
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
#include "storage/bufmgr.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/smgr.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PGDLLEXPORT void athena_log_writer_main(Datum main_arg);

static volatile sig_atomic_t worker_got_sigterm = false;
static char *worker_database_name = NULL;
static int	writer_slot = -1;
static uint64 writer_generation = 0;
static bool writer_connected = false;
static bool writer_released = false;

/* Failed rounds in a row, and the wait before the next try */
static int	writer_failures = 0;
#define WRITER_RETRY_FIRST_MS 1000
#define WRITER_RETRY_MAX_MS 10000

/*
 * At SIGTERM: how long the writer drains before it leaves, and how many
 * failed attempts of the drain it makes (an error that persists would
 * otherwise hold up DROP DATABASE ... WITH (FORCE), which waits five
 * seconds for the database's processes to leave)
 */
#define WRITER_DRAIN_MS 5000
#define WRITER_DRAIN_TRIES 2
static TimestampTz drain_deadline = 0;	/* 0 until SIGTERM is acted on */
static int	drain_failures = 0;
static bool final_drain_started = false;

/* When the writer last had something to do (for leaving idle) */
static TimestampTz idle_since = 0;

/* A reload was processed and not yet reported (ReportWriterSettings) */
static bool settings_unreported = false;

/*
 * The writer's working memory, kept for its life: the drained bytes, and
 * a context for one statement's rows whose first block outlives resets,
 * so that a busy writer does not pay for fresh memory at every drain.
 */
static char *drain_buffer = NULL;
static Size drain_buffer_size = 0;
static MemoryContext chunk_context = NULL;

/*
 * The last round failed for a row's content: the next drain goes chunk by
 * chunk in subtransactions (InsertRecords).  Until then, and again once a
 * drain commits, a drain takes no subtransaction: a large ring would
 * otherwise give one transaction more subtransaction ids than a backend
 * keeps in shared memory, and every row would pay for them.
 */
static bool careful_drain = false;

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
 * share, rather than about the log or the server.  A partition's refusal
 * ("no partition of relation ... found for row", "violates partition
 * constraint") is 23514 like a CHECK constraint's, but names no
 * constraint: it is the log's (a day without its partition), and its rows
 * must stay queued.
 */
static bool
IsRowContentError(const ErrorData *error)
{
	int			class = ERRCODE_TO_CATEGORY(error->sqlerrcode);

	if (error->sqlerrcode == ERRCODE_CHECK_VIOLATION && error->constraint_name == NULL)
		return false;
	return class == ERRCODE_TO_CATEGORY(ERRCODE_DATA_EXCEPTION) ||
		class == ERRCODE_TO_CATEGORY(ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION);
}

/*
 * Insert one row (a chunk of one) in a subtransaction: true when it went
 * in.  A refusal for its content leaves the error in *error; any other
 * error is raised again.  When the row asks for a last_used_at stamp, the
 * stamp may be what was refused (a constraint on api_key), so the row is
 * tried once more without it, and the lost stamp is a WARNING.
 */
static bool
InsertRowAlone(LogChunk *row, ErrorData **error)
{
	Datum		ignored;
	ErrorData  *stamp_error;

	if (CallInSubtransaction(InsertChunkBody, row, &ignored, error))
		return true;
	if (!IsRowContentError(*error))
		ReThrowError(*error);
	if (row->nstamps == 0)
		return false;
	stamp_error = *error;
	row->nstamps = 0;
	if (!CallInSubtransaction(InsertChunkBody, row, &ignored, error))
	{
		if (!IsRowContentError(*error))
			ReThrowError(*error);
		return false;
	}
	ereport(WARNING,
			(errcode(stamp_error->sqlerrcode),
			 errmsg("athena_keys log writer could not stamp last_used_at: %s",
					stamp_error->message != NULL ? stamp_error->message : "")));
	*error = NULL;
	return true;
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

		if (stamp_of_row[i] >= 0)
		{
			row.stamp_ids = &chunk->stamp_ids[stamp_of_row[i]];
			row.stamp_times = &chunk->stamp_times[stamp_of_row[i]];
			row.nstamps = 1;
		}
		if (InsertRowAlone(&row, &errors[i]))
			inserted++;
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
 * stamp last use where a record asks for it.  After a round failed for a
 * row's content (careful_drain), each chunk goes in a subtransaction, so
 * that one refused again can be tried row by row (InsertChunkRowByRow).
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

			if (!careful_drain)
				(void) InsertChunkBody(&chunk);
			else if (!CallInSubtransaction(InsertChunkBody, &chunk, &ignored, &error))
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
	careful_drain = false;
	pgstat_report_activity(STATE_IDLE, NULL);
	if (!delivered)
		return 0;				/* still queued: retried at the next flush */

	LogQueueConsumed(slot, end);
	return end - start;
}

/*
 * Exit callback of a writer, whatever ends it (idle, SIGTERM, a FATAL
 * error, a failed connection): give the slot back unless leaving idle already did.
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
 * Say what a leaving writer leaves in its ring: it stays in shared memory
 * for the next writer of the database, which the next backend that queues
 * starts (a server shutdown loses it).  A WARNING when an error kept the
 * drain from inserting it, else (traffic went on, a standby's primary did
 * not take it) a LOG line.
 */
static void
ReportLeftQueued(int slot, bool failed)
{
	uint64		start;
	uint64		end;

	if (!LogQueuePending(slot, &start, &end))
		return;
	ereport(failed ? WARNING : LOG,
			(errmsg("athena_keys log writer exits with " UINT64_FORMAT " bytes of queued decisions not inserted",
					end - start),
			 errdetail("They stay queued in shared memory for the database's next log writer, "
					   "which the next queued decision starts; a server shutdown loses them.")));
}

/*
 * On SIGTERM, drain until quiet, then exit.  Backends may still be
 * committing, so steady traffic would keep the writer here forever: after
 * five seconds (set once, so a drain retried after an error keeps it) it
 * drains once more and exits, and whatever arrives later waits for the
 * next writer.  A standby stops at the deadline without that last drain,
 * since a primary it cannot reach would hold up the shutdown longer.
 */
static void
DrainAndExit(int slot)
{
	int			quiet_rounds = 0;

	if (drain_deadline == 0)
		drain_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), WRITER_DRAIN_MS);

	while (quiet_rounds < 5 && GetCurrentTimestamp() < drain_deadline)
	{
		bool		busy = LogQueueBusy(slot);
		bool		stamped;

		CHECK_FOR_INTERRUPTS();
		stamped = ApplyQueuedLastUse();
		if (DrainSlot(slot) > 0 || stamped || busy)
			quiet_rounds = 0;
		else
			quiet_rounds++;
		writer_failures = 0;
		pg_usleep(10000L);
	}
	if (quiet_rounds < 5 && !final_drain_started && !RecoveryInProgress())
	{
		/* Set first: an error in the last drain leaves at once */
		final_drain_started = true;
		(void) ApplyQueuedLastUse();
		(void) DrainSlot(slot);
	}
	ReportLeftQueued(slot, false);
	proc_exit(0);
}

/*
 * After an error: clean up as PostgreSQL's own background processes do
 * (the autovacuum launcher), so that the writer can go on.  The failed
 * batch was not consumed: its rows are still queued.
 */
static void
RecoverFromError(void)
{
	SpiCallState no_spi = {false, NULL};

	/* Not using PG_TRY: reset the error stack by hand */
	error_context_stack = NULL;
	HOLD_INTERRUPTS();
	disable_all_timeouts(false);
	QueryCancelPending = false;
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
		ErrorData  *error = CopyErrorData();

		careful_drain = IsRowContentError(error);
		FreeErrorData(error);
		MemoryContextSwitchTo(old);
	}
	EmitErrorReport();

	AbortOutOfAnyTransaction();	/* a subtransaction left open too: nobody sends ROLLBACK here */
	/*
	 * What a transaction's abort releases, for an error outside one (the
	 * writer does buffer I/O only in a transaction, whose abort ends it)
	 */
	LWLockReleaseAll();
	pgstat_report_wait_end();
	UnlockBuffers();
	AtEOXact_Buffers(false);
	AtEOXact_SMgr();
	AtEOXact_Files(false);
	AtEOXact_HashTables(false);
	/* The abort closed the SPI connection: forget it without SPI_finish */
	EndSpiCall(no_spi);

	MemoryContextSwitchTo(TopMemoryContext);
	FlushErrorState();
	if (chunk_context != NULL)
		MemoryContextReset(chunk_context);
	RESUME_INTERRUPTS();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Wait before trying a failed round again: a second, doubling up to ten
 * seconds while failures persist, so a lasting error does not fill the
 * server log.  In the drain at SIGTERM a second, and not past its
 * deadline; not at all when SIGTERM comes before the drain: it then
 * starts at once.
 */
static void
WaitBeforeRetry(int slot)
{
	int			delay_ms = WRITER_RETRY_FIRST_MS;
	TimestampTz until;
	uint64		start;
	uint64		end;
	int			i;

	for (i = 1; drain_deadline == 0 && i < writer_failures && delay_ms < WRITER_RETRY_MAX_MS; i++)
		delay_ms *= 2;
	delay_ms = Min(delay_ms, WRITER_RETRY_MAX_MS);
	until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), delay_ms);
	if (drain_deadline != 0 && drain_deadline < until)
		until = drain_deadline;
	if (worker_got_sigterm && drain_deadline == 0)
		until = GetCurrentTimestamp();	/* the drain starts at once */

	if (!LogQueuePending(slot, &start, &end))
		start = end = 0;
	ereport(LOG,
			(errmsg("athena_keys log writer failed (%d time%s in a row), retrying in %d ms; "
					UINT64_FORMAT " bytes of queued decisions are kept",
					writer_failures, writer_failures == 1 ? "" : "s",
					(int) (TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until)),
					end - start)));

	for (;;)
	{
		long		remaining;

		if (worker_got_sigterm && drain_deadline == 0)
			return;
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), until);
		if (remaining <= 0)
			return;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 remaining, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		/* Absorbs ProcSignalBarriers; a cancel here counts as a failure */
		CHECK_FOR_INTERRUPTS();
	}
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
 * One round of the writer: wait for the flush interval (or a backend
 * finding the ring half full), insert what is queued, apply the stamps;
 * leave when idle for a second, or drain and leave after SIGTERM.
 */
static void
WriterRound(int slot)
{
	bool		worked;

	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 athena_async_flush_interval_ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	/* Absorbs ProcSignalBarriers (DROP DATABASE waits for them) */
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		settings_unreported = true;
	}

	worked = (DrainSlot(slot) > 0) | ApplyQueuedLastUse();	/* both, every time */
	if (writer_failures > 0)
	{
		ereport(LOG,
				(errmsg("athena_keys log writer works again after %d failed attempt%s",
						writer_failures, writer_failures == 1 ? "" : "s")));
		writer_failures = 0;
	}
	if (worked)
		idle_since = GetCurrentTimestamp();
	else if (!worker_got_sigterm &&
			 TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(), 1000))
		ExitIfIdle(slot);		/* idle for a second: let the database be dropped */

	if (worker_got_sigterm)
		DrainAndExit(slot);

	/*
	 * Said once this wake's rows are in: from here on, until the next
	 * wake, rows wait for the new interval.
	 */
	if (settings_unreported)
	{
		settings_unreported = false;
		ReportWriterSettings("applied its settings");
	}
}

/*
 * The writer of one database: a round every flush interval; on SIGTERM,
 * drain until nothing is queued or reserved (at most five seconds), then
 * exit.  An error ends the round, not the writer: it is reported, and the
 * round tried again after a wait.  It serves only the claim of the slot
 * it was started for: after a crash, or once the slot was freed and
 * claimed again, it leaves at once.
 */
void
athena_log_writer_main(Datum main_arg)
{
	sigjmp_buf	local_sigjmp_buf;
	Oid			dboid;

	pqsignal(SIGTERM, WriterSigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	memcpy(&writer_generation, MyBgworkerEntry->bgw_extra, sizeof(uint64));
	if (!LogQueueAttachWriter(DatumGetInt32(main_arg), writer_generation, &dboid))
		proc_exit(0);

	writer_slot = DatumGetInt32(main_arg);
	before_shmem_exit(WriterExitCallback, (Datum) 0);
	/* The log is written even while the database refuses new connections */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, BGWORKER_BYPASS_ALLOWCONN);
	writer_connected = true;

	/* The writer's own commits are durable: its batches are the log */
	SetConfigOption("synchronous_commit", "on", PGC_SUSET, PGC_S_OVERRIDE);
	/*
	 * The writer inserts what read-only transactions queued: a database's
	 * or the server's default_transaction_read_only = on must not make its
	 * own transactions read-only too (its rows would stay queued for good)
	 */
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
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

	LogQueueWriterStarted(writer_slot, MyLatch);
	idle_since = GetCurrentTimestamp();
	ReportWriterSettings("started");

	/*
	 * An error in a round (or in the drain at SIGTERM) comes back here:
	 * the writer survives it, since nobody would start another until a
	 * backend queues again, and the rows it holds would wait for that.
	 */
	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
	{
		RecoverFromError();
		writer_failures++;
		if (settings_unreported)
		{
			/* In force too after a failed round, once the wait is over */
			settings_unreported = false;
			ReportWriterSettings("applied its settings");
		}
		if (drain_deadline != 0 &&
			(++drain_failures >= WRITER_DRAIN_TRIES || final_drain_started ||
			 GetCurrentTimestamp() >= drain_deadline))
		{
			/* The drain at SIGTERM failed: leave the rows queued */
			ReportLeftQueued(writer_slot, true);
			proc_exit(0);
		}
		WaitBeforeRetry(writer_slot);
		if (worker_got_sigterm)
			DrainAndExit(writer_slot);
	}
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
		WriterRound(writer_slot);
}
