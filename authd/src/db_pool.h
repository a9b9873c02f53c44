/*-------------------------------------------------------------------------
 * db_pool.h
 *		A small pool of persistent libpq connections that run the prepared
 *		athena_gateway_verdict() call, each step bounded by a deadline.
 *-------------------------------------------------------------------------
 */
#ifndef AUTHD_DB_POOL_H
#define AUTHD_DB_POOL_H

#include <stdbool.h>
#include <stddef.h>

#include "sql_error.h"
#include "verdict_text.h"

typedef struct DbPool DbPool;

/* The request as passed to the database; NULL = SQL NULL */
typedef struct AuthQuery
{
	const char *key;
	const char *client;
	const char *ip;				/* canonical text of an inet */
	const char *rights;			/* comma list, "" for none */
} AuthQuery;

/* How the server learns the per-call statement_timeout */
typedef enum StatementTimeoutMode
{
	STATEMENT_TIMEOUT_OPTIONS,	/* -c statement_timeout in the startup options */
	STATEMENT_TIMEOUT_LOCAL,	/* set_config(..., true) in the call's transaction */
	STATEMENT_TIMEOUT_OFF		/* only athena-authd's own deadline */
} StatementTimeoutMode;

/* Pool settings */
typedef struct DbPoolOptions
{
	const char *dsn;
	int			size;
	int			timeout_ms;
	StatementTimeoutMode timeout_mode;
	bool		named_statement;	/* false: unnamed, for transaction pooling */
} DbPoolOptions;

extern DbPool *DbPoolCreate(const DbPoolOptions *options, char *error, size_t error_len);
extern void DbPoolDestroy(DbPool *pool);
extern int	DbPoolWarmUp(DbPool *pool, char *error, size_t error_len);
extern DbOutcome DbPoolAuthenticate(DbPool *pool, const AuthQuery *query, AuthVerdict *verdict,
							   char *error, size_t error_len);
extern bool DbPoolHealthCheck(DbPool *pool, char *error, size_t error_len);

#endif							/* AUTHD_DB_POOL_H */
