/*-------------------------------------------------------------------------
 * spi_plans.h
 *		SPI for the backend parts: one connection per call, kept plans, and
 *		the caller's memory context handed back after every SPI call.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_SPI_PLANS_H
#define ATHENA_SPI_PLANS_H

#include "postgres.h"

#include "executor/spi.h"

/* The SPI connection state of a call, saved across a nested one */
typedef struct SpiCallState
{
	bool		connected;
	MemoryContext caller_context;
} SpiCallState;

extern SpiCallState BeginSpiCall(void);
extern void EndSpiCall(SpiCallState outer);
extern void EnsureSpiConnected(void);
extern void ResetSpiConnection(void);
extern SPIPlanPtr PrepareKeptPlan(const char *sql, int nargs, const Oid *argtypes,
								  int cursor_options);
extern int	ExecuteKeptPlan(SPIPlanPtr plan, Datum *args, const char *nulls, long count);
extern void FreeKeptPlan(SPIPlanPtr plan);

#endif
