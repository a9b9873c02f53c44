/*-------------------------------------------------------------------------
 * log_batch_insert.h
 *		Log rows inserted straight into the log's partitions: the log
 *		writer's batches and a call's durable row.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_LOG_BATCH_INSERT_H
#define ATHENA_LOG_BATCH_INSERT_H

#include "postgres.h"

extern bool InsertLogBatch(const Datum *values, const bool *nulls, int nrows, bool from_writer);
extern void RegisterLogLayoutInvalidation(void);

#endif
