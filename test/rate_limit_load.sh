#!/usr/bin/env bash
# Exactness check for rate limits: 8 pgbench clients hammer one key with a
# limit of RATE per second (burst BURST) for a few seconds, far faster than
# it admits; every call's verdict is kept with the time it was decided.
# Then: no window of 990 ms (sliding, from any admitted call) holds more
# than RATE + BURST admitted calls (each call's time is read just after its
# units were taken, a little later for some calls than for others; a window
# 10 ms short of the limit's second absorbs that and still holds no more
# than a true second may), each whole second after the first
# admits close to RATE (the buckets are never behind), the total is within
# what the limit allows, and the rest were refused with 429.
# Needs PGHOST/PGPORT/PGUSER of a server with athena_keys preloaded.
set -euo pipefail

DB=athena_rate_limit_load
CLIENTS=8
RUN_SECONDS=${RUN_SECONDS:-4}
RATE=200
BURST=50

psql -X -q -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
export PGDATABASE=$DB
if [ "$(psql -X -At -c "SELECT current_setting('shared_preload_libraries') LIKE '%athena_keys%'")" != t ]; then
  echo "not ok - rate limit load: the server does not preload athena_keys"
  exit 1
fi
psql -X -q <<SQL >/dev/null
CREATE EXTENSION athena_keys;
ALTER DATABASE $DB SET athena_keys.log_decisions = none;
CREATE UNLOGGED TABLE hits (decided_at timestamptz NOT NULL, allowed boolean NOT NULL, status integer NOT NULL);
SQL
read -r KEY KEY_ID < <(psql -X -At -F ' ' -c "SELECT api_key, id FROM athena_keys.athena_create_key('load')")
psql -X -q -c "SELECT athena_keys.athena_set_key_rate_limit('$KEY_ID', $RATE, '1 second', $BURST)" >/dev/null

SCRIPT=$(mktemp)
trap 'rm -f "$SCRIPT"' EXIT
# clock_timestamp() in the target list is read after the function scan,
# so each row's time is just after its units were taken.
cat > "$SCRIPT" <<SQL
INSERT INTO hits SELECT clock_timestamp(), allowed, status FROM athena_keys.athena_authenticate('$KEY', NULL, NULL, NULL);
SQL
pgbench -n -M prepared -c $CLIENTS -j 4 -T "$RUN_SECONDS" -f "$SCRIPT" >/dev/null

psql -X -q -At -v rate=$RATE -v burst=$BURST <<'SQL'
CREATE TEMP TABLE admitted AS
SELECT decided_at, row_number() OVER (ORDER BY decided_at) AS n FROM hits WHERE allowed;
CREATE INDEX ON admitted (decided_at);
WITH bounds AS (SELECT min(decided_at) AS first, max(decided_at) AS last FROM admitted),
     per_second AS (
  SELECT floor(extract(epoch FROM a.decided_at - b.first))::int AS second, count(*) AS admitted
    FROM admitted a, bounds b GROUP BY 1),
     sliding AS (
  SELECT max((SELECT count(*) FROM admitted b
               WHERE b.decided_at >= a.decided_at
                 AND b.decided_at < a.decided_at + interval '990 milliseconds')) AS most
    FROM admitted a),
     checks AS (
  SELECT 'the callers asked far more than the limit admits' AS what,
         (SELECT count(*) FROM hits) > 2 * (SELECT count(*) FROM admitted) AS ok
  UNION ALL
  SELECT 'no 990 ms window admits more than limit + burst (' ||
         (SELECT most FROM sliding) || ' <= ' || (:rate + :burst) || ')',
         (SELECT most FROM sliding) <= :rate + :burst
  UNION ALL
  SELECT 'the first second admits the burst and the rate, give or take the one a late time moves in (' ||
         (SELECT admitted FROM per_second WHERE second = 0) || ')',
         (SELECT admitted FROM per_second WHERE second = 0) BETWEEN :rate + :burst - 5 AND :rate + :burst + 1
  UNION ALL
  SELECT 'every whole second after it admits close to the rate (' ||
         (SELECT string_agg(admitted::text, ' ' ORDER BY second) FROM per_second
           WHERE second > 0 AND second < (SELECT max(second) FROM per_second)) || ')',
         (SELECT bool_and(admitted BETWEEN :rate - 5 AND :rate + 5) FROM per_second
           WHERE second > 0 AND second < (SELECT max(second) FROM per_second))
         AND (SELECT count(*) FROM per_second) >= 3
  UNION ALL
  SELECT 'the total is what the limit allows over the run',
         (SELECT count(*) FROM admitted) <=
         :burst + ceil(extract(epoch FROM (SELECT last - first FROM bounds)) * :rate) + 1
  UNION ALL
  SELECT 'every refusal is a 429',
         NOT EXISTS (SELECT 1 FROM hits WHERE NOT allowed AND status <> 429)
)
SELECT (CASE WHEN ok THEN 'ok' ELSE 'not ok' END) || ' - rate limit load: ' || what FROM checks;
SQL
psql -X -q -d postgres -c "DROP DATABASE $DB" >/dev/null
