/*-------------------------------------------------------------------------
 * key_last_used.h
 *		api_key.last_used_at kept within athena_keys.last_used_interval.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_KEY_LAST_USED_H
#define ATHENA_KEY_LAST_USED_H

#include "key_cache.h"

extern bool KeyLastUsedStampDue(const CachedKey *key, TimestampTz now);
extern void TouchKeyLastUsed(CachedKey *key, TimestampTz now);
extern bool QueueKeyLastUsed(CachedKey *key, TimestampTz now);
extern bool ApplyQueuedLastUse(void);
extern void StampLastUseBatch(Datum *ids, Datum *used_at, int n);

#endif
