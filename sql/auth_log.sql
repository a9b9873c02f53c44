-- The auth log (SPEC section 7): one row per decision with what was
-- presented and found, never a secret or a digest; log_decisions; the
-- triage views; last_used_at.
\set SHOW_CONTEXT never
DROP EXTENSION IF EXISTS athena_keys CASCADE;
CREATE EXTENSION athena_keys;

SELECT athena_keys.athena_create_right('users.read');
SELECT athena_keys.athena_create_right('users.write');
SELECT api_key AS k, id AS k_id, public_id AS k_pub
  FROM athena_keys.athena_create_key('main', client_name => 'Shop', rights => ARRAY['users.read']) \gset
SELECT api_key AS ki, id AS ki_id, public_id AS ki_pub FROM athena_keys.athena_create_key('inactive') \gset
SELECT athena_keys.athena_set_key_active(:'ki_id', false);
SELECT api_key AS ke, id AS ke_id, public_id AS ke_pub
  FROM athena_keys.athena_create_key('expired', expires_at => now() - interval '1 day') \gset
SELECT api_key AS kw, id AS kw_id, public_id AS kw_pub
  FROM athena_keys.athena_create_key('walled', ip_whitelist => ARRAY['10.0.0.0/8']::cidr[],
                                      ip_blacklist => ARRAY['10.9.0.0/16']::cidr[]) \gset
SELECT split_part(:'k', '.', 2) AS k_secret \gset
SELECT athena_keys.athena_set_client_enforcement('Lax', false);

-- Labels instead of random ids.
CREATE TEMP TABLE label (id uuid, public_id text, label text);
INSERT INTO label VALUES (:'k_id', :'k_pub', 'main'), (:'ki_id', :'ki_pub', 'inactive'),
                         (:'ke_id', :'ke_pub', 'expired'), (:'kw_id', :'kw_pub', 'walled');

SELECT count(*) AS log_rows FROM athena_keys.api_key_auth_log;

------------------------------------------------------------------------
-- One call per outcome (each its own statement and transaction).
------------------------------------------------------------------------
SELECT status, reason FROM athena_keys.athena_authenticate(NULL, 'Shop', '192.0.2.1', ARRAY['users.read']);
SELECT status, reason FROM athena_keys.athena_authenticate('garbage', 'Shop', '192.0.2.2', NULL);
SELECT status, reason FROM athena_keys.athena_authenticate('ath_00000000deadbeef.' || repeat('0', 64), NULL, '192.0.2.3', NULL);
SELECT status, reason FROM athena_keys.athena_authenticate('ath_' || :'k_pub' || '.' || repeat('1', 64), 'Shop', '192.0.2.4', NULL);
SELECT status, reason FROM athena_keys.athena_authenticate(:'ki', NULL, '192.0.2.5', NULL);
SELECT status, reason FROM athena_keys.athena_authenticate(:'ke', NULL, '192.0.2.6', NULL);
SELECT status, reason FROM athena_keys.athena_authenticate(:'k', 'Other', '192.0.2.7', ARRAY['users.read']);
SELECT status, reason FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.8', ARRAY['users.read', 'users.write']);
SELECT status, reason FROM athena_keys.athena_authenticate(:'kw', NULL, '10.9.0.1', NULL);
SELECT status, reason FROM athena_keys.athena_authenticate(:'kw', NULL, '192.0.2.10', NULL);
SELECT status, reason FROM athena_keys.athena_authenticate(:'kw', NULL, NULL, NULL);
SELECT status, reason FROM athena_keys.athena_authenticate(:'k', 'Shop', '2001:db8::12', ARRAY['users.read']);
-- Shadow mode (client Lax not enforced): no key, then a client mismatch (main is bound to Shop).
SELECT status, reason FROM athena_keys.athena_authenticate(NULL, 'Lax', '192.0.2.13', NULL);
SELECT status, reason FROM athena_keys.athena_authenticate(:'k', 'Lax', '192.0.2.14', ARRAY['users.write']);

-- One row per decision, in order.
SELECT count(*) AS log_rows FROM athena_keys.api_key_auth_log;
SELECT row_number() OVER (ORDER BY l.id) AS n,
       CASE WHEN l.api_key_id IS NULL THEN NULL ELSE coalesce(ki.label, '?') END AS key,
       coalesce(lp.label, l.api_key_public_id) AS public_id,
       l.client_name, l.remote_addr, l.required_rights, l.granted_rights, l.missing_rights,
       l.authenticated AS authn, l.authorized AS authz, l.enforced, l.allowed, l.status, l.failure_reason
  FROM athena_keys.api_key_auth_log l
  LEFT JOIN label ki ON ki.id = l.api_key_id
  LEFT JOIN label lp ON lp.public_id = l.api_key_public_id
 ORDER BY l.id;
SELECT bool_and(created_at IS NOT NULL AND created_at <= now()) AS created_at_set,
       count(DISTINCT id) = count(*) AS ids_unique,
       bool_and(NOT locked_in) AS none_locked_in
  FROM athena_keys.api_key_auth_log;

------------------------------------------------------------------------
-- No log column ever holds a secret or its digest.
------------------------------------------------------------------------
SELECT key_salt AS k_salt FROM athena_keys.api_key WHERE id = :'k_id' \gset
CREATE TEMP TABLE needle (what text, value text);
INSERT INTO needle VALUES
  ('secret',                       :'k_secret'),
  ('plaintext',                    :'k'),
  ('sha256(secret)',               encode(sha256(convert_to(:'k_secret', 'UTF8')), 'hex')),
  ('sha256(salt:secret)',          encode(sha256(convert_to(:'k_salt' || ':' || :'k_secret', 'UTF8')), 'hex')),
  ('wrong secret',                 repeat('1', 64)),
  ('sha256(salt:wrong secret)',    encode(sha256(convert_to(:'k_salt' || ':' || repeat('1', 64), 'UTF8')), 'hex')),
  ('sha256(wrong secret)',         encode(sha256(convert_to(repeat('1', 64), 'UTF8')), 'hex')),
  ('unknown key secret',           repeat('0', 64)),
  ('sha256(unknown key secret)',   encode(sha256(convert_to(repeat('0', 64), 'UTF8')), 'hex')),
  ('salt',                         :'k_salt');
-- Whole rows (every column, arrays included) cast to text.
SELECT n.what, count(l.id) AS log_rows_containing_it
  FROM needle n LEFT JOIN athena_keys.api_key_auth_log l ON strpos(l::text, n.value) > 0
 GROUP BY n.what ORDER BY n.what COLLATE "C";
-- And column by column, including the triage views.
DO $$
DECLARE
	col record;
	n bigint;
	hits bigint := 0;
	cols integer := 0;
BEGIN
	FOR col IN SELECT a.attrelid::regclass AS rel, a.attname
	             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
	            WHERE c.relnamespace = 'athena_keys'::regnamespace
	              AND c.relname IN ('api_key_auth_log', 'athena_recent_failures', 'athena_failure_summary')
	              AND a.attnum > 0 AND NOT a.attisdropped
	LOOP
		EXECUTE format('SELECT count(*) FROM %s t, needle WHERE strpos(t.%I::text, needle.value) > 0',
		               col.rel, col.attname) INTO n;
		hits := hits + n;
		cols := cols + 1;
	END LOOP;
	RAISE NOTICE 'columns checked: %, hits: %', cols > 30, hits;
END
$$;

------------------------------------------------------------------------
-- log_decisions = failures: successes are not logged; none: nothing is.
------------------------------------------------------------------------
SHOW athena_keys.log_decisions;
SELECT count(*) AS before FROM athena_keys.api_key_auth_log \gset
SET athena_keys.log_decisions = failures;
SELECT reason FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.20', ARRAY['users.read']);
SELECT reason FROM athena_keys.athena_authenticate(NULL, 'Lax', '192.0.2.21', NULL);
SELECT reason FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.22', ARRAY['users.write']);
SELECT reason FROM athena_keys.athena_authenticate(:'k', 'Lax', '192.0.2.23', ARRAY['users.write']);
SELECT count(*) - :before AS logged FROM athena_keys.api_key_auth_log;
SELECT remote_addr, failure_reason, allowed FROM athena_keys.api_key_auth_log
 WHERE remote_addr << '192.0.2.16/28' ORDER BY id;
SELECT count(*) AS before FROM athena_keys.api_key_auth_log \gset
SET athena_keys.log_decisions = none;
SELECT reason FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.30', ARRAY['users.read']);
SELECT reason FROM athena_keys.athena_authenticate('garbage', 'Shop', '192.0.2.31', NULL);
SELECT reason FROM athena_keys.athena_authenticate(NULL, 'Shop', '192.0.2.32', NULL);
SELECT count(*) - :before AS logged FROM athena_keys.api_key_auth_log;
SET athena_keys.log_decisions = bogus;
RESET athena_keys.log_decisions;
SHOW athena_keys.log_decisions;
SELECT reason FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.40', ARRAY['users.read']);
SELECT count(*) - :before AS logged FROM athena_keys.api_key_auth_log;
-- A decision inside a transaction that rolls back leaves no log row (durable mode).
SELECT count(*) AS before FROM athena_keys.api_key_auth_log \gset
BEGIN;
SELECT reason FROM athena_keys.athena_authenticate('garbage', NULL, '192.0.2.41', NULL);
ROLLBACK;
SELECT count(*) - :before AS logged FROM athena_keys.api_key_auth_log;

------------------------------------------------------------------------
-- Triage views.
------------------------------------------------------------------------
-- Learning and locked keys for athena_key_status.
SELECT api_key AS kv, id AS kv_id, public_id AS kv_pub
  FROM athena_keys.athena_create_key('learning', virgin_mode => true, virgin_until_n_requests => 3) \gset
SELECT api_key AS kl, id AS kl_id, public_id AS kl_pub
  FROM athena_keys.athena_create_key('locked', virgin_mode => true, max_whitelist_ips => 1) \gset
SELECT api_key AS kn, id AS kn_id FROM athena_keys.athena_create_key('never used') \gset
INSERT INTO label VALUES (:'kv_id', :'kv_pub', 'learning'), (:'kl_id', :'kl_pub', 'locked');
SELECT allowed, locked_in FROM athena_keys.athena_authenticate(:'kv', NULL, '198.51.100.1', NULL);
SELECT allowed, locked_in FROM athena_keys.athena_authenticate(:'kl', NULL, '198.51.100.2', NULL);
SELECT allowed, reason FROM athena_keys.athena_authenticate(:'kl', NULL, '198.51.100.3', NULL);
SELECT locked_in FROM athena_keys.api_key_auth_log WHERE remote_addr = '198.51.100.2';

SELECT name, state, client_name, rights, whitelist_size, blacklist_size, virgin_mode,
       virgin_request_count, virgin_until_n_requests, seen_ips, max_whitelist_ips, virgin_resolved,
       virgin_resolved_at IS NOT NULL AS resolved_at_set, expires_at IS NOT NULL AS has_expiry,
       last_used_at IS NOT NULL AS used, created_at IS NOT NULL AS created
  FROM athena_keys.athena_key_status ORDER BY name COLLATE "C";

-- Recent failures: newest first, with key, client, address and an explanation.
SELECT f.pos, f.failure_reason, f.status, f.allowed, f.enforced, lk.label AS key, f.key_name,
       coalesce(lp.label, f.api_key_public_id) AS public_id, f.client_name, f.key_client_name,
       f.remote_addr, f.missing_rights,
       regexp_replace(CASE WHEN lp.public_id IS NULL THEN f.explanation
                           ELSE replace(f.explanation, lp.public_id, '<' || lp.label || '>') END,
                      'expired at .*\.$', 'expired at <time>.') AS explanation
  FROM (SELECT row_number() OVER () AS pos, * FROM athena_keys.athena_recent_failures) f
  LEFT JOIN label lk ON lk.id = f.api_key_id
  LEFT JOIN label lp ON lp.public_id = f.api_key_public_id
 ORDER BY f.pos;
SELECT bool_and(newest_first) AS newest_first
  FROM (SELECT created_at >= lead(created_at) OVER () OR lead(created_at) OVER () IS NULL AS newest_first
          FROM athena_keys.athena_recent_failures) s;
SELECT bool_and(created_at >= now() - interval '1 day') AS recent FROM athena_keys.athena_recent_failures;
-- Old failures drop out of the views.
INSERT INTO athena_keys.api_key_auth_log (created_at, authenticated, authorized, enforced, allowed, status, failure_reason)
VALUES (now() - interval '2 days', false, false, true, false, 401, 'Invalid API key');
SELECT count(*) AS old_rows_in_view FROM athena_keys.athena_recent_failures WHERE created_at < now() - interval '1 day';

-- Failure summary: counts per reason, key and client over the last hour and day.
SELECT s.failure_reason, lk.label AS key, s.client_name, s.last_hour, s.last_day,
       s.last_seen_at IS NOT NULL AS seen
  FROM athena_keys.athena_failure_summary s LEFT JOIN label lk ON lk.id = s.api_key_id
 ORDER BY s.failure_reason COLLATE "C", lk.label COLLATE "C" NULLS FIRST, s.client_name COLLATE "C" NULLS FIRST;
-- An hour-old failure counts for the day but not the hour.
INSERT INTO athena_keys.api_key_auth_log (created_at, api_key_id, api_key_public_id, client_name,
       authenticated, authorized, enforced, allowed, status, failure_reason)
VALUES (now() - interval '2 hours', :'ki_id', :'ki_pub', NULL, false, false, true, false, 401, 'Inactive API key');
SELECT s.failure_reason, lk.label AS key, s.last_hour, s.last_day
  FROM athena_keys.athena_failure_summary s LEFT JOIN label lk ON lk.id = s.api_key_id
 WHERE s.failure_reason = 'Inactive API key';

------------------------------------------------------------------------
-- last_used_at: set by a successful call, not by a wrong secret.
------------------------------------------------------------------------
SELECT last_used_at IS NULL AS never_used FROM athena_keys.api_key WHERE id = :'kn_id';
SELECT reason FROM athena_keys.athena_authenticate(split_part(:'kn', '.', 1) || '.' || repeat('2', 64), NULL, NULL, NULL);
SELECT last_used_at IS NULL AS still_never_used FROM athena_keys.api_key WHERE id = :'kn_id';
SELECT reason FROM athena_keys.athena_authenticate(:'kn', NULL, NULL, NULL);
SELECT last_used_at IS NOT NULL AS used, last_used_at <= now() AS not_in_future
  FROM athena_keys.api_key WHERE id = :'kn_id';
SELECT last_used_at IS NOT NULL AS used FROM athena_keys.athena_key_status WHERE id = :'kn_id';

-- Log rows outlive their key.
SELECT count(*) AS rows_before FROM athena_keys.api_key_auth_log WHERE api_key_id = :'k_id' \gset
SELECT athena_keys.athena_delete_key(:'k_id');
SELECT count(*) = :rows_before AS log_rows_kept FROM athena_keys.api_key_auth_log WHERE api_key_id = :'k_id';

DROP EXTENSION athena_keys CASCADE;
