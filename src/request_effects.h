/*-------------------------------------------------------------------------
 * request_effects.h
 *		What a decision needs done beyond reading this backend's caches,
 *		with the extension owner's rights for exactly those sections.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_REQUEST_EFFECTS_H
#define ATHENA_REQUEST_EFFECTS_H

#include "postgres.h"

#include "fmgr.h"

#include "athena_keys.h"
#include "config_cache.h"
#include "key_cache.h"
#include "log_routing.h"

/* One call's effects: whose rights, and whether a section was reported */
typedef struct RequestEffects
{
	Oid			function_oid;	/* the called function, whose owner acts */
	bool		reported;
} RequestEffects;

extern void StartRequestEffects(RequestEffects *fx, FunctionCallInfo fcinfo);
extern const EnforcementConfig *ConfigForRequest(RequestEffects *fx);
extern CachedKey *KeyForRequest(RequestEffects *fx, const char *public_id, size_t len);
extern LearningOutcome LearnForRequest(RequestEffects *fx, const CachedKey *key,
									   const IpNet *host);
extern LogOutcome LogForRequest(RequestEffects *fx, const DecisionRecord *record,
								bool learned);
extern void StampLastUseForRequest(RequestEffects *fx, CachedKey *key, TimestampTz now);
extern void FinishRequestEffects(RequestEffects *fx);

#endif
