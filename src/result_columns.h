/*-------------------------------------------------------------------------
 * result_columns.h
 *		The columns of athena_keys.athena_auth_result, in order: the one
 *		description of the result row (pure C, no backend dependencies).
 *
 * RESULT_COLUMN_LIST(X) expands X(name, type) for every column; type is
 * the stem of the column type's OID macro (BOOL for BOOLOID).  The
 * backend fills and checks the row against it (result_row.c), and
 * athena-authd builds its SELECT list from the same names.
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
	X(fail_mode, TEXT)

/* RESULT_allowed, RESULT_status, ...: a column's position, from 0 */
#define RESULT_COLUMN_ENUM(name, type) RESULT_##name,
typedef enum ResultColumn
{
	RESULT_COLUMN_LIST(RESULT_COLUMN_ENUM)
	RESULT_COLUMNS
} ResultColumn;
#undef RESULT_COLUMN_ENUM

#endif
