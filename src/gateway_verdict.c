/*-------------------------------------------------------------------------
 * gateway_verdict.c
 *		The compact verdict athena_gateway_verdict returns: what a
 *		gateway acts on, as one text value (gateway_verdict_fields.h).
 *
 * PostgreSQL returns a scalar called in the target list far more cheaply
 * than a row from a function in FROM, so the proxy's call gets the fields
 * it needs packed in one text; athena_authenticate keeps the full row.
 *-------------------------------------------------------------------------
 */
#include "gateway_verdict.h"

#include "utils/builtins.h"

#include "gateway_verdict_fields.h"

/* uuid as its canonical text (8-4-4-4-12 lower-case hex digits) into out[36] */
static void
FormatUuid(const pg_uuid_t *uuid, char *out)
{
	static const char hex[] = "0123456789abcdef";
	int			i;
	char	   *p = out;

	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[uuid->data[i] >> 4];
		*p++ = hex[uuid->data[i] & 0x0f];
	}
}

/*
 * The compact verdict of a decision: the same facts ResultOf reports in
 * athena_auth_result (the key's only when the secret matched), joined.
 */
Datum
GatewayVerdictText(const CachedKey *key, const DecisionOutcome *outcome, bool fail_open,
				   const RateLimitReport *rate)
{
	const char *fields[VERDICT_FIELDS];
	size_t		lens[VERDICT_FIELDS];
	char		status[12];
	char		retry_after[24];
	char		rate_limit[24];
	char		rate_remaining[24];
	char		rate_reset[24];
	char		uuid[36];
	size_t		total = 0;
	text	   *result;
	char	   *p;
	int			i;

	memset(fields, 0, sizeof(fields));
	fields[VERDICT_allowed] = outcome->allowed ? "t" : "f";
	pg_ltoa(outcome->status, status);
	fields[VERDICT_status] = status;
	fields[VERDICT_fail_mode] = fail_open ? "fail_open" : "fail_closed";
	fields[VERDICT_reason] = outcome->reason;
	/* The rate limit fields as athena_auth_result's columns have them (pg_lltoa: no format parsing) */
	if (rate->has_retry_after && outcome->status == 429)
	{
		pg_lltoa(rate->retry_after_ms, retry_after);
		fields[VERDICT_retry_after_ms] = retry_after;
	}
	if (rate->has_tightest)
	{
		pg_ltoa(rate->limit, rate_limit);
		pg_ltoa(rate->remaining, rate_remaining);
		fields[VERDICT_rate_limit] = rate_limit;
		fields[VERDICT_rate_remaining] = rate_remaining;
		/* A refused one-limit key resets when it may retry: one number formatted, not two */
		if (fields[VERDICT_retry_after_ms] != NULL && rate->reset_ms == rate->retry_after_ms)
			fields[VERDICT_rate_reset_ms] = retry_after;
		else
		{
			pg_lltoa(rate->reset_ms, rate_reset);
			fields[VERDICT_rate_reset_ms] = rate_reset;
		}
	}
	if (outcome->secret_matched)
	{
		FormatUuid(&key->id, uuid);
		fields[VERDICT_key_id] = uuid;
		fields[VERDICT_public_id] = key->public_id;
		fields[VERDICT_client_name] = key->facts.client_name;
	}
	for (i = 0; i < VERDICT_FIELDS; i++)
	{
		lens[i] = fields[i] == NULL ? 0 : i == VERDICT_key_id ? sizeof(uuid) : strlen(fields[i]);
		total += lens[i] + 1;
	}
	result = (text *) palloc(VARHDRSZ + total);
	p = VARDATA(result);
	for (i = 0; i < VERDICT_FIELDS; i++)
	{
		if (i > 0)
			*p++ = GATEWAY_VERDICT_SEPARATOR;
		memcpy(p, fields[i] == NULL ? "" : fields[i], lens[i]);
		p += lens[i];
	}
	SET_VARSIZE(result, p - (char *) result);
	return PointerGetDatum(result);
}
