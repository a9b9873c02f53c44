/*-------------------------------------------------------------------------
 * write_access.h
 *		Whether this transaction may write at all.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_WRITE_ACCESS_H
#define ATHENA_WRITE_ACCESS_H

#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"

/* Not on a hot standby, not in a read-only transaction */
static inline bool
CanWrite(void)
{
	return !RecoveryInProgress() && !XactReadOnly;
}

#endif
