/*-------------------------------------------------------------------------
 * result_columns.h
 *		The columns of athena_keys.athena_auth_result, in order: the one
 *		description of the result row (pure C, no backend dependencies).
 *
 * RESULT_COLUMN_LIST(X) expands X(name, type) for every column; type is
 * the stem of the column type's OID macro (BOOL for BOOLOID).  The
 * backend fills and checks the row against it (result_row.c), and
 * athena-authd builds its SELECT list from the same names.  New columns
 * go at the end, so that an older type is a prefix of this list.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_RESULT_COLUMNS_H
#define ATHENA_RESULT_COLUMNS_H

#define RESULT_COLUMN_LIST(X) \
	X(allowed, BOOL) \
	X(status, INT4) \
	X(reason, TEXT) \
	X(authenticated, BOOL) \
	X(authorized, BOOL) \
	X(enforced, BOOL) \
	X(key_id, UUID) \
	X(public_id, TEXT) \
	X(client_name, TEXT) \
	X(granted_rights, TEXTARRAY) \
	X(missing_rights, TEXTARRAY) \
	X(locked_in, BOOL) \
	X(fail_mode, TEXT) \
	X(retry_after_ms, INT8) \
	X(rate_limit, INT4) \
	X(rate_remaining, INT4) \
	X(rate_reset_ms, INT8)

/* RESULT_allowed, RESULT_status, ...: a column's position, from 0 */
#define RESULT_COLUMN_ENUM(name, type) RESULT_##name,
typedef enum ResultColumn
{
	RESULT_COLUMN_LIST(RESULT_COLUMN_ENUM)
	RESULT_COLUMNS
} ResultColumn;
#undef RESULT_COLUMN_ENUM

/*
 * The columns of the 1.3 type, up to fail_mode: a schema not yet updated
 * to 1.4 has only these, and the library fills them alone.
 */
#define RESULT_COLUMNS_MIN (RESULT_fail_mode + 1)

#endif
