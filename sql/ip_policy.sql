-- IP policy (SPEC section 5): global and per-key blacklists and whitelists,
-- precedence, CIDR edges, IPv6, IPv4-mapped addresses, admin functions.
\set SHOW_CONTEXT never
DROP EXTENSION IF EXISTS athena_keys CASCADE;
CREATE EXTENSION athena_keys;

-- verdict(key, client, ip): 'allowed' or '<status> <reason>'.
CREATE FUNCTION pg_temp.verdict(k text, c text, ip inet) RETURNS text
LANGUAGE sql AS $$
  SELECT CASE WHEN r.allowed AND r.reason IS NULL THEN 'allowed'
              ELSE r.status || ' ' || coalesce(r.reason, '?') END
    FROM athena_keys.athena_authenticate(k, c, ip, NULL) r
$$;

SELECT api_key AS ka, id AS ka_id FROM athena_keys.athena_create_key('key a') \gset
SELECT api_key AS kb, id AS kb_id FROM athena_keys.athena_create_key('key b') \gset

-- No rules at all: any address, or none, is fine.
SELECT ip, pg_temp.verdict(:'ka', NULL, ip)
  FROM (VALUES (1, '192.0.2.1'::inet), (2, '2001:db8::1'), (3, NULL)) AS t(n, ip) ORDER BY n;

------------------------------------------------------------------------
-- Global blacklist for every client.
------------------------------------------------------------------------
SELECT athena_keys.athena_add_ip_rule('blacklist', '198.51.100.0/24', label => 'bad net');
SELECT n, k, c, ip, v, v = expected AS ok
  FROM (VALUES
    (1, 'a', NULL,    '198.51.100.7'::inet, '403 IP blocked'),
    (2, 'b', NULL,    '198.51.100.7',       '403 IP blocked'),
    (3, 'a', 'Shop',  '198.51.100.7',       '403 IP blocked'),
    (4, 'b', 'Other', '198.51.100.255',     '403 IP blocked'),
    (5, 'a', NULL,    '198.51.101.1',       'allowed'),
    (6, 'a', NULL,    NULL,                 '403 Client IP required')
  ) AS t(n, k, c, ip, expected),
  LATERAL pg_temp.verdict(CASE k WHEN 'a' THEN :'ka' ELSE :'kb' END, c, ip) AS v
 ORDER BY n;
SELECT athena_keys.athena_remove_ip_rule('blacklist', '198.51.100.0/24') AS removed;
SELECT athena_keys.athena_remove_ip_rule('blacklist', '198.51.100.0/24') AS removed_again;
SELECT pg_temp.verdict(:'ka', NULL, '198.51.100.7');

------------------------------------------------------------------------
-- Global blacklist scoped to one client: applies to that client only (exact name).
------------------------------------------------------------------------
SELECT athena_keys.athena_add_ip_rule('blacklist', '198.51.100.0/24', client_name => 'Shop');
SELECT n, c, ip, v, v = expected AS ok
  FROM (VALUES
    (1, 'Shop',  '198.51.100.7'::inet, '403 IP blocked'),
    (2, 'Other', '198.51.100.7',       'allowed'),
    (3, NULL,    '198.51.100.7',       'allowed'),
    (4, 'shop',  '198.51.100.7',       'allowed'),
    (5, 'Shop',  '198.51.101.7',       'allowed'),
    (6, 'Shop',  NULL,                 '403 Client IP required'),
    (7, 'Other', NULL,                 'allowed'),
    (8, NULL,    NULL,                 'allowed')
  ) AS t(n, c, ip, expected),
  LATERAL pg_temp.verdict(:'ka', c, ip) AS v
 ORDER BY n;
-- Removing needs the same scope.
SELECT athena_keys.athena_remove_ip_rule('blacklist', '198.51.100.0/24') AS removed_unscoped;
SELECT athena_keys.athena_remove_ip_rule('blacklist', '198.51.100.0/24', client_name => 'Other') AS removed_other;
SELECT athena_keys.athena_remove_ip_rule('blacklist', '198.51.100.0/24', client_name => 'Shop') AS removed_shop;
SELECT pg_temp.verdict(:'ka', 'Shop', '198.51.100.7');

------------------------------------------------------------------------
-- Per-key blacklist: that key only.
------------------------------------------------------------------------
SELECT athena_keys.athena_add_ip_rule('blacklist', '203.0.113.0/24', key_id => :'ka_id');
SELECT n, k, ip, v, v = expected AS ok
  FROM (VALUES
    (1, 'a', '203.0.113.9'::inet, '403 IP blocked'),
    (2, 'b', '203.0.113.9',       'allowed'),
    (3, 'a', '203.0.114.9',       'allowed'),
    (4, 'a', NULL,                '403 Client IP required'),
    (5, 'b', NULL,                'allowed')
  ) AS t(n, k, ip, expected),
  LATERAL pg_temp.verdict(CASE k WHEN 'a' THEN :'ka' ELSE :'kb' END, NULL, ip) AS v
 ORDER BY n;

------------------------------------------------------------------------
-- A blacklist beats any whitelist that also contains the address.
------------------------------------------------------------------------
SELECT athena_keys.athena_add_ip_rule('whitelist', '203.0.113.0/24', key_id => :'ka_id');
SELECT athena_keys.athena_add_ip_rule('whitelist', '203.0.0.0/16');
SELECT pg_temp.verdict(:'ka', NULL, '203.0.113.9') AS per_key_black_vs_both_white;
SELECT athena_keys.athena_add_ip_rule('blacklist', '203.0.113.9');
SELECT pg_temp.verdict(:'kb', NULL, '203.0.113.9') AS global_black_vs_global_white;
SELECT athena_keys.athena_add_ip_rule('whitelist', '203.0.113.9', key_id => :'kb_id');
SELECT pg_temp.verdict(:'kb', NULL, '203.0.113.9') AS global_black_vs_key_white;
SELECT pg_temp.verdict(:'kb', NULL, '203.0.113.10') AS neighbour_not_in_key_white;
-- Clean up for the next section.
SELECT athena_keys.athena_remove_ip_rule('blacklist', '203.0.113.9') AS r1,
       athena_keys.athena_remove_ip_rule('whitelist', '203.0.0.0/16') AS r2,
       athena_keys.athena_remove_ip_rule('whitelist', '203.0.113.9', key_id => :'kb_id') AS r3,
       athena_keys.athena_remove_ip_rule('whitelist', '203.0.113.9', key_id => :'kb_id') AS r3_again,
       athena_keys.athena_remove_ip_rule('whitelist', '203.0.113.0/24', key_id => :'ka_id') AS r4,
       athena_keys.athena_remove_ip_rule('blacklist', '203.0.113.0/24', key_id => :'ka_id') AS r5;
SELECT count(*) AS rules_left FROM athena_keys.athena_ip_rules;
SELECT pg_temp.verdict(:'ka', NULL, '203.0.113.9');

------------------------------------------------------------------------
-- Whitelists are gates: global, then per key; passing one does not skip the other.
------------------------------------------------------------------------
SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.0/8');
SELECT api_key AS kc, id AS kc_id
  FROM athena_keys.athena_create_key('key c', ip_whitelist => ARRAY['10.1.0.0/16', '192.168.7.0/24']::cidr[]) \gset
SELECT n, k, ip, v, v = expected AS ok
  FROM (VALUES
    -- key a has no per-key whitelist: only the global gate
    (1, 'a', '10.200.0.1'::inet, 'allowed'),
    (2, 'a', '192.168.1.1',      '403 IP not allowed'),
    (3, 'a', NULL,               '403 Client IP required'),
    -- key c: both gates
    (4, 'c', '10.1.2.3',         'allowed'),
    (5, 'c', '10.2.0.1',         '403 IP not allowed'),
    (6, 'c', '192.168.7.7',      '403 IP not allowed'),
    (7, 'c', '172.16.0.1',       '403 IP not allowed'),
    (8, 'c', NULL,               '403 Client IP required')
  ) AS t(n, k, ip, expected),
  LATERAL pg_temp.verdict(CASE k WHEN 'a' THEN :'ka' ELSE :'kc' END, NULL, ip) AS v
 ORDER BY n;
-- Without the global whitelist only the per-key gate is left.
SELECT athena_keys.athena_remove_ip_rule('whitelist', '10.0.0.0/8') AS removed;
SELECT n, k, ip, v, v = expected AS ok
  FROM (VALUES
    (1, 'a', '192.168.1.1'::inet, 'allowed'),
    (2, 'a', NULL,                'allowed'),
    (3, 'c', '192.168.7.7',       'allowed'),
    (4, 'c', '10.1.255.255',      'allowed'),
    (5, 'c', '10.2.0.1',          '403 IP not allowed'),
    (6, 'c', NULL,                '403 Client IP required')
  ) AS t(n, k, ip, expected),
  LATERAL pg_temp.verdict(CASE k WHEN 'a' THEN :'ka' ELSE :'kc' END, NULL, ip) AS v
 ORDER BY n;

------------------------------------------------------------------------
-- A global whitelist scoped to a client applies to that client only.
------------------------------------------------------------------------
SELECT athena_keys.athena_add_ip_rule('whitelist', '172.16.0.0/12', client_name => 'Shop');
SELECT n, c, ip, v, v = expected AS ok
  FROM (VALUES
    (1, 'Shop',  '172.20.1.1'::inet, 'allowed'),
    (2, 'Shop',  '10.1.1.1',         '403 IP not allowed'),
    (3, 'Shop',  NULL,               '403 Client IP required'),
    (4, 'Other', '10.1.1.1',         'allowed'),
    (5, NULL,    '10.1.1.1',         'allowed'),
    (6, 'SHOP',  '10.1.1.1',         'allowed'),
    (7, 'Other', NULL,               'allowed')
  ) AS t(n, c, ip, expected),
  LATERAL pg_temp.verdict(:'ka', c, ip) AS v
 ORDER BY n;
-- With an every-client whitelist too, Shop may use either; others only the shared one.
SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.0/8');
SELECT n, c, ip, v, v = expected AS ok
  FROM (VALUES
    (1, 'Shop',  '172.20.1.1'::inet, 'allowed'),
    (2, 'Shop',  '10.1.1.1',         'allowed'),
    (3, 'Shop',  '192.168.0.1',      '403 IP not allowed'),
    (4, 'Other', '10.1.1.1',         'allowed'),
    (5, 'Other', '172.20.1.1',       '403 IP not allowed'),
    (6, NULL,    '172.20.1.1',       '403 IP not allowed')
  ) AS t(n, c, ip, expected),
  LATERAL pg_temp.verdict(:'ka', c, ip) AS v
 ORDER BY n;
SELECT athena_keys.athena_remove_ip_rule('whitelist', '10.0.0.0/8') AS r1,
       athena_keys.athena_remove_ip_rule('whitelist', '172.16.0.0/12', client_name => 'Shop') AS r2;

------------------------------------------------------------------------
-- CIDR edges: /24, /32, /128, IPv6 ranges.
------------------------------------------------------------------------
SELECT api_key AS k24 FROM athena_keys.athena_create_key('slash 24', ip_whitelist => ARRAY['192.0.2.0/24']::cidr[]) \gset
SELECT api_key AS k32, id AS k32_id FROM athena_keys.athena_create_key('slash 32', ip_whitelist => ARRAY['198.18.0.1']::cidr[]) \gset
SELECT api_key AS k128, id AS k128_id FROM athena_keys.athena_create_key('slash 128', ip_whitelist => ARRAY['2001:db8::1']::cidr[]) \gset
SELECT api_key AS k6 FROM athena_keys.athena_create_key('v6 range', ip_whitelist => ARRAY['2001:db8:1::/48']::cidr[]) \gset
-- A bare address is stored as /32 or /128.
SELECT addr, masklen(addr) FROM athena_keys.api_key_ip_rule
 WHERE api_key_id IN (:'k32_id', :'k128_id') ORDER BY family(addr);
SELECT n, k, ip, v, v = expected AS ok
  FROM (VALUES
    (1,  '/24',  '192.0.2.0'::inet,      'allowed'),
    (2,  '/24',  '192.0.2.255',          'allowed'),
    (3,  '/24',  '192.0.2.128',          'allowed'),
    (4,  '/24',  '192.0.1.255',          '403 IP not allowed'),
    (5,  '/24',  '192.0.3.0',            '403 IP not allowed'),
    (6,  '/24',  '::ffff:192.0.2.200',   'allowed'),
    (7,  '/32',  '198.18.0.1',           'allowed'),
    (8,  '/32',  '198.18.0.0',           '403 IP not allowed'),
    (9,  '/32',  '198.18.0.2',           '403 IP not allowed'),
    (10, '/128', '2001:db8::1',          'allowed'),
    (11, '/128', '2001:db8::2',          '403 IP not allowed'),
    (12, '/128', '2001:db8::',           '403 IP not allowed'),
    (13, '/48',  '2001:db8:1::',         'allowed'),
    (14, '/48',  '2001:db8:1:ffff:ffff:ffff:ffff:ffff', 'allowed'),
    (15, '/48',  '2001:db8:1:abcd::7',   'allowed'),
    (16, '/48',  '2001:db8:0:ffff:ffff:ffff:ffff:ffff', '403 IP not allowed'),
    (17, '/48',  '2001:db8:2::',         '403 IP not allowed'),
    -- families never match each other (apart from IPv4-mapped addresses)
    (18, '/48',  '10.0.0.1',             '403 IP not allowed'),
    (19, '/24',  '2001:db8:1::1',        '403 IP not allowed'),
    (20, '/24',  '::192.0.2.1',          '403 IP not allowed')
  ) AS t(n, k, ip, expected),
  LATERAL pg_temp.verdict(CASE k WHEN '/24' THEN :'k24' WHEN '/32' THEN :'k32'
                                 WHEN '/128' THEN :'k128' ELSE :'k6' END, NULL, ip) AS v
 ORDER BY n;

------------------------------------------------------------------------
-- IPv4-mapped IPv6 addresses are matched as IPv4, on either side.
------------------------------------------------------------------------
SELECT api_key AS km4 FROM athena_keys.athena_create_key('v4 rule', ip_whitelist => ARRAY['10.0.0.0/24']::cidr[]) \gset
SELECT api_key AS km6 FROM athena_keys.athena_create_key('mapped rule', ip_whitelist => ARRAY['::ffff:10.0.0.0/104']::cidr[]) \gset
SELECT api_key AS kmb FROM athena_keys.athena_create_key('mapped black', ip_blacklist => ARRAY['::ffff:10.0.0.1/128']::cidr[]) \gset
SELECT n, k, ip, v, v = expected AS ok
  FROM (VALUES
    (1, 'v4 rule',      '::ffff:10.0.0.1'::inet, 'allowed'),
    (2, 'v4 rule',      '::ffff:10.0.1.1',       '403 IP not allowed'),
    (3, 'v4 rule',      '10.0.0.1',              'allowed'),
    (4, 'mapped rule',  '10.0.0.1',              'allowed'),
    (5, 'mapped rule',  '10.255.0.1',            'allowed'),
    (6, 'mapped rule',  '11.0.0.1',              '403 IP not allowed'),
    (7, 'mapped rule',  '::ffff:10.9.9.9',       'allowed'),
    (8, 'mapped black', '10.0.0.1',              '403 IP blocked'),
    (9, 'mapped black', '::ffff:10.0.0.1',       '403 IP blocked'),
    (10, 'mapped black', '10.0.0.2',             'allowed')
  ) AS t(n, k, ip, expected),
  LATERAL pg_temp.verdict(CASE k WHEN 'v4 rule' THEN :'km4' WHEN 'mapped rule' THEN :'km6' ELSE :'kmb' END, NULL, ip) AS v
 ORDER BY n;
-- The global blacklist too.
SELECT athena_keys.athena_add_ip_rule('blacklist', '100.64.0.0/10');
SELECT pg_temp.verdict(:'ka', NULL, '::ffff:100.64.1.1') AS mapped_caller_global_black;
SELECT athena_keys.athena_remove_ip_rule('blacklist', '100.64.0.0/10') AS removed;

------------------------------------------------------------------------
-- Host bits set are rejected, nothing is stored.
------------------------------------------------------------------------
SELECT count(*) AS rules_before FROM athena_keys.athena_ip_rules \gset
SELECT '10.0.0.5/24'::cidr;
SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.5/24');
SELECT athena_keys.athena_add_ip_rule('blacklist', '2001:db8::1/64', key_id => :'ka_id');
SELECT athena_keys.athena_create_key('host bits', ip_whitelist => ARRAY['10.0.0.5/24']::cidr[]);
SELECT count(*) = :rules_before AS nothing_added FROM athena_keys.athena_ip_rules;
SELECT count(*) AS host_bits_keys FROM athena_keys.api_key WHERE name = 'host bits';

------------------------------------------------------------------------
-- Per-key rules on a missing key, and a bad list name, are errors.
------------------------------------------------------------------------
SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.0/8', key_id => '00000000-0000-0000-0000-000000000000');
SELECT athena_keys.athena_remove_ip_rule('whitelist', '10.0.0.0/8', key_id => '00000000-0000-0000-0000-000000000000');
SELECT athena_keys.athena_add_ip_rule('greylist', '10.0.0.0/8');
SELECT count(*) = :rules_before AS nothing_added FROM athena_keys.athena_ip_rules;

-- Adding the same rule twice keeps one entry (and takes the new label).
SELECT athena_keys.athena_add_ip_rule('blacklist', '192.0.2.66', label => 'first');
SELECT athena_keys.athena_add_ip_rule('blacklist', '192.0.2.66', label => 'second');
SELECT scope, list, addr, client_name, label FROM athena_keys.athena_ip_rules WHERE addr = '192.0.2.66';
SELECT athena_keys.athena_remove_ip_rule('blacklist', '192.0.2.66') AS removed;

-- Deleting a key removes its rules.
SELECT athena_keys.athena_delete_key(:'kc_id');
SELECT count(*) AS rules_of_deleted_key FROM athena_keys.api_key_ip_rule WHERE api_key_id = :'kc_id';

-- The SQL normaliser that judges a whitelist after another call's lock-in
-- (_learn) unmaps what ip_rules.c unmaps, and nothing else: networks inside
-- ::ffff:0:0/96 with prefix 96 to 128 become IPv4; shorter prefixes, other
-- IPv6 and IPv4 stay as they are.
SELECT a AS given, athena_keys._ipv4_unmapped(a::inet) AS unmapped
  FROM unnest(ARRAY['::ffff:10.0.0.0/104', '::ffff:10.1.2.3', '::ffff:0:0/96', '::ffff:0:0/95',
                    '::ffff:192.0.2.128/121', '::ffff:255.255.255.255/128', '::/0', '2001:db8::/32',
                    '::fffe:10.0.0.1', '10.0.0.0/8', '192.0.2.7']) AS a;
SELECT athena_keys._ipv4_unmapped('::ffff:10.0.0.0/104'::cidr) >>= '10.9.8.7'::inet AS mapped_rule_covers_ipv4,
       athena_keys._ipv4_unmapped(NULL) IS NULL AS null_stays_null;

DROP EXTENSION athena_keys CASCADE;
