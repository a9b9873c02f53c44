/*-------------------------------------------------------------------------
 * key_cache.c
 *		The per-backend cache of what decisions need to know about public
 *		ids: the key row, its grants, its IP rules and its rate limits.
 *
 * Unknown ids are cached too, so that an unknown id costs what a wrong
 * secret costs.  At most athena_keys.key_cache_size entries are kept, the
 * least recently used evicted first, so memory stays bounded with any
 * number of keys.  Each known key's variable-sized parts live in a memory
 * context of their own, freed in one step on eviction.  Read with the
 * extension owner's rights (request_effects.c), peeked at with the
 * caller's; cache_invalidation.c says when the whole cache is stale.
 *-------------------------------------------------------------------------
 */
#include "key_cache.h"

#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "cache_invalidation.h"
#include "athena_keys.h"
#include "rate_limit_rows.h"
#include "rate_limit_rows.h"
#include "spi_plans.h"

static MemoryContext key_cache_context = NULL;
static HTAB *key_cache = NULL;
static uint64 key_cache_generation = 0;
static dlist_head key_lru = DLIST_STATIC_INIT(key_lru);
static int	key_cache_entries = 0;

static SPIPlanPtr key_plan = NULL;
static SPIPlanPtr key_plan_with_limits = NULL;

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

/* Point an entry's facts at its own rule sets (after it was placed) */
static void
LinkFacts(CachedKey *entry)
{
	entry->facts.whitelist = &entry->whitelist.set;
	entry->facts.blacklist = &entry->blacklist.set;
}

/*
 * The saved statement reading one public id's row, grants, IP rules and,
 * when the schema has them (1.4 on), rate limits.
 */
static SPIPlanPtr
KeyPlan(bool with_limits)
{
	Oid			argtypes[1] = {TEXTOID};
	SPIPlanPtr *plan = with_limits ? &key_plan_with_limits : &key_plan;

	if (*plan == NULL)
		*plan = PrepareKeptPlan(psprintf(
			"SELECT k.id, k.key_salt, k.key_hash, k.previous_key_salt, k.previous_key_hash, "
			"       k.previous_valid_until, k.is_active, k.expires_at, k.client_name, "
			"       k.virgin_mode AND NOT k.virgin_resolved, k.last_used_at, "
			"       ARRAY(SELECT g.right_name FROM athena_keys.api_key_right_grant g "
			"              WHERE g.api_key_id OPERATOR(pg_catalog.=) k.id "
			"              ORDER BY g.right_name), "
			"       ARRAY(SELECT r.addr FROM athena_keys.api_key_ip_rule r "
			"              WHERE r.api_key_id OPERATOR(pg_catalog.=) k.id "
			"                AND r.list OPERATOR(pg_catalog.=) 'whitelist'), "
			"       ARRAY(SELECT r.addr FROM athena_keys.api_key_ip_rule r "
			"              WHERE r.api_key_id OPERATOR(pg_catalog.=) k.id "
			"                AND r.list OPERATOR(pg_catalog.=) 'blacklist') %s"
			"  FROM athena_keys.api_key k WHERE k.public_id OPERATOR(pg_catalog.=) $1",
			with_limits ?
			"     , ARRAY(SELECT x.v FROM athena_keys.api_key_rate_limit l, "
			"                 LATERAL (SELECT pg_catalog.round(EXTRACT(epoch FROM l.per) "
			"                                 OPERATOR(pg_catalog.*) 1000000)::bigint AS per_us) p, "
			"                 LATERAL (VALUES (1, l.id), (2, l.requests), (3, p.per_us), (4, l.burst)) "
			"                   AS x(o, v) "
			"              WHERE l.api_key_id OPERATOR(pg_catalog.=) k.id ORDER BY l.id, x.o) " : ""),
			1, argtypes, 0);
	return *plan;
}

/* Read the granted rights of a key row (column 12) into entry */
static void
LoadGrantedRights(CachedKey *entry, Datum d, MemoryContext target)
{
	ArrayType  *granted = DatumGetArrayTypeP(d);
	MemoryContext old;
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int			i;
	char	  **names;
	int		   *lens;

	old = MemoryContextSwitchTo(target);
	entry->granted_array = (ArrayType *) PG_DETOAST_DATUM_COPY(PointerGetDatum(granted));
	MemoryContextSwitchTo(old);
	deconstruct_array(granted, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &nelems);
	names = nelems > 0 ? MemoryContextAlloc(target, sizeof(char *) * nelems) : NULL;
	lens = nelems > 0 ? MemoryContextAlloc(target, sizeof(int) * nelems) : NULL;
	entry->facts.ngranted = 0;
	for (i = 0; i < nelems; i++)
	{
		if (nulls[i])
			continue;
		names[entry->facts.ngranted] = TextDatumToCString(elems[i], target);
		lens[entry->facts.ngranted] = strlen(names[entry->facts.ngranted]);
		entry->facts.ngranted++;
	}
	entry->facts.granted = (const char *const *) names;
	entry->facts.granted_len = lens;
}

/* Decode a stored digest; the table's CHECK guarantees 64 hex characters */
static bool
LoadDigest(Datum d, unsigned char *digest)
{
	text	   *t = DatumGetTextPP(d);

	return DecodeHexDigest(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), digest, KEY_DIGEST_LEN);
}

/*
 * Fill entry (whose public_id is set) from the database, its parts
 * allocated in target.  entry->facts.exists tells whether a key has this
 * public id.
 */
static void
LoadKeyRow(CachedKey *entry, MemoryContext target)
{
	KeyFacts   *facts = &entry->facts;
	Datum		arg;
	HeapTuple	tuple;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	IpNet	   *rules;
	int			nrules;
	bool		with_limits = OidIsValid(RateLimitTableOid());

	EnsureSpiConnected();
	arg = CStringGetTextDatum(entry->public_id);
	if (ExecuteKeptPlan(KeyPlan(with_limits), &arg, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "athena_keys: reading api_key failed");

	facts->exists = SPI_processed > 0;
	if (!facts->exists)
	{
		SPI_freetuptable(SPI_tuptable);
		return;
	}
	tuple = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	memcpy(&entry->id, DatumGetUUIDP(SPI_getbinval(tuple, desc, 1, &isnull)), sizeof(pg_uuid_t));
	facts->salt = TextDatumToCString(SPI_getbinval(tuple, desc, 2, &isnull), target);
	if (!LoadDigest(SPI_getbinval(tuple, desc, 3, &isnull), facts->digest))
		memset(facts->digest, 0, KEY_DIGEST_LEN);
	d = SPI_getbinval(tuple, desc, 4, &isnull);
	facts->has_previous = !isnull;
	if (facts->has_previous)
	{
		facts->previous_salt = TextDatumToCString(d, target);
		facts->has_previous = LoadDigest(SPI_getbinval(tuple, desc, 5, &isnull),
										 facts->previous_digest);
		facts->previous_valid_until =
			DatumGetTimestampTz(SPI_getbinval(tuple, desc, 6, &isnull));
	}
	facts->is_active = DatumGetBool(SPI_getbinval(tuple, desc, 7, &isnull));
	d = SPI_getbinval(tuple, desc, 8, &isnull);
	facts->has_expiry = !isnull;
	facts->expires_at = isnull ? 0 : DatumGetTimestampTz(d);
	d = SPI_getbinval(tuple, desc, 9, &isnull);
	facts->client_name = isnull ? NULL : TextDatumToCString(d, target);
	facts->client_name_len = isnull ? 0 : strlen(facts->client_name);
	facts->learning = DatumGetBool(SPI_getbinval(tuple, desc, 10, &isnull));
	d = SPI_getbinval(tuple, desc, 11, &isnull);
	entry->last_used_at = isnull ? 0 : DatumGetTimestampTz(d);

	LoadGrantedRights(entry, SPI_getbinval(tuple, desc, 12, &isnull), target);
	CollectCidrArray(SPI_getbinval(tuple, desc, 13, &isnull), &rules, &nrules, target);
	BuildOwnedRuleSet(&entry->whitelist, rules, nrules, target);
	CollectCidrArray(SPI_getbinval(tuple, desc, 14, &isnull), &rules, &nrules, target);
	BuildOwnedRuleSet(&entry->blacklist, rules, nrules, target);
	if (with_limits)
		RateLimitsFromFlatArray(SPI_getbinval(tuple, desc, 15, &isnull),
								&entry->rate_limits, &facts->nrate_limits, target);
	facts->rate_limits = entry->rate_limits;

	SPI_freetuptable(SPI_tuptable);
}

/* Drop the whole key cache (a generation passed) */
static void
FlushKeyCache(void)
{
	if (key_cache_context != NULL)
		MemoryContextDelete(key_cache_context);
	key_cache_context = NULL;
	key_cache = NULL;
	dlist_init(&key_lru);
	key_cache_entries = 0;
}

/* An empty key cache of the current generation */
static void
CreateKeyCache(void)
{
	HASHCTL		ctl;

	key_cache_context = AllocSetContextCreate(CacheMemoryContext, "athena_keys key cache",
											  ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = PUBLIC_ID_MAX_LEN + 1;
	ctl.entrysize = sizeof(CachedKey);
	ctl.hcxt = key_cache_context;
	key_cache = hash_create("athena_keys keys", 256, &ctl,
							HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	key_cache_generation = KeyCacheGeneration();
}

/* Drop the least recently used entry */
static void
EvictOldestKey(void)
{
	CachedKey  *oldest;

	if (dlist_is_empty(&key_lru))
		return;
	oldest = dlist_container(CachedKey, lru_node, dlist_tail_node(&key_lru));
	dlist_delete(&oldest->lru_node);
	if (oldest->parts != NULL)
		MemoryContextDelete(oldest->parts);
	hash_search(key_cache, oldest->public_id, HASH_REMOVE, NULL);
	key_cache_entries--;
}

/*
 * The cached entry of a public id (unknown ids included) when the cache is
 * current and may be used, else NULL.  Never reads a table.
 */
CachedKey *
PeekCachedKey(const char *public_id, size_t len)
{
	char		keybuf[PUBLIC_ID_MAX_LEN + 1] = {0};
	CachedKey  *entry;

	Assert(len <= PUBLIC_ID_MAX_LEN);
	if (key_cache == NULL || athena_key_cache_size <= 0 || !CachingAllowed() ||
		key_cache_generation != KeyCacheGeneration())
		return NULL;
	memcpy(keybuf, public_id, len);
	entry = hash_search(key_cache, keybuf, HASH_FIND, NULL);
	if (entry != NULL)
		dlist_move_head(&key_lru, &entry->lru_node);
	return entry;
}

/*
 * What is known about a public id, read from the tables (the caller holds
 * the rights to) and cached when allowed; otherwise it lives until the end
 * of the call.  A key that changed while it was read serves this call
 * only.
 */
CachedKey *
ReadKey(const char *public_id, size_t len)
{
	CachedKey  *entry;
	CachedKey  *cached;
	uint64		before;
	bool		cacheable;

	Assert(len <= PUBLIC_ID_MAX_LEN);
	entry = palloc0(sizeof(CachedKey));
	memcpy(entry->public_id, public_id, len);

	cacheable = athena_key_cache_size > 0 && CachingAllowed() && CacheMayBeRebuilt();
	if (cacheable && (key_cache == NULL || key_cache_generation != KeyCacheGeneration()))
	{
		FlushKeyCache();
		CreateKeyCache();
	}

	/* The parts start under the call's memory and move to the cache */
	before = KeyCacheGeneration();
	entry->parts = AllocSetContextCreate(CurrentMemoryContext, "athena_keys key",
										 ALLOCSET_SMALL_SIZES);
	LoadKeyRow(entry, entry->parts);
	LinkFacts(entry);
	if (!cacheable || before != KeyCacheGeneration() || key_cache == NULL)
		return entry;

	while (key_cache_entries >= athena_key_cache_size)
		EvictOldestKey();
	cached = hash_search(key_cache, entry->public_id, HASH_ENTER, NULL);
	memcpy(cached, entry, sizeof(CachedKey));
	LinkFacts(cached);
	if (!cached->facts.exists)
	{
		MemoryContextDelete(cached->parts);
		cached->parts = NULL;
	}
	else
		MemoryContextSetParent(cached->parts, key_cache_context);
	dlist_push_head(&key_lru, &cached->lru_node);
	key_cache_entries++;
	pfree(entry);
	return cached;
}
