/*-------------------------------------------------------------------------
 * db_pool.c
 *		Persistent libpq connections for athena-authd.
 *
 * Every decision runs exactly once on one pooled connection: the prepared
 * athena_gateway_verdict() call, the same decision as athena_authenticate(),
 * answered as one text value in the target list, which PostgreSQL executes
 * far more cheaply than a row from a function in FROM (verdict_text.c
 * reads it); or, for a batch of more than one call, one call of
 * athena_gateway_verdicts(), which decides each of them in the same way.
 *
 * The pool has no threads: its connections are non-blocking and their
 * sockets sit in the epoll set of the event loop that also runs the HTTP
 * side (authd.c), so a decision travels from the request to the database
 * and back without waking another thread.  The loop hands socket events
 * to DbPoolSocketEvent, calls DbPoolRun after every round of events (it
 * fails what passed its deadline and sends what is queued) and sleeps no
 * longer than DbPoolTimeoutMs.
 *
 * Concurrent decisions share connections in libpq pipeline mode.  A
 * submitted call is queued; a free (idle) connection takes the queue (up
 * to pipeline_batch calls), sends it in one write and reads the answers
 * back in order as they arrive, handing each call back through its done
 * callback (athena-authd resumes the suspended request).  While every
 * connection is busy, calls queue and leave together in the next round
 * trip.  A batch of more than one decision goes as one statement,
 * athena_gateway_verdicts() with an array element per call (a statement
 * costs PostgreSQL about as much as a decision), and one Sync: one
 * transaction, in which each call's decision runs in a subtransaction of
 * its own, so an error in one call aborts only that call's effects and
 * answers only that call with its error (the server decides the others),
 * and every request is answered from its own element, never another's.
 * An error of the statement as a whole (a cancel, a statement_timeout)
 * is every call's error.  A single call, or a batch holding a health
 * check, keeps one statement and one Sync per call, as does every batch
 * of a connection to a database whose encoding is not UTF8 (the server
 * converts a combined batch's parameters before any of its calls starts:
 * see NoteServerEncoding); such a call is handed back as soon as its own
 * answer is in.
 * When the connection breaks or the batch's deadline passes, every call of
 * the batch not yet answered fails as "unavailable" (the fail mode
 * applies); the ones already answered keep their verdicts, which the
 * database committed.  This saves the database a wake-up and a read per
 * call and athena-authd a write per call.
 *
 * No call waits past its deadline: waiting in the queue, connecting
 * (PQconnectStartParams/PQconnectPoll) and running the batch all share
 * one budget.  A call of a batch in flight fails alone at its own
 * deadline, and the batch runs on for the others until the last of
 * theirs (then the connection is closed); calls still queued at theirs
 * fail.  The server also enforces a
 * statement_timeout: through the connection's startup options, or, for
 * poolers that refuse those (PgBouncer), set for each call's own
 * transaction in the same pipeline.  Under transaction pooling a named
 * prepared statement lives on one server connection only, so the call
 * can instead be sent unnamed (parsed with every call).
 *
 * A failed call is classified by its SQLSTATE: only connection failures,
 * timeouts, lack of resources and the like count as "unavailable" (where
 * a fail mode applies); an error caused by the request's content (class
 * 22, data exception) never does.
 *
 * A connection that failed, timed out, or received anything while idle
 * (the server's shutdown notice, EOF) is closed and reopened when calls
 * wait and no connection is free, so a restarted server is picked up
 * without restarting the proxy.  Queued calls go to whichever connection
 * is free first, an open one before one still connecting.  A slot whose
 * reconnect failed waits RECONNECT_BACKOFF_MS before trying again; with
 * no connection open or opening, queued calls fail fast instead of each
 * waiting for a connect attempt against a dead server.
 *-------------------------------------------------------------------------
 */
#include "db_pool.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include "gateway_verdict_fields.h"
#include "metrics.h"
#include "sql_error.h"

#define AUTH_STATEMENT_NAME "athena_authd_authenticate"
#define BATCH_STATEMENT_NAME "athena_authd_batch"
#define RECONNECT_BACKOFF_MS 250
#define MAX_BATCH 64			/* athena_gateway_verdicts takes at most 64 */

/*
 * Rights travel as one text parameter split on the server, so no value is
 * ever spliced into SQL text and no array literal has to be escaped here.
 */
static const char auth_statement_sql[] =
	"SELECT athena_keys.athena_gateway_verdict($1::text, $2::text, $3::inet, "
	"string_to_array($4::text, ','))";
/*
 * A batch of more than one call goes as one call of the batch function,
 * each argument an array with an element per call (binary, see
 * BuildBatchArray), the answer a text[] of their verdicts in order.
 */
static const char batch_statement_sql[] =
	"SELECT athena_keys.athena_gateway_verdicts($1::text[], $2::text[], $3::inet[], $4::text[])";

/* Both statements prepared at once, as one simple query */
static const char prepare_statements_sql[] =
	"PREPARE " AUTH_STATEMENT_NAME "(text, text, inet, text) AS "
	"SELECT athena_keys.athena_gateway_verdict($1, $2, $3, string_to_array($4, ','));"
	"PREPARE " BATCH_STATEMENT_NAME "(text[], text[], inet[], text[]) AS "
	"SELECT athena_keys.athena_gateway_verdicts($1, $2, $3, $4)";

/* Type OIDs of the batch's arrays (pg_type.dat; stable across releases) */
#define TEXTARRAY_OID 1009
#define INETARRAY_OID 1041
#define TEXTARRAY_ELEMENT_OID 25
#define INETARRAY_ELEMENT_OID 869
/* inet's address families in its binary format (utils/inet.h) */
#define PGSQL_AF_INET (AF_INET + 0)
#define PGSQL_AF_INET6 (AF_INET + 1)

/* Where a pooled connection is in its life */
typedef enum SlotState
{
	SLOT_CLOSED,				/* no connection */
	SLOT_CONNECTING,			/* PQconnectPoll in progress */
	SLOT_PREPARING,				/* the statement is being prepared */
	SLOT_IDLE,					/* open, free for a batch */
	SLOT_BUSY					/* a batch is in flight */
} SlotState;

/* One parameter of a combined batch: a binary array */
typedef struct BatchArray
{
	unsigned char *data;		/* malloc'd, NULL when not built */
	int			length;
} BatchArray;

/* One pooled connection and the batch it runs */
typedef struct PoolSlot
{
	DbPool	   *pool;
	PGconn	   *conn;			/* NULL when closed */
	SlotState	state;
	int			registered_fd;	/* socket in the epoll set, or -1 */
	uint32_t	registered_events;
	int64_t		deadline_ms;	/* of the connect or the batch */
	int64_t		retry_after_ms; /* no reconnect before this monotonic time */
	int64_t		started_ms;		/* when the batch was sent */
	DbCall	   *calls[MAX_BATCH];	/* the batch, in pipeline order */
	int			count;
	int			next;			/* first call without its answer */
	PGresult   *kept;			/* the answered call's result so far */
	bool		after_null;		/* the last result was a query's end */
	bool		prepared_ok;	/* PREPARING: the prepare succeeded */
	bool		combined;		/* the batch went as one statement */
	bool		separate_statements;	/* the server's encoding is not UTF8/SQL_ASCII */
	BatchArray	arrays[4];		/* its parameters (SendCombined) */
} PoolSlot;

struct DbPool
{
	DbCall	   *queue_head;		/* calls not yet taken, oldest first */
	DbCall	   *queue_tail;
	int			outstanding;	/* submitted, done not yet called */
	int64_t		completed;		/* done callbacks run, ever */
	bool		closing;		/* no new calls */
	int			epoll_fd;
	PoolSlot   *slots;
	int			size;
	int			timeout_ms;
	int			max_batch;		/* calls per round trip, at most MAX_BATCH */
	StatementTimeoutMode timeout_mode;
	bool		named_statement;	/* prepare once per connection */
	bool		log;			/* say why a connection sends calls one by one */
	char		local_timeout_sql[96];	/* for STATEMENT_TIMEOUT_LOCAL */
	char		last_connect_error[512];
	DbOutcome	last_connect_outcome;	/* its kind: unavailable, or a refusal (503) */
	bool		connect_error_fresh;	/* no queued call was failed with it yet */
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
 * connect_timeout and an application_name unless the DSN sets them, and
 * always client_encoding=UTF8.  The request's text goes to the server as
 * UTF-8 (repaired to valid UTF-8 first); a connection parameter overrides
 * a role's or database's client_encoding and PGCLIENTENCODING, which
 * would otherwise make the server convert it, and a valid header that
 * does not convert would fail every call of the batch it is in.
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
	int			written;

	if (options == NULL)
	{
		SetErrorFromMessage(error, error_len, "invalid ATHENA_AUTHD_DSN",
							parse_error ? parse_error : "out of memory");
		PQfreemem(parse_error);
		return false;
	}
	for (PQconninfoOption *o = options; o->keyword; o++)
		option_count++;

	/* every option, plus four we may add, plus the terminator */
	pool->keywords = calloc((size_t) option_count + 5, sizeof(char *));
	pool->values = calloc((size_t) option_count + 5, sizeof(char *));
	pool->owned_strings = calloc((size_t) (option_count + 5) * 2, sizeof(char *));
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
		if (strcmp(o->keyword, "client_encoding") == 0)
			continue;			/* always UTF8, below */
		if (strcmp(o->keyword, "connect_timeout") == 0)
			have_connect_timeout = true;
		if (strcmp(o->keyword, "application_name") == 0)
			have_application_name = true;
		if ((pool->keywords[used] = OwnString(pool, o->keyword)) == NULL ||
			(pool->values[used] = OwnString(pool, o->val)) == NULL)
			goto oom;
		used++;
	}

	/*
	 * Passing options replaces libpq's default from PGOPTIONS, so without
	 * options in the DSN that default is kept by hand, before ours
	 */
	if (existing_options[0] == '\0' && getenv("PGOPTIONS") != NULL)
		existing_options = getenv("PGOPTIONS");
	if (pool->timeout_mode == STATEMENT_TIMEOUT_OPTIONS)
		written = snprintf(buffer, sizeof(buffer), "%s%s-c statement_timeout=%d",
						   existing_options, existing_options[0] ? " " : "", pool->timeout_ms);
	else
		written = snprintf(buffer, sizeof(buffer), "%s", existing_options);
	if (written < 0 || (size_t) written >= sizeof(buffer))
	{
		snprintf(error, error_len, "the connection options (DSN options or PGOPTIONS) are too long");
		PQconninfoFree(options);
		return false;
	}
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
	if ((pool->keywords[used] = OwnString(pool, "client_encoding")) == NULL ||
		(pool->values[used] = OwnString(pool, "UTF8")) == NULL)
		goto oom;
	used++;
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
	pool->epoll_fd = -1;
	pool->last_connect_outcome = DB_UNAVAILABLE;
	snprintf(pool->last_connect_error, sizeof(pool->last_connect_error), "database unreachable");
	pool->timeout_ms = options->timeout_ms;
	pool->max_batch = options->max_batch < 1 ? 1 : options->max_batch > MAX_BATCH ? MAX_BATCH : options->max_batch;
	pool->timeout_mode = options->timeout_mode;
	pool->named_statement = options->named_statement;
	pool->log = options->log;
	/* a number from our own configuration, never a caller's value */
	snprintf(pool->local_timeout_sql, sizeof(pool->local_timeout_sql),
			 "SELECT pg_catalog.set_config('statement_timeout', '%d', true)", options->timeout_ms);
	for (int i = 0; i < pool->size; i++)
	{
		pool->slots[i].pool = pool;
		pool->slots[i].registered_fd = -1;
	}
	if (!BuildConnectionParameters(pool, dsn, error, error_len))
	{
		DbPoolDestroy(pool);
		return NULL;
	}
	return pool;
}

/*
 * Put the slot's socket in the epoll set for events, or take it out
 * (events 0).  libpq may switch sockets while connecting (another
 * address), so a changed descriptor is registered anew.
 */
static void
WatchSlot(PoolSlot *slot, uint32_t events)
{
	DbPool	   *pool = slot->pool;
	int			fd = (slot->conn != NULL && events != 0) ? PQsocket(slot->conn) : -1;
	struct epoll_event event;

	if (pool->epoll_fd < 0)
		return;
	if (slot->registered_fd >= 0 && slot->registered_fd != fd)
	{
		(void) epoll_ctl(pool->epoll_fd, EPOLL_CTL_DEL, slot->registered_fd, NULL);
		slot->registered_fd = -1;
	}
	if (fd < 0)
		return;
	if (slot->registered_fd == fd && slot->registered_events == events)
		return;
	memset(&event, 0, sizeof(event));
	event.events = events;
	event.data.ptr = slot;
	if (epoll_ctl(pool->epoll_fd, slot->registered_fd == fd ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &event) == 0)
	{
		slot->registered_fd = fd;
		slot->registered_events = events;
	}
}

/* Close a slot's connection; it reopens when calls need it */
static void
CloseSlotConnection(PoolSlot *slot)
{
	WatchSlot(slot, 0);
	PQclear(slot->kept);
	slot->kept = NULL;
	if (slot->conn != NULL)
		PQfinish(slot->conn);
	slot->conn = NULL;
	slot->state = SLOT_CLOSED;
}

/* Close every connection and free the pool */
void
DbPoolDestroy(DbPool *pool)
{
	if (pool == NULL)
		return;
	for (int i = 0; i < pool->size; i++)
		CloseSlotConnection(&pool->slots[i]);
	for (int i = 0; i < pool->owned_count; i++)
		free(pool->owned_strings[i]);
	free(pool->owned_strings);
	free(pool->keywords);
	free(pool->values);
	free(pool->slots);
	free(pool);
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

/* End a call with a failure that is not the database's answer, of that kind */
static void
FailCallWith(DbCall *call, DbOutcome outcome, const char *message)
{
	snprintf(call->error, call->error_len, "%s", message);
	call->outcome = outcome;
}

/* End a call because the database could not be reached in time (fail mode applies) */
static void
FailCall(DbCall *call, const char *message)
{
	FailCallWith(call, DB_UNAVAILABLE, message);
}

/*
 * Fail calls[from..count-1], the part of a batch nobody answered (a NULL
 * is a call already failed at its own deadline and handed back)
 */
static void
FailRestOfBatch(DbCall **calls, int from, int count, const char *message)
{
	for (int i = from; i < count; i++)
		if (calls[i] != NULL)
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

/* Append a big-endian int32 at p; returns the byte after it */
static unsigned char *
PutInt32(unsigned char *p, int32_t value)
{
	uint32_t	u = (uint32_t) value;

	p[0] = (unsigned char) (u >> 24);
	p[1] = (unsigned char) (u >> 16);
	p[2] = (unsigned char) (u >> 8);
	p[3] = (unsigned char) u;
	return p + 4;
}

/*
 * The value of an inet in PostgreSQL's binary format (family, bits, is
 * cidr, length, address) into out[20]; its length, or -1 when text is not
 * an address (the caller's IP is checked before it gets here, so this
 * does not happen).
 */
static int
InetBinary(const char *text, unsigned char *out)
{
	unsigned char address[16];
	int			family;
	int			length;

	if (inet_pton(AF_INET, text, address) == 1)
	{
		family = PGSQL_AF_INET;
		length = 4;
	}
	else if (inet_pton(AF_INET6, text, address) == 1)
	{
		family = PGSQL_AF_INET6;
		length = 16;
	}
	else
		return -1;
	out[0] = (unsigned char) family;
	out[1] = (unsigned char) (length * 8);	/* a host address: every bit */
	out[2] = 0;					/* not a cidr */
	out[3] = (unsigned char) length;
	memcpy(out + 4, address, length);
	return 4 + length;
}

/*
 * Parameter index of every call of a batch as a one-dimensional array in
 * PostgreSQL's binary format (array_recv: dimensions, then each element's
 * length and bytes, -1 for NULL), of text or (index 2) inet elements.
 * Binary arrays cost the server far less than parsing array literals.
 * False when memory ran out.
 */
static bool
BuildBatchArray(BatchArray *array, DbCall **calls, int count, int index)
{
	bool		inet = index == 2;
	size_t		size = 20;
	bool		has_null = false;
	unsigned char *p;

	for (int i = 0; i < count; i++)
	{
		const char *value = calls[i]->params[index];

		has_null = has_null || value == NULL;
		size += 4 + (value == NULL ? 0 : inet ? 20 : strlen(value));
	}
	if (size > INT32_MAX || (array->data = malloc(size)) == NULL)
		return false;
	p = array->data;
	p = PutInt32(p, 1);			/* dimensions */
	p = PutInt32(p, has_null ? 1 : 0);
	p = PutInt32(p, inet ? INETARRAY_ELEMENT_OID : TEXTARRAY_ELEMENT_OID);
	p = PutInt32(p, count);
	p = PutInt32(p, 1);			/* lower bound */
	for (int i = 0; i < count; i++)
	{
		const char *value = calls[i]->params[index];
		int			len;

		if (value == NULL)
		{
			p = PutInt32(p, -1);
			continue;
		}
		if (inet)
		{
			if ((len = InetBinary(value, p + 4)) < 0)
			{
				p = PutInt32(p, -1);
				continue;
			}
		}
		else
		{
			len = (int) strlen(value);
			memcpy(p + 4, value, (size_t) len);
		}
		p = PutInt32(p, len) + len;
	}
	array->length = (int) (p - array->data);
	return true;
}

/* Free a batch's parameter arrays */
static void
FreeBatchArrays(PoolSlot *slot)
{
	for (int j = 0; j < 4; j++)
	{
		free(slot->arrays[j].data);
		slot->arrays[j].data = NULL;
	}
}

/*
 * Queue the slot's batch of verdict calls as one call of
 * athena_gateway_verdicts (binary arrays in, the binary text[] out), with
 * one sync: one statement for the whole batch instead of one per call.
 */
static bool
SendCombined(DbPool *pool, PoolSlot *slot)
{
	static const int formats[4] = {1, 1, 1, 1};
	static const Oid types[4] = {TEXTARRAY_OID, TEXTARRAY_OID, INETARRAY_OID, TEXTARRAY_OID};
	const char *values[4];
	int			lengths[4];

	for (int j = 0; j < 4; j++)
	{
		if (!BuildBatchArray(&slot->arrays[j], slot->calls, slot->count, j))
			return false;
		values[j] = (const char *) slot->arrays[j].data;
		lengths[j] = slot->arrays[j].length;
	}
	/* set_config(..., true) lasts until the batch's sync */
	if (pool->timeout_mode == STATEMENT_TIMEOUT_LOCAL &&
		!PQsendQueryParams(slot->conn, pool->local_timeout_sql, 0, NULL, NULL, NULL, NULL, 0))
		return false;
	if (pool->named_statement)
	{
		if (!PQsendQueryPrepared(slot->conn, BATCH_STATEMENT_NAME, 4, values, lengths, formats, 1))
			return false;
	}
	else if (!PQsendQueryParams(slot->conn, batch_statement_sql, 4, types, values, lengths, formats, 1))
		return false;
	return SendSync(slot->conn);
}

/*
 * Queue the slot's batch in one pipeline: more than one verdict call as
 * one athena_gateway_verdicts call (SendCombined); otherwise (one call, or
 * a health check among them) each call with its own sync.
 */
static bool
SendBatch(DbPool *pool, PoolSlot *slot)
{
	PGconn	   *conn = slot->conn;
	DbCall	  **calls = slot->calls;
	int			count = slot->count;
	bool		ok = PQenterPipelineMode(conn) == 1;

	slot->combined = count > 1 && !slot->separate_statements;
	for (int i = 0; i < count; i++)
		if (calls[i]->kind != DB_CALL_VERDICT)
			slot->combined = false;
	if (ok && slot->combined)
		return SendCombined(pool, slot);
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
 * Hand finished calls back: each done callback runs once, and nothing of
 * a call is touched after it.
 */
static void
CompleteCalls(DbPool *pool, DbCall **calls, int count)
{
	for (int i = 0; i < count; i++)
		calls[i]->done(calls[i]->done_arg);
	pool->outstanding -= count;
	pool->completed += count;
}

/*
 * A connection is open and ready: an earlier refusal no longer describes
 * the pool, so a later outage fails calls as unavailable (the fail mode's)
 */
static void
ConnectSucceeded(DbPool *pool)
{
	pool->last_connect_outcome = DB_UNAVAILABLE;
	MetricsCountConnect(true);
}

/*
 * A connect attempt failed: back off, and remember why, and what kind of
 * failure it was (see ClassifyConnectFailure), for fast failures
 */
static void
ConnectFailed(PoolSlot *slot, DbOutcome outcome, const char *error)
{
	snprintf(slot->pool->last_connect_error, sizeof(slot->pool->last_connect_error), "%s", error);
	slot->pool->last_connect_outcome = outcome;
	slot->pool->connect_error_fresh = true;
	MetricsCountConnect(false);
	CloseSlotConnection(slot);
	slot->retry_after_ms = NowMs() + RECONNECT_BACKOFF_MS;
}

/*
 * A connect attempt failed with libpq's message; its SQLSTATE (the
 * connection's messages are verbose until it is open) says whether the
 * server refused us (a configuration error) or could not be reached
 */
static void
ConnectFailedWithMessage(PoolSlot *slot, const char *prefix)
{
	char		error[512];
	char		sqlstate[6];
	const char *message = PQerrorMessage(slot->conn);

	SetErrorFromMessage(error, sizeof(error), prefix, message);
	ConnectFailed(slot,
				  ClassifyConnectFailure(SqlStateFromMessage(message, sqlstate) ? sqlstate : NULL),
				  error);
}

/*
 * A combined batch sends its requests as binary text[] parameters, which
 * the server converts from UTF-8 to its own encoding before the batch
 * function (and its per-request subtransactions) starts: in a database
 * that is not UTF8 one request's character the encoding lacks (a U+FFFD
 * from the repair, a euro sign in LATIN1) would fail the whole statement,
 * every request of the batch.  Such a connection sends each call as a
 * statement of its own (one Sync each, still pipelined), so a content
 * error answers only its own request.  SQL_ASCII converts nothing.  An
 * encoding the server does not report counts as not UTF8.
 */
static void
NoteServerEncoding(PoolSlot *slot)
{
	const char *encoding = PQparameterStatus(slot->conn, "server_encoding");

	slot->separate_statements = encoding == NULL ||
		(strcmp(encoding, "UTF8") != 0 && strcmp(encoding, "SQL_ASCII") != 0);
	if (slot->separate_statements && slot->pool->log && slot->pool->max_batch > 1)
		fprintf(stderr, "athena-authd: the database's encoding is %s, not UTF8: this connection sends "
				"each call as a statement of its own (no combined batches), so that one request's "
				"characters the encoding lacks fail only that request\n",
				encoding != NULL ? encoding : "not reported");
}

/* The connection is open: prepare the statement, or be idle at once */
static void
ConnectionOpened(PoolSlot *slot)
{
	DbPool	   *pool = slot->pool;
	int			flush_rc;

	if (PQsetnonblocking(slot->conn, 1) != 0)
	{
		ConnectFailedWithMessage(slot, "cannot connect to database");
		return;
	}
	PQsetErrorVerbosity(slot->conn, PQERRORS_DEFAULT);	/* calls' errors: their fields */
	NoteServerEncoding(slot);
	if (!pool->named_statement)
	{
		ConnectSucceeded(slot->pool);
		slot->state = SLOT_IDLE;
		WatchSlot(slot, EPOLLIN);
		return;
	}
	if (!PQsendQuery(slot->conn, prepare_statements_sql) ||
		(flush_rc = PQflush(slot->conn)) < 0)
	{
		ConnectFailedWithMessage(slot, "cannot prepare athena_gateway_verdict call");
		return;
	}
	slot->state = SLOT_PREPARING;
	slot->prepared_ok = false;
	WatchSlot(slot, flush_rc ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

/* Go on connecting after a socket event (or at the start) */
static void
AdvanceConnect(PoolSlot *slot)
{
	switch (PQconnectPoll(slot->conn))
	{
		case PGRES_POLLING_OK:
			ConnectionOpened(slot);
			break;
		case PGRES_POLLING_READING:
			WatchSlot(slot, EPOLLIN);
			break;
		case PGRES_POLLING_WRITING:
			WatchSlot(slot, EPOLLOUT);
			break;
		default:
			ConnectFailedWithMessage(slot, "cannot connect to database");
			break;
	}
}

/* Start opening a closed slot's connection, bounded by the pool's timeout */
static void
StartConnect(PoolSlot *slot)
{
	DbPool	   *pool = slot->pool;

	slot->conn = PQconnectStartParams(pool->keywords, pool->values, 0);
	if (slot->conn == NULL)
	{
		ConnectFailed(slot, DB_UNAVAILABLE, "out of memory");
		return;
	}
	/* a connect failure's SQLSTATE is only in its message, when verbose */
	PQsetErrorVerbosity(slot->conn, PQERRORS_VERBOSE);
	slot->state = SLOT_CONNECTING;
	slot->deadline_ms = NowMs() + pool->timeout_ms;
	if (PQstatus(slot->conn) == CONNECTION_BAD)
	{
		ConnectFailedWithMessage(slot, "cannot connect to database");
		return;
	}
	/* the first PQconnectPoll waits for the socket to be writable */
	WatchSlot(slot, EPOLLOUT);
}

/* Read the prepare's result, once it is all in */
static void
AdvancePrepare(PoolSlot *slot)
{
	PGresult   *result;

	if (!PQconsumeInput(slot->conn) || PQflush(slot->conn) < 0)
	{
		ConnectFailedWithMessage(slot, "cannot prepare athena_gateway_verdict call");
		return;
	}
	while (!PQisBusy(slot->conn))
	{
		result = PQgetResult(slot->conn);
		if (result == NULL)
		{
			if (!slot->prepared_ok)
			{
				ConnectFailed(slot, PQstatus(slot->conn) == CONNECTION_BAD ? DB_UNAVAILABLE : DB_SERVER_ERROR,
							  "cannot prepare athena_gateway_verdict call");
				return;
			}
			ConnectSucceeded(slot->pool);
			slot->state = SLOT_IDLE;
			WatchSlot(slot, EPOLLIN);
			return;
		}
		if (PQresultStatus(result) == PGRES_COMMAND_OK)
			slot->prepared_ok = true;
		else
		{
			/* no USAGE on the schema, a missing function: 503, never fail_open */
			DbOutcome	outcome = ClassifyConnectFailure(PQresultErrorField(result, PG_DIAG_SQLSTATE));
			char		error[512];

			SetErrorFromMessage(error, sizeof(error), "cannot prepare athena_gateway_verdict call",
								PQresultErrorMessage(result));
			PQclear(result);
			ConnectFailed(slot, outcome, error);
			return;
		}
		PQclear(result);
	}
	WatchSlot(slot, EPOLLIN);
}

/* Hand back every call of the slot's batch not handed back already */
static void
CompleteBatch(PoolSlot *slot)
{
	DbCall	   *calls[MAX_BATCH];
	int			count = 0;

	for (int i = 0; i < slot->count; i++)
		if (slot->calls[i] != NULL)
			calls[count++] = slot->calls[i];
	CompleteCalls(slot->pool, calls, count);
}

/* End the slot's batch: fail the unanswered calls, hand all back */
static void
EndBatch(PoolSlot *slot, const char *failure)
{

	FreeBatchArrays(slot);
	if (failure != NULL)
	{
		CloseSlotConnection(slot);
		FailRestOfBatch(slot->calls, slot->next, slot->count, failure);
	}
	else
	{
		PQclear(slot->kept);
		slot->kept = NULL;
		if (!PQexitPipelineMode(slot->conn) || PQstatus(slot->conn) != CONNECTION_OK)
			CloseSlotConnection(slot);
		else
		{
			slot->state = SLOT_IDLE;
			WatchSlot(slot, EPOLLIN);
		}
	}
	CompleteBatch(slot);
	slot->count = 0;
	slot->next = 0;
}

/* End the batch because the connection failed, with libpq's reason */
static void
BatchConnectionFailed(PoolSlot *slot)
{
	char		error[512];

	SetErrorFromMessage(error, sizeof(error), "database connection failed", PQerrorMessage(slot->conn));
	EndBatch(slot, error);
}

/* A big-endian int32 at p */
static int32_t
ReadInt32(const char *p)
{
	const unsigned char *u = (const unsigned char *) p;

	return (int32_t) (((uint32_t) u[0] << 24) | ((uint32_t) u[1] << 16) | ((uint32_t) u[2] << 8) | u[3]);
}

/*
 * One element of a combined batch's answer (len bytes at value, not
 * terminated) into call: a verdict, or the error the call's own decision
 * raised (E|sqlstate|message, gateway_verdict_fields.h), which counts as
 * that call's error just as a call of its own would have raised it.
 */
static void
FinishElement(DbCall *call, const char *value, int len)
{
	char	   *copy = malloc((size_t) len + 1);

	if (copy == NULL)
	{
		FailCall(call, "out of memory");
		return;
	}
	memcpy(copy, value, (size_t) len);
	copy[len] = '\0';
	if (len >= 8 && copy[0] == GATEWAY_VERDICT_ERROR && copy[1] == GATEWAY_VERDICT_SEPARATOR &&
		copy[7] == GATEWAY_VERDICT_SEPARATOR)
	{
		copy[7] = '\0';
		call->outcome = ClassifySqlState(copy + 2);
		SetErrorFromMessage(call->error, call->error_len, "athena_gateway_verdicts failed", copy + 8);
	}
	else if (ParseVerdictText(copy, call->verdict))
		call->outcome = DB_DECIDED;
	else
	{
		FreeAuthVerdict(call->verdict);
		call->outcome = DB_SERVER_ERROR;
		snprintf(call->error, call->error_len, "athena_gateway_verdicts returned an unexpected result shape");
	}
	free(copy);
}

/*
 * Hand each call of a combined batch its element of the binary text[]
 * the batch function returned: one dimension, as many elements as calls.
 * An error of the statement itself is every call's error; a malformed
 * answer fails the calls it does not answer.
 */
static void
FinishCombined(PoolSlot *slot, const PGresult *result)
{
	const char *p;
	const char *end;
	int			i = 0;

	FreeBatchArrays(slot);
	for (int c = 0; c < slot->count; c++)
		if (slot->calls[c] != NULL)
			MetricsObserveDbCall((double) (NowMs() - slot->started_ms) / 1000.0);
	if (PQresultStatus(result) != PGRES_TUPLES_OK)
	{
		for (int c = 0; c < slot->count; c++)
			if (slot->calls[c] != NULL)
				FinishCall(slot->calls[c], result);
		return;
	}
	if (PQntuples(result) == 1 && PQnfields(result) == 1 && PQfformat(result, 0) == 1 &&
		!PQgetisnull(result, 0, 0) && PQgetlength(result, 0, 0) >= 20)
	{
		p = PQgetvalue(result, 0, 0);
		end = p + PQgetlength(result, 0, 0);
		if (ReadInt32(p) == 1 && ReadInt32(p + 12) == slot->count)
		{
			for (p += 20; i < slot->count && end - p >= 4; i++)
			{
				int32_t		len = ReadInt32(p);

				p += 4;
				if (len < 0 || len > end - p)
					break;
				if (slot->calls[i] != NULL)
					FinishElement(slot->calls[i], p, len);
				p += len;
			}
		}
	}
	for (; i < slot->count; i++)
	{
		if (slot->calls[i] == NULL)
			continue;
		slot->calls[i]->outcome = DB_SERVER_ERROR;
		snprintf(slot->calls[i]->error, slot->calls[i]->error_len,
				 "athena_gateway_verdicts returned an unexpected result shape");
	}
}

/*
 * Take every result that has arrived.  Each call's results run up to its
 * own sync, with a NULL after each query; a call's answer is its last
 * query's result, except that the first error wins.  A second NULL in a
 * row means libpq has nothing more coming (the connection broke).
 */
static void
ReadBatchResults(PoolSlot *slot)
{
	while (slot->next < slot->count && !PQisBusy(slot->conn))
	{
		PGresult   *result = PQgetResult(slot->conn);
		DbCall	   *call = slot->calls[slot->next];

		if (result == NULL)
		{
			if (!slot->after_null && PQstatus(slot->conn) == CONNECTION_OK)
			{
				slot->after_null = true;
				continue;
			}
			BatchConnectionFailed(slot);
			return;
		}
		slot->after_null = false;
		if (PQresultStatus(result) == PGRES_PIPELINE_SYNC)
		{
			PQclear(result);
			if (slot->kept == NULL)
			{
				EndBatch(slot, "database returned no result");
				return;
			}
			if (slot->combined)
			{
				FinishCombined(slot, slot->kept);
				PQclear(slot->kept);
				slot->kept = NULL;
				slot->next = slot->count;
				break;
			}
			if (call != NULL && call->kind == DB_CALL_VERDICT)
				MetricsObserveDbCall((double) (NowMs() - slot->started_ms) / 1000.0);
			if (call != NULL)
			{
				/*
				 * handed back at once: the batch may run on until a later
				 * call's deadline, past this one's
				 */
				FinishCall(call, slot->kept);
				slot->calls[slot->next] = NULL;
				CompleteCalls(slot->pool, &call, 1);
			}
			PQclear(slot->kept);
			slot->kept = NULL;
			slot->next++;
			continue;
		}
		if (slot->kept == NULL ||
			(PQresultStatus(slot->kept) != PGRES_FATAL_ERROR &&
			 PQresultStatus(result) != PGRES_PIPELINE_ABORTED))
		{
			PQclear(slot->kept);
			slot->kept = result;
		}
		else
			PQclear(result);
	}
	if (slot->next == slot->count)
		EndBatch(slot, NULL);
}

/* A busy slot's socket is ready: send the rest, read what came */
static void
AdvanceBatch(PoolSlot *slot, uint32_t events)
{
	int			flush_rc = 0;

	if ((events & EPOLLOUT) && (flush_rc = PQflush(slot->conn)) < 0)
	{
		BatchConnectionFailed(slot);
		return;
	}
	if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !PQconsumeInput(slot->conn))
	{
		BatchConnectionFailed(slot);
		return;
	}
	ReadBatchResults(slot);
	if (slot->state == SLOT_BUSY)
		WatchSlot(slot, flush_rc ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

/*
 * The loop saw events on one of the pool's sockets (tag is the slot).
 * An idle connection must be silent: anything it receives (the server's
 * shutdown notice, EOF) closes it.
 */
void
DbPoolSocketEvent(DbPool *pool, void *tag, uint32_t events)
{
	PoolSlot   *slot = tag;

	(void) pool;
	switch (slot->state)
	{
		case SLOT_CONNECTING:
			AdvanceConnect(slot);
			break;
		case SLOT_PREPARING:
			AdvancePrepare(slot);
			break;
		case SLOT_BUSY:
			AdvanceBatch(slot, events);
			break;
		case SLOT_IDLE:
			CloseSlotConnection(slot);
			break;
		case SLOT_CLOSED:
			break;
	}
}

/* Take the oldest queued call, or NULL */
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

/* Fail every queued call with outcome and message (nothing can run them now) */
static void
FailQueue(DbPool *pool, DbOutcome outcome, const char *message)
{
	DbCall	   *calls[MAX_BATCH];
	int			count = 0;

	while (pool->queue_head != NULL)
	{
		calls[count] = PopQueued(pool);
		FailCallWith(calls[count], outcome, message);
		if (++count == MAX_BATCH || pool->queue_head == NULL)
		{
			CompleteCalls(pool, calls, count);
			count = 0;
		}
	}
}

/*
 * Send up to max_batch queued calls on an idle slot as one pipeline.
 * Calls that waited for a free connection are counted with their wait.
 */
static void
SendQueuedBatch(PoolSlot *slot)
{
	DbPool	   *pool = slot->pool;
	int64_t		now = NowMs();
	int			flush_rc;

	slot->count = 0;
	slot->next = 0;
	slot->after_null = false;
	slot->deadline_ms = INT64_MAX;
	while (slot->count < pool->max_batch && pool->queue_head != NULL)
	{
		DbCall	   *call = PopQueued(pool);

		if (call->waited)
			MetricsCountPoolWait((double) (now - call->queued_ms) / 1000.0, false);
		if (call->deadline_ms < slot->deadline_ms)
			slot->deadline_ms = call->deadline_ms;
		slot->calls[slot->count++] = call;
	}
	slot->state = SLOT_BUSY;
	slot->started_ms = now;
	MetricsCountBatch(slot->count);
	if (!SendBatch(pool, slot) || (flush_rc = PQflush(slot->conn)) < 0)
	{
		char		error[512];

		SetErrorFromMessage(error, sizeof(error), "cannot send athena_gateway_verdict call",
							PQerrorMessage(slot->conn));
		EndBatch(slot, error);
		return;
	}
	WatchSlot(slot, flush_rc ? EPOLLIN | EPOLLOUT : EPOLLIN);
}

/*
 * Fail the calls of a busy slot's batch whose own deadline has passed and
 * hand them back (each request's budget is its own: a call that waited
 * long in the queue must not take fresh calls of its batch down with it);
 * the others keep waiting for their answers.  The batch's deadline
 * becomes the earliest of those left, and when none is left the batch
 * ends, its connection closed (the server may still be running it).
 */
static void
ExpireBatchCalls(PoolSlot *slot, int64_t now)
{
	int64_t		earliest = INT64_MAX;

	for (int i = slot->next; i < slot->count; i++)
	{
		DbCall	   *call = slot->calls[i];

		if (call == NULL)
			continue;
		if (call->deadline_ms <= now)
		{
			FailCall(call, "database call timed out");
			slot->calls[i] = NULL;
			CompleteCalls(slot->pool, &call, 1);
		}
		else if (call->deadline_ms < earliest)
			earliest = call->deadline_ms;
	}
	if (earliest == INT64_MAX)
		EndBatch(slot, "database call timed out");
	else
		slot->deadline_ms = earliest;
}

/* Fail what passed its deadline: batches, connect attempts, queued calls */
static void
EnforceDeadlines(DbPool *pool, int64_t now)
{
	for (int i = 0; i < pool->size; i++)
	{
		PoolSlot   *slot = &pool->slots[i];

		if (now < slot->deadline_ms)
			continue;
		if (slot->state == SLOT_BUSY)
			ExpireBatchCalls(slot, now);
		else if (slot->state == SLOT_CONNECTING || slot->state == SLOT_PREPARING)
			ConnectFailed(slot, DB_UNAVAILABLE, "database connect timed out");
	}
	/* oldest first, and every call's deadline is the same budget after queueing */
	while (pool->queue_head != NULL && pool->queue_head->deadline_ms <= now)
	{
		DbCall	   *call = PopQueued(pool);

		MetricsCountPoolWait((double) (now - call->queued_ms) / 1000.0, true);
		FailCall(call, "no free database connection before the timeout");
		CompleteCalls(pool, &call, 1);
	}
}

/*
 * After each round of events: fail what is past its deadline, then give
 * queued calls to idle connections.  With calls left over and no idle
 * connection, a closed slot starts reconnecting (unless backing off);
 * with no connection open or opening, the calls fail fast.  True when
 * some call was handed back (its request must be run again).
 */
bool
DbPoolRun(DbPool *pool)
{
	int64_t		completed_before = pool->completed;
	int64_t		now = NowMs();
	bool		connecting = false;
	bool		in_use = false;

	EnforceDeadlines(pool, now);
	for (int i = 0; i < pool->size && pool->queue_head != NULL; i++)
		if (pool->slots[i].state == SLOT_IDLE)
			SendQueuedBatch(&pool->slots[i]);
	if (pool->queue_head == NULL)
		return pool->completed != completed_before;
	for (int i = 0; i < pool->size; i++)
		if (pool->slots[i].state == SLOT_CONNECTING || pool->slots[i].state == SLOT_PREPARING)
			connecting = true;
	/* one connect at a time: an open connection may free up first */
	for (int i = 0; i < pool->size && !connecting; i++)
	{
		PoolSlot   *slot = &pool->slots[i];

		if (slot->state == SLOT_CLOSED && now >= slot->retry_after_ms)
		{
			StartConnect(slot);
			connecting = slot->state != SLOT_CLOSED;
		}
	}
	for (int i = 0; i < pool->size; i++)
		if (pool->slots[i].state != SLOT_CLOSED)
			in_use = true;
	if (!in_use)
	{
		/* a refusal (permission, authentication) stays one while backing off */
		bool		refused = pool->last_connect_outcome == DB_SERVER_ERROR;
		const char *message = (pool->connect_error_fresh || refused) ? pool->last_connect_error :
			"database unreachable (reconnect backing off)";
		char		copy[512];

		snprintf(copy, sizeof(copy), "%s", message);
		pool->connect_error_fresh = false;
		FailQueue(pool, refused ? DB_SERVER_ERROR : DB_UNAVAILABLE, copy);
	}
	return pool->completed != completed_before;
}

/* Milliseconds until DbPoolRun has a deadline to enforce, -1 for none */
int
DbPoolTimeoutMs(const DbPool *pool)
{
	int64_t		wake = INT64_MAX;
	int64_t		now;

	if (pool->queue_head != NULL)
		wake = pool->queue_head->deadline_ms;
	for (int i = 0; i < pool->size; i++)
	{
		const PoolSlot *slot = &pool->slots[i];

		if (slot->state != SLOT_CLOSED && slot->state != SLOT_IDLE && slot->deadline_ms < wake)
			wake = slot->deadline_ms;
	}
	if (wake == INT64_MAX)
		return -1;
	now = NowMs();
	return wake <= now ? 0 : (int) (wake - now);
}

/*
 * Open every connection once so the first requests do not pay for it,
 * waiting for them in epoll_fd (the loop's set, which the pool's sockets
 * then stay in).  Returns how many connections opened (the first failure
 * goes into error).
 */
int
DbPoolStart(DbPool *pool, int epoll_fd, char *error, size_t error_len)
{
	int			opened = 0;
	bool		opening = true;

	pool->epoll_fd = epoll_fd;
	for (int i = 0; i < pool->size; i++)
		StartConnect(&pool->slots[i]);
	while (opening)
	{
		struct epoll_event events[16];
		int			timeout = DbPoolTimeoutMs(pool);
		int			n = epoll_wait(epoll_fd, events, 16, timeout);

		for (int i = 0; i < n; i++)
			DbPoolSocketEvent(pool, events[i].data.ptr, events[i].events);
		EnforceDeadlines(pool, NowMs());
		opening = false;
		for (int i = 0; i < pool->size; i++)
			if (pool->slots[i].state == SLOT_CONNECTING || pool->slots[i].state == SLOT_PREPARING)
				opening = true;
		if (n < 0 && errno != EINTR)
			break;
	}
	for (int i = 0; i < pool->size; i++)
	{
		PoolSlot   *slot = &pool->slots[i];

		if (slot->state == SLOT_IDLE)
			opened++;
		else
		{
			CloseSlotConnection(slot);
			slot->retry_after_ms = 0;	/* the first requests try again at once */
		}
	}
	snprintf(error, error_len, "%s", opened < pool->size ? pool->last_connect_error : "");
	return opened;
}

/* Refuse new calls; the loop runs until DbPoolIdle (each ends by its deadline) */
void
DbPoolClose(DbPool *pool)
{
	pool->closing = true;
}

/* True when every submitted call has been handed back */
bool
DbPoolIdle(const DbPool *pool)
{
	return pool->outstanding == 0;
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

/*
 * Queue a call for the next DbPoolRun (never sent here: done must not
 * run inside the submitter); false (nothing queued) once closing.
 */
static bool
QueueCall(DbPool *pool, DbCall *call)
{
	if (pool->closing)
	{
		/*
		 * Our own shutdown is not the database being unavailable: the call
		 * was never asked, so no fail mode may let it through.
		 */
		FailCallWith(call, DB_SERVER_ERROR, "athena-authd is shutting down");
		return false;
	}
	call->waited = true;
	for (int i = 0; i < pool->size; i++)
		if (pool->slots[i].state == SLOT_IDLE)
			call->waited = false;
	if (pool->queue_tail != NULL)
		pool->queue_tail->next = call;
	else
		pool->queue_head = call;
	pool->queue_tail = call;
	pool->outstanding++;
	return true;
}

/*
 * Submit athena_gateway_verdict() for query.  When it returns true, done
 * is called later, from DbPoolRun or DbPoolSocketEvent, with
 * call->outcome set: DB_DECIDED with verdict filled in when the database
 * decided; otherwise error is set and the outcome says what kind of
 * failure it was (see ClassifySqlState).  False: the pool is closing,
 * nothing was queued, done is not called, and the outcome is
 * DB_SERVER_ERROR (503 whatever the fail mode).
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

/*
 * Submit SELECT 1 (for /healthz) like a decision: done is called once a
 * pooled connection answered (outcome DB_DECIDED) or could not.
 */
bool
DbPoolSubmitHealthCheck(DbPool *pool, DbCall *call, char *error, size_t error_len,
						DbCallDone done, void *done_arg)
{
	InitCall(pool, call, DB_CALL_HEALTH, error, error_len, done, done_arg);
	return QueueCall(pool, call);
}
