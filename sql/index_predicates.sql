-- Partial-index predicates on the log's partitions are compiled once per
-- backend and kept (src/index_predicates.c): every durable row must still
-- get exactly the entries of the partial indexes whose predicates it
-- satisfies, after an index is dropped and another made in its place (in
-- the same transaction too), with predicates that are not kept (they call
-- a function), and with more partial indexes than the backend keeps.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
RESET client_min_messages;
CREATE EXTENSION athena_keys;

SELECT athena_keys.athena_create_right('users.read');
SELECT api_key AS k FROM athena_keys.athena_create_key('predicates', rights => ARRAY['users.read']) \gset
CREATE TEMP TABLE presented AS
SELECT :'k' AS good, split_part(:'k', '.', 1) || '.' || repeat('0', 64) AS wrong;

-- The rows matching pred, counted through an index scan (no sequential
-- scan in the plan: a missing entry is then not counted, and an entry
-- without its row's match is, since the scan drops the implied predicate)
-- and through a sequential scan.
CREATE FUNCTION pg_temp.counts(pred text, OUT by_index bigint, OUT by_table bigint, OUT index_used boolean)
LANGUAGE plpgsql AS $$
DECLARE
	query text := 'SELECT count(*) FROM athena_keys.api_key_auth_log WHERE ' || pred ||
				  ' AND created_at >= ''-infinity''';
	line text;
BEGIN
	SET LOCAL enable_seqscan = off;
	SET LOCAL enable_bitmapscan = off;
	index_used := true;
	FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
		IF line ~ 'Seq Scan' THEN
			index_used := false;
		END IF;
	END LOOP;
	EXECUTE query INTO by_index;
	SET LOCAL enable_seqscan = on;
	SET LOCAL enable_indexscan = off;
	SET LOCAL enable_indexonlyscan = off;
	EXECUTE query INTO by_table;
END $$;

-- Three calls: a success, a wrong secret, missing rights
CREATE FUNCTION pg_temp.three_calls() RETURNS text LANGUAGE sql AS $$
SELECT string_agg(status::text, ',' ORDER BY n)
  FROM presented p,
       LATERAL (SELECT 1 AS n, status FROM athena_keys.athena_authenticate(p.good, NULL, '192.0.2.1', ARRAY['users.read'])
                UNION ALL
                SELECT 2, status FROM athena_keys.athena_authenticate(p.wrong, NULL, '192.0.2.1', ARRAY['users.read'])
                UNION ALL
                SELECT 3, status FROM athena_keys.athena_authenticate(p.good, NULL, '192.0.2.1', ARRAY['users.write'])) c
$$;

-- The failures index (failure_reason IS NOT NULL), kept after the first call
SELECT pg_temp.three_calls();
SELECT pg_temp.three_calls();
SELECT * FROM pg_temp.counts('failure_reason IS NOT NULL');

-- An operator's partial indexes: kept (IS FALSE, NOT) and not kept (a
-- comparison calls its operator's function)
CREATE INDEX log_denied_idx ON athena_keys.api_key_auth_log (created_at) WHERE allowed IS FALSE;
CREATE INDEX log_not_allowed_idx ON athena_keys.api_key_auth_log (created_at) WHERE NOT allowed OR status IS NULL;
CREATE INDEX log_403_idx ON athena_keys.api_key_auth_log (created_at) WHERE status = 403;
SELECT pg_temp.three_calls();
SELECT pg_temp.three_calls();
SELECT * FROM pg_temp.counts('allowed IS FALSE');
SELECT * FROM pg_temp.counts('(NOT allowed OR status IS NULL)');
SELECT * FROM pg_temp.counts('status = 403');

-- Dropped and made again with the opposite predicate, in this warm
-- session: the next rows follow the new predicate
DROP INDEX athena_keys.log_denied_idx;
CREATE INDEX log_denied_idx ON athena_keys.api_key_auth_log (created_at) WHERE allowed IS TRUE;
SELECT pg_temp.three_calls();
SELECT * FROM pg_temp.counts('allowed IS TRUE');

-- The same inside one transaction, between two calls
BEGIN;
SELECT pg_temp.three_calls();
DROP INDEX athena_keys.log_denied_idx;
CREATE INDEX log_denied_idx ON athena_keys.api_key_auth_log (created_at) WHERE allowed IS FALSE;
SELECT pg_temp.three_calls();
COMMIT;
SELECT * FROM pg_temp.counts('allowed IS FALSE');

-- More partial indexes than the backend keeps: the rest are compiled by
-- the executor at each row, as before
DO $$
BEGIN
	FOR i IN 1..12 LOOP
		EXECUTE format('CREATE INDEX log_many_%s_idx ON athena_keys.api_key_auth_log (created_at) WHERE %s',
					   i, CASE WHEN i % 2 = 0 THEN 'failure_reason IS NULL' ELSE 'required_rights IS NOT NULL' END);
	END LOOP;
END $$;
SELECT pg_temp.three_calls();
SELECT pg_temp.three_calls();
SELECT pg_temp.three_calls();
SELECT * FROM pg_temp.counts('failure_reason IS NULL');
SELECT * FROM pg_temp.counts('required_rights IS NOT NULL');
SELECT * FROM pg_temp.counts('failure_reason IS NOT NULL');

-- The log writer's rows (async, through the same path when preloaded,
-- else the call inserts them) and the counts once more
SET athena_keys.log_durability = async;
SELECT pg_temp.three_calls();
RESET athena_keys.log_durability;
SELECT * FROM pg_temp.counts('failure_reason IS NOT NULL');

DROP EXTENSION athena_keys CASCADE;
