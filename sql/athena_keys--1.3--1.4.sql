\echo Use "ALTER EXTENSION athena_keys UPDATE TO '1.4'" to load this file. \quit
-- athena_keys 1.3 -> 1.4.  1.4 is the first version with a maintained
-- install script: a fresh CREATE EXTENSION runs athena_keys--1.4.sql, built
-- by make from sql/install/, instead of 1.0 and every delta.  A change to
-- the objects goes here, as a delta for databases already installed, and
-- into the piece of sql/install/ that holds the object, for fresh ones;
-- test/t/005_upgrade.pl fails when the two paths end differently.

--------------------------------------------------------------------------
-- athena_authenticate decides as its caller and performs the effects that
-- need a table (a cache fill, learning, a log insert, a last_used_at
-- stamp) with the extension owner's rights for exactly those sections
-- (src/request_effects.c); it no longer hands whole calls to its SECURITY
-- DEFINER twin.  The twin stays, unchanged and granted to nobody, because
-- a backend that loaded the 1.3 library before this update still calls it
-- until it reconnects; the 1.4 library answers it with the same decision.
-- A later version drops it.
--------------------------------------------------------------------------

COMMENT ON FUNCTION athena_keys._authenticate_privileged(text, text, inet, text[]) IS
	'The 1.2/1.3 SECURITY DEFINER twin of athena_authenticate, granted to nobody; kept for backends that loaded the 1.3 library until they reconnect, and decided like athena_authenticate by the 1.4 library.';

--------------------------------------------------------------------------
-- Rate limits (issue 16): limits on a key or on a client name, decided in
-- the same call from buckets in shared memory (src/rate_limit.c).  The
-- result row gains retry_after_ms and the tightest limit's figures at its
-- end; the 1.4 library fills a 1.3 row type too (src/result_row.c), so
-- the library may be installed before this update runs.
--------------------------------------------------------------------------
-- Rate limits: requests per period with a burst, on one key or on one
-- client name (shared by every key presenting it).  per is kept as the
-- seconds it stands for (athena_set_*_rate_limit normalizes it), so that
-- equal periods are equal; the buckets live in shared memory
-- (src/rate_limit.c), never here.
CREATE TABLE athena_keys.api_key_rate_limit (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	api_key_id uuid REFERENCES athena_keys.api_key (id) ON DELETE CASCADE,
	client_name text
		CONSTRAINT api_key_rate_limit_client_name CHECK (length(client_name) BETWEEN 1 AND 256),
	requests integer NOT NULL CONSTRAINT api_key_rate_limit_requests CHECK (requests > 0),
	per interval NOT NULL
		CONSTRAINT api_key_rate_limit_per CHECK (extract(epoch FROM per) BETWEEN 0.001 AND 31557600),
	burst integer NOT NULL CONSTRAINT api_key_rate_limit_burst CHECK (burst >= 1),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT api_key_rate_limit_subject CHECK ((api_key_id IS NULL) <> (client_name IS NULL)),
	CONSTRAINT api_key_rate_limit_rate CHECK (requests <= extract(epoch FROM per) * 1000000),
	-- a bucket holds burst x per / requests: at most 100 years
	CONSTRAINT api_key_rate_limit_bucket CHECK (extract(epoch FROM per) * burst <= 3155760000::numeric * requests),
	CONSTRAINT api_key_rate_limit_key_per UNIQUE (api_key_id, per),
	CONSTRAINT api_key_rate_limit_client_per UNIQUE (client_name, per)
);

COMMENT ON TABLE athena_keys.api_key_rate_limit IS
	'Rate limits (requests per period, burst) of one key or one client name; enforced from shared memory.';

SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_rate_limit', '');
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('athena_keys.api_key_rate_limit', 'id')::regclass, '');

-- Rate limits: a key's feed the key cache, a client's the config cache
-- (one table: a change advances both).
CREATE TRIGGER api_key_rate_limit_invalidate
	AFTER INSERT OR UPDATE OR DELETE ON athena_keys.api_key_rate_limit
	FOR EACH ROW EXECUTE FUNCTION athena_keys._invalidate_caches();
CREATE TRIGGER api_key_rate_limit_truncate_invalidate
	AFTER TRUNCATE ON athena_keys.api_key_rate_limit
	FOR EACH STATEMENT EXECUTE FUNCTION athena_keys._invalidate_caches();
ALTER TABLE athena_keys.api_key_rate_limit ENABLE ALWAYS TRIGGER api_key_rate_limit_invalidate;
ALTER TABLE athena_keys.api_key_rate_limit ENABLE ALWAYS TRIGGER api_key_rate_limit_truncate_invalidate;

ALTER TYPE athena_keys.athena_auth_result
	ADD ATTRIBUTE retry_after_ms bigint,
	ADD ATTRIBUTE rate_limit integer,
	ADD ATTRIBUTE rate_remaining integer,
	ADD ATTRIBUTE rate_reset_ms bigint;

CREATE FUNCTION athena_keys.athena_authenticate(
	key text, client text, ip inet, rights text[], cost integer)
RETURNS athena_keys.athena_auth_result
AS 'MODULE_PATHNAME', 'athena_authenticate'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

COMMENT ON FUNCTION athena_keys.athena_authenticate(text, text, inet, text[], integer) IS
	'Decide one gateway request that consumes cost units (1 to 1000000, NULL = 1) of its rate limits.';

CREATE FUNCTION athena_keys._require_rate_limit(requests integer, per interval, burst integer)
RETURNS interval
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- The period as the seconds it stands for, after checking the limit: at
-- least one request, a period from 1 millisecond to 1 year, a burst of at
-- least 1, and no more than one request per microsecond.
DECLARE
	seconds numeric;
BEGIN
	PERFORM athena_keys._require_not_null(requests, 'requests');
	PERFORM athena_keys._require_not_null(per, 'per');
	IF requests < 1 THEN
		RAISE EXCEPTION 'rate limit requests must be positive'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('The limit given allows %s requests.', requests),
			      HINT = 'Pass the number of requests allowed per period, 1 or more; to lift a limit, clear it.';
	END IF;
	seconds := extract(epoch FROM per);
	IF seconds < 0.001 OR seconds > 31557600 THEN
		RAISE EXCEPTION 'rate limit period must be between 1 millisecond and 1 year'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('The period given is %s.', per),
			      HINT = 'Pass a period such as interval ''1 second'', ''1 minute'' or ''1 day''.';
	END IF;
	IF requests > seconds * 1000000 THEN
		RAISE EXCEPTION 'rate limit of % per % is faster than one request per microsecond', requests, per
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'A limit admits at most 1000000 requests per second.',
			      HINT = 'Pass fewer requests or a longer period.';
	END IF;
	IF burst IS NOT NULL AND burst < 1 THEN
		RAISE EXCEPTION 'rate limit burst must be positive'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('The burst given is %s.', burst),
			      HINT = 'Pass the requests a full bucket may take at once, or NULL for as many as the limit allows per period.';
	END IF;
	IF burst IS NOT NULL AND seconds * burst > 3155760000::numeric * requests THEN
		RAISE EXCEPTION 'rate limit bucket of % per % with a burst of % is too long', requests, per, burst
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('A full bucket would take %s years to earn; a limit''s burst x period / requests is at most 100 years.',
			                      round(seconds * burst / requests / 31557600, 1)),
			      HINT = 'Pass a smaller burst, or more requests per period.';
	END IF;
	RETURN justify_hours(make_interval(secs => seconds));
END
$$;

CREATE FUNCTION athena_keys.athena_set_key_rate_limit(
	id uuid, requests integer, per interval, burst integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Limit a key to requests per period (burst NULL: as many as requests);
-- the key's limit of the same period is replaced.
DECLARE
	k athena_keys.api_key;
	normalized interval;
BEGIN
	k := athena_keys._require_key(id);
	normalized := athena_keys._require_rate_limit(requests, per, burst);
	INSERT INTO athena_keys.api_key_rate_limit AS l (api_key_id, requests, per, burst)
	VALUES (k.id, requests, normalized, coalesce(burst, requests))
	ON CONFLICT ON CONSTRAINT api_key_rate_limit_key_per
	DO UPDATE SET requests = EXCLUDED.requests, burst = EXCLUDED.burst, updated_at = now();
END
$$;

CREATE FUNCTION athena_keys.athena_clear_key_rate_limit(id uuid, per interval DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Lift a key's limit of one period (per NULL: all of them); returns how
-- many were lifted.
DECLARE
	k athena_keys.api_key;
	normalized interval;
	lifted integer;
BEGIN
	k := athena_keys._require_key(id);
	IF per IS NOT NULL THEN
		normalized := athena_keys._require_rate_limit(1, per, NULL);
	END IF;
	DELETE FROM athena_keys.api_key_rate_limit l
	 WHERE l.api_key_id = k.id AND (normalized IS NULL OR l.per = normalized);
	GET DIAGNOSTICS lifted = ROW_COUNT;
	RETURN lifted;
END
$$;

CREATE FUNCTION athena_keys.athena_set_client_rate_limit(
	client text, requests integer, per interval, burst integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Limit every key presenting client, together, to requests per period
-- (burst NULL: as many as requests); the client's limit of the same period
-- is replaced.
DECLARE
	normalized interval;
BEGIN
	PERFORM athena_keys._require_not_null(client, 'client');
	PERFORM athena_keys._require_client_name(client);
	normalized := athena_keys._require_rate_limit(requests, per, burst);
	INSERT INTO athena_keys.api_key_rate_limit AS l (client_name, requests, per, burst)
	VALUES (client, requests, normalized, coalesce(burst, requests))
	ON CONFLICT ON CONSTRAINT api_key_rate_limit_client_per
	DO UPDATE SET requests = EXCLUDED.requests, burst = EXCLUDED.burst, updated_at = now();
END
$$;

CREATE FUNCTION athena_keys.athena_clear_client_rate_limit(client text, per interval DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Lift a client's limit of one period (per NULL: all of them); returns how
-- many were lifted.
DECLARE
	normalized interval;
	lifted integer;
BEGIN
	PERFORM athena_keys._require_not_null(client, 'client');
	IF per IS NOT NULL THEN
		normalized := athena_keys._require_rate_limit(1, per, NULL);
	END IF;
	DELETE FROM athena_keys.api_key_rate_limit l
	 WHERE l.client_name = client AND (normalized IS NULL OR l.per = normalized);
	GET DIAGNOSTICS lifted = ROW_COUNT;
	RETURN lifted;
END
$$;

COMMENT ON FUNCTION athena_keys.athena_set_key_rate_limit(uuid, integer, interval, integer) IS
	'Limit a key to requests per period with a burst (default requests); replaces its limit of that period.';
COMMENT ON FUNCTION athena_keys.athena_clear_key_rate_limit(uuid, interval) IS
	'Lift a key''s limit of one period, or all of them; returns how many were lifted.';
COMMENT ON FUNCTION athena_keys.athena_set_client_rate_limit(text, integer, interval, integer) IS
	'Limit all keys presenting a client, together, to requests per period with a burst; replaces that period''s limit.';
COMMENT ON FUNCTION athena_keys.athena_clear_client_rate_limit(text, interval) IS
	'Lift a client''s limit of one period, or all of them; returns how many were lifted.';

--------------------------------------------------------------------------
-- 1.4 adds athena_gateway_verdict and athena_gateway_verdicts (issue 17),
-- and the gateway role may call them.
--------------------------------------------------------------------------
-- The compact verdict for gateways: the same decision and effects as
-- athena_authenticate, answered as one text value (src/gateway_verdict_fields.h:
-- allowed|status|fail_mode|key_id|public_id|reason|retry_after_ms|
-- rate_limit|rate_remaining|rate_reset_ms|client_name, an empty field
-- NULL, client_name the rest of the value).  PostgreSQL executes a
-- scalar called in the target list much more cheaply than a row-returning
-- function in FROM, so athena-authd calls this one.
CREATE FUNCTION athena_keys.athena_gateway_verdict(
	key text, client text, ip inet, rights text[])
RETURNS text
AS 'MODULE_PATHNAME', 'athena_gateway_verdict'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

COMMENT ON FUNCTION athena_keys.athena_gateway_verdict(text, text, inet, text[]) IS
	'Decide one gateway request as athena_authenticate does; the verdict a gateway acts on, as one text value.';
REVOKE ALL ON FUNCTION athena_keys.athena_gateway_verdict(text, text, inet, text[]) FROM PUBLIC;
-- A batch of gateway requests in one statement (src/gateway_batch.c):
-- element i of each array is request i's argument (rights[i] its required
-- rights as one comma-separated list), and element i of the answer is
-- athena_gateway_verdict's verdict for it, the same decision and effects;
-- a request whose decision raised is answered E|sqlstate|message (its
-- subtransaction rolled back), the others are decided.  A statement costs
-- PostgreSQL about as much as a decision, so athena-authd sends the
-- requests it holds at once as one call.
CREATE FUNCTION athena_keys.athena_gateway_verdicts(
	keys text[], clients text[], ips inet[], rights text[])
RETURNS text[]
AS 'MODULE_PATHNAME', 'athena_gateway_verdicts'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE;

COMMENT ON FUNCTION athena_keys.athena_gateway_verdicts(text[], text[], inet[], text[]) IS
	'Decide a batch of gateway requests, each as athena_gateway_verdict does; one verdict per request, in order.';
REVOKE ALL ON FUNCTION athena_keys.athena_gateway_verdicts(text[], text[], inet[], text[]) FROM PUBLIC;

CREATE OR REPLACE FUNCTION athena_keys.athena_grant_gateway_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Let role_name call athena_authenticate (both forms) and
-- athena_gateway_verdict (the same decision, the compact answer) and
-- athena_gateway_verdicts (a batch of them), and nothing else.
DECLARE
	r regrole := athena_keys._existing_role(role_name);
BEGIN
	EXECUTE format('GRANT USAGE ON SCHEMA athena_keys TO %s', r);
	EXECUTE format('GRANT USAGE ON TYPE athena_keys.athena_auth_result TO %s', r);
	EXECUTE format('GRANT EXECUTE ON FUNCTION athena_keys.athena_authenticate(text, text, inet, text[]) TO %s', r);
	EXECUTE format('GRANT EXECUTE ON FUNCTION athena_keys.athena_authenticate(text, text, inet, text[], integer) TO %s', r);
	EXECUTE format('GRANT EXECUTE ON FUNCTION athena_keys.athena_gateway_verdict(text, text, inet, text[]) TO %s', r);
	EXECUTE format('GRANT EXECUTE ON FUNCTION athena_keys.athena_gateway_verdicts(text[], text[], inet[], text[]) TO %s', r);
END
$$;

CREATE OR REPLACE FUNCTION athena_keys.athena_record_decisions(decisions jsonb) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Append decisions made elsewhere (a hot standby's log writer ships them
-- here in batches) to api_key_auth_log, and stamp last_used_at for the keys
-- they authenticated.  decisions is a JSON array of objects with the log's
-- column names.  Whoever may call this writes into the audit log, so only
-- rows athena_authenticate could have produced are taken: created_at from
-- 30 days ago (a standby keeps its queue while its primary is down) to 5
-- minutes ahead (clock skew), and status, allowed, reason, enforced,
-- authenticated and authorized agreeing with the decision rules, a public
-- id of the key format, granted and missing rights without NULLs (a rights
-- failure naming what is missing), no address for "Client IP required", and a
-- live key named only together with its own public id.  Other rows, and
-- rows with a value that does not convert to its column (the batch is then
-- taken one decision at a time), are skipped and counted in a WARNING.
-- last_used_at is never stamped beyond now().  Returns the rows appended.
DECLARE
	received integer;
	appended integer;
	decision jsonb;
BEGIN
	PERFORM athena_keys._require_not_null(decisions, 'decisions');
	IF jsonb_typeof(decisions) <> 'array' THEN
		RAISE EXCEPTION 'decisions must be a json array'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got a json %s.', jsonb_typeof(decisions)),
			      HINT = 'Pass an array of objects with the columns of athena_keys.api_key_auth_log.';
	END IF;
	received := jsonb_array_length(decisions);
	BEGIN
		appended := athena_keys._append_decisions(decisions);
	EXCEPTION WHEN data_exception THEN
		-- One value that does not convert (an address that is no inet, a
		-- status that is no integer, an element that is no object) fails
		-- the whole set; the others must not be held up with it.
		appended := 0;
		FOR decision IN SELECT d FROM jsonb_array_elements(decisions) AS d LOOP
			BEGIN
				appended := appended + athena_keys._append_decisions(jsonb_build_array(decision));
			EXCEPTION WHEN data_exception THEN
				NULL;
			END;
		END LOOP;
	END;
	IF appended < received THEN
		RAISE WARNING '% of % shipped decisions were skipped', received - appended, received
			USING DETAIL = 'A decision is recorded only when its values convert to the log''s columns, its created_at '
			               'lies between 30 days ago and 5 minutes ahead, and its status, allowed, failure_reason, '
			               'enforced, authenticated, authorized, public id, rights and address agree as '
			               'athena_authenticate produces them.',
			      HINT = 'Check the clock of the server that made the decisions, and that only its log writer '
			             'calls athena_record_decisions.';
	END IF;
	RETURN appended;
END
$$;

CREATE OR REPLACE VIEW athena_keys.athena_key_status AS
SELECT k.id,
       k.public_id,
       k.name,
       k.description,
       k.client_name,
       CASE WHEN NOT k.is_active THEN 'inactive'
            WHEN k.expires_at <= now() THEN 'expired'
            WHEN k.virgin_mode AND NOT k.virgin_resolved THEN 'learning'
            WHEN k.virgin_mode THEN 'locked'
            ELSE 'active' END AS state,
       k.is_active,
       k.expires_at,
       ARRAY(SELECT g.right_name FROM athena_keys.api_key_right_grant g
              WHERE g.api_key_id = k.id ORDER BY g.right_name) AS rights,
       (SELECT count(*) FROM athena_keys.api_key_ip_rule r
         WHERE r.api_key_id = k.id AND r.list = 'whitelist') AS whitelist_size,
       (SELECT count(*) FROM athena_keys.api_key_ip_rule r
         WHERE r.api_key_id = k.id AND r.list = 'blacklist') AS blacklist_size,
       k.virgin_mode,
       k.virgin_request_count,
       k.virgin_until_n_requests,
       (SELECT count(*) FROM athena_keys.api_key_ip_seen s
         WHERE s.api_key_id = k.id) AS seen_ips,
       k.max_whitelist_ips,
       k.virgin_resolved,
       k.virgin_resolved_at,
       k.previous_valid_until AS rotation_grace_until,
       k.last_used_at,
       k.created_at,
       k.updated_at,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('requests', l.requests, 'per', l.per,
                                                     'burst', l.burst) ORDER BY l.per), '[]')
          FROM athena_keys.api_key_rate_limit l WHERE l.api_key_id = k.id) AS rate_limits
  FROM athena_keys.api_key k;

COMMENT ON VIEW athena_keys.athena_key_status IS
	'One row per key: state (active, inactive, expired, learning, locked), binding, rights, list sizes, learning progress, last use, rate limits.';

CREATE OR REPLACE VIEW athena_keys.athena_recent_failures AS
SELECT l.created_at,
       l.failure_reason,
       l.status,
       l.allowed,
       l.enforced,
       l.api_key_id,
       l.api_key_public_id,
       k.name AS key_name,
       l.client_name,
       k.client_name AS key_client_name,
       l.remote_addr,
       l.required_rights,
       l.granted_rights,
       l.missing_rights,
       CASE l.failure_reason
           WHEN 'API key required' THEN
               'No key was presented and enforcement is on for client ' || coalesce(quote_literal(l.client_name), '(none)') || '.'
           WHEN 'Invalid API key' THEN
               CASE WHEN l.api_key_public_id IS NULL THEN 'The presented key is not of the form ath_{public_id}.{secret}.'
                    WHEN l.api_key_id IS NULL THEN 'No key has public id ' || l.api_key_public_id || '.'
                    ELSE 'The secret does not match key ' || l.api_key_public_id || ' (copied wrongly, or rotated).' END
           WHEN 'Inactive API key' THEN 'The key is deactivated (is_active = false).'
           WHEN 'Expired API key' THEN 'The key expired at ' || coalesce(k.expires_at::text, 'a time since changed') || '.'
           WHEN 'API key client mismatch' THEN
               'The key is bound to ' || coalesce(quote_literal(k.client_name), 'another client') ||
               ' but the request named ' || coalesce(quote_literal(l.client_name), 'no client') || '.'
           WHEN 'Insufficient API key rights' THEN
               'Missing ' || array_to_string(l.missing_rights, ', ') || '.'
           WHEN 'IP blocked' THEN 'The address matches a global or per-key blacklist entry.'
           WHEN 'IP not allowed' THEN 'A whitelist applies and the address is in none of its entries.'
           WHEN 'Client IP required' THEN 'IP rules or learning apply but the proxy passed no caller address.'
           WHEN 'Rate limit exceeded' THEN 'A rate limit of the key or of client ' || coalesce(quote_literal(l.client_name), '(none)') || ' had no units left.'
           WHEN 'API key policy unavailable' THEN 'The decision needed a write that this server cannot make (read-only or standby), or a rate limit bucket it could not have (athena_keys not preloaded, or its table full).'
       END AS explanation
  FROM athena_keys.api_key_auth_log l
  LEFT JOIN athena_keys.api_key k ON k.id = l.api_key_id
 WHERE l.failure_reason IS NOT NULL
   AND l.created_at >= now() - interval '1 day'
 ORDER BY l.created_at DESC, l.id DESC;

-- The two views of the log are security barriers: a caller's condition (a
-- function of its own, in pg_temp) saw the failures older than the last
-- day that they leave out.
ALTER VIEW athena_keys.athena_recent_failures SET (security_barrier = true);
ALTER VIEW athena_keys.athena_failure_summary SET (security_barrier = true);

CREATE VIEW athena_keys.athena_rate_limits AS
SELECT CASE WHEN l.api_key_id IS NOT NULL THEN 'key' ELSE 'client' END AS scope,
       l.api_key_id, k.public_id, k.name AS key_name, l.client_name,
       l.requests, l.per, l.burst, l.created_at, l.updated_at
  FROM athena_keys.api_key_rate_limit l
  LEFT JOIN athena_keys.api_key k ON k.id = l.api_key_id;

COMMENT ON VIEW athena_keys.athena_rate_limits IS
	'Every rate limit, of a key or of a client name: requests per period and burst.';

REVOKE ALL ON athena_keys.api_key_rate_limit FROM PUBLIC;
REVOKE ALL ON athena_keys.athena_rate_limits FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys.athena_authenticate(text, text, inet, text[], integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys._require_rate_limit(integer, interval, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys.athena_set_key_rate_limit(uuid, integer, interval, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys.athena_clear_key_rate_limit(uuid, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys.athena_set_client_rate_limit(text, integer, interval, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys.athena_clear_client_rate_limit(text, interval) FROM PUBLIC;

--------------------------------------------------------------------------
-- Existing roles, as in 1.0 -> 1.1: a role that may call the 4-argument
-- athena_authenticate (a gateway or admin role) may call the form with a
-- cost, athena_gateway_verdict and athena_gateway_verdicts; an admin role (EXECUTE on athena_create_key) may call the new
-- admin functions and read the new view.  The initial privileges of the
-- new objects are put back to what this script left, so that the grants
-- count as the operator's and are dumped.  On a fresh install nobody holds
-- those privileges yet, and nothing is granted.
--------------------------------------------------------------------------

DO $$
DECLARE
	auth5 regprocedure := 'athena_keys.athena_authenticate(text, text, inet, text[], integer)';
	verdict regprocedure := 'athena_keys.athena_gateway_verdict(text, text, inet, text[])';
	verdicts regprocedure := 'athena_keys.athena_gateway_verdicts(text[], text[], inet[], text[])';
	admin_functions regprocedure[] := ARRAY[
		'athena_keys.athena_set_key_rate_limit(uuid, integer, interval, integer)'::regprocedure,
		'athena_keys.athena_clear_key_rate_limit(uuid, interval)'::regprocedure,
		'athena_keys.athena_set_client_rate_limit(text, integer, interval, integer)'::regprocedure,
		'athena_keys.athena_clear_client_rate_limit(text, interval)'::regprocedure];
	view_oid oid := 'athena_keys.athena_rate_limits'::regclass;
	before_grants pg_catalog.pg_init_privs[];
	f regprocedure;
	g record;
	granted boolean := false;
BEGIN
	SELECT array_agg(i) INTO before_grants
	  FROM pg_catalog.pg_init_privs i
	 WHERE (i.classoid = 'pg_catalog.pg_proc'::regclass AND i.objoid = ANY (admin_functions || auth5 || verdict || verdicts))
	    OR (i.classoid = 'pg_catalog.pg_class'::regclass AND i.objoid = view_oid);
	FOR g IN
		SELECT a.grantee::regrole AS role_name, bool_or(a.is_grantable) AS grantable
		  FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		 WHERE p.oid = 'athena_keys.athena_authenticate(text, text, inet, text[])'::regprocedure
		   AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner
		 GROUP BY a.grantee ORDER BY a.grantee
	LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s%s', auth5, g.role_name,
		               CASE WHEN g.grantable THEN ' WITH GRANT OPTION' ELSE '' END);
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s%s', verdict, g.role_name,
		               CASE WHEN g.grantable THEN ' WITH GRANT OPTION' ELSE '' END);
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s%s', verdicts, g.role_name,
		               CASE WHEN g.grantable THEN ' WITH GRANT OPTION' ELSE '' END);
		granted := true;
	END LOOP;
	FOR g IN
		SELECT a.grantee::regrole AS role_name, bool_or(a.is_grantable) AS grantable
		  FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
		 WHERE p.oid = 'athena_keys.athena_create_key(text, text, text[], timestamptz, text, boolean, integer, integer, cidr[], cidr[])'::regprocedure
		   AND a.privilege_type = 'EXECUTE' AND a.grantee <> 0 AND a.grantee <> p.proowner
		 GROUP BY a.grantee ORDER BY a.grantee
	LOOP
		FOREACH f IN ARRAY admin_functions LOOP
			EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s%s', f, g.role_name,
			               CASE WHEN g.grantable THEN ' WITH GRANT OPTION' ELSE '' END);
		END LOOP;
		EXECUTE format('GRANT SELECT ON athena_keys.athena_rate_limits TO %s%s', g.role_name,
		               CASE WHEN g.grantable THEN ' WITH GRANT OPTION' ELSE '' END);
		granted := true;
	END LOOP;
	IF NOT granted THEN
		RETURN;
	END IF;
	DELETE FROM pg_catalog.pg_init_privs i
	 WHERE (i.classoid = 'pg_catalog.pg_proc'::regclass AND i.objoid = ANY (admin_functions || auth5 || verdict || verdicts))
	    OR (i.classoid = 'pg_catalog.pg_class'::regclass AND i.objoid = view_oid);
	INSERT INTO pg_catalog.pg_init_privs SELECT * FROM unnest(before_grants);
END
$$;

-- The key row's format CHECKs without bounded repetition ({64}, {8,64}),
-- which PostgreSQL's regex engine matches ten times slower than a length
-- and one negated class: every UPDATE of api_key evaluates them for each
-- row, the log writer's batches of last_used_at stamps included.  The
-- rules are the same.
ALTER TABLE athena_keys.api_key
	DROP CONSTRAINT api_key_public_id_format,
	ADD CONSTRAINT api_key_public_id_format CHECK
		(length(public_id) BETWEEN 8 AND 64 AND public_id !~ '[^0-9A-Za-z_-]'),
	DROP CONSTRAINT api_key_hash_format,
	ADD CONSTRAINT api_key_hash_format CHECK (length(key_hash) = 64 AND key_hash !~ '[^0-9a-f]'),
	DROP CONSTRAINT api_key_previous_hash_format,
	ADD CONSTRAINT api_key_previous_hash_format CHECK
		(length(previous_key_hash) = 64 AND previous_key_hash !~ '[^0-9a-f]');

-- What a key cache miss looks a public id up by (src/key_rows.c): in the "C"
-- collation a descent of a large key table compares bytes instead of
-- collating them (half of a 1M-key miss's descent under C.UTF-8).  The column
-- and its UNIQUE constraint, which SQL uses, keep the database collation;
-- equality is the same in both (it is deterministic), so either index finds
-- the same key.
-- Building it reads the key table once; decisions go on meanwhile, key
-- changes wait.
CREATE UNIQUE INDEX api_key_public_id_lookup_idx ON athena_keys.api_key (public_id COLLATE "C");

-- The log's time index becomes a BRIN: rows arrive in created_at order and
-- the log is searched by time ranges only (the views use the failures
-- index), and a btree entry cost the log writer more than the row itself.
-- The failures index is built again after it: a partition made later
-- copies the log's indexes in the order they were made, and names them
-- after that order, so a fresh install's order gives a fresh install's
-- names.  Building them reads the log twice; decisions that log wait
-- meanwhile.
DROP INDEX athena_keys.api_key_auth_log_created_at_idx;
DROP INDEX athena_keys.api_key_auth_log_failures_idx;
CREATE INDEX api_key_auth_log_created_at_idx ON athena_keys.api_key_auth_log USING brin (created_at);
CREATE INDEX api_key_auth_log_failures_idx ON athena_keys.api_key_auth_log (created_at)
	WHERE failure_reason IS NOT NULL;

-- A BRIN index built on a partition summarizes its still-filling last range
-- too, and every row inserted into a summarized range rewrites the summary
-- (about 9k instructions per logged decision): partitions made from now on
-- leave their last range unsummarized, and so do the indexes just built on
-- the default partition and on the partitions of today and the days ahead.
CREATE FUNCTION athena_keys._desummarize_auth_log_tail(part regclass) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Leave the block range a partition fills next unsummarized in each of its
-- BRIN indexes.  Building a BRIN index summarizes every range, the last,
-- still-filling one included (an empty partition's range 0 gets an
-- all-nulls summary), and every row inserted into a summarized range widens
-- its summary: the index's descriptor built again and the summary tuple
-- rewritten with its WAL record, about 9k instructions per logged decision
-- for the first ~6,000 rows of each day.  An insert into an unsummarized
-- range costs only its range map lookup; a BRIN scan reads such a range
-- whole (1 MB at most), and VACUUM summarizes it once the partition has
-- grown past it.
-- An operator's partitioned partition has partitioned indexes, which hold
-- no ranges (brin_desummarize_range refuses them): they are left alone.
DECLARE
	idx regclass;
	tail_block bigint := greatest(pg_relation_size(part) / current_setting('block_size')::bigint - 1, 0);
BEGIN
	FOR idx IN SELECT i.indexrelid::regclass
	             FROM pg_index i
	             JOIN pg_class c ON c.oid = i.indexrelid
	             JOIN pg_am a ON a.oid = c.relam
	            WHERE i.indrelid = part AND a.amname = 'brin' AND c.relkind = 'i'
	LOOP
		PERFORM brin_desummarize_range(idx, tail_block);
	END LOOP;
END
$$;
REVOKE ALL ON FUNCTION athena_keys._desummarize_auth_log_tail(regclass) FROM PUBLIC;

-- Partition bounds are read with a pattern free of backslashes: the body
-- is parsed under the caller's standard_conforming_strings, and with it off
-- every bound read as NULL, so athena_prune_auth_log dropped nothing.
CREATE OR REPLACE FUNCTION athena_keys._auth_log_partition_bounds()
RETURNS TABLE (part regclass, lower_bound timestamptz, upper_bound timestamptz, is_member boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD'
AS $$
-- Every partition of the log with its real bounds, read back from
-- pg_get_expr under the pinned settings (so the text parses exactly as it
-- was printed), and whether the extension owns it.  The default partition
-- is left out; a MINVALUE or MAXVALUE bound comes out as -infinity or
-- infinity, so that such a partition overlaps what it covers and is never
-- dropped while it may hold young rows.  The pattern has no backslash: this
-- body is parsed under the caller's standard_conforming_strings, and with
-- it off '\(' would read as '(' and every bound as NULL (nothing pruned).
SELECT c.oid::regclass,
       CASE WHEN b[1] = 'MINVALUE' THEN '-infinity'::timestamptz ELSE trim(both  from b[1])::timestamptz END,
       CASE WHEN b[2] = 'MAXVALUE' THEN 'infinity'::timestamptz ELSE trim(both  from b[2])::timestamptz END,
       EXISTS (SELECT 1 FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
                WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.refclassid = 'pg_extension'::regclass AND e.extname = 'athena_keys'
                  AND d.deptype = 'e')
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
  LEFT JOIN LATERAL regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                 '^FOR VALUES FROM [(](MINVALUE|''[^'']+'')[)] TO [(](MAXVALUE|''[^'']+'')[)]$') AS b ON true
 WHERE i.inhparent = 'athena_keys.api_key_auth_log'::regclass
   AND pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
$$;

CREATE OR REPLACE FUNCTION athena_keys._create_auth_log_partition(day date) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD'
AS $$
-- Create the partition for one UTC day unless its name is taken or another
-- partition already covers part of that day.  Rows that already fell into
-- the default partition for that day are moved into it, under the default
-- partition's ACCESS EXCLUSIVE lock (taken by short attempts; when a reader
-- holds it for 2 s the day is left for the next run, with a WARNING).
-- ATTACH takes SHARE UPDATE EXCLUSIVE on the log, which decisions do not
-- wait for.  Bounds are written as UTC ISO text with an explicit +00,
-- whatever the session's settings.  New partitions become members of the
-- extension, so pg_dump leaves the log out and DROP EXTENSION removes them.
-- Returns whether a partition was created.
DECLARE
	part text := athena_keys._auth_log_partition_name(day);
	lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
	hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
	moved_columns text;
BEGIN
	PERFORM athena_keys._lock_auth_log_retention();
	IF to_regclass('athena_keys.' || quote_ident(part)) IS NOT NULL OR
	   EXISTS (SELECT 1 FROM athena_keys._auth_log_partition_bounds() b
	            WHERE b.lower_bound < hi AND b.upper_bound > lo) THEN
		RETURN false;
	END IF;
	IF NOT athena_keys._lock_tables_within(ARRAY['athena_keys.api_key_auth_log_default'::regclass],
	                                       interval '2 seconds') THEN
		RAISE WARNING 'auth log partition for % not created: the default partition is in use', day
			USING DETAIL = 'Another session held a lock on athena_keys.api_key_auth_log_default for 2 seconds; '
			               'decisions for that day go to the default partition until it exists.',
			      HINT = 'Nothing to do: the next athena_maintain_auth_log or athena_prune_auth_log run retries.';
		RETURN false;
	END IF;
	-- ATTACH refuses a table without the log's CHECK constraints and
	-- generated columns, which an operator may have added.
	EXECUTE format('CREATE TABLE athena_keys.%I (LIKE athena_keys.api_key_auth_log
	                INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED)', part);
	-- Moved by name: the default partition's columns may be in another
	-- order than the log's (an operator attached one of their own), and
	-- generated columns are computed again.
	SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) INTO moved_columns
	  FROM pg_attribute a
	 WHERE a.attrelid = 'athena_keys.api_key_auth_log'::regclass
	   AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '';
	EXECUTE format('WITH moved AS (DELETE FROM athena_keys.api_key_auth_log_default
	                                WHERE created_at >= $1 AND created_at < $2 RETURNING %s)
	                INSERT INTO athena_keys.%I (%s) OVERRIDING SYSTEM VALUE SELECT * FROM moved',
	               moved_columns, part, moved_columns) USING lo, hi;
	EXECUTE format('ALTER TABLE athena_keys.api_key_auth_log ATTACH PARTITION athena_keys.%I
	                FOR VALUES FROM (%L) TO (%L)', part,
	               to_char(lo AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00',
	               to_char(hi AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00');
	PERFORM athena_keys._desummarize_auth_log_tail(('athena_keys.' || quote_ident(part))::regclass);
	-- Inside an extension script the new table is a member already.
	IF NOT EXISTS (SELECT 1 FROM pg_depend d
	                WHERE d.classid = 'pg_class'::regclass
	                  AND d.objid = ('athena_keys.' || quote_ident(part))::regclass
	                  AND d.deptype = 'e') THEN
		EXECUTE format('ALTER EXTENSION athena_keys ADD TABLE athena_keys.%I', part);
	END IF;
	RETURN true;
END
$$;

SELECT athena_keys._desummarize_auth_log_tail(i.inhrelid)
  FROM pg_inherits i
  LEFT JOIN athena_keys._auth_log_partition_bounds() b ON b.part = i.inhrelid
 WHERE i.inhparent = 'athena_keys.api_key_auth_log'::regclass
   AND (b.part IS NULL OR b.upper_bound > now());

-- Learning: a key deleted, deactivated or expired while a call waited for
-- its row is answered as such; IPv4-mapped whitelist entries match after
-- another call's lock-in as they do in the C matcher.
CREATE FUNCTION athena_keys._ipv4_unmapped(addr inet) RETURNS inet
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
-- An IPv4-mapped IPv6 address or network (inside ::ffff:0:0/96) as the IPv4
-- one it denotes, anything else unchanged: the rule matching of the C code
-- (ip_rules.c) treats both spellings alike, and so must SQL that judges
-- the same rules.
SELECT CASE
	WHEN family(addr) = 6 AND masklen(addr) >= 96
	     AND addr OPERATOR(pg_catalog.<<=) '::ffff:0:0/96'::inet
	THEN set_masklen('0.0.0.0'::inet OPERATOR(pg_catalog.+)
	                 (host(addr)::inet OPERATOR(pg_catalog.-) '::ffff:0.0.0.0'::inet),
	                 masklen(addr) - 96)
	ELSE addr
END
$$;

CREATE OR REPLACE FUNCTION athena_keys._learn(key_id uuid, ip inet) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- One learning observation for a key in virgin mode, under the key's row
-- lock so that the count is exact and lock-in happens once.  Returns
-- 'learning', 'locked_in' (this call completed lock-in), or, when another
-- call resolved the key first, 'whitelisted' / 'not_whitelisted' from the
-- committed per-key whitelist.  The row the lock returns is the newest: a
-- key deleted, deactivated or expired (by the decision's clock: the
-- calling statement's start, or the transaction's when later) while this
-- call waited for it returns 'deleted', 'inactive' or 'expired', which the
-- decision answers as such.
DECLARE
	k record;
	request_count bigint;
	distinct_ips bigint;
BEGIN
	SELECT virgin_mode, virgin_resolved, virgin_until_n_requests, max_whitelist_ips,
	       is_active, expires_at
	  INTO k
	  FROM athena_keys.api_key WHERE id = key_id FOR UPDATE;
	IF NOT FOUND THEN
		RETURN 'deleted';
	ELSIF NOT k.is_active THEN
		RETURN 'inactive';
	ELSIF k.expires_at <= GREATEST(now(), statement_timestamp()) THEN
		RETURN 'expired';
	ELSIF NOT k.virgin_mode THEN
		RETURN 'not_learning';
	END IF;
	IF k.virgin_resolved THEN
		IF EXISTS (SELECT 1 FROM athena_keys.api_key_ip_rule r
		            WHERE r.api_key_id = key_id AND r.list = 'whitelist') AND
		   NOT EXISTS (SELECT 1 FROM athena_keys.api_key_ip_rule r
		                WHERE r.api_key_id = key_id AND r.list = 'whitelist'
		                  AND athena_keys._ipv4_unmapped(r.addr) OPERATOR(pg_catalog.>>=)
		                      athena_keys._ipv4_unmapped(ip)) THEN
			RETURN 'not_whitelisted';
		END IF;
		RETURN 'whitelisted';
	END IF;

	-- clock_timestamp(): calls inside one transaction still order by arrival.
	INSERT INTO athena_keys.api_key_ip_seen AS s (api_key_id, addr, first_seen_at, last_seen_at)
	VALUES (key_id, ip, clock_timestamp(), clock_timestamp())
	ON CONFLICT (api_key_id, addr) DO UPDATE
	   SET hit_count = s.hit_count + 1, last_seen_at = clock_timestamp();

	UPDATE athena_keys.api_key
	   SET virgin_request_count = virgin_request_count + 1, last_used_at = now()
	 WHERE id = key_id
	RETURNING virgin_request_count INTO request_count;

	IF k.max_whitelist_ips > 0 THEN
		SELECT count(*) INTO distinct_ips
		  FROM athena_keys.api_key_ip_seen WHERE api_key_id = key_id;
	END IF;

	IF (k.virgin_until_n_requests > 0 AND request_count >= k.virgin_until_n_requests) OR
	   (k.max_whitelist_ips > 0 AND distinct_ips >= k.max_whitelist_ips) THEN
		PERFORM athena_keys._lock_in(key_id);
		RETURN 'locked_in';
	END IF;
	RETURN 'learning';
END
$$;
REVOKE ALL ON FUNCTION athena_keys._ipv4_unmapped(inet) FROM PUBLIC;

-- Deleting a right or a key removes its dependent rows explicitly, also
-- under session_replication_role = replica (no foreign key cascade).
CREATE OR REPLACE FUNCTION athena_keys.athena_delete_right(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Remove a right from the catalog, and with it every grant of it.  The
-- grants go first, explicitly: under session_replication_role = replica
-- the foreign key's cascade does not fire, and a grant left behind would
-- still authorize its key.  The right is locked first: a grant in flight
-- (which share-locks it, _require_rights) commits before its grants are
-- deleted, or finds the right gone.
BEGIN
	PERFORM athena_keys._require_not_null(name, 'name');
	PERFORM 1 FROM athena_keys.api_key_right r WHERE r.name = athena_delete_right.name FOR UPDATE;
	DELETE FROM athena_keys.api_key_right_grant g WHERE g.right_name = athena_delete_right.name;
	DELETE FROM athena_keys.api_key_right r WHERE r.name = athena_delete_right.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'right % does not exist', coalesce(name, 'NULL')
			USING ERRCODE = 'undefined_object',
			      DETAIL = 'Only rights in athena_keys.api_key_right can be deleted.',
			      HINT = 'List the catalog with SELECT name FROM athena_keys.api_key_right.';
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION athena_keys.athena_delete_key(id uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Remove a key with its grants, rules, seen rows and rate limits; its log
-- rows stay.  They go explicitly: under session_replication_role = replica
-- the foreign keys' cascades do not fire, and rows left behind would break
-- a later restore, which adds the foreign keys after the data.
DECLARE
	k athena_keys.api_key;
BEGIN
	k := athena_keys._require_key(id);
	DELETE FROM athena_keys.api_key_right_grant g WHERE g.api_key_id = k.id;
	DELETE FROM athena_keys.api_key_ip_rule r WHERE r.api_key_id = k.id;
	DELETE FROM athena_keys.api_key_ip_seen s WHERE s.api_key_id = k.id;
	DELETE FROM athena_keys.api_key_rate_limit l WHERE l.api_key_id = k.id;
	DELETE FROM athena_keys.api_key AS a WHERE a.id = k.id;
END
$$;

CREATE OR REPLACE FUNCTION athena_keys._require_rights(rights text[]) RETURNS text[]
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- The distinct right names of rights, or an error naming every one that is
-- NULL or missing from the catalog.  The rights found are share-locked
-- until the caller's transaction ends, so a concurrent athena_delete_right
-- waits for the grant and then deletes it too (not the foreign key's
-- cascade, which session_replication_role = replica turns off).
DECLARE
	unknown text[];
BEGIN
	IF rights IS NULL THEN
		RETURN '{}';
	END IF;
	IF array_position(rights, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'rights must not contain null'
			USING ERRCODE = 'null_value_not_allowed',
			      DETAIL = 'A right name is a non-empty string.',
			      HINT = 'Remove the NULL elements from the rights array.';
	END IF;
	PERFORM 1 FROM athena_keys.api_key_right c
	  WHERE c.name = ANY (rights) ORDER BY c.name FOR KEY SHARE;
	SELECT array_agg(DISTINCT r ORDER BY r) INTO unknown
	  FROM unnest(rights) AS r
	 WHERE NOT EXISTS (SELECT 1 FROM athena_keys.api_key_right c WHERE c.name = r);
	IF unknown IS NOT NULL THEN
		-- Name a few: an error listing thousands of names helps nobody.
		RAISE EXCEPTION 'right % is not in the catalog',
			array_to_string(unknown[1:5], ', ') ||
			CASE WHEN cardinality(unknown) > 5
			     THEN format(' (and %s more)', cardinality(unknown) - 5) ELSE '' END
			USING ERRCODE = 'undefined_object',
			      DETAIL = 'Only rights listed in athena_keys.api_key_right can be granted.',
			      HINT = 'Add the right first with athena_keys.athena_create_right(name).';
	END IF;
	RETURN ARRAY(SELECT DISTINCT r FROM unnest(rights) AS r ORDER BY r);
END
$$;

-- Rows that a delete under session_replication_role = replica left behind
-- before 1.4 (no foreign key cascade there): a grant of a deleted right
-- still authorized its key, and every such row breaks a restore, which
-- adds the foreign keys after the data.
DELETE FROM athena_keys.api_key_right_grant g
 WHERE NOT EXISTS (SELECT 1 FROM athena_keys.api_key k WHERE k.id = g.api_key_id)
    OR NOT EXISTS (SELECT 1 FROM athena_keys.api_key_right r WHERE r.name = g.right_name);
DELETE FROM athena_keys.api_key_ip_rule x
 WHERE NOT EXISTS (SELECT 1 FROM athena_keys.api_key k WHERE k.id = x.api_key_id);
DELETE FROM athena_keys.api_key_ip_seen x
 WHERE NOT EXISTS (SELECT 1 FROM athena_keys.api_key k WHERE k.id = x.api_key_id);

-- An update of a key's id invalidates the caches: they read the key's
-- grants, rules and limits by it.
DROP TRIGGER api_key_update_invalidate ON athena_keys.api_key;
CREATE TRIGGER api_key_update_invalidate
	AFTER UPDATE ON athena_keys.api_key
	FOR EACH ROW WHEN (
		OLD.id IS DISTINCT FROM NEW.id OR
		OLD.public_id IS DISTINCT FROM NEW.public_id OR
		OLD.key_salt IS DISTINCT FROM NEW.key_salt OR
		OLD.key_hash IS DISTINCT FROM NEW.key_hash OR
		OLD.previous_key_salt IS DISTINCT FROM NEW.previous_key_salt OR
		OLD.previous_key_hash IS DISTINCT FROM NEW.previous_key_hash OR
		OLD.previous_valid_until IS DISTINCT FROM NEW.previous_valid_until OR
		OLD.is_active IS DISTINCT FROM NEW.is_active OR
		OLD.expires_at IS DISTINCT FROM NEW.expires_at OR
		OLD.client_name IS DISTINCT FROM NEW.client_name OR
		OLD.virgin_mode IS DISTINCT FROM NEW.virgin_mode OR
		OLD.virgin_resolved IS DISTINCT FROM NEW.virgin_resolved)
	EXECUTE FUNCTION athena_keys._invalidate_caches();
ALTER TABLE athena_keys.api_key ENABLE ALWAYS TRIGGER api_key_update_invalidate;

CREATE OR REPLACE FUNCTION athena_keys._keep_invalidation_triggers_always() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t record;
BEGIN
	FOR t IN
		SELECT tg.tgrelid::regclass AS rel, tg.tgname
		  FROM pg_catalog.pg_trigger tg
		  JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
		  JOIN pg_catalog.pg_proc p ON p.oid = tg.tgfoid
		  JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		 WHERE n.nspname = 'athena_keys'
		   AND p.proname IN ('_invalidate_caches', '_config_insert_as_update', '_right_insert_over_seeded')
		   AND tg.tgenabled <> 'A'
		   AND pg_catalog.pg_has_role(c.relowner, 'USAGE')
	LOOP
		EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', t.rel, t.tgname);
	END LOOP;
END
$$;
ALTER TABLE athena_keys.api_key_config ENABLE ALWAYS TRIGGER api_key_config_insert_as_update;

CREATE OR REPLACE FUNCTION athena_keys._existing_role(role_name name) RETURNS regrole
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	r regrole;
BEGIN
	PERFORM athena_keys._require_not_null(role_name, 'role_name');
	r := to_regrole(quote_ident(role_name));
	IF r IS NULL THEN
		RAISE EXCEPTION 'role "%" does not exist', role_name
			USING ERRCODE = 'undefined_object',
			      DETAIL = 'Privileges can only be granted to an existing role; PUBLIC, which every role belongs to, gets none.',
			      HINT = 'Create the role first, e.g. CREATE ROLE athena_gateway LOGIN.';
	END IF;
	RETURN r;
END
$$;

CREATE OR REPLACE FUNCTION athena_keys.athena_grant_admin_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Let role_name run the admin functions and read the triage views, but no
-- table directly (so never key_hash, key_salt or raw log rows).  Writing
-- into the audit log (athena_record_decisions) is not administration: from
-- 1.3 it belongs to the shipping role (athena_grant_shipping_role) only.
DECLARE
	r regrole := athena_keys._existing_role(role_name);
	f regprocedure;
	v regclass;
BEGIN
	EXECUTE format('GRANT USAGE ON SCHEMA athena_keys TO %s', r);
	EXECUTE format('GRANT USAGE ON TYPE athena_keys.athena_auth_result TO %s', r);
	FOR f IN
		SELECT p.oid::regprocedure FROM pg_proc p
		 WHERE p.pronamespace = 'athena_keys'::regnamespace AND starts_with(p.proname, 'athena_')
		   AND p.proname NOT IN ('athena_grant_gateway_role', 'athena_grant_admin_role',
		                         'athena_grant_shipping_role', 'athena_record_decisions')
	LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %s', f, r);
	END LOOP;
	FOR v IN
		SELECT c.oid::regclass FROM pg_class c
		 WHERE c.relnamespace = 'athena_keys'::regnamespace AND c.relkind = 'v'
	LOOP
		EXECUTE format('GRANT SELECT ON %s TO %s', v, r);
	END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION athena_keys.athena_grant_shipping_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Let role_name ship a hot standby's decisions to this primary
-- (athena_record_decisions) and do nothing else: no table, no view, no
-- other function.  A standby's primary_conninfo then needs no admin
-- credentials.
DECLARE
	r regrole := athena_keys._existing_role(role_name);
BEGIN
	EXECUTE format('GRANT USAGE ON SCHEMA athena_keys TO %s', r);
	EXECUTE format('GRANT EXECUTE ON FUNCTION athena_keys.athena_record_decisions(jsonb) TO %s', r);
END
$$;
REVOKE ALL ON FUNCTION athena_keys._existing_role(name) FROM PUBLIC;

CREATE OR REPLACE FUNCTION athena_keys.athena_rotate_key(id uuid, grace interval DEFAULT '0')
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- New secret for the same key id and public id; the old secret keeps
-- working until now() + grace.  Returns the new plaintext, this once.
-- The grace is judged by the time it ends: an interval of mixed signs
-- ('1 month -30 days') compares as one thing and adds up to another.
DECLARE
	k athena_keys.api_key;
	new_secret text := athena_keys._random_hex(32);
	new_salt text := athena_keys._random_hex(16);
	old_until timestamptz;
BEGIN
	PERFORM athena_keys._require_not_null(grace, 'grace');
	IF grace < interval '0' OR NOT isfinite(grace) THEN
		RAISE EXCEPTION 'grace period must be a finite, non-negative interval'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got %s.', coalesce(grace::text, 'NULL')),
			      HINT = 'Pass interval ''0'' to revoke the old secret at once, or e.g. interval ''1 hour''.';
	END IF;
	BEGIN
		old_until := now() + grace;
	EXCEPTION WHEN datetime_field_overflow THEN
		RAISE EXCEPTION 'grace period is too long'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got %s: now() plus it is past the last timestamp.', grace),
			      HINT = 'Pass a grace period of days or weeks, e.g. interval ''1 day''.';
	END;
	IF old_until < now() THEN
		RAISE EXCEPTION 'grace period must not end before now'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got %s, whose parts have opposite signs: now() plus it is in the past.', grace),
			      HINT = 'Pass a grace period whose parts are all non-negative, e.g. interval ''1 hour''.';
	END IF;
	k := athena_keys._require_key(id);
	UPDATE athena_keys.api_key AS a
	   SET previous_key_salt = CASE WHEN old_until > now() THEN k.key_salt END,
	       previous_key_hash = CASE WHEN old_until > now() THEN k.key_hash END,
	       previous_valid_until = CASE WHEN old_until > now() THEN old_until END,
	       key_salt = new_salt,
	       key_hash = athena_keys._key_digest(new_salt, new_secret),
	       updated_at = now()
	 WHERE a.id = k.id;
	RETURN 'ath_' || k.public_id || '.' || new_secret;
END
$$;

-- NULL days_ahead and older_than raise 22004, as every admin function's
-- NULL argument does (they raised 22023).
CREATE OR REPLACE FUNCTION athena_keys.athena_maintain_auth_log(days_ahead integer DEFAULT 7) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' AS $$
-- Make sure partitions exist from today (UTC) to days_ahead days ahead.
-- Returns the number created.  Takes the retention lock first, like
-- athena_prune_auth_log, so the two never deadlock or race.
DECLARE
	today date := (now() AT TIME ZONE 'UTC')::date;
	created integer := 0;
	i integer;
BEGIN
	PERFORM athena_keys._require_not_null(days_ahead, 'days_ahead');
	IF days_ahead < 0 OR days_ahead > 366 THEN
		RAISE EXCEPTION 'days_ahead must be between 0 and 366'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got %s.', days_ahead),
			      HINT = 'Pass the number of future days to prepare, e.g. 7.';
	END IF;
	PERFORM athena_keys._lock_auth_log_retention();
	FOR i IN 0 .. days_ahead LOOP
		IF athena_keys._create_auth_log_partition(today + i) THEN
			created := created + 1;
		END IF;
	END LOOP;
	RETURN created;
END
$$;

CREATE OR REPLACE FUNCTION athena_keys.athena_prune_auth_log(older_than interval) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' AS $$
-- Retention in one call, which should be its own transaction (the drop's
-- locks are held until it commits).  In this order, after the retention
-- lock: delete rows older than now() - older_than from the default
-- partition (row by row, under no lock of the log itself); prepare the
-- coming week's partitions; then drop, in one short step, every partition
-- of the extension whose real upper bound is at or before the cutoff.  The
-- drop needs ACCESS EXCLUSIVE on the log, its default partition and the
-- expired partitions; they are taken by 5 ms attempts for at most 2 s, so
-- decisions never queue behind a long wait.  When a reader holds the log
-- longer, nothing is dropped, a WARNING says so, and the next run retries.
-- Partitions an operator attached, or whose bounds reach past the cutoff,
-- are left alone whatever their names.  Returns partitions dropped.
DECLARE
	cutoff timestamptz;
	expired regclass[];
	p regclass;
BEGIN
	PERFORM athena_keys._require_not_null(older_than, 'older_than');
	IF older_than < interval '0' OR NOT isfinite(older_than) THEN
		RAISE EXCEPTION 'older_than must be a finite, non-negative interval'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got %s.', older_than),
			      HINT = 'Pass the retention to keep, e.g. interval ''30 days''.';
	END IF;
	-- Judged by the cutoff it makes: an interval of mixed signs ('-1 month
	-- 30 days 1 hour') compares as positive and can put the cutoff ahead
	-- of now, which would drop today's partition.
	BEGIN
		cutoff := now() - older_than;
	EXCEPTION WHEN datetime_field_overflow THEN
		RAISE EXCEPTION 'older_than is too long'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got %s: now() minus it is before the first timestamp.', older_than),
			      HINT = 'Pass the retention to keep, e.g. interval ''30 days''.';
	END;
	IF cutoff > now() THEN
		RAISE EXCEPTION 'older_than must not put the cutoff after now'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got %s, whose parts have opposite signs: now() minus it is in the future.', older_than),
			      HINT = 'Pass a retention whose parts are all non-negative, e.g. interval ''30 days''.';
	END IF;
	PERFORM athena_keys._lock_auth_log_retention();
	DELETE FROM athena_keys.api_key_auth_log_default WHERE created_at < cutoff;
	PERFORM athena_keys.athena_maintain_auth_log(7);

	SELECT array_agg(b.part ORDER BY b.upper_bound) INTO expired
	  FROM athena_keys._auth_log_partition_bounds() b
	 WHERE b.is_member AND b.upper_bound <= cutoff;
	IF expired IS NULL THEN
		RETURN 0;
	END IF;
	IF NOT athena_keys._lock_tables_within(
	         ARRAY['athena_keys.api_key_auth_log'::regclass,
	               'athena_keys.api_key_auth_log_default'::regclass] || expired,
	         interval '2 seconds') THEN
		RAISE WARNING 'auth log partitions not dropped: the log is in use'
			USING DETAIL = format('%s partition(s) older than %s are due, but another session held a lock '
			                      'on athena_keys.api_key_auth_log for 2 seconds; decisions were not made to wait.',
			                      cardinality(expired), cutoff),
			      HINT = 'Nothing to do: the next athena_prune_auth_log run retries. '
			             'If it keeps failing, look for long transactions reading the auth log.';
		RETURN 0;
	END IF;
	FOREACH p IN ARRAY expired LOOP
		EXECUTE format('ALTER EXTENSION athena_keys DROP TABLE %s', p);
		EXECUTE format('DROP TABLE %s', p);
	END LOOP;
	RETURN cardinality(expired);
END
$$;

CREATE OR REPLACE FUNCTION athena_keys.athena_add_ip_rule(
	list text, addr cidr, key_id uuid DEFAULT NULL,
	client_name text DEFAULT NULL, label text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Add (or relabel) a whitelist or blacklist entry: per key when key_id is
-- given, else global, optionally scoped to one client.  Adding an entry
-- that lock-in made makes it the operator's.
#variable_conflict use_column
DECLARE
	k athena_keys.api_key;
BEGIN
	PERFORM athena_keys._require_list(list);
	PERFORM athena_keys._require_not_null(addr, 'addr');
	PERFORM athena_keys._require_client_name(client_name);
	IF length(label) > 200 THEN
		RAISE EXCEPTION 'rule label must be at most 200 characters long'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('The label given has %s characters.', length(label)),
			      HINT = 'Shorten the label.';
	END IF;
	IF key_id IS NOT NULL AND client_name IS NOT NULL THEN
		RAISE EXCEPTION 'client_name applies only to global rules'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'A per-key rule already belongs to one key; scoping it to a client means nothing.',
			      HINT = 'Pass either key_id or client_name, not both.';
	END IF;
	IF key_id IS NULL THEN
		INSERT INTO athena_keys.api_key_global_ip_rule AS g (list, addr, client_name, label)
		VALUES (athena_add_ip_rule.list, athena_add_ip_rule.addr,
		        athena_add_ip_rule.client_name, athena_add_ip_rule.label)
		ON CONFLICT (list, addr, (coalesce(client_name, ''))) DO UPDATE SET label = EXCLUDED.label;
	ELSE
		k := athena_keys._require_key(key_id);
		INSERT INTO athena_keys.api_key_ip_rule AS r (api_key_id, list, addr, label)
		VALUES (k.id, athena_add_ip_rule.list, athena_add_ip_rule.addr, athena_add_ip_rule.label)
		-- An entry the operator adds is theirs, also where lock-in made it:
		-- athena_reset_key_learning then leaves it.
		ON CONFLICT (api_key_id, list, addr) DO UPDATE SET label = EXCLUDED.label, from_lock_in = false;
		UPDATE athena_keys.api_key AS a SET updated_at = now() WHERE a.id = k.id;
	END IF;
END
$$;

CREATE OR REPLACE FUNCTION athena_keys.athena_import_key(
	public_id text,
	key_salt text,
	key_hash text,
	name text,
	client_name text DEFAULT NULL,
	rights text[] DEFAULT '{}',
	expires_at timestamptz DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Bring over an existing Athena key by its public id, salt and SHA-256 hash.
DECLARE
	granted text[];
	new_id uuid;
BEGIN
	PERFORM athena_keys._require_not_null(public_id, 'public_id');
	PERFORM athena_keys._require_not_null(key_salt, 'key_salt');
	PERFORM athena_keys._require_not_null(key_hash, 'key_hash');
	IF public_id IS NULL OR public_id !~ '^[0-9A-Za-z_-]{8,64}$' THEN
		RAISE EXCEPTION 'public id must be 8 to 64 characters from [0-9A-Za-z_-]'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'The public id is the part between "ath_" and "." in the plaintext key.',
			      HINT = 'Copy public_id exactly as Athena stored it.';
	END IF;
	IF key_salt IS NULL OR key_salt !~ '^[!-~]+$' OR length(key_salt) > 256 THEN
		RAISE EXCEPTION 'key salt must be 1 to 256 printable ASCII characters'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'The salt is hashed as text together with the secret.',
			      HINT = 'Copy key_salt exactly as Athena stored it.';
	END IF;
	IF key_hash IS NULL OR lower(key_hash) !~ '^[0-9a-f]{64}$' THEN
		RAISE EXCEPTION 'key hash must be 64 hex characters'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'The hash is the SHA-256 of key_salt || '':'' || secret, in hex.',
			      HINT = 'Copy key_hash exactly as Athena stored it.';
	END IF;
	PERFORM athena_keys._require_key_name(name);
	PERFORM athena_keys._require_client_name(client_name);
	granted := athena_keys._require_rights(rights);
	IF EXISTS (SELECT 1 FROM athena_keys.api_key k WHERE k.public_id = athena_import_key.public_id) THEN
		RAISE EXCEPTION 'a key with public id % already exists', public_id
			USING ERRCODE = 'unique_violation',
			      DETAIL = 'Public ids identify keys and must be unique.',
			      HINT = 'Skip keys that were imported before, or delete the existing key first.';
	END IF;

	-- The same answer when a concurrent import of the public id committed
	-- after the check above.
	BEGIN
		INSERT INTO athena_keys.api_key AS k
			(public_id, name, client_name, key_salt, key_hash, expires_at)
		VALUES (athena_import_key.public_id, athena_import_key.name, athena_import_key.client_name,
		        athena_import_key.key_salt, lower(athena_import_key.key_hash), athena_import_key.expires_at)
		RETURNING k.id INTO new_id;
	EXCEPTION WHEN unique_violation THEN
		RAISE EXCEPTION 'a key with public id % already exists', public_id
			USING ERRCODE = 'unique_violation',
			      DETAIL = 'Public ids identify keys and must be unique.',
			      HINT = 'Skip keys that were imported before, or delete the existing key first.';
	END;
	INSERT INTO athena_keys.api_key_right_grant (api_key_id, right_name)
	SELECT new_id, r FROM unnest(granted) AS r;
	RETURN new_id;
END
$$;

CREATE OR REPLACE FUNCTION athena_keys.athena_create_right(name text, description text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Add a right, or a wildcard pattern such as users.*, to the catalog.
BEGIN
	IF name IS NULL OR name !~ '^[A-Za-z0-9_.*:-]{1,200}$' THEN
		RAISE EXCEPTION 'right name must be 1 to 200 characters from [A-Za-z0-9_.*:-]'
			USING ERRCODE = CASE WHEN name IS NULL THEN 'null_value_not_allowed' ELSE 'invalid_parameter_value' END,
			      DETAIL = format('Got %s.', coalesce(quote_literal(name), 'NULL')),
			      HINT = 'Use dotted names such as users.read, users.* or *.read.';
	END IF;
	IF length(description) > 2000 THEN
		RAISE EXCEPTION 'right description must be at most 2000 characters long'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('The description given has %s characters.', length(description)),
			      HINT = 'Shorten the description.';
	END IF;
	-- ON CONFLICT waits for a concurrent creator of the same name, so both
	-- of two racing calls get this answer or success, never a raw error.
	-- A name the install seeds (020_seed.sql), deleted and created again, is
	-- native again: pg_dump leaves native rights out because a restore seeds
	-- them, and a non-native row of such a name collided with the seeded one,
	-- so the restore lost the whole catalog and every key's grants.
	INSERT INTO athena_keys.api_key_right AS r (name, description, native)
	VALUES (athena_create_right.name, athena_create_right.description,
	        athena_create_right.name = ANY (ARRAY[
	            '*', 'gateway.*', 'gateway.read', 'gateway.write', 'gateway.delete',
	            'gateway.query', 'gateway.rpc.execute', 'gateway.storage_proxy',
	            'gateway.typesense_proxy', 'management.read', 'management.tables.write',
	            'management.tables.drop', 'management.columns.drop',
	            'management.indexes.write', 'management.indexes.drop',
	            'management.extensions.write', 'management.functions.read',
	            'management.functions.write', 'management.functions.drop',
	            'management.provision.write', '*.read', '*.write', '*.delete']))
	ON CONFLICT ON CONSTRAINT api_key_right_pkey DO NOTHING;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'right % already exists', name
			USING ERRCODE = 'duplicate_object',
			      DETAIL = 'Right names are unique in the catalog.',
			      HINT = 'Grant the existing right, or pick another name.';
	END IF;
END
$$;

-- Rights of a seeded name that an operator deleted and created again before
-- 1.4 are native again, as athena_create_right now makes them: as
-- non-native rows they were dumped, collided with the seeded rows on
-- restore, and the restore lost the whole catalog and every grant.
UPDATE athena_keys.api_key_right
   SET native = true
 WHERE NOT native
   AND name = ANY (ARRAY[
	'*', 'gateway.*', 'gateway.read', 'gateway.write', 'gateway.delete',
	'gateway.query', 'gateway.rpc.execute', 'gateway.storage_proxy',
	'gateway.typesense_proxy', 'management.read', 'management.tables.write',
	'management.tables.drop', 'management.columns.drop',
	'management.indexes.write', 'management.indexes.drop',
	'management.extensions.write', 'management.functions.read',
	'management.functions.write', 'management.functions.drop',
	'management.provision.write', '*.read', '*.write', '*.delete']);

-- A seeded right (native) is not dumped, since a restore seeds it; but a
-- 1.3 database dumped a seeded right that was deleted and created again as
-- a non-native row, and loading that dump collided with the seed: the COPY
-- of the catalog failed, and with it every grant.  Such a row takes the
-- seeded row's place instead: its description is kept, the row stays
-- native, and nothing is inserted.
CREATE FUNCTION athena_keys._right_insert_over_seeded() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	IF NOT NEW.native THEN
		UPDATE athena_keys.api_key_right AS r
		   SET description = NEW.description
		 WHERE r.name = NEW.name AND r.native;
		IF FOUND THEN
			RETURN NULL;
		END IF;
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER api_key_right_insert_over_seeded
	BEFORE INSERT ON athena_keys.api_key_right
	FOR EACH ROW EXECUTE FUNCTION athena_keys._right_insert_over_seeded();
-- Always, as the configuration's trigger (040's event trigger re-enables
-- it after a data-only restore's DISABLE TRIGGER ALL).
ALTER TABLE athena_keys.api_key_right ENABLE ALWAYS TRIGGER api_key_right_insert_over_seeded;
REVOKE ALL ON FUNCTION athena_keys._right_insert_over_seeded() FROM PUBLIC;

CREATE OR REPLACE FUNCTION athena_keys._left_bytes(s text, max_bytes integer) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
	WITH RECURSIVE cut(lo, hi) AS (
		SELECT 0, least(length(s), max_bytes)
		UNION ALL
		SELECT CASE WHEN octet_length(left(s, (lo + hi + 1) / 2)) <= max_bytes THEN (lo + hi + 1) / 2 ELSE lo END,
		       CASE WHEN octet_length(left(s, (lo + hi + 1) / 2)) <= max_bytes THEN hi ELSE (lo + hi + 1) / 2 - 1 END
		  FROM cut WHERE lo < hi)
	SELECT CASE WHEN octet_length(s) <= max_bytes THEN s
	            ELSE (SELECT left(s, c.lo) FROM cut c WHERE c.lo = c.hi) END
$$;

CREATE OR REPLACE FUNCTION athena_keys._append_decisions(decisions jsonb) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- The rows of decisions that athena_authenticate could have produced,
-- appended to the log, and last_used_at stamped for the keys they
-- authenticated (see athena_record_decisions); returns the rows appended.
-- Raises a data exception when a value does not convert to its column.
DECLARE
	appended integer;
BEGIN
	WITH incoming AS (
		SELECT r.*,
		       CASE WHEN r.failure_reason IN ('API key required', 'Invalid API key',
		                                      'Inactive API key', 'Expired API key') THEN 401
		            WHEN r.failure_reason IN ('API key client mismatch', 'Insufficient API key rights',
		                                      'IP blocked', 'IP not allowed', 'Client IP required') THEN 403
		            WHEN r.failure_reason = 'Rate limit exceeded' THEN 429
		            WHEN r.failure_reason = 'API key policy unavailable' THEN 503
		            WHEN r.failure_reason IS NULL THEN 200
		       END AS reason_status
		  FROM jsonb_to_recordset(decisions) AS r(
			created_at timestamptz, api_key_id uuid, api_key_public_id text, client_name text,
			remote_addr inet, required_rights text[], granted_rights text[], missing_rights text[],
			authenticated boolean, authorized boolean, enforced boolean, allowed boolean,
			status smallint, failure_reason text, locked_in boolean)
	), valid AS (
		SELECT * FROM incoming i
		 WHERE i.created_at IS NOT NULL AND isfinite(i.created_at)
		   AND i.created_at <= now() + interval '5 minutes'
		   AND i.created_at >= now() - interval '30 days'
		   AND i.status IN (200, 401, 403, 429, 503)
		   AND i.reason_status IS NOT NULL
		   AND i.authenticated IS NOT NULL AND i.authorized IS NOT NULL
		   AND i.enforced IS NOT NULL AND i.allowed IS NOT NULL
		   -- authorized = authenticated and the client binding, rights and IP
		   -- policy passed: with no reason, and when a rate limit refused; an
		   -- unavailable policy is the learning write's (not authorized) or a
		   -- rate limit bucket's (authorized)
		   AND CASE WHEN i.failure_reason IS NULL OR i.failure_reason = 'Rate limit exceeded'
		            THEN i.authorized = i.authenticated
		            WHEN i.failure_reason = 'API key policy unavailable'
		            THEN i.authenticated OR NOT i.authorized
		            ELSE NOT i.authorized END
		   AND (NOT i.authenticated OR i.api_key_id IS NOT NULL)
		   -- a decision names a key through its public id: a live key's id
		   -- comes with that key's public id, never another's
		   AND (i.api_key_id IS NULL OR i.api_key_public_id IS NOT NULL)
		   AND NOT EXISTS (SELECT 1 FROM athena_keys.api_key k
		                    WHERE k.id OPERATOR(pg_catalog.=) i.api_key_id
		                      AND k.public_id IS DISTINCT FROM i.api_key_public_id)
		   AND (NOT coalesce(i.locked_in, false) OR i.authorized)
		   -- a public id is logged only in the form the key parser accepts
		   AND (i.api_key_public_id IS NULL OR
		        (length(i.api_key_public_id) BETWEEN 8 AND 64 AND i.api_key_public_id !~ '[^0-9A-Za-z_-]'))
		   -- granted and missing rights are names, never NULL (a caller's
		   -- required rights may hold NULLs, which are logged as given);
		   -- a rights failure names what is missing
		   AND array_position(i.granted_rights, NULL) IS NULL
		   AND array_position(i.missing_rights, NULL) IS NULL
		   AND (i.failure_reason IS DISTINCT FROM 'Insufficient API key rights'
		        OR cardinality(i.missing_rights) > 0)
		   -- no address is what makes an address required
		   AND (i.failure_reason IS DISTINCT FROM 'Client IP required' OR i.remote_addr IS NULL)
		   -- 401 reasons come before authentication succeeds, 403 and 429 ones after;
		   -- no reason under enforcement means a genuine key was presented.
		   AND CASE i.reason_status
		         WHEN 401 THEN NOT i.authenticated
		         WHEN 403 THEN i.authenticated
		         WHEN 429 THEN i.authenticated
		         WHEN 200 THEN i.authenticated OR NOT i.enforced
		         ELSE true END
		   AND (i.failure_reason IS DISTINCT FROM 'API key required'
		        OR (i.enforced AND i.api_key_id IS NULL AND i.api_key_public_id IS NULL))
		   -- shadow mode and passes allow with 200; fail_open allows an
		   -- unavailable policy with 200; everything else is refused with
		   -- the reason's status.
		   AND CASE WHEN i.failure_reason IS NULL OR NOT i.enforced THEN i.allowed AND i.status = 200
		            WHEN i.reason_status = 503 THEN i.allowed = (i.status = 200) AND i.status IN (200, 503)
		            ELSE NOT i.allowed AND i.status = i.reason_status END
	), appended_rows AS (
		INSERT INTO athena_keys.api_key_auth_log
			(created_at, api_key_id, api_key_public_id, client_name, remote_addr, required_rights,
			 granted_rights, missing_rights, authenticated, authorized, enforced, allowed, status,
			 failure_reason, locked_in)
		SELECT created_at, api_key_id, api_key_public_id, athena_keys._left_bytes(client_name, 1024),
		       remote_addr, required_rights, granted_rights, missing_rights, authenticated,
		       authorized, enforced, allowed, status, failure_reason, coalesce(locked_in, false)
		  FROM valid
		RETURNING api_key_id, created_at, authenticated
	), used AS (
		SELECT api_key_id, least(max(created_at), now()) AS used_at FROM appended_rows
		 WHERE authenticated AND api_key_id IS NOT NULL GROUP BY api_key_id
	), stamped AS (
		-- A stamp in the future (left by an earlier forged row) is repaired.
		UPDATE athena_keys.api_key k SET last_used_at = u.used_at
		  FROM used u
		 WHERE k.id = u.api_key_id
		   AND (k.last_used_at IS NULL OR k.last_used_at < u.used_at
		        OR k.last_used_at > now() + interval '5 minutes')
		RETURNING k.id
	)
	SELECT count(*) INTO appended FROM appended_rows;
	RETURN appended;
END
$$;
REVOKE ALL ON FUNCTION athena_keys._left_bytes(text, integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys._append_decisions(jsonb) FROM PUBLIC;

-- Retention serialises on SHARE UPDATE EXCLUSIVE on the log instead of an
-- advisory lock keyed on the log's OID, which any role that may connect
-- could take and hold, making every prune and maintenance run wait.
CREATE OR REPLACE FUNCTION athena_keys._lock_auth_log_retention() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Serialise partition creation and pruning in this database (until the
-- end of the transaction): SHARE UPDATE EXCLUSIVE on the log itself, which
-- conflicts with itself (and with what ATTACH PARTITION takes anyway) but
-- not with decisions' or readers' locks.  Not an advisory lock: its key
-- would be public, and any role that may connect could hold it and make
-- every retention run wait for good.  ONLY: no partition is locked.  A hot
-- standby, which cannot take that lock, makes and drops nothing.
BEGIN
	IF NOT pg_is_in_recovery() THEN
		LOCK TABLE ONLY athena_keys.api_key_auth_log IN SHARE UPDATE EXCLUSIVE MODE;
	END IF;
END
$$;

-- A row the log's constraints refuse (an operator's CHECK on the client
-- name's length) no longer fails a whole shipped batch, which the standby
-- then sent again for good: it is skipped like a value that does not
-- convert, and the batch raises only when no row goes in or a partition
-- refuses one (its rows stay queued), as the log writer does.
CREATE OR REPLACE FUNCTION athena_keys.athena_record_decisions(decisions jsonb) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Append decisions made elsewhere (a hot standby's log writer ships them
-- here in batches) to api_key_auth_log, and stamp last_used_at for the keys
-- they authenticated.  decisions is a JSON array of objects with the log's
-- column names.  Whoever may call this writes into the audit log, so only
-- rows athena_authenticate could have produced are taken: created_at from
-- 30 days ago (a standby keeps its queue while its primary is down) to 5
-- minutes ahead (clock skew), and status, allowed, reason, enforced,
-- authenticated and authorized agreeing with the decision rules, a public
-- id of the key format, granted and missing rights without NULLs (a rights
-- failure naming what is missing), no address for "Client IP required", and a
-- live key named only together with its own public id.  Other rows, and
-- rows with a value that does not convert to its column or that a
-- constraint of the log refuses (the batch is then taken one decision at a
-- time), are skipped and counted in a WARNING.  When a constraint refuses
-- every row of the batch, or a partition refuses a row (a day without its
-- partition), the error is raised: it is the log's, and the standby keeps
-- the batch queued until it is fixed, as the log writer keeps its rows.
-- last_used_at is never stamped beyond now().  Returns the rows appended.
DECLARE
	received integer;
	appended integer;
	refused integer := 0;
	decision jsonb;
	state text;
	constraint_name text;
BEGIN
	PERFORM athena_keys._require_not_null(decisions, 'decisions');
	IF jsonb_typeof(decisions) <> 'array' THEN
		RAISE EXCEPTION 'decisions must be a json array'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got a json %s.', jsonb_typeof(decisions)),
			      HINT = 'Pass an array of objects with the columns of athena_keys.api_key_auth_log.';
	END IF;
	received := jsonb_array_length(decisions);
	BEGIN
		appended := athena_keys._append_decisions(decisions);
	EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
		-- One value that does not convert (an address that is no inet, a
		-- status that is no integer, an element that is no object), or one
		-- row an operator's constraint refuses (a CHECK on the client name's
		-- length), fails the whole set; the others must not be held up with
		-- it.  A partition's refusal (23514 naming no constraint) is the log's.
		GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, constraint_name = CONSTRAINT_NAME;
		IF state = '23514' AND constraint_name = '' THEN
			RAISE;
		END IF;
		appended := 0;
		FOR decision IN SELECT d FROM jsonb_array_elements(decisions) AS d LOOP
			BEGIN
				appended := appended + athena_keys._append_decisions(jsonb_build_array(decision));
			EXCEPTION
				WHEN data_exception THEN
					NULL;
				WHEN integrity_constraint_violation THEN
					GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, constraint_name = CONSTRAINT_NAME;
					IF state = '23514' AND constraint_name = '' THEN
						RAISE;
					END IF;
					refused := refused + 1;
			END;
		END LOOP;
		-- A constraint no row meets is the log's: the batch stays queued
		IF appended = 0 AND refused > 0 THEN
			RAISE;
		END IF;
	END;
	IF appended < received THEN
		RAISE WARNING '% of % shipped decisions were skipped', received - appended, received
			USING DETAIL = 'A decision is recorded only when its values convert to the log''s columns, the log''s '
			               'constraints take it, its created_at '
			               'lies between 30 days ago and 5 minutes ahead, and its status, allowed, failure_reason, '
			               'enforced, authenticated, authorized, public id, rights and address agree as '
			               'athena_authenticate produces them.',
			      HINT = 'Check the clock of the server that made the decisions, that the log takes every row a '
			             'call can write, and that only its log writer calls athena_record_decisions.';
	END IF;
	RETURN appended;
END
$$;
