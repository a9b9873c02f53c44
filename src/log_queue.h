/*-------------------------------------------------------------------------
 * log_queue.h
 *		The shared-memory queue of log records, one ring per database.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_LOG_QUEUE_H
#define ATHENA_LOG_QUEUE_H

#include "log_row.h"
#include "storage/latch.h"

/* Slots, one database each */
#define LOG_QUEUE_SLOTS 8

/* For backends */
extern void InitLogQueue(void);
extern bool LogQueueAvailable(void);
extern bool QueueDecisionLog(const DecisionRecord *decision);
extern bool LogQueueEnsureWriter(void);

/* For the writer of a slot (log_writer.c) */
extern bool LogQueueAttachWriter(int slot, uint64 generation, Oid *dboid);
extern void LogQueueWriterStarted(int slot, Latch *latch);
extern bool LogQueuePending(int slot, uint64 *start, uint64 *end);
extern void LogQueueRead(int slot, uint64 pos, char *dst, Size len);
extern void LogQueueConsumed(int slot, uint64 end);
extern bool LogQueueBusy(int slot);
extern bool LogQueueReleaseIfIdle(int slot);
extern void LogQueueWriterGone(int slot, uint64 generation, bool connected, bool failed);

#endif
