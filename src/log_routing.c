/*-------------------------------------------------------------------------
 * log_routing.c
 *		Which decisions are logged, and where each one's row goes.
 *
 * athena_keys.log_decisions chooses which decisions are written and
 * athena_keys.log_durability whether their commit waits for the WAL flush.
 * Under async the row goes to the log queue (log_queue.c) when athena_keys
 * is preloaded; otherwise (or when its queue is full) the caller inserts
 * it like a durable row (InsertDecisionLog).  The call never changes how
 * the caller's transaction commits: its other writes, before or after the
 * call, keep the durability the caller asked for.  Learning writes are
 * always durable.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"
#include "log_row.h"
#include "log_queue.h"
#include "log_routing.h"

#include "access/xlog.h"
#include "utils/timestamp.h"

/* Whether the settings ask for this decision to be logged */
bool
ShouldLogDecision(const DecisionRecord *decision)
{
	switch (athena_log_decisions)
	{
		case LOG_DECISIONS_NONE:
			return false;
		case LOG_DECISIONS_FAILURES:
			return decision->reason != NULL;
		default:
			return true;
	}
}

/*
 * Whether logging a decision, when it is logged at all, needs an INSERT in
 * this transaction (durable, or async without the log queue) rather than
 * the shared queue or nothing.
 */
bool
DecisionLogNeedsInsert(void)
{
	if (!CanWrite())
		return false;
	return athena_log_durability == LOG_DURABILITY_DURABLE || !LogQueueAvailable();
}

/* Warn at most once a minute per backend that standby decisions go unlogged */
static void
WarnStandbyDecisionUnlogged(void)
{
	static TimestampTz last_warning = 0;
	TimestampTz now = GetCurrentTimestamp();

	if (!TimestampDifferenceExceeds(last_warning, now, 60000))
		return;
	last_warning = now;
	ereport(WARNING,
			(errmsg("athena_keys could not queue a decision of this hot standby for the primary's log"),
			 errdetail("The log writer's queue is full or unavailable, so the decision was answered but not logged."),
			 errhint("Preload athena_keys (shared_preload_libraries) and check that the standby's writer can reach the primary (athena_keys.primary_conninfo).")));
}

/*
 * Route a decision's row without inserting it.  Under async the row goes
 * to the queue when it can take it; a learning call's row always commits
 * with its learning writes.  A transaction that cannot write queues the
 * row whatever the durability setting (on a hot standby the writer ships
 * it to the primary); where the queue cannot take a read-only
 * transaction's row on a primary, the decision cannot be logged
 * (LOG_IMPOSSIBLE).  LOG_NEEDS_INSERT means nothing was done yet: the
 * caller inserts the row (InsertDecisionLog) with the owner's rights.
 */
LogOutcome
RouteDecisionLog(const DecisionRecord *decision, bool learned)
{
	if (RecoveryInProgress())
	{
		/*
		 * A standby's decisions stand when its queue cannot take them (the
		 * primary unreachable for long, no preloaded writer): refusing
		 * every request there would turn a primary outage into a replica
		 * outage.  The loss is reported, at most once a minute.
		 */
		if (!QueueDecisionLog(decision))
			WarnStandbyDecisionUnlogged();
		return LOG_DONE;
	}
	if (!CanWrite())
		return QueueDecisionLog(decision) ? LOG_DONE : LOG_IMPOSSIBLE;
	if (athena_log_durability == LOG_DURABILITY_ASYNC && !learned &&
		QueueDecisionLog(decision))
		return LOG_DONE;
	return LOG_NEEDS_INSERT;
}
