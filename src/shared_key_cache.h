/*-------------------------------------------------------------------------
 * shared_key_cache.h
 *		The key cache every backend of the server shares (athena_keys
 *		preloaded): what one backend read of a key serves the others.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_SHARED_KEY_CACHE_H
#define ATHENA_SHARED_KEY_CACHE_H

#include "postgres.h"

#include "key_cache.h"

extern void InitSharedKeyCache(void);
extern bool SharedKeyCacheUsable(void);
extern bool SharedKeyCacheFind(CachedKey *entry, Oid key_table, SharedKeyPlace *place,
							   MemoryContext target);
extern void SharedKeyCachePublish(const CachedKey *entry, Oid key_table,
								  const SharedKeyPlace *place);
extern void SharedKeyCacheNoteUse(const CachedKey *entry, Oid key_table);
extern void NoteKeyTablesChanged(void);

#endif
