/*-------------------------------------------------------------------------
 * config.h
 *		athena-authd settings: defaults, then an optional `key = value`
 *		file (-c FILE), then ATHENA_AUTHD_* environment variables.
 *-------------------------------------------------------------------------
 */
#ifndef AUTHD_CONFIG_H
#define AUTHD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "client_ip.h"
#include "db_pool.h"
#include "key_source.h"

/* How much athena-authd writes to stderr per request */
typedef enum LogLevel
{
	LOG_LEVEL_NONE,				/* nothing, not even startup */
	LOG_LEVEL_ERRORS,			/* requests the database could not decide */
	LOG_LEVEL_ALL				/* one line for every request */
} LogLevel;

/* What to answer when the database cannot decide */
typedef enum FailMode
{
	FAIL_CLOSED,				/* 503 API key validation unavailable */
	FAIL_OPEN					/* let the request through */
} FailMode;

/* A host:port to listen on */
typedef struct ListenAddress
{
	char		text[256];		/* as configured, for messages */
	struct sockaddr_storage addr;
	socklen_t	addr_len;
} ListenAddress;

typedef struct AuthdConfig
{
	ListenAddress listen;		/* authorization requests */
	bool		health_enabled;
	ListenAddress health_listen;	/* /healthz and /metrics */
	char	   *dsn;			/* libpq conninfo (key=value or URI) */
	int			pool_size;		/* persistent database connections */
	int			threads;		/* HTTP worker threads */
	char	   *trusted_proxies_text;
	IpCidrList	trusted_proxies;
	int			timeout_ms;		/* whole budget of one decision */
	LogLevel	log_level;
	FailMode	initial_fail_mode;	/* until the database tells us */
	bool		trust_real_ip;	/* believe X-Real-IP from trusted proxies */
	KeySourceList key_sources;
	unsigned int allow_status;	/* 200 or 204 */
	int			max_connections;
	int			max_connections_per_ip;
	int			header_timeout_s;	/* until a new connection's first request */
	int			idle_timeout_s; /* keep-alive connections between requests */
	StatementTimeoutMode statement_timeout_mode;
	bool		named_statement;
	int			pipeline_batch;	/* calls per round trip on one connection */
} AuthdConfig;

extern bool LoadConfig(int argc, char **argv, AuthdConfig *config, char *error, size_t error_len);
extern void FreeConfig(AuthdConfig *config);
extern const char *FailModeName(FailMode mode);
extern bool ParseFailMode(const char *text, FailMode *out);

#endif							/* AUTHD_CONFIG_H */
