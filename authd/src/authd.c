/*-------------------------------------------------------------------------
 * authd.c
 *		athena-authd: a forward-auth sidecar for nginx auth_request,
 *		Traefik forwardAuth and Envoy ext_authz (HTTP mode).
 *
 * Each request is decided by one call of athena_keys.athena_authenticate()
 * with the X-Athena-Key, X-Athena-Client and X-Athena-Rights headers and
 * the caller IP (see client_ip.c).  Allowed: 204 with the key's identity
 * in X-Athena-Key-Id, X-Athena-Public-Id and X-Athena-Client.  Denied:
 * the status the database chose with {"status":"error","message":...}.
 * nginx's auth_request discards the subrequest body and turns any status
 * but 2xx/401/403 into 500, so the same JSON is also sent in the
 * X-Athena-Error header for nginx to replay (see README.md).
 *
 * When the database cannot decide, the fail mode the database reported
 * on its last successful call applies: 503 "API key validation
 * unavailable" (fail_closed) or 204 with X-Athena-Degraded (fail_open).
 *-------------------------------------------------------------------------
 */
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "client_ip.h"
#include "config.h"
#include "db_pool.h"
#include "text_util.h"

#define UNAVAILABLE_REASON "API key validation unavailable"

/* Everything a request handler needs */
typedef struct AuthdServer
{
	AuthdConfig config;
	DbPool	   *pool;
	atomic_int	fail_mode;		/* FailMode last reported by the database */
} AuthdServer;

/* The request headers athena-authd reads, gathered in one pass */
typedef struct RequestHeaders
{
	const char *key;			/* first X-Athena-Key */
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
} RequestOutcome;

/* Milliseconds on the monotonic clock, with fractions */
static double
MonotonicMs(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double) now.tv_sec * 1000.0 + (double) now.tv_nsec / 1e6;
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
		if (headers->key == NULL)
			headers->key = value;
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
	if (!ResolveClientIp(&peer, &server->config.trusted_proxies, real_ip,
						 headers->forwarded_for, &client_ip))
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

/* Queue a response and release our reference to it */
static enum MHD_Result
QueueAndRelease(struct MHD_Connection *connection, unsigned int status, struct MHD_Response *response)
{
	enum MHD_Result result;

	if (response == NULL)
		return MHD_NO;
	MHD_add_response_header(response, "Cache-Control", "no-store");
	result = MHD_queue_response(connection, status, response);
	MHD_destroy_response(response);
	return result;
}

/* Answer an allowed request: 204 with the key's identity headers */
static enum MHD_Result
AnswerAllowed(struct MHD_Connection *connection, const AuthVerdict *verdict, bool degraded)
{
	struct MHD_Response *response = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);

	if (response == NULL)
		return MHD_NO;
	if (verdict != NULL)
	{
		AddHeaderIfSafe(response, "X-Athena-Key-Id", verdict->key_id);
		AddHeaderIfSafe(response, "X-Athena-Public-Id", verdict->public_id);
		AddHeaderIfSafe(response, "X-Athena-Client", verdict->client_name);
	}
	if (degraded)
		MHD_add_response_header(response, "X-Athena-Degraded", "fail_open");
	return QueueAndRelease(connection, MHD_HTTP_NO_CONTENT, response);
}

/* Answer a denied request: status with the JSON error body (and header) */
static enum MHD_Result
AnswerDenied(struct MHD_Connection *connection, unsigned int status, const char *reason)
{
	char	   *body = BuildErrorBody(reason);
	struct MHD_Response *response;

	if (body == NULL)
		return MHD_NO;
	response = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (response == NULL)
	{
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(response, "Content-Type", "application/json");
	AddHeaderIfSafe(response, "X-Athena-Error", body);
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
			 "public_id=%s ms=%.2f%s%s%s\n",
			 timestamp, now.tv_nsec / 1000000, method_text, outcome->status, outcome->decision,
			 reason, ip_text[0] ? ip_text : "-", client, public_id, elapsed_ms,
			 is_error ? " error=\"" : "", is_error ? db_error : "", is_error ? "\"" : "");
	fputs(line, stderr);
}

/* Decide one forward-auth request through the database */
static enum MHD_Result
AnswerAuthRequest(AuthdServer *server, struct MHD_Connection *connection, const char *method)
{
	double		started_ms = MonotonicMs();
	RequestHeaders headers;
	RequestOutcome outcome;
	AuthQuery	query;
	AuthVerdict verdict;
	char		ip_text[IP_TEXT_MAX] = "";
	char		db_error[512];
	char	   *rights;
	enum MHD_Result result;

	memset(&headers, 0, sizeof(headers));
	memset(&outcome, 0, sizeof(outcome));
	MHD_get_connection_values(connection, MHD_HEADER_KIND, CollectHeader, &headers);
	rights = NormalizeRightsHeader(headers.rights);
	if (headers.out_of_memory || rights == NULL)
	{
		free(headers.rights);
		free(headers.forwarded_for);
		free(rights);
		return MHD_NO;
	}

	query.key = headers.key;
	query.client = (headers.client != NULL && headers.client[0] != '\0') ? headers.client : NULL;
	query.ip = ResolveRequestIp(server, connection, &headers, ip_text) ? ip_text : NULL;
	query.rights = rights;

	if (DbPoolAuthenticate(server->pool, &query, &verdict, db_error, sizeof(db_error)))
	{
		FailMode	reported;

		if (ParseFailMode(verdict.fail_mode, &reported))
			atomic_store(&server->fail_mode, (int) reported);
		outcome.reason = verdict.reason;
		outcome.public_id = verdict.public_id;
		if (verdict.allowed)
		{
			outcome.status = MHD_HTTP_NO_CONTENT;
			outcome.decision = "allow";
			result = AnswerAllowed(connection, &verdict, false);
		}
		else
		{
			outcome.status = (verdict.status >= 400 && verdict.status <= 599) ?
				(unsigned int) verdict.status : MHD_HTTP_FORBIDDEN;
			outcome.decision = "deny";
			result = AnswerDenied(connection, outcome.status,
								  verdict.reason ? verdict.reason : "Access denied");
		}
	}
	else
	{
		outcome.db_error = db_error;
		if (atomic_load(&server->fail_mode) == FAIL_OPEN)
		{
			outcome.status = MHD_HTTP_NO_CONTENT;
			outcome.decision = "fail_open";
			result = AnswerAllowed(connection, NULL, true);
		}
		else
		{
			outcome.status = MHD_HTTP_SERVICE_UNAVAILABLE;
			outcome.decision = "unavailable";
			outcome.reason = UNAVAILABLE_REASON;
			result = AnswerDenied(connection, outcome.status, UNAVAILABLE_REASON);
		}
	}

	LogRequest(server, method, ip_text, &headers, &outcome, MonotonicMs() - started_ms);
	FreeAuthVerdict(&verdict);
	free(headers.rights);
	free(headers.forwarded_for);
	free(rights);
	return result;
}

/* GET /healthz: 200 "ok" when a database connection works, else 503 */
static enum MHD_Result
AnswerHealthCheck(AuthdServer *server, struct MHD_Connection *connection)
{
	char		error[512];
	bool		healthy = DbPoolHealthCheck(server->pool, error, sizeof(error));
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

/*
 * MHD access handler.  MHD calls it once with the headers, then for each
 * chunk of body (which forward auth ignores), then once more at the end,
 * where we answer.
 */
static enum MHD_Result
HandleRequest(void *cls, struct MHD_Connection *connection, const char *url,
			  const char *method, const char *version, const char *upload_data,
			  size_t *upload_data_size, void **request_state)
{
	static int	headers_seen;

	(void) version;
	(void) upload_data;
	if (*request_state == NULL)
	{
		*request_state = &headers_seen;
		return MHD_YES;
	}
	if (*upload_data_size != 0)
	{
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (strcmp(url, "/healthz") == 0 && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0))
		return AnswerHealthCheck(cls, connection);
	return AnswerAuthRequest(cls, connection, method);
}

/* Describe the running configuration on stderr */
static void
LogStartup(const AuthdServer *server, int opened)
{
	if (server->config.log_level == LOG_LEVEL_NONE)
		return;
	fprintf(stderr,
			"athena-authd listening on %s; pool %d (%d open), threads %d, timeout %d ms, "
			"trusted proxies [%s], fail mode until first decision %s\n",
			server->config.listen_text, server->config.pool_size, opened, server->config.threads,
			server->config.timeout_ms, server->config.trusted_proxies_text,
			FailModeName(server->config.initial_fail_mode));
}

/* Load the configuration, serve until SIGINT or SIGTERM, shut down cleanly */
int
main(int argc, char **argv)
{
	static AuthdServer server;
	char		error[512];
	sigset_t	stop_signals;
	int			received_signal;
	int			opened;
	unsigned int flags;
	struct MHD_Daemon *daemon;

	if (!LoadConfig(argc, argv, &server.config, error, sizeof(error)))
	{
		fprintf(stderr, "athena-authd: %s\n", error);
		return 2;
	}
	atomic_init(&server.fail_mode, (int) server.config.initial_fail_mode);
	server.pool = DbPoolCreate(server.config.dsn, server.config.pool_size,
							   server.config.timeout_ms, error, sizeof(error));
	if (server.pool == NULL)
	{
		fprintf(stderr, "athena-authd: %s\n", error);
		FreeConfig(&server.config);
		return 2;
	}

	/* worker threads inherit this mask, so only sigwait() below sees them */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	opened = DbPoolWarmUp(server.pool, error, sizeof(error));
	if (opened == 0 && server.config.log_level != LOG_LEVEL_NONE)
		fprintf(stderr, "athena-authd: database not reachable yet (will retry per request): %s\n", error);

	flags = MHD_USE_AUTO_INTERNAL_THREAD;
	if (server.config.log_level != LOG_LEVEL_NONE)
		flags |= MHD_USE_ERROR_LOG;
	if (server.config.listen_addr.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	daemon = MHD_start_daemon(flags, 0, NULL, NULL, HandleRequest, &server,
							  MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &server.config.listen_addr,
							  MHD_OPTION_THREAD_POOL_SIZE, (unsigned int) server.config.threads,
							  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 60,
							  MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int) 1,
							  MHD_OPTION_END);
	if (daemon == NULL)
	{
		fprintf(stderr, "athena-authd: cannot listen on %s\n", server.config.listen_text);
		DbPoolDestroy(server.pool);
		FreeConfig(&server.config);
		return 1;
	}
	LogStartup(&server, opened);

	sigwait(&stop_signals, &received_signal);
	if (server.config.log_level != LOG_LEVEL_NONE)
		fprintf(stderr, "athena-authd: signal %d, shutting down\n", received_signal);
	MHD_stop_daemon(daemon);
	DbPoolDestroy(server.pool);
	FreeConfig(&server.config);
	return 0;
}
