/*-------------------------------------------------------------------------
 * authenticate.c
 *		athena_authenticate(key, client, ip, rights): the whole decision of
 *		SPEC section 4 in one call, first failure wins.
 *
 *	1. effective enforcement (client override, else global)
 *	2. no key                         -> API key required (401)
 *	3. malformed / unknown / mismatch -> Invalid API key (401)
 *	4. inactive                       -> Inactive API key (401)
 *	5. expired                        -> Expired API key (401)
 *	6. client binding                 -> API key client mismatch (403)
 *	7. rights                         -> Insufficient API key rights (403)
 *	8. IP policy (ip_policy.c, learning.c) -> IP blocked / IP not allowed /
 *	   Client IP required (403)
 *	9. allowed (200)
 *
 * With enforcement off the same evaluation runs (shadow mode) and its
 * finding is reported, but the request is allowed.  Bad input never
 * raises: it gets a verdict.  Every call first applies the cache
 * invalidations that arrived since the last one, so a committed revocation
 * reaches even a transaction that stays open.
 *
 * Two entry points share the decision.  athena_authenticate runs with the
 * caller's privileges and decides from this backend's caches alone (the
 * usual case: config and key cached, log row queued or not written).  As
 * soon as the decision needs a table (a cache to fill, a learning write, a
 * log INSERT, a last_used_at stamp) it hands the whole call, untouched, to
 * _authenticate_privileged, the SECURITY DEFINER twin with a pinned
 * search_path, which does the same work with table access.  Entering a
 * SECURITY DEFINER function with a SET clause costs more than the rest of
 * a cached decision (a GUC nesting level and two search-path
 * recomputations), so the hot path avoids it without ever running
 * caller-controlled names with elevated rights.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "ip_policy.h"
#include "rights_match.h"

PG_FUNCTION_INFO_V1(athena_authenticate);
PG_FUNCTION_INFO_V1(athena_authenticate_privileged);

typedef enum Failure
{
	FAILURE_NONE,
	FAILURE_KEY_REQUIRED,
	FAILURE_INVALID_KEY,
	FAILURE_INACTIVE_KEY,
	FAILURE_EXPIRED_KEY,
	FAILURE_CLIENT_MISMATCH,
	FAILURE_INSUFFICIENT_RIGHTS,
	FAILURE_IP_BLOCKED,
	FAILURE_IP_NOT_ALLOWED,
	FAILURE_CLIENT_IP_REQUIRED,
	FAILURE_POLICY_UNAVAILABLE
} Failure;

/* The exact texts of the Athena troubleshooting page, and their statuses */
static const struct
{
	const char *reason;
	int			status;
}			failure_texts[] =
{
	[FAILURE_NONE] = {NULL, 200},
	[FAILURE_KEY_REQUIRED] = {"API key required", 401},
	[FAILURE_INVALID_KEY] = {"Invalid API key", 401},
	[FAILURE_INACTIVE_KEY] = {"Inactive API key", 401},
	[FAILURE_EXPIRED_KEY] = {"Expired API key", 401},
	[FAILURE_CLIENT_MISMATCH] = {"API key client mismatch", 403},
	[FAILURE_INSUFFICIENT_RIGHTS] = {"Insufficient API key rights", 403},
	[FAILURE_IP_BLOCKED] = {"IP blocked", 403},
	[FAILURE_IP_NOT_ALLOWED] = {"IP not allowed", 403},
	[FAILURE_CLIENT_IP_REQUIRED] = {"Client IP required", 403},
	[FAILURE_POLICY_UNAVAILABLE] = {"API key policy unavailable", 503},
};

#define RESULT_COLUMNS 13

/*
 * Salt used to hash the secret of an unknown public id, so that an unknown
 * id costs the same SHA-256 and comparison as a wrong secret.
 */
static const char unknown_key_salt[] = "00000000000000000000000000000000";
static const unsigned char unknown_key_digest[KEY_DIGEST_LEN] = {0};

/* Hash the presented secret with salt and compare with expected */
static bool
DigestMatches(const char *salt, const ParsedKey *parsed,
			  const unsigned char *expected)
{
	unsigned char digest[KEY_DIGEST_LEN];

	if (!ComputeKeyDigest(salt, strlen(salt), parsed->secret, parsed->secret_len, digest))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a sha-256 digest"),
				 errdetail("OpenSSL reported a failure while hashing the presented secret."),
				 errhint("Check the server log for OpenSSL errors.")));
	return KeyDigestsEqual(digest, expected);
}

/*
 * Whether the presented secret belongs to key: its current secret, or the
 * previous one while a rotation's grace period lasts.
 */
static bool
SecretMatches(const CachedKey *key, const ParsedKey *parsed, TimestampTz now)
{
	bool		matches;

	if (!key->exists)
	{
		(void) DigestMatches(unknown_key_salt, parsed, unknown_key_digest);
		return false;
	}
	matches = DigestMatches(key->salt, parsed, key->digest);
	if (key->has_previous && now < key->previous_valid_until)
		matches |= DigestMatches(key->previous_salt, parsed, key->previous_digest);
	return matches;
}

/* Whether the request's client is the one the key is bound to (exactly) */
static bool
ClientMatches(const CachedKey *key, text *client)
{
	size_t		len;

	if (key->client_name == NULL)
		return true;
	if (client == NULL)
		return false;
	len = VARSIZE_ANY_EXHDR(client);
	return len == strlen(key->client_name) &&
		memcmp(VARDATA_ANY(client), key->client_name, len) == 0;
}

/*
 * The required rights that no granted right satisfies, as a text[] (empty
 * when all are satisfied).  NULL elements require nothing.
 */
static ArrayType *
MissingRights(const CachedKey *key, ArrayType *required, int *nmissing)
{
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	Datum	   *missing;
	int			i;
	int			j;

	*nmissing = 0;
	if (required == NULL || ARR_NDIM(required) == 0)
		return construct_empty_array(TEXTOID);

	deconstruct_array(required, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &nelems);
	missing = palloc(sizeof(Datum) * nelems);
	for (i = 0; i < nelems; i++)
	{
		text	   *want;
		bool		satisfied = false;

		if (nulls[i])
			continue;
		want = DatumGetTextPP(elems[i]);
		for (j = 0; j < key->ngranted && !satisfied; j++)
			satisfied = RightSatisfies(key->granted[j], key->granted_len[j],
									   VARDATA_ANY(want), VARSIZE_ANY_EXHDR(want));
		if (!satisfied)
			missing[(*nmissing)++] = elems[i];
	}
	if (*nmissing == 0)
		return construct_empty_array(TEXTOID);
	return construct_array(missing, *nmissing, TEXTOID, -1, false, TYPALIGN_INT);
}

/* Map an IP verdict that is not "allowed" or "learn" to its failure */
static Failure
FailureForIpVerdict(IpVerdict verdict)
{
	switch (verdict)
	{
		case IP_VERDICT_BLOCKED:
			return FAILURE_IP_BLOCKED;
		case IP_VERDICT_NOT_ALLOWED:
			return FAILURE_IP_NOT_ALLOWED;
		case IP_VERDICT_IP_REQUIRED:
			return FAILURE_CLIENT_IP_REQUIRED;
		default:
			return FAILURE_NONE;
	}
}

/*
 * Step 8: the IP policy, learning included.  scoped holds the global rules
 * of the request's client (NULL when none).  Sets *locked_in when this call
 * completed a lock-in and *learned when it wrote learning state.  Without
 * may_write a learning observation is not recorded: *needs_tables is set
 * and the verdict is meaningless.
 */
static Failure
CheckIpPolicy(const EnforcementConfig *config, const ClientPolicy *scoped,
			  const CachedKey *key, inet *ip, bool may_write,
			  bool *needs_tables, bool *locked_in, bool *learned)
{
	IpPolicyInput in;
	IpNet		host;
	IpVerdict	verdict;
	LearningOutcome outcome;

	memset(&in, 0, sizeof(in));
	if (ip != NULL && IpNetFromInet(ip, true, &host))
		in.host = &host;
	in.global_blacklist_all = &config->blacklist_all.set;
	in.global_whitelist_all = &config->whitelist_all.set;
	if (scoped != NULL)
	{
		in.global_blacklist_client = &scoped->blacklist.set;
		in.global_whitelist_client = &scoped->whitelist.set;
	}
	in.key_blacklist = &key->blacklist.set;
	in.key_whitelist = &key->whitelist.set;
	in.key_learning = key->learning;

	verdict = EvaluateIpBlacklists(&in);
	if (verdict == IP_VERDICT_ALLOWED)
		return FailureForIpVerdict(EvaluateIpWhitelists(&in));
	if (verdict != IP_VERDICT_LEARN)
		return FailureForIpVerdict(verdict);
	if (!may_write)
	{
		*needs_tables = true;
		return FAILURE_NONE;
	}

	outcome = RecordLearningObservation(&key->id, in.host);
	switch (outcome)
	{
		case LEARNING_RECORDED:
			*learned = true;
			return FAILURE_NONE;
		case LEARNING_LOCKED_IN:
			*learned = true;
			*locked_in = true;
			return FAILURE_NONE;
		case LEARNING_UNAVAILABLE:
			return FAILURE_POLICY_UNAVAILABLE;
		case LEARNING_RESOLVED_WHITELISTED:
		case LEARNING_RESOLVED_NOT_WHITELISTED:
			/* Another call locked the key in: judge by the fresh whitelist */
			in.key_whitelist = NULL;
			verdict = EvaluateIpWhitelists(&in);
			if (verdict == IP_VERDICT_ALLOWED &&
				outcome == LEARNING_RESOLVED_NOT_WHITELISTED)
				verdict = IP_VERDICT_NOT_ALLOWED;
			return FailureForIpVerdict(verdict);
		case LEARNING_NOT_LEARNING:
			break;
	}
	/* Virgin mode was switched off meanwhile: the cached whitelist applies */
	in.key_learning = false;
	return FailureForIpVerdict(EvaluateIpWhitelists(&in));
}

/*
 * Set the verdict of a decision from its first failure: allowed when
 * nothing failed, when enforcement is off (shadow mode), or when the
 * policy was unavailable under fail_open.
 */
static void
SetVerdict(DecisionRecord *decision, Failure failure, const EnforcementConfig *config)
{
	decision->reason = failure_texts[failure].reason;
	decision->authorized = decision->authenticated && failure == FAILURE_NONE;
	if (failure == FAILURE_NONE || !decision->enforced ||
		(failure == FAILURE_POLICY_UNAVAILABLE && config->fail_open))
	{
		decision->allowed = true;
		decision->status = 200;
	}
	else
	{
		decision->allowed = false;
		decision->status = failure_texts[failure].status;
	}
}

/* The columns of athena_auth_result that DecideRequest fills, in order */
static const Oid result_column_types[RESULT_COLUMNS] = {
	BOOLOID, INT4OID, TEXTOID, BOOLOID, BOOLOID, BOOLOID, UUIDOID, TEXTOID,
	TEXTOID, TEXTARRAYOID, TEXTARRAYOID, BOOLOID, TEXTOID
};

/*
 * Refuse a result row type that is not the one this library fills (an
 * ALTER TYPE on athena_auth_result, or a library and schema of different
 * versions): a row built for another descriptor would be garbage.
 */
static void
CheckResultColumns(TupleDesc desc)
{
	int			i;
	bool		matches = desc->natts >= RESULT_COLUMNS;

	for (i = 0; matches && i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		/* Columns dropped after the last one read as NULL; others must not be */
		if (i < RESULT_COLUMNS)
			matches = !att->attisdropped && att->atttypid == result_column_types[i];
		else
			matches = att->attisdropped;
	}
	if (!matches)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("athena_keys.athena_auth_result does not have the columns athena_keys fills"),
				 errdetail("The composite type was altered, or the installed library does not match the extension's version."),
				 errhint("Restore the type's columns, or install the library that matches the extension.")));
}

/*
 * The result row descriptor.  It is kept for the backend rather than per
 * call site, because a prepared statement sets up a new call site at every
 * execution; the type cache's identifier says when the row type was
 * replaced or altered, and the copy is checked again then.  The twin,
 * called through fmgr without an expression, names its type in pg_proc.
 */
static TupleDesc
ResultTupleDesc(FunctionCallInfo fcinfo)
{
	static TupleDesc backend_desc = NULL;
	static Oid	backend_desc_type = InvalidOid;
	static uint64 backend_desc_identifier = 0;
	Oid			result_type = get_fn_expr_rettype(fcinfo->flinfo);
	TypeCacheEntry *typentry;

	if (!OidIsValid(result_type))
		result_type = get_func_rettype(fcinfo->flinfo->fn_oid);
	typentry = lookup_type_cache(result_type, TYPECACHE_TUPDESC);
	if (typentry->tupDesc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("athena_authenticate must return athena_keys.athena_auth_result"),
				 errdetail("The function is declared to return %s, which is not a row type.",
						   format_type_be(result_type)),
				 errhint("Call athena_keys.athena_authenticate as installed by the extension.")));
	if (backend_desc == NULL || backend_desc_type != result_type ||
		backend_desc_identifier != typentry->tupDesc_identifier)
	{
		MemoryContext old;

		CheckResultColumns(typentry->tupDesc);
		old = MemoryContextSwitchTo(TopMemoryContext);
		if (backend_desc != NULL)
			FreeTupleDesc(backend_desc);
		backend_desc = CreateTupleDescCopy(typentry->tupDesc);
		backend_desc_type = result_type;
		backend_desc_identifier = typentry->tupDesc_identifier;
		MemoryContextSwitchTo(old);
	}
	return backend_desc;
}

/*
 * The result row from the RESULT_COLUMNS values DecideRequest fills; the
 * columns a type may have dropped after them are NULL.
 */
static Datum
FormResultRow(FunctionCallInfo fcinfo, Datum *values, bool *nulls)
{
	TupleDesc	desc = ResultTupleDesc(fcinfo);
	Datum	   *all_values;
	bool	   *all_nulls;

	if (desc->natts == RESULT_COLUMNS)
		return HeapTupleGetDatum(heap_form_tuple(desc, values, nulls));
	all_values = palloc0(sizeof(Datum) * desc->natts);
	all_nulls = palloc(sizeof(bool) * desc->natts);
	memset(all_nulls, true, sizeof(bool) * desc->natts);
	memcpy(all_values, values, sizeof(Datum) * RESULT_COLUMNS);
	memcpy(all_nulls, nulls, sizeof(bool) * RESULT_COLUMNS);
	return HeapTupleGetDatum(heap_form_tuple(desc, all_values, all_nulls));
}

/*
 * Decide one request; see the file header for the order.  With
 * may_use_tables false nothing but this backend's caches and the shared
 * log queue is touched: as soon as the decision needs a table it returns
 * false, having changed nothing, with the reason in *needs_tables_why.
 * Otherwise it returns true with the result row in *result.
 */
static bool
DecideRequest(FunctionCallInfo fcinfo, bool may_use_tables, Datum *result,
			  const char **needs_tables_why)
{
	text	   *key_text = PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0);
	text	   *client = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	inet	   *ip = PG_ARGISNULL(2) ? NULL : PG_GETARG_INET_PP(2);
	ArrayType  *required = PG_ARGISNULL(3) ? NULL : PG_GETARG_ARRAYTYPE_P(3);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	const EnforcementConfig *config;
	const ClientPolicy *client_policy = NULL;
	DecisionRecord decision;
	Failure		failure = FAILURE_NONE;
	ParsedKey	parsed;
	KeyParseResult parse_result;
	CachedKey  *key = NULL;
	ArrayType  *missing = NULL;
	bool		learned = false;
	bool		needs_tables = false;
	bool		stamp_due;
	bool		stamp_here;
	bool		evaluated_fully = false;
	Datum		values[RESULT_COLUMNS];
	bool		nulls[RESULT_COLUMNS];

	/* A previous call that raised left SPI to the abort handler */
	ResetSpiConnectionAfterError();

	memset(&decision, 0, sizeof(decision));
	decision.client = client;
	if (ip != NULL)
	{
		decision.remote_addr = PointerGetDatum(ip);
		decision.has_remote_addr = true;
	}
	if (required != NULL)
	{
		decision.required_rights = PointerGetDatum(required);
		decision.has_required_rights = true;
	}

	/* 1. Effective enforcement */
	config = may_use_tables ? GetEnforcementConfig() : PeekEnforcementConfig();
	if (config == NULL)
	{
		*needs_tables_why = "the enforcement config is not cached";
		return false;
	}
	if (client != NULL)
		client_policy = LookupClientPolicy(config, VARDATA_ANY(client),
										   VARSIZE_ANY_EXHDR(client));
	decision.enforced = (client_policy != NULL && client_policy->has_override)
		? client_policy->enforce : config->enforce_default;

	parse_result = key_text == NULL ? KEY_ABSENT :
		ParseApiKey(VARDATA_ANY(key_text), VARSIZE_ANY_EXHDR(key_text), &parsed);

	if (parse_result == KEY_ABSENT)
	{
		/* 2. No key: nothing else to evaluate */
		if (decision.enforced)
			failure = FAILURE_KEY_REQUIRED;
	}
	else if (parse_result == KEY_MALFORMED)
		failure = FAILURE_INVALID_KEY;	/* 3 */
	else
	{
		decision.public_id = parsed.public_id;
		decision.public_id_len = parsed.public_id_len;
		key = may_use_tables ? LookupKey(parsed.public_id, parsed.public_id_len)
			: PeekCachedKey(parsed.public_id, parsed.public_id_len);
		if (key == NULL)
		{
			*needs_tables_why = "the key is not cached";
			return false;
		}
		if (key->exists)
		{
			/* The operator's log names the key even when the secret is wrong */
			decision.key_identified = true;
			decision.key_id = key->id;
		}

		if (!SecretMatches(key, &parsed, now))
			failure = FAILURE_INVALID_KEY;	/* 3 */
		else
		{
			evaluated_fully = true;
			decision.granted_rights = PointerGetDatum(key->granted_array);
			decision.has_granted_rights = true;
			if (!key->is_active)
				failure = FAILURE_INACTIVE_KEY;	/* 4 */
			else if (key->has_expiry && key->expires_at <= now)
				failure = FAILURE_EXPIRED_KEY;	/* 5 */
			else
			{
				int			nmissing;

				decision.authenticated = true;
				if (!ClientMatches(key, client))
					failure = FAILURE_CLIENT_MISMATCH;	/* 6 */
				else
				{
					missing = MissingRights(key, required, &nmissing);
					decision.missing_rights = PointerGetDatum(missing);
					decision.has_missing_rights = true;
					if (nmissing > 0)
						failure = FAILURE_INSUFFICIENT_RIGHTS;	/* 7 */
					else		/* 8 */
						failure = CheckIpPolicy(config, client_policy, key, ip,
												may_use_tables, &needs_tables,
												&decision.locked_in, &learned);
					if (needs_tables)
					{
						*needs_tables_why = "the key is learning";
						return false;
					}
				}
			}
		}
	}

	SetVerdict(&decision, failure, config);

	/*
	 * Writes last, and only once nothing can send the call elsewhere.  A
	 * transaction that cannot write (a hot standby, a read-only
	 * transaction) logs through the writer's queue, whose writer also
	 * stamps last use.  A request that would pass but cannot be logged at
	 * all in a read-only transaction is answered as "API key policy
	 * unavailable" under the fail mode, so that no setting of the caller's
	 * lets requests through unaudited; a refusal stays the refusal it is,
	 * and shadow mode keeps its finding.
	 */
	stamp_due = decision.authenticated && !learned && KeyLastUsedStampDue(key);
	/* A transaction snapshot's FOR UPDATE could fail to serialize: no stamp */
	stamp_here = CanWrite() && !IsolationUsesXactSnapshot();
	if (stamp_due && stamp_here && !may_use_tables)
	{
		*needs_tables_why = "last_used_at is due";
		return false;
	}
	if (ShouldLogDecision(&decision))
	{
		LogOutcome	logged;

		decision.stamp_last_used = stamp_due && !stamp_here;
		logged = RouteDecisionLog(&decision, learned);
		if (logged == LOG_NEEDS_INSERT)
		{
			if (!may_use_tables)
			{
				*needs_tables_why = "the decision is logged by an INSERT";
				return false;
			}
			InsertDecisionLog(&decision);
			logged = LOG_DONE;
		}
		if (logged == LOG_IMPOSSIBLE && decision.allowed && decision.enforced)
			SetVerdict(&decision, FAILURE_POLICY_UNAVAILABLE, config);
		else if (logged == LOG_DONE && decision.stamp_last_used)
			key->last_used_at = now;	/* the writer stamps it */
	}
	if (stamp_due && stamp_here)
		TouchKeyLastUsed(key);
	ResetSpiConnection();

	memset(nulls, false, sizeof(nulls));
	values[0] = BoolGetDatum(decision.allowed);
	values[1] = Int32GetDatum(decision.status);
	if (decision.reason != NULL)
		values[2] = CStringGetTextDatum(decision.reason);
	else
		nulls[2] = true;
	values[3] = BoolGetDatum(decision.authenticated);
	values[4] = BoolGetDatum(decision.authorized);
	values[5] = BoolGetDatum(decision.enforced);
	if (evaluated_fully)
	{
		values[6] = UUIDPGetDatum(&key->id);
		values[7] = CStringGetTextDatum(key->public_id);
		if (key->client_name != NULL)
			values[8] = CStringGetTextDatum(key->client_name);
		else
			nulls[8] = true;
		values[9] = PointerGetDatum(key->granted_array);
	}
	else
		nulls[6] = nulls[7] = nulls[8] = nulls[9] = true;
	if (missing != NULL)
		values[10] = PointerGetDatum(missing);
	else
		nulls[10] = true;
	values[11] = BoolGetDatum(decision.locked_in);
	values[12] = CStringGetTextDatum(config->fail_open ? "fail_open" : "fail_closed");

	*result = FormResultRow(fcinfo, values, nulls);
	return true;
}

/*
 * The SECURITY DEFINER twin, _authenticate_privileged, resolved once per
 * backend and again after any pg_proc change (ALTER FUNCTION, DROP and
 * CREATE EXTENSION).  twin_missing marks a database whose extension
 * predates the twin (1.1 and older, where athena_authenticate itself is
 * SECURITY DEFINER).
 */
static FmgrInfo twin_flinfo;
static bool twin_resolved = false;
static bool twin_missing = false;
static bool twin_callback_registered = false;
static int	twin_calls_running = 0;
static MemoryContext twin_context = NULL;

/* Syscache callback: any pg_proc change may concern the twin */
static void
PrivilegedTwinInvalidated(Datum arg, int cacheid, uint32 hashvalue)
{
	twin_resolved = false;
}

/*
 * Look up the twin by its schema-qualified name (the caller's search_path
 * plays no part) into flinfo, allocated in cxt.  False when it does not
 * exist.
 */
static bool
ResolvePrivilegedTwin(FmgrInfo *flinfo, MemoryContext cxt)
{
	Oid			argtypes[4] = {TEXTOID, TEXTOID, INETOID, TEXTARRAYOID};
	Oid			twin_oid;

	twin_oid = LookupFuncName(list_make2(makeString("athena_keys"),
										 makeString("_authenticate_privileged")),
							  4, argtypes, true);
	if (!OidIsValid(twin_oid))
		return false;
	fmgr_info_cxt(twin_oid, flinfo, cxt);
	return true;
}

/*
 * Run the whole call through the SECURITY DEFINER twin (its fmgr entry
 * switches user and pins search_path); the arguments are passed on
 * untouched.  Where the twin does not exist the call is already running
 * with the owner's rights (see twin_missing) and is decided here.
 */
static Datum
CallPrivilegedTwin(FunctionCallInfo fcinfo, const char *why)
{
	LOCAL_FCINFO(twin_fcinfo, 4);
	FmgrInfo	nested_flinfo;
	FmgrInfo   *flinfo = &twin_flinfo;
	Datum		result;
	int			i;

	ereport(athena_report_handovers ? NOTICE : DEBUG1,
			(errmsg_internal("athena_keys: deciding with table access: %s", why)));
	if (!twin_callback_registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, PrivilegedTwinInvalidated, (Datum) 0);
		twin_callback_registered = true;
	}
	if (twin_calls_running > 0)
	{
		/* Never free the FmgrInfo an outer call is still using */
		flinfo = &nested_flinfo;
		twin_missing = !ResolvePrivilegedTwin(flinfo, CurrentMemoryContext);
	}
	else if (!twin_resolved)
	{
		if (twin_context == NULL)
			twin_context = AllocSetContextCreate(CacheMemoryContext,
												 "athena_keys privileged twin",
												 ALLOCSET_SMALL_SIZES);
		else
			MemoryContextReset(twin_context);
		twin_missing = !ResolvePrivilegedTwin(&twin_flinfo, twin_context);
		twin_resolved = true;
	}
	if (twin_missing)
	{
		(void) DecideRequest(fcinfo, true, &result, &why);
		return result;
	}

	InitFunctionCallInfoData(*twin_fcinfo, flinfo, 4, fcinfo->fncollation, NULL, NULL);
	for (i = 0; i < 4; i++)
		twin_fcinfo->args[i] = fcinfo->args[i];
	twin_calls_running++;
	PG_TRY();
	{
		result = FunctionCallInvoke(twin_fcinfo);
	}
	PG_FINALLY();
	{
		twin_calls_running--;
	}
	PG_END_TRY();
	fcinfo->isnull = twin_fcinfo->isnull;
	return result;
}

/*
 * athena_authenticate(key, client, ip, rights), SECURITY INVOKER: decide
 * from the caches when that is enough, else through the twin.
 */
Datum
athena_authenticate(PG_FUNCTION_ARGS)
{
	Datum		result;
	const char *why = NULL;

	/*
	 * Apply invalidations that arrived since this transaction last took a
	 * lock, once per call (the twin's pass needs no second look): a
	 * revocation committed while the caller's transaction stays open (a
	 * pooled connection, a prepared statement in one long READ COMMITTED
	 * transaction) takes effect on its next call.
	 */
	AcceptInvalidationMessages();

	/*
	 * Every decision needs an INSERT: go straight to the twin.  Otherwise a
	 * call that turns out to need a table is decided again by the twin;
	 * only such calls pay for the first attempt.
	 */
	if (athena_log_decisions == LOG_DECISIONS_ALL && DecisionLogNeedsInsert())
		return CallPrivilegedTwin(fcinfo, "every decision is logged by an INSERT");
	if (DecideRequest(fcinfo, false, &result, &why))
		PG_RETURN_DATUM(result);
	return CallPrivilegedTwin(fcinfo, why);
}

/*
 * athena_keys._authenticate_privileged(key, client, ip, rights): the same
 * decision with table access, as the extension owner.
 */
Datum
athena_authenticate_privileged(PG_FUNCTION_ARGS)
{
	Datum		result;
	const char *unused;

	(void) DecideRequest(fcinfo, true, &result, &unused);
	PG_RETURN_DATUM(result);
}
