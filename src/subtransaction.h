/*-------------------------------------------------------------------------
 * subtransaction.h
 *		One call in a subtransaction of its own, its error caught.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_SUBTRANSACTION_H
#define ATHENA_SUBTRANSACTION_H

#include "postgres.h"

/* The work run in the subtransaction; it starts in the caller's memory context */
typedef Datum (*SubtransactionBody) (void *arg);

extern bool CallInSubtransaction(SubtransactionBody body, void *arg, Datum *result,
								 ErrorData **error);

#endif							/* ATHENA_SUBTRANSACTION_H */
