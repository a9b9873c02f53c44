/*-------------------------------------------------------------------------
 * cache_invalidation.c
 *		When the per-backend caches are stale: a generation per cache,
 *		advanced by relcache invalidations of the tables that feed it.
 *
 * Triggers on every table that feeds a cache call _invalidate_caches(),
 * which queues a relcache invalidation for that table.  PostgreSQL delivers
 * it to every backend (and, through the WAL, to hot standbys) when the
 * change commits; the callback here advances the generation of the cache
 * the table feeds, and the next lookup rebuilds that cache.  No timer is
 * involved, so a committed revocation is seen by the next call.  A key
 * edit leaves the config cache alone, and a rule or config edit leaves the
 * key cache alone.  The one table of rate limits feeds both.
 *
 * Caches are filled only in READ COMMITTED transactions, where each SPI
 * query takes a fresh snapshot: a transaction-level snapshot may predate an
 * invalidation already consumed, and caching what it sees could outlive
 * the change.  Nor while the transaction may have written a table that
 * feeds them: its own changes are announced only at the end of the
 * statement that made them (CacheFillAllowed).
 *
 * The cache all backends share (shared_key_cache.c) has an epoch instead,
 * advanced when a transaction that the triggers (or its own DDL) marked
 * commits.
 *
 * A call nested in another (athena_authenticate run by a trigger that the
 * outer call's log insert fired) must not free cache entries the outer
 * call is still reading: while one is running, stale caches are bypassed,
 * not rebuilt.
 *-------------------------------------------------------------------------
 */
#include "cache_invalidation.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "shared_key_cache.h"

PG_FUNCTION_INFO_V1(athena_invalidate_caches);

typedef enum FedCache
{
	FEEDS_CONFIG,
	FEEDS_KEYS,
	FEEDS_BOTH					/* rate limits: of keys and of clients */
} FedCache;

static const struct
{
	const char *table;
	FedCache	feeds;
}			watched_tables[] =
{
	{"api_key_config", FEEDS_CONFIG},
	{"api_key_client_config", FEEDS_CONFIG},
	{"api_key_global_ip_rule", FEEDS_CONFIG},
	{"api_key", FEEDS_KEYS},
	{"api_key_right_grant", FEEDS_KEYS},
	{"api_key_ip_rule", FEEDS_KEYS},
	{"api_key_right", FEEDS_KEYS},
	{"api_key_rate_limit", FEEDS_BOTH},
};

#define WATCHED_TABLE_COUNT lengthof(watched_tables)

static Oid	watched_table_oids[WATCHED_TABLE_COUNT];
static bool watched_oids_known = false;

/*
 * Advanced whenever an invalidation may concern a watched table, so that a
 * lookup of the names that processed one (a syscache miss can) starts over
 * rather than keep an OID the invalidation made stale.
 */
static uint64 watched_oids_doubted = 0;

/*
 * Relations this transaction saw invalidated while it did not know the
 * watched tables (see CacheInvalidationCallback), judged at pre-commit
 * (CheckUnknownRelations), when the catalogs can be read.
 */
#define UNKNOWN_RELATIONS_KEPT 16
static Oid	unknown_relations[UNKNOWN_RELATIONS_KEPT];
static int	nunknown_relations = 0;
static bool unknown_relations_overflowed = false;

/*
 * The database's athena_keys predates 1.4 and so has no table of rate
 * limits (then not missing); judged when the names are looked up.
 */
static bool rate_limits_predated = false;

static bool ExtensionPredatesRateLimits(void);

static uint64 config_generation = 1;
static uint64 key_generation = 1;
static int	cache_users = 0;

/*
 * Trigger function: queue a relcache invalidation of the table it fires on,
 * so every backend drops the cache that table feeds when this transaction
 * commits.
 */
Datum
athena_invalidate_caches(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("athena_keys._invalidate_caches() must be called as a trigger"),
				 errdetail("The function was called directly."),
				 errhint("Attach it to a table with CREATE TRIGGER.")));

	CacheInvalidateRelcache(trigdata->tg_relation);
	NoteKeyTablesChanged();
	return PointerGetDatum(NULL);
}

/*
 * Keep relid for the pre-commit check of a transaction that may have
 * written (one with a transaction id; autovacuum never renames a key
 * table).  The invalidation may be this transaction's own DDL or another
 * session's arriving at a lock; only the check can tell a key table.
 */
static void
RememberUnknownRelation(Oid relid)
{
	int			i;

	if (!TransactionIdIsValid(GetTopTransactionIdIfAny()) || MyBackendType == B_AUTOVAC_WORKER)
		return;
	for (i = 0; i < nunknown_relations; i++)
		if (unknown_relations[i] == relid)
			return;
	if (nunknown_relations == UNKNOWN_RELATIONS_KEPT)
		unknown_relations_overflowed = true;
	else
		unknown_relations[nunknown_relations++] = relid;
}

/* Whether name is the name of a table that feeds a cache */
static bool
IsWatchedTableName(const char *name)
{
	size_t		i;

	for (i = 0; name != NULL && i < WATCHED_TABLE_COUNT; i++)
		if (strcmp(watched_tables[i].table, name) == 0)
			return true;
	return false;
}

/*
 * Transaction callback: at pre-commit, a relation remembered above that is
 * now a key table (in the athena_keys schema, under a watched name: one
 * renamed into place, or a missing one renamed back) makes this commit
 * advance the shared cache's epoch.  Unrelated relations (an application's
 * tables, ANALYZE of a log partition) do not empty the shared cache.  More
 * relations than are kept count as a change.
 */
static void
CheckUnknownRelations(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_PRE_COMMIT &&
		(nunknown_relations > 0 || unknown_relations_overflowed))
	{
		Oid			schema = get_namespace_oid("athena_keys", true);
		int			i;
		bool		changed = unknown_relations_overflowed;

		for (i = 0; !changed && OidIsValid(schema) && i < nunknown_relations; i++)
		{
			char	   *name;

			if (get_rel_namespace(unknown_relations[i]) != schema)
				continue;
			name = get_rel_name(unknown_relations[i]);
			changed = IsWatchedTableName(name);
			if (name != NULL)
				pfree(name);
		}
		if (changed)
			NoteKeyTablesChanged();
	}
	if (event != XACT_EVENT_PRE_COMMIT && event != XACT_EVENT_PARALLEL_PRE_COMMIT &&
		event != XACT_EVENT_PRE_PREPARE)
	{
		nunknown_relations = 0;
		unknown_relations_overflowed = false;
	}
}

/* The watched tables' OIDs may be stale: look them up again before use */
static void
ForgetWatchedTables(void)
{
	watched_oids_known = false;
	watched_oids_doubted++;
}

/*
 * Relcache callback: advance the generation of the cache a watched table
 * feeds (both for relid = InvalidOid, everything).  Before the first
 * resolution nothing is cached, so nothing can be stale.  Must not do catalog
 * access, so it only counts; the rebuild happens on next use.
 */
static void
CacheInvalidationCallback(Datum arg, Oid relid)
{
	size_t		i;

	if (relid == InvalidOid)
	{
		config_generation++;
		key_generation++;
		ForgetWatchedTables();
		return;
	}
	/* Matched against the OIDs last resolved, even when they are due again */
	for (i = 0; i < WATCHED_TABLE_COUNT; i++)
	{
		if (watched_table_oids[i] != relid)
			continue;
		if (watched_tables[i].feeds != FEEDS_KEYS)
			config_generation++;
		if (watched_tables[i].feeds != FEEDS_CONFIG)
		{
			key_generation++;

			/*
			 * This transaction's own DDL (a dropped index or table): the
			 * shared cache's epoch advances when it commits.
			 */
			if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
				NoteKeyTablesChanged();
		}

		/*
		 * The table may have been dropped (DROP EXTENSION): resolve the
		 * names again before the next use, or a re-created extension's
		 * tables would go unwatched in this backend.
		 */
		ForgetWatchedTables();
		return;
	}

	/*
	 * Not a table this backend knows, but it knows none or not all of them
	 * (it never looked them up, one was missing when it looked, or a change
	 * made it forget them): the relation may be a key table, e.g. one
	 * renamed into place by a session that never made a call, or a missing
	 * table renamed back.  Count it as one in this backend's caches, and
	 * keep it for the pre-commit check of the shared cache's epoch.
	 */
	if (!watched_oids_known)
	{
		config_generation++;
		key_generation++;
		watched_oids_doubted++;
		RememberUnknownRelation(relid);
	}
}

/* Register the relcache callback once per backend (from _PG_init) */
void
RegisterCacheInvalidation(void)
{
	CacheRegisterRelcacheCallback(CacheInvalidationCallback, (Datum) 0);
	RegisterXactCallback(CheckUnknownRelations, NULL);
}

/*
 * Look up the OIDs of the tables that feed the caches.  Done lazily because
 * the extension may be dropped and created again in the same backend;
 * until they are known, nothing cached counts as current.
 */
static void
EnsureWatchedTablesKnown(void)
{
	Oid			schema;
	size_t		i;
	bool		changed = false;
	bool		complete;
	uint64		doubted;

	if (watched_oids_known)
		return;
	do
	{
		doubted = watched_oids_doubted;
		schema = get_namespace_oid("athena_keys", false);
		complete = true;
		for (i = 0; i < WATCHED_TABLE_COUNT; i++)
		{
			Oid			relid = get_relname_relid(watched_tables[i].table, schema);

			changed |= relid != watched_table_oids[i];
			watched_table_oids[i] = relid;
			if (strcmp(watched_tables[i].table, "api_key_rate_limit") == 0)
				rate_limits_predated = !OidIsValid(relid) && ExtensionPredatesRateLimits();
			complete &= OidIsValid(relid) || rate_limits_predated;
		}
	} while (doubted != watched_oids_doubted);

	/*
	 * A missing table is looked up again at every use: the invalidation of
	 * its return (a rename back) names an OID this backend cannot match.
	 * (A database not yet updated to 1.4 has no table of rate limits, and
	 * misses nothing.)
	 */
	watched_oids_known = complete;

	/* Other tables than the cached entries were read from: both are stale */
	if (changed)
	{
		config_generation++;
		key_generation++;
	}
}

/* The config cache's current generation; an entry of another one is stale */
uint64
ConfigCacheGeneration(void)
{
	EnsureWatchedTablesKnown();
	return config_generation;
}

/* The key cache's current generation; an entry of another one is stale */
uint64
KeyCacheGeneration(void)
{
	EnsureWatchedTablesKnown();
	return key_generation;
}

/*
 * The OID of a watched table of the athena_keys schema (the caches read
 * exactly the tables whose changes they watch), InvalidOid when there is
 * none.
 */
Oid
WatchedTableOid(const char *table)
{
	size_t		i;

	EnsureWatchedTablesKnown();
	for (i = 0; i < WATCHED_TABLE_COUNT; i++)
		if (strcmp(watched_tables[i].table, table) == 0)
			return watched_table_oids[i];
	return InvalidOid;
}

/*
 * Whether the installed athena_keys is a version before 1.4, which has no
 * table of rate limits (or is being created or updated right now)
 */
static bool
ExtensionPredatesRateLimits(void)
{
	static const char *const versions_without[] = {"1.0", "1.1", "1.2", "1.3"};
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	bool		predates = true;

	if (creating_extension)
		return true;
	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber, F_NAMEEQ,
				CStringGetDatum("athena_keys"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool		isnull;
		Datum		version = heap_getattr(tuple, Anum_pg_extension_extversion,
										   RelationGetDescr(rel), &isnull);
		char	   *installed = isnull ? NULL : TextDatumGetCString(version);
		size_t		i;

		predates = false;
		for (i = 0; installed != NULL && i < lengthof(versions_without); i++)
			predates |= strcmp(installed, versions_without[i]) == 0;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return predates;
}

/*
 * The OID of athena_keys.api_key_rate_limit, InvalidOid where a database
 * not yet updated to 1.4 has none (the caches then read no limits).
 * Creating it (ALTER EXTENSION UPDATE) adds a foreign key to api_key,
 * whose invalidation makes the caches read again, with the table.  In 1.4
 * the table missing (renamed or dropped) is an error: reading no limits
 * would let every limited key through unlimited.
 */
Oid
RateLimitTableOid(void)
{
	Oid			relid = WatchedTableOid("api_key_rate_limit");

	if (!OidIsValid(relid) && !rate_limits_predated)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("athena_keys.api_key_rate_limit does not exist"),
				 errdetail("The installed athena_keys keeps its rate limits in that table, and a "
						   "decision cannot honour them without it."),
				 errhint("Rename the table back to athena_keys.api_key_rate_limit, or reinstall the extension.")));
	return relid;
}

/*
 * The OID of athena_keys.api_key: a queued last_used_at stamp names the
 * table its key id belongs to, so it never lands in a re-created one.
 */
Oid
KeyTableOid(void)
{
	static int	api_key = -1;
	size_t		i;

	EnsureWatchedTablesKnown();
	for (i = 0; api_key < 0 && i < WATCHED_TABLE_COUNT; i++)
		if (strcmp(watched_tables[i].table, "api_key") == 0)
			api_key = (int) i;
	return watched_table_oids[api_key];
}

/* Whether this transaction may fill the caches (see the file header) */
bool
CachingAllowed(void)
{
	return !IsolationUsesXactSnapshot();
}

/*
 * Whether this transaction holds a lock on relid that writing it takes
 * (RowExclusiveLock or stronger), asked of the local lock table mode by
 * mode as CheckRelationLockedByMe does (which needs an open relation, and
 * whose OID twin only later minor releases have).
 */
static bool
MayHaveWritten(Oid relid)
{
	LOCKTAG		tag;
	LOCKMODE	mode;

	SET_LOCKTAG_RELATION(tag, MyDatabaseId, relid);
	for (mode = RowExclusiveLock; mode <= MaxLockMode; mode++)
#if PG_VERSION_NUM >= 170000
		if (LockHeldByMe(&tag, mode, false))
#else
		if (LockHeldByMe(&tag, mode))
#endif
			return true;
	return false;
}

/*
 * Whether what this transaction reads may be kept in the caches (and what
 * key_rows.c learns of the per-key tables go by): READ COMMITTED, and no
 * table that feeds a cache possibly written by this transaction.  Its own
 * change to such a table is announced only when the row triggers fire at
 * the end of the statement that made it (a data-modifying WITH, a SQL
 * function calling athena_authenticate after its write), and not at all
 * when that statement raises, while what a read saw of it is undone: kept,
 * it would outlive the change, a deleted rule missing for good.  A
 * transaction without a transaction id has written nothing, which spares
 * the lock table lookups on the gateway's path.
 */
bool
CacheFillAllowed(void)
{
	size_t		i;

	if (!CachingAllowed())
		return false;
	if (!TransactionIdIsValid(GetTopTransactionIdIfAny()))
		return true;
	EnsureWatchedTablesKnown();
	for (i = 0; i < WATCHED_TABLE_COUNT; i++)
		if (OidIsValid(watched_table_oids[i]) && MayHaveWritten(watched_table_oids[i]))
			return false;
	return true;
}

/* Whether a stale cache may be freed and rebuilt now: no outer call reads it */
bool
CacheMayBeRebuilt(void)
{
	return cache_users <= 1;
}

/* A call starts reading the caches */
void
EnterCacheUse(void)
{
	cache_users++;
}

/* A call has finished with the caches (also when it raised) */
void
LeaveCacheUse(void)
{
	if (cache_users > 0)
		cache_users--;
}
