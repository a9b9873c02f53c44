--------------------------------------------------------------------------
-- Administration: rights.  The catalog of rights and wildcard patterns,
-- and which of them each key holds.
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys.athena_create_right(name text, description text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Add a right, or a wildcard pattern such as users.*, to the catalog.
BEGIN
	IF name IS NULL OR name !~ '^[A-Za-z0-9_.*:-]{1,200}$' THEN
		RAISE EXCEPTION 'right name must be 1 to 200 characters from [A-Za-z0-9_.*:-]'
			USING ERRCODE = CASE WHEN name IS NULL THEN 'null_value_not_allowed' ELSE 'invalid_parameter_value' END,
			      DETAIL = format('Got %s.', coalesce(quote_literal(name), 'NULL')),
			      HINT = 'Use dotted names such as users.read, users.* or *.read.';
	END IF;
	IF length(description) > 2000 THEN
		RAISE EXCEPTION 'right description must be at most 2000 characters long'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('The description given has %s characters.', length(description)),
			      HINT = 'Shorten the description.';
	END IF;
	-- ON CONFLICT waits for a concurrent creator of the same name, so both
	-- of two racing calls get this answer or success, never a raw error.
	-- A name the install seeds (020_seed.sql), deleted and created again, is
	-- native again: pg_dump leaves native rights out because a restore seeds
	-- them, and a non-native row of such a name collided with the seeded one,
	-- so the restore lost the whole catalog and every key's grants.
	INSERT INTO athena_keys.api_key_right AS r (name, description, native)
	VALUES (athena_create_right.name, athena_create_right.description,
	        athena_create_right.name = ANY (ARRAY[
	            '*', 'gateway.*', 'gateway.read', 'gateway.write', 'gateway.delete',
	            'gateway.query', 'gateway.rpc.execute', 'gateway.storage_proxy',
	            'gateway.typesense_proxy', 'management.read', 'management.tables.write',
	            'management.tables.drop', 'management.columns.drop',
	            'management.indexes.write', 'management.indexes.drop',
	            'management.extensions.write', 'management.functions.read',
	            'management.functions.write', 'management.functions.drop',
	            'management.provision.write', '*.read', '*.write', '*.delete']))
	ON CONFLICT ON CONSTRAINT api_key_right_pkey DO NOTHING;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'right % already exists', name
			USING ERRCODE = 'duplicate_object',
			      DETAIL = 'Right names are unique in the catalog.',
			      HINT = 'Grant the existing right, or pick another name.';
	END IF;
END
$$;

CREATE FUNCTION athena_keys.athena_delete_right(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Remove a right from the catalog, and with it every grant of it.  The
-- grants go first, explicitly: under session_replication_role = replica
-- the foreign key's cascade does not fire, and a grant left behind would
-- still authorize its key.  The right is locked first: a grant in flight
-- (which share-locks it, _require_rights) commits before its grants are
-- deleted, or finds the right gone.
BEGIN
	PERFORM athena_keys._require_not_null(name, 'name');
	PERFORM 1 FROM athena_keys.api_key_right r WHERE r.name = athena_delete_right.name FOR UPDATE;
	DELETE FROM athena_keys.api_key_right_grant g WHERE g.right_name = athena_delete_right.name;
	DELETE FROM athena_keys.api_key_right r WHERE r.name = athena_delete_right.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'right % does not exist', coalesce(name, 'NULL')
			USING ERRCODE = 'undefined_object',
			      DETAIL = 'Only rights in athena_keys.api_key_right can be deleted.',
			      HINT = 'List the catalog with SELECT name FROM athena_keys.api_key_right.';
	END IF;
END
$$;

CREATE FUNCTION athena_keys.athena_grant_rights(id uuid, rights text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Grant catalog rights to a key (already granted ones are left as they are).
DECLARE
	k athena_keys.api_key;
	granted text[];
BEGIN
	PERFORM athena_keys._require_not_null(rights, 'rights');
	granted := athena_keys._require_rights(rights);
	k := athena_keys._require_key(id);
	INSERT INTO athena_keys.api_key_right_grant (api_key_id, right_name)
	SELECT k.id, r FROM unnest(granted) AS r
	ON CONFLICT DO NOTHING;
	UPDATE athena_keys.api_key AS a SET updated_at = now() WHERE a.id = k.id;
END
$$;

CREATE FUNCTION athena_keys.athena_revoke_rights(id uuid, rights text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Revoke rights from a key (rights it does not hold are ignored).
DECLARE
	k athena_keys.api_key;
	revoked text[];
BEGIN
	PERFORM athena_keys._require_not_null(rights, 'rights');
	revoked := athena_keys._require_rights(rights);
	k := athena_keys._require_key(id);
	DELETE FROM athena_keys.api_key_right_grant g
	 WHERE g.api_key_id = k.id AND g.right_name = ANY (revoked);
	UPDATE athena_keys.api_key AS a SET updated_at = now() WHERE a.id = k.id;
END
$$;

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
