/*-------------------------------------------------------------------------
 * async_log.c
 *		The batched log writer behind athena_keys.log_durability = async.
 *
 * Even with synchronous_commit off, a transaction that writes costs about
 * twice a read-only one (XID, WAL records, commit record).  So under async
 * a decision's log row is not inserted by the call: it is serialised into
 * backend memory, copied into a per-database ring in shared memory when
 * the transaction commits (nothing is queued for a rolled-back one), and a
 * background worker per database inserts the queued rows in batches every
 * athena_keys.async_flush_interval.
 *
 * Space is reserved in the ring when the call logs, so that commit never
 * waits; when the ring is full, or athena_keys is not in
 * shared_preload_libraries, the call falls back to inserting the row
 * itself (durably, like any row).  A transaction that cannot write (a hot
 * standby, a read-only transaction) always queues, and its records may ask
 * the writer to stamp last_used_at.
 *
 * A writer that finds nothing to do for a second exits and frees its slot
 * (an idle connection would keep its database from being dropped); the
 * next backend that queues starts a new one.  Writers are never restarted
 * by the postmaster: after a crash shared memory is new, and the slot a
 * restarted writer would serve no longer exists.  Whatever ends a writer
 * gives its slot back once the ring is empty (a slot whose database was
 * dropped is reclaimed when slots run out), and each writer serves only
 * the claim of the slot it was
 * started for (the slot's generation), so a freed and reclaimed slot never
 * receives another database's rows.
 *
 * On a hot standby nothing can be inserted: there the writer sends each
 * batch to the primary with one call of athena_record_decisions over libpq
 * (athena_keys.primary_conninfo, else primary_conninfo), keeping the rows
 * queued while the primary cannot be reached.  After promotion it inserts
 * locally again.
 *
 * Loss window: rows not yet inserted by the worker (at most one flush
 * interval plus one batch) are lost if the server crashes.  On SIGTERM
 * (any clean shutdown) the worker keeps draining until the ring is empty
 * and no reservation is outstanding.  The worker advances the ring only
 * after its batch committed, so a failed batch is retried.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/inet.h"
#include "utils/uuid.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "libpq-fe.h"

PGDLLEXPORT void athena_log_writer_main(Datum main_arg);

#define ASYNC_LOG_SLOTS 8
#define RECORD_ALIGN 8

/* One database's ring.  Positions grow forever; offsets are modulo size. */
typedef struct AsyncLogSlot
{
	Oid			dboid;			/* InvalidOid = free */
	uint64		generation;		/* bumped whenever the slot is claimed */
	bool		worker_registered;	/* a writer is registered or running */
	TimestampTz retry_after;	/* after a writer failed: no new one before */
	pid_t		worker_pid;
	Latch	   *worker_latch;
	uint64		read_pos;
	uint64		write_pos;
	uint64		reserved;
	Size		data_offset;	/* from the start of the shared block */
} AsyncLogSlot;

typedef struct AsyncLogShared
{
	LWLock	   *lock;
	Size		slot_bytes;
	AsyncLogSlot slots[ASYNC_LOG_SLOTS];
} AsyncLogShared;

/* A serialised decision: fixed header, then the variable fields */
typedef struct AsyncLogRecordHeader
{
	uint32		total_len;		/* header + fields, padded to RECORD_ALIGN */
	uint16		flags;
	int16		status;
	TimestampTz created_at;
	pg_uuid_t	key_id;
} AsyncLogRecordHeader;

#define FLAG_KEY_IDENTIFIED	0x0001
#define FLAG_AUTHENTICATED	0x0002
#define FLAG_AUTHORIZED		0x0004
#define FLAG_ENFORCED		0x0008
#define FLAG_ALLOWED		0x0010
#define FLAG_LOCKED_IN		0x0020
#define FLAG_STAMP_LAST_USED 0x0040

/* The variable fields, in order; each is a uint32 length (or ~0 for NULL) then bytes */
enum
{
	FIELD_PUBLIC_ID, FIELD_CLIENT, FIELD_REMOTE_ADDR, FIELD_REQUIRED,
	FIELD_GRANTED, FIELD_MISSING, FIELD_REASON, FIELD_COUNT
};
#define NULL_FIELD_LEN 0xFFFFFFFFu

static AsyncLogShared *async_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Records of the current transaction, queued at commit */
static List *pending_records = NIL;
static uint64 pending_bytes = 0;
static int	pending_slot = -1;
static uint64 pending_generation = 0;
static bool xact_callback_registered = false;

static volatile sig_atomic_t worker_got_sigterm = false;
static PGconn *primary_conn = NULL;
static char *worker_database_name = NULL;
static int	writer_slot = -1;
static uint64 writer_generation = 0;
static bool writer_connected = false;
static bool writer_released = false;
static TimestampTz last_ship_warning = 0;

static void AsyncLogShmemRequest(void);
static void AsyncLogShmemStartup(void);
static Size AsyncLogShmemSize(void);
static int	ClaimSlotForDatabase(void);
static bool RegisterWriterForSlot(int slot, uint64 generation);
static void AsyncLogXactCallback(XactEvent event, void *arg);
static void RingWrite(AsyncLogSlot *slot, uint64 pos, const char *src, Size len);
static void RingRead(AsyncLogSlot *slot, uint64 pos, char *dst, Size len);
static void WriterSigterm(SIGNAL_ARGS);
static uint64 DrainSlot(AsyncLogSlot *slot);
static void DecodeRecord(const char *record, Datum *values, char *nulls);
static void InsertRecords(const char *buffer, uint64 len);

/* Total shared memory for the rings and their bookkeeping */
static Size
AsyncLogShmemSize(void)
{
	return add_size(MAXALIGN(sizeof(AsyncLogShared)),
					mul_size((Size) athena_async_log_buffer_kb, 1024));
}

/*
 * Called from _PG_init while shared_preload_libraries is processed: install
 * the shared memory hooks.
 */
void
InitAsyncLog(void)
{
	/* The ring is sized at server start; without preloading there is none */
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = AsyncLogShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = AsyncLogShmemStartup;
}

/* Ask for the shared memory and the lock */
static void
AsyncLogShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(AsyncLogShmemSize());
	RequestNamedLWLockTranche("athena_keys async log", 1);
}

/* Create (or attach to) the rings */
static void
AsyncLogShmemStartup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	async_shared = ShmemInitStruct("athena_keys async log", AsyncLogShmemSize(), &found);
	if (!found)
	{
		Size		per_slot = ((Size) athena_async_log_buffer_kb * 1024 / ASYNC_LOG_SLOTS)
			& ~((Size) RECORD_ALIGN - 1);

		memset(async_shared, 0, sizeof(AsyncLogShared));
		async_shared->lock = &(GetNamedLWLockTranche("athena_keys async log"))->lock;
		async_shared->slot_bytes = per_slot;
		for (i = 0; i < ASYNC_LOG_SLOTS; i++)
			async_shared->slots[i].data_offset =
				MAXALIGN(sizeof(AsyncLogShared)) + (Size) i * per_slot;
	}
	LWLockRelease(AddinShmemInitLock);
}

/* Copy len bytes into the ring at logical position pos */
static void
RingWrite(AsyncLogSlot *slot, uint64 pos, const char *src, Size len)
{
	char	   *base = (char *) async_shared + slot->data_offset;
	Size		size = async_shared->slot_bytes;
	Size		off = pos % size;
	Size		first = Min(len, size - off);

	memcpy(base + off, src, first);
	if (first < len)
		memcpy(base, src + first, len - first);
}

/* Copy len bytes out of the ring from logical position pos */
static void
RingRead(AsyncLogSlot *slot, uint64 pos, char *dst, Size len)
{
	char	   *base = (char *) async_shared + slot->data_offset;
	Size		size = async_shared->slot_bytes;
	Size		off = pos % size;
	Size		first = Min(len, size - off);

	memcpy(dst, base + off, first);
	if (first < len)
		memcpy(dst + first, base, len - first);
}

/* Mark a slot as having no writer, so the next backend that queues starts one; the lock is held */
static void
ForgetWriter(AsyncLogSlot *slot)
{
	slot->worker_registered = false;
	slot->worker_latch = NULL;
	slot->worker_pid = 0;
}

/* Claim slot i for this database, with an empty ring; the lock is held */
static void
ClaimSlot(int i)
{
	AsyncLogSlot *slot = &async_shared->slots[i];

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

	for (i = 0; i < ASYNC_LOG_SLOTS; i++)
	{
		if (async_shared->slots[i].dboid == MyDatabaseId)
			return i;
		if (free_slot < 0 && async_shared->slots[i].dboid == InvalidOid)
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
	Oid			candidates[ASYNC_LOG_SLOTS];
	int			i;

	LWLockAcquire(async_shared->lock, LW_SHARED);
	for (i = 0; i < ASYNC_LOG_SLOTS; i++)
	{
		AsyncLogSlot *slot = &async_shared->slots[i];

		candidates[i] = slot->worker_registered ? InvalidOid : slot->dboid;
	}
	LWLockRelease(async_shared->lock);

	for (i = 0; i < ASYNC_LOG_SLOTS; i++)
	{
		if (!OidIsValid(candidates[i]) ||
			SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(candidates[i])))
			continue;
		LWLockAcquire(async_shared->lock, LW_EXCLUSIVE);
		if (async_shared->slots[i].dboid == candidates[i] &&
			!async_shared->slots[i].worker_registered)
			async_shared->slots[i].dboid = InvalidOid;
		LWLockRelease(async_shared->lock);
	}
}

/* Start the writer of a slot (a dynamic background worker) */
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
 * Whether async decisions can go to the batched writer here: athena_keys
 * is preloaded (the queue lives in shared memory) and this is a database
 * session.
 */
bool
AsyncLogQueueAvailable(void)
{
	return async_shared != NULL && OidIsValid(MyDatabaseId);
}

/*
 * Queue a decision's log row for the writer.  Returns false (nothing
 * queued) when the writer is unavailable or its ring is too full; the
 * caller then inserts the row itself.
 */
bool
QueueDecisionLog(const DecisionRecord *decision)
{
	Size		lens[FIELD_COUNT];
	const char *ptrs[FIELD_COUNT];
	Size		total;
	int			i;
	int			slot_index;
	AsyncLogSlot *slot;
	char	   *record;
	char	   *p;
	AsyncLogRecordHeader header;
	bool		need_worker = false;
	uint64		generation;

	if (!AsyncLogQueueAvailable())
		return false;

	memset(ptrs, 0, sizeof(ptrs));
	ptrs[FIELD_PUBLIC_ID] = decision->public_id;
	lens[FIELD_PUBLIC_ID] = decision->public_id_len;
	if (decision->client != NULL)
	{
		lens[FIELD_CLIENT] = pg_mbcliplen(VARDATA_ANY(decision->client),
										  VARSIZE_ANY_EXHDR(decision->client),
										  LOGGED_CLIENT_MAX_BYTES);
		ptrs[FIELD_CLIENT] = VARDATA_ANY(decision->client);
	}
	if (decision->has_remote_addr)
	{
		ptrs[FIELD_REMOTE_ADDR] = (const char *) PG_DETOAST_DATUM_PACKED(decision->remote_addr);
		lens[FIELD_REMOTE_ADDR] = VARSIZE_ANY(ptrs[FIELD_REMOTE_ADDR]);
	}
	if (decision->has_required_rights)
	{
		ptrs[FIELD_REQUIRED] = (const char *) PG_DETOAST_DATUM(decision->required_rights);
		lens[FIELD_REQUIRED] = VARSIZE(ptrs[FIELD_REQUIRED]);
	}
	if (decision->has_granted_rights)
	{
		ptrs[FIELD_GRANTED] = (const char *) PG_DETOAST_DATUM(decision->granted_rights);
		lens[FIELD_GRANTED] = VARSIZE(ptrs[FIELD_GRANTED]);
	}
	if (decision->has_missing_rights)
	{
		ptrs[FIELD_MISSING] = (const char *) PG_DETOAST_DATUM(decision->missing_rights);
		lens[FIELD_MISSING] = VARSIZE(ptrs[FIELD_MISSING]);
	}
	ptrs[FIELD_REASON] = decision->reason;
	lens[FIELD_REASON] = decision->reason ? strlen(decision->reason) : 0;

	total = sizeof(AsyncLogRecordHeader);
	for (i = 0; i < FIELD_COUNT; i++)
		total += sizeof(uint32) + (ptrs[i] ? lens[i] : 0);
	total = TYPEALIGN(RECORD_ALIGN, total);

	/* Big rows (huge rights arrays) are not worth a slice of the ring */
	if (total > async_shared->slot_bytes / 16)
		return false;

	/* Everything that can fail comes before the reservation */
	record = MemoryContextAllocZero(TopTransactionContext, total);
	memset(&header, 0, sizeof(header));
	header.total_len = (uint32) total;
	header.status = (int16) decision->status;
	header.created_at = GetCurrentTransactionStartTimestamp();
	header.key_id = decision->key_id;
	header.flags = (decision->key_identified ? FLAG_KEY_IDENTIFIED : 0) |
		(decision->authenticated ? FLAG_AUTHENTICATED : 0) |
		(decision->authorized ? FLAG_AUTHORIZED : 0) |
		(decision->enforced ? FLAG_ENFORCED : 0) |
		(decision->allowed ? FLAG_ALLOWED : 0) |
		(decision->locked_in ? FLAG_LOCKED_IN : 0) |
		(decision->stamp_last_used ? FLAG_STAMP_LAST_USED : 0);
	memcpy(record, &header, sizeof(header));
	p = record + sizeof(header);
	for (i = 0; i < FIELD_COUNT; i++)
	{
		uint32		len = ptrs[i] ? (uint32) lens[i] : NULL_FIELD_LEN;

		memcpy(p, &len, sizeof(uint32));
		p += sizeof(uint32);
		if (ptrs[i])
		{
			memcpy(p, ptrs[i], lens[i]);
			p += lens[i];
		}
	}
	if (!xact_callback_registered)
	{
		RegisterXactCallback(AsyncLogXactCallback, NULL);
		xact_callback_registered = true;
	}
	LWLockAcquire(async_shared->lock, LW_EXCLUSIVE);
	slot_index = pending_slot >= 0 ? pending_slot : ClaimSlotForDatabase();
	if (slot_index < 0)
	{
		/* Every slot is taken: free those of dropped databases, try once more */
		LWLockRelease(async_shared->lock);
		ReclaimSlotsOfDroppedDatabases();
		LWLockAcquire(async_shared->lock, LW_EXCLUSIVE);
		slot_index = ClaimSlotForDatabase();
		if (slot_index < 0)
		{
			LWLockRelease(async_shared->lock);
			return false;
		}
	}
	slot = &async_shared->slots[slot_index];
	if (pending_slot >= 0 &&
		(slot->dboid != MyDatabaseId || slot->generation != pending_generation))
	{
		/* The slot was freed and claimed again meanwhile: it is not ours */
		LWLockRelease(async_shared->lock);
		return false;
	}
	if (slot->write_pos - slot->read_pos + slot->reserved + total > async_shared->slot_bytes)
	{
		LWLockRelease(async_shared->lock);
		if (slot->worker_latch != NULL)
			SetLatch(slot->worker_latch);
		return false;
	}
	if (!slot->worker_registered)
	{
		/* After a writer failed, wait a moment before starting another */
		if (slot->retry_after != 0 && GetCurrentTimestamp() < slot->retry_after)
		{
			LWLockRelease(async_shared->lock);
			return false;
		}
		slot->worker_registered = true;
		need_worker = true;
	}
	slot->reserved += total;
	generation = slot->generation;
	LWLockRelease(async_shared->lock);

	if (need_worker && !RegisterWriterForSlot(slot_index, generation))
	{
		/* No worker slot free: give the reservation back and insert directly */
		LWLockAcquire(async_shared->lock, LW_EXCLUSIVE);
		if (slot->generation == generation)
		{
			slot->worker_registered = false;
			slot->reserved -= total;
		}
		LWLockRelease(async_shared->lock);
		return false;
	}

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
 * At commit (or prepare), move this transaction's records into the ring
 * (their space is reserved); at abort, give the reservation back.  Rows of
 * a rolled-back subtransaction are still logged: the decision was made.
 */
static void
AsyncLogXactCallback(XactEvent event, void *arg)
{
	AsyncLogSlot *slot;
	ListCell   *lc;
	bool		wake = false;

	if (pending_slot < 0)
		return;
	if (event != XACT_EVENT_PRE_COMMIT && event != XACT_EVENT_PRE_PREPARE &&
		event != XACT_EVENT_ABORT && event != XACT_EVENT_PARALLEL_ABORT)
		return;

	slot = &async_shared->slots[pending_slot];
	LWLockAcquire(async_shared->lock, LW_EXCLUSIVE);
	if (slot->dboid != MyDatabaseId || slot->generation != pending_generation)
	{
		/*
		 * The slot was given up (its writer could not connect) and maybe
		 * claimed by another database: these rows must not land there.
		 */
		LWLockRelease(async_shared->lock);
		pending_records = NIL;
		pending_bytes = 0;
		pending_slot = -1;
		return;
	}
	/* A prepared transaction's decisions were made: log them like a commit's */
	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PRE_PREPARE)
	{
		foreach(lc, pending_records)
		{
			char	   *record = lfirst(lc);
			uint32		len;

			memcpy(&len, record, sizeof(uint32));
			RingWrite(slot, slot->write_pos, record, len);
			slot->write_pos += len;
		}
		wake = (slot->write_pos - slot->read_pos) * 2 > async_shared->slot_bytes;
	}
	slot->reserved -= pending_bytes;
	LWLockRelease(async_shared->lock);
	if (wake && slot->worker_latch != NULL)
		SetLatch(slot->worker_latch);

	/* The list lives in TopTransactionContext, which goes away with it */
	pending_records = NIL;
	pending_bytes = 0;
	pending_slot = -1;
}

/* SIGTERM: finish the queue, then exit */
static void
WriterSigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	worker_got_sigterm = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/* Read one field of a record; returns the position after it */
static const char *
ReadField(const char *p, const char **value, uint32 *len)
{
	memcpy(len, p, sizeof(uint32));
	p += sizeof(uint32);
	if (*len == NULL_FIELD_LEN)
	{
		*value = NULL;
		return p;
	}
	*value = p;
	return p + *len;
}

/*
 * Decode one serialised record into a log row's LOG_COLUMNS values and
 * nulls (allocated in the current memory context)
 */
static void
DecodeRecord(const char *record, Datum *values, char *nulls)
{
	AsyncLogRecordHeader header;
	const char *p = record + sizeof(AsyncLogRecordHeader);
	const char *value[FIELD_COUNT];
	uint32		len[FIELD_COUNT];
	int			i;

	memcpy(&header, record, sizeof(header));
	for (i = 0; i < FIELD_COUNT; i++)
		p = ReadField(p, &value[i], &len[i]);

	memset(nulls, ' ', LOG_COLUMNS);
	values[0] = TimestampTzGetDatum(header.created_at);
	if (header.flags & FLAG_KEY_IDENTIFIED)
	{
		/* By reference: the row outlives this frame, so it gets its own copy */
		pg_uuid_t  *key_id = palloc(sizeof(pg_uuid_t));

		*key_id = header.key_id;
		values[1] = UUIDPGetDatum(key_id);
	}
	else
		nulls[1] = 'n';
	if (value[FIELD_PUBLIC_ID])
		values[2] = PointerGetDatum(cstring_to_text_with_len(value[FIELD_PUBLIC_ID], len[FIELD_PUBLIC_ID]));
	else
		nulls[2] = 'n';
	if (value[FIELD_CLIENT])
		values[3] = PointerGetDatum(cstring_to_text_with_len(value[FIELD_CLIENT], len[FIELD_CLIENT]));
	else
		nulls[3] = 'n';
	/* Varlena fields were copied whole; copy them out aligned */
	for (i = FIELD_REMOTE_ADDR; i <= FIELD_MISSING; i++)
	{
		int			col = 4 + (i - FIELD_REMOTE_ADDR);

		if (value[i])
		{
			char	   *copy = palloc(len[i]);

			memcpy(copy, value[i], len[i]);
			values[col] = PointerGetDatum(copy);
		}
		else
			nulls[col] = 'n';
	}
	values[8] = BoolGetDatum((header.flags & FLAG_AUTHENTICATED) != 0);
	values[9] = BoolGetDatum((header.flags & FLAG_AUTHORIZED) != 0);
	values[10] = BoolGetDatum((header.flags & FLAG_ENFORCED) != 0);
	values[11] = BoolGetDatum((header.flags & FLAG_ALLOWED) != 0);
	values[12] = Int16GetDatum(header.status);
	if (value[FIELD_REASON])
		values[13] = PointerGetDatum(cstring_to_text_with_len(value[FIELD_REASON], len[FIELD_REASON]));
	else
		nulls[13] = 'n';
	values[14] = BoolGetDatum((header.flags & FLAG_LOCKED_IN) != 0);
}

/*
 * The writer's working memory, kept for its life: the drained bytes, and
 * a context for one statement's rows whose first block outlives resets.
 * Allocating them afresh at every drain cost the writer page faults for
 * about a seventh of its time.
 */
static char *drain_buffer = NULL;
static Size drain_buffer_size = 0;
static MemoryContext chunk_context = NULL;

#define CHUNK_CONTEXT_KEEP (512 * 1024)

/*
 * Stamp last_used_at for the keys of queued decisions made where the call
 * could not write (a read-only transaction): the latest use per key, and
 * never backwards.  A key row another transaction holds is skipped (a
 * later use stamps it), so no open transaction can stall the queue.
 */
static void
StampQueuedLastUse(Datum *ids, Datum *used_at, int n)
{
	static SPIPlanPtr stamp_plan = NULL;
	Datum		args[2];

	if (n == 0)
		return;
	if (stamp_plan == NULL)
	{
		Oid			argtypes[2] = {UUIDARRAYOID, TIMESTAMPTZARRAYOID};

		stamp_plan = PrepareKeptPlan(
			"WITH u AS (SELECT x.id, pg_catalog.max(x.t) AS used_at "
			"             FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS x(id, t) "
			"            GROUP BY x.id), "
			"     due AS (SELECT k.id, u.used_at FROM athena_keys.api_key k, u "
			"              WHERE k.id OPERATOR(pg_catalog.=) u.id "
			"                AND (k.last_used_at IS NULL OR k.last_used_at OPERATOR(pg_catalog.<) u.used_at) "
			"                FOR UPDATE OF k SKIP LOCKED) "
			"UPDATE athena_keys.api_key k SET last_used_at = due.used_at "
			"  FROM due WHERE k.id OPERATOR(pg_catalog.=) due.id",
			2, argtypes, 0);
	}
	args[0] = PointerGetDatum(construct_array(ids, n, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
	args[1] = PointerGetDatum(construct_array(used_at, n, TIMESTAMPTZOID, sizeof(TimestampTz),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (ExecuteKeptPlan(stamp_plan, args, NULL, 0) != SPI_OK_UPDATE)
		elog(ERROR, "athena_keys: stamping last_used_at of queued decisions failed");
}

/*
 * Insert the serialised records of buffer[0, len) as log rows,
 * LOG_INSERT_MAX_ROWS per statement, in the current transaction, and stamp
 * last use where a record asks for it
 */
static void
InsertRecords(const char *buffer, uint64 len)
{
	Datum		values[LOG_INSERT_MAX_ROWS * LOG_COLUMNS];
	char		nulls[LOG_INSERT_MAX_ROWS * LOG_COLUMNS];
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
		AsyncLogRecordHeader header;

		memcpy(&header, buffer + pos, sizeof(header));
		DecodeRecord(buffer + pos, &values[nrows * LOG_COLUMNS], &nulls[nrows * LOG_COLUMNS]);
		if ((header.flags & FLAG_STAMP_LAST_USED) && (header.flags & FLAG_KEY_IDENTIFIED))
		{
			stamp_ids[nstamps] = values[nrows * LOG_COLUMNS + 1];
			stamp_times[nstamps] = TimestampTzGetDatum(header.created_at);
			nstamps++;
		}
		nrows++;
		pos += header.total_len;
		if (nrows == LOG_INSERT_MAX_ROWS || pos >= len)
		{
			InsertLogRows(values, nulls, nrows);
			StampQueuedLastUse(stamp_ids, stamp_times, nstamps);
			nrows = 0;
			nstamps = 0;
			MemoryContextReset(chunk_context);
		}
	}
	MemoryContextSwitchTo(old);
}

/* Append a text[] varlena as a JSON array of strings */
static void
AppendTextArrayJson(StringInfo buf, const char *bytes, uint32 len)
{
	char	   *copy = palloc(len);
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	memcpy(copy, bytes, len);
	arr = DatumGetArrayTypeP(PointerGetDatum(copy));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	appendStringInfoChar(buf, '[');
	for (i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(buf, ',');
		if (nulls[i])
			appendStringInfoString(buf, "null");
		else
			escape_json(buf, TextDatumGetCString(elems[i]));
	}
	appendStringInfoChar(buf, ']');
}

/* Append a text field as a JSON string, or null */
static void
AppendTextJson(StringInfo buf, const char *key, const char *value, uint32 len)
{
	appendStringInfo(buf, ",\"%s\":", key);
	if (value == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, pnstrdup(value, len));
}

/* Append one serialised record as a JSON object in api_key_auth_log's shape */
static void
AppendRecordJson(StringInfo buf, const char *record)
{
	AsyncLogRecordHeader header;
	const char *p = record + sizeof(AsyncLogRecordHeader);
	const char *value[FIELD_COUNT];
	uint32		len[FIELD_COUNT];
	int			i;
	static const char *const array_keys[] = {"required_rights", "granted_rights", "missing_rights"};

	memcpy(&header, record, sizeof(header));
	for (i = 0; i < FIELD_COUNT; i++)
		p = ReadField(p, &value[i], &len[i]);

	appendStringInfoString(buf, "{\"created_at\":");
	escape_json(buf, DatumGetCString(DirectFunctionCall1(timestamptz_out,
														 TimestampTzGetDatum(header.created_at))));
	appendStringInfoString(buf, ",\"api_key_id\":");
	if (header.flags & FLAG_KEY_IDENTIFIED)
		escape_json(buf, DatumGetCString(DirectFunctionCall1(uuid_out,
															 UUIDPGetDatum(&header.key_id))));
	else
		appendStringInfoString(buf, "null");
	AppendTextJson(buf, "api_key_public_id", value[FIELD_PUBLIC_ID], len[FIELD_PUBLIC_ID]);
	AppendTextJson(buf, "client_name", value[FIELD_CLIENT], len[FIELD_CLIENT]);
	appendStringInfoString(buf, ",\"remote_addr\":");
	if (value[FIELD_REMOTE_ADDR])
	{
		char	   *copy = palloc(len[FIELD_REMOTE_ADDR]);

		memcpy(copy, value[FIELD_REMOTE_ADDR], len[FIELD_REMOTE_ADDR]);
		escape_json(buf, DatumGetCString(DirectFunctionCall1(inet_out, PointerGetDatum(copy))));
	}
	else
		appendStringInfoString(buf, "null");
	for (i = FIELD_REQUIRED; i <= FIELD_MISSING; i++)
	{
		appendStringInfo(buf, ",\"%s\":", array_keys[i - FIELD_REQUIRED]);
		if (value[i])
			AppendTextArrayJson(buf, value[i], len[i]);
		else
			appendStringInfoString(buf, "null");
	}
	appendStringInfo(buf, ",\"authenticated\":%s,\"authorized\":%s,\"enforced\":%s,"
					 "\"allowed\":%s,\"status\":%d,\"locked_in\":%s",
					 (header.flags & FLAG_AUTHENTICATED) ? "true" : "false",
					 (header.flags & FLAG_AUTHORIZED) ? "true" : "false",
					 (header.flags & FLAG_ENFORCED) ? "true" : "false",
					 (header.flags & FLAG_ALLOWED) ? "true" : "false",
					 header.status,
					 (header.flags & FLAG_LOCKED_IN) ? "true" : "false");
	AppendTextJson(buf, "failure_reason", value[FIELD_REASON], len[FIELD_REASON]);
	appendStringInfoChar(buf, '}');
}

/* Warn at most once a minute that shipping fails (the rows stay queued) */
static void
WarnShippingFailed(const char *why)
{
	TimestampTz now = GetCurrentTimestamp();

	if (TimestampDifferenceExceeds(last_ship_warning, now, 60000))
	{
		ereport(WARNING,
				(errmsg("athena_keys log writer cannot send standby decisions to the primary"),
				 errdetail("%s", why),
				 errhint("Set athena_keys.primary_conninfo to a connection string of the primary for a role that may execute athena_keys.athena_record_decisions.")));
		last_ship_warning = now;
	}
}

/*
 * Connect to the primary: athena_keys.primary_conninfo, else the standby's
 * primary_conninfo with this database's name.  Timeouts and keepalives come
 * first so that a hung or unreachable primary never stalls the writer (or a
 * clean shutdown) for long; settings in the connection string override them.
 * Returns NULL, with a warning, when there is nothing to connect to or the
 * connection fails.
 */
static PGconn *
ConnectToPrimary(void)
{
	const char *keywords[9];
	const char *values[9];
	int			n = 0;
	const char *conninfo = athena_primary_conninfo;
	PGconn	   *conn;

	keywords[n] = "connect_timeout", values[n++] = "5";
	keywords[n] = "keepalives_idle", values[n++] = "10";
	keywords[n] = "keepalives_interval", values[n++] = "5";
	keywords[n] = "keepalives_count", values[n++] = "3";
	keywords[n] = "options", values[n++] = "-c statement_timeout=30000";
	keywords[n] = "application_name", values[n++] = "athena_keys log writer";
	if (conninfo == NULL || conninfo[0] == '\0')
	{
		conninfo = GetConfigOption("primary_conninfo", true, false);
		if (conninfo == NULL || conninfo[0] == '\0')
		{
			WarnShippingFailed("Neither athena_keys.primary_conninfo nor primary_conninfo is set.");
			return NULL;
		}
		/* The first dbname is expanded as a connection string, a second is a name */
		keywords[n] = "dbname", values[n++] = conninfo;
		keywords[n] = "dbname", values[n++] = worker_database_name;
	}
	else
		keywords[n] = "dbname", values[n++] = conninfo;
	keywords[n] = NULL, values[n] = NULL;

	conn = PQconnectdbParams(keywords, values, 1);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		WarnShippingFailed(PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/*
 * Send records [0, len) of buffer to the primary in one call.  Returns
 * whether the primary took them; on failure they stay queued.
 */
static bool
ShipToPrimary(const char *buffer, uint64 len)
{
	StringInfoData json;
	uint64		pos;
	PGresult   *res;
	const char *params[1];
	bool		ok;

	if (primary_conn != NULL && PQstatus(primary_conn) != CONNECTION_OK)
	{
		PQfinish(primary_conn);
		primary_conn = NULL;
	}
	if (primary_conn == NULL)
	{
		primary_conn = ConnectToPrimary();
		if (primary_conn == NULL)
			return false;
	}

	initStringInfo(&json);
	appendStringInfoChar(&json, '[');
	for (pos = 0; pos < len;)
	{
		uint32		rec_len;

		memcpy(&rec_len, buffer + pos, sizeof(uint32));
		if (pos > 0)
			appendStringInfoChar(&json, ',');
		AppendRecordJson(&json, buffer + pos);
		pos += rec_len;
	}
	appendStringInfoChar(&json, ']');

	params[0] = json.data;
	res = PQexecParams(primary_conn, "SELECT athena_keys.athena_record_decisions($1::jsonb)",
					   1, NULL, params, NULL, NULL, 0);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	if (!ok)
		WarnShippingFailed(PQerrorMessage(primary_conn));
	PQclear(res);
	pfree(json.data);
	return ok;
}

/*
 * Insert everything queued so far in one transaction (on a hot standby:
 * send it to the primary), then release it from the ring.  Returns the bytes
 * drained, 0 when the primary did not take them.  Rows of a database whose
 * extension was dropped are discarded.
 */
static uint64
DrainSlot(AsyncLogSlot *slot)
{
	uint64		start;
	uint64		end;
	char	   *buffer;
	bool		delivered = true;

	LWLockAcquire(async_shared->lock, LW_SHARED);
	start = slot->read_pos;
	end = slot->write_pos;
	LWLockRelease(async_shared->lock);
	if (start == end)
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
	RingRead(slot, start, buffer, end - start);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "athena_keys: inserting queued log rows");

	if (RecoveryInProgress())
		delivered = ShipToPrimary(buffer, end - start);
	else if (OidIsValid(get_namespace_oid("athena_keys", true)) &&
			 OidIsValid(get_relname_relid("api_key_auth_log", get_namespace_oid("athena_keys", true))))
		InsertRecords(buffer, end - start);

	ResetSpiConnection();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	if (!delivered)
		return 0;				/* still queued: retried at the next flush */

	LWLockAcquire(async_shared->lock, LW_EXCLUSIVE);
	slot->read_pos = end;
	LWLockRelease(async_shared->lock);
	return end - start;
}

/*
 * Exit callback of a writer, whatever ends it (idle, SIGTERM, an error, a
 * failed connection): the slot no longer has a writer, so the next backend
 * that queues starts one.  A slot whose queue is empty is freed for any
 * database; a writer that never connected keeps its slot and rows (a
 * dropped database's slot is reclaimed when slots run out).  After a
 * failure the next writer waits a second, so a persistent error does not
 * start writers in a tight loop.
 */
static void
WriterExitCallback(int code, Datum arg)
{
	AsyncLogSlot *slot;

	if (writer_released || writer_slot < 0)
		return;
	slot = &async_shared->slots[writer_slot];
	LWLockAcquire(async_shared->lock, LW_EXCLUSIVE);
	if (slot->generation == writer_generation)
	{
		ForgetWriter(slot);
		if (writer_connected && slot->reserved == 0 && slot->write_pos == slot->read_pos)
			slot->dboid = InvalidOid;
		if (code != 0)
			slot->retry_after = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000);
	}
	LWLockRelease(async_shared->lock);
	writer_released = true;
}

/*
 * Leave when idle: free the slot and exit, both under the lock only if
 * nothing is queued or reserved, so that a backend that queues after this
 * sees no writer and starts a new one.  Returns when it cannot leave.
 */
static void
ExitIfIdle(AsyncLogSlot *slot)
{
	bool		quit = false;

	LWLockAcquire(async_shared->lock, LW_EXCLUSIVE);
	if (slot->reserved == 0 && slot->write_pos == slot->read_pos)
	{
		ForgetWriter(slot);
		slot->dboid = InvalidOid;
		writer_released = true;
		quit = true;
	}
	LWLockRelease(async_shared->lock);
	if (quit)
		proc_exit(0);
}

/*
 * On SIGTERM, drain until quiet, then exit.  Backends may still be
 * committing.  A standby gives up after five seconds, since a primary it
 * cannot reach would otherwise hold up the shutdown; a primary's local
 * inserts always make progress.
 */
static void
DrainAndExit(AsyncLogSlot *slot)
{
	int			quiet_rounds = 0;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 5000);

	while (quiet_rounds < 5 &&
		   (!RecoveryInProgress() || GetCurrentTimestamp() < deadline))
	{
		bool		busy;

		LWLockAcquire(async_shared->lock, LW_SHARED);
		busy = slot->reserved > 0 || slot->write_pos != slot->read_pos;
		LWLockRelease(async_shared->lock);
		CHECK_FOR_INTERRUPTS();
		if (DrainSlot(slot) > 0 || busy)
			quiet_rounds = 0;
		else
			quiet_rounds++;
		pg_usleep(10000L);
	}
	proc_exit(0);
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
	int			slot_index = DatumGetInt32(main_arg);
	AsyncLogSlot *slot;
	TimestampTz idle_since;
	Oid			dboid;

	pqsignal(SIGTERM, WriterSigterm);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	if (async_shared == NULL || slot_index < 0 || slot_index >= ASYNC_LOG_SLOTS)
		proc_exit(0);
	slot = &async_shared->slots[slot_index];
	memcpy(&writer_generation, MyBgworkerEntry->bgw_extra, sizeof(uint64));

	LWLockAcquire(async_shared->lock, LW_SHARED);
	dboid = slot->dboid;
	if (slot->generation != writer_generation || !OidIsValid(dboid))
		dboid = InvalidOid;
	LWLockRelease(async_shared->lock);
	if (!OidIsValid(dboid))
		proc_exit(0);

	writer_slot = slot_index;
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

	LWLockAcquire(async_shared->lock, LW_EXCLUSIVE);
	slot->worker_pid = MyProcPid;
	slot->worker_latch = MyLatch;
	LWLockRelease(async_shared->lock);
	idle_since = GetCurrentTimestamp();

	for (;;)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 athena_async_flush_interval_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		/* Absorbs ProcSignalBarriers (DROP DATABASE waits for them) */
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		if (DrainSlot(slot) > 0)
			idle_since = GetCurrentTimestamp();
		else if (!worker_got_sigterm &&
				 TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(), 1000))
			ExitIfIdle(slot);	/* idle for a second: let the database be dropped */

		if (worker_got_sigterm)
			DrainAndExit(slot);
	}
}
