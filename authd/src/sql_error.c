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
 * serialization failures, and a lock timeout, 55P03: the same locked row
 * or table as a statement timeout, only a different timer fired first).
 * Content: a data exception (class 22), which only the request's values
 * can cause.  Anything else is a server-side
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
		strncmp(sqlstate, "40", 2) == 0 || strcmp(sqlstate, "55P03") == 0)
		return DB_UNAVAILABLE;
	return DB_SERVER_ERROR;
}


/*
 * Classify a failure met while opening a connection or preparing its
 * statements.  Connection exceptions, the server shutting down or
 * starting up (57P0x), too many connections (53xxx) and libpq's own
 * failures (no SQLSTATE: refused, unreachable, timed out) are
 * "unavailable".  Anything the server refused us for -- authentication
 * (28xxx, a wrong password included), a missing database (3D000), a
 * permission or a missing schema or function (42xxx) -- is a
 * configuration error and fails closed whatever the fail mode: nothing
 * about it is the database being unreachable.  There are no request
 * values yet, so class 22 is a server error here too.
 */
DbOutcome
ClassifyConnectFailure(const char *sqlstate)
{
	DbOutcome	outcome = ClassifySqlState(sqlstate);

	return outcome == DB_CONTENT_ERROR ? DB_SERVER_ERROR : outcome;
}

/* True when c may be part of a SQLSTATE (digits and upper-case letters) */
static bool
IsSqlStateChar(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
}

/*
 * The SQLSTATE in a libpq error message of verbosity PQERRORS_VERBOSE
 * ("...failed: FATAL:  28P01: password authentication failed..."): the
 * first five SQLSTATE characters right after a severity's ":  " and
 * before ": ".  libpq has no accessor for a connection failure's
 * SQLSTATE, only this message.  False (sqlstate "") when there is none,
 * as in libpq's own failures ("Connection refused").
 */
bool
SqlStateFromMessage(const char *message, char sqlstate[6])
{
	sqlstate[0] = '\0';
	if (message == NULL)
		return false;
	for (const char *p = strstr(message, ":  "); p != NULL; p = strstr(p + 1, ":  "))
	{
		const char *code = p + 3;
		bool		ok = true;

		for (int i = 0; i < 5 && ok; i++)
			ok = IsSqlStateChar(code[i]);
		if (ok && code[5] == ':' && code[6] == ' ')
		{
			memcpy(sqlstate, code, 5);
			sqlstate[5] = '\0';
			return true;
		}
	}
	return false;
}
