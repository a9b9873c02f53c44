/*-------------------------------------------------------------------------
 * gateway_batch.c
 *		athena_gateway_verdicts(keys, clients, ips, rights): a batch of
 *		gateway requests decided in one SQL statement, each element as
 *		athena_gateway_verdict decides one request.
 *
 * A statement costs PostgreSQL about as much as the decision itself
 * (protocol, snapshot, transaction, executor start and end), so a gateway
 * that holds several requests at once (athena-authd's pipeline) asks for
 * all of them in one statement.  Element i of each array is an argument of
 * request i, a NULL element a NULL argument; rights[i] is request i's
 * required rights as one comma-separated list (right names never hold a
 * comma), split as string_to_array(rights[i], ',') would.  The answer has
 * one element per request, in order: the compact verdict
 * (gateway_verdict_fields.h), the same decision and the same effects (log
 * row, learning, rate limits, last use) as a call of its own.
 *
 * Each request runs in a subtransaction of its own, so that one request's
 * infrastructure failure (an error a call of its own would have raised)
 * takes back only that request's effects and answers only that request,
 * with an error element: GATEWAY_VERDICT_ERROR, its SQLSTATE and message
 * (gateway_verdict_fields.h).  The gateway treats it as that call's
 * error: its fail mode decides that request.  A cancel of the statement
 * itself (statement_timeout, pg_cancel_backend: raised by PostgreSQL's
 * interrupt handling, ProcessInterrupts) stops the whole statement, as it
 * would stop a call of its own: no request of the batch gets an answer,
 * and the gateway's fail mode decides each.  An error that merely carries
 * the cancel's SQLSTATE (a trigger's RAISE) is one request's error.
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/memutils.h"

#include "gateway_verdict.h"
#include "gateway_verdict_fields.h"
#include "subtransaction.h"

PG_FUNCTION_INFO_V1(athena_gateway_verdicts);

/*
 * The most requests one call decides: with durable logging each request's
 * subtransaction gets an id, and a transaction with more than the 64 that
 * PostgreSQL keeps in shared memory per backend (PGPROC_MAX_CACHED_SUBXIDS)
 * makes every other session's snapshots look up subtransactions on disk
 * while it runs.
 */
#define GATEWAY_BATCH_MAX 64

/* The arguments of athena_gateway_verdicts, in order */
static const char *const batch_argument_names[] = {"keys", "clients", "ips", "rights"};

/* One argument array, deconstructed */
typedef struct BatchColumn
{
	Datum	   *values;
	bool	   *nulls;
	int			count;
} BatchColumn;

/*
 * Argument arg as its elements: a one-dimensional array (or an empty one)
 * of at most GATEWAY_BATCH_MAX elements, never NULL itself.
 */
static void
ReadBatchColumn(FunctionCallInfo fcinfo, int arg, Oid element_type, BatchColumn *column)
{
	ArrayType  *array;
	int			count;

	if (PG_ARGISNULL(arg))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("athena_gateway_verdicts %s must not be null", batch_argument_names[arg]),
				 errhint("Pass an array with one element per request; a NULL element stands for a NULL argument.")));
	array = PG_GETARG_ARRAYTYPE_P(arg);
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("athena_gateway_verdicts %s must be a one-dimensional array", batch_argument_names[arg]),
				 errdetail("The array given has %d dimensions.", ARR_NDIM(array)),
				 errhint("Pass one element per request.")));
	count = ArrayGetNItems(ARR_NDIM(array), ARR_DIMS(array));
	if (count > GATEWAY_BATCH_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("athena_gateway_verdicts takes at most %d requests", GATEWAY_BATCH_MAX),
				 errdetail("The %s array has %d elements.", batch_argument_names[arg], count),
				 errhint("Split the requests into batches of at most %d.", GATEWAY_BATCH_MAX)));
	/* text and inet alike: variable length, not by value, int-aligned */
	deconstruct_array(array, element_type, -1, false, TYPALIGN_INT,
					  &column->values, &column->nulls, &column->count);
}

/*
 * A comma-separated list of rights as the text[] that athena-authd's single
 * call makes of it: PostgreSQL's own string_to_array(joined, ','), in the
 * database's collation as the call's SQL has it.
 */
static Datum
RightsArrayOf(Datum joined)
{
	return DirectFunctionCall2Coll(text_to_array, DEFAULT_COLLATION_OID, joined,
								   CStringGetTextDatum(","));
}

/*
 * The element of a request whose decision raised: the error mark, the
 * SQLSTATE and the message, joined by the verdict's separator.
 */
static Datum
ErrorElement(const ErrorData *edata)
{
	StringInfoData out;

	initStringInfo(&out);
	appendStringInfoChar(&out, GATEWAY_VERDICT_ERROR);
	appendStringInfoChar(&out, GATEWAY_VERDICT_SEPARATOR);
	appendStringInfoString(&out, unpack_sql_state(edata->sqlerrcode));
	appendStringInfoChar(&out, GATEWAY_VERDICT_SEPARATOR);
	appendStringInfoString(&out, edata->message != NULL ? edata->message : "");
	return PointerGetDatum(cstring_to_text_with_len(out.data, out.len));
}

/*
 * Whether an error is the cancel of the statement (statement_timeout,
 * pg_cancel_backend), which PostgreSQL's interrupt handling raises, rather
 * than an error of one request's decision that carries its SQLSTATE
 */
static bool
IsStatementCancel(const ErrorData *edata)
{
	return edata->sqlerrcode == ERRCODE_QUERY_CANCELED && edata->funcname != NULL &&
		strcmp(edata->funcname, "ProcessInterrupts") == 0;
}

/* One request of the batch, as CallInSubtransaction hands it to DecideBody */
typedef struct BatchElement
{
	FunctionCallInfo call;
	MemoryContext scratch;
} BatchElement;

/*
 * The request's decision, run in its subtransaction: its allocations go
 * into scratch, the verdict is copied into the caller's memory context.
 */
static Datum
DecideBody(void *arg)
{
	const BatchElement *element = arg;
	MemoryContext caller_context = MemoryContextSwitchTo(element->scratch);
	Datum		verdict = GatewayVerdictCall(element->call);

	MemoryContextSwitchTo(caller_context);
	return datumCopy(verdict, false, -1);
}

/*
 * Decide one request (the arguments in call) in a subtransaction of its
 * own; its verdict, in the caller's memory context, or its error element
 * when the decision raised.  The request's own allocations go into
 * scratch, reset afterwards.  The statement's cancel is raised again: it
 * ends the statement.
 */
static Datum
DecideElement(FunctionCallInfo call, int index, MemoryContext scratch)
{
	BatchElement element = {call, scratch};
	Datum		answer;
	ErrorData  *edata;

	if (!CallInSubtransaction(DecideBody, &element, &answer, &edata))
	{
		if (IsStatementCancel(edata))
			ReThrowError(edata);
		ereport(LOG,
				(errcode(edata->sqlerrcode),
				 errmsg("athena_keys: request %d of an athena_gateway_verdicts batch failed: %s",
						index + 1, edata->message != NULL ? edata->message : ""),
				 errdetail("That request is answered with its error; the others are decided.")));
		answer = ErrorElement(edata);
		FreeErrorData(edata);
	}
	MemoryContextReset(scratch);
	return answer;
}

/*
 * athena_gateway_verdicts(keys, clients, ips, rights): every request of
 * the batch decided as athena_gateway_verdict(keys[i], clients[i], ips[i],
 * string_to_array(rights[i], ',')) decides it; see the file header
 */
Datum
athena_gateway_verdicts(PG_FUNCTION_ARGS)
{
	BatchColumn columns[4];
	static const Oid element_types[4] = {TEXTOID, TEXTOID, INETOID, TEXTOID};
	MemoryContext scratch;
	Datum	   *answers;
	int			count;
	int			i;

	LOCAL_FCINFO(element, 4);

	for (i = 0; i < 4; i++)
		ReadBatchColumn(fcinfo, i, element_types[i], &columns[i]);
	count = columns[0].count;
	for (i = 1; i < 4; i++)
		if (columns[i].count != count)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("athena_gateway_verdicts arrays must have the same length"),
					 errdetail("keys has %d elements, %s has %d.", count,
							   batch_argument_names[i], columns[i].count),
					 errhint("Pass one element per request in every array, NULL for a NULL argument.")));
	if (count == 0)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(TEXTOID));

	scratch = AllocSetContextCreate(CurrentMemoryContext, "athena_gateway_verdicts request",
									ALLOCSET_DEFAULT_SIZES);
	answers = palloc(sizeof(Datum) * count);
	for (i = 0; i < count; i++)
	{
		MemoryContext caller_context = MemoryContextSwitchTo(scratch);
		int			arg;

		InitFunctionCallInfoData(*element, fcinfo->flinfo, 4, fcinfo->fncollation, NULL, NULL);
		for (arg = 0; arg < 3; arg++)
		{
			element->args[arg].value = columns[arg].values[i];
			element->args[arg].isnull = columns[arg].nulls[i];
		}
		element->args[3].isnull = columns[3].nulls[i];
		element->args[3].value = columns[3].nulls[i] ? (Datum) 0 :
			RightsArrayOf(columns[3].values[i]);
		MemoryContextSwitchTo(caller_context);
		answers[i] = DecideElement(element, i, scratch);
	}
	MemoryContextDelete(scratch);
	PG_RETURN_ARRAYTYPE_P(construct_array(answers, count, TEXTOID, -1, false, TYPALIGN_INT));
}
