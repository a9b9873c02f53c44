-- Rate limits (issue 16) with athena_keys preloaded, so that the buckets
-- exist: units taken, the 429 verdict with its wait, the tightest limit's
-- figures, denied requests taking nothing, a client's limit shared by its
-- keys, costs, shadow mode, the log row and the triage views.  Figures
-- that depend on the clock are checked as ranges.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
RESET client_min_messages;
CREATE EXTENSION athena_keys;
SELECT current_setting('shared_preload_libraries') LIKE '%athena_keys%' AS preloaded;

-- call(key, client, cost): the verdict and the rate limit columns, waits in
-- whole seconds rounded up (exact to the millisecond only on paper).
CREATE FUNCTION pg_temp.call(k text, c text DEFAULT NULL, cost integer DEFAULT 1) RETURNS text
LANGUAGE sql AS $$
  SELECT concat_ws(' ', r.allowed, r.status, coalesce(r.reason, '-'),
                   'retry=' || coalesce(ceil(r.retry_after_ms / 1000.0)::text, '-'),
                   'limit=' || coalesce(r.rate_limit::text, '-'),
                   'left=' || coalesce(r.rate_remaining::text, '-'),
                   'reset=' || coalesce(ceil(r.rate_reset_ms / 1000.0)::text, '-'))
    FROM athena_keys.athena_authenticate(k, c, NULL, NULL, cost) r
$$;

------------------------------------------------------------------------
-- One limit: 3 per hour takes three requests, then refuses with the wait
-- until the next unit (20 minutes)
------------------------------------------------------------------------
SELECT api_key AS ka, id AS ka_id FROM athena_keys.athena_create_key('three an hour') \gset
SELECT athena_keys.athena_set_key_rate_limit(:'ka_id', 3, '1 hour');
SELECT n, pg_temp.call(:'ka') FROM generate_series(1, 5) n;
SELECT retry_after_ms BETWEEN 1190000 AND 1200000 AS waits_twenty_minutes,
       rate_reset_ms BETWEEN 3590000 AND 3600000 AS full_again_in_an_hour
  FROM athena_keys.athena_authenticate(:'ka', NULL, NULL, NULL);
-- The refusal is logged like any other failure, and the views show it.
SELECT failure_reason, status, allowed, authenticated, authorized, enforced, count(*)
  FROM athena_keys.api_key_auth_log WHERE api_key_id = :'ka_id'
 GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1 NULLS FIRST;
SELECT failure_reason, key_name, last_day FROM athena_keys.athena_failure_summary
 WHERE api_key_id = :'ka_id';
SELECT DISTINCT failure_reason, status, explanation FROM athena_keys.athena_recent_failures
 WHERE api_key_id = :'ka_id';
-- A key without limits reports none.
SELECT api_key AS kfree FROM athena_keys.athena_create_key('free') \gset
SELECT pg_temp.call(:'kfree');

------------------------------------------------------------------------
-- The wait is real: a limit of 1 per 300 milliseconds admits again after it
------------------------------------------------------------------------
SELECT api_key AS kq, id AS kq_id FROM athena_keys.athena_create_key('quick') \gset
SELECT athena_keys.athena_set_key_rate_limit(:'kq_id', 1, '300 milliseconds');
SELECT allowed FROM athena_keys.athena_authenticate(:'kq', NULL, NULL, NULL);
SELECT allowed, status, retry_after_ms BETWEEN 1 AND 300 AS waits_at_most_the_interval
  FROM athena_keys.athena_authenticate(:'kq', NULL, NULL, NULL) \gset refused_
\echo :refused_allowed :refused_status :refused_waits_at_most_the_interval
SELECT pg_sleep(0.35);
SELECT allowed, status FROM athena_keys.athena_authenticate(:'kq', NULL, NULL, NULL);

------------------------------------------------------------------------
-- Several limits: the tightest is reported; one exhausted refuses, and a
-- refused request takes nothing from the others
------------------------------------------------------------------------
SELECT api_key AS kb, id AS kb_id FROM athena_keys.athena_create_key('two limits', client_name => 'shop') \gset
SELECT athena_keys.athena_set_key_rate_limit(:'kb_id', 10, '1 second', 2);
SELECT athena_keys.athena_set_key_rate_limit(:'kb_id', 2, '1 hour');
SELECT athena_keys.athena_set_client_rate_limit('shop', 100, '1 hour');
SELECT n, pg_temp.call(:'kb', 'shop') FROM generate_series(1, 4) n;
-- With the key's limits lifted, the client's shows what was taken: the
-- two admitted requests and this one, not the refused ones.
SELECT athena_keys.athena_clear_key_rate_limit(:'kb_id');
SELECT pg_temp.call(:'kb', 'shop') AS after_lifting;
-- A key presenting another client does not count against shop.
SELECT athena_keys.athena_set_key_client(:'kb_id', NULL);
SELECT pg_temp.call(:'kb', 'other') AS other_client;

------------------------------------------------------------------------
-- A client's limit is shared by every key presenting it
------------------------------------------------------------------------
SELECT api_key AS kp1 FROM athena_keys.athena_create_key('pool one') \gset
SELECT api_key AS kp2 FROM athena_keys.athena_create_key('pool two') \gset
SELECT athena_keys.athena_set_client_rate_limit('pool', 3, '1 hour');
SELECT n, k, pg_temp.call(CASE k WHEN 1 THEN :'kp1' ELSE :'kp2' END, 'pool')
  FROM (VALUES (1, 1), (2, 2), (3, 1), (4, 2), (5, 1)) AS t(n, k) ORDER BY n;
SELECT pg_temp.call(:'kp2', NULL) AS without_the_client;

------------------------------------------------------------------------
-- Costs: a request takes cost units of every limit; one that can never
-- fit (more than the burst) is refused without a wait
------------------------------------------------------------------------
SELECT api_key AS kc, id AS kc_id FROM athena_keys.athena_create_key('costly') \gset
SELECT athena_keys.athena_set_key_rate_limit(:'kc_id', 10, '1 hour');
SELECT pg_temp.call(:'kc', NULL, 4) AS cost_4;
SELECT pg_temp.call(:'kc', NULL, 7) AS cost_7;
SELECT pg_temp.call(:'kc', NULL, 6) AS cost_6;
SELECT pg_temp.call(:'kc', NULL, 11) AS cost_11;

------------------------------------------------------------------------
-- A changed limit starts with a full bucket; the same one set again
-- keeps its count
------------------------------------------------------------------------
SELECT athena_keys.athena_set_key_rate_limit(:'kc_id', 10, '1 hour');
SELECT pg_temp.call(:'kc') AS same_limit_again;
SELECT athena_keys.athena_set_key_rate_limit(:'kc_id', 10, '1 hour', 12);
SELECT pg_temp.call(:'kc') AS changed_burst;

------------------------------------------------------------------------
-- Shadow mode: the finding is reported and logged, the request allowed,
-- and nothing taken counts once enforcement is on
------------------------------------------------------------------------
SELECT api_key AS ks, id AS ks_id FROM athena_keys.athena_create_key('shadowed', client_name => 'trial') \gset
SELECT athena_keys.athena_set_key_rate_limit(:'ks_id', 1, '1 hour');
SELECT athena_keys.athena_set_client_enforcement('trial', false);
SELECT n, pg_temp.call(:'ks', 'trial') FROM generate_series(1, 3) n;
SELECT athena_keys.athena_set_client_enforcement('trial', true);
SELECT n, pg_temp.call(:'ks', 'trial') FROM generate_series(1, 2) n;
SELECT failure_reason, status, allowed, enforced, count(*)
  FROM athena_keys.api_key_auth_log WHERE api_key_id = :'ks_id'
 GROUP BY 1, 2, 3, 4 ORDER BY 4, 1 NULLS FIRST;

------------------------------------------------------------------------
-- Limits are judged after every other check: a refused request takes no
-- unit, and the fail mode does not turn an exceeded limit into a pass
------------------------------------------------------------------------
SELECT api_key AS kr, id AS kr_id FROM athena_keys.athena_create_key('rights', rights => '{}') \gset
SELECT athena_keys.athena_create_right('orders.read');
SELECT athena_keys.athena_set_key_rate_limit(:'kr_id', 1, '1 hour');
SELECT allowed, status, reason, rate_limit FROM athena_keys.athena_authenticate(:'kr', NULL, NULL, ARRAY['orders.read']);
SELECT athena_keys.athena_set_fail_mode('fail_open');
SELECT pg_temp.call(:'kr') AS first_unit;
SELECT pg_temp.call(:'kr') AS exceeded_under_fail_open;
SELECT athena_keys.athena_set_fail_mode('fail_closed');

------------------------------------------------------------------------
-- A batch (athena_gateway_verdicts): every element takes its own units,
-- in order, as separate calls would: 3 an hour admits the first three of
-- five, with the tightest limit's figures, and refuses the last two
------------------------------------------------------------------------
SELECT api_key AS kb, id AS kb_id FROM athena_keys.athena_create_key('batched') \gset
SELECT athena_keys.athena_set_key_rate_limit(:'kb_id', 3, '1 hour');
SELECT n, split_part(v, '|', 1) AS allowed, split_part(v, '|', 2) AS status,
       split_part(v, '|', 6) AS reason, split_part(v, '|', 8) AS rate_limit,
       split_part(v, '|', 9) AS rate_remaining,
       ceil(nullif(split_part(v, '|', 7), '')::bigint / 1000.0) AS retry_s
  FROM unnest(athena_keys.athena_gateway_verdicts(array_fill(:'kb'::text, ARRAY[5]),
         array_fill(NULL::text, ARRAY[5]), array_fill(NULL::inet, ARRAY[5]),
         array_fill(NULL::text, ARRAY[5]))) WITH ORDINALITY AS t(v, n);
-- and the next call, on its own, finds the bucket the batch left empty.
SELECT pg_temp.call(:'kb') ~ '^f 429 ' AS still_limited;

------------------------------------------------------------------------
-- No write per request: a limited call with logging off assigns no
-- transaction id, and works in a read-only transaction
------------------------------------------------------------------------
SELECT api_key AS kw, id AS kw_id FROM athena_keys.athena_create_key('no writes') \gset
SELECT athena_keys.athena_set_key_rate_limit(:'kw_id', 2, '1 hour');
SELECT allowed FROM athena_keys.athena_authenticate(:'kw', NULL, NULL, NULL);  -- fills the caches, stamps last use
SET athena_keys.log_decisions = none;
BEGIN READ ONLY;
SELECT allowed, rate_remaining FROM athena_keys.athena_authenticate(:'kw', NULL, NULL, NULL);
SELECT status, retry_after_ms IS NOT NULL AS has_wait FROM athena_keys.athena_authenticate(:'kw', NULL, NULL, NULL);
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_transaction_id;
COMMIT;
RESET athena_keys.log_decisions;

------------------------------------------------------------------------
-- A key read on every call (src/key_rows.c): a client's limits are no
-- key's limits; a key limit the calling statement writes itself (a
-- data-modifying WITH, whose triggers fire only at its end) is enforced by
-- that very call; and what a call saw of its statement's own delete does
-- not outlive the statement when it raises
------------------------------------------------------------------------
DELETE FROM athena_keys.api_key_rate_limit;
SELECT athena_keys.athena_set_client_rate_limit('elsewhere', 1000, '1 day');
SET athena_keys.key_cache_size = 0;
SELECT api_key AS kd, id AS kd_id FROM athena_keys.athena_create_key('own writes') \gset
SELECT status, rate_limit FROM athena_keys.athena_authenticate(:'kd', NULL, NULL, NULL);
WITH l AS (INSERT INTO athena_keys.api_key_rate_limit (api_key_id, requests, per, burst)
		   VALUES (:'kd_id', 1, '1 day', 1) RETURNING 1)
SELECT (athena_keys.athena_authenticate(:'kd', NULL, NULL, NULL)).rate_limit FROM l;
SELECT status, rate_limit FROM athena_keys.athena_authenticate(:'kd', NULL, NULL, NULL);
SELECT 1 FROM athena_keys.athena_create_key('generation bump');
WITH d AS (DELETE FROM athena_keys.api_key_rate_limit WHERE api_key_id = :'kd_id' RETURNING 1)
SELECT (athena_keys.athena_authenticate(:'kd', NULL, NULL, NULL)).rate_limit,
	   1 / (random() * 0)::int FROM d;
SELECT status, rate_limit FROM athena_keys.athena_authenticate(:'kd', NULL, NULL, NULL);
RESET athena_keys.key_cache_size;

------------------------------------------------------------------------
-- The compact verdict's waits: retry and reset differ for a key that has
-- units to come back before it is full, and are the same number for a
-- one-unit key (formatted once, given in both fields)
------------------------------------------------------------------------
SET athena_keys.log_decisions = none;
SELECT api_key AS kt, id AS kt_id FROM athena_keys.athena_create_key('three an hour, compact') \gset
SELECT athena_keys.athena_set_key_rate_limit(:'kt_id', 3, '1 hour') IS NOT NULL AS limited;
SELECT string_agg(split_part(athena_keys.athena_gateway_verdict(:'kt', NULL, NULL, NULL), '|', 2), ' ')
       AS first_three FROM generate_series(1, 3);
SELECT split_part(v, '|', 2) AS status,
       split_part(v, '|', 7)::bigint BETWEEN 1190000 AND 1200000 AS waits_twenty_minutes,
       split_part(v, '|', 10)::bigint BETWEEN 3590000 AND 3600000 AS full_again_in_an_hour
  FROM athena_keys.athena_gateway_verdict(:'kt', NULL, NULL, NULL) v;
SELECT api_key AS ko, id AS ko_id FROM athena_keys.athena_create_key('one a day') \gset
SELECT athena_keys.athena_set_key_rate_limit(:'ko_id', 1, '1 day') IS NOT NULL AS limited;
SELECT split_part(athena_keys.athena_gateway_verdict(:'ko', NULL, NULL, NULL), '|', 2) AS first_status;
SELECT split_part(v, '|', 2) AS status,
       split_part(v, '|', 7)::bigint BETWEEN 86000000 AND 86400000 AS waits_a_day,
       split_part(v, '|', 7) = split_part(v, '|', 10) AS reset_is_the_wait,
       split_part(v, '|', 8) AS rate_limit, split_part(v, '|', 9) AS rate_remaining
  FROM athena_keys.athena_gateway_verdict(:'ko', NULL, NULL, NULL) v;
RESET athena_keys.log_decisions;

------------------------------------------------------------------------
-- Limit ids start again after TRUNCATE ... RESTART IDENTITY: another key's
-- new limit with the same id and the same figures gets a bucket of its
-- own, not the spent one of the limit that had the id before
------------------------------------------------------------------------
SELECT api_key AS kr1, id AS kr1_id FROM athena_keys.athena_create_key('before the truncate') \gset
SELECT api_key AS kr2, id AS kr2_id FROM athena_keys.athena_create_key('after the truncate') \gset
TRUNCATE athena_keys.api_key_rate_limit RESTART IDENTITY;
SELECT athena_keys.athena_set_key_rate_limit(:'kr1_id', 1, '1 hour') IS NOT NULL AS limited;
SELECT id AS limit_id FROM athena_keys.api_key_rate_limit;
SELECT n, split_part(pg_temp.call(:'kr1'), ' ', 2) AS status FROM generate_series(1, 2) n;
TRUNCATE athena_keys.api_key_rate_limit RESTART IDENTITY;
SELECT athena_keys.athena_set_key_rate_limit(:'kr2_id', 1, '1 hour') IS NOT NULL AS limited;
SELECT id AS limit_id FROM athena_keys.api_key_rate_limit;
SELECT n, split_part(pg_temp.call(:'kr2'), ' ', 2) AS status FROM generate_series(1, 2) n;
-- The same for a client's limit taking over a key's id.
TRUNCATE athena_keys.api_key_rate_limit RESTART IDENTITY;
SELECT athena_keys.athena_set_client_rate_limit('truncated client', 1, '1 hour') IS NOT NULL AS limited;
SELECT id AS limit_id FROM athena_keys.api_key_rate_limit;
SELECT n, split_part(pg_temp.call(:'kfree', 'truncated client'), ' ', 2) AS status FROM generate_series(1, 2) n;

------------------------------------------------------------------------
-- A learning key's limits are judged before its observation: a request
-- they refuse is not recorded and cannot lock the key in (the call that
-- locks a key in is an allowed one), and a refusal by a limit leaves the
-- request authorized (the client binding, rights and IP policy passed)
------------------------------------------------------------------------
SELECT api_key AS kl, id AS kl_id FROM athena_keys.athena_create_key('learning, limited',
	virgin_mode => true, virgin_until_n_requests => 2) \gset
SELECT athena_keys.athena_set_key_rate_limit(:'kl_id', 1, '1 hour', 1) IS NOT NULL AS limited;
SELECT allowed, status, reason, locked_in, authenticated, authorized
  FROM athena_keys.athena_authenticate(:'kl', NULL, '192.0.2.1', NULL);
SELECT allowed, status, reason, locked_in, authenticated, authorized
  FROM athena_keys.athena_authenticate(:'kl', NULL, '192.0.2.2', NULL);
SELECT state, virgin_request_count, seen_ips, whitelist_size
  FROM athena_keys.athena_key_status WHERE id = :'kl_id';
SELECT failure_reason, status, allowed, authorized, locked_in
  FROM athena_keys.api_key_auth_log WHERE api_key_id = :'kl_id' ORDER BY id;
-- With units again (the limit lifted), the next call is the one that locks in.
SELECT athena_keys.athena_clear_key_rate_limit(:'kl_id', '1 hour') AS cleared;
SELECT allowed, status, locked_in
  FROM athena_keys.athena_authenticate(:'kl', NULL, '192.0.2.3', NULL);
SELECT state, virgin_request_count, whitelist_size
  FROM athena_keys.athena_key_status WHERE id = :'kl_id';

-- A learning key called where its observation cannot be written (a
-- read-only transaction; a hot standby likewise): under fail_closed the
-- request is refused whatever its limits say, so it spends nothing; under
-- fail_open it is allowed, and so it spends its units and is limited.
CREATE FUNCTION pg_temp.learning_call(k text) RETURNS text
LANGUAGE sql AS $$
  SELECT concat_ws(' ', r.allowed, r.status, coalesce(r.reason, '-'),
                   'left=' || coalesce(r.rate_remaining::text, '-'))
    FROM athena_keys.athena_authenticate(k, NULL, '192.0.2.9', NULL) r
$$;
SELECT api_key AS kv, id AS kv_id FROM athena_keys.athena_create_key('learning, read-only',
	virgin_mode => true, virgin_until_n_requests => 100) \gset
SELECT athena_keys.athena_set_key_rate_limit(:'kv_id', 2, '1 hour', 2) IS NOT NULL AS limited;
BEGIN READ ONLY;
SELECT n, pg_temp.learning_call(:'kv') FROM generate_series(1, 3) n;
COMMIT;
SELECT pg_temp.learning_call(:'kv') AS writable_first_unit;
SELECT athena_keys.athena_set_fail_mode('fail_open');
BEGIN READ ONLY;
SELECT n, pg_temp.learning_call(:'kv') FROM generate_series(1, 2) n;
COMMIT;
SELECT athena_keys.athena_set_fail_mode('fail_closed');
SELECT virgin_request_count FROM athena_keys.athena_key_status WHERE id = :'kv_id';

SET client_min_messages = warning;
DROP EXTENSION athena_keys;
