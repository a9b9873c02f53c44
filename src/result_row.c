/*-------------------------------------------------------------------------
 * result_row.c
 *		The athena_auth_result row a call returns, built and checked
 *		against result_columns.h.
 *-------------------------------------------------------------------------
 */
#include "result_row.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/typcache.h"

static const struct
{
	const char *name;
	Oid			type;
}			result_columns[RESULT_COLUMNS] =
{
#define RESULT_COLUMN_ENTRY(name, type) {#name, type##OID},
	RESULT_COLUMN_LIST(RESULT_COLUMN_ENTRY)
#undef RESULT_COLUMN_ENTRY
};

/*
 * How many of result_columns.h's columns a result row type has, or an
 * error for a type that is not one this library fills (an ALTER TYPE on
 * athena_auth_result, or a library and schema of versions that do not
 * fit): a row built for another descriptor would be garbage.  The type's
 * live columns must be a leading part of the list, at least the 1.3 ones
 * (RESULT_COLUMNS_MIN), names and types matching in order, so that a 1.4
 * library serves a 1.3 schema between installing the library and ALTER
 * EXTENSION UPDATE; columns dropped after the last one read as NULL.
 */
static int
CheckResultColumns(TupleDesc desc)
{
	int			i;
	int			filled = 0;
	bool		matches = true;

	for (i = 0; matches && i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (i == filled && i < RESULT_COLUMNS && !att->attisdropped)
		{
			matches = att->atttypid == result_columns[i].type &&
				strcmp(NameStr(att->attname), result_columns[i].name) == 0;
			filled += matches;
		}
		else
			matches = att->attisdropped && filled >= RESULT_COLUMNS_MIN;
	}
	if (!matches || filled < RESULT_COLUMNS_MIN)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("athena_keys.athena_auth_result does not have the columns athena_keys fills"),
				 errdetail("The composite type was altered, or the installed library does not match the extension's version."),
				 errhint("Restore the type's columns, or install the library that matches the extension.")));
	return filled;
}

/*
 * The result row descriptor.  It is kept for the backend rather than per
 * call site, because a prepared statement sets up a new call site at every
 * execution; the type cache's identifier says when the row type was
 * replaced or altered, and the copy is checked again then.
 */
static TupleDesc
ResultTupleDesc(FunctionCallInfo fcinfo, int *filled)
{
	static TupleDesc backend_desc = NULL;
	static int	backend_desc_filled = 0;
	static Oid	backend_desc_type = InvalidOid;
	static uint64 backend_desc_identifier = 0;
	Oid			result_type = get_fn_expr_rettype(fcinfo->flinfo);
	TypeCacheEntry *typentry;

	if (!OidIsValid(result_type))
		result_type = get_func_rettype(fcinfo->flinfo->fn_oid);
	typentry = lookup_type_cache(result_type, TYPECACHE_TUPDESC);
	if (typentry->tupDesc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("athena_authenticate must return athena_keys.athena_auth_result"),
				 errdetail("The function is declared to return %s, which is not a row type.",
						   format_type_be(result_type)),
				 errhint("Call athena_keys.athena_authenticate as installed by the extension.")));
	if (backend_desc == NULL || backend_desc_type != result_type ||
		backend_desc_identifier != typentry->tupDesc_identifier)
	{
		MemoryContext old;

		int			columns = CheckResultColumns(typentry->tupDesc);

		old = MemoryContextSwitchTo(TopMemoryContext);
		if (backend_desc != NULL)
			FreeTupleDesc(backend_desc);
		backend_desc = CreateTupleDescCopy(typentry->tupDesc);
		backend_desc_type = result_type;
		backend_desc_identifier = typentry->tupDesc_identifier;
		backend_desc_filled = columns;
		MemoryContextSwitchTo(old);
	}
	*filled = backend_desc_filled;
	return backend_desc;
}

/*
 * The result row from RESULT_COLUMNS values and nulls, of which the type
 * has a leading part; the columns it may have dropped after them are NULL.
 */
Datum
FormResultRow(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	int			filled;
	TupleDesc	desc = ResultTupleDesc(fcinfo, &filled);
	Datum	   *all_values;
	bool	   *all_nulls;

	if (desc->natts == RESULT_COLUMNS)
		return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
	all_values = palloc0(sizeof(Datum) * desc->natts);
	all_nulls = palloc(sizeof(bool) * desc->natts);
	memset(all_nulls, true, sizeof(bool) * desc->natts);
	memcpy(all_values, values, sizeof(Datum) * filled);
	memcpy(all_nulls, nulls, sizeof(bool) * filled);
	return HeapTupleGetDatum(heap_form_tuple(desc, all_values, all_nulls));
}
