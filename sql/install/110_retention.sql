--------------------------------------------------------------------------
-- Auth log retention.  One lock order for everything that creates or drops
-- partitions: first SHARE UPDATE EXCLUSIVE on the log (retention runs one
-- at a time), then, only for the drop, the log's locks, taken with a short
-- lock_timeout and retried while holding nothing of the log, so that a
-- decision never waits more than a few milliseconds behind retention.
-- Partitions are judged by their real bounds and extension membership,
-- never by their names, and bounds are written and read under a pinned
-- TimeZone and DateStyle.
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys._auth_log_partition_name(day date) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
RETURN 'api_key_auth_log_p' || to_char(day, 'YYYYMMDD');

CREATE FUNCTION athena_keys._lock_auth_log_retention() RETURNS void
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

CREATE FUNCTION athena_keys._create_auth_log_partition(day date) RETURNS boolean
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

CREATE FUNCTION athena_keys.athena_maintain_auth_log(days_ahead integer DEFAULT 7) RETURNS integer
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

CREATE FUNCTION athena_keys.athena_prune_auth_log(older_than interval) RETURNS integer
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
