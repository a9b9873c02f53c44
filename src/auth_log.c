/*-------------------------------------------------------------------------
 * auth_log.c
 *		One api_key_auth_log row per decision.
 *
 * athena_keys.log_decisions chooses which decisions are written and
 * athena_keys.log_durability whether their commit waits for the WAL flush.
 * Under async the row goes to the batched writer of async_log.c when
 * athena_keys is preloaded; otherwise (or when its queue is full) the call
 * inserts it like a durable row.  The call never changes how the caller's
 * transaction commits: its other writes, before or after the call, keep
 * the durability the caller asked for.  Learning writes are always
 * durable.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

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

/* The log columns a decision fills, in the order of LOG_COLUMNS values */
static const char *const log_column_names[LOG_COLUMNS] = {
	"created_at", "api_key_id", "api_key_public_id", "client_name", "remote_addr",
	"required_rights", "granted_rights", "missing_rights", "authenticated",
	"authorized", "enforced", "allowed", "status", "failure_reason", "locked_in"
};

static SPIPlanPtr single_row_plan = NULL;

/* Append the logged columns' names, comma-separated, each after qualifier */
static void
AppendLogColumnList(StringInfo sql, const char *qualifier)
{
	int			col;

	for (col = 0; col < LOG_COLUMNS; col++)
		appendStringInfo(sql, "%s%s%s", col == 0 ? "" : ", ", qualifier,
						 log_column_names[col]);
}

/* Start sql as "INSERT INTO <the log> (<the logged columns>) " */
static void
StartLogInsert(StringInfo sql)
{
	initStringInfo(sql);
	appendStringInfoString(sql, "INSERT INTO athena_keys.api_key_auth_log (");
	AppendLogColumnList(sql, "");
	appendStringInfoString(sql, ") ");
}

/*
 * The saved plan inserting one row from LOG_COLUMNS parameters: the
 * durable path, one decision per call.  Generic from the start: routing to
 * the partition happens at execution anyway.
 */
static SPIPlanPtr
SingleRowInsertPlan(void)
{
	static const Oid argtypes[LOG_COLUMNS] = {TIMESTAMPTZOID, UUIDOID, TEXTOID, TEXTOID,
		INETOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	BOOLOID, BOOLOID, BOOLOID, BOOLOID, INT2OID, TEXTOID, BOOLOID};
	StringInfoData sql;
	int			col;

	if (single_row_plan != NULL)
		return single_row_plan;
	StartLogInsert(&sql);
	appendStringInfoString(&sql, "VALUES (");
	for (col = 0; col < LOG_COLUMNS; col++)
		appendStringInfo(&sql, col == 0 ? "$%d" : ", $%d", col + 1);
	appendStringInfoChar(&sql, ')');
	single_row_plan = PrepareKeptPlan(sql.data, LOG_COLUMNS, argtypes,
									  CURSOR_OPT_GENERIC_PLAN);
	pfree(sql.data);
	return single_row_plan;
}

/*
 * A batch travels as one array of the log table's row type, unnested by
 * the INSERT: the statement's set-up costs the same for 1 or 1,000 rows,
 * where a VALUES list would compile one expression per parameter at every
 * execution.  The plan, the row type and where each column sits in it are
 * checked against the catalogs at every batch, so a re-created extension
 * (a new row type) or an added column is picked up.
 */
static SPIPlanPtr batch_plan = NULL;
static Oid	batch_row_type = InvalidOid;
static uint64 batch_row_identifier = 0;
static int	batch_attnums[LOG_COLUMNS];

/* The row type of athena_keys.api_key_auth_log, with its type cache entry */
static TypeCacheEntry *
LogRowType(void)
{
	Oid			relid = get_relname_relid("api_key_auth_log",
										  get_namespace_oid("athena_keys", false));
	Oid			row_type = OidIsValid(relid) ? get_rel_type_id(relid) : InvalidOid;
	TypeCacheEntry *typentry;

	if (!OidIsValid(row_type))
		elog(ERROR, "athena_keys: table athena_keys.api_key_auth_log does not exist");
	typentry = lookup_type_cache(row_type, TYPECACHE_TUPDESC);
	if (typentry->tupDesc == NULL)
		elog(ERROR, "athena_keys: the log table has no row type");
	return typentry;
}

/*
 * (Re)build the saved plan inserting every element of a log-row array
 * parameter, and where each logged column sits in row
 */
static void
BatchInsertPlan(TypeCacheEntry *row)
{
	TupleDesc	desc = row->tupDesc;
	StringInfoData sql;
	Oid			argtype;
	int			col;

	if (batch_plan != NULL)
	{
		FreeKeptPlan(batch_plan);
		batch_plan = NULL;
	}

	for (col = 0; col < LOG_COLUMNS; col++)
	{
		int			attno;

		batch_attnums[col] = 0;
		for (attno = 1; attno <= desc->natts; attno++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, attno - 1);

			if (!att->attisdropped &&
				strcmp(NameStr(att->attname), log_column_names[col]) == 0)
				batch_attnums[col] = attno;
		}
		if (batch_attnums[col] == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("athena_keys.api_key_auth_log has no column \"%s\"",
							log_column_names[col]),
					 errdetail("Queued decisions cannot be written to the log without it."),
					 errhint("Add the column back with the type the extension's install script gives it.")));
	}

	argtype = get_array_type(row->type_id);
	StartLogInsert(&sql);
	appendStringInfoString(&sql, "SELECT ");
	AppendLogColumnList(&sql, "r.");
	appendStringInfoString(&sql, " FROM pg_catalog.unnest($1) r");
	batch_plan = PrepareKeptPlan(sql.data, 1, &argtype, CURSOR_OPT_GENERIC_PLAN);
	pfree(sql.data);
	batch_row_type = row->type_id;
	batch_row_identifier = row->tupDesc_identifier;
}

/*
 * Insert nrows api_key_auth_log rows; values and nulls hold LOG_COLUMNS
 * entries per row, row after row.  One row (a call's own decision) goes
 * through a one-row VALUES plan; more (the batched writer of async_log.c)
 * go in one statement as an array of rows, built in the current memory
 * context (the writer resets it after every batch).
 */
void
InsertLogRows(Datum *values, const char *nulls, int nrows)
{
	TypeCacheEntry *row;
	TupleDesc	desc;
	Datum	   *rows;
	Datum	   *row_values;
	bool	   *row_nulls;
	Datum		array;
	int			i;
	int			col;

	EnsureSpiConnected();
	if (nrows <= 0)
		return;
	if (nrows == 1)
	{
		if (ExecuteKeptPlan(SingleRowInsertPlan(), values, nulls, 0) != SPI_OK_INSERT)
			elog(ERROR, "athena_keys: writing the auth log failed");
		return;
	}

	/*
	 * Preparing the plan reads catalogs, which may apply an invalidation of
	 * the row type; the rows are built only from a descriptor that still
	 * matches the plan, pinned while they are.
	 */
	for (;;)
	{
		row = LogRowType();
		if (batch_plan != NULL && row->type_id == batch_row_type &&
			row->tupDesc_identifier == batch_row_identifier)
			break;
		BatchInsertPlan(row);
	}
	desc = row->tupDesc;
	PinTupleDesc(desc);
	rows = palloc(sizeof(Datum) * nrows);
	row_values = palloc(sizeof(Datum) * desc->natts);
	row_nulls = palloc(sizeof(bool) * desc->natts);
	for (i = 0; i < nrows; i++)
	{
		memset(row_nulls, true, sizeof(bool) * desc->natts);
		for (col = 0; col < LOG_COLUMNS; col++)
		{
			int			attno = batch_attnums[col];

			row_values[attno - 1] = values[i * LOG_COLUMNS + col];
			row_nulls[attno - 1] = nulls[i * LOG_COLUMNS + col] == 'n';
		}
		rows[i] = HeapTupleGetDatum(heap_form_tuple(desc, row_values, row_nulls));
	}
	array = PointerGetDatum(construct_array(rows, nrows, row->type_id, -1, false,
											TYPALIGN_DOUBLE));
	ReleaseTupleDesc(desc);
	if (ExecuteKeptPlan(batch_plan, &array, NULL, 0) != SPI_OK_INSERT)
		elog(ERROR, "athena_keys: writing the auth log failed");
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

/* Warn at most once a minute per backend that standby decisions go unlogged */
static void
WarnStandbyDecisionUnlogged(void)
{
	static TimestampTz last_warning = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (!TimestampDifferenceExceeds(last_warning, now, 60000))
		return;
	last_warning = now;
	ereport(WARNING,
			(errmsg("athena_keys could not queue a decision of this hot standby for the primary's log"),
			 errdetail("The log writer's queue is full or unavailable, so the decision was answered but not logged."),
			 errhint("Preload athena_keys (shared_preload_libraries) and check that the standby's writer can reach the primary (athena_keys.primary_conninfo).")));
}

/*
 * Log the decision.  Never holds the secret or a digest: only the public
 * id as presented, and only when the key was well formed.  Under async the
 * row goes to the batched writer (async_log.c) when it can take it; a
 * learning call's row always commits with its learning writes.  A
 * transaction that cannot write queues the row whatever the durability
 * setting (on a hot standby the writer ships it to the primary); where the
 * queue cannot take a read-only transaction's row on a primary, the
 * decision cannot be logged (LOG_IMPOSSIBLE).
 * Without may_insert (the caller's privileges, no table access) only the
 * queue is tried, and LOG_NEEDS_INSERT means nothing was done yet.
 */
LogOutcome
WriteDecisionLog(const DecisionRecord *decision, bool learned, bool may_insert)
{
	Datum		values[LOG_COLUMNS];
	char		nulls[LOG_COLUMNS];

	if (RecoveryInProgress())
	{
		/*
		 * A standby's decisions stand when its queue cannot take them (the
		 * primary unreachable for long, no preloaded writer): refusing
		 * every request there would turn a primary outage into a replica
		 * outage.  The loss is reported, at most once a minute.
		 */
		if (!QueueDecisionLog(decision))
			WarnStandbyDecisionUnlogged();
		return LOG_DONE;
	}
	if (!CanWrite())
		return QueueDecisionLog(decision) ? LOG_DONE : LOG_IMPOSSIBLE;
	if (athena_log_durability == LOG_DURABILITY_ASYNC && !learned &&
		QueueDecisionLog(decision))
		return LOG_DONE;
	if (!may_insert)
		return LOG_NEEDS_INSERT;

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
	return LOG_DONE;
}
