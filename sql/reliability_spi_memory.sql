-- What a decision allocates after a table read must outlive SPI_finish.
-- Every call that reads the key from the table (first use in a backend, a
-- small or disabled key cache, every call in REPEATABLE READ) formed its
-- result row from memory that SPI had already freed: missing_rights came
-- back empty or garbage, and a large enough array crashed the server.
-- Each block below checks every column that comes from such memory.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
RESET client_min_messages;
CREATE EXTENSION athena_keys;

SELECT athena_keys.athena_create_right('users.read') \g /dev/null
SELECT api_key AS k, id AS k_id, public_id AS k_pub
  FROM athena_keys.athena_create_key('mem', client_name => 'web', rights => ARRAY['users.read']) \gset

-- 3,000 required rights, all but one missing: the missing array is large
-- enough to get its own block, which freeing returns to the C library.
CREATE TEMP TABLE wanted AS
SELECT ARRAY['users.read'] || array_agg('orders.r' || g ORDER BY g) AS rights,
       array_agg('orders.r' || g ORDER BY g) AS missing
  FROM generate_series(1, 3000) g;

-- Each call's verdict, checked column by column against what it must be.
CREATE TEMP VIEW checked AS
SELECT count(*) AS calls,
       count(*) FILTER (WHERE a.status = 403 AND a.reason = 'Insufficient API key rights'
                          AND a.missing_rights = w.missing
                          AND a.key_id = :'k_id' AND a.public_id = :'k_pub'
                          AND a.client_name = 'web'
                          AND a.granted_rights = ARRAY['users.read']) AS correct
  FROM wanted w, generate_series(1, 40) g,
       athena_keys.athena_authenticate(:'k', 'web', '10.0.0.1', w.rights) a;

-- REPEATABLE READ: the caches are not filled, every call reads the table.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT * FROM checked;
COMMIT;

SET default_transaction_isolation = 'repeatable read';
SELECT * FROM checked;
RESET default_transaction_isolation;

-- No key cache: a transient entry per call.
SET athena_keys.key_cache_size = 0;
SELECT * FROM checked;
RESET athena_keys.key_cache_size;

-- The first call after an invalidation reads the config and the key again.
SELECT athena_keys.athena_add_ip_rule('blacklist', '198.51.100.0/24') \g /dev/null
SELECT * FROM checked;

-- Unknown keys and an allowed verdict through the same paths.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FILTER (WHERE a.allowed AND a.missing_rights = '{}' AND a.public_id = :'k_pub') AS allowed_ok,
       count(*) FILTER (WHERE b.reason = 'Invalid API key' AND b.key_id IS NULL) AS unknown_ok
  FROM generate_series(1, 40) g,
       athena_keys.athena_authenticate(:'k', 'web', '10.0.0.1', ARRAY['users.read']) a,
       athena_keys.athena_authenticate('ath_' || lpad(g::text, 16, '0') || '.' || repeat('a', 64),
                                       'web', '10.0.0.1', NULL) b;
COMMIT;

DROP VIEW checked;
DROP TABLE wanted;
DROP EXTENSION athena_keys CASCADE;
