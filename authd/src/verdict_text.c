/*-------------------------------------------------------------------------
 * verdict_text.c
 *		Reading athena_gateway_verdict()'s compact text into an
 *		AuthVerdict.
 *
 * The field order and the separator come from the extension's
 * gateway_verdict_fields.h, the one description both sides are built
 * from.  Every field but the last ends at the next separator; the last
 * (client_name) is the rest of the text, whatever it holds.  An empty
 * field is NULL.
 *-------------------------------------------------------------------------
 */
#include "verdict_text.h"

#include <stdlib.h>
#include <string.h>

#include "failure_reasons.h"
#include "gateway_verdict_fields.h"

/* A malloc'd copy of len bytes at start, NULL for an empty field */
static char *
CopyVerdictField(const char *start, size_t len)
{
	char	   *copy;

	if (len == 0)
		return NULL;
	copy = malloc(len + 1);
	if (copy == NULL)
		return NULL;
	memcpy(copy, start, len);
	copy[len] = '\0';
	return copy;
}

/*
 * A field of digits into *value: false (and 0) for an empty field or one
 * that is not a non-negative number of at most 18 digits.
 */
static bool
ReadCount(const char *start, size_t len, long long *value)
{
	size_t		i;

	*value = 0;
	if (len == 0 || len > 18)
		return false;
	for (i = 0; i < len; i++)
	{
		if (start[i] < '0' || start[i] > '9')
		{
			*value = 0;
			return false;
		}
		*value = *value * 10 + (start[i] - '0');
	}
	return true;
}

/*
 * Split text into its fields and fill verdict.  A text with fewer fields,
 * or without a valid allowed and status, is refused (false): the call's
 * answer is then not a verdict, never a guessed one.
 */
bool
ParseVerdictText(const char *text, AuthVerdict *verdict)
{
	const char *start[VERDICT_FIELDS];
	size_t		len[VERDICT_FIELDS];
	const char *p = text;
	char	   *end;
	long		status;
	int			i;

	memset(verdict, 0, sizeof(*verdict));
	if (text == NULL)
		return false;
	for (i = 0; i < VERDICT_FIELDS - 1; i++)
	{
		const char *sep = strchr(p, GATEWAY_VERDICT_SEPARATOR);

		if (sep == NULL)
			return false;
		start[i] = p;
		len[i] = (size_t) (sep - p);
		p = sep + 1;
	}
	start[VERDICT_FIELDS - 1] = p;
	len[VERDICT_FIELDS - 1] = strlen(p);

	if (len[VERDICT_allowed] != 1 || (*start[VERDICT_allowed] != 't' && *start[VERDICT_allowed] != 'f'))
		return false;
	if (len[VERDICT_status] == 0 || len[VERDICT_status] > 3)
		return false;
	status = strtol(start[VERDICT_status], &end, 10);
	if (end != start[VERDICT_status] + len[VERDICT_status] || status < 100 || status > 599)
		return false;
	verdict->allowed = *start[VERDICT_allowed] == 't';
	verdict->status = (int) status;
	verdict->reason = CopyVerdictField(start[VERDICT_reason], len[VERDICT_reason]);
	verdict->key_id = CopyVerdictField(start[VERDICT_key_id], len[VERDICT_key_id]);
	verdict->public_id = CopyVerdictField(start[VERDICT_public_id], len[VERDICT_public_id]);
	verdict->client_name = CopyVerdictField(start[VERDICT_client_name], len[VERDICT_client_name]);
	verdict->fail_mode = CopyVerdictField(start[VERDICT_fail_mode], len[VERDICT_fail_mode]);
	verdict->has_retry_after = ReadCount(start[VERDICT_retry_after_ms], len[VERDICT_retry_after_ms],
										 &verdict->retry_after_ms);
	verdict->has_rate_limit =
		ReadCount(start[VERDICT_rate_limit], len[VERDICT_rate_limit], &verdict->rate_limit) &&
		ReadCount(start[VERDICT_rate_remaining], len[VERDICT_rate_remaining], &verdict->rate_remaining) &&
		ReadCount(start[VERDICT_rate_reset_ms], len[VERDICT_rate_reset_ms], &verdict->rate_reset_ms);
	return true;
}

/* Free the strings of a verdict */
void
FreeAuthVerdict(AuthVerdict *verdict)
{
	free(verdict->reason);
	free(verdict->key_id);
	free(verdict->public_id);
	free(verdict->client_name);
	free(verdict->fail_mode);
	memset(verdict, 0, sizeof(*verdict));
}

/*
 * True when the extension itself let the request through under fail_open:
 * allowed, with the reason "API key policy unavailable" (it could not
 * apply a policy, e.g. log the decision in a read-only transaction or get
 * a rate-limit bucket).  Such an allow is degraded exactly like one
 * athena-authd makes when the database is unreachable.
 */
bool
VerdictIsFailOpen(const AuthVerdict *verdict)
{
	return verdict->allowed && verdict->reason != NULL &&
		strcmp(verdict->reason, FailureReason(FAILURE_POLICY_UNAVAILABLE)) == 0;
}
