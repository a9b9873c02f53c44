--------------------------------------------------------------------------
-- Administration: IP rules.  Whitelist and blacklist entries, per key or
-- global (optionally for one client).
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys.athena_add_ip_rule(
	list text, addr cidr, key_id uuid DEFAULT NULL,
	client_name text DEFAULT NULL, label text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Add (or relabel) a whitelist or blacklist entry: per key when key_id is
-- given, else global, optionally scoped to one client.  Adding an entry
-- that lock-in made makes it the operator's.
#variable_conflict use_column
DECLARE
	k athena_keys.api_key;
BEGIN
	PERFORM athena_keys._require_list(list);
	PERFORM athena_keys._require_not_null(addr, 'addr');
	PERFORM athena_keys._require_client_name(client_name);
	IF length(label) > 200 THEN
		RAISE EXCEPTION 'rule label must be at most 200 characters long'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('The label given has %s characters.', length(label)),
			      HINT = 'Shorten the label.';
	END IF;
	IF key_id IS NOT NULL AND client_name IS NOT NULL THEN
		RAISE EXCEPTION 'client_name applies only to global rules'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'A per-key rule already belongs to one key; scoping it to a client means nothing.',
			      HINT = 'Pass either key_id or client_name, not both.';
	END IF;
	IF key_id IS NULL THEN
		INSERT INTO athena_keys.api_key_global_ip_rule AS g (list, addr, client_name, label)
		VALUES (athena_add_ip_rule.list, athena_add_ip_rule.addr,
		        athena_add_ip_rule.client_name, athena_add_ip_rule.label)
		ON CONFLICT (list, addr, (coalesce(client_name, ''))) DO UPDATE SET label = EXCLUDED.label;
	ELSE
		k := athena_keys._require_key(key_id);
		INSERT INTO athena_keys.api_key_ip_rule AS r (api_key_id, list, addr, label)
		VALUES (k.id, athena_add_ip_rule.list, athena_add_ip_rule.addr, athena_add_ip_rule.label)
		-- An entry the operator adds is theirs, also where lock-in made it:
		-- athena_reset_key_learning then leaves it.
		ON CONFLICT (api_key_id, list, addr) DO UPDATE SET label = EXCLUDED.label, from_lock_in = false;
		UPDATE athena_keys.api_key AS a SET updated_at = now() WHERE a.id = k.id;
	END IF;
END
$$;

CREATE FUNCTION athena_keys.athena_remove_ip_rule(
	list text, addr cidr, key_id uuid DEFAULT NULL, client_name text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Remove an entry; returns whether one was there.
DECLARE
	k athena_keys.api_key;
BEGIN
	PERFORM athena_keys._require_list(list);
	PERFORM athena_keys._require_not_null(addr, 'addr');
	IF key_id IS NOT NULL AND client_name IS NOT NULL THEN
		RAISE EXCEPTION 'client_name applies only to global rules'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'A per-key rule already belongs to one key; scoping it to a client means nothing.',
			      HINT = 'Pass either key_id or client_name, not both.';
	END IF;
	IF key_id IS NULL THEN
		DELETE FROM athena_keys.api_key_global_ip_rule g
		 WHERE g.list = athena_remove_ip_rule.list AND g.addr = athena_remove_ip_rule.addr
		   AND g.client_name IS NOT DISTINCT FROM athena_remove_ip_rule.client_name;
		RETURN FOUND;
	END IF;
	k := athena_keys._require_key(key_id);
	DELETE FROM athena_keys.api_key_ip_rule r
	 WHERE r.api_key_id = k.id AND r.list = athena_remove_ip_rule.list
	   AND r.addr = athena_remove_ip_rule.addr;
	RETURN FOUND;
END
$$;
