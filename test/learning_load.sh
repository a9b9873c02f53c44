#!/usr/bin/env bash
# Load check for IP learning: 8 pgbench clients hammer one learning key from
# 300 addresses until well past lock-in, then the database must show an
# exact count, one lock-in, a whitelist within its cap, and no call after
# lock-in allowed from an address outside the whitelist.
# Needs PGHOST/PGPORT/PGUSER of a server with the extension installed.
set -euo pipefail

DB=athena_learning_load
CLIENTS=8
CALLS_PER_CLIENT=${CALLS_PER_CLIENT:-500}
CAP=250

psql -X -q -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
export PGDATABASE=$DB
psql -X -q -c "CREATE EXTENSION athena_keys" >/dev/null
read -r KEY KEY_ID < <(psql -X -At -F ' ' -c "SELECT api_key, id FROM athena_keys.athena_create_key(
  'load', virgin_mode => true, virgin_until_n_requests => 3000, max_whitelist_ips => $CAP)")

SCRIPT=$(mktemp)
trap 'rm -f "$SCRIPT"' EXIT
cat > "$SCRIPT" <<SQL
\set n random(1, 300)
SELECT allowed FROM athena_keys.athena_authenticate('$KEY', NULL, ('10.77.' || (:n / 256) || '.' || (:n % 256))::inet, NULL);
SQL
pgbench -n -M simple -c $CLIENTS -j 2 -t "$CALLS_PER_CLIENT" -f "$SCRIPT" >/dev/null

psql -X -At -v key_id="$KEY_ID" -v cap=$CAP -v total=$((CLIENTS * CALLS_PER_CLIENT)) <<'SQL'
WITH k AS (SELECT * FROM athena_keys.api_key WHERE id = :'key_id'),
     lock_row AS (SELECT id FROM athena_keys.api_key_auth_log
                   WHERE api_key_id = :'key_id' AND locked_in),
     checks AS (
  SELECT 'every call was logged' AS what,
         (SELECT count(*) FROM athena_keys.api_key_auth_log WHERE api_key_id = :'key_id') = :total AS ok
  UNION ALL
  SELECT 'exactly one lock-in', (SELECT count(*) FROM lock_row) = 1
  UNION ALL
  SELECT 'virgin_request_count equals the learning observations',
         (SELECT virgin_request_count FROM k) =
         (SELECT sum(hit_count) FROM athena_keys.api_key_ip_seen WHERE api_key_id = :'key_id')
  UNION ALL
  SELECT 'virgin_request_count equals the calls up to lock-in',
         (SELECT virgin_request_count FROM k) =
         (SELECT count(*) FROM athena_keys.api_key_auth_log
           WHERE api_key_id = :'key_id' AND id <= (SELECT id FROM lock_row))
  UNION ALL
  SELECT 'whitelist within the cap',
         (SELECT count(*) FROM athena_keys.api_key_ip_rule
           WHERE api_key_id = :'key_id' AND list = 'whitelist') BETWEEN 1 AND :cap
  UNION ALL
  SELECT 'every allowed call after lock-in came from a whitelisted address',
         NOT EXISTS (SELECT 1 FROM athena_keys.api_key_auth_log l
                      WHERE l.api_key_id = :'key_id' AND l.allowed
                        AND l.id > (SELECT id FROM lock_row)
                        AND NOT EXISTS (SELECT 1 FROM athena_keys.api_key_ip_rule r
                                         WHERE r.api_key_id = :'key_id' AND r.list = 'whitelist'
                                           AND r.addr >>= l.remote_addr))
  UNION ALL
  SELECT 'some calls after lock-in were refused',
         EXISTS (SELECT 1 FROM athena_keys.api_key_auth_log
                  WHERE api_key_id = :'key_id' AND failure_reason = 'IP not allowed')
)
SELECT (CASE WHEN ok THEN 'ok' ELSE 'not ok' END) || ' - learning load: ' || what FROM checks;
SQL
psql -X -q -d postgres -c "DROP DATABASE $DB" >/dev/null
