-- A hostile gateway role: search_path tricks with objects in its own schema
-- and in pg_temp, attempts to reach admin functions and settings, and
-- invalid byte input.  Nothing it does changes a verdict or runs its code
-- with elevated rights.
\set SHOW_CONTEXT never
DROP EXTENSION IF EXISTS athena_keys CASCADE;
CREATE EXTENSION athena_keys;
DROP SCHEMA IF EXISTS evil CASCADE;
DROP ROLE IF EXISTS ak_evil;
CREATE ROLE ak_evil;
SELECT athena_keys.athena_grant_gateway_role('ak_evil') \g /dev/null
CREATE SCHEMA evil AUTHORIZATION ak_evil;
SELECT current_database() AS db \gset
GRANT TEMPORARY ON DATABASE :"db" TO ak_evil;

SELECT athena_keys.athena_create_right('users.read') \g /dev/null
SELECT api_key AS good_key FROM athena_keys.athena_create_key('victim', rights => ARRAY['users.read'],
       ip_whitelist => ARRAY['10.0.0.0/8']::cidr[]) \gset

SET ROLE ak_evil;
-- A log of anything the hostile objects get to run.
CREATE TABLE evil.pwned (what text);
-- An "=" for text that says everything is equal, and one for inet containment.
CREATE FUNCTION evil.always_true(text, text) RETURNS boolean
	LANGUAGE plpgsql AS $$ BEGIN INSERT INTO evil.pwned VALUES ('text ='); RETURN true; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.always_true);
CREATE FUNCTION evil.contains(cidr, inet) RETURNS boolean
	LANGUAGE plpgsql AS $$ BEGIN INSERT INTO evil.pwned VALUES ('>>='); RETURN true; END $$;
CREATE OPERATOR evil.>>= (LEFTARG = cidr, RIGHTARG = inet, FUNCTION = evil.contains);
-- Functions and tables shadowing names the extension uses.
CREATE FUNCTION evil.now() RETURNS timestamptz
	LANGUAGE plpgsql AS $$ BEGIN INSERT INTO evil.pwned VALUES ('now'); RETURN '2000-01-01'; END $$;
CREATE TABLE evil.api_key (public_id text, key_hash text);
CREATE TEMP TABLE api_key (public_id text, key_hash text);
CREATE TEMP TABLE api_key_auth_log (x int);

SET search_path = evil, pg_temp, pg_catalog;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate('ath_0000000000000000.' || repeat('0', 64), NULL, '10.1.1.1', NULL);
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'good_key', NULL, '192.0.2.1', ARRAY['users.read']);
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'good_key', NULL, '10.1.1.1', ARRAY['users.read']);
SET search_path = pg_temp, evil;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate('ath_0000000000000000.' || repeat('0', 64), NULL, '10.1.1.1', NULL);
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'good_key', NULL, '10.1.1.1', ARRAY['users.read']);
RESET search_path;
-- None of the hostile code ran inside the extension's functions.
SELECT count(*) AS hostile_code_runs FROM evil.pwned;
SELECT count(*) AS temp_log_rows FROM pg_temp.api_key_auth_log;

-- Reaching further: admin functions, internal helpers, settings, tables.
SELECT athena_keys.athena_create_key('mine');
SELECT athena_keys._learn(gen_random_uuid(), '10.0.0.1');
SELECT athena_keys._random_hex(8);
SELECT athena_keys.athena_grant_admin_role('ak_evil');
SET athena_keys.log_decisions = none;
SET athena_keys.log_durability = async;
ALTER FUNCTION athena_keys.athena_authenticate(text, text, inet, text[]) RESET ALL;
CREATE FUNCTION athena_keys.sneaky() RETURNS int LANGUAGE sql AS 'SELECT 1';
UPDATE athena_keys.api_key SET is_active = true;
SELECT count(*) FROM athena_keys.athena_recent_failures;
RESET ROLE;

-- The same tricks against the cached path, which runs with the caller's
-- own privileges and search_path (nothing logged, so nothing is handed to
-- the SECURITY DEFINER twin once the caches are warm).
SET athena_keys.log_decisions = none;
SET ROLE ak_evil;
SET search_path = evil, pg_temp, pg_catalog;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'good_key', NULL, '10.1.1.1', ARRAY['users.read']);
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'good_key', NULL, '10.1.1.1', ARRAY['users.read']);
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'good_key', NULL, '192.0.2.1', ARRAY['users.read']);
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'good_key', NULL, '10.1.1.1', ARRAY['users.write']);
SELECT allowed, status, reason FROM athena_keys.athena_authenticate('ath_0000000000000000.' || repeat('0', 64), NULL, '10.1.1.1', NULL);
SET search_path = pg_temp, evil;
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(:'good_key', NULL, '192.0.2.1', ARRAY['users.read']);
RESET search_path;
SELECT count(*) AS hostile_code_runs FROM evil.pwned;
RESET ROLE;
RESET athena_keys.log_decisions;

-- Invalid UTF-8 never reaches the function: the conversion itself refuses it.
SELECT athena_keys.athena_authenticate(convert_from('\xfffe'::bytea, 'UTF8'), NULL, NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
-- Control characters and NUL-adjacent bytes that do reach it get verdicts.
SELECT reason FROM athena_keys.athena_authenticate(E'ath_\x01\x02' || repeat('a', 20) || E'.\x7f', E'\x01', NULL, ARRAY[E'\x01']);
SELECT reason FROM athena_keys.athena_authenticate(E'\tath_' || repeat('a', 16) || '.' || repeat('b', 64) || E'\r\n', NULL, NULL, NULL);

-- The database is as it was: one key, no extra objects in the schema.
SELECT count(*) AS keys FROM athena_keys.api_key;
SELECT count(*) AS foreign_objects FROM pg_proc
 WHERE pronamespace = 'athena_keys'::regnamespace AND proowner = 'ak_evil'::regrole;

DROP SCHEMA evil CASCADE;
REVOKE TEMPORARY ON DATABASE :"db" FROM ak_evil;
DROP OWNED BY ak_evil;
DROP ROLE ak_evil;

DROP EXTENSION athena_keys CASCADE;
