/*-------------------------------------------------------------------------
 * authenticate.c
 *		athena_authenticate(key, client, ip, rights [, cost]) and
 *		athena_gateway_verdict(key, client, ip, rights): the SQL entry
 *		points, SECURITY INVOKER, one call per request (a batch of
 *		them: gateway_batch.c).
 *
 * A call reads its arguments into a DecisionRequest, takes the config and
 * the key from this backend's caches (request_effects.c fills what is
 * missing, with the owner's rights), decides without side effects
 * (decision.c), performs what the decision needs (learning, the log row,
 * the last_used_at stamp; request_effects.c again; the rate limits, which
 * need no table, rate_limit.c), and returns the row (result_row.c), or for
 * athena_gateway_verdict the compact verdict a gateway acts on
 * (gateway_verdict.c): the same decision and the same effects, another
 * shape of answer.  Bad input never raises: it gets a verdict.  The cost
 * is the gateway's own figure, not the request's, so a cost out of range
 * is an error.
 *
 * Every call first applies the cache invalidations that arrived since the
 * last one, so a committed revocation reaches even a transaction that
 * stays open.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/inval.h"

#include "cache_invalidation.h"
#include "decision.h"
#include "gateway_verdict.h"
#include "key_last_used.h"
#include "log_routing.h"
#include "rate_limit.h"
#include "request_effects.h"
#include "result_row.h"

PG_FUNCTION_INFO_V1(athena_authenticate);
PG_FUNCTION_INFO_V1(athena_authenticate_privileged);
PG_FUNCTION_INFO_V1(athena_gateway_verdict);

/* The shape of a call's answer */
typedef enum AnswerShape
{
	ANSWER_FULL_ROW,			/* athena_auth_result */
	ANSWER_GATEWAY_VERDICT		/* gateway_verdict_fields.h's text */
} AnswerShape;

/* One call: the request as read, and the datums its answer reuses */
typedef struct AuthCall
{
	DecisionRequest request;
	IpNet		host;
	text	   *client;
	inet	   *ip;
	ArrayType  *required;
	Datum	   *required_elems; /* the required array's elements */
	int			nrequired;
	int32		cost;			/* units of every rate limit the request takes */
} AuthCall;

/*
 * The cost argument of the five-argument form (NULL and the four-argument
 * form: 1).  A cost out of range is a mistake in the gateway's code, not a
 * property of the request, so it raises rather than getting a verdict.
 */
static int32
ReadCost(FunctionCallInfo fcinfo)
{
	int32		cost;

	if (PG_NARGS() < 5 || PG_ARGISNULL(4))
		return 1;
	cost = PG_GETARG_INT32(4);
	if (cost < 1 || cost > RATE_LIMIT_MAX_COST)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("athena_authenticate cost must be between 1 and %d", RATE_LIMIT_MAX_COST),
				 errdetail("The cost given is %d.", cost),
				 errhint("Pass the units of its rate limits the request takes, or NULL for 1.")));
	return cost;
}

/*
 * The backend's interrupt check, for the pure decision code's long loops:
 * a cancel or statement_timeout stops the call there.  Nothing the call
 * holds then needs more than the error's cleanup (AuthenticateCall).
 */
static void
CheckDecisionInterrupts(void)
{
	CHECK_FOR_INTERRUPTS();
}

/*
 * Read the arguments into call->request.  The key is parsed here, before
 * the key cache is consulted; a NULL or unusable argument is simply
 * absent.
 */
static void
ReadRequest(FunctionCallInfo fcinfo, AuthCall *call)
{
	DecisionRequest *request = &call->request;
	text	   *key_text = PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0);

	memset(call, 0, sizeof(*call));
	call->client = PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1);
	call->ip = PG_ARGISNULL(2) ? NULL : PG_GETARG_INET_PP(2);
	call->required = PG_ARGISNULL(3) ? NULL : PG_GETARG_ARRAYTYPE_P(3);
	call->cost = ReadCost(fcinfo);

	/*
	 * Time is the calling statement's start, not the transaction's: an
	 * expiry or a grace end must hold for a caller whose transaction stays
	 * open (a pooled connection), as a committed revocation does.  Inside a
	 * procedure that commits between calls the statement (the CALL) is the
	 * older of the two, so the later start is taken.
	 */
	request->now = Max(GetCurrentStatementStartTimestamp(), GetCurrentTransactionStartTimestamp());
	request->check_interrupts = CheckDecisionInterrupts;
	request->key_parse = key_text == NULL ? KEY_ABSENT :
		ParseApiKey(VARDATA_ANY(key_text), VARSIZE_ANY_EXHDR(key_text), &request->key);
	if (call->client != NULL)
	{
		request->client = VARDATA_ANY(call->client);
		request->client_len = VARSIZE_ANY_EXHDR(call->client);
	}
	if (call->ip != NULL && IpNetFromInet(call->ip, true, &call->host))
		request->host = &call->host;
}

/*
 * The required rights as (bytes, length) pairs; read only for a request
 * that reaches the rights step, since deconstructing the array costs.
 */
static void
ReadRequiredRights(AuthCall *call)
{
	bool	   *nulls;
	const char **names;
	int		   *lens;
	int			i;

	if (call->required == NULL || ARR_NDIM(call->required) == 0)
		return;
	deconstruct_array(call->required, TEXTOID, -1, false, TYPALIGN_INT,
					  &call->required_elems, &nulls, &call->nrequired);
	names = palloc(sizeof(char *) * call->nrequired);
	lens = palloc(sizeof(int) * call->nrequired);
	for (i = 0; i < call->nrequired; i++)
	{
		text	   *want = nulls[i] ? NULL : DatumGetTextPP(call->required_elems[i]);

		names[i] = want == NULL ? NULL : VARDATA_ANY(want);
		lens[i] = want == NULL ? 0 : VARSIZE_ANY_EXHDR(want);
	}
	call->request.nrequired = call->nrequired;
	call->request.required = names;
	call->request.required_len = lens;
}

/* The missing rights of a decision as a text[] (empty when none) */
static ArrayType *
MissingRightsArray(const AuthCall *call, const DecisionOutcome *outcome)
{
	Datum	   *missing;
	int			i;

	if (outcome->nmissing == 0)
		return construct_empty_array(TEXTOID);
	missing = palloc(sizeof(Datum) * outcome->nmissing);
	for (i = 0; i < outcome->nmissing; i++)
		missing[i] = call->required_elems[outcome->missing[i]];
	return construct_array(missing, outcome->nmissing, TEXTOID, -1, false, TYPALIGN_INT);
}

/* The log row of a decision */
static void
BuildDecisionRecord(const AuthCall *call, const CachedKey *key,
					const DecisionOutcome *outcome, ArrayType *missing,
					DecisionRecord *record)
{
	memset(record, 0, sizeof(*record));
	record->client = call->client;
	if (call->ip != NULL)
	{
		record->remote_addr = PointerGetDatum(call->ip);
		record->has_remote_addr = true;
	}
	if (call->required != NULL)
	{
		record->required_rights = PointerGetDatum(call->required);
		record->has_required_rights = true;
	}
	if (call->request.key_parse == KEY_WELL_FORMED)
	{
		record->public_id = call->request.key.public_id;
		record->public_id_len = call->request.key.public_id_len;
	}
	if (outcome->key_identified)
	{
		record->key_identified = true;
		record->key_id = key->id;
	}
	if (outcome->secret_matched)
	{
		record->granted_rights = PointerGetDatum(key->granted_array);
		record->has_granted_rights = true;
	}
	if (missing != NULL)
	{
		record->missing_rights = PointerGetDatum(missing);
		record->has_missing_rights = true;
	}
	record->authenticated = outcome->authenticated;
	record->authorized = outcome->authorized;
	record->enforced = outcome->enforced;
	record->allowed = outcome->allowed;
	record->status = outcome->status;
	record->reason = outcome->reason;
	record->locked_in = outcome->locked_in;
}

/* Raise the error of a digest that could not be computed */
static void
ReportDigestFailure(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INTERNAL_ERROR),
			 errmsg("could not compute a sha-256 digest"),
			 errdetail("OpenSSL reported a failure while hashing the presented secret."),
			 errhint("Check the server log for OpenSSL errors.")));
}

/*
 * Log the decision and stamp last use, writes last.  A transaction that
 * cannot write (a hot standby, a read-only transaction) logs through the
 * writer's queue, whose writer also stamps last use.  A request that would
 * pass but cannot be logged at all in a read-only transaction is answered
 * as "API key policy unavailable" under the fail mode, so that no setting
 * of the caller's lets requests through unaudited; a refusal stays the
 * refusal it is, and shadow mode keeps its finding.  A transaction
 * snapshot's FOR UPDATE could fail to serialize, so such a transaction
 * leaves the stamp to a later call.  Where the log writer can take a due
 * stamp (preloaded), the call only queues it (key_last_used.c).
 */
static void
RecordDecision(RequestEffects *fx, AuthCall *call, CachedKey *key,
			   DecisionOutcome *outcome, bool learned, bool fail_open,
			   ArrayType *missing)
{
	DecisionRecord record;
	bool		stamp_due;
	bool		stamp_here;

	/* Last use is the transaction's time, as the log row's created_at and the UPDATE's now() */
	TimestampTz stamp_time = GetCurrentTransactionStartTimestamp();

	stamp_due = outcome->authenticated && !learned &&
		KeyLastUsedStampDue(key, stamp_time);
	stamp_here = CanWrite() && !IsolationUsesXactSnapshot();
	BuildDecisionRecord(call, key, outcome, missing, &record);
	if (ShouldLogDecision(&record))
	{
		LogOutcome	logged;

		record.stamp_last_used = stamp_due && !stamp_here;
		logged = LogForRequest(fx, &record, learned);
		if (logged == LOG_IMPOSSIBLE && outcome->allowed && outcome->enforced)
			SetVerdict(outcome, FAILURE_POLICY_UNAVAILABLE, fail_open);
		else if (logged == LOG_DONE && record.stamp_last_used)
			key->last_used_at = stamp_time; /* the writer stamps it */
	}
	if (stamp_due && stamp_here && !QueueKeyLastUsed(key, stamp_time))
		StampLastUseForRequest(fx, key, stamp_time);
}

/*
 * The rate limit columns: the wait of a refusal (429 only), and the
 * figures of the tightest limit whenever the limits were judged.
 */
static void
RateLimitColumns(const DecisionOutcome *outcome, const RateLimitReport *rate,
				 Datum *values, bool *nulls)
{
	nulls[RESULT_retry_after_ms] = !(rate->has_retry_after && outcome->status == 429);
	values[RESULT_retry_after_ms] = Int64GetDatum(rate->retry_after_ms);
	nulls[RESULT_rate_limit] = nulls[RESULT_rate_remaining] = nulls[RESULT_rate_reset_ms] =
		!rate->has_tightest;
	values[RESULT_rate_limit] = Int32GetDatum(rate->limit);
	values[RESULT_rate_remaining] = Int32GetDatum(rate->remaining);
	values[RESULT_rate_reset_ms] = Int64GetDatum(rate->reset_ms);
}

/* The result row's values of a decision */
static Datum
ResultOf(FunctionCallInfo fcinfo, const CachedKey *key, const DecisionOutcome *outcome,
		 ArrayType *missing, bool fail_open, const RateLimitReport *rate)
{
	Datum		values[RESULT_COLUMNS];
	bool		nulls[RESULT_COLUMNS];

	memset(nulls, false, sizeof(nulls));
	values[RESULT_allowed] = BoolGetDatum(outcome->allowed);
	values[RESULT_status] = Int32GetDatum(outcome->status);
	if (outcome->reason != NULL)
		values[RESULT_reason] = CStringGetTextDatum(outcome->reason);
	else
		nulls[RESULT_reason] = true;
	values[RESULT_authenticated] = BoolGetDatum(outcome->authenticated);
	values[RESULT_authorized] = BoolGetDatum(outcome->authorized);
	values[RESULT_enforced] = BoolGetDatum(outcome->enforced);
	if (outcome->secret_matched)
	{
		values[RESULT_key_id] = UUIDPGetDatum(&key->id);
		values[RESULT_public_id] = CStringGetTextDatum(key->public_id);
		if (key->facts.client_name != NULL)
			values[RESULT_client_name] = CStringGetTextDatum(key->facts.client_name);
		else
			nulls[RESULT_client_name] = true;
		values[RESULT_granted_rights] = PointerGetDatum(key->granted_array);
	}
	else
		nulls[RESULT_key_id] = nulls[RESULT_public_id] = nulls[RESULT_client_name] =
			nulls[RESULT_granted_rights] = true;
	if (missing != NULL)
		values[RESULT_missing_rights] = PointerGetDatum(missing);
	else
		nulls[RESULT_missing_rights] = true;
	values[RESULT_locked_in] = BoolGetDatum(outcome->locked_in);
	values[RESULT_fail_mode] = CStringGetTextDatum(fail_open ? "fail_open" : "fail_closed");
	RateLimitColumns(outcome, rate, values, nulls);
	return FormResultRow(fcinfo, values, nulls);
}

/*
 * Take the request's units from the key's and its client's limits (in
 * their shadow buckets when enforcement is off), found in report
 */
static void
ConsumeRequestLimits(const CachedKey *key, const ClientFacts *client, const AuthCall *call,
					 const DecisionOutcome *outcome, RateLimitReport *report)
{
	ConsumeRateLimits(key->facts.rate_limits, key->facts.nrate_limits,
					  client->rate_limits, client->nrate_limits,
					  call->cost, !outcome->enforced, report);
}

/* One request, decided, recorded and answered in shape; see the file header */
static Datum
AuthenticateRequest(FunctionCallInfo fcinfo, AnswerShape shape)
{
	RequestEffects fx;
	AuthCall	call;
	const EnforcementConfig *config;
	ClientFacts client;
	CachedKey  *key = NULL;
	DecisionOutcome outcome;
	ArrayType  *missing = NULL;
	bool		learned = false;
	bool		rate_consumed = false;
	RateLimitReport rate;
	Datum		result;

	StartRequestEffects(&fx, fcinfo);
	ReadRequest(fcinfo, &call);
	config = ConfigForRequest(&fx);
	ClientFactsOf(config, call.request.client, call.request.client_len, &client);
	if (call.request.key_parse == KEY_WELL_FORMED)
	{
		key = KeyForRequest(&fx, call.request.key.public_id, call.request.key.public_id_len);
		ReadRequiredRights(&call);
	}
	outcome.missing = call.nrequired > 0 ? palloc(sizeof(int) * call.nrequired) : NULL;

	DecideRequest(&call.request, key != NULL ? &key->facts : NULL, &client, &outcome);
	if (outcome.digest_failed)
		ReportDigestFailure();
	memset(&rate, 0, sizeof(rate));
	/*
	 * A learning key's limits first: a request they refuse observes nothing.
	 * Where the observation cannot be written (a read-only transaction, a
	 * hot standby) and the fail mode refuses that, the request is certain
	 * to be refused and spends nothing.
	 */
	if (outcome.needs_learning && (CanWrite() || client.fail_open) &&
		RateLimitsApply(&key->facts, &client))
	{
		ConsumeRequestLimits(key, &client, &call, &outcome, &rate);
		rate_consumed = true;
		RateLimitRefusesBeforeLearning(&client, rate.verdict, &outcome);
	}
	if (outcome.needs_learning)
	{
		LearningOutcome observed = LearnForRequest(&fx, key, call.request.host);

		learned = observed == LEARNING_RECORDED || observed == LEARNING_LOCKED_IN;
		FinishLearningDecision(&call.request, &key->facts, &client, observed, &outcome);
		/* Refused by the IP policy after all: no limit decided it */
		if (rate_consumed && !outcome.needs_rate_limit)
			memset(&rate, 0, sizeof(rate));
	}
	if (outcome.needs_rate_limit)
	{
		if (!rate_consumed)
			ConsumeRequestLimits(key, &client, &call, &outcome, &rate);
		FinishRateLimitDecision(&client, rate.verdict, &outcome);
	}
	if (outcome.rights_checked)
		missing = MissingRightsArray(&call, &outcome);

	RecordDecision(&fx, &call, key, &outcome, learned, client.fail_open, missing);
	FinishRequestEffects(&fx);
	if (shape == ANSWER_GATEWAY_VERDICT)
		result = GatewayVerdictText(key, &outcome, client.fail_open, &rate);
	else
		result = ResultOf(fcinfo, key, &outcome, missing, client.fail_open, &rate);
	return result;
}

/*
 * One call of either entry point.  Invalidations that arrived since this
 * transaction last took a lock are applied first: a revocation committed
 * while the caller's transaction stays open (a pooled connection, a
 * prepared statement in one long READ COMMITTED transaction) takes effect
 * on its next call.  A call may run nested in another (from a trigger the
 * outer call's log insert fired): the cache use count keeps it from
 * freeing the outer call's entries, and the outer call's SPI connection
 * state comes back when it ends, also when it raises.
 */
static Datum
AuthenticateCall(FunctionCallInfo fcinfo, AnswerShape shape)
{
	volatile Datum result = (Datum) 0;
	volatile SpiCallState outer_spi;

	AcceptInvalidationMessages();
	outer_spi = BeginSpiCall();
	EnterCacheUse();
	PG_TRY();
	{
		result = AuthenticateRequest(fcinfo, shape);
	}
	PG_FINALLY();
	{
		LeaveCacheUse();
		EndSpiCall(outer_spi);
	}
	PG_END_TRY();
	return result;
}

/* athena_authenticate(key, client, ip, rights [, cost]): the full verdict row */
Datum
athena_authenticate(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(AuthenticateCall(fcinfo, ANSWER_FULL_ROW));
}

/*
 * athena_gateway_verdict(key, client, ip, rights): the same decision as
 * athena_authenticate, answered as the compact text a gateway reads
 */
Datum
athena_gateway_verdict(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(AuthenticateCall(fcinfo, ANSWER_GATEWAY_VERDICT));
}

/*
 * One request decided as athena_gateway_verdict decides it, for a caller
 * that builds the call itself (gateway_batch.c: an element of a batch);
 * fcinfo holds the four arguments and the called function's flinfo
 */
Datum
GatewayVerdictCall(FunctionCallInfo fcinfo)
{
	return AuthenticateCall(fcinfo, ANSWER_GATEWAY_VERDICT);
}

/*
 * athena_keys._authenticate_privileged(key, client, ip, rights): the
 * SECURITY DEFINER twin that the 1.2 and 1.3 libraries handed calls to.
 * A backend that loaded such a library before ALTER EXTENSION UPDATE keeps
 * calling it until it reconnects, so it stays in the schema (granted to
 * nobody); this library decides it like athena_authenticate, its sections
 * switching to the same owner it already runs as.
 */
Datum
athena_authenticate_privileged(PG_FUNCTION_ARGS)
{
	return athena_authenticate(fcinfo);
}
