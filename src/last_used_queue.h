/*-------------------------------------------------------------------------
 * last_used_queue.h
 *		Due last_used_at stamps kept in shared memory, one entry per key,
 *		for the log writer to apply in batches.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_LAST_USED_QUEUE_H
#define ATHENA_LAST_USED_QUEUE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/uuid.h"

/* Keys with a stamp pending or reserved, all databases together */
#define LAST_USED_QUEUE_ENTRIES 8192

/* One pending stamp as the writer takes it */
typedef struct LastUseStamp
{
	Oid			relid;			/* the api_key table the key id belongs to */
	pg_uuid_t	id;
	TimestampTz used_at;
} LastUseStamp;

/* What QueueLastUse did with a stamp */
typedef enum LastUseQueued
{
	LAST_USE_NOT_QUEUED,		/* not preloaded, or the table is full */
	LAST_USE_HELD,				/* under an entry this transaction already holds */
	LAST_USE_RESERVED			/* a new reservation: the database needs a writer */
} LastUseQueued;

/* For backends */
extern void InitLastUseQueue(void);
extern LastUseQueued QueueLastUse(Oid relid, const pg_uuid_t *id, TimestampTz used_at);
extern void ReleaseLatestLastUse(void);

/* For the log writer */
extern int	LastUseQueueTake(Oid dboid, LastUseStamp *out, int max);
extern void LastUseQueueApplied(Oid dboid, const LastUseStamp *done, int n);
extern bool LastUseQueueBusy(Oid dboid);

#endif
