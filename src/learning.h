/*-------------------------------------------------------------------------
 * learning.h
 *		Virgin mode's write: one observation of a learning key.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_LEARNING_H
#define ATHENA_LEARNING_H

#include "postgres.h"

#include "utils/uuid.h"

#include "decision.h"

extern LearningOutcome RecordLearningObservation(const pg_uuid_t *key_id,
												 const IpNet *host);

#endif
