/*-------------------------------------------------------------------------
 * sql_error.c
 *		Classifying database errors for athena-authd (pure C, no I/O).
 *-------------------------------------------------------------------------
 */
#include "sql_error.h"

#include <string.h>

/*
 * Classify a failed call by its SQLSTATE.  Unavailable: the server could
 * not serve it (connection exceptions, statement timeout or cancel,
 * insufficient resources, operator intervention, system errors,
 * serialization failures).  Content: a data exception (class 22), which
 * only the request's values can cause.  Anything else is a server-side
 * error that is neither (a missing function, a permission): it fails
 * closed, never open.
 */
DbOutcome
ClassifySqlState(const char *sqlstate)
{
	if (sqlstate == NULL || strlen(sqlstate) != 5)
		return DB_UNAVAILABLE;	/* libpq's own failures carry none */
	if (strncmp(sqlstate, "22", 2) == 0)
		return DB_CONTENT_ERROR;
	if (strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "53", 2) == 0 ||
		strncmp(sqlstate, "57", 2) == 0 || strncmp(sqlstate, "58", 2) == 0 ||
		strncmp(sqlstate, "40", 2) == 0)
		return DB_UNAVAILABLE;
	return DB_SERVER_ERROR;
}

