/*-------------------------------------------------------------------------
 * log_insert.h
 *		Log rows inserted into api_key_auth_log through SPI.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_LOG_INSERT_H
#define ATHENA_LOG_INSERT_H

#include "log_row.h"

/* Most rows one log INSERT statement takes (the batched writer's chunk) */
#define LOG_INSERT_MAX_ROWS 512

#include "access/tupdesc.h"

extern void InsertLogRows(const Datum *values, const bool *nulls, int nrows);
extern void InsertDecisionLog(const DecisionRecord *decision);

#endif
