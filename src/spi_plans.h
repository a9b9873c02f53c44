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

extern void EnsureSpiConnected(void);
extern void ResetSpiConnection(void);
extern void ResetSpiConnectionAfterError(void);
extern SPIPlanPtr PrepareKeptPlan(const char *sql, int nargs, const Oid *argtypes,
								  int cursor_options);
extern int	ExecuteKeptPlan(SPIPlanPtr plan, Datum *args, const char *nulls, long count);
extern void FreeKeptPlan(SPIPlanPtr plan);

#endif
