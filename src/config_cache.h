/*-------------------------------------------------------------------------
 * config_cache.h
 *		The per-backend cache of the enforcement config: api_key_config,
 *		client overrides, the global IP rules and the clients' rate limits.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_CONFIG_CACHE_H
#define ATHENA_CONFIG_CACHE_H

#include "postgres.h"

#include "utils/hsearch.h"

#include "athena_keys.h"
#include "decision.h"
#include "ip_datums.h"

/* Enforcement and global IP rules that apply to one client */
typedef struct ClientPolicy
{
	const char *client_name;	/* hash key: a copy in the config's context */
	bool		has_override;
	bool		enforce;
	OwnedRuleSet blacklist;
	OwnedRuleSet whitelist;
	int			nrate_limits;	/* the limits shared by the client's keys */
	int			rate_limits_size;
	RateLimit  *rate_limits;
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

extern const EnforcementConfig *PeekEnforcementConfig(void);
extern const EnforcementConfig *ReadEnforcementConfig(void);
extern void ClientFactsOf(const EnforcementConfig *config, const char *client,
						  size_t len, ClientFacts *facts);

#endif
