/*-------------------------------------------------------------------------
 * settings.h
 *		The settings (athena_keys.*): their variables and enums.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_SETTINGS_H
#define ATHENA_SETTINGS_H

#include "postgres.h"

/* athena_keys.log_decisions */
typedef enum LogDecisions
{
	LOG_DECISIONS_ALL,
	LOG_DECISIONS_FAILURES,
	LOG_DECISIONS_NONE
} LogDecisions;

/* athena_keys.log_durability */
typedef enum LogDurability
{
	LOG_DURABILITY_DURABLE,
	LOG_DURABILITY_ASYNC
} LogDurability;

extern int	athena_log_decisions;
extern int	athena_log_durability;
extern int	athena_last_used_interval;
extern int	athena_key_cache_size;
extern bool athena_report_handovers;

/* Defined only when athena_keys is preloaded: they size or drive the log queue */
extern int	athena_async_log_buffer_kb;
extern int	athena_async_flush_interval_ms;
extern char *athena_primary_conninfo;

/* Defined only when athena_keys is preloaded: it sizes the rate limit table */
extern int	athena_rate_limit_entries;
extern int	athena_shared_key_cache_kb;
extern bool athena_shared_key_cache;

extern void DefineSettings(void);

#endif
