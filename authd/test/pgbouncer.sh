#!/usr/bin/env bash
# End-to-end test of athena-authd through a real PgBouncer (Debian's 1.18),
# in session and in transaction pooling mode: PostgreSQL 15 with the
# athena_keys extension <- PgBouncer <- athena-authd <- curl.  Loopback
# ports only; PgBouncer runs as the PostgreSQL owner (it refuses root).
#
# PgBouncer refuses `-c statement_timeout` in the startup options and, on
# 1.18, does not keep named prepared statements across server connections
# in transaction mode, so athena-authd runs with statement_timeout = local
# (set for the call's own transaction) and, in transaction mode,
# prepared_statement = unnamed.
#
# Prints "ok N - ..." per check, then "N passed, N failed".
set -uo pipefail
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/check_lib.sh"

PGBOUNCER_BIN=${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}
PGBOUNCER_PID=""

# Stop PgBouncer (by pid), then everything e2e_lib started
StopPgbouncerAndTeardown() {
  if [ -n "$PGBOUNCER_PID" ]; then
    kill "$PGBOUNCER_PID" 2>/dev/null
    wait "$PGBOUNCER_PID" 2>/dev/null
  fi
  TeardownE2e
}

# StartPgbouncer PORT: one PgBouncer with two databases, app_session
# (pool_mode session) and app_tx (pool_mode transaction, 2 server
# connections, so athena-authd's 4 connections share them)
StartPgbouncer() {
  local port=$1 dir="$E2E_TMP/pgbouncer"
  mkdir -p "$dir"
  cat >"$dir/pgbouncer.ini" <<CONF
[databases]
app_session = host=127.0.0.1 port=$PG_PORT dbname=postgres pool_mode=session
app_tx = host=127.0.0.1 port=$PG_PORT dbname=postgres pool_mode=transaction pool_size=2

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pidfile = $dir/pgbouncer.pid
logfile = $dir/pgbouncer.log
max_client_conn = 200
default_pool_size = 8
CONF
  printf '"athena_gateway" ""\n"postgres" ""\n' >"$dir/userlist.txt"
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres "$dir"; fi
  # setpriv execs, so $! is PgBouncer itself (runuser would stay between)
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=postgres --regid="$(id -g postgres)" --init-groups \
      "$PGBOUNCER_BIN" "$dir/pgbouncer.ini" >"$dir/stderr.log" 2>&1 &
  else
    "$PGBOUNCER_BIN" "$dir/pgbouncer.ini" >"$dir/stderr.log" 2>&1 &
  fi
  PGBOUNCER_PID=$!
  for _ in $(seq 1 50); do
    "$PG_BIN/psql" -X -qAt -h 127.0.0.1 -p "$port" -U postgres -d app_session -c 'SELECT 1' >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$dir/stderr.log" "$dir/pgbouncer.log" 2>/dev/null
  return 1
}

# SqlVia DATABASE SQL: psql as the superuser through PgBouncer
SqlVia() {
  "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGB_PORT" -U postgres -d "$1" -c "$2"
}

# Burst PORT COUNT KEY: COUNT requests, 8 at a time; prints "status count" lines
Burst() {
  local port=$1 count=$2 key=$3
  seq 1 "$count" | xargs -P 8 -I{} curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 \
    -H "X-Athena-Key: $key" "http://127.0.0.1:$port/auth" | sort | uniq -c | awk '{print $2, $1}'
}

if [ ! -f "$EXTENSION_CONTROL" ]; then
  Abort "athena_keys extension installed ($EXTENSION_CONTROL missing: run make install first)"
fi
[ -x "$PGBOUNCER_BIN" ] || Abort "pgbouncer installed ($PGBOUNCER_BIN)"
SetupTempDir
trap StopPgbouncerAndTeardown EXIT
EnsureAuthdBuilt || Abort "athena-authd builds"
StartPostgres || Abort "PostgreSQL starts with CREATE EXTENSION athena_keys"
PGB_PORT=$(pick_port)
StartPgbouncer "$PGB_PORT" || Abort "PgBouncer starts"

read -r KEY KEY_ID < <(Sql -c "SELECT api_key || ' ' || id FROM athena_keys.athena_create_key('pgb', rights => ARRAY['*'])")
[ -n "${KEY_ID:-}" ] || Abort "key issued"

DSN_BASE="host=127.0.0.1 port=$PGB_PORT user=athena_gateway"
DEFAULT_PORT=$(pick_port)
SESSION_PORT=$(pick_port)
TX_PORT=$(pick_port)

# today's defaults: -c statement_timeout in the startup packet
StartAuthd default "$DEFAULT_PORT" ATHENA_AUTHD_DSN="$DSN_BASE dbname=app_session" ATHENA_AUTHD_POOL=1 \
  ATHENA_AUTHD_TIMEOUT_MS=1000 || Abort "athena-authd (default settings) starts"
Request "$DEFAULT_PORT" /auth -H "X-Athena-Key: $KEY"
Check "default statement_timeout = options: PgBouncer refuses the startup option: 503" \
  DeniedWith 503 "API key validation unavailable"
Check "... and athena-authd logs PgBouncer's reason" grep -q "unsupported startup parameter" "$E2E_TMP/default.log"

StartAuthd session "$SESSION_PORT" ATHENA_AUTHD_DSN="$DSN_BASE dbname=app_session" ATHENA_AUTHD_POOL=4 \
  ATHENA_AUTHD_TIMEOUT_MS=1000 ATHENA_AUTHD_STATEMENT_TIMEOUT=local ATHENA_AUTHD_LOG=all ||
  Abort "athena-authd (session pooling) starts"
StartAuthd tx "$TX_PORT" ATHENA_AUTHD_DSN="$DSN_BASE dbname=app_tx" ATHENA_AUTHD_POOL=4 \
  ATHENA_AUTHD_TIMEOUT_MS=1000 ATHENA_AUTHD_STATEMENT_TIMEOUT=local ATHENA_AUTHD_PREPARED_STATEMENT=unnamed \
  ATHENA_AUTHD_LOG=all || Abort "athena-authd (transaction pooling) starts"

for mode in session tx; do
  port_var=${mode^^}_PORT
  port=${!port_var}
  Request "$port" /auth -H "X-Athena-Key: $KEY"
  Check "$mode pooling: valid key allowed (200)" StatusIs 200
  Request "$port" /auth -H "X-Athena-Key: $(WrongSecret "$KEY")"
  Check "$mode pooling: wrong secret: 401 Invalid API key" DeniedWith 401 "Invalid API key"
  BURST=$(Burst "$port" 200 "$KEY" | tr '\n' ' ')
  STATUS=$BURST
  Check "$mode pooling: 200 concurrent requests all allowed [$BURST]" test "$BURST" = "200 200 "

  db=app_session; [ "$mode" = tx ] && db=app_tx
  SqlVia "$db" "SELECT athena_keys.athena_set_key_active('$KEY_ID', false)" >/dev/null
  Request "$port" /auth -H "X-Athena-Key: $KEY"
  Check "$mode pooling: key revoked through the pooler is refused on the next request" \
    DeniedWith 401 "Inactive API key"
  SqlVia "$db" "SELECT athena_keys.athena_set_key_active('$KEY_ID', true)" >/dev/null
  Request "$port" /auth -H "X-Athena-Key: $KEY"
  Check "$mode pooling: reactivated through the pooler: allowed again" StatusIs 200
done

# the statement_timeout reaches the server without startup options: a call
# blocked on a lock is cancelled by the server (not only abandoned by us)
Sql -c "BEGIN; LOCK TABLE athena_keys.api_key_auth_log IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;" \
  >/dev/null 2>&1 &
LOCKER_PID=$!
sleep 0.5
START_MS=$(NowMs)
Request "$TX_PORT" /auth -H "X-Athena-Key: $KEY"
ELAPSED_MS=$(($(NowMs) - START_MS))
# shellcheck disable=SC2016  # expanded by eval inside Check
Check "transaction pooling, database blocked: 503 within the 1000 ms timeout [${ELAPSED_MS} ms]" \
  eval 'DeniedWith 503 "API key validation unavailable" && test "$ELAPSED_MS" -lt 2500'
sleep 1
Check "the server cancelled the blocked call itself (statement_timeout = local took effect)" \
  grep -q "canceling statement due to statement timeout" "$E2E_TMP/pg/server.log"
wait "$LOCKER_PID"
AwaitStatus 200 "$TX_PORT" /auth -H "X-Athena-Key: $KEY"
Check "after the lock: transaction pooling decides again" StatusIs 200
# shellcheck disable=SC2016  # expanded by eval inside Check
Check "no prepared-statement errors in the transaction-pooling log" \
  eval '! grep -q "prepared statement" "$E2E_TMP/tx.log"'

Finish
