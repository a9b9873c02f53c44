\echo Use "ALTER EXTENSION athena_keys UPDATE TO '1.1'" to load this file. \quit
-- athena_keys 1.0 -> 1.1: admin functions athena_set_key_rights and
-- athena_rename_key, and athena_record_decisions (standby decisions shipped
-- to the primary's log).  A fresh CREATE EXTENSION runs athena_keys--1.0.sql and
-- then this script, so an upgraded database and a fresh one end up with the
-- same objects (test/t/005_upgrade.pl checks that).

--------------------------------------------------------------------------
-- Administration
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys.athena_set_key_rights(id uuid, rights text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Replace a key's grants with exactly this set (Athena's PATCH semantics):
-- rights not listed are revoked, listed ones not yet held are granted, and
-- rights kept keep their granted_at.  '{}' revokes everything.  Every name
-- must be in the catalog; nothing changes unless all of them are.
DECLARE
	k athena_keys.api_key;
	wanted text[];
BEGIN
	PERFORM athena_keys._require_not_null(rights, 'rights');
	wanted := athena_keys._require_rights(rights);
	k := athena_keys._require_key(id);
	DELETE FROM athena_keys.api_key_right_grant g
	 WHERE g.api_key_id = k.id AND g.right_name <> ALL (wanted);
	INSERT INTO athena_keys.api_key_right_grant (api_key_id, right_name)
	SELECT k.id, r FROM unnest(wanted) AS r
	ON CONFLICT DO NOTHING;
	UPDATE athena_keys.api_key AS a SET updated_at = now() WHERE a.id = k.id;
END
$$;

COMMENT ON FUNCTION athena_keys.athena_set_key_rights(uuid, text[]) IS
	'Replace a key''s grants with exactly the given catalog rights (''{}'' revokes all); all or nothing.';

CREATE FUNCTION athena_keys.athena_rename_key(id uuid, name text, description text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Set a key's name and description (NULL clears the description), with the
-- limits of athena_create_key.  The key's id, public id and secret stay.
DECLARE
	k athena_keys.api_key;
BEGIN
	PERFORM athena_keys._require_key_name(name);
	PERFORM athena_keys._require_key_description(description);
	k := athena_keys._require_key(id);
	UPDATE athena_keys.api_key AS a
	   SET name = athena_rename_key.name,
	       description = athena_rename_key.description,
	       updated_at = now()
	 WHERE a.id = k.id;
END
$$;

COMMENT ON FUNCTION athena_keys.athena_rename_key(uuid, text, text) IS
	'Set a key''s name (1 to 200 characters) and description (at most 2000; NULL clears it).';

CREATE FUNCTION athena_keys.athena_record_decisions(decisions jsonb) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Append decisions made elsewhere (a hot standby's log writer ships them
-- here in batches) to api_key_auth_log, and stamp last_used_at for the keys
-- they authenticated.  decisions is a JSON array of objects with the log's
-- column names.  Rows whose status or reason is not one athena_authenticate
-- produces are skipped.  Returns the rows appended.
DECLARE
	appended integer;
BEGIN
	PERFORM athena_keys._require_not_null(decisions, 'decisions');
	IF jsonb_typeof(decisions) <> 'array' THEN
		RAISE EXCEPTION 'decisions must be a json array'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got a json %s.', jsonb_typeof(decisions)),
			      HINT = 'Pass an array of objects with the columns of athena_keys.api_key_auth_log.';
	END IF;
	WITH incoming AS (
		SELECT r.* FROM jsonb_to_recordset(decisions) AS r(
			created_at timestamptz, api_key_id uuid, api_key_public_id text, client_name text,
			remote_addr inet, required_rights text[], granted_rights text[], missing_rights text[],
			authenticated boolean, authorized boolean, enforced boolean, allowed boolean,
			status smallint, failure_reason text, locked_in boolean)
		 WHERE r.created_at IS NOT NULL
		   AND r.status IN (200, 401, 403, 503)
		   AND r.authenticated IS NOT NULL AND r.authorized IS NOT NULL
		   AND r.enforced IS NOT NULL AND r.allowed IS NOT NULL
		   AND (r.failure_reason IS NULL OR r.failure_reason IN (
		        'API key required', 'Invalid API key', 'Inactive API key', 'Expired API key',
		        'API key client mismatch', 'Insufficient API key rights', 'IP blocked',
		        'IP not allowed', 'Client IP required', 'API key policy unavailable'))
	), appended_rows AS (
		INSERT INTO athena_keys.api_key_auth_log
			(created_at, api_key_id, api_key_public_id, client_name, remote_addr, required_rights,
			 granted_rights, missing_rights, authenticated, authorized, enforced, allowed, status,
			 failure_reason, locked_in)
		SELECT created_at, api_key_id, left(api_key_public_id, 64), left(client_name, 256),
		       remote_addr, required_rights, granted_rights, missing_rights, authenticated,
		       authorized, enforced, allowed, status, failure_reason, coalesce(locked_in, false)
		  FROM incoming
		RETURNING api_key_id, created_at, authenticated
	), used AS (
		SELECT api_key_id, max(created_at) AS used_at FROM appended_rows
		 WHERE authenticated AND api_key_id IS NOT NULL GROUP BY api_key_id
	), stamped AS (
		UPDATE athena_keys.api_key k SET last_used_at = u.used_at
		  FROM used u
		 WHERE k.id = u.api_key_id AND (k.last_used_at IS NULL OR k.last_used_at < u.used_at)
		RETURNING k.id
	)
	SELECT count(*) INTO appended FROM appended_rows;
	RETURN appended;
END
$$;

COMMENT ON FUNCTION athena_keys.athena_record_decisions(jsonb) IS
	'Append a batch of decisions made on a hot standby to the log and stamp last_used_at; returns rows appended.';

REVOKE ALL ON FUNCTION athena_keys.athena_record_decisions(jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys.athena_set_key_rights(uuid, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys.athena_rename_key(uuid, text, text) FROM PUBLIC;

--------------------------------------------------------------------------
-- Existing admin roles.  athena_grant_admin_role(role) grants EXECUTE on the
-- athena_% functions that exist when it runs, so a role made an admin under
-- 1.0 would not be able to call the functions above.  Every role that holds
-- EXECUTE on athena_create_key (the mark of an admin role) gets EXECUTE on
-- them too, with the same grant option; re-running athena_grant_admin_role
-- after the upgrade does the same and is harmless.
--
-- GRANTs issued inside ALTER EXTENSION are recorded in pg_init_privs as the
-- extension's own initial privileges, which pg_dump never dumps: a dump of
-- the upgraded database would restore without these grants.  So the initial
-- privileges of the new functions are set back to what this script itself
-- left (owner only, as in a fresh install), and the grants to the admin
-- roles count as the operator's, like every other athena_grant_admin_role
-- grant, and are dumped.  On a fresh install no role holds EXECUTE on
-- athena_create_key yet, so the block grants nothing and changes nothing.
--------------------------------------------------------------------------

DO $$
DECLARE
	new_functions regprocedure[] := ARRAY[
		'athena_keys.athena_set_key_rights(uuid, text[])'::regprocedure,
		'athena_keys.athena_rename_key(uuid, text, text)'::regprocedure,
		'athena_keys.athena_record_decisions(jsonb)'::regprocedure];
	before_grants pg_catalog.pg_init_privs[];
	f regprocedure;
	g record;
	granted boolean := false;
BEGIN
	SELECT array_agg(i) INTO before_grants
	  FROM pg_catalog.pg_init_privs i
	 WHERE i.classoid = 'pg_catalog.pg_proc'::regclass AND i.objsubid = 0
	   AND i.objoid = ANY (new_functions);
	FOR g IN
		SELECT a.grantee::regrole AS role_name, bool_or(a.is_grantable) AS grantable
		  FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		 WHERE p.oid = 'athena_keys.athena_create_key(text, text, text[], timestamptz, text, boolean, integer, integer, cidr[], cidr[])'::regprocedure
		   AND a.privilege_type = 'EXECUTE'
		   AND a.grantee <> 0
		   AND a.grantee <> p.proowner
		 GROUP BY a.grantee
		 ORDER BY a.grantee
	LOOP
		FOREACH f IN ARRAY new_functions LOOP
			-- regrole's text form is already a quoted identifier.
			EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s%s', f, g.role_name,
			               CASE WHEN g.grantable THEN ' WITH GRANT OPTION' ELSE '' END);
		END LOOP;
		granted := true;
	END LOOP;
	IF NOT granted THEN
		RETURN;
	END IF;
	-- Put the initial privileges back as they were before the grants.
	DELETE FROM pg_catalog.pg_init_privs i
	 WHERE i.classoid = 'pg_catalog.pg_proc'::regclass AND i.objsubid = 0
	   AND i.objoid = ANY (new_functions);
	INSERT INTO pg_catalog.pg_init_privs SELECT * FROM unnest(before_grants);
END
$$;
