/*-------------------------------------------------------------------------
 * result_row.h
 *		The athena_auth_result row a call returns.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_RESULT_ROW_H
#define ATHENA_RESULT_ROW_H

#include "postgres.h"

#include "fmgr.h"

#include "result_columns.h"

extern Datum FormResultRow(FunctionCallInfo fcinfo, Datum *values, bool *nulls);

#endif
