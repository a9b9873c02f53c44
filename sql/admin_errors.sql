-- Admin functions: invalid input raises a proper SQLSTATE, a message and a
-- hint, and nothing is half-applied (SPEC section 8).  Also: the plaintext
-- of a new key is returned once and stored nowhere.
\set SHOW_CONTEXT never
DROP EXTENSION IF EXISTS athena_keys CASCADE;
CREATE EXTENSION athena_keys;

-- A digest of every admin-managed row, to show that a failed call changed nothing.
CREATE FUNCTION pg_temp.snapshot() RETURNS text LANGUAGE sql AS $$
  SELECT md5(concat_ws('|',
    (SELECT string_agg(k::text, ',' ORDER BY k.id) FROM athena_keys.api_key k),
    (SELECT string_agg(g::text, ',' ORDER BY g.api_key_id, g.right_name) FROM athena_keys.api_key_right_grant g),
    (SELECT string_agg(r::text, ',' ORDER BY r.name) FROM athena_keys.api_key_right r),
    (SELECT string_agg(r::text, ',' ORDER BY r.id) FROM athena_keys.api_key_ip_rule r),
    (SELECT string_agg(r::text, ',' ORDER BY r.id) FROM athena_keys.api_key_global_ip_rule r),
    (SELECT string_agg(s::text, ',' ORDER BY s.api_key_id, s.addr) FROM athena_keys.api_key_ip_seen s),
    (SELECT string_agg(c::text, ',') FROM athena_keys.api_key_config c),
    (SELECT string_agg(c::text, ',' ORDER BY c.client_name) FROM athena_keys.api_key_client_config c)))
$$;
CREATE FUNCTION pg_temp.counts(OUT keys bigint, OUT grants bigint, OUT rights bigint,
                               OUT key_rules bigint, OUT global_rules bigint, OUT client_configs bigint)
LANGUAGE sql AS $$
  SELECT (SELECT count(*) FROM athena_keys.api_key),
         (SELECT count(*) FROM athena_keys.api_key_right_grant),
         (SELECT count(*) FROM athena_keys.api_key_right),
         (SELECT count(*) FROM athena_keys.api_key_ip_rule),
         (SELECT count(*) FROM athena_keys.api_key_global_ip_rule),
         (SELECT count(*) FROM athena_keys.api_key_client_config)
$$;

-- try(sql): run sql and report the error it raises, with key ids, public ids
-- and times masked (for errors whose message names a random id).
CREATE FUNCTION pg_temp.try(sql text, OUT state text, OUT message text, OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
DECLARE
	m text;
	d text;
	h text;
BEGIN
	EXECUTE sql;
	state := '00000';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL, h = PG_EXCEPTION_HINT;
	message := regexp_replace(regexp_replace(m, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<key id>', 'g'),
	                          '\m[0-9a-f]{16}\M', '<public id>', 'g');
	detail := regexp_replace(d, 'locked in at .*\.$', 'locked in at <time>.');
	hint := h;
END
$$;

SELECT athena_keys.athena_create_right('users.read');
SELECT api_key AS k, id AS k_id, public_id AS k_pub
  FROM athena_keys.athena_create_key('plain', client_name => 'Shop', rights => ARRAY['users.read'],
                                      ip_whitelist => ARRAY['10.0.0.0/8']::cidr[]) \gset
SELECT api_key AS kv, id AS kv_id
  FROM athena_keys.athena_create_key('learning', virgin_mode => true, virgin_until_n_requests => 1) \gset
\set unknown '00000000-0000-0000-0000-000000000000'
SELECT * FROM pg_temp.counts();
SELECT pg_temp.snapshot() AS snap \gset

------------------------------------------------------------------------
-- Unknown key id (42704) and NULL key id (22004), for every key function.
------------------------------------------------------------------------
SELECT athena_keys.athena_rotate_key(:'unknown');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_active(:'unknown', false);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_expiry(:'unknown', now());
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_client(:'unknown', 'Shop');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_delete_key(:'unknown');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_grant_rights(:'unknown', ARRAY['users.read']);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_revoke_rights(:'unknown', ARRAY['users.read']);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.0/8', key_id => :'unknown');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_remove_ip_rule('whitelist', '10.0.0.0/8', key_id => :'unknown');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_promote_key(:'unknown');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_reset_key_learning(:'unknown');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_rotate_key(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_active(NULL, false);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_expiry(NULL, now());
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_key_client(NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_delete_key(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_grant_rights(NULL, ARRAY['users.read']);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_revoke_rights(NULL, ARRAY['users.read']);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_promote_key(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_reset_key_learning(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.snapshot() = :'snap' AS unchanged;

-- Other NULL arguments that are required.
SELECT athena_keys.athena_set_key_active(:'k_id', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_grant_rights(:'k_id', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_revoke_rights(:'k_id', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_grant_rights(:'k_id', ARRAY['users.read', NULL]);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_rotate_key(:'k_id', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_reset_key_learning(:'kv_id', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_enforcement(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_client_enforcement(NULL, true);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_client_enforcement('Shop', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_clear_client_enforcement(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_add_ip_rule('whitelist', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_remove_ip_rule('whitelist', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('x', ip_whitelist => ARRAY[NULL]::cidr[]);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('x', virgin_mode => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('x', virgin_until_n_requests => NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.snapshot() = :'snap' AS unchanged;

------------------------------------------------------------------------
-- The right catalog.
------------------------------------------------------------------------
-- A right that is not in the catalog cannot be granted (42704); the whole call fails.
SELECT athena_keys.athena_create_key('x', rights => ARRAY['users.read', 'nope', 'nope.*']);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_grant_rights(:'k_id', ARRAY['*', 'nope']);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_revoke_rights(:'k_id', ARRAY['users.read', 'nope']);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_import_key('importid01', 'salt', repeat('a', 64), 'x', rights => ARRAY['nope']);
\echo :LAST_ERROR_SQLSTATE
SELECT rights FROM athena_keys.athena_key_status WHERE id = :'k_id';
-- Duplicate right (42710), unknown right (42704), bad names.
SELECT athena_keys.athena_create_right('users.read');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_right('*');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_delete_right('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_delete_right(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_right(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_right('');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_right('has space');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_right(repeat('a', 201));
\echo :LAST_ERROR_SQLSTATE
-- A right's description is bounded as a key's is (2,000 characters).
SELECT athena_keys.athena_create_right('big.desc', repeat('x', 2001));
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.snapshot() = :'snap' AS unchanged;

------------------------------------------------------------------------
-- IP rules: bad CIDR, unknown list, client_name on a per-key rule.
------------------------------------------------------------------------
SELECT athena_keys.athena_add_ip_rule('whitelist', 'not-an-address');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.0/33');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.5/24');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('x', ip_blacklist => ARRAY['10.0.0.1', '300.1.1.1']::cidr[]);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_add_ip_rule('greylist', '10.0.0.0/8');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_add_ip_rule('Whitelist', '10.0.0.0/8');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_add_ip_rule(NULL, '10.0.0.0/8');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_remove_ip_rule('greylist', '10.0.0.0/8');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.0/8', key_id => :'k_id', client_name => 'Shop');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_remove_ip_rule('whitelist', '10.0.0.0/8', key_id => :'k_id', client_name => 'Shop');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.0/8', client_name => '');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_add_ip_rule('whitelist', '10.0.0.0/8', label => repeat('l', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.snapshot() = :'snap' AS unchanged;

------------------------------------------------------------------------
-- athena_create_key: names, client names, numbers, virgin mode.
------------------------------------------------------------------------
SELECT athena_keys.athena_create_key(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key(repeat('n', 201));
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('x', description => repeat('d', 2001));
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('x', client_name => '');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('x', client_name => repeat('c', 257));
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('x', virgin_mode => true);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('x', virgin_mode => true, virgin_until_n_requests => 0, max_whitelist_ips => 0);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('x', virgin_until_n_requests => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('x', virgin_mode => true, virgin_until_n_requests => 5, max_whitelist_ips => -1);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('x', virgin_mode => true, max_whitelist_ips => 2,
                                     ip_whitelist => ARRAY['10.0.0.0/8']::cidr[]);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_create_key('x', virgin_mode => true, max_whitelist_ips => 2,
                                     ip_blacklist => ARRAY['10.0.0.0/8']::cidr[]);
\echo :LAST_ERROR_SQLSTATE
SELECT pg_temp.snapshot() = :'snap' AS unchanged;

-- Other functions: empty client names, bad fail mode, negative grace.
SELECT athena_keys.athena_set_key_client(:'k_id', '');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_client_enforcement('', true);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_client_enforcement(repeat('c', 257), true);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_fail_mode('fail_sometimes');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_fail_mode('FAIL_OPEN');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_set_fail_mode(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_rotate_key(:'k_id', interval '-1 second');
\echo :LAST_ERROR_SQLSTATE
-- A grace whose end is past the last timestamp, and retentions judged by
-- the cutoff they make: one of mixed signs that compares as positive (+4
-- days) yet puts the cutoff a day or two after now (12 months are at least
-- 365 days), and one before the first timestamp.
SELECT athena_keys.athena_rotate_key(:'k_id', interval '300000 years');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_prune_auth_log(interval '-12 months 364 days');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_prune_auth_log(interval '250000 years');
\echo :LAST_ERROR_SQLSTATE
SELECT fail_mode, enforce_api_keys FROM athena_keys.api_key_config;
SELECT pg_temp.snapshot() = :'snap' AS unchanged;

------------------------------------------------------------------------
-- Learning: promote a key that is not learning, reset a non-virgin key (55000).
------------------------------------------------------------------------
SELECT * FROM pg_temp.try(format('SELECT athena_keys.athena_promote_key(%L)', :'k_id'));
SELECT * FROM pg_temp.try(format('SELECT athena_keys.athena_reset_key_learning(%L)', :'k_id'));
SELECT * FROM pg_temp.try(format('SELECT athena_keys.athena_reset_key_learning(%L, true)', :'k_id'));
SELECT pg_temp.snapshot() = :'snap' AS unchanged;
-- Once locked in, a virgin key cannot be promoted again.
SELECT allowed, locked_in FROM athena_keys.athena_authenticate(:'kv', NULL, '192.0.2.1', NULL);
SELECT * FROM pg_temp.try(format('SELECT athena_keys.athena_promote_key(%L)', :'kv_id'));
SELECT state, whitelist_size, virgin_resolved FROM athena_keys.athena_key_status WHERE id = :'kv_id';
SELECT pg_temp.snapshot() AS snap \gset

------------------------------------------------------------------------
-- athena_import_key: bad public id, salt, hash, name; duplicate public id.
------------------------------------------------------------------------
SELECT athena_keys.athena_import_key('importid01', 'salt', 'xyz', 'bad hash');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_import_key('importid01', 'salt', repeat('a', 63), 'short hash');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_import_key('importid01', 'salt', repeat('g', 64), 'non-hex hash');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_import_key('importid01', 'salt', NULL, 'null hash');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_import_key('short', 'salt', repeat('a', 64), 'short id');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_import_key('bad.id.with.dots', 'salt', repeat('a', 64), 'dotted id');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_import_key(NULL, 'salt', repeat('a', 64), 'null id');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_import_key('importid01', 'salt with space', repeat('a', 64), 'bad salt');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_import_key('importid01', '', repeat('a', 64), 'empty salt');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_import_key('importid01', 'salt', repeat('a', 64), NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_import_key('importid01', 'salt', repeat('a', 64), '');
\echo :LAST_ERROR_SQLSTATE
SELECT athena_keys.athena_import_key('importid01', 'salt', repeat('a', 64), 'x', client_name => '');
\echo :LAST_ERROR_SQLSTATE
SELECT * FROM pg_temp.try(format('SELECT athena_keys.athena_import_key(%L, ''salt'', repeat(''a'', 64), ''duplicate of a created key'')', :'k_pub'));
SELECT pg_temp.snapshot() = :'snap' AS unchanged;
SELECT athena_keys.athena_import_key('importid01', 'salt', repeat('a', 64), 'first import') IS NOT NULL AS imported;
SELECT athena_keys.athena_import_key('importid01', 'salt2', repeat('b', 64), 'second import');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS keys_with_that_id, min(name) AS name
  FROM athena_keys.api_key WHERE public_id = 'importid01';

------------------------------------------------------------------------
-- The plaintext is returned exactly once and stored nowhere.
------------------------------------------------------------------------
SELECT api_key AS p, id AS p_id, public_id AS p_pub
  FROM athena_keys.athena_create_key('plaintext check', rights => ARRAY['users.read']) \gset
SELECT :'p' ~ '^ath_[0-9a-f]{16}\.[0-9a-f]{64}$' AS shape_ok,
       split_part(:'p', '.', 1) = 'ath_' || :'p_pub' AS public_id_in_key;
SELECT split_part(:'p', '.', 2) AS p_secret \gset
-- Stored: salt (16+ random bytes, hex) and the SHA-256 of salt:secret.
SELECT key_salt ~ '^[0-9a-f]{32,}$' AS salt_is_16_plus_bytes_hex,
       key_hash = encode(sha256(convert_to(key_salt || ':' || :'p_secret', 'UTF8')), 'hex') AS hash_ok,
       key_hash <> :'p_secret' AS hash_is_not_secret
  FROM athena_keys.api_key WHERE id = :'p_id';
-- No row of any table or view in the schema contains the secret.
CREATE FUNCTION pg_temp.relations_containing(needle text)
RETURNS TABLE (relation text, hits bigint) LANGUAGE plpgsql AS $$
DECLARE
	r regclass;
BEGIN
	FOR r IN SELECT c.oid::regclass FROM pg_class c
	          WHERE c.relnamespace = 'athena_keys'::regnamespace AND c.relkind IN ('r', 'v')
	          ORDER BY c.relname
	LOOP
		relation := r::text;
		EXECUTE format('SELECT count(*) FROM %s t WHERE strpos(t::text, $1) > 0', r)
		   INTO hits USING needle;
		RETURN NEXT;
	END LOOP;
END
$$;
SELECT count(*) > 10 AS relations_checked, sum(hits) AS rows_with_secret
  FROM pg_temp.relations_containing(:'p_secret');
SELECT sum(hits) AS rows_with_plaintext FROM pg_temp.relations_containing(:'p');
-- No text column equals the secret either (column by column).
SET my.secret = :'p_secret';
SET my.plaintext = :'p';
DO $$
DECLARE
	col record;
	n bigint;
	total bigint := 0;
	cols integer := 0;
BEGIN
	FOR col IN SELECT a.attrelid::regclass AS rel, a.attname
	             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
	            WHERE c.relnamespace = 'athena_keys'::regnamespace AND c.relkind IN ('r', 'v')
	              AND a.attnum > 0 AND NOT a.attisdropped AND a.atttypid IN ('text'::regtype, 'text[]'::regtype)
	LOOP
		EXECUTE format('SELECT count(*) FROM %s WHERE %I::text = $1 OR %I::text = $2', col.rel, col.attname, col.attname)
		   INTO n USING current_setting('my.secret'), current_setting('my.plaintext');
		total := total + n;
		cols := cols + 1;
	END LOOP;
	RAISE NOTICE 'text columns checked: %, equal to the secret: %', cols > 20, total;
END
$$ LANGUAGE plpgsql;
-- The key works; a second call does not hand the plaintext out again.
SELECT allowed, reason FROM athena_keys.athena_authenticate(:'p', NULL, NULL, ARRAY['users.read']);
SELECT count(*) AS status_columns_with_secret
  FROM athena_keys.athena_key_status s WHERE strpos(s::text, :'p_secret') > 0;

DROP EXTENSION athena_keys CASCADE;
