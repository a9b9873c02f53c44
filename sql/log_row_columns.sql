-- One description of a log row (issue 15): log_columns[] in src/log_row.c,
-- which every writer of the log is built from (the single-row and batched
-- INSERTs, the queue's records, a standby's JSON shipment), matches the SQL
-- definitions: the columns of athena_keys.api_key_auth_log, and the JSON
-- keys and the column list athena_record_decisions reads a shipment with.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
DROP SCHEMA IF EXISTS log_row_check CASCADE;
RESET client_min_messages;
CREATE EXTENSION athena_keys;

-- No extension script declares the C function that lists log_columns[]:
-- it is bound here, for this test only.
CREATE SCHEMA log_row_check;
CREATE FUNCTION log_row_check.columns(OUT name text, OUT type regtype)
	RETURNS SETOF record AS 'athena_keys', 'athena_log_columns' LANGUAGE C STRICT;
REVOKE ALL ON FUNCTION log_row_check.columns() FROM PUBLIC;
SELECT row_number() OVER () AS position, name, type FROM log_row_check.columns();

-- The table's columns against the C table: only id differs (its default
-- fills it, no writer names it).
SELECT coalesce(c.name, a.attname::text) AS column_name, c.type AS in_c,
       a.atttypid::regtype AS in_table
  FROM log_row_check.columns() c
  FULL JOIN (SELECT attname, atttypid FROM pg_catalog.pg_attribute
              WHERE attrelid = 'athena_keys.api_key_auth_log'::regclass
                AND attnum > 0 AND NOT attisdropped) a ON a.attname::text = c.name
 WHERE c.type IS DISTINCT FROM a.atttypid::regtype
 ORDER BY 1;

-- What athena_record_decisions reads (through _append_decisions): the keys
-- (and types) of its jsonb_to_recordset, and the columns it inserts.
CREATE TEMP TABLE receiver AS
SELECT substring(prosrc from 'jsonb_to_recordset\(decisions\) AS r\(([^)]*)\)') AS read_list,
       substring(prosrc from 'INSERT INTO athena_keys\.api_key_auth_log\s*\(([^)]*)\)') AS insert_list
  FROM pg_catalog.pg_proc WHERE oid = 'athena_keys._append_decisions(jsonb)'::regprocedure;
CREATE TEMP VIEW read_keys AS
SELECT w[1] AS name, w[2]::regtype AS type
  FROM receiver, regexp_split_to_table(read_list, ',') AS d,
       regexp_split_to_array(btrim(d, E' \t\r\n'), '\s+') AS w;
CREATE TEMP VIEW inserted_columns AS
SELECT btrim(d, E' \t\r\n') AS name FROM receiver, regexp_split_to_table(insert_list, ',') AS d;

SELECT (SELECT count(*) FROM read_keys) AS keys_read,
       (SELECT count(*) FROM inserted_columns) AS columns_inserted,
       (SELECT count(*) FROM log_row_check.columns()) AS columns_in_c;
-- Keys read against the C table: none missing, none extra, same types
SELECT coalesce(c.name, k.name) AS key, c.type AS in_c, k.type AS read_as
  FROM log_row_check.columns() c FULL JOIN read_keys k ON k.name = c.name
 WHERE c.type IS DISTINCT FROM k.type
 ORDER BY 1;
-- Columns inserted against the C table
SELECT coalesce(c.name, i.name) AS column_name, c.name IS NOT NULL AS in_c,
       i.name IS NOT NULL AS inserted
  FROM log_row_check.columns() c FULL JOIN inserted_columns i ON i.name = c.name
 WHERE c.name IS NULL OR i.name IS NULL
 ORDER BY 1;

DROP SCHEMA log_row_check CASCADE;
