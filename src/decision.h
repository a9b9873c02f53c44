/*-------------------------------------------------------------------------
 * decision.h
 *		The decision of SPEC section 4 as a pure function (no backend, no
 *		writes): a request and what is known about its key and its
 *		client's policy in, a verdict and the learning it waits for out.
 *
 * The backend glue (authenticate.c) reads the caches, calls
 * DecideRequest, performs the effects the outcome asks for
 * (request_effects.c) and, where a learning observation was needed,
 * finishes the decision with FinishLearningDecision; a request that
 * passed everything and has rate limits waits for them to be consumed
 * (rate_limit.c) and is finished with FinishRateLimitDecision.  A learning
 * key's limits are consumed before its observation is written, so that a
 * request they refuse records nothing (RateLimitRefusesBeforeLearning).
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_DECISION_H
#define ATHENA_DECISION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "failure_reasons.h"
#include "ip_policy.h"
#include "ip_rules.h"
#include "key_digest.h"
#include "key_format.h"
#include "rate_limit_math.h"

/* Microseconds since the PostgreSQL epoch, as TimestampTz */
typedef int64_t DecisionTime;

/* What is known about one public id: the facts a decision reads */
typedef struct KeyFacts
{
	bool		exists;			/* a key has this public id */
	const char *salt;
	unsigned char digest[KEY_DIGEST_LEN];
	bool		has_previous;	/* a rotation's previous secret */
	const char *previous_salt;
	unsigned char previous_digest[KEY_DIGEST_LEN];
	DecisionTime previous_valid_until;
	bool		is_active;
	bool		has_expiry;
	DecisionTime expires_at;
	const char *client_name;	/* NULL = not bound to a client */
	size_t		client_name_len;
	bool		learning;		/* virgin mode, not yet locked in */
	int			ngranted;
	const char *const *granted;
	const int  *granted_len;
	const IpRuleSet *whitelist;
	const IpRuleSet *blacklist;
	int			nrate_limits;	/* the key's own limits */
	const RateLimit *rate_limits;
} KeyFacts;

/* The enforcement and global IP rules that apply to the request's client */
typedef struct ClientFacts
{
	bool		enforce_default;	/* api_key_config */
	bool		has_override;	/* api_key_client_config has the client */
	bool		enforce_override;
	bool		fail_open;
	const IpRuleSet *blacklist_all;
	const IpRuleSet *whitelist_all;
	const IpRuleSet *blacklist_client;	/* NULL: none scoped to the client */
	const IpRuleSet *whitelist_client;
	int			nrate_limits;	/* limits shared by every key presenting the client */
	const RateLimit *rate_limits;
} ClientFacts;

/* One request, as presented (the key already parsed) */
typedef struct DecisionRequest
{
	KeyParseResult key_parse;
	ParsedKey	key;			/* when KEY_WELL_FORMED */
	const char *client;			/* NULL: no client */
	size_t		client_len;
	const IpNet *host;			/* NULL: no or unusable caller address */
	int			nrequired;
	const char *const *required;	/* NULL elements require nothing */
	const int  *required_len;
	DecisionTime now;
	/*
	 * Called before each comparison of the rights step (NULL: never), so
	 * that the backend can honour a cancel while a long list of required
	 * rights is matched against a key with many granted rights.
	 */
	void		(*check_interrupts) (void);
} DecisionRequest;

/* What became of a learning observation the IP step waited for */
typedef enum LearningOutcome
{
	LEARNING_RECORDED,
	LEARNING_LOCKED_IN,
	LEARNING_RESOLVED_WHITELISTED,
	LEARNING_RESOLVED_NOT_WHITELISTED,
	LEARNING_NOT_LEARNING,
	LEARNING_KEY_DELETED,		/* while the call waited for its row */
	LEARNING_KEY_INACTIVE,
	LEARNING_KEY_EXPIRED,
	LEARNING_UNAVAILABLE
} LearningOutcome;

/* What the rate limits the decision waited for found */
typedef enum RateLimitVerdict
{
	RATE_LIMIT_PASSED,			/* every limit admitted the request */
	RATE_LIMIT_EXCEEDED,		/* some limit refused it */
	RATE_LIMIT_UNAVAILABLE		/* no bucket could be had (not preloaded, table full) */
} RateLimitVerdict;

/* The verdict and what the decision found on the way */
typedef struct DecisionOutcome
{
	Failure		failure;		/* the first failure, FAILURE_NONE if none */
	bool		enforced;
	bool		key_identified;	/* the public id names a key */
	bool		secret_matched; /* the key's facts may be reported */
	bool		authenticated;
	bool		authorized;
	bool		allowed;
	int			status;
	const char *reason;			/* NULL when nothing failed */
	bool		rights_checked; /* missing[] is meaningful */
	int			nmissing;
	int		   *missing;		/* indexes into required; caller's buffer */
	bool		needs_learning; /* the IP step waits on an observation */
	bool		needs_rate_limit;	/* an otherwise allowed request waits on its limits */
	bool		locked_in;		/* this call completed a lock-in */
	bool		digest_failed;	/* SHA-256 could not be computed */
} DecisionOutcome;

extern void DecideRequest(const DecisionRequest *request, const KeyFacts *key,
						  const ClientFacts *client, DecisionOutcome *outcome);
extern void FinishLearningDecision(const DecisionRequest *request, const KeyFacts *key,
								   const ClientFacts *client, LearningOutcome learned,
								   DecisionOutcome *outcome);
extern void FinishRateLimitDecision(const ClientFacts *client, RateLimitVerdict verdict,
									DecisionOutcome *outcome);
extern bool RateLimitsApply(const KeyFacts *key, const ClientFacts *client);
extern bool RateLimitRefusesBeforeLearning(const ClientFacts *client, RateLimitVerdict verdict,
										   DecisionOutcome *outcome);
extern void SetVerdict(DecisionOutcome *outcome, Failure failure, bool fail_open);

#endif
