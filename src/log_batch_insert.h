/*-------------------------------------------------------------------------
 * log_batch_insert.h
 *		The log writer's batches inserted straight into the log's partitions.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_LOG_BATCH_INSERT_H
#define ATHENA_LOG_BATCH_INSERT_H

#include "postgres.h"

extern bool InsertLogBatch(const Datum *values, const bool *nulls, int nrows);

#endif
