/*-------------------------------------------------------------------------
 * key_last_used.c
 *		api_key.last_used_at kept within athena_keys.last_used_interval of
 *		the truth without writing the key row on every call.
 *
 * A call stamps only when the cached value says the stamp is due.  Where
 * the call cannot write, the log writer stamps it for the queued row.
 *-------------------------------------------------------------------------
 */
#include "key_last_used.h"

#include "catalog/pg_type.h"

#include "athena_keys.h"
#include "spi_plans.h"

static SPIPlanPtr last_used_plan = NULL;

/* Whether this call has to stamp the key's last_used_at */
bool
KeyLastUsedStampDue(const CachedKey *key, TimestampTz now)
{
	return key->last_used_at == 0 ||
		now - key->last_used_at >= (int64) athena_last_used_interval * USECS_PER_SEC;
}

/*
 * Stamp the key's last_used_at (the caller holds the owner's rights).
 * SKIP LOCKED: a call never waits for another one stamping the same key.
 */
void
TouchKeyLastUsed(CachedKey *key, TimestampTz now)
{
	Datum		args[2];

	EnsureSpiConnected();
	if (last_used_plan == NULL)
	{
		Oid			argtypes[2] = {UUIDOID, INT4OID};

		last_used_plan = PrepareKeptPlan(
			"UPDATE athena_keys.api_key SET last_used_at = pg_catalog.now() "
			" WHERE id OPERATOR(pg_catalog.=) "
			"       (SELECT id FROM athena_keys.api_key "
			"         WHERE id OPERATOR(pg_catalog.=) $1 "
			"           AND (last_used_at IS NULL OR "
			"                last_used_at OPERATOR(pg_catalog.<) "
			"                (pg_catalog.now() OPERATOR(pg_catalog.-) "
			"                 pg_catalog.make_interval(secs => $2))) "
			"           FOR UPDATE SKIP LOCKED)",
			2, argtypes, 0);
	}
	args[0] = UUIDPGetDatum(&key->id);
	args[1] = Int32GetDatum(athena_last_used_interval);
	if (ExecuteKeptPlan(last_used_plan, args, NULL, 0) != SPI_OK_UPDATE)
		elog(ERROR, "athena_keys: updating last_used_at failed");
	key->last_used_at = now;
}
