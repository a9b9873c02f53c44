/*-------------------------------------------------------------------------
 * learning.c
 *		Virgin mode: record the caller IP of a learning key and lock it in
 *		at its threshold (SPEC section 6).
 *
 * The work itself is athena_keys._learn(), which takes the key's row lock
 * so that concurrent calls count exactly and lock in once.  Only learning
 * keys reach this file: every other key is decided without a row lock.
 * It runs with the extension owner's rights (request_effects.c); what it
 * found finishes the decision (FinishLearningDecision in decision.c).
 *-------------------------------------------------------------------------
 */
#include "learning.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"

#include "ip_datums.h"
#include "spi_plans.h"
#include "subtransaction.h"
#include "write_access.h"

static SPIPlanPtr learn_plan = NULL;

/* What athena_keys._learn answers, and the outcome each answer is */
static const struct
{
	const char *answer;
	LearningOutcome outcome;
}			learning_answers[] =
{
	{"learning", LEARNING_RECORDED},
	{"locked_in", LEARNING_LOCKED_IN},
	{"whitelisted", LEARNING_RESOLVED_WHITELISTED},
	{"not_whitelisted", LEARNING_RESOLVED_NOT_WHITELISTED},
	{"not_learning", LEARNING_NOT_LEARNING},
	{"deleted", LEARNING_KEY_DELETED},
	{"inactive", LEARNING_KEY_INACTIVE},
	{"expired", LEARNING_KEY_EXPIRED},
};

/* Run athena_keys._learn for one observation; raises on any failure */
static LearningOutcome
RunLearningCall(const pg_uuid_t *key_id, const IpNet *host)
{
	Datum		args[2];
	char	   *outcome;
	size_t		i;

	if (learn_plan == NULL)
	{
		Oid			argtypes[2] = {UUIDOID, INETOID};

		learn_plan = PrepareKeptPlan("SELECT athena_keys._learn($1, $2)", 2, argtypes, 0);
	}

	args[0] = UUIDPGetDatum(key_id);
	args[1] = InetDatumFromIpNet(host);
	if (ExecuteKeptPlan(learn_plan, args, NULL, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "athena_keys: the learning call failed");

	outcome = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	SPI_freetuptable(SPI_tuptable);

	if (outcome == NULL)
		elog(ERROR, "athena_keys: the learning call returned nothing");
	for (i = 0; i < lengthof(learning_answers); i++)
		if (strcmp(outcome, learning_answers[i].answer) == 0)
			return learning_answers[i].outcome;
	elog(ERROR, "athena_keys: the learning call returned \"%s\"", outcome);
	pg_unreachable();
}

/* One observation, as CallInSubtransaction hands it to LearningCallBody */
typedef struct LearningObservation
{
	const pg_uuid_t *key_id;
	const IpNet *host;
} LearningObservation;

/* The learning write, run in its subtransaction */
static Datum
LearningCallBody(void *arg)
{
	const LearningObservation *observation = arg;

	return Int32GetDatum((int32) RunLearningCall(observation->key_id, observation->host));
}

/*
 * Whether an error raised while learning is the caller's own limit (a
 * cancel, statement_timeout or lock_timeout), which ends the statement as
 * it would anywhere else, rather than a fault of the learning write.
 */
static bool
IsCallersOwnLimit(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_QUERY_CANCELED ||
		sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
}

/*
 * Record one observation for a learning key, locking it in when a
 * threshold is reached.  Returns LEARNING_UNAVAILABLE without touching
 * anything when this transaction cannot write.  The write runs in a
 * subtransaction: whatever fails inside it (a restored database's stale
 * sequence, a constraint, a serialization failure) is rolled back and
 * becomes LEARNING_UNAVAILABLE, a verdict under the fail mode, with a
 * warning in the server log, because the call must answer rather than
 * raise.  Only the caller's own cancel and timeouts propagate.
 */
LearningOutcome
RecordLearningObservation(const pg_uuid_t *key_id, const IpNet *host)
{
	LearningObservation observation = {key_id, host};
	Datum		outcome;
	ErrorData  *edata;

	if (!CanWrite())
		return LEARNING_UNAVAILABLE;

	/* Connected outside the subtransaction, so that its abort keeps SPI */
	EnsureSpiConnected();
	if (CallInSubtransaction(LearningCallBody, &observation, &outcome, &edata))
		return (LearningOutcome) DatumGetInt32(outcome);
	if (IsCallersOwnLimit(edata->sqlerrcode))
		ReThrowError(edata);
	ereport(WARNING,
			(errcode(edata->sqlerrcode),
			 errmsg("athena_keys could not record a learning observation: %s",
					edata->message),
			 errdetail("The request was answered as \"API key policy unavailable\" under the fail mode."),
			 errhint("Fix the cause above; the key learns again from its next request.")));
	FreeErrorData(edata);
	return LEARNING_UNAVAILABLE;
}
