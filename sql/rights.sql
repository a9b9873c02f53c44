-- Rights matching (SPEC section 4 "Rights matching"), table-driven through
-- athena_authenticate: one key per granted right.
\set SHOW_CONTEXT never
DROP EXTENSION IF EXISTS athena_keys CASCADE;
CREATE EXTENSION athena_keys;

-- The cases: granted right, required right, whether it is satisfied.
CREATE TEMP TABLE rights_case (n serial, granted text, required text, expected boolean);
INSERT INTO rights_case (granted, required, expected) VALUES
  -- "*" satisfies everything
  ('*',              'users.read',          true),
  ('*',              'anything',            true),
  ('*',              'a.b.c.d',             true),
  ('*',              'gateway.query',       true),
  -- equality
  ('users.read',     'users.read',          true),
  ('users.read',     'users.write',         false),
  ('users.read',     'users.read.x',        false),
  ('users.read',     'users',               false),
  ('users.read',     'users.rea',           false),
  ('users',          'users',               true),
  ('users',          'users.read',          false),
  ('gateway.query',  'gateway.query',       true),
  ('gateway.query',  'users.query',         false),
  -- "P.*" covers everything under P., not P itself
  ('users.*',        'users.read',          true),
  ('users.*',        'users.a.b',           true),
  ('users.*',        'users',               false),
  ('users.*',        'usersx.read',         false),
  ('users.*',        'xusers.read',         false),
  ('users.*',        'orders.read',         false),
  ('gateway.*',      'gateway.rpc.execute', true),
  ('gateway.*',      'gateway.read',        true),
  ('gateway.*',      'gateway',             false),
  ('gateway.*',      'management.read',     false),
  ('a.b.*',          'a.b.c',               true),
  ('a.b.*',          'a.c',                 false),
  -- "*.A" covers every right whose last dot-segment is A
  ('*.read',         'users.read',          true),
  ('*.read',         'a.b.read',            true),
  ('*.read',         'gateway.read',        true),
  ('*.read',         'read',                true),
  ('*.read',         'users.write',         false),
  ('*.read',         'users.readx',         false),
  ('*.read',         'users.xread',         false),
  ('*.read',         'users.read.x',        false),
  ('*.write',        'users.write',         true),
  ('*.write',        'users.read',          false),
  ('*.delete',       'a.b.c.delete',        true),
  -- gateway.read / write / delete cover two-segment resource rights R.<action>
  ('gateway.read',   'users.read',          true),
  ('gateway.read',   'orders.read',         true),
  ('gateway.read',   'gateway.read',        true),
  ('gateway.read',   'a.b.read',            false),
  ('gateway.read',   'users.write',         false),
  ('gateway.read',   'users.delete',        false),
  ('gateway.read',   'read',                false),
  ('gateway.read',   '.read',               false),
  ('gateway.write',  'users.write',         true),
  ('gateway.write',  'users.read',          false),
  ('gateway.write',  'a.b.write',           false),
  ('gateway.delete', 'orders.delete',       true),
  ('gateway.delete', 'orders.write',        false),
  ('gateway.delete', 'x.y.delete',          false),
  ('gateway.query',  'users.query',         false),
  ('gateway.rpc.execute', 'users.execute',  false),
  -- case-sensitive everywhere
  ('users.read',     'USERS.READ',          false),
  ('users.read',     'Users.read',          false),
  ('Users.read',     'users.read',          false),
  ('users.*',        'Users.read',          false),
  ('*.read',         'users.Read',          false),
  ('*.Read',         'users.read',          false),
  ('gateway.read',   'users.READ',          false),
  ('gateway.*',      'Gateway.read',        false);

-- Every granted right must be in the catalog first (the seeds hold *, gateway.*,
-- gateway.read/write/delete/query/rpc.execute, *.read, *.write, *.delete).
SELECT name FROM athena_keys.api_key_right
 WHERE name IN (SELECT granted FROM rights_case) ORDER BY name COLLATE "C";
SELECT athena_keys.athena_create_right(g)
  FROM (SELECT DISTINCT granted AS g FROM rights_case
         WHERE granted NOT IN (SELECT name FROM athena_keys.api_key_right) ORDER BY 1) s;
SELECT count(*) = 0 AS all_in_catalog FROM rights_case
 WHERE granted NOT IN (SELECT name FROM athena_keys.api_key_right);

-- One key per granted right.
CREATE TEMP TABLE rights_key AS
SELECT g.granted, k.api_key, k.id
  FROM (SELECT DISTINCT granted FROM rights_case) g,
       LATERAL athena_keys.athena_create_key('holds ' || g.granted, rights => ARRAY[g.granted]) k;
SELECT count(*) AS keys,
       bool_and(r.granted_rights = ARRAY[k.granted]) AS each_holds_one_right
  FROM rights_key k, LATERAL athena_keys.athena_authenticate(k.api_key, NULL, NULL, NULL) r;

-- The truth table.
SELECT c.granted, c.required, c.expected,
       r.missing_rights = '{}' AS satisfied,
       r.missing_rights, r.reason, r.status,
       c.expected = (r.missing_rights = '{}')
         AND (r.reason IS NULL) = c.expected
         AND r.status = CASE WHEN c.expected THEN 200 ELSE 403 END
         AND r.missing_rights = CASE WHEN c.expected THEN '{}'::text[] ELSE ARRAY[c.required] END AS ok
  FROM rights_case c JOIN rights_key k USING (granted),
       LATERAL athena_keys.athena_authenticate(k.api_key, NULL, NULL, ARRAY[c.required]) r
 ORDER BY c.n;

-- Several required rights: missing_rights lists exactly the missing ones, in order.
SELECT athena_keys.athena_create_right('orders.*');
SELECT api_key AS km, id AS km_id
  FROM athena_keys.athena_create_key('multi', rights => ARRAY['users.read', 'orders.*', '*.delete']) \gset
SELECT required, r.allowed, r.status, r.reason, r.granted_rights, r.missing_rights,
       r.missing_rights = expected_missing AS ok
  FROM (VALUES
    (1, ARRAY['users.read', 'orders.write', 'billing.delete'], '{}'::text[]),
    (2, ARRAY['users.read', 'orders.write', 'billing.read'], ARRAY['billing.read']),
    (3, ARRAY['billing.read', 'users.read', 'users.write'], ARRAY['billing.read', 'users.write']),
    (4, ARRAY['users.write'], ARRAY['users.write']),
    -- empty array: nothing required
    (5, '{}', '{}'),
    -- NULL elements require nothing
    (6, ARRAY[NULL]::text[], '{}'),
    (7, ARRAY[NULL, 'users.read', NULL], '{}'),
    (8, ARRAY[NULL, 'billing.read', NULL], ARRAY['billing.read']),
    -- NULL array: nothing required
    (9, NULL, '{}')
  ) AS t(n, required, expected_missing),
  LATERAL athena_keys.athena_authenticate(:'km', NULL, NULL, required) r
 ORDER BY n;

-- A key with no rights at all.
SELECT api_key AS kn FROM athena_keys.athena_create_key('no rights') \gset
SELECT required, r.allowed, r.reason, r.granted_rights, r.missing_rights
  FROM (VALUES (1, '{}'::text[]), (2, NULL), (3, ARRAY['users.read']), (4, ARRAY['*'])) AS t(n, required),
  LATERAL athena_keys.athena_authenticate(:'kn', NULL, NULL, required) r
 ORDER BY n;

-- Grant and revoke take effect at once; deleting a right from the catalog
-- removes its grants.
SELECT athena_keys.athena_grant_rights(:'km_id', ARRAY['*.read']);
SELECT reason, missing_rights FROM athena_keys.athena_authenticate(:'km', NULL, NULL, ARRAY['billing.read']);
SELECT athena_keys.athena_revoke_rights(:'km_id', ARRAY['*.read', 'users.read']);
SELECT reason, granted_rights, missing_rights
  FROM athena_keys.athena_authenticate(:'km', NULL, NULL, ARRAY['billing.read', 'users.read', 'orders.read']);
SELECT athena_keys.athena_delete_right('orders.*');
SELECT reason, granted_rights, missing_rights
  FROM athena_keys.athena_authenticate(:'km', NULL, NULL, ARRAY['orders.read']);
SELECT count(*) AS grants_of_deleted_right FROM athena_keys.api_key_right_grant WHERE right_name = 'orders.*';

-- Every seeded right deleted and created again is native again: pg_dump
-- leaves native rights out (a restore seeds them), and a non-native row of
-- a seeded name made the restore of the catalog and of every grant fail.
-- Other rights are never native.
CREATE TEMP TABLE seeded AS SELECT name FROM athena_keys.api_key_right WHERE native;
SELECT count(*) AS deleted FROM (SELECT athena_keys.athena_delete_right(name) FROM seeded) d;
SELECT count(*) AS created FROM (SELECT athena_keys.athena_create_right(name, 'again') FROM seeded) c;
SELECT count(*) AS seeded, count(*) FILTER (WHERE r.native) AS native_again
  FROM seeded s JOIN athena_keys.api_key_right r USING (name);
SELECT athena_keys.athena_create_right('orders.*');
SELECT count(*) FILTER (WHERE native) AS native_others
  FROM athena_keys.api_key_right WHERE name NOT IN (SELECT name FROM seeded);

-- A dump made by 1.3 holds a seeded right deleted and created again as a
-- non-native row; its COPY meets the seeded row on restore.  It takes the
-- seeded row's place (its description kept, still native) instead of the
-- load failing, which lost the catalog and every grant.
COPY athena_keys.api_key_right (name, description, native) FROM stdin;
gateway.query	Raw SQL, reviewed first	f
orders.restored	From the dump	f
\.
SELECT name, description, native FROM athena_keys.api_key_right
 WHERE name IN ('gateway.query', 'orders.restored') ORDER BY name;
-- A non-native row of another existing name still collides.
INSERT INTO athena_keys.api_key_right (name, native) VALUES ('orders.restored', false);

DROP EXTENSION athena_keys CASCADE;
