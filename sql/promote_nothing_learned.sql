-- athena_promote_key on a learning key that has seen no address (1.3,
-- issue 12 item 16): refused, because the key would show as locked with an
-- empty whitelist, i.e. no IP restriction at all.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
RESET client_min_messages;
CREATE EXTENSION athena_keys;

-- Run a statement; show its SQLSTATE, message (key ids masked), detail and hint.
CREATE FUNCTION pg_temp.try(sql text, OUT state text, OUT message text, OUT detail text, OUT hint text)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE sql;
	state := '00000';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
	                        detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
	message := regexp_replace(message, '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', '<key id>', 'g');
END
$$;

SELECT api_key AS k, id AS kid FROM athena_keys.athena_create_key('fresh', virgin_mode => true,
	virgin_until_n_requests => 5) \gset
\x on
SELECT * FROM pg_temp.try(format('SELECT athena_keys.athena_promote_key(%L)', :'kid'));
\x off
-- Nothing changed: still learning, no whitelist.
SELECT state, virgin_resolved, whitelist_size FROM athena_keys.athena_key_status WHERE id = :'kid';

-- Once it has seen an address, promotion locks it to that address.
SELECT allowed, locked_in FROM athena_keys.athena_authenticate(:'k', NULL, '198.51.100.7', NULL);
SELECT athena_keys.athena_promote_key(:'kid') AS whitelisted;
SELECT state, virgin_resolved, whitelist_size FROM athena_keys.athena_key_status WHERE id = :'kid';
SELECT allowed, reason FROM athena_keys.athena_authenticate(:'k', NULL, '198.51.100.8', NULL);

-- After a reset that clears what was seen, promotion is refused again.
SELECT athena_keys.athena_reset_key_learning(:'kid', true);
SELECT state, message FROM pg_temp.try(format('SELECT athena_keys.athena_promote_key(%L)', :'kid'));

-- An entry lock-in made, added again by the operator, is the operator's: a
-- reset removes lock-in's entries and leaves it.
SELECT allowed, locked_in FROM athena_keys.athena_authenticate(:'k', NULL, '198.51.100.9', NULL);
SELECT athena_keys.athena_promote_key(:'kid') AS whitelisted;
SELECT athena_keys.athena_add_ip_rule('whitelist', '198.51.100.9/32', :'kid', label => 'ops: keep');
SELECT addr, label, from_lock_in FROM athena_keys.api_key_ip_rule WHERE api_key_id = :'kid';
SELECT athena_keys.athena_reset_key_learning(:'kid');
SELECT addr, label, from_lock_in FROM athena_keys.api_key_ip_rule WHERE api_key_id = :'kid';

DROP EXTENSION athena_keys CASCADE;
