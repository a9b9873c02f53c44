/*-------------------------------------------------------------------------
 * db_pool.c
 *		Persistent libpq connections for athena-authd.
 *
 * Every decision runs the prepared athena_gateway_verdict() call exactly
 * once on one pooled connection: the same decision as athena_authenticate(),
 * answered as one text value in the target list, which PostgreSQL executes
 * far more cheaply than a row from a function in FROM (verdict_text.c
 * reads it).
 *
 * Concurrent decisions share connections in libpq pipeline mode.  A
 * submitted call is queued; each pooled connection has a worker thread,
 * and a free worker takes the queue (up to pipeline_batch calls), sends
 * it in one write and reads the answers back in order, then hands each
 * call back through its done callback (athena-authd resumes the
 * suspended request).  While every worker is busy, calls queue and leave
 * together in the next round trip.  Each call keeps its own Sync, so it
 * stays its own transaction exactly as when sent alone: its log row
 * commits with it, an error in one call aborts only that call (the server
 * answers the others), and every request is answered from its own call's
 * result, never another's.  When the connection breaks or the batch's
 * deadline passes, every call of the batch not yet answered fails as
 * "unavailable" (the fail mode applies); the ones already answered keep
 * their verdicts, which the database committed.  This saves the database
 * a wake-up and a read per call and athena-authd a write per call.
 *
 * No call waits past its deadline: waiting in the queue, connecting
 * (non-blocking PQconnectStartParams/PQconnectPoll) and running the batch
 * (poll()) all share one budget; a batch runs under the earliest deadline
 * of its calls, and a reaper thread fails calls still queued at theirs.
 * The server also enforces a statement_timeout: through the connection's
 * startup options, or, for poolers that refuse those (PgBouncer), set for each
 * call's own transaction in the same pipeline.  Under transaction pooling
 * a named prepared statement lives on one server connection only, so the
 * call can instead be sent unnamed (parsed with every call).
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
 * again; meanwhile its worker leaves the queue to open connections, and
 * with none open, calls fail fast instead of each waiting for a connect
 * attempt against a dead server.
 *-------------------------------------------------------------------------
 */
#include "db_pool.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "metrics.h"
#include "sql_error.h"

#define AUTH_STATEMENT_NAME "athena_authd_authenticate"
#define RECONNECT_BACKOFF_MS 250
#define MAX_BATCH 256

/*
 * Rights travel as one text parameter split on the server, so no value is
 * ever spliced into SQL text and no array literal has to be escaped here.
 */
static const char auth_statement_sql[] =
	"SELECT athena_keys.athena_gateway_verdict($1::text, $2::text, $3::inet, "
	"string_to_array($4::text, ','))";

/* One pooled connection, driven by its own worker thread */
typedef struct PoolSlot
{
	DbPool	   *pool;
	PGconn	   *conn;			/* NULL when closed */
	int64_t		retry_after_ms; /* no reconnect before this monotonic time */
	bool		connected;		/* conn != NULL, as last seen under the pool's lock */
	pthread_cond_t backoff;		/* its worker sleeps out a reconnect backoff */
	pthread_t	thread;
	bool		thread_started;
} PoolSlot;

struct DbPool
{
	pthread_mutex_t lock;
	pthread_cond_t work;		/* calls queued, or stopping (workers) */
	pthread_cond_t reaper_wake; /* stopping (reaper) */
	DbCall	   *queue_head;		/* calls not yet taken, oldest first */
	DbCall	   *queue_tail;
	int			idle_workers;	/* workers waiting for work */
	int			outstanding;	/* submitted, done not yet called */
	bool		closing;		/* no new calls */
	bool		stopping;		/* threads exit */
	pthread_t	reaper;
	bool		reaper_started;
	PoolSlot   *slots;
	int			size;
	int			timeout_ms;
	int			max_batch;		/* calls per round trip, at most MAX_BATCH */
	StatementTimeoutMode timeout_mode;
	bool		named_statement;	/* prepare once per connection */
	char		local_timeout_sql[96];	/* for STATEMENT_TIMEOUT_LOCAL */
	const char **keywords;		/* connection parameters, NULL-terminated */
	const char **values;
	char	  **owned_strings;	/* what keywords/values point into */
	int			owned_count;
};

static void StopThreads(DbPool *pool);

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

/* A condition variable whose timed waits use the monotonic clock */
static void
InitMonotonicCond(pthread_cond_t *cond)
{
	pthread_condattr_t cond_attr;

	pthread_condattr_init(&cond_attr);
	pthread_condattr_setclock(&cond_attr, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &cond_attr);
	pthread_condattr_destroy(&cond_attr);
}

/* Create a pool of closed connections; DbPoolStart opens them */
DbPool *
DbPoolCreate(const DbPoolOptions *options, char *error, size_t error_len)
{
	DbPool	   *pool = calloc(1, sizeof(DbPool));
	const char *dsn = options->dsn;

	if (pool == NULL || (pool->slots = calloc((size_t) options->size, sizeof(PoolSlot))) == NULL)
	{
		free(pool);
		snprintf(error, error_len, "out of memory");
		return NULL;
	}
	pool->size = options->size;
	pool->timeout_ms = options->timeout_ms;
	pool->max_batch = options->max_batch < 1 ? 1 : options->max_batch > MAX_BATCH ? MAX_BATCH : options->max_batch;
	pool->timeout_mode = options->timeout_mode;
	pool->named_statement = options->named_statement;
	/* a number from our own configuration, never a caller's value */
	snprintf(pool->local_timeout_sql, sizeof(pool->local_timeout_sql),
			 "SELECT pg_catalog.set_config('statement_timeout', '%d', true)", options->timeout_ms);
	pthread_mutex_init(&pool->lock, NULL);
	InitMonotonicCond(&pool->work);
	InitMonotonicCond(&pool->reaper_wake);
	for (int i = 0; i < pool->size; i++)
	{
		pool->slots[i].pool = pool;
		InitMonotonicCond(&pool->slots[i].backoff);
	}
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
	StopThreads(pool);
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
	for (int i = 0; i < pool->size; i++)
		pthread_cond_destroy(&pool->slots[i].backoff);
	free(pool->slots);
	pthread_cond_destroy(&pool->work);
	pthread_cond_destroy(&pool->reaper_wake);
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
	bool		after_null = false;	/* the last result was a query's end */
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
			/*
			 * The end of one query's results; a second NULL in a row means
			 * libpq has nothing more coming (the connection broke) and
			 * waiting for the sync would spin forever.
			 */
			if (pipeline && !after_null && PQstatus(conn) == CONNECTION_OK)
			{
				after_null = true;
				continue;
			}
			if (pipeline)
				goto connection_failed;
			break;
		}
		after_null = false;
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

/* Close a slot's connection; it reopens on next use */
static void
CloseSlotConnection(PoolSlot *slot)
{
	if (slot->conn != NULL)
		PQfinish(slot->conn);
	slot->conn = NULL;
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

/* End a call with a failure that is not the database's answer */
static void
FailCall(DbCall *call, const char *message)
{
	snprintf(call->error, call->error_len, "%s", message);
	call->outcome = DB_UNAVAILABLE;
}

/* Fail calls[from..count-1], the part of a batch nobody answered */
static void
FailRestOfBatch(DbCall **calls, int from, int count, const char *message)
{
	for (int i = from; i < count; i++)
		FailCall(calls[i], message);
}

/*
 * Hold a TCP connection's partial segments back (or let them go), so a
 * batch leaves in as few packets as it fills; libpq before 17 flushes at
 * every sync.  Harmless where it does not apply (a Unix socket).
 */
static void
CorkSocket(PGconn *conn, bool on)
{
#ifdef TCP_CORK
	int			value = on ? 1 : 0;

	(void) setsockopt(PQsocket(conn), IPPROTO_TCP, TCP_CORK, &value, sizeof(value));
#else
	(void) conn;
	(void) on;
#endif
}

/* End one call's part of the pipeline with its own sync */
static bool
SendSync(PGconn *conn)
{
#ifdef LIBPQ_HAS_SEND_PIPELINE_SYNC
	return PQsendPipelineSync(conn) == 1;
#else
	return PQpipelineSync(conn) == 1;
#endif
}

/* Queue one call (and, for STATEMENT_TIMEOUT_LOCAL, its timeout) on conn */
static bool
SendCall(DbPool *pool, PGconn *conn, const DbCall *call)
{
	if (call->kind == DB_CALL_HEALTH)
		return PQsendQueryParams(conn, "SELECT 1", 0, NULL, NULL, NULL, NULL, 0) && SendSync(conn);
	/* set_config(..., true) lasts until this call's own sync */
	if (pool->timeout_mode == STATEMENT_TIMEOUT_LOCAL &&
		!PQsendQueryParams(conn, pool->local_timeout_sql, 0, NULL, NULL, NULL, NULL, 0))
		return false;
	if (pool->named_statement)
	{
		if (!PQsendQueryPrepared(conn, AUTH_STATEMENT_NAME, 4, call->params, NULL, NULL, 0))
			return false;
	}
	else if (!PQsendQueryParams(conn, auth_statement_sql, 4, NULL, call->params, NULL, NULL, 0))
		return false;
	return SendSync(conn);
}

/* Queue every call of a batch in one pipeline, each with its own sync */
static bool
SendBatch(DbPool *pool, PGconn *conn, DbCall **calls, int count)
{
	bool		ok = PQenterPipelineMode(conn) == 1;

	if (ok && count > 1)
		CorkSocket(conn, true);
	for (int i = 0; ok && i < count; i++)
		ok = SendCall(pool, conn, calls[i]);
	if (count > 1)
		CorkSocket(conn, false);
	return ok;
}

/* Turn one call's result into its outcome (and verdict) */
static void
FinishCall(DbCall *call, const PGresult *result)
{
	if (call->kind == DB_CALL_HEALTH)
	{
		call->outcome = PQresultStatus(result) == PGRES_TUPLES_OK ? DB_DECIDED : DB_SERVER_ERROR;
		if (call->outcome != DB_DECIDED)
			SetErrorFromMessage(call->error, call->error_len, "health check failed",
								PQresultErrorMessage(result));
		return;
	}
	if (PQresultStatus(result) != PGRES_TUPLES_OK)
	{
		call->outcome = ClassifySqlState(PQresultErrorField(result, PG_DIAG_SQLSTATE));
		SetErrorFromMessage(call->error, call->error_len, "athena_gateway_verdict failed",
							PQresultErrorMessage(result));
	}
	else if (ReadVerdict(result, call->verdict, call->error, call->error_len))
		call->outcome = DB_DECIDED;
	else
		call->outcome = DB_SERVER_ERROR;
}

/*
 * Run one batch on a worker's slot: connect if needed, send every call,
 * read each call's results up to its own sync.  Runs without the pool's
 * lock, under the batch's earliest deadline.
 */
static void
RunBatch(DbPool *pool, PoolSlot *slot, DbCall **calls, int count)
{
	int64_t		deadline_ms = calls[0]->deadline_ms;
	int64_t		started_ms;
	char		error[512];

	for (int i = 1; i < count; i++)
		if (calls[i]->deadline_ms < deadline_ms)
			deadline_ms = calls[i]->deadline_ms;
	if (slot->conn != NULL && !IdleConnectionUsable(slot->conn))
		CloseSlotConnection(slot);
	if (slot->conn == NULL)
	{
		if (NowMs() < slot->retry_after_ms)
		{
			FailRestOfBatch(calls, 0, count, "database unreachable (reconnect backing off)");
			return;
		}
		slot->conn = OpenConnection(pool, deadline_ms, error, sizeof(error));
		if (slot->conn == NULL)
		{
			slot->retry_after_ms = NowMs() + RECONNECT_BACKOFF_MS;
			FailRestOfBatch(calls, 0, count, error);
			return;
		}
	}
	started_ms = NowMs();
	MetricsCountBatch(count);
	if (!SendBatch(pool, slot->conn, calls, count))
	{
		SetErrorFromMessage(error, sizeof(error), "cannot send athena_gateway_verdict call",
							PQerrorMessage(slot->conn));
		CloseSlotConnection(slot);
		FailRestOfBatch(calls, 0, count, error);
		return;
	}
	for (int i = 0; i < count; i++)
	{
		PGresult   *result = RunToCompletion(slot->conn, deadline_ms, error, sizeof(error));

		if (result == NULL)
		{
			CloseSlotConnection(slot);
			FailRestOfBatch(calls, i, count, error);
			return;
		}
		if (calls[i]->kind == DB_CALL_VERDICT)
			MetricsObserveDbCall((double) (NowMs() - started_ms) / 1000.0);
		FinishCall(calls[i], result);
		PQclear(result);
	}
	if (!PQexitPipelineMode(slot->conn) || PQstatus(slot->conn) != CONNECTION_OK)
		CloseSlotConnection(slot);
}

/* Take the oldest queued call (pool lock held), or NULL */
static DbCall *
PopQueued(DbPool *pool)
{
	DbCall	   *call = pool->queue_head;

	if (call == NULL)
		return NULL;
	pool->queue_head = call->next;
	if (pool->queue_head == NULL)
		pool->queue_tail = NULL;
	call->next = NULL;
	return call;
}

/*
 * Hand finished calls back (pool lock not held): each done callback runs
 * once, and nothing of a call is touched after it.
 */
static void
CompleteCalls(DbPool *pool, DbCall **calls, int count)
{
	for (int i = 0; i < count; i++)
		calls[i]->done(calls[i]->done_arg);
	pthread_mutex_lock(&pool->lock);
	pool->outstanding -= count;
	if (pool->outstanding == 0 && pool->closing)
		pthread_cond_broadcast(&pool->reaper_wake);
	pthread_mutex_unlock(&pool->lock);
}

/* True when a slot other than this one holds an open connection (lock held) */
static bool
AnotherSlotConnected(DbPool *pool, const PoolSlot *slot)
{
	for (int i = 0; i < pool->size; i++)
		if (&pool->slots[i] != slot && pool->slots[i].connected)
			return true;
	return false;
}

/*
 * A worker: waits for queued calls, takes up to max_batch of them (the
 * ones already past their deadline fail at once) and runs them as one
 * pipelined batch on its own connection.  A worker whose reconnect failed
 * sits its backoff out while another connection is open, so the calls go
 * there; when none is, it takes calls and fails them fast (the database
 * is down).
 */
static void *
WorkerMain(void *arg)
{
	PoolSlot   *slot = arg;
	DbPool	   *pool = slot->pool;
	DbCall	   *calls[MAX_BATCH];
	DbCall	   *expired[MAX_BATCH];

	pthread_mutex_lock(&pool->lock);
	for (;;)
	{
		int			count = 0;
		int			expired_count = 0;
		int64_t		now;

		now = NowMs();
		if (!pool->stopping && slot->conn == NULL && now < slot->retry_after_ms &&
			AnotherSlotConnected(pool, slot))
		{
			struct timespec wake;

			wake.tv_sec = (time_t) (slot->retry_after_ms / 1000);
			wake.tv_nsec = (long) (slot->retry_after_ms % 1000) * 1000000;
			pthread_cond_timedwait(&slot->backoff, &pool->lock, &wake);
			continue;
		}
		while (!pool->stopping && pool->queue_head == NULL)
		{
			pool->idle_workers++;
			pthread_cond_wait(&pool->work, &pool->lock);
			pool->idle_workers--;
		}
		if (pool->stopping)
			break;
		now = NowMs();
		while (count < pool->max_batch && expired_count < MAX_BATCH && pool->queue_head != NULL)
		{
			DbCall	   *call = PopQueued(pool);

			if (call->deadline_ms <= now)
				expired[expired_count++] = call;
			else
				calls[count++] = call;
		}
		pthread_mutex_unlock(&pool->lock);

		for (int i = 0; i < expired_count; i++)
		{
			MetricsCountPoolWait((double) (now - expired[i]->queued_ms) / 1000.0, true);
			FailCall(expired[i], "no free database connection before the timeout");
		}
		for (int i = 0; i < count; i++)
			if (calls[i]->waited)
				MetricsCountPoolWait((double) (now - calls[i]->queued_ms) / 1000.0, false);
		if (expired_count > 0)
			CompleteCalls(pool, expired, expired_count);
		if (count > 0)
		{
			RunBatch(pool, slot, calls, count);
			CompleteCalls(pool, calls, count);
		}
		pthread_mutex_lock(&pool->lock);
		slot->connected = slot->conn != NULL;
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/*
 * The reaper: fails queued calls whose deadline passed while every
 * worker was busy (a hung database), so none waits past its budget.  The
 * queue is oldest first and every deadline is the same budget after
 * queueing, so it only ever sleeps until the head's deadline, or a whole
 * budget when the queue is empty: no submitter has to wake it.
 */
static void *
ReaperMain(void *arg)
{
	DbPool	   *pool = arg;

	pthread_mutex_lock(&pool->lock);
	while (!pool->stopping)
	{
		int64_t		now = NowMs();
		int64_t		wake_ms = now + pool->timeout_ms;
		DbCall	   *expired[MAX_BATCH];
		int			expired_count = 0;
		struct timespec wake;

		while (expired_count < MAX_BATCH && pool->queue_head != NULL &&
			   pool->queue_head->deadline_ms <= now)
			expired[expired_count++] = PopQueued(pool);
		if (expired_count > 0)
		{
			pthread_mutex_unlock(&pool->lock);
			for (int i = 0; i < expired_count; i++)
			{
				MetricsCountPoolWait((double) (now - expired[i]->queued_ms) / 1000.0, true);
				FailCall(expired[i], "no free database connection before the timeout");
			}
			CompleteCalls(pool, expired, expired_count);
			pthread_mutex_lock(&pool->lock);
			continue;
		}
		if (pool->queue_head != NULL)
			wake_ms = pool->queue_head->deadline_ms;
		wake.tv_sec = (time_t) (wake_ms / 1000);
		wake.tv_nsec = (long) (wake_ms % 1000) * 1000000;
		pthread_cond_timedwait(&pool->reaper_wake, &pool->lock, &wake);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

/* Stop and join the pool's threads (idempotent) */
static void
StopThreads(DbPool *pool)
{
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->work);
	for (int i = 0; i < pool->size; i++)
		pthread_cond_broadcast(&pool->slots[i].backoff);
	pthread_cond_broadcast(&pool->reaper_wake);
	pthread_mutex_unlock(&pool->lock);
	for (int i = 0; i < pool->size; i++)
	{
		if (pool->slots[i].thread_started)
			pthread_join(pool->slots[i].thread, NULL);
		pool->slots[i].thread_started = false;
	}
	if (pool->reaper_started)
		pthread_join(pool->reaper, NULL);
	pool->reaper_started = false;
}

/*
 * Open every connection once so the first requests do not pay for it,
 * then start one worker per connection and the reaper.  Returns how many
 * connections opened (the first failure goes into error), or -1 when a
 * thread could not start.
 */
int
DbPoolStart(DbPool *pool, char *error, size_t error_len)
{
	int			opened = 0;

	error[0] = '\0';
	for (int i = 0; i < pool->size; i++)
	{
		char		slot_error[512];
		PoolSlot   *slot = &pool->slots[i];

		slot->conn = OpenConnection(pool, NowMs() + pool->timeout_ms, slot_error, sizeof(slot_error));
		slot->connected = slot->conn != NULL;
		if (slot->conn != NULL)
			opened++;
		else if (error[0] == '\0')
			snprintf(error, error_len, "%s", slot_error);
	}
	for (int i = 0; i < pool->size; i++)
	{
		pool->slots[i].thread_started =
			pthread_create(&pool->slots[i].thread, NULL, WorkerMain, &pool->slots[i]) == 0;
		if (!pool->slots[i].thread_started)
		{
			snprintf(error, error_len, "cannot start a database worker thread");
			return -1;
		}
	}
	pool->reaper_started = pthread_create(&pool->reaper, NULL, ReaperMain, pool) == 0;
	if (!pool->reaper_started)
	{
		snprintf(error, error_len, "cannot start the database deadline thread");
		return -1;
	}
	return opened;
}

/*
 * Refuse new calls and wait until every submitted one has been handed
 * back (each ends by its deadline), so that no done callback runs after
 * the caller tears down what the callbacks use.
 */
void
DbPoolClose(DbPool *pool)
{
	pthread_mutex_lock(&pool->lock);
	pool->closing = true;
	while (pool->outstanding > 0)
		pthread_cond_wait(&pool->reaper_wake, &pool->lock);
	pthread_mutex_unlock(&pool->lock);
}

/* Fill in a call of the given kind with the pool's deadline from now */
static void
InitCall(DbPool *pool, DbCall *call, DbCallKind kind, char *error, size_t error_len,
		 DbCallDone done, void *done_arg)
{
	memset(call, 0, sizeof(*call));
	call->kind = kind;
	call->queued_ms = NowMs();
	call->deadline_ms = call->queued_ms + pool->timeout_ms;
	call->error = error;
	call->error_len = error_len;
	call->outcome = DB_UNAVAILABLE;
	call->done = done;
	call->done_arg = done_arg;
	error[0] = '\0';
}

/* Queue a call for the workers; false (nothing queued) once closing */
static bool
QueueCall(DbPool *pool, DbCall *call)
{
	pthread_mutex_lock(&pool->lock);
	if (pool->closing)
	{
		pthread_mutex_unlock(&pool->lock);
		FailCall(call, "athena-authd is shutting down");
		return false;
	}
	call->waited = pool->idle_workers == 0;
	if (pool->queue_tail != NULL)
		pool->queue_tail->next = call;
	else
		pool->queue_head = call;
	pool->queue_tail = call;
	pool->outstanding++;
	/* a busy worker takes the queue when its batch ends: no wake-up */
	if (pool->idle_workers > 0)
		pthread_cond_signal(&pool->work);
	pthread_mutex_unlock(&pool->lock);
	return true;
}

/*
 * Submit athena_gateway_verdict() for query.  When it returns true, done
 * is called later, from a pool thread, with call->outcome set:
 * DB_DECIDED with verdict filled in when the database decided; otherwise
 * error is set and the outcome says what kind of failure it was (see
 * ClassifySqlState).  False: the pool is closing, nothing was queued,
 * done is not called, and the outcome is DB_UNAVAILABLE.
 */
bool
DbPoolSubmit(DbPool *pool, DbCall *call, const AuthQuery *query, AuthVerdict *verdict,
			 char *error, size_t error_len, DbCallDone done, void *done_arg)
{
	memset(verdict, 0, sizeof(*verdict));
	InitCall(pool, call, DB_CALL_VERDICT, error, error_len, done, done_arg);
	call->params[0] = query->key;
	call->params[1] = query->client;
	call->params[2] = query->ip;
	call->params[3] = query->rights;
	call->verdict = verdict;
	return QueueCall(pool, call);
}

/* A waiter for a call made synchronously (the health check) */
typedef struct CallWaiter
{
	pthread_mutex_t lock;
	pthread_cond_t done_cond;
	bool		done;
} CallWaiter;

/* done callback of a synchronous call: wake its waiter */
static void
WakeWaiter(void *arg)
{
	CallWaiter *waiter = arg;

	pthread_mutex_lock(&waiter->lock);
	waiter->done = true;
	pthread_cond_signal(&waiter->done_cond);
	pthread_mutex_unlock(&waiter->lock);
}

/* True when a pooled connection answers SELECT 1 within the timeout */
bool
DbPoolHealthCheck(DbPool *pool, char *error, size_t error_len)
{
	DbCall		call;
	CallWaiter	waiter;

	pthread_mutex_init(&waiter.lock, NULL);
	pthread_cond_init(&waiter.done_cond, NULL);
	waiter.done = false;
	InitCall(pool, &call, DB_CALL_HEALTH, error, error_len, WakeWaiter, &waiter);
	if (QueueCall(pool, &call))
	{
		pthread_mutex_lock(&waiter.lock);
		while (!waiter.done)
			pthread_cond_wait(&waiter.done_cond, &waiter.lock);
		pthread_mutex_unlock(&waiter.lock);
	}
	pthread_cond_destroy(&waiter.done_cond);
	pthread_mutex_destroy(&waiter.lock);
	return call.outcome == DB_DECIDED;
}
