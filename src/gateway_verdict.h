/*-------------------------------------------------------------------------
 * gateway_verdict.h
 *		The compact verdict athena_gateway_verdict returns.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_GATEWAY_VERDICT_H
#define ATHENA_GATEWAY_VERDICT_H

#include "postgres.h"

#include "decision.h"
#include "key_cache.h"
#include "rate_limit.h"

extern Datum GatewayVerdictText(const CachedKey *key, const DecisionOutcome *outcome,
								bool fail_open, const RateLimitReport *rate);
extern Datum GatewayVerdictCall(FunctionCallInfo fcinfo);

#endif
