-- A key cache miss reads the key row, its grants, its per-key IP rules and
-- its rate limits straight from the tables (src/key_rows.c).  The verdict
-- is the one the cached key gives; the read sees the transaction's own
-- edits; tables that are not what the install script made raise an error
-- that names the table and column; nothing on the search_path changes what
-- is read.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
DROP SCHEMA IF EXISTS key_rows_evil CASCADE;
RESET client_min_messages;
CREATE EXTENSION athena_keys;
SET athena_keys.log_decisions = none;
SET athena_keys.last_used_interval = 86400;

SELECT athena_keys.athena_create_right(r) FROM unnest(ARRAY['zeta.read', 'alpha.write', 'mid.*']) r;
-- Rights out of order, rules of mixed prefix lengths out of order (one
-- IPv4-mapped), a blacklist inside the whitelist.  (Rate limits need the
-- preloaded library: TAP test 010 reads them on misses.)
SELECT api_key AS k, id AS k_id FROM athena_keys.athena_create_key('rows', client_name => 'web',
	rights => ARRAY['zeta.read', 'alpha.write', 'mid.*'],
	ip_whitelist => ARRAY['10.9.0.0/16', '10.1.2.0/24', '10.0.0.0/16', '::ffff:192.0.2.0/120',
	                      '2001:db8::/32', '10.3.0.0/16']::cidr[],
	ip_blacklist => ARRAY['10.9.9.0/24']::cidr[]) \gset

CREATE TEMP TABLE requests (n int, client text, ip inet, rights text[]);
INSERT INTO requests VALUES
	(1, 'web', '10.1.2.3', '{zeta.read}'),
	(2, 'web', '10.1.3.3', '{zeta.read}'),
	(3, 'web', '192.0.2.7', '{mid.x, alpha.write}'),
	(4, 'web', '::ffff:10.3.4.5', '{alpha.write}'),
	(5, 'web', '10.9.9.9', '{zeta.read}'),
	(6, 'web', '2001:db8:1::1', '{zeta.read, nope.read}'),
	(7, 'app', '10.0.0.1', '{zeta.read}'),
	(8, 'web', '10.0.255.255', NULL);

-- The same verdicts and granted rights (in right_name order), cached and
-- read on every call.
CREATE TEMP TABLE verdicts AS
SELECT r.n, a.allowed, a.status, a.reason, a.granted_rights, a.missing_rights, a.rate_limit
  FROM requests r, athena_keys.athena_authenticate(:'k', r.client, r.ip, r.rights) a;
SET athena_keys.key_cache_size = 0;
SELECT r.n, a.allowed, a.status, a.reason, a.granted_rights, a.missing_rights, a.rate_limit,
       (a.allowed, a.status, a.reason, a.granted_rights, a.missing_rights, a.rate_limit) IS NOT DISTINCT FROM
       (v.allowed, v.status, v.reason, v.granted_rights, v.missing_rights, v.rate_limit) AS same_as_cached
  FROM requests r JOIN verdicts v USING (n), athena_keys.athena_authenticate(:'k', r.client, r.ip, r.rights) a
 ORDER BY r.n;

-- Rotation: the previous secret works until its grace ends, read on a miss too.
SELECT athena_keys.athena_rotate_key(:'k_id', '1 hour') AS k2 \gset
SELECT allowed, status FROM athena_keys.athena_authenticate(:'k', 'web', '10.1.2.3', NULL);
SELECT allowed, status FROM athena_keys.athena_authenticate(:'k2', 'web', '10.1.2.3', NULL);
SELECT allowed, reason FROM athena_keys.athena_authenticate('ath_ffffffffffffffff.' || repeat('0', 64), 'web', '10.1.2.3', NULL);

-- The transaction's own edits are read, uncommitted as they are.
BEGIN;
SELECT allowed, reason FROM athena_keys.athena_authenticate(:'k2', 'web', '10.1.2.3', NULL);
SELECT athena_keys.athena_set_key_active(:'k_id', false);
SELECT allowed, reason FROM athena_keys.athena_authenticate(:'k2', 'web', '10.1.2.3', NULL);
SELECT athena_keys.athena_set_key_active(:'k_id', true);
SELECT athena_keys.athena_add_ip_rule('blacklist', '10.1.2.0/24', :'k_id');
SELECT allowed, reason FROM athena_keys.athena_authenticate(:'k2', 'web', '10.1.2.3', NULL);
ROLLBACK;
SELECT allowed, reason FROM athena_keys.athena_authenticate(:'k2', 'web', '10.1.2.3', NULL);

-- A retyped column, a renamed column and a missing index raise an error
-- naming them (not a crash, not a misread); each is rolled back, after
-- which the tables are read again.
BEGIN;
DROP TRIGGER api_key_update_invalidate ON athena_keys.api_key;
ALTER TABLE athena_keys.api_key DROP CONSTRAINT api_key_salt_format,
	ALTER COLUMN key_salt TYPE bytea USING convert_to(key_salt, 'UTF8');
SELECT allowed FROM athena_keys.athena_authenticate(:'k2', 'web', '10.1.2.3', NULL);
ROLLBACK;
BEGIN;
ALTER TABLE athena_keys.api_key_ip_rule RENAME COLUMN addr TO address;
SELECT allowed FROM athena_keys.athena_authenticate(:'k2', 'web', '10.1.2.3', NULL);
ROLLBACK;
BEGIN;
ALTER TABLE athena_keys.api_key_right_grant DROP CONSTRAINT api_key_right_grant_pkey CASCADE;
SELECT allowed FROM athena_keys.athena_authenticate(:'k2', 'web', '10.1.2.3', NULL);
ROLLBACK;
-- A miss looks the public id up through the "C"-collated index (bytes
-- compared, the same equality), not through the UNIQUE constraint's index
-- in the column's collation: the index scans this transaction made.
-- (Counted from before the call: the counts wait to be reported.)
CREATE FUNCTION pg_temp.public_id_scans(OUT lookup bigint, OUT uniq bigint) LANGUAGE sql AS $$
	SELECT pg_stat_get_xact_numscans('athena_keys.api_key_public_id_lookup_idx'::regclass),
	       pg_stat_get_xact_numscans('athena_keys.api_key_public_id_key'::regclass)
$$;
BEGIN;
SELECT lookup AS lookup0, uniq AS uniq0 FROM pg_temp.public_id_scans() \gset
SELECT allowed FROM athena_keys.athena_authenticate(:'k2', 'web', '10.1.2.3', NULL);
SELECT lookup - :lookup0 AS lookup_scans, uniq - :uniq0 AS unique_scans FROM pg_temp.public_id_scans();
COMMIT;
-- Without it, the UNIQUE constraint's index serves.
BEGIN;
SELECT uniq AS uniq0 FROM pg_temp.public_id_scans() \gset
DROP INDEX athena_keys.api_key_public_id_lookup_idx;
SELECT allowed FROM athena_keys.athena_authenticate(:'k2', 'web', '10.1.2.3', NULL);
SELECT pg_stat_get_xact_numscans('athena_keys.api_key_public_id_key'::regclass) - :uniq0 AS unique_scans;
ROLLBACK;
BEGIN;
-- An expression, partial or hash index does not stand in for the btree
-- on public_id, nor one in "C" with another operator class; one that
-- leads with public_id does.
DROP INDEX athena_keys.api_key_public_id_lookup_idx;
ALTER TABLE athena_keys.api_key DROP CONSTRAINT api_key_public_id_key;
CREATE INDEX ON athena_keys.api_key (lower(public_id));
CREATE INDEX ON athena_keys.api_key (public_id) WHERE is_active;
CREATE INDEX ON athena_keys.api_key USING hash (public_id);
CREATE INDEX ON athena_keys.api_key (public_id COLLATE "C" text_pattern_ops);
SELECT allowed FROM athena_keys.athena_authenticate(:'k2', 'web', '10.1.2.3', NULL);
ROLLBACK;
BEGIN;
DROP INDEX athena_keys.api_key_public_id_lookup_idx;
ALTER TABLE athena_keys.api_key DROP CONSTRAINT api_key_public_id_key;
CREATE UNIQUE INDEX ON athena_keys.api_key (public_id, name);
SELECT allowed FROM athena_keys.athena_authenticate(:'k2', 'web', '10.1.2.3', NULL);
ROLLBACK;
SELECT allowed, status FROM athena_keys.athena_authenticate(:'k2', 'web', '10.1.2.3', NULL);
SELECT allowed, status FROM athena_keys.athena_authenticate(:'k2', 'web', '10.1.2.3', '{zeta.read}');

-- Objects on the search_path play no part: an = on text and uuid that
-- says every value matches, and a table named like the key table.
CREATE SCHEMA key_rows_evil;
CREATE FUNCTION key_rows_evil.always(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION key_rows_evil.always(uuid, uuid) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR key_rows_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = key_rows_evil.always);
CREATE OPERATOR key_rows_evil.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = key_rows_evil.always);
CREATE TABLE key_rows_evil.api_key (LIKE athena_keys.api_key);
SET search_path = key_rows_evil, pg_catalog, public;
SELECT allowed, reason FROM athena_keys.athena_authenticate('ath_ffffffffffffffff.' || repeat('0', 64), 'web', '10.1.2.3', NULL);
SELECT allowed, reason, granted_rights FROM athena_keys.athena_authenticate(:'k2', 'web', '10.1.2.3', NULL);
RESET search_path;
DROP SCHEMA key_rows_evil CASCADE;
RESET athena_keys.key_cache_size;

-- A miss leaves alone a table that holds no key's rows (many deployments
-- have no per-key IP rules or rate limits): the first rule added to it, in
-- this transaction or committed, is read by the next call, and so is its
-- removal.
SET athena_keys.key_cache_size = 0;
DELETE FROM athena_keys.api_key_ip_rule;
SELECT api_key AS k3, id AS k3_id FROM athena_keys.athena_create_key('no-rules-yet') \gset
SELECT status, reason FROM athena_keys.athena_authenticate(:'k3', NULL, '203.0.113.7', NULL);
BEGIN;
SELECT athena_keys.athena_add_ip_rule('blacklist', '203.0.113.0/24', :'k3_id');
SELECT status, reason FROM athena_keys.athena_authenticate(:'k3', NULL, '203.0.113.7', NULL);
ROLLBACK;
SELECT status, reason FROM athena_keys.athena_authenticate(:'k3', NULL, '203.0.113.7', NULL);
SELECT athena_keys.athena_add_ip_rule('blacklist', '203.0.113.0/24', :'k3_id');
SELECT status, reason FROM athena_keys.athena_authenticate(:'k3', NULL, '203.0.113.7', NULL);
SELECT athena_keys.athena_remove_ip_rule('blacklist', '203.0.113.0/24', :'k3_id');
SELECT status, reason FROM athena_keys.athena_authenticate(:'k3', NULL, '203.0.113.7', NULL);
RESET athena_keys.key_cache_size;

-- A rule this transaction writes is read even before its invalidation is
-- queued (the row triggers fire at the end of the statement): inserted by a
-- data-modifying WITH or by a SQL function in the statement that calls.
SET athena_keys.key_cache_size = 0;
SET athena_keys.log_decisions = none;
DELETE FROM athena_keys.api_key_ip_rule;
SELECT status FROM athena_keys.athena_authenticate(:'k3', NULL, '203.0.113.7', NULL);
WITH r AS (INSERT INTO athena_keys.api_key_ip_rule (api_key_id, list, addr)
		   VALUES (:'k3_id', 'blacklist', '203.0.113.0/24') RETURNING 1)
SELECT (athena_keys.athena_authenticate(:'k3', NULL, '203.0.113.7', NULL)).status FROM r;
DELETE FROM athena_keys.api_key_ip_rule;
SELECT status FROM athena_keys.athena_authenticate(:'k3', NULL, '203.0.113.7', NULL);
CREATE FUNCTION key_rows_block(uuid) RETURNS void LANGUAGE sql AS $$
	INSERT INTO athena_keys.api_key_ip_rule (api_key_id, list, addr)
	VALUES ($1, 'blacklist', '203.0.113.0/24')
$$;
SELECT key_rows_block(:'k3_id'), (athena_keys.athena_authenticate(:'k3', NULL, '203.0.113.7', NULL)).status;
-- What a call saw of this statement's own delete is not kept when the
-- statement raises before its triggers queue the invalidation: the rule is
-- back, and the next call reads it.  (A new key advances the generation,
-- so the call in the failing statement is the first to look.)
SELECT 1 FROM athena_keys.athena_create_key('generation bump');
WITH d AS (DELETE FROM athena_keys.api_key_ip_rule WHERE api_key_id = :'k3_id' RETURNING 1)
SELECT (athena_keys.athena_authenticate(:'k3', NULL, '203.0.113.7', NULL)).status,
	   1 / (random() * 0)::int FROM d;
SELECT count(*) FROM athena_keys.api_key_ip_rule;
SELECT status FROM athena_keys.athena_authenticate(:'k3', NULL, '203.0.113.7', NULL);
-- Nor does the key cache keep what such a call read: with the cache on,
-- the same failing statement leaves no entry of the key without its rule.
RESET athena_keys.key_cache_size;
SELECT 1 FROM athena_keys.athena_create_key('generation bump, cache on');
WITH d AS (DELETE FROM athena_keys.api_key_ip_rule WHERE api_key_id = :'k3_id' RETURNING 1)
SELECT (athena_keys.athena_authenticate(:'k3', NULL, '203.0.113.7', NULL)).status,
	   1 / (random() * 0)::int FROM d;
SELECT status FROM athena_keys.athena_authenticate(:'k3', NULL, '203.0.113.7', NULL);
SET athena_keys.key_cache_size = 0;
DELETE FROM athena_keys.api_key_ip_rule;
DROP FUNCTION key_rows_block(uuid);
RESET athena_keys.log_decisions;
RESET athena_keys.key_cache_size;
