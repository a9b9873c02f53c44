/*-------------------------------------------------------------------------
 * key_rows.h
 *		One public id's key row, grants, per-key IP rules and rate limits,
 *		read straight from the tables and their indexes.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_KEY_ROWS_H
#define ATHENA_KEY_ROWS_H

#include "postgres.h"

#include "key_cache.h"

extern void ReadKeyRows(CachedKey *entry, MemoryContext target, uint64 shared_epoch);

#endif
