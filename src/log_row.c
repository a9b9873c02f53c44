/*-------------------------------------------------------------------------
 * log_row.c
 *		The one description of an api_key_auth_log row, and a decision's
 *		values for it.
 *
 * Every writer of the log is written against log_columns[]: the single-row
 * and batched INSERTs take their column lists and parameter types from it,
 * the queue's records store its columns by their types, and a standby's
 * shipment names them as JSON keys.  The regress test log_row_columns
 * checks it against the table and against what athena_record_decisions
 * reads, through athena_log_columns below.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"
#include "log_row.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

const LogColumn log_columns[LOG_COLUMNS] = {
	[LOG_COL_CREATED_AT] = {"created_at", TIMESTAMPTZOID},
	[LOG_COL_API_KEY_ID] = {"api_key_id", UUIDOID},
	[LOG_COL_API_KEY_PUBLIC_ID] = {"api_key_public_id", TEXTOID},
	[LOG_COL_CLIENT_NAME] = {"client_name", TEXTOID},
	[LOG_COL_REMOTE_ADDR] = {"remote_addr", INETOID},
	[LOG_COL_REQUIRED_RIGHTS] = {"required_rights", TEXTARRAYOID},
	[LOG_COL_GRANTED_RIGHTS] = {"granted_rights", TEXTARRAYOID},
	[LOG_COL_MISSING_RIGHTS] = {"missing_rights", TEXTARRAYOID},
	[LOG_COL_AUTHENTICATED] = {"authenticated", BOOLOID},
	[LOG_COL_AUTHORIZED] = {"authorized", BOOLOID},
	[LOG_COL_ENFORCED] = {"enforced", BOOLOID},
	[LOG_COL_ALLOWED] = {"allowed", BOOLOID},
	[LOG_COL_STATUS] = {"status", INT2OID},
	[LOG_COL_FAILURE_REASON] = {"failure_reason", TEXTOID},
	[LOG_COL_LOCKED_IN] = {"locked_in", BOOLOID},
};

/*
 * The OID of athena_keys.api_key_auth_log, by name (InvalidOid when the
 * schema has no such table): looked up where it may have been re-created
 */
Oid
LogTableOid(void)
{
	return get_relname_relid("api_key_auth_log", get_namespace_oid("athena_keys", false));
}

/*
 * Where each logged column sits in a row of desc, by name, into attnums
 * (0 for a missing one): the first logged column that is missing or of
 * another type, or -1 when every one is in place.  The rows are formed
 * from the library's values as they are, with no cast, so a column of
 * another type would read them as something else.
 */
int
FindLogColumns(TupleDesc desc, int *attnums)
{
	int			col;

	for (col = 0; col < LOG_COLUMNS; col++)
	{
		int			attno;

		attnums[col] = 0;
		for (attno = 1; attno <= desc->natts; attno++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, attno - 1);

			if (!att->attisdropped &&
				strcmp(NameStr(att->attname), log_columns[col].name) == 0)
				attnums[col] = attno;
		}
		if (attnums[col] == 0 ||
			TupleDescAttr(desc, attnums[col] - 1)->atttypid != log_columns[col].type)
			return col;
	}
	return -1;
}

/*
 * Where each logged column sits in a row of desc, by name, into attnums;
 * refused with the column's name when one is missing or of another type.
 * Every way of inserting rows (the statements of log_insert.c, the direct
 * path of log_batch_insert.c) places columns this way, so they refuse the
 * same tables alike.
 */
void
LogColumnAttnums(TupleDesc desc, int *attnums)
{
	int			col = FindLogColumns(desc, attnums);

	if (col < 0)
		return;
	if (attnums[col] == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("athena_keys.api_key_auth_log has no column \"%s\"",
						log_columns[col].name),
				 errdetail("Queued decisions cannot be written to the log without it."),
				 errhint("Add the column back with the type the extension's install script gives it.")));
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("athena_keys.api_key_auth_log column \"%s\" has type %s, not %s",
					log_columns[col].name,
					format_type_be(TupleDescAttr(desc, attnums[col] - 1)->atttypid),
					format_type_be(log_columns[col].type)),
			 errdetail("Queued decisions cannot be written to the log while the column has another type."),
			 errhint("Give the column back the type the extension's install script gives it.")));
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

/*
 * The log row of a decision, stamped with the transaction's start.  Never
 * holds the secret or a digest: only the public id as presented, and only
 * when the key was well formed.  New datums go to the current memory
 * context; the others are borrowed from the decision.
 */
void
LogRowFromDecision(const DecisionRecord *decision, Datum *values, bool *nulls)
{
	memset(nulls, false, sizeof(bool) * LOG_COLUMNS);
	values[LOG_COL_CREATED_AT] = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	values[LOG_COL_API_KEY_ID] = decision->key_identified
		? UUIDPGetDatum(&decision->key_id) : (Datum) 0;
	nulls[LOG_COL_API_KEY_ID] = !decision->key_identified;
	if (decision->public_id != NULL)
		values[LOG_COL_API_KEY_PUBLIC_ID] =
			PointerGetDatum(cstring_to_text_with_len(decision->public_id,
													 decision->public_id_len));
	else
		nulls[LOG_COL_API_KEY_PUBLIC_ID] = true;
	if (decision->client != NULL)
		values[LOG_COL_CLIENT_NAME] = ClippedTextDatum(decision->client,
													   LOGGED_CLIENT_MAX_BYTES);
	else
		nulls[LOG_COL_CLIENT_NAME] = true;
	values[LOG_COL_REMOTE_ADDR] = decision->remote_addr;
	nulls[LOG_COL_REMOTE_ADDR] = !decision->has_remote_addr;
	values[LOG_COL_REQUIRED_RIGHTS] = decision->required_rights;
	nulls[LOG_COL_REQUIRED_RIGHTS] = !decision->has_required_rights;
	values[LOG_COL_GRANTED_RIGHTS] = decision->granted_rights;
	nulls[LOG_COL_GRANTED_RIGHTS] = !decision->has_granted_rights;
	values[LOG_COL_MISSING_RIGHTS] = decision->missing_rights;
	nulls[LOG_COL_MISSING_RIGHTS] = !decision->has_missing_rights;
	values[LOG_COL_AUTHENTICATED] = BoolGetDatum(decision->authenticated);
	values[LOG_COL_AUTHORIZED] = BoolGetDatum(decision->authorized);
	values[LOG_COL_ENFORCED] = BoolGetDatum(decision->enforced);
	values[LOG_COL_ALLOWED] = BoolGetDatum(decision->allowed);
	values[LOG_COL_STATUS] = Int16GetDatum((int16) decision->status);
	if (decision->reason != NULL)
		values[LOG_COL_FAILURE_REASON] = CStringGetTextDatum(decision->reason);
	else
		nulls[LOG_COL_FAILURE_REASON] = true;
	values[LOG_COL_LOCKED_IN] = BoolGetDatum(decision->locked_in);
}

PG_FUNCTION_INFO_V1(athena_log_columns);

/*
 * athena_log_columns() -> setof (name text, type regtype): log_columns[] as
 * rows, so that a test can compare it with the SQL definitions.  No
 * extension script declares it: only a superuser can bind it (CREATE
 * FUNCTION ... LANGUAGE C), as the regress test does.
 */
Datum
athena_log_columns(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			col;

	InitMaterializedSRF(fcinfo, 0);
	for (col = 0; col < LOG_COLUMNS; col++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(log_columns[col].name);
		values[1] = ObjectIdGetDatum(log_columns[col].type);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
