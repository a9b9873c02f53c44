/*-------------------------------------------------------------------------
 * log_queue.c
 *		The queue behind athena_keys.log_durability = async: shared memory,
 *		one ring per database, and the transaction callback that publishes
 *		a transaction's records when it commits.
 *
 * Even with synchronous_commit off, a transaction that writes costs much
 * more than a read-only one (an XID, WAL records, a commit record).  So
 * under async a decision's log row is not inserted by the call: it is
 * encoded into backend memory (log_record.c), copied into its database's
 * ring in shared memory once the transaction has committed (nothing is
 * queued for a rolled-back one, also when it fails at commit), and the database's log writer (log_writer.c)
 * inserts the queued rows in batches every athena_keys.async_flush_interval.
 *
 * Space is reserved in the ring when the call logs, so that commit never
 * waits; when the ring is full, or athena_keys is not in
 * shared_preload_libraries, the caller falls back to inserting the row
 * itself (durably, like any row).  A transaction that cannot write (a hot
 * standby, a read-only transaction) always queues, and its records may ask
 * the writer to stamp last_used_at.
 *
 * The first backend that queues for a database claims a slot and starts
 * its writer; a writer that leaves gives its slot back once the ring is
 * empty (a slot whose database was dropped is reclaimed when slots run
 * out).  Each writer serves only the claim of the slot it was started for
 * (the slot's generation), so a freed and reclaimed slot never receives
 * another database's rows.  The writer also applies the database's due
 * last_used_at stamps (last_used_queue.c), which claim the slot and start
 * the writer as a queued row does, and keep it from leaving while pending.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"
#include "last_used_queue.h"
#include "log_row.h"
#include "log_queue.h"
#include "log_record.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

/* One database's ring.  Positions grow forever; offsets are modulo size. */
typedef struct LogQueueSlot
{
	Oid			dboid;			/* InvalidOid = free */
	uint64		generation;		/* bumped whenever the slot is claimed */
	bool		worker_registered;	/* a writer is registered or running */
	TimestampTz retry_after;	/* after a writer failed: no new one before */
	Latch	   *worker_latch;
	uint64		read_pos;
	uint64		write_pos;
	uint64		reserved;
	Size		data_offset;	/* from the start of the shared block */
} LogQueueSlot;

typedef struct LogQueueShared
{
	LWLock	   *lock;
	Size		slot_bytes;
	LogQueueSlot slots[LOG_QUEUE_SLOTS];
} LogQueueShared;

static LogQueueShared *queue_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* At most 1/LOG_QUEUE_XACT_SHARE of a ring is reserved by one transaction */
#define LOG_QUEUE_XACT_SHARE 4

/* Records of the current transaction, queued at commit */
static List *pending_records = NIL;
static uint64 pending_bytes = 0;
static int	pending_slot = -1;
static uint64 pending_generation = 0;
static bool xact_callback_registered = false;

static void LogQueueShmemRequest(void);
static void LogQueueShmemStartup(void);
static void LogQueueXactCallback(XactEvent event, void *arg);

/* Total shared memory for the rings and their bookkeeping */
static Size
LogQueueShmemSize(void)
{
	return add_size(MAXALIGN(sizeof(LogQueueShared)),
					mul_size((Size) athena_async_log_buffer_kb, 1024));
}

/*
 * Called from _PG_init: while shared_preload_libraries is processed,
 * install the shared memory hooks.  The rings are sized at server start;
 * without preloading there is none.
 */
void
InitLogQueue(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = LogQueueShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = LogQueueShmemStartup;
}

/* Ask for the shared memory and the lock */
static void
LogQueueShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(LogQueueShmemSize());
	RequestNamedLWLockTranche("athena_keys async log", 1);
}

/* Create (or attach to) the rings */
static void
LogQueueShmemStartup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	queue_shared = ShmemInitStruct("athena_keys async log", LogQueueShmemSize(), &found);
	if (!found)
	{
		Size		per_slot = ((Size) athena_async_log_buffer_kb * 1024 / LOG_QUEUE_SLOTS)
			& ~((Size) LOG_RECORD_ALIGN - 1);

		memset(queue_shared, 0, sizeof(LogQueueShared));
		queue_shared->lock = &(GetNamedLWLockTranche("athena_keys async log"))->lock;
		queue_shared->slot_bytes = per_slot;
		for (i = 0; i < LOG_QUEUE_SLOTS; i++)
			queue_shared->slots[i].data_offset =
				MAXALIGN(sizeof(LogQueueShared)) + (Size) i * per_slot;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Copy len bytes into the ring at logical position pos */
static void
RingWrite(LogQueueSlot *slot, uint64 pos, const char *src, Size len)
{
	char	   *base = (char *) queue_shared + slot->data_offset;
	Size		size = queue_shared->slot_bytes;
	Size		off = pos % size;
	Size		first = Min(len, size - off);

	memcpy(base + off, src, first);
	if (first < len)
		memcpy(base, src + first, len - first);
}

/* Copy len bytes out of the ring from logical position pos */
static void
RingRead(LogQueueSlot *slot, uint64 pos, char *dst, Size len)
{
	char	   *base = (char *) queue_shared + slot->data_offset;
	Size		size = queue_shared->slot_bytes;
	Size		off = pos % size;
	Size		first = Min(len, size - off);

	memcpy(dst, base + off, first);
	if (first < len)
		memcpy(dst + first, base, len - first);
}

/* Mark a slot as having no writer, so the next backend that queues starts one; the lock is held */
static void
ForgetWriter(LogQueueSlot *slot)
{
	slot->worker_registered = false;
	slot->worker_latch = NULL;
}

/* Claim slot i for this database, with an empty ring; the lock is held */
static void
ClaimSlot(int i)
{
	LogQueueSlot *slot = &queue_shared->slots[i];

	slot->dboid = MyDatabaseId;
	slot->generation++;
	ForgetWriter(slot);
	slot->retry_after = 0;
	slot->read_pos = slot->write_pos = 0;
	slot->reserved = 0;
}

/* Find this database's slot, claiming a free one; -1 when all are taken; the lock is held */
static int
ClaimSlotForDatabase(void)
{
	int			i;
	int			free_slot = -1;

	for (i = 0; i < LOG_QUEUE_SLOTS; i++)
	{
		if (queue_shared->slots[i].dboid == MyDatabaseId)
			return i;
		if (free_slot < 0 && queue_shared->slots[i].dboid == InvalidOid)
			free_slot = i;
	}
	if (free_slot >= 0)
		ClaimSlot(free_slot);
	return free_slot;
}

/*
 * Free the slots, without a writer, of databases that no longer exist
 * (dropped while rows were still reserved or queued), so that their queues
 * cannot keep other databases from getting one.  Takes and releases the
 * lock; reads pg_database between, so it runs in a transaction.
 */
static void
ReclaimSlotsOfDroppedDatabases(void)
{
	Oid			candidates[LOG_QUEUE_SLOTS];
	int			i;

	LWLockAcquire(queue_shared->lock, LW_SHARED);
	for (i = 0; i < LOG_QUEUE_SLOTS; i++)
	{
		LogQueueSlot *slot = &queue_shared->slots[i];

		candidates[i] = slot->worker_registered ? InvalidOid : slot->dboid;
	}
	LWLockRelease(queue_shared->lock);

	for (i = 0; i < LOG_QUEUE_SLOTS; i++)
	{
		if (!OidIsValid(candidates[i]) ||
			SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(candidates[i])))
			continue;
		LWLockAcquire(queue_shared->lock, LW_EXCLUSIVE);
		if (queue_shared->slots[i].dboid == candidates[i] &&
			!queue_shared->slots[i].worker_registered)
			queue_shared->slots[i].dboid = InvalidOid;
		LWLockRelease(queue_shared->lock);
	}
}

/* Start the writer of a slot (a dynamic background worker, see log_writer.c) */
static bool
RegisterWriterForSlot(int slot, uint64 generation)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	/* A hot standby's writer ships its decisions to the primary */
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	/*
	 * Never restarted by the postmaster: after a crash its shared memory
	 * is new and the slot it would serve is gone.  The next backend that
	 * queues starts a writer when there is none.
	 */
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "athena_keys");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "athena_log_writer_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "athena_keys log writer for database %u", MyDatabaseId);
	snprintf(worker.bgw_type, BGW_MAXLEN, "athena_keys log writer");
	worker.bgw_main_arg = Int32GetDatum(slot);
	/* The writer serves only the claim it was started for */
	memcpy(worker.bgw_extra, &generation, sizeof(uint64));
	worker.bgw_notify_pid = 0;
	return RegisterDynamicBackgroundWorker(&worker, &handle);
}

/*
 * Whether async decisions can go to the queue here: athena_keys is
 * preloaded (the queue lives in shared memory) and this is a database
 * session.
 */
bool
LogQueueAvailable(void)
{
	return queue_shared != NULL && OidIsValid(MyDatabaseId);
}

/* Give back what StartWriterOrGiveBack's caller took of slot */
static void
GiveBackWriterClaim(LogQueueSlot *slot, uint64 generation, uint64 total)
{
	LWLockAcquire(queue_shared->lock, LW_EXCLUSIVE);
	if (slot->generation == generation)
	{
		slot->worker_registered = false;
		slot->reserved -= total;
	}
	LWLockRelease(queue_shared->lock);
}

/*
 * Start the writer of a slot this call reserved total bytes in and marked
 * as served.  When no worker slot is free, or on an error on the way (out
 * of memory), give both back, so that the slot is not left marked as
 * served and reserved with no writer and nothing to give them back; false
 * then (the caller inserts directly), or the error raised again.
 */
static bool
StartWriterOrGiveBack(LogQueueSlot *slot, int slot_index, uint64 generation, uint64 total)
{
	bool		registered;

	PG_TRY();
	{
		registered = RegisterWriterForSlot(slot_index, generation);
	}
	PG_CATCH();
	{
		GiveBackWriterClaim(slot, generation, total);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (!registered)
		GiveBackWriterClaim(slot, generation, total);
	return registered;
}

/*
 * Queue a decision's log row for the writer, to be published when the
 * transaction commits.  Returns false (nothing queued) when the writer is
 * unavailable or its ring is too full; the caller then inserts the row
 * itself.
 */
bool
QueueDecisionLog(const DecisionRecord *decision)
{
	Datum		values[LOG_COLUMNS];
	bool		nulls[LOG_COLUMNS];
	Size		total;
	int			slot_index;
	LogQueueSlot *slot;
	char	   *record;
	bool		need_worker = false;
	uint64		generation;

	if (!LogQueueAvailable())
		return false;

	LogRowFromDecision(decision, values, nulls);
	total = LogRecordSize(values, nulls);

	/* Big rows (huge rights arrays) are not worth a slice of the ring */
	if (total > queue_shared->slot_bytes / 16)
		return false;

	/*
	 * Nor may one transaction reserve more than a quarter of it: the
	 * reservation lasts until the transaction ends, so one that stays open
	 * over many calls (a pooled session in one long transaction) would
	 * otherwise leave the other sessions of its database no room, until
	 * they fail (read-only transactions) or go unlogged (a hot standby).
	 */
	if (pending_bytes + total > queue_shared->slot_bytes / LOG_QUEUE_XACT_SHARE)
		return false;

	/* Everything that can fail comes before the reservation */
	record = MemoryContextAlloc(TopTransactionContext, total);
	EncodeLogRecord(values, nulls,
					decision->stamp_last_used ? LOG_RECORD_STAMP_LAST_USED : 0,
					record, total);
	if (!xact_callback_registered)
	{
		RegisterXactCallback(LogQueueXactCallback, NULL);
		xact_callback_registered = true;
	}
	LWLockAcquire(queue_shared->lock, LW_EXCLUSIVE);
	slot_index = pending_slot >= 0 ? pending_slot : ClaimSlotForDatabase();
	if (slot_index < 0)
	{
		/* Every slot is taken: free those of dropped databases, try once more */
		LWLockRelease(queue_shared->lock);
		ReclaimSlotsOfDroppedDatabases();
		LWLockAcquire(queue_shared->lock, LW_EXCLUSIVE);
		slot_index = ClaimSlotForDatabase();
		if (slot_index < 0)
		{
			LWLockRelease(queue_shared->lock);
			return false;
		}
	}
	slot = &queue_shared->slots[slot_index];
	if (pending_slot >= 0 &&
		(slot->dboid != MyDatabaseId || slot->generation != pending_generation))
	{
		/* The slot was freed and claimed again meanwhile: it is not ours */
		LWLockRelease(queue_shared->lock);
		return false;
	}
	if (slot->write_pos - slot->read_pos + slot->reserved + total > queue_shared->slot_bytes)
	{
		LWLockRelease(queue_shared->lock);
		if (slot->worker_latch != NULL)
			SetLatch(slot->worker_latch);
		return false;
	}
	if (!slot->worker_registered)
	{
		/* After a writer failed, wait a moment before starting another */
		if (slot->retry_after != 0 && GetCurrentTimestamp() < slot->retry_after)
		{
			LWLockRelease(queue_shared->lock);
			return false;
		}
		slot->worker_registered = true;
		need_worker = true;
	}
	slot->reserved += total;
	generation = slot->generation;
	LWLockRelease(queue_shared->lock);

	if (need_worker && !StartWriterOrGiveBack(slot, slot_index, generation, total))
		return false;

	/* Counted first, so that an abort gives the reservation back whatever follows */
	pending_bytes += total;
	pending_slot = slot_index;
	pending_generation = generation;
	{
		MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

		pending_records = lappend(pending_records, record);
		MemoryContextSwitchTo(old);
	}
	return true;
}

/*
 * Make sure this database's slot has a writer, for work that is not a log
 * row (the last_used_at stamps of last_used_queue.c): claim the slot and
 * start its writer as queuing a row would.  False when no slot or no
 * worker can be had, or a writer failed a moment ago.
 */
bool
LogQueueEnsureWriter(void)
{
	int			i;
	int			slot_index;
	LogQueueSlot *slot;
	uint64		generation;

	if (!LogQueueAvailable())
		return false;

	/* The common case, a writer at work, under the shared lock */
	LWLockAcquire(queue_shared->lock, LW_SHARED);
	for (i = 0; i < LOG_QUEUE_SLOTS; i++)
	{
		if (queue_shared->slots[i].dboid == MyDatabaseId &&
			queue_shared->slots[i].worker_registered)
		{
			LWLockRelease(queue_shared->lock);
			return true;
		}
	}
	LWLockRelease(queue_shared->lock);

	LWLockAcquire(queue_shared->lock, LW_EXCLUSIVE);
	slot_index = ClaimSlotForDatabase();
	if (slot_index < 0)
	{
		LWLockRelease(queue_shared->lock);
		ReclaimSlotsOfDroppedDatabases();
		LWLockAcquire(queue_shared->lock, LW_EXCLUSIVE);
		slot_index = ClaimSlotForDatabase();
		if (slot_index < 0)
		{
			LWLockRelease(queue_shared->lock);
			return false;
		}
	}
	slot = &queue_shared->slots[slot_index];
	if (slot->worker_registered)
	{
		LWLockRelease(queue_shared->lock);
		return true;
	}
	if (slot->retry_after != 0 && GetCurrentTimestamp() < slot->retry_after)
	{
		LWLockRelease(queue_shared->lock);
		return false;
	}
	slot->worker_registered = true;
	generation = slot->generation;
	LWLockRelease(queue_shared->lock);

	if (!RegisterWriterForSlot(slot_index, generation))
	{
		LWLockAcquire(queue_shared->lock, LW_EXCLUSIVE);
		if (slot->generation == generation)
			slot->worker_registered = false;
		LWLockRelease(queue_shared->lock);
		return false;
	}
	return true;
}

/*
 * Once the transaction has committed (or is prepared), move its records
 * into the ring (their space is reserved, so this cannot fail); at abort,
 * give the reservation back.  Not at pre-commit: a transaction can still
 * fail after it (a serialization failure found at commit, a PREPARE that
 * is refused, another extension's pre-commit work), and its rows must
 * then not be logged.  Rows of a rolled-back subtransaction are still
 * logged: the decision was made.
 */
static void
LogQueueXactCallback(XactEvent event, void *arg)
{
	LogQueueSlot *slot;
	ListCell   *lc;
	bool		wake = false;

	if (pending_slot < 0)
		return;
	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_PREPARE &&
		event != XACT_EVENT_ABORT && event != XACT_EVENT_PARALLEL_ABORT)
		return;

	slot = &queue_shared->slots[pending_slot];
	LWLockAcquire(queue_shared->lock, LW_EXCLUSIVE);
	if (slot->dboid != MyDatabaseId || slot->generation != pending_generation)
	{
		/*
		 * The slot was given up (its writer could not connect) and maybe
		 * claimed by another database: these rows must not land there.
		 */
		LWLockRelease(queue_shared->lock);
		pending_records = NIL;
		pending_bytes = 0;
		pending_slot = -1;
		return;
	}
	/* A prepared transaction's decisions were made: log them like a commit's */
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PREPARE)
	{
		foreach(lc, pending_records)
		{
			char	   *record = lfirst(lc);
			uint32		len = LogRecordLength(record);

			RingWrite(slot, slot->write_pos, record, len);
			slot->write_pos += len;
		}
		wake = (slot->write_pos - slot->read_pos) * 2 > queue_shared->slot_bytes;
	}
	slot->reserved -= pending_bytes;
	LWLockRelease(queue_shared->lock);
	if (wake && slot->worker_latch != NULL)
		SetLatch(slot->worker_latch);

	/* The list lives in TopTransactionContext, which goes away with it */
	pending_records = NIL;
	pending_bytes = 0;
	pending_slot = -1;
}

/*
 * A writer starting on a slot: whether the slot still holds the claim it
 * was started for, and its database then.  False (leave at once) after a
 * crash, or once the slot was freed and claimed again.
 */
bool
LogQueueAttachWriter(int slot_index, uint64 generation, Oid *dboid)
{
	LogQueueSlot *slot;

	*dboid = InvalidOid;
	if (queue_shared == NULL || slot_index < 0 || slot_index >= LOG_QUEUE_SLOTS)
		return false;
	slot = &queue_shared->slots[slot_index];
	LWLockAcquire(queue_shared->lock, LW_SHARED);
	if (slot->generation == generation)
		*dboid = slot->dboid;
	LWLockRelease(queue_shared->lock);
	return OidIsValid(*dboid);
}

/* The writer is connected: backends wake it through latch */
void
LogQueueWriterStarted(int slot_index, Latch *latch)
{
	LWLockAcquire(queue_shared->lock, LW_EXCLUSIVE);
	queue_shared->slots[slot_index].worker_latch = latch;
	LWLockRelease(queue_shared->lock);
}

/*
 * What the writer may consume: [*start, *end) of the ring, which producers
 * never touch until LogQueueConsumed.  False when nothing is queued.
 */
bool
LogQueuePending(int slot_index, uint64 *start, uint64 *end)
{
	LogQueueSlot *slot = &queue_shared->slots[slot_index];

	LWLockAcquire(queue_shared->lock, LW_SHARED);
	*start = slot->read_pos;
	*end = slot->write_pos;
	LWLockRelease(queue_shared->lock);
	return *start != *end;
}

/* Copy queued bytes out of the ring for the writer */
void
LogQueueRead(int slot_index, uint64 pos, char *dst, Size len)
{
	RingRead(&queue_shared->slots[slot_index], pos, dst, len);
}

/* The writer delivered everything before end: producers may reuse it */
void
LogQueueConsumed(int slot_index, uint64 end)
{
	LWLockAcquire(queue_shared->lock, LW_EXCLUSIVE);
	queue_shared->slots[slot_index].read_pos = end;
	LWLockRelease(queue_shared->lock);
}

/*
 * Whether rows are queued, or reserved by transactions still committing,
 * or last_used_at stamps are pending
 */
bool
LogQueueBusy(int slot_index)
{
	LogQueueSlot *slot = &queue_shared->slots[slot_index];
	bool		busy;

	LWLockAcquire(queue_shared->lock, LW_SHARED);
	busy = slot->reserved > 0 || slot->write_pos != slot->read_pos ||
		LastUseQueueBusy(slot->dboid);
	LWLockRelease(queue_shared->lock);
	return busy;
}

/*
 * An idle writer leaving: free the slot, under the lock and only if
 * nothing is queued or reserved (rows or last_used_at stamps), so that a
 * backend that queues after this sees no writer and starts a new one.
 * Returns whether the slot was freed (the writer must then exit).
 */
bool
LogQueueReleaseIfIdle(int slot_index)
{
	LogQueueSlot *slot = &queue_shared->slots[slot_index];
	bool		released = false;

	LWLockAcquire(queue_shared->lock, LW_EXCLUSIVE);
	if (slot->reserved == 0 && slot->write_pos == slot->read_pos &&
		!LastUseQueueBusy(slot->dboid))
	{
		ForgetWriter(slot);
		slot->dboid = InvalidOid;
		released = true;
	}
	LWLockRelease(queue_shared->lock);
	return released;
}

/*
 * A writer ended otherwise (SIGTERM, a FATAL error, a failed connection):
 * the slot no longer has a writer, so the next backend that queues starts
 * one.  A slot whose queue is empty is freed for any database; a writer
 * that never connected leaves its slot and rows (a dropped database's slot
 * is reclaimed when slots run out).  After a failure the next writer waits
 * a second, so a persistent error does not start writers in a tight loop
 * (an ERROR does not end a writer: it retries, see log_writer.c).
 */
void
LogQueueWriterGone(int slot_index, uint64 generation, bool connected, bool failed)
{
	LogQueueSlot *slot = &queue_shared->slots[slot_index];

	LWLockAcquire(queue_shared->lock, LW_EXCLUSIVE);
	if (slot->generation == generation)
	{
		ForgetWriter(slot);
		if (connected && slot->reserved == 0 && slot->write_pos == slot->read_pos)
			slot->dboid = InvalidOid;
		if (failed)
			slot->retry_after = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
	}
	LWLockRelease(queue_shared->lock);
}
