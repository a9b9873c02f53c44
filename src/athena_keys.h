/*-------------------------------------------------------------------------
 * athena_keys.h
 *		Declarations shared by the backend parts of athena_keys.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_KEYS_H
#define ATHENA_KEYS_H

#include "postgres.h"

#include <sys/socket.h>

#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "lib/ilist.h"
#include "utils/array.h"
#include "utils/inet.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "ip_rules.h"
#include "key_digest.h"
#include "key_format.h"
#include "settings.h"

/*
 * Client names are limited to 256 characters where they are stored (the
 * tables' CHECKs and the admin functions count characters); the caches
 * take their longest byte form, so that every name an admin function
 * accepts is enforced.
 */
#define CLIENT_NAME_MAX_CHARS 256
#define CLIENT_NAME_MAX_LEN (CLIENT_NAME_MAX_CHARS * MAX_MULTIBYTE_CHAR_LEN)

/* The log pipeline, as the decision code sees it */
#include "log_routing.h"

/* A built rule set together with the arrays it borrows */
typedef struct OwnedRuleSet
{
	IpRuleSet	set;
	IpNet	   *rules;
	IpPrefixGroup *groups;
} OwnedRuleSet;

/* Enforcement and global IP rules that apply to one client */
typedef struct ClientPolicy
{
	char		client_name[CLIENT_NAME_MAX_LEN + 1];	/* hash key */
	bool		has_override;
	bool		enforce;
	OwnedRuleSet blacklist;
	OwnedRuleSet whitelist;
	int			load_slot;		/* used only while the config is loaded */
} ClientPolicy;

/* Global configuration: api_key_config, client overrides, global rules */
typedef struct EnforcementConfig
{
	bool		enforce_default;
	bool		fail_open;
	OwnedRuleSet blacklist_all;
	OwnedRuleSet whitelist_all;
	HTAB	   *clients;		/* client name -> ClientPolicy */
} EnforcementConfig;

/* What a decision needs to know about one public id */
typedef struct CachedKey
{
	char		public_id[PUBLIC_ID_MAX_LEN + 1];	/* hash key */
	bool		exists;
	pg_uuid_t	id;
	char	   *salt;
	unsigned char digest[KEY_DIGEST_LEN];
	bool		has_previous;
	char	   *previous_salt;
	unsigned char previous_digest[KEY_DIGEST_LEN];
	TimestampTz previous_valid_until;
	bool		is_active;
	bool		has_expiry;
	TimestampTz expires_at;
	char	   *client_name;	/* NULL = unbound */
	bool		learning;		/* virgin_mode AND NOT virgin_resolved */
	int			ngranted;
	char	  **granted;
	int		   *granted_len;
	ArrayType  *granted_array;
	OwnedRuleSet whitelist;
	OwnedRuleSet blacklist;
	TimestampTz last_used_at;	/* 0 = never, or unknown */
	bool		transient;		/* not in the cache: lives for this call */
	dlist_node	lru_node;
} CachedKey;

/* enforcement_cache.c */
extern const EnforcementConfig *GetEnforcementConfig(void);
extern const EnforcementConfig *PeekEnforcementConfig(void);
extern CachedKey *PeekCachedKey(const char *public_id, size_t len);
extern const ClientPolicy *LookupClientPolicy(const EnforcementConfig *config,
											  const char *client, size_t len);
extern CachedKey *LookupKey(const char *public_id, size_t len);
extern void RegisterCacheCallbacks(void);
extern void EnsureSpiConnected(void);
extern SPIPlanPtr PrepareKeptPlan(const char *sql, int nargs, const Oid *argtypes,
								  int cursor_options);
extern int	ExecuteKeptPlan(SPIPlanPtr plan, Datum *args, const char *nulls, long count);
extern void FreeKeptPlan(SPIPlanPtr plan);
extern void ResetSpiConnection(void);
extern void ResetSpiConnectionAfterError(void);
extern bool IpNetFromInet(const inet *value, bool as_host, IpNet *out);

/* learning.c */
typedef enum LearningOutcome
{
	LEARNING_RECORDED,
	LEARNING_LOCKED_IN,
	LEARNING_RESOLVED_WHITELISTED,
	LEARNING_RESOLVED_NOT_WHITELISTED,
	LEARNING_NOT_LEARNING,
	LEARNING_UNAVAILABLE
} LearningOutcome;

extern bool CanWrite(void);
extern LearningOutcome RecordLearningObservation(const pg_uuid_t *key_id,
												 const IpNet *host);
extern Datum InetDatumFromIpNet(const IpNet *net);

/* key_last_used.c */
extern bool KeyLastUsedStampDue(const CachedKey *key);
extern void TouchKeyLastUsed(CachedKey *key);

#endif
