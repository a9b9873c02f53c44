/*-------------------------------------------------------------------------
 * log_record.h
 *		A log row as the bytes of one record of the log queue.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_LOG_RECORD_H
#define ATHENA_LOG_RECORD_H

#include "postgres.h"

/* Records are padded to this, so that each one starts aligned in the ring */
#define LOG_RECORD_ALIGN 8

/* Record flags: what the writer does besides inserting the row */
#define LOG_RECORD_STAMP_LAST_USED 0x0001

extern Size LogRecordSize(Datum *values, const bool *nulls);
extern void EncodeLogRecord(const Datum *values, const bool *nulls, uint16 flags,
							char *record, Size size);
extern uint32 LogRecordLength(const char *record);
extern uint16 DecodeLogRecord(const char *record, Datum *values, bool *nulls);

#endif
