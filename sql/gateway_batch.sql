-- athena_gateway_verdicts: a batch of gateway requests in one statement,
-- each element decided as athena_gateway_verdict decides one request.  The
-- batch's verdicts must equal the single calls' verdicts for the same
-- requests, each element logs its own row, one element's error answers
-- only that element (its subtransaction rolled back), a cancel stops the
-- whole statement, and bad arrays are clear errors.
\set SHOW_CONTEXT never
DROP EXTENSION IF EXISTS athena_keys CASCADE;
CREATE EXTENSION athena_keys;

SELECT athena_keys.athena_create_right('users.read');
SELECT athena_keys.athena_create_right('users.write');
SELECT api_key AS kp, public_id AS kp_pub
  FROM athena_keys.athena_create_key('plain', rights => ARRAY['users.read']) \gset
SELECT api_key AS kb FROM athena_keys.athena_create_key('bound', client_name => 'Shop|eu',
       rights => ARRAY['users.read', 'users.write']) \gset
SELECT api_key AS kw FROM athena_keys.athena_create_key('walled', rights => ARRAY['users.read'],
       ip_whitelist => ARRAY['10.1.0.0/16'::cidr]) \gset
SELECT api_key AS ke, id AS ke_id FROM athena_keys.athena_create_key('expired') \gset
SELECT athena_keys.athena_set_key_expiry(:'ke_id', now() - interval '1 day');
SELECT api_key AS ki, id AS ki_id FROM athena_keys.athena_create_key('inactive') \gset
SELECT athena_keys.athena_set_key_active(:'ki_id', false);
SELECT athena_keys.athena_add_ip_rule('blacklist', '203.0.113.0/24');

-- rights is the comma list a gateway sends: NULL, '' (none), one or several.
CREATE TEMP TABLE request (n int, label text, key text, client text, ip inet, rights text);
INSERT INTO request VALUES
	(1, 'allowed, no client', :'kp', NULL, '10.0.0.1', 'users.read'),
	(2, 'allowed, client with separator', :'kb', 'Shop|eu', '10.0.0.1', 'users.read,users.write'),
	(3, 'allowed, whitelisted, no rights', :'kw', NULL, '10.1.2.3', ''),
	(4, 'missing key', NULL, NULL, '10.0.0.1', NULL),
	(5, 'malformed key', 'garbage', NULL, '10.0.0.1', NULL),
	(6, 'unknown public id', 'ath_0000000000000000.' || repeat('a', 64), NULL, '10.0.0.1', NULL),
	(7, 'wrong secret', 'ath_' || :'kp_pub' || '.' || repeat('0', 64), NULL, '10.0.0.1', NULL),
	(8, 'inactive', :'ki', NULL, '10.0.0.1', NULL),
	(9, 'expired', :'ke', NULL, '10.0.0.1', NULL),
	(10, 'client mismatch', :'kb', 'Other', '10.0.0.1', 'users.read'),
	(11, 'missing rights', :'kp', NULL, '10.0.0.1', 'users.read,users.write'),
	(12, 'empty right name', :'kp', NULL, '10.0.0.1', 'users.read,'),
	(13, 'IP blocked', :'kp', NULL, '203.0.113.9', NULL),
	(14, 'IP not allowed', :'kw', NULL, '10.2.0.1', NULL),
	(15, 'client IP required', :'kw', NULL, NULL, NULL),
	(16, 'IPv6 caller', :'kp', NULL, '2001:db8::1', 'users.read');

-- compare(): every request once through single calls, then all of them
-- through one batch call; element i must be request i's single verdict.
CREATE FUNCTION pg_temp.compare(OUT n int, OUT label text, OUT verdict text, OUT same boolean)
RETURNS SETOF record LANGUAGE sql AS $$
	WITH single AS MATERIALIZED (
		SELECT q.n, q.label,
		       athena_keys.athena_gateway_verdict(q.key, q.client, q.ip,
		                                          string_to_array(q.rights, ',')) AS v
		  FROM pg_temp.request q ORDER BY q.n),
	batch AS MATERIALIZED (
		SELECT athena_keys.athena_gateway_verdicts(array_agg(q.key ORDER BY q.n),
		       array_agg(q.client ORDER BY q.n), array_agg(q.ip ORDER BY q.n),
		       array_agg(q.rights ORDER BY q.n)) AS vs
		  FROM pg_temp.request q)
	SELECT s.n, s.label, regexp_replace(s.v, '[0-9a-f]{8}-[0-9a-f-]{27}\|[0-9a-f]{16}', '<key id>|<public id>'),
	       s.v IS NOT DISTINCT FROM b.vs[s.n]
	  FROM single s, batch b ORDER BY s.n
$$;

SELECT count(*) AS logged_before FROM athena_keys.api_key_auth_log \gset
SELECT * FROM pg_temp.compare();
SELECT count(*) AS logged_after FROM athena_keys.api_key_auth_log \gset
-- Every element logged its own row, as its single call did.
SELECT :logged_after - :logged_before AS logged, 2 * count(*) AS calls FROM request;

-- Fail open, shadow mode and a read-only transaction: still the same.
SELECT athena_keys.athena_set_fail_mode('fail_open');
SELECT n, label, same FROM pg_temp.compare() WHERE n IN (4, 13);
SELECT athena_keys.athena_set_fail_mode('fail_closed');
SELECT athena_keys.athena_set_enforcement(false);
SELECT n, label, same FROM pg_temp.compare() WHERE n IN (7, 9);
SELECT athena_keys.athena_set_enforcement(true);
BEGIN READ ONLY;
SELECT n, label, same FROM pg_temp.compare() WHERE n IN (1, 2);
ROLLBACK;

-- Learning: two fresh learning keys (locked after 3 requests), one asked
-- by single calls, the other by one batch, with the same callers in the
-- same order; each element learns as its single call did.
SELECT api_key AS ls, id AS ls_id FROM athena_keys.athena_create_key('learn single', virgin_mode => true,
       virgin_until_n_requests => 3) \gset
SELECT api_key AS lb, id AS lb_id FROM athena_keys.athena_create_key('learn batch', virgin_mode => true,
       virgin_until_n_requests => 3) \gset
CREATE TEMP TABLE caller (n int, ip inet);
INSERT INTO caller VALUES (1, '198.51.100.1'), (2, '198.51.100.2'), (3, '198.51.100.1'),
	(4, '198.51.100.3'), (5, '198.51.100.2');
CREATE TEMP TABLE learned_single AS
	SELECT c.n, athena_keys.athena_gateway_verdict(:'ls', NULL, c.ip, NULL) AS v
	  FROM (SELECT * FROM caller ORDER BY n) c;
SELECT t.n, split_part(l.v, '|', 2) AS single_status, split_part(l.v, '|', 6) AS single_reason,
       split_part(t.v, '|', 2) AS batch_status,
       split_part(l.v, '|', 1) || split_part(l.v, '|', 2) || split_part(l.v, '|', 6)
       = split_part(t.v, '|', 1) || split_part(t.v, '|', 2) || split_part(t.v, '|', 6) AS same
  FROM unnest(athena_keys.athena_gateway_verdicts(
         (SELECT array_agg(:'lb'::text) FROM caller), array_fill(NULL::text, ARRAY[5]),
         (SELECT array_agg(ip ORDER BY n) FROM caller), array_fill(NULL::text, ARRAY[5])))
       WITH ORDINALITY AS t(v, n)
  JOIN learned_single l USING (n) ORDER BY t.n;
SELECT name, state, whitelist_size FROM athena_keys.athena_key_status
 WHERE id IN (:'ls_id', :'lb_id') ORDER BY name;

-- Empty arrays: no requests, no verdicts.
SELECT athena_keys.athena_gateway_verdicts('{}', '{}', '{}', '{}') AS none;

-- One element's infrastructure error (a trigger on the log refuses the
-- row of the client 'boom') answers only that element with its SQLSTATE
-- and message; its row is rolled back, the others are decided and logged.
CREATE FUNCTION public.refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.client_name = 'boom' THEN
		RAISE EXCEPTION 'log row refused' USING ERRCODE = 'XX001';
	END IF;
	IF NEW.client_name = 'slow' THEN
		PERFORM pg_sleep(2);
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER refuse_boom BEFORE INSERT ON athena_keys.api_key_auth_log
	FOR EACH ROW EXECUTE FUNCTION public.refuse_boom();
SELECT count(*) AS logged_before FROM athena_keys.api_key_auth_log \gset
SELECT i, regexp_replace(v, '[0-9a-f]{8}-[0-9a-f-]{27}\|[0-9a-f]{16}', '<key id>|<public id>') AS verdict
  FROM unnest(athena_keys.athena_gateway_verdicts(
         ARRAY[:'kp', NULL, :'kp'], ARRAY['web', 'boom', 'shop'],
         ARRAY['10.0.0.1', '10.0.0.2', '10.0.0.3']::inet[], ARRAY['users.read', NULL, 'users.read']))
       WITH ORDINALITY AS t(v, i);
SELECT client_name, status FROM athena_keys.api_key_auth_log ORDER BY id DESC LIMIT 2;
SELECT count(*) - :logged_before AS logged FROM athena_keys.api_key_auth_log;

-- A cancel (here statement_timeout) stops the whole statement, as it
-- would stop a call of its own: no element is answered.
SET statement_timeout = '300ms';
SELECT athena_keys.athena_gateway_verdicts(ARRAY[:'kp', :'kp'], ARRAY['web', 'slow'],
       ARRAY[NULL, NULL]::inet[], ARRAY[NULL, NULL]);
RESET statement_timeout;
-- The first element's row went back with the statement.
SELECT count(*) - :logged_before AS logged FROM athena_keys.api_key_auth_log;
DROP TRIGGER refuse_boom ON athena_keys.api_key_auth_log;
DROP FUNCTION public.refuse_boom();

-- Bad arrays are errors: NULL, several dimensions, lengths that differ,
-- more than 64 requests (each request's subtransaction may take one of the
-- 64 subtransaction ids a backend keeps in shared memory).  A NULL element is a NULL argument.
SELECT athena_keys.athena_gateway_verdicts(NULL, '{}', '{}', '{}');
SELECT athena_keys.athena_gateway_verdicts('{}', '{}', NULL, '{}');
SELECT athena_keys.athena_gateway_verdicts(ARRAY[['a']], ARRAY[['b']], ARRAY[[NULL]]::inet[], ARRAY[['c']]);
SELECT athena_keys.athena_gateway_verdicts(ARRAY['a', 'b'], ARRAY['c'], ARRAY[NULL, NULL]::inet[], ARRAY['d', 'e']);
SELECT athena_keys.athena_gateway_verdicts(array_fill(NULL::text, ARRAY[65]), array_fill(NULL::text, ARRAY[65]),
       array_fill(NULL::inet, ARRAY[65]), array_fill(NULL::text, ARRAY[65]));
SELECT cardinality(athena_keys.athena_gateway_verdicts(array_fill(NULL::text, ARRAY[64]),
       array_fill(NULL::text, ARRAY[64]), array_fill(NULL::inet, ARRAY[64]),
       array_fill(NULL::text, ARRAY[64]))) AS answered;
SELECT athena_keys.athena_gateway_verdicts(ARRAY[NULL]::text[], ARRAY[NULL]::text[], ARRAY[NULL]::inet[],
       ARRAY[NULL]::text[]) AS null_elements;

-- The gateway role may call it; PUBLIC and other roles may not.
CREATE ROLE gb_gateway;
CREATE ROLE gb_nobody;
SELECT athena_keys.athena_grant_gateway_role('gb_gateway');
SELECT has_function_privilege('gb_gateway', 'athena_keys.athena_gateway_verdicts(text[], text[], inet[], text[])', 'EXECUTE') AS gateway,
       has_function_privilege('gb_nobody', 'athena_keys.athena_gateway_verdicts(text[], text[], inet[], text[])', 'EXECUTE') AS nobody;
SELECT prosecdef AS security_definer, provolatile FROM pg_proc
 WHERE oid = 'athena_keys.athena_gateway_verdicts(text[], text[], inet[], text[])'::regprocedure;
DROP EXTENSION athena_keys CASCADE;
DROP OWNED BY gb_gateway;
DROP ROLE gb_gateway;
DROP ROLE gb_nobody;
