# shellcheck shell=bash
# athena-authd's end-to-end fixtures (sourced), on top of the project's one
# shell library, test/lib.sh (ports, PostgreSQL servers, builds, roles).
#
# Starts, on loopback only and inside one temporary directory, everything
# torn down on exit:
#   - a throwaway PostgreSQL (the one PG_CONFIG names, default Debian's 15)
#     with CREATE EXTENSION athena_keys and a gateway role that may only
#     call athena_authenticate (StartPostgres);
#   - athena-authd instances (StartAuthd);
#   - nginx in the foreground as the current user (StartNginx), with a tiny
#     upstream that answers 200 itself.
# Works as root or as an unprivileged user.  When root sets DAEMON_USER,
# athena-authd and nginx run as that user instead (setpriv, same pid).
# test/demo.sh at the top level reuses WaitForHttp, StartAuthd, StartNginx
# and StopHttpServices with its own E2E_TMP and PostgreSQL.

# shellcheck source=../../test/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../test/lib.sh"
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
AUTHD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
AUTHD_BIN=${AUTHD_BIN:-"$AUTHD_DIR/athena-authd"}  # override to test another build (e.g. sanitizers)
# shellcheck disable=SC2034  # used by the scripts that source this file
EXTENSION_CONTROL=$("$PG_CONFIG" --sharedir 2>/dev/null || true)/extension/athena_keys.control

E2E_TMP=""
PG_DATA=""
PG_PORT=""
NGINX_PID=""
AUTHD_PIDS=""
DAEMON_USER=${DAEMON_USER:-}

# Print the command prefix that runs athena-authd / nginx as DAEMON_USER
# (nothing unless we are root and DAEMON_USER is set); setpriv execs, so $!
# of a backgrounded "$prefix command" is the daemon's own pid
DaemonPrefix() {
  if [ -n "$DAEMON_USER" ] && [ "$(id -u)" -eq 0 ]; then
    echo "setpriv --reuid=$DAEMON_USER --regid=$(id -g "$DAEMON_USER") --init-groups"
  fi
}

# Wait until something answers HTTP on 127.0.0.1:port (up to ~10 s)
WaitForHttp() {
  local port=$1 path=${2:-/}
  for _ in $(seq 1 100); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$port$path")" != "000" ]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# Stop the athena-authd instances and nginx we started, by pid (safe
# under set -e, and when called twice)
StopHttpServices() {
  local pid
  for pid in $AUTHD_PIDS; do
    kill "$pid" 2>/dev/null || true
  done
  if [ -n "$NGINX_PID" ]; then
    kill -QUIT "$NGINX_PID" 2>/dev/null || true
  fi
  for pid in $AUTHD_PIDS $NGINX_PID; do
    wait "$pid" 2>/dev/null || true
  done
  AUTHD_PIDS=""
  NGINX_PID=""
}

# Stop everything we started, by pid, and remove the temporary directory
TeardownE2e() {
  StopHttpServices
  stop_servers
  if [ -n "$E2E_TMP" ] && [ -z "${KEEP_TMP:-}" ]; then
    rm -rf "$E2E_TMP"
  fi
}

# Create the temporary directory and install the teardown trap
SetupTempDir() {
  make_work_dir athena-authd-e2e
  E2E_TMP=$WORK_DIR
  trap TeardownE2e EXIT
  trap 'exit 130' INT TERM
  cd "$E2E_TMP" || exit 1
}

# Build athena-authd when it is missing or older than its sources (unless
# AUTHD_BIN points elsewhere)
EnsureAuthdBuilt() {
  [ "$AUTHD_BIN" != "$AUTHD_DIR/athena-authd" ] && [ -x "$AUTHD_BIN" ] && return 0
  build_authd "$AUTHD_DIR"
}

# psql as the superuser over loopback TCP; extra arguments pass through
# shellcheck disable=SC2120
Sql() {
  "$PG_BIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres "$@"
}

# Initialise and start PostgreSQL in $E2E_TMP/pg, create the extension and
# the gateway role; PG_PORT and PG_DATA name it.  athena_keys is preloaded,
# so that rate limits have their buckets.
StartPostgres() {
  start_server pg "" "max_connections = 50
shared_buffers = 128MB
shared_preload_libraries = 'athena_keys'
fsync = off" || return 1
  # shellcheck disable=SC2153  # PGPORT is exported by start_server
  PG_PORT=$PGPORT
  PG_DATA=$SERVER_DIR/data
  Sql -c 'CREATE EXTENSION athena_keys' >/dev/null || return 1
  create_gateway_login athena_gateway
}

# Start the (already initialised) PostgreSQL server
StartPostgresServer() {
  resume_server "$PG_DATA"
}

# Stop the PostgreSQL server (fast shutdown: sessions are terminated)
StopPostgresServer() {
  stop_server "$PG_DATA"
}

# The DSN athena-authd uses: the gateway role over loopback TCP
GatewayDsn() {
  echo "host=127.0.0.1 port=$PG_PORT user=athena_gateway dbname=postgres"
}

# StartAuthd NAME PORT [ENV=VALUE...] [-- ARGS...]: run athena-authd in the
# background with the given environment, log in $E2E_TMP/NAME.log.  Its
# health listener gets a port of its own, left in HEALTH_PORT (and
# HEALTH_PORT_<NAME>); the last instance's pid is in LAST_AUTHD_PID.
StartAuthd() {
  local name=$1 port=$2 prefix health_port
  shift 2
  local env_settings=() args=()
  while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then shift; args=("$@"); break; fi
    env_settings+=("$1")
    shift
  done
  health_port=$(pick_port) || return 1
  prefix=$(DaemonPrefix)
  # shellcheck disable=SC2086  # the prefix is split into words on purpose
  $prefix env -u ATHENA_AUTHD_TRUSTED_PROXIES -u ATHENA_AUTHD_DSN -u ATHENA_AUTHD_LISTEN \
    -u ATHENA_AUTHD_HEALTH_LISTEN \
    ATHENA_AUTHD_LISTEN="127.0.0.1:$port" ATHENA_AUTHD_HEALTH_LISTEN="127.0.0.1:$health_port" \
    "${env_settings[@]}" "$AUTHD_BIN" "${args[@]}" >"$E2E_TMP/$name.log" 2>&1 &
  LAST_AUTHD_PID=$!
  AUTHD_PIDS="$AUTHD_PIDS $LAST_AUTHD_PID"
  # shellcheck disable=SC2034  # for the scripts that source this file
  HEALTH_PORT=$health_port
  printf -v "HEALTH_PORT_${name//[^A-Za-z0-9_]/_}" '%s' "$health_port"
  WaitForHttp "$health_port" /healthz || { echo "athena-authd $name did not start:"; cat "$E2E_TMP/$name.log"; return 1; }
}

# The auth_request wiring every protected location includes.  auth_request
# passes only 2xx, 401 and 403 on and turns any other status into 500, so
# the subrequest's status is kept and @athena_unavailable answers a 429 as
# a 429; the rate limit headers are copied to every answer.
WriteNginxAuthSnippet() {
  cat >"$E2E_TMP/nginx/athena_ratelimit_headers.conf" <<'CONF'
add_header RateLimit-Limit $athena_ratelimit_limit always;
add_header RateLimit-Remaining $athena_ratelimit_remaining always;
add_header RateLimit-Reset $athena_ratelimit_reset always;
add_header Retry-After $athena_retry_after always;
CONF
  cat >"$E2E_TMP/nginx/athena_auth.conf" <<'CONF'
auth_request /_athena_auth;
auth_request_set $athena_auth_status $upstream_status;
auth_request_set $athena_ratelimit_limit $upstream_http_ratelimit_limit;
auth_request_set $athena_ratelimit_remaining $upstream_http_ratelimit_remaining;
auth_request_set $athena_ratelimit_reset $upstream_http_ratelimit_reset;
auth_request_set $athena_retry_after $upstream_http_retry_after;
include athena_ratelimit_headers.conf;
auth_request_set $athena_error $upstream_http_x_athena_error;
auth_request_set $athena_key_id $upstream_http_x_athena_key_id;
auth_request_set $athena_public_id $upstream_http_x_athena_public_id;
auth_request_set $athena_client $upstream_http_x_athena_client;
error_page 401 = @athena_401;
error_page 403 = @athena_403;
error_page 500 502 503 504 = @athena_unavailable;
proxy_pass http://app;
proxy_http_version 1.1;
proxy_set_header Connection "";
proxy_set_header X-Athena-Key "";
proxy_set_header X-Athena-Key-Id $athena_key_id;
proxy_set_header X-Athena-Public-Id $athena_public_id;
proxy_set_header X-Athena-Client $athena_client;
CONF
  cat >"$E2E_TMP/nginx/athena_locations.conf" <<'CONF'
location = /_athena_auth {
    internal;
    proxy_pass http://$athena_authd_upstream;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
    proxy_set_header X-Original-URI $request_uri;
    proxy_set_header X-Athena-Rights $athena_rights;
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    proxy_set_header X-Real-IP "";
}
location @athena_401 {
    default_type application/json;
    include athena_ratelimit_headers.conf;
    return 401 $athena_error;
}
location @athena_403 {
    default_type application/json;
    include athena_ratelimit_headers.conf;
    return 403 $athena_error;
}
location @athena_unavailable {
    default_type application/json;
    include athena_ratelimit_headers.conf;
    if ($athena_auth_status = 429) {
        return 429 $athena_error;
    }
    if ($athena_error = "") {
        return 503 '{"status":"error","message":"API key validation unavailable"}';
    }
    return 503 $athena_error;
}
location /users/ {
    set $athena_rights "users.read";
    include athena_auth.conf;
}
location /query {
    set $athena_rights "gateway.query";
    include athena_auth.conf;
}
location /public-ish {
    set $athena_rights "";
    include athena_auth.conf;
}
CONF
}

# StartNginx: write nginx.conf and start nginx in the foreground
# (backgrounded by us; its stdout/stderr go to nginx/stderr.log).  Ports:
# NGINX_PORT (auth via authd "main", AUTHD_PORT), NGINX_UNTRUSTED_PORT (auth
# via authd "untrusted", AUTHD_UNTRUSTED_PORT, when set), UPSTREAM_PORT (the
# app, also served directly with no auth).
StartNginx() {
  local user_line="" untrusted_server="" prefix
  prefix=$(DaemonPrefix)
  mkdir -p "$E2E_TMP/nginx/tmp"
  WriteNginxAuthSnippet
  if [ -n "$prefix" ]; then
    chown -R "$DAEMON_USER" "$E2E_TMP/nginx"
  elif [ "$(id -u)" -eq 0 ]; then
    user_line="user $(id -un) $(id -gn);"
  fi
  if [ -n "${NGINX_UNTRUSTED_PORT:-}" ]; then
    untrusted_server="
    upstream authd_untrusted { server 127.0.0.1:$AUTHD_UNTRUSTED_PORT; keepalive 16; keepalive_timeout 50s; }
    server {
        listen 127.0.0.1:$NGINX_UNTRUSTED_PORT;
        set \$athena_authd_upstream authd_untrusted;
        include athena_locations.conf;
    }"
  fi
  cat >"$E2E_TMP/nginx/nginx.conf" <<CONF
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
    # keep idle upstream connections for less than athena-authd's idle_timeout_s (60)
    upstream authd_main { server 127.0.0.1:$AUTHD_PORT; keepalive 32; keepalive_timeout 50s; }

    # the upstream application: answers itself, echoing the identity headers
    server {
        listen 127.0.0.1:$UPSTREAM_PORT;
        location / {
            default_type text/plain;
            return 200 "upstream ok key_id=\$http_x_athena_key_id public_id=\$http_x_athena_public_id client=\$http_x_athena_client key=\$http_x_athena_key\n";
        }
    }

    # the gateway: every protected location asks athena-authd first
    server {
        listen 127.0.0.1:$NGINX_PORT;
        set \$athena_authd_upstream authd_main;
        include athena_locations.conf;
        location /noauth/ {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
$untrusted_server
}
CONF
  # shellcheck disable=SC2086  # the prefix is split into words on purpose
  $prefix "$NGINX_BIN" -t -q -p "$E2E_TMP/nginx" -e "$E2E_TMP/nginx/error.log" -c "$E2E_TMP/nginx/nginx.conf" ||
    { echo "nginx config test failed"; return 1; }
  # shellcheck disable=SC2086
  $prefix "$NGINX_BIN" -p "$E2E_TMP/nginx" -e "$E2E_TMP/nginx/error.log" -c "$E2E_TMP/nginx/nginx.conf" \
    >"$E2E_TMP/nginx/stderr.log" 2>&1 &
  NGINX_PID=$!
  WaitForHttp "$NGINX_PORT" /noauth/ ||
    { echo "nginx did not start"; cat "$E2E_TMP/nginx/stderr.log" "$E2E_TMP/nginx/error.log" 2>/dev/null; return 1; }
}
