/*-------------------------------------------------------------------------
 * log_insert.c
 *		Inserting log rows into athena_keys.api_key_auth_log through SPI
 *		where the direct path (log_batch_insert.c) cannot take them.
 *
 * Both statements are built from log_columns[] and name only
 * schema-qualified objects: a call's row is inserted in the caller's
 * session, with the extension owner's rights but the caller's search_path.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"
#include "log_row.h"
#include "log_insert.h"
#include "log_batch_insert.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

static SPIPlanPtr single_row_plan = NULL;

/* Append the logged columns' names, comma-separated, each after qualifier */
static void
AppendLogColumnList(StringInfo sql, const char *qualifier)
{
	int			col;

	for (col = 0; col < LOG_COLUMNS; col++)
		appendStringInfo(sql, "%s%s%s", col == 0 ? "" : ", ", qualifier,
						 log_columns[col].name);
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
	Oid			argtypes[LOG_COLUMNS];
	StringInfoData sql;
	int			col;

	if (single_row_plan != NULL)
		return single_row_plan;
	StartLogInsert(&sql);
	appendStringInfoString(&sql, "VALUES (");
	for (col = 0; col < LOG_COLUMNS; col++)
	{
		argtypes[col] = log_columns[col].type;
		appendStringInfo(&sql, col == 0 ? "$%d" : ", $%d", col + 1);
	}
	appendStringInfoChar(&sql, ')');
	single_row_plan = PrepareKeptPlan(sql.data, LOG_COLUMNS, argtypes,
									  CURSOR_OPT_GENERIC_PLAN);
	pfree(sql.data);
	return single_row_plan;
}

/*
 * A batch travels as one array of the log table's row type, unnested by
 * the INSERT: the statement's set-up costs the same whatever the number of
 * rows, where a VALUES list would compile one expression per parameter at
 * every execution.  The plan, the row type and where each column sits in
 * it are checked against the catalogs at every batch, so a re-created
 * extension (a new row type) or an added column is picked up.
 */
static SPIPlanPtr batch_plan = NULL;
static Oid	batch_row_type = InvalidOid;
static uint64 batch_row_identifier = 0;
static int	batch_attnums[LOG_COLUMNS];

/* The row type of athena_keys.api_key_auth_log, with its type cache entry */
static TypeCacheEntry *
LogRowType(void)
{
	Oid			relid = LogTableOid();
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
	StringInfoData sql;
	Oid			argtype;

	if (batch_plan != NULL)
	{
		FreeKeptPlan(batch_plan);
		batch_plan = NULL;
	}
	LogColumnAttnums(row->tupDesc, batch_attnums);

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
 * through a one-row VALUES plan; more (the log writer's batches) go in one
 * statement as an array of rows, built in the current memory context (the
 * writer resets it after every batch).
 */
void
InsertLogRows(const Datum *values, const bool *nulls, int nrows)
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
		char		spi_nulls[LOG_COLUMNS];

		for (col = 0; col < LOG_COLUMNS; col++)
			spi_nulls[col] = nulls[col] ? 'n' : ' ';
		if (ExecuteKeptPlan(SingleRowInsertPlan(), (Datum *) values, spi_nulls, 0) != SPI_OK_INSERT)
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
			row_nulls[attno - 1] = nulls[i * LOG_COLUMNS + col];
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
 * The durable INSERT of a decision's row, in the call's transaction:
 * straight into its partition (log_batch_insert.c), or through the
 * one-row statement where the log needs it.  The caller runs with the
 * extension owner's rights and has connected SPI.
 */
void
InsertDecisionLog(const DecisionRecord *decision)
{
	Datum		values[LOG_COLUMNS];
	bool		nulls[LOG_COLUMNS];

	LogRowFromDecision(decision, values, nulls);
	if (!InsertLogBatch(values, nulls, 1, false))
		InsertLogRows(values, nulls, 1);
}
