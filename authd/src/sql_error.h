/*-------------------------------------------------------------------------
 * sql_error.h
 *		What kind of failure a database error is, from its SQLSTATE: the
 *		fail mode may apply only to infrastructure failures, never to an
 *		error the request's own bytes caused.
 *
 * Pure C, no I/O: unit tested in test/test_sql_error.c.
 *-------------------------------------------------------------------------
 */
#ifndef AUTHD_SQL_ERROR_H
#define AUTHD_SQL_ERROR_H

#include <stdbool.h>

/* What DbPoolAuthenticate() found */
typedef enum DbOutcome
{
	DB_DECIDED,					/* the verdict is filled in */
	DB_UNAVAILABLE,				/* connection, timeout, pool, resources: fail mode applies */
	DB_CONTENT_ERROR,			/* the request's values were rejected (SQLSTATE 22xxx) */
	DB_SERVER_ERROR				/* another server error: fails closed */
} DbOutcome;

extern DbOutcome ClassifySqlState(const char *sqlstate);
extern DbOutcome ClassifyConnectFailure(const char *sqlstate);
extern bool SqlStateFromMessage(const char *message, char sqlstate[6]);

#endif							/* AUTHD_SQL_ERROR_H */
