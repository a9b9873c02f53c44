/*-------------------------------------------------------------------------
 * athena_keys.c
 *		Module entry: settings, the shared memory of the log queue, the
 *		rate limits and the shared key cache, cache invalidation.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"

#include "fmgr.h"

#include "cache_invalidation.h"
#include "index_predicates.h"
#include "last_used_queue.h"
#include "log_batch_insert.h"
#include "log_queue.h"
#include "rate_limit.h"
#include "shared_key_cache.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Define the settings (settings.c), ask for the shared memory of the log
 * queue, the last_used_at stamps, the rate limits and the shared key cache
 * when preloaded, and register the cache invalidation callbacks.
 */
void
_PG_init(void)
{
	DefineSettings();
	InitLogQueue();
	InitLastUseQueue();
	InitRateLimits();
	InitSharedKeyCache();
	RegisterCacheInvalidation();
	RegisterLogLayoutInvalidation();
	RegisterIndexPredicateInvalidation();
}
