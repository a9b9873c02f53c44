-- Privileges (SPEC section 9), as real non-superuser roles: PUBLIC gets
-- nothing, the gateway role only athena_authenticate, the admin role the
-- admin functions and views but never a table.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
-- Re-runnable: remove the roles left by an earlier, interrupted run.
DO $$
DECLARE
	r text;
BEGIN
	FOREACH r IN ARRAY ARRAY['ak_gateway', 'ak_admin', 'ak_nobody'] LOOP
		IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
			EXECUTE format('DROP OWNED BY %I CASCADE', r);
		END IF;
	END LOOP;
END
$$;
DROP ROLE IF EXISTS ak_gateway;
DROP ROLE IF EXISTS ak_admin;
DROP ROLE IF EXISTS ak_nobody;
RESET client_min_messages;
CREATE EXTENSION athena_keys;

CREATE ROLE ak_gateway NOLOGIN;
CREATE ROLE ak_admin NOLOGIN;
CREATE ROLE ak_nobody NOLOGIN;
SELECT athena_keys.athena_grant_gateway_role('ak_gateway');
SELECT athena_keys.athena_grant_admin_role('ak_admin');

SELECT athena_keys.athena_create_right('users.read');
SELECT api_key AS k, id AS k_id
  FROM athena_keys.athena_create_key('gateway test', rights => ARRAY['users.read']) \gset

------------------------------------------------------------------------
-- PUBLIC gets nothing: no function, no table, no view, not even the schema.
------------------------------------------------------------------------
SELECT count(*) > 30 AS functions, bool_or(has_function_privilege('public', p.oid, 'EXECUTE')) AS public_can_execute_any
  FROM pg_proc p WHERE p.pronamespace = 'athena_keys'::regnamespace;
SELECT count(*) > 10 AS relations,
       bool_or(has_table_privilege('public', c.oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER')) AS public_can_touch_any
  FROM pg_class c WHERE c.relnamespace = 'athena_keys'::regnamespace AND c.relkind IN ('r', 'p', 'v');
SELECT bool_or(has_sequence_privilege('public', c.oid, 'USAGE,SELECT,UPDATE')) AS public_can_use_any_sequence
  FROM pg_class c WHERE c.relnamespace = 'athena_keys'::regnamespace AND c.relkind = 'S';
SELECT has_schema_privilege('public', 'athena_keys', 'USAGE') AS public_schema_usage;
-- ak_nobody (no grants) likewise.
SELECT bool_or(has_function_privilege('ak_nobody', p.oid, 'EXECUTE')) AS nobody_can_execute_any
  FROM pg_proc p WHERE p.pronamespace = 'athena_keys'::regnamespace;
SELECT bool_or(has_table_privilege('ak_nobody', c.oid, 'SELECT,INSERT,UPDATE,DELETE')) AS nobody_can_touch_any
  FROM pg_class c WHERE c.relnamespace = 'athena_keys'::regnamespace AND c.relkind IN ('r', 'p', 'v');

SET ROLE ak_nobody;
SELECT * FROM athena_keys.athena_authenticate(NULL, NULL, NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('nobody');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_enforcement(false);
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM athena_keys.api_key;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM athena_keys.api_key_auth_log;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM athena_keys.athena_key_status;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM athena_keys.athena_recent_failures;
\echo :LAST_ERROR_SQLSTATE
SET athena_keys.log_decisions = none;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

------------------------------------------------------------------------
-- The gateway role: athena_authenticate and nothing else.
------------------------------------------------------------------------
SELECT p.oid::regprocedure AS gateway_can_execute
  FROM pg_proc p WHERE p.pronamespace = 'athena_keys'::regnamespace
   AND has_function_privilege('ak_gateway', p.oid, 'EXECUTE') ORDER BY p.oid::regprocedure::text COLLATE "C";
SELECT c.relname AS gateway_can_read
  FROM pg_class c WHERE c.relnamespace = 'athena_keys'::regnamespace
   AND has_table_privilege('ak_gateway', c.oid, 'SELECT') ORDER BY 1;
SELECT has_column_privilege('ak_gateway', 'athena_keys.api_key', 'key_hash', 'SELECT') AS key_hash,
       has_column_privilege('ak_gateway', 'athena_keys.api_key', 'key_salt', 'SELECT') AS key_salt;
SELECT count(*) AS log_rows_before FROM athena_keys.api_key_auth_log \gset

SET ROLE ak_gateway;
SELECT current_user;
-- Verdicts.
SELECT n, r.allowed, r.status, r.reason, r.key_id = :'k_id' AS right_key
  FROM (VALUES (1, :'k', ARRAY['users.read']), (2, :'k', ARRAY['users.write']),
               (3, 'ath_0000000000000000.' || repeat('0', 64), NULL), (4, NULL, NULL)) AS t(n, key, rights),
       LATERAL athena_keys.athena_authenticate(key, NULL, '10.0.0.1', rights) r
 ORDER BY n;
-- No table, no view, no admin function, no internal helper.
SELECT key_hash, key_salt FROM athena_keys.api_key;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM athena_keys.api_key;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM athena_keys.api_key_auth_log;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM athena_keys.api_key_auth_log_default;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM athena_keys.api_key_right_grant;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM athena_keys.api_key_config;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM athena_keys.athena_key_status;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM athena_keys.athena_recent_failures;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM athena_keys.athena_failure_summary;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM athena_keys.athena_ip_rules;
\echo :LAST_ERROR_SQLSTATE
UPDATE athena_keys.api_key SET is_active = true;
\echo :LAST_ERROR_SQLSTATE
INSERT INTO athena_keys.api_key_auth_log (authenticated, authorized, enforced, allowed, status)
VALUES (true, true, true, true, 200);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('gateway made this');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_active(:'k_id', false);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_enforcement(false);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.0/8');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys._key_digest('salt', 'secret');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_grant_admin_role('ak_gateway');
\echo :LAST_ERROR_SQLSTATE
-- The logging settings are superuser-only.
SET athena_keys.log_decisions = none;
\echo :LAST_ERROR_SQLSTATE
SET athena_keys.log_decisions = failures;
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('athena_keys.log_decisions', 'none', false);
\echo :LAST_ERROR_SQLSTATE
SET athena_keys.log_durability = async;
\echo :LAST_ERROR_SQLSTATE
SHOW athena_keys.log_decisions;
RESET ROLE;
-- Each of the gateway's four calls was logged, although it cannot write the log itself.
SELECT count(*) - :log_rows_before AS logged_by_gateway FROM athena_keys.api_key_auth_log;

------------------------------------------------------------------------
-- The admin role: admin functions and views, never a table.
------------------------------------------------------------------------
SELECT c.relname AS admin_can_read
  FROM pg_class c WHERE c.relnamespace = 'athena_keys'::regnamespace
   AND has_table_privilege('ak_admin', c.oid, 'SELECT') ORDER BY 1;
SELECT bool_and(c.relkind = 'v') AS only_views
  FROM pg_class c WHERE c.relnamespace = 'athena_keys'::regnamespace
   AND has_table_privilege('ak_admin', c.oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE');
SELECT p.proname AS admin_cannot_execute
  FROM pg_proc p WHERE p.pronamespace = 'athena_keys'::regnamespace
   AND NOT has_function_privilege('ak_admin', p.oid, 'EXECUTE')
   AND p.proname LIKE 'athena\_%' ORDER BY 1;

SET ROLE ak_admin;
SELECT api_key AS ka, id AS ka_id
  FROM athena_keys.athena_create_key('admin made this', rights => ARRAY['users.read']) \gset
SELECT :'ka' ~ '^ath_[0-9a-f]{16}\.[0-9a-f]{64}$' AS admin_got_plaintext;
SELECT athena_keys.athena_create_right('orders.read');
SELECT athena_keys.athena_grant_rights(:'ka_id', ARRAY['orders.read']);
SELECT athena_keys.athena_add_ip_rule('blacklist', '192.0.2.0/24', key_id => :'ka_id');
SELECT athena_keys.athena_set_key_active(:'ka_id', false);
SELECT name, state, rights, blacklist_size FROM athena_keys.athena_key_status ORDER BY name COLLATE "C";
SELECT allowed, reason FROM athena_keys.athena_authenticate(:'ka', NULL, NULL, NULL);
SELECT failure_reason, key_name FROM athena_keys.athena_recent_failures WHERE key_name IS NOT NULL
 ORDER BY failure_reason COLLATE "C", key_name COLLATE "C";
SELECT count(*) > 0 AS summary_rows FROM athena_keys.athena_failure_summary;
-- The log's views are security barriers: a condition of the admin's own (a
-- function in pg_temp, cheap enough to run first) sees no row they leave
-- out, such as a failure older than a day.
RESET ROLE;
INSERT INTO athena_keys.api_key_auth_log (created_at, client_name, authenticated, authorized,
                                          enforced, allowed, status, failure_reason)
VALUES (now() - interval '3 days', 'three days ago', false, false, true, false, 401, 'Invalid API key');
SET ROLE ak_admin;
CREATE FUNCTION pg_temp.peek(client text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	IF client = 'three days ago' THEN
		RAISE NOTICE 'saw a row the view leaves out';
	END IF;
	RETURN true;
END
$$;
SET enable_indexscan = off;
SET enable_bitmapscan = off;
SELECT count(*) > 0 AS failures FROM athena_keys.athena_recent_failures WHERE pg_temp.peek(client_name);
SELECT count(*) > 0 AS summary_rows FROM athena_keys.athena_failure_summary WHERE pg_temp.peek(client_name);
RESET enable_indexscan;
RESET enable_bitmapscan;
SELECT athena_keys.athena_delete_key(:'ka_id');
-- Never a table: no hashes, no salts, no raw log rows.
SELECT key_hash FROM athena_keys.api_key;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM athena_keys.api_key;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM athena_keys.api_key_auth_log;
\echo :LAST_ERROR_SQLSTATE
DELETE FROM athena_keys.api_key_right;
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys._key_digest('salt', 'secret');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_grant_gateway_role('ak_nobody');
\echo :LAST_ERROR_SQLSTATE
SET athena_keys.log_decisions = none;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- No view exposes key_hash, key_salt or the previous secret's salt and hash.
SELECT c.relname, a.attname
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = 'athena_keys'::regnamespace AND c.relkind = 'v'
   AND a.attnum > 0 AND (a.attname LIKE '%hash%' OR a.attname LIKE '%salt%' OR a.attname LIKE '%secret%');
SELECT count(*) FILTER (WHERE column_name IN ('key_hash', 'key_salt')) AS secret_columns,
       count(*) > 10 AS has_columns
  FROM information_schema.columns
 WHERE table_schema = 'athena_keys' AND table_name = 'athena_key_status';

------------------------------------------------------------------------
-- Every SECURITY DEFINER function pins its search_path.
------------------------------------------------------------------------
SELECT p.oid::regprocedure AS security_definer_function, p.proconfig
  FROM pg_proc p
 WHERE p.pronamespace = 'athena_keys'::regnamespace AND p.prosecdef
 ORDER BY p.oid::regprocedure::text COLLATE "C";
SELECT count(*) AS security_definer_without_search_path
  FROM pg_proc p
 WHERE p.pronamespace = 'athena_keys'::regnamespace AND p.prosecdef
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%');
-- The pinned path never lists a schema an unprivileged role could create objects in.
SELECT DISTINCT c AS pinned
  FROM pg_proc p, unnest(p.proconfig) c
 WHERE p.pronamespace = 'athena_keys'::regnamespace AND c LIKE 'search\_path=%';

------------------------------------------------------------------------
-- The grant helpers grant to existing roles only: never to PUBLIC (which
-- every role belongs to, and which "public" would name in a GRANT) nor to
-- a role that does not exist; PUBLIC still holds nothing afterwards.
------------------------------------------------------------------------
SELECT athena_keys.athena_grant_gateway_role('public');
SELECT athena_keys.athena_grant_admin_role('public');
SELECT athena_keys.athena_grant_shipping_role('public');
SELECT athena_keys.athena_grant_admin_role('ak_no_such_role');
SELECT count(*) AS public_function_grants
  FROM pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
 WHERE p.pronamespace = 'athena_keys'::regnamespace AND a.grantee = 0;
SELECT count(*) AS public_schema_grants
  FROM pg_namespace n, aclexplode(n.nspacl) a
 WHERE n.nspname = 'athena_keys' AND a.grantee = 0;

------------------------------------------------------------------------
-- A role with no privilege on the athena_keys schema alters tables of its
-- own: the extension's event trigger, which runs at the end of every ALTER
-- TABLE, makes none of them fail.
------------------------------------------------------------------------
CREATE SCHEMA ak_nobody_schema AUTHORIZATION ak_nobody;
SET ROLE ak_nobody;
CREATE TABLE ak_nobody_schema.t (a int);
ALTER TABLE ak_nobody_schema.t ADD COLUMN b int;
ALTER TABLE ak_nobody_schema.t DISABLE TRIGGER ALL;
CREATE TEMP TABLE ak_nobody_temp (a int);
ALTER TABLE ak_nobody_temp ADD COLUMN b int;
RESET ROLE;
SELECT string_agg(attname, ',' ORDER BY attnum) AS altered_columns
  FROM pg_attribute WHERE attrelid = 'ak_nobody_schema.t'::regclass AND attnum > 0;
DROP SCHEMA ak_nobody_schema CASCADE;

DROP EXTENSION athena_keys CASCADE;
-- The schema outlives DROP EXTENSION (it is not a member), and with it the roles' grants on it.
DROP OWNED BY ak_gateway, ak_admin, ak_nobody;
DROP ROLE ak_gateway;
DROP ROLE ak_admin;
DROP ROLE ak_nobody;
