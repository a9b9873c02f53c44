-- Rate limits (issue 16), what needs no shared memory: the admin
-- functions and their validation, the table behind them, the views, and
-- the verdict of a server without athena_keys in shared_preload_libraries
-- (this one): a request a limit applies to gets "API key policy
-- unavailable" under the fail mode, never a silent pass.  The verdicts of
-- the buckets themselves run on a preloaded node (test/t/010_rate_limits.pl
-- runs test/preloaded/).
\set SHOW_CONTEXT never
\set VERBOSITY default
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
RESET client_min_messages;
CREATE EXTENSION athena_keys;

SELECT api_key AS ka, id AS ka_id FROM athena_keys.athena_create_key('limited a', client_name => 'shop') \gset
SELECT api_key AS kb, id AS kb_id FROM athena_keys.athena_create_key('unlimited b') \gset

------------------------------------------------------------------------
-- Setting, replacing and clearing limits
------------------------------------------------------------------------
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', 10, '1 second', 20);
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', 10000, '1 day');
-- The same period again (spelt otherwise) replaces the limit.
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', 5, '1000 milliseconds');
SELECT athena_keys.athena_set_client_rate_limit('shop', 100, '1 minute', 150);
SELECT athena_keys.athena_set_client_rate_limit('shop', 1000000, '1 year');
SELECT scope, key_name, client_name, requests, per, burst FROM athena_keys.athena_rate_limits
 ORDER BY scope DESC, per;
SELECT name, rate_limits FROM athena_keys.athena_key_status ORDER BY name;

SELECT athena_keys.athena_clear_key_rate_limit(:'ka_id', '24 hours') AS cleared_day;
SELECT athena_keys.athena_clear_key_rate_limit(:'ka_id', '24 hours') AS cleared_again;
SELECT athena_keys.athena_clear_client_rate_limit('shop', '1 year') AS cleared_year;
SELECT athena_keys.athena_clear_client_rate_limit('nobody') AS cleared_nobody;
SELECT count(*) AS limits_left FROM athena_keys.api_key_rate_limit;

------------------------------------------------------------------------
-- Validation: every error names what is wrong; nothing is changed
------------------------------------------------------------------------
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', 0, '1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', -3, '1 second');
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', NULL, '1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', 10, NULL);
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', 10, '0.5 milliseconds');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', 10, '-1 second');
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', 10, '2 years');
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', 2000000, '1 second');
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', 10, '1 second', 0);
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', 10, '1 second', -1);
-- A bucket that would take more than 100 years to earn is refused; 100
-- years exactly is not.
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', 1, '1 year', 200);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', 1, '1 day', 100000);
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', 1, '1 day', 36525);
SELECT athena_keys.athena_clear_key_rate_limit(:'ka_id', '1 day');
-- The largest limit takes the largest burst by default.
SELECT athena_keys.athena_set_key_rate_limit(:'kb_id', 2147483647, '1 year');
SELECT athena_keys.athena_clear_key_rate_limit(:'kb_id');
SELECT athena_keys.athena_set_key_rate_limit('00000000-0000-0000-0000-000000000000', 10, '1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_rate_limit(NULL, 10, '1 second');
SELECT athena_keys.athena_set_client_rate_limit(NULL, 10, '1 second');
SELECT athena_keys.athena_set_client_rate_limit('', 10, '1 second');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_client_rate_limit(repeat('x', 257), 10, '1 second');
SELECT athena_keys.athena_clear_key_rate_limit(:'ka_id', '2 years');
SELECT athena_keys.athena_clear_client_rate_limit(NULL);
-- The table refuses what the functions would (a row written directly).
\set VERBOSITY terse
INSERT INTO athena_keys.api_key_rate_limit (api_key_id, client_name, requests, per, burst)
VALUES (:'ka_id', 'shop', 1, '1 second', 1);
INSERT INTO athena_keys.api_key_rate_limit (requests, per, burst) VALUES (1, '1 second', 1);
INSERT INTO athena_keys.api_key_rate_limit (api_key_id, requests, per, burst)
VALUES (:'ka_id', 1, '1 microsecond', 1);
INSERT INTO athena_keys.api_key_rate_limit (api_key_id, requests, per, burst)
VALUES (:'ka_id', 1, '1 year', 200);
\set VERBOSITY default
SELECT scope, requests, per, burst FROM athena_keys.athena_rate_limits ORDER BY scope DESC, per;

-- A deleted key takes its limits with it.
SELECT api_key AS kc, id AS kc_id FROM athena_keys.athena_create_key('short-lived') \gset
SELECT athena_keys.athena_set_key_rate_limit(:'kc_id', 1, '1 hour');
SELECT athena_keys.athena_delete_key(:'kc_id');
SELECT count(*) AS limits_of_deleted_key FROM athena_keys.api_key_rate_limit WHERE api_key_id = :'kc_id';

-- The table is dumped with the database, its ids' sequence too.
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) AS cfg(oid) JOIN pg_class c ON c.oid = cfg.oid
 WHERE e.extname = 'athena_keys' AND c.relname LIKE '%rate_limit%' ORDER BY 1;

------------------------------------------------------------------------
-- Not preloaded: no buckets, so a limit cannot be judged
------------------------------------------------------------------------
SELECT current_setting('shared_preload_libraries') NOT LIKE '%athena_keys%' AS not_preloaded;
-- verdict(key, client): the decision and the rate limit columns.
CREATE FUNCTION pg_temp.verdict(k text, c text) RETURNS text
LANGUAGE sql AS $$
  SELECT concat_ws(' ', r.allowed, r.status, r.reason, r.retry_after_ms, r.rate_limit,
                   r.rate_remaining, r.rate_reset_ms)
    FROM athena_keys.athena_authenticate(k, c, NULL, NULL) r
$$;
SELECT pg_temp.verdict(:'ka', 'shop') AS key_and_client_limits;
SELECT pg_temp.verdict(:'kb', 'shop') AS client_limit;
SELECT pg_temp.verdict(:'kb', 'other') AS no_limit;
-- A refusal stays the refusal it is: limits are judged only after every check.
SELECT pg_temp.verdict(:'ka', 'other') AS client_mismatch;
SELECT pg_temp.verdict(:'ka' || 'x', 'shop') AS invalid_key;
SELECT athena_keys.athena_set_fail_mode('fail_open');
SELECT pg_temp.verdict(:'ka', 'shop') AS fail_open;
SELECT athena_keys.athena_set_fail_mode('fail_closed');
SELECT athena_keys.athena_set_client_enforcement('shop', false);
SELECT pg_temp.verdict(:'ka', 'shop') AS shadow_mode;
SELECT athena_keys.athena_clear_client_enforcement('shop');
-- A limit lifted takes effect at commit, like any admin change.
SELECT athena_keys.athena_clear_key_rate_limit(:'ka_id');
SELECT athena_keys.athena_clear_client_rate_limit('shop');
SELECT pg_temp.verdict(:'ka', 'shop') AS all_lifted;
SELECT failure_reason, status, allowed, count(*) FROM athena_keys.api_key_auth_log
 GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

------------------------------------------------------------------------
-- The cost argument: 1 to 1000000, NULL for 1; anything else is an error
------------------------------------------------------------------------
SELECT allowed, status FROM athena_keys.athena_authenticate(:'kb', NULL, NULL, NULL, NULL);
SELECT allowed, status FROM athena_keys.athena_authenticate(:'kb', NULL, NULL, NULL, 1000000);
SELECT allowed FROM athena_keys.athena_authenticate(:'kb', NULL, NULL, NULL, 0);
\echo :LAST_ERROR_SQLSTATE
SELECT allowed FROM athena_keys.athena_authenticate(:'kb', NULL, NULL, NULL, -5);
SELECT allowed FROM athena_keys.athena_authenticate(:'kb', NULL, NULL, NULL, 1000001);

------------------------------------------------------------------------
-- Who may: the gateway role calls both forms, the admin role manages
-- limits, PUBLIC nothing
------------------------------------------------------------------------
SET client_min_messages = warning;
DROP ROLE IF EXISTS ak_rl_gateway;
DROP ROLE IF EXISTS ak_rl_admin;
RESET client_min_messages;
CREATE ROLE ak_rl_gateway;
CREATE ROLE ak_rl_admin;
SELECT athena_keys.athena_grant_gateway_role('ak_rl_gateway');
SELECT athena_keys.athena_grant_admin_role('ak_rl_admin');
SELECT r, f, has_function_privilege(r, f, 'EXECUTE') AS may
  FROM unnest(ARRAY['ak_rl_gateway', 'ak_rl_admin', 'public']) r,
       unnest(ARRAY['athena_keys.athena_authenticate(text, text, inet, text[], integer)',
                    'athena_keys.athena_set_key_rate_limit(uuid, integer, interval, integer)',
                    'athena_keys.athena_clear_client_rate_limit(text, interval)']) f
 ORDER BY 1, 2;
SELECT r, has_table_privilege(r, 'athena_keys.athena_rate_limits', 'SELECT') AS may_read_view,
       has_table_privilege(r, 'athena_keys.api_key_rate_limit', 'SELECT') AS may_read_table
  FROM unnest(ARRAY['ak_rl_gateway', 'ak_rl_admin', 'public']) r ORDER BY 1;
SET ROLE ak_rl_admin;
SELECT athena_keys.athena_set_client_rate_limit('shop', 3, '1 second');
SELECT scope, client_name, requests, per, burst FROM athena_keys.athena_rate_limits;
RESET ROLE;

SET client_min_messages = warning;
DROP EXTENSION athena_keys;
DROP OWNED BY ak_rl_gateway, ak_rl_admin;
DROP ROLE ak_rl_gateway, ak_rl_admin;
