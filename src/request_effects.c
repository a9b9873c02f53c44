/*-------------------------------------------------------------------------
 * request_effects.c
 *		The one place where a call acts with the extension owner's rights:
 *		filling a cache, recording a learning observation, inserting a log
 *		row, stamping last use.
 *
 * athena_authenticate is SECURITY INVOKER and decides as the caller from
 * this backend's caches.  Each effect below that needs a table switches to
 * the owner of the called function (the extension's owner) with
 * SetUserIdAndSecContext for exactly that section, as a SECURITY DEFINER
 * function would, and switches back.  The caller's search_path stays in
 * force, so every statement these sections run names its tables,
 * functions and operators with their schema (spi_plans.c); a key read
 * runs none (key_rows.c reads the tables by OID).  The section
 * is also a security-restricted operation: nothing run in it can change
 * the role or create temporary objects.  If it raises, the (sub)transaction
 * abort restores the caller's identity.
 *
 * A decision that needs no table (the config and key cached, the row
 * queued or not logged, no stamp due) never enters a section.
 *-------------------------------------------------------------------------
 */
#include "request_effects.h"

#include "miscadmin.h"
#include "utils/inval.h"
#include "utils/syscache.h"
#include "catalog/pg_proc.h"

#include "key_last_used.h"
#include "learning.h"
#include "spi_plans.h"

/* The rights a section runs with, and the caller's to restore */
typedef struct OwnerSection
{
	Oid			caller_user;
	int			caller_sec_context;
} OwnerSection;

/* The owner of the last function looked up, until pg_proc changes */
static Oid	owner_function = InvalidOid;
static Oid	owner_role = InvalidOid;
static bool owner_callback_registered = false;

/* Syscache callback: ALTER FUNCTION ... OWNER TO and the like */
static void
FunctionOwnerInvalidated(Datum arg, int cacheid, uint32 hashvalue)
{
	owner_function = InvalidOid;
}

/* The role that owns function_oid */
static Oid
FunctionOwner(Oid function_oid)
{
	HeapTuple	tuple;

	if (!owner_callback_registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, FunctionOwnerInvalidated, (Datum) 0);
		owner_callback_registered = true;
	}
	if (owner_function == function_oid && OidIsValid(owner_role))
		return owner_role;
	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(function_oid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "athena_keys: cache lookup failed for function %u", function_oid);
	owner_role = ((Form_pg_proc) GETSTRUCT(tuple))->proowner;
	owner_function = function_oid;
	ReleaseSysCache(tuple);
	return owner_role;
}

/*
 * Switch to the owner's rights for one section; why says what needs a
 * table (reported once per call, as a NOTICE with
 * athena_keys.report_handovers, else at DEBUG1).
 */
static void
EnterOwnerSection(RequestEffects *fx, OwnerSection *section, const char *why)
{
	Oid			owner = FunctionOwner(fx->function_oid);

	if (!fx->reported)
	{
		ereport(athena_report_handovers ? NOTICE : DEBUG1,
				(errmsg_internal("athena_keys: deciding with table access: %s", why)));
		fx->reported = true;
	}
	GetUserIdAndSecContext(&section->caller_user, &section->caller_sec_context);
	SetUserIdAndSecContext(owner, section->caller_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

/* Back to the caller's rights */
static void
LeaveOwnerSection(OwnerSection *section)
{
	SetUserIdAndSecContext(section->caller_user, section->caller_sec_context);
}

/* Begin a call's effects */
void
StartRequestEffects(RequestEffects *fx, FunctionCallInfo fcinfo)
{
	fx->function_oid = fcinfo->flinfo->fn_oid;
	fx->reported = false;
}

/* The enforcement config: cached, else read with the owner's rights */
const EnforcementConfig *
ConfigForRequest(RequestEffects *fx)
{
	const EnforcementConfig *config = PeekEnforcementConfig();
	OwnerSection section;

	if (config != NULL)
		return config;
	EnterOwnerSection(fx, &section, "the enforcement config is not cached");
	config = ReadEnforcementConfig();
	LeaveOwnerSection(&section);
	return config;
}

/*
 * What is known about a public id: cached in this backend or in the cache
 * all backends share, else read with the owner's rights
 */
CachedKey *
KeyForRequest(RequestEffects *fx, const char *public_id, size_t len)
{
	CachedKey  *key = PeekCachedKey(public_id, len);
	OwnerSection section;
	KeyLookup	lookup;

	if (key != NULL)
		return key;
	key = SharedCachedKey(public_id, len, &lookup);
	if (key != NULL)
		return key;
	EnterOwnerSection(fx, &section, "the key is not cached");
	key = ReadKey(&lookup);
	LeaveOwnerSection(&section);
	return key;
}

/* Record a learning key's observation of host */
LearningOutcome
LearnForRequest(RequestEffects *fx, const CachedKey *key, const IpNet *host)
{
	OwnerSection section;
	LearningOutcome outcome;

	if (!CanWrite())
		return LEARNING_UNAVAILABLE;
	EnterOwnerSection(fx, &section, "the key is learning");
	outcome = RecordLearningObservation(&key->id, host);
	LeaveOwnerSection(&section);
	return outcome;
}

/* Log the decision: queued when it can be, else inserted as the owner */
LogOutcome
LogForRequest(RequestEffects *fx, const DecisionRecord *record, bool learned)
{
	LogOutcome	outcome = RouteDecisionLog(record, learned);
	OwnerSection section;

	if (outcome != LOG_NEEDS_INSERT)
		return outcome;
	EnterOwnerSection(fx, &section, athena_log_decisions == LOG_DECISIONS_ALL ?
					  "every decision is logged by an INSERT" :
					  "the decision is logged by an INSERT");
	InsertDecisionLog(record);
	LeaveOwnerSection(&section);
	return LOG_DONE;
}

/* Stamp the key's last use as the owner */
void
StampLastUseForRequest(RequestEffects *fx, CachedKey *key, TimestampTz now)
{
	OwnerSection section;

	EnterOwnerSection(fx, &section, "last_used_at is due");
	TouchKeyLastUsed(key, now);
	LeaveOwnerSection(&section);
}

/*
 * End a call's effects: close the SPI connection a section opened (each
 * statement connects when it first needs to; a key read needs none)
 */
void
FinishRequestEffects(RequestEffects *fx)
{
	ResetSpiConnection();
}
