-- Revocation reaches the caches when changes are made under
-- session_replication_role = replica (1.3, issue 12 item 10): logical
-- replication's apply, migration tools, or an operator in that mode.  The
-- invalidation triggers are row triggers (plus TRUNCATE statement
-- triggers), all ENABLE ALWAYS.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
RESET client_min_messages;
CREATE EXTENSION athena_keys;

SELECT c.relname AS table_name, t.tgname, t.tgenabled,
       CASE WHEN t.tgtype & 1 = 1 THEN 'row' ELSE 'statement' END AS level
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE t.tgfoid = 'athena_keys._invalidate_caches()'::regprocedure
 ORDER BY c.relname COLLATE "C", t.tgname COLLATE "C";

SELECT athena_keys.athena_create_right('users.read');
SELECT api_key AS k, id AS kid FROM athena_keys.athena_create_key('replica',
	rights => ARRAY['users.read']) \gset
SELECT api_key AS k2, id AS kid2 FROM athena_keys.athena_create_key('replica2',
	rights => ARRAY['users.read']) \gset

-- Each check: cache the verdict with one call, change something under the
-- replica role, and the very next call must see the change.
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'k', NULL, '10.0.0.1', ARRAY['users.read']);
SET session_replication_role = replica;
SELECT athena_keys.athena_set_key_active(:'kid', false);
RESET session_replication_role;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'k', NULL, '10.0.0.1', ARRAY['users.read']);

-- Rights revoked under the replica role.
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'k2', NULL, '10.0.0.1', ARRAY['users.read']);
SET session_replication_role = replica;
SELECT athena_keys.athena_revoke_rights(:'kid2', ARRAY['users.read']);
RESET session_replication_role;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'k2', NULL, '10.0.0.1', ARRAY['users.read']);

-- A global blacklist entry added, then the whole rule table truncated.
SELECT athena_keys.athena_grant_rights(:'kid2', ARRAY['users.read']);
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'k2', NULL, '10.0.0.1', ARRAY['users.read']);
SET session_replication_role = replica;
SELECT athena_keys.athena_add_ip_rule('blacklist', '10.0.0.0/8');
RESET session_replication_role;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'k2', NULL, '10.0.0.1', ARRAY['users.read']);
SET session_replication_role = replica;
TRUNCATE athena_keys.api_key_global_ip_rule;
RESET session_replication_role;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'k2', NULL, '10.0.0.1', ARRAY['users.read']);

-- Global enforcement switched off under the replica role: shadow mode.
SET session_replication_role = replica;
SELECT athena_keys.athena_set_enforcement(false);
RESET session_replication_role;
SELECT allowed, status, reason, enforced FROM athena_keys.athena_authenticate(:'k', NULL, '10.0.0.1', ARRAY['users.read']);
SELECT athena_keys.athena_set_enforcement(true);

-- Triggers disabled altogether, as pg_restore --disable-triggers does: the
-- ALTER TABLE that enables them again invalidates the caches itself.
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'k2', NULL, '10.0.0.1', ARRAY['users.read']);
ALTER TABLE athena_keys.api_key DISABLE TRIGGER ALL;
UPDATE athena_keys.api_key SET is_active = false WHERE id = :'kid2';
ALTER TABLE athena_keys.api_key ENABLE TRIGGER ALL;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'k2', NULL, '10.0.0.1', ARRAY['users.read']);
-- ENABLE TRIGGER ALL would leave them ordinary triggers; the event trigger
-- puts ENABLE ALWAYS back, so the replica role still reaches the caches.
SELECT t.tgname, t.tgenabled FROM pg_trigger t
 WHERE t.tgrelid = 'athena_keys.api_key'::regclass AND NOT t.tgisinternal ORDER BY 1;
SELECT athena_keys.athena_set_key_active(:'kid2', true);
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'k2', NULL, '10.0.0.1', ARRAY['users.read']);
SET session_replication_role = replica;
SELECT athena_keys.athena_set_key_active(:'kid2', false);
RESET session_replication_role;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'k2', NULL, '10.0.0.1', ARRAY['users.read']);

-- A right deleted under the replica role takes its grants with it (the
-- foreign key's cascade does not fire there): the key loses the right.
SELECT athena_keys.athena_set_key_active(:'kid2', true);
SELECT athena_keys.athena_create_right('users.write');
SELECT athena_keys.athena_grant_rights(:'kid2', ARRAY['users.write']);
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'k2', NULL, '10.0.0.1', ARRAY['users.write']);
SET session_replication_role = replica;
SELECT athena_keys.athena_delete_right('users.write');
RESET session_replication_role;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'k2', NULL, '10.0.0.1', ARRAY['users.write']);
SELECT count(*) AS grants_left FROM athena_keys.api_key_right_grant WHERE right_name = 'users.write';

-- A key deleted under the replica role leaves no grant, rule, seen address
-- or rate limit behind (they would break a restore's foreign keys).
SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.0/8', :'kid2');
SELECT athena_keys.athena_set_key_rate_limit(:'kid2', 10, '1 minute', 10);
INSERT INTO athena_keys.api_key_ip_seen (api_key_id, addr) VALUES (:'kid2', '10.0.0.1');
SET session_replication_role = replica;
SELECT athena_keys.athena_delete_key(:'kid2');
RESET session_replication_role;
SELECT (SELECT count(*) FROM athena_keys.api_key_right_grant WHERE api_key_id = :'kid2') AS grants,
       (SELECT count(*) FROM athena_keys.api_key_ip_rule WHERE api_key_id = :'kid2') AS rules,
       (SELECT count(*) FROM athena_keys.api_key_ip_seen WHERE api_key_id = :'kid2') AS seen,
       (SELECT count(*) FROM athena_keys.api_key_rate_limit WHERE api_key_id = :'kid2') AS limits;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'k2', NULL, '10.0.0.1', ARRAY['users.read']);

DROP EXTENSION athena_keys CASCADE;
