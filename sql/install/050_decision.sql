--------------------------------------------------------------------------
-- The decision: one row per request, from one call.
--
-- athena_authenticate decides from the backend's caches with the caller's
-- privileges, and performs what needs a table (a cache fill, learning, a
-- log insert, a last_used_at stamp) with the extension owner's rights for
-- exactly those sections (src/request_effects.c), whose statements name
-- every table, function and operator with its schema.  So it runs with the
-- caller's rights and no SET clause, and a gateway role holds EXECUTE on
-- it alone.  _authenticate_privileged, the SECURITY DEFINER twin that 1.2
-- and 1.3 handed such calls to, stays for backends that loaded the 1.3
-- library before an update (they call it until they reconnect); granted to
-- nobody, and decided like athena_authenticate by this library.
--------------------------------------------------------------------------

CREATE TYPE athena_keys.athena_auth_result AS (
	allowed boolean,
	status integer,
	reason text,
	authenticated boolean,
	authorized boolean,
	enforced boolean,
	key_id uuid,
	public_id text,
	client_name text,
	granted_rights text[],
	missing_rights text[],
	locked_in boolean,
	fail_mode text,
	retry_after_ms bigint,
	rate_limit integer,
	rate_remaining integer,
	rate_reset_ms bigint
);

CREATE FUNCTION athena_keys.athena_authenticate(
	key text, client text, ip inet, rights text[])
RETURNS athena_keys.athena_auth_result
AS 'MODULE_PATHNAME', 'athena_authenticate'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

COMMENT ON FUNCTION athena_keys.athena_authenticate(text, text, inet, text[]) IS
	'Decide one gateway request: key genuine, active, unexpired, client-bound, rights, IP policy; logs the decision.';

CREATE FUNCTION athena_keys.athena_authenticate(
	key text, client text, ip inet, rights text[], cost integer)
RETURNS athena_keys.athena_auth_result
AS 'MODULE_PATHNAME', 'athena_authenticate'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

COMMENT ON FUNCTION athena_keys.athena_authenticate(text, text, inet, text[], integer) IS
	'Decide one gateway request that consumes cost units (1 to 1000000, NULL = 1) of its rate limits.';

CREATE FUNCTION athena_keys._authenticate_privileged(
	key text, client text, ip inet, rights text[])
RETURNS athena_keys.athena_auth_result
AS 'MODULE_PATHNAME', 'athena_authenticate_privileged'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION athena_keys._authenticate_privileged(text, text, inet, text[]) IS
	'The 1.2/1.3 SECURITY DEFINER twin of athena_authenticate, granted to nobody; kept for backends that loaded the 1.3 library until they reconnect, and decided like athena_authenticate by the 1.4 library.';

-- The compact verdict for gateways: the same decision and effects as
-- athena_authenticate, answered as one text value (src/gateway_verdict_fields.h:
-- allowed|status|fail_mode|key_id|public_id|reason|retry_after_ms|
-- rate_limit|rate_remaining|rate_reset_ms|client_name, an empty field
-- NULL, client_name the rest of the value).  PostgreSQL executes a
-- scalar called in the target list much more cheaply than a row-returning
-- function in FROM, so athena-authd calls this one.
CREATE FUNCTION athena_keys.athena_gateway_verdict(
	key text, client text, ip inet, rights text[])
RETURNS text
AS 'MODULE_PATHNAME', 'athena_gateway_verdict'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

COMMENT ON FUNCTION athena_keys.athena_gateway_verdict(text, text, inet, text[]) IS
	'Decide one gateway request as athena_authenticate does; the verdict a gateway acts on, as one text value.';

-- A batch of gateway requests in one statement (src/gateway_batch.c):
-- element i of each array is request i's argument (rights[i] its required
-- rights as one comma-separated list), and element i of the answer is
-- athena_gateway_verdict's verdict for it, the same decision and effects;
-- a request whose decision raised is answered E|sqlstate|message (its
-- subtransaction rolled back), the others are decided.  A statement costs
-- PostgreSQL about as much as a decision, so athena-authd sends the
-- requests it holds at once as one call.
CREATE FUNCTION athena_keys.athena_gateway_verdicts(
	keys text[], clients text[], ips inet[], rights text[])
RETURNS text[]
AS 'MODULE_PATHNAME', 'athena_gateway_verdicts'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

COMMENT ON FUNCTION athena_keys.athena_gateway_verdicts(text[], text[], inet[], text[]) IS
	'Decide a batch of gateway requests, each as athena_gateway_verdict does; one verdict per request, in order.';
