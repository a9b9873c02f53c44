/*-------------------------------------------------------------------------
 * verdict_text.h
 *		The verdict athena-authd acts on, read from the compact text
 *		athena_gateway_verdict() returns (src/gateway_verdict_fields.h
 *		of the extension).
 *-------------------------------------------------------------------------
 */
#ifndef AUTHD_VERDICT_TEXT_H
#define AUTHD_VERDICT_TEXT_H

#include <stdbool.h>

/* The fields of the verdict the proxy needs; NULL = SQL NULL */
typedef struct AuthVerdict
{
	bool		allowed;
	int			status;
	char	   *reason;
	char	   *key_id;
	char	   *public_id;
	char	   *client_name;
	char	   *fail_mode;
	bool		has_retry_after;	/* a 429's wait */
	long long	retry_after_ms;
	bool		has_rate_limit; /* the tightest rate limit, when one applied */
	long long	rate_limit;
	long long	rate_remaining;
	long long	rate_reset_ms;
} AuthVerdict;

extern bool ParseVerdictText(const char *text, AuthVerdict *verdict);
extern void FreeAuthVerdict(AuthVerdict *verdict);
extern bool VerdictIsFailOpen(const AuthVerdict *verdict);

#endif
