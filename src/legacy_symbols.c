/*-------------------------------------------------------------------------
 * legacy_symbols.c
 *		C symbols that older install and upgrade scripts still bind SQL
 *		functions to.
 *
 * CREATE FUNCTION ... LANGUAGE C fails when the library lacks the symbol,
 * so an upgrade from 1.1 (which passes through the 1.1 -> 1.2 script) and
 * a database not yet updated both need these to exist.  The functions
 * themselves are dropped by a later script and refuse to run meanwhile.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

PG_FUNCTION_INFO_V1(athena_authenticate_privileged);

/*
 * _authenticate_privileged (1.2, 1.3): the SECURITY DEFINER twin that
 * athena_authenticate no longer hands calls to; 1.4 drops it.
 */
Datum
athena_authenticate_privileged(PG_FUNCTION_ARGS)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("athena_keys._authenticate_privileged is no longer used"),
			 errdetail("Since version 1.4, athena_authenticate performs the work that needs the extension owner's rights itself."),
			 errhint("Run ALTER EXTENSION athena_keys UPDATE, and call athena_keys.athena_authenticate.")));
	PG_RETURN_NULL();
}
