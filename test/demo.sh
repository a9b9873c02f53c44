#!/usr/bin/env bash
# The main job, on a fresh Debian 12 machine (root or sudo): install the
# packages, build and install athena_keys, start a throwaway PostgreSQL as an
# unprivileged user, create the extension, issue keys, and print real
# verdicts for each kind of request plus the triage views.  The server is
# torn down on exit (KEEP=1 leaves it running and prints how to connect).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ensure_packages
build_and_install
[ "${KEEP:-0}" = 1 ] || trap stop_servers EXIT
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

if [ "${KEEP:-0}" = 1 ]; then
  echo
  echo "Server left running: PGHOST=$PGHOST PGPORT=$PGPORT psql -U postgres"
fi
