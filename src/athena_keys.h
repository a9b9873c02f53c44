/*-------------------------------------------------------------------------
 * athena_keys.h
 *		Declarations shared by the backend parts of athena_keys: name
 *		limits, settings, and the decision log's record.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_KEYS_H
#define ATHENA_KEYS_H

#include "postgres.h"

#include <sys/socket.h>

#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "lib/ilist.h"
#include "utils/array.h"
#include "utils/inet.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "ip_rules.h"
#include "key_digest.h"
#include "key_format.h"
#include "spi_plans.h"
#include "write_access.h"

/*
 * Client names are limited to 256 characters where they are stored (the
 * tables' CHECKs and the admin functions count characters); the caches
 * take their longest byte form, so that every name an admin function
 * accepts is enforced.
 */
#define CLIENT_NAME_MAX_CHARS 256
#define CLIENT_NAME_MAX_LEN (CLIENT_NAME_MAX_CHARS * MAX_MULTIBYTE_CHAR_LEN)

/* Settings (athena_keys.*), defined in athena_keys.c */
typedef enum LogDecisions
{
	LOG_DECISIONS_ALL,
	LOG_DECISIONS_FAILURES,
	LOG_DECISIONS_NONE
} LogDecisions;

typedef enum LogDurability
{
	LOG_DURABILITY_DURABLE,
	LOG_DURABILITY_ASYNC
} LogDurability;

extern int	athena_log_decisions;
extern int	athena_log_durability;
extern int	athena_last_used_interval;
extern int	athena_key_cache_size;
extern bool athena_report_handovers;

/* auth_log.c */
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

/* What became of a decision's log row */
typedef enum LogOutcome
{
	LOG_DONE,					/* inserted or queued */
	LOG_NEEDS_INSERT,			/* needs an INSERT, with the owner's rights */
	LOG_IMPOSSIBLE				/* cannot be written or queued here */
} LogOutcome;

/* Columns of the log insert, created_at first */
#define LOG_COLUMNS 15
/* Most rows one log INSERT statement takes (the batched writer's chunk) */
#define LOG_INSERT_MAX_ROWS 512
/* Longest client name copied into a log row, in bytes: any stored name fits */
#define LOGGED_CLIENT_MAX_BYTES CLIENT_NAME_MAX_LEN

extern bool ShouldLogDecision(const DecisionRecord *decision);
extern void InsertLogRows(Datum *values, const char *nulls, int nrows);
extern bool DecisionLogNeedsInsert(void);
extern LogOutcome RouteDecisionLog(const DecisionRecord *decision, bool learned);
extern void InsertDecisionLog(const DecisionRecord *decision);

/* async_log.c */
extern int	athena_async_log_buffer_kb;
extern int	athena_async_flush_interval_ms;
extern char *athena_primary_conninfo;
extern void InitAsyncLog(void);
extern bool AsyncLogQueueAvailable(void);
extern bool QueueDecisionLog(const DecisionRecord *decision);

#endif
