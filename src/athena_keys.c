/*-------------------------------------------------------------------------
 * athena_keys.c
 *		Module entry: settings, the log queue's shared memory, cache
 *		callbacks.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"
#include "log_queue.h"

#include "fmgr.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * Define the settings (settings.c), ask for the log queue's shared memory
 * when preloaded, and register the cache invalidation callbacks.
 */
void
_PG_init(void)
{
	DefineSettings();
	InitLogQueue();
	RegisterCacheCallbacks();
}
