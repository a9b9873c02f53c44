--------------------------------------------------------------------------
-- Administration: keys.  Issue, import, rotate, (de)activate, expire,
-- bind to a client, rename and delete.  Fresh secrets, salts and public ids
-- and the digest of salt:secret come from C (OpenSSL).
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys._random_hex(nbytes integer) RETURNS text
	AS 'MODULE_PATHNAME', 'athena_random_hex' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION athena_keys._key_digest(salt text, secret text) RETURNS text
	AS 'MODULE_PATHNAME', 'athena_key_digest' LANGUAGE C IMMUTABLE STRICT;

CREATE FUNCTION athena_keys.athena_create_key(
	name text,
	client_name text DEFAULT NULL,
	rights text[] DEFAULT '{}',
	expires_at timestamptz DEFAULT NULL,
	description text DEFAULT NULL,
	virgin_mode boolean DEFAULT false,
	virgin_until_n_requests integer DEFAULT 0,
	max_whitelist_ips integer DEFAULT 0,
	ip_whitelist cidr[] DEFAULT '{}',
	ip_blacklist cidr[] DEFAULT '{}')
RETURNS TABLE (api_key text, id uuid, public_id text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Issue a key.  The plaintext is returned here and never again.
DECLARE
	granted text[];
	new_public_id text;
	new_secret text;
	new_salt text;
	new_id uuid;
	attempt integer := 0;
BEGIN
	PERFORM athena_keys._require_key_name(name);
	PERFORM athena_keys._require_key_description(description);
	PERFORM athena_keys._require_client_name(client_name);
	granted := athena_keys._require_rights(rights);
	PERFORM athena_keys._require_not_null(virgin_mode, 'virgin_mode');
	PERFORM athena_keys._require_not_null(virgin_until_n_requests, 'virgin_until_n_requests');
	PERFORM athena_keys._require_not_null(max_whitelist_ips, 'max_whitelist_ips');
	IF virgin_until_n_requests < 0 OR max_whitelist_ips < 0 THEN
		RAISE EXCEPTION 'virgin_until_n_requests and max_whitelist_ips must not be negative'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got virgin_until_n_requests = %s and max_whitelist_ips = %s.',
			                      virgin_until_n_requests, max_whitelist_ips),
			      HINT = 'Pass 0 to disable a threshold, or a positive number.';
	END IF;
	IF virgin_mode AND virgin_until_n_requests = 0 AND max_whitelist_ips = 0 THEN
		RAISE EXCEPTION 'a key in virgin mode needs a positive threshold'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'Both virgin_until_n_requests and max_whitelist_ips are 0, so learning would never lock in.',
			      HINT = 'Set virgin_until_n_requests, max_whitelist_ips, or both, to a positive number.';
	END IF;
	PERFORM athena_keys._require_cidrs(ip_whitelist, 'ip_whitelist');
	PERFORM athena_keys._require_cidrs(ip_blacklist, 'ip_blacklist');
	IF virgin_mode AND (cardinality(ip_whitelist) > 0 OR cardinality(ip_blacklist) > 0) THEN
		RAISE EXCEPTION 'a key in virgin mode starts with no per-key ip lists'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'A learning key builds its whitelist from the addresses it sees.',
			      HINT = 'Create the key without ip_whitelist and ip_blacklist, then add blacklist entries with athena_add_ip_rule.';
	END IF;

	LOOP
		new_public_id := athena_keys._random_hex(8);
		new_secret := athena_keys._random_hex(32);
		new_salt := athena_keys._random_hex(16);
		BEGIN
			INSERT INTO athena_keys.api_key AS k
				(public_id, name, description, client_name, key_salt, key_hash, expires_at,
				 virgin_mode, virgin_until_n_requests, max_whitelist_ips)
			VALUES (new_public_id, athena_create_key.name, athena_create_key.description,
			        athena_create_key.client_name, new_salt,
			        athena_keys._key_digest(new_salt, new_secret), athena_create_key.expires_at,
			        athena_create_key.virgin_mode, athena_create_key.virgin_until_n_requests,
			        athena_create_key.max_whitelist_ips)
			RETURNING k.id INTO new_id;
			EXIT;
		EXCEPTION WHEN unique_violation THEN
			-- 64 random bits collided; draw again (vanishingly rare).
			attempt := attempt + 1;
			IF attempt >= 5 THEN
				RAISE;
			END IF;
		END;
	END LOOP;

	INSERT INTO athena_keys.api_key_right_grant (api_key_id, right_name)
	SELECT new_id, r FROM unnest(granted) AS r;
	INSERT INTO athena_keys.api_key_ip_rule (api_key_id, list, addr)
	SELECT DISTINCT new_id, 'whitelist', a FROM unnest(ip_whitelist) AS a;
	INSERT INTO athena_keys.api_key_ip_rule (api_key_id, list, addr)
	SELECT DISTINCT new_id, 'blacklist', a FROM unnest(ip_blacklist) AS a;

	api_key := 'ath_' || new_public_id || '.' || new_secret;
	id := new_id;
	public_id := new_public_id;
	RETURN NEXT;
END
$$;

CREATE FUNCTION athena_keys.athena_import_key(
	public_id text,
	key_salt text,
	key_hash text,
	name text,
	client_name text DEFAULT NULL,
	rights text[] DEFAULT '{}',
	expires_at timestamptz DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Bring over an existing Athena key by its public id, salt and SHA-256 hash.
DECLARE
	granted text[];
	new_id uuid;
BEGIN
	PERFORM athena_keys._require_not_null(public_id, 'public_id');
	PERFORM athena_keys._require_not_null(key_salt, 'key_salt');
	PERFORM athena_keys._require_not_null(key_hash, 'key_hash');
	IF public_id IS NULL OR public_id !~ '^[0-9A-Za-z_-]{8,64}$' THEN
		RAISE EXCEPTION 'public id must be 8 to 64 characters from [0-9A-Za-z_-]'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'The public id is the part between "ath_" and "." in the plaintext key.',
			      HINT = 'Copy public_id exactly as Athena stored it.';
	END IF;
	IF key_salt IS NULL OR key_salt !~ '^[!-~]+$' OR length(key_salt) > 256 THEN
		RAISE EXCEPTION 'key salt must be 1 to 256 printable ASCII characters'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'The salt is hashed as text together with the secret.',
			      HINT = 'Copy key_salt exactly as Athena stored it.';
	END IF;
	IF key_hash IS NULL OR lower(key_hash) !~ '^[0-9a-f]{64}$' THEN
		RAISE EXCEPTION 'key hash must be 64 hex characters'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'The hash is the SHA-256 of key_salt || '':'' || secret, in hex.',
			      HINT = 'Copy key_hash exactly as Athena stored it.';
	END IF;
	PERFORM athena_keys._require_key_name(name);
	PERFORM athena_keys._require_client_name(client_name);
	granted := athena_keys._require_rights(rights);
	IF EXISTS (SELECT 1 FROM athena_keys.api_key k WHERE k.public_id = athena_import_key.public_id) THEN
		RAISE EXCEPTION 'a key with public id % already exists', public_id
			USING ERRCODE = 'unique_violation',
			      DETAIL = 'Public ids identify keys and must be unique.',
			      HINT = 'Skip keys that were imported before, or delete the existing key first.';
	END IF;

	-- The same answer when a concurrent import of the public id committed
	-- after the check above.
	BEGIN
		INSERT INTO athena_keys.api_key AS k
			(public_id, name, client_name, key_salt, key_hash, expires_at)
		VALUES (athena_import_key.public_id, athena_import_key.name, athena_import_key.client_name,
		        athena_import_key.key_salt, lower(athena_import_key.key_hash), athena_import_key.expires_at)
		RETURNING k.id INTO new_id;
	EXCEPTION WHEN unique_violation THEN
		RAISE EXCEPTION 'a key with public id % already exists', public_id
			USING ERRCODE = 'unique_violation',
			      DETAIL = 'Public ids identify keys and must be unique.',
			      HINT = 'Skip keys that were imported before, or delete the existing key first.';
	END;
	INSERT INTO athena_keys.api_key_right_grant (api_key_id, right_name)
	SELECT new_id, r FROM unnest(granted) AS r;
	RETURN new_id;
END
$$;

CREATE FUNCTION athena_keys.athena_rotate_key(id uuid, grace interval DEFAULT '0')
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- New secret for the same key id and public id; the old secret keeps
-- working until now() + grace.  Returns the new plaintext, this once.
-- The grace is judged by the time it ends: an interval of mixed signs
-- ('1 month -30 days') compares as one thing and adds up to another.
DECLARE
	k athena_keys.api_key;
	new_secret text := athena_keys._random_hex(32);
	new_salt text := athena_keys._random_hex(16);
	old_until timestamptz;
BEGIN
	PERFORM athena_keys._require_not_null(grace, 'grace');
	IF grace < interval '0' OR NOT isfinite(grace) THEN
		RAISE EXCEPTION 'grace period must be a finite, non-negative interval'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got %s.', coalesce(grace::text, 'NULL')),
			      HINT = 'Pass interval ''0'' to revoke the old secret at once, or e.g. interval ''1 hour''.';
	END IF;
	BEGIN
		old_until := now() + grace;
	EXCEPTION WHEN datetime_field_overflow THEN
		RAISE EXCEPTION 'grace period is too long'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got %s: now() plus it is past the last timestamp.', grace),
			      HINT = 'Pass a grace period of days or weeks, e.g. interval ''1 day''.';
	END;
	IF old_until < now() THEN
		RAISE EXCEPTION 'grace period must not end before now'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got %s, whose parts have opposite signs: now() plus it is in the past.', grace),
			      HINT = 'Pass a grace period whose parts are all non-negative, e.g. interval ''1 hour''.';
	END IF;
	k := athena_keys._require_key(id);
	UPDATE athena_keys.api_key AS a
	   SET previous_key_salt = CASE WHEN old_until > now() THEN k.key_salt END,
	       previous_key_hash = CASE WHEN old_until > now() THEN k.key_hash END,
	       previous_valid_until = CASE WHEN old_until > now() THEN old_until END,
	       key_salt = new_salt,
	       key_hash = athena_keys._key_digest(new_salt, new_secret),
	       updated_at = now()
	 WHERE a.id = k.id;
	RETURN 'ath_' || k.public_id || '.' || new_secret;
END
$$;

CREATE FUNCTION athena_keys.athena_set_key_active(id uuid, active boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Deactivate or reactivate a key; effective for every session at commit.
DECLARE
	k athena_keys.api_key;
BEGIN
	PERFORM athena_keys._require_not_null(active, 'active');
	k := athena_keys._require_key(id);
	UPDATE athena_keys.api_key AS a SET is_active = active, updated_at = now() WHERE a.id = k.id;
END
$$;

CREATE FUNCTION athena_keys.athena_set_key_expiry(id uuid, expires_at timestamptz) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Set the hard cutoff; NULL removes it.
DECLARE
	k athena_keys.api_key;
BEGIN
	k := athena_keys._require_key(id);
	UPDATE athena_keys.api_key AS a
	   SET expires_at = athena_set_key_expiry.expires_at, updated_at = now()
	 WHERE a.id = k.id;
END
$$;

CREATE FUNCTION athena_keys.athena_set_key_client(id uuid, client_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Bind a key to a client (exact, case-sensitive); NULL unbinds.
DECLARE
	k athena_keys.api_key;
BEGIN
	PERFORM athena_keys._require_client_name(client_name);
	k := athena_keys._require_key(id);
	UPDATE athena_keys.api_key AS a
	   SET client_name = athena_set_key_client.client_name, updated_at = now()
	 WHERE a.id = k.id;
END
$$;

CREATE FUNCTION athena_keys.athena_delete_key(id uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Remove a key with its grants, rules, seen rows and rate limits; its log
-- rows stay.  They go explicitly: under session_replication_role = replica
-- the foreign keys' cascades do not fire, and rows left behind would break
-- a later restore, which adds the foreign keys after the data.
DECLARE
	k athena_keys.api_key;
BEGIN
	k := athena_keys._require_key(id);
	DELETE FROM athena_keys.api_key_right_grant g WHERE g.api_key_id = k.id;
	DELETE FROM athena_keys.api_key_ip_rule r WHERE r.api_key_id = k.id;
	DELETE FROM athena_keys.api_key_ip_seen s WHERE s.api_key_id = k.id;
	DELETE FROM athena_keys.api_key_rate_limit l WHERE l.api_key_id = k.id;
	DELETE FROM athena_keys.api_key AS a WHERE a.id = k.id;
END
$$;

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
