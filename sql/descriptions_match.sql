-- One description of the result row and of the failure reasons (issue
-- 15): result_columns.h and failure_reasons.c, which the decision, the
-- result row, athena-authd and the log are built from, match the SQL
-- definitions: the columns of athena_auth_result, the statuses
-- athena_record_decisions accepts for each reason, and the explanation
-- athena_recent_failures gives for each.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
DROP SCHEMA IF EXISTS description_check CASCADE;
RESET client_min_messages;
CREATE EXTENSION athena_keys;

-- No extension script declares the C listings: they are bound here.
CREATE SCHEMA description_check;
CREATE FUNCTION description_check.failure_reasons(OUT reason text, OUT status integer)
	RETURNS SETOF record AS 'athena_keys', 'athena_failure_reasons' LANGUAGE C STRICT;
CREATE FUNCTION description_check.result_columns(OUT name text, OUT type regtype)
	RETURNS SETOF record AS 'athena_keys', 'athena_result_columns' LANGUAGE C STRICT;
SELECT * FROM description_check.failure_reasons();

-- The result row: same names, same types, same order.
SELECT coalesce(c.position, a.attnum) AS position, c.name AS in_c, a.attname AS in_type,
       c.type AS c_type, a.atttypid::regtype AS type_type
  FROM (SELECT row_number() OVER () AS position, name, type
          FROM description_check.result_columns()) c
  FULL JOIN (SELECT attnum, attname, atttypid FROM pg_catalog.pg_attribute
              WHERE attrelid = 'athena_keys.athena_auth_result'::regclass::oid
                AND attnum > 0 AND NOT attisdropped) a ON a.attnum = c.position
 WHERE c.name IS DISTINCT FROM a.attname::text OR c.type IS DISTINCT FROM a.atttypid::regtype;
SELECT count(*) AS result_columns FROM description_check.result_columns();

-- Every reason with its status is accepted from a standby (a 403 or 429 comes
-- after authentication, so with a key; a 429 comes after the client binding,
-- rights and IP policy passed, so authorized); the same reason with another
-- status is not.
SELECT athena_keys.athena_record_decisions(jsonb_agg(jsonb_build_object(
         'created_at', now(), 'authenticated', f.status IN (403, 429), 'authorized', f.status = 429,
         'api_key_id', CASE WHEN f.status IN (403, 429) THEN gen_random_uuid() END,
         'api_key_public_id', CASE WHEN f.status IN (403, 429) THEN 'ffffffffffffffff' END,
         'missing_rights', CASE WHEN f.status IN (403, 429) THEN ARRAY['orders.read'] END,
         'enforced', true, 'allowed', false, 'status', f.status,
         'failure_reason', f.reason, 'locked_in', false))) AS accepted
  FROM description_check.failure_reasons() f;
SELECT athena_keys.athena_record_decisions(jsonb_agg(jsonb_build_object(
         'created_at', now(), 'authenticated', f.status IN (403, 429), 'authorized', false,
         'api_key_id', CASE WHEN f.status IN (403, 429) THEN gen_random_uuid() END,
         'api_key_public_id', CASE WHEN f.status IN (403, 429) THEN 'ffffffffffffffff' END,
         'enforced', true, 'allowed', false,
         'status', CASE f.status WHEN 401 THEN 403 ELSE 401 END,
         'failure_reason', f.reason, 'locked_in', false))) AS accepted_with_wrong_status
  FROM description_check.failure_reasons() f;

-- Every reason the log holds is explained by the triage view, and no
-- reason in the log is unknown to C.
SELECT f.reason, r.explanation IS NOT NULL AS explained
  FROM description_check.failure_reasons() f
  LEFT JOIN athena_keys.athena_recent_failures r ON r.failure_reason = f.reason
 ORDER BY f.status, f.reason;
SELECT count(*) AS unknown_reasons FROM athena_keys.api_key_auth_log l
 WHERE l.failure_reason NOT IN (SELECT reason FROM description_check.failure_reasons());

SET client_min_messages = warning;
DROP SCHEMA description_check CASCADE;
DROP EXTENSION athena_keys;
