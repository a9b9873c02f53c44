-- Retention of api_key_auth_log: daily partitions, dropped whole.
\set SHOW_CONTEXT never
DROP EXTENSION IF EXISTS athena_keys CASCADE;
CREATE EXTENSION athena_keys;

-- Install prepares today and the coming seven days, plus a default partition.
SELECT count(*) AS daily_partitions
  FROM pg_inherits WHERE inhparent = 'athena_keys.api_key_auth_log'::regclass
   AND inhrelid::regclass::text ~ 'api_key_auth_log_p[0-9]{8}$';
SELECT to_regclass('athena_keys.' || athena_keys._auth_log_partition_name((now() AT TIME ZONE 'UTC')::date)) IS NOT NULL AS today_exists;

-- Forty days of rows: most fall into the default partition (no partition yet).
INSERT INTO athena_keys.api_key_auth_log (created_at, authenticated, authorized, enforced, allowed, status)
SELECT now() - g * interval '1 day', true, true, true, true, 200 FROM generate_series(0, 40) g;
SELECT count(*) AS in_default FROM athena_keys.api_key_auth_log_default;

-- Creating a partition for a past day moves that day's rows out of the default.
SELECT athena_keys._create_auth_log_partition(((now() AT TIME ZONE 'UTC') - interval '5 days')::date) AS created;
SELECT count(*) AS in_default FROM athena_keys.api_key_auth_log_default;
SELECT count(*) AS in_new_partition
  FROM athena_keys.api_key_auth_log
 WHERE tableoid = ('athena_keys.' || athena_keys._auth_log_partition_name(((now() AT TIME ZONE 'UTC') - interval '5 days')::date))::regclass;

-- Pruning at 3 days drops the old partition (not row by row) and old default rows.
SELECT athena_keys.athena_prune_auth_log('3 days') AS partitions_dropped;
SELECT count(*) AS rows_left, bool_and(created_at >= now() - interval '4 days') AS only_recent
  FROM athena_keys.api_key_auth_log;
SELECT count(*) = 0 AS nothing_older_than_cutoff_in_default
  FROM athena_keys.api_key_auth_log_default WHERE created_at < now() - interval '3 days';

-- Partitions made after install belong to the extension (pg_dump leaves the log out).
SELECT bool_and(EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                          AND d.objid = i.inhrelid AND d.deptype = 'e')) AS all_members
  FROM pg_inherits i WHERE i.inhparent = 'athena_keys.api_key_auth_log'::regclass;

-- Bad retention values are refused.
SELECT athena_keys.athena_prune_auth_log(NULL);
SELECT athena_keys.athena_prune_auth_log('-1 day');
SELECT athena_keys.athena_maintain_auth_log(-1);

-- Decisions are written through the partitioned parent.
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(NULL, 'c', NULL, NULL);
SELECT count(*) AS todays_rows FROM athena_keys.api_key_auth_log
 WHERE failure_reason = 'API key required' AND created_at >= now() - interval '1 minute';

DROP EXTENSION athena_keys CASCADE;
SELECT count(*) AS leftover_partitions FROM pg_class WHERE relname LIKE 'api_key_auth_log%';
