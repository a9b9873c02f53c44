/*-------------------------------------------------------------------------
 * test_decision.c
 *		Unit tests of the decision (decision.c, SPEC section 4): every step,
 *		first failure wins, shadow mode, fail modes, and finishing a
 *		learning key's and a rate-limited request's decision.
 *
 * Built and run by make -C test/unit test (see unit_check.h for the output).
 *-------------------------------------------------------------------------
 */
#include "decision.h"
#include "ip_fixtures.h"
#include "unit_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW ((DecisionTime) 800000000000000LL)
#define SECOND ((DecisionTime) 1000000)

static const char salt[] = "0123456789abcdef0123456789abcdef";
static const char previous_salt[] = "fedcba9876543210fedcba9876543210";
static const char secret[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char previous_secret[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

static char presented[256];
static const char *granted[] = {"users.*", "orders.read"};
static const int granted_len[] = {7, 11};
static TestSet key_whitelist;
static TestSet key_blacklist;
static TestSet global_blacklist;
static TestSet global_whitelist;
static TestSet empty_set;
static IpNet host;

/* A genuine, active, unexpired key bound to client "web" */
static void
GoodKey(KeyFacts *key)
{
	memset(key, 0, sizeof(*key));
	key->exists = true;
	key->salt = salt;
	if (!ComputeKeyDigest(salt, strlen(salt), secret, strlen(secret), key->digest))
		abort();
	key->is_active = true;
	key->client_name = "web";
	key->client_name_len = 3;
	key->ngranted = 2;
	key->granted = granted;
	key->granted_len = granted_len;
	key->whitelist = &key_whitelist.set;
	key->blacklist = &key_blacklist.set;
}

/* Enforcement on, fail closed, the global rules of the fixtures */
static void
EnforcingClient(ClientFacts *client)
{
	memset(client, 0, sizeof(*client));
	client->enforce_default = true;
	client->blacklist_all = &global_blacklist.set;
	client->whitelist_all = &empty_set.set;
}

/* A request presenting text as the key, from client "web" at host */
static void
Request(DecisionRequest *request, const char *key_text, const char *client,
		const char *const *required, const int *required_len, int nrequired)
{
	memset(request, 0, sizeof(*request));
	request->key_parse = key_text == NULL ? KEY_ABSENT :
		ParseApiKey(key_text, strlen(key_text), &request->key);
	request->client = client;
	request->client_len = client ? strlen(client) : 0;
	request->host = &host;
	request->required = required;
	request->required_len = required_len;
	request->nrequired = nrequired;
	request->now = NOW;
}

static int	missing_buffer[8];

/* Decide and return the outcome (missing indexes in missing_buffer) */
static DecisionOutcome
Decide(const DecisionRequest *request, const KeyFacts *key, const ClientFacts *client)
{
	DecisionOutcome outcome;

	outcome.missing = missing_buffer;
	DecideRequest(request, request->key_parse == KEY_WELL_FORMED ? key : NULL, client, &outcome);
	return outcome;
}

/* Check an outcome's failure and status, naming the case */
static void
Expect(const DecisionOutcome *got, Failure failure, int status, bool allowed, const char *name)
{
	Check(got->failure == failure && got->status == status && got->allowed == allowed,
		  "%s: want failure %d status %d allowed %d, got %d %d %d", name,
		  failure, status, allowed, got->failure, got->status, got->allowed);
	Check((got->reason == NULL) == (failure == FAILURE_NONE) &&
		  (got->reason == NULL || strcmp(got->reason, FailureReason(failure)) == 0),
		  "%s: reason is the failure's text", name);
}

static void
TestKeySteps(void)
{
	KeyFacts	key;
	ClientFacts client;
	DecisionRequest request;
	DecisionOutcome out;
	char		wrong[256];

	GoodKey(&key);
	EnforcingClient(&client);

	Request(&request, presented, "web", NULL, NULL, 0);
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_NONE, 200, true, "a genuine key passes");
	CHECK(out.authenticated && out.authorized && out.secret_matched && out.key_identified);
	CHECK(out.rights_checked && out.nmissing == 0 && !out.needs_learning);

	Request(&request, NULL, "web", NULL, NULL, 0);
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_KEY_REQUIRED, 401, false, "no key, enforced");
	CHECK(!out.authenticated && !out.key_identified);

	client.has_override = true;
	client.enforce_override = false;
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_NONE, 200, true, "no key, the client's override turns enforcement off");
	CHECK(!out.enforced && !out.authorized);
	client.has_override = false;

	Request(&request, "Bearer nonsense", "web", NULL, NULL, 0);
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_INVALID_KEY, 401, false, "a malformed key");
	CHECK(!out.key_identified);

	key.exists = false;
	Request(&request, presented, "web", NULL, NULL, 0);
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_INVALID_KEY, 401, false, "an unknown public id");
	CHECK(!out.key_identified && !out.secret_matched);
	key.exists = true;

	snprintf(wrong, sizeof(wrong), "ath_%s.%s", "0011223344556677", previous_secret);
	Request(&request, wrong, "web", NULL, NULL, 0);
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_INVALID_KEY, 401, false, "a wrong secret");
	CHECK(out.key_identified && !out.secret_matched && !out.authenticated);

	/* A rotation's previous secret passes until its grace period ends */
	key.has_previous = true;
	key.previous_salt = previous_salt;
	if (!ComputeKeyDigest(previous_salt, strlen(previous_salt), previous_secret,
						  strlen(previous_secret), key.previous_digest))
		abort();
	key.previous_valid_until = NOW + SECOND;
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_NONE, 200, true, "the previous secret within its grace period");
	key.previous_valid_until = NOW;
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_INVALID_KEY, 401, false, "the previous secret once its grace period ended");
	key.has_previous = false;

	Request(&request, presented, "web", NULL, NULL, 0);
	key.is_active = false;
	key.has_expiry = true;
	key.expires_at = NOW - SECOND;
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_INACTIVE_KEY, 401, false, "inactive comes before expired");
	CHECK(out.secret_matched && !out.authenticated);
	key.is_active = true;
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_EXPIRED_KEY, 401, false, "expired");
	key.expires_at = NOW;
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_EXPIRED_KEY, 401, false, "expiring at this very moment is expired");
	key.expires_at = NOW + 1;
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_NONE, 200, true, "expiring a microsecond later still passes");
	key.has_expiry = false;
}

static int	interrupt_checks;

/* The check_interrupts of a request: counts its calls */
static void
CountInterruptCheck(void)
{
	interrupt_checks++;
}

static void
TestClientAndRights(void)
{
	KeyFacts	key;
	ClientFacts client;
	DecisionRequest request;
	DecisionOutcome out;
	const char *required[] = {"users.read", NULL, "billing.read", "orders.read", "orders.write"};
	int			required_len[] = {10, 0, 12, 11, 12};

	GoodKey(&key);
	EnforcingClient(&client);

	Request(&request, presented, "mobile", required, required_len, 5);
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_CLIENT_MISMATCH, 403, false, "another client comes before the rights");
	CHECK(out.authenticated && !out.authorized && !out.rights_checked);

	Request(&request, presented, NULL, NULL, NULL, 0);
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_CLIENT_MISMATCH, 403, false, "no client for a bound key");
	Request(&request, presented, "we", NULL, NULL, 0);
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_CLIENT_MISMATCH, 403, false, "a prefix of the bound client");
	Request(&request, presented, "webx", NULL, NULL, 0);
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_CLIENT_MISMATCH, 403, false, "the bound client with more after it");
	key.client_name = NULL;
	key.client_name_len = 0;
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_NONE, 200, true, "an unbound key serves any client");
	key.client_name = "web";
	key.client_name_len = 3;

	Request(&request, presented, "web", required, required_len, 5);
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_INSUFFICIENT_RIGHTS, 403, false, "two rights missing");
	CHECK(out.rights_checked && out.nmissing == 2 && missing_buffer[0] == 2 &&
		  missing_buffer[1] == 4);

	/* The caller's interrupt check runs before each comparison of rights: 1 + 2 + 2 + 2 */
	interrupt_checks = 0;
	request.check_interrupts = CountInterruptCheck;
	out = Decide(&request, &key, &client);
	CHECK(out.nmissing == 2 && interrupt_checks == 7);

	Request(&request, presented, "web", required, required_len, 2);
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_NONE, 200, true, "a wildcard grant and a NULL requirement");
	CHECK(out.nmissing == 0);

	/* First failure wins: inactive hides the client and the rights */
	key.is_active = false;
	Request(&request, presented, "mobile", required, required_len, 5);
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_INACTIVE_KEY, 401, false, "first failure wins");
	CHECK(!out.rights_checked);
}

static void
TestIpPolicyStep(void)
{
	KeyFacts	key;
	ClientFacts client;
	DecisionRequest request;
	DecisionOutcome out;
	TestSet		client_whitelist;
	const char *const client_rules[] = {"192.0.2.0/24", NULL};

	GoodKey(&key);
	EnforcingClient(&client);
	Request(&request, presented, "web", NULL, NULL, 0);

	host = HostOf("203.0.113.9");
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_IP_BLOCKED, 403, false, "a globally blacklisted address");
	CHECK(out.authenticated && !out.authorized);

	host = HostOf("192.0.2.1");
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_IP_NOT_ALLOWED, 403, false, "outside the key's whitelist");

	BuildSet(&client_whitelist, client_rules);
	client.whitelist_client = &client_whitelist.set;
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_IP_NOT_ALLOWED, 403, false,
		   "the client's whitelist does not widen the key's");
	client.whitelist_client = NULL;

	request.host = NULL;
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_CLIENT_IP_REQUIRED, 403, false, "no address where rules apply");

	host = HostOf("10.1.2.3");
	request.host = &host;
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_NONE, 200, true, "inside the key's whitelist");
}

static void
TestShadowAndFailModes(void)
{
	KeyFacts	key;
	ClientFacts client;
	DecisionRequest request;
	DecisionOutcome out;

	GoodKey(&key);
	EnforcingClient(&client);
	client.enforce_default = false;
	Request(&request, presented, "web", NULL, NULL, 0);
	host = HostOf("10.1.2.3");

	key.is_active = false;
	out = Decide(&request, &key, &client);
	Check(out.allowed && out.status == 200 && out.failure == FAILURE_INACTIVE_KEY &&
		  out.reason != NULL && !out.authorized && !out.enforced,
		  "shadow mode: the finding is reported, the request allowed");
	key.is_active = true;

	client.enforce_default = true;
	client.has_override = true;
	client.enforce_override = true;
	client.enforce_default = false;
	key.is_active = false;
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_INACTIVE_KEY, 401, false, "the client's override turns enforcement on");
	key.is_active = true;

	SetVerdict(&out, FAILURE_POLICY_UNAVAILABLE, false);
	Expect(&out, FAILURE_POLICY_UNAVAILABLE, 503, false, "policy unavailable, fail closed");
	SetVerdict(&out, FAILURE_POLICY_UNAVAILABLE, true);
	Check(out.allowed && out.status == 200 && out.failure == FAILURE_POLICY_UNAVAILABLE &&
		  !out.authorized, "policy unavailable, fail open: allowed with the reason");
	SetVerdict(&out, FAILURE_IP_BLOCKED, true);
	Expect(&out, FAILURE_IP_BLOCKED, 403, false, "fail open lets only the policy failure through");
}

/*
 * A learning key deleted, deactivated or expired while the observation
 * waited for its row: answered as the key's own steps answer such a key
 * (as if the change had been read first), with no rights judged, no rate
 * limit consumed, and a deleted key's facts not reported.
 */
static void
TestLearningKeyChanged(const DecisionRequest *request, KeyFacts *key, ClientFacts *client)
{
	static const RateLimit limit = {0, 1, 10, 1000000, 10, 100000000, 1000000000, 0};
	static const struct
	{
		LearningOutcome learned;
		Failure		failure;
		bool		facts_reported;
		const char *name;
	}			cases[] =
	{
		{LEARNING_KEY_DELETED, FAILURE_INVALID_KEY, false, "deleted"},
		{LEARNING_KEY_INACTIVE, FAILURE_INACTIVE_KEY, true, "deactivated"},
		{LEARNING_KEY_EXPIRED, FAILURE_EXPIRED_KEY, true, "expired"},
	};
	DecisionOutcome out;
	size_t		i;
	int			fail_open;

	key->nrate_limits = 1;
	key->rate_limits = &limit;
	for (fail_open = 0; fail_open <= 1; fail_open++)
		for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		{
			char		name[160];

			client->fail_open = fail_open;
			out = Decide(request, key, client);
			Check(out.needs_learning && out.rights_checked && out.secret_matched,
				  "learning, key %s meanwhile: decided as learning first", cases[i].name);
			FinishLearningDecision(request, key, client, cases[i].learned, &out);
			snprintf(name, sizeof(name), "learning, key %s meanwhile (fail_open %d)",
					 cases[i].name, fail_open);
			Expect(&out, cases[i].failure, 401, false, name);
			Check(!out.authenticated && !out.authorized && !out.rights_checked &&
				  out.nmissing == 0 && !out.needs_rate_limit && !out.needs_learning &&
				  out.key_identified && out.secret_matched == cases[i].facts_reported,
				  "%s: not authenticated, no rights judged, no rate limit", name);
		}
	key->nrate_limits = 0;
	key->rate_limits = NULL;
	client->fail_open = false;
}

static void
TestLearning(void)
{
	KeyFacts	key;
	ClientFacts client;
	DecisionRequest request;
	DecisionOutcome out;
	static const struct
	{
		LearningOutcome learned;
		bool		fail_open;
		Failure		failure;
		int			status;
		bool		allowed;
		bool		locked_in;
		const char *name;
	}			cases[] =
	{
		{LEARNING_RECORDED, false, FAILURE_NONE, 200, true, false, "recorded"},
		{LEARNING_LOCKED_IN, false, FAILURE_NONE, 200, true, true, "locked in by this call"},
		{LEARNING_UNAVAILABLE, false, FAILURE_POLICY_UNAVAILABLE, 503, false, false, "unavailable, fail closed"},
		{LEARNING_UNAVAILABLE, true, FAILURE_POLICY_UNAVAILABLE, 200, true, false, "unavailable, fail open"},
		{LEARNING_RESOLVED_NOT_WHITELISTED, false, FAILURE_IP_NOT_ALLOWED, 403, false, false,
		"another call locked it in without this address"},
		{LEARNING_RESOLVED_WHITELISTED, false, FAILURE_NONE, 200, true, false,
		"another call locked it in with this address"},
		{LEARNING_NOT_LEARNING, false, FAILURE_IP_NOT_ALLOWED, 403, false, false,
		"learning was switched off: the cached whitelist applies"},
	};
	size_t		i;

	GoodKey(&key);
	EnforcingClient(&client);
	key.learning = true;
	Request(&request, presented, "web", NULL, NULL, 0);
	host = HostOf("192.0.2.1");

	host = HostOf("203.0.113.9");
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_IP_BLOCKED, 403, false, "a blacklist refuses a learning key without learning");
	CHECK(!out.needs_learning);

	host = HostOf("192.0.2.1");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		char		name[160];

		client.fail_open = cases[i].fail_open;
		out = Decide(&request, &key, &client);
		Check(out.needs_learning && out.authenticated,
			  "learning: %s: the IP step waits for the observation", cases[i].name);
		FinishLearningDecision(&request, &key, &client, cases[i].learned, &out);
		snprintf(name, sizeof(name), "learning: %s", cases[i].name);
		Expect(&out, cases[i].failure, cases[i].status, cases[i].allowed, name);
		Check(out.locked_in == cases[i].locked_in && !out.needs_learning,
			  "learning: %s: locked_in %d", cases[i].name, cases[i].locked_in);
	}
	TestLearningKeyChanged(&request, &key, &client);
}

/*
 * Rate limits: only a request that passed everything waits for them, and
 * what they found becomes its verdict under enforcement and fail mode.
 */
static void
TestRateLimits(void)
{
	static const RateLimit limit = {0, 1, 10, 1000000, 10, 100000000, 1000000000, 0};
	KeyFacts	key;
	ClientFacts client;
	DecisionRequest request;
	DecisionOutcome out;

	GoodKey(&key);
	EnforcingClient(&client);
	host = HostOf("10.1.2.3");
	Request(&request, presented, "web", NULL, NULL, 0);
	out = Decide(&request, &key, &client);
	CHECK(!out.needs_rate_limit);

	key.nrate_limits = 1;
	key.rate_limits = &limit;
	out = Decide(&request, &key, &client);
	CHECK(out.needs_rate_limit && out.allowed && out.authorized);
	FinishRateLimitDecision(&client, RATE_LIMIT_EXCEEDED, &out);
	Expect(&out, FAILURE_RATE_LIMITED, 429, false, "an exhausted key limit refuses");
	/* SPEC 4: authorized is authenticated, client binding, rights and IP policy passed */
	CHECK(out.authenticated && out.authorized && !out.needs_rate_limit);

	out = Decide(&request, &key, &client);
	FinishRateLimitDecision(&client, RATE_LIMIT_PASSED, &out);
	Expect(&out, FAILURE_NONE, 200, true, "a limit with units left passes");

	out = Decide(&request, &key, &client);
	FinishRateLimitDecision(&client, RATE_LIMIT_UNAVAILABLE, &out);
	Expect(&out, FAILURE_POLICY_UNAVAILABLE, 503, false, "no bucket, fail closed");
	client.fail_open = true;
	out = Decide(&request, &key, &client);
	FinishRateLimitDecision(&client, RATE_LIMIT_UNAVAILABLE, &out);
	Expect(&out, FAILURE_POLICY_UNAVAILABLE, 200, true, "no bucket, fail open");
	client.fail_open = false;

	client.has_override = true;
	client.enforce_override = false;
	out = Decide(&request, &key, &client);
	FinishRateLimitDecision(&client, RATE_LIMIT_EXCEEDED, &out);
	Expect(&out, FAILURE_RATE_LIMITED, 200, true, "shadow mode reports an exhausted limit");
	client.has_override = false;

	/* A refused request never reaches its limits */
	host = HostOf("203.0.113.9");
	out = Decide(&request, &key, &client);
	Expect(&out, FAILURE_IP_BLOCKED, 403, false, "a blocked address with a limit");
	CHECK(!out.needs_rate_limit);
	host = HostOf("10.1.2.3");
	Request(&request, presented, "other", NULL, NULL, 0);
	out = Decide(&request, &key, &client);
	CHECK(out.failure == FAILURE_CLIENT_MISMATCH && !out.needs_rate_limit);

	/* A client's limits apply to every key presenting it */
	key.nrate_limits = 0;
	key.client_name = NULL;
	client.nrate_limits = 1;
	client.rate_limits = &limit;
	out = Decide(&request, &key, &client);
	CHECK(out.needs_rate_limit);

	/* A learning key waits for its observation first, then for its limits */
	key.learning = true;
	host = HostOf("192.0.2.1");
	out = Decide(&request, &key, &client);
	CHECK(out.needs_learning && !out.needs_rate_limit);
	FinishLearningDecision(&request, &key, &client, LEARNING_RECORDED, &out);
	CHECK(out.needs_rate_limit);
	FinishLearningDecision(&request, &key, &client, LEARNING_UNAVAILABLE, &out);
	CHECK(!out.needs_rate_limit && out.failure == FAILURE_POLICY_UNAVAILABLE);

	/*
	 * Its limits are judged before the observation is written: when they
	 * refuse, that is the decision and nothing is observed (the call that
	 * locks a key in is always allowed); when they admit the request, or in
	 * shadow mode, the observation goes on.
	 */
	CHECK(RateLimitsApply(&key, &client));
	out = Decide(&request, &key, &client);
	CHECK(RateLimitRefusesBeforeLearning(&client, RATE_LIMIT_EXCEEDED, &out));
	Expect(&out, FAILURE_RATE_LIMITED, 429, false, "a learning key over its limit is refused");
	CHECK(!out.needs_learning && !out.locked_in && out.authorized);
	out = Decide(&request, &key, &client);
	CHECK(!RateLimitRefusesBeforeLearning(&client, RATE_LIMIT_PASSED, &out));
	CHECK(out.needs_learning && out.failure == FAILURE_NONE);
	FinishLearningDecision(&request, &key, &client, LEARNING_LOCKED_IN, &out);
	CHECK(out.needs_rate_limit && out.locked_in);
	FinishRateLimitDecision(&client, RATE_LIMIT_PASSED, &out);
	Expect(&out, FAILURE_NONE, 200, true, "the lock-in call within its limits is allowed");
	client.has_override = true;
	client.enforce_override = false;
	out = Decide(&request, &key, &client);
	CHECK(!RateLimitRefusesBeforeLearning(&client, RATE_LIMIT_EXCEEDED, &out));
	CHECK(out.needs_learning);
	client.has_override = false;
	client.nrate_limits = 0;
	CHECK(!RateLimitsApply(&key, &client));
	host = HostOf("10.1.2.3");
}

int
main(void)
{
	const char *const key_white[] = {"10.0.0.0/8", NULL};
	const char *const key_black[] = {"10.9.0.0/16", NULL};
	const char *const global_black[] = {"203.0.113.0/24", NULL};
	const char *const global_white[] = {"192.0.2.0/24", NULL};
	const char *const none[] = {NULL};

	snprintf(presented, sizeof(presented), "ath_%s.%s", "0011223344556677", secret);
	BuildSet(&key_whitelist, key_white);
	BuildSet(&key_blacklist, key_black);
	BuildSet(&global_blacklist, global_black);
	BuildSet(&global_whitelist, global_white);
	BuildSet(&empty_set, none);
	host = HostOf("10.1.2.3");

	TestKeySteps();
	TestClientAndRights();
	TestIpPolicyStep();
	TestShadowAndFailModes();
	TestLearning();
	TestRateLimits();
	return CheckSummary();
}
