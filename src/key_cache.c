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
 * extension owner's rights (request_effects.c) by key_rows.c, peeked at
 * with the caller's; cache_invalidation.c says when the whole cache is
 * stale.  Keys it lacks may come from the cache all backends share
 * (shared_key_cache.c) before they are read from the tables.
 *-------------------------------------------------------------------------
 */
#include "key_cache.h"

#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "cache_invalidation.h"
#include "athena_keys.h"
#include "key_rows.h"
#include "shared_key_cache.h"

static MemoryContext key_cache_context = NULL;
static HTAB *key_cache = NULL;
static uint64 key_cache_generation = 0;
static dlist_head key_lru = DLIST_STATIC_INIT(key_lru);
static int	key_cache_entries = 0;

/* Point an entry's facts at its own rule sets (after it was placed) */
static void
LinkFacts(CachedKey *entry)
{
	entry->facts.whitelist = &entry->whitelist.set;
	entry->facts.blacklist = &entry->blacklist.set;
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
 * Keep entry, whose parts are under the call's memory, in the cache when
 * cacheable and the generation is still the one before it was found;
 * the entry to use from now on.
 */
static CachedKey *
KeepKey(CachedKey *entry, bool cacheable, uint64 before)
{
	CachedKey  *cached;

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

/*
 * Begin looking up a key the backend's cache lacks: whether the entry may
 * be kept in the backend's cache (flushed first when its generation
 * passed) and whether the shared cache may be used, a new entry with its
 * parts context under the call's memory, and the generation before.
 */
static void
BeginKeyLookup(KeyLookup *lookup, const char *public_id, size_t len)
{
	bool		fill_allowed = CacheFillAllowed() && CacheMayBeRebuilt();
	CachedKey  *entry;

	Assert(len <= PUBLIC_ID_MAX_LEN);
	lookup->cacheable = athena_key_cache_size > 0 && fill_allowed;
	lookup->key_table = InvalidOid;
	if (fill_allowed && SharedKeyCacheUsable())
		lookup->key_table = KeyTableOid();
	if (lookup->cacheable && (key_cache == NULL || key_cache_generation != KeyCacheGeneration()))
	{
		FlushKeyCache();
		CreateKeyCache();
	}
	lookup->before = KeyCacheGeneration();
	entry = palloc0(sizeof(CachedKey));
	memcpy(entry->public_id, public_id, len);
	entry->parts = AllocSetContextCreate(CurrentMemoryContext, "athena_keys key",
										 ALLOCSET_SMALL_SIZES);
	lookup->entry = entry;
}

/*
 * A key the backend's cache lacks, from the cache all backends share
 * (shared_key_cache.c) when it holds it and may be used, kept in the
 * backend's cache as a read would be; else NULL, and lookup is what
 * ReadKey needs to read it.  Reads no table, so needs no rights.
 */
CachedKey *
SharedCachedKey(const char *public_id, size_t len, KeyLookup *lookup)
{
	BeginKeyLookup(lookup, public_id, len);
	if (!OidIsValid(lookup->key_table))
		return NULL;
	if (!SharedKeyCacheFind(lookup->entry, lookup->key_table, &lookup->shared,
							lookup->entry->parts))
		return NULL;
	return KeepKey(lookup->entry, lookup->cacheable, lookup->before);
}

/*
 * The key SharedCachedKey did not find, read from the tables (the caller
 * holds the rights to), offered to the shared cache and kept in this
 * backend's when allowed; otherwise it lives until the end of the call.  A
 * key that changed while it was read serves this call only.  The shared
 * cache's epoch was read by the lookup, before the snapshot of this read.
 */
CachedKey *
ReadKey(KeyLookup *lookup)
{
	CachedKey  *entry = lookup->entry;

	ReadKeyRows(entry, entry->parts, OidIsValid(lookup->key_table) ? lookup->shared.epoch : 0);
	if (OidIsValid(lookup->key_table) && lookup->before == KeyCacheGeneration())
		SharedKeyCachePublish(entry, lookup->key_table, &lookup->shared);
	return KeepKey(entry, lookup->cacheable, lookup->before);
}
