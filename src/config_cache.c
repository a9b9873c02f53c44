/*-------------------------------------------------------------------------
 * config_cache.c
 *		The per-backend cache of the enforcement config: api_key_config,
 *		client overrides, the global IP rules and the clients' rate limits.
 *
 * Read with the extension owner's rights (request_effects.c) when stale,
 * peeked at with the caller's.  cache_invalidation.c says when it is
 * stale; a stale config is freed at the next read, never while a call may
 * still hold it.
 *-------------------------------------------------------------------------
 */
#include "config_cache.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "cache_invalidation.h"
#include "rate_limit_rows.h"
#include "spi_plans.h"

static MemoryContext config_context = NULL;
static EnforcementConfig *cached_config = NULL;
static uint64 cached_config_generation = 0;

static SPIPlanPtr config_plan = NULL;
static SPIPlanPtr client_config_plan = NULL;
static SPIPlanPtr global_rules_plan = NULL;
static SPIPlanPtr client_limits_plan = NULL;

/*
 * The hash of a client policy's key, a pointer to the client's name: a
 * name's own length, not the longest a name may have, so that an entry
 * costs its name and not a kilobyte (50,000 overrides took 56 MB).
 */
static uint32
ClientNameHash(const void *key, Size keysize)
{
	return string_hash(*(const char *const *) key, CLIENT_NAME_MAX_LEN + 1);
}

/* Compare two client policies' keys (pointers to names) by their names. */
static int
ClientNameMatch(const void *key1, const void *key2, Size keysize)
{
	return strcmp(*(const char *const *) key1, *(const char *const *) key2);
}

/* Find the policy of a client name (a C string) in config, or NULL. */
static const ClientPolicy *
FindClientPolicy(const EnforcementConfig *config, const char *name)
{
	return hash_search(config->clients, &name, HASH_FIND, NULL);
}

/*
 * The policy entry of a client name in config, created empty when absent
 * with a copy of the name in target; NULL for a name no rule could be
 * stored under.
 */
static ClientPolicy *
EnterClientPolicy(EnforcementConfig *config, const char *name,
				  MemoryContext target)
{
	ClientPolicy *policy;
	bool		found;

	if (name == NULL || strlen(name) > CLIENT_NAME_MAX_LEN)
		return NULL;
	policy = hash_search(config->clients, &name, HASH_ENTER, &found);
	if (!found)
	{
		/* the key was the caller's pointer: same name, so same hash */
		policy->client_name = MemoryContextStrdup(target, name);
		policy->has_override = false;
		policy->enforce = false;
		policy->load_slot = -1;
		policy->nrate_limits = 0;
		policy->rate_limits_size = 0;
		policy->rate_limits = NULL;
		memset(&policy->blacklist, 0, sizeof(OwnedRuleSet));
		memset(&policy->whitelist, 0, sizeof(OwnedRuleSet));
	}
	return policy;
}

/*
 * Read the clients' rate limits into their policies (allocated in target),
 * creating the policy of a client that has nothing else.
 */
static void
LoadClientRateLimits(EnforcementConfig *config, MemoryContext target)
{
	uint64		i;

	if (client_limits_plan == NULL)
		client_limits_plan = PrepareKeptPlan(
			"SELECT l.client_name, " RATE_LIMIT_ROW_COLUMNS
			"  FROM athena_keys.api_key_rate_limit l WHERE l.client_name IS NOT NULL"
			" ORDER BY l.id",
			0, NULL, 0);
	if (ExecuteKeptPlan(client_limits_plan, NULL, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "athena_keys: reading api_key_rate_limit failed");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *client = SPI_getvalue(tuple, desc, 1);
		ClientPolicy *policy = EnterClientPolicy(config, client, target);
		bool		isnull;
		RateLimit	limit;

		if (policy == NULL ||
			!RateLimitFromValues(DatumGetInt64(SPI_getbinval(tuple, desc, 2, &isnull)),
								 client, (int) strlen(client),
								 DatumGetInt32(SPI_getbinval(tuple, desc, 3, &isnull)),
								 DatumGetInt64(SPI_getbinval(tuple, desc, 4, &isnull)),
								 DatumGetInt32(SPI_getbinval(tuple, desc, 5, &isnull)),
								 &limit))
			continue;
		if (policy->nrate_limits == policy->rate_limits_size)
		{
			policy->rate_limits_size = Max(2, policy->rate_limits_size * 2);
			policy->rate_limits = policy->rate_limits == NULL ?
				MemoryContextAlloc(target, sizeof(RateLimit) * policy->rate_limits_size) :
				repalloc(policy->rate_limits, sizeof(RateLimit) * policy->rate_limits_size);
		}
		policy->rate_limits[policy->nrate_limits++] = limit;
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * Read api_key_config, api_key_client_config and the global IP rules into
 * a new EnforcementConfig allocated in target.  Rule arrays are sized by a
 * first pass over the rules, so the cache grows with the number of rules,
 * never with clients times rules.
 */
static EnforcementConfig *
LoadEnforcementConfig(MemoryContext target)
{
	EnforcementConfig *config;
	HASHCTL		ctl;
	uint64		i;
	HASH_SEQ_STATUS seq;
	ClientPolicy *policy;
	typedef struct PendingRules
	{
		IpNet	   *black;
		int			nblack;
		IpNet	   *white;
		int			nwhite;
	} PendingRules;
	PendingRules all = {0};
	PendingRules *pending;
	int			npending = 0;
	int			pending_size = 16;
	/* A rule as read: its list (a client's pending slot, or all) and address */
	typedef struct RuleRow
	{
		bool		kept;
		bool		black;
		int			slot;		/* -1: the lists of every client */
		IpNet		net;
	} RuleRow;
	RuleRow    *rows;

	EnsureSpiConnected();
	if (config_plan == NULL)
		config_plan = PrepareKeptPlan(
			"SELECT enforce_api_keys, fail_mode OPERATOR(pg_catalog.=) 'fail_open' "
			"  FROM athena_keys.api_key_config",
			0, NULL, 0);
	if (client_config_plan == NULL)
		client_config_plan = PrepareKeptPlan(
			"SELECT client_name, enforce_api_keys FROM athena_keys.api_key_client_config",
			0, NULL, 0);
	if (global_rules_plan == NULL)
		global_rules_plan = PrepareKeptPlan(
			"SELECT list OPERATOR(pg_catalog.=) 'blacklist', addr, client_name "
			"  FROM athena_keys.api_key_global_ip_rule",
			0, NULL, 0);

	config = MemoryContextAllocZero(target, sizeof(EnforcementConfig));
	config->enforce_default = true;
	config->fail_open = false;

	if (ExecuteKeptPlan(config_plan, NULL, NULL, 1) != SPI_OK_SELECT)
		elog(ERROR, "athena_keys: reading api_key_config failed");
	if (SPI_processed > 0)
	{
		bool		isnull;
		Datum		d;

		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		config->enforce_default = isnull ? true : DatumGetBool(d);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
		config->fail_open = isnull ? false : DatumGetBool(d);
	}
	SPI_freetuptable(SPI_tuptable);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(const char *);
	ctl.entrysize = sizeof(ClientPolicy);
	ctl.hash = ClientNameHash;
	ctl.match = ClientNameMatch;
	ctl.hcxt = target;
	config->clients = hash_create("athena_keys client policies", 64, &ctl,
								  HASH_ELEM | HASH_FUNCTION | HASH_COMPARE |
								  HASH_CONTEXT);

	if (ExecuteKeptPlan(client_config_plan, NULL, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "athena_keys: reading api_key_client_config failed");
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		bool		isnull;
		Datum		enforce = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull);

		policy = isnull ? NULL : EnterClientPolicy(config, name, target);
		if (policy == NULL)
			continue;
		policy->has_override = true;
		policy->enforce = DatumGetBool(enforce);
	}
	SPI_freetuptable(SPI_tuptable);

	if (OidIsValid(RateLimitTableOid()))
		LoadClientRateLimits(config, target);

	if (ExecuteKeptPlan(global_rules_plan, NULL, NULL, 0) != SPI_OK_SELECT)
		elog(ERROR, "athena_keys: reading api_key_global_ip_rule failed");

	/* First pass: which list each rule belongs to, and how long each list is */
	rows = palloc0(sizeof(RuleRow) * (SPI_processed + 1));
	pending = palloc0(sizeof(PendingRules) * pending_size);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		addr = SPI_getbinval(tuple, desc, 2, &isnull);
		char	   *client = SPI_getvalue(tuple, desc, 3);
		PendingRules *p = &all;

		rows[i].black = DatumGetBool(SPI_getbinval(tuple, desc, 1, &isnull));
		rows[i].slot = -1;
		if (!IpNetFromInet(DatumGetInetPP(addr), false, &rows[i].net))
			continue;
		if (client != NULL)
		{
			policy = EnterClientPolicy(config, client, target);
			if (policy == NULL)
				continue;
			if (policy->load_slot < 0)
			{
				if (npending == pending_size)
				{
					pending = repalloc(pending, sizeof(PendingRules) * pending_size * 2);
					memset(&pending[pending_size], 0, sizeof(PendingRules) * pending_size);
					pending_size *= 2;
				}
				policy->load_slot = npending++;
			}
			rows[i].slot = policy->load_slot;
			p = &pending[policy->load_slot];
		}
		rows[i].kept = true;
		if (rows[i].black)
			p->nblack++;
		else
			p->nwhite++;
	}

	/* Second pass: fill arrays of exactly those lengths */
	all.black = MemoryContextAlloc(target, sizeof(IpNet) * (all.nblack + 1));
	all.white = MemoryContextAlloc(target, sizeof(IpNet) * (all.nwhite + 1));
	for (i = 0; i < (uint64) npending; i++)
	{
		pending[i].black = MemoryContextAlloc(target, sizeof(IpNet) * (pending[i].nblack + 1));
		pending[i].white = MemoryContextAlloc(target, sizeof(IpNet) * (pending[i].nwhite + 1));
		pending[i].nblack = pending[i].nwhite = 0;
	}
	all.nblack = all.nwhite = 0;
	for (i = 0; i < SPI_processed; i++)
	{
		PendingRules *p = rows[i].slot >= 0 ? &pending[rows[i].slot] : &all;

		if (!rows[i].kept)
			continue;
		if (rows[i].black)
			p->black[p->nblack++] = rows[i].net;
		else
			p->white[p->nwhite++] = rows[i].net;
	}
	SPI_freetuptable(SPI_tuptable);

	BuildOwnedRuleSet(&config->blacklist_all, all.black, all.nblack, target);
	BuildOwnedRuleSet(&config->whitelist_all, all.white, all.nwhite, target);

	hash_seq_init(&seq, config->clients);
	while ((policy = hash_seq_search(&seq)) != NULL)
	{
		int			slot = policy->load_slot;

		if (slot < 0)
			continue;
		BuildOwnedRuleSet(&policy->blacklist, pending[slot].black,
						  pending[slot].nblack, target);
		BuildOwnedRuleSet(&policy->whitelist, pending[slot].white,
						  pending[slot].nwhite, target);
	}
	pfree(pending);
	pfree(rows);
	return config;
}

/*
 * The cached enforcement config when it is current and this transaction
 * may use the cache, else NULL.  Never reads a table.
 */
const EnforcementConfig *
PeekEnforcementConfig(void)
{
	if (cached_config == NULL || !CachingAllowed() ||
		cached_config_generation != ConfigCacheGeneration())
		return NULL;
	return cached_config;
}

/*
 * The enforcement config read from the tables (the caller holds the rights
 * to), and cached when allowed.  A config that changed while it was read
 * serves this call only.  The result is valid until the end of the call.
 */
const EnforcementConfig *
ReadEnforcementConfig(void)
{
	uint64		before = ConfigCacheGeneration();
	EnforcementConfig *config;

	if (!CacheFillAllowed() || !CacheMayBeRebuilt())
		return LoadEnforcementConfig(CurrentMemoryContext);

	cached_config = NULL;
	if (config_context == NULL)
		config_context = AllocSetContextCreate(CacheMemoryContext,
											   "athena_keys config cache",
											   ALLOCSET_DEFAULT_SIZES);
	else
		MemoryContextReset(config_context);
	config = LoadEnforcementConfig(config_context);
	if (before == ConfigCacheGeneration())
	{
		cached_config = config;
		cached_config_generation = before;
	}
	return config;
}

/*
 * What the decision needs to know of the request's client: the global
 * setting, its override and its scoped rules.  The hash keys are C strings
 * compared up to their terminator, so the lookup key needs one; a name no
 * rule could be stored under has no entry.
 */
void
ClientFactsOf(const EnforcementConfig *config, const char *client, size_t len,
			  ClientFacts *facts)
{
	const ClientPolicy *policy = NULL;

	if (client != NULL && len > 0 && len <= CLIENT_NAME_MAX_LEN &&
		memchr(client, '\0', len) == NULL)
	{
		char		keybuf[CLIENT_NAME_MAX_LEN + 1];

		memcpy(keybuf, client, len);
		keybuf[len] = '\0';
		policy = FindClientPolicy(config, keybuf);
	}
	facts->enforce_default = config->enforce_default;
	facts->fail_open = config->fail_open;
	facts->blacklist_all = &config->blacklist_all.set;
	facts->whitelist_all = &config->whitelist_all.set;
	facts->has_override = policy != NULL && policy->has_override;
	facts->enforce_override = policy != NULL && policy->enforce;
	facts->blacklist_client = policy != NULL ? &policy->blacklist.set : NULL;
	facts->whitelist_client = policy != NULL ? &policy->whitelist.set : NULL;
	facts->nrate_limits = policy != NULL ? policy->nrate_limits : 0;
	facts->rate_limits = policy != NULL ? policy->rate_limits : NULL;
}
