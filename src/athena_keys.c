/*-------------------------------------------------------------------------
 * athena_keys.c
 *		Module entry: settings, the log queue's shared memory, cache
 *		invalidation.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"

#include "fmgr.h"

#include "cache_invalidation.h"
#include "log_queue.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Define the settings (settings.c), ask for the log queue's shared memory
 * when preloaded, and register the cache invalidation callback.
 */
void
_PG_init(void)
{
	DefineSettings();
	InitLogQueue();
	RegisterCacheInvalidation();
}
