-- Hostile input to the admin functions: every value gets a proper error
-- or a correct result, and a failed call changes nothing.
\set SHOW_CONTEXT never
DROP EXTENSION IF EXISTS athena_keys CASCADE;
CREATE EXTENSION athena_keys;
CREATE TEMP VIEW snapshot AS
SELECT (SELECT count(*) FROM athena_keys.api_key) AS keys,
       (SELECT count(*) FROM athena_keys.api_key_right) AS rights,
       (SELECT count(*) FROM athena_keys.api_key_right_grant) AS grants,
       (SELECT count(*) FROM athena_keys.api_key_ip_rule) + (SELECT count(*) FROM athena_keys.api_key_global_ip_rule) AS rules;
SELECT id AS k_id FROM athena_keys.athena_create_key('target') \gset
SELECT * FROM snapshot;

-- Overflowing and negative numbers.
SELECT athena_keys.athena_create_key('n', virgin_mode => true, virgin_until_n_requests => 2147483648::integer);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('n', virgin_mode => true, max_whitelist_ips => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_maintain_auth_log(2147483647);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_rotate_key(:'k_id', interval '1000000 years');
\echo :LAST_ERROR_SQLSTATE

-- Infinite timestamps are valid expiries: infinity never expires, -infinity always has.
SELECT athena_keys.athena_set_key_expiry(:'k_id', 'infinity');
SELECT state FROM athena_keys.athena_key_status WHERE id = :'k_id';
SELECT athena_keys.athena_set_key_expiry(:'k_id', '-infinity');
SELECT state FROM athena_keys.athena_key_status WHERE id = :'k_id';

-- Injection-shaped names, labels and clients are data, never SQL.
SELECT athena_keys.athena_create_right('x''; DROP TABLE athena_keys.api_key; --');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_add_ip_rule('blacklist', '192.0.2.0/24', label => '''); DROP TABLE athena_keys.api_key; --');
SELECT athena_keys.athena_add_ip_rule('whitelist', '192.0.2.0/24', client_name => 'c"; DROP SCHEMA athena_keys CASCADE; --');
SELECT athena_keys.athena_set_client_enforcement('x'';' || chr(1) || '--', false);
SELECT label, client_name FROM athena_keys.athena_ip_rules ORDER BY list;
SELECT client_name = 'x'';' || chr(1) || '--' AS stored_verbatim FROM athena_keys.api_key_client_config;
SELECT athena_keys.athena_add_ip_rule('blacklist; DROP TABLE x', '192.0.2.0/24');
\echo :LAST_ERROR_SQLSTATE

-- Huge strings and arrays.
SELECT athena_keys.athena_create_key(repeat('n', 1048576));
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_add_ip_rule('blacklist', '198.51.100.0/24', label => repeat('l', 1048576));
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_grant_rights(:'k_id', ARRAY(SELECT 'r' || g FROM generate_series(1, 10000) g));
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('big', ip_whitelist => ARRAY(SELECT ('10.' || (g / 256) || '.' || (g % 256) || '.0/24')::cidr FROM generate_series(0, 9999) g)) IS NOT NULL AS created;
SELECT whitelist_size FROM athena_keys.athena_key_status WHERE name = 'big';
SELECT athena_keys.athena_create_key('null rules', ip_whitelist => ARRAY[NULL]::cidr[]);
\echo :LAST_ERROR_SQLSTATE

-- Nothing but the 'big' key, the two accepted rules and the override was added.
SELECT * FROM snapshot;
DROP EXTENSION athena_keys CASCADE;
