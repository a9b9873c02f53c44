-- athena_authenticate: every decision of SPEC section 4, first failure wins.
\set SHOW_CONTEXT never
DROP EXTENSION IF EXISTS athena_keys CASCADE;
CREATE EXTENSION athena_keys;

\set v 'allowed, status, reason, authenticated, authorized, enforced'

-- A fresh install enforces and fails closed.
SELECT enforce_api_keys, fail_mode FROM athena_keys.api_key_config;

SELECT athena_keys.athena_create_right('users.read');
SELECT athena_keys.athena_create_right('users.write');
SELECT api_key AS k1, id AS k1_id, public_id AS k1_pub
  FROM athena_keys.athena_create_key('plain', rights => ARRAY['users.read']) \gset
SELECT api_key AS kb, id AS kb_id, public_id AS kb_pub
  FROM athena_keys.athena_create_key('bound', client_name => 'Shop', rights => ARRAY['users.read']) \gset
SELECT substr(:'k1', 22) AS k1_secret \gset

------------------------------------------------------------------------
-- 2. No key presented -> API key required (401); empty or blank counts as absent.
------------------------------------------------------------------------
SELECT :v, key_id IS NULL AS no_key_id FROM athena_keys.athena_authenticate(NULL, NULL, NULL, NULL);
SELECT :v FROM athena_keys.athena_authenticate('', 'Shop', '10.0.0.1', ARRAY['users.read']);
SELECT :v FROM athena_keys.athena_authenticate(E'  \t\r\n ', 'Shop', '10.0.0.1', NULL);

------------------------------------------------------------------------
-- 3. Malformed, unknown public id, wrong secret -> Invalid API key (401).
------------------------------------------------------------------------
SELECT label, r.allowed, r.status, r.reason, r.authenticated, r.key_id IS NULL AS key_id_null
  FROM (VALUES
    ('garbage',             'garbage'),
    ('prefix only',         'ath_'),
    ('no dot',              'ath_' || :'k1_pub' || :'k1_secret'),
    ('two dots',            'ath_' || :'k1_pub' || '.' || :'k1_secret' || '.x'),
    ('ATH_ prefix',         'ATH_' || :'k1_pub' || '.' || :'k1_secret'),
    ('Ath_ prefix',         'Ath_' || :'k1_pub' || '.' || :'k1_secret'),
    ('no prefix',           :'k1_pub' || '.' || :'k1_secret'),
    ('inner space',         'ath_' || :'k1_pub' || '. ' || :'k1_secret'),
    ('id too short',        'ath_abc.' || :'k1_secret'),
    ('secret too short',    'ath_' || :'k1_pub' || '.abc'),
    ('unknown public id',   'ath_0000000000000000.' || :'k1_secret'),
    ('public id uppercase', 'ath_' || upper(:'k1_pub') || '.' || :'k1_secret'),
    ('wrong secret',        'ath_' || :'k1_pub' || '.' || repeat('0', 64)),
    ('secret uppercase',    'ath_' || :'k1_pub' || '.' || upper(:'k1_secret')),
    ('secret truncated',    'ath_' || :'k1_pub' || '.' || left(:'k1_secret', 63)),
    ('secret extended',     :'k1' || '0')
  ) AS t(label, presented),
  LATERAL athena_keys.athena_authenticate(presented, NULL, '10.0.0.1', NULL) AS r
 ORDER BY label COLLATE "C";

-- Leading and trailing white space around a genuine key is trimmed.
SELECT :v FROM athena_keys.athena_authenticate('  ' || :'k1' || E'\r\n', NULL, '10.0.0.1', NULL);
SELECT :v FROM athena_keys.athena_authenticate(E'\t' || :'k1' || ' ', NULL, '10.0.0.1', NULL);

------------------------------------------------------------------------
-- 4. Inactive (checked before expiry, client, rights and IP).
------------------------------------------------------------------------
SELECT athena_keys.athena_set_key_active(:'k1_id', false);
SELECT :v, key_id = :'k1_id' AS same_key FROM athena_keys.athena_authenticate(:'k1', 'Other', NULL, ARRAY['nope']);
BEGIN;
SELECT athena_keys.athena_set_key_expiry(:'k1_id', '-infinity');
SELECT :v FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, NULL);
ROLLBACK;
SELECT athena_keys.athena_set_key_active(:'k1_id', true);
SELECT :v FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, NULL);

------------------------------------------------------------------------
-- 5. Expired: expires_at <= the calling statement's start
-- (statement_timestamp(); the exact boundary is unit-tested in
-- test/unit/test_decision.c).  Inside a transaction that began earlier, a
-- time already passed is past: now() is the transaction's start.
------------------------------------------------------------------------
BEGIN;
SELECT athena_keys.athena_set_key_expiry(:'k1_id', now());
SELECT 'now()' AS expiry, :v FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, NULL);
SELECT athena_keys.athena_set_key_expiry(:'k1_id', now() - interval '1 microsecond');
SELECT 'now() - 1us' AS expiry, :v FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, NULL);
SELECT pg_sleep(0.01);
SELECT athena_keys.athena_set_key_expiry(:'k1_id', now() + interval '5 milliseconds');
SELECT 'now() + 5ms, 10ms later' AS expiry, :v FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, NULL);
SELECT athena_keys.athena_set_key_expiry(:'k1_id', now() + interval '1 day');
SELECT 'now() + 1 day' AS expiry, :v FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, NULL);
SELECT athena_keys.athena_set_key_expiry(:'k1_id', 'infinity');
SELECT 'infinity' AS expiry, :v FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, NULL);
SELECT athena_keys.athena_set_key_expiry(:'k1_id', '-infinity');
SELECT '-infinity' AS expiry, :v FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, NULL);
ROLLBACK;
-- Committed expiry in the past; expiry checked before client and rights.
SELECT athena_keys.athena_set_key_expiry(:'k1_id', now() - interval '1 hour');
SELECT :v, key_id = :'k1_id' AS same_key FROM athena_keys.athena_authenticate(:'k1', 'Other', NULL, ARRAY['nope']);
-- NULL removes the expiry.
SELECT athena_keys.athena_set_key_expiry(:'k1_id', NULL);
SELECT :v FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, NULL);
-- A procedure that commits between calls: its CALL is the older start, and
-- the key expiring between the two calls is expired at the second.
CREATE PROCEDURE pg_temp.expiry_across_commits(k text, key_id uuid, INOUT statuses text DEFAULT '')
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM athena_keys.athena_set_key_expiry(key_id, clock_timestamp() + interval '300 milliseconds');
  COMMIT;
  statuses := (SELECT status::text FROM athena_keys.athena_authenticate(k, NULL, NULL, NULL));
  PERFORM pg_sleep(0.5);
  COMMIT;
  statuses := statuses || ' ' || (SELECT status::text FROM athena_keys.athena_authenticate(k, NULL, NULL, NULL));
END
$$;
CALL pg_temp.expiry_across_commits(:'k1', :'k1_id');
SELECT athena_keys.athena_set_key_expiry(:'k1_id', NULL);

------------------------------------------------------------------------
-- 6. Client binding: exact and case-sensitive (403, authenticated).
------------------------------------------------------------------------
SELECT client, r.allowed, r.status, r.reason, r.authenticated, r.authorized, r.client_name
  FROM (VALUES (1, 'Shop'), (2, 'Other'), (3, NULL), (4, 'shop'), (5, 'SHOP'), (6, 'Shop '), (7, ' Shop'), (8, ''))
       AS t(n, client),
  LATERAL athena_keys.athena_authenticate(:'kb', client, '10.0.0.1', ARRAY['users.read']) AS r
 ORDER BY n;
-- Client is checked before rights.
SELECT :v FROM athena_keys.athena_authenticate(:'kb', 'Other', NULL, ARRAY['users.write']);
-- An unbound key accepts any client, or none.
SELECT client, r.allowed, r.status, r.reason, r.client_name IS NULL AS unbound
  FROM (VALUES (1, 'Shop'), (2, 'anything'), (3, NULL)) AS t(n, client),
  LATERAL athena_keys.athena_authenticate(:'k1', client, NULL, NULL) AS r
 ORDER BY n;

------------------------------------------------------------------------
-- 7. Rights (the full table is in the rights test).
------------------------------------------------------------------------
SELECT :v, granted_rights, missing_rights
  FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, ARRAY['users.read', 'users.write']);
SELECT :v, granted_rights, missing_rights
  FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, ARRAY['users.read']);

------------------------------------------------------------------------
-- 8. IP policy (details in the ip_policy test); IP is checked after rights.
------------------------------------------------------------------------
SELECT api_key AS kip, id AS kip_id
  FROM athena_keys.athena_create_key('ip', ip_whitelist => ARRAY['10.1.0.0/16']::cidr[],
                                      ip_blacklist => ARRAY['10.1.9.0/24']::cidr[]) \gset
SELECT ip, r.allowed, r.status, r.reason, r.authenticated, r.authorized
  FROM (VALUES (1, '10.1.2.3'::inet), (2, '10.1.9.9'), (3, '10.2.0.1'), (4, NULL)) AS t(n, ip),
  LATERAL athena_keys.athena_authenticate(:'kip', NULL, ip, NULL) AS r
 ORDER BY n;
-- Rights fail before the IP is looked at.
SELECT :v FROM athena_keys.athena_authenticate(:'kip', NULL, '10.2.0.1', ARRAY['users.read']);
-- Global blacklist applies to every key.
SELECT athena_keys.athena_add_ip_rule('blacklist', '192.0.2.0/24');
SELECT :v FROM athena_keys.athena_authenticate(:'k1', NULL, '192.0.2.7', NULL);
SELECT :v FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, NULL);
SELECT athena_keys.athena_remove_ip_rule('blacklist', '192.0.2.0/24');
SELECT :v FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, NULL);

------------------------------------------------------------------------
-- 9. Success: every result column.
------------------------------------------------------------------------
SELECT allowed, status, reason IS NULL AS no_reason, authenticated, authorized, enforced,
       key_id = :'kb_id' AS key_id_ok, public_id = :'kb_pub' AS public_id_ok, client_name,
       granted_rights, missing_rights, locked_in, fail_mode
  FROM athena_keys.athena_authenticate(:'kb', 'Shop', '203.0.113.5', ARRAY['users.read']);
-- Result columns of a failure before the key is identified are NULL.
SELECT key_id IS NULL AS key_id_null, public_id IS NULL AS public_id_null,
       client_name IS NULL AS client_null, granted_rights IS NULL AS granted_null,
       missing_rights IS NULL AS missing_null, locked_in, fail_mode
  FROM athena_keys.athena_authenticate('garbage', 'Shop', NULL, ARRAY['users.read']);
-- The fail mode column follows the configuration.
SELECT athena_keys.athena_set_fail_mode('fail_open');
SELECT allowed, status, reason, fail_mode FROM athena_keys.athena_authenticate(NULL, NULL, NULL, NULL);
SELECT fail_mode FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, NULL);
SELECT athena_keys.athena_set_fail_mode('fail_closed');
SELECT fail_mode FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, NULL);

------------------------------------------------------------------------
-- NULL in every argument position is normal input.
------------------------------------------------------------------------
SELECT n, r.allowed, r.status, r.reason, r.authenticated, r.missing_rights
  FROM (VALUES
    (1, NULL, NULL, NULL::inet, NULL::text[]),
    (2, :'k1', NULL, NULL, NULL),
    (3, :'k1', 'Shop', NULL, NULL),
    (4, :'k1', NULL, '10.0.0.1', NULL),
    (5, :'k1', NULL, NULL, '{}'),
    (6, :'k1', NULL, NULL, ARRAY[NULL]::text[]),
    (7, :'k1', NULL, NULL, ARRAY['users.read', NULL]),
    (8, NULL, 'Shop', '10.0.0.1', ARRAY['users.read']),
    (9, :'kb', NULL, NULL, NULL),
    (10, :'kb', 'Shop', NULL, NULL)
  ) AS t(n, k, c, ip, rights),
  LATERAL athena_keys.athena_authenticate(k, c, ip, rights) AS r
 ORDER BY n;

------------------------------------------------------------------------
-- Shadow mode: enforcement off reports the finding but allows (200).
------------------------------------------------------------------------
SELECT athena_keys.athena_set_enforcement(false);
-- No key and enforcement off: allowed, nothing evaluated.
SELECT :v, key_id IS NULL AS no_key, granted_rights IS NULL AS no_rights, missing_rights IS NULL AS no_missing
  FROM athena_keys.athena_authenticate(NULL, 'Shop', NULL, ARRAY['users.write']);
SELECT label, r.allowed, r.status, r.reason, r.authenticated, r.authorized, r.enforced
  FROM (VALUES
    (1, 'invalid',    'ath_' || :'k1_pub' || '.' || repeat('0', 64), NULL, '10.0.0.1'::inet, NULL::text[]),
    (2, 'malformed',  'nonsense', NULL, '10.0.0.1', NULL),
    (3, 'mismatch',   :'kb', 'Other', '10.0.0.1', NULL),
    (4, 'rights',     :'k1', NULL, '10.0.0.1', ARRAY['users.write']),
    (5, 'ip',         :'kip', NULL, '10.2.0.1', NULL),
    (6, 'ip required', :'kip', NULL, NULL, NULL),
    (7, 'success',    :'k1', NULL, '10.0.0.1', ARRAY['users.read'])
  ) AS t(n, label, k, c, ip, rights),
  LATERAL athena_keys.athena_authenticate(k, c, ip, rights) AS r
 ORDER BY n;
SELECT athena_keys.athena_set_key_active(:'k1_id', false);
SELECT :v FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, NULL);
SELECT athena_keys.athena_set_key_active(:'k1_id', true);
SELECT athena_keys.athena_set_key_expiry(:'k1_id', '-infinity');
SELECT :v FROM athena_keys.athena_authenticate(:'k1', NULL, NULL, NULL);
SELECT athena_keys.athena_set_key_expiry(:'k1_id', NULL);

-- Per-client override ON while global is off: that client is enforced.
SELECT athena_keys.athena_set_client_enforcement('Strict', true);
SELECT c, r.allowed, r.status, r.reason, r.enforced
  FROM (VALUES (1, 'Strict'), (2, 'strict'), (3, 'Other'), (4, NULL)) AS t(n, c),
  LATERAL athena_keys.athena_authenticate(NULL, c, NULL, NULL) AS r
 ORDER BY n;
SELECT :v FROM athena_keys.athena_authenticate(:'k1', 'Strict', NULL, ARRAY['users.write']);
SELECT :v FROM athena_keys.athena_authenticate(:'k1', 'Strict', NULL, ARRAY['users.read']);

-- Global back on; per-client override OFF: that client is in shadow mode.
SELECT athena_keys.athena_set_enforcement(true);
SELECT athena_keys.athena_set_client_enforcement('Lax', false);
SELECT c, r.allowed, r.status, r.reason, r.enforced
  FROM (VALUES (1, 'Lax'), (2, 'lax'), (3, 'Strict'), (4, NULL)) AS t(n, c),
  LATERAL athena_keys.athena_authenticate(NULL, c, NULL, NULL) AS r
 ORDER BY n;
SELECT :v FROM athena_keys.athena_authenticate(:'k1', 'Lax', NULL, ARRAY['users.write']);
SELECT :v FROM athena_keys.athena_authenticate(:'kb', 'Lax', NULL, NULL);
-- An override can be flipped and cleared.
SELECT athena_keys.athena_set_client_enforcement('Lax', true);
SELECT :v FROM athena_keys.athena_authenticate(NULL, 'Lax', NULL, NULL);
SELECT athena_keys.athena_set_client_enforcement('Lax', false);
SELECT athena_keys.athena_clear_client_enforcement('Lax') AS cleared;
SELECT athena_keys.athena_clear_client_enforcement('Lax') AS cleared_again;
SELECT :v FROM athena_keys.athena_authenticate(NULL, 'Lax', NULL, NULL);
SELECT athena_keys.athena_clear_client_enforcement('Strict') AS cleared;

------------------------------------------------------------------------
-- Rotation with a grace period.
------------------------------------------------------------------------
SELECT api_key AS r0, id AS r_id, public_id AS r_pub
  FROM athena_keys.athena_create_key('rotating', rights => ARRAY['users.read']) \gset
SELECT athena_keys.athena_rotate_key(:'r_id', interval '1 hour') AS r1 \gset
SELECT :'r1' ~ '^ath_[0-9a-f]{16}\.[0-9a-f]{64}$' AS shape_ok,
       split_part(:'r1', '.', 1) = 'ath_' || :'r_pub' AS same_public_id,
       :'r1' <> :'r0' AS new_secret;
SELECT 'old within grace' AS which, :v FROM athena_keys.athena_authenticate(:'r0', NULL, NULL, ARRAY['users.read']);
SELECT 'new' AS which, :v, key_id = :'r_id' AS same_key FROM athena_keys.athena_authenticate(:'r1', NULL, NULL, ARRAY['users.read']);
-- Rotating with grace 0 revokes the previous secret at once.
SELECT athena_keys.athena_rotate_key(:'r_id', interval '0') AS r2 \gset
SELECT 'first' AS which, :v FROM athena_keys.athena_authenticate(:'r0', NULL, NULL, NULL);
SELECT 'second' AS which, :v FROM athena_keys.athena_authenticate(:'r1', NULL, NULL, NULL);
SELECT 'third' AS which, :v FROM athena_keys.athena_authenticate(:'r2', NULL, NULL, NULL);
-- The default grace is 0.
SELECT athena_keys.athena_rotate_key(:'r_id') AS r3 \gset
SELECT 'third' AS which, :v FROM athena_keys.athena_authenticate(:'r2', NULL, NULL, NULL);
SELECT 'fourth' AS which, :v FROM athena_keys.athena_authenticate(:'r3', NULL, NULL, NULL);
-- A grace period that has run out.
SELECT athena_keys.athena_rotate_key(:'r_id', interval '10 milliseconds') AS r4 \gset
SELECT pg_sleep(0.2);
SELECT 'fourth after grace' AS which, :v FROM athena_keys.athena_authenticate(:'r3', NULL, NULL, NULL);
SELECT 'fifth' AS which, :v FROM athena_keys.athena_authenticate(:'r4', NULL, NULL, NULL);

------------------------------------------------------------------------
-- Import of an Athena key: its salt and hash keep working.
------------------------------------------------------------------------
\set imp_salt 'legacy-salt-4f1c9a'
\set imp_secret 'Athena_Legacy-Secret_0123456789abcdefXYZ'
SELECT encode(sha256(convert_to(:'imp_salt' || ':' || :'imp_secret', 'UTF8')), 'hex') AS imp_hash \gset
SELECT athena_keys.athena_import_key('Legacy_ID-01', :'imp_salt', :'imp_hash', 'imported',
                                     rights => ARRAY['users.read']) AS imp_id \gset
SELECT allowed, status, reason, authenticated, authorized, key_id = :'imp_id' AS same_key, public_id, granted_rights
  FROM athena_keys.athena_authenticate('ath_Legacy_ID-01.' || :'imp_secret', NULL, NULL, ARRAY['users.read']);
SELECT :v FROM athena_keys.athena_authenticate('ath_Legacy_ID-01.' || :'imp_secret' || 'x', NULL, NULL, NULL);
SELECT :v FROM athena_keys.athena_authenticate('ath_legacy_id-01.' || :'imp_secret', NULL, NULL, NULL);
-- An uppercase hash is accepted (and stored lowercase).
SELECT athena_keys.athena_import_key('Legacy_ID-02', :'imp_salt', upper(:'imp_hash'), 'imported upper') AS imp2_id \gset
SELECT :v, key_id = :'imp2_id' AS same_key
  FROM athena_keys.athena_authenticate('ath_Legacy_ID-02.' || :'imp_secret', NULL, NULL, NULL);
SELECT key_hash = :'imp_hash' AS stored_lowercase FROM athena_keys.api_key WHERE id = :'imp2_id';
-- Imported keys may have a client binding and expiry like any other.
SELECT athena_keys.athena_import_key('Legacy_ID-03', :'imp_salt', :'imp_hash', 'imported bound',
                                     client_name => 'Shop', expires_at => now() + interval '1 day') AS imp3_id \gset
SELECT c, r.allowed, r.status, r.reason
  FROM (VALUES (1, 'Shop'), (2, 'Other')) AS t(n, c),
  LATERAL athena_keys.athena_authenticate('ath_Legacy_ID-03.' || :'imp_secret', c, NULL, NULL) AS r
 ORDER BY n;

DROP EXTENSION athena_keys CASCADE;
