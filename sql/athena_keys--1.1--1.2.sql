\echo Use "ALTER EXTENSION athena_keys UPDATE TO '1.2'" to load this file. \quit
-- athena_keys 1.1 -> 1.2: athena_authenticate decides from the backend's
-- caches with the caller's privileges and hands a call that needs a table
-- to _authenticate_privileged, its SECURITY DEFINER twin with a pinned
-- search_path (see src/authenticate.c).  Grants are unchanged: a gateway
-- role holds EXECUTE on athena_authenticate only, and nobody holds it on
-- the twin, which is reached from C, never from SQL.

CREATE FUNCTION athena_keys._authenticate_privileged(
	key text, client text, ip inet, rights text[])
RETURNS athena_keys.athena_auth_result
AS 'MODULE_PATHNAME', 'athena_authenticate_privileged'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION athena_keys._authenticate_privileged(text, text, inet, text[]) IS
	'athena_authenticate with table access, as the extension owner; called from athena_authenticate only.';

REVOKE ALL ON FUNCTION athena_keys._authenticate_privileged(text, text, inet, text[]) FROM PUBLIC;

-- The entry point reads only this backend's caches (no table, no name
-- lookup), so it runs with the caller's rights and no SET clause.
ALTER FUNCTION athena_keys.athena_authenticate(text, text, inet, text[])
	SECURITY INVOKER RESET search_path;
