/*-------------------------------------------------------------------------
 * index_predicates.h
 *		Partial-index predicates of the log's partitions compiled once per
 *		backend (index_predicates.c).
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_INDEX_PREDICATES_H
#define ATHENA_INDEX_PREDICATES_H

#include "postgres.h"
#include "nodes/execnodes.h"

extern void UseKeptIndexPredicates(ResultRelInfo *rri);
extern void RegisterIndexPredicateInvalidation(void);

#endif
