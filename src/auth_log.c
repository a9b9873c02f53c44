/*-------------------------------------------------------------------------
 * auth_log.c
 *		One api_key_auth_log row per decision, and last_used_at upkeep.
 *
 * athena_keys.log_decisions chooses which decisions are written and
 * athena_keys.log_durability whether their commit waits for the WAL flush.
 * Under async the row goes to the batched writer of async_log.c when
 * athena_keys is preloaded; otherwise (or when its queue is full), when the
 * call's own log row and last-use stamp are the first writes of its
 * transaction, that transaction commits with synchronous_commit off, so a
 * crash can lose at most the last wal_writer_delay x 3 of log rows and a
 * clean shutdown loses none.  Learning writes are always durable.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"

static SPIPlanPtr last_used_plan = NULL;

/* Whether the settings ask for this decision to be logged */
bool
ShouldLogDecision(const DecisionRecord *decision)
{
	switch (athena_log_decisions)
	{
		case LOG_DECISIONS_NONE:
			return false;
		case LOG_DECISIONS_FAILURES:
			return decision->reason != NULL;
		default:
			return true;
	}
}

/*
 * Under log_durability = async, let this transaction commit without
 * waiting for the WAL flush, unless the caller had written before the call
 * (its writes keep the durability it asked for) or the call learned.
 */
void
CommitAsynchronouslyIfAllowed(bool caller_had_writes, bool learning_wrote)
{
	if (athena_log_durability != LOG_DURABILITY_ASYNC || caller_had_writes ||
		learning_wrote || !TransactionIdIsValid(GetTopTransactionIdIfAny()))
		return;
	(void) set_config_option("synchronous_commit", "off",
							 PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
}

/* A text datum of at most max_bytes bytes of t, cut on a character boundary */
static Datum
ClippedTextDatum(text *t, int max_bytes)
{
	int			len = VARSIZE_ANY_EXHDR(t);

	if (len <= max_bytes)
		return PointerGetDatum(t);
	len = pg_mbcliplen(VARDATA_ANY(t), len, max_bytes);
	return PointerGetDatum(cstring_to_text_with_len(VARDATA_ANY(t), len));
}

/* Rows per INSERT statement: each size has its own saved plan */
static const int insert_batch_sizes[] = {LOG_INSERT_MAX_ROWS, 8, 1};

#define INSERT_PLAN_COUNT lengthof(insert_batch_sizes)

static SPIPlanPtr insert_plans[INSERT_PLAN_COUNT];

/*
 * The saved plan of "INSERT ... VALUES" with nrows rows of LOG_COLUMNS
 * parameters each.  Generic from the start: routing to the partition
 * happens at execution anyway, so a custom plan could not do better.
 */
static SPIPlanPtr
LogInsertPlan(int plan_index)
{
	static const Oid row_types[LOG_COLUMNS] = {TIMESTAMPTZOID, UUIDOID, TEXTOID, TEXTOID,
		INETOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	BOOLOID, BOOLOID, BOOLOID, BOOLOID, INT2OID, TEXTOID, BOOLOID};
	int			nrows = insert_batch_sizes[plan_index];
	StringInfoData sql;
	Oid		   *argtypes;
	SPIPlanPtr	plan;
	int			row;
	int			col;

	if (insert_plans[plan_index] != NULL)
		return insert_plans[plan_index];

	initStringInfo(&sql);
	appendStringInfoString(&sql,
						   "INSERT INTO athena_keys.api_key_auth_log "
						   "(created_at, api_key_id, api_key_public_id, client_name, remote_addr, "
						   " required_rights, granted_rights, missing_rights, authenticated, "
						   " authorized, enforced, allowed, status, failure_reason, locked_in) "
						   "VALUES ");
	argtypes = palloc(sizeof(Oid) * nrows * LOG_COLUMNS);
	for (row = 0; row < nrows; row++)
	{
		appendStringInfoString(&sql, row == 0 ? "(" : ", (");
		for (col = 0; col < LOG_COLUMNS; col++)
		{
			int			param = row * LOG_COLUMNS + col;

			argtypes[param] = row_types[col];
			appendStringInfo(&sql, col == 0 ? "$%d" : ", $%d", param + 1);
		}
		appendStringInfoChar(&sql, ')');
	}
	plan = SPI_prepare_cursor(sql.data, nrows * LOG_COLUMNS, argtypes,
							  CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL || SPI_keepplan(plan) != 0)
		elog(ERROR, "athena_keys: preparing the log insert failed");
	pfree(sql.data);
	pfree(argtypes);
	insert_plans[plan_index] = plan;
	return plan;
}

/*
 * Insert nrows api_key_auth_log rows; values and nulls hold LOG_COLUMNS
 * entries per row, row after row.  A batch costs one executor start and one
 * partition lookup per statement instead of per row: the batched writer
 * of async_log.c inserts up to LOG_INSERT_MAX_ROWS rows per statement.
 */
void
InsertLogRows(Datum *values, const char *nulls, int nrows)
{
	int			plan_index;

	EnsureSpiConnected();
	for (plan_index = 0; plan_index < (int) INSERT_PLAN_COUNT; plan_index++)
	{
		int			size = insert_batch_sizes[plan_index];

		while (nrows >= size)
		{
			if (SPI_execute_plan(LogInsertPlan(plan_index), values, nulls, false, 0) != SPI_OK_INSERT)
				elog(ERROR, "athena_keys: writing the auth log failed");
			values += size * LOG_COLUMNS;
			nulls += size * LOG_COLUMNS;
			nrows -= size;
		}
	}
}

/*
 * Whether logging a decision, when it is logged at all, needs an INSERT in
 * this transaction (durable, or async without the batched writer) rather
 * than the shared queue or nothing.
 */
bool
DecisionLogNeedsInsert(void)
{
	if (!CanWrite())
		return false;
	return athena_log_durability == LOG_DURABILITY_DURABLE || !AsyncLogQueueAvailable();
}

/*
 * Log the decision.  Never holds the secret or a digest: only the public
 * id as presented, and only when the key was well formed.  Under async the
 * row goes to the batched writer (async_log.c) when it can take it; a
 * learning call's row always commits with its learning writes.  Without
 * may_insert (the caller's privileges, no table access) only the queue is
 * tried; false means the row still has to be inserted and nothing was done.
 */
bool
WriteDecisionLog(const DecisionRecord *decision, bool learned, bool may_insert)
{
	Datum		values[LOG_COLUMNS];
	char		nulls[LOG_COLUMNS];

	if (!CanWrite())
	{
		/* A hot standby's writer ships queued decisions to the primary */
		if (RecoveryInProgress())
			(void) QueueDecisionLog(decision);
		return true;
	}
	if (athena_log_durability == LOG_DURABILITY_ASYNC && !learned &&
		QueueDecisionLog(decision))
		return true;
	if (!may_insert)
		return false;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[1] = decision->key_identified ? UUIDPGetDatum(&decision->key_id) : (Datum) 0;
	nulls[1] = decision->key_identified ? ' ' : 'n';
	if (decision->public_id != NULL)
		values[2] = PointerGetDatum(cstring_to_text_with_len(decision->public_id,
															 decision->public_id_len));
	else
		nulls[2] = 'n';
	if (decision->client != NULL)
		values[3] = ClippedTextDatum(decision->client, LOGGED_CLIENT_MAX_BYTES);
	else
		nulls[3] = 'n';
	values[4] = decision->remote_addr;
	nulls[4] = decision->has_remote_addr ? ' ' : 'n';
	values[5] = decision->required_rights;
	nulls[5] = decision->has_required_rights ? ' ' : 'n';
	values[6] = decision->granted_rights;
	nulls[6] = decision->has_granted_rights ? ' ' : 'n';
	values[7] = decision->missing_rights;
	nulls[7] = decision->has_missing_rights ? ' ' : 'n';
	values[8] = BoolGetDatum(decision->authenticated);
	values[9] = BoolGetDatum(decision->authorized);
	values[10] = BoolGetDatum(decision->enforced);
	values[11] = BoolGetDatum(decision->allowed);
	values[12] = Int16GetDatum((int16) decision->status);
	if (decision->reason != NULL)
		values[13] = CStringGetTextDatum(decision->reason);
	else
		nulls[13] = 'n';
	values[14] = BoolGetDatum(decision->locked_in);
	InsertLogRows(values, nulls, 1);
	return true;
}

/* Whether this call has to stamp the key's last_used_at (TouchKeyLastUsed) */
bool
KeyLastUsedStampDue(const CachedKey *key)
{
	TimestampTz now = GetCurrentTransactionStartTimestamp();

	if (key->last_used_at != 0 &&
		now - key->last_used_at < (int64) athena_last_used_interval * USECS_PER_SEC)
		return false;
	return CanWrite();
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

		last_used_plan = SPI_prepare(
			"UPDATE athena_keys.api_key SET last_used_at = now() "
			" WHERE id = (SELECT id FROM athena_keys.api_key "
			"              WHERE id = $1 AND (last_used_at IS NULL OR "
			"                    last_used_at < now() - make_interval(secs => $2)) "
			"              FOR UPDATE SKIP LOCKED)",
			2, argtypes);
		if (last_used_plan == NULL || SPI_keepplan(last_used_plan) != 0)
			elog(ERROR, "athena_keys: preparing the last-use update failed");
	}
	args[0] = UUIDPGetDatum(&key->id);
	args[1] = Int32GetDatum(athena_last_used_interval);
	if (SPI_execute_plan(last_used_plan, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "athena_keys: updating last_used_at failed");
	key->last_used_at = now;
}
