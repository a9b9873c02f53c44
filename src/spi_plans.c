/*-------------------------------------------------------------------------
 * spi_plans.c
 *		SPI for the backend parts: one connection per call, kept plans, and
 *		the caller's memory context handed back after every SPI call.
 *
 * SPI leaves its own procedure context current after connecting and after
 * most calls, and SPI_finish frees that context at the end of the call.
 * What a decision allocates after a query (missing rights, a key entry
 * read for this call only) must outlive it, so every function here makes
 * the caller's context current again before returning.
 *
 * Every statement prepared here names its tables, functions and operators
 * with their schema (OPERATOR(pg_catalog.=) included): they run with the
 * extension owner's rights under the caller's search_path.
 *-------------------------------------------------------------------------
 */
#include "spi_plans.h"

#include "utils/memutils.h"

static bool spi_connected = false;
static MemoryContext spi_caller_context = NULL;

/* Connect to SPI once per call, keeping the caller's memory context current */
void
EnsureSpiConnected(void)
{
	MemoryContext caller = CurrentMemoryContext;

	if (spi_connected)
		return;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "athena_keys: SPI_connect failed");
	spi_connected = true;
	spi_caller_context = caller;
	MemoryContextSwitchTo(caller);
}

/*
 * Start a call's use of SPI, returning the state of any call it is nested
 * in (athena_authenticate run by a trigger that the outer call's log
 * insert fired), which EndSpiCall gives back.
 */
SpiCallState
BeginSpiCall(void)
{
	SpiCallState outer = {spi_connected, spi_caller_context};

	spi_connected = false;
	return outer;
}

/*
 * End a call's use of SPI, also when it raised: the outer call's state
 * comes back, and a connection this call left open is closed by the
 * (sub)transaction abort, not here.
 */
void
EndSpiCall(SpiCallState outer)
{
	spi_connected = outer.connected;
	spi_caller_context = outer.caller_context;
}

/* Disconnect from SPI at the end of a call that succeeded */
void
ResetSpiConnection(void)
{
	if (spi_connected)
	{
		spi_connected = false;
		SPI_finish();
		MemoryContextSwitchTo(spi_caller_context);
	}
}

/* Prepare and keep a plan, handing back the caller's memory context */
SPIPlanPtr
PrepareKeptPlan(const char *sql, int nargs, const Oid *argtypes, int cursor_options)
{
	MemoryContext caller = CurrentMemoryContext;
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, (Oid *) argtypes, cursor_options);

	if (plan == NULL)
		elog(ERROR, "athena_keys: SPI_prepare failed for \"%s\": %s",
			 sql, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "athena_keys: SPI_keepplan failed");
	MemoryContextSwitchTo(caller);
	return plan;
}

/*
 * Execute a kept plan (not read-only: our writes must see themselves),
 * handing back the caller's memory context
 */
int
ExecuteKeptPlan(SPIPlanPtr plan, Datum *args, const char *nulls, long count)
{
	MemoryContext caller = CurrentMemoryContext;
	int			rc = SPI_execute_plan(plan, args, nulls, false, count);

	MemoryContextSwitchTo(caller);
	return rc;
}

/* Free a kept plan, handing back the caller's memory context */
void
FreeKeptPlan(SPIPlanPtr plan)
{
	MemoryContext caller = CurrentMemoryContext;

	SPI_freeplan(plan);
	MemoryContextSwitchTo(caller);
}
