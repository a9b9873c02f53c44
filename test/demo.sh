#!/usr/bin/env bash
# The main job, on a fresh Debian 12 machine (root or sudo): install the
# packages, build and install athena_keys, start a throwaway PostgreSQL as an
# unprivileged user, create the extension, issue keys, and print real
# verdicts for each kind of request plus the triage views.  Then the same
# over HTTP: build athena-authd, run it and nginx (auth_request) in front of a
# tiny upstream on loopback ports, and print real curl requests with their
# status and answer.  Everything is torn down on exit (KEEP=1 leaves the
# server, athena-authd and nginx running and prints how to reach them).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# WaitForHttp, StartAuthd, StartNginx, StopHttpServices
. "$(dirname "$0")/../authd/test/e2e_lib.sh"

ensure_packages
grep -q http_auth_request <<<"$("$NGINX_BIN" -V 2>&1)" ||
  { echo "$NGINX_BIN has no auth_request module"; exit 1; }
build_and_install
[ "${KEEP:-0}" = 1 ] || trap 'StopHttpServices; stop_servers' EXIT
start_server demo 54330

psql -X -q -v ON_ERROR_STOP=1 <<'SQL'
\pset null '·'
\echo
\echo '== CREATE EXTENSION athena_keys, and two roles: a gateway that may only authenticate, an admin'
CREATE EXTENSION athena_keys;
CREATE ROLE demo_gateway;
CREATE ROLE demo_admin;
SELECT athena_keys.athena_grant_gateway_role('demo_gateway') \g /dev/null
SELECT athena_keys.athena_grant_admin_role('demo_admin') \g /dev/null

\echo
\echo '== As demo_admin: issue keys (the plaintext is returned once, here)'
SET ROLE demo_admin;
SELECT athena_keys.athena_create_right('users.read', 'Read the users resource') \g /dev/null
SELECT api_key AS web_key, id AS web_id FROM athena_keys.athena_create_key(
    'web-frontend', client_name => 'web', rights => ARRAY['users.read', 'gateway.query'],
    ip_whitelist => ARRAY['10.20.0.0/16']::cidr[]) \gset
SELECT api_key AS batch_key FROM athena_keys.athena_create_key(
    'nightly-batch', rights => ARRAY['*.read'], expires_at => now() + interval '30 days') \gset
SELECT api_key AS old_key, id AS old_id FROM athena_keys.athena_create_key(
    'retired-service', rights => ARRAY['users.read']) \gset
SELECT api_key AS expired_key, id AS expired_id FROM athena_keys.athena_create_key(
    'expired-partner', rights => ARRAY['users.read']) \gset
SELECT api_key AS edge_key, id AS edge_id FROM athena_keys.athena_create_key(
    'edge-agent', rights => ARRAY['users.read'],
    virgin_mode => true, virgin_until_n_requests => 4, max_whitelist_ips => 2) \gset
SELECT athena_keys.athena_set_key_active(:'old_id', false) \g /dev/null
SELECT athena_keys.athena_set_key_expiry(:'expired_id', now() - interval '1 day') \g /dev/null
SELECT athena_keys.athena_add_ip_rule('blacklist', '203.0.113.0/24', label => 'abuse range') \g /dev/null
\echo 'web-frontend plaintext key (shown once):' :web_key
SELECT name, public_id, state, client_name, rights, whitelist_size, blacklist_size
  FROM athena_keys.athena_key_status ORDER BY name;

\echo
\echo '== As demo_gateway: one call per request, one verdict each'
SET ROLE demo_gateway;
SELECT r.request, a.allowed, a.status, a.reason, a.authenticated, a.authorized, a.public_id
  FROM (VALUES
    (1, 'valid key, right client, whitelisted IP', :'web_key', 'web', '10.20.3.4'::inet, ARRAY['users.read']),
    (2, 'no key', NULL, 'web', '10.20.3.4', ARRAY['users.read']),
    (3, 'garbage key', 'Bearer 12345', 'web', '10.20.3.4', ARRAY['users.read']),
    (4, 'wrong secret', left(:'web_key', -4) || 'beef', 'web', '10.20.3.4', ARRAY['users.read']),
    (5, 'deactivated key', :'old_key', 'web', '10.20.3.4', ARRAY['users.read']),
    (6, 'expired key', :'expired_key', 'web', '10.20.3.4', ARRAY['users.read']),
    (7, 'key of client web used by mobile', :'web_key', 'mobile', '10.20.3.4', ARRAY['users.read']),
    (8, 'route needs users.write', :'web_key', 'web', '10.20.3.4', ARRAY['users.write']),
    (9, 'caller on the global blacklist', :'batch_key', 'batch', '203.0.113.9', ARRAY['orders.read']),
    (10, 'caller outside the key''s whitelist', :'web_key', 'web', '192.0.2.1', ARRAY['users.read']),
    (11, 'proxy passed no caller IP', :'web_key', 'web', NULL, ARRAY['users.read']),
    (12, 'wildcard *.read covers orders.read', :'batch_key', 'batch', '198.51.100.7', ARRAY['orders.read'])
  ) AS r(n, request, key, client, ip, rights),
  LATERAL athena_keys.athena_authenticate(r.key, r.client, r.ip, r.rights) AS a
 ORDER BY r.n;

\echo
\echo '== A learning key: records caller IPs, then locks in at max_whitelist_ips = 2 distinct'
SELECT g AS call, ip, a.allowed, a.status, a.reason, a.locked_in
  FROM (VALUES (1, '198.51.100.10'::inet), (2, '198.51.100.10'), (3, '198.51.100.11'),
               (4, '198.51.100.12'), (5, '198.51.100.11')) AS c(g, ip),
  LATERAL athena_keys.athena_authenticate(:'edge_key', 'edge', c.ip, ARRAY['users.read']) AS a
 ORDER BY g;

\echo
\echo '== Shadow mode: enforcement off for client "legacy" reports what would fail but allows'
RESET ROLE;
SET ROLE demo_admin;
SELECT athena_keys.athena_set_client_enforcement('legacy', false) \g /dev/null
SET ROLE demo_gateway;
SELECT allowed, status, reason, enforced
  FROM athena_keys.athena_authenticate('ath_not.a.key', 'legacy', '10.20.3.4', NULL);

\echo
\echo '== The gateway role cannot read hashes or the log'
\set ON_ERROR_STOP 0
SELECT key_hash FROM athena_keys.api_key LIMIT 1;
SELECT count(*) FROM athena_keys.api_key_auth_log;
\set ON_ERROR_STOP 1

\echo
\echo '== Triage (as demo_admin): athena_recent_failures explains each rejection'
RESET ROLE;
SET ROLE demo_admin;
SELECT failure_reason, status, key_name, client_name, remote_addr, explanation
  FROM athena_keys.athena_recent_failures;
\echo
\echo '== athena_failure_summary: counts per reason, key and client'
SELECT failure_reason, key_name, client_name, last_hour, last_day FROM athena_keys.athena_failure_summary;
\echo
\echo '== athena_key_status after the traffic (learning progress, lock-in, last use)'
SELECT name, state, virgin_request_count, seen_ips, whitelist_size, last_used_at IS NOT NULL AS used
  FROM athena_keys.athena_key_status ORDER BY name;
\echo
\echo '== athena_ip_seen: what edge-agent learned, and what lock-in whitelisted'
SELECT key_name, addr, hit_count, locked_in FROM athena_keys.athena_ip_seen ORDER BY addr;
SQL

# ---------------------------------------------------------------- HTTP

echo
echo '== HTTP: build athena-authd; a LOGIN gateway role for it, and a key for the curl requests'
build_authd --clean "$WORK_DIR/src/authd"
# shellcheck disable=SC2034  # read by StartAuthd
AUTHD_BIN=$WORK_DIR/src/authd/athena-authd
create_gateway_login demo_authd
HTTP_KEY=$(psql -X -q -At -v ON_ERROR_STOP=1 <<'SQL'
SET ROLE demo_admin;
SELECT api_key FROM athena_keys.athena_create_key(
    'http-demo', client_name => 'web', rights => ARRAY['users.read']);
SQL
)
echo "http-demo plaintext key (shown once): $HTTP_KEY"
psql -X -q -v ON_ERROR_STOP=1 -c 'SET ROLE demo_admin' -c "
SELECT name, id, public_id, state, client_name, rights, whitelist_size
  FROM athena_keys.athena_key_status WHERE name = 'http-demo'"

# athena-authd and nginx live in the work dir, on free loopback ports, and run
# as the unprivileged user when we are root
E2E_TMP=$WORK_DIR/http
as_user mkdir -p "$E2E_TMP"
# shellcheck disable=SC2034  # read by StartAuthd / StartNginx
DAEMON_USER=$(run_user)
AUTHD_PORT=$(pick_port)
NGINX_PORT=$(pick_port)
UPSTREAM_PORT=$(pick_port)
AUTHD_DSN="host=127.0.0.1 port=$PGPORT user=demo_authd dbname=postgres"
StartAuthd authd "$AUTHD_PORT" ATHENA_AUTHD_DSN="$AUTHD_DSN" ATHENA_AUTHD_POOL=2 ATHENA_AUTHD_LOG=all
StartNginx
HTTP_START=$(psql -X -At -c 'SELECT clock_timestamp()')

# HttpLine DESCRIPTION URL [curl args...]: one real request, one line:
# description, HTTP status, answer (the body; for 204 the identity headers;
# for a bodyless denial X-Athena-Error)
HttpLine() {
  local description=$1 url=$2 status body headers answer
  shift 2
  status=$(curl -s -o "$E2E_TMP/body" -D "$E2E_TMP/headers" -w '%{http_code}' --max-time 10 "$@" "$url") || true
  body=$(cat "$E2E_TMP/body" 2>/dev/null || true)
  headers=$(tr -d '\r' <"$E2E_TMP/headers" 2>/dev/null || true)
  # athena-authd sends every identity header, blank when there is none
  answer=$(grep -i '^X-Athena-' <<<"$headers" | grep -vi '^X-Athena-Error:' | grep -v ':[[:space:]]*$' |
    sed ':a;N;$!ba;s/\n/, /g' || true)
  if [[ $status == 20[04] && -n $answer ]]; then
    :
  elif [ -n "$body" ]; then
    answer=$body
    grep -qiF "X-Athena-Error: $body" <<<"$headers" && answer="$answer (also in X-Athena-Error)"
  else
    answer=$(grep -i '^X-Athena-Error:' <<<"$headers" || true)
  fi
  printf '  %-56s %3s  %s\n' "$description" "$status" "$answer"
}

echo
echo "== HTTP through nginx auth_request -> athena-authd (as demo_authd) -> athena_authenticate()"
echo "   nginx 127.0.0.1:$NGINX_PORT, athena-authd 127.0.0.1:$AUTHD_PORT, upstream 127.0.0.1:$UPSTREAM_PORT (echoes the identity headers)"
echo "   routes: /users/* needs users.read, /query needs gateway.query; KEY = the http-demo key above (client web);"
echo "   athena-authd trusts loopback proxies, so it takes the caller IP from nginx's X-Forwarded-For"
echo "   each line: curl -H 'X-Athena-Key: \$KEY' -H 'X-Athena-Client: web' [changes] http://127.0.0.1:$NGINX_PORT<path>"
echo
NGINX_URL=http://127.0.0.1:$NGINX_PORT
HttpLine "valid key, client web, GET /users/1" "$NGINX_URL/users/1" \
  -H "X-Athena-Key: $HTTP_KEY" -H "X-Athena-Client: web"
HttpLine "no X-Athena-Key" "$NGINX_URL/users/1" -H "X-Athena-Client: web"
HttpLine "invalid key: last 4 characters of the secret changed" "$NGINX_URL/users/1" \
  -H "X-Athena-Key: ${HTTP_KEY%????}beef" -H "X-Athena-Client: web"
HttpLine "client mismatch: X-Athena-Client: mobile" "$NGINX_URL/users/1" \
  -H "X-Athena-Key: $HTTP_KEY" -H "X-Athena-Client: mobile"
HttpLine "missing right: GET /query needs gateway.query" "$NGINX_URL/query" \
  -H "X-Athena-Key: $HTTP_KEY" -H "X-Athena-Client: web"
HttpLine "blacklisted caller: X-Forwarded-For: 203.0.113.9" "$NGINX_URL/users/1" \
  -H "X-Athena-Key: $HTTP_KEY" -H "X-Athena-Client: web" -H "X-Forwarded-For: 203.0.113.9"

echo
echo "== The same check straight to athena-authd (what nginx's auth_request subrequest gets back)"
echo "   curl -H 'X-Athena-Key: \$KEY' -H 'X-Athena-Client: web' -H 'X-Athena-Rights: <rights>' http://127.0.0.1:$AUTHD_PORT/auth"
echo
HttpLine "allowed, X-Athena-Rights: users.read" "http://127.0.0.1:$AUTHD_PORT/auth" \
  -H "X-Athena-Key: $HTTP_KEY" -H "X-Athena-Client: web" -H "X-Athena-Rights: users.read"
HttpLine "denied, X-Athena-Rights: users.read,gateway.query" "http://127.0.0.1:$AUTHD_PORT/auth" \
  -H "X-Athena-Key: $HTTP_KEY" -H "X-Athena-Client: web" -H "X-Athena-Rights: users.read,gateway.query"

echo
echo '== Triage (as demo_admin): the HTTP denials in athena_recent_failures, with the forwarded address'
psql -X -q -v ON_ERROR_STOP=1 -v since="$HTTP_START" <<'SQL'
\pset null '·'
SET ROLE demo_admin;
SELECT failure_reason, status, key_name, client_name, remote_addr, explanation
  FROM athena_keys.athena_recent_failures WHERE created_at >= :'since';
SQL

if [ "${KEEP:-0}" = 1 ]; then
  echo
  echo "Server left running: PGHOST=$PGHOST PGPORT=$PGPORT psql -U postgres"
  echo "athena-authd (pid$AUTHD_PIDS) on 127.0.0.1:$AUTHD_PORT, log $E2E_TMP/authd.log"
  echo "nginx (pid $NGINX_PID) on 127.0.0.1:$NGINX_PORT, config $E2E_TMP/nginx/nginx.conf"
  echo "  curl -i -H 'X-Athena-Key: $HTTP_KEY' -H 'X-Athena-Client: web' $NGINX_URL/users/1"
  echo "Stop them with: kill$AUTHD_PIDS; kill -QUIT $NGINX_PID; and the server (as $(run_user)):"
  echo "  $PG_BIN/pg_ctl -D $SERVER_DIR/data -m fast stop"
fi
