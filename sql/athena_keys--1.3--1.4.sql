\echo Use "ALTER EXTENSION athena_keys UPDATE TO '1.4'" to load this file. \quit
-- athena_keys 1.3 -> 1.4.  1.4 is the first version with a maintained
-- install script: a fresh CREATE EXTENSION runs athena_keys--1.4.sql, built
-- by make from sql/install/, instead of 1.0 and every delta.  A change to
-- the objects goes here, as a delta for databases already installed, and
-- into the piece of sql/install/ that holds the object, for fresh ones;
-- test/t/005_upgrade.pl fails when the two paths end differently.

--------------------------------------------------------------------------
-- athena_authenticate decides as its caller and performs the effects that
-- need a table (a cache fill, learning, a log insert, a last_used_at
-- stamp) with the extension owner's rights for exactly those sections
-- (src/request_effects.c): the SECURITY DEFINER twin it used to hand whole
-- calls to is gone.
--------------------------------------------------------------------------
DROP FUNCTION athena_keys._authenticate_privileged(text, text, inet, text[]);

--------------------------------------------------------------------------
-- 1.4 adds athena_gateway_verdict (issue 17), and the gateway role may call it.
--------------------------------------------------------------------------
-- The compact verdict for gateways: the same decision and effects as
-- athena_authenticate, answered as one text value (src/gateway_verdict_fields.h:
-- allowed|status|fail_mode|key_id|public_id|reason|client_name, an empty
-- field NULL, client_name the rest of the value).  PostgreSQL executes a
-- scalar called in the target list much more cheaply than a row-returning
-- function in FROM, so athena-authd calls this one.
CREATE FUNCTION athena_keys.athena_gateway_verdict(
	key text, client text, ip inet, rights text[])
RETURNS text
AS 'MODULE_PATHNAME', 'athena_gateway_verdict'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

COMMENT ON FUNCTION athena_keys.athena_gateway_verdict(text, text, inet, text[]) IS
	'Decide one gateway request as athena_authenticate does; the verdict a gateway acts on, as one text value.';
REVOKE ALL ON FUNCTION athena_keys.athena_gateway_verdict(text, text, inet, text[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION athena_keys.athena_grant_gateway_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Let role_name call athena_authenticate and athena_gateway_verdict (the
-- same decision, the compact answer) and nothing else.
BEGIN
	PERFORM athena_keys._require_not_null(role_name, 'role_name');
	EXECUTE format('GRANT USAGE ON SCHEMA athena_keys TO %I', role_name);
	EXECUTE format('GRANT USAGE ON TYPE athena_keys.athena_auth_result TO %I', role_name);
	EXECUTE format('GRANT EXECUTE ON FUNCTION athena_keys.athena_authenticate(text, text, inet, text[]) TO %I', role_name);
	EXECUTE format('GRANT EXECUTE ON FUNCTION athena_keys.athena_gateway_verdict(text, text, inet, text[]) TO %I', role_name);
END
$$;

-- Roles made gateways before 1.4 may call athena_authenticate only: run
-- athena_grant_gateway_role again for them before athena-authd 1.4, which
-- calls athena_gateway_verdict.  (A GRANT here would become part of the
-- extension's initial privileges, which a fresh install does not have.)
