/*-------------------------------------------------------------------------
 * log_row.h
 *		One decision, and the one description of its api_key_auth_log row.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_LOG_ROW_H
#define ATHENA_LOG_ROW_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "utils/uuid.h"

/* What a decision puts into its log row */
typedef struct DecisionRecord
{
	bool		key_identified;
	pg_uuid_t	key_id;
	const char *public_id;		/* as presented when well-formed */
	size_t		public_id_len;
	text	   *client;
	Datum		remote_addr;
	bool		has_remote_addr;
	Datum		required_rights;
	bool		has_required_rights;
	Datum		granted_rights;
	bool		has_granted_rights;
	Datum		missing_rights;
	bool		has_missing_rights;
	bool		authenticated;
	bool		authorized;
	bool		enforced;
	bool		allowed;
	int			status;
	const char *reason;
	bool		locked_in;
	bool		stamp_last_used;	/* the log writer stamps last_used_at */
} DecisionRecord;

/*
 * The columns of athena_keys.api_key_auth_log a decision fills, in the
 * order of log_columns[]; every row of values and nulls in the pipeline
 * has LOG_COLUMNS entries in this order.
 */
typedef enum LogColumnIndex
{
	LOG_COL_CREATED_AT,
	LOG_COL_API_KEY_ID,
	LOG_COL_API_KEY_PUBLIC_ID,
	LOG_COL_CLIENT_NAME,
	LOG_COL_REMOTE_ADDR,
	LOG_COL_REQUIRED_RIGHTS,
	LOG_COL_GRANTED_RIGHTS,
	LOG_COL_MISSING_RIGHTS,
	LOG_COL_AUTHENTICATED,
	LOG_COL_AUTHORIZED,
	LOG_COL_ENFORCED,
	LOG_COL_ALLOWED,
	LOG_COL_STATUS,
	LOG_COL_FAILURE_REASON,
	LOG_COL_LOCKED_IN,
	LOG_COLUMNS
} LogColumnIndex;

/*
 * One logged column: its name in api_key_auth_log, which is also its key
 * in the JSON objects athena_record_decisions reads, and its type.
 */
typedef struct LogColumn
{
	const char *name;
	Oid			type;
} LogColumn;

extern const LogColumn log_columns[LOG_COLUMNS];

/* Longest client name copied into a log row, in bytes: any stored name fits
 * (CLIENT_NAME_MAX_LEN is athena_keys.h's) */
#define LOGGED_CLIENT_MAX_BYTES CLIENT_NAME_MAX_LEN

extern Oid	LogTableOid(void);
extern int	FindLogColumns(TupleDesc desc, int *attnums);
extern void LogColumnAttnums(TupleDesc desc, int *attnums);
extern void LogRowFromDecision(const DecisionRecord *decision, Datum *values,
							   bool *nulls);

#endif
