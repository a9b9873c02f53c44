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
SELECT athena_keys.athena_maintain_auth_log(NULL);
SELECT athena_keys.athena_prune_auth_log('-1 day');
SELECT athena_keys.athena_maintain_auth_log(-1);

-- Decisions are written through the partitioned parent.
SELECT allowed, status, reason FROM athena_keys.athena_authenticate(NULL, 'c', NULL, NULL);
SELECT count(*) AS todays_rows FROM athena_keys.api_key_auth_log
 WHERE failure_reason = 'API key required' AND created_at >= now() - interval '1 minute';

-- Building a BRIN index summarizes the table's last, still-filling range too,
-- and every row then inserted into a summarized range rewrites its summary.
-- The partitions athena_keys makes (today's at install, yesterday's now, with
-- the row it takes over from the default partition) and the default
-- partition leave that range unsummarized: brin_summarize_range, which
-- returns how many ranges it summarized, still finds range 0 to do in each
-- (each holds a row), where it finds nothing in a table indexed the plain way.
SELECT athena_keys._create_auth_log_partition(((now() AT TIME ZONE 'UTC') - interval '1 day')::date) AS created;
SELECT p.which, brin_summarize_range(i.indexrelid::regclass, 0) AS ranges_summarized,
       (SELECT count(*) > 0 FROM athena_keys.api_key_auth_log l
         WHERE l.tableoid = ('athena_keys.' || p.rel)::regclass) AS holds_rows
  FROM (VALUES ('today', athena_keys._auth_log_partition_name((now() AT TIME ZONE 'UTC')::date)),
               ('yesterday', athena_keys._auth_log_partition_name(((now() AT TIME ZONE 'UTC') - interval '1 day')::date)),
               ('default', 'api_key_auth_log_default')) p(which, rel)
  JOIN pg_index i ON i.indrelid = ('athena_keys.' || p.rel)::regclass
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_am a ON a.oid = c.relam AND a.amname = 'brin'
 ORDER BY 1;
CREATE TABLE brin_built_plainly (created_at timestamptz);
CREATE INDEX brin_built_plainly_idx ON brin_built_plainly USING brin (created_at);
INSERT INTO brin_built_plainly VALUES (now());
SELECT brin_summarize_range('brin_built_plainly_idx', 0) AS plain_ranges_summarized;
DROP TABLE brin_built_plainly;

-- A log an operator extended with a CHECK constraint and a generated column,
-- and a default partition of their own whose columns are in another order:
-- the day's partition is still made (ATTACH refuses a table without the
-- log's constraints and generated columns), and the rows it takes over
-- from the default partition keep every column's value (moved by name).
ALTER TABLE athena_keys.api_key_auth_log
	ADD CONSTRAINT operator_status_range CHECK (status BETWEEN 100 AND 599),
	ADD COLUMN operator_failed boolean GENERATED ALWAYS AS (failure_reason IS NOT NULL) STORED;
ALTER EXTENSION athena_keys DROP TABLE athena_keys.api_key_auth_log_default;
ALTER TABLE athena_keys.api_key_auth_log DETACH PARTITION athena_keys.api_key_auth_log_default;
ALTER TABLE athena_keys.api_key_auth_log_default RENAME TO operator_old_default;
CREATE TABLE athena_keys.api_key_auth_log_default (
	operator_failed boolean GENERATED ALWAYS AS (failure_reason IS NOT NULL) STORED,
	client_name text, api_key_public_id text, failure_reason text, status smallint NOT NULL,
	id bigint NOT NULL, created_at timestamptz NOT NULL, api_key_id uuid, remote_addr inet,
	required_rights text[], granted_rights text[], missing_rights text[],
	authenticated boolean NOT NULL, authorized boolean NOT NULL, enforced boolean NOT NULL,
	allowed boolean NOT NULL, locked_in boolean NOT NULL DEFAULT false,
	CONSTRAINT operator_status_range CHECK (status BETWEEN 100 AND 599));
INSERT INTO athena_keys.api_key_auth_log_default (client_name, api_key_public_id, failure_reason, status,
	id, created_at, api_key_id, remote_addr, required_rights, granted_rights, missing_rights,
	authenticated, authorized, enforced, allowed, locked_in)
SELECT client_name, api_key_public_id, failure_reason, status, id, created_at, api_key_id, remote_addr,
	required_rights, granted_rights, missing_rights, authenticated, authorized, enforced, allowed, locked_in
  FROM athena_keys.operator_old_default;
DROP TABLE athena_keys.operator_old_default;
ALTER TABLE athena_keys.api_key_auth_log ATTACH PARTITION athena_keys.api_key_auth_log_default DEFAULT;
ALTER EXTENSION athena_keys ADD TABLE athena_keys.api_key_auth_log_default;
INSERT INTO athena_keys.api_key_auth_log (created_at, client_name, api_key_public_id, failure_reason,
	authenticated, authorized, enforced, allowed, status)
VALUES (now() - interval '2 days', 'operator client', 'operatorpub1', 'Invalid API key',
	true, false, true, false, 401);
SELECT tableoid = 'athena_keys.api_key_auth_log_default'::regclass AS in_default
  FROM athena_keys.api_key_auth_log WHERE client_name = 'operator client';
SELECT athena_keys._create_auth_log_partition(((now() AT TIME ZONE 'UTC') - interval '2 days')::date) AS created;
SELECT tableoid <> 'athena_keys.api_key_auth_log_default'::regclass AS moved, client_name,
       api_key_public_id, failure_reason, status, operator_failed
  FROM athena_keys.api_key_auth_log WHERE client_name = 'operator client';
SELECT count(*) AS new_partition_has_the_check
  FROM pg_constraint
 WHERE conrelid = ('athena_keys.' || athena_keys._auth_log_partition_name(((now() AT TIME ZONE 'UTC') - interval '2 days')::date))::regclass
   AND conname = 'operator_status_range';
-- Retention, which makes the coming week's partitions first, runs too.
SELECT athena_keys.athena_prune_auth_log('30 days') >= 0 AS pruned;

DROP EXTENSION athena_keys CASCADE;
SELECT count(*) AS leftover_partitions FROM pg_class WHERE relname LIKE 'api_key_auth_log%';
