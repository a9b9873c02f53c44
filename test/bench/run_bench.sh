#!/usr/bin/env bash
# Benchmark of athena_authenticate against the physical floor (issue 4).
#
# Builds and installs athena_keys, starts a throwaway PostgreSQL (PG_CONFIG's, as an
# unprivileged user), and runs every scenario with pgbench against that one
# server: prepared protocol, 8 clients, 2 threads, BENCH_SECONDS each.
# Prints one table: tps, ratio against the scenario's baseline with the
# issue's target, p50 and p99 latency (from pgbench's per-transaction logs),
# then athena_keys' per-backend cache memory and the backend's RSS.
#
# This is a benchmark, not a test: it exits 0 after printing, whatever the
# numbers (MISS is reported, not failed).  Run as root or with sudo:
#   sudo bash test/bench/run_bench.sh
#   sudo BENCH_SECONDS=3 bash test/bench/run_bench.sh     # smoke run
# Knobs (environment): BENCH_SECONDS (15), BENCH_CLIENTS (8), BENCH_THREADS (2),
# BENCH_KEYS (1000000), BENCH_LOG_ROWS (10000000), BENCH_IP_RULES (10000), BENCH_CLIENT_RULES (2000),
# BENCH_PORT (54340), BENCH_PRELOAD (1: athena_keys in shared_preload_libraries,
# the recommended deployment; 0: loaded on first use), KEEP=1 (leave the server
# and work directory behind), BENCH_INSTR (1: the instruction counts, see
# instructions.sh; 0: tps only), BENCH_INSTR_REPEATS (1), BENCH_QUICK=1 (a
# development run: short rounds, small tables, no standby, no HTTP),
# BENCH_HTTP (1: the HTTP table, see authd/test/load.sh; 0: skip it),
# BENCH_HTTP_SECONDS (4 per wrk run), BENCH_HTTP_ROUNDS (8).
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
. "$BENCH_DIR/../lib.sh"

if [ "${BENCH_QUICK:-0}" = 1 ]; then
  : "${BENCH_SECONDS:=2}" "${BENCH_ROUNDS:=1}" "${BENCH_KEYS:=20000}" "${BENCH_LOG_ROWS:=100000}"
  : "${BENCH_STANDBY:=0}" "${BENCH_HTTP:=0}" "${BENCH_INSTR_LONG:=1500}" "${BENCH_INSTR_SHORT:=500}"
fi
SECONDS_PER=${BENCH_SECONDS:-15}
CLIENTS=${BENCH_CLIENTS:-8}
THREADS=${BENCH_THREADS:-2}
N_KEYS=${BENCH_KEYS:-1000000}
N_LOG=${BENCH_LOG_ROWS:-10000000}
N_RULES=${BENCH_IP_RULES:-10000}
N_CLIENT_RULES=${BENCH_CLIENT_RULES:-2000}
PORT=${BENCH_PORT:-54340}
ROUNDS=${BENCH_ROUNDS:-5}
ROUND_SECONDS=$(( SECONDS_PER / ROUNDS )); [ "$ROUND_SECONDS" -ge 1 ] || ROUND_SECONDS=1

# Checkpoints and WAL recycling should not land in the middle of a short
# scenario; fsync and synchronous_commit are on as in a stock server.
# shared_buffers holds the 1M-key table with its indexes (321 MB) and the
# log's newest partitions, so that a key miss measures athena_keys' reads
# and not buffer replacement, whose cost depends on what loading the large
# tables left in the pool (the 1M-key miss was 83.6k and 99.7k instructions
# in two runs of the same code with the default 256 MB).
SERVER_CONF="shared_buffers = 1GB
max_wal_size = 16GB
min_wal_size = 1GB
checkpoint_timeout = 1h
checkpoint_completion_target = 0.9"
# Preloading is the recommended deployment (the async log writer needs it);
# it also pins the library for the whole run, so a reinstall of athena_keys
# by another job while the benchmark runs cannot change what is measured.
PRELOAD=${BENCH_PRELOAD:-1}
[ "$PRELOAD" = 1 ] && SERVER_CONF+=$'\n'"shared_preload_libraries = 'athena_keys'"

INSTR_MODE=${BENCH_INSTR:-1}
[ "$INSTR_MODE" = 1 ] && PACKAGES="$PACKAGES valgrind"
. "$BENCH_DIR/instructions.sh"
ensure_packages
command -v pgbench >/dev/null || { echo "pgbench not found" >&2; exit 1; }
build_and_install

cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then
    echo "KEEP=1: server left running (PGHOST=$PGHOST PGPORT=$PGPORT), work dir $WORK_DIR"
    return
  fi
  stop_servers
  rm -rf "$WORK_DIR"
}
trap cleanup EXIT
start_server bench "$PORT" "$SERVER_CONF"

OUT="$WORK_DIR/bench"          # scripts and pgbench logs
mkdir -p "$OUT"
chmod 777 "$OUT"

PSQL=(psql -X -q -v ON_ERROR_STOP=1)
q() { "${PSQL[@]}" -At -c "$1"; }

CALLER_IP=10.42.1.2          # inside the happy key's whitelist (10.42.0.0/16)
# setup_database DB: the extension, the users.* right and the global
# blacklist (a few entries, none containing the caller).
setup_database() {
  PGDATABASE=$1 "${PSQL[@]}" <<'SQL'
CREATE EXTENSION athena_keys;
SELECT athena_keys.athena_create_right('users.*', 'Every right on users') \g /dev/null
SELECT athena_keys.athena_add_ip_rule('blacklist', a::cidr, label => 'bench')
  FROM unnest(ARRAY['203.0.113.0/24', '198.51.100.0/24', '192.0.2.0/24', '100.64.0.0/10']) a \g /dev/null
SELECT athena_keys.athena_add_ip_rule('blacklist', '172.16.0.0/12', client_name => 'partner') \g /dev/null
SQL
}
# create_key DB NAME -> "plaintext id": a happy-path key, bound to client
# "web", granted users.* (required: users.read), with a whitelist of 100
# CIDRs 10.0.0.0/16 .. 10.99.0.0/16.
create_key() {
  PGDATABASE=$1 q "SELECT api_key || ' ' || id FROM athena_keys.athena_create_key('$2', client_name => 'web',
       rights => ARRAY['users.*'],
       ip_whitelist => (SELECT array_agg(format('10.%s.0.0/16', i)::cidr) FROM generate_series(0, 99) i))"
}

echo "== setup: extension, rights, keys, IP rules"
setup_database postgres
# The plain-INSERT floor: the auth log's columns, a BRIN on created_at (as the log has), nothing else.
q "CREATE TABLE bench_plain_log (LIKE athena_keys.api_key_auth_log INCLUDING DEFAULTS);
   CREATE INDEX ON bench_plain_log USING brin (created_at)"
read -r HAPPY_KEY HAPPY_ID <<<"$(create_key postgres bench-happy)"
read -r EXPIRED_KEY EXPIRED_ID <<<"$(create_key postgres bench-expired)"
q "SELECT athena_keys.athena_set_key_expiry('$EXPIRED_ID', now() - interval '1 day')" >/dev/null
# The happy key's twins with rate limits (needs the preloaded server):
# one limit, two limits (both far above what pgbench can ask, so every
# call consumes and passes), and one whose limit is already used up.
read -r RL1_KEY RL1_ID <<<"$(create_key postgres bench-one-limit)"
read -r RL2_KEY RL2_ID <<<"$(create_key postgres bench-two-limits)"
read -r RLX_KEY RLX_ID <<<"$(create_key postgres bench-over-limit)"
q "SELECT athena_keys.athena_set_key_rate_limit('$RL1_ID', 1000000, '1 second');
   SELECT athena_keys.athena_set_key_rate_limit('$RL2_ID', 1000000, '1 second');
   SELECT athena_keys.athena_set_key_rate_limit('$RL2_ID', 2000000000, '1 day');
   SELECT athena_keys.athena_set_key_rate_limit('$RLX_ID', 1, '1 day');
   SELECT allowed FROM athena_keys.athena_authenticate('$RLX_KEY', 'web', '$CALLER_IP', '{users.read}')" >/dev/null
HAPPY_PUBLIC=${HAPPY_KEY#ath_}; HAPPY_PUBLIC=${HAPPY_PUBLIC%%.*}
WRONG_SECRET_KEY="ath_${HAPPY_PUBLIC}.$(printf '%064d' 0)"
UNKNOWN_KEY="ath_ffffffffffffffff.${HAPPY_KEY#*.}"
# Bulk keys (loaded later) all share one 64-hex secret.
BULK_SECRET=$(printf '%064d' 0 | tr 0 a)

# Scenario scripts.  The calls are the statement athena-authd prepares
# (authd/src/db_pool.c), parameters and all: pgbench -M prepared binds the
# script's :variables as parameters, set per scenario with -D.  A missing
# key is a NULL parameter for authd; pgbench cannot bind NULL, so that one
# script has a literal NULL.  Each scenario's verdict is checked once
# through psql before measuring.
GATEWAY_COLUMNS="allowed, status, reason, key_id, public_id, client_name, fail_mode, retry_after_ms, rate_limit, rate_remaining, rate_reset_ms"
gateway_sql() {   # gateway_sql KEY-EXPRESSION: the compact call athena-authd prepares
  echo "SELECT athena_keys.athena_gateway_verdict($1::text, :client::text, :ip::inet, string_to_array(:rights::text, ','));"
}
row_sql() {       # row_sql KEY-EXPRESSION [COLUMNS]: the full row, from FROM
  echo "SELECT ${2:-$GATEWAY_COLUMNS} FROM athena_keys.athena_authenticate($1::text, :client::text, :ip::inet, string_to_array(:rights::text, ','));"
}
script() { printf '%s
' "$2" >"$OUT/$1.sql"; }
script select1 "SELECT 1;"
script plain_insert "INSERT INTO bench_plain_log (api_key_id, api_key_public_id, client_name, remote_addr, required_rights, granted_rights, missing_rights, authenticated, authorized, enforced, allowed, status) VALUES ('$HAPPY_ID', '$HAPPY_PUBLIC', 'web', '$CALLER_IP', '{users.read}', '{users.*}', '{}', true, true, true, true, 200);"
script gateway "$(gateway_sql :key)"
script gateway_no_key "$(gateway_sql NULL)"
script gateway_row "$(row_sql :key)"
script gateway_all_columns "$(row_sql :key '*')"
printf '%s\n' '\set g random(1, '"$N_KEYS"')' \
  "SELECT athena_keys.athena_gateway_verdict('ath_' || lpad(to_hex(:g::int), 16, '0') || '.$BULK_SECRET', 'web', '$CALLER_IP', '{}');" \
  >"$OUT/random_key.sql"

# request_vars KEY CLIENT IP RIGHTS: the -D options of one request
request_vars() { echo "-D key=$1 -D client=$2 -D ip=$3 -D rights=$4"; }
HAPPY_VARS=$(request_vars "$HAPPY_KEY" web "$CALLER_IP" users.read)

declare -A TPS P50 P99 FAILED VERDICT LABEL PGOPT SPREAD VARS DB_OF RATIO_ROUNDS
declare -A HOST_OF=() PORT_OF=() EXPECT BASE TARGET SHORT
ORDER=()
# 1000000 -> 1M, 10000 -> 10k
human() { awk -v n="$1" 'BEGIN { if (n >= 1e6 && n % 1e6 == 0) print n / 1e6 "M"; else if (n >= 1e3 && n % 1e3 == 0) print n / 1e3 "k"; else print n }'; }
HK=$(human "$N_KEYS"); HL=$(human "$N_LOG"); HR=$(human "$N_RULES")

# check NAME: one call of scenario NAME through psql (its script, variables,
# settings and database), against the verdict it declared (expect=).
check() {
  local name=$1 status reason got sql var
  status=${EXPECT[$name]%%|*}
  reason=""
  [[ ${EXPECT[$name]} == *"|"* ]] && reason=${EXPECT[$name]#*|}
  # The full row's status and reason, or the compact verdict's (fields 2 and 6)
  sql=$(sed -e 's/^SELECT .* FROM athena_keys.athena_authenticate/SELECT status, coalesce(reason, '"''"') FROM athena_keys.athena_authenticate/' \
            -e 's/^SELECT \(athena_keys.athena_gateway_verdict(.*)\);$/SELECT split_part(v, '"'|'"', 2), split_part(v, '"'|'"', 6) FROM (SELECT \1 AS v) s;/' \
            "$OUT/${FILE[$name]}.sql")
  local -a psql_vars=()
  for var in ${VARS[$name]:-}; do
    [ "$var" = -D ] && continue
    psql_vars+=(-v "$var"); sql=${sql//:${var%%=*}::/:\'${var%%=*}\'::}
  done
  got=$(PGOPTIONS="${PGOPT[$name]}" PGDATABASE="${DB_OF[$name]:-postgres}" \
        PGHOST="${HOST_OF[$name]:-$PGHOST}" PGPORT="${PORT_OF[$name]:-$PGPORT}" \
        "${PSQL[@]}" -At -F '|' "${psql_vars[@]}" <<<"$(grep -v '^\\set' <<<"$sql")")
  if [ "$got" = "$status|$reason" ]; then
    VERDICT[$name]="$status ${reason:-ok}"
  else
    VERDICT[$name]="UNEXPECTED: got '$got', want '$status|$reason'"
    echo "   WARNING: scenario $name returned '$got', expected '$status|$reason'" >&2
  fi
}

# Scenarios are measured in interleaved rounds: each phase runs every one of
# its scenarios once per round, BENCH_SECONDS / BENCH_ROUNDS seconds each,
# so slow drift of the machine (fsync latency on a VM disk varies a lot,
# other jobs on the host) hits every scenario alike.  tps is the median of
# the rounds, a ratio that of two medians; p50/p99 come from all rounds'
# per-transaction logs pooled.
#
# The scenario table: one row per scenario, everything about it in that row,
#   scenario NAME LABEL SCRIPT [KEY=VALUE...]
# declares it for the next phase (measure) and for the table at the end:
#   pgopt=PGOPTIONS  vars=pgbench -D options (request_vars)  db=DATABASE
#   host=/port=      another server (the standby)
#   expect=STATUS[|REASON]   verdict checked once before measuring
#   base=SCENARIO target=RATIO   the ratio shown against a baseline, and
#                    the target it must reach (PASS/MISS)
#   short=TEXT       how the table names this scenario as another's baseline
#   show=1           list its verdict under "verdicts checked"
#   only=check       check the verdict, measure nothing
PHASE=()
CHECK_ONLY=()
SHOWN_VERDICTS=()
declare -A FILE TPS_ROUNDS
scenario() {
  local name=$1 kv key value
  LABEL[$name]=$2; FILE[$name]=$3; PGOPT[$name]=""; VARS[$name]=""; DB_OF[$name]=postgres
  TPS_ROUNDS[$name]=""
  local only=""
  for kv in "${@:4}"; do
    key=${kv%%=*}; value=${kv#*=}
    case $key in
      pgopt) PGOPT[$name]=$value ;;
      vars) VARS[$name]=$value ;;
      db) DB_OF[$name]=$value ;;
      host) HOST_OF[$name]=$value ;;
      port) PORT_OF[$name]=$value ;;
      expect) EXPECT[$name]=$value ;;
      base) BASE[$name]=$value ;;
      target) TARGET[$name]=$value ;;
      short) SHORT[$name]=$value ;;
      show) SHOWN_VERDICTS+=("$name") ;;
      only) only=$value ;;
      *) echo "scenario $name: unknown column $key" >&2; exit 2 ;;
    esac
  done
  if [ "$only" = check ]; then CHECK_ONLY+=("$name"); else ORDER+=("$name"); PHASE+=("$name"); fi
}

# check_phase: the declared verdicts of the next phase's scenarios (and of
# the check-only ones declared with them).
check_phase() {
  local name
  for name in "${PHASE[@]}" "${CHECK_ONLY[@]}"; do
    if [ -n "${EXPECT[$name]:-}" ]; then check "$name"; fi
  done
  CHECK_ONLY=()
}

# server_cpu_ticks: CPU time (clock ticks) the servers started here have
# used so far: each postmaster's own and its reaped children's (backends
# that exited), plus its live children's.
server_cpu_ticks() {
  local d pm p total=0
  for d in ${SERVERS_STARTED:-}; do
    [ -r "$d/postmaster.pid" ] || continue
    pm=$(head -1 "$d/postmaster.pid")
    [ -r "/proc/$pm/stat" ] || continue
    total=$(( total + $(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pm/stat") ))
    for p in $(pgrep -P "$pm"); do
      total=$(( total + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0) ))
    done
  done
  echo "$total"
}

# run_once NAME ROUND: one pgbench run; its tps goes to TPS_ROUNDS, its
# transactions and the CPU the servers and pgbench spent on them to
# TXNS / SERVER_TICKS / CLIENT_SECONDS.
declare -A TXNS SERVER_TICKS CLIENT_SECONDS
run_once() {
  local name=$1 round=$2 out tps failed ticks_before ticks_after txns cpu
  q "CHECKPOINT" >/dev/null
  sleep 0.2                     # the CHECKPOINT's backend is reaped
  ticks_before=$(server_cpu_ticks)
  # shellcheck disable=SC2086  # VARS is a list of -D options
  out=$( { TIMEFORMAT='pgbench cpu %U %S'; time PGHOST="${HOST_OF[$name]:-$PGHOST}" PGPORT="${PORT_OF[$name]:-$PGPORT}" \
        PGDATABASE="${DB_OF[$name]}" PGOPTIONS="${PGOPT[$name]}" \
        pgbench -n -M prepared -c "$CLIENTS" -j "$THREADS" -T "$ROUND_SECONDS" ${VARS[$name]} \
          -f "$OUT/${FILE[$name]}.sql" -l --log-prefix="$OUT/log_${name}_r$round" 2>&1; } 2>&1) || {
    echo; echo "pgbench failed for $name:"; echo "$out"; return 0; }
  sleep 0.3                     # pgbench's backends exit and are reaped
  ticks_after=$(server_cpu_ticks)
  tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)/\1/p' <<<"$out")
  failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
  txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
  cpu=$(sed -n 's/^pgbench cpu \([0-9.]*\) \([0-9.]*\)$/\1 \2/p' <<<"$out" | awk '{ print $1 + $2 }')
  TPS_ROUNDS[$name]+="${tps:-0} "
  FAILED[$name]=$(( ${FAILED[$name]:-0} + ${failed:-0} ))
  TXNS[$name]=$(( ${TXNS[$name]:-0} + ${txns:-0} ))
  SERVER_TICKS[$name]=$(( ${SERVER_TICKS[$name]:-0} + ticks_after - ticks_before ))
  CLIENT_SECONDS[$name]=$(awk -v a="${CLIENT_SECONDS[$name]:-0}" -v b="${cpu:-0}" 'BEGIN { print a + b }')
}

# cpu_us NAME: server CPU microseconds per call, and pgbench's
cpu_us() {
  awk -v t="${SERVER_TICKS[$1]:-0}" -v hz="$(getconf CLK_TCK)" -v c="${CLIENT_SECONDS[$1]:-0}" -v n="${TXNS[$1]:-0}" \
    'BEGIN { if (n > 0) printf "%.1f %.1f\n", t / hz * 1e6 / n, c * 1e6 / n; else print "- -" }'
}

# measure: run the declared phase, then summarise each of its scenarios.
measure() {
  local round name lat
  for round in $(seq "$ROUNDS"); do
    printf '   round %s/%s:' "$round" "$ROUNDS"
    for name in "${PHASE[@]}"; do run_once "$name" "$round"; printf ' .'; done
    echo
  done
  for name in "${PHASE[@]}"; do
    read -r TPS[$name] SPREAD[$name] < <(tr ' ' '\n' <<<"${TPS_ROUNDS[$name]}" | grep . | sort -g | awk '
        { v[NR] = $1 } END { if (NR == 0) { print 0, "-"; exit }
          m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
          printf "%.1f %.0f-%.0f\n", m, v[1], v[NR] }')
    # Latency of a transaction = time between its completion and the previous
    # completion of the same client (columns 5-6 of pgbench's per-transaction
    # log, seconds and microseconds).  pgbench's own latency column (3) reads
    # 0 for many sub-millisecond transactions when pgbench shares the CPUs with
    # the server (its clock is read lazily); completion intervals add up to
    # the wall clock, so their mean is exactly clients / tps.
    lat=$(awk '{ k = FILENAME " " $1; t = $5 * 1000000 + $6; if (k in p) print t - p[k]; p[k] = t }' \
            "$OUT"/log_"$name"_r[0-9]* 2>/dev/null | sort -n | awk '
          { v[NR] = $1 } END {
            if (NR == 0) { print "0 0"; exit }
            i50 = int(NR * 0.50 + 0.5); if (i50 < 1) i50 = 1
            i99 = int(NR * 0.99 + 0.5); if (i99 < 1) i99 = 1; if (i99 > NR) i99 = NR
            printf "%.3f %.3f\n", v[i50] / 1000, v[i99] / 1000 }')
    read -r P50[$name] P99[$name] <<<"$lat"
    rm -f "$OUT"/log_"$name"_r[0-9]*
    printf '   %-44s %8.0f tps (rounds %s)  p50 %s ms  p99 %s ms\n' \
      "${LABEL[$name]}" "${TPS[$name]}" "${SPREAD[$name]}" "${P50[$name]}" "${P99[$name]}"
  done
  PHASE=()
}

ASYNC="-c athena_keys.log_durability=async"
NONE="-c athena_keys.log_decisions=none"

# Phase 1: the floors, the happy path in every logging mode, the failure
# paths (durable like the happy path they are judged against, and without
# logging, where only the decision's own work differs), a hot standby.
scenario select1 "SELECT 1" select1 short="SELECT 1"
scenario plain_insert "plain durable INSERT (log-shaped)" plain_insert short="plain INSERT"
scenario plain_insert_async "plain INSERT, sync_commit=off (info)" plain_insert pgopt="-c synchronous_commit=off" \
  base=select1 short="async INSERT"
scenario happy "happy path, durable log" gateway vars="$HAPPY_VARS" expect=200 \
  base=plain_insert target=0.8 short="happy (durable)" show=1
scenario happy_async "happy path, async log" gateway pgopt="$ASYNC" vars="$HAPPY_VARS" expect=200 \
  base=select1 target=0.6 show=1
scenario happy_none "happy path, log_decisions=none" gateway pgopt="$NONE" vars="$HAPPY_VARS" expect=200 \
  base=select1 target=0.8 short="happy (none)" show=1
scenario happy_none_from "  same, the row from FROM athena_authenticate (info)" gateway_row pgopt="$NONE" \
  vars="$HAPPY_VARS" expect=200 base=select1
scenario happy_none_all "  same, all 17 columns (info)" gateway_all_columns pgopt="$NONE" vars="$HAPPY_VARS" \
  expect=200 base=select1
scenario happy_none_miss "  same, backend's key cache off: shared cache hit" gateway \
  pgopt="$NONE -c athena_keys.key_cache_size=0" vars="$HAPPY_VARS" expect=200 base=happy_none
scenario happy_none_cold "  same, shared cache off too: read (info)" gateway \
  pgopt="$NONE -c athena_keys.key_cache_size=0 -c athena_keys.shared_key_cache=off" vars="$HAPPY_VARS" \
  expect=200 base=happy_none
scenario happy_none_stamp "  same, a last_used_at stamp due every call" gateway \
  pgopt="$NONE -c athena_keys.last_used_interval=0" vars="$HAPPY_VARS" expect=200 base=happy_none
scenario no_key_none "  no key at all, none (call floor, info)" gateway_no_key pgopt="$NONE" vars="$HAPPY_VARS" \
  expect="401|API key required" base=select1
# failure NAME LABEL VARS EXPECT [SCRIPT]: a durable variant (against the
# durable happy path) and a none variant (against happy_none), >= 1.0 each.
failure() {
  scenario "$1" "fail: $2" "${5:-gateway}" vars="$3" expect="$4" base=happy target=1.0 show=1
  scenario "${1}_none" "fail, none: $2" "${5:-gateway}" pgopt="$NONE" vars="$3" expect="$4" \
    base=happy_none target=1.0
}
failure f_missing "missing key" "$HAPPY_VARS" "401|API key required" gateway_no_key
failure f_malformed "malformed key" "$(request_vars 'Bearer-not-an-athena-key' web "$CALLER_IP" users.read)" \
  "401|Invalid API key"
failure f_unknown "unknown public id" "$(request_vars "$UNKNOWN_KEY" web "$CALLER_IP" users.read)" \
  "401|Invalid API key"
failure f_wrong_secret "wrong secret" "$(request_vars "$WRONG_SECRET_KEY" web "$CALLER_IP" users.read)" \
  "401|Invalid API key"
failure f_expired "expired key" "$(request_vars "$EXPIRED_KEY" web "$CALLER_IP" users.read)" "401|Expired API key"
failure f_client "client mismatch" "$(request_vars "$HAPPY_KEY" mobile "$CALLER_IP" users.read)" \
  "403|API key client mismatch"
failure f_rights "missing rights" "$(request_vars "$HAPPY_KEY" web "$CALLER_IP" orders.write)" \
  "403|Insufficient API key rights"
failure f_ip_blocked "IP blocked" "$(request_vars "$HAPPY_KEY" web 203.0.113.9 users.read)" "403|IP blocked"
# Rate limits: the happy path with one and with two limits, judged against
# the happy path without any (issue 16 allows the one limit 5%), and a key
# over its limit, a refusal like the others.  (No name may start with
# another's name and "_r": measure removes pgbench logs by that prefix.)
scenario limit1_none "happy path, one rate limit, none" gateway pgopt="$NONE" \
  vars="$(request_vars "$RL1_KEY" web "$CALLER_IP" users.read)" expect=200 base=happy_none target=0.95 \
  short="happy, 1 limit" show=1
scenario limit2_none "happy path, two rate limits, none" gateway pgopt="$NONE" \
  vars="$(request_vars "$RL2_KEY" web "$CALLER_IP" users.read)" expect=200 base=happy_none target=0.9
# A refused key over its limit has a limit to check, so under none it is
# judged against the happy path with one limit (its durable row against
# the durable happy path, which has none: the limit's check is in it).
RLX_VARS="$(request_vars "$RLX_KEY" web "$CALLER_IP" users.read)"
scenario f_rate_limited "fail: over its rate limit" gateway vars="$RLX_VARS" \
  expect="429|Rate limit exceeded" base=happy target=1.0 show=1
scenario f_rate_limited_none "fail, none: over its rate limit" gateway pgopt="$NONE" vars="$RLX_VARS" \
  expect="429|Rate limit exceeded" base=limit1_none target=1.0

echo "== verdicts (one call per scenario, before measuring)"
check_phase
SHOWN=$(PGOPTIONS="$ASYNC" q "SELECT current_setting('athena_keys.log_durability')")
[ "$SHOWN" = async ] || echo "   WARNING: PGOPTIONS did not set log_durability (got '$SHOWN')" >&2

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== phase 1: pgbench -M prepared -c $CLIENTS -j $THREADS, $ROUNDS interleaved rounds of $ROUND_SECONDS s per scenario"
measure

# A hot standby of this server, in a phase of its own (while it runs it
# replays every write of the primary, which would tax the other scenarios):
# the happy path there is read-only, and its log writer ships the decisions
# to this server's log.  It is stopped before the large tables are loaded,
# so it never replays them.  BENCH_STANDBY=0 skips it.
SB_DIR="$WORK_DIR/standby"
if [ "${BENCH_STANDBY:-1}" = 1 ] && [ "$PRELOAD" = 1 ]; then
  as_user mkdir -p "$SB_DIR/socket"
  if as_user pg_basebackup -D "$SB_DIR/data" -R -X stream -h "$PGHOST" -p "$PGPORT" -U postgres \
       --checkpoint=fast >/dev/null 2>&1; then
    as_user bash -c "cat >> '$SB_DIR/data/postgresql.conf'" <<CONF
port = $((PORT + 1))
unix_socket_directories = '$SB_DIR/socket'
athena_keys.primary_conninfo = 'host=$PGHOST port=$PGPORT dbname=postgres user=postgres'
CONF
    if resume_server "$SB_DIR/data"; then
      SERVERS_STARTED+=" $SB_DIR/data"
      scenario select1_sb "SELECT 1 (again, with the standby up)" select1 short="SELECT 1"
      scenario standby "happy path on a hot standby (info)" gateway vars="$HAPPY_VARS" \
        host="$SB_DIR/socket" port=$((PORT + 1)) expect=200 base=select1_sb show=1
      check_phase
      echo "== standby phase: $ROUNDS interleaved rounds of $ROUND_SECONDS s per scenario"
      measure
      stop_server "$SB_DIR/data" 2>/dev/null || true
    fi
  fi
fi

# Phase 2: the same happy path in two more databases of this server, one
# with 1M keys and 10M log rows, one with 10k IP rules, against the small
# database measured again in the same rounds.
echo "== loading $N_KEYS keys and $N_LOG log rows into database bench_large"
t0=$(date +%s)
q "CREATE DATABASE bench_large" >/dev/null
setup_database bench_large
read -r LARGE_KEY _ <<<"$(create_key bench_large bench-happy)"
PGDATABASE=bench_large "${PSQL[@]}" <<SQL
-- Bulk keys: public id = 16-hex counter, shared secret, no client, no rights.
INSERT INTO athena_keys.api_key (public_id, name, key_salt, key_hash)
SELECT lpad(to_hex(g), 16, '0'), 'bulk-' || g, 'bulksalt',
       athena_keys._key_digest('bulksalt', '$BULK_SECRET')
  FROM generate_series(1, $N_KEYS) g;
-- Daily partitions for the last three days, then the log rows, spread over them.
SELECT athena_keys._create_auth_log_partition(((now() AT TIME ZONE 'UTC') - d * interval '1 day')::date)
  FROM generate_series(1, 3) d \g /dev/null
INSERT INTO athena_keys.api_key_auth_log
       (created_at, api_key_public_id, client_name, remote_addr, required_rights, granted_rights,
        authenticated, authorized, enforced, allowed, status, failure_reason)
SELECT now() - (g::float8 / $N_LOG) * interval '3 days',
       lpad(to_hex(g % $N_KEYS + 1), 16, '0'), 'web', '10.42.1.2', '{users.read}', '{users.*}',
       g % 10 <> 0, g % 10 <> 0, true, g % 10 <> 0, CASE WHEN g % 10 = 0 THEN 401 ELSE 200 END,
       CASE WHEN g % 10 = 0 THEN 'Invalid API key' END
  FROM generate_series(1, $N_LOG) g;
VACUUM ANALYZE athena_keys.api_key;
VACUUM ANALYZE athena_keys.api_key_auth_log;
SQL
q "CHECKPOINT" >/dev/null
# Let the kernel write the load back before anything is measured.
sync
echo "   loaded in $(( $(date +%s) - t0 )) s: $(PGDATABASE=bench_large q "SELECT count(*) FROM athena_keys.api_key") keys, $(PGDATABASE=bench_large q "SELECT pg_size_pretty(pg_total_relation_size('athena_keys.api_key'))") key table, $(PGDATABASE=bench_large q "SELECT pg_size_pretty(sum(pg_total_relation_size(inhrelid))) FROM pg_inherits WHERE inhparent = 'athena_keys.api_key_auth_log'::regclass") auth log"

echo "== database bench_rules: $N_RULES global blacklist entries, $N_CLIENT_RULES client-scoped ones, and a $N_RULES-entry whitelist"
q "CREATE DATABASE bench_rules" >/dev/null
setup_database bench_rules
read -r RULES_KEY RULES_ID <<<"$(create_key bench_rules bench-happy)"
PGDATABASE=bench_rules "${PSQL[@]}" <<SQL
-- Global blacklist entries in 11.0.0.0/8 .. (none contains the caller).
INSERT INTO athena_keys.api_key_global_ip_rule (list, addr, label)
SELECT 'blacklist', format('%s.%s.%s.0/24', 11 + g / 65536, (g / 256) % 256, g % 256)::cidr, 'bench'
  FROM generate_series(0, $N_RULES - 1) g;
-- Client-scoped global blacklist entries, one per client (12.0.0.0/8 ..): the config
-- cache must stay O(rules) with many clients.
INSERT INTO athena_keys.api_key_global_ip_rule (list, addr, client_name, label)
SELECT 'blacklist', format('12.%s.%s.0/24', g / 256, g % 256)::cidr, 'tenant-' || g, 'bench'
  FROM generate_series(1, $N_CLIENT_RULES) g;
-- Per-key whitelist entries beyond the first 100 (10.0/16 .. 10.99/16): /24s elsewhere.
INSERT INTO athena_keys.api_key_ip_rule (api_key_id, list, addr, label)
SELECT '$RULES_ID', 'whitelist', format('%s.%s.%s.0/24', 120 + g / 65536, (g / 256) % 256, g % 256)::cidr, 'bench'
  FROM generate_series(0, $N_RULES - 100 - 1) g;
ANALYZE athena_keys.api_key_global_ip_rule;
ANALYZE athena_keys.api_key_ip_rule;
SQL
echo "   $(PGDATABASE=bench_rules q "SELECT count(*) FROM athena_keys.api_key_global_ip_rule WHERE list = 'blacklist'") global blacklist entries, $(PGDATABASE=bench_rules q "SELECT count(*) FROM athena_keys.api_key_ip_rule WHERE api_key_id = '$RULES_ID' AND list = 'whitelist'") whitelist entries on the happy key"

sed 's/:g::int/1/; /^\\set/d' "$OUT/random_key.sql" >"$OUT/bulk_key.sql"
scenario happy2 "happy path, durable (small tables, again)" gateway vars="$HAPPY_VARS" expect=200 \
  short="happy (durable)"
scenario large "happy path, $HK keys + $HL log rows" gateway \
  vars="$(request_vars "$LARGE_KEY" web "$CALLER_IP" users.read)" db=bench_large expect=200 \
  base=happy2 target=0.9 show=1
scenario rules10k "happy path, $HR IP rules + $N_CLIENT_RULES client-scoped" gateway \
  vars="$(request_vars "$RULES_KEY" web "$CALLER_IP" users.read)" db=bench_rules expect=200 \
  base=happy2 target=0.9 show=1
scenario random_key "random key of $HK per call (info)" random_key db=bench_large base=happy2
scenario random_key_none "  same, none (info: a miss without IP rules)" random_key pgopt="$NONE" \
  db=bench_large base=happy2
scenario rules10k_blocked "(check only)" gateway vars="$(request_vars "$RULES_KEY" web 11.0.0.9 users.read)" \
  db=bench_rules expect="403|IP blocked" show=1 only=check
scenario bulk_key "(check only)" bulk_key db=bench_large expect=200 show=1 only=check
check_phase
echo "== phase 2: $ROUNDS interleaved rounds of $ROUND_SECONDS s per scenario"
measure

echo "== memory: one backend of bench_large, 5000 happy-path calls then 20000 distinct bulk keys"
LARGE_HAPPY_SQL="SELECT * FROM athena_keys.athena_authenticate('$LARGE_KEY', 'web', '$CALLER_IP', '{users.read}');"
{
  echo "SET synchronous_commit = off;"
  echo '\o /dev/null'
  for _ in $(seq 5000); do echo "$LARGE_HAPPY_SQL"; done
  seq 1 20000 | awk -v s="$BULK_SECRET" -v ip="$CALLER_IP" '{
    printf "SELECT * FROM athena_keys.athena_authenticate('"'"'ath_%016x.%s'"'"', '"'"'web'"'"', '"'"'%s'"'"', '"'"'{}'"'"');\n", $1 * 37 % 1000000 + 1, s, ip }'
  echo '\o'
  cat <<'SQL'
SELECT 'athena_keys contexts: ' || count(*) || ', ' || pg_size_pretty(sum(total_bytes)) || ' (' || sum(total_bytes) || ' bytes)'
  FROM pg_backend_memory_contexts WHERE name LIKE 'athena_keys%';
SELECT 'athena_keys saved plans: ' || count(*) || ', ' || pg_size_pretty(coalesce(sum(total_bytes), 0))
  FROM pg_backend_memory_contexts
 WHERE name IN ('CachedPlan', 'CachedPlanSource', 'CachedPlanQuery') AND ident LIKE '%athena_keys%';
SELECT 'athena_keys.key_cache_size: ' || current_setting('athena_keys.key_cache_size');
SELECT 'all backend memory contexts: ' || pg_size_pretty(sum(total_bytes)) FROM pg_backend_memory_contexts;
SELECT 'proc ' || regexp_replace(l, '\s+', ' ', 'g')
  FROM regexp_split_to_table(pg_read_file('/proc/self/status'), E'\n') l
 WHERE l ~ '^(VmHWM|VmRSS|RssAnon|RssShmem):';
SQL
} >"$OUT/memory.sql"
MEM=$(PGDATABASE=bench_large "${PSQL[@]}" -At -f "$OUT/memory.sql")
IDLE=$(q "SELECT regexp_replace(string_agg(l, ', '), '\s+', ' ', 'g') FROM regexp_split_to_table(pg_read_file('/proc/self/status'), E'\n') l WHERE l ~ '^(VmHWM|VmRSS|RssAnon):'")

# The instruction counts of every scenario of this server (the standby is
# gone by now).  The bulk keys are stamped first, so that with the pinned
# interval no miss also stamps, and the table vacuumed after, as autovacuum
# (off under callgrind) would have: otherwise each miss's first read of a
# page prunes the stamp's dead row versions and sets their hint bits, work
# of the stamp, not of the miss.
if [ "$INSTR_MODE" = 1 ]; then
  PGDATABASE=bench_large q "UPDATE athena_keys.api_key SET last_used_at = now() WHERE last_used_at IS NULL" >/dev/null
  PGDATABASE=bench_large q "VACUUM athena_keys.api_key" >/dev/null
  INSTR_NAMES=()
  for s in "${ORDER[@]}"; do [ -z "${HOST_OF[$s]:-}" ] && INSTR_NAMES+=("$s"); done
  instr_phase "${INSTR_NAMES[@]}"
fi

# ---------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------
# ratio A B: A's tps over B's (each the median of its rounds).  Runs on
# this kind of machine vary from one to the next more than the machine
# drifts within a phase, so medians taken apart beat per-round pairs.
ratio() { awk -v a="${TPS[$1]:-0}" -v b="${TPS[$2]:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
verdict() { awk -v r="$1" -v t="$2" 'BEGIN { if (r == "n/a") print "n/a"; else print (r + 0 >= t + 0 ? "PASS" : "MISS") }'; }

echo
echo "athena_keys benchmark: pgbench -M prepared -c $CLIENTS -j $THREADS, ${ROUNDS}x${ROUND_SECONDS} s per scenario, $(nproc) CPUs, $(q 'SELECT version()' | cut -d, -f1), shared_preload_libraries = '$(q 'SHOW shared_preload_libraries')'"
echo "calls: the statement athena-authd prepares (athena_gateway_verdict in the target list, parameters bound per call)"
printf '%-44s %8s %-12s %-24s %-10s %8s %8s %9s %9s %-14s %8s %-10s\n' scenario tps "rounds" "ratio vs baseline" target p50_ms p99_ms server_us client_us "server cpu" instr "instr ratio"
printf '%s\n' "$(printf '%.0s-' $(seq 178))"
for s in "${ORDER[@]}"; do
  r='-'; tgt='-'
  if [ -n "${BASE[$s]:-}" ]; then
    r="$(ratio "$s" "${BASE[$s]}") x ${SHORT[${BASE[$s]}]}"
    [ -n "${TARGET[$s]:-}" ] && tgt=">=${TARGET[$s]} $(verdict "$(ratio "$s" "${BASE[$s]}")" "${TARGET[$s]}")"
  fi
  read -r sus cus < <(cpu_us "$s")
  cr='-'
  if [ -n "${BASE[$s]:-}" ]; then
    read -r bus _ < <(cpu_us "${BASE[$s]}")
    cr=$(awk -v a="$sus" -v b="$bus" 'BEGIN { if (a != "-" && b != "-" && b > 0) printf "%.2f x base", a / b; else print "-" }')
  fi
  ir='-'
  if [ -n "${BASE[$s]:-}" ] && [ -n "${INSTR[$s]:-}" ] && [ -n "${INSTR[${BASE[$s]}]:-}" ]; then
    ir=$(awk -v a="${INSTR[$s]}" -v b="${INSTR[${BASE[$s]}]}" 'BEGIN { if (b > 0) printf "%.2f x", a / b; else print "-" }')
  fi
  printf '%-44s %8.0f %-12s %-24s %-10s %8s %8s %9s %9s %-14s %8s %-10s\n' "${LABEL[$s]}" "${TPS[$s]:-0}" "${SPREAD[$s]:--}" "$r" "$tgt" "${P50[$s]}" "${P99[$s]}" "$sus" "$cus" "$cr" "$(human_instr "${INSTR[$s]:--}")" "$ir"
done
for v in "" _none; do
  u=$(ratio "f_unknown$v" "f_wrong_secret$v")
  uv=$(awk -v r="$u" 'BEGIN { if (r == "n/a") print "n/a"; else print (r >= 0.9 && r <= 1.1 ? "PASS" : "MISS") }')
  printf '%-44s %8s %-12s %-24s %-10s\n' "unknown id vs wrong secret${v:+ (none)}" "" "" "$u x wrong secret" "0.9-1.1 $uv"
done
printf '%-44s %8s %-12s %-24s %-10s\n' "async happy vs async plain INSERT" "" "" "$(ratio happy_async plain_insert_async) x async INSERT" "(info)"
echo
echo "load average (1/5/15 min) before measuring: $LOAD_BEFORE, at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "tps = median of the rounds (min-max shown); ratio = of the two medians;"
echo "p50/p99 over every transaction of every round; server_us = CPU of the server processes (backends,"
echo "log writer, WAL writer, ...) per call, client_us = pgbench's; server cpu = server_us against the baseline's."
echo "targets: durable >= 0.8 x INSERT; async >= 0.6 x SELECT 1; none >= 0.8 x SELECT 1;"
echo "         failure paths >= 1.0 x happy (same logging); 1M keys/10M log rows and 10k rules >= 0.9 x happy"
for s in "${ORDER[@]}"; do
  [ -n "${FAILED[$s]:-}" ] && [ "${FAILED[$s]}" != 0 ] && echo "note: ${LABEL[$s]}: ${FAILED[$s]} failed transactions"
done
if [ "$INSTR_MODE" = 1 ]; then
  echo
  echo "instruction targets (issue 17; instructions per call, this run):"
  instr_target "the proxy's call: happy path, none" "${INSTR[happy_none]:-}" "" le 50000
  instr_target "async writer, per logged row" "${INSTR_WRITER[happy_async]:-}" "" le 13000
  instr_target "key not in the backend's cache (100-CIDR whitelist)" "${INSTR[happy_none_miss]:-}" "${INSTR[happy_none]:-}" le 2
  printf '   %-48s %9s   (info: in neither cache, read from the tables)\n' \
    "  the same key in no cache" "$(human_instr "${INSTR[happy_none_cold]:-}")"
  instr_target "key not in the cache (no rules, $HK keys)" "${INSTR[random_key_none]:-}" "${INSTR[happy_none]:-}" le 2
  instr_target "a last_used_at stamp due" "${INSTR[happy_none_stamp]:-}" "${INSTR[happy_none]:-}" le 1.5
  printf '   %-48s %9s   (info: applied in batches by the log writer when preloaded)\n' \
    "  the writer's share, per stamp due" "$(human_instr "${INSTR_WRITER[happy_none_stamp]:-}")"
  for s in "${ORDER[@]}"; do
    case $s in
      f_*) instr_target "${LABEL[$s]}" "${INSTR[$s]:-}" "${INSTR[${BASE[$s]}]:-}" le 1 ;;
    esac
  done
  instr_target "unknown public id vs wrong secret (none)" "${INSTR[f_unknown_none]:-}" "${INSTR[f_wrong_secret_none]:-}" within 0.1
  instr_target "$HK keys + $HL log rows vs small tables" "${INSTR[large]:-}" "${INSTR[happy2]:-}" within 0.1
  instr_target "$HR IP rules vs small tables" "${INSTR[rules10k]:-}" "${INSTR[happy2]:-}" within 0.1
fi
echo
echo "verdicts checked before measuring:"
for s in "${SHOWN_VERDICTS[@]}"; do
  [ -n "${VERDICT[$s]:-}" ] && printf '   %-28s %s\n' "$s" "${VERDICT[$s]}"
done
echo
echo "per-backend memory after 5000 happy calls + 20000 distinct keys in one backend,"
echo "with $N_KEYS keys (target: athena_keys caches <= 16 MB):"
sed 's/^/   /' <<<"$MEM"
echo "   fresh idle backend for comparison: $IDLE"
ATH_BYTES=$(sed -n 's/^athena_keys contexts: .*(\([0-9]*\) bytes)$/\1/p' <<<"$MEM")
[ -n "$ATH_BYTES" ] && echo "   athena_keys cache target (<= 16 MB): $(awk -v b="$ATH_BYTES" 'BEGIN { print (b <= 16 * 1024 * 1024 ? "PASS" : "MISS") }')"

# HTTP (issue 17, target 5): wrk through nginx -> athena-authd -> PostgreSQL
# against nginx proxying the same upstream with no auth, in interleaved
# rounds, for every log setting; the median of the rounds' ratios.
# authd/test/load.sh runs its own throwaway server; BENCH_HTTP=0 skips it.
if [ "${BENCH_HTTP:-1}" = 1 ] && [ -f "$WORK_DIR/src/authd/test/load.sh" ]; then
  echo
  LOAD_SECONDS=${BENCH_HTTP_SECONDS:-4} LOAD_ROUNDS=${BENCH_HTTP_ROUNDS:-8} \
    bash "$WORK_DIR/src/authd/test/load.sh" 2>&1 | grep -v '^== ' | sed 's/^/   /' \
    || echo "   (the HTTP load run failed)"
fi
exit 0
