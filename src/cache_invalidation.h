/*-------------------------------------------------------------------------
 * cache_invalidation.h
 *		When the per-backend caches are stale: a generation per cache,
 *		advanced by relcache invalidations of the tables that feed it.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_CACHE_INVALIDATION_H
#define ATHENA_CACHE_INVALIDATION_H

#include "postgres.h"

extern void RegisterCacheInvalidation(void);
extern uint64 ConfigCacheGeneration(void);
extern uint64 KeyCacheGeneration(void);
extern Oid	WatchedTableOid(const char *table);
extern Oid	RateLimitTableOid(void);
extern Oid	KeyTableOid(void);
extern bool CachingAllowed(void);
extern bool CacheFillAllowed(void);
extern bool CacheMayBeRebuilt(void);
extern void EnterCacheUse(void);
extern void LeaveCacheUse(void);

#endif
