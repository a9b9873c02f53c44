/*-------------------------------------------------------------------------
 * key_rows.c
 *		One public id's key row, grants, per-key IP rules and rate limits,
 *		read straight from the tables and their indexes.
 *
 * A key cache miss used to run one SQL statement (the key row with four
 * ARRAY() subqueries): executor start-up of five plans, a sort and SPI's
 * per-statement work cost ten times a cached call.  Here each table is
 * read through its btree index with index scans, as the catalog code
 * reads the system catalogs, under the snapshot SPI would have taken for
 * a statement (a fresh one in READ COMMITTED, the transaction's own in
 * REPEATABLE READ and SERIALIZABLE, after a command counter increment so
 * that the transaction's own edits are seen).
 *
 * Nothing a role creates can change what is read: the tables are found by
 * name in the athena_keys schema and by OID afterwards, the indexes must be
 * valid btrees on exactly the expected columns with the types' default
 * operator families and the columns' collations (or "C", where that finds
 * the same rows), and the scan keys call
 * the built-in equality functions by OID.  Operators, functions and the
 * search_path play no part.  Row-level security is not applied: these are
 * the extension owner's tables, read in its owner-rights section
 * (request_effects.c).  Where the tables are not what the install script
 * made them (a column dropped or retyped, an index missing), the read
 * raises an error that names the table and the column.
 *
 * Where each column and index is (the layout) is worked out once per
 * backend and again whenever the key cache's generation moves
 * (cache_invalidation.c): every ALTER TABLE, CREATE or DROP INDEX on these
 * tables invalidates their relcache entries, which advances it.
 *-------------------------------------------------------------------------
 */
#include "key_rows.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/nbtree.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "executor/tuptable.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "cache_invalidation.h"
#include "key_format.h"
#include "rate_limit_rows.h"

/* The tables read, in the order of the layout's arrays */
typedef enum KeyTable
{
	TABLE_KEY,
	TABLE_GRANT,
	TABLE_RULE,
	TABLE_LIMIT,
	KEY_TABLE_COUNT
} KeyTable;

/* The columns read, each with its table and the type it must have */
typedef enum KeyColumn
{
	COL_KEY_ID,
	COL_KEY_PUBLIC_ID,
	COL_KEY_SALT,
	COL_KEY_HASH,
	COL_KEY_PREVIOUS_SALT,
	COL_KEY_PREVIOUS_HASH,
	COL_KEY_PREVIOUS_VALID_UNTIL,
	COL_KEY_IS_ACTIVE,
	COL_KEY_EXPIRES_AT,
	COL_KEY_CLIENT_NAME,
	COL_KEY_VIRGIN_MODE,
	COL_KEY_VIRGIN_RESOLVED,
	COL_KEY_LAST_USED_AT,
	COL_GRANT_KEY_ID,
	COL_GRANT_RIGHT_NAME,
	COL_RULE_KEY_ID,
	COL_RULE_LIST,
	COL_RULE_ADDR,
	COL_LIMIT_ID,
	COL_LIMIT_KEY_ID,
	COL_LIMIT_REQUESTS,
	COL_LIMIT_PER,
	COL_LIMIT_BURST,
	KEY_COLUMN_COUNT
} KeyColumn;

static const char *const table_names[KEY_TABLE_COUNT] = {
	"api_key", "api_key_right_grant", "api_key_ip_rule", "api_key_rate_limit"
};

static const struct
{
	KeyTable	table;
	const char *name;
	Oid			type;
}			columns[KEY_COLUMN_COUNT] =
{
	[COL_KEY_ID] = {TABLE_KEY, "id", UUIDOID},
	[COL_KEY_PUBLIC_ID] = {TABLE_KEY, "public_id", TEXTOID},
	[COL_KEY_SALT] = {TABLE_KEY, "key_salt", TEXTOID},
	[COL_KEY_HASH] = {TABLE_KEY, "key_hash", TEXTOID},
	[COL_KEY_PREVIOUS_SALT] = {TABLE_KEY, "previous_key_salt", TEXTOID},
	[COL_KEY_PREVIOUS_HASH] = {TABLE_KEY, "previous_key_hash", TEXTOID},
	[COL_KEY_PREVIOUS_VALID_UNTIL] = {TABLE_KEY, "previous_valid_until", TIMESTAMPTZOID},
	[COL_KEY_IS_ACTIVE] = {TABLE_KEY, "is_active", BOOLOID},
	[COL_KEY_EXPIRES_AT] = {TABLE_KEY, "expires_at", TIMESTAMPTZOID},
	[COL_KEY_CLIENT_NAME] = {TABLE_KEY, "client_name", TEXTOID},
	[COL_KEY_VIRGIN_MODE] = {TABLE_KEY, "virgin_mode", BOOLOID},
	[COL_KEY_VIRGIN_RESOLVED] = {TABLE_KEY, "virgin_resolved", BOOLOID},
	[COL_KEY_LAST_USED_AT] = {TABLE_KEY, "last_used_at", TIMESTAMPTZOID},
	[COL_GRANT_KEY_ID] = {TABLE_GRANT, "api_key_id", UUIDOID},
	[COL_GRANT_RIGHT_NAME] = {TABLE_GRANT, "right_name", TEXTOID},
	[COL_RULE_KEY_ID] = {TABLE_RULE, "api_key_id", UUIDOID},
	[COL_RULE_LIST] = {TABLE_RULE, "list", TEXTOID},
	[COL_RULE_ADDR] = {TABLE_RULE, "addr", CIDROID},
	[COL_LIMIT_ID] = {TABLE_LIMIT, "id", INT8OID},
	[COL_LIMIT_KEY_ID] = {TABLE_LIMIT, "api_key_id", UUIDOID},
	[COL_LIMIT_REQUESTS] = {TABLE_LIMIT, "requests", INT4OID},
	[COL_LIMIT_PER] = {TABLE_LIMIT, "per", INTERVALOID},
	[COL_LIMIT_BURST] = {TABLE_LIMIT, "burst", INT4OID},
};

/*
 * The index each table is read through: its leading columns.  The grants'
 * second column gives their order (ORDER BY right_name, in the column's
 * collation); the others are looked up by key id alone.
 */
static const struct
{
	int			nkeys;			/* columns that must lead the index */
	KeyColumn	keys[2];
	int			nsearch;		/* of which the scan searches the first n */
}			indexes[KEY_TABLE_COUNT] =
{
	[TABLE_KEY] = {1, {COL_KEY_PUBLIC_ID}, 1},
	[TABLE_GRANT] = {2, {COL_GRANT_KEY_ID, COL_GRANT_RIGHT_NAME}, 1},
	[TABLE_RULE] = {1, {COL_RULE_KEY_ID}, 1},
	[TABLE_LIMIT] = {1, {COL_LIMIT_KEY_ID}, 1},
};

/*
 * Whether a table holds rows of any key, as far as this generation of the
 * key cache knows.  Many deployments have no per-key IP rules or no per-key
 * rate limits at all; a miss then need not lock, open and search those
 * tables.  What was learned also names the shared key cache's epoch its
 * read ran in (KeyLayout.presence_epoch): a writer's commit is visible,
 * and advances that epoch, before it sends the invalidations that move the
 * generation, so a read in between would otherwise skip a table its
 * snapshot sees a new row in and publish the key without it for every
 * backend, for as long as the epoch stays.
 */
typedef enum KeyRowsPresence
{
	ROWS_UNKNOWN = 0,
	ROWS_NONE,
	ROWS_SOME
} KeyRowsPresence;

/* Where the columns and indexes are, for one generation of the key cache */
typedef struct KeyLayout
{
	bool		known;
	uint64		generation;
	Oid			tables[KEY_TABLE_COUNT];	/* InvalidOid: no limit table */
	Oid			indexes[KEY_TABLE_COUNT];
	Oid			search_collation[KEY_TABLE_COUNT];
	AttrNumber	attnums[KEY_COLUMN_COUNT];
	AttrNumber	last_attnum[KEY_TABLE_COUNT];	/* deform this far */
	TupleTableSlot *slots[KEY_TABLE_COUNT]; /* over copies of the row types */
	KeyRowsPresence presence[KEY_TABLE_COUNT];	/* rules and limits only */
	uint64		presence_epoch[KEY_TABLE_COUNT];	/* the shared epoch it holds in */
} KeyLayout;

static KeyLayout layout;
static MemoryContext layout_context = NULL;

/*
 * A read is under way; still true at the next read when one raised, whose
 * slots may then name buffers the abort unpinned: they are made anew.
 */
static bool reading = false;

/* The relations of one read, opened as they are needed */
typedef struct KeyRead
{
	Relation	tables[KEY_TABLE_COUNT];
	uint64		shared_epoch;	/* read before the snapshot; 0: none */
} KeyRead;

/* The OID of one of the tables, InvalidOid when the schema lacks it */
static Oid
ReadTableOid(KeyTable table)
{
	return table == TABLE_LIMIT ? RateLimitTableOid() : WatchedTableOid(table_names[table]);
}

/* Open one table for this read (locks are kept to the end of the transaction) */
static Relation
OpenKeyTable(KeyRead *read, KeyTable table)
{
	Oid			relid;

	if (read->tables[table] != NULL)
		return read->tables[table];
	relid = ReadTableOid(table);
	if (!OidIsValid(relid))
	{
		if (table == TABLE_LIMIT)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("athena_keys.%s does not exist", table_names[table]),
				 errdetail("Keys cannot be read without it."),
				 errhint("Reinstall the extension.")));
	}
	read->tables[table] = table_open(relid, AccessShareLock);
	return read->tables[table];
}

/* Close the tables one read opened, keeping their locks */
static void
CloseKeyTables(KeyRead *read)
{
	int			t;

	for (t = 0; t < KEY_TABLE_COUNT; t++)
		if (read->tables[t] != NULL)
			table_close(read->tables[t], NoLock);
}

/* The attribute number of a column in rel, checking its type */
static AttrNumber
FindColumn(Relation rel, KeyColumn col)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || strcmp(NameStr(att->attname), columns[col].name) != 0)
			continue;
		if (att->atttypid != columns[col].type)
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("athena_keys.%s column \"%s\" has type %s, not %s",
							table_names[columns[col].table], columns[col].name,
							format_type_be(att->atttypid), format_type_be(columns[col].type)),
					 errdetail("Keys cannot be read while the column has another type."),
					 errhint("Give the column back the type the extension's install script gives it.")));
		return att->attnum;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("athena_keys.%s has no column \"%s\"",
					table_names[columns[col].table], columns[col].name),
			 errdetail("Keys cannot be read without it."),
			 errhint("Add the column back with the type the extension's install script gives it.")));
	return InvalidAttrNumber;	/* not reached */
}

/*
 * Whether index is a valid, plain btree whose leading columns are the
 * table's expected ones, with the types' default operator families and the
 * columns' collations (so that its order and its equality are the ones the
 * SQL statement used).  With bytewise, a one-column text search index must
 * instead be in the "C" collation, whose comparisons are a memcmp: under
 * the column's collation, when it is deterministic, two texts are equal
 * exactly when their bytes are, so it finds the same rows for less.
 */
static bool
IndexFits(Relation heap, Relation index, KeyTable table, bool bytewise)
{
	Form_pg_index form = index->rd_index;
	int			i;

	if (!form->indisvalid || !form->indisready || !form->indislive ||
		index->rd_rel->relam != BTREE_AM_OID ||
		form->indnkeyatts < indexes[table].nkeys ||
		!heap_attisnull(index->rd_indextuple, Anum_pg_index_indexprs, NULL) ||
		!heap_attisnull(index->rd_indextuple, Anum_pg_index_indpred, NULL))
		return false;
	for (i = 0; i < indexes[table].nkeys; i++)
	{
		KeyColumn	col = indexes[table].keys[i];
		Form_pg_attribute att = TupleDescAttr(RelationGetDescr(heap), layout.attnums[col] - 1);
		Oid			opclass = GetDefaultOpClass(columns[col].type, BTREE_AM_OID);
		Oid			collation = bytewise ? C_COLLATION_OID : att->attcollation;

		if (form->indkey.values[i] != layout.attnums[col] ||
			!OidIsValid(opclass) ||
			index->rd_opfamily[i] != get_opclass_family(opclass) ||
			index->rd_indcollation[i] != collation)
			return false;
	}
	return true;
}

/*
 * Whether table's search may go through a "C"-collated index (IndexFits):
 * one text column looked up by equality, in a deterministic collation.
 */
static bool
BytewiseSearchAllowed(Relation heap, KeyTable table)
{
	KeyColumn	col = indexes[table].keys[0];
	Oid			collation;

	if (indexes[table].nkeys != 1 || columns[col].type != TEXTOID)
		return false;
	collation = TupleDescAttr(RelationGetDescr(heap), layout.attnums[col] - 1)->attcollation;
	return OidIsValid(collation) && collation != C_COLLATION_OID &&
		get_collation_isdeterministic(collation);
}

/*
 * The index a table is read through: a "C"-collated one where that finds
 * the same rows (api_key's on public_id: a miss's descent of a large key
 * table compares in the database's collation otherwise, half of its cost),
 * else one in the column's collation.
 */
static Oid
FindIndex(Relation heap, KeyTable table, Oid *search_collation)
{
	List	   *list = RelationGetIndexList(heap);
	ListCell   *lc;
	bool		bytewise = BytewiseSearchAllowed(heap, table);
	Oid			found = InvalidOid;
	Oid			found_bytewise = InvalidOid;

	foreach(lc, list)
	{
		Relation	index = index_open(lfirst_oid(lc), AccessShareLock);

		if (!OidIsValid(found) && IndexFits(heap, index, table, false))
			found = lfirst_oid(lc);
		if (bytewise && !OidIsValid(found_bytewise) && IndexFits(heap, index, table, true))
			found_bytewise = lfirst_oid(lc);
		index_close(index, NoLock);
	}
	list_free(list);
	if (OidIsValid(found_bytewise))
	{
		*search_collation = C_COLLATION_OID;
		return found_bytewise;
	}
	if (!OidIsValid(found))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("athena_keys.%s has no btree index on (%s%s%s)", table_names[table],
						columns[indexes[table].keys[0]].name,
						indexes[table].nkeys > 1 ? ", " : "",
						indexes[table].nkeys > 1 ? columns[indexes[table].keys[1]].name : ""),
				 errdetail("Keys are read through that index."),
				 errhint("Create the index, or reinstall the extension.")));
	*search_collation = TupleDescAttr(RelationGetDescr(heap),
									  layout.attnums[indexes[table].keys[0]] - 1)->attcollation;
	return found;
}

/*
 * Work out the layout from the tables as they are now (every table opened
 * and locked, so that none can change before the read ends).
 */
static void
ResolveLayout(KeyRead *read, uint64 generation)
{
	int			t;
	int			c;
	MemoryContext old;

	layout.known = false;
	if (layout_context == NULL)
		layout_context = AllocSetContextCreate(TopMemoryContext, "athena_keys key rows",
											   ALLOCSET_SMALL_SIZES);
	/* The slots are empty (EndKeyScan), or their pins went with an abort */
	MemoryContextReset(layout_context);
	memset(layout.slots, 0, sizeof(layout.slots));
	for (t = 0; t < KEY_TABLE_COUNT; t++)
	{
		OpenKeyTable(read, (KeyTable) t);
		layout.tables[t] = read->tables[t] ? RelationGetRelid(read->tables[t]) : InvalidOid;
		layout.last_attnum[t] = 0;
		layout.presence[t] = ROWS_UNKNOWN;
		layout.presence_epoch[t] = 0;
	}
	for (c = 0; c < KEY_COLUMN_COUNT; c++)
	{
		Relation	rel = read->tables[columns[c].table];

		layout.attnums[c] = rel ? FindColumn(rel, (KeyColumn) c) : InvalidAttrNumber;
		layout.last_attnum[columns[c].table] = Max(layout.last_attnum[columns[c].table],
												   layout.attnums[c]);
	}
	for (t = 0; t < KEY_TABLE_COUNT; t++)
	{
		Relation	rel = read->tables[t];

		layout.indexes[t] = InvalidOid;
		layout.search_collation[t] = InvalidOid;
		if (rel == NULL)
			continue;
		layout.indexes[t] = FindIndex(rel, (KeyTable) t, &layout.search_collation[t]);
		old = MemoryContextSwitchTo(layout_context);
		layout.slots[t] = MakeSingleTupleTableSlot(CreateTupleDescCopy(RelationGetDescr(rel)),
												   table_slot_callbacks(rel));
		MemoryContextSwitchTo(old);
	}
	layout.generation = generation;
	layout.known = true;
}

/*
 * What this generation knows of table's key rows that holds in read's
 * shared epoch: "none" learned in another epoch is not known any more.
 */
static KeyRowsPresence
PresenceInEpoch(const KeyRead *read, KeyTable table)
{
	if (layout.presence[table] == ROWS_NONE && layout.presence_epoch[table] != read->shared_epoch)
		return ROWS_UNKNOWN;
	return layout.presence[table];
}

/*
 * Whether this generation knows that table holds no key's rows, so read
 * may leave it alone: learned in the shared epoch read runs in.  Only what
 * a READ COMMITTED read found is kept (ReadKeyRows): a transaction
 * snapshot may predate a change whose invalidation has already been
 * consumed.
 */
static bool
KnownWithoutKeyRows(const KeyRead *read, KeyTable table)
{
	return PresenceInEpoch(read, table) == ROWS_NONE && CacheFillAllowed();
}

/*
 * Open and lock every table (but those known to hold no key's rows), then
 * make sure the layout is current.  As in
 * a SQL statement, the locks come before the snapshot: a table rewritten
 * by a transaction this read waited for is then read with a snapshot that
 * sees the rewrite.  Taking the locks applies the invalidations that had
 * arrived, so the generation is compared after them; when it moved, the
 * tables are opened again by the OIDs their names have now.
 */
static void
OpenKeyTables(KeyRead *read)
{
	uint64		generation = KeyCacheGeneration();
	int			t;

	if (layout.known && layout.generation == generation)
	{
		/*
		 * A table dropped by a transaction that committed since the last
		 * invalidations were applied raises here, as the SQL statement's
		 * replanning did.
		 */
		for (t = 0; t < KEY_TABLE_COUNT; t++)
			if (OidIsValid(layout.tables[t]) && !KnownWithoutKeyRows(read, (KeyTable) t))
				read->tables[t] = table_open(layout.tables[t], AccessShareLock);
		if (KeyCacheGeneration() == generation)
			return;
		CloseKeyTables(read);
		memset(read->tables, 0, sizeof(read->tables));
	}
	for (t = 0; t < KEY_TABLE_COUNT; t++)
		OpenKeyTable(read, (KeyTable) t);
	ResolveLayout(read, KeyCacheGeneration());
}

/* An index scan of table with one scan key, under the active snapshot */
static IndexScanDesc
BeginIndexScan(Relation heap, Relation index, KeyTable table, ScanKey key,
			   TupleTableSlot **slot)
{
	IndexScanDesc scan;

#if PG_VERSION_NUM >= 190000
	scan = index_beginscan(heap, index, GetActiveSnapshot(), NULL, 1, 0, SO_NONE);
#elif PG_VERSION_NUM >= 180000
	scan = index_beginscan(heap, index, GetActiveSnapshot(), NULL, 1, 0);
#else
	scan = index_beginscan(heap, index, GetActiveSnapshot(), 1, 0);
#endif
	index_rescan(scan, key, 1, NULL, 0);
	*slot = layout.slots[table];
	return scan;
}

/*
 * An index scan of table for rows whose search column equals value,
 * under the active snapshot; slot receives the rows (the layout's, made
 * once per layout over a copy of the row type).
 */
static IndexScanDesc
BeginKeyScan(Relation heap, Relation index, KeyTable table, Datum value,
			 TupleTableSlot **slot)
{
	ScanKeyData key;
	Oid			type = columns[indexes[table].keys[0]].type;

	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   layout.search_collation[table],
						   type == TEXTOID ? F_TEXTEQ : F_UUID_EQ, value);
	return BeginIndexScan(heap, index, table, &key, slot);
}

/* End a scan BeginKeyScan began, releasing the buffer its slot holds */
static void
EndKeyScan(IndexScanDesc scan, TupleTableSlot *slot)
{
	ExecClearTuple(slot);
	index_endscan(scan);
}

/* A column of the slot's row (deformed far enough already) */
static inline Datum
ColumnValue(TupleTableSlot *slot, KeyColumn col, bool *isnull)
{
	AttrNumber	attnum = layout.attnums[col];

	*isnull = slot->tts_isnull[attnum - 1];
	return slot->tts_values[attnum - 1];
}

/* A text value as a NUL-terminated string in target */
static char *
TextToString(Datum d, MemoryContext target)
{
	text	   *t = DatumGetTextPP(d);
	size_t		len = VARSIZE_ANY_EXHDR(t);
	char	   *s = MemoryContextAlloc(target, len + 1);

	memcpy(s, VARDATA_ANY(t), len);
	s[len] = '\0';
	return s;
}

/* Decode a stored digest; the table's CHECK guarantees 64 hex characters */
static bool
ReadDigest(Datum d, unsigned char *digest)
{
	text	   *t = DatumGetTextPP(d);

	return DecodeHexDigest(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), digest, KEY_DIGEST_LEN);
}

/* The key row's own columns into entry */
static void
StoreKeyColumns(TupleTableSlot *slot, CachedKey *entry, MemoryContext target)
{
	KeyFacts   *facts = &entry->facts;
	bool		isnull;
	Datum		d;

	slot_getsomeattrs(slot, layout.last_attnum[TABLE_KEY]);
	memcpy(&entry->id, DatumGetUUIDP(ColumnValue(slot, COL_KEY_ID, &isnull)), sizeof(pg_uuid_t));
	facts->salt = TextToString(ColumnValue(slot, COL_KEY_SALT, &isnull), target);
	if (!ReadDigest(ColumnValue(slot, COL_KEY_HASH, &isnull), facts->digest))
		memset(facts->digest, 0, KEY_DIGEST_LEN);
	d = ColumnValue(slot, COL_KEY_PREVIOUS_SALT, &isnull);
	facts->has_previous = !isnull;
	if (facts->has_previous)
	{
		facts->previous_salt = TextToString(d, target);
		d = ColumnValue(slot, COL_KEY_PREVIOUS_HASH, &isnull);
		facts->has_previous = !isnull && ReadDigest(d, facts->previous_digest);
		d = ColumnValue(slot, COL_KEY_PREVIOUS_VALID_UNTIL, &isnull);
		facts->previous_valid_until = isnull ? 0 : DatumGetTimestampTz(d);
	}
	d = ColumnValue(slot, COL_KEY_IS_ACTIVE, &isnull);
	facts->is_active = !isnull && DatumGetBool(d);
	d = ColumnValue(slot, COL_KEY_EXPIRES_AT, &isnull);
	facts->has_expiry = !isnull;
	facts->expires_at = isnull ? 0 : DatumGetTimestampTz(d);
	d = ColumnValue(slot, COL_KEY_CLIENT_NAME, &isnull);
	facts->client_name = isnull ? NULL : TextToString(d, target);
	facts->client_name_len = isnull ? 0 : strlen(facts->client_name);
	d = ColumnValue(slot, COL_KEY_VIRGIN_MODE, &isnull);
	facts->learning = !isnull && DatumGetBool(d);
	d = ColumnValue(slot, COL_KEY_VIRGIN_RESOLVED, &isnull);
	facts->learning = facts->learning && !isnull && !DatumGetBool(d);
	d = ColumnValue(slot, COL_KEY_LAST_USED_AT, &isnull);
	entry->last_used_at = isnull ? 0 : DatumGetTimestampTz(d);
}

/*
 * Whether table holds a row of some key (its key id column not NULL: the
 * rate limits of clients do not count) that the active snapshot sees.
 */
static bool
TableHoldsKeyRows(KeyRead *read, KeyTable table)
{
	Relation	heap = read->tables[table];
	Relation	index = index_open(layout.indexes[table], AccessShareLock);
	TupleTableSlot *slot;
	IndexScanDesc scan;
	ScanKeyData key;
	bool		found;

	ScanKeyEntryInitialize(&key, SK_ISNULL | SK_SEARCHNOTNULL, 1, InvalidStrategy,
						   InvalidOid, InvalidOid, InvalidOid, (Datum) 0);
	scan = BeginIndexScan(heap, index, table, &key, &slot);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	EndKeyScan(scan, slot);
	index_close(index, NoLock);
	return found;
}

/*
 * Whether a read must search table for the key's rows: not when this
 * generation knows it holds none in the read's shared epoch (it was then
 * not opened).  The first READ COMMITTED read of a generation and epoch
 * finds out, under the snapshot it reads with; a change since then
 * advances the generation, which forgets it.  A
 * transaction that may have written a table feeding the caches always
 * searches it (CacheFillAllowed).
 */
static bool
MustSearchTable(KeyRead *read, KeyTable table)
{
	if (read->tables[table] == NULL)
		return false;
	if (!CacheFillAllowed())
		return true;
	if (PresenceInEpoch(read, table) == ROWS_UNKNOWN)
	{
		layout.presence[table] = TableHoldsKeyRows(read, table) ? ROWS_SOME : ROWS_NONE;
		layout.presence_epoch[table] = read->shared_epoch;
	}
	return layout.presence[table] != ROWS_NONE;
}

/* Find the key row of entry->public_id; false when there is none */
static bool
ReadKeyRow(KeyRead *read, CachedKey *entry, MemoryContext target)
{
	Relation	heap = read->tables[TABLE_KEY];
	Relation	index = index_open(layout.indexes[TABLE_KEY], AccessShareLock);
	TupleTableSlot *slot;
	IndexScanDesc scan;
	bool		found;

	scan = BeginKeyScan(heap, index, TABLE_KEY, CStringGetTextDatum(entry->public_id), &slot);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	if (found)
		StoreKeyColumns(slot, entry, target);
	EndKeyScan(scan, slot);
	index_close(index, NoLock);
	return found;
}

/*
 * The key's grants, in the order of right_name (the index's, which is the
 * column's collation): as strings for the decision and as the text[] the
 * result row shows.
 */
static void
ReadGrants(KeyRead *read, CachedKey *entry, MemoryContext target)
{
	Relation	heap = read->tables[TABLE_GRANT];
	Relation	index = index_open(layout.indexes[TABLE_GRANT], AccessShareLock);
	TupleTableSlot *slot;
	IndexScanDesc scan;
	int			capacity = 4;
	int			n = 0;
	char	  **names = MemoryContextAlloc(target, sizeof(char *) * capacity);
	int		   *lens = MemoryContextAlloc(target, sizeof(int) * capacity);
	Datum	   *texts = palloc(sizeof(Datum) * capacity);
	MemoryContext old;

	scan = BeginKeyScan(heap, index, TABLE_GRANT, UUIDPGetDatum(&entry->id), &slot);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		d;

		slot_getsomeattrs(slot, layout.last_attnum[TABLE_GRANT]);
		d = ColumnValue(slot, COL_GRANT_RIGHT_NAME, &isnull);
		if (isnull)
			continue;
		if (n == capacity)
		{
			capacity *= 2;
			names = repalloc(names, sizeof(char *) * capacity);
			lens = repalloc(lens, sizeof(int) * capacity);
			texts = repalloc(texts, sizeof(Datum) * capacity);
		}
		names[n] = TextToString(d, target);
		lens[n] = strlen(names[n]);
		texts[n] = PointerGetDatum(cstring_to_text_with_len(names[n], lens[n]));
		n++;
	}
	EndKeyScan(scan, slot);
	index_close(index, NoLock);

	old = MemoryContextSwitchTo(target);
	entry->granted_array = construct_array(texts, n, TEXTOID, -1, false, TYPALIGN_INT);
	MemoryContextSwitchTo(old);
	entry->facts.ngranted = n;
	entry->facts.granted = (const char *const *) names;
	entry->facts.granted_len = lens;
}

/* Append one rule to a growing array in target */
static void
AppendRule(IpNet **rules, int *n, int *capacity, const IpNet *rule, MemoryContext target)
{
	if (*n == *capacity)
	{
		*capacity = *capacity == 0 ? 16 : *capacity * 2;
		*rules = *rules == NULL ? MemoryContextAlloc(target, sizeof(IpNet) * *capacity) :
			repalloc(*rules, sizeof(IpNet) * *capacity);
	}
	(*rules)[(*n)++] = *rule;
}

/* Whether a list column holds name (whitelist or blacklist) */
static bool
ListIs(Datum d, const char *name, size_t len)
{
	text	   *t = DatumGetTextPP(d);

	return VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), name, len) == 0;
}

/*
 * The key's whitelist and blacklist in one scan, built into the rule sets
 * the decision searches (which sorts them once, BuildOwnedRuleSet).
 */
static void
ReadRules(KeyRead *read, CachedKey *entry, MemoryContext target)
{
	Relation	heap = read->tables[TABLE_RULE];
	Relation	index;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	IpNet	   *white = NULL;
	IpNet	   *black = NULL;
	int			nwhite = 0,
				nblack = 0,
				cwhite = 0,
				cblack = 0;

	if (!MustSearchTable(read, TABLE_RULE))
	{
		BuildOwnedRuleSet(&entry->whitelist, NULL, 0, target);
		BuildOwnedRuleSet(&entry->blacklist, NULL, 0, target);
		return;
	}
	index = index_open(layout.indexes[TABLE_RULE], AccessShareLock);
	scan = BeginKeyScan(heap, index, TABLE_RULE, UUIDPGetDatum(&entry->id), &slot);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		list_null;
		bool		addr_null;
		Datum		list;
		Datum		addr;
		IpNet		rule;

		slot_getsomeattrs(slot, layout.last_attnum[TABLE_RULE]);
		list = ColumnValue(slot, COL_RULE_LIST, &list_null);
		addr = ColumnValue(slot, COL_RULE_ADDR, &addr_null);
		if (list_null || addr_null || !IpNetFromInet(DatumGetInetPP(addr), false, &rule))
			continue;
		if (ListIs(list, "whitelist", 9))
			AppendRule(&white, &nwhite, &cwhite, &rule, target);
		else if (ListIs(list, "blacklist", 9))
			AppendRule(&black, &nblack, &cblack, &rule, target);
	}
	EndKeyScan(scan, slot);
	index_close(index, NoLock);

	BuildOwnedRuleSet(&entry->whitelist, white, nwhite, target);
	BuildOwnedRuleSet(&entry->blacklist, black, nblack, target);
}

/* round(extract(epoch FROM per) * 1000000)::bigint, as the SQL computed it */
static int64
PeriodMicroseconds(Datum per)
{
	Datum		epoch = DirectFunctionCall2(extract_interval,
											CStringGetTextDatum("epoch"), per);
	Datum		micros = DirectFunctionCall2(numeric_mul, epoch,
											 NumericGetDatum(int64_to_numeric(1000000)));

	micros = DirectFunctionCall2(numeric_round, micros, Int32GetDatum(0));
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, micros));
}

/* One rate limit row, appended to limits when it is possible */
static void
AppendLimit(TupleTableSlot *slot, RateLimit *limits, int *n)
{
	bool		nulls[5];
	Datum		id = ColumnValue(slot, COL_LIMIT_ID, &nulls[0]);
	Datum		requests = ColumnValue(slot, COL_LIMIT_REQUESTS, &nulls[1]);
	Datum		per = ColumnValue(slot, COL_LIMIT_PER, &nulls[2]);
	Datum		burst = ColumnValue(slot, COL_LIMIT_BURST, &nulls[3]);
	Datum		key_id = ColumnValue(slot, COL_LIMIT_KEY_ID, &nulls[4]);

	if (nulls[0] || nulls[1] || nulls[2] || nulls[3] || nulls[4])
		return;
	if (RateLimitFromValues(DatumGetInt64(id), DatumGetUUIDP(key_id), UUID_LEN,
							DatumGetInt32(requests), PeriodMicroseconds(per),
							DatumGetInt32(burst), &limits[*n]))
		(*n)++;
}

/* The key's rate limits, in the order of their ids (as the SQL had them) */
static void
ReadLimits(KeyRead *read, CachedKey *entry, MemoryContext target)
{
	Relation	heap = read->tables[TABLE_LIMIT];
	Relation	index;
	TupleTableSlot *slot;
	IndexScanDesc scan;
	RateLimit  *limits = NULL;
	int			capacity = 0;
	int			n = 0;
	int			i;

	entry->rate_limits = NULL;
	entry->facts.nrate_limits = 0;
	if (!MustSearchTable(read, TABLE_LIMIT))
		return;
	index = index_open(layout.indexes[TABLE_LIMIT], AccessShareLock);
	scan = BeginKeyScan(heap, index, TABLE_LIMIT, UUIDPGetDatum(&entry->id), &slot);
	while (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		if (n == capacity)
		{
			capacity = capacity == 0 ? 4 : capacity * 2;
			limits = limits == NULL ? MemoryContextAlloc(target, sizeof(RateLimit) * capacity) :
				repalloc(limits, sizeof(RateLimit) * capacity);
		}
		slot_getsomeattrs(slot, layout.last_attnum[TABLE_LIMIT]);
		AppendLimit(slot, limits, &n);
	}
	EndKeyScan(scan, slot);
	index_close(index, NoLock);

	/* A key has a handful of limits: insertion sort by id */
	for (i = 1; i < n; i++)
	{
		RateLimit	limit = limits[i];
		int			j = i - 1;

		while (j >= 0 && limits[j].id > limit.id)
		{
			limits[j + 1] = limits[j];
			j--;
		}
		limits[j + 1] = limit;
	}
	entry->rate_limits = limits;
	entry->facts.nrate_limits = n;
}

/*
 * Fill entry (whose public_id is set) from the tables, its parts allocated
 * in target; entry->facts.exists tells whether a key has this public id.
 * shared_epoch is the shared key cache's epoch the caller read before this
 * read's snapshot (0 when the key will not be shared).  The caller holds
 * the owner's rights.
 */
void
ReadKeyRows(CachedKey *entry, MemoryContext target, uint64 shared_epoch)
{
	KeyRead		read;

	memset(&read, 0, sizeof(read));
	read.shared_epoch = shared_epoch;
	if (reading)
		layout.known = false;
	reading = true;
	OpenKeyTables(&read);

	/* The snapshot a non-read-only SPI statement would run under */
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());

	entry->facts.exists = ReadKeyRow(&read, entry, target);
	if (entry->facts.exists)
	{
		ReadGrants(&read, entry, target);
		ReadRules(&read, entry, target);
		ReadLimits(&read, entry, target);
	}
	entry->facts.rate_limits = entry->rate_limits;

	PopActiveSnapshot();
	CloseKeyTables(&read);
	reading = false;
}
