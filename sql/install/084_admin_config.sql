--------------------------------------------------------------------------
-- Administration: configuration.  Global enforcement and fail mode, and
-- per-client enforcement overrides.
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys.athena_set_enforcement(enforce boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Turn global enforcement on or off (off = shadow mode).
BEGIN
	PERFORM athena_keys._require_not_null(enforce, 'enforce');
	UPDATE athena_keys.api_key_config SET enforce_api_keys = enforce, updated_at = now();
END
$$;

CREATE FUNCTION athena_keys.athena_set_fail_mode(mode text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Choose what proxies and learning keys do when a decision cannot be made.
BEGIN
	PERFORM athena_keys._require_not_null(mode, 'mode');
	IF mode IS NULL OR mode NOT IN ('fail_closed', 'fail_open') THEN
		RAISE EXCEPTION 'unknown fail mode "%"', coalesce(mode, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'The fail mode decides whether a request passes when the key system cannot decide.',
			      HINT = 'Pass ''fail_closed'' (reject with 503) or ''fail_open'' (let the request through).';
	END IF;
	UPDATE athena_keys.api_key_config SET fail_mode = mode, updated_at = now();
END
$$;

CREATE FUNCTION athena_keys.athena_set_client_enforcement(client_name text, enforce boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Override global enforcement for one client.
BEGIN
	PERFORM athena_keys._require_not_null(client_name, 'client_name');
	PERFORM athena_keys._require_client_name(client_name);
	PERFORM athena_keys._require_not_null(enforce, 'enforce');
	INSERT INTO athena_keys.api_key_client_config AS c (client_name, enforce_api_keys)
	VALUES (athena_set_client_enforcement.client_name, enforce)
	ON CONFLICT ON CONSTRAINT api_key_client_config_pkey
	DO UPDATE SET enforce_api_keys = EXCLUDED.enforce_api_keys, updated_at = now();
END
$$;

CREATE FUNCTION athena_keys.athena_clear_client_enforcement(client_name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Drop a client's override so it follows the global setting again;
-- returns whether there was one.
BEGIN
	PERFORM athena_keys._require_not_null(client_name, 'client_name');
	DELETE FROM athena_keys.api_key_client_config c
	 WHERE c.client_name = athena_clear_client_enforcement.client_name;
	RETURN FOUND;
END
$$;
