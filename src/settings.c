/*-------------------------------------------------------------------------
 * settings.c
 *		Every setting of the extension (athena_keys.*), defined in one place.
 *
 * The settings are PGC_SUSET or stricter, so a gateway role cannot change
 * what is logged, except report_handovers: a diagnostic of the caller's own
 * session that only says which of its calls needed a table.  The settings
 * of the log queue and the rate limit table exist only where athena_keys
 * is preloaded, since both are sized at server start and without
 * preloading there is neither.
 *-------------------------------------------------------------------------
 */
#include "settings.h"

#include "miscadmin.h"
#include "utils/guc.h"

int			athena_log_decisions = LOG_DECISIONS_ALL;
int			athena_log_durability = LOG_DURABILITY_DURABLE;
int			athena_last_used_interval = 60;
int			athena_key_cache_size = 10000;
bool		athena_report_handovers = false;
int			athena_async_log_buffer_kb = 8192;
int			athena_async_flush_interval_ms = 200;
char	   *athena_primary_conninfo = NULL;
int			athena_rate_limit_entries = 65536;
int			athena_shared_key_cache_kb = 32768;
bool		athena_shared_key_cache = true;

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

/*
 * The settings of the log queue and the rate limit table: only while
 * shared_preload_libraries is processed, because they size shared memory
 * or drive its writer.
 */
static void
DefineLogQueueSettings(void)
{
	DefineCustomIntVariable("athena_keys.async_log_buffer",
							"Shared memory for log rows queued under log_durability = async.",
							"Split evenly between up to 8 databases.  Needs athena_keys in "
							"shared_preload_libraries.",
							&athena_async_log_buffer_kb,
							8192, 64, 1024 * 1024,
							PGC_POSTMASTER, GUC_UNIT_KB,
							NULL, NULL, NULL);
	DefineCustomIntVariable("athena_keys.async_flush_interval",
							"How often the log writer inserts queued rows.",
							"Rows queued longer than this are at risk in a crash.",
							&athena_async_flush_interval_ms,
							200, 10, 60000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomStringVariable("athena_keys.primary_conninfo",
							   "Where a hot standby's log writer sends the decisions made on it.",
							   "A libpq connection string for the primary, as a role that may "
							   "execute athena_keys.athena_record_decisions.  Empty: "
							   "primary_conninfo with this database's name.",
							   &athena_primary_conninfo,
							   "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("athena_keys.rate_limit_entries",
							"How many rate limit buckets shared memory holds.",
							"One bucket per limit in use (and one per limit counted in shadow "
							"mode); a bucket that is full again is reused.  Needs athena_keys in "
							"shared_preload_libraries.",
							&athena_rate_limit_entries,
							65536, 64, 16 * 1024 * 1024,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("athena_keys.shared_key_cache_size",
							"Shared memory for the key cache every backend shares (0 disables it).",
							"4 kB per key; a key whose rules and grants need more is not "
							"shared.  Needs athena_keys in shared_preload_libraries and "
							"max_prepared_transactions = 0.",
							&athena_shared_key_cache_kb,
							32768, 0, 4 * 1024 * 1024,
							PGC_POSTMASTER, GUC_UNIT_KB,
							NULL, NULL, NULL);
}

/*
 * Define every setting, then reserve the prefix, so that a misspelt
 * athena_keys.* name is refused instead of silently ignored.
 */
void
DefineSettings(void)
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

	DefineCustomBoolVariable("athena_keys.shared_key_cache",
							 "Whether this session's calls use the key cache every backend shares.",
							 "Off: a key the backend's own cache lacks is read from the tables. "
							 "The shared cache exists only where athena_keys is preloaded.",
							 &athena_shared_key_cache,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("athena_keys.report_handovers",
							 "Report the first section of each athena_authenticate call that needs table access (with the extension owner's rights), with its reason, as a NOTICE.",
							 "Off: reported at DEBUG1 only.",
							 &athena_report_handovers,
							 false,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	if (process_shared_preload_libraries_in_progress)
		DefineLogQueueSettings();
	MarkGUCPrefixReserved("athena_keys");
}
