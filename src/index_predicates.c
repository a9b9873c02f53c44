/*-------------------------------------------------------------------------
 * index_predicates.c
 *		Partial-index predicates of the log's partitions compiled once per
 *		backend instead of at every durable row.
 *
 * The executor compiles a partial index's predicate (the failures index's
 * "failure_reason IS NOT NULL") the first time an insert of a statement
 * needs it, and a call's durable row is a statement of its own: about 2k
 * instructions a call, successes and failures alike.  The direct path
 * (log_batch_insert.c) hands the executor a predicate compiled earlier.
 *
 * Only predicates made of columns, constants, IS [NOT] NULL, IS [NOT]
 * TRUE/FALSE and AND/OR/NOT are kept: they call no function, so nothing
 * they hold can go stale but the index itself.  An index's predicate
 * cannot change while its OID names it; a relcache invalidation of the
 * index (its drop) or of every relation marks the entry stale.  A stale
 * entry's memory is freed only at transaction end, since an insert of this
 * transaction may still hold its state (an invalidation can arrive in the
 * middle of one, at a lock a unique check waits for).
 *-------------------------------------------------------------------------
 */
#include "athena_keys.h"
#include "index_predicates.h"

#include "access/xact.h"
#include "executor/executor.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"

/* Enough for a few days' partitions, the writer's and a call's */
#define KEPT_PREDICATES 16

typedef struct KeptPredicate
{
	Oid			indexoid;		/* InvalidOid: the slot is free */
	bool		stale;			/* forgotten, freed at transaction end */
	uint64		last_use;
	MemoryContext context;
	ExprState  *state;
} KeptPredicate;

static KeptPredicate kept[KEPT_PREDICATES];
static uint64 use_counter = 0;
static bool any_stale = false;

/* Whether a predicate node may call a function or read more than its row's columns */
static bool
PredicateCallsSomething(Node *node, void *context)
{
	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_Var:
			return ((Var *) node)->varattno <= 0;
		case T_Const:
			return false;
		case T_NullTest:
			/* A row's IS NULL looks its type up at each evaluation: not kept */
			if (((NullTest *) node)->argisrow)
				return true;
			return expression_tree_walker(node, PredicateCallsSomething, context);
		case T_BooleanTest:
		case T_BoolExpr:
		case T_List:
			return expression_tree_walker(node, PredicateCallsSomething, context);
		default:
			return true;
	}
}

/* Mark an entry stale; its memory waits for transaction end */
static void
ForgetKeptPredicate(KeptPredicate *entry)
{
	if (OidIsValid(entry->indexoid) && !entry->stale)
	{
		entry->stale = true;
		any_stale = true;
	}
}

/* Relcache callback: an index (dropped, or every relation) forgotten; no catalog access */
static void
IndexPredicateInvalidated(Datum arg, Oid relid)
{
	int			i;

	for (i = 0; i < KEPT_PREDICATES; i++)
		if (relid == InvalidOid || kept[i].indexoid == relid)
			ForgetKeptPredicate(&kept[i]);
}

/* Transaction end: no insert holds a stale entry's state any longer */
static void
FreeStalePredicates(XactEvent event, void *arg)
{
	int			i;

	if (!any_stale || (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
					   event != XACT_EVENT_PARALLEL_COMMIT &&
					   event != XACT_EVENT_PARALLEL_ABORT && event != XACT_EVENT_PREPARE))
		return;
	for (i = 0; i < KEPT_PREDICATES; i++)
		if (kept[i].stale)
		{
			MemoryContextDelete(kept[i].context);
			kept[i].indexoid = InvalidOid;
			kept[i].stale = false;
			kept[i].context = NULL;
			kept[i].state = NULL;
		}
	any_stale = false;
}

/* The kept state of an index's predicate, compiled now if it can be kept, or NULL */
static ExprState *
KeptPredicateState(Relation index, List *predicate)
{
	Oid			indexoid = RelationGetRelid(index);
	KeptPredicate *slot = NULL;
	KeptPredicate *oldest = NULL;
	MemoryContext old;
	int			i;

	for (i = 0; i < KEPT_PREDICATES; i++)
	{
		KeptPredicate *entry = &kept[i];

		if (entry->indexoid == indexoid && !entry->stale)
		{
			entry->last_use = ++use_counter;
			return entry->state;
		}
		if (!OidIsValid(entry->indexoid))
		{
			if (slot == NULL)
				slot = entry;
		}
		else if (!entry->stale && (oldest == NULL || entry->last_use < oldest->last_use))
			oldest = entry;
	}
	if (PredicateCallsSomething((Node *) predicate, NULL))
		return NULL;
	if (slot == NULL)
	{
		/* Full: the least used entry makes room at transaction end */
		if (oldest != NULL)
			ForgetKeptPredicate(oldest);
		return NULL;
	}

	/* A context left by a compilation that failed is reused */
	if (slot->context == NULL)
		slot->context = AllocSetContextCreate(TopMemoryContext, "athena_keys index predicate",
											  ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(slot->context);
	old = MemoryContextSwitchTo(slot->context);
	slot->state = ExecInitQual((List *) expression_planner((Expr *) copyObjectImpl(predicate)),
							   NULL);
	MemoryContextSwitchTo(old);
	slot->indexoid = indexoid;
	slot->stale = false;
	slot->last_use = ++use_counter;
	return slot->state;
}

/*
 * Give the partial indexes of a result relation whose indexes are open
 * the kept state of their predicates, where one can be kept; the executor
 * compiles the others itself, as it always does.
 */
void
UseKeptIndexPredicates(ResultRelInfo *rri)
{
	int			i;

	for (i = 0; i < rri->ri_NumIndices; i++)
	{
		IndexInfo  *info = rri->ri_IndexRelationInfo[i];

		if (info == NULL || info->ii_Predicate == NIL || info->ii_PredicateState != NULL)
			continue;
		info->ii_PredicateState = KeptPredicateState(rri->ri_IndexRelationDescs[i],
													 info->ii_Predicate);
	}
}

/* Register the callbacks once per backend (_PG_init) */
void
RegisterIndexPredicateInvalidation(void)
{
	CacheRegisterRelcacheCallback(IndexPredicateInvalidated, (Datum) 0);
	RegisterXactCallback(FreeStalePredicates, NULL);
}
