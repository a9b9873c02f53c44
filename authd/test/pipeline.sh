#!/usr/bin/env bash
# athena-authd's pipelined batches: concurrent requests share one database
# connection (pool = 1) and one round trip, and each request must still get
# its own verdict, whatever happens to the others in the batch.
#
# A batch is forced by stopping athena-authd's backend (SIGSTOP) while the
# requests arrive: the first call waits at the server, the rest queue, and
# after SIGCONT the queue leaves as one pipeline (the metrics show how many
# calls one round trip carried).  A trigger on the auth log makes chosen
# requests' calls raise: class P0 (a server error: 503 whatever the fail
# mode) and 57014 (statement cancelled: "unavailable", so the fail mode
# applies).  Then the connection dies with a batch in flight, queued calls
# outlive their deadline behind a hung backend, and the server restarts
# under load, a call of a batch fails at its own deadline and not at its
# batch's earliest, a LATIN1 database's connection sends each call as a
# statement of its own, and a pipeline_batch larger than one
# athena_gateway_verdicts call takes (64) is refused at start.  Runs as root or as an unprivileged
# user; loopback only.
set -uo pipefail
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/check_lib.sh"

[ -f "$EXTENSION_CONTROL" ] ||
  Abort "athena_keys extension installed ($EXTENSION_CONTROL missing: run make install first)"
SetupTempDir
EnsureAuthdBuilt || Abort "athena-authd builds"
StartPostgres || Abort "PostgreSQL starts with CREATE EXTENSION athena_keys"

AUTHD_PORT=$(pick_port)
SHORT_PORT=$(pick_port)
StartAuthd main "$AUTHD_PORT" ATHENA_AUTHD_DSN="$(GatewayDsn)" ATHENA_AUTHD_POOL=1 \
  ATHENA_AUTHD_TIMEOUT_MS=8000 ATHENA_AUTHD_LOG=all || Abort "athena-authd (pool 1) starts"
MAIN_HEALTH=$HEALTH_PORT
StartAuthd short "$SHORT_PORT" ATHENA_AUTHD_DSN="$(GatewayDsn)" ATHENA_AUTHD_POOL=1 \
  ATHENA_AUTHD_TIMEOUT_MS=800 ATHENA_AUTHD_LOG=all || Abort "athena-authd (800 ms timeout) starts"
SHORT_PID=$LAST_AUTHD_PID

Sql >/dev/null <<'SQL' || Abort "test data and the failing trigger set up"
SELECT athena_keys.athena_create_right('users.read');
CREATE FUNCTION public.pipeline_boom() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.client_name = 'boom' THEN
    RAISE EXCEPTION 'boom';
  ELSIF NEW.client_name = 'cancelled' THEN
    RAISE EXCEPTION 'cancelled' USING ERRCODE = '57014';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER pipeline_boom BEFORE INSERT ON athena_keys.api_key_auth_log
  FOR EACH ROW EXECUTE FUNCTION public.pipeline_boom();
SQL
KEYS=()
IDS=()
for i in 0 1 2 3 4 5; do
  read -r key id < <(CreateKey "name => 'p$i', client_name => 'web', rights => ARRAY['users.read']")
  KEYS+=("$key")
  IDS+=("$id")
done
[ -n "${IDS[5]:-}" ] || Abort "six keys created"

# The backend pids of an athena-authd instance (by its listener's port in
# application_name is not possible: both use the same name, so by age)
AuthdBackends() {
  Sql -c "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity
          WHERE usename = 'athena_gateway' AND application_name = 'athena-authd'"
}

# Kind of request number i (of a batch): valid key, wrong secret, missing
# right, a call that raises (P0001) and one cancelled (57014)
Kind() {
  case $(($1 % 5)) in
    0|1) echo valid ;;
    2) echo wrong ;;
    3) echo boom ;;
    4) echo cancelled ;;
  esac
}

# SendOne PORT I: one request of Kind I in the background; its status and
# seconds in $E2E_TMP/r.I, its headers in $E2E_TMP/h.I
SendOne() {
  local port=$1 i=$2 key=${KEYS[$(($2 % 6))]} args=()
  case $(Kind "$i") in
    valid) args=(-H "X-Athena-Key: $key" -H "X-Athena-Client: web" -H "X-Athena-Rights: users.read") ;;
    wrong) args=(-H "X-Athena-Key: $(WrongSecret "$key")" -H "X-Athena-Client: web") ;;
    boom) args=(-H "X-Athena-Client: boom") ;;
    cancelled) args=(-H "X-Athena-Client: cancelled") ;;
  esac
  curl -s -o /dev/null -D "$E2E_TMP/h.$i" -w '%{http_code} %{time_total}\n' --max-time 20 "${args[@]}" \
    "http://127.0.0.1:$port/auth" >"$E2E_TMP/r.$i" 2>/dev/null &
  CURL_PIDS+=("$!")
}

# Wait for the requests SendOne started (not for the daemons: plain wait would)
WaitForRequests() {
  local pid
  for pid in "${CURL_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  CURL_PIDS=()
}
CURL_PIDS=()

# Header NAME of response I (trimmed, empty when absent)
ResponseHeader() {
  tr -d '\r' <"$E2E_TMP/h.$2" 2>/dev/null | sed -n "s/^$1: *//Ip" | sed 's/ *$//' | head -1
}

# Batch PORT COUNT [ACTION]: stop the instance's backend, send COUNT
# concurrent requests, run ACTION (default nothing) and let the backend go
Batch() {
  local port=$1 count=$2 action=${3:-true} pids
  rm -f "$E2E_TMP"/r.* "$E2E_TMP"/h.*
  pids=$(AuthdBackends)
  # shellcheck disable=SC2086
  [ -n "$pids" ] && as_user kill -STOP $pids
  for i in $(seq 0 $((count - 1))); do SendOne "$port" "$i"; done
  sleep 0.5
  $action "$pids"
  # shellcheck disable=SC2086
  [ -n "$pids" ] && as_user kill -CONT $pids
  WaitForRequests
}

# The status of response I (000: none)
Status() {
  cut -d' ' -f1 "$E2E_TMP/r.$1" 2>/dev/null
}

# Judge one response of a batch under FAIL_MODE; "mixup" is any answer
# that belongs to another request; sets VERDICT
Judge() {
  local i=$1 fail_mode=$2 status key_id degraded
  status=$(Status "$i")
  key_id=$(ResponseHeader X-Athena-Key-Id "$i")
  degraded=$(ResponseHeader X-Athena-Degraded "$i")
  case $(Kind "$i"):$status in
    valid:200) [ "$key_id" = "${IDS[$((i % 6))]}" ] && [ -z "$degraded" ] && VERDICT=own || VERDICT=mixup ;;
    wrong:401) VERDICT=own ;;
    boom:503) VERDICT=own ;;
    cancelled:503) [ "$fail_mode" = fail_closed ] && VERDICT=own || VERDICT=mixup ;;
    cancelled:200) [ "$fail_mode" = fail_open ] && [ "$degraded" = fail_open ] && [ -z "$key_id" ] &&
      VERDICT=own || VERDICT=mixup ;;
    *:503) VERDICT=unavailable ;;
    *) VERDICT=mixup ;;
  esac
}

# Count the verdicts of responses 0..COUNT-1: sets OWN, UNAVAILABLE, MIXUP
CountVerdicts() {
  local count=$1 fail_mode=$2
  OWN=0 UNAVAILABLE=0 MIXUP=0
  for i in $(seq 0 $((count - 1))); do
    Judge "$i" "$fail_mode"
    case $VERDICT in
      own) OWN=$((OWN + 1)) ;;
      unavailable) UNAVAILABLE=$((UNAVAILABLE + 1)) ;;
      *) MIXUP=$((MIXUP + 1)); echo "#   request $i ($(Kind "$i")): $(Status "$i")" ;;
    esac
  done
}

# Metric VALUE from an instance's health listener: Metric PORT NAME
Metric() {
  curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n {print $2}'
}

AwaitStatus 200 "$AUTHD_PORT" /auth -H "X-Athena-Key: ${KEYS[0]}" -H "X-Athena-Client: web" ||
  Abort "athena-authd decides"

# 1. one batch of 25 mixed requests under fail_closed
Batch "$AUTHD_PORT" 25
CountVerdicts 25 fail_closed
Check "fail_closed batch: every request got its own verdict [$OWN of 25, $MIXUP mixed up]" \
  test "$OWN" = 25
LARGEST=$(Metric "$MAIN_HEALTH" athena_authd_db_largest_batch)
Check "the queued requests went to the database as one pipeline [largest batch $LARGEST]" \
  test "${LARGEST:-0}" -ge 10
BATCHES=$(Metric "$MAIN_HEALTH" athena_authd_db_batches_total)
CALLS=$(Metric "$MAIN_HEALTH" athena_authd_db_batched_calls_total)
Check "fewer round trips than calls [$BATCHES for $CALLS]" test "${BATCHES:-0}" -lt "${CALLS:-0}"
LOGGED=$(Sql -c "SELECT count(*) FROM athena_keys.api_key_auth_log WHERE client_name = 'web'")
# 10 valid + 5 wrong secrets in the batch, and the warm-up request
Check "each decided call of the batch committed its own log row [$LOGGED]" test "$LOGGED" = 16
Check "the calls that raised left no log row" \
  test "$(Sql -c "SELECT count(*) FROM athena_keys.api_key_auth_log WHERE client_name IN ('boom', 'cancelled')")" = 0

# 2. the same under fail_open: the cancelled call passes degraded, the
# failed one (class P0) still fails closed, the others are decided
Sql -c "SELECT athena_keys.athena_set_fail_mode('fail_open')" >/dev/null
AwaitStatus 200 "$AUTHD_PORT" /auth -H "X-Athena-Key: ${KEYS[0]}" -H "X-Athena-Client: web"
Batch "$AUTHD_PORT" 25
CountVerdicts 25 fail_open
Check "fail_open batch: every request got its own verdict [$OWN of 25, $MIXUP mixed up]" \
  test "$OWN" = 25
Sql -c "SELECT athena_keys.athena_set_fail_mode('fail_closed')" >/dev/null
AwaitStatus 200 "$AUTHD_PORT" /auth -H "X-Athena-Key: ${KEYS[0]}" -H "X-Athena-Client: web"

# 3. the connection dies with a batch in flight: what it carried is
# unavailable (fail_closed: 503), the queued rest is decided on a new
# connection, nobody gets another's answer, nothing hangs
TerminateBackends() {
  # shellcheck disable=SC2086
  Sql -c "SELECT count(pg_terminate_backend(p)) FROM unnest('{${1// /,}}'::int[]) p" >/dev/null
}
START_MS=$(NowMs)
Batch "$AUTHD_PORT" 25 TerminateBackends
ELAPSED_MS=$(($(NowMs) - START_MS))
CountVerdicts 25 fail_closed
Check "connection lost mid-pipeline: no request got another's verdict [$OWN own, $UNAVAILABLE unavailable]" \
  test "$MIXUP" = 0
Check "connection lost mid-pipeline: the call in flight failed closed (503)" test "$UNAVAILABLE" -ge 1
# shellcheck disable=SC2016  # expanded by eval inside Check
Check "connection lost mid-pipeline: every request answered, none hung [${ELAPSED_MS} ms]" \
  eval 'test "$(cut -d" " -f1 "$E2E_TMP"/r.* | grep -vc "^000$")" = 25 && test "$ELAPSED_MS" -lt 8000'
AwaitStatus 200 "$AUTHD_PORT" /auth -H "X-Athena-Key: ${KEYS[0]}" -H "X-Athena-Client: web"
Check "after the lost connection: decisions resume" StatusIs 200

# 4. a hung backend: the call waiting at the server fails at its deadline
# (800 ms), and every call queued behind it is answered by its own
# deadline (503, or decided on a fresh connection), none later
AwaitStatus 200 "$SHORT_PORT" /auth -H "X-Athena-Key: ${KEYS[0]}" -H "X-Athena-Client: web" ||
  Abort "the short-timeout instance reconnects"
HungFor() { sleep 2; }
Batch "$SHORT_PORT" 5 HungFor
CountVerdicts 5 fail_closed
SLOWEST=$(cut -d' ' -f2 "$E2E_TMP"/r.* | sort -n | tail -1)
# The curls start in the background, so the call that reached the stopped
# backend first is any of the five, not necessarily request 0.
Check "hung backend: the call at the server failed closed at its deadline [$UNAVAILABLE unavailable]" \
  test "$UNAVAILABLE" -ge 1
Check "hung backend: every request answered within its 800 ms (+slack) [slowest ${SLOWEST} s]" \
  awk -v s="${SLOWEST:-99}" 'BEGIN { exit !(s < 1.6) }'
Check "hung backend: own verdict or 503, never another's [$OWN own, $UNAVAILABLE unavailable]" test "$MIXUP" = 0
AwaitStatus 200 "$SHORT_PORT" /auth -H "X-Athena-Key: ${KEYS[0]}" -H "X-Athena-Client: web"
Check "after the hang: the short-timeout instance decides again" StatusIs 200

# 5. the server restarts under concurrent load: every request answers
# (its own verdict or 503), and decisions resume without a restart of ours
rm -f "$E2E_TMP"/r.* "$E2E_TMP"/h.*
N=0
START_MS=$(NowMs)
(sleep 0.4; StopPostgresServer; sleep 0.3; StartPostgresServer) &
RESTART_PID=$!
while [ $(($(NowMs) - START_MS)) -lt 2500 ]; do
  for _ in 1 2 3 4 5; do
    [ "$(Kind "$N")" = valid ] || [ "$(Kind "$N")" = wrong ] || { N=$((N + 1)); continue; }
    SendOne "$AUTHD_PORT" "$N"
    N=$((N + 1))
  done
  sleep 0.05
done
WaitForRequests
wait "$RESTART_PID"
OWN=0 UNAVAILABLE=0 MIXUP=0 ANSWERED=0 SENT=0
for i in $(seq 0 $((N - 1))); do
  [ -f "$E2E_TMP/r.$i" ] || continue
  SENT=$((SENT + 1))
  [ -n "$(Status "$i")" ] && [ "$(Status "$i")" != 000 ] && ANSWERED=$((ANSWERED + 1))
  Judge "$i" fail_closed
  case $VERDICT in own) OWN=$((OWN + 1)) ;; unavailable) UNAVAILABLE=$((UNAVAILABLE + 1)) ;; *) MIXUP=$((MIXUP + 1)) ;; esac
done
Check "server restart under load: every request answered [$ANSWERED of $SENT]" test "$ANSWERED" = "$SENT"
# shellcheck disable=SC2016  # expanded by eval inside Check
Check "server restart under load: own verdict or 503, never another's [$OWN own, $UNAVAILABLE unavailable]" \
  eval 'test "$MIXUP" = 0 && test "$OWN" -ge 1 && test "$UNAVAILABLE" -ge 1'
AwaitStatus 200 "$AUTHD_PORT" /auth -H "X-Athena-Key: ${KEYS[1]}" -H "X-Athena-Client: web"
# shellcheck disable=SC2016  # expanded by eval inside Check
Check "after the restart: decisions resume" eval 'StatusIs 200 && HasHeader X-Athena-Key-Id "${IDS[1]}"'
Request "$MAIN_HEALTH" /healthz
Check "after the restart: /healthz is 200" StatusIs 200

# graceful shutdown: SIGTERM while calls wait behind a hung backend; every
# waiting request is still answered (503 once its 800 ms pass, or its
# verdict when a fresh connection answers in time), then athena-authd exits
AwaitStatus 200 "$SHORT_PORT" /auth -H "X-Athena-Key: ${KEYS[1]}" -H "X-Athena-Client: web"
Check "graceful shutdown: the instance has its connection open" StatusIs 200
rm -f "$E2E_TMP"/r.* "$E2E_TMP"/h.*
HUNG=$(AuthdBackends)
# shellcheck disable=SC2086
[ -n "$HUNG" ] && as_user kill -STOP $HUNG
for i in 0 1 2 3 4 5; do SendOne "$SHORT_PORT" "$i"; done
sleep 0.3
kill -TERM "$SHORT_PID"
WaitForRequests
# shellcheck disable=SC2086
[ -n "$HUNG" ] && as_user kill -CONT $HUNG
ANSWERED=0
for i in 0 1 2 3 4 5; do
  case $(Status "$i") in 200|401|403|503) ANSWERED=$((ANSWERED + 1)) ;; esac
done
Check "graceful shutdown: every waiting request answered [$ANSWERED of 6]" test "$ANSWERED" = 6
for _ in $(seq 1 50); do kill -0 "$SHORT_PID" 2>/dev/null || break; sleep 0.1; done
# shellcheck disable=SC2016  # expanded by eval inside Check
Check "graceful shutdown: athena-authd exited after answering" eval '! kill -0 "$SHORT_PID" 2>/dev/null'

# graceful shutdown under fail_open: the drain answers what the database
# was asked before the stop, but a request the database was never asked
# (on a keep-alive connection open before the stop, or a new connection
# during the drain) is never let through: 503 and Connection: close, or
# the connection is refused -- never a degraded 200
DRAIN_PORT=$(pick_port)
StartAuthd drain "$DRAIN_PORT" ATHENA_AUTHD_DSN="$(GatewayDsn)" ATHENA_AUTHD_POOL=1 \
  ATHENA_AUTHD_TIMEOUT_MS=3000 ATHENA_AUTHD_FAIL_MODE=fail_open ATHENA_AUTHD_LOG=all ||
  Abort "athena-authd (fail_open, drain) starts"
DRAIN_PID=$LAST_AUTHD_PID
exec 9<>"/dev/tcp/127.0.0.1/$DRAIN_PORT"
HUNG=$(AuthdBackends)
# shellcheck disable=SC2086
[ -n "$HUNG" ] && as_user kill -STOP $HUNG
curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 -H "X-Athena-Key: ${KEYS[1]}" \
  "http://127.0.0.1:$DRAIN_PORT/auth" >"$E2E_TMP/drain.waiting" &
DRAIN_CURL=$!
sleep 0.3
kill -TERM "$DRAIN_PID"
sleep 0.3
DRAIN_NEW=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$DRAIN_PORT/auth")
printf 'GET /auth HTTP/1.1\r\nHost: x\r\n\r\n' >&9
DRAIN_ANSWER=$(timeout 2 cat <&9 | tr -d '\r')
exec 9<&-
# shellcheck disable=SC2086
[ -n "$HUNG" ] && as_user kill -CONT $HUNG
wait "$DRAIN_CURL" 2>/dev/null
# shellcheck disable=SC2016  # expanded by eval inside Check
Check "fail_open drain: a request on a keep-alive connection after SIGTERM is 503, not a degraded 200 [$(head -n 1 <<<"$DRAIN_ANSWER")]" \
  eval 'head -n 1 <<<"$DRAIN_ANSWER" | grep -q "^HTTP/1.1 503" && ! grep -qi "^X-Athena-Degraded" <<<"$DRAIN_ANSWER"'
Check "fail_open drain: ... and it closes the connection (Connection: close)" \
  grep -qi "^Connection: close" <<<"$DRAIN_ANSWER"
# shellcheck disable=SC2016  # expanded by eval inside Check
Check "fail_open drain: a new connection during the drain is refused or 503, never 200 [$DRAIN_NEW]" \
  eval 'test "$DRAIN_NEW" = 000 || test "$DRAIN_NEW" = 503'
Check "fail_open drain: the call asked before the stop is still answered [$(cat "$E2E_TMP/drain.waiting")]" \
  grep -q '^[0-9][0-9][0-9]$' "$E2E_TMP/drain.waiting"

# 6. each call of a batch keeps its own budget: one that waited long in
# the queue fails at its own deadline, alone, and the fresh calls of its
# batch run on to their own.  pool = 1, timeout 2 s; a session holds the
# auth log locked for ~3 s (the durable log makes every decision wait on
# it); X (t=0) waits at the server, A (t=0.5) and B0..B4 (t=1.5) queue.
# X fails at 2.0 and its connection is closed; A and the Bs leave on a new
# connection as one batch; A fails at 2.5, alone; the lock goes at ~3.0
# and every B is decided within its own budget (3.5).  Before this was
# fixed the batch ran under its earliest deadline (A's): the Bs got 503
# "database call timed out" although the database answered in time.
BUDGET_PORT=$(pick_port)
StartAuthd budget "$BUDGET_PORT" ATHENA_AUTHD_DSN="$(GatewayDsn)" ATHENA_AUTHD_POOL=1 \
  ATHENA_AUTHD_TIMEOUT_MS=2000 ATHENA_AUTHD_LOG=all || Abort "athena-authd (2 s budget) starts"
AwaitStatus 200 "$BUDGET_PORT" /auth -H "X-Athena-Key: ${KEYS[0]}" -H "X-Athena-Client: web" ||
  Abort "the 2 s instance decides"
# SendValid PORT NAME KEY_INDEX: a valid request in the background; status
# and seconds in r.NAME, headers in h.NAME
SendValid() {
  curl -s -o /dev/null -D "$E2E_TMP/h.$2" -w '%{http_code} %{time_total}\n' --max-time 20 \
    -H "X-Athena-Key: ${KEYS[$3]}" -H "X-Athena-Client: web" -H "X-Athena-Rights: users.read" \
    "http://127.0.0.1:$1/auth" >"$E2E_TMP/r.$2" 2>/dev/null &
  CURL_PIDS+=("$!")
}
rm -f "$E2E_TMP"/r.* "$E2E_TMP"/h.*
Sql -c "BEGIN; LOCK TABLE athena_keys.api_key_auth_log IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3.3); COMMIT" \
  >/dev/null 2>&1 &
LOCK_PID=$!
for _ in $(seq 1 50); do
  [ "$(Sql -c "SELECT count(*) FROM pg_locks WHERE relation = 'athena_keys.api_key_auth_log'::regclass
                 AND mode = 'AccessExclusiveLock' AND granted")" = 1 ] && break
  sleep 0.05
done
SendValid "$BUDGET_PORT" X 5
sleep 0.5
SendValid "$BUDGET_PORT" A 5
sleep 1
for b in 0 1 2 3 4; do SendValid "$BUDGET_PORT" "B$b" "$b"; done
WaitForRequests
wait "$LOCK_PID"
B_OWN=0 B_SEEN=""
for b in 0 1 2 3 4; do
  B_SEEN="$B_SEEN $(Status "B$b")"
  [ "$(Status "B$b")" = 200 ] && [ "$(ResponseHeader X-Athena-Key-Id "B$b")" = "${IDS[$b]}" ] &&
    B_OWN=$((B_OWN + 1))
done
Check "own budgets: the five fresh calls of the batch are decided (200, own key id) [$B_OWN of 5:$B_SEEN]" \
  test "$B_OWN" = 5
Check "own budgets: the call that waited longest in the queue fails at its own deadline (503) [$(Status A)]" \
  test "$(Status A)" = 503
Check "own budgets: the call at the locked server fails at its deadline (503) [$(Status X)]" \
  test "$(Status X)" = 503

# 7. a database that is not UTF8 (LATIN1): the batch's text[] parameters
# are converted before athena_gateway_verdicts starts, so one request's
# character LATIN1 lacks (a euro sign, or the U+FFFD that repairs a raw
# \xff) would fail the whole statement and every request of it.  Such a
# connection sends each call as a statement of its own: the odd requests
# get 403 (a content error, their own), the 20 valid ones their verdicts.
Sql -c "CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0" >/dev/null ||
  Abort "a LATIN1 database is created"
SqlLatin() {
  "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d latin "$@"
}
SqlLatin >/dev/null <<'SQL' || Abort "athena_keys in the LATIN1 database"
CREATE EXTENSION athena_keys;
SELECT athena_keys.athena_grant_gateway_role('athena_gateway');
SELECT athena_keys.athena_create_right('users.read');
SQL
LATIN_KEYS=() LATIN_IDS=()
for i in 0 1 2 3; do
  read -r key id < <(SqlLatin -c "SELECT api_key || ' ' || id FROM athena_keys.athena_create_key(
    name => 'l$i', client_name => 'web', rights => ARRAY['users.read'])")
  LATIN_KEYS+=("$key")
  LATIN_IDS+=("$id")
done
[ -n "${LATIN_IDS[3]:-}" ] || Abort "keys in the LATIN1 database"
LATIN_PORT=$(pick_port)
StartAuthd latin "$LATIN_PORT" ATHENA_AUTHD_DSN="host=127.0.0.1 port=$PG_PORT user=athena_gateway dbname=latin" \
  ATHENA_AUTHD_POOL=1 ATHENA_AUTHD_TIMEOUT_MS=8000 ATHENA_AUTHD_LOG=all || Abort "athena-authd (LATIN1) starts"
AwaitStatus 200 "$LATIN_PORT" /auth -H "X-Athena-Key: ${LATIN_KEYS[0]}" -H "X-Athena-Client: web" ||
  Abort "the LATIN1 instance decides"
Check "LATIN1: athena-authd says why it sends no combined batches there" \
  grep -q "encoding is LATIN1" "$E2E_TMP/latin.log"
# SendLatin NAME KEY_INDEX [CURL ARGS...]: one request in the background
SendLatin() {
  local name=$1 key=${LATIN_KEYS[$2]}
  shift 2
  curl -s -o /dev/null -D "$E2E_TMP/h.$name" -w '%{http_code} %{time_total}\n' --max-time 20 \
    -H "X-Athena-Key: $key" -H "X-Athena-Rights: users.read" "$@" \
    "http://127.0.0.1:$LATIN_PORT/auth" >"$E2E_TMP/r.$name" 2>/dev/null &
  CURL_PIDS+=("$!")
}
rm -f "$E2E_TMP"/r.* "$E2E_TMP"/h.*
LATIN_PIDS=$(Sql -c "SELECT string_agg(pid::text, ' ') FROM pg_stat_activity
                     WHERE datname = 'latin' AND application_name = 'athena-authd'")
# shellcheck disable=SC2086
[ -n "$LATIN_PIDS" ] && as_user kill -STOP $LATIN_PIDS
for i in $(seq 0 9); do SendLatin "v$i" $((i % 4)) -H "X-Athena-Client: web"; done
sleep 0.2
SendLatin euro 0 -H "X-Athena-Client: web €"
SendLatin raw 1 -H $'X-Athena-Client: web\xff'
sleep 0.2
for i in $(seq 10 19); do SendLatin "v$i" $((i % 4)) -H "X-Athena-Client: web"; done
sleep 0.5
# shellcheck disable=SC2086
[ -n "$LATIN_PIDS" ] && as_user kill -CONT $LATIN_PIDS
WaitForRequests
LATIN_OWN=0
for i in $(seq 0 19); do
  if [ "$(Status "v$i")" = 200 ] && [ "$(ResponseHeader X-Athena-Key-Id "v$i")" = "${LATIN_IDS[$((i % 4))]}" ]; then
    LATIN_OWN=$((LATIN_OWN + 1))
  else
    echo "#   LATIN1 request v$i: $(Status "v$i")"
  fi
done
Check "LATIN1: every valid request batched with a non-LATIN1 one gets its own verdict (200) [$LATIN_OWN of 20]" \
  test "$LATIN_OWN" = 20
Check "LATIN1: the request with a euro sign is answered alone, a content error (403) [$(Status euro)]" \
  test "$(Status euro)" = 403
Check "LATIN1: the request with a raw \\xff (repaired to U+FFFD) too (403) [$(Status raw)]" \
  test "$(Status raw)" = 403
LATIN_LARGEST=$(Metric "$HEALTH_PORT_latin" athena_authd_db_largest_batch)
Check "LATIN1: the requests still shared round trips (pipelined) [largest batch $LATIN_LARGEST]" \
  test "${LATIN_LARGEST:-0}" -ge 10

# 8. a batch goes as one athena_gateway_verdicts call, which takes at most
# 64 requests: a larger pipeline_batch is refused at start, by name
BATCH_OUT=$(env ATHENA_AUTHD_DSN="$(GatewayDsn)" ATHENA_AUTHD_LISTEN="127.0.0.1:$(pick_port)" \
  ATHENA_AUTHD_PIPELINE_BATCH=65 timeout 10 "$AUTHD_BIN" 2>&1)
BATCH_RC=$?
Check "pipeline_batch 65: athena-authd refuses to start [exit $BATCH_RC]" \
  test "$BATCH_RC" -ne 0 -a "$BATCH_RC" -ne 124
Check "pipeline_batch 65: the message names the setting" grep -q pipeline_batch <<<"$BATCH_OUT"

Finish
