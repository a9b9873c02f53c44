/*-------------------------------------------------------------------------
 * listings.c
 *		The C descriptions that SQL definitions must match, as rows: the
 *		failure reasons with their statuses, and the result row's columns.
 *
 * No extension script declares these functions; the regress test that
 * compares the descriptions with the SQL definitions binds them itself.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "failure_reasons.h"
#include "result_columns.h"

PG_FUNCTION_INFO_V1(athena_failure_reasons);
PG_FUNCTION_INFO_V1(athena_result_columns);

/* athena_failure_reasons(OUT reason text, OUT status integer): failure_reasons.c */
Datum
athena_failure_reasons(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			f;

	InitMaterializedSRF(fcinfo, 0);
	for (f = FAILURE_NONE + 1; f < FAILURE_COUNT; f++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(FailureReason((Failure) f));
		values[1] = Int32GetDatum(FailureStatus((Failure) f));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* athena_result_columns(OUT name text, OUT type regtype): result_columns.h */
Datum
athena_result_columns(PG_FUNCTION_ARGS)
{
	static const struct
	{
		const char *name;
		Oid			type;
	}			columns[] =
	{
#define RESULT_COLUMN_ROW(name, type) {#name, type##OID},
		RESULT_COLUMN_LIST(RESULT_COLUMN_ROW)
#undef RESULT_COLUMN_ROW
	};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	size_t		i;

	InitMaterializedSRF(fcinfo, 0);
	for (i = 0; i < lengthof(columns); i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(columns[i].name);
		values[1] = ObjectIdGetDatum(columns[i].type);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
