/*-------------------------------------------------------------------------
 * subtransaction.c
 *		One call in a subtransaction of its own, its error caught.
 *
 * A learning write and each request of a batch must answer rather than
 * raise: what fails inside them is rolled back alone and handed to the
 * caller, which decides whether it becomes a verdict or is raised again
 * (a cancel of the statement).  The caller's memory context and resource
 * owner are current again afterwards either way, as PL/pgSQL's exception
 * blocks leave them.
 *-------------------------------------------------------------------------
 */
#include "subtransaction.h"

#include "access/xact.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

/*
 * Run body(arg) in a subtransaction.  True when it returned: *result is
 * its value and its effects are the caller's.  False when it raised: its
 * effects are rolled back and *error is the error, copied into the
 * caller's memory context (FreeErrorData it, or ReThrowError it).
 */
bool
CallInSubtransaction(SubtransactionBody body, void *arg, Datum *result, ErrorData **error)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool returned = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		*result = body(arg);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
		returned = true;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		*error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
	}
	PG_END_TRY();
	return returned;
}
