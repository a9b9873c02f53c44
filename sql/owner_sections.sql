-- The sections of a call that need a table (a cache fill, a learning
-- write, a log insert, a last_used_at stamp) run with the extension
-- owner's rights but under the caller's search_path.  A hostile gateway
-- role that shadows every operator and function those statements use
-- still gets the right verdicts and runs none of its code; the owner's
-- rights end with each section; and a call nested in another (from a
-- trigger on the log) neither frees what the outer call still reads nor
-- takes its SPI connection.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
DROP SCHEMA IF EXISTS shadow CASCADE;
DROP TABLE IF EXISTS public.inner_verdicts;
RESET client_min_messages;
CREATE EXTENSION athena_keys;
DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'ak_shadow') THEN
	EXECUTE 'DROP OWNED BY ak_shadow'; DROP ROLE ak_shadow; END IF; END $$;
CREATE ROLE ak_shadow;
SELECT athena_keys.athena_grant_gateway_role('ak_shadow') \g /dev/null
CREATE SCHEMA shadow AUTHORIZATION ak_shadow;

SELECT athena_keys.athena_create_right('users.*') \g /dev/null
SELECT api_key AS good, id AS good_id FROM athena_keys.athena_create_key('good',
       client_name => 'web', rights => ARRAY['users.*'],
       ip_whitelist => ARRAY['10.0.0.0/8']::cidr[]) \gset
SELECT api_key AS learner, id AS learner_id FROM athena_keys.athena_create_key('learner',
       virgin_mode => true, virgin_until_n_requests => 2) \gset
SELECT athena_keys.athena_add_ip_rule('blacklist', '203.0.113.0/24') \g /dev/null

SET ROLE ak_shadow;
CREATE TABLE shadow.pwned (what text);
-- Every operator type pair the extension's statements compare or compute.
CREATE FUNCTION shadow.uuid_eq(uuid, uuid) RETURNS boolean LANGUAGE plpgsql
	AS $$ BEGIN INSERT INTO shadow.pwned VALUES ('uuid ='); RETURN true; END $$;
CREATE OPERATOR shadow.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = shadow.uuid_eq);
CREATE FUNCTION shadow.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql
	AS $$ BEGIN INSERT INTO shadow.pwned VALUES ('text ='); RETURN true; END $$;
CREATE OPERATOR shadow.= (LEFTARG = text, RIGHTARG = text, FUNCTION = shadow.text_eq);
CREATE FUNCTION shadow.ts_lt(timestamptz, timestamptz) RETURNS boolean LANGUAGE plpgsql
	AS $$ BEGIN INSERT INTO shadow.pwned VALUES ('timestamptz <'); RETURN true; END $$;
CREATE OPERATOR shadow.< (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = shadow.ts_lt);
CREATE FUNCTION shadow.ts_minus(timestamptz, interval) RETURNS timestamptz LANGUAGE plpgsql
	AS $$ BEGIN INSERT INTO shadow.pwned VALUES ('timestamptz -'); RETURN 'infinity'; END $$;
CREATE OPERATOR shadow.- (LEFTARG = timestamptz, RIGHTARG = interval, FUNCTION = shadow.ts_minus);
CREATE FUNCTION shadow.now() RETURNS timestamptz LANGUAGE plpgsql
	AS $$ BEGIN INSERT INTO shadow.pwned VALUES ('now'); RETURN 'infinity'; END $$;
CREATE FUNCTION shadow.make_interval(secs double precision) RETURNS interval LANGUAGE plpgsql
	AS $$ BEGIN INSERT INTO shadow.pwned VALUES ('make_interval'); RETURN '-1000 years'; END $$;
CREATE FUNCTION shadow.unnest(anyarray) RETURNS SETOF anyelement LANGUAGE plpgsql
	AS $$ BEGIN INSERT INTO shadow.pwned VALUES ('unnest'); END $$;
SET search_path = shadow, pg_catalog, pg_temp;

-- Durable logging, a due stamp, cold caches: every kind of section runs.
RESET ROLE;
SET athena_keys.last_used_interval = 0;
SET ROLE ak_shadow;
SET search_path = shadow, pg_catalog, pg_temp;
SELECT status, reason, public_id IS NOT NULL AS named
  FROM athena_keys.athena_authenticate(:'good', 'web', '10.1.2.3', ARRAY['users.read']);
SELECT status, reason FROM athena_keys.athena_authenticate(:'good', 'web', '192.0.2.1', ARRAY['users.read']);
SELECT status, reason FROM athena_keys.athena_authenticate(:'good', 'web', '203.0.113.9', ARRAY['users.read']);
SELECT status, reason FROM athena_keys.athena_authenticate(:'good', 'mobile', '10.1.2.3', ARRAY['users.read']);
SELECT status, reason FROM athena_keys.athena_authenticate(:'good', 'web', '10.1.2.3', ARRAY['orders.read']);
SELECT status, reason FROM athena_keys.athena_authenticate('ath_ffffffffffffffff.' || repeat('a', 64), 'web', '10.1.2.3', NULL);
-- Two learning calls: the second locks the key in.
SELECT status, reason, locked_in FROM athena_keys.athena_authenticate(:'learner', NULL, '10.9.9.9', NULL);
SELECT status, reason, locked_in FROM athena_keys.athena_authenticate(:'learner', NULL, '10.9.9.8', NULL);
SELECT status, reason FROM athena_keys.athena_authenticate(:'learner', NULL, '10.9.9.7', NULL);
-- Still the caller, with the caller's rights.
SELECT current_user, session_user = current_user AS same_as_session;
SELECT count(*) FROM athena_keys.api_key_auth_log;
\echo :LAST_ERROR_SQLSTATE
RESET search_path;
SELECT count(*) AS hostile_code_runs FROM shadow.pwned;
RESET ROLE;
RESET athena_keys.last_used_interval;

-- Everything was written where it belongs, with the real time.
SELECT count(*) AS log_rows, count(*) FILTER (WHERE failure_reason IS NULL) AS allowed_rows,
       bool_and(created_at > now() - interval '1 hour') AS recent
  FROM athena_keys.api_key_auth_log;
SELECT last_used_at > now() - interval '1 hour' AS stamped_now
  FROM athena_keys.api_key WHERE id = :'good_id';
SELECT count(*) AS learned_whitelist FROM athena_keys.api_key_ip_rule
 WHERE api_key_id = :'learner_id' AND list = 'whitelist';

------------------------------------------------------------------------
-- Nested calls: a trigger on the log that authenticates again, after
-- changing a key and the config so that both caches are stale inside the
-- outer call.  The outer call's key, config and SPI connection must
-- survive the inner call.
------------------------------------------------------------------------
SELECT api_key AS other, id AS other_id FROM athena_keys.athena_create_key('other',
       rights => ARRAY['users.*']) \gset
CREATE TABLE public.inner_verdicts (n serial, status int, reason text, public_id text);
CREATE FUNCTION public.authenticate_again() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF pg_trigger_depth() = 1 THEN
		PERFORM athena_keys.athena_set_key_expiry(
			(SELECT id FROM athena_keys.api_key WHERE name = 'other'), clock_timestamp() + interval '1 day');
		PERFORM athena_keys.athena_set_enforcement(true);
		INSERT INTO public.inner_verdicts (status, reason, public_id)
		SELECT r.status, r.reason, r.public_id
		  FROM athena_keys.athena_authenticate(current_setting('test.other_key'), NULL, '10.1.2.3',
		                                       ARRAY['users.read']) r;
	END IF;
	RETURN NULL;
END $$;
CREATE TRIGGER authenticate_again AFTER INSERT ON athena_keys.api_key_auth_log
	FOR EACH ROW EXECUTE FUNCTION public.authenticate_again();
SELECT set_config('test.other_key', :'other', false) \g /dev/null
-- Warm caches first, so the outer calls hold cached entries.
SET athena_keys.log_decisions = none;
SELECT status FROM athena_keys.athena_authenticate(:'good', 'web', '10.1.2.3', ARRAY['users.read']);
RESET athena_keys.log_decisions;
SELECT status, reason, public_id = split_part(substr(:'good', 5), '.', 1) AS outer_key_intact,
       granted_rights, client_name
  FROM athena_keys.athena_authenticate(:'good', 'web', '10.1.2.3', ARRAY['users.read']);
SELECT status, reason, granted_rights
  FROM athena_keys.athena_authenticate(:'good', 'web', '192.0.2.1', ARRAY['users.read']);
-- Several in one statement, each nesting another.
SELECT count(*) AS calls, count(*) FILTER (WHERE r.status = 200) AS allowed
  FROM generate_series(1, 20) i,
       LATERAL athena_keys.athena_authenticate(CASE WHEN i > 0 THEN :'good' END, 'web',
                                               '10.1.2.3', ARRAY['users.read']) r;
SELECT count(*) AS inner_calls, count(*) FILTER (WHERE status = 200) AS inner_allowed,
       count(DISTINCT public_id) AS inner_keys
  FROM public.inner_verdicts;

-- The outer connection survived: a plpgsql caller keeps using SPI after the calls.
DO $$
DECLARE n int;
BEGIN
	PERFORM athena_keys.athena_authenticate(current_setting('test.other_key'), NULL, NULL, NULL);
	SELECT count(*) INTO n FROM public.inner_verdicts;
	RAISE NOTICE 'inner verdicts after a nested call inside plpgsql: %', n;
END $$;
-- A nested call that raises inside the trigger's own exception block.
CREATE OR REPLACE FUNCTION public.authenticate_again() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF pg_trigger_depth() = 1 THEN
		BEGIN
			PERFORM athena_keys.athena_set_key_expiry(
				(SELECT id FROM athena_keys.api_key WHERE name = 'other'), clock_timestamp() + interval '2 days');
			PERFORM athena_keys.athena_authenticate(current_setting('test.other_key'), NULL, NULL,
			                                        ARRAY['users.read']);
			RAISE EXCEPTION 'inner failure';
		EXCEPTION WHEN raise_exception THEN
			INSERT INTO public.inner_verdicts (status, reason) VALUES (0, SQLERRM);
		END;
	END IF;
	RETURN NULL;
END $$;
SELECT status, reason, granted_rights
  FROM athena_keys.athena_authenticate(:'good', 'web', '10.1.2.3', ARRAY['users.read']);
SELECT status, reason FROM athena_keys.athena_authenticate(:'good', 'web', '192.0.2.1', ARRAY['users.read']);
SELECT reason FROM public.inner_verdicts WHERE status = 0;

DROP TRIGGER authenticate_again ON athena_keys.api_key_auth_log;
DROP FUNCTION public.authenticate_again();
DROP TABLE public.inner_verdicts;
DROP EXTENSION athena_keys;
SET client_min_messages = warning;
DROP SCHEMA shadow CASCADE;
RESET client_min_messages;
DROP OWNED BY ak_shadow;
DROP ROLE ak_shadow;
