/*-------------------------------------------------------------------------
 * db_pool.h
 *		A small pool of persistent non-blocking libpq connections that
 *		run queued athena_gateway_verdict() calls in pipelined batches,
 *		each call bounded by its deadline, driven by the event loop of
 *		the thread that owns the pool (no threads of its own).
 *-------------------------------------------------------------------------
 */
#ifndef AUTHD_DB_POOL_H
#define AUTHD_DB_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
	int			max_batch;		/* calls per round trip (pipeline), 1 = one by one */
	bool		log;			/* a line on stderr for what the pool decides by itself */
} DbPoolOptions;

/* Called once when a submitted call has its outcome (from DbPoolRun or DbPoolSocketEvent) */
typedef void (*DbCallDone) (void *arg);

/* What a call asks the database */
typedef enum DbCallKind
{
	DB_CALL_VERDICT,			/* athena_gateway_verdict() for one request */
	DB_CALL_HEALTH				/* SELECT 1, for /healthz */
} DbCallKind;

/*
 * One call, owned by the submitter and left alone by it until done is
 * called: the pool fills in outcome (and verdict or error) and then
 * calls done, after which the pool no longer touches it.  The query's
 * strings must live as long.
 */
typedef struct DbCall
{
	DbCallKind	kind;
	const char *params[4];		/* key, client, ip, rights */
	int64_t		deadline_ms;	/* monotonic */
	int64_t		queued_ms;
	bool		waited;			/* no connection was free when it was queued */
	AuthVerdict *verdict;
	char	   *error;
	size_t		error_len;
	DbOutcome	outcome;
	DbCallDone	done;
	void	   *done_arg;
	struct DbCall *next;
} DbCall;

extern DbPool *DbPoolCreate(const DbPoolOptions *options, char *error, size_t error_len);
extern int	DbPoolStart(DbPool *pool, int epoll_fd, char *error, size_t error_len);
extern void DbPoolClose(DbPool *pool);
extern bool DbPoolIdle(const DbPool *pool);
extern void DbPoolDestroy(DbPool *pool);
extern bool DbPoolSubmit(DbPool *pool, DbCall *call, const AuthQuery *query, AuthVerdict *verdict,
						 char *error, size_t error_len, DbCallDone done, void *done_arg);
extern bool DbPoolSubmitHealthCheck(DbPool *pool, DbCall *call, char *error, size_t error_len,
									DbCallDone done, void *done_arg);
extern void DbPoolSocketEvent(DbPool *pool, void *tag, uint32_t events);
extern bool DbPoolRun(DbPool *pool);
extern int	DbPoolTimeoutMs(const DbPool *pool);

#endif							/* AUTHD_DB_POOL_H */
