/*-------------------------------------------------------------------------
 * key_last_used.c
 *		api_key.last_used_at upkeep: when a call stamps it, and the stamp.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"

#include "access/xact.h"
#include "catalog/pg_type.h"

static SPIPlanPtr last_used_plan = NULL;

/*
 * Whether this call has to stamp the key's last_used_at: itself
 * (TouchKeyLastUsed) where it can write, else through the log queue
 */
bool
KeyLastUsedStampDue(const CachedKey *key)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	return key->last_used_at == 0 ||
		now - key->last_used_at >= (int64) athena_last_used_interval * USECS_PER_SEC;
}

/*
 * Keep last_used_at within athena_keys.last_used_interval of the truth
 * without writing the key row on every call: the caller stamps only when
 * KeyLastUsedStampDue says so.  SKIP LOCKED means a call never waits for
 * another one that is stamping the same key.
 */
void
TouchKeyLastUsed(CachedKey *key)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	Datum		args[2];

	EnsureSpiConnected();
	if (last_used_plan == NULL)
	{
		Oid			argtypes[2] = {UUIDOID, INT4OID};

		last_used_plan = PrepareKeptPlan(
			"UPDATE athena_keys.api_key SET last_used_at = now() "
			" WHERE id = (SELECT id FROM athena_keys.api_key "
			"              WHERE id = $1 AND (last_used_at IS NULL OR "
			"                    last_used_at < now() - make_interval(secs => $2)) "
			"              FOR UPDATE SKIP LOCKED)",
			2, argtypes, 0);
	}
	args[0] = UUIDPGetDatum(&key->id);
	args[1] = Int32GetDatum(athena_last_used_interval);
	if (ExecuteKeptPlan(last_used_plan, args, NULL, 0) != SPI_OK_UPDATE)
		elog(ERROR, "athena_keys: updating last_used_at failed");
	key->last_used_at = now;
}
