/*-------------------------------------------------------------------------
 * gateway_verdict_fields.h
 *		The fields of athena_gateway_verdict's one text value, in order:
 *		the one description of the compact verdict (pure C, no backend
 *		dependencies), which the backend writes and athena-authd reads.
 *
 * The verdict is the fields joined by GATEWAY_VERDICT_SEPARATOR; an empty
 * field is NULL.  Every field but the last is from a fixed alphabet
 * (t/f, digits, a fail mode, a uuid, a public id, a failure reason) that
 * never holds the separator; the last, client_name, is the rest of the
 * value and may hold anything.  The rate-limit fields are those of
 * athena_auth_result: retry_after_ms only on a 429 that may be retried,
 * the other three when a limit applied.  New fields go before
 * client_name.
 *
 * In athena_gateway_verdicts' answer (gateway_batch.c), the element of a
 * request whose decision raised is instead GATEWAY_VERDICT_ERROR, the
 * SQLSTATE and the message, joined by the separator (the message the rest
 * of the value); a verdict's first field is t or f, never that mark.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_GATEWAY_VERDICT_FIELDS_H
#define ATHENA_GATEWAY_VERDICT_FIELDS_H

#define GATEWAY_VERDICT_SEPARATOR '|'
#define GATEWAY_VERDICT_ERROR 'E'

#define GATEWAY_VERDICT_FIELD_LIST(X) \
	X(allowed) \
	X(status) \
	X(fail_mode) \
	X(key_id) \
	X(public_id) \
	X(reason) \
	X(retry_after_ms) \
	X(rate_limit) \
	X(rate_remaining) \
	X(rate_reset_ms) \
	X(client_name)

/* VERDICT_allowed, VERDICT_status, ...: a field's position, from 0 */
#define GATEWAY_VERDICT_ENUM(name) VERDICT_##name,
typedef enum GatewayVerdictField
{
	GATEWAY_VERDICT_FIELD_LIST(GATEWAY_VERDICT_ENUM)
	VERDICT_FIELDS
} GatewayVerdictField;
#undef GATEWAY_VERDICT_ENUM

#endif
