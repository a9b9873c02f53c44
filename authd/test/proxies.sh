#!/usr/bin/env bash
# End-to-end tests of athena-authd behind a real Caddy (Debian's 2.6,
# forward_auth) and a real HAProxy (Debian's 2.6, contrib/haproxy/
# athena_auth.lua with HAProxy's own HTTP client), each in front of the
# same echoing upstream (nginx from e2e_lib.sh).  Both proxies run with the
# configurations README.md documents, on loopback ports, as the PostgreSQL
# owner when we are root.
#
# Each proxy must: pass verdicts (status and JSON body) to the client, give
# the upstream the key's identity and never the key, make identity headers
# impossible to spoof, refuse client-supplied addresses (X-Real-IP,
# X-Forwarded-For), and answer 503 when athena-authd is down.
#
# Prints "ok N - ..." per check, then "N passed, N failed".
set -uo pipefail
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/check_lib.sh"

CADDY_BIN=${CADDY_BIN:-/usr/bin/caddy}
HAPROXY_BIN=${HAPROXY_BIN:-/usr/sbin/haproxy}
LUA_SCRIPT="$AUTHD_DIR/contrib/haproxy/athena_auth.lua"
PROXY_PIDS=""

# Stop the proxies (by pid), then everything e2e_lib started
StopProxiesAndTeardown() {
  local pid
  for pid in $PROXY_PIDS; do kill "$pid" 2>/dev/null; done
  for pid in $PROXY_PIDS; do wait "$pid" 2>/dev/null; done
  TeardownE2e
}

# RunUnprivileged LOG COMMAND...: start a proxy in the background, as the
# PostgreSQL owner when we are root (setpriv execs: $! is the proxy)
RunUnprivileged() {
  local log=$1
  shift
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=postgres --regid="$(id -g postgres)" --init-groups "$@" >"$log" 2>&1 &
  else
    "$@" >"$log" 2>&1 &
  fi
  PROXY_PIDS="$PROXY_PIDS $!"
}

# WriteCaddyfile PORT AUTHD_PORT UPSTREAM_PORT FILE: the documented configuration
WriteCaddyfile() {
  local port=$1 authd=$2 upstream=$3 route rights
  {
    cat <<CONF
{
	admin off
	auto_https off
	storage file_system $E2E_TMP/caddy/data
}

http://127.0.0.1:$port {
	# athena-authd unreachable: 503 with the JSON body (as nginx)
	handle_errors {
		@unavailable expression {err.status_code} in [502, 503, 504]
		respond @unavailable \`{"status":"error","message":"API key validation unavailable"}\` 503
	}
CONF
    for route in "/users/*=users.read" "/query*=gateway.query"; do
      rights=${route#*=}
      cat <<CONF
	route ${route%%=*} {
		# identity headers come only from athena-authd
		request_header -X-Athena-Key-Id
		request_header -X-Athena-Public-Id
		forward_auth 127.0.0.1:$authd {
			uri /auth
			header_up X-Athena-Rights "$rights"
			copy_headers X-Athena-Key-Id X-Athena-Public-Id X-Athena-Client
		}
		reverse_proxy 127.0.0.1:$upstream {
			# the secret stays at the edge
			header_up -X-Athena-Key
			header_up -X-API-Key
		}
	}
CONF
    done
    echo "}"
  } >"$4"
}

# WriteHaproxyConfig PORT AUTHD_PORT UPSTREAM_PORT FILE: the documented configuration
WriteHaproxyConfig() {
  cat >"$4" <<CONF
global
    lua-load $LUA_SCRIPT
    httpclient.ssl.verify none

defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s

frontend api
    bind 127.0.0.1:$1
    # identity headers come only from athena-authd
    http-request del-header X-Athena-Key-Id
    http-request del-header X-Athena-Public-Id
    http-request lua.athena_auth http://127.0.0.1:$2/auth users.read if { path_beg /users/ }
    http-request lua.athena_auth http://127.0.0.1:$2/auth gateway.query if { path_beg /query }
    # an allowed request's rate limit, for the client
    http-response set-header RateLimit-Limit %[var(txn.athena_ratelimit_limit)] if { var(txn.athena_ratelimit_limit) -m found }
    http-response set-header RateLimit-Remaining %[var(txn.athena_ratelimit_remaining)] if { var(txn.athena_ratelimit_remaining) -m found }
    http-response set-header RateLimit-Reset %[var(txn.athena_ratelimit_reset)] if { var(txn.athena_ratelimit_reset) -m found }
    default_backend app

backend app
    server app1 127.0.0.1:$3
CONF
}

# ProxyChecks NAME PORT LIMITED_KEY: the checks every proxy must pass;
# LIMITED_KEY has a limit of one request an hour, not used yet
ProxyChecks() {
  local name=$1 port=$2 limited=$3
  Request "$port" /users/1 -H "X-Athena-Key: $K1" -H "X-Athena-Client: web"
  Check "$name: valid key: upstream answers with the key's identity, without the key" \
    BodyIs 200 "upstream ok key_id=$K1_ID public_id=$K1_PUBLIC_ID client=web key="
  Request "$port" /users/1 -H "X-Athena-Client: web"
  Check "$name: no key: 401 with the JSON body" DeniedWith 401 "API key required"
  Request "$port" /users/1 -H "X-Athena-Key: $(WrongSecret "$K1")" -H "X-Athena-Client: web"
  Check "$name: wrong secret: 401 Invalid API key" DeniedWith 401 "Invalid API key"
  Request "$port" /users/1 -H $'X-Athena-Key: \xff' -H "X-Athena-Client: web"
  Check "$name: key that is not UTF-8: 401 Invalid API key" DeniedWith 401 "Invalid API key"
  Request "$port" /query -H "X-Athena-Key: $K1" -H "X-Athena-Client: web" -H "X-Athena-Rights: users.read"
  Check "$name: the route's rights, not the client's: 403 Insufficient API key rights" \
    DeniedWith 403 "Insufficient API key rights"
  Request "$port" /users/1 -H "X-Athena-Key: $K5" -H "X-Athena-Client: web" \
    -H "X-Athena-Key-Id: forged-id" -H "X-Athena-Public-Id: forged-public"
  Check "$name: identity headers cannot be spoofed (unbound key: empty client)" \
    BodyIs 200 "upstream ok key_id=$K5_ID public_id=$K5_PUBLIC_ID client= key="
  Request "$port" /users/1 -H "X-Athena-Key: $K4" -H "X-Athena-Client: web" -H "X-Real-IP: 10.20.3.4"
  Check "$name: client-sent X-Real-IP in the key's whitelist is refused: 403 IP not allowed" \
    DeniedWith 403 "IP not allowed"
  Request "$port" /users/1 -H "X-Athena-Key: $K4" -H "X-Athena-Client: web" -H "X-Forwarded-For: 10.20.3.4"
  Check "$name: client-sent X-Forwarded-For in the key's whitelist is refused: 403 IP not allowed" \
    DeniedWith 403 "IP not allowed"
  Request "$port" /users/1 -H "X-Athena-Key: $K6" -H "X-Athena-Client: web"
  Check "$name: the proxy's view of the client (127.0.0.1) decides: whitelisted key allowed" \
    BodyContains 200 "upstream ok"
  Request "$port" /users/1 -H "X-Athena-Key: $limited" -H "X-Athena-Client: web"
  Check "$name: a rate-limited key's first request passes" BodyContains 200 "upstream ok"
  Request "$port" /users/1 -H "X-Athena-Key: $limited" -H "X-Athena-Client: web"
  Check "$name: over its limit: 429 with the JSON body, Retry-After and the RateLimit headers" \
    eval 'DeniedWith 429 "Rate limit exceeded" && HasHeader Retry-After 3600 && HasHeader RateLimit-Limit 1 &&
          HasHeader RateLimit-Remaining 0'
}

if [ ! -f "$EXTENSION_CONTROL" ]; then
  Abort "athena_keys extension installed ($EXTENSION_CONTROL missing: run make install first)"
fi
[ -x "$CADDY_BIN" ] || Abort "caddy installed ($CADDY_BIN)"
[ -x "$HAPROXY_BIN" ] || Abort "haproxy installed ($HAPROXY_BIN)"
SetupTempDir
trap StopProxiesAndTeardown EXIT
EnsureAuthdBuilt || Abort "athena-authd builds"
StartPostgres || Abort "PostgreSQL starts with CREATE EXTENSION athena_keys"
Sql -c "SELECT athena_keys.athena_create_right('users.read')" >/dev/null || Abort "right created"
read -r K1 K1_ID < <(Sql -c "SELECT api_key || ' ' || id FROM athena_keys.athena_create_key('k1', client_name => 'web', rights => ARRAY['users.read'])")
read -r K4 _ < <(Sql -c "SELECT api_key || ' ' || id FROM athena_keys.athena_create_key('k4', client_name => 'web', rights => ARRAY['users.read'], ip_whitelist => ARRAY['10.20.0.0/16']::cidr[])")
read -r K5 K5_ID < <(Sql -c "SELECT api_key || ' ' || id FROM athena_keys.athena_create_key('k5', rights => ARRAY['*'])")
read -r K6 _ < <(Sql -c "SELECT api_key || ' ' || id FROM athena_keys.athena_create_key('k6', client_name => 'web', rights => ARRAY['users.read'], ip_whitelist => ARRAY['127.0.0.1/32']::cidr[])")
read -r K7 K7_ID < <(Sql -c "SELECT api_key || ' ' || id FROM athena_keys.athena_create_key('k7', client_name => 'web', rights => ARRAY['users.read'])")
read -r K8 K8_ID < <(Sql -c "SELECT api_key || ' ' || id FROM athena_keys.athena_create_key('k8', client_name => 'web', rights => ARRAY['users.read'])")
Sql -c "SELECT athena_keys.athena_set_key_rate_limit(id, 1, '1 hour') FROM athena_keys.api_key WHERE id IN ('$K7_ID', '$K8_ID')" >/dev/null
[ -n "${K6:-}" ] && [ -n "${K8:-}" ] || Abort "keys issued"
K1_PUBLIC_ID=${K1#ath_}
K1_PUBLIC_ID=${K1_PUBLIC_ID%%.*}
K5_PUBLIC_ID=${K5#ath_}
K5_PUBLIC_ID=${K5_PUBLIC_ID%%.*}

AUTHD_PORT=$(pick_port)
# shellcheck disable=SC2034  # read by StartNginx
NGINX_PORT=$(pick_port)
UPSTREAM_PORT=$(pick_port)
CADDY_PORT=$(pick_port)
HAPROXY_PORT=$(pick_port)
StartAuthd authd "$AUTHD_PORT" ATHENA_AUTHD_DSN="$(GatewayDsn)" ATHENA_AUTHD_POOL=2 ATHENA_AUTHD_LOG=all ||
  Abort "athena-authd starts"
StartNginx || Abort "nginx (the upstream) starts"

mkdir -p "$E2E_TMP/caddy/data" "$E2E_TMP/haproxy"
WriteCaddyfile "$CADDY_PORT" "$AUTHD_PORT" "$UPSTREAM_PORT" "$E2E_TMP/caddy/Caddyfile"
WriteHaproxyConfig "$HAPROXY_PORT" "$AUTHD_PORT" "$UPSTREAM_PORT" "$E2E_TMP/haproxy/haproxy.cfg"
if [ "$(id -u)" -eq 0 ]; then chown -R postgres "$E2E_TMP/caddy" "$E2E_TMP/haproxy"; fi
RunUnprivileged "$E2E_TMP/caddy.log" env HOME="$E2E_TMP/caddy" XDG_DATA_HOME="$E2E_TMP/caddy/data" \
  XDG_CONFIG_HOME="$E2E_TMP/caddy" "$CADDY_BIN" run --adapter caddyfile --config "$E2E_TMP/caddy/Caddyfile"
RunUnprivileged "$E2E_TMP/haproxy.log" "$HAPROXY_BIN" -db -f "$E2E_TMP/haproxy/haproxy.cfg"
WaitForHttp "$CADDY_PORT" /users/ || Abort "caddy starts"
WaitForHttp "$HAPROXY_PORT" /users/ || Abort "haproxy starts"

ProxyChecks Caddy "$CADDY_PORT" "$K7"
ProxyChecks HAProxy "$HAPROXY_PORT" "$K8"
Sql -c "SELECT athena_keys.athena_set_key_rate_limit('$K1_ID', 5, '1 hour')" >/dev/null
Request "$HAPROXY_PORT" /users/1 -H "X-Athena-Key: $K1" -H "X-Athena-Client: web"
Check "HAProxy: an allowed request's RateLimit headers reach the client (http-response set-header)" \
  eval 'BodyContains 200 "upstream ok" && HasHeader RateLimit-Limit 5 && HasHeader RateLimit-Remaining 4 &&
        HasHeader RateLimit-Reset 720'
Request "$HAPROXY_PORT" /users/1 -H "X-Athena-Key: $K5" -H "X-Athena-Client: web"
Check "HAProxy: a key without limits: no RateLimit headers" \
  eval 'BodyContains 200 "upstream ok" && LacksHeader RateLimit-Limit'

# athena-authd down: both proxies answer 503 with the JSON body
StopHttpServices
StartNginx || Abort "nginx (the upstream) restarts"
Request "$CADDY_PORT" /users/1 -H "X-Athena-Key: $K1" -H "X-Athena-Client: web"
Check "Caddy: athena-authd down: 503 API key validation unavailable" DeniedWith 503 "API key validation unavailable"
Request "$HAPROXY_PORT" /users/1 -H "X-Athena-Key: $K1" -H "X-Athena-Client: web"
Check "HAProxy: athena-authd down: 503 API key validation unavailable" DeniedWith 503 "API key validation unavailable"

Finish
