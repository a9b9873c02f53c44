#!/usr/bin/env bash
# Contract tests of athena-authd as Envoy's ext_authz HTTP service and as
# Traefik's forwardAuth server.  Neither proxy can be installed here, so
# each is modelled by a function that sends athena-authd exactly the
# request that proxy's HTTP client sends for a client request, and judges
# the answer the way that proxy does:
#
# Envoy ext_authz (HTTP service), configured as in README.md:
#   - request: the client's method, path_prefix + the client's path, its
#     Host, Content-Length: 0, and only Authorization plus the
#     allowed_headers (x-athena-key, x-athena-client, x-forwarded-for,
#     x-athena-rights, the last set by the route's header mutation);
#   - only status 200 allows; then the upstream request loses the headers
#     named in x-envoy-auth-headers-to-remove and gets the
#     allowed_upstream_headers of the answer, replacing client copies;
#   - any other status is a denial passed to the client with its body,
#     except 5xx, which becomes status_on_error (configured as 503).
# Traefik forwardAuth, configured as in README.md:
#   - request: GET to the address with all client headers, the
#     X-Forwarded-* headers replaced by Traefik's own (trustForwardHeader
#     false) and X-Athena-Rights set by a headers middleware before it;
#   - any 2xx allows; each authResponseHeaders name is removed from the
#     upstream request and set from the answer when it has one;
#   - anything else goes to the client as answered (status, body).
#
# Prints "ok N - ..." per check, then "N passed, N failed".
set -uo pipefail
. "$(dirname "$0")/e2e_lib.sh"
. "$(dirname "$0")/check_lib.sh"

ENVOY_PATH_PREFIX=/ext_authz
ENVOY_STATUS_ON_ERROR=503
ENVOY_ALLOWED_HEADERS="authorization x-athena-key x-athena-client x-forwarded-for x-athena-rights"
IDENTITY_HEADERS="x-athena-key-id x-athena-public-id x-athena-client"
CLIENT_IP=198.51.100.23

# HeaderValue NAME TEXT: the first value of a header in "Name: value" lines
HeaderValue() {
  grep -i "^$1:" <<<"$2" | head -n 1 | sed 's/^[^:]*: *//; s/ *$//'
}

# WithoutHeaders NAMES... <TEXT: the lines whose name is not listed
WithoutHeaders() {
  local pattern
  pattern=$(printf '%s\n' "$@" | sed 's/.*/^&:/' | paste -sd '|')
  grep -viE "$pattern" || true
}

# SendToAuthd PORT METHOD PATH HEADER_LINES: one request as a proxy sends it
# (curl's own User-Agent and Accept removed); sets STATUS, BODY, HEADERS
SendToAuthd() {
  local port=$1 method=$2 path=$3 lines=$4 args=(-H "User-Agent:" -H "Accept:") line
  while IFS= read -r line; do
    [ -n "$line" ] && args+=(-H "$line")
  done <<<"$lines"
  Request "$port" "$path" -X "$method" "${args[@]}"
}

# EnvoyCheck PORT METHOD PATH RIGHTS CLIENT_HEADER_LINES: Envoy's ext_authz
# for one client request.  Sets VERDICT (allow|deny), CLIENT_STATUS and
# CLIENT_BODY (deny) or UPSTREAM_HEADERS (allow).
EnvoyCheck() {
  local port=$1 method=$2 path=$3 rights=$4 client=$5 host xff authz_lines name value removed
  host=$(HeaderValue host "$client")
  # the edge Envoy (use_remote_address) appends the peer it saw
  xff=$(HeaderValue x-forwarded-for "$client")
  xff=${xff:+$xff,}$CLIENT_IP
  # the route's header mutation sets the rights, replacing a client copy
  client=$(WithoutHeaders x-athena-rights x-forwarded-for <<<"$client")
  client+=$'\n'"x-forwarded-for: $xff"$'\n'"x-athena-rights: $rights"
  authz_lines="Host: $host"$'\n'"Content-Length: 0"
  for name in $ENVOY_ALLOWED_HEADERS; do
    value=$(grep -i "^$name:" <<<"$client" | head -n 1)
    [ -n "$value" ] && authz_lines+=$'\n'"$value"
  done
  SendToAuthd "$port" "$method" "$ENVOY_PATH_PREFIX$path" "$authz_lines"
  if [ "$STATUS" = 200 ]; then
    VERDICT=allow
    removed=$(HeaderValue x-envoy-auth-headers-to-remove "$HEADERS" | tr ',' ' ')
    # shellcheck disable=SC2086  # word lists on purpose
    UPSTREAM_HEADERS=$(WithoutHeaders $removed $IDENTITY_HEADERS <<<"$client")
    for name in $IDENTITY_HEADERS; do
      if grep -qi "^$name:" <<<"$HEADERS"; then
        UPSTREAM_HEADERS+=$'\n'"$name: $(HeaderValue "$name" "$HEADERS")"
      fi
    done
  else
    VERDICT=deny
    CLIENT_STATUS=$STATUS
    CLIENT_BODY=$BODY
    if [[ "$STATUS" == 5* ]]; then
      CLIENT_STATUS=$ENVOY_STATUS_ON_ERROR
      CLIENT_BODY=""
    fi
  fi
}

# TraefikCheck PORT PATH RIGHTS CLIENT_HEADER_LINES: Traefik's forwardAuth
# for one client GET request; sets VERDICT and CLIENT_* or UPSTREAM_HEADERS
TraefikCheck() {
  local port=$1 path=$2 rights=$3 client=$4 host authz_lines name
  host=$(HeaderValue host "$client")
  # headers middleware before forwardAuth: the route's rights
  client=$(WithoutHeaders x-athena-rights <<<"$client")
  client+=$'\n'"X-Athena-Rights: $rights"
  authz_lines=$(WithoutHeaders x-forwarded-for x-forwarded-method x-forwarded-proto x-forwarded-host \
    x-forwarded-uri x-forwarded-port x-forwarded-prefix <<<"$client")
  authz_lines+=$'\n'"X-Forwarded-Method: GET"$'\n'"X-Forwarded-Proto: http"
  authz_lines+=$'\n'"X-Forwarded-Host: $host"$'\n'"X-Forwarded-Uri: $path"$'\n'"X-Forwarded-For: $CLIENT_IP"
  SendToAuthd "$port" GET / "$authz_lines"
  if [[ "$STATUS" == 2[0-9][0-9] ]]; then
    VERDICT=allow
    # shellcheck disable=SC2086
    UPSTREAM_HEADERS=$(WithoutHeaders $IDENTITY_HEADERS <<<"$client")
    for name in $IDENTITY_HEADERS; do
      if grep -qi "^$name:" <<<"$HEADERS"; then
        UPSTREAM_HEADERS+=$'\n'"$name: $(HeaderValue "$name" "$HEADERS")"
      fi
    done
    # a headers middleware after forwardAuth strips the key
    UPSTREAM_HEADERS=$(WithoutHeaders x-athena-key <<<"$UPSTREAM_HEADERS")
  else
    VERDICT=deny
    CLIENT_STATUS=$STATUS
    CLIENT_BODY=$BODY
  fi
}

# Allowed: the request reached the upstream
Allowed() {
  [ "$VERDICT" = allow ]
}

# DeniedToClient STATUS MESSAGE: the client got this status and JSON message
DeniedToClient() {
  [ "$VERDICT" = deny ] && [ "$CLIENT_STATUS" = "$1" ] &&
    [ "$CLIENT_BODY" = "{\"status\":\"error\",\"message\":\"$2\"}" ]
}

# UpstreamHas NAME VALUE: the upstream request carries exactly this value
UpstreamHas() {
  Allowed && [ "$(HeaderValue "$1" "$UPSTREAM_HEADERS")" = "$2" ]
}

# UpstreamLacks NAME: the upstream request has no such header
UpstreamLacks() {
  Allowed && ! grep -qi "^$1:" <<<"$UPSTREAM_HEADERS"
}

if [ ! -f "$EXTENSION_CONTROL" ]; then
  Abort "athena_keys extension installed ($EXTENSION_CONTROL missing: run make install first)"
fi
SetupTempDir
EnsureAuthdBuilt || Abort "athena-authd builds"
StartPostgres || Abort "PostgreSQL starts with CREATE EXTENSION athena_keys"
Sql >/dev/null <<'SQL' || Abort "test data set up"
SELECT athena_keys.athena_create_right('users.read');
SQL
# shellcheck disable=SC2034  # KW_ID is read inside eval
read -r KW KW_ID < <(Sql -c "SELECT api_key || ' ' || id FROM athena_keys.athena_create_key('web',
  client_name => 'web', rights => ARRAY['users.read'], ip_whitelist => ARRAY['198.51.100.0/24']::cidr[])")
read -r KU KU_ID < <(Sql -c "SELECT api_key || ' ' || id FROM athena_keys.athena_create_key('unbound', rights => ARRAY['*'])")
[ -n "${KU_ID:-}" ] || Abort "keys issued"
KW_PUBLIC=${KW#ath_}
KW_PUBLIC=${KW_PUBLIC%%.*}

AUTHD_PORT=$(pick_port)
StartAuthd authd "$AUTHD_PORT" ATHENA_AUTHD_DSN="$(GatewayDsn)" ATHENA_AUTHD_POOL=2 ATHENA_AUTHD_TIMEOUT_MS=1000 \
  ATHENA_AUTHD_LOG=all || Abort "athena-authd starts"
STATUS204_PORT=$(pick_port)
StartAuthd status204 "$STATUS204_PORT" ATHENA_AUTHD_DSN="$(GatewayDsn)" ATHENA_AUTHD_POOL=1 \
  ATHENA_AUTHD_ALLOW_STATUS=204 || Abort "athena-authd (allow_status 204) starts"

# ---------------------------------------------------------------- Envoy

EnvoyCheck "$AUTHD_PORT" GET /users/1 users.read $'Host: api.example\nx-athena-key: '"$KW"$'\nx-athena-client: web'
Check "Envoy: valid key is allowed (athena-authd answers 200, Envoy's only allow status)" Allowed
Check "Envoy: upstream gets X-Athena-Key-Id / Public-Id / Client" \
  eval 'UpstreamHas x-athena-key-id "$KW_ID" && UpstreamHas x-athena-public-id "$KW_PUBLIC" && UpstreamHas x-athena-client web'
Check "Envoy: x-envoy-auth-headers-to-remove keeps the key from the upstream" UpstreamLacks x-athena-key

EnvoyCheck "$AUTHD_PORT" POST /users/1 users.read $'Host: api.example\nx-athena-key: '"$KW"$'\nx-athena-client: web'
Check "Envoy: the client's method is forwarded (POST) and decided the same" Allowed

EnvoyCheck "$STATUS204_PORT" GET /users/1 users.read $'Host: api.example\nx-athena-key: '"$KW"$'\nx-athena-client: web'
Check "Envoy: allow_status = 204 would be a denial under Envoy (why 200 is the default)" \
  eval '[ "$VERDICT" = deny ] && [ "$CLIENT_STATUS" = 204 ]'

EnvoyCheck "$AUTHD_PORT" GET /users/1 users.read $'Host: api.example\nx-athena-key: '"$KU"$'\nx-athena-key-id: forged-id\nx-athena-client: web\nX-Athena-Public-Id: forged'
Check "Envoy: client-sent identity headers are replaced (key id)" UpstreamHas x-athena-key-id "$KU_ID"
Check "Envoy: an unbound key's empty X-Athena-Client replaces the client's 'web'" UpstreamHas x-athena-client ""
Check "Envoy: forged X-Athena-Public-Id replaced" eval '! grep -qi "forged" <<<"$UPSTREAM_HEADERS"'

EnvoyCheck "$AUTHD_PORT" GET /healthz users.read $'Host: api.example'
Check "Envoy: a client's /healthz on a protected route is an authorization check: 401" \
  DeniedToClient 401 "API key required"
ENVOY_PATH_PREFIX=""
EnvoyCheck "$AUTHD_PORT" GET /healthz users.read $'Host: api.example'
Check "Envoy without path_prefix: /healthz still needs a key: 401" DeniedToClient 401 "API key required"
ENVOY_PATH_PREFIX=/ext_authz

EnvoyCheck "$AUTHD_PORT" GET /users/1 users.read $'Host: api.example\nx-athena-key: bogus'
Check "Envoy: invalid key: the client gets 401 and the JSON body" DeniedToClient 401 "Invalid API key"
EnvoyCheck "$AUTHD_PORT" GET /users/1 gateway.query $'Host: api.example\nx-athena-key: '"$KW"$'\nx-athena-client: web\nx-athena-rights: users.read'
Check "Envoy: the route's rights win over a client's x-athena-rights: 403" \
  DeniedToClient 403 "Insufficient API key rights"
EnvoyCheck "$AUTHD_PORT" GET /users/1 users.read $'Host: api.example\nx-athena-key: '"$KW"$'\nx-athena-client: web\nx-forwarded-for: 10.1.1.1\nx-real-ip: 10.1.1.1'
Check "Envoy: spoofed X-Forwarded-For / X-Real-IP ignored, Envoy's appended hop decides: allowed" Allowed
EnvoyCheck "$AUTHD_PORT" GET /users/1 users.read $'Host: api.example\nx-api-key: '"$KU"
Check "Envoy: x-api-key is not a key source by default (and not an allowed header): 401" \
  DeniedToClient 401 "API key required"

# ---------------------------------------------------------------- Traefik

TraefikCheck "$AUTHD_PORT" /users/1 users.read $'Host: api.example\nX-Athena-Key: '"$KW"$'\nX-Athena-Client: web'
Check "Traefik: valid key is allowed (2xx)" Allowed
Check "Traefik: authResponseHeaders reach the upstream" \
  eval 'UpstreamHas x-athena-key-id "$KW_ID" && UpstreamHas x-athena-client web'
Check "Traefik: the key is stripped after forwardAuth" UpstreamLacks x-athena-key
TraefikCheck "$STATUS204_PORT" /users/1 users.read $'Host: api.example\nX-Athena-Key: '"$KW"$'\nX-Athena-Client: web'
Check "Traefik: allow_status = 204 is a 2xx too: allowed" Allowed
TraefikCheck "$AUTHD_PORT" /users/1 users.read $'Host: api.example\nX-Athena-Key: '"$KU"$'\nX-Athena-Key-Id: forged\nX-Athena-Client: web'
Check "Traefik: forged identity replaced, unbound key gives an empty client" \
  eval 'UpstreamHas x-athena-key-id "$KU_ID" && UpstreamHas x-athena-client ""'
TraefikCheck "$AUTHD_PORT" /users/1 users.read $'Host: api.example\nX-Athena-Key: '"$KW"$'\nX-Athena-Client: web\nX-Forwarded-For: 10.1.1.1\nX-Real-IP: 10.1.1.1'
Check "Traefik: client X-Forwarded-For replaced, X-Real-IP ignored: the whitelisted peer decides" Allowed
TraefikCheck "$AUTHD_PORT" /users/1 users.read $'Host: api.example\nX-Athena-Key: '"$KW"
Check "Traefik: bound key without client: 403 passed to the client" DeniedToClient 403 "API key client mismatch"
TraefikCheck "$AUTHD_PORT" /healthz users.read $'Host: api.example'
Check "Traefik: /healthz (any forwarded URI) needs a key: 401" DeniedToClient 401 "API key required"

# ---------------------------------------------------------------- database down

StopPostgresServer || Abort "PostgreSQL stops"
EnvoyCheck "$AUTHD_PORT" GET /users/1 users.read $'Host: api.example\nx-athena-key: '"$KW"$'\nx-athena-client: web'
Check "Envoy, database down (fail_closed): athena-authd's 503 becomes status_on_error 503" \
  eval '[ "$VERDICT" = deny ] && [ "$CLIENT_STATUS" = 503 ] && [ "$STATUS" = 503 ]'
TraefikCheck "$AUTHD_PORT" /users/1 users.read $'Host: api.example\nX-Athena-Key: '"$KW"$'\nX-Athena-Client: web'
Check "Traefik, database down (fail_closed): 503 with the JSON body" \
  DeniedToClient 503 "API key validation unavailable"

Finish
