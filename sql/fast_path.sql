-- athena_authenticate decides from this backend's caches with the caller's
-- privileges; what needs a table (a cache to fill, a learning write, a log
-- INSERT, a last_used_at stamp) runs in a section with the extension
-- owner's rights.  The first such section of a call is reported with its
-- reason at DEBUG1 (as a NOTICE with athena_keys.report_handovers, which
-- this test sets, so that no other DEBUG1 message of the server can show
-- up), so this test shows which calls needed table access, and that calls
-- with and without it reach the same verdicts and log the same rows.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
DROP ROLE IF EXISTS ak_fast_gateway;
RESET client_min_messages;
CREATE EXTENSION athena_keys;
CREATE ROLE ak_fast_gateway;
SELECT athena_keys.athena_grant_gateway_role('ak_fast_gateway') \g /dev/null

SELECT athena_keys.athena_create_right('users.*') \g /dev/null
SELECT api_key AS good, id AS good_id FROM athena_keys.athena_create_key('good',
       client_name => 'web', rights => ARRAY['users.*'],
       ip_whitelist => ARRAY['10.0.0.0/8']::cidr[]) \gset
SELECT api_key AS expired, id AS expired_id FROM athena_keys.athena_create_key('expired') \gset
SELECT athena_keys.athena_set_key_expiry(:'expired_id', now() - interval '1 day') \g /dev/null
SELECT api_key AS learner FROM athena_keys.athena_create_key('learner', virgin_mode => true,
       virgin_until_n_requests => 5) \gset
SELECT athena_keys.athena_add_ip_rule('blacklist', '203.0.113.0/24') \g /dev/null

-- Requests covering every step of the decision order.
CREATE TEMP TABLE request (n int, key text, client text, ip inet, rights text[]);
INSERT INTO request VALUES
	(1, :'good', 'web', '10.1.2.3', ARRAY['users.read']),		-- allowed
	(2, NULL, 'web', '10.1.2.3', NULL),							-- API key required
	(3, 'Bearer nonsense', 'web', '10.1.2.3', NULL),			-- malformed
	(4, 'ath_ffffffffffffffff.' || repeat('a', 64), 'web', '10.1.2.3', NULL),	-- unknown id
	(5, left(:'good', 22) || repeat('0', 64), 'web', '10.1.2.3', NULL),		-- wrong secret
	(6, :'expired', NULL, '10.1.2.3', NULL),					-- expired
	(7, :'good', 'mobile', '10.1.2.3', ARRAY['users.read']),	-- client mismatch
	(8, :'good', 'web', '10.1.2.3', ARRAY['orders.read']),		-- rights
	(9, :'good', 'web', '203.0.113.9', ARRAY['users.read']),	-- IP blocked
	(10, :'good', 'web', '192.0.2.1', ARRAY['users.read']);	-- IP not allowed
GRANT SELECT ON request TO ak_fast_gateway;
CREATE TEMP TABLE with_tables AS
SELECT n, r.* FROM request, LATERAL athena_keys.athena_authenticate(key, client, ip, rights) r
 WHERE false;
CREATE TEMP TABLE from_cache AS SELECT * FROM with_tables;
GRANT INSERT ON with_tables, from_cache TO ak_fast_gateway;


------------------------------------------------------------------------
-- Durable logging of every decision: every call needs table access.
------------------------------------------------------------------------
SET ROLE ak_fast_gateway;
SET athena_keys.report_handovers = on;
SELECT status, reason FROM athena_keys.athena_authenticate(:'good', 'web', '10.1.2.3', ARRAY['users.read']);
SELECT status, reason FROM athena_keys.athena_authenticate(:'good', 'web', '10.1.2.3', ARRAY['users.read']);
INSERT INTO with_tables
SELECT n, r.* FROM request, LATERAL athena_keys.athena_authenticate(key, client, ip, rights) r;
RESET athena_keys.report_handovers;
RESET ROLE;

------------------------------------------------------------------------
-- log_decisions = none: the calls above filled the caches (config,
-- every key, unknown ids included), so the same requests are now decided
-- without leaving the caller's privileges: no hand-over is reported.
------------------------------------------------------------------------
SET athena_keys.log_decisions = none;
SET athena_keys.last_used_interval = 3600;
SET ROLE ak_fast_gateway;
SET athena_keys.report_handovers = on;
INSERT INTO from_cache
SELECT n, r.* FROM request, LATERAL athena_keys.athena_authenticate(key, client, ip, rights) r;
RESET athena_keys.report_handovers;
-- The owner's rights ended with each section: the caller is still itself
-- and still cannot read the tables the sections read.
SELECT current_user;
SELECT count(*) FROM athena_keys.api_key;
\echo :LAST_ERROR_SQLSTATE
-- A learning key writes: it always needs table access, even once cached.
SET athena_keys.report_handovers = on;
SELECT status, reason FROM athena_keys.athena_authenticate(:'learner', NULL, '10.9.9.9', NULL);
SELECT status, reason FROM athena_keys.athena_authenticate(:'learner', NULL, '10.9.9.8', NULL);
RESET athena_keys.report_handovers;
RESET ROLE;
SELECT count(*) AS learned_ips FROM athena_keys.athena_ip_seen;
-- The same verdicts, column for column, on both paths.
SELECT count(*) AS requests,
       count(*) FILTER (WHERE t IS NOT DISTINCT FROM c) AS identical
  FROM with_tables t JOIN from_cache c USING (n);
SELECT n, status, reason FROM from_cache ORDER BY n;

------------------------------------------------------------------------
-- A revocation reaches the cached path at the next statement.
------------------------------------------------------------------------
SELECT athena_keys.athena_set_key_active(:'good_id', false) \g /dev/null
SET ROLE ak_fast_gateway;
SET athena_keys.report_handovers = on;
SELECT status, reason FROM athena_keys.athena_authenticate(:'good', 'web', '10.1.2.3', ARRAY['users.read']);
SELECT status, reason FROM athena_keys.athena_authenticate(:'good', 'web', '10.1.2.3', ARRAY['users.read']);
RESET athena_keys.report_handovers;
RESET ROLE;
SELECT athena_keys.athena_set_key_active(:'good_id', true) \g /dev/null

------------------------------------------------------------------------
-- log_decisions = failures: allowed calls stay on the cached path, failed
-- ones are handed over for their INSERT, and the log has exactly those.
------------------------------------------------------------------------
SET athena_keys.log_decisions = failures;
SELECT count(*) AS log_rows_before FROM athena_keys.api_key_auth_log \gset
SET ROLE ak_fast_gateway;
SET athena_keys.report_handovers = on;
-- The first call after the change refills the key cache.
SELECT status, reason FROM athena_keys.athena_authenticate(:'good', 'web', '10.1.2.3', ARRAY['users.read']);
SELECT status, reason FROM athena_keys.athena_authenticate(:'good', 'web', '10.1.2.3', ARRAY['users.read']);
SELECT status, reason FROM athena_keys.athena_authenticate(:'good', 'web', '203.0.113.9', ARRAY['users.read']);
RESET athena_keys.report_handovers;
RESET ROLE;
SELECT status, failure_reason, api_key_id = :'good_id' AS right_key, remote_addr
  FROM athena_keys.api_key_auth_log ORDER BY id DESC LIMIT 2;
SELECT count(*) - :log_rows_before AS new_log_rows FROM athena_keys.api_key_auth_log;

------------------------------------------------------------------------
-- last_used_at: a due stamp is written with table access.
------------------------------------------------------------------------
SET athena_keys.log_decisions = none;
SET athena_keys.last_used_interval = 0;
UPDATE athena_keys.api_key SET last_used_at = NULL WHERE id = :'good_id';
SET ROLE ak_fast_gateway;
SET athena_keys.report_handovers = on;
SELECT status FROM athena_keys.athena_authenticate(:'good', 'web', '10.1.2.3', ARRAY['users.read']);
RESET athena_keys.report_handovers;
RESET ROLE;
SELECT last_used_at IS NOT NULL AS stamped FROM athena_keys.api_key WHERE id = :'good_id';
RESET athena_keys.log_decisions;
RESET athena_keys.last_used_interval;

------------------------------------------------------------------------
-- The entry point runs as the caller without a SET clause.  The SECURITY
-- DEFINER twin of 1.2 and 1.3 stays for backends that loaded the older
-- library (they call it until they reconnect): granted to nobody, pinned
-- search_path, and deciding exactly like athena_authenticate.
------------------------------------------------------------------------
SELECT p.proname, p.prosecdef, p.proconfig,
       has_function_privilege('ak_fast_gateway', p.oid, 'EXECUTE') AS gateway_may_execute,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_may_execute
  FROM pg_proc p
 WHERE p.pronamespace = 'athena_keys'::regnamespace AND p.proname LIKE '%authenticate%'
 ORDER BY p.proname;

SELECT (SELECT r FROM athena_keys._authenticate_privileged(:'good', 'web', '10.1.2.3', ARRAY['users.read']) r)
       IS NOT DISTINCT FROM
       (SELECT r FROM athena_keys.athena_authenticate(:'good', 'web', '10.1.2.3', ARRAY['users.read']) r)
       AS twin_decides_alike;
SELECT (SELECT r FROM athena_keys._authenticate_privileged(:'good', 'web', '192.0.2.1', ARRAY['users.read']) r)
       IS NOT DISTINCT FROM
       (SELECT r FROM athena_keys.athena_authenticate(:'good', 'web', '192.0.2.1', ARRAY['users.read']) r)
       AS twin_refuses_alike;
SET ROLE ak_fast_gateway;
SELECT * FROM athena_keys._authenticate_privileged(:'good', 'web', '10.1.2.3', NULL);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

------------------------------------------------------------------------
-- The result row descriptor is kept per backend: it follows the row type
-- when the extension is re-created in this session, and a row type that no
-- longer has the columns the library fills is refused, not filled.
------------------------------------------------------------------------
DROP TABLE request, with_tables, from_cache;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(NULL, 'web', NULL, NULL);
DROP EXTENSION athena_keys;
CREATE EXTENSION athena_keys;
SELECT * FROM athena_keys.athena_authenticate(NULL, 'web', NULL, NULL);
ALTER TYPE athena_keys.athena_auth_result ADD ATTRIBUTE extra text;
SELECT * FROM athena_keys.athena_authenticate(NULL, 'web', NULL, NULL);
SET athena_keys.log_decisions = none;  -- the cached path checks the same
SELECT * FROM athena_keys.athena_authenticate(NULL, 'web', NULL, NULL);
ALTER TYPE athena_keys.athena_auth_result DROP ATTRIBUTE extra;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(NULL, 'web', NULL, NULL);
RESET athena_keys.log_decisions;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(NULL, 'web', NULL, NULL);
-- A renamed column is refused too: gateways select the columns by name.
ALTER TYPE athena_keys.athena_auth_result RENAME ATTRIBUTE status TO http_status;
SELECT allowed, http_status, reason FROM athena_keys.athena_authenticate(NULL, 'web', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
ALTER TYPE athena_keys.athena_auth_result RENAME ATTRIBUTE http_status TO status;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(NULL, 'web', NULL, NULL);
ALTER TYPE athena_keys.athena_auth_result ALTER ATTRIBUTE status TYPE text;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(NULL, 'web', NULL, NULL);
-- A 1.3 schema's type, the columns up to fail_mode, is filled (the 1.4
-- library serves a database until ALTER EXTENSION UPDATE); one column
-- fewer is refused.
DROP EXTENSION athena_keys;
CREATE EXTENSION athena_keys;
ALTER TYPE athena_keys.athena_auth_result DROP ATTRIBUTE rate_reset_ms,
	DROP ATTRIBUTE rate_remaining, DROP ATTRIBUTE rate_limit, DROP ATTRIBUTE retry_after_ms;
SELECT * FROM athena_keys.athena_authenticate(NULL, 'web', NULL, NULL);
SELECT * FROM athena_keys.athena_authenticate(NULL, 'web', NULL, NULL, 2);
ALTER TYPE athena_keys.athena_auth_result DROP ATTRIBUTE fail_mode;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(NULL, 'web', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
DROP EXTENSION athena_keys;
DROP OWNED BY ak_fast_gateway;
DROP ROLE ak_fast_gateway;
