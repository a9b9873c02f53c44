/*-------------------------------------------------------------------------
 * enforcement_cache.c
 *		Per-backend caches of the enforcement config, global IP rules and
 *		recently used keys, invalidated through relcache callbacks.
 *
 * Triggers on every table that feeds a cache call _invalidate_caches(),
 * which queues a relcache invalidation for that table.  PostgreSQL delivers
 * it to every backend (and, through the WAL, to hot standbys) when the
 * change commits, and our callback marks the caches stale; the next call
 * reloads them.  No timer is involved, so a committed revocation is seen by
 * the next transaction that starts after the commit returns.
 *
 * Caches are filled only in READ COMMITTED transactions, where each SPI
 * query takes a fresh snapshot: a transaction-level snapshot may predate an
 * invalidation already consumed, and caching what it sees could outlive
 * the change.  Other isolation levels get per-call (transient) lookups.
 *
 * The key cache holds at most athena_keys.key_cache_size entries, evicting
 * the least recently used, so memory stays bounded with any number of keys.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(athena_invalidate_caches);

#define WATCHED_TABLE_COUNT 7

static const char *const watched_table_names[WATCHED_TABLE_COUNT] = {
	"api_key", "api_key_right_grant", "api_key_ip_rule",
	"api_key_global_ip_rule", "api_key_config", "api_key_client_config",
	"api_key_right"
};

static Oid	watched_table_oids[WATCHED_TABLE_COUNT];
static bool watched_oids_known = false;

/* Bumped by every relevant invalidation; loads compare it before/after */
static uint64 invalidation_counter = 0;

static MemoryContext cache_context = NULL;
static MemoryContext key_context = NULL;
static EnforcementConfig *cached_config = NULL;
static uint64 cached_config_counter = 0;
static HTAB *key_cache = NULL;
static dlist_head key_lru = DLIST_STATIC_INIT(key_lru);
static int	key_cache_entries = 0;

static bool spi_connected = false;
static MemoryContext spi_caller_context = NULL;

static SPIPlanPtr config_plan = NULL;
static SPIPlanPtr client_config_plan = NULL;
static SPIPlanPtr global_rules_plan = NULL;
static SPIPlanPtr key_plan = NULL;

static void CacheInvalidationCallback(Datum arg, Oid relid);
static void ResolveWatchedTables(void);
static void FlushAllCaches(void);
static bool CachingAllowed(void);
static EnforcementConfig *LoadEnforcementConfig(MemoryContext target);
static void LoadKeyRow(CachedKey *entry, MemoryContext target);
static void BuildOwnedRuleSet(OwnedRuleSet *owned, IpNet *rules, int n,
							  MemoryContext target);
static void CollectCidrArray(Datum array, IpNet **rules, int *n,
							 MemoryContext target);
static void EvictOldestKey(void);
static void FreeKeyEntry(CachedKey *entry);

/*
 * Trigger function: queue a relcache invalidation of the table it fires on,
 * so every backend drops its caches when this transaction commits.
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
	return PointerGetDatum(NULL);
}

/* Register the relcache callback once per backend (from _PG_init) */
void
RegisterCacheCallbacks(void)
{
	CacheRegisterRelcacheCallback(CacheInvalidationCallback, (Datum) 0);
}

/*
 * Relcache callback: mark every cache stale when one of our tables (or
 * everything, relid = InvalidOid) is invalidated.  Must not do catalog
 * access, so it only flips counters; the reload happens on next use.
 */
static void
CacheInvalidationCallback(Datum arg, Oid relid)
{
	int			i;

	if (!watched_oids_known || relid == InvalidOid)
	{
		invalidation_counter++;
		watched_oids_known = false;
		return;
	}
	for (i = 0; i < WATCHED_TABLE_COUNT; i++)
	{
		if (watched_table_oids[i] == relid)
		{
			/*
			 * The table may have been dropped (DROP EXTENSION): resolve the
			 * names again before the next load, or a re-created extension's
			 * tables would go unwatched in this backend.
			 */
			invalidation_counter++;
			watched_oids_known = false;
			return;
		}
	}
}

/*
 * Look up the OIDs of the tables that feed the caches.  Done lazily because
 * the extension may be dropped and created again in the same backend.
 */
static void
ResolveWatchedTables(void)
{
	Oid			schema = get_namespace_oid("athena_keys", false);
	int			i;

	for (i = 0; i < WATCHED_TABLE_COUNT; i++)
		watched_table_oids[i] = get_relname_relid(watched_table_names[i], schema);
	watched_oids_known = true;
}

/* Connect to SPI once per call, keeping the caller's memory context current */
void
EnsureSpiConnected(void)
{
	MemoryContext caller = CurrentMemoryContext;

	if (spi_connected)
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "athena_keys: SPI_connect failed");
	spi_connected = true;
	spi_caller_context = caller;
	MemoryContextSwitchTo(caller);
}

/*
 * Forget a connection left by a call that raised: the transaction or
 * subtransaction abort has already closed it.
 */
void
ResetSpiConnectionAfterError(void)
{
	spi_connected = false;
}

/* Disconnect from SPI at the end of a call (or forget it after an error) */
void
ResetSpiConnection(void)
{
	if (spi_connected)
	{
		spi_connected = false;
		SPI_finish();
		MemoryContextSwitchTo(spi_caller_context);
	}
}

/*
 * Prepare and keep a plan.  Every name in our SQL is schema-qualified, so
 * the caller's search_path plays no part.  Like every SPI call here, it
 * hands the caller's memory context back: SPI leaves its own procedure
 * context current, which SPI_finish frees at the end of the call, and what
 * a decision allocates after a query (missing rights, a transient key
 * entry) must outlive that.
 */
SPIPlanPtr
PrepareKeptPlan(const char *sql, int nargs, const Oid *argtypes, int cursor_options)
{
	MemoryContext caller = CurrentMemoryContext;
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, (Oid *) argtypes, cursor_options);

	if (plan == NULL)
		elog(ERROR, "athena_keys: SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "athena_keys: SPI_keepplan failed");
	MemoryContextSwitchTo(caller);
	return plan;
}

/*
 * Execute a kept plan (not read-only: our writes must see themselves) and
 * make the caller's memory context current again; see PrepareKeptPlan.
 */
int
ExecuteKeptPlan(SPIPlanPtr plan, Datum *args, const char *nulls, long count)
{
	MemoryContext caller = CurrentMemoryContext;
	int			rc = SPI_execute_plan(plan, args, nulls, false, count);

	MemoryContextSwitchTo(caller);
	return rc;
}

/* Free a kept plan, keeping the caller's memory context current */
void
FreeKeptPlan(SPIPlanPtr plan)
{
	MemoryContext caller = CurrentMemoryContext;

	SPI_freeplan(plan);
	MemoryContextSwitchTo(caller);
}

/*
 * Only READ COMMITTED transactions may fill the caches; see the file
 * header.
 */
static bool
CachingAllowed(void)
{
	return !IsolationUsesXactSnapshot();
}

/* Drop every cached entry (memory is reused on the next fill) */
static void
FlushAllCaches(void)
{
	if (cache_context != NULL)
		MemoryContextReset(cache_context);
	cached_config = NULL;
	key_cache = NULL;
	key_context = NULL;
	dlist_init(&key_lru);
	key_cache_entries = 0;
}

/*
 * Convert an inet/cidr value into an IpNet.  With as_host the prefix length
 * is ignored and the full address is used (caller addresses); otherwise
 * the value's own prefix length is kept (rules).
 */
bool
IpNetFromInet(const inet *value, bool as_host, IpNet *out)
{
	int			family = ip_family(value) == PGSQL_AF_INET ? IP_FAMILY_V4 : IP_FAMILY_V6;
	int			max_bits = family == IP_FAMILY_V4 ? 32 : 128;

	if (!IpNetFromBytes(family, as_host ? max_bits : ip_bits(value),
						ip_addr(value), out))
		return false;
	IpNetNormalize(out);
	return true;
}

/* Prepare rules and build a rule set whose arrays live in target */
static void
BuildOwnedRuleSet(OwnedRuleSet *owned, IpNet *rules, int n, MemoryContext target)
{
	int			kept;
	int			ngroups;

	memset(owned, 0, sizeof(*owned));
	if (n == 0)
		return;
	kept = IpRulesPrepare(rules, n);
	ngroups = IpRulesCountGroups(rules, kept);
	owned->rules = rules;
	owned->groups = MemoryContextAlloc(target, sizeof(IpPrefixGroup) * ngroups);
	IpRuleSetBuild(&owned->set, owned->rules, kept, owned->groups);
}

/* Turn a cidr[] datum into an array of IpNet allocated in target */
static void
CollectCidrArray(Datum array, IpNet **rules, int *n, MemoryContext target)
{
	ArrayType  *arr = DatumGetArrayTypeP(array);
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			i;
	int			kept = 0;

	deconstruct_array(arr, CIDROID, -1, false, TYPALIGN_INT, &elems, &nulls, &nelems);
	*rules = nelems > 0 ? MemoryContextAlloc(target, sizeof(IpNet) * nelems) : NULL;
	for (i = 0; i < nelems; i++)
	{
		if (!nulls[i] &&
			IpNetFromInet(DatumGetInetPP(elems[i]), false, &(*rules)[kept]))
			kept++;
	}
	*n = kept;
}

/*
 * The policy entry of a client name in config, created empty when absent;
 * NULL for a name no rule could be stored under.
 */
static ClientPolicy *
EnterClientPolicy(EnforcementConfig *config, const char *name)
{
	ClientPolicy *policy;
	bool		found;

	if (name == NULL || strlen(name) > CLIENT_NAME_MAX_LEN)
		return NULL;
	policy = hash_search(config->clients, name, HASH_ENTER, &found);
	if (!found)
	{
		policy->has_override = false;
		policy->enforce = false;
		policy->load_slot = -1;
		memset(&policy->blacklist, 0, sizeof(OwnedRuleSet));
		memset(&policy->whitelist, 0, sizeof(OwnedRuleSet));
	}
	return policy;
}

/*
 * Read api_key_config, api_key_client_config and the global IP rules into
 * a new EnforcementConfig allocated in target.  Rule arrays are sized by a
 * first pass over the rules, so the cache grows with the number of rules,
 * never with clients times rules.
 */
static EnforcementConfig *
LoadEnforcementConfig(MemoryContext target)
{
	EnforcementConfig *config;
	HASHCTL		ctl;
	uint64		i;
	HASH_SEQ_STATUS seq;
	ClientPolicy *policy;
	typedef struct PendingRules
	{
		IpNet	   *black;
		int			nblack;
		IpNet	   *white;
		int			nwhite;
	} PendingRules;
	PendingRules all = {0};
	PendingRules *pending;
	int			npending = 0;
	int			pending_size = 16;
	/* A rule as read: its list (a client's pending slot, or all) and address */
	typedef struct RuleRow
	{
		bool		kept;
		bool		black;
		int			slot;		/* -1: the lists of every client */
		IpNet		net;
	} RuleRow;
	RuleRow    *rows;

	EnsureSpiConnected();
	if (config_plan == NULL)
		config_plan = PrepareKeptPlan(
			"SELECT enforce_api_keys, fail_mode = 'fail_open' FROM athena_keys.api_key_config",
			0, NULL, 0);
	if (client_config_plan == NULL)
		client_config_plan = PrepareKeptPlan(
			"SELECT client_name, enforce_api_keys FROM athena_keys.api_key_client_config",
			0, NULL, 0);
	if (global_rules_plan == NULL)
		global_rules_plan = PrepareKeptPlan(
			"SELECT list = 'blacklist', addr, client_name FROM athena_keys.api_key_global_ip_rule",
			0, NULL, 0);

	config = MemoryContextAllocZero(target, sizeof(EnforcementConfig));
	config->enforce_default = true;
	config->fail_open = false;

	if (ExecuteKeptPlan(config_plan, NULL, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "athena_keys: reading api_key_config failed");
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d;

		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		config->enforce_default = isnull ? true : DatumGetBool(d);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		config->fail_open = isnull ? false : DatumGetBool(d);
	}
	SPI_freetuptable(SPI_tuptable);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = CLIENT_NAME_MAX_LEN + 1;
	ctl.entrysize = sizeof(ClientPolicy);
	ctl.hcxt = target;
	config->clients = hash_create("athena_keys client policies", 64, &ctl,
								  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	if (ExecuteKeptPlan(client_config_plan, NULL, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "athena_keys: reading api_key_client_config failed");
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		bool		isnull;
		Datum		enforce = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);

		policy = isnull ? NULL : EnterClientPolicy(config, name);
		if (policy == NULL)
			continue;
		policy->has_override = true;
		policy->enforce = DatumGetBool(enforce);
	}
	SPI_freetuptable(SPI_tuptable);

	if (ExecuteKeptPlan(global_rules_plan, NULL, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "athena_keys: reading api_key_global_ip_rule failed");

	/* First pass: which list each rule belongs to, and how long each list is */
	rows = palloc0(sizeof(RuleRow) * (SPI_processed + 1));
	pending = palloc0(sizeof(PendingRules) * pending_size);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		addr = SPI_getbinval(tuple, desc, 2, &isnull);
		char	   *client = SPI_getvalue(tuple, desc, 3);
		PendingRules *p = &all;

		rows[i].black = DatumGetBool(SPI_getbinval(tuple, desc, 1, &isnull));
		rows[i].slot = -1;
		if (!IpNetFromInet(DatumGetInetPP(addr), false, &rows[i].net))
			continue;
		if (client != NULL)
		{
			policy = EnterClientPolicy(config, client);
			if (policy == NULL)
				continue;
			if (policy->load_slot < 0)
			{
				if (npending == pending_size)
				{
					pending = repalloc(pending, sizeof(PendingRules) * pending_size * 2);
					memset(&pending[pending_size], 0, sizeof(PendingRules) * pending_size);
					pending_size *= 2;
				}
				policy->load_slot = npending++;
			}
			rows[i].slot = policy->load_slot;
			p = &pending[policy->load_slot];
		}
		rows[i].kept = true;
		if (rows[i].black)
			p->nblack++;
		else
			p->nwhite++;
	}

	/* Second pass: fill arrays of exactly those lengths */
	all.black = MemoryContextAlloc(target, sizeof(IpNet) * (all.nblack + 1));
	all.white = MemoryContextAlloc(target, sizeof(IpNet) * (all.nwhite + 1));
	for (i = 0; i < (uint64) npending; i++)
	{
		pending[i].black = MemoryContextAlloc(target, sizeof(IpNet) * (pending[i].nblack + 1));
		pending[i].white = MemoryContextAlloc(target, sizeof(IpNet) * (pending[i].nwhite + 1));
		pending[i].nblack = pending[i].nwhite = 0;
	}
	all.nblack = all.nwhite = 0;
	for (i = 0; i < SPI_processed; i++)
	{
		PendingRules *p = rows[i].slot >= 0 ? &pending[rows[i].slot] : &all;

		if (!rows[i].kept)
			continue;
		if (rows[i].black)
			p->black[p->nblack++] = rows[i].net;
		else
			p->white[p->nwhite++] = rows[i].net;
	}
	SPI_freetuptable(SPI_tuptable);

	BuildOwnedRuleSet(&config->blacklist_all, all.black, all.nblack, target);
	BuildOwnedRuleSet(&config->whitelist_all, all.white, all.nwhite, target);

	hash_seq_init(&seq, config->clients);
	while ((policy = hash_seq_search(&seq)) != NULL)
	{
		int			slot = policy->load_slot;

		if (slot < 0)
			continue;
		BuildOwnedRuleSet(&policy->blacklist, pending[slot].black,
						  pending[slot].nblack, target);
		BuildOwnedRuleSet(&policy->whitelist, pending[slot].white,
						  pending[slot].nwhite, target);
	}
	pfree(pending);
	pfree(rows);
	return config;
}

/*
 * The enforcement config, from the cache when it is current, else read
 * again.  The result is valid until the end of the current call.
 */
const EnforcementConfig *
GetEnforcementConfig(void)
{
	uint64		before;
	EnforcementConfig *config;

	/* Invalidations are delivered now if any arrived since the last call */
	if (!watched_oids_known)
	{
		ResolveWatchedTables();
		invalidation_counter++;
	}
	if (cached_config != NULL && cached_config_counter == invalidation_counter)
		return cached_config;

	FlushAllCaches();
	if (!CachingAllowed())
		return LoadEnforcementConfig(CurrentMemoryContext);

	if (cache_context == NULL)
		cache_context = AllocSetContextCreate(CacheMemoryContext,
											  "athena_keys cache",
											  ALLOCSET_DEFAULT_SIZES);
	before = invalidation_counter;
	config = LoadEnforcementConfig(cache_context);
	if (before != invalidation_counter)
		return config;			/* changed while loading: use once, reload next */
	cached_config = config;
	cached_config_counter = before;
	return config;
}

/*
 * The cached enforcement config when it is current, else NULL; never reads
 * a table, so it is safe with the caller's privileges.
 */
const EnforcementConfig *
PeekEnforcementConfig(void)
{
	if (!watched_oids_known || cached_config == NULL ||
		cached_config_counter != invalidation_counter || !CachingAllowed())
		return NULL;
	return cached_config;
}

/*
 * The policy entry for a client name, or NULL when nothing is configured.
 * The hash keys are C strings compared up to their terminator, so the
 * lookup key needs one but no zeroed tail.
 */
const ClientPolicy *
LookupClientPolicy(const EnforcementConfig *config, const char *client, size_t len)
{
	char		keybuf[CLIENT_NAME_MAX_LEN + 1];

	if (client == NULL || len == 0 || len > CLIENT_NAME_MAX_LEN ||
		memchr(client, '\0', len) != NULL)
		return NULL;
	memcpy(keybuf, client, len);
	keybuf[len] = '\0';
	return hash_search(config->clients, keybuf, HASH_FIND, NULL);
}

/* Copy a text datum into a NUL-terminated string in target */
static char *
TextDatumToCString(Datum d, MemoryContext target)
{
	text	   *t = DatumGetTextPP(d);
	size_t		len = VARSIZE_ANY_EXHDR(t);
	char	   *s = MemoryContextAlloc(target, len + 1);

	memcpy(s, VARDATA_ANY(t), len);
	s[len] = '\0';
	return s;
}

/*
 * Fill entry (whose public_id is set) from the database.  Variable-sized
 * parts are allocated in target.  entry->exists tells whether a key has
 * this public id.
 */
static void
LoadKeyRow(CachedKey *entry, MemoryContext target)
{
	Datum		arg;
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	ArrayType  *granted;
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			i;
	IpNet	   *rules;
	int			nrules;

	EnsureSpiConnected();
	if (key_plan == NULL)
	{
		Oid			argtypes[1] = {TEXTOID};

		key_plan = PrepareKeptPlan(
			"SELECT k.id, k.key_salt, k.key_hash, k.previous_key_salt, k.previous_key_hash, "
			"       k.previous_valid_until, k.is_active, k.expires_at, k.client_name, "
			"       k.virgin_mode AND NOT k.virgin_resolved, k.last_used_at, "
			"       ARRAY(SELECT g.right_name FROM athena_keys.api_key_right_grant g "
			"              WHERE g.api_key_id = k.id ORDER BY g.right_name), "
			"       ARRAY(SELECT r.addr FROM athena_keys.api_key_ip_rule r "
			"              WHERE r.api_key_id = k.id AND r.list = 'whitelist'), "
			"       ARRAY(SELECT r.addr FROM athena_keys.api_key_ip_rule r "
			"              WHERE r.api_key_id = k.id AND r.list = 'blacklist') "
			"  FROM athena_keys.api_key k WHERE k.public_id = $1",
			1, argtypes, 0);
	}

	arg = CStringGetTextDatum(entry->public_id);
	if (ExecuteKeptPlan(key_plan, &arg, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "athena_keys: reading api_key failed");

	entry->exists = SPI_processed > 0;
	if (!entry->exists)
	{
		SPI_freetuptable(SPI_tuptable);
		return;
	}
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	memcpy(&entry->id, DatumGetUUIDP(SPI_getbinval(tuple, desc, 1, &isnull)), sizeof(pg_uuid_t));
	entry->salt = TextDatumToCString(SPI_getbinval(tuple, desc, 2, &isnull), target);
	{
		char	   *hash = TextDatumToCString(SPI_getbinval(tuple, desc, 3, &isnull), target);

		/* The table's CHECK guarantees 64 lowercase hex characters */
		if (!DecodeHexDigest(hash, strlen(hash), entry->digest, KEY_DIGEST_LEN))
			memset(entry->digest, 0, KEY_DIGEST_LEN);
		pfree(hash);
	}
	d = SPI_getbinval(tuple, desc, 4, &isnull);
	entry->has_previous = !isnull;
	if (entry->has_previous)
	{
		char	   *hash;

		entry->previous_salt = TextDatumToCString(d, target);
		hash = TextDatumToCString(SPI_getbinval(tuple, desc, 5, &isnull), target);
		if (!DecodeHexDigest(hash, strlen(hash), entry->previous_digest, KEY_DIGEST_LEN))
			entry->has_previous = false;
		pfree(hash);
		entry->previous_valid_until =
			DatumGetTimestampTz(SPI_getbinval(tuple, desc, 6, &isnull));
	}
	entry->is_active = DatumGetBool(SPI_getbinval(tuple, desc, 7, &isnull));
	d = SPI_getbinval(tuple, desc, 8, &isnull);
	entry->has_expiry = !isnull;
	entry->expires_at = isnull ? 0 : DatumGetTimestampTz(d);
	d = SPI_getbinval(tuple, desc, 9, &isnull);
	entry->client_name = isnull ? NULL : TextDatumToCString(d, target);
	entry->learning = DatumGetBool(SPI_getbinval(tuple, desc, 10, &isnull));
	d = SPI_getbinval(tuple, desc, 11, &isnull);
	entry->last_used_at = isnull ? 0 : DatumGetTimestampTz(d);

	d = SPI_getbinval(tuple, desc, 12, &isnull);
	granted = DatumGetArrayTypeP(d);
	{
		MemoryContext old = MemoryContextSwitchTo(target);

		entry->granted_array = (ArrayType *) PG_DETOAST_DATUM_COPY(PointerGetDatum(granted));
		MemoryContextSwitchTo(old);
	}
	deconstruct_array(granted, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &nelems);
	entry->ngranted = 0;
	entry->granted = nelems > 0 ? MemoryContextAlloc(target, sizeof(char *) * nelems) : NULL;
	entry->granted_len = nelems > 0 ? MemoryContextAlloc(target, sizeof(int) * nelems) : NULL;
	for (i = 0; i < nelems; i++)
	{
		if (nulls[i])
			continue;
		entry->granted[entry->ngranted] = TextDatumToCString(elems[i], target);
		entry->granted_len[entry->ngranted] = strlen(entry->granted[entry->ngranted]);
		entry->ngranted++;
	}

	CollectCidrArray(SPI_getbinval(tuple, desc, 13, &isnull), &rules, &nrules, target);
	BuildOwnedRuleSet(&entry->whitelist, rules, nrules, target);
	CollectCidrArray(SPI_getbinval(tuple, desc, 14, &isnull), &rules, &nrules, target);
	BuildOwnedRuleSet(&entry->blacklist, rules, nrules, target);

	SPI_freetuptable(SPI_tuptable);
}

/* Release the variable-sized parts of an evicted entry */
static void
FreeKeyEntry(CachedKey *entry)
{
	int			i;

	if (entry->salt)
		pfree(entry->salt);
	if (entry->previous_salt)
		pfree(entry->previous_salt);
	if (entry->client_name)
		pfree(entry->client_name);
	for (i = 0; i < entry->ngranted; i++)
		pfree(entry->granted[i]);
	if (entry->granted)
		pfree(entry->granted);
	if (entry->granted_len)
		pfree(entry->granted_len);
	if (entry->granted_array)
		pfree(entry->granted_array);
	if (entry->whitelist.rules)
		pfree(entry->whitelist.rules);
	if (entry->whitelist.groups)
		pfree(entry->whitelist.groups);
	if (entry->blacklist.rules)
		pfree(entry->blacklist.rules);
	if (entry->blacklist.groups)
		pfree(entry->blacklist.groups);
}

/* Drop the least recently used key entry */
static void
EvictOldestKey(void)
{
	CachedKey  *oldest;

	if (dlist_is_empty(&key_lru))
		return;
	oldest = dlist_container(CachedKey, lru_node, dlist_tail_node(&key_lru));
	dlist_delete(&oldest->lru_node);
	FreeKeyEntry(oldest);
	hash_search(key_cache, oldest->public_id, HASH_REMOVE, NULL);
	key_cache_entries--;
}

/*
 * The cached entry of a public id (unknown ids included), or NULL when it
 * is not cached; never reads a table.  PeekEnforcementConfig must have
 * returned the current config in this call.
 */
CachedKey *
PeekCachedKey(const char *public_id, size_t len)
{
	char		keybuf[PUBLIC_ID_MAX_LEN + 1] = {0};
	CachedKey  *entry;

	Assert(len <= PUBLIC_ID_MAX_LEN);
	if (key_cache == NULL || athena_key_cache_size <= 0)
		return NULL;
	memcpy(keybuf, public_id, len);
	entry = hash_search(key_cache, keybuf, HASH_FIND, NULL);
	if (entry != NULL)
		dlist_move_head(&key_lru, &entry->lru_node);
	return entry;
}

/*
 * What is known about a public id: from the cache, or read and (when
 * allowed) cached.  Unknown ids are cached too, so that an unknown id and
 * a wrong secret cost the same.  GetEnforcementConfig must have been
 * called first in this call.
 */
CachedKey *
LookupKey(const char *public_id, size_t len)
{
	char		keybuf[PUBLIC_ID_MAX_LEN + 1] = {0};
	CachedKey  *entry;
	bool		found;
	uint64		before;

	Assert(len <= PUBLIC_ID_MAX_LEN);
	memcpy(keybuf, public_id, len);

	if (cached_config == NULL || athena_key_cache_size <= 0 || !CachingAllowed())
	{
		entry = palloc0(sizeof(CachedKey));
		memcpy(entry->public_id, keybuf, sizeof(keybuf));
		entry->transient = true;
		LoadKeyRow(entry, CurrentMemoryContext);
		return entry;
	}

	entry = PeekCachedKey(public_id, len);
	if (entry != NULL)
		return entry;

	if (key_cache == NULL)
	{
		HASHCTL		ctl;

		key_context = AllocSetContextCreate(cache_context, "athena_keys key cache",
											ALLOCSET_DEFAULT_SIZES);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = PUBLIC_ID_MAX_LEN + 1;
		ctl.entrysize = sizeof(CachedKey);
		ctl.hcxt = key_context;
		key_cache = hash_create("athena_keys keys", 256, &ctl,
								HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		dlist_init(&key_lru);
		key_cache_entries = 0;
	}

	/* Load into a transient entry first: loading may invalidate the cache */
	before = invalidation_counter;
	entry = palloc0(sizeof(CachedKey));
	memcpy(entry->public_id, keybuf, sizeof(keybuf));
	entry->transient = true;
	LoadKeyRow(entry, key_context);
	if (before != invalidation_counter || key_cache == NULL)
	{
		/* Parts live in key_context; they are released with the cache */
		return entry;
	}

	while (key_cache_entries >= athena_key_cache_size)
		EvictOldestKey();
	{
		CachedKey  *cached = hash_search(key_cache, keybuf, HASH_ENTER, &found);

		memcpy(cached, entry, sizeof(CachedKey));
		cached->transient = false;
		dlist_push_head(&key_lru, &cached->lru_node);
		key_cache_entries++;
		pfree(entry);
		return cached;
	}
}
