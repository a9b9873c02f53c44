/*-------------------------------------------------------------------------
 * db_pool.h
 *		A small pool of persistent libpq connections that run the prepared
 *		athena_authenticate() call, each step bounded by a deadline.
 *-------------------------------------------------------------------------
 */
#ifndef AUTHD_DB_POOL_H
#define AUTHD_DB_POOL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct DbPool DbPool;

/* The columns of athena_authenticate() the proxy needs; NULL = SQL NULL */
typedef struct AuthVerdict
{
	bool		allowed;
	int			status;
	char	   *reason;
	char	   *key_id;
	char	   *public_id;
	char	   *client_name;
	char	   *fail_mode;
} AuthVerdict;

/* The request as passed to the database; NULL = SQL NULL */
typedef struct AuthQuery
{
	const char *key;
	const char *client;
	const char *ip;				/* canonical text of an inet */
	const char *rights;			/* comma list, "" for none */
} AuthQuery;

extern DbPool *DbPoolCreate(const char *dsn, int size, int timeout_ms,
							char *error, size_t error_len);
extern void DbPoolDestroy(DbPool *pool);
extern int	DbPoolWarmUp(DbPool *pool, char *error, size_t error_len);
extern bool DbPoolAuthenticate(DbPool *pool, const AuthQuery *query, AuthVerdict *verdict,
							   char *error, size_t error_len);
extern bool DbPoolHealthCheck(DbPool *pool, char *error, size_t error_len);
extern void FreeAuthVerdict(AuthVerdict *verdict);

#endif							/* AUTHD_DB_POOL_H */
