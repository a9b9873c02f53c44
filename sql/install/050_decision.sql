--------------------------------------------------------------------------
-- The decision: one row per request, from one call.
--
-- athena_authenticate decides from the backend's caches with the caller's
-- privileges and hands a call that needs a table to _authenticate_privileged,
-- its SECURITY DEFINER twin with a pinned search_path (see
-- src/authenticate.c).  The entry point reads only this backend's caches (no
-- table, no name lookup), so it runs with the caller's rights and no SET
-- clause.  A gateway role holds EXECUTE on athena_authenticate only, and
-- nobody holds it on the twin, which is reached from C, never from SQL.
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
	fail_mode text
);

CREATE FUNCTION athena_keys.athena_authenticate(
	key text, client text, ip inet, rights text[])
RETURNS athena_keys.athena_auth_result
AS 'MODULE_PATHNAME', 'athena_authenticate'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

COMMENT ON FUNCTION athena_keys.athena_authenticate(text, text, inet, text[]) IS
	'Decide one gateway request: key genuine, active, unexpired, client-bound, rights, IP policy; logs the decision.';

CREATE FUNCTION athena_keys._authenticate_privileged(
	key text, client text, ip inet, rights text[])
RETURNS athena_keys.athena_auth_result
AS 'MODULE_PATHNAME', 'athena_authenticate_privileged'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION athena_keys._authenticate_privileged(text, text, inet, text[]) IS
	'athena_authenticate with table access, as the extension owner; called from athena_authenticate only.';
