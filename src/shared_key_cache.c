/*-------------------------------------------------------------------------
 * shared_key_cache.c
 *		The key cache every backend of the server shares, in shared memory
 *		sized by athena_keys.shared_key_cache_size (athena_keys preloaded).
 *
 * A key the backend's own cache does not hold (key_cache.c) is looked up
 * here before its rows are read from the tables; what one backend read
 * then serves every other one, and a miss costs a copy instead of a read of
 * the key row, its grants, its rules and its limits.  Unknown public ids
 * are not kept: a caller sending random ids must not evict real keys from
 * every backend's view.
 *
 * When an entry is stale: the cache has one epoch, advanced by every
 * transaction that changed a table feeding the key cache, after its commit
 * became visible (the XACT_EVENT_COMMIT callback below runs after the
 * transaction left the proc array).  The change is noticed by the tables'
 * invalidation triggers (cache_invalidation.c: every insert, update, delete
 * and truncate, also under session_replication_role = replica and in a
 * logical replication apply worker) and by the relcache callback while the
 * transaction has a transaction id (DDL: a dropped table or index; while
 * the session does not know every key table's OID, a relation that is a
 * key table when the transaction commits, as one swapped in by renames).  An
 * entry is valid only in the epoch it was filled in, and a filler reads
 * the epoch before it takes the snapshot it reads the rows with: a change
 * its snapshot missed committed after that, and its epoch advance makes the
 * entry stale.  A committed change is therefore seen by every backend's
 * next call, as with the backends' own caches.
 *
 * What would escape the epoch is avoided: a server that allows prepared
 * transactions (max_prepared_transactions > 0) has no shared cache, since a
 * COMMIT PREPARED (by any session, by a two_phase subscription's apply
 * worker, after a restart or a promotion) runs without the preparing
 * transaction's callback; a hot standby, whose changes arrive through the
 * WAL, does not use the cache; a crash restart starts with an empty cache.
 * Entries are kept per database incarnation (its OID and the xmin of its
 * pg_database row, so a database dropped and created again with the same
 * OID never meets its predecessor's entries) and per api_key table OID (nor
 * does a re-created extension).
 *
 * Layout: fixed slots of SHARED_KEY_SLOT_SIZE bytes, in buckets of
 * SHARED_KEY_WAYS slots; a key's bucket comes from the hash of its public
 * id, a bucket's slots are replaced stale first, then oldest filled.
 * Locks guard groups of buckets; a lookup holds one shared for the copy.
 * A key whose rows do not fit in a slot is not shared.
 *-------------------------------------------------------------------------
 */
#include "shared_key_cache.h"

#include "access/htup_details.h"
#include "access/twophase.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "settings.h"

#define SHARED_KEY_TRANCHE "athena_keys shared key cache"
#define SHARED_KEY_SLOT_SIZE 4096
#define SHARED_KEY_WAYS 8
#define SHARED_KEY_MAX_LOCKS 1024

/* The fixed part of a slot; the key's record follows it */
typedef struct SharedKeySlot
{
	uint64		epoch;			/* the epoch it is valid in; 0: empty */
	uint64		filled;			/* fill order, for replacement */
	Oid			database;
	TransactionId database_xmin;	/* with database: the incarnation */
	Oid			key_table;
	uint32		hash;
	uint32		length;			/* of the record */
	char		public_id[PUBLIC_ID_MAX_LEN + 1];
} SharedKeySlot;

#define SLOT_RECORD_OFFSET MAXALIGN(sizeof(SharedKeySlot))
#define SLOT_RECORD_SPACE (SHARED_KEY_SLOT_SIZE - SLOT_RECORD_OFFSET)

typedef struct SharedKeyCache
{
	pg_atomic_uint64 epoch;
	pg_atomic_uint64 fills;
	int			nbuckets;
	int			nlocks;
	LWLockPadded *locks;
} SharedKeyCache;

#define CACHE_SLOTS_OFFSET TYPEALIGN(PG_CACHE_LINE_SIZE, sizeof(SharedKeyCache))

/*
 * A key as stored in a slot: the scalars, then (each section MAXALIGNed)
 * the grants' lengths, the text[] of grants, the whitelist and its groups,
 * the blacklist and its groups, the rate limits, and the strings (salt,
 * previous salt, client, grant names), each NUL-terminated.
 */
typedef struct KeyRecord
{
	pg_uuid_t	id;
	unsigned char digest[KEY_DIGEST_LEN];
	unsigned char previous_digest[KEY_DIGEST_LEN];
	TimestampTz previous_valid_until;
	TimestampTz expires_at;
	TimestampTz last_used_at;
	bool		has_previous;
	bool		has_previous_salt;
	bool		is_active;
	bool		has_expiry;
	bool		learning;
	bool		has_client;
	int32		ngranted;
	int32		array_len;
	int32		nwhite;
	int32		nwhite_groups;
	int32		nblack;
	int32		nblack_groups;
	int32		nlimits;
	int32		strings_len;
} KeyRecord;

/* Where each section of a record starts, for one key's counts */
typedef struct RecordSections
{
	Size		lens;
	Size		array;
	Size		white;
	Size		white_groups;
	Size		black;
	Size		black_groups;
	Size		limits;
	Size		strings;
	Size		total;
} RecordSections;

static SharedKeyCache *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static bool key_tables_changed = false;
static TransactionId database_xmin = InvalidTransactionId;

/*
 * How many buckets the setting's memory makes (0: none, also wherever
 * prepared transactions are allowed: see the file header)
 */
static int
BucketCount(void)
{
	if (max_prepared_xacts > 0)
		return 0;
	return (int) (((Size) athena_shared_key_cache_kb * 1024) /
				  (SHARED_KEY_SLOT_SIZE * SHARED_KEY_WAYS));
}

/* How many locks guard the buckets */
static int
LockCount(void)
{
	return Max(1, Min(BucketCount(), SHARED_KEY_MAX_LOCKS));
}

/* The cache's shared memory */
static Size
SharedKeyCacheShmemSize(void)
{
	return add_size(CACHE_SLOTS_OFFSET,
					mul_size(mul_size(BucketCount(), SHARED_KEY_WAYS), SHARED_KEY_SLOT_SIZE));
}

/* Ask for the slots and their locks */
static void
SharedKeyCacheShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(SharedKeyCacheShmemSize());
	RequestNamedLWLockTranche(SHARED_KEY_TRANCHE, LockCount());
}

/* Create (or attach to) the cache; a new one is empty, in epoch 1 */
static void
SharedKeyCacheShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct(SHARED_KEY_TRANCHE, SharedKeyCacheShmemSize(), &found);
	if (!found)
	{
		memset(shared, 0, SharedKeyCacheShmemSize());
		pg_atomic_init_u64(&shared->epoch, 1);
		pg_atomic_init_u64(&shared->fills, 1);
		shared->nbuckets = BucketCount();
		shared->nlocks = LockCount();
		shared->locks = GetNamedLWLockTranche(SHARED_KEY_TRANCHE);
		if (max_prepared_xacts > 0 && athena_shared_key_cache_kb > 0)
			ereport(LOG,
					(errmsg("athena_keys: the shared key cache is off because max_prepared_transactions is %d",
							max_prepared_xacts),
					 errdetail("A COMMIT PREPARED of a key change would not be seen by the shared key cache."),
					 errhint("Set max_prepared_transactions to 0 to use the shared key cache.")));
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Transaction callback: advance the epoch when a transaction that changed
 * a table feeding the key cache has committed (visible to every snapshot
 * taken from now on).
 */
static void
SharedKeyCacheXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (key_tables_changed && shared != NULL)
				pg_atomic_fetch_add_u64(&shared->epoch, 1);
			key_tables_changed = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			key_tables_changed = false;
			break;
		default:
			break;
	}
}

/*
 * Called from _PG_init: while shared_preload_libraries is processed,
 * install the shared memory hooks and the transaction callback; otherwise
 * there is no shared cache.
 */
void
InitSharedKeyCache(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = SharedKeyCacheShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = SharedKeyCacheShmemStartup;
	RegisterXactCallback(SharedKeyCacheXactCallback, NULL);
}

/*
 * This transaction changed (or may have changed) a table feeding the key
 * cache: its commit advances the epoch.
 */
void
NoteKeyTablesChanged(void)
{
	key_tables_changed = true;
}

/*
 * The xmin of this database's pg_database row, which tells a database from
 * one dropped before it with the same OID; looked up once per backend
 * (raw: freezing does not change it).  InvalidTransactionId: not found.
 */
static TransactionId
DatabaseXmin(void)
{
	HeapTuple	tuple;

	if (TransactionIdIsValid(database_xmin))
		return database_xmin;
	tuple = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(MyDatabaseId));
	if (!HeapTupleIsValid(tuple))
		return InvalidTransactionId;
	database_xmin = HeapTupleHeaderGetRawXmin(tuple->t_data);
	ReleaseSysCache(tuple);
	return database_xmin;
}

/*
 * Whether this backend may use the shared cache now: it exists, is on, and
 * the server is not a standby in recovery (see the file header).  The
 * caller also checks that the transaction may fill caches.
 */
bool
SharedKeyCacheUsable(void)
{
	return shared != NULL && shared->nbuckets > 0 && athena_shared_key_cache &&
		!RecoveryInProgress() && TransactionIdIsValid(DatabaseXmin());
}

/* The hash naming a key's bucket */
static uint32
KeyHash(const char *public_id, Oid key_table)
{
	uint32		hash = hash_bytes((const unsigned char *) public_id, strlen(public_id));

	hash = hash_combine(hash, murmurhash32((uint32) MyDatabaseId));
	hash = hash_combine(hash, murmurhash32((uint32) database_xmin));
	return hash_combine(hash, murmurhash32((uint32) key_table));
}

/* Slot way of bucket */
static SharedKeySlot *
BucketSlot(int bucket, int way)
{
	return (SharedKeySlot *) ((char *) shared + CACHE_SLOTS_OFFSET +
							  ((Size) bucket * SHARED_KEY_WAYS + way) * SHARED_KEY_SLOT_SIZE);
}

/* The lock guarding bucket */
static LWLock *
BucketLock(int bucket)
{
	return &shared->locks[bucket % shared->nlocks].lock;
}

/* Whether slot holds the key (in any epoch) */
static bool
SlotHolds(const SharedKeySlot *slot, uint32 hash, Oid key_table, const char *public_id)
{
	return slot->epoch != 0 && slot->hash == hash && slot->database == MyDatabaseId &&
		slot->database_xmin == database_xmin && slot->key_table == key_table &&
		strcmp(slot->public_id, public_id) == 0;
}

/* Where a key's sections go, for its counts */
static void
PlanSections(const KeyRecord *rec, RecordSections *s)
{
	Size		at = MAXALIGN(sizeof(KeyRecord));

	s->lens = at;
	at = MAXALIGN(at + sizeof(int) * rec->ngranted);
	s->array = at;
	at = MAXALIGN(at + rec->array_len);
	s->white = at;
	at = MAXALIGN(at + sizeof(IpNet) * rec->nwhite);
	s->white_groups = at;
	at = MAXALIGN(at + sizeof(IpPrefixGroup) * rec->nwhite_groups);
	s->black = at;
	at = MAXALIGN(at + sizeof(IpNet) * rec->nblack);
	s->black_groups = at;
	at = MAXALIGN(at + sizeof(IpPrefixGroup) * rec->nblack_groups);
	s->limits = at;
	at = MAXALIGN(at + sizeof(RateLimit) * rec->nlimits);
	s->strings = at;
	s->total = at + rec->strings_len;
}

/* Append a NUL-terminated string (NULL: nothing) at *at */
static void
PutString(char *base, Size *at, const char *value)
{
	Size		len;

	if (value == NULL)
		return;
	len = strlen(value) + 1;
	memcpy(base + *at, value, len);
	*at += len;
}

/* The scalars and counts of entry's record */
static void
DescribeKey(const CachedKey *entry, KeyRecord *rec)
{
	const KeyFacts *f = &entry->facts;
	int			i;

	memset(rec, 0, sizeof(*rec));
	rec->id = entry->id;
	memcpy(rec->digest, f->digest, KEY_DIGEST_LEN);
	memcpy(rec->previous_digest, f->previous_digest, KEY_DIGEST_LEN);
	rec->previous_valid_until = f->previous_valid_until;
	rec->expires_at = f->expires_at;
	rec->last_used_at = entry->last_used_at;
	rec->has_previous = f->has_previous;
	rec->has_previous_salt = f->previous_salt != NULL;
	rec->is_active = f->is_active;
	rec->has_expiry = f->has_expiry;
	rec->learning = f->learning;
	rec->has_client = f->client_name != NULL;
	rec->ngranted = f->ngranted;
	rec->array_len = VARSIZE(entry->granted_array);
	rec->nwhite = entry->whitelist.set.nrules;
	rec->nwhite_groups = entry->whitelist.set.ngroups;
	rec->nblack = entry->blacklist.set.nrules;
	rec->nblack_groups = entry->blacklist.set.ngroups;
	rec->nlimits = f->nrate_limits;
	rec->strings_len = strlen(f->salt) + 1;
	if (f->previous_salt != NULL)
		rec->strings_len += strlen(f->previous_salt) + 1;
	if (f->client_name != NULL)
		rec->strings_len += f->client_name_len + 1;
	for (i = 0; i < f->ngranted; i++)
		rec->strings_len += f->granted_len[i] + 1;
}

/* Write entry's record (described by rec, laid out by s) at base */
static void
WriteRecord(char *base, const CachedKey *entry, const KeyRecord *rec, const RecordSections *s)
{
	const KeyFacts *f = &entry->facts;
	Size		at = s->strings;
	int			i;

	memcpy(base, rec, sizeof(*rec));
	if (rec->ngranted > 0)
		memcpy(base + s->lens, f->granted_len, sizeof(int) * rec->ngranted);
	memcpy(base + s->array, entry->granted_array, rec->array_len);
	if (rec->nwhite > 0)
	{
		memcpy(base + s->white, entry->whitelist.set.rules, sizeof(IpNet) * rec->nwhite);
		memcpy(base + s->white_groups, entry->whitelist.set.groups,
			   sizeof(IpPrefixGroup) * rec->nwhite_groups);
	}
	if (rec->nblack > 0)
	{
		memcpy(base + s->black, entry->blacklist.set.rules, sizeof(IpNet) * rec->nblack);
		memcpy(base + s->black_groups, entry->blacklist.set.groups,
			   sizeof(IpPrefixGroup) * rec->nblack_groups);
	}
	if (rec->nlimits > 0)
		memcpy(base + s->limits, f->rate_limits, sizeof(RateLimit) * rec->nlimits);
	PutString(base, &at, f->salt);
	PutString(base, &at, f->previous_salt);
	PutString(base, &at, f->client_name);
	for (i = 0; i < rec->ngranted; i++)
		PutString(base, &at, f->granted[i]);
	Assert(at == s->total);
}

/* Take the next NUL-terminated string at *at */
static const char *
TakeString(char *base, Size *at)
{
	const char *value = base + *at;

	*at += strlen(value) + 1;
	return value;
}

/* Point a rule set at its rules and groups in a record */
static void
LinkRuleSet(OwnedRuleSet *owned, char *base, Size rules, int nrules, Size groups, int ngroups)
{
	memset(owned, 0, sizeof(*owned));
	if (nrules == 0)
		return;
	owned->rules = (IpNet *) (base + rules);
	owned->groups = (IpPrefixGroup *) (base + groups);
	owned->set.rules = owned->rules;
	owned->set.nrules = nrules;
	owned->set.groups = owned->groups;
	owned->set.ngroups = ngroups;
}

/*
 * Fill entry from a copy of its record at base (memory in target): the
 * facts point into the copy, as ReadKeyRows' point into their context.
 */
static void
ReadRecord(char *base, CachedKey *entry, MemoryContext target)
{
	KeyRecord  *rec = (KeyRecord *) base;
	KeyFacts   *f = &entry->facts;
	RecordSections s;
	Size		at;
	const char **names;
	int			i;

	PlanSections(rec, &s);
	at = s.strings;
	f->exists = true;
	entry->id = rec->id;
	memcpy(f->digest, rec->digest, KEY_DIGEST_LEN);
	memcpy(f->previous_digest, rec->previous_digest, KEY_DIGEST_LEN);
	f->previous_valid_until = rec->previous_valid_until;
	f->expires_at = rec->expires_at;
	entry->last_used_at = rec->last_used_at;
	f->has_previous = rec->has_previous;
	f->is_active = rec->is_active;
	f->has_expiry = rec->has_expiry;
	f->learning = rec->learning;
	f->salt = TakeString(base, &at);
	f->previous_salt = rec->has_previous_salt ? TakeString(base, &at) : NULL;
	f->client_name = rec->has_client ? TakeString(base, &at) : NULL;
	f->client_name_len = rec->has_client ? strlen(f->client_name) : 0;
	names = MemoryContextAlloc(target, sizeof(char *) * Max(1, rec->ngranted));
	for (i = 0; i < rec->ngranted; i++)
		names[i] = TakeString(base, &at);
	f->ngranted = rec->ngranted;
	f->granted = names;
	f->granted_len = (const int *) (base + s.lens);
	entry->granted_array = (ArrayType *) (base + s.array);
	LinkRuleSet(&entry->whitelist, base, s.white, rec->nwhite, s.white_groups, rec->nwhite_groups);
	LinkRuleSet(&entry->blacklist, base, s.black, rec->nblack, s.black_groups, rec->nblack_groups);
	entry->rate_limits = rec->nlimits > 0 ? (RateLimit *) (base + s.limits) : NULL;
	f->rate_limits = entry->rate_limits;
	f->nrate_limits = rec->nlimits;
}

/*
 * Fill entry (whose public_id is set) from the shared cache when it holds
 * the key in the current epoch; its parts go to target.  False: not held,
 * and place says where it would go and the epoch a read that starts its
 * snapshot after this may publish it in.
 */
bool
SharedKeyCacheFind(CachedKey *entry, Oid key_table, SharedKeyPlace *place,
				   MemoryContext target)
{
	uint32		hash = KeyHash(entry->public_id, key_table);
	int			bucket = hash % shared->nbuckets;
	LWLock	   *lock = BucketLock(bucket);
	char	   *copy = NULL;
	uint64		epoch;
	int			way;

	LWLockAcquire(lock, LW_SHARED);
	epoch = pg_atomic_read_u64(&shared->epoch);
	place->hash = hash;
	place->epoch = epoch;
	for (way = 0; way < SHARED_KEY_WAYS; way++)
	{
		SharedKeySlot *slot = BucketSlot(bucket, way);

		if (slot->epoch != epoch || !SlotHolds(slot, hash, key_table, entry->public_id))
			continue;
		copy = MemoryContextAlloc(target, slot->length);
		memcpy(copy, (char *) slot + SLOT_RECORD_OFFSET, slot->length);
		break;
	}
	LWLockRelease(lock);
	if (copy == NULL)
		return false;
	ReadRecord(copy, entry, target);
	return true;
}

/*
 * Keep entry, read from the tables after SharedKeyCacheFind missed it and
 * gave place, for every backend: not when the epoch has moved since (the
 * read may have missed a change) or when the key does not fit in a slot.
 */
void
SharedKeyCachePublish(const CachedKey *entry, Oid key_table, const SharedKeyPlace *place)
{
	uint32		hash = place->hash;
	uint64		epoch = place->epoch;
	int			bucket = hash % shared->nbuckets;
	LWLock	   *lock = BucketLock(bucket);
	KeyRecord	rec;
	RecordSections s;
	SharedKeySlot *victim = NULL;
	int			way;

	if (!entry->facts.exists)
		return;
	DescribeKey(entry, &rec);
	PlanSections(&rec, &s);
	if (s.total > SLOT_RECORD_SPACE)
		return;

	LWLockAcquire(lock, LW_EXCLUSIVE);
	if (pg_atomic_read_u64(&shared->epoch) != epoch)
	{
		LWLockRelease(lock);
		return;
	}
	for (way = 0; way < SHARED_KEY_WAYS; way++)
	{
		SharedKeySlot *slot = BucketSlot(bucket, way);

		if (SlotHolds(slot, hash, key_table, entry->public_id))
		{
			victim = slot;
			break;
		}
		if (victim == NULL ||
			(victim->epoch == epoch && (slot->epoch != epoch || slot->filled < victim->filled)))
			victim = slot;
	}
	victim->epoch = 0;
	WriteRecord((char *) victim + SLOT_RECORD_OFFSET, entry, &rec, &s);
	victim->database = MyDatabaseId;
	victim->database_xmin = database_xmin;
	victim->key_table = key_table;
	victim->hash = hash;
	victim->length = s.total;
	strlcpy(victim->public_id, entry->public_id, sizeof(victim->public_id));
	victim->filled = pg_atomic_fetch_add_u64(&shared->fills, 1);
	victim->epoch = epoch;
	LWLockRelease(lock);
}

/*
 * The backend stamped entry's last_used_at: the shared copy takes the new
 * time too, so that other backends do not find the stamp due again.
 */
void
SharedKeyCacheNoteUse(const CachedKey *entry, Oid key_table)
{
	uint32		hash;
	int			bucket;
	LWLock	   *lock;
	int			way;

	if (!SharedKeyCacheUsable() || !entry->facts.exists)
		return;
	hash = KeyHash(entry->public_id, key_table);
	bucket = hash % shared->nbuckets;
	lock = BucketLock(bucket);
	LWLockAcquire(lock, LW_EXCLUSIVE);
	for (way = 0; way < SHARED_KEY_WAYS; way++)
	{
		SharedKeySlot *slot = BucketSlot(bucket, way);
		KeyRecord  *rec = (KeyRecord *) ((char *) slot + SLOT_RECORD_OFFSET);

		if (SlotHolds(slot, hash, key_table, entry->public_id) &&
			rec->last_used_at < entry->last_used_at)
			rec->last_used_at = entry->last_used_at;
	}
	LWLockRelease(lock);
}
