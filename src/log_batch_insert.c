/*-------------------------------------------------------------------------
 * log_batch_insert.c
 *		Log rows inserted straight into the log's partitions, as COPY FROM
 *		does, instead of through a SQL statement: the log writer's batches,
 *		and a call's own durable row (a batch of one).
 *
 * The statement (log_insert.c: INSERT ... SELECT FROM unnest of a row
 * array) forms every row twice, into the array and again in the executor,
 * scans and projects it, and inserts it alone.  Here each row is formed
 * once, routed by the executor's own partition routing, given the defaults
 * of the columns the queue does not carry (the log's id: nextval of the
 * sequence its default names in the catalog, called directly; any other
 * default expression evaluated as the statement would), checked with
 * ExecConstraints, inserted per partition with table_multi_insert and
 * indexed with ExecInsertIndexTuples (partial indexes with the predicates
 * index_predicates.c keeps compiled).
 *
 * This is taken only where the rows come out as the statement's would.
 * The writer is a superuser; a call runs with the extension owner's
 * rights, so a non-superuser owner without INSERT on the log goes to the
 * statement, which refuses it as before.  A trigger on
 * the log or on a partition a row goes to, a rule on the log (the
 * statement's rewrite applies it), row-level security, a generated
 * column, a foreign or sub-partitioned partition, a partition key that is
 * an expression or a column the queue does not carry, a logged column with
 * a type modifier (the statement would coerce to it), a logged column
 * missing or of another type (the statement refuses it by name, or casts
 * to it), or a domain-typed
 * column without a default (the statement would check a NULL against the
 * domain) sends the batch to the statement instead, decided before any
 * default is evaluated, so a batch that falls back has consumed no id.
 *
 * A call's row is inserted as a row of the calling statement, under its
 * snapshot and command id (the statement took a new snapshot of its own):
 * only a default expression that reads tables could tell.
 *
 * What the log's own definition decides (where the logged columns sit,
 * the partition key, the defaults, a refusal) is worked out once per
 * backend and kept until an invalidation of the log, of a type a column
 * takes its default from (a domain's) or of the log's schema: a call's
 * durable row would otherwise pay for it on every call (parsing the
 * stored defaults, matching the column names).
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"
#include "index_predicates.h"
#include "log_row.h"
#include "log_insert.h"
#include "log_batch_insert.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/tupconvert.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "executor/execPartition.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "partitioning/partbounds.h"
#include "partitioning/partdesc.h"
#include "utils/acl.h"
#include "utils/datum.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/partcache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#if PG_VERSION_NUM >= 160000
#include "parser/parse_relation.h"
#endif

/*
 * The rows of one batch bound for one partition.  Each row is a virtual
 * slot of its values (what constraints and index entries read, with no
 * deforming) and a heap slot of the tuple formed once from them (what the
 * table AM inserts, with no copying), both of a copy of the partition's
 * descriptor: a copy is not reference-counted, so a slot per row costs no
 * resource owner entry.
 */
typedef struct PartitionRows
{
	ResultRelInfo *rri;
	TupleDesc	desc;
	TupleTableSlot **value_slots;
	TupleTableSlot **tuple_slots;
	int			nrows;
} PartitionRows;

/*
 * A column the queue does not carry, given its default: the nextval of a
 * sequence called directly when the default is just that (the log's id),
 * else the default expression evaluated as the statement would.
 */
typedef struct ColumnDefault
{
	AttrNumber	attno;
	Oid			sequence;
	Expr	   *expr;
	ExprState  *state;
} ColumnDefault;

/* The column types a layout follows one by one; more forget it at any type's change */
#define LOG_LAYOUT_WATCHED_TYPES 8

/*
 * What the log's definition decides for a direct insert, worked out from
 * the locked log and kept in layout_context until the log's relcache
 * entry is invalidated (LogLayoutInvalidated).  The default expressions
 * are kept as planned nodes; their states belong to each batch.
 */
typedef struct LogLayout
{
	bool		valid;
	Oid			relid;
	const char *refusal;		/* a constant string, or NULL */
	bool		columns_misplaced;	/* a logged column missing or retyped */
	uint32		schema_hash;	/* the log's schema, in the namespace syscache */
	int			ntype_hashes;	/* -1: too many types to watch one by one */
	uint32		type_hashes[LOG_LAYOUT_WATCHED_TYPES];	/* types giving a default */
	int			attnums[LOG_COLUMNS];
	int			key_cols[PARTITION_MAX_KEYS];
	int			nkey;
	ColumnDefault *defaults;
	int			ndefaults;
} LogLayout;

static LogLayout layout;
static MemoryContext layout_context = NULL;

/* Counts invalidations, so a layout built while one arrived is not kept */
static uint64 layout_generation = 0;

/* The executor state of one batch, as COPY FROM sets it up */
typedef struct BatchState
{
	EState	   *estate;
	ModifyTableState *mtstate;
	ResultRelInfo *root;
	PartitionTupleRouting *proute;
	TupleTableSlot *root_slot;
} BatchState;

/* A generated column of either kind, which the statement computes */
static bool
HasGeneratedColumns(TupleDesc desc)
{
	if (desc->constr == NULL)
		return false;
#if PG_VERSION_NUM >= 180000
	if (desc->constr->has_generated_virtual)
		return true;
#endif
	return desc->constr->has_generated_stored;
}

/*
 * Whether a partition of the log is itself partitioned, from the log's
 * partition descriptor: the executor routes a row down every level, and
 * the direct path's routing slot holds the log's key alone.
 */
static bool
HasPartitionedPartition(Relation rel)
{
	PartitionDesc desc = RelationGetPartitionDesc(rel, false);
	int			i;

	for (i = 0; i < desc->nparts; i++)
		if (!desc->is_leaf[i])
			return true;
	return false;
}

/* The sequence when expr is exactly nextval('sequence'), else InvalidOid */
static Oid
PlainNextvalSequence(Expr *expr)
{
	FuncExpr   *func = (FuncExpr *) expr;
	Const	   *arg;

	if (!IsA(expr, FuncExpr) || func->funcid != F_NEXTVAL || list_length(func->args) != 1)
		return InvalidOid;
	arg = (Const *) linitial(func->args);
	if (!IsA(arg, Const) || arg->consttype != REGCLASSOID || arg->constisnull)
		return InvalidOid;
	return DatumGetObjectId(arg->constvalue);
}

/*
 * Why the log itself keeps a batch from bypassing the statement (see the
 * file comment), or NULL.  Fills in, for the routing, which logged columns form the
 * partition key (key_cols, *nkey), and the defaults of the columns the
 * queue does not carry (defaults, *ndefaults); a column without one stays
 * NULL, as in the statement.
 */
static const char *
LogRefusesDirectInsert(Relation rel, const int *attnums, int *key_cols, int *nkey,
					   ColumnDefault *defaults, int *ndefaults)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			logged_col[MaxHeapAttributeNumber + 1];
	PartitionKey key;
	int			col;
	int			attno;
	int			i;

	if (rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		return "the log is not partitioned";
	if (rel->rd_rel->relrowsecurity)
		return "the log has row-level security";
	if (rel->trigdesc != NULL)
		return "the log has triggers";
	/* relhasrules stays set after the last rule is dropped: the rules themselves */
	if (rel->rd_rules != NULL)
		return "the log has rules";
	if (HasGeneratedColumns(desc))
		return "the log has generated columns";
	/* A log that is a partition gets its own bounds checked on the key-only routing slot */
	if (rel->rd_rel->relispartition)
		return "the log is a partition of another table";

	for (attno = 0; attno <= desc->natts; attno++)
		logged_col[attno] = -1;
	for (col = 0; col < LOG_COLUMNS; col++)
	{
		if (TupleDescAttr(desc, attnums[col] - 1)->atttypmod != -1)
			return "a logged column has a type modifier";
		logged_col[attnums[col]] = col;
	}

	key = RelationGetPartitionKey(rel);
	*nkey = 0;
	for (i = 0; i < key->partnatts; i++)
	{
		if (key->partattrs[i] == 0 || logged_col[key->partattrs[i]] < 0)
			return "the partition key is not made of logged columns";
		key_cols[(*nkey)++] = logged_col[key->partattrs[i]];
	}

	*ndefaults = 0;
	for (attno = 1; attno <= desc->natts; attno++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, attno - 1);
		Expr	   *expr;

		if (att->attisdropped || logged_col[attno] >= 0)
			continue;
		expr = (Expr *) build_column_default(rel, attno);
		if (expr == NULL)
		{
			if (get_typtype(att->atttypid) == TYPTYPE_DOMAIN)
				return "a column of a domain type has no default";
			continue;
		}
		defaults[*ndefaults].attno = attno;
		defaults[*ndefaults].expr = expr;
		defaults[*ndefaults].sequence = PlainNextvalSequence(expr);
		defaults[*ndefaults].state = NULL;
		(*ndefaults)++;
	}
	return NULL;
}

/* Why a partition a row is routed to cannot take rows directly, or NULL */
static const char *
PartitionRefusesDirectInsert(ResultRelInfo *rri)
{
	Relation	rel = rri->ri_RelationDesc;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rri->ri_FdwRoutine != NULL)
		return "a partition is not a plain table";
	if (rri->ri_TrigDesc != NULL)
		return "a partition has triggers";
	if (HasGeneratedColumns(RelationGetDescr(rel)))
		return "a partition has generated columns";
	return NULL;
}

/*
 * The executor state for inserting into the log rel: a one-entry range
 * table (error reports read the target's entry), the log as the root
 * result relation, and partition routing from it, all in the state's own
 * memory (the routing keeps its partitions' states in the context it is
 * set up in), which EndBatch frees.
 */
static void
StartBatch(BatchState *batch, Relation rel)
{
	EState	   *estate = CreateExecutorState();
	MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	ModifyTableState *mtstate;
#if PG_VERSION_NUM >= 160000
	List	   *perminfos = NIL;
#endif

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
#if PG_VERSION_NUM >= 180000
	addRTEPermissionInfo(&perminfos, rte);
	ExecInitRangeTable(estate, list_make1(rte), perminfos, bms_make_singleton(1));
#elif PG_VERSION_NUM >= 160000
	addRTEPermissionInfo(&perminfos, rte);
	ExecInitRangeTable(estate, list_make1(rte), perminfos);
#else
	ExecInitRangeTable(estate, list_make1(rte));
#endif
	estate->es_snapshot = GetActiveSnapshot();
	estate->es_output_cid = GetCurrentCommandId(true);

	batch->root = makeNode(ResultRelInfo);
	InitResultRelInfo(batch->root, rel, 1, NULL, 0);

	mtstate = makeNode(ModifyTableState);
	mtstate->ps.plan = NULL;
	mtstate->ps.state = estate;
	mtstate->operation = CMD_INSERT;
	mtstate->mt_nrels = 1;
	mtstate->resultRelInfo = batch->root;
	mtstate->rootResultRelInfo = batch->root;

	batch->estate = estate;
	batch->mtstate = mtstate;
	batch->proute = ExecSetupPartitionTupleRouting(estate, rel);
	batch->root_slot = ExecInitExtraTupleSlot(estate, RelationGetDescr(rel), &TTSOpsVirtual);
	MemoryContextSwitchTo(old);
}

/* Close what StartBatch and the routing opened */
static void
EndBatch(BatchState *batch)
{
	ExecCleanupTupleRouting(batch->mtstate, batch->proute);
	ExecResetTupleTable(batch->estate->es_tupleTable, false);
	FreeExecutorState(batch->estate);
}

/*
 * Store a row of the log's layout in slot: the logged columns of one
 * queued row from values and nulls, the columns with a default from it,
 * every other column NULL.  By-reference defaults are copied into the
 * batch's memory (the current context), which outlives the slot's use.
 */
static void
StoreLogRow(TupleTableSlot *slot, const int *attnums, const Datum *values, const bool *nulls,
			ColumnDefault *defaults, int ndefaults, bool check_permissions, EState *estate)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;
	ExprContext *econtext = GetPerTupleExprContext(estate);
	int			col;
	int			d;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * desc->natts);
	for (col = 0; col < LOG_COLUMNS; col++)
	{
		slot->tts_values[attnums[col] - 1] = values[col];
		slot->tts_isnull[attnums[col] - 1] = nulls[col];
	}
	for (d = 0; d < ndefaults; d++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, defaults[d].attno - 1);
		Datum		value;
		bool		isnull = false;

		if (OidIsValid(defaults[d].sequence))
			value = Int64GetDatum(nextval_internal(defaults[d].sequence, check_permissions));
		else
		{
			MemoryContext batch_context = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);

			value = ExecEvalExpr(defaults[d].state, econtext, &isnull);
			MemoryContextSwitchTo(batch_context);
			if (!isnull && !att->attbyval)
				value = datumCopy(value, false, att->attlen);
		}
		slot->tts_values[defaults[d].attno - 1] = value;
		slot->tts_isnull[defaults[d].attno - 1] = isnull;
	}
	ExecStoreVirtualTuple(slot);
	ResetPerTupleExprContext(estate);
}

/* The map from the log's row layout to a partition's, NULL when the same */
static TupleConversionMap *
RootToPartitionMap(ResultRelInfo *rri, EState *estate)
{
#if PG_VERSION_NUM >= 160000
	return ExecGetRootToChildMap(rri, estate);
#else
	(void) estate;
	return rri->ri_RootToPartitionMap;
#endif
}

/* The index entries of one inserted row, as INSERT makes them */
static void
InsertIndexEntries(ResultRelInfo *rri, TupleTableSlot *slot, EState *estate)
{
	List	   *recheck;

#if PG_VERSION_NUM >= 190000
	recheck = ExecInsertIndexTuples(rri, estate, 0, slot, NIL, NULL);
#elif PG_VERSION_NUM >= 160000
	recheck = ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL, false);
#else
	recheck = ExecInsertIndexTuples(rri, slot, estate, false, false, NULL, NIL);
#endif
	/* Only deferrable constraints recheck, and they are triggers: refused */
	Assert(recheck == NIL);
	list_free(recheck);
}

/*
 * The partition of the root slot's row, as the statement routes it (a row
 * no partition takes raises what the statement raises), as an entry of
 * parts: new partitions are added, or the reason the statement must write
 * to one is returned in *refusal.  Every partition is a leaf (RouteRows),
 * so the row's partition is a direct one of the log.
 */
static int
PartitionOfRow(BatchState *batch, PartitionRows *parts, int *nparts, int nrows,
			   const char **refusal)
{
	ResultRelInfo *rri = ExecFindPartition(batch->mtstate, batch->root, batch->proute,
										   batch->root_slot, batch->estate);
	int			p;

	ResetPerTupleExprContext(batch->estate);
	for (p = 0; p < *nparts && parts[p].rri != rri; p++)
		;
	if (p < *nparts)
		return p;
	*refusal = PartitionRefusesDirectInsert(rri);
	if (*refusal != NULL)
		return -1;
	UseKeptIndexPredicates(rri);
	parts[p].rri = rri;
	parts[p].desc = CreateTupleDescCopy(RelationGetDescr(rri->ri_RelationDesc));
	parts[p].value_slots = palloc(sizeof(TupleTableSlot *) * nrows);
	parts[p].tuple_slots = palloc(sizeof(TupleTableSlot *) * nrows);
	parts[p].nrows = 0;
	(*nparts)++;
	return p;
}

/* Store row i's partition key, alone, in the root slot */
static void
StoreKeyOfRow(TupleTableSlot *slot, const int *attnums, const int *key_cols, int nkey,
			  const Datum *values, const bool *nulls, int i)
{
	int			k;

	ExecClearTuple(slot);
	for (k = 0; k < nkey; k++)
	{
		int			col = key_cols[k];

		slot->tts_values[attnums[col] - 1] = values[i * LOG_COLUMNS + col];
		slot->tts_isnull[attnums[col] - 1] = nulls[i * LOG_COLUMNS + col];
	}
	ExecStoreVirtualTuple(slot);
}

/*
 * The rows with the lowest and highest key under the key's own ordering,
 * when the log is range-partitioned on one column and no key is NULL:
 * every row between them goes where they both go, unless that is the
 * default partition (the one partition whose rows are not an interval).
 */
static bool
KeyRange(Relation rel, const int *key_cols, int nkey, const Datum *values, const bool *nulls,
		 int nrows, int *lowest, int *highest)
{
	PartitionKey key = RelationGetPartitionKey(rel);
	int			col = key_cols[0];
	int			i;

	if (key->strategy != PARTITION_STRATEGY_RANGE || nkey != 1)
		return false;
	*lowest = *highest = 0;
	for (i = 0; i < nrows; i++)
	{
		Datum		value = values[i * LOG_COLUMNS + col];

		if (nulls[i * LOG_COLUMNS + col])
			return false;
		if (DatumGetInt32(FunctionCall2Coll(&key->partsupfunc[0], key->partcollation[0],
											value, values[*lowest * LOG_COLUMNS + col])) < 0)
			*lowest = i;
		if (DatumGetInt32(FunctionCall2Coll(&key->partsupfunc[0], key->partcollation[0],
											value, values[*highest * LOG_COLUMNS + col])) > 0)
			*highest = i;
	}
	return true;
}

/*
 * Route every row of the batch to its partition, from its partition key
 * alone, into parts (*nparts of them) and part_of_row.  Returns why a
 * partition must be written by the statement, else NULL; nothing is
 * evaluated or inserted before this is known.  When the lowest and the
 * highest key of the batch go to the same range partition, so does every
 * row (the usual batch: a few seconds of one day), and only those two are
 * routed; a batch whose keys are all equal (a call's own row) routes one.
 */
static const char *
RouteRows(BatchState *batch, Relation rel, const int *attnums, const int *key_cols, int nkey,
		  const Datum *values, const bool *nulls, int nrows,
		  PartitionRows *parts, int *nparts, int *part_of_row)
{
	TupleTableSlot *slot = batch->root_slot;
	Oid			log_oid = RelationGetRelid(rel);
	const char *refusal = NULL;
	int			lowest;
	int			highest;
	int			i;
	int			p;

	/*
	 * The executor routes a row down every level, and the routing slot
	 * holds the log's key alone: a partitioned partition would find NULLs
	 * in its own key.  Checked against the descriptor the routing has just
	 * taken, so no ATTACH can come in between.
	 */
	if (HasPartitionedPartition(rel))
		return "a partition of the log is partitioned";
	ExecClearTuple(slot);
	memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
	if (KeyRange(rel, key_cols, nkey, values, nulls, nrows, &lowest, &highest))
	{
		int			high_part;

		StoreKeyOfRow(slot, attnums, key_cols, nkey, values, nulls, lowest);
		p = PartitionOfRow(batch, parts, nparts, nrows, &refusal);
		if (refusal != NULL)
			return refusal;

		/*
		 * No key lower or higher than the first row's: every key is equal
		 * (a call's own row, a batch of one instant), and equal keys go to
		 * one partition, the default one included.
		 */
		if (lowest == highest)
		{
			for (i = 0; i < nrows; i++)
				part_of_row[i] = p;
			return NULL;
		}
		StoreKeyOfRow(slot, attnums, key_cols, nkey, values, nulls, highest);
		high_part = PartitionOfRow(batch, parts, nparts, nrows, &refusal);
		if (refusal != NULL)
			return refusal;
		if (p == high_part &&
			RelationGetRelid(parts[p].rri->ri_RelationDesc) != get_default_partition_oid(log_oid))
		{
			for (i = 0; i < nrows; i++)
				part_of_row[i] = p;
			return NULL;
		}
	}
	for (i = 0; i < nrows; i++)
	{
		StoreKeyOfRow(slot, attnums, key_cols, nkey, values, nulls, i);
		part_of_row[i] = PartitionOfRow(batch, parts, nparts, nrows, &refusal);
		if (refusal != NULL)
			return refusal;
	}
	return NULL;
}

/*
 * Whether, by the log's descriptor (its bounds), the batch's lowest and
 * highest keys fall in one partition that is not the default (then so
 * does every row, see KeyRange); a call's own row is looked up once
 */
static bool
RowsMissDefault(Relation rel, PartitionBoundInfo bounds, const int *key_cols, int nkey,
				const Datum *values, const bool *nulls, int nrows)
{
	PartitionKey key = RelationGetPartitionKey(rel);
	int			rows[2];
	int			part = -1;
	int			r;

	if (!KeyRange(rel, key_cols, nkey, values, nulls, nrows, &rows[0], &rows[1]))
		return false;
	for (r = 0; r < (rows[0] == rows[1] ? 1 : 2); r++)
	{
		Datum		value = values[rows[r] * LOG_COLUMNS + key_cols[0]];
		bool		equal;
		int			offset = partition_range_datum_bsearch(key->partsupfunc, key->partcollation,
														   bounds, 1, &value, &equal);
		int			index = bounds->indexes[offset + 1];

		if (index < 0 || index == bounds->default_index || (part >= 0 && index != part))
			return false;
		part = index;
	}
	return true;
}

/*
 * Lock the log's default partition, if it has one, before the routing
 * takes the log's partitions; returns its OID (InvalidOid: not locked).  A
 * maintenance run that moves the default partition's rows of a day into
 * that day's new partition (retention) holds it ACCESS EXCLUSIVE until it
 * commits, and a row the routing's older descriptor sent to the default
 * partition would then fail the partition's new constraint once the lock
 * was had.  Waiting here instead, the routing reads the log's partitions
 * after that commit and sends the row to the new partition.  A batch whose
 * rows cannot go there (by the log's descriptor, they fall in one other
 * partition: the common case) takes no lock and does not wait: maintenance
 * holds the lock for every run that makes a partition, and a decision
 * queued behind it would in turn hold up prune's drop.  A descriptor that
 * predates a new partition only sends more batches to the lock.
 */
static Oid
LockDefaultPartition(Relation rel, const int *key_cols, int nkey, const Datum *values,
					 const bool *nulls, int nrows)
{
	PartitionDesc desc;
	Oid			default_oid;

	if (rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		return InvalidOid;
	desc = RelationGetPartitionDesc(rel, false);
	if (desc->boundinfo == NULL || !partition_bound_has_default(desc->boundinfo) ||
		RowsMissDefault(rel, desc->boundinfo, key_cols, nkey, values, nulls, nrows))
		return InvalidOid;
	default_oid = desc->oids[desc->boundinfo->default_index];
	LockRelationOid(default_oid, RowExclusiveLock);
	return default_oid;
}

/*
 * Whether a row was routed to relation relid.  The default partition's
 * lock is given back at once when none was, so that maintenance waits
 * only for the calls that write there.
 */
static bool
RoutedTo(const PartitionRows *parts, int nparts, Oid relid)
{
	int			p;

	for (p = 0; p < nparts; p++)
		if (RelationGetRelid(parts[p].rri->ri_RelationDesc) == relid)
			return true;
	return false;
}

/*
 * Insert one partition's rows together, then each row's index entries,
 * which need the row's place in the table
 */
static void
InsertPartitionRows(PartitionRows *part, EState *estate)
{
	int			i;

	table_multi_insert(part->rri->ri_RelationDesc, part->tuple_slots, part->nrows,
					   GetCurrentCommandId(true), 0, NULL);
	if (part->rri->ri_NumIndices == 0)
		return;
	for (i = 0; i < part->nrows; i++)
	{
		part->value_slots[i]->tts_tid = part->tuple_slots[i]->tts_tid;
		part->value_slots[i]->tts_tableOid = part->tuple_slots[i]->tts_tableOid;
		InsertIndexEntries(part->rri, part->value_slots[i], estate);
		ResetPerTupleExprContext(estate);
	}
}

/*
 * Say, at DEBUG1, why rows go through the statement: an operator who
 * added a trigger can see what it costs, and the tests which path ran.
 */
static void
ReportStatementInsert(const char *refusal, bool from_writer)
{
	if (from_writer)
		elog(DEBUG1, "athena_keys: log writer inserts this batch through the INSERT statement: %s",
			 refusal);
	else
		elog(DEBUG1, "athena_keys: a call inserts its log row through the INSERT statement: %s",
			 refusal);
}

/* Forget the kept layout: it is worked out again on next use */
static void
ForgetLogLayout(void)
{
	layout.valid = false;
	layout_generation++;
}

/*
 * Relcache callback: the log's definition (or every relation's) may have
 * changed.  No catalog access here.
 */
static void
LogRelationInvalidated(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == layout.relid)
		ForgetLogLayout();
}

/*
 * Syscache callback for types and schemas, which the log's relcache entry
 * does not follow: a column without a default of its own takes its type's
 * (a domain's: ALTER DOMAIN ... SET DEFAULT changes only the type), and a
 * renamed schema leaves the kept OID naming a table that is no longer
 * athena_keys.api_key_auth_log.  Only those types and the log's schema
 * count (every table made or dropped anywhere changes a row type), or
 * anything for a hash of 0 (a reset of the whole cache).
 */
static void
LogTypeOrSchemaInvalidated(Datum arg, int cacheid, uint32 hashvalue)
{
	int			i;

	/* Also while a layout is worked out: it is then not kept */
	if (!layout.valid || hashvalue == 0)
	{
		ForgetLogLayout();
		return;
	}
	if (cacheid == NAMESPACEOID)
	{
		if (hashvalue == layout.schema_hash)
			ForgetLogLayout();
		return;
	}
	if (layout.ntype_hashes < 0)
	{
		ForgetLogLayout();
		return;
	}
	for (i = 0; i < layout.ntype_hashes; i++)
		if (layout.type_hashes[i] == hashvalue)
		{
			ForgetLogLayout();
			return;
		}
}

/*
 * Note in layout the types whose own defaults the log's columns take (a
 * column that is not logged and has no default of its own): a change of
 * one of those types forgets the layout.
 */
static void
WatchDefaultTypes(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			attno;
	int			col;

	layout.schema_hash = GetSysCacheHashValue1(NAMESPACEOID,
											   ObjectIdGetDatum(RelationGetNamespace(rel)));
	layout.ntype_hashes = 0;
	for (attno = 1; attno <= desc->natts; attno++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, attno - 1);
		bool		logged = false;

		for (col = 0; col < LOG_COLUMNS; col++)
			logged |= layout.attnums[col] == attno;
		if (att->attisdropped || att->atthasdef || logged)
			continue;
		if (layout.ntype_hashes == LOG_LAYOUT_WATCHED_TYPES)
		{
			layout.ntype_hashes = -1;
			return;
		}
		layout.type_hashes[layout.ntype_hashes++] =
			GetSysCacheHashValue1(TYPEOID, ObjectIdGetDatum(att->atttypid));
	}
}

/* Register the log layout's invalidation callbacks once per backend (_PG_init) */
void
RegisterLogLayoutInvalidation(void)
{
	CacheRegisterRelcacheCallback(LogRelationInvalidated, (Datum) 0);
	CacheRegisterSyscacheCallback(TYPEOID, LogTypeOrSchemaInvalidated, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, LogTypeOrSchemaInvalidated, (Datum) 0);
}

/*
 * Work out the layout of the locked log rel into layout: the column
 * places, a refusal (a missing or retyped logged column is one: the
 * statement then raises or casts as it always did), the partition key and
 * the defaults, copied into layout_context.  Kept as valid only when no
 * invalidation arrived while it was worked out; it holds for this batch
 * either way, since the lock keeps the log's definition as it was read.
 */
static void
BuildLogLayout(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	uint64		generation = layout_generation;
	ColumnDefault *defaults;
	MemoryContext old;
	int			d;

	if (layout_context == NULL)
		layout_context = AllocSetContextCreate(TopMemoryContext, "athena_keys log layout",
											   ALLOCSET_SMALL_SIZES);
	layout.valid = false;
	MemoryContextReset(layout_context);
	layout.defaults = NULL;
	layout.ndefaults = 0;
	layout.relid = RelationGetRelid(rel);
	defaults = palloc(sizeof(ColumnDefault) * desc->natts);
	layout.columns_misplaced = FindLogColumns(desc, layout.attnums) >= 0;
	if (layout.columns_misplaced)
		layout.refusal = "a logged column is missing or has another type";
	else
		layout.refusal = LogRefusesDirectInsert(rel, layout.attnums, layout.key_cols,
												&layout.nkey, defaults, &layout.ndefaults);
	old = MemoryContextSwitchTo(layout_context);
	layout.defaults = palloc(sizeof(ColumnDefault) * Max(layout.ndefaults, 1));
	for (d = 0; d < layout.ndefaults; d++)
	{
		layout.defaults[d] = defaults[d];
		/* Not copyObject: on PostgreSQL 19 it needs a compiler with typeof_unqual */
		layout.defaults[d].expr = (Expr *) copyObjectImpl(defaults[d].expr);
	}
	MemoryContextSwitchTo(old);
	pfree(defaults);
	WatchDefaultTypes(rel);
	layout.valid = generation == layout_generation;
}

/*
 * The log, opened and locked as the statement locks it, with layout
 * describing it.  A kept OID is opened directly; when it no longer names
 * a relation, or an invalidation arrived with the lock, the name is
 * looked up again.
 */
static Relation
OpenLog(void)
{
	Relation	rel = NULL;
	Oid			relid;

	if (layout.valid)
	{
		rel = try_table_open(layout.relid, RowExclusiveLock);
		if (rel != NULL && layout.valid)
			return rel;
		if (rel != NULL)
			table_close(rel, RowExclusiveLock);
	}
	relid = LogTableOid();
	if (!OidIsValid(relid))
		elog(ERROR, "athena_keys: table athena_keys.api_key_auth_log does not exist");
	rel = table_open(relid, RowExclusiveLock);
	BuildLogLayout(rel);
	return rel;
}

/*
 * Insert nrows log rows (values and nulls hold LOG_COLUMNS entries per
 * row, row after row) straight into the log's partitions: a batch of the
 * writer's (from_writer) or a call's own row.  Returns false, having
 * inserted nothing and evaluated no default, when the log is one the
 * statement must write (see the file comment, and a log without a logged
 * column or with one of another type, which the statement refuses by
 * name) or the current user could not insert into it; raises what the
 * statement would raise for a row no partition takes.
 */
bool
InsertLogBatch(const Datum *values, const bool *nulls, int nrows, bool from_writer)
{
	Relation	rel;
	int			attnums[LOG_COLUMNS];
	int			key_cols[PARTITION_MAX_KEYS];
	int			nkey;
	ColumnDefault *defaults;
	int			ndefaults;
	const char *refusal;
	bool		check_permissions = !superuser();
	BatchState	batch;
	PartitionRows *parts;
	int		   *part_of_row;
	int			nparts = 0;
	Oid			default_oid;
	MemoryContext old;
	int			i;
	int			d;

	if (nrows <= 0)
		return true;
	rel = OpenLog();

	/*
	 * The writer stops at a missing or retyped logged column with an error
	 * naming it, whatever the batch's size (the one-row statement would
	 * cast into a retyped column, the batch statement would not); a call's
	 * row gets the one-row statement, as it did before this path.
	 */
	if (layout.columns_misplaced && from_writer)
		LogColumnAttnums(RelationGetDescr(rel), attnums);
	refusal = layout.refusal;
	if (refusal == NULL && check_permissions &&
		pg_class_aclcheck(RelationGetRelid(rel), GetUserId(), ACL_INSERT) != ACLCHECK_OK)
		refusal = "the current user has no INSERT privilege on the log";
	if (refusal != NULL)
	{
		table_close(rel, NoLock);
		ReportStatementInsert(refusal, from_writer);
		return false;
	}

	/*
	 * The batch works on its own copy of the layout: a default's function
	 * could make a call whose row finds the kept layout invalidated (a
	 * partition opened takes a lock and reads invalidations) and works it
	 * out again, which the log's lock keeps equal but not in place.
	 */
	memcpy(attnums, layout.attnums, sizeof(attnums));
	memcpy(key_cols, layout.key_cols, sizeof(key_cols));
	nkey = layout.nkey;
	ndefaults = layout.ndefaults;
	defaults = palloc(sizeof(ColumnDefault) * Max(ndefaults, 1));
	for (d = 0; d < ndefaults; d++)
	{
		defaults[d] = layout.defaults[d];
		/* A nextval called directly (the log's id) needs no expression */
		if (!OidIsValid(defaults[d].sequence))
			defaults[d].expr = (Expr *) copyObjectImpl(layout.defaults[d].expr);
	}

	default_oid = LockDefaultPartition(rel, key_cols, nkey, values, nulls, nrows);
	StartBatch(&batch, rel);
	old = MemoryContextSwitchTo(batch.estate->es_query_cxt);
	parts = palloc(sizeof(PartitionRows) * nrows);
	part_of_row = palloc(sizeof(int) * nrows);
	refusal = RouteRows(&batch, rel, attnums, key_cols, nkey, values, nulls, nrows,
						parts, &nparts, part_of_row);
	if (OidIsValid(default_oid) && (refusal != NULL || !RoutedTo(parts, nparts, default_oid)))
		UnlockRelationOid(default_oid, RowExclusiveLock);
	if (refusal != NULL)
	{
		MemoryContextSwitchTo(old);
		EndBatch(&batch);
		table_close(rel, NoLock);
		ReportStatementInsert(refusal, from_writer);
		return false;
	}

	for (d = 0; d < ndefaults; d++)
		if (!OidIsValid(defaults[d].sequence))
			defaults[d].state = ExecPrepareExpr(defaults[d].expr, batch.estate);

	/*
	 * Each row in its partition's layout, defaults and all, checked as the
	 * statement checks it, and formed once.  The value slots point at the
	 * decoded values and at defaults kept in this batch's memory.
	 */
	for (i = 0; i < nrows; i++)
	{
		PartitionRows *part = &parts[part_of_row[i]];
		TupleConversionMap *map = RootToPartitionMap(part->rri, batch.estate);
		TupleTableSlot *slot = MakeSingleTupleTableSlot(part->desc, &TTSOpsVirtual);
		TupleTableSlot *tuple_slot = MakeSingleTupleTableSlot(part->desc, &TTSOpsHeapTuple);

		if (map != NULL)
		{
			StoreLogRow(batch.root_slot, attnums, &values[i * LOG_COLUMNS], &nulls[i * LOG_COLUMNS],
						defaults, ndefaults, check_permissions, batch.estate);
			execute_attr_map_slot(map->attrMap, batch.root_slot, slot);
		}
		else
			StoreLogRow(slot, attnums, &values[i * LOG_COLUMNS], &nulls[i * LOG_COLUMNS],
						defaults, ndefaults, check_permissions, batch.estate);
		if (part->rri->ri_RelationDesc->rd_att->constr != NULL)
			ExecConstraints(part->rri, slot, batch.estate);
		ExecStoreHeapTuple(heap_form_tuple(part->desc, slot->tts_values, slot->tts_isnull),
						   tuple_slot, true);
		part->value_slots[part->nrows] = slot;
		part->tuple_slots[part->nrows] = tuple_slot;
		part->nrows++;
		ResetPerTupleExprContext(batch.estate);
	}

	for (i = 0; i < nparts; i++)
		InsertPartitionRows(&parts[i], batch.estate);

	MemoryContextSwitchTo(old);
	EndBatch(&batch);
	table_close(rel, NoLock);
	return true;
}
