--------------------------------------------------------------------------
-- pg_dump support: the configuration tables' rows (and the identity
-- sequences behind their ids) are dumped with the database, and the seeded
-- configuration row survives a restore.
--------------------------------------------------------------------------

-- The seeded config row would collide with the dumped one on restore, so an
-- insert of a second row turns into an update of the existing one.
CREATE FUNCTION athena_keys._config_insert_as_update() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	UPDATE athena_keys.api_key_config
	   SET enforce_api_keys = NEW.enforce_api_keys,
	       fail_mode = NEW.fail_mode,
	       updated_at = NEW.updated_at
	 WHERE id = NEW.id;
	IF FOUND THEN
		RETURN NULL;
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER api_key_config_insert_as_update
	BEFORE INSERT ON athena_keys.api_key_config
	FOR EACH ROW EXECUTE FUNCTION athena_keys._config_insert_as_update();
-- Always: a restore or a subscription's table copy may load the row under
-- the replica role (and 040's event trigger re-enables it after a data-only
-- restore's DISABLE TRIGGER ALL).
ALTER TABLE athena_keys.api_key_config ENABLE ALWAYS TRIGGER api_key_config_insert_as_update;

-- A seeded right (native) is not dumped, since a restore seeds it; but a
-- 1.3 database dumped a seeded right that was deleted and created again as
-- a non-native row, and loading that dump collided with the seed: the COPY
-- of the catalog failed, and with it every grant.  Such a row takes the
-- seeded row's place instead: its description is kept, the row stays
-- native, and nothing is inserted.
CREATE FUNCTION athena_keys._right_insert_over_seeded() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT NEW.native THEN
		UPDATE athena_keys.api_key_right AS r
		   SET description = NEW.description
		 WHERE r.name = NEW.name AND r.native;
		IF FOUND THEN
			RETURN NULL;
		END IF;
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER api_key_right_insert_over_seeded
	BEFORE INSERT ON athena_keys.api_key_right
	FOR EACH ROW EXECUTE FUNCTION athena_keys._right_insert_over_seeded();
-- Always, as the configuration's trigger (040's event trigger re-enables
-- it after a data-only restore's DISABLE TRIGGER ALL).
ALTER TABLE athena_keys.api_key_right ENABLE ALWAYS TRIGGER api_key_right_insert_over_seeded;

SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key', '');
SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_right', 'WHERE NOT native');
SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_right_grant', '');
SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_ip_rule', '');
SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_global_ip_rule', '');
SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_ip_seen', '');
SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_config', '');
SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_client_config', '');

-- The identity sequences behind the IP rule and rate limit ids.  Marking the tables dumps
-- their rows, not their sequences' positions; without these a restored
-- database hands out ids from 1 again and collides.
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('athena_keys.api_key_ip_rule', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('athena_keys.api_key_global_ip_rule', 'id')::regclass, '');

-- The rate limits (1.4), their rows and their ids' sequence.
SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_rate_limit', '');
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('athena_keys.api_key_rate_limit', 'id')::regclass, '');
