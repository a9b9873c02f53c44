#!/usr/bin/env bash
# HTTP benchmark on loopback (issue 17, target 5): wrk through nginx ->
# athena-authd -> PostgreSQL (auth_request on every request) against nginx
# proxying the same upstream with no auth, in interleaved rounds, for each
# log setting.
#
# One PostgreSQL (a stock server: fsync and synchronous_commit on, athena_keys
# preloaded), one athena-authd per log setting (its own gateway role, whose
# ALTER ROLE settings pick durable, async or none; default athena-authd
# settings otherwise) and one nginx with a server per log setting.  Every
# round runs, LOAD_SECONDS each: nginx proxying with no auth, nginx with
# auth_request to a trivial 204 upstream (the ceiling of any external auth
# server, information), then nginx + athena-authd for each log setting.
# After an async run the log writer's backlog drains before the next run.
# A setting's ratio is the median over the rounds of (its req/s / the same
# round's no-auth req/s).  Prints one table.
#
# LOAD_SECONDS (4), LOAD_ROUNDS (8), LOAD_THREADS (2), LOAD_CONNECTIONS (16),
# LOAD_MODES ("durable async none"), AUTHD_POOL (athena-authd's default).
# Runs as root or as an unprivileged user; everything is torn down on exit.
set -uo pipefail
. "$(dirname "$0")/e2e_lib.sh"

SECONDS_PER_RUN=${LOAD_SECONDS:-4}
ROUNDS=${LOAD_ROUNDS:-8}
THREADS=${LOAD_THREADS:-2}
CONNECTIONS=${LOAD_CONNECTIONS:-16}
MODES=${LOAD_MODES:-durable async none}

command -v wrk >/dev/null || { echo "wrk is not installed"; exit 1; }
[ -f "$EXTENSION_CONTROL" ] || { echo "athena_keys is not installed ($EXTENSION_CONTROL)"; exit 1; }
SetupTempDir
EnsureAuthdBuilt || exit 1
start_server pg "" "max_connections = 50
shared_buffers = 128MB
shared_preload_libraries = 'athena_keys'
max_wal_size = 16GB
checkpoint_timeout = 1h" || { echo "PostgreSQL did not start"; exit 1; }
PG_PORT=$PGPORT
PG_DATA=$SERVER_DIR/data
Sql -c 'CREATE EXTENSION athena_keys' >/dev/null || exit 1
Sql -c "SELECT athena_keys.athena_create_right('users.read')" >/dev/null || exit 1
read -r KEY _ < <(Sql -c "SELECT api_key || ' ' || id FROM athena_keys.athena_create_key(
  name => 'load', client_name => 'web', rights => ARRAY['users.read'])")

UPSTREAM_PORT=$(pick_port)
PROXY_PORT=$(pick_port)
declare -A AUTHD_PORTS NGINX_PORTS
for mode in $MODES; do
  role=athena_gateway_$mode
  create_gateway_login "$role" || exit 1
  case $mode in
    durable) setting="SET athena_keys.log_durability = durable" ;;
    async) setting="SET athena_keys.log_durability = async" ;;
    none) setting="SET athena_keys.log_decisions = none" ;;
    *) echo "unknown log setting $mode"; exit 1 ;;
  esac
  Sql -c "ALTER ROLE $role $setting" >/dev/null || exit 1
  AUTHD_PORTS[$mode]=$(pick_port)
  NGINX_PORTS[$mode]=$(pick_port)
  env_pool=()
  [ -n "${AUTHD_POOL:-}" ] && env_pool=(ATHENA_AUTHD_POOL="$AUTHD_POOL")
  StartAuthd "$mode" "${AUTHD_PORTS[$mode]}" \
    ATHENA_AUTHD_DSN="host=127.0.0.1 port=$PG_PORT user=$role dbname=postgres" \
    ATHENA_AUTHD_LOG=errors "${env_pool[@]}" || exit 1
done

# nginx: the upstream app, a proxy server (no auth, and auth_request to a
# 204 upstream), and one auth_request server per log setting; every
# upstream is kept alive, athena-authd's as in the README's configuration
mkdir -p "$E2E_TMP/nginx/tmp"
WriteNginxAuthSnippet
user_line=""
[ "$(id -u)" -eq 0 ] && user_line="user $(id -un) $(id -gn);"
{
  cat <<CONF
$user_line
daemon off;
worker_processes 2;
pid $E2E_TMP/nginx/nginx.pid;
error_log $E2E_TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $E2E_TMP/nginx/tmp/body;
    proxy_temp_path $E2E_TMP/nginx/tmp/proxy;
    fastcgi_temp_path $E2E_TMP/nginx/tmp/fastcgi;
    uwsgi_temp_path $E2E_TMP/nginx/tmp/uwsgi;
    scgi_temp_path $E2E_TMP/nginx/tmp/scgi;
    upstream app { server 127.0.0.1:$UPSTREAM_PORT; keepalive 32; }
    upstream allow204 { server 127.0.0.1:$UPSTREAM_PORT; keepalive 32; }
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location = /_allow { return 204; }
        location / {
            default_type text/plain;
            return 200 "upstream ok key_id=\$http_x_athena_key_id\n";
        }
    }
    server {
        listen 127.0.0.1:$PROXY_PORT;
        location /noauth/ {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /allow204/ {
            auth_request /_allow;
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location = /_allow {
            internal;
            proxy_pass http://allow204;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
        }
    }
CONF
  for mode in $MODES; do
    cat <<CONF
    upstream authd_$mode { server 127.0.0.1:${AUTHD_PORTS[$mode]}; keepalive 32; keepalive_timeout 50s; }
    server {
        listen 127.0.0.1:${NGINX_PORTS[$mode]};
        set \$athena_authd_upstream authd_$mode;
        include athena_locations.conf;
    }
CONF
  done
  echo "}"
} >"$E2E_TMP/nginx/nginx.conf"
"$NGINX_BIN" -t -q -p "$E2E_TMP/nginx" -e "$E2E_TMP/nginx/error.log" -c "$E2E_TMP/nginx/nginx.conf" ||
  { echo "nginx config test failed"; exit 1; }
"$NGINX_BIN" -p "$E2E_TMP/nginx" -e "$E2E_TMP/nginx/error.log" -c "$E2E_TMP/nginx/nginx.conf" \
  >"$E2E_TMP/nginx/stderr.log" 2>&1 &
NGINX_PID=$!
WaitForHttp "$PROXY_PORT" /noauth/ || { echo "nginx did not start"; cat "$E2E_TMP/nginx/error.log"; exit 1; }

# every protected route really passes with the key, and the ceiling route too
for mode in $MODES; do
  STATUS=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Athena-Key: $KEY" -H "X-Athena-Client: web" \
    "http://127.0.0.1:${NGINX_PORTS[$mode]}/users/1")
  [ "$STATUS" = 200 ] || { echo "$mode: protected route answered $STATUS, expected 200"; exit 1; }
done
STATUS=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PROXY_PORT/allow204/1")
[ "$STATUS" = 200 ] || { echo "auth_request to a 204 upstream answered $STATUS, expected 200"; exit 1; }

# RunWrk URL [wrk args...]: run wrk; sets RPS and NON_2XX
RunWrk() {
  local url=$1 output
  shift
  output=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "$@" "$url")
  RPS=$(awk '/^Requests\/sec:/ {print $2}' <<<"$output")
  NON_2XX=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$output")
  RPS=${RPS:-0}
  NON_2XX=${NON_2XX:-0}
}

# Wait (up to 20 s) until the auth log stops growing: the async writer's
# backlog must not run into the next measurement
AwaitLogDrained() {
  local last=-1 now
  for _ in $(seq 1 40); do
    now=$(Sql -c "SELECT count(*) FROM athena_keys.api_key_auth_log")
    [ "$now" = "$last" ] && return 0
    last=$now
    sleep 0.5
  done
}

declare -A RATIOS RATES BAD
LABELS="allow204 $MODES"
for round in $(seq 1 "$ROUNDS"); do
  RunWrk "http://127.0.0.1:$PROXY_PORT/noauth/1"
  base=$RPS
  RATES[noauth]+=" $base"
  for label in $LABELS; do
    if [ "$label" = allow204 ]; then
      RunWrk "http://127.0.0.1:$PROXY_PORT/allow204/1"
    else
      RunWrk "http://127.0.0.1:${NGINX_PORTS[$label]}/users/1" -H "X-Athena-Key: $KEY" -H "X-Athena-Client: web"
    fi
    RATES[$label]+=" $RPS"
    RATIOS[$label]+=" $(awk -v a="$RPS" -v b="$base" 'BEGIN { printf "%.4f", (b > 0 ? a / b : 0) }')"
    BAD[$label]=$(( ${BAD[$label]:-0} + NON_2XX ))
    [ "$label" = async ] && AwaitLogDrained
  done
  echo "round $round/$ROUNDS: no auth $base req/s;$(for l in $LABELS; do printf ' %s %s' "$l" "${RATES[$l]##* }"; done)"
done

# Median of numbers given as words
Median() {
  tr ' ' '\n' <<<"$*" | grep . | sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print 0; exit }
    print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
Range() {
  tr ' ' '\n' <<<"$*" | grep . | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }'
}

echo
printf 'HTTP: wrk -t%s -c%s through nginx, %s interleaved rounds of %s s per run, loopback, %s CPUs\n' \
  "$THREADS" "$CONNECTIONS" "$ROUNDS" "$SECONDS_PER_RUN" "$(nproc)"
printf '%-46s %12s %14s %11s %-16s\n' "route" "req/s (med)" "ratio (median)" "min-max" "target"
printf '%-46s %12.0f %14s %11s %-16s\n' "nginx proxying, no auth" "$(Median "${RATES[noauth]}")" "-" "" ""
for label in $LABELS; do
  ratio=$(Median "${RATIOS[$label]}")
  case $label in
    allow204) name="auth_request to a 204 upstream (ceiling)"; target="(info)" ;;
    async) name="athena-authd, log_durability = async"
      target="$(awk -v r="$ratio" 'BEGIN { print (r >= 0.45 ? ">=0.45 PASS" : ">=0.45 MISS") }')" ;;
    durable) name="athena-authd, log_durability = durable"; target="(info)" ;;
    none) name="athena-authd, log_decisions = none"; target="(info)" ;;
  esac
  printf '%-46s %12.0f %14.3f %11s %-16s\n' "$name" "$(Median "${RATES[$label]}")" "$ratio" \
    "$(Range "${RATIOS[$label]}")" "$target"
done
for label in $LABELS; do
  [ "${BAD[$label]:-0}" = 0 ] || echo "note: $label: ${BAD[$label]} non-2xx responses"
done
echo "athena-authd: pool ${AUTHD_POOL:-default}, threads default; PostgreSQL: fsync on, synchronous_commit on;"
echo "the target (>= 0.45 x no auth) is for the recommended production setting, log_durability = async (preloaded)"
fail=0
for label in $MODES; do [ "${BAD[$label]:-0}" = 0 ] || fail=1; done
exit $fail
