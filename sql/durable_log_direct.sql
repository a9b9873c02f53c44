-- A call's durable log row (log_durability = durable, the default) goes
-- straight into its partition (src/log_batch_insert.c), with what the
-- log's definition decides kept per backend until the log changes.  Each
-- row must come out as the INSERT statement would write it: the
-- decision's columns, an id from the log's sequence, the defaults of
-- columns added later (seen at once after every ALTER), the index entry
-- the triage views read, the partition the statement would pick; and a
-- log the direct path cannot write (a trigger, a retyped or missing
-- column) still goes through the statement, with its effects.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
DROP FUNCTION IF EXISTS public.durable_log_tag() CASCADE;
DROP DOMAIN IF EXISTS public.durable_log_site CASCADE;
RESET client_min_messages;
CREATE EXTENSION athena_keys;

SELECT athena_keys.athena_create_right('users.read');
SELECT api_key AS k, id AS k_id, public_id AS k_pub
  FROM athena_keys.athena_create_key('direct', client_name => 'Shop', rights => ARRAY['users.read']) \gset
SHOW athena_keys.log_durability;

-- The newest row of the log, for the checks below (not a view: the
-- log's columns change on the way)
\set newest '(SELECT l.*, l.tableoid::regclass::text AS partition_name FROM athena_keys.api_key_auth_log l ORDER BY l.id DESC LIMIT 1) AS newest'
-- The kinds of scan a query's plan uses
CREATE FUNCTION pg_temp.scans_of(query text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
	line text;
BEGIN
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
		IF line ~ 'Scan' THEN
			RETURN NEXT substring(line from '([A-Za-z ]+Scan)');
		END IF;
	END LOOP;
END $$;

------------------------------------------------------------------------
-- A success and a failure: every logged column, the id from the log's
-- sequence in this session, today's partition (not the default one).
------------------------------------------------------------------------
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.1', ARRAY['users.read']);
SELECT id = currval('athena_keys.api_key_auth_log_id_seq') AS id_from_sequence,
       partition_name <> 'athena_keys.api_key_auth_log_default' AS in_a_day_partition,
       api_key_id = :'k_id' AS key_id, api_key_public_id = :'k_pub' AS public_id,
       client_name, remote_addr, required_rights, granted_rights, missing_rights,
       authenticated, authorized, enforced, allowed, status, failure_reason, locked_in
  FROM :newest;
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.2', ARRAY['users.write']);
SELECT id = currval('athena_keys.api_key_auth_log_id_seq') AS id_from_sequence,
       client_name, remote_addr, required_rights, granted_rights, missing_rights,
       authenticated, authorized, allowed, status, failure_reason
  FROM :newest;
SELECT count(*) AS rows_logged FROM athena_keys.api_key_auth_log;

-- The failure's entry in the partial failures index: an index-only
-- search finds the same rows a sequential scan does.
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT DISTINCT btrim(s) AS scan FROM pg_temp.scans_of($$SELECT count(*) FROM athena_keys.api_key_auth_log
 WHERE failure_reason IS NOT NULL AND created_at >= now() - interval '1 day'$$) s;
SELECT count(*) AS failures_through_the_index FROM athena_keys.api_key_auth_log
 WHERE failure_reason IS NOT NULL AND created_at >= now() - interval '1 day';
RESET enable_seqscan;
RESET enable_bitmapscan;
SELECT count(*) AS recent_failures FROM athena_keys.athena_recent_failures;

------------------------------------------------------------------------
-- The log changes in this session: each change is seen by the next call
-- (a layout kept past it would drop the new column's default, or write
-- the old one).
------------------------------------------------------------------------
ALTER TABLE athena_keys.api_key_auth_log ADD COLUMN gateway text DEFAULT 'edge-1';
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.3', ARRAY['users.read']);
SELECT remote_addr, gateway FROM :newest;
ALTER TABLE athena_keys.api_key_auth_log ALTER COLUMN gateway SET DEFAULT 'edge-2';
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.4', ARRAY['users.read']);
SELECT remote_addr, gateway FROM :newest;
-- A default evaluated per row, in the calling backend
ALTER TABLE athena_keys.api_key_auth_log ADD COLUMN writer_pid integer DEFAULT pg_backend_pid();
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.5', ARRAY['users.read']);
SELECT remote_addr, gateway, writer_pid = pg_backend_pid() AS this_backend FROM :newest;
-- Dropped again: a dropped column's default is not written, the rest is
ALTER TABLE athena_keys.api_key_auth_log DROP COLUMN gateway, DROP COLUMN writer_pid;
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.6', ARRAY['users.read']);
SELECT remote_addr, client_name, status,
       id = currval('athena_keys.api_key_auth_log_id_seq') AS id_from_sequence FROM :newest;

-- A column of a domain type with no default of its own takes the
-- domain's; ALTER DOMAIN changes only the type, and the next row has the
-- domain's new default.
CREATE DOMAIN public.durable_log_site AS text DEFAULT 'site-a';
ALTER TABLE athena_keys.api_key_auth_log ADD COLUMN site public.durable_log_site;
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.20', ARRAY['users.read']);
SELECT remote_addr, site FROM :newest;
ALTER DOMAIN public.durable_log_site SET DEFAULT 'site-b';
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.21', ARRAY['users.read']);
SELECT remote_addr, site FROM :newest;
ALTER TABLE athena_keys.api_key_auth_log DROP COLUMN site;
DROP DOMAIN public.durable_log_site;

-- Today's partition detached inside a transaction: the row goes where
-- the statement would put it, the default partition; rolled back, it
-- never was.
BEGIN;
SELECT 'athena_keys.' || athena_keys._auth_log_partition_name((now() AT TIME ZONE 'UTC')::date)
       AS today_partition \gset
ALTER TABLE athena_keys.api_key_auth_log DETACH PARTITION :today_partition;
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.7', ARRAY['users.read']);
SELECT remote_addr, partition_name FROM :newest;
ROLLBACK;
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.8', ARRAY['users.read']);
SELECT remote_addr,
       partition_name = 'athena_keys.' || athena_keys._auth_log_partition_name((created_at AT TIME ZONE 'UTC')::date)
       AS in_its_day_partition
  FROM :newest;
SELECT count(*) AS rolled_back_rows FROM athena_keys.api_key_auth_log WHERE remote_addr = '192.0.2.7';

------------------------------------------------------------------------
-- Logs the direct path leaves to the statement.
------------------------------------------------------------------------
-- Today's partition replaced, inside a transaction, by one partitioned by
-- client with no default sub-partition: the executor routes a row down
-- every level, which the direct path cannot feed (its routing slot holds
-- the log's key alone, and a NULL client finds no sub-partition), so the
-- statement writes the row, into the client's sub-partition.  The
-- partitioned partition's BRIN is a partitioned index, holding no ranges:
-- leaving its last range unsummarized passes it by.
BEGIN;
SELECT 'athena_keys.' || athena_keys._auth_log_partition_name((now() AT TIME ZONE 'UTC')::date)
       AS today_partition \gset
ALTER TABLE athena_keys.api_key_auth_log DETACH PARTITION :today_partition;
CREATE TABLE athena_keys.durable_by_client (LIKE athena_keys.api_key_auth_log) PARTITION BY LIST (client_name);
CREATE TABLE athena_keys.durable_by_client_shop PARTITION OF athena_keys.durable_by_client FOR VALUES IN ('Shop');
DO $$
BEGIN
	EXECUTE format('ALTER TABLE athena_keys.api_key_auth_log ATTACH PARTITION athena_keys.durable_by_client
	                FOR VALUES FROM (%L) TO (%L)',
	               to_char(date_trunc('day', now() AT TIME ZONE 'UTC'), 'YYYY-MM-DD HH24:MI:SS') || '+00',
	               to_char(date_trunc('day', now() AT TIME ZONE 'UTC') + interval '1 day', 'YYYY-MM-DD HH24:MI:SS') || '+00');
END $$;
SELECT athena_keys._desummarize_auth_log_tail('athena_keys.durable_by_client')::text = '' AS passed_by;
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.9', ARRAY['users.read']);
SELECT remote_addr, partition_name FROM :newest;
ROLLBACK;

-- The log made, inside a transaction, the default partition of a table
-- partitioned by client, whose other partition takes client 'Other': a row
-- written into the log is checked against the log's own bounds, which the
-- direct path's routing slot (the log's key alone) would pass with a NULL
-- client.  The statement checks the whole row: a call for 'Other' fails
-- with its error, as it would through INSERT; one for 'Shop' is logged.
BEGIN;
CREATE TABLE public.durable_by_client (LIKE athena_keys.api_key_auth_log) PARTITION BY LIST (client_name);
CREATE TABLE public.durable_by_client_other PARTITION OF public.durable_by_client FOR VALUES IN ('Other');
ALTER TABLE public.durable_by_client ATTACH PARTITION athena_keys.api_key_auth_log DEFAULT;
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.10', ARRAY['users.read']);
SELECT remote_addr, client_name FROM :newest;
SAVEPOINT other_client;
\set VERBOSITY terse
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Other', '192.0.2.11', ARRAY['users.read']);
\set VERBOSITY default
ROLLBACK TO other_client;
ROLLBACK;

-- A row trigger on the log fires for the call's row.
CREATE FUNCTION public.durable_log_tag() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.client_name := 'tagged:' || coalesce(NEW.client_name, '');
	RETURN NEW;
END $$;
CREATE TRIGGER durable_log_tag BEFORE INSERT ON athena_keys.api_key_auth_log
	FOR EACH ROW EXECUTE FUNCTION public.durable_log_tag();
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.9', ARRAY['users.read']);
SELECT remote_addr, client_name FROM :newest;
DROP TRIGGER durable_log_tag ON athena_keys.api_key_auth_log;
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.10', ARRAY['users.read']);
SELECT remote_addr, client_name FROM :newest;

-- A logged column of another type: the statement casts into it, as
-- before the direct path existed.
ALTER TABLE athena_keys.api_key_auth_log ALTER COLUMN locked_in TYPE text;
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.11', ARRAY['users.read']);
SELECT remote_addr, locked_in FROM :newest;
ALTER TABLE athena_keys.api_key_auth_log ALTER COLUMN locked_in TYPE boolean USING locked_in::boolean;

-- A logged column renamed away: the statement refuses the row, and the
-- call fails with its error rather than deciding unlogged; renamed back,
-- the next call logs again.
ALTER TABLE athena_keys.api_key_auth_log RENAME COLUMN remote_addr TO caller_addr;
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.12', ARRAY['users.read']);
ALTER TABLE athena_keys.api_key_auth_log RENAME COLUMN caller_addr TO remote_addr;
SELECT status FROM athena_keys.athena_authenticate(:'k', 'Shop', '192.0.2.13', ARRAY['users.read']);
SELECT remote_addr, status, locked_in FROM :newest;

-- Every row of this test, once each, with distinct ids
SELECT count(*) AS rows_logged, count(DISTINCT id) AS distinct_ids FROM athena_keys.api_key_auth_log;

DROP FUNCTION public.durable_log_tag();
