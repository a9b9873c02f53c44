/*-------------------------------------------------------------------------
 * config.c
 *		Load athena-authd settings: built-in defaults, then the file given
 *		with -c (lines of `key = value`, # comments), then environment
 *		variables ATHENA_AUTHD_<KEY>, which win.
 *
 * Keys (file name / environment variable):
 *	listen           ATHENA_AUTHD_LISTEN           host:port, [v6]:port (127.0.0.1:9099)
 *	dsn              ATHENA_AUTHD_DSN              libpq conninfo ("" = libpq defaults)
 *	pool             ATHENA_AUTHD_POOL             database connections (4)
 *	threads          ATHENA_AUTHD_THREADS          event loops, each its own share of the pool (1)
 *	trusted_proxies  ATHENA_AUTHD_TRUSTED_PROXIES  CIDR list (127.0.0.1/32,::1/128)
 *	timeout_ms       ATHENA_AUTHD_TIMEOUT_MS       per-decision budget (2000)
 *	log              ATHENA_AUTHD_LOG              none | errors | all (errors)
 *	fail_mode        ATHENA_AUTHD_FAIL_MODE        fail_closed | fail_open, used until
 *	                                               the first successful call (fail_closed)
 *	health_listen    ATHENA_AUTHD_HEALTH_LISTEN    /healthz and /metrics (127.0.0.1:9098; off)
 *	trust_real_ip    ATHENA_AUTHD_TRUST_REAL_IP    believe X-Real-IP from trusted proxies (off)
 *	key_sources      ATHENA_AUTHD_KEY_SOURCES      x-athena-key, x-api-key, bearer (x-athena-key)
 *	allow_status     ATHENA_AUTHD_ALLOW_STATUS     200 | 204 (200)
 *	max_connections  ATHENA_AUTHD_MAX_CONNECTIONS  open HTTP connections in all (1000)
 *	max_connections_per_ip  ATHENA_AUTHD_MAX_CONNECTIONS_PER_IP  per peer address (128)
 *	header_timeout_s ATHENA_AUTHD_HEADER_TIMEOUT_S a new connection's request must arrive (5)
 *	idle_timeout_s   ATHENA_AUTHD_IDLE_TIMEOUT_S   keep-alive idle connections closed after (60)
 *	statement_timeout ATHENA_AUTHD_STATEMENT_TIMEOUT options | local | off (options)
 *	prepared_statement ATHENA_AUTHD_PREPARED_STATEMENT named | unnamed (named)
 *	pipeline_batch   ATHENA_AUTHD_PIPELINE_BATCH   calls per round trip on one connection,
 *	                                               1 = one at a time, at most 64 (one
 *	                                               athena_gateway_verdicts call) (32)
 *-------------------------------------------------------------------------
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Raw setting values, as text, before validation */
typedef struct RawSettings
{
	char	   *listen;
	char	   *dsn;
	char	   *pool;
	char	   *threads;
	char	   *trusted_proxies;
	char	   *timeout_ms;
	char	   *log;
	char	   *fail_mode;
	char	   *health_listen;
	char	   *trust_real_ip;
	char	   *key_sources;
	char	   *allow_status;
	char	   *max_connections;
	char	   *max_connections_per_ip;
	char	   *header_timeout_s;
	char	   *idle_timeout_s;
	char	   *statement_timeout;
	char	   *prepared_statement;
	char	   *pipeline_batch;
} RawSettings;

/* One known key: its file name and where its raw value lives */
typedef struct SettingSlot
{
	const char *file_key;
	const char *env_name;
	size_t		offset;
} SettingSlot;

static const SettingSlot setting_slots[] = {
	{"listen", "ATHENA_AUTHD_LISTEN", offsetof(RawSettings, listen)},
	{"dsn", "ATHENA_AUTHD_DSN", offsetof(RawSettings, dsn)},
	{"pool", "ATHENA_AUTHD_POOL", offsetof(RawSettings, pool)},
	{"threads", "ATHENA_AUTHD_THREADS", offsetof(RawSettings, threads)},
	{"trusted_proxies", "ATHENA_AUTHD_TRUSTED_PROXIES", offsetof(RawSettings, trusted_proxies)},
	{"timeout_ms", "ATHENA_AUTHD_TIMEOUT_MS", offsetof(RawSettings, timeout_ms)},
	{"log", "ATHENA_AUTHD_LOG", offsetof(RawSettings, log)},
	{"fail_mode", "ATHENA_AUTHD_FAIL_MODE", offsetof(RawSettings, fail_mode)},
	{"health_listen", "ATHENA_AUTHD_HEALTH_LISTEN", offsetof(RawSettings, health_listen)},
	{"trust_real_ip", "ATHENA_AUTHD_TRUST_REAL_IP", offsetof(RawSettings, trust_real_ip)},
	{"key_sources", "ATHENA_AUTHD_KEY_SOURCES", offsetof(RawSettings, key_sources)},
	{"allow_status", "ATHENA_AUTHD_ALLOW_STATUS", offsetof(RawSettings, allow_status)},
	{"max_connections", "ATHENA_AUTHD_MAX_CONNECTIONS", offsetof(RawSettings, max_connections)},
	{"max_connections_per_ip", "ATHENA_AUTHD_MAX_CONNECTIONS_PER_IP", offsetof(RawSettings, max_connections_per_ip)},
	{"header_timeout_s", "ATHENA_AUTHD_HEADER_TIMEOUT_S", offsetof(RawSettings, header_timeout_s)},
	{"idle_timeout_s", "ATHENA_AUTHD_IDLE_TIMEOUT_S", offsetof(RawSettings, idle_timeout_s)},
	{"statement_timeout", "ATHENA_AUTHD_STATEMENT_TIMEOUT", offsetof(RawSettings, statement_timeout)},
	{"prepared_statement", "ATHENA_AUTHD_PREPARED_STATEMENT", offsetof(RawSettings, prepared_statement)},
	{"pipeline_batch", "ATHENA_AUTHD_PIPELINE_BATCH", offsetof(RawSettings, pipeline_batch)},
};

/* Defaults, in setting_slots order (NULL: no default) */
static const char *const setting_defaults[] = {
	"127.0.0.1:9099", "", "4", NULL, "127.0.0.1/32,::1/128", "2000", "errors", "fail_closed",
	"127.0.0.1:9098", "off", "x-athena-key", "200", "1000", "128", "5", "60", "options", "named", "32",
};

#define SETTING_COUNT (sizeof(setting_slots) / sizeof(setting_slots[0]))

_Static_assert(sizeof(setting_defaults) / sizeof(setting_defaults[0]) == SETTING_COUNT,
			   "one default per setting");

/* Address of the raw value a slot refers to */
static char **
SlotValue(RawSettings *raw, const SettingSlot *slot)
{
	return (char **) ((char *) raw + slot->offset);
}

/* Replace a raw value with a copy of value */
static bool
SetRawValue(char **target, const char *value)
{
	char	   *copy = strdup(value);

	if (copy == NULL)
		return false;
	free(*target);
	*target = copy;
	return true;
}

/* Free every raw value */
static void
FreeRawSettings(RawSettings *raw)
{
	for (size_t i = 0; i < SETTING_COUNT; i++)
	{
		free(*SlotValue(raw, &setting_slots[i]));
		*SlotValue(raw, &setting_slots[i]) = NULL;
	}
}

/* Strip leading and trailing white space in place; returns the new start */
static char *
TrimInPlace(char *text)
{
	char	   *end;

	while (isspace((unsigned char) *text))
		text++;
	end = text + strlen(text);
	while (end > text && isspace((unsigned char) end[-1]))
		end--;
	*end = '\0';
	return text;
}

/* Read `key = value` lines from path into raw; unknown keys are errors */
static bool
ReadConfigFile(const char *path, RawSettings *raw, char *error, size_t error_len)
{
	FILE	   *file = fopen(path, "r");
	char		line[4096];
	int			line_number = 0;

	if (file == NULL)
	{
		snprintf(error, error_len, "cannot open config file \"%s\": %s", path, strerror(errno));
		return false;
	}
	while (fgets(line, sizeof(line), file) != NULL)
	{
		char	   *text = TrimInPlace(line);
		char	   *equals;
		char	   *key;
		char	   *value;
		size_t		value_len;
		bool		known = false;

		line_number++;
		if (*text == '\0' || *text == '#')
			continue;
		equals = strchr(text, '=');
		if (equals == NULL)
		{
			snprintf(error, error_len, "%s:%d: expected key = value", path, line_number);
			fclose(file);
			return false;
		}
		*equals = '\0';
		key = TrimInPlace(text);
		value = TrimInPlace(equals + 1);
		value_len = strlen(value);
		if (value_len >= 2 && value[0] == '"' && value[value_len - 1] == '"')
		{
			value[value_len - 1] = '\0';
			value++;
		}
		for (size_t i = 0; i < SETTING_COUNT; i++)
		{
			if (strcmp(key, setting_slots[i].file_key) == 0)
			{
				if (!SetRawValue(SlotValue(raw, &setting_slots[i]), value))
				{
					snprintf(error, error_len, "out of memory");
					fclose(file);
					return false;
				}
				known = true;
			}
		}
		if (!known)
		{
			snprintf(error, error_len, "%s:%d: unknown setting \"%.64s\"", path, line_number, key);
			fclose(file);
			return false;
		}
	}
	fclose(file);
	return true;
}

/* Parse a decimal integer within [min, max] */
static bool
ParseBoundedInt(const char *name, const char *text, int min, int max, int *out,
				char *error, size_t error_len)
{
	char	   *end;
	long		value;

	errno = 0;
	value = strtol(text, &end, 10);
	while (isspace((unsigned char) *end))
		end++;
	if (errno != 0 || end == text || *end != '\0' || value < min || value > max)
	{
		snprintf(error, error_len, "%s must be an integer from %d to %d, not \"%.64s\"",
				 name, min, max, text);
		return false;
	}
	*out = (int) value;
	return true;
}

/* True when text is a decimal port number from 1 to 65535 */
static bool
IsPortNumber(const char *text)
{
	long		value = 0;

	if (text[0] == '\0' || strlen(text) > 5)
		return false;
	for (const char *p = text; *p; p++)
	{
		if (*p < '0' || *p > '9')
			return false;
		value = value * 10 + (*p - '0');
	}
	return value >= 1 && value <= 65535;
}

/* True when a socket address is the wildcard (0.0.0.0 or ::) */
static bool
IsWildcardAddress(const struct sockaddr_storage *addr)
{
	if (addr->ss_family == AF_INET)
		return ((const struct sockaddr_in *) addr)->sin_addr.s_addr == htonl(INADDR_ANY);
	if (addr->ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *) addr)->sin6_addr);
	return false;
}

/* The port of a socket address (host order), 0 for another family */
static int
AddressPort(const struct sockaddr_storage *addr)
{
	if (addr->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *) addr)->sin_port);
	if (addr->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *) addr)->sin6_port);
	return 0;
}

/*
 * True when two listen addresses would take the same connections: the
 * same port, and the same address or a wildcard on either side.  Both
 * sockets set SO_REUSEPORT, so the kernel would not refuse the second
 * bind; it would split connections between the two listeners.
 */
static bool
ListenAddressesOverlap(const ListenAddress *a, const ListenAddress *b)
{
	if (AddressPort(&a->addr) != AddressPort(&b->addr))
		return false;
	if (IsWildcardAddress(&a->addr) || IsWildcardAddress(&b->addr))
		return true;
	if (a->addr.ss_family != b->addr.ss_family)
		return false;
	if (a->addr.ss_family == AF_INET)
		return ((const struct sockaddr_in *) &a->addr)->sin_addr.s_addr ==
			((const struct sockaddr_in *) &b->addr)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *) &a->addr)->sin6_addr,
				  &((const struct sockaddr_in6 *) &b->addr)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* Parse host:port or [v6]:port into a socket address */
static bool
ParseListenAddress(const char *text, ListenAddress *target, char *error, size_t error_len)
{
	char		host[256];
	const char *port;
	const char *colon;
	struct addrinfo hints;
	struct addrinfo *found = NULL;
	int			rc;

	if (text[0] == '[')
	{
		const char *close = strchr(text, ']');

		if (close == NULL || close[1] != ':' || (size_t) (close - text - 1) >= sizeof(host))
			goto bad;
		memcpy(host, text + 1, (size_t) (close - text - 1));
		host[close - text - 1] = '\0';
		port = close + 2;
	}
	else
	{
		colon = strrchr(text, ':');
		if (colon == NULL || (size_t) (colon - text) >= sizeof(host) || memchr(text, ':', (size_t) (colon - text)))
			goto bad;
		memcpy(host, text, (size_t) (colon - text));
		host[colon - text] = '\0';
		port = colon + 1;
	}
	if (host[0] == '\0' || port[0] == '\0')
		goto bad;
	if (!IsPortNumber(port))
	{
		/* getaddrinfo would take 99999 and bind port 99999 mod 65536 */
		snprintf(error, error_len, "the port of listen address \"%.200s\" must be from 1 to 65535", text);
		return false;
	}

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, port, &hints, &found);
	if (rc != 0 || found == NULL)
	{
		snprintf(error, error_len, "cannot resolve listen address \"%.200s\": %s", text, gai_strerror(rc));
		return false;
	}
	memcpy(&target->addr, found->ai_addr, found->ai_addrlen);
	target->addr_len = found->ai_addrlen;
	freeaddrinfo(found);
	snprintf(target->text, sizeof(target->text), "%s", text);
	return true;

bad:
	snprintf(error, error_len, "listen must be host:port or [ipv6]:port, not \"%.200s\"", text);
	return false;
}

/* Name of a fail mode, as the database spells it */
const char *
FailModeName(FailMode mode)
{
	return mode == FAIL_OPEN ? "fail_open" : "fail_closed";
}

/* Parse 'fail_closed' or 'fail_open' */
bool
ParseFailMode(const char *text, FailMode *out)
{
	if (text == NULL)
		return false;
	if (strcmp(text, "fail_closed") == 0)
		*out = FAIL_CLOSED;
	else if (strcmp(text, "fail_open") == 0)
		*out = FAIL_OPEN;
	else
		return false;
	return true;
}

/*
 * Parse one of a NULL-terminated list of words (case-insensitive) into
 * its index; the message lists the choices.
 */
static bool
ParseChoice(const char *name, const char *text, const char *const *choices, int *out,
			char *error, size_t error_len)
{
	char		expected[200] = "";
	size_t		used = 0;

	for (int i = 0; choices[i] != NULL; i++)
	{
		if (strcasecmp(text, choices[i]) == 0)
		{
			*out = i;
			return true;
		}
		used += (size_t) snprintf(expected + used, sizeof(expected) - used, "%s%s",
								  i == 0 ? "" : choices[i + 1] ? ", " : " or ", choices[i]);
		if (used >= sizeof(expected))
			break;
	}
	snprintf(error, error_len, "%s must be %s, not \"%.64s\"", name, expected, text);
	return false;
}

/* Validate raw values into config */
static bool
ApplyRawSettings(const RawSettings *raw, AuthdConfig *config, char *error, size_t error_len)
{
	static const char *const log_levels[] = {"none", "errors", "all", NULL};
	static const char *const switches[] = {"off", "on", NULL};
	static const char *const allow_statuses[] = {"200", "204", NULL};
	static const char *const timeout_modes[] = {"options", "local", "off", NULL};
	static const char *const statement_kinds[] = {"named", "unnamed", NULL};
	char		cidr_error[256];
	char		list_error[256];
	int			choice;

	if (!ParseListenAddress(raw->listen, &config->listen, error, error_len))
		return false;
	config->health_enabled = strcasecmp(raw->health_listen, "off") != 0 && raw->health_listen[0] != '\0';
	if (config->health_enabled &&
		!ParseListenAddress(raw->health_listen, &config->health_listen, error, error_len))
		return false;
	if (config->health_enabled && ListenAddressesOverlap(&config->listen, &config->health_listen))
	{
		snprintf(error, error_len,
				 "health_listen \"%.100s\" must not share the port of listen \"%.100s\" "
				 "(the two listeners would split each other's connections)",
				 config->health_listen.text, config->listen.text);
		return false;
	}
	if (!ParseChoice("trust_real_ip", raw->trust_real_ip, switches, &choice, error, error_len))
		return false;
	config->trust_real_ip = choice == 1;
	if (!ParseChoice("allow_status", raw->allow_status, allow_statuses, &choice, error, error_len))
		return false;
	config->allow_status = choice == 0 ? 200 : 204;
	if (!ParseChoice("statement_timeout", raw->statement_timeout, timeout_modes, &choice, error, error_len))
		return false;
	config->statement_timeout_mode = (StatementTimeoutMode) choice;
	if (!ParseChoice("prepared_statement", raw->prepared_statement, statement_kinds, &choice, error, error_len))
		return false;
	config->named_statement = choice == 0;
	if (!ParseBoundedInt("max_connections", raw->max_connections, 1, 100000,
						 &config->max_connections, error, error_len) ||
		!ParseBoundedInt("max_connections_per_ip", raw->max_connections_per_ip, 1, 100000,
						 &config->max_connections_per_ip, error, error_len) ||
		!ParseBoundedInt("header_timeout_s", raw->header_timeout_s, 1, 3600,
						 &config->header_timeout_s, error, error_len) ||
		!ParseBoundedInt("idle_timeout_s", raw->idle_timeout_s, 1, 86400,
						 &config->idle_timeout_s, error, error_len))
		return false;
	if (!ParseKeySources(raw->key_sources, &config->key_sources, list_error, sizeof(list_error)))
	{
		snprintf(error, error_len, "key_sources: %s", list_error);
		return false;
	}
	config->dsn = strdup(raw->dsn);
	config->trusted_proxies_text = strdup(raw->trusted_proxies);
	if (config->dsn == NULL || config->trusted_proxies_text == NULL)
	{
		snprintf(error, error_len, "out of memory");
		return false;
	}
	if (!ParseBoundedInt("pool", raw->pool, 1, 256, &config->pool_size, error, error_len))
		return false;
	config->threads = 1;		/* requests wait for the database suspended */
	if (raw->threads != NULL &&
		!ParseBoundedInt("threads", raw->threads, 1, 1024, &config->threads, error, error_len))
		return false;
	if (config->threads > config->pool_size)
	{
		snprintf(error, error_len,
				 "threads (%d) must not exceed pool (%d): each event loop needs a database connection of its own",
				 config->threads, config->pool_size);
		return false;
	}
	if (config->threads > config->max_connections)
	{
		snprintf(error, error_len,
				 "threads (%d) must not exceed max_connections (%d): each event loop takes its share",
				 config->threads, config->max_connections);
		return false;
	}
	if (!ParseBoundedInt("timeout_ms", raw->timeout_ms, 10, 600000, &config->timeout_ms, error, error_len))
		return false;
	if (!ParseBoundedInt("pipeline_batch", raw->pipeline_batch, 1, 64, &config->pipeline_batch, error,
						 error_len))
		return false;
	if (!ParseChoice("log", raw->log, log_levels, &choice, error, error_len))
		return false;
	config->log_level = (LogLevel) choice;
	if (!ParseFailMode(raw->fail_mode, &config->initial_fail_mode))
	{
		snprintf(error, error_len, "fail_mode must be fail_closed or fail_open, not \"%.64s\"", raw->fail_mode);
		return false;
	}
	if (!ParseCidrList(raw->trusted_proxies, &config->trusted_proxies, cidr_error, sizeof(cidr_error)))
	{
		snprintf(error, error_len, "trusted_proxies: %s", cidr_error);
		return false;
	}
	return true;
}

/*
 * Fill config from defaults, the -c file and the environment.  Returns
 * false with a message in error when anything is invalid.
 */
bool
LoadConfig(int argc, char **argv, AuthdConfig *config, char *error, size_t error_len)
{
	RawSettings raw;
	const char *config_path = NULL;
	bool		ok = false;
	int			option;

	memset(config, 0, sizeof(*config));
	memset(&raw, 0, sizeof(raw));

	while ((option = getopt(argc, argv, "c:h")) != -1)
	{
		if (option == 'c')
			config_path = optarg;
		else
		{
			snprintf(error, error_len, "usage: %s [-c CONFIG_FILE]", argv[0]);
			return false;
		}
	}
	if (optind < argc)
	{
		snprintf(error, error_len, "unexpected argument \"%.64s\"; usage: %s [-c CONFIG_FILE]",
				 argv[optind], argv[0]);
		return false;
	}

	for (size_t i = 0; i < SETTING_COUNT; i++)
	{
		if (setting_defaults[i] != NULL &&
			!SetRawValue(SlotValue(&raw, &setting_slots[i]), setting_defaults[i]))
		{
			snprintf(error, error_len, "out of memory");
			goto done;
		}
	}
	if (config_path != NULL && !ReadConfigFile(config_path, &raw, error, error_len))
		goto done;
	for (size_t i = 0; i < SETTING_COUNT; i++)
	{
		const char *value = getenv(setting_slots[i].env_name);

		if (value != NULL && !SetRawValue(SlotValue(&raw, &setting_slots[i]), value))
		{
			snprintf(error, error_len, "out of memory");
			goto done;
		}
	}
	ok = ApplyRawSettings(&raw, config, error, error_len);

done:
	FreeRawSettings(&raw);
	if (!ok)
		FreeConfig(config);
	return ok;
}

/* Release what LoadConfig allocated */
void
FreeConfig(AuthdConfig *config)
{
	free(config->dsn);
	free(config->trusted_proxies_text);
	config->dsn = NULL;
	config->trusted_proxies_text = NULL;
	FreeCidrList(&config->trusted_proxies);
}
