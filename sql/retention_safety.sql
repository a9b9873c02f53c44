-- Retention safety (1.3, issue 12 items 14 and 15): partition bounds do not
-- depend on the session's TimeZone and DateStyle, and athena_prune_auth_log
-- judges partitions by extension membership and real bounds, never by name.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
RESET client_min_messages;
-- Installed in Asia/Kolkata with DateStyle Postgres (see item 14 below).
SET TimeZone = 'Asia/Kolkata';
SET DateStyle = 'Postgres';
CREATE EXTENSION athena_keys;
RESET TimeZone;
RESET DateStyle;

-- The log's range partitions, read under UTC whatever the session says:
-- name (the date masked), first and last day relative to today (UTC), whether
-- both bounds are UTC midnights and whether the name matches the first day.
CREATE FUNCTION pg_temp.parts(OUT name text, OUT from_day integer, OUT to_day integer,
                              OUT utc_midnights boolean, OUT named_for_first_day boolean)
RETURNS SETOF record LANGUAGE sql SET TimeZone = 'UTC' SET DateStyle = 'ISO, YMD' AS $$
  SELECT regexp_replace(c.relname, '[0-9]{8}$', '<date>'),
         b[1]::timestamptz::date - current_date, b[2]::timestamptz::date - current_date,
         b[1]::timestamptz = date_trunc('day', b[1]::timestamptz)
           AND b[2]::timestamptz = date_trunc('day', b[2]::timestamptz),
         c.relname = 'api_key_auth_log_p' || to_char(b[1]::timestamptz, 'YYYYMMDD')
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid,
         regexp_match(pg_get_expr(c.relpartbound, c.oid),
                      '^FOR VALUES FROM \(''([^'']+)''\) TO \(''([^'']+)''\)$') AS b
   WHERE i.inhparent = 'athena_keys.api_key_auth_log'::regclass
   ORDER BY 2
$$;

-- The partitions made at install are whole UTC days.
SELECT count(*) AS installed, bool_and(utc_midnights) AS utc_midnights,
       bool_and(named_for_first_day) AS named_for_first_day
  FROM pg_temp.parts() WHERE from_day IS NOT NULL;

------------------------------------------------------------------------
-- Item 14: bounds whatever the session's settings.  In Asia/Kolkata with
-- DateStyle Postgres a timestamptz prints as "... IST", which reads back as
-- Israel time: the partitions were shifted by 3.5 hours and the next
-- maintenance in another zone overlapped them and raised.
------------------------------------------------------------------------
SET TimeZone = 'Asia/Kolkata';
SET DateStyle = 'Postgres';
SELECT athena_keys.athena_maintain_auth_log(9) AS created_in_kolkata;
RESET TimeZone;
RESET DateStyle;
SELECT athena_keys.athena_maintain_auth_log(10) AS created_in_session_zone;
SET TimeZone = 'America/St_Johns';
SET DateStyle = 'SQL, DMY';
SELECT athena_keys.athena_maintain_auth_log(11) AS created_in_st_johns;
-- Prune under odd settings too (nothing is old enough to drop).
SELECT athena_keys.athena_prune_auth_log('30 days') AS dropped_in_st_johns;
RESET TimeZone;
RESET DateStyle;
-- Twelve daily partitions, each exactly one UTC day, named for it.
SELECT * FROM pg_temp.parts() WHERE from_day IS NOT NULL;

------------------------------------------------------------------------
-- Item 15: prune trusts neither names nor non-members.
------------------------------------------------------------------------
-- An operator's partition whose name is not a date: left alone, and the
-- prune does not fail on it.
CREATE TABLE athena_keys.api_key_auth_log_p99999999 PARTITION OF athena_keys.api_key_auth_log
	FOR VALUES FROM ('2019-01-01 00:00:00+00') TO ('2019-01-02 00:00:00+00');
SELECT athena_keys.athena_prune_auth_log('3 days') AS dropped_with_non_date_name;
SELECT to_regclass('athena_keys.api_key_auth_log_p99999999') IS NOT NULL AS non_date_name_left_alone;
DROP TABLE athena_keys.api_key_auth_log_p99999999;

-- An operator's partition under a name the extension would use, expired by
-- its bounds: not the extension's, so left alone with its rows.
CREATE TABLE athena_keys.api_key_auth_log_p20200101 PARTITION OF athena_keys.api_key_auth_log
	FOR VALUES FROM ('2020-01-01 00:00:00+00') TO ('2020-01-02 00:00:00+00');
INSERT INTO athena_keys.api_key_auth_log (created_at, authenticated, authorized, enforced, allowed, status)
VALUES ('2020-01-01 12:00:00+00', true, true, true, true, 200);
SELECT athena_keys.athena_prune_auth_log('3 days') AS dropped_with_operator_partition;
SELECT count(*) AS operator_partition_rows_kept FROM athena_keys.api_key_auth_log_p20200101;
DROP TABLE athena_keys.api_key_auth_log_p20200101;

-- A month-long partition of the extension's, named for its first day
-- (35 days ago) and ending 5 days ago, holding rows 6 and 20 days old.
DO $$
DECLARE
	first_day date := (now() AT TIME ZONE 'UTC')::date - 35;
BEGIN
	EXECUTE format('CREATE TABLE athena_keys.%I PARTITION OF athena_keys.api_key_auth_log
	                FOR VALUES FROM (%L) TO (%L)', athena_keys._auth_log_partition_name(first_day),
	               to_char(first_day, 'YYYY-MM-DD') || ' 00:00:00+00',
	               to_char(first_day + 30, 'YYYY-MM-DD') || ' 00:00:00+00');
	EXECUTE format('ALTER EXTENSION athena_keys ADD TABLE athena_keys.%I',
	               athena_keys._auth_log_partition_name(first_day));
END
$$;
INSERT INTO athena_keys.api_key_auth_log (created_at, authenticated, authorized, enforced, allowed, status)
SELECT now() - d * interval '1 day', true, true, true, true, 200 FROM unnest(ARRAY[6, 20]) d;
SELECT name, from_day, to_day, named_for_first_day FROM pg_temp.parts() WHERE to_day - from_day > 1;
-- Ten days' retention: the partition still holds rows younger than that.
SELECT athena_keys.athena_prune_auth_log('10 days') AS dropped_at_10_days;
SELECT count(*) AS rows_kept FROM athena_keys.api_key_auth_log WHERE created_at < now() - interval '5 days';
-- Four days' retention: its real upper bound is past the cutoff, so it goes.
SELECT athena_keys.athena_prune_auth_log('4 days') AS dropped_at_4_days;
SELECT count(*) AS rows_left FROM athena_keys.api_key_auth_log WHERE created_at < now() - interval '5 days';
-- The daily partitions and the default partition are untouched.
SELECT count(*) AS daily_partitions, min(from_day), max(to_day) FROM pg_temp.parts() WHERE from_day IS NOT NULL;
SELECT to_regclass('athena_keys.api_key_auth_log_default') IS NOT NULL AS default_kept;

------------------------------------------------------------------------
-- Bounds whatever the session's standard_conforming_strings: with it off a
-- backslash in the bounds pattern read as an escape, every bound came out
-- NULL, and a prune dropped nothing (and said 0).
------------------------------------------------------------------------
SELECT athena_keys._create_auth_log_partition((now() AT TIME ZONE 'UTC')::date - 40) AS expired_day_made;
-- (PostgreSQL 19 refuses standard_conforming_strings = off and has no
-- escape_string_warning: there the session keeps its standard strings.)
DO $$
BEGIN
	EXECUTE 'SET escape_string_warning = off';
	EXECUTE 'SET standard_conforming_strings = off';
EXCEPTION WHEN feature_not_supported OR undefined_object THEN
	NULL;
END
$$;
SELECT current_setting('standard_conforming_strings') = 'off'
       OR current_setting('server_version_num')::int >= 190000 AS strings_off_where_possible;
SELECT count(*) AS partitions, count(*) FILTER (WHERE lower_bound IS NULL OR upper_bound IS NULL) AS without_bounds
  FROM athena_keys._auth_log_partition_bounds();
SELECT athena_keys.athena_prune_auth_log('30 days') AS dropped_without_conforming_strings;
RESET standard_conforming_strings;
DO $$
BEGIN
	EXECUTE 'RESET escape_string_warning';
EXCEPTION WHEN undefined_object THEN
	NULL;
END
$$;
SELECT count(*) AS daily_partitions, min(from_day), max(to_day) FROM pg_temp.parts() WHERE from_day IS NOT NULL;

-- Retention functions pin their settings and their lock order helper.
SELECT p.oid::regprocedure AS function, p.proconfig
  FROM pg_proc p
 WHERE p.oid IN ('athena_keys.athena_prune_auth_log(interval)'::regprocedure,
                 'athena_keys.athena_maintain_auth_log(integer)'::regprocedure,
                 'athena_keys._create_auth_log_partition(date)'::regprocedure)
 ORDER BY p.oid::regprocedure::text COLLATE "C";

DROP EXTENSION athena_keys CASCADE;
