/*-------------------------------------------------------------------------
 * log_routing.h
 *		Which decision is logged, and where its row goes: nowhere, the
 *		log queue, an INSERT of the caller's, or the primary (from a hot
 *		standby).  The interface the decision code calls.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_LOG_ROUTING_H
#define ATHENA_LOG_ROUTING_H

#include "log_insert.h"
#include "log_row.h"

/* What became of a decision's log row */
typedef enum LogOutcome
{
	LOG_DONE,					/* inserted or queued */
	LOG_NEEDS_INSERT,			/* nothing done yet: needs InsertDecisionLog */
	LOG_IMPOSSIBLE				/* cannot be written or queued here */
} LogOutcome;

extern bool ShouldLogDecision(const DecisionRecord *decision);
extern bool DecisionLogNeedsInsert(void);
extern LogOutcome RouteDecisionLog(const DecisionRecord *decision, bool learned);

#endif
