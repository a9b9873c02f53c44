-- athena_gateway_verdict: the same decision as athena_authenticate, as the
-- compact text a gateway reads (src/gateway_verdict_fields.h).  Every path
-- is asked of both, in the same statement, and each field of the compact
-- verdict must equal athena_authenticate's column; both log the decision.
\set SHOW_CONTEXT never
DROP EXTENSION IF EXISTS athena_keys CASCADE;
CREATE EXTENSION athena_keys;

-- The compact verdict read back as athena-authd reads it: the first ten
-- fields up to a separator, client_name the rest; an empty field is NULL.
CREATE FUNCTION pg_temp.verdict_fields(v text,
	OUT allowed boolean, OUT status integer, OUT fail_mode text, OUT key_id uuid,
	OUT public_id text, OUT reason text, OUT retry_after_ms bigint, OUT rate_limit integer,
	OUT rate_remaining integer, OUT rate_reset_ms bigint, OUT client_name text)
LANGUAGE sql AS $$
	SELECT nullif(split_part(v, '|', 1), '')::boolean, nullif(split_part(v, '|', 2), '')::integer,
	       nullif(split_part(v, '|', 3), ''), nullif(split_part(v, '|', 4), '')::uuid,
	       nullif(split_part(v, '|', 5), ''), nullif(split_part(v, '|', 6), ''),
	       nullif(split_part(v, '|', 7), '')::bigint, nullif(split_part(v, '|', 8), '')::integer,
	       nullif(split_part(v, '|', 9), '')::integer, nullif(split_part(v, '|', 10), '')::bigint,
	       nullif(substr(v, length(array_to_string((string_to_array(v, '|'))[1:10], '|')) + 2), '')
$$;

SELECT athena_keys.athena_create_right('users.read');
SELECT api_key AS kp, id AS kp_id, public_id AS kp_pub
  FROM athena_keys.athena_create_key('plain', rights => ARRAY['users.read']) \gset
-- A client name holding the separator: it is the last field, read to the end.
SELECT api_key AS kb FROM athena_keys.athena_create_key('bound', client_name => 'Shop|eu',
       rights => ARRAY['users.read']) \gset
SELECT api_key AS kw FROM athena_keys.athena_create_key('walled', rights => ARRAY['users.read'],
       ip_whitelist => ARRAY['10.1.0.0/16'::cidr]) \gset
SELECT api_key AS ke, id AS ke_id FROM athena_keys.athena_create_key('expired') \gset
SELECT athena_keys.athena_set_key_expiry(:'ke_id', now() - interval '1 day');
SELECT api_key AS ki, id AS ki_id FROM athena_keys.athena_create_key('inactive') \gset
SELECT athena_keys.athena_set_key_active(:'ki_id', false);
SELECT athena_keys.athena_add_ip_rule('blacklist', '203.0.113.0/24');

CREATE TEMP TABLE request (label text, key text, client text, ip inet, rights text[]);
INSERT INTO request VALUES
	('allowed, no client', :'kp', NULL, '10.0.0.1', ARRAY['users.read']),
	('allowed, client with separator', :'kb', 'Shop|eu', '10.0.0.1', ARRAY['users.read']),
	('allowed, whitelisted', :'kw', NULL, '10.1.2.3', NULL),
	('missing key', NULL, NULL, '10.0.0.1', NULL),
	('malformed key', 'garbage', NULL, '10.0.0.1', NULL),
	('unknown public id', 'ath_0000000000000000.' || repeat('a', 64), NULL, '10.0.0.1', NULL),
	('wrong secret', 'ath_' || :'kp_pub' || '.' || repeat('0', 64), NULL, '10.0.0.1', NULL),
	('inactive', :'ki', NULL, '10.0.0.1', NULL),
	('expired', :'ke', NULL, '10.0.0.1', NULL),
	('client mismatch', :'kb', 'Other', '10.0.0.1', ARRAY['users.read']),
	('missing rights', :'kp', NULL, '10.0.0.1', ARRAY['users.write']),
	('IP blocked', :'kp', NULL, '203.0.113.9', NULL),
	('IP not allowed', :'kw', NULL, '10.2.0.1', NULL),
	('client IP required', :'kw', NULL, NULL, NULL);

-- compare(): every request through both functions, once each, field by field.
CREATE FUNCTION pg_temp.compare(OUT label text, OUT status integer, OUT reason text,
	OUT fail_mode text, OUT client_name text, OUT same boolean)
RETURNS SETOF record LANGUAGE sql AS $$
	WITH calls AS MATERIALIZED (
		SELECT q.label, a,
		       athena_keys.athena_gateway_verdict(q.key, q.client, q.ip, q.rights) AS v
		  FROM pg_temp.request q,
		       LATERAL athena_keys.athena_authenticate(q.key, q.client, q.ip, q.rights) a)
	SELECT c.label, f.status, f.reason, f.fail_mode, f.client_name,
	       (f.allowed, f.status, f.reason, f.key_id, f.public_id, f.client_name, f.fail_mode,
	        f.retry_after_ms, f.rate_limit, f.rate_remaining, f.rate_reset_ms)
	       IS NOT DISTINCT FROM
	       ((c.a).allowed, (c.a).status, (c.a).reason, (c.a).key_id, (c.a).public_id,
	        (c.a).client_name, (c.a).fail_mode, (c.a).retry_after_ms, (c.a).rate_limit,
	        (c.a).rate_remaining, (c.a).rate_reset_ms)
	  FROM calls c, LATERAL pg_temp.verdict_fields(c.v) f
	 ORDER BY c.label COLLATE "C"
$$;

SELECT count(*) AS logged_before FROM athena_keys.api_key_auth_log \gset
SELECT * FROM pg_temp.compare();
SELECT count(*) AS logged_after FROM athena_keys.api_key_auth_log \gset

-- The key's facts are reported only when the secret matched, as in the row.
SELECT athena_keys.athena_gateway_verdict(:'kp', NULL, '10.0.0.1', NULL) ~
       ('^t\|200\|fail_closed\|' || :'kp_id' || '\|' || :'kp_pub' || '\|\|\|\|\|\|$') AS allowed_shape;
SELECT athena_keys.athena_gateway_verdict('ath_' || :'kp_pub' || '.' || repeat('0', 64), NULL, NULL, NULL)
       AS wrong_secret_shape;

-- Fail open, and shadow mode (enforcement off: allowed, with the reason).
SELECT athena_keys.athena_set_fail_mode('fail_open');
SELECT label, status, fail_mode, same FROM pg_temp.compare() WHERE label IN ('IP blocked', 'missing key');
SELECT athena_keys.athena_set_enforcement(false);
SELECT label, status, reason, same FROM pg_temp.compare() WHERE label IN ('expired', 'wrong secret');
SELECT athena_keys.athena_set_enforcement(true);
SELECT athena_keys.athena_set_fail_mode('fail_closed');

-- A read-only transaction cannot log: both answer the same.
BEGIN READ ONLY;
SELECT label, status, reason, same FROM pg_temp.compare() WHERE label LIKE 'allowed%';
ROLLBACK;

-- Both log every decision: the first comparison logged one row per call.
SELECT :logged_after - :logged_before AS logged, 2 * count(*) AS calls FROM request;

-- The gateway role may call it; PUBLIC may not.
CREATE ROLE gv_gateway;
CREATE ROLE gv_nobody;
SELECT athena_keys.athena_grant_gateway_role('gv_gateway');
SELECT has_function_privilege('gv_gateway', 'athena_keys.athena_gateway_verdict(text, text, inet, text[])', 'EXECUTE') AS gateway,
       has_function_privilege('gv_nobody', 'athena_keys.athena_gateway_verdict(text, text, inet, text[])', 'EXECUTE') AS nobody;
DROP EXTENSION athena_keys CASCADE;
DROP OWNED BY gv_gateway;
DROP ROLE gv_gateway;
DROP ROLE gv_nobody;
