/*-------------------------------------------------------------------------
 * authd.c
 *		athena-authd: a forward-auth sidecar for nginx auth_request,
 *		Traefik forwardAuth and Envoy ext_authz (HTTP mode).
 *
 * Each request is decided by one call of athena_keys.athena_gateway_verdict()
 * (queued for the pool while the request's connection is suspended; see
 * db_pool.c) with the key (X-Athena-Key, or the configured key sources), the
 * X-Athena-Client and X-Athena-Rights headers and the caller IP (see
 * client_ip.c).  Every path of the authorization listener is such a
 * check, so no client path can reach anything else; /healthz and
 * /metrics live on their own listener.  Allowed: 200 (or 204) with the
 * key's identity in X-Athena-Key-Id, X-Athena-Public-Id and
 * X-Athena-Client, always all three (empty when none), so that a proxy
 * copying them always overwrites whatever a client sent.  Denied: the
 * status the database chose with {"status":"error","message":...}.
 * nginx's auth_request discards the subrequest body and turns any status
 * but 2xx/401/403 into 500, so the same JSON is also sent in the
 * X-Athena-Error header for nginx to replay (see README.md).
 *
 * Request bytes that are not UTF-8 are repaired (U+FFFD) before the call:
 * PostgreSQL would otherwise reject the whole call, and a request's
 * content must get a verdict, never "unavailable".  When the database
 * cannot decide (connection, timeout, pool), the fail mode the database
 * reported on its last successful call applies: 503 "API key validation
 * unavailable" (fail_closed) or allowed with X-Athena-Degraded
 * (fail_open).  Other errors always fail closed.
 *
 * One event loop per HTTP thread runs everything on the request's path:
 * libmicrohttpd in external epoll mode and the loop's own pool of
 * non-blocking libpq connections share one epoll set, so a decision goes
 * from the request to the database and back without waking another
 * thread (a wake-up between threads cost more than the rest of athena-authd's
 * work per request).  Deadlines come from the loop's timeout: the
 * pool's, and libmicrohttpd's for idle connections.
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <time.h>

#include "client_ip.h"
#include "config.h"
#include "db_pool.h"
#include "key_source.h"
#include "metrics.h"
#include "text_util.h"

#define UNAVAILABLE_REASON "API key validation unavailable"
#define BODY_TOO_LARGE_REASON "Request body too large"
/*
 * A forward-auth check needs no body and the proxies send none (nginx
 * auth_request, Traefik forwardAuth, Caddy forward_auth) or an empty one
 * (Envoy ext_authz without with_request_body): a larger declared body is
 * answered 413 at once; a smaller one is read and ignored, within the
 * header deadline.
 */
#define MAX_REQUEST_BODY (64 * 1024)
#define CONTENT_ERROR_REASON "Access denied"
/*
 * The health listener's small limits (monitoring only), and how long one
 * of its keep-alive connections may stay idle between requests
 */
#define HEALTH_MAX_CONNECTIONS 64
#define HEALTH_MAX_CONNECTIONS_PER_IP 16
#define HEALTH_IDLE_TIMEOUT_S 5
/*
 * Above this share of a listener's connection limit (percent), its
 * connections idle between requests are closed, oldest idle first
 */
#define IDLE_EVICTION_PERCENT 80

/*
 * One authorization connection whose request headers have a deadline.
 * libmicrohttpd's connection timeout counts idle time only, so a client
 * trickling a byte now and then would never be cut; the deadline thread
 * shuts the socket down instead (libmicrohttpd then reads EOF and closes
 * it as usual).
 */
typedef struct HeaderWatch HeaderWatch;

/*
 * The open connections of one listener (of one loop), for closing idle
 * keep-alive connections when it fills up: a client with a few addresses
 * could otherwise hold every slot of MHD_OPTION_CONNECTION_LIMIT with idle
 * connections for idle_timeout_s, and the proxy's next connection would
 * wait in the backlog.  Counts are under the deadlines' lock.
 */
typedef struct ListenerLoad
{
	struct AuthdServer *server;
	int			high_water;		/* open connections above which idle ones close */
	int			open;			/* watched connections open */
	int			closing;		/* of those, shut down and not yet closed */
	bool		closed;			/* a connection closed in this MHD_run (loop thread only) */
} ListenerLoad;

struct HeaderWatch
{
	int			fd;
	int64_t		deadline_ms;	/* monotonic; 0 = not waiting for headers */
	int64_t		idle_since_ms;	/* monotonic; 0 = a request in progress (or none yet) */
	bool		shut;			/* shut down by the deadline thread */
	ListenerLoad *load;			/* the listener's counts */
	struct HeaderWatch *prev;
	struct HeaderWatch *next;
};

/* Every watched connection, and the thread that enforces the deadlines */
typedef struct HeaderDeadlines
{
	pthread_mutex_t lock;
	HeaderWatch *head;
	pthread_t	thread;
	atomic_bool stop;
	bool		thread_started;
} HeaderDeadlines;

/* Everything a request handler needs */
typedef struct AuthdServer
{
	AuthdConfig config;
	atomic_int	fail_mode;		/* FailMode last reported by the database */
	HeaderDeadlines deadlines;
} AuthdServer;

/* The request headers athena-authd reads, gathered in one pass */
typedef struct RequestHeaders
{
	KeyHeaders	key_headers;	/* first X-Athena-Key, X-API-Key, Authorization */
	const char *client;			/* first X-Athena-Client */
	const char *real_ip;		/* first X-Real-IP */
	int			real_ip_count;
	char	   *rights;			/* every X-Athena-Rights, joined by ',' */
	char	   *forwarded_for;	/* every X-Forwarded-For, joined by ',' */
	bool		out_of_memory;
} RequestHeaders;

/* What was answered, for the log line */
typedef struct RequestOutcome
{
	unsigned int status;
	const char *decision;		/* allow, deny, unavailable, fail_open */
	const char *reason;
	const char *public_id;
	const char *db_error;
	const char *key_source;		/* where the key came from, or "none" */
} RequestOutcome;

/*
 * One event loop: its thread's epoll set, the authorization listener it
 * runs (every loop listens on the same address, SO_REUSEPORT spreads the
 * connections), its own pool, and for the first loop the health
 * listener and the stop signals.
 */
typedef struct EventLoop
{
	AuthdServer *server;
	DbPool	   *pool;
	struct MHD_Daemon *daemon;
	struct MHD_Daemon *health_daemon;	/* NULL but in the first loop */
	ListenerLoad auth_load;		/* open connections of daemon */
	ListenerLoad health_load;	/* ... and of health_daemon */
	int			epoll_fd;
	int			stop_fd;		/* signalfd (first loop) or eventfd (the others) */
	bool		first;			/* the loop of the main thread */
	struct EventLoop *others;	/* first loop: the loops it stops */
	int			other_count;
	pthread_t	thread;
	bool		thread_started;
	int			opened;			/* connections opened at start */
	char		error[512];		/* why the first connection did not open */
} EventLoop;

typedef struct AuthRequest AuthRequest;
static void FreeAuthRequest(AuthRequest *request);

/*
 * Set once a stop signal arrived: every answer from then on carries
 * Connection: close, so no keep-alive connection outlives the drain.
 */
static atomic_bool shutting_down;

/* Milliseconds on the monotonic clock, with fractions */
static double
MonotonicMs(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double) now.tv_sec * 1000.0 + (double) now.tv_nsec / 1e6;
}

/* Whole milliseconds on the monotonic clock */
static int64_t
MonotonicWholeMs(void)
{
	return (int64_t) MonotonicMs();
}

/* Set (or, with 0, clear) the header deadline of a connection's watch */
static void
SetHeaderDeadline(AuthdServer *server, HeaderWatch *watch, int64_t deadline_ms)
{
	if (watch == NULL)
		return;
	pthread_mutex_lock(&server->deadlines.lock);
	watch->deadline_ms = deadline_ms;
	pthread_mutex_unlock(&server->deadlines.lock);
}

/*
 * A request finished on the connection (idle from now: with deadline_ms
 * for the next request), or a new one began (idle false, no deadline
 * change: the header deadline already runs)
 */
static void
SetConnectionIdle(AuthdServer *server, HeaderWatch *watch, bool idle, int64_t deadline_ms)
{
	if (watch == NULL)
		return;
	pthread_mutex_lock(&server->deadlines.lock);
	if (idle)
	{
		watch->idle_since_ms = MonotonicWholeMs();
		watch->deadline_ms = deadline_ms;
	}
	else
		watch->idle_since_ms = 0;
	pthread_mutex_unlock(&server->deadlines.lock);
}

/*
 * MHD connection notifier: a new connection must deliver its first
 * request's headers within header_timeout_s; a closed one is forgotten.
 * libmicrohttpd reports a close before it closes the socket, so the
 * deadline thread never sees a descriptor that was reused.
 */
static void
NotifyConnection(void *cls, struct MHD_Connection *connection, void **socket_context,
				 enum MHD_ConnectionNotificationCode code)
{
	ListenerLoad *load = cls;
	AuthdServer *server = load->server;
	HeaderDeadlines *deadlines = &server->deadlines;
	HeaderWatch *watch = *socket_context;

	if (code == MHD_CONNECTION_NOTIFY_STARTED)
	{
		const union MHD_ConnectionInfo *info =
			MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);

		if (info == NULL || (watch = calloc(1, sizeof(HeaderWatch))) == NULL)
			return;				/* unwatched: the idle timeout still applies */
		watch->fd = info->connect_fd;
		watch->deadline_ms = MonotonicWholeMs() + (int64_t) server->config.header_timeout_s * 1000;
		watch->load = load;
		pthread_mutex_lock(&deadlines->lock);
		load->open++;
		watch->next = deadlines->head;
		if (deadlines->head != NULL)
			deadlines->head->prev = watch;
		deadlines->head = watch;
		pthread_mutex_unlock(&deadlines->lock);
		*socket_context = watch;
	}
	else if (code == MHD_CONNECTION_NOTIFY_CLOSED && watch != NULL)
	{
		pthread_mutex_lock(&deadlines->lock);
		if (watch->prev != NULL)
			watch->prev->next = watch->next;
		else
			deadlines->head = watch->next;
		if (watch->next != NULL)
			watch->next->prev = watch->prev;
		watch->load->open--;
		if (watch->shut)
			watch->load->closing--;
		watch->load->closed = true;
		pthread_mutex_unlock(&deadlines->lock);
		free(watch);
		*socket_context = NULL;
	}
}

/* The watch of a connection (its socket context), or NULL */
static HeaderWatch *
ConnectionWatch(struct MHD_Connection *connection)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return info ? info->socket_context : NULL;
}

/*
 * MHD request-completed callback: the request's state is freed, and the
 * next request on this keep-alive connection gets idle_timeout_s +
 * header_timeout_s to deliver its headers.
 */
static void
RequestCompleted(void *cls, struct MHD_Connection *connection, void **request_state,
				 enum MHD_RequestTerminationCode code)
{
	AuthdServer *server = cls;

	(void) code;
	FreeAuthRequest(*request_state);
	*request_state = NULL;
	SetConnectionIdle(server, ConnectionWatch(connection), true,
					  MonotonicWholeMs() +
					  (int64_t) (server->config.idle_timeout_s + server->config.header_timeout_s) * 1000);
}

/*
 * Shut a watched connection's socket down (libmicrohttpd reads EOF and
 * closes it as usual); deadlines' lock held
 */
static void
ShutWatched(HeaderWatch *watch)
{
	shutdown(watch->fd, SHUT_RDWR);
	watch->deadline_ms = 0;
	watch->idle_since_ms = 0;
	if (!watch->shut)
	{
		watch->shut = true;
		watch->load->closing++;
	}
}

/*
 * While a listener has more open connections (not counting those already
 * shut down) than its high-water mark, shut down its connection that has
 * been idle between requests the longest; deadlines' lock held.  A
 * connection with a request in progress (or that has not sent its first
 * one: the header deadline bounds it) is never closed here.  The scan is
 * linear per closed connection, which only happens near the limit.
 */
static void
EvictIdleConnections(HeaderDeadlines *deadlines)
{
	for (;;)
	{
		HeaderWatch *oldest = NULL;

		for (HeaderWatch *watch = deadlines->head; watch != NULL; watch = watch->next)
		{
			ListenerLoad *load = watch->load;

			if (watch->idle_since_ms == 0 || watch->shut ||
				load->open - load->closing <= load->high_water)
				continue;
			if (oldest == NULL || watch->idle_since_ms < oldest->idle_since_ms)
				oldest = watch;
		}
		if (oldest == NULL)
			return;
		ShutWatched(oldest);
	}
}

/*
 * Deadline thread: every 100 ms, cut connections past their deadline, and
 * idle ones of a listener that is filling up.  A descriptor it shuts down
 * is never a reused one: libmicrohttpd reports a close (which forgets the
 * watch, under the same lock) before it closes the socket.
 */
static void *
EnforceHeaderDeadlines(void *cls)
{
	AuthdServer *server = cls;
	HeaderDeadlines *deadlines = &server->deadlines;
	struct timespec pause = {0, 100 * 1000 * 1000};

	while (!atomic_load(&deadlines->stop))
	{
		int64_t		now = MonotonicWholeMs();

		pthread_mutex_lock(&deadlines->lock);
		for (HeaderWatch *watch = deadlines->head; watch != NULL; watch = watch->next)
		{
			if (watch->deadline_ms != 0 && now >= watch->deadline_ms)
				ShutWatched(watch);
		}
		EvictIdleConnections(deadlines);
		pthread_mutex_unlock(&deadlines->lock);
		nanosleep(&pause, NULL);
	}
	return NULL;
}

/* Append value to a comma-joined list held in *list (malloc'd) */
static bool
AppendToList(char **list, const char *value)
{
	size_t		old_len = *list ? strlen(*list) : 0;
	size_t		value_len = strlen(value);
	char	   *grown = realloc(*list, old_len + value_len + 2);

	if (grown == NULL)
		return false;
	if (old_len > 0)
		grown[old_len++] = ',';
	memcpy(grown + old_len, value, value_len + 1);
	*list = grown;
	return true;
}

/* MHD header iterator: file each header we care about into RequestHeaders */
static enum MHD_Result
CollectHeader(void *cls, enum MHD_ValueKind kind, const char *name, const char *value)
{
	RequestHeaders *headers = cls;

	(void) kind;
	if (value == NULL)
		value = "";
	if (strcasecmp(name, "X-Athena-Key") == 0)
	{
		if (headers->key_headers.athena_key == NULL)
			headers->key_headers.athena_key = value;
	}
	else if (strcasecmp(name, "X-API-Key") == 0)
	{
		if (headers->key_headers.api_key == NULL)
			headers->key_headers.api_key = value;
	}
	else if (strcasecmp(name, "Authorization") == 0)
	{
		if (headers->key_headers.authorization == NULL)
			headers->key_headers.authorization = value;
	}
	else if (strcasecmp(name, "X-Athena-Client") == 0)
	{
		if (headers->client == NULL)
			headers->client = value;
	}
	else if (strcasecmp(name, "X-Real-IP") == 0)
	{
		if (headers->real_ip == NULL)
			headers->real_ip = value;
		headers->real_ip_count++;
	}
	else if (strcasecmp(name, "X-Athena-Rights") == 0)
	{
		if (!AppendToList(&headers->rights, value))
			headers->out_of_memory = true;
	}
	else if (strcasecmp(name, "X-Forwarded-For") == 0)
	{
		if (!AppendToList(&headers->forwarded_for, value))
			headers->out_of_memory = true;
	}
	return MHD_YES;
}

/*
 * The caller IP as text, or false for none.  Two X-Real-IP headers from a
 * trusted peer are ambiguous and count as unparseable.
 */
static bool
ResolveRequestIp(AuthdServer *server, struct MHD_Connection *connection,
				 const RequestHeaders *headers, char ip_text[IP_TEXT_MAX])
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	IpAddress	peer;
	IpAddress	client_ip;
	const char *real_ip = headers->real_ip;

	if (info == NULL || !IpAddressFromSockaddr(info->client_addr, &peer))
		return false;
	if (headers->real_ip_count > 1)
		real_ip = "ambiguous";
	if (!ResolveClientIp(&peer, &server->config.trusted_proxies, server->config.trust_real_ip,
						 real_ip, headers->forwarded_for, &client_ip))
		return false;
	FormatIpAddress(&client_ip, ip_text);
	return ip_text[0] != '\0';
}

/* Add a header to a response unless the value is NULL or unsafe */
static void
AddHeaderIfSafe(struct MHD_Response *response, const char *name, const char *value)
{
	if (IsSafeHeaderValue(value))
		MHD_add_response_header(response, name, value);
}

/*
 * Add an identity header, empty when there is no (safe) value: a proxy
 * that copies it to the upstream then always replaces a client's copy.
 * libmicrohttpd refuses empty values, so "empty" is one space, which
 * every HTTP parser strips as optional white space (RFC 9110, 5.5).
 */
static void
AddIdentityHeader(struct MHD_Response *response, const char *name, const char *value)
{
	MHD_add_response_header(response, name,
							(IsSafeHeaderValue(value) && value[0] != '\0') ? value : " ");
}

/*
 * Queue a response and release our reference to it (with Connection:
 * close once shutting down)
 */
static enum MHD_Result
QueueAndRelease(struct MHD_Connection *connection, unsigned int status, struct MHD_Response *response)
{
	enum MHD_Result result;

	if (response == NULL)
		return MHD_NO;
	MHD_add_response_header(response, "Cache-Control", "no-store");
	if (atomic_load(&shutting_down))
		MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
	result = MHD_queue_response(connection, status, response);
	MHD_destroy_response(response);
	return result;
}

/*
 * The headers Envoy should remove from the upstream request: every
 * accepted key header (Authorization only when it carried a Bearer key).
 */
static void
KeyHeadersToRemove(const AuthdConfig *config, const RequestHeaders *headers, char *out, size_t out_len)
{
	size_t		used = 0;

	out[0] = '\0';
	for (int i = 0; i < config->key_sources.count && used < out_len; i++)
	{
		const char *name = NULL;

		switch (config->key_sources.items[i])
		{
			case KEY_SOURCE_ATHENA_KEY:
				name = "x-athena-key";
				break;
			case KEY_SOURCE_API_KEY:
				name = "x-api-key";
				break;
			case KEY_SOURCE_BEARER:
				if (BearerToken(headers->key_headers.authorization) != NULL)
					name = "authorization";
				break;
			case KEY_SOURCE_COUNT:
				break;
		}
		if (name != NULL)
			used += (size_t) snprintf(out + used, out_len - used, "%s%s", used ? "," : "", name);
	}
}

/* Milliseconds as whole seconds rounded up, as HTTP's delta-seconds */
static long long
CeilSeconds(long long ms)
{
	return ms <= 0 ? 0 : (ms + 999) / 1000;
}

/*
 * The rate limit headers of a decision: RateLimit-Limit, -Remaining and
 * -Reset (seconds) of the tightest limit whenever one applied, and
 * Retry-After (seconds, rounded up, so that a client that waits it is
 * admitted) on a 429.
 */
static void
AddRateLimitHeaders(struct MHD_Response *response, const AuthVerdict *verdict)
{
	char		value[32];

	if (verdict == NULL)
		return;
	if (verdict->has_rate_limit)
	{
		snprintf(value, sizeof(value), "%lld", verdict->rate_limit);
		MHD_add_response_header(response, "RateLimit-Limit", value);
		snprintf(value, sizeof(value), "%lld", verdict->rate_remaining);
		MHD_add_response_header(response, "RateLimit-Remaining", value);
		snprintf(value, sizeof(value), "%lld", CeilSeconds(verdict->rate_reset_ms));
		MHD_add_response_header(response, "RateLimit-Reset", value);
	}
	if (verdict->has_retry_after)
	{
		snprintf(value, sizeof(value), "%lld", CeilSeconds(verdict->retry_after_ms));
		MHD_add_response_header(response, "Retry-After", value);
	}
}

/*
 * Answer an allowed request: allow_status with the key's identity
 * headers (all three, empty when unknown) and, for Envoy, the key
 * headers it must not pass upstream.
 */
static enum MHD_Result
AnswerAllowed(AuthdServer *server, struct MHD_Connection *connection, const RequestHeaders *headers,
			  const AuthVerdict *verdict, bool degraded)
{
	struct MHD_Response *response = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
	char		to_remove[64];

	if (response == NULL)
		return MHD_NO;
	AddIdentityHeader(response, "X-Athena-Key-Id", verdict ? verdict->key_id : NULL);
	AddIdentityHeader(response, "X-Athena-Public-Id", verdict ? verdict->public_id : NULL);
	AddIdentityHeader(response, "X-Athena-Client", verdict ? verdict->client_name : NULL);
	KeyHeadersToRemove(&server->config, headers, to_remove, sizeof(to_remove));
	if (to_remove[0] != '\0')
		MHD_add_response_header(response, "x-envoy-auth-headers-to-remove", to_remove);
	if (degraded)
		MHD_add_response_header(response, "X-Athena-Degraded", "fail_open");
	AddRateLimitHeaders(response, verdict);
	return QueueAndRelease(connection, server->config.allow_status, response);
}

/*
 * A response that owns body (malloc'd); body is freed when the response
 * cannot be created.  NULL body or failure gives NULL.
 */
static struct MHD_Response *
ResponseOwningBody(char *body)
{
	struct MHD_Response *response;

	if (body == NULL)
		return NULL;
	response = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (response == NULL)
		free(body);
	return response;
}

/*
 * Answer a denied request: status with the JSON error body (and header).
 * hint, when set, explains in X-Athena-Key-Hint why no key was seen;
 * verdict, when the database decided, brings the rate limit headers.
 */
static enum MHD_Result
AnswerDenied(struct MHD_Connection *connection, unsigned int status, const char *reason, const char *hint,
			 const AuthVerdict *verdict)
{
	char	   *body = BuildErrorBody(reason);
	struct MHD_Response *response = ResponseOwningBody(body);

	if (response == NULL)
		return MHD_NO;
	MHD_add_response_header(response, "Content-Type", "application/json");
	AddHeaderIfSafe(response, "X-Athena-Error", body);
	AddHeaderIfSafe(response, "X-Athena-Key-Hint", hint);
	AddRateLimitHeaders(response, verdict);
	return QueueAndRelease(connection, status, response);
}

/* Write the request's log line to stderr if the log level asks for it */
static void
LogRequest(AuthdServer *server, const char *method, const char *ip_text,
		   const RequestHeaders *headers, const RequestOutcome *outcome, double elapsed_ms)
{
	bool		is_error = outcome->db_error != NULL;
	char		timestamp[32];
	char		client[128];
	char		reason[128];
	char		public_id[80];
	char		db_error[256];
	char		method_text[16];
	char		line[1024];
	struct timespec now;
	struct tm	utc;

	if (server->config.log_level == LOG_LEVEL_NONE ||
		(server->config.log_level == LOG_LEVEL_ERRORS && !is_error))
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &utc);
	strftime(timestamp, sizeof(timestamp), "%Y-%m-%dT%H:%M:%S", &utc);
	SanitizeForLog(method, method_text, sizeof(method_text));
	SanitizeForLog(headers->client, client, sizeof(client));
	SanitizeForLog(outcome->reason, reason, sizeof(reason));
	SanitizeForLog(outcome->public_id, public_id, sizeof(public_id));
	SanitizeForLog(outcome->db_error, db_error, sizeof(db_error));
	snprintf(line, sizeof(line),
			 "%s.%03ldZ athena-authd %s status=%u decision=%s reason=\"%s\" ip=%s client=\"%s\" "
			 "public_id=%s key_source=%s ms=%.2f%s%s%s\n",
			 timestamp, now.tv_nsec / 1000000, method_text, outcome->status, outcome->decision,
			 reason, ip_text[0] ? ip_text : "-", client, public_id, outcome->key_source, elapsed_ms,
			 is_error ? " error=\"" : "", is_error ? db_error : "", is_error ? "\"" : "");
	fputs(line, stderr);
}

/* Free what a request's header collection and repair allocated */
static void
FreeRequestText(RequestHeaders *headers, char *key, char *client, char *rights)
{
	free(headers->rights);
	free(headers->forwarded_for);
	free(key);
	free(client);
	free(rights);
}

/* The hint for a key presented through a source that is not accepted */
static void
BuildKeyHint(const AuthdConfig *config, const KeyChoice *choice, char *hint, size_t hint_len)
{
	char		accepted[64];

	hint[0] = '\0';
	if (choice->key != NULL || choice->ignored == NULL)
		return;
	FormatKeySources(&config->key_sources, accepted, sizeof(accepted));
	snprintf(hint, hint_len, "a key was sent as %s, which this gateway does not accept; accepted: %s",
			 choice->ignored, accepted);
}

/*
 * One authorization request from its headers to its answer.  It waits
 * for the database with its connection suspended, so an HTTP thread
 * never blocks on a decision: the thread serves other connections, and
 * the pool sends the decisions waiting at the same time in one round
 * trip.  Freed when libmicrohttpd reports the request completed.
 */
struct AuthRequest
{
	AuthdServer *server;
	struct MHD_Connection *connection;
	double		started_ms;
	bool		submitted;		/* the call was queued (or refused) */
	bool		rejected;		/* answered 413 before its body */
	RequestHeaders headers;
	KeyChoice	choice;
	char		hint[160];
	char	   *key;
	char	   *client;
	char	   *rights;
	char		ip_text[IP_TEXT_MAX];
	AuthQuery	query;
	DbCall		call;
	AuthVerdict verdict;
	char		db_error[512];
};

/* Release an AuthRequest and what it owns */
static void
FreeAuthRequest(AuthRequest *request)
{
	if (request == NULL)
		return;
	FreeAuthVerdict(&request->verdict);
	FreeRequestText(&request->headers, request->key, request->client, request->rights);
	free(request);
}

/* The pool's done callback: the decision is in, let the request go on */
static void
ResumeAuthRequest(void *arg)
{
	AuthRequest *request = arg;

	MHD_resume_connection(request->connection);
}

/*
 * Read the request's key, client, rights and caller IP, then queue its
 * call and suspend the connection until the pool has its outcome.
 * MHD_NO (the connection is dropped) only when memory ran out.
 */
static enum MHD_Result
StartAuthRequest(AuthdServer *server, DbPool *pool, struct MHD_Connection *connection,
				 AuthRequest *request)
{
	RequestHeaders *headers = &request->headers;
	bool		oom_rights = false;
	bool		oom_key;
	bool		oom_client;

	request->started_ms = MonotonicMs();
	MHD_get_connection_values(connection, MHD_HEADER_KIND, CollectHeader, headers);
	ChooseKey(&server->config.key_sources, &headers->key_headers, &request->choice);
	BuildKeyHint(&server->config, &request->choice, request->hint, sizeof(request->hint));

	/* bytes PostgreSQL would refuse as text become U+FFFD: still a verdict */
	{
		char	   *normalized = NormalizeRightsHeader(headers->rights);

		request->rights = normalized ? RepairUtf8(normalized, &oom_rights) : NULL;
		oom_rights = oom_rights || normalized == NULL;
		free(normalized);
	}
	request->key = RepairUtf8(request->choice.key, &oom_key);
	request->client = RepairUtf8((headers->client != NULL && headers->client[0] != '\0') ?
								 headers->client : NULL, &oom_client);
	if (headers->out_of_memory || oom_rights || oom_key || oom_client)
		return MHD_NO;

	request->query.key = request->key;
	request->query.client = request->client;
	request->query.ip = ResolveRequestIp(server, connection, headers, request->ip_text) ?
		request->ip_text : NULL;
	request->query.rights = request->rights;

	/* suspended first, so the pool can never resume it before that */
	request->submitted = true;
	MHD_suspend_connection(connection);
	if (!DbPoolSubmit(pool, &request->call, &request->query, &request->verdict,
					  request->db_error, sizeof(request->db_error), ResumeAuthRequest, request))
		MHD_resume_connection(connection);	/* shutting down: answered as unavailable */
	return MHD_YES;
}

/* Answer a request whose call has its outcome, and log it */
static enum MHD_Result
FinishAuthRequest(AuthdServer *server, struct MHD_Connection *connection, const char *method,
				  AuthRequest *request)
{
	RequestOutcome outcome;
	AuthVerdict *verdict = &request->verdict;
	DbOutcome	db_outcome = request->call.outcome;
	const char *db_error = request->db_error;
	enum MHD_Result result;

	memset(&outcome, 0, sizeof(outcome));
	outcome.key_source = request->choice.ignored && !request->choice.key ?
		request->choice.ignored : request->choice.source;
	if (db_outcome == DB_DECIDED)
	{
		FailMode	reported;

		if (ParseFailMode(verdict->fail_mode, &reported))
			atomic_store(&server->fail_mode, (int) reported);
		outcome.reason = verdict->reason;
		outcome.public_id = verdict->public_id;
		if (verdict->allowed && VerdictIsFailOpen(verdict))
		{
			/* the extension could not apply its policy and let it through: degraded */
			MetricsCountFailOpen();
			outcome.status = server->config.allow_status;
			outcome.decision = "fail_open";
			outcome.db_error = "API key policy unavailable, allowed by athena_keys under fail_open";
			result = AnswerAllowed(server, connection, &request->headers, verdict, true);
		}
		else if (verdict->allowed)
		{
			outcome.status = server->config.allow_status;
			outcome.decision = "allow";
			result = AnswerAllowed(server, connection, &request->headers, verdict, false);
		}
		else
		{
			outcome.status = (verdict->status >= 400 && verdict->status <= 599) ?
				(unsigned int) verdict->status : MHD_HTTP_FORBIDDEN;
			outcome.decision = "deny";
			result = AnswerDenied(connection, outcome.status,
								  verdict->reason ? verdict->reason : "Access denied", request->hint,
								  verdict);
		}
	}
	else if (db_outcome == DB_CONTENT_ERROR)
	{
		/* defensive: repair should make this impossible; never fail open */
		MetricsCountContentError();
		outcome.db_error = db_error;
		outcome.status = MHD_HTTP_FORBIDDEN;
		outcome.decision = "reject";
		outcome.reason = CONTENT_ERROR_REASON;
		result = AnswerDenied(connection, outcome.status, CONTENT_ERROR_REASON, NULL, NULL);
	}
	else if (db_outcome == DB_UNAVAILABLE && atomic_load(&server->fail_mode) == FAIL_OPEN)
	{
		MetricsCountFailOpen();
		outcome.db_error = db_error;
		outcome.status = server->config.allow_status;
		outcome.decision = "fail_open";
		result = AnswerAllowed(server, connection, &request->headers, NULL, true);
	}
	else
	{
		outcome.db_error = db_error;
		outcome.status = MHD_HTTP_SERVICE_UNAVAILABLE;
		outcome.decision = "unavailable";
		outcome.reason = UNAVAILABLE_REASON;
		result = AnswerDenied(connection, outcome.status, UNAVAILABLE_REASON, NULL, NULL);
	}

	MetricsCountRequest(outcome.status, outcome.reason);
	LogRequest(server, method, request->ip_text, &request->headers, &outcome,
			   MonotonicMs() - request->started_ms);
	return result;
}

/*
 * A request on the health listener.  /healthz waits for its SELECT 1
 * suspended, like a decision, so the loop never blocks on it.
 */
typedef struct HealthRequest
{
	bool		submitted;
	DbCall		call;
	char		error[512];
} HealthRequest;

/* The pool's done callback of a health check: answer it */
static void
ResumeHealthRequest(void *arg)
{
	MHD_resume_connection(arg);
}

/* GET /healthz: 200 "ok" when a database connection works, else 503 */
static enum MHD_Result
AnswerHealthCheck(AuthdServer *server, struct MHD_Connection *connection, const HealthRequest *health)
{
	const char *error = health->error;
	bool		healthy = health->call.outcome == DB_DECIDED;
	static char ok_body[] = "ok\n";
	static char unavailable_body[] = "unavailable\n";
	char	   *body = healthy ? ok_body : unavailable_body;
	struct MHD_Response *response =
		MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_PERSISTENT);

	if (!healthy && server->config.log_level != LOG_LEVEL_NONE)
	{
		char		safe_error[256];

		SanitizeForLog(error, safe_error, sizeof(safe_error));
		fprintf(stderr, "athena-authd healthz status=503 error=\"%s\"\n", safe_error);
	}
	if (response == NULL)
		return MHD_NO;
	MHD_add_response_header(response, "Content-Type", "text/plain");
	return QueueAndRelease(connection, healthy ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, response);
}

/* GET /metrics: the Prometheus text exposition */
static enum MHD_Result
AnswerMetrics(struct MHD_Connection *connection)
{
	struct MHD_Response *response = ResponseOwningBody(RenderMetrics());

	if (response == NULL)
		return MHD_NO;
	MHD_add_response_header(response, "Content-Type", "text/plain; version=0.0.4");
	return QueueAndRelease(connection, MHD_HTTP_OK, response);
}

/* A plain-text answer with a fixed body (health listener errors) */
static enum MHD_Result
AnswerText(struct MHD_Connection *connection, unsigned int status, const char *text)
{
	struct MHD_Response *response =
		MHD_create_response_from_buffer(strlen(text), (void *) text, MHD_RESPMEM_PERSISTENT);

	if (response == NULL)
		return MHD_NO;
	MHD_add_response_header(response, "Content-Type", "text/plain");
	return QueueAndRelease(connection, status, response);
}

/*
 * True once MHD has delivered the whole request (headers, then any body,
 * which we ignore); the first call of a request allocates its
 * HealthRequest (freed by HealthRequestCompleted).  False with
 * *out_of_memory when that failed.
 */
static bool
RequestComplete(void **request_state, size_t *upload_data_size, bool *out_of_memory)
{
	*out_of_memory = false;
	if (*request_state == NULL)
	{
		*request_state = calloc(1, sizeof(HealthRequest));
		*out_of_memory = *request_state == NULL;
		return false;
	}
	if (*upload_data_size != 0)
	{
		*upload_data_size = 0;
		return false;
	}
	return true;
}

/*
 * MHD request-completed callback of the health listener: as on the
 * authorization listener, but with the health listener's short idle
 * timeout, the next request's headers get HEALTH_IDLE_TIMEOUT_S +
 * header_timeout_s (its 64 slots must not stay held by idle connections)
 */
static void
HealthRequestCompleted(void *cls, struct MHD_Connection *connection, void **request_state,
					   enum MHD_RequestTerminationCode code)
{
	AuthdServer *server = cls;

	(void) code;
	free(*request_state);
	*request_state = NULL;
	SetConnectionIdle(server, ConnectionWatch(connection), true,
					  MonotonicWholeMs() +
					  (int64_t) (HEALTH_IDLE_TIMEOUT_S + server->config.header_timeout_s) * 1000);
}

/* True when the request declares a body larger than MAX_REQUEST_BODY */
static bool
DeclaredBodyTooLarge(struct MHD_Connection *connection)
{
	const char *length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
													 MHD_HTTP_HEADER_CONTENT_LENGTH);
	char	   *end;
	unsigned long long value;

	if (length == NULL)
		return false;
	errno = 0;
	value = strtoull(length, &end, 10);
	return errno == ERANGE || (end != length && value > MAX_REQUEST_BODY);
}

/*
 * Answer 413 before the body is read (libmicrohttpd then closes the
 * connection), and log it
 */
static enum MHD_Result
AnswerBodyTooLarge(AuthdServer *server, struct MHD_Connection *connection, const char *method,
				   AuthRequest *request)
{
	RequestOutcome outcome;

	memset(&outcome, 0, sizeof(outcome));
	request->started_ms = MonotonicMs();
	outcome.status = MHD_HTTP_CONTENT_TOO_LARGE;
	outcome.decision = "reject";
	outcome.reason = BODY_TOO_LARGE_REASON;
	outcome.key_source = "none";
	MetricsCountRequest(outcome.status, outcome.reason);
	LogRequest(server, method, request->ip_text, &request->headers, &outcome, 0.0);
	request->rejected = true;	/* nothing is asked of the database */
	return AnswerDenied(connection, outcome.status, BODY_TOO_LARGE_REASON, NULL, NULL);
}

/*
 * MHD access handler of the authorization listener: every path and
 * method is a forward-auth check.  Once the whole request is in
 * (headers and any body), the connection's timeout goes from the short
 * header deadline to the keep-alive idle timeout: a body trickled in is
 * cut at the same deadline as trickled headers.  Called once with the
 * headers (a declared body over MAX_REQUEST_BODY is answered 413 there),
 * then for any body (ignored), then once the request is complete (the
 * call is queued and the connection suspended), and once more after the
 * pool resumed it (the answer).
 */
static enum MHD_Result
HandleAuthRequest(void *cls, struct MHD_Connection *connection, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **request_state)
{
	EventLoop  *loop = cls;
	AuthdServer *server = loop->server;
	AuthRequest *request = *request_state;

	(void) url;
	(void) version;
	(void) upload_data;
	if (request == NULL)
	{
		if ((request = calloc(1, sizeof(AuthRequest))) == NULL)
			return MHD_NO;
		request->server = server;
		request->connection = connection;
		*request_state = request;
		SetConnectionIdle(server, ConnectionWatch(connection), false, 0);
		if (DeclaredBodyTooLarge(connection))
			return AnswerBodyTooLarge(server, connection, method, request);
		return MHD_YES;
	}
	if (request->rejected)
	{
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size != 0)
	{
		/* the body is ignored; the header deadline still runs */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (!request->submitted)
	{
		/* the whole request is in: no deadline while the database decides */
		SetHeaderDeadline(server, ConnectionWatch(connection), 0);
		MHD_set_connection_option(connection, MHD_CONNECTION_OPTION_TIMEOUT,
								  (unsigned int) server->config.idle_timeout_s);
		return StartAuthRequest(server, loop->pool, connection, request);
	}
	return FinishAuthRequest(server, connection, method, request);
}

/* MHD access handler of the health listener: /healthz and /metrics */
static enum MHD_Result
HandleHealthRequest(void *cls, struct MHD_Connection *connection, const char *url,
					const char *method, const char *version, const char *upload_data,
					size_t *upload_data_size, void **request_state)
{
	EventLoop  *loop = cls;
	AuthdServer *server = loop->server;
	HealthRequest *health;
	bool		out_of_memory;

	(void) version;
	(void) upload_data;
	if (*request_state == NULL)
		SetConnectionIdle(server, ConnectionWatch(connection), false, 0);	/* a request began */
	if (!RequestComplete(request_state, upload_data_size, &out_of_memory))
		return out_of_memory ? MHD_NO : MHD_YES;
	health = *request_state;
	SetHeaderDeadline(server, ConnectionWatch(connection), 0);	/* the request is in */
	MHD_set_connection_option(connection, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned int) HEALTH_IDLE_TIMEOUT_S);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return AnswerText(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
	if (strcmp(url, "/healthz") == 0)
	{
		if (health->submitted)
			return AnswerHealthCheck(server, connection, health);
		health->submitted = true;
		MHD_suspend_connection(connection);
		if (!DbPoolSubmitHealthCheck(loop->pool, &health->call, health->error, sizeof(health->error),
									 ResumeHealthRequest, connection))
			MHD_resume_connection(connection);	/* shutting down: 503 */
		return MHD_YES;
	}
	if (strcmp(url, "/metrics") == 0)
		return AnswerMetrics(connection);
	return AnswerText(connection, MHD_HTTP_NOT_FOUND, "not found\n");
}

/* Describe the running configuration on stderr */
static void
LogStartup(const AuthdServer *server, int opened)
{
	char		sources[64];

	if (server->config.log_level == LOG_LEVEL_NONE)
		return;
	FormatKeySources(&server->config.key_sources, sources, sizeof(sources));
	fprintf(stderr,
			"athena-authd listening on %s (health %s); pool %d (%d open), threads %d, timeout %d ms, "
			"trusted proxies [%s]%s, key sources %s, connections %d (%d per IP), "
			"fail mode until first decision %s\n",
			server->config.listen.text,
			server->config.health_enabled ? server->config.health_listen.text : "off",
			server->config.pool_size, opened, server->config.threads,
			server->config.timeout_ms, server->config.trusted_proxies_text,
			server->config.trust_real_ip ? " with X-Real-IP" : "", sources,
			server->config.max_connections, server->config.max_connections_per_ip,
			FailModeName(server->config.initial_fail_mode));
}

/* Allow enough open files for max_connections (up to the hard limit) */
static void
RaiseFileLimit(const AuthdConfig *config)
{
	struct rlimit limit;
	rlim_t		wanted = (rlim_t) config->max_connections + (rlim_t) config->pool_size + 64;

	if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= wanted)
		return;
	limit.rlim_cur = (limit.rlim_max != RLIM_INFINITY && limit.rlim_max < wanted) ? limit.rlim_max : wanted;
	if (setrlimit(RLIMIT_NOFILE, &limit) != 0 && config->log_level != LOG_LEVEL_NONE)
		fprintf(stderr, "athena-authd: cannot raise the open file limit to %lu\n", (unsigned long) wanted);
}

/*
 * Start one listener of a loop in external epoll mode (the loop polls
 * it): its address, handler, its request-completed callback, connection
 * limits and the header deadlines (both listeners: a client trickling
 * header bytes must not hold the health listener's few slots either).
 * Both listeners suspend requests while the pool works on them.
 */
static struct MHD_Daemon *
StartListener(EventLoop *loop, unsigned int flags, const ListenAddress *listen,
			  MHD_AccessHandlerCallback handler, MHD_RequestCompletedCallback completed,
			  int max_connections, int per_ip, ListenerLoad *load)
{
	AuthdServer *server = loop->server;

	load->server = server;
	load->high_water = (int) ((int64_t) max_connections * IDLE_EVICTION_PERCENT / 100);
	if (listen->addr.ss_family == AF_INET6)
	{
		const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *) &listen->addr;

		/*
		 * [::] also takes IPv4 clients (IPV6_V6ONLY off), as a wildcard
		 * address is expected to; a specific IPv6 address is IPv6 only
		 */
		flags |= IN6_IS_ADDR_UNSPECIFIED(&v6->sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
	}
	flags |= MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
	return MHD_start_daemon(flags, 0, NULL, NULL, handler, loop,
							MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &listen->addr,
							MHD_OPTION_CONNECTION_LIMIT, (unsigned int) max_connections,
							MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned int) per_ip,
							MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) server->config.header_timeout_s,
							MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int) 1,
							MHD_OPTION_NOTIFY_CONNECTION, NotifyConnection, load,
							MHD_OPTION_NOTIFY_COMPLETED, completed, server,
							MHD_OPTION_END);
}

/* Start the header deadline thread; false when it cannot start */
static bool
StartHeaderDeadlines(AuthdServer *server)
{
	pthread_mutex_init(&server->deadlines.lock, NULL);
	atomic_init(&server->deadlines.stop, false);
	server->deadlines.thread_started =
		pthread_create(&server->deadlines.thread, NULL, EnforceHeaderDeadlines, server) == 0;
	return server->deadlines.thread_started;
}

/* Stop the header deadline thread (after the listener is stopped) */
static void
StopHeaderDeadlines(AuthdServer *server)
{
	if (!server->deadlines.thread_started)
		return;
	atomic_store(&server->deadlines.stop, true);
	pthread_join(server->deadlines.thread, NULL);
	server->deadlines.thread_started = false;
}

/* Add fd to the loop's epoll set for input, tagged with tag */
static bool
WatchFd(EventLoop *loop, int fd, void *tag)
{
	struct epoll_event event;

	memset(&event, 0, sizeof(event));
	event.events = EPOLLIN;
	event.data.ptr = tag;
	return epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, fd, &event) == 0;
}

/* Add a daemon's own epoll descriptor to the loop's set */
static bool
WatchDaemon(EventLoop *loop, struct MHD_Daemon *daemon, void *tag)
{
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_EPOLL_FD);

	return info != NULL && WatchFd(loop, info->epoll_fd, tag);
}

/* Lower *timeout (-1: none) to a daemon's next timeout */
static void
LowerToDaemonTimeout(struct MHD_Daemon *daemon, int *timeout)
{
	MHD_UNSIGNED_LONG_LONG daemon_timeout;

	if (daemon == NULL || MHD_get_timeout(daemon, &daemon_timeout) != MHD_YES)
		return;
	if (daemon_timeout > INT32_MAX)
		daemon_timeout = INT32_MAX;
	if (*timeout < 0 || (int) daemon_timeout < *timeout)
		*timeout = (int) daemon_timeout;
}

/* The first loop's stop signal arrived: tell the other loops */
static void
BeginShutdown(EventLoop *loop)
{
	AuthdServer *server = loop->server;
	struct signalfd_siginfo signal_info;
	uint64_t	one = 1;

	if (read(loop->stop_fd, &signal_info, sizeof(signal_info)) == (ssize_t) sizeof(signal_info) &&
		server->config.log_level != LOG_LEVEL_NONE)
		fprintf(stderr, "athena-authd: signal %u, shutting down\n", signal_info.ssi_signo);
	for (int i = 0; i < loop->other_count; i++)
		(void) !write(loop->others[i].stop_fd, &one, sizeof(one));
}

/*
 * The loop is stopping: answers close their connections, and its
 * authorization listener takes no new connection (the socket is closed;
 * connections already open are still answered, 503 for a new request).
 */
static void
StopAccepting(EventLoop *loop)
{
	MHD_socket	listen_fd;

	atomic_store(&shutting_down, true);
	listen_fd = MHD_quiesce_daemon(loop->daemon);
	if (listen_fd != MHD_INVALID_SOCKET)
		close(listen_fd);
}

/*
 * Run a loop until it is told to stop: wait for any of its sockets (or
 * the next deadline), hand pool sockets their events, let libmicrohttpd
 * read requests and send answers, and send the calls those requests
 * queued.  On stop, new calls are refused and the loop goes on until
 * every queued call has its answer, plus a moment for the answers to
 * leave, so a graceful shutdown answers every waiting request.  New
 * connections are refused from the stop on, and a new request on an
 * open one is 503 whatever the fail mode (the database was not asked).  The
 * health listener stops only then: no /healthz is suspended any more.
 */
static void *
RunEventLoop(void *arg)
{
	EventLoop  *loop = arg;
	bool		stopping = false;
	double		drain_until_ms = 0;

	for (;;)
	{
		struct epoll_event events[64];
		int			timeout = DbPoolTimeoutMs(loop->pool);
		int			count;

		LowerToDaemonTimeout(loop->daemon, &timeout);
		LowerToDaemonTimeout(loop->health_daemon, &timeout);
		if (stopping && (timeout < 0 || timeout > 10))
			timeout = 10;
		count = epoll_wait(loop->epoll_fd, events, 64, timeout);
		for (int i = 0; i < count; i++)
		{
			void	   *tag = events[i].data.ptr;

			if (tag == &loop->stop_fd)
			{
				if (!stopping)
				{
					if (loop->first)
						BeginShutdown(loop);
					else
					{
						uint64_t	value;

						(void) !read(loop->stop_fd, &value, sizeof(value));
					}
					DbPoolClose(loop->pool);
					StopAccepting(loop);
					stopping = true;
				}
			}
			else if (tag != &loop->daemon && tag != &loop->health_daemon)
				DbPoolSocketEvent(loop->pool, tag, events[i].events);
		}
		DbPoolRun(loop->pool);
		do
		{
			/* calls handed back by DbPoolRun resume requests MHD must run */
			loop->auth_load.closed = false;
			loop->health_load.closed = false;
			MHD_run(loop->daemon);
			if (loop->health_daemon != NULL)
				MHD_run(loop->health_daemon);

			/*
			 * A listener at its connection limit takes its listening socket
			 * out of its epoll set and puts it back only in the next
			 * MHD_run after connections closed: run again, or a waiting
			 * connection would wait for an unrelated event.
			 */
		} while (DbPoolRun(loop->pool) || loop->auth_load.closed || loop->health_load.closed);
		if (stopping && DbPoolIdle(loop->pool))
		{
			if (loop->health_daemon != NULL)
			{
				MHD_stop_daemon(loop->health_daemon);
				loop->health_daemon = NULL;
			}
			if (drain_until_ms == 0)
				drain_until_ms = MonotonicMs() + 100;
			else if (MonotonicMs() >= drain_until_ms)
				break;
		}
	}
	return NULL;
}

/*
 * True when another socket already listens on the address.  The loops'
 * listeners set SO_REUSEPORT (each loop has its own on the same address),
 * and the kernel lets any other process of the same user that sets it too
 * -- a second athena-authd, say an old one still running with another
 * configuration or database -- bind the same port and silently take part
 * of the connections.  A probe socket without SO_REUSEPORT cannot bind
 * while any socket listens there (SO_REUSEADDR only lets it past
 * connections in TIME_WAIT, so a quick restart still works).
 */
static bool
AddressInUse(const ListenAddress *listen)
{
	int			fd = socket(listen->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int			one = 1;
	int			zero = 0;
	bool		in_use;

	if (fd < 0)
		return false;			/* MHD_start_daemon reports the real problem */
	(void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (listen->addr.ss_family == AF_INET6)
	{
		const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *) &listen->addr;

		/* [::] is dual stack (as StartListener makes it), so it meets IPv4 listeners too */
		(void) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY,
						  IN6_IS_ADDR_UNSPECIFIED(&v6->sin6_addr) ? &zero : &one, sizeof(int));
	}
	in_use = bind(fd, (const struct sockaddr *) &listen->addr, listen->addr_len) != 0 &&
		errno == EADDRINUSE;
	close(fd);
	return in_use;
}

/*
 * Set a loop up: its epoll set, its pool (connections opened now), its
 * listener(s).  False with loop->error set when something failed.
 */
static bool
StartEventLoop(EventLoop *loop, const DbPoolOptions *pool_options, unsigned int flags, int max_connections)
{
	AuthdServer *server = loop->server;

	/* before anything opens: a second instance must not share our ports */
	if (loop->first)
	{
		const ListenAddress *busy = AddressInUse(&server->config.listen) ? &server->config.listen :
			(server->config.health_enabled && AddressInUse(&server->config.health_listen)) ?
			&server->config.health_listen : NULL;

		if (busy != NULL)
		{
			snprintf(loop->error, sizeof(loop->error),
					 "cannot listen on %s: the address is already in use (another athena-authd running?)",
					 busy->text);
			return false;
		}
	}
	loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epoll_fd < 0)
	{
		snprintf(loop->error, sizeof(loop->error), "cannot create an epoll set");
		return false;
	}
	loop->pool = DbPoolCreate(pool_options, loop->error, sizeof(loop->error));
	if (loop->pool == NULL)
		return false;
	loop->opened = DbPoolStart(loop->pool, loop->epoll_fd, loop->error, sizeof(loop->error));
	if (!WatchFd(loop, loop->stop_fd, &loop->stop_fd))
	{
		snprintf(loop->error, sizeof(loop->error), "cannot watch the stop signal");
		return false;
	}
	loop->daemon = StartListener(loop, flags, &server->config.listen, HandleAuthRequest, RequestCompleted,
								 max_connections, server->config.max_connections_per_ip, &loop->auth_load);
	if (loop->daemon == NULL || !WatchDaemon(loop, loop->daemon, &loop->daemon))
	{
		snprintf(loop->error, sizeof(loop->error), "cannot listen on %s", server->config.listen.text);
		return false;
	}
	if (loop->first && server->config.health_enabled)
	{
		/* small limits: monitoring only */
		loop->health_daemon = StartListener(loop, flags, &server->config.health_listen, HandleHealthRequest,
											HealthRequestCompleted, HEALTH_MAX_CONNECTIONS,
											HEALTH_MAX_CONNECTIONS_PER_IP, &loop->health_load);
		if (loop->health_daemon == NULL || !WatchDaemon(loop, loop->health_daemon, &loop->health_daemon))
		{
			snprintf(loop->error, sizeof(loop->error), "cannot listen on %s (health_listen)",
					 server->config.health_listen.text);
			return false;
		}
	}
	return true;
}

/* Tear a loop down (after RunEventLoop returned, or when it never ran) */
static void
StopEventLoop(EventLoop *loop)
{
	if (loop->health_daemon != NULL)
		MHD_stop_daemon(loop->health_daemon);
	if (loop->daemon != NULL)
		MHD_stop_daemon(loop->daemon);
	DbPoolDestroy(loop->pool);
	if (loop->epoll_fd >= 0)
		close(loop->epoll_fd);
	if (loop->stop_fd >= 0)
		close(loop->stop_fd);
	loop->health_daemon = NULL;
	loop->daemon = NULL;
	loop->pool = NULL;
	loop->epoll_fd = -1;
	loop->stop_fd = -1;
}

/*
 * Loop index's share of total among count loops: total / count, one more
 * for the first total % count loops, so the shares add up to total
 */
static int
ShareOf(int total, int count, int index)
{
	return total / count + (index < total % count ? 1 : 0);
}

/*
 * Load the configuration, serve until SIGINT or SIGTERM, shut down
 * cleanly.  threads = N runs N loops, each with its share of the pool
 * and of max_connections; the main thread runs the first.
 */
int
main(int argc, char **argv)
{
	static AuthdServer server;
	char		error[512];
	EventLoop  *loops;
	int			loop_count;
	int			opened = 0;
	int			status = 0;
	bool		started = true;
	sigset_t	stop_signals;
	unsigned int flags = 0;
	DbPoolOptions pool_options;

	if (!LoadConfig(argc, argv, &server.config, error, sizeof(error)))
	{
		fprintf(stderr, "athena-authd: %s\n", error);
		return 2;
	}
	atomic_init(&server.fail_mode, (int) server.config.initial_fail_mode);
	loop_count = server.config.threads;	/* at most pool and max_connections (LoadConfig) */
	pool_options.dsn = server.config.dsn;
	pool_options.timeout_ms = server.config.timeout_ms;
	pool_options.timeout_mode = server.config.statement_timeout_mode;
	pool_options.named_statement = server.config.named_statement;
	pool_options.max_batch = server.config.pipeline_batch;
	pool_options.log = server.config.log_level != LOG_LEVEL_NONE;
	loops = calloc((size_t) loop_count, sizeof(EventLoop));
	if (loops == NULL)
	{
		fprintf(stderr, "athena-authd: out of memory\n");
		FreeConfig(&server.config);
		return 1;
	}

	/* threads inherit this mask, so only the first loop's signalfd sees them */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);
	/*
	 * Nothing to reload, and SIGHUP's default action would end the process
	 * at once, dropping every request in flight (no drain): the "reload"
	 * many service managers and log rotations send must not do that
	 */
	signal(SIGHUP, SIG_IGN);
	RaiseFileLimit(&server.config);
	if (server.config.log_level != LOG_LEVEL_NONE)
		flags |= MHD_USE_ERROR_LOG;
	if (!StartHeaderDeadlines(&server))
	{
		fprintf(stderr, "athena-authd: cannot start the header deadline thread\n");
		free(loops);
		FreeConfig(&server.config);
		return 1;
	}
	for (int i = 0; i < loop_count; i++)
		loops[i].epoll_fd = loops[i].stop_fd = -1;
	for (int i = 0; i < loop_count; i++)
	{
		EventLoop  *loop = &loops[i];

		loop->server = &server;
		loop->first = i == 0;
		loop->stop_fd = i == 0 ? signalfd(-1, &stop_signals, SFD_CLOEXEC) : eventfd(0, EFD_CLOEXEC);
		if (i == 0)
		{
			loop->others = loops + 1;
			loop->other_count = loop_count - 1;
		}
		/* pool and max_connections split exactly: the remainders go to the first loops */
		pool_options.size = ShareOf(server.config.pool_size, loop_count, i);
		if (!StartEventLoop(loop, &pool_options, flags, ShareOf(server.config.max_connections, loop_count, i)))
		{
			fprintf(stderr, "athena-authd: %s\n", loop->error);
			started = false;
			break;
		}
		opened += loop->opened;
	}
	if (started)
	{
		if (opened == 0 && server.config.log_level != LOG_LEVEL_NONE)
			fprintf(stderr, "athena-authd: database not reachable yet (will retry per request): %s\n",
					loops[0].error);
		LogStartup(&server, opened);
		for (int i = 1; i < loop_count; i++)
			loops[i].thread_started = pthread_create(&loops[i].thread, NULL, RunEventLoop, &loops[i]) == 0;
		RunEventLoop(&loops[0]);
		for (int i = 1; i < loop_count; i++)
			if (loops[i].thread_started)
				pthread_join(loops[i].thread, NULL);
	}
	else
		status = 1;
	for (int i = 0; i < loop_count; i++)
		StopEventLoop(&loops[i]);
	StopHeaderDeadlines(&server);
	free(loops);
	FreeConfig(&server.config);
	return status;
}
