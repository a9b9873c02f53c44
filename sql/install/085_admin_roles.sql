--------------------------------------------------------------------------
-- Administration: roles.  PUBLIC gets nothing (120_privileges.sql);
-- operators give roles exactly what they need with these helpers, which are
-- superuser only: the gateway calls athena_authenticate, admins run the
-- admin functions and read the triage views, a standby's log shipper
-- appends decisions.  Each grants on what exists when it runs.
--------------------------------------------------------------------------

-- The existing role role_name names (never PUBLIC, which is no role: the
-- helpers must not grant to everyone), so only its catalog spelling reaches
-- a GRANT.
CREATE FUNCTION athena_keys._existing_role(role_name name) RETURNS regrole
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r regrole;
BEGIN
	PERFORM athena_keys._require_not_null(role_name, 'role_name');
	r := to_regrole(quote_ident(role_name));
	IF r IS NULL THEN
		RAISE EXCEPTION 'role "%" does not exist', role_name
			USING ERRCODE = 'undefined_object',
			      DETAIL = 'Privileges can only be granted to an existing role; PUBLIC, which every role belongs to, gets none.',
			      HINT = 'Create the role first, e.g. CREATE ROLE athena_gateway LOGIN.';
	END IF;
	RETURN r;
END
$$;

CREATE FUNCTION athena_keys.athena_grant_gateway_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Let role_name call athena_authenticate (both forms) and
-- athena_gateway_verdict (the same decision, the compact answer) and
-- athena_gateway_verdicts (a batch of them), and nothing else.
DECLARE
	r regrole := athena_keys._existing_role(role_name);
BEGIN
	EXECUTE format('GRANT USAGE ON SCHEMA athena_keys TO %s', r);
	EXECUTE format('GRANT USAGE ON TYPE athena_keys.athena_auth_result TO %s', r);
	EXECUTE format('GRANT EXECUTE ON FUNCTION athena_keys.athena_authenticate(text, text, inet, text[]) TO %s', r);
	EXECUTE format('GRANT EXECUTE ON FUNCTION athena_keys.athena_authenticate(text, text, inet, text[], integer) TO %s', r);
	EXECUTE format('GRANT EXECUTE ON FUNCTION athena_keys.athena_gateway_verdict(text, text, inet, text[]) TO %s', r);
	EXECUTE format('GRANT EXECUTE ON FUNCTION athena_keys.athena_gateway_verdicts(text[], text[], inet[], text[]) TO %s', r);
END
$$;

CREATE FUNCTION athena_keys.athena_grant_admin_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Let role_name run the admin functions and read the triage views, but no
-- table directly (so never key_hash, key_salt or raw log rows).  Writing
-- into the audit log (athena_record_decisions) is not administration: from
-- 1.3 it belongs to the shipping role (athena_grant_shipping_role) only.
DECLARE
	r regrole := athena_keys._existing_role(role_name);
	f regprocedure;
	v regclass;
BEGIN
	EXECUTE format('GRANT USAGE ON SCHEMA athena_keys TO %s', r);
	EXECUTE format('GRANT USAGE ON TYPE athena_keys.athena_auth_result TO %s', r);
	FOR f IN
		SELECT p.oid::regprocedure FROM pg_proc p
		 WHERE p.pronamespace = 'athena_keys'::regnamespace AND starts_with(p.proname, 'athena_')
		   AND p.proname NOT IN ('athena_grant_gateway_role', 'athena_grant_admin_role',
		                         'athena_grant_shipping_role', 'athena_record_decisions')
	LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', f, r);
	END LOOP;
	FOR v IN
		SELECT c.oid::regclass FROM pg_class c
		 WHERE c.relnamespace = 'athena_keys'::regnamespace AND c.relkind = 'v'
	LOOP
		EXECUTE format('GRANT SELECT ON %s TO %s', v, r);
	END LOOP;
END
$$;

CREATE FUNCTION athena_keys.athena_grant_shipping_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Let role_name ship a hot standby's decisions to this primary
-- (athena_record_decisions) and do nothing else: no table, no view, no
-- other function.  A standby's primary_conninfo then needs no admin
-- credentials.
DECLARE
	r regrole := athena_keys._existing_role(role_name);
BEGIN
	EXECUTE format('GRANT USAGE ON SCHEMA athena_keys TO %s', r);
	EXECUTE format('GRANT EXECUTE ON FUNCTION athena_keys.athena_record_decisions(jsonb) TO %s', r);
END
$$;

COMMENT ON FUNCTION athena_keys.athena_grant_shipping_role(name) IS
	'Let a role call athena_record_decisions (a standby''s log shipping) and nothing else; superuser only.';
