--------------------------------------------------------------------------
-- Cache invalidation: when a change to a table that feeds a cache commits,
-- every backend rebuilds that cache at its next use (relcache callbacks, no
-- timers; src/cache_invalidation.c): the config tables and the global rules
-- feed the config cache, the keys, grants, per-key rules and rights the key
-- cache, each with a generation of its own; the rate limits feed both.
--
-- Logical replication's apply fires only row triggers (and TRUNCATE
-- statement triggers), and under session_replication_role = replica only
-- those marked ENABLE ALWAYS.  So every table the caches read has a row
-- trigger for INSERT, UPDATE and DELETE plus a statement trigger for
-- TRUNCATE, all ENABLE ALWAYS.  The function works per row
-- (CacheInvalidateRelcache deduplicates).
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys._invalidate_caches() RETURNS trigger
	AS 'MODULE_PATHNAME', 'athena_invalidate_caches' LANGUAGE C;

CREATE TRIGGER api_key_config_invalidate
	AFTER INSERT OR UPDATE OR DELETE ON athena_keys.api_key_config
	FOR EACH ROW EXECUTE FUNCTION athena_keys._invalidate_caches();
CREATE TRIGGER api_key_config_truncate_invalidate
	AFTER TRUNCATE ON athena_keys.api_key_config
	FOR EACH STATEMENT EXECUTE FUNCTION athena_keys._invalidate_caches();
ALTER TABLE athena_keys.api_key_config ENABLE ALWAYS TRIGGER api_key_config_invalidate;
ALTER TABLE athena_keys.api_key_config ENABLE ALWAYS TRIGGER api_key_config_truncate_invalidate;

CREATE TRIGGER api_key_client_config_invalidate
	AFTER INSERT OR UPDATE OR DELETE ON athena_keys.api_key_client_config
	FOR EACH ROW EXECUTE FUNCTION athena_keys._invalidate_caches();
CREATE TRIGGER api_key_client_config_truncate_invalidate
	AFTER TRUNCATE ON athena_keys.api_key_client_config
	FOR EACH STATEMENT EXECUTE FUNCTION athena_keys._invalidate_caches();
ALTER TABLE athena_keys.api_key_client_config ENABLE ALWAYS TRIGGER api_key_client_config_invalidate;
ALTER TABLE athena_keys.api_key_client_config ENABLE ALWAYS TRIGGER api_key_client_config_truncate_invalidate;

CREATE TRIGGER api_key_global_ip_rule_invalidate
	AFTER INSERT OR UPDATE OR DELETE ON athena_keys.api_key_global_ip_rule
	FOR EACH ROW EXECUTE FUNCTION athena_keys._invalidate_caches();
CREATE TRIGGER api_key_global_ip_rule_truncate_invalidate
	AFTER TRUNCATE ON athena_keys.api_key_global_ip_rule
	FOR EACH STATEMENT EXECUTE FUNCTION athena_keys._invalidate_caches();
ALTER TABLE athena_keys.api_key_global_ip_rule ENABLE ALWAYS TRIGGER api_key_global_ip_rule_invalidate;
ALTER TABLE athena_keys.api_key_global_ip_rule ENABLE ALWAYS TRIGGER api_key_global_ip_rule_truncate_invalidate;

CREATE TRIGGER api_key_ip_rule_invalidate
	AFTER INSERT OR UPDATE OR DELETE ON athena_keys.api_key_ip_rule
	FOR EACH ROW EXECUTE FUNCTION athena_keys._invalidate_caches();
CREATE TRIGGER api_key_ip_rule_truncate_invalidate
	AFTER TRUNCATE ON athena_keys.api_key_ip_rule
	FOR EACH STATEMENT EXECUTE FUNCTION athena_keys._invalidate_caches();
ALTER TABLE athena_keys.api_key_ip_rule ENABLE ALWAYS TRIGGER api_key_ip_rule_invalidate;
ALTER TABLE athena_keys.api_key_ip_rule ENABLE ALWAYS TRIGGER api_key_ip_rule_truncate_invalidate;

CREATE TRIGGER api_key_right_grant_invalidate
	AFTER INSERT OR UPDATE OR DELETE ON athena_keys.api_key_right_grant
	FOR EACH ROW EXECUTE FUNCTION athena_keys._invalidate_caches();
CREATE TRIGGER api_key_right_grant_truncate_invalidate
	AFTER TRUNCATE ON athena_keys.api_key_right_grant
	FOR EACH STATEMENT EXECUTE FUNCTION athena_keys._invalidate_caches();
ALTER TABLE athena_keys.api_key_right_grant ENABLE ALWAYS TRIGGER api_key_right_grant_invalidate;
ALTER TABLE athena_keys.api_key_right_grant ENABLE ALWAYS TRIGGER api_key_right_grant_truncate_invalidate;

-- Rate limits: a key's feed the key cache, a client's the config cache
-- (one table: a change advances both).
CREATE TRIGGER api_key_rate_limit_invalidate
	AFTER INSERT OR UPDATE OR DELETE ON athena_keys.api_key_rate_limit
	FOR EACH ROW EXECUTE FUNCTION athena_keys._invalidate_caches();
CREATE TRIGGER api_key_rate_limit_truncate_invalidate
	AFTER TRUNCATE ON athena_keys.api_key_rate_limit
	FOR EACH STATEMENT EXECUTE FUNCTION athena_keys._invalidate_caches();
ALTER TABLE athena_keys.api_key_rate_limit ENABLE ALWAYS TRIGGER api_key_rate_limit_invalidate;
ALTER TABLE athena_keys.api_key_rate_limit ENABLE ALWAYS TRIGGER api_key_rate_limit_truncate_invalidate;

-- api_key: learning counters and last_used_at change on the hot path and
-- are never cached, so updates invalidate only when they change what the
-- cache holds (the id too: grants, rules and limits are read by it).
CREATE TRIGGER api_key_insert_delete_invalidate
	AFTER INSERT OR DELETE ON athena_keys.api_key
	FOR EACH ROW EXECUTE FUNCTION athena_keys._invalidate_caches();
CREATE TRIGGER api_key_update_invalidate
	AFTER UPDATE ON athena_keys.api_key
	FOR EACH ROW WHEN (
		OLD.id IS DISTINCT FROM NEW.id OR
		OLD.public_id IS DISTINCT FROM NEW.public_id OR
		OLD.key_salt IS DISTINCT FROM NEW.key_salt OR
		OLD.key_hash IS DISTINCT FROM NEW.key_hash OR
		OLD.previous_key_salt IS DISTINCT FROM NEW.previous_key_salt OR
		OLD.previous_key_hash IS DISTINCT FROM NEW.previous_key_hash OR
		OLD.previous_valid_until IS DISTINCT FROM NEW.previous_valid_until OR
		OLD.is_active IS DISTINCT FROM NEW.is_active OR
		OLD.expires_at IS DISTINCT FROM NEW.expires_at OR
		OLD.client_name IS DISTINCT FROM NEW.client_name OR
		OLD.virgin_mode IS DISTINCT FROM NEW.virgin_mode OR
		OLD.virgin_resolved IS DISTINCT FROM NEW.virgin_resolved)
	EXECUTE FUNCTION athena_keys._invalidate_caches();
CREATE TRIGGER api_key_truncate_invalidate
	AFTER TRUNCATE ON athena_keys.api_key
	FOR EACH STATEMENT EXECUTE FUNCTION athena_keys._invalidate_caches();
ALTER TABLE athena_keys.api_key ENABLE ALWAYS TRIGGER api_key_insert_delete_invalidate;
ALTER TABLE athena_keys.api_key ENABLE ALWAYS TRIGGER api_key_update_invalidate;
ALTER TABLE athena_keys.api_key ENABLE ALWAYS TRIGGER api_key_truncate_invalidate;

-- The invalidation triggers stay ENABLE ALWAYS.  ALTER TABLE ... ENABLE
-- TRIGGER ALL (which pg_restore --disable-triggers issues after loading a
-- table, and operators type) makes them ordinary triggers again, which the
-- replica role skips; this event trigger puts them back at the end of every
-- ALTER TABLE, and the configuration's insert-as-update trigger and the
-- rights' insert-over-seeded trigger with them (030_dump_support.sql: a
-- data-only restore's DISABLE TRIGGER ALL would otherwise make the dumped
-- rows collide with the seeded ones).  It acts only
-- on tables the current user may alter, and finds the trigger functions by
-- reading the catalogs, which needs no privilege on the athena_keys schema,
-- so nobody else's ALTER TABLE can fail because of it.
CREATE FUNCTION athena_keys._keep_invalidation_triggers_always() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t record;
BEGIN
	FOR t IN
		SELECT tg.tgrelid::regclass AS rel, tg.tgname
		  FROM pg_catalog.pg_trigger tg
		  JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
		  JOIN pg_catalog.pg_proc p ON p.oid = tg.tgfoid
		  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		 WHERE n.nspname = 'athena_keys'
		   AND p.proname IN ('_invalidate_caches', '_config_insert_as_update', '_right_insert_over_seeded')
		   AND tg.tgenabled <> 'A'
		   AND pg_catalog.pg_has_role(c.relowner, 'USAGE')
	LOOP
		EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', t.rel, t.tgname);
	END LOOP;
END
$$;

CREATE EVENT TRIGGER athena_keys_invalidation_triggers_always ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE')
	EXECUTE FUNCTION athena_keys._keep_invalidation_triggers_always();
ALTER EVENT TRIGGER athena_keys_invalidation_triggers_always ENABLE ALWAYS;
