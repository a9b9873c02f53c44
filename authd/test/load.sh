#!/usr/bin/env bash
# Bounded load comparison on loopback: wrk through nginx -> athena-authd ->
# PostgreSQL (auth_request on every request) versus nginx serving the same
# upstream directly with no auth.  Prints requests/s for both and the ratio.
#
# LOAD_SECONDS (default 10), LOAD_THREADS (2), LOAD_CONNECTIONS (16),
# AUTHD_POOL (4).  Runs as root or as an unprivileged user; everything is
# torn down on exit.
set -uo pipefail
. "$(dirname "$0")/e2e_lib.sh"

SECONDS_PER_RUN=${LOAD_SECONDS:-10}
THREADS=${LOAD_THREADS:-2}
CONNECTIONS=${LOAD_CONNECTIONS:-16}
POOL=${AUTHD_POOL:-4}

command -v wrk >/dev/null || { echo "wrk is not installed"; exit 1; }
[ -f "$EXTENSION_CONTROL" ] || { echo "athena_keys is not installed ($EXTENSION_CONTROL)"; exit 1; }
SetupTempDir
EnsureAuthdBuilt || exit 1
StartPostgres || { echo "PostgreSQL did not start"; exit 1; }

AUTHD_PORT=$(pick_port)
NGINX_PORT=$(pick_port)
UPSTREAM_PORT=$(pick_port)
StartAuthd main "$AUTHD_PORT" ATHENA_AUTHD_DSN="$(GatewayDsn)" ATHENA_AUTHD_POOL="$POOL" \
  ATHENA_AUTHD_LOG=errors || exit 1
StartNginx || exit 1

Sql -c "SELECT athena_keys.athena_create_right('users.read')" >/dev/null || exit 1
read -r KEY _ < <(Sql -c "SELECT api_key || ' ' || id FROM athena_keys.athena_create_key(
  name => 'load', client_name => 'web', rights => ARRAY['users.read'])")

# RunWrk LABEL URL [wrk args...]: run wrk, print its summary, set RPS and NON_2XX
RunWrk() {
  local label=$1 url=$2 output
  shift 2
  output=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "$@" "$url")
  RPS=$(awk '/^Requests\/sec:/ {print $2}' <<<"$output")
  NON_2XX=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$output")
  NON_2XX=${NON_2XX:-0}
  echo "== $label: $url"
  # shellcheck disable=SC2001
  sed 's/^/   /' <<<"$output"
}

# sanity: the protected route really passes with the key
STATUS=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Athena-Key: $KEY" -H "X-Athena-Client: web" \
  "http://127.0.0.1:$NGINX_PORT/users/1")
[ "$STATUS" = 200 ] || { echo "protected route answered $STATUS, expected 200"; exit 1; }

RunWrk "nginx direct, no auth" "http://127.0.0.1:$UPSTREAM_PORT/users/1"
DIRECT_RPS=$RPS
RunWrk "nginx proxy, no auth" "http://127.0.0.1:$NGINX_PORT/noauth/1"
PROXY_RPS=$RPS
RunWrk "nginx + athena-authd + PostgreSQL" "http://127.0.0.1:$NGINX_PORT/users/1" \
  -H "X-Athena-Key: $KEY" -H "X-Athena-Client: web"
AUTH_RPS=$RPS
AUTH_NON_2XX=$NON_2XX
LOGGED=$(Sql -c "SELECT count(*) FROM athena_keys.api_key_auth_log WHERE status = 200")

echo
printf 'direct (no auth):        %12s req/s\n' "$DIRECT_RPS"
printf 'proxied (no auth):       %12s req/s\n' "$PROXY_RPS"
printf 'authenticated (authd):   %12s req/s  (pool %s, %s non-2xx, %s decisions logged)\n' \
  "$AUTH_RPS" "$POOL" "$AUTH_NON_2XX" "$LOGGED"
awk -v a="$AUTH_RPS" -v d="$DIRECT_RPS" -v p="$PROXY_RPS" 'BEGIN {
  printf "ratio authenticated/direct:  %.3f\n", a / d;
  printf "ratio authenticated/proxied: %.3f\n", a / p;
}'
[ "$AUTH_NON_2XX" = 0 ] || { echo "authenticated run had $AUTH_NON_2XX non-2xx responses"; exit 1; }
