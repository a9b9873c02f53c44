-- Admin functions added in 1.1: athena_set_key_rights (replace a key's
-- grants with exactly a set) and athena_rename_key (name and description).
-- Each validates everything before changing anything, raises a proper
-- SQLSTATE with a detail and a hint, and bumps updated_at.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
RESET client_min_messages;
CREATE EXTENSION athena_keys;
SELECT extversion FROM pg_extension WHERE extname = 'athena_keys';

-- Both are SECURITY DEFINER with a pinned search_path, commented, and not
-- executable by PUBLIC.
SELECT p.oid::regprocedure AS function, p.prosecdef, p.proconfig,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_can_execute,
       obj_description(p.oid, 'pg_proc') IS NOT NULL AS commented
  FROM pg_proc p
 WHERE p.oid IN ('athena_keys.athena_set_key_rights(uuid, text[])'::regprocedure,
                 'athena_keys.athena_rename_key(uuid, text, text)'::regprocedure)
 ORDER BY p.oid::regprocedure::text COLLATE "C";

SELECT athena_keys.athena_create_right('users.read');
SELECT athena_keys.athena_create_right('users.write');
SELECT athena_keys.athena_create_right('users.*');
SELECT athena_keys.athena_create_right('orders.read');
SELECT api_key AS k, id AS k_id
  FROM athena_keys.athena_create_key('svc', description => 'first',
       rights => ARRAY['users.read', 'orders.read']) \gset
SELECT api_key AS other, id AS other_id
  FROM athena_keys.athena_create_key('other', rights => ARRAY['users.read']) \gset

-- The state of both keys, without ids, secrets or times.
CREATE FUNCTION pg_temp.keys(OUT name text, OUT description text, OUT rights text[]) RETURNS SETOF record
LANGUAGE sql AS $$
  SELECT name, description, rights FROM athena_keys.athena_key_status ORDER BY created_at, name COLLATE "C"
$$;
-- Verdicts of the key for a few required rights.
CREATE FUNCTION pg_temp.verdicts(key text, OUT required text, OUT allowed boolean, OUT status integer, OUT reason text)
RETURNS SETOF record LANGUAGE sql AS $$
  SELECT array_to_string(r.rights, ','), a.allowed, a.status, a.reason
    FROM (VALUES (1, ARRAY['users.read']), (2, ARRAY['users.write']), (3, ARRAY['orders.read']),
                 (4, ARRAY['users.delete'])) AS r(n, rights),
         LATERAL athena_keys.athena_authenticate(key, NULL, NULL, r.rights) a
   ORDER BY r.n
$$;
-- Put a key's updated_at in the past, so that a bump shows.
CREATE FUNCTION pg_temp.age_key(id uuid) RETURNS void LANGUAGE sql AS $$
  UPDATE athena_keys.api_key SET updated_at = '2000-01-01 00:00:00+00' WHERE api_key.id = age_key.id
$$;
CREATE FUNCTION pg_temp.bumped(id uuid) RETURNS boolean LANGUAGE sql AS $$
  SELECT updated_at > '2000-01-01 00:00:00+00' FROM athena_keys.api_key WHERE api_key.id = bumped.id
$$;
-- Snapshot of every key row and grant, to show that a failed call changed nothing.
CREATE FUNCTION pg_temp.snapshot() RETURNS text LANGUAGE sql AS $$
  SELECT md5(concat_ws('|',
    (SELECT string_agg(k::text, ',' ORDER BY k.id) FROM athena_keys.api_key k),
    (SELECT string_agg(g::text, ',' ORDER BY g.api_key_id, g.right_name) FROM athena_keys.api_key_right_grant g)))
$$;

SELECT * FROM pg_temp.keys();
SELECT * FROM pg_temp.verdicts(:'k');

------------------------------------------------------------------------
-- athena_set_key_rights: exactly the given set.
------------------------------------------------------------------------
-- Replace: orders.read goes, users.write comes, users.read stays.
SELECT pg_temp.age_key(:'k_id');
SELECT granted_at AS kept_granted_at FROM athena_keys.api_key_right_grant
 WHERE api_key_id = :'k_id' AND right_name = 'users.read' \gset
SELECT athena_keys.athena_set_key_rights(:'k_id', ARRAY['users.write', 'users.read']);
SELECT * FROM pg_temp.keys();
SELECT * FROM pg_temp.verdicts(:'k');
SELECT pg_temp.bumped(:'k_id') AS updated_at_bumped;
-- A right the key keeps keeps its granted_at.
SELECT granted_at = :'kept_granted_at' AS kept_grant_untouched FROM athena_keys.api_key_right_grant
 WHERE api_key_id = :'k_id' AND right_name = 'users.read';
-- Duplicates collapse; a wildcard pattern from the catalog is a right like any other.
SELECT athena_keys.athena_set_key_rights(:'k_id', ARRAY['users.*', 'users.*', 'orders.read']);
SELECT * FROM pg_temp.keys();
SELECT * FROM pg_temp.verdicts(:'k');
-- The same set again is a no-op apart from updated_at.
SELECT pg_temp.age_key(:'k_id');
SELECT athena_keys.athena_set_key_rights(:'k_id', ARRAY['orders.read', 'users.*']);
SELECT rights FROM athena_keys.athena_key_status WHERE id = :'k_id';
SELECT pg_temp.bumped(:'k_id') AS updated_at_bumped;
-- '{}' revokes everything.
SELECT athena_keys.athena_set_key_rights(:'k_id', '{}');
SELECT * FROM pg_temp.keys();
SELECT * FROM pg_temp.verdicts(:'k');
-- Other keys are never touched.
SELECT * FROM pg_temp.verdicts(:'other');
SELECT athena_keys.athena_set_key_rights(:'k_id', ARRAY['users.read', 'orders.read']);

-- Errors: all or nothing.
SELECT pg_temp.snapshot() AS before \gset
SELECT athena_keys.athena_set_key_rights(:'k_id', ARRAY['users.write', 'no.such.right', 'nor.this']);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_rights(:'k_id', ARRAY['users.write', NULL]);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_rights(:'k_id', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_rights(NULL, ARRAY['users.write']);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_rights('00000000-0000-0000-0000-000000000000', ARRAY['users.write']);
\echo :LAST_ERROR_SQLSTATE
-- Unknown rights are reported before an unknown key.
SELECT athena_keys.athena_set_key_rights('00000000-0000-0000-0000-000000000000', ARRAY['no.such.right']);
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.snapshot() = :'before' AS unchanged;
SELECT * FROM pg_temp.keys();

------------------------------------------------------------------------
-- athena_rename_key: name and description.
------------------------------------------------------------------------
SELECT pg_temp.age_key(:'k_id');
SELECT id AS old_id, public_id AS old_public_id, key_hash AS old_hash FROM athena_keys.api_key WHERE id = :'k_id' \gset
SELECT athena_keys.athena_rename_key(:'k_id', 'svc renamed', 'second');
SELECT * FROM pg_temp.keys();
SELECT pg_temp.bumped(:'k_id') AS updated_at_bumped;
-- Id, public id and secret stay: the same plaintext still works.
SELECT id = :'old_id' AND public_id = :'old_public_id' AND key_hash = :'old_hash' AS same_key
  FROM athena_keys.api_key WHERE name = 'svc renamed';
SELECT * FROM pg_temp.verdicts(:'k');
-- Without a description the description is cleared.
SELECT athena_keys.athena_rename_key(:'k_id', 'svc');
SELECT * FROM pg_temp.keys();
-- The limits of athena_create_key: 200 characters of name, 2000 of description.
SELECT athena_keys.athena_rename_key(:'k_id', repeat('n', 200), repeat('d', 2000));
SELECT length(name) AS name_length, length(description) AS description_length
  FROM athena_keys.api_key WHERE id = :'k_id';
-- Names need not be unique, as with athena_create_key.
SELECT athena_keys.athena_rename_key(:'k_id', 'other', 'same name as another key');
SELECT * FROM pg_temp.keys();

-- Errors: nothing changes.
SELECT pg_temp.snapshot() AS before \gset
SELECT athena_keys.athena_rename_key(:'k_id', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_rename_key(:'k_id', '');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_rename_key(:'k_id', repeat('n', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_rename_key(:'k_id', 'ok', repeat('d', 2001));
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_rename_key(NULL, 'ok');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_rename_key('00000000-0000-0000-0000-000000000000', 'ok');
\echo :LAST_ERROR_SQLSTATE
-- A bad name is reported before an unknown key.
SELECT athena_keys.athena_rename_key('00000000-0000-0000-0000-000000000000', '');
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.snapshot() = :'before' AS unchanged;

-- Deleted keys are gone for both (the message names the random id: masked).
CREATE FUNCTION pg_temp.try(sql text, OUT state text, OUT message text)
LANGUAGE plpgsql AS $$
DECLARE
	m text;
BEGIN
	EXECUTE sql;
	state := '00000';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, m = MESSAGE_TEXT;
	message := regexp_replace(m, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<key id>', 'g');
END
$$;
SELECT athena_keys.athena_delete_key(:'other_id');
SELECT * FROM pg_temp.try(format('SELECT athena_keys.athena_set_key_rights(%L, ARRAY[''users.read''])', :'other_id'));
SELECT * FROM pg_temp.try(format('SELECT athena_keys.athena_rename_key(%L, ''back'')', :'other_id'));

-- athena_record_decisions: decisions shipped from a hot standby.
SELECT id AS shipped_id, public_id AS shipped_pub FROM athena_keys.athena_create_key('shipped') \gset
-- Shipped rows must be recent (1.3 validates created_at), so times are relative to now.
SELECT date_trunc('second', now()) - interval '1 hour' AS t0 \gset
SELECT athena_keys.athena_record_decisions(jsonb_build_array(
  jsonb_build_object('created_at', :'t0'::timestamptz + interval '5 s', 'api_key_id', :'shipped_id',
                     'api_key_public_id', :'shipped_pub', 'client_name', 'edge',
                     'remote_addr', '10.9.8.7', 'required_rights', '["users.read"]'::jsonb,
                     'granted_rights', '[]'::jsonb, 'missing_rights', '[]'::jsonb,
                     'authenticated', true, 'authorized', true, 'enforced', true,
                     'allowed', true, 'status', 200, 'failure_reason', NULL, 'locked_in', false),
  jsonb_build_object('created_at', :'t0'::timestamptz + interval '6 s', 'client_name', 'edge',
                     'authenticated', false, 'authorized', false, 'enforced', true,
                     'allowed', false, 'status', 401, 'failure_reason', 'Invalid API key'),
  jsonb_build_object('created_at', :'t0'::timestamptz + interval '7 s', 'client_name', 'forged',
                     'authenticated', true, 'authorized', true, 'enforced', true,
                     'allowed', true, 'status', 200, 'failure_reason', 'Welcome'),
  jsonb_build_object('created_at', :'t0'::timestamptz + interval '8 s', 'client_name', 'forged',
                     'authenticated', true, 'authorized', true, 'enforced', true,
                     'allowed', true, 'status', 302))) AS appended;
SELECT client_name, api_key_id = :'shipped_id' AS same_key, remote_addr, required_rights,
       status, failure_reason, created_at = :'t0'::timestamptz + interval '5 s' AS kept_time
  FROM athena_keys.api_key_auth_log WHERE client_name IN ('edge', 'forged') ORDER BY created_at;
SELECT last_used_at = :'t0'::timestamptz + interval '5 s' AS last_use_stamped
  FROM athena_keys.api_key WHERE id = :'shipped_id';
SELECT athena_keys.athena_record_decisions('[]') AS appended_nothing;
SELECT * FROM pg_temp.try('SELECT athena_keys.athena_record_decisions(''{"a": 1}'')');
SELECT * FROM pg_temp.try('SELECT athena_keys.athena_record_decisions(NULL)');

DROP EXTENSION athena_keys CASCADE;
