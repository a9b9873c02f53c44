/*-------------------------------------------------------------------------
 * key_cache.h
 *		The per-backend cache of what decisions need to know about public
 *		ids: the key row, its grants and its IP rules (unknown ids too).
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_KEY_CACHE_H
#define ATHENA_KEY_CACHE_H

#include "postgres.h"

#include "lib/ilist.h"
#include "utils/array.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "decision.h"
#include "ip_datums.h"

/* One public id: its facts and the parts they point into */
typedef struct CachedKey
{
	char		public_id[PUBLIC_ID_MAX_LEN + 1];	/* hash key */
	KeyFacts	facts;
	pg_uuid_t	id;
	ArrayType  *granted_array;
	OwnedRuleSet whitelist;
	OwnedRuleSet blacklist;
	RateLimit  *rate_limits;	/* facts.rate_limits, owned */
	TimestampTz last_used_at;	/* 0 = never, or unknown */
	MemoryContext parts;		/* the variable-sized parts; NULL: none */
	dlist_node	lru_node;
} CachedKey;

/* Where the slot of a key in the shared cache is, and its epoch when looked up */
typedef struct SharedKeyPlace
{
	uint32		hash;
	uint64		epoch;
} SharedKeyPlace;

/* A lookup of a key the backend's cache lacks, from the shared cache to the tables */
typedef struct KeyLookup
{
	CachedKey  *entry;			/* being filled, parts under the call's memory */
	bool		cacheable;		/* may be kept in the backend's cache */
	uint64		before;			/* the key cache generation before */
	Oid			key_table;		/* api_key's OID; InvalidOid: no shared cache */
	SharedKeyPlace shared;
} KeyLookup;

extern CachedKey *PeekCachedKey(const char *public_id, size_t len);
extern CachedKey *SharedCachedKey(const char *public_id, size_t len, KeyLookup *lookup);
extern CachedKey *ReadKey(KeyLookup *lookup);

#endif
