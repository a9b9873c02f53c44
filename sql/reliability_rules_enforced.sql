-- A rule the admin functions accept is enforced, and the per-backend cache
-- grows with the number of rules, never with clients times rules.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
RESET client_min_messages;
CREATE EXTENSION athena_keys;

\set v 'allowed, status, reason, enforced'
SELECT api_key AS k FROM athena_keys.athena_create_key('names') \gset

------------------------------------------------------------------------
-- Client names are limited to 256 characters; a name of 200 two-byte
-- characters (400 bytes) is accepted by every admin function, so its
-- enforcement override and its client-scoped rules apply.
------------------------------------------------------------------------
SELECT repeat('é', 200) AS wide, repeat('ж', 256) AS widest \gset
SELECT length(:'wide') AS chars, octet_length(:'wide') AS bytes;
SELECT athena_keys.athena_set_client_enforcement(:'wide', false);
SELECT athena_keys.athena_add_ip_rule('blacklist', '192.0.2.0/24', client_name => :'widest');
SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.0/8', client_name => :'wide');
-- The override: no key is needed for this client.
SELECT :v FROM athena_keys.athena_authenticate(NULL, :'wide', '10.0.0.1', NULL);
-- The whitelist and the blacklist scoped to these clients.
SELECT athena_keys.athena_clear_client_enforcement(:'wide');
SELECT :v FROM athena_keys.athena_authenticate(:'k', :'wide', '172.16.0.1', NULL);
SELECT :v FROM athena_keys.athena_authenticate(:'k', :'wide', '10.0.0.1', NULL);
SELECT :v FROM athena_keys.athena_authenticate(:'k', :'widest', '192.0.2.9', NULL);
SELECT :v FROM athena_keys.athena_authenticate(:'k', :'widest', '10.0.0.1', NULL);
-- The log keeps the whole name.
SELECT count(*) AS logged_whole FROM athena_keys.api_key_auth_log WHERE client_name = :'widest';
-- One character more is refused up front.
SELECT athena_keys.athena_set_client_enforcement(:'widest' || 'ж', false);

------------------------------------------------------------------------
-- 2,000 client-scoped rules, one per client: the cache holds them in a
-- few megabytes (it took 138 MB when every client's list was sized for
-- all rules).
------------------------------------------------------------------------
SELECT count(athena_keys.athena_add_ip_rule('blacklist',
         ('10.' || (g / 250) || '.' || (g % 250) || '.0/24')::cidr,
         client_name => 'tenant-' || g))
  FROM generate_series(1, 2000) g;
SELECT :v FROM athena_keys.athena_authenticate(:'k', 'tenant-77', '10.0.77.5', NULL);
SELECT :v FROM athena_keys.athena_authenticate(:'k', 'tenant-78', '10.0.77.5', NULL);
SELECT sum(total_bytes) < 16 * 1024 * 1024 AS cache_under_16mb,
       sum(total_bytes) < 8 * 1024 * 1024 AS cache_under_8mb
  FROM pg_backend_memory_contexts WHERE name LIKE 'athena_keys%';

------------------------------------------------------------------------
-- 20,000 client overrides: an entry costs its name, not the longest name
-- a client may have (each took 1.1 kB, 23.7 MB for these, when the cache
-- keyed clients by a fixed 1,025-byte buffer).
------------------------------------------------------------------------
SELECT count(athena_keys.athena_set_client_enforcement('override-' || g, g % 2 = 0))
  FROM generate_series(1, 20000) g;
SELECT :v FROM athena_keys.athena_authenticate(NULL, 'override-19999', '10.0.0.1', NULL);
SELECT :v FROM athena_keys.athena_authenticate(NULL, 'override-20000', '10.0.0.1', NULL);
SELECT :v FROM athena_keys.athena_authenticate(NULL, 'override-20001', '10.0.0.1', NULL);
SELECT sum(total_bytes) < 8 * 1024 * 1024 AS cache_under_8mb
  FROM pg_backend_memory_contexts WHERE name LIKE 'athena_keys%';

DROP EXTENSION athena_keys CASCADE;
