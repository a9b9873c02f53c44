/*-------------------------------------------------------------------------
 * decision.c
 *		The decision order of SPEC section 4, first failure wins, as a flat
 *		list of named steps (pure C: no backend, no writes).
 *
 *	effective enforcement  client override, else the global setting
 *	key presence           no key            -> API key required (401)
 *	key format             malformed         -> Invalid API key (401)
 *	secret                 unknown/mismatch  -> Invalid API key (401)
 *	key status             inactive          -> Inactive API key (401)
 *	key expiry             expired           -> Expired API key (401)
 *	client binding         other client      -> API key client mismatch (403)
 *	rights                 not all granted   -> Insufficient API key rights (403)
 *	IP policy              ip_policy.c       -> IP blocked / IP not allowed /
 *	                                            Client IP required (403)
 *	rate limits            one is exhausted  -> Rate limit exceeded (429)
 *
 * With enforcement off the same steps run (shadow mode) and the finding is
 * reported, but the request is allowed.  A learning key's IP step cannot
 * finish here: it needs an observation recorded (a write), so the outcome
 * says so and FinishLearningDecision completes it with what the write
 * found.  Rate limits likewise: the step only says that an otherwise
 * allowed request has limits; consuming them is an effect on shared
 * memory, and FinishRateLimitDecision sets what it found.
 *-------------------------------------------------------------------------
 */
#include "decision.h"

#include <string.h>

#include "rights_match.h"

/* Everything a step may read */
typedef struct DecisionContext
{
	const DecisionRequest *request;
	const KeyFacts *key;		/* NULL unless the key is well formed */
	const ClientFacts *client;
} DecisionContext;

/* A step: false ends the decision (a failure, or nothing left to judge) */
typedef bool (*DecisionStep) (const DecisionContext *ctx, DecisionOutcome *out);

/*
 * Salt hashed with the secret of an unknown public id, so that an unknown
 * id costs the same SHA-256 and comparison as a wrong secret.
 */
static const char unknown_key_salt[] = "00000000000000000000000000000000";
static const unsigned char unknown_key_digest[KEY_DIGEST_LEN] = {0};

/* Step: the client's override when it has one, else the global setting */
static bool
StepEffectiveEnforcement(const DecisionContext *ctx, DecisionOutcome *out)
{
	out->enforced = ctx->client->has_override ? ctx->client->enforce_override
		: ctx->client->enforce_default;
	return true;
}

/* Step: without a key nothing else can be judged */
static bool
StepKeyPresence(const DecisionContext *ctx, DecisionOutcome *out)
{
	if (ctx->request->key_parse != KEY_ABSENT)
		return true;
	if (out->enforced)
		out->failure = FAILURE_KEY_REQUIRED;
	return false;
}

/* Step: anything but ath_{public id}.{secret} is an invalid key */
static bool
StepKeyFormat(const DecisionContext *ctx, DecisionOutcome *out)
{
	if (ctx->request->key_parse == KEY_WELL_FORMED)
		return true;
	out->failure = FAILURE_INVALID_KEY;
	return false;
}

/*
 * Hash the presented secret with salt and compare it with expected in
 * constant time; a digest that cannot be computed matches nothing.
 */
static bool
DigestMatches(const char *salt, const ParsedKey *parsed,
			  const unsigned char *expected, DecisionOutcome *out)
{
	unsigned char digest[KEY_DIGEST_LEN];

	if (!ComputeKeyDigest(salt, strlen(salt), parsed->secret, parsed->secret_len, digest))
	{
		out->digest_failed = true;
		return false;
	}
	return KeyDigestsEqual(digest, expected);
}

/*
 * Step: the secret is the key's current one, or the previous one while a
 * rotation's grace period lasts.  An unknown id pays the same hashing.
 */
static bool
StepSecret(const DecisionContext *ctx, DecisionOutcome *out)
{
	const KeyFacts *key = ctx->key;
	const ParsedKey *parsed = &ctx->request->key;
	bool		matches;

	if (!key->exists)
	{
		(void) DigestMatches(unknown_key_salt, parsed, unknown_key_digest, out);
		out->failure = FAILURE_INVALID_KEY;
		return false;
	}
	/* The operator's log names the key even when the secret is wrong */
	out->key_identified = true;
	matches = DigestMatches(key->salt, parsed, key->digest, out);
	if (key->has_previous && ctx->request->now < key->previous_valid_until)
		matches |= DigestMatches(key->previous_salt, parsed, key->previous_digest, out);
	if (!matches)
	{
		out->failure = FAILURE_INVALID_KEY;
		return false;
	}
	out->secret_matched = true;
	return true;
}

/* Step: a deactivated key */
static bool
StepKeyStatus(const DecisionContext *ctx, DecisionOutcome *out)
{
	if (ctx->key->is_active)
		return true;
	out->failure = FAILURE_INACTIVE_KEY;
	return false;
}

/* Step: an expired key; past this step the request is authenticated */
static bool
StepKeyExpiry(const DecisionContext *ctx, DecisionOutcome *out)
{
	if (ctx->key->has_expiry && ctx->key->expires_at <= ctx->request->now)
	{
		out->failure = FAILURE_EXPIRED_KEY;
		return false;
	}
	out->authenticated = true;
	return true;
}

/* Step: a key bound to a client serves that client only (exact bytes) */
static bool
StepClientBinding(const DecisionContext *ctx, DecisionOutcome *out)
{
	const KeyFacts *key = ctx->key;
	const DecisionRequest *request = ctx->request;

	if (key->client_name == NULL)
		return true;
	if (request->client != NULL && request->client_len == key->client_name_len &&
		memcmp(request->client, key->client_name, request->client_len) == 0)
		return true;
	out->failure = FAILURE_CLIENT_MISMATCH;
	return false;
}

/*
 * Step: every required right is satisfied by some granted right.  The
 * work grows with both lists (and a comparison with "*.A" with the length
 * of the required right), all of it the caller's to choose, so the
 * request's check_interrupts runs before each comparison.
 */
static bool
StepRights(const DecisionContext *ctx, DecisionOutcome *out)
{
	const KeyFacts *key = ctx->key;
	const DecisionRequest *request = ctx->request;
	int			i;
	int			j;

	out->rights_checked = true;
	out->nmissing = 0;
	for (i = 0; i < request->nrequired; i++)
	{
		bool		satisfied = false;

		if (request->required[i] == NULL)
			continue;
		for (j = 0; j < key->ngranted && !satisfied; j++)
		{
			if (request->check_interrupts != NULL)
				request->check_interrupts();
			satisfied = RightSatisfies(key->granted[j], key->granted_len[j],
									   request->required[i], request->required_len[i]);
		}
		if (!satisfied)
			out->missing[out->nmissing++] = i;
	}
	if (out->nmissing == 0)
		return true;
	out->failure = FAILURE_INSUFFICIENT_RIGHTS;
	return false;
}

/* The failure of an IP verdict that is neither "allowed" nor "learn" */
static Failure
FailureOfIpVerdict(IpVerdict verdict)
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

/* What the IP policy of SPEC section 5 looks at for this request */
static void
IpPolicyInputOf(const DecisionContext *ctx, IpPolicyInput *in)
{
	memset(in, 0, sizeof(*in));
	in->host = ctx->request->host;
	in->global_blacklist_all = ctx->client->blacklist_all;
	in->global_whitelist_all = ctx->client->whitelist_all;
	in->global_blacklist_client = ctx->client->blacklist_client;
	in->global_whitelist_client = ctx->client->whitelist_client;
	in->key_blacklist = ctx->key->blacklist;
	in->key_whitelist = ctx->key->whitelist;
	in->key_learning = ctx->key->learning;
}

/*
 * Step: the IP policy.  A learning key that no blacklist refuses waits for
 * its observation to be recorded (FinishLearningDecision).
 */
static bool
StepIpPolicy(const DecisionContext *ctx, DecisionOutcome *out)
{
	IpPolicyInput in;
	IpVerdict	verdict;

	IpPolicyInputOf(ctx, &in);
	verdict = EvaluateIpBlacklists(&in);
	if (verdict == IP_VERDICT_ALLOWED)
		verdict = EvaluateIpWhitelists(&in);
	else if (verdict == IP_VERDICT_LEARN)
	{
		out->needs_learning = true;
		return false;
	}
	out->failure = FailureOfIpVerdict(verdict);
	return out->failure == FAILURE_NONE;
}

/* Whether the key or the request's client has rate limits */
bool
RateLimitsApply(const KeyFacts *key, const ClientFacts *client)
{
	return key->nrate_limits > 0 || client->nrate_limits > 0;
}

/*
 * Step: a request that passed every check and has rate limits waits for
 * them (FinishRateLimitDecision); only such a request consumes units.
 */
static bool
StepRateLimits(const DecisionContext *ctx, DecisionOutcome *out)
{
	out->needs_rate_limit = RateLimitsApply(ctx->key, ctx->client);
	return false;
}

static const DecisionStep decision_steps[] = {
	StepEffectiveEnforcement,
	StepKeyPresence,
	StepKeyFormat,
	StepSecret,
	StepKeyStatus,
	StepKeyExpiry,
	StepClientBinding,
	StepRights,
	StepIpPolicy,
	StepRateLimits,
};

/*
 * The verdict of a decision from its failure: allowed when nothing failed,
 * when enforcement is off (shadow mode), or when the policy was
 * unavailable under fail_open.
 */
void
SetVerdict(DecisionOutcome *out, Failure failure, bool fail_open)
{
	out->failure = failure;
	out->reason = FailureReason(failure);
	out->authorized = out->authenticated && failure == FAILURE_NONE;
	if (failure == FAILURE_NONE || !out->enforced ||
		(failure == FAILURE_POLICY_UNAVAILABLE && fail_open))
	{
		out->allowed = true;
		out->status = 200;
	}
	else
	{
		out->allowed = false;
		out->status = FailureStatus(failure);
	}
}

/*
 * Decide request.  key is what is known about its public id (NULL unless
 * the key is well formed); outcome->missing must have room for
 * request->nrequired indexes.  Nothing is written anywhere but outcome.
 */
void
DecideRequest(const DecisionRequest *request, const KeyFacts *key,
			  const ClientFacts *client, DecisionOutcome *outcome)
{
	DecisionContext ctx = {request, key, client};
	int		   *missing = outcome->missing;
	size_t		i;

	memset(outcome, 0, sizeof(*outcome));
	outcome->missing = missing;
	for (i = 0; i < sizeof(decision_steps) / sizeof(decision_steps[0]); i++)
	{
		if (!decision_steps[i] (&ctx, outcome))
			break;
	}
	SetVerdict(outcome, outcome->failure, client->fail_open);
}

/*
 * A key deleted, deactivated or expired while its learning observation
 * waited: the key's own steps failed after all, and the outcome is theirs,
 * not authenticated and with no rights judged, a deleted key's facts not
 * reported (as for an unknown public id).
 */
static Failure
KeyStepFailedAfterWait(LearningOutcome learned, DecisionOutcome *outcome)
{
	outcome->authenticated = false;
	outcome->rights_checked = false;
	outcome->nmissing = 0;
	if (learned == LEARNING_KEY_INACTIVE)
		return FAILURE_INACTIVE_KEY;
	if (learned == LEARNING_KEY_EXPIRED)
		return FAILURE_EXPIRED_KEY;
	outcome->secret_matched = false;
	return FAILURE_INVALID_KEY;
}

/*
 * Finish a decision whose IP step waited for a learning observation, with
 * what recording it found: recorded (or locked in by this call) passes;
 * another call's lock-in is judged by the whitelist it committed; a key
 * that stopped learning meanwhile is judged by its cached whitelist; a key
 * deleted, deactivated or expired meanwhile fails as it would have before
 * the wait; a write that could not be made leaves the policy unavailable.
 */
void
FinishLearningDecision(const DecisionRequest *request, const KeyFacts *key,
					   const ClientFacts *client, LearningOutcome learned,
					   DecisionOutcome *outcome)
{
	DecisionContext ctx = {request, key, client};
	IpPolicyInput in;
	IpVerdict	verdict;
	Failure		failure = FAILURE_NONE;

	outcome->needs_learning = false;
	IpPolicyInputOf(&ctx, &in);
	switch (learned)
	{
		case LEARNING_RECORDED:
			break;
		case LEARNING_LOCKED_IN:
			outcome->locked_in = true;
			break;
		case LEARNING_UNAVAILABLE:
			failure = FAILURE_POLICY_UNAVAILABLE;
			break;
		case LEARNING_RESOLVED_WHITELISTED:
		case LEARNING_RESOLVED_NOT_WHITELISTED:
			/* The cached whitelist predates the lock-in: the fresh one decides */
			in.key_whitelist = NULL;
			verdict = EvaluateIpWhitelists(&in);
			if (verdict == IP_VERDICT_ALLOWED &&
				learned == LEARNING_RESOLVED_NOT_WHITELISTED)
				verdict = IP_VERDICT_NOT_ALLOWED;
			failure = FailureOfIpVerdict(verdict);
			break;
		case LEARNING_NOT_LEARNING:
			in.key_learning = false;
			failure = FailureOfIpVerdict(EvaluateIpWhitelists(&in));
			break;
		case LEARNING_KEY_DELETED:
		case LEARNING_KEY_INACTIVE:
		case LEARNING_KEY_EXPIRED:
			failure = KeyStepFailedAfterWait(learned, outcome);
			break;
	}
	SetVerdict(outcome, failure, client->fail_open);
	outcome->needs_rate_limit = failure == FAILURE_NONE && RateLimitsApply(key, client);
}

/*
 * Finish a decision that waited for its rate limits: exceeded is a
 * refusal like any other (allowed in shadow mode), a bucket that could not
 * be had leaves the policy unavailable under the fail mode.  Only a request
 * that passed the client binding, rights and IP policy gets here, so it
 * stays authorized (SPEC 4: authorized is authenticated and those passed)
 * whatever its limits say.
 */
void
FinishRateLimitDecision(const ClientFacts *client, RateLimitVerdict verdict,
						DecisionOutcome *outcome)
{
	Failure		failure = FAILURE_NONE;

	outcome->needs_rate_limit = false;
	if (verdict == RATE_LIMIT_EXCEEDED)
		failure = FAILURE_RATE_LIMITED;
	else if (verdict == RATE_LIMIT_UNAVAILABLE)
		failure = FAILURE_POLICY_UNAVAILABLE;
	SetVerdict(outcome, failure, client->fail_open);
	outcome->authorized = outcome->authenticated;
}

/*
 * A learning key's rate limits, consumed before its observation is
 * written: when they refuse the request (under enforcement), that is the
 * decision, and the observation is not made, so a refused request neither
 * counts toward lock-in nor becomes a whitelist entry, and the call that
 * locks a key in is always an allowed one (SPEC 6).  Returns whether they
 * refused; otherwise the outcome is left as it was, for the observation.
 */
bool
RateLimitRefusesBeforeLearning(const ClientFacts *client, RateLimitVerdict verdict,
							   DecisionOutcome *outcome)
{
	DecisionOutcome judged = *outcome;

	FinishRateLimitDecision(client, verdict, &judged);
	if (judged.allowed)
		return false;
	judged.needs_learning = false;
	*outcome = judged;
	return true;
}
