\echo Use "ALTER EXTENSION athena_keys UPDATE TO '1.3'" to load this file. \quit
-- athena_keys 1.2 -> 1.3 (issue 12, SQL side):
--   * the identity sequences of the IP rule tables are dumped (restore keeps
--     athena_add_ip_rule, IP lists and lock-in working);
--   * retention takes one lock order, never stalls a decision, and judges
--     partitions by their real bounds and extension membership;
--   * partition bounds no longer depend on the session's TimeZone/DateStyle;
--   * cache invalidation triggers are row-level and ENABLE ALWAYS, so they
--     fire under session_replication_role = replica (logical replication);
--   * athena_record_decisions validates what it appends, and a shipping-only
--     role helper replaces admin credentials on standbys;
--   * athena_promote_key refuses a key that has seen no address.
-- A fresh CREATE EXTENSION runs 1.0, the deltas and this script, so both
-- paths end with the same objects (test/t/005_upgrade.pl checks that).

--------------------------------------------------------------------------
-- pg_dump: the identity sequences behind the IP rule ids.  Marking the
-- tables dumps their rows, not their sequences' positions; without these a
-- restored database hands out ids from 1 again and collides.
--------------------------------------------------------------------------

SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('athena_keys.api_key_ip_rule', 'id')::regclass, '');
SELECT pg_catalog.pg_extension_config_dump(
	pg_catalog.pg_get_serial_sequence('athena_keys.api_key_global_ip_rule', 'id')::regclass, '');

--------------------------------------------------------------------------
-- Cache invalidation under session_replication_role = replica.  Logical
-- replication's apply fires only row triggers (and TRUNCATE statement
-- triggers), and under the replica role only those marked ENABLE ALWAYS.
-- So every invalidation trigger becomes a row trigger for INSERT, UPDATE and
-- DELETE plus a statement trigger for TRUNCATE, all ENABLE ALWAYS.  The
-- function already works per row (CacheInvalidateRelcache deduplicates).
-- api_key keeps its filtered UPDATE trigger, so the hot path's last_used_at
-- and learning counter updates still invalidate nothing.
--------------------------------------------------------------------------

DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['api_key_config', 'api_key_client_config', 'api_key_global_ip_rule',
	                         'api_key_ip_rule', 'api_key_right_grant', 'api_key'] LOOP
		IF t = 'api_key' THEN
			DROP TRIGGER api_key_insert_delete_invalidate ON athena_keys.api_key;
			CREATE TRIGGER api_key_insert_delete_invalidate
				AFTER INSERT OR DELETE ON athena_keys.api_key
				FOR EACH ROW EXECUTE FUNCTION athena_keys._invalidate_caches();
			ALTER TABLE athena_keys.api_key ENABLE ALWAYS TRIGGER api_key_insert_delete_invalidate;
			ALTER TABLE athena_keys.api_key ENABLE ALWAYS TRIGGER api_key_update_invalidate;
		ELSE
			EXECUTE format('DROP TRIGGER %I ON athena_keys.%I', t || '_invalidate', t);
			EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON athena_keys.%I
			                FOR EACH ROW EXECUTE FUNCTION athena_keys._invalidate_caches()',
			               t || '_invalidate', t);
			EXECUTE format('ALTER TABLE athena_keys.%I ENABLE ALWAYS TRIGGER %I', t, t || '_invalidate');
		END IF;
		EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON athena_keys.%I
		                FOR EACH STATEMENT EXECUTE FUNCTION athena_keys._invalidate_caches()',
		               t || '_truncate_invalidate', t);
		EXECUTE format('ALTER TABLE athena_keys.%I ENABLE ALWAYS TRIGGER %I', t, t || '_truncate_invalidate');
	END LOOP;
END
$$;

--------------------------------------------------------------------------
-- Learning: promotion needs something learned.
--------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION athena_keys.athena_promote_key(id uuid) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Lock a learning key in now; returns the number of whitelist entries made.
-- A key that has seen no address would lock in with an empty whitelist,
-- i.e. shown as locked while restricting nothing, so that is refused.
DECLARE
	k athena_keys.api_key;
BEGIN
	k := athena_keys._require_key(id);
	IF NOT k.virgin_mode OR k.virgin_resolved THEN
		RAISE EXCEPTION 'api key % is not learning', k.id
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      DETAIL = CASE WHEN NOT k.virgin_mode THEN 'The key was not created in virgin mode.'
			                    ELSE format('The key locked in at %s.', k.virgin_resolved_at) END,
			      HINT = 'Use athena_reset_key_learning to start learning again.';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM athena_keys.api_key_ip_seen s WHERE s.api_key_id = k.id) THEN
		RAISE EXCEPTION 'api key % has not seen any address yet', k.id
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      DETAIL = 'Locking it in now would give it an empty whitelist, which restricts no address.',
			      HINT = 'Let the key make requests from its addresses first, or whitelist them with athena_add_ip_rule.';
	END IF;
	RETURN athena_keys._lock_in(k.id);
END
$$;

--------------------------------------------------------------------------
-- Decisions shipped from a hot standby: validated, and a role that may do
-- this and nothing else.
--------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION athena_keys.athena_record_decisions(decisions jsonb) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Append decisions made elsewhere (a hot standby's log writer ships them
-- here in batches) to api_key_auth_log, and stamp last_used_at for the keys
-- they authenticated.  decisions is a JSON array of objects with the log's
-- column names.  Whoever may call this writes into the audit log, so only
-- rows athena_authenticate could have produced are taken: created_at from
-- 30 days ago (a standby keeps its queue while its primary is down) to 5
-- minutes ahead (clock skew), and status, allowed, reason, enforced,
-- authenticated and authorized agreeing with the decision rules, and a
-- live key named only together with its own public id.  Other
-- rows are skipped and counted in a WARNING.  last_used_at is never stamped
-- beyond now().  Returns the rows appended.
DECLARE
	received integer;
	appended integer;
BEGIN
	PERFORM athena_keys._require_not_null(decisions, 'decisions');
	IF jsonb_typeof(decisions) <> 'array' THEN
		RAISE EXCEPTION 'decisions must be a json array'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got a json %s.', jsonb_typeof(decisions)),
			      HINT = 'Pass an array of objects with the columns of athena_keys.api_key_auth_log.';
	END IF;
	received := jsonb_array_length(decisions);
	WITH incoming AS (
		SELECT r.*,
		       CASE WHEN r.failure_reason IN ('API key required', 'Invalid API key',
		                                      'Inactive API key', 'Expired API key') THEN 401
		            WHEN r.failure_reason IN ('API key client mismatch', 'Insufficient API key rights',
		                                      'IP blocked', 'IP not allowed', 'Client IP required') THEN 403
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
		   AND i.status IN (200, 401, 403, 503)
		   AND i.reason_status IS NOT NULL
		   AND i.authenticated IS NOT NULL AND i.authorized IS NOT NULL
		   AND i.enforced IS NOT NULL AND i.allowed IS NOT NULL
		   -- authorized = authenticated and every check passed
		   AND i.authorized = (i.authenticated AND i.failure_reason IS NULL)
		   AND (NOT i.authenticated OR i.api_key_id IS NOT NULL)
		   -- a decision names a key through its public id: a live key's id
		   -- comes with that key's public id, never another's
		   AND (i.api_key_id IS NULL OR i.api_key_public_id IS NOT NULL)
		   AND NOT EXISTS (SELECT 1 FROM athena_keys.api_key k
		                    WHERE k.id OPERATOR(pg_catalog.=) i.api_key_id
		                      AND k.public_id IS DISTINCT FROM i.api_key_public_id)
		   AND (NOT coalesce(i.locked_in, false) OR i.authorized)
		   -- 401 reasons come before authentication succeeds, 403 ones after;
		   -- no reason under enforcement means a genuine key was presented.
		   AND CASE i.reason_status
		         WHEN 401 THEN NOT i.authenticated
		         WHEN 403 THEN i.authenticated
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
		SELECT created_at, api_key_id, left(api_key_public_id, 64), left(client_name, 256),
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
	IF appended < received THEN
		RAISE WARNING '% of % shipped decisions were skipped', received - appended, received
			USING DETAIL = 'A decision is recorded only when its created_at lies between 30 days ago and 5 minutes ahead '
			               'and its status, allowed, failure_reason, enforced, authenticated and authorized agree '
			               'as athena_authenticate produces them.',
			      HINT = 'Check the clock of the server that made the decisions, and that only its log writer '
			             'calls athena_record_decisions.';
	END IF;
	RETURN appended;
END
$$;

CREATE FUNCTION athena_keys.athena_grant_shipping_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Let role_name ship a hot standby's decisions to this primary
-- (athena_record_decisions) and do nothing else: no table, no view, no
-- other function.  A standby's primary_conninfo then needs no admin
-- credentials.  The role name is resolved to an existing role first, so
-- only its catalog spelling reaches the GRANT.
DECLARE
	r regrole;
BEGIN
	PERFORM athena_keys._require_not_null(role_name, 'role_name');
	r := to_regrole(quote_ident(role_name));
	IF r IS NULL THEN
		RAISE EXCEPTION 'role "%" does not exist', role_name
			USING ERRCODE = 'undefined_object',
			      DETAIL = 'Privileges can only be granted to an existing role.',
			      HINT = 'Create the role first, e.g. CREATE ROLE athena_shipper LOGIN.';
	END IF;
	EXECUTE format('GRANT USAGE ON SCHEMA athena_keys TO %s', r);
	EXECUTE format('GRANT EXECUTE ON FUNCTION athena_keys.athena_record_decisions(jsonb) TO %s', r);
END
$$;

COMMENT ON FUNCTION athena_keys.athena_grant_shipping_role(name) IS
	'Let a role call athena_record_decisions (a standby''s log shipping) and nothing else; superuser only.';

REVOKE ALL ON FUNCTION athena_keys.athena_grant_shipping_role(name) FROM PUBLIC;

CREATE OR REPLACE FUNCTION athena_keys.athena_grant_admin_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Let role_name run the admin functions and read the triage views, but no
-- table directly (so never key_hash, key_salt or raw log rows).  Writing
-- into the audit log (athena_record_decisions) is not administration: from
-- 1.3 it belongs to the shipping role (athena_grant_shipping_role) only.
DECLARE
	f regprocedure;
	v regclass;
BEGIN
	PERFORM athena_keys._require_not_null(role_name, 'role_name');
	EXECUTE format('GRANT USAGE ON SCHEMA athena_keys TO %I', role_name);
	EXECUTE format('GRANT USAGE ON TYPE athena_keys.athena_auth_result TO %I', role_name);
	FOR f IN
		SELECT p.oid::regprocedure FROM pg_proc p
		 WHERE p.pronamespace = 'athena_keys'::regnamespace AND p.proname LIKE 'athena\_%'
		   AND p.proname NOT IN ('athena_grant_gateway_role', 'athena_grant_admin_role',
		                         'athena_grant_shipping_role', 'athena_record_decisions')
	LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, role_name);
	END LOOP;
	FOR v IN
		SELECT c.oid::regclass FROM pg_class c
		 WHERE c.relnamespace = 'athena_keys'::regnamespace AND c.relkind = 'v'
	LOOP
		EXECUTE format('GRANT SELECT ON %s TO %I', v, role_name);
	END LOOP;
END
$$;

--------------------------------------------------------------------------
-- Auth log retention.  One lock order for everything that creates or drops
-- partitions: first a transaction-level advisory lock (retention runs one
-- at a time), then, only for the drop, the log's locks, taken with a short
-- lock_timeout and retried while holding nothing of the log, so that a
-- decision never waits more than a few milliseconds behind retention.
-- Partitions are judged by their real bounds and extension membership,
-- never by their names, and bounds are written and read under a pinned
-- TimeZone and DateStyle.
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys._lock_auth_log_retention() RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
-- Serialise partition creation and pruning in this database (until the
-- end of the transaction).  The key is the log's own OID, so no other
-- object of the extension shares it.
RETURN pg_advisory_xact_lock('athena_keys.api_key_auth_log'::regclass::oid::bigint);

CREATE FUNCTION athena_keys._lock_tables_now(tables regclass[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp SET lock_timeout = '5ms' AS $$
-- One attempt at ACCESS EXCLUSIVE on every table given, giving up after
-- 5 ms on any of them (lock_not_available), so that the sessions queued
-- behind this request wait at most that long.  The SET clause keeps the
-- short timeout to this function.
DECLARE
	t regclass;
BEGIN
	FOREACH t IN ARRAY tables LOOP
		-- ONLY: the log's LOCK would otherwise recurse into every partition,
		-- today's included, where autovacuum's lock would fail every attempt.
		EXECUTE format('LOCK TABLE ONLY %s IN ACCESS EXCLUSIVE MODE', t);
	END LOOP;
END
$$;

CREATE FUNCTION athena_keys._lock_tables_within(tables regclass[], budget interval)
RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- ACCESS EXCLUSIVE on every table given, by short attempts (see
-- _lock_tables_now) with growing sleeps in between, for at most budget.  A
-- failed attempt's subtransaction releases whatever it had taken, so between
-- attempts nothing of these tables is held.  Returns whether the locks are
-- held (until the end of the transaction).
DECLARE
	deadline timestamptz := clock_timestamp() + budget;
	pause double precision := 0.01;
BEGIN
	LOOP
		BEGIN
			PERFORM athena_keys._lock_tables_now(tables);
			RETURN true;
		EXCEPTION WHEN lock_not_available THEN
			NULL;
		END;
		IF clock_timestamp() + make_interval(secs => pause) > deadline THEN
			RETURN false;
		END IF;
		PERFORM pg_sleep(pause);
		pause := least(pause * 2, 0.2);
	END LOOP;
END
$$;


CREATE FUNCTION athena_keys._auth_log_partition_bounds()
RETURNS TABLE (part regclass, lower_bound timestamptz, upper_bound timestamptz, is_member boolean)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD'
AS $$
-- Every partition of the log with its real bounds, read back from
-- pg_get_expr under the pinned settings (so the text parses exactly as it
-- was printed), and whether the extension owns it.  The default partition
-- is left out; a MINVALUE or MAXVALUE bound comes out as -infinity or
-- infinity, so that such a partition overlaps what it covers and is never
-- dropped while it may hold young rows.
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
                                 '^FOR VALUES FROM \((MINVALUE|''[^'']+'')\) TO \((MAXVALUE|''[^'']+'')\)$') AS b ON true
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
	EXECUTE format('CREATE TABLE athena_keys.%I (LIKE athena_keys.api_key_auth_log INCLUDING DEFAULTS)', part);
	EXECUTE format('WITH moved AS (DELETE FROM athena_keys.api_key_auth_log_default
	                                WHERE created_at >= $1 AND created_at < $2 RETURNING *)
	                INSERT INTO athena_keys.%I SELECT * FROM moved', part) USING lo, hi;
	EXECUTE format('ALTER TABLE athena_keys.api_key_auth_log ATTACH PARTITION athena_keys.%I
	                FOR VALUES FROM (%L) TO (%L)', part,
	               to_char(lo AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00',
	               to_char(hi AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00');
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
	IF days_ahead IS NULL OR days_ahead < 0 OR days_ahead > 366 THEN
		RAISE EXCEPTION 'days_ahead must be between 0 and 366'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got %s.', coalesce(days_ahead::text, 'NULL')),
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
	IF older_than IS NULL OR older_than < interval '0' OR NOT isfinite(older_than) THEN
		RAISE EXCEPTION 'older_than must be a finite, non-negative interval'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got %s.', coalesce(older_than::text, 'NULL')),
			      HINT = 'Pass the retention to keep, e.g. interval ''30 days''.';
	END IF;
	PERFORM athena_keys._lock_auth_log_retention();
	cutoff := now() - older_than;
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

REVOKE ALL ON FUNCTION athena_keys._lock_auth_log_retention() FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys._lock_tables_now(regclass[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys._lock_tables_within(regclass[], interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys._auth_log_partition_bounds() FROM PUBLIC;

-- Partitions that the earlier scripts of this CREATE EXTENSION (or an
-- earlier maintenance in an odd TimeZone/DateStyle) made with bounds off UTC
-- midnight are replaced when empty; the coming week is then prepared by the
-- functions above.  Misaligned partitions holding rows are kept: prune
-- judges them by their real bounds and creation skips the days they cover.
DO $$
DECLARE
	b record;
	has_rows boolean;
BEGIN
	FOR b IN
		SELECT * FROM athena_keys._auth_log_partition_bounds() p
		 WHERE p.is_member
		   AND (p.lower_bound <> date_trunc('day', p.lower_bound AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
		        OR p.upper_bound <> date_trunc('day', p.upper_bound AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
	LOOP
		EXECUTE format('SELECT EXISTS (SELECT 1 FROM %s)', b.part) INTO has_rows;
		IF NOT has_rows THEN
			EXECUTE format('DROP TABLE %s', b.part);
		END IF;
	END LOOP;
END
$$;
SELECT athena_keys.athena_maintain_auth_log(7);

--------------------------------------------------------------------------
-- The invalidation triggers stay ENABLE ALWAYS.  ALTER TABLE ... ENABLE
-- TRIGGER ALL (which pg_restore --disable-triggers issues after loading a
-- table, and operators type) makes them ordinary triggers again, which the
-- replica role skips; this event trigger puts them back at the end of every
-- ALTER TABLE.  It acts only on tables the current user may alter, so
-- nobody else's ALTER TABLE can fail because of it.
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys._keep_invalidation_triggers_always() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	t record;
BEGIN
	FOR t IN
		SELECT tg.tgrelid::regclass AS rel, tg.tgname
		  FROM pg_catalog.pg_trigger tg
		  JOIN pg_catalog.pg_class c ON c.oid = tg.tgrelid
		 WHERE tg.tgfoid = 'athena_keys._invalidate_caches()'::regprocedure
		   AND tg.tgenabled <> 'A'
		   AND pg_catalog.pg_has_role(c.relowner, 'USAGE')
	LOOP
		EXECUTE format('ALTER TABLE %s ENABLE ALWAYS TRIGGER %I', t.rel, t.tgname);
	END LOOP;
END
$$;

REVOKE ALL ON FUNCTION athena_keys._keep_invalidation_triggers_always() FROM PUBLIC;

CREATE EVENT TRIGGER athena_keys_invalidation_triggers_always ON ddl_command_end
	WHEN TAG IN ('ALTER TABLE')
	EXECUTE FUNCTION athena_keys._keep_invalidation_triggers_always();
ALTER EVENT TRIGGER athena_keys_invalidation_triggers_always ENABLE ALWAYS;

--------------------------------------------------------------------------
-- What forged shipped decisions may have left before 1.3 validated them:
-- last-use stamps in the future (which real use never moves back) and log
-- rows from the future (which retention never reaches and which would top
-- athena_recent_failures for ever).
--------------------------------------------------------------------------

UPDATE athena_keys.api_key SET last_used_at = now()
 WHERE last_used_at > now() + interval '5 minutes';
DELETE FROM athena_keys.api_key_auth_log WHERE created_at > now() + interval '1 day';
