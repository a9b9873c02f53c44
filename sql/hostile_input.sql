-- Hostile input: athena_authenticate returns a verdict for anything and
-- never raises; the database is unchanged afterwards.
\set SHOW_CONTEXT never
DROP EXTENSION IF EXISTS athena_keys CASCADE;
CREATE EXTENSION athena_keys;

SELECT athena_keys.athena_create_right('users.read');
SELECT api_key AS k, id AS k_id, public_id AS k_pub
  FROM athena_keys.athena_create_key('bound', client_name => 'Shop', rights => ARRAY['users.read']) \gset
SELECT api_key AS ku FROM athena_keys.athena_create_key('unbound', rights => ARRAY['users.read']) \gset
SELECT api_key AS kstar FROM athena_keys.athena_create_key('star', rights => ARRAY['*']) \gset
SELECT split_part(:'k', '.', 2) AS k_secret \gset
SELECT count(*) AS keys_before FROM athena_keys.api_key \gset

------------------------------------------------------------------------
-- Presented keys.
------------------------------------------------------------------------
SELECT label, length(presented) AS len, r.allowed, r.status, r.reason
  FROM (VALUES
    (1,  'NULL',                     NULL),
    (2,  'empty',                    ''),
    (3,  'blanks',                   E' \t\r\n\f\x0b '),
    (4,  'garbage',                  'garbage'),
    (5,  'control chars',            E'\x01\x02\x1b[31m\x7f'),
    (6,  'control char inside',      'ath_' || :'k_pub' || E'.\x01' || :'k_secret'),
    (7,  'newline inside',           'ath_' || :'k_pub' || E'\n.' || :'k_secret'),
    (8,  'unicode',                  'ath_ключ.секрет'),
    (9,  'emoji',                    'ath_' || :'k_pub' || '.' || repeat('🔑', 20)),
    (10, 'fullwidth prefix',         'ａｔｈ_' || :'k_pub' || '.' || :'k_secret'),
    (11, 'percent-encoded',          'ath_' || :'k_pub' || '%2E' || :'k_secret'),
    (12, 'SQL injection',            'ath_''; DROP TABLE athena_keys.api_key; --'),
    (13, 'SQL injection in id',      'ath_x'' OR ''1''=''1.' || :'k_secret'),
    (14, 'LIKE wildcard id',         'ath_%%%%%%%%.' || :'k_secret'),
    (15, 'regex id',                 'ath_.*.*.*.*.' || :'k_secret'),
    (16, '1 MB of a',                repeat('a', 1048576)),
    (17, '1 MB after prefix',        'ath_' || repeat('a', 1048576)),
    (18, '1 MB secret',              'ath_' || :'k_pub' || '.' || repeat('b', 1048576)),
    (19, 'id too long (65)',         'ath_' || repeat('a', 65) || '.' || repeat('b', 64)),
    (20, 'secret too long (257)',    'ath_' || repeat('a', 16) || '.' || repeat('b', 257)),
    (21, 'id too short (7)',         'ath_' || repeat('a', 7) || '.' || repeat('b', 64)),
    (22, 'secret too short (15)',    'ath_' || repeat('a', 16) || '.' || repeat('b', 15)),
    (23, 'only dots',                'ath_........'),
    (24, 'many dots',                'ath_' || :'k_pub' || '..' || :'k_secret'),
    (25, 'prefix twice',             'ath_ath_' || :'k_pub' || '.' || :'k_secret'),
    (26, 'key twice',                :'k' || ' ' || :'k'),
    (27, 'key comma key',            :'k' || ',' || :'k'),
    (28, 'Bearer prefix',            'Bearer ' || :'k'),
    (29, 'quoted key',               '"' || :'k' || '"'),
    (30, 'trailing NBSP',            :'k' || U&'\00A0'),
    (31, 'genuine, blanks around',   E'\x0b\f ' || :'k' || E' \r\n')
  ) AS t(n, label, presented),
  LATERAL athena_keys.athena_authenticate(presented, 'Shop', '192.0.2.1', ARRAY['users.read']) r
 ORDER BY n;

-- Parser limits are inclusive: 8-64 character ids, 16-256 character secrets (imported keys).
SELECT athena_keys.athena_import_key(repeat('p', 8), 'salt8', encode(sha256(convert_to('salt8:' || repeat('s', 16), 'UTF8')), 'hex'), 'short parts') IS NOT NULL AS imported;
SELECT athena_keys.athena_import_key(repeat('P', 64), 'salt64', encode(sha256(convert_to('salt64:' || repeat('S', 256), 'UTF8')), 'hex'), 'long parts') IS NOT NULL AS imported;
SELECT keys_before + 2 AS keys_before FROM (SELECT :keys_before AS keys_before) s \gset
SELECT label, r.allowed, r.status, r.reason
  FROM (VALUES
    (1, '8 / 16',    'ath_' || repeat('p', 8) || '.' || repeat('s', 16)),
    (2, '64 / 256',  'ath_' || repeat('P', 64) || '.' || repeat('S', 256)),
    (3, '8 / 17',    'ath_' || repeat('p', 8) || '.' || repeat('s', 17)),
    (4, '64 / 255',  'ath_' || repeat('P', 64) || '.' || repeat('S', 255))
  ) AS t(n, label, presented),
  LATERAL athena_keys.athena_authenticate(presented, NULL, NULL, NULL) r
 ORDER BY n;

------------------------------------------------------------------------
-- Client names.
------------------------------------------------------------------------
SELECT label, length(c) AS len, rb.status AS bound_status, rb.reason AS bound_reason,
       ru.status AS unbound_status, ru.reason AS unbound_reason
  FROM (VALUES
    (1,  'NULL',               NULL),
    (2,  'empty',              ''),
    (3,  'exact',              'Shop'),
    (4,  'trailing newline',   E'Shop\n'),
    (5,  'NUL-like escape',    'Shop\0'),
    (6,  'control chars',      E'Shop\x01\x1b'),
    (7,  'SQL injection',      '''; DROP TABLE athena_keys.api_key; --'),
    (8,  'SQL injection 2',    'Shop''); DELETE FROM athena_keys.api_key; --'),
    (9,  'format specifiers',  '%s%s%s%n%x'),
    (10, 'unicode',            'Шоп'),
    (11, 'combining accent',   U&'Sho\0070\0301'),
    (12, '1 MB',               repeat('c', 1048576)),
    (13, '1 MB multibyte',     repeat('é', 524288)),
    (14, '1 MB starting Shop', 'Shop' || repeat(' ', 1048576))
  ) AS t(n, label, c),
  LATERAL athena_keys.athena_authenticate(:'k', c, '192.0.2.1', ARRAY['users.read']) rb,
  LATERAL athena_keys.athena_authenticate(:'ku', c, '192.0.2.1', ARRAY['users.read']) ru
 ORDER BY n;
-- Client overrides and IP rules for a huge or odd client name match nothing.
SELECT r.allowed, r.enforced FROM athena_keys.athena_authenticate(NULL, repeat('c', 1048576), NULL, NULL) r;
-- Logged client names are valid text and a prefix of what was presented.
SELECT count(*) AS big_client_rows,
       bool_and(client_name = left(repeat('c', 1048576), length(client_name))) AS prefix_of_presented
  FROM athena_keys.api_key_auth_log WHERE client_name LIKE 'cccc%';
SELECT count(*) AS multibyte_client_rows,
       bool_and(client_name = left(repeat('é', 524288), length(client_name))) AS prefix_of_presented,
       bool_and(convert_from(convert_to(client_name, 'UTF8'), 'UTF8') = client_name) AS valid_utf8
  FROM athena_keys.api_key_auth_log WHERE client_name LIKE 'éé%';

------------------------------------------------------------------------
-- Required rights.
------------------------------------------------------------------------
SELECT label, cardinality(rights) AS n_required, r.allowed, r.reason,
       cardinality(r.missing_rights) AS n_missing,
       (SELECT array_agg(regexp_replace(left(m, 12), '[[:cntrl:]]', '?', 'g')) FROM unnest(r.missing_rights[1:3]) m) AS first_missing
  FROM (VALUES
    (1,  'NULL',                       NULL::text[]),
    (2,  'empty',                      '{}'::text[]),
    (3,  'empty string',               ARRAY['']),
    (4,  'only NULLs (10000)',         array_fill(NULL::text, ARRAY[10000])),
    (5,  '10000 x "x"',                array_fill('x'::text, ARRAY[10000])),
    (6,  'r1..r10000',                 ARRAY(SELECT 'r' || g FROM generate_series(1, 10000) g)),
    (7,  '10000 x users.read',         array_fill('users.read'::text, ARRAY[10000])),
    (8,  'two-dimensional',            ARRAY[['users.read', 'a'], ['b', 'c']]),
    (9,  '1 MB right',                 ARRAY[repeat('r', 1048576)]),
    (10, 'control chars',              ARRAY[E'users.read\n', E'\x01']),
    (11, 'SQL injection',              ARRAY['''; DROP TABLE athena_keys.api_key_right; --']),
    (12, 'wildcards as required',      ARRAY['*', 'users.*', '*.read']),
    (13, 'non-default lower bound',    '[5:6]={users.read,users.write}'::text[])
  ) AS t(n, label, rights),
  LATERAL athena_keys.athena_authenticate(:'ku', NULL, '192.0.2.1', rights) r
 ORDER BY n;
-- A key holding * satisfies even 10000 distinct rights.
SELECT allowed, reason, missing_rights
  FROM athena_keys.athena_authenticate(:'kstar', NULL, NULL, ARRAY(SELECT 'r' || g FROM generate_series(1, 10000) g));

------------------------------------------------------------------------
-- Addresses.
------------------------------------------------------------------------
SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.0/8', client_name => 'Walled');
SELECT label, r.allowed, r.reason
  FROM (VALUES
    (1, 'NULL',            NULL::inet),
    (2, 'any v4',          '0.0.0.0'),
    (3, 'broadcast',       '255.255.255.255'),
    (4, 'v6 unspecified',  '::'),
    (5, 'v6 all ones',     'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'),
    (6, 'inside',          '10.255.255.255'),
    (7, 'mapped inside',   '::ffff:10.1.2.3'),
    (8, 'v4-compatible',   '::10.1.2.3')
  ) AS t(n, label, ip),
  LATERAL athena_keys.athena_authenticate(:'ku', 'Walled', ip, NULL) r
 ORDER BY n;

------------------------------------------------------------------------
-- Rights that take long to match stop at the caller's statement_timeout:
-- a key with 1,000 "*.aN" rights and one 10 MB required right scans the
-- right 1,000 times (several seconds); the cancel must end the call within
-- the timeout, not after the rights step.
------------------------------------------------------------------------
SELECT count(athena_keys.athena_create_right('*.a' || g)) AS wildcard_rights
  FROM generate_series(1, 1000) g;
SELECT api_key AS kmany, id AS kmany_id FROM athena_keys.athena_create_key('many rights',
       rights => (SELECT array_agg('*.a' || g) FROM generate_series(1, 1000) g)) \gset
CREATE TEMP TABLE long_right AS SELECT ARRAY[repeat('x', 10000000)] AS required;
SELECT clock_timestamp() AS before_cancel \gset
SET statement_timeout = '300ms';
SELECT athena_keys.athena_gateway_verdict(:'kmany', NULL, NULL, (SELECT required FROM long_right));
RESET statement_timeout;
SELECT clock_timestamp() - :'before_cancel'::timestamptz < interval '3 seconds' AS cancelled_in_time;
DROP TABLE long_right;
SELECT athena_keys.athena_delete_key(:'kmany_id');

------------------------------------------------------------------------
-- All at once, and the database is consistent afterwards.
------------------------------------------------------------------------
SELECT r.status, r.reason
  FROM athena_keys.athena_authenticate(repeat(E'\x01', 1048576), repeat('''; --', 200000), '::',
                                        array_fill(''''::text, ARRAY[10000])) r;
SELECT count(*) = :keys_before AS api_key_count_unchanged FROM athena_keys.api_key;
SELECT to_regclass('athena_keys.api_key') IS NOT NULL AS api_key_exists,
       to_regclass('athena_keys.api_key_right') IS NOT NULL AS api_key_right_exists,
       to_regclass('athena_keys.api_key_auth_log') IS NOT NULL AS auth_log_exists;
SELECT count(*) AS catalog_rights_with_quotes FROM athena_keys.api_key_right WHERE name LIKE '%''%';
SELECT allowed, reason FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.1', ARRAY['users.read']);
SELECT count(*) > 0 AS log_rows, count(*) FILTER (WHERE status NOT IN (200, 401, 403)) AS odd_statuses
  FROM athena_keys.api_key_auth_log;
SELECT count(*) AS rows_with_secret FROM athena_keys.api_key_auth_log l WHERE strpos(l::text, :'k_secret') > 0;

DROP EXTENSION athena_keys CASCADE;
