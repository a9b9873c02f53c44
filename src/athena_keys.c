/*-------------------------------------------------------------------------
 * athena_keys.c
 *		Module entry: settings (athena_keys.*), the log queue, and cache
 *		invalidation.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "cache_invalidation.h"

PG_MODULE_MAGIC;

int			athena_log_decisions = LOG_DECISIONS_ALL;
int			athena_log_durability = LOG_DURABILITY_DURABLE;
int			athena_last_used_interval = 60;
int			athena_key_cache_size = 10000;
bool		athena_report_handovers = false;

static const struct config_enum_entry log_decisions_options[] = {
	{"all", LOG_DECISIONS_ALL, false},
	{"failures", LOG_DECISIONS_FAILURES, false},
	{"none", LOG_DECISIONS_NONE, false},
	{NULL, 0, false}
};

static const struct config_enum_entry log_durability_options[] = {
	{"durable", LOG_DURABILITY_DURABLE, false},
	{"async", LOG_DURABILITY_ASYNC, false},
	{NULL, 0, false}
};

void		_PG_init(void);

/*
 * Define the settings and register the cache invalidation callback.  The
 * settings are PGC_SUSET, so a gateway role cannot change what is logged,
 * except report_handovers: a diagnostic of the caller's own session that
 * only says which of its calls needed a table.
 */
void
_PG_init(void)
{
	DefineCustomEnumVariable("athena_keys.log_decisions",
							 "Which decisions athena_authenticate writes to api_key_auth_log.",
							 "all, failures (any decision with a reason), or none.",
							 &athena_log_decisions,
							 LOG_DECISIONS_ALL,
							 log_decisions_options,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("athena_keys.log_durability",
							 "Whether a log row's commit waits for the WAL flush.",
							 "durable waits like any other write; async may lose the last "
							 "moments of log rows in a crash (never on a clean shutdown). "
							 "Learning writes are always durable.",
							 &athena_log_durability,
							 LOG_DURABILITY_DURABLE,
							 log_durability_options,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("athena_keys.last_used_interval",
							"How stale api_key.last_used_at may get before a call stamps it again.",
							NULL,
							&athena_last_used_interval,
							60, 0, 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("athena_keys.key_cache_size",
							"How many keys each backend keeps in its key cache (0 disables it).",
							NULL,
							&athena_key_cache_size,
							10000, 0, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("athena_keys.report_handovers",
							 "Report each call of athena_authenticate that needs table access (a section with the extension owner's rights), with the reason, as a NOTICE.",
							 "Off: reported at DEBUG1 only.",
							 &athena_report_handovers,
							 false,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	InitAsyncLog();
	MarkGUCPrefixReserved("athena_keys");
	RegisterCacheInvalidation();
}
