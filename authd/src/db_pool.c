/*-------------------------------------------------------------------------
 * db_pool.c
 *		Persistent libpq connections for athena-authd.
 *
 * Every decision runs the prepared athena_gateway_verdict() call exactly
 * once on one pooled connection: the same decision as athena_authenticate(),
 * answered as one text value in the target list, which PostgreSQL executes
 * far more cheaply than a row from a function in FROM (verdict_text.c
 * reads it).  Nothing here can block past the
 * caller's deadline: waiting for a free slot, connecting (non-blocking
 * PQconnectStartParams/PQconnectPoll) and running the statement
 * (PQsendQueryPrepared and poll()) all share one budget.  The server also
 * enforces a statement_timeout: through the connection's startup options,
 * or, for poolers that refuse those (PgBouncer), set for the call's own
 * transaction in the same pipeline (one round trip).  Under transaction
 * pooling a named prepared statement lives on one server connection only,
 * so the call can instead be sent unnamed (parsed with every call).
 *
 * A failed call is classified by its SQLSTATE: only connection failures,
 * timeouts, lack of resources and the like count as "unavailable" (where
 * a fail mode applies); an error caused by the request's content (class
 * 22, data exception) never does.
 *
 * A connection that failed, timed out, or received anything while idle
 * (the server's shutdown notice, EOF) is closed and reopened on its next
 * use, so a restarted server is picked up without restarting the proxy.
 * A slot whose reconnect failed waits RECONNECT_BACKOFF_MS before trying
 * again; meanwhile requests fail fast instead of each waiting for a
 * connect attempt against a dead server.
 *-------------------------------------------------------------------------
 */
#include "db_pool.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics.h"
#include "sql_error.h"

#define AUTH_STATEMENT_NAME "athena_authd_authenticate"
#define RECONNECT_BACKOFF_MS 250

/*
 * Rights travel as one text parameter split on the server, so no value is
 * ever spliced into SQL text and no array literal has to be escaped here.
 */
static const char auth_statement_sql[] =
	"SELECT athena_keys.athena_gateway_verdict($1::text, $2::text, $3::inet, "
	"string_to_array($4::text, ','))";

/* One pooled connection */
typedef struct PoolSlot
{
	PGconn	   *conn;			/* NULL when closed */
	bool		busy;			/* handed out to a request */
	int64_t		retry_after_ms; /* no reconnect before this monotonic time */
} PoolSlot;

struct DbPool
{
	pthread_mutex_t lock;
	pthread_cond_t slot_freed;
	PoolSlot   *slots;
	int			size;
	int			timeout_ms;
	StatementTimeoutMode timeout_mode;
	bool		named_statement;	/* prepare once per connection */
	char		local_timeout_sql[96];	/* for STATEMENT_TIMEOUT_LOCAL */
	const char **keywords;		/* connection parameters, NULL-terminated */
	const char **values;
	char	  **owned_strings;	/* what keywords/values point into */
	int			owned_count;
};

/* Milliseconds on the monotonic clock */
static int64_t
NowMs(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Copy the first line of a libpq message into error */
static void
SetErrorFromMessage(char *error, size_t error_len, const char *prefix, const char *message)
{
	size_t		line_len = message ? strcspn(message, "\n") : 0;

	snprintf(error, error_len, "%s%s%.*s", prefix, line_len ? ": " : "",
			 (int) line_len, message ? message : "");
}

/* Keep a string alive as long as the pool; returns it, or NULL */
static const char *
OwnString(DbPool *pool, const char *text)
{
	char	   *copy = strdup(text);

	if (copy != NULL)
		pool->owned_strings[pool->owned_count++] = copy;
	return copy;
}

/*
 * Turn the DSN into keyword/value arrays, adding what the proxy needs:
 * a server-side statement_timeout appended to any `options`, a
 * connect_timeout and an application_name unless the DSN sets them.
 */
static bool
BuildConnectionParameters(DbPool *pool, const char *dsn, char *error, size_t error_len)
{
	char	   *parse_error = NULL;
	PQconninfoOption *options = PQconninfoParse(dsn, &parse_error);
	int			option_count = 0;
	int			used = 0;
	bool		have_connect_timeout = false;
	bool		have_application_name = false;
	const char *existing_options = "";
	char		buffer[1024];

	if (options == NULL)
	{
		SetErrorFromMessage(error, error_len, "invalid ATHENA_AUTHD_DSN",
							parse_error ? parse_error : "out of memory");
		PQfreemem(parse_error);
		return false;
	}
	for (PQconninfoOption *o = options; o->keyword; o++)
		option_count++;

	/* every option, plus three we may add, plus the terminator */
	pool->keywords = calloc((size_t) option_count + 4, sizeof(char *));
	pool->values = calloc((size_t) option_count + 4, sizeof(char *));
	pool->owned_strings = calloc((size_t) (option_count + 4) * 2, sizeof(char *));
	if (pool->keywords == NULL || pool->values == NULL || pool->owned_strings == NULL)
		goto oom;

	for (PQconninfoOption *o = options; o->keyword; o++)
	{
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (strcmp(o->keyword, "options") == 0)
		{
			existing_options = o->val;
			continue;
		}
		if (strcmp(o->keyword, "connect_timeout") == 0)
			have_connect_timeout = true;
		if (strcmp(o->keyword, "application_name") == 0)
			have_application_name = true;
		if ((pool->keywords[used] = OwnString(pool, o->keyword)) == NULL ||
			(pool->values[used] = OwnString(pool, o->val)) == NULL)
			goto oom;
		used++;
	}

	if (pool->timeout_mode == STATEMENT_TIMEOUT_OPTIONS)
		snprintf(buffer, sizeof(buffer), "%s%s-c statement_timeout=%d",
				 existing_options, existing_options[0] ? " " : "", pool->timeout_ms);
	else
		snprintf(buffer, sizeof(buffer), "%s", existing_options);
	if (buffer[0] != '\0')
	{
		if ((pool->keywords[used] = OwnString(pool, "options")) == NULL ||
			(pool->values[used] = OwnString(pool, buffer)) == NULL)
			goto oom;
		used++;
	}
	if (!have_connect_timeout)
	{
		/* libpq counts whole seconds, at least 2; our own deadline is finer */
		snprintf(buffer, sizeof(buffer), "%d", (pool->timeout_ms + 999) / 1000);
		if ((pool->keywords[used] = OwnString(pool, "connect_timeout")) == NULL ||
			(pool->values[used] = OwnString(pool, buffer)) == NULL)
			goto oom;
		used++;
	}
	if (!have_application_name)
	{
		if ((pool->keywords[used] = OwnString(pool, "application_name")) == NULL ||
			(pool->values[used] = OwnString(pool, "athena-authd")) == NULL)
			goto oom;
		used++;
	}
	pool->keywords[used] = NULL;
	pool->values[used] = NULL;
	PQconninfoFree(options);
	return true;

oom:
	PQconninfoFree(options);
	snprintf(error, error_len, "out of memory");
	return false;
}

/* Create a pool of closed connections; connections open on use */
DbPool *
DbPoolCreate(const DbPoolOptions *options, char *error, size_t error_len)
{
	DbPool	   *pool = calloc(1, sizeof(DbPool));
	pthread_condattr_t cond_attr;
	const char *dsn = options->dsn;

	if (pool == NULL || (pool->slots = calloc((size_t) options->size, sizeof(PoolSlot))) == NULL)
	{
		free(pool);
		snprintf(error, error_len, "out of memory");
		return NULL;
	}
	pool->size = options->size;
	pool->timeout_ms = options->timeout_ms;
	pool->timeout_mode = options->timeout_mode;
	pool->named_statement = options->named_statement;
	/* a number from our own configuration, never a caller's value */
	snprintf(pool->local_timeout_sql, sizeof(pool->local_timeout_sql),
			 "SELECT pg_catalog.set_config('statement_timeout', '%d', true)", options->timeout_ms);
	pthread_mutex_init(&pool->lock, NULL);
	pthread_condattr_init(&cond_attr);
	pthread_condattr_setclock(&cond_attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pool->slot_freed, &cond_attr);
	pthread_condattr_destroy(&cond_attr);
	if (!BuildConnectionParameters(pool, dsn, error, error_len))
	{
		DbPoolDestroy(pool);
		return NULL;
	}
	return pool;
}

/* Close every connection and free the pool */
void
DbPoolDestroy(DbPool *pool)
{
	if (pool == NULL)
		return;
	for (int i = 0; i < pool->size; i++)
	{
		if (pool->slots[i].conn != NULL)
			PQfinish(pool->slots[i].conn);
	}
	for (int i = 0; i < pool->owned_count; i++)
		free(pool->owned_strings[i]);
	free(pool->owned_strings);
	free(pool->keywords);
	free(pool->values);
	free(pool->slots);
	pthread_cond_destroy(&pool->slot_freed);
	pthread_mutex_destroy(&pool->lock);
	free(pool);
}

/*
 * Wait until the connection's socket is ready for events or the deadline
 * passes: 1 ready, 0 timed out, -1 error.
 */
static int
WaitForSocket(PGconn *conn, short events, int64_t deadline_ms)
{
	struct pollfd poll_fd;

	poll_fd.fd = PQsocket(conn);
	poll_fd.events = events;
	if (poll_fd.fd < 0)
		return -1;
	for (;;)
	{
		int64_t		remaining = deadline_ms - NowMs();
		int			rc;

		if (remaining <= 0)
			return 0;
		rc = poll(&poll_fd, 1, (int) remaining);
		if (rc > 0)
			return 1;
		if (rc == 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

/*
 * Push the queued command(s) out and collect the results, all before the
 * deadline.  In pipeline mode results run up to the pipeline's sync, with
 * a NULL after each query.  Returns the last query's result, except that
 * the first error wins, or NULL with error set when the connection failed
 * or timed out.
 */
static PGresult *
RunToCompletion(PGconn *conn, int64_t deadline_ms, char *error, size_t error_len)
{
	bool		pipeline = PQpipelineStatus(conn) != PQ_PIPELINE_OFF;

	PGresult   *kept = NULL;
	int			flush_rc;

	while ((flush_rc = PQflush(conn)) != 0)
	{
		int			wait_rc;

		if (flush_rc < 0)
			goto connection_failed;
		wait_rc = WaitForSocket(conn, POLLIN | POLLOUT, deadline_ms);
		if (wait_rc == 0)
			goto timed_out;
		if (wait_rc < 0 || !PQconsumeInput(conn))
			goto connection_failed;
	}
	for (;;)
	{
		PGresult   *result;

		while (PQisBusy(conn))
		{
			int			wait_rc = WaitForSocket(conn, POLLIN, deadline_ms);

			if (wait_rc == 0)
				goto timed_out;
			if (wait_rc < 0 || !PQconsumeInput(conn))
				goto connection_failed;
		}
		result = PQgetResult(conn);
		if (result == NULL)
		{
			if (pipeline)
				continue;		/* end of one query's results */
			break;
		}
		if (PQresultStatus(result) == PGRES_PIPELINE_SYNC)
		{
			PQclear(result);
			break;
		}
		if (kept == NULL ||
			(PQresultStatus(kept) != PGRES_FATAL_ERROR && PQresultStatus(result) != PGRES_PIPELINE_ABORTED))
		{
			PQclear(kept);
			kept = result;
		}
		else
			PQclear(result);
	}
	if (kept == NULL)
		snprintf(error, error_len, "database returned no result");
	return kept;

timed_out:
	PQclear(kept);
	snprintf(error, error_len, "database call timed out");
	return NULL;

connection_failed:
	PQclear(kept);
	SetErrorFromMessage(error, error_len, "database connection failed", PQerrorMessage(conn));
	return NULL;
}

/* Open a connection and prepare the statement, before the deadline */
static PGconn *
OpenConnection(DbPool *pool, int64_t deadline_ms, char *error, size_t error_len)
{
	PGconn	   *conn = PQconnectStartParams(pool->keywords, pool->values, 0);
	PostgresPollingStatusType poll_status = PGRES_POLLING_WRITING;
	PGresult   *result;

	if (conn == NULL)
	{
		snprintf(error, error_len, "out of memory");
		return NULL;
	}
	if (PQstatus(conn) == CONNECTION_BAD)
		goto failed;
	while (poll_status != PGRES_POLLING_OK)
	{
		int			wait_rc;

		if (poll_status == PGRES_POLLING_FAILED)
			goto failed;
		wait_rc = WaitForSocket(conn, poll_status == PGRES_POLLING_READING ? POLLIN : POLLOUT,
								deadline_ms);
		if (wait_rc == 0)
		{
			snprintf(error, error_len, "database connect timed out");
			MetricsCountConnect(false);
			PQfinish(conn);
			return NULL;
		}
		if (wait_rc < 0)
			goto failed;
		poll_status = PQconnectPoll(conn);
	}
	if (PQsetnonblocking(conn, 1) != 0)
		goto failed;
	if (!pool->named_statement)
	{
		MetricsCountConnect(true);
		return conn;
	}
	if (!PQsendPrepare(conn, AUTH_STATEMENT_NAME, auth_statement_sql, 4, NULL))
		goto failed;
	result = RunToCompletion(conn, deadline_ms, error, error_len);
	if (result == NULL)
	{
		MetricsCountConnect(false);
		PQfinish(conn);
		return NULL;
	}
	if (PQresultStatus(result) != PGRES_COMMAND_OK)
	{
		SetErrorFromMessage(error, error_len, "cannot prepare athena_gateway_verdict call",
							PQresultErrorMessage(result));
		PQclear(result);
		MetricsCountConnect(false);
		PQfinish(conn);
		return NULL;
	}
	PQclear(result);
	MetricsCountConnect(true);
	return conn;

failed:
	SetErrorFromMessage(error, error_len, "cannot connect to database", PQerrorMessage(conn));
	MetricsCountConnect(false);
	PQfinish(conn);
	return NULL;
}

/*
 * True when an idle pooled connection can take a command: open, outside
 * a transaction, and silent.  An idle connection the server wrote to has
 * been told it is going away (shutdown, admin termination) or was closed.
 */
static bool
IdleConnectionUsable(PGconn *conn)
{
	struct pollfd poll_fd;

	if (PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) != PQTRANS_IDLE)
		return false;
	poll_fd.fd = PQsocket(conn);
	poll_fd.events = POLLIN;
	if (poll_fd.fd < 0)
		return false;
	return poll(&poll_fd, 1, 0) == 0;
}

/*
 * Take a free slot, waiting for one until the deadline.  Prefers an open
 * connection, then a closed one whose reconnect backoff has passed; when
 * every free slot is backing off the database is down and we fail fast.
 */
static PoolSlot *
AcquireSlot(DbPool *pool, int64_t deadline_ms, char *error, size_t error_len)
{
	struct timespec deadline;
	int64_t		wait_started_ms = -1;	/* set once we had to wait */

	deadline.tv_sec = (time_t) (deadline_ms / 1000);
	deadline.tv_nsec = (long) (deadline_ms % 1000) * 1000000;
	pthread_mutex_lock(&pool->lock);
	for (;;)
	{
		PoolSlot   *open_slot = NULL;
		PoolSlot   *closed_slot = NULL;
		bool		any_free = false;
		int64_t		now = NowMs();

		for (int i = 0; i < pool->size && open_slot == NULL; i++)
		{
			PoolSlot   *slot = &pool->slots[i];

			if (slot->busy)
				continue;
			any_free = true;
			if (slot->conn != NULL)
				open_slot = slot;
			else if (closed_slot == NULL && now >= slot->retry_after_ms)
				closed_slot = slot;
		}
		if (open_slot != NULL || closed_slot != NULL)
		{
			PoolSlot   *chosen = open_slot ? open_slot : closed_slot;

			chosen->busy = true;
			pthread_mutex_unlock(&pool->lock);
			if (wait_started_ms >= 0)
				MetricsCountPoolWait((double) (NowMs() - wait_started_ms) / 1000.0, false);
			return chosen;
		}
		if (any_free)
		{
			pthread_mutex_unlock(&pool->lock);
			snprintf(error, error_len, "database unreachable (reconnect backing off)");
			return NULL;
		}
		if (wait_started_ms < 0)
			wait_started_ms = now;
		if (pthread_cond_timedwait(&pool->slot_freed, &pool->lock, &deadline) == ETIMEDOUT)
		{
			pthread_mutex_unlock(&pool->lock);
			MetricsCountPoolWait((double) (NowMs() - wait_started_ms) / 1000.0, true);
			snprintf(error, error_len, "no free database connection before the timeout");
			return NULL;
		}
	}
}

/* Give a slot back and wake one waiter */
static void
ReleaseSlot(DbPool *pool, PoolSlot *slot)
{
	pthread_mutex_lock(&pool->lock);
	slot->busy = false;
	pthread_cond_signal(&pool->slot_freed);
	pthread_mutex_unlock(&pool->lock);
}

/* Close a slot's connection; it reopens on next use */
static void
CloseSlotConnection(PoolSlot *slot)
{
	if (slot->conn != NULL)
		PQfinish(slot->conn);
	slot->conn = NULL;
}

/* Make sure the (acquired) slot holds a usable connection */
static bool
EnsureSlotConnected(DbPool *pool, PoolSlot *slot, int64_t deadline_ms, char *error, size_t error_len)
{
	if (slot->conn != NULL && !IdleConnectionUsable(slot->conn))
		CloseSlotConnection(slot);
	if (slot->conn != NULL)
		return true;
	slot->conn = OpenConnection(pool, deadline_ms, error, error_len);
	if (slot->conn == NULL)
	{
		slot->retry_after_ms = NowMs() + RECONNECT_BACKOFF_MS;
		return false;
	}
	return true;
}

/*
 * Open every connection once at start-up so the first requests do not pay
 * for it.  Returns how many opened; the first failure goes into error.
 */
int
DbPoolWarmUp(DbPool *pool, char *error, size_t error_len)
{
	int			opened = 0;

	error[0] = '\0';
	for (int i = 0; i < pool->size; i++)
	{
		char		slot_error[512];
		PoolSlot   *slot = &pool->slots[i];

		slot->conn = OpenConnection(pool, NowMs() + pool->timeout_ms, slot_error, sizeof(slot_error));
		if (slot->conn != NULL)
			opened++;
		else if (error[0] == '\0')
			snprintf(error, error_len, "%s", slot_error);
	}
	return opened;
}

/* Read the single value athena_gateway_verdict() returned into verdict */
static bool
ReadVerdict(const PGresult *result, AuthVerdict *verdict, char *error, size_t error_len)
{
	if (PQntuples(result) != 1 || PQnfields(result) != 1 || PQgetisnull(result, 0, 0) ||
		!ParseVerdictText(PQgetvalue(result, 0, 0), verdict))
	{
		FreeAuthVerdict(verdict);
		snprintf(error, error_len, "athena_gateway_verdict returned an unexpected result shape");
		return false;
	}
	return true;
}

/* Queue the athena_gateway_verdict() call (and its timeout) on conn */
static bool
SendAuthCall(DbPool *pool, PGconn *conn, const char *const params[4])
{
	if (pool->timeout_mode == STATEMENT_TIMEOUT_LOCAL)
	{
		/* one round trip: set_config(..., true) lasts until the sync */
		if (!PQenterPipelineMode(conn) ||
			!PQsendQueryParams(conn, pool->local_timeout_sql, 0, NULL, NULL, NULL, NULL, 0))
			return false;
	}
	if (pool->named_statement)
	{
		if (!PQsendQueryPrepared(conn, AUTH_STATEMENT_NAME, 4, params, NULL, NULL, 0))
			return false;
	}
	else if (!PQsendQueryParams(conn, auth_statement_sql, 4, NULL, params, NULL, NULL, 0))
		return false;
	if (PQpipelineStatus(conn) != PQ_PIPELINE_OFF && !PQpipelineSync(conn))
		return false;
	return true;
}

/*
 * Run athena_gateway_verdict() once for query.  DB_DECIDED with verdict
 * filled in when the database decided; otherwise error is set and the
 * outcome says what kind of failure it was (see ClassifySqlState).
 */
DbOutcome
DbPoolAuthenticate(DbPool *pool, const AuthQuery *query, AuthVerdict *verdict,
				   char *error, size_t error_len)
{
	int64_t		deadline_ms = NowMs() + pool->timeout_ms;
	const char *params[4] = {query->key, query->client, query->ip, query->rights};
	PoolSlot   *slot;
	PGresult   *result;
	DbOutcome	outcome = DB_UNAVAILABLE;
	int64_t		call_started_ms;

	memset(verdict, 0, sizeof(*verdict));
	slot = AcquireSlot(pool, deadline_ms, error, error_len);
	if (slot == NULL)
		return DB_UNAVAILABLE;
	if (!EnsureSlotConnected(pool, slot, deadline_ms, error, error_len))
		goto done;
	call_started_ms = NowMs();
	if (!SendAuthCall(pool, slot->conn, params))
	{
		SetErrorFromMessage(error, error_len, "cannot send athena_gateway_verdict call",
							PQerrorMessage(slot->conn));
		CloseSlotConnection(slot);
		goto done;
	}
	result = RunToCompletion(slot->conn, deadline_ms, error, error_len);
	if (result == NULL)
	{
		CloseSlotConnection(slot);
		goto done;
	}
	MetricsObserveDbCall((double) (NowMs() - call_started_ms) / 1000.0);
	if (PQresultStatus(result) != PGRES_TUPLES_OK)
	{
		outcome = ClassifySqlState(PQresultErrorField(result, PG_DIAG_SQLSTATE));
		SetErrorFromMessage(error, error_len, "athena_gateway_verdict failed", PQresultErrorMessage(result));
	}
	else if (ReadVerdict(result, verdict, error, error_len))
		outcome = DB_DECIDED;
	else
		outcome = DB_SERVER_ERROR;
	PQclear(result);
	if (PQpipelineStatus(slot->conn) != PQ_PIPELINE_OFF && !PQexitPipelineMode(slot->conn))
		CloseSlotConnection(slot);
	else if (PQstatus(slot->conn) != CONNECTION_OK)
		CloseSlotConnection(slot);

done:
	ReleaseSlot(pool, slot);
	return outcome;
}

/* True when a pooled connection answers SELECT 1 within the timeout */
bool
DbPoolHealthCheck(DbPool *pool, char *error, size_t error_len)
{
	int64_t		deadline_ms = NowMs() + pool->timeout_ms;
	PoolSlot   *slot = AcquireSlot(pool, deadline_ms, error, error_len);
	PGresult   *result;
	bool		healthy = false;

	if (slot == NULL)
		return false;
	if (!EnsureSlotConnected(pool, slot, deadline_ms, error, error_len))
		goto done;
	if (!PQsendQuery(slot->conn, "SELECT 1"))
	{
		SetErrorFromMessage(error, error_len, "cannot send health check", PQerrorMessage(slot->conn));
		CloseSlotConnection(slot);
		goto done;
	}
	result = RunToCompletion(slot->conn, deadline_ms, error, error_len);
	if (result == NULL)
	{
		CloseSlotConnection(slot);
		goto done;
	}
	healthy = PQresultStatus(result) == PGRES_TUPLES_OK;
	if (!healthy)
		SetErrorFromMessage(error, error_len, "health check failed", PQresultErrorMessage(result));
	PQclear(result);

done:
	ReleaseSlot(pool, slot);
	return healthy;
}
