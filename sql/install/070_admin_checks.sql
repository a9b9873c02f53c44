--------------------------------------------------------------------------
-- Administration: the input checks the admin functions share.  Every admin
-- function validates all of its input before it changes anything, so an
-- error never leaves a half-applied change.
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys._require_key(key_id uuid) RETURNS athena_keys.api_key
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- The key row, locked for update, or a clear error.
DECLARE
	k athena_keys.api_key;
BEGIN
	IF key_id IS NULL THEN
		RAISE EXCEPTION 'api key id must not be null'
			USING ERRCODE = 'null_value_not_allowed',
			      DETAIL = 'Every key function needs the id of an existing key.',
			      HINT = 'Pass the id returned by athena_create_key or listed in athena_keys.athena_key_status.';
	END IF;
	SELECT * INTO k FROM athena_keys.api_key WHERE id = key_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'api key % does not exist', key_id
			USING ERRCODE = 'undefined_object',
			      DETAIL = 'No key has this id; it may have been deleted.',
			      HINT = 'List existing keys with SELECT id, name FROM athena_keys.athena_key_status.';
	END IF;
	RETURN k;
END
$$;

CREATE FUNCTION athena_keys._require_not_null(value anyelement, what text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Raise a clear error when a required argument is NULL.
BEGIN
	IF value IS NULL THEN
		RAISE EXCEPTION '% must not be null', what
			USING ERRCODE = 'null_value_not_allowed',
			      DETAIL = format('The argument %s is required.', what),
			      HINT = format('Pass a value for %s.', what);
	END IF;
END
$$;

CREATE FUNCTION athena_keys._require_rights(rights text[]) RETURNS text[]
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- The distinct right names of rights, or an error naming every one that is
-- NULL or missing from the catalog.  The rights found are share-locked
-- until the caller's transaction ends, so a concurrent athena_delete_right
-- waits for the grant and then deletes it too (not the foreign key's
-- cascade, which session_replication_role = replica turns off).
DECLARE
	unknown text[];
BEGIN
	IF rights IS NULL THEN
		RETURN '{}';
	END IF;
	IF array_position(rights, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'rights must not contain null'
			USING ERRCODE = 'null_value_not_allowed',
			      DETAIL = 'A right name is a non-empty string.',
			      HINT = 'Remove the NULL elements from the rights array.';
	END IF;
	PERFORM 1 FROM athena_keys.api_key_right c
	  WHERE c.name = ANY (rights) ORDER BY c.name FOR KEY SHARE;
	SELECT array_agg(DISTINCT r ORDER BY r) INTO unknown
	  FROM unnest(rights) AS r
	 WHERE NOT EXISTS (SELECT 1 FROM athena_keys.api_key_right c WHERE c.name = r);
	IF unknown IS NOT NULL THEN
		-- Name a few: an error listing thousands of names helps nobody.
		RAISE EXCEPTION 'right % is not in the catalog',
			array_to_string(unknown[1:5], ', ') ||
			CASE WHEN cardinality(unknown) > 5
			     THEN format(' (and %s more)', cardinality(unknown) - 5) ELSE '' END
			USING ERRCODE = 'undefined_object',
			      DETAIL = 'Only rights listed in athena_keys.api_key_right can be granted.',
			      HINT = 'Add the right first with athena_keys.athena_create_right(name).';
	END IF;
	RETURN ARRAY(SELECT DISTINCT r FROM unnest(rights) AS r ORDER BY r);
END
$$;

CREATE FUNCTION athena_keys._require_client_name(client_name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Reject empty or oversized client names (NULL is allowed: it means none).
BEGIN
	IF client_name IS NOT NULL AND (client_name = '' OR length(client_name) > 256) THEN
		RAISE EXCEPTION 'client name must be 1 to 256 characters long'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('The client name given has %s characters.', length(client_name)),
			      HINT = 'Pass NULL for "no client" and a non-empty name otherwise.';
	END IF;
END
$$;

CREATE FUNCTION athena_keys._require_cidrs(addrs cidr[], what text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Reject NULL elements in an address list.
BEGIN
	IF addrs IS NOT NULL AND array_position(addrs, NULL) IS NOT NULL THEN
		RAISE EXCEPTION '% must not contain null', what
			USING ERRCODE = 'null_value_not_allowed',
			      DETAIL = 'Every entry is an IPv4 or IPv6 address or CIDR block.',
			      HINT = format('Remove the NULL elements from %s.', what);
	END IF;
END
$$;

CREATE FUNCTION athena_keys._require_list(list text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Reject anything but 'whitelist' and 'blacklist'.
BEGIN
	PERFORM athena_keys._require_not_null(list, 'list');
	IF list IS NULL OR list NOT IN ('whitelist', 'blacklist') THEN
		RAISE EXCEPTION 'unknown ip list "%"', coalesce(list, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'An IP rule belongs to the whitelist or the blacklist.',
			      HINT = 'Pass ''whitelist'' or ''blacklist''.';
	END IF;
END
$$;

CREATE FUNCTION athena_keys._require_key_name(name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Reject a missing, empty or oversized key name.
BEGIN
	IF name IS NULL OR name = '' OR length(name) > 200 THEN
		RAISE EXCEPTION 'key name must be 1 to 200 characters long'
			USING ERRCODE = CASE WHEN name IS NULL THEN 'null_value_not_allowed' ELSE 'invalid_parameter_value' END,
			      DETAIL = 'Every key has a name that operators recognise it by.',
			      HINT = 'Pass a short descriptive name, such as the calling service.';
	END IF;
END
$$;

CREATE FUNCTION athena_keys._require_key_description(description text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Reject an oversized key description (NULL means none).
BEGIN
	IF length(description) > 2000 THEN
		RAISE EXCEPTION 'key description must be at most 2000 characters long'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('The description given has %s characters.', length(description)),
			      HINT = 'Shorten the description.';
	END IF;
END
$$;
