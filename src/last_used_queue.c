/*-------------------------------------------------------------------------
 * last_used_queue.c
 *		Due last_used_at stamps in shared memory, for the log writer to
 *		apply in batches instead of an UPDATE of api_key in every call.
 *
 * An UPDATE of the key row compiles the row's CHECK constraints at every
 * execution, which costs a call many times what deciding it does.  So when
 * athena_keys is preloaded, a call whose stamp is due reserves its key's
 * entry here (one entry per database, api_key table and key: calls of the
 * same key coalesce) and, when its transaction commits, records its time
 * in it; a rolled-back transaction records nothing.  The database's log
 * writer (log_writer.c, started for stamps as for log rows) takes the
 * recorded entries every flush interval and applies them in one statement
 * (key_last_used.c), so the constraints are paid once per batch.
 *
 * The table's OID is part of an entry, so a stamp recorded before the
 * extension was dropped and created again (key ids of a new table) never
 * lands in the new one.  The table has a fixed size: a call that finds it
 * full (after freeing what dropped databases left), or whose database
 * cannot get a writer, stamps in the call as it would without preloading.
 * Pending stamps are lost if the server crashes before the writer's next
 * batch (on SIGTERM the writer applies them before it exits); last_used_at
 * is informational.
 *
 * A reserved entry stays until its holders commit or abort, so the writer
 * of a database with reservations does not leave (LogQueueReleaseIfIdle)
 * before their stamps are recorded.
 *-------------------------------------------------------------------------
 */
#include "last_used_queue.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"


typedef struct LastUseKey
{
	Oid			dboid;
	Oid			relid;
	pg_uuid_t	id;
} LastUseKey;

typedef struct LastUseEntry
{
	LastUseKey	key;
	TimestampTz used_at;		/* latest committed use; 0 = none recorded yet */
	int32		holders;		/* transactions that reserved it, not yet ended */
} LastUseEntry;

typedef struct LastUseShared
{
	LWLock	   *lock;
	int			recorded;		/* entries with a use recorded, all databases */
} LastUseShared;

static LastUseShared *last_use_shared = NULL;
static HTAB *last_use_table = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* The entries this transaction reserved, and the times it records at commit */
static LastUseEntry **pending_entries = NULL;
static TimestampTz *pending_times = NULL;
static int	npending = 0;
static int	maxpending = 0;
static bool xact_callback_registered = false;

static void LastUseShmemRequest(void);
static void LastUseShmemStartup(void);
static void LastUseXactCallback(XactEvent event, void *arg);

/* Shared memory for the table and its lock */
static Size
LastUseShmemSize(void)
{
	return add_size(MAXALIGN(sizeof(LastUseShared)),
					hash_estimate_size(LAST_USED_QUEUE_ENTRIES, sizeof(LastUseEntry)));
}

/*
 * Called from _PG_init: while shared_preload_libraries is processed,
 * install the shared memory hooks; without preloading there is no table
 * and every call stamps itself.
 */
void
InitLastUseQueue(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = LastUseShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = LastUseShmemStartup;
}

/* Ask for the shared memory and the lock */
static void
LastUseShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(LastUseShmemSize());
	RequestNamedLWLockTranche("athena_keys last_used_at", 1);
}

/* Create (or attach to) the table; its size is a hard limit */
static void
LastUseShmemStartup(void)
{
	HASHCTL		info;
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	last_use_shared = ShmemInitStruct("athena_keys last_used_at", sizeof(LastUseShared), &found);
	if (!found)
	{
		last_use_shared->lock = &(GetNamedLWLockTranche("athena_keys last_used_at"))->lock;
		last_use_shared->recorded = 0;
	}
	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(LastUseKey);
	info.entrysize = sizeof(LastUseEntry);
#if PG_VERSION_NUM >= 190000
	/* 19 sizes a shared hash once: its initial size is its size */
	last_use_table = ShmemInitHash("athena_keys last_used_at stamps",
								   LAST_USED_QUEUE_ENTRIES,
								   &info, HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
#else
	last_use_table = ShmemInitHash("athena_keys last_used_at stamps",
								   LAST_USED_QUEUE_ENTRIES, LAST_USED_QUEUE_ENTRIES,
								   &info, HASH_ELEM | HASH_BLOBS | HASH_FIXED_SIZE);
#endif
	LWLockRelease(AddinShmemInitLock);
}

/* Give up one reservation of an entry; the lock is held */
static void
ReleaseReservation(LastUseEntry *entry)
{
	entry->holders--;
	if (entry->holders == 0 && entry->used_at == 0)
		hash_search(last_use_table, &entry->key, HASH_REMOVE, NULL);
}

/*
 * Free the entries of databases that no longer exist (dropped while a
 * stamp was pending, before their writer applied it), so that they cannot
 * fill the table for good.  Called when the table is full; reads
 * pg_database, so it runs in a transaction.
 */
static void
PurgeStampsOfDroppedDatabases(void)
{
	HASH_SEQ_STATUS scan;
	LastUseEntry *entry;
	Oid			dboids[8];
	int			ndb = 0;
	int			i;

	LWLockAcquire(last_use_shared->lock, LW_SHARED);
	hash_seq_init(&scan, last_use_table);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		for (i = 0; i < ndb && dboids[i] != entry->key.dboid; i++)
			;
		if (i == ndb && ndb < (int) lengthof(dboids))
			dboids[ndb++] = entry->key.dboid;
	}
	LWLockRelease(last_use_shared->lock);

	for (i = 0; i < ndb; i++)
	{
		if (SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dboids[i])))
			continue;
		LWLockAcquire(last_use_shared->lock, LW_EXCLUSIVE);
		hash_seq_init(&scan, last_use_table);
		while ((entry = hash_seq_search(&scan)) != NULL)
		{
			if (entry->key.dboid != dboids[i] || entry->holders > 0)
				continue;
			if (entry->used_at != 0)
				last_use_shared->recorded--;
			/* dynahash allows removing the entry a scan just returned */
			hash_search(last_use_table, &entry->key, HASH_REMOVE, NULL);
		}
		LWLockRelease(last_use_shared->lock);
	}
}

/*
 * Queue a due stamp of key id (of the api_key table relid) for the log
 * writer, recorded when the transaction commits.  LAST_USE_NOT_QUEUED
 * when athena_keys is not preloaded or the table is full: the caller then
 * stamps in the call.  After LAST_USE_RESERVED the caller makes sure the
 * database has a writer (log_queue.c, which asks this file whether stamps
 * are pending, so this file does not call it) and gives the reservation
 * back with ReleaseLatestLastUse when it cannot have one.
 */
LastUseQueued
QueueLastUse(Oid relid, const pg_uuid_t *id, TimestampTz used_at)
{
	LastUseKey	key;
	LastUseEntry *entry;
	bool		found;

	if (last_use_table == NULL || !OidIsValid(MyDatabaseId) || !OidIsValid(relid))
		return LAST_USE_NOT_QUEUED;

	memset(&key, 0, sizeof(key));
	key.dboid = MyDatabaseId;
	key.relid = relid;
	key.id = *id;

	/* The same key again in this transaction: its entry is already held */
	if (npending > 0 &&
		memcmp(&pending_entries[npending - 1]->key, &key, sizeof(key)) == 0)
	{
		pending_times[npending - 1] = Max(pending_times[npending - 1], used_at);
		return LAST_USE_HELD;
	}

	/* Everything that can fail comes before the reservation */
	if (!xact_callback_registered)
	{
		RegisterXactCallback(LastUseXactCallback, NULL);
		xact_callback_registered = true;
	}
	if (npending == maxpending)
	{
		int			newmax = maxpending == 0 ? 16 : maxpending * 2;

		if (pending_entries == NULL)
		{
			pending_entries = MemoryContextAlloc(TopTransactionContext,
												 newmax * sizeof(LastUseEntry *));
			pending_times = MemoryContextAlloc(TopTransactionContext,
											   newmax * sizeof(TimestampTz));
		}
		else
		{
			pending_entries = repalloc(pending_entries, newmax * sizeof(LastUseEntry *));
			pending_times = repalloc(pending_times, newmax * sizeof(TimestampTz));
		}
		maxpending = newmax;
	}

	LWLockAcquire(last_use_shared->lock, LW_EXCLUSIVE);
	entry = hash_search(last_use_table, &key, HASH_ENTER_NULL, &found);
	if (entry == NULL)
	{
		static TimestampTz last_purge = 0;
		TimestampTz now = GetCurrentTimestamp();

		/* Full: free what dropped databases left (once a second at most), try again */
		LWLockRelease(last_use_shared->lock);
		if (!TimestampDifferenceExceeds(last_purge, now, 1000))
			return LAST_USE_NOT_QUEUED;
		last_purge = now;
		PurgeStampsOfDroppedDatabases();
		LWLockAcquire(last_use_shared->lock, LW_EXCLUSIVE);
		entry = hash_search(last_use_table, &key, HASH_ENTER_NULL, &found);
		if (entry == NULL)
		{
			LWLockRelease(last_use_shared->lock);
			return LAST_USE_NOT_QUEUED;
		}
	}
	if (!found)
	{
		entry->used_at = 0;
		entry->holders = 0;
	}
	entry->holders++;
	LWLockRelease(last_use_shared->lock);
	/* Counted at once, so that an abort gives the reservation back whatever follows */
	pending_entries[npending] = entry;
	pending_times[npending] = used_at;
	npending++;
	return LAST_USE_RESERVED;
}

/*
 * Give back the reservation QueueLastUse just made (LAST_USE_RESERVED),
 * when its database cannot have a writer: the caller stamps in the call.
 */
void
ReleaseLatestLastUse(void)
{
	Assert(npending > 0);
	npending--;
	LWLockAcquire(last_use_shared->lock, LW_EXCLUSIVE);
	ReleaseReservation(pending_entries[npending]);
	LWLockRelease(last_use_shared->lock);
}

/*
 * When the transaction has committed, record its stamps; when it aborts
 * or is prepared, give the reservations back.  A prepared transaction may
 * still be rolled back, and then the in-call UPDATE this replaces would
 * have left no stamp; what it records is lost when it commits instead
 * (last_used_at is informational, and a later due use stamps the key).
 * A rolled-back subtransaction's stamp stays, like its log row.
 */
static void
LastUseXactCallback(XactEvent event, void *arg)
{
	bool		commit;
	int			i;

	if (npending == 0 && pending_entries == NULL)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			commit = true;
			break;
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			commit = false;
			break;
		default:
			return;
	}

	if (npending > 0)
	{
		LWLockAcquire(last_use_shared->lock, LW_EXCLUSIVE);
		for (i = 0; i < npending; i++)
		{
			LastUseEntry *entry = pending_entries[i];

			if (commit)
			{
				if (entry->used_at == 0)
					last_use_shared->recorded++;
				entry->used_at = Max(entry->used_at, pending_times[i]);
				entry->holders--;
			}
			else
				ReleaseReservation(entry);
		}
		LWLockRelease(last_use_shared->lock);
	}

	/* The arrays live in TopTransactionContext, which goes away with it */
	pending_entries = NULL;
	pending_times = NULL;
	npending = 0;
	maxpending = 0;
}

/*
 * The writer of database dboid: copy up to max of its recorded stamps into
 * out; returns how many.  They stay in the table until LastUseQueueApplied.
 */
int
LastUseQueueTake(Oid dboid, LastUseStamp *out, int max)
{
	HASH_SEQ_STATUS scan;
	LastUseEntry *entry;
	int			n = 0;

	if (last_use_table == NULL)
		return 0;
	LWLockAcquire(last_use_shared->lock, LW_SHARED);
	/* A writer wakes every flush interval: no scan of the table for nothing */
	if (last_use_shared->recorded == 0)
	{
		LWLockRelease(last_use_shared->lock);
		return 0;
	}
	hash_seq_init(&scan, last_use_table);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		if (entry->key.dboid != dboid || entry->used_at == 0)
			continue;
		if (n == max)
		{
			hash_seq_term(&scan);
			break;
		}
		out[n].relid = entry->key.relid;
		out[n].id = entry->key.id;
		out[n].used_at = entry->used_at;
		n++;
	}
	LWLockRelease(last_use_shared->lock);
	return n;
}

/*
 * The writer applied (or discarded) the stamps in done: forget each one
 * unless a later use was recorded meanwhile.  An entry still reserved by
 * a transaction stays, emptied, for that transaction's stamp.
 */
void
LastUseQueueApplied(Oid dboid, const LastUseStamp *done, int n)
{
	LastUseKey	key;
	int			i;

	memset(&key, 0, sizeof(key));
	key.dboid = dboid;
	LWLockAcquire(last_use_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < n; i++)
	{
		LastUseEntry *entry;

		key.relid = done[i].relid;
		key.id = done[i].id;
		entry = hash_search(last_use_table, &key, HASH_FIND, NULL);
		if (entry == NULL || entry->used_at != done[i].used_at)
			continue;
		last_use_shared->recorded--;
		if (entry->holders == 0)
			hash_search(last_use_table, &key, HASH_REMOVE, NULL);
		else
			entry->used_at = 0;
	}
	LWLockRelease(last_use_shared->lock);
}

/* Whether database dboid has stamps recorded or reserved */
bool
LastUseQueueBusy(Oid dboid)
{
	HASH_SEQ_STATUS scan;
	LastUseEntry *entry;
	bool		busy = false;

	if (last_use_table == NULL)
		return false;
	LWLockAcquire(last_use_shared->lock, LW_SHARED);
	if (hash_get_num_entries(last_use_table) == 0)
	{
		LWLockRelease(last_use_shared->lock);
		return false;
	}
	hash_seq_init(&scan, last_use_table);
	while ((entry = hash_seq_search(&scan)) != NULL)
	{
		if (entry->key.dboid == dboid)
		{
			busy = true;
			hash_seq_term(&scan);
			break;
		}
	}
	LWLockRelease(last_use_shared->lock);
	return busy;
}
