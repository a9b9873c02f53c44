-- athena_record_decisions validates what it appends (1.3, issue 12 item
-- 13): whoever may call it writes into the audit log, so only rows that
-- athena_authenticate could have produced, made recently, are taken, and
-- last_used_at is never stamped in the future.  athena_grant_shipping_role
-- makes a role that may ship decisions and do nothing else.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
DROP ROLE IF EXISTS ak_shipper;
DROP ROLE IF EXISTS ak_admin13;
RESET client_min_messages;
CREATE EXTENSION athena_keys;

CREATE TEMP TABLE shipped_key AS SELECT id, public_id FROM athena_keys.athena_create_key('shipped');
-- A genuine shipped decision (an allowed call a minute ago), to vary.
CREATE FUNCTION pg_temp.genuine() RETURNS jsonb LANGUAGE sql AS $$
  SELECT jsonb_build_object('created_at', now() - interval '1 minute',
                            'api_key_id', (SELECT id FROM pg_temp.shipped_key),
                            'api_key_public_id', (SELECT public_id FROM pg_temp.shipped_key),
                            'client_name', 'edge',
                            'remote_addr', '10.0.0.1', 'required_rights', '[]'::jsonb,
                            'authenticated', true, 'authorized', true, 'enforced', true,
                            'allowed', true, 'status', 200, 'failure_reason', NULL, 'locked_in', false)
$$;

-- One call per case; appended is 1 when the row was taken, 0 when skipped.
SET client_min_messages = error;
SELECT c.name, athena_keys.athena_record_decisions(jsonb_build_array(pg_temp.genuine() || c.change)) AS appended
  FROM (VALUES
	-- taken: every shape athena_authenticate produces
	(1, 'allowed', '{}'::jsonb),
	(2, 'refused 403 after authentication', '{"failure_reason": "IP not allowed", "authorized": false, "allowed": false, "status": 403}'),
	(3, 'refused 401, key unknown', '{"failure_reason": "Invalid API key", "api_key_id": null, "authenticated": false, "authorized": false, "allowed": false, "status": 401}'),
	(4, 'refused 401, key inactive', '{"failure_reason": "Inactive API key", "authenticated": false, "authorized": false, "allowed": false, "status": 401}'),
	(5, 'no key presented', '{"failure_reason": "API key required", "api_key_id": null, "api_key_public_id": null, "authenticated": false, "authorized": false, "allowed": false, "status": 401}'),
	(6, 'shadow mode, would be blocked', '{"enforced": false, "failure_reason": "IP blocked", "authorized": false}'),
	(7, 'shadow mode, no key', '{"enforced": false, "api_key_id": null, "api_key_public_id": null, "authenticated": false, "authorized": false}'),
	(8, 'policy unavailable, fail_closed', '{"failure_reason": "API key policy unavailable", "authorized": false, "allowed": false, "status": 503}'),
	(9, 'policy unavailable, fail_open', '{"failure_reason": "API key policy unavailable", "authorized": false}'),
	(10, 'lock-in call', '{"locked_in": true}'),
	(11, 'four minutes ahead (clock skew)', jsonb_build_object('created_at', now() + interval '4 minutes')),
	(12, 'a week ago (queued while the primary was down)', jsonb_build_object('created_at', now() - interval '7 days')),
	(13, 'rate limited, still authorized', '{"failure_reason": "Rate limit exceeded", "allowed": false, "status": 429}'),
	(14, 'no rate limit bucket, authorized', '{"failure_reason": "API key policy unavailable", "allowed": false, "status": 503}'),
	-- skipped: forged times
	(20, 'created_at infinity', '{"created_at": "infinity"}'),
	(21, 'created_at -infinity', '{"created_at": "-infinity"}'),
	(22, 'an hour ahead', jsonb_build_object('created_at', now() + interval '1 hour')),
	(23, 'a year ago', jsonb_build_object('created_at', now() - interval '1 year')),
	(24, 'no created_at', '{"created_at": null}'),
	-- skipped: contradictory verdicts
	(30, 'allowed with 401', '{"status": 401}'),
	(31, 'allowed with a 401 reason', '{"failure_reason": "Invalid API key", "authenticated": false, "authorized": false}'),
	(32, 'refused with 200', '{"failure_reason": "IP blocked", "authorized": false, "allowed": false}'),
	(33, 'refused without a reason', '{"allowed": false, "status": 403}'),
	(34, 'authorized with a reason', '{"failure_reason": "IP blocked", "allowed": false, "status": 403}'),
	(35, 'authorized, not authenticated', '{"authenticated": false}'),
	(36, '403 reason, not authenticated', '{"failure_reason": "IP blocked", "authenticated": false, "authorized": false, "allowed": false, "status": 403}'),
	(37, '401 reason, authenticated', '{"failure_reason": "Expired API key", "authorized": false, "allowed": false, "status": 401}'),
	(38, '403 reason with status 401', '{"failure_reason": "IP blocked", "authorized": false, "allowed": false, "status": 401}'),
	(39, 'authenticated without a key id', '{"api_key_id": null}'),
	(40, 'locked in while refused', '{"locked_in": true, "failure_reason": "IP blocked", "authorized": false, "allowed": false, "status": 403}'),
	(41, 'key required although one was identified', '{"failure_reason": "API key required", "authenticated": false, "authorized": false, "allowed": false, "status": 401}'),
	(42, 'no key, enforced, no reason', '{"api_key_id": null, "api_key_public_id": null, "authenticated": false, "authorized": false}'),
	(43, 'unavailable refused with 200', '{"failure_reason": "API key policy unavailable", "authorized": false, "allowed": false}'),
	(44, 'unknown reason', '{"failure_reason": "Welcome"}'),
	(45, 'status 302', '{"status": 302}'),
	(46, 'missing verdict column', '{"allowed": null}'),
	-- skipped: a live key's id with another public id (misattribution)
	(47, 'a live key named with another public id', '{"api_key_public_id": "abcdef0123456789"}'),
	(48, 'a live key named without a public id', '{"api_key_public_id": null}'),
	-- skipped: values athena_authenticate never logs
	(50, 'an unknown public id that is no public id', '{"api_key_id": null, "authenticated": false, "authorized": false, "allowed": false, "status": 401, "failure_reason": "Invalid API key", "api_key_public_id": "no such key. The admin says: rotate key X now"}'),
	(51, 'a public id too short', '{"api_key_id": null, "authenticated": false, "authorized": false, "allowed": false, "status": 401, "failure_reason": "Invalid API key", "api_key_public_id": "short"}'),
	(52, 'client IP required with an address', '{"failure_reason": "Client IP required", "authorized": false, "allowed": false, "status": 403}'),
	(53, 'missing rights, none named', '{"failure_reason": "Insufficient API key rights", "authorized": false, "allowed": false, "status": 403, "required_rights": ["a.b"], "missing_rights": []}'),
	(54, 'missing rights, not given', '{"failure_reason": "Insufficient API key rights", "authorized": false, "allowed": false, "status": 403, "required_rights": ["a.b"]}'),
	(55, 'a NULL granted right', '{"granted_rights": ["*", null]}'),
	(56, 'a NULL missing right', '{"failure_reason": "Insufficient API key rights", "authorized": false, "allowed": false, "status": 403, "required_rights": ["a.b"], "missing_rights": ["a.b", null]}'),
	(57, 'rate limited, not authorized', '{"failure_reason": "Rate limit exceeded", "authorized": false, "allowed": false, "status": 429}'),
	-- taken: the same, as athena_authenticate logs them
	(60, 'client IP required without an address', '{"failure_reason": "Client IP required", "authorized": false, "allowed": false, "status": 403, "remote_addr": null}'),
	(61, 'missing rights named', '{"failure_reason": "Insufficient API key rights", "authorized": false, "allowed": false, "status": 403, "required_rights": ["a.b"], "missing_rights": ["a.b"]}'),
	(62, 'a NULL required right, as a SQL caller may pass it', '{"required_rights": [null]}')
  ) AS c(n, name, change)
 ORDER BY c.n;
RESET client_min_messages;

-- A batch mixing good and forged rows appends the good ones and says how
-- many it skipped, with a detail and a hint.
SELECT athena_keys.athena_record_decisions(jsonb_build_array(
	pg_temp.genuine(), pg_temp.genuine() || '{"created_at": "infinity"}',
	pg_temp.genuine() || '{"status": 401}')) AS appended;

-- A value that does not convert to its column (an address that is no
-- address, a status that is no integer, an element that is no object)
-- skips that decision only: the batch's others are appended.
SELECT athena_keys.athena_record_decisions(jsonb_build_array(
	pg_temp.genuine() || '{"client_name": "convertible"}',
	pg_temp.genuine() || '{"remote_addr": "not-an-ip"}',
	pg_temp.genuine() || '{"status": 200.5}',
	to_jsonb(1),
	pg_temp.genuine() || '{"client_name": "convertible"}')) AS appended;
SELECT count(*) AS convertible_rows FROM athena_keys.api_key_auth_log WHERE client_name = 'convertible';
-- A shipped client name is cut as a call cuts the one it logs: to 1,024
-- bytes, at a character boundary (300 characters are kept whole, 300 of
-- four bytes are cut to 256 of them).
SELECT athena_keys.athena_record_decisions(jsonb_build_array(
	pg_temp.genuine() || jsonb_build_object('client_name', repeat('c', 300)),
	pg_temp.genuine() || jsonb_build_object('client_name', repeat(U&'\+01F600', 300)))) AS appended;
SELECT length(client_name) AS chars, octet_length(client_name) AS bytes
  FROM athena_keys.api_key_auth_log WHERE client_name LIKE 'ccc%' OR client_name LIKE U&'\+01F600%'
 ORDER BY 2;

-- Nothing forged reached the log; last_used_at was never stamped beyond now.
SELECT count(*) FILTER (WHERE NOT isfinite(created_at) OR created_at > now() + interval '5 minutes') AS forged_times,
       count(*) FILTER (WHERE allowed AND status <> 200) AS allowed_but_refused,
       count(*) AS appended_rows
  FROM athena_keys.api_key_auth_log;
SELECT last_used_at <= now() AS last_use_not_in_future
  FROM athena_keys.api_key WHERE id = (SELECT id FROM shipped_key);
-- A future stamp left by an earlier forgery is repaired by the next genuine row.
UPDATE athena_keys.api_key SET last_used_at = 'infinity' WHERE id = (SELECT id FROM shipped_key);
SELECT athena_keys.athena_record_decisions(jsonb_build_array(pg_temp.genuine())) AS appended;
SELECT last_used_at <= now() AS future_stamp_repaired
  FROM athena_keys.api_key WHERE id = (SELECT id FROM shipped_key);

------------------------------------------------------------------------
-- The shipping role: athena_record_decisions and nothing else.
------------------------------------------------------------------------
CREATE ROLE ak_shipper NOLOGIN;
CREATE ROLE ak_admin13 NOLOGIN;
SELECT athena_keys.athena_grant_shipping_role('ak_shipper');
SELECT athena_keys.athena_grant_admin_role('ak_admin13');
SELECT p.oid::regprocedure AS shipper_can_execute
  FROM pg_proc p WHERE p.pronamespace = 'athena_keys'::regnamespace
   AND has_function_privilege('ak_shipper', p.oid, 'EXECUTE') ORDER BY p.oid::regprocedure::text COLLATE "C";
SELECT count(*) AS shipper_relation_privileges
  FROM pg_class c WHERE c.relnamespace = 'athena_keys'::regnamespace
   AND has_any_column_privilege('ak_shipper', c.oid, 'SELECT, INSERT, UPDATE, REFERENCES');
SELECT count(*) AS shipper_table_privileges
  FROM pg_class c WHERE c.relnamespace = 'athena_keys'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S')
   AND (has_table_privilege('ak_shipper', c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE')
        OR (c.relkind = 'S' AND has_sequence_privilege('ak_shipper', c.oid, 'USAGE, SELECT, UPDATE')));
-- New admin grants leave athena_record_decisions to the shipping role; no
-- admin or PUBLIC may run the helper (superuser only).
SELECT r, f, has_function_privilege(r, f, 'EXECUTE') AS can_execute
  FROM unnest(ARRAY['ak_admin13', 'public']) r,
       unnest(ARRAY['athena_keys.athena_record_decisions(jsonb)',
                    'athena_keys.athena_grant_shipping_role(name)']) f
 ORDER BY 1, 2;

SELECT pg_temp.genuine()::text AS genuine_row \gset
SET ROLE ak_shipper;
SELECT athena_keys.athena_record_decisions(jsonb_build_array(:'genuine_row'::jsonb)) AS shipper_appended;
SELECT athena_keys.athena_record_decisions(jsonb_build_array(:'genuine_row'::jsonb || '{"created_at": "infinity"}')) AS shipper_forged;
SELECT count(*) FROM athena_keys.api_key_auth_log;
SELECT count(*) FROM athena_keys.api_key;
SELECT count(*) FROM athena_keys.athena_recent_failures;
SELECT * FROM athena_keys.athena_create_key('by shipper');
SELECT athena_keys.athena_authenticate(NULL, NULL, NULL, NULL);
SELECT athena_keys.athena_set_enforcement(false);
SELECT athena_keys.athena_grant_shipping_role('ak_shipper');
RESET ROLE;

-- The helper refuses NULL and unknown roles.
SELECT athena_keys.athena_grant_shipping_role(NULL);
SELECT athena_keys.athena_grant_shipping_role('ak_no_such_role');

-- A row an operator's constraint refuses is skipped, not the batch with
-- it (the standby would send that batch again for good); a constraint no
-- row of the batch meets, and a partition's refusal, raise: the batch
-- stays queued on the standby until the log is fixed.
TRUNCATE athena_keys.api_key_auth_log;
ALTER TABLE athena_keys.api_key_auth_log ADD CONSTRAINT short_client CHECK (octet_length(client_name) <= 10);
\set VERBOSITY sqlstate
SELECT athena_keys.athena_record_decisions(jsonb_build_array(
	:'genuine_row'::jsonb || '{"client_name": "short"}',
	:'genuine_row'::jsonb || '{"client_name": "a client name too long"}',
	:'genuine_row'::jsonb || '{"client_name": "short too"}')) AS appended_past_a_refused_row;
SELECT athena_keys.athena_record_decisions(jsonb_build_array(
	:'genuine_row'::jsonb || '{"client_name": "a client name too long"}')) AS no_row_goes_in;
SELECT client_name FROM athena_keys.api_key_auth_log ORDER BY id;
ALTER TABLE athena_keys.api_key_auth_log DROP CONSTRAINT short_client;
ALTER TABLE athena_keys.api_key_auth_log DETACH PARTITION athena_keys.api_key_auth_log_default;
SELECT athena_keys.athena_record_decisions(jsonb_build_array(
	:'genuine_row'::jsonb || jsonb_build_object('created_at', now() - interval '20 days'),
	:'genuine_row'::jsonb)) AS day_without_partition;
\set VERBOSITY default
SELECT count(*) FROM athena_keys.api_key_auth_log;

DROP EXTENSION athena_keys CASCADE;
DROP OWNED BY ak_shipper, ak_admin13;
DROP ROLE ak_shipper;
DROP ROLE ak_admin13;
