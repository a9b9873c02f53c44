--------------------------------------------------------------------------
-- Triage views (no hashes, no salts).  The two views of the log are
-- security barriers: they show the failures of the last day, and a
-- caller's condition (a function of its own, in pg_temp) must see only
-- those, never the rows they leave out.
--------------------------------------------------------------------------

CREATE VIEW athena_keys.athena_key_status AS
SELECT k.id,
       k.public_id,
       k.name,
       k.description,
       k.client_name,
       CASE WHEN NOT k.is_active THEN 'inactive'
            WHEN k.expires_at <= now() THEN 'expired'
            WHEN k.virgin_mode AND NOT k.virgin_resolved THEN 'learning'
            WHEN k.virgin_mode THEN 'locked'
            ELSE 'active' END AS state,
       k.is_active,
       k.expires_at,
       ARRAY(SELECT g.right_name FROM athena_keys.api_key_right_grant g
              WHERE g.api_key_id = k.id ORDER BY g.right_name) AS rights,
       (SELECT count(*) FROM athena_keys.api_key_ip_rule r
         WHERE r.api_key_id = k.id AND r.list = 'whitelist') AS whitelist_size,
       (SELECT count(*) FROM athena_keys.api_key_ip_rule r
         WHERE r.api_key_id = k.id AND r.list = 'blacklist') AS blacklist_size,
       k.virgin_mode,
       k.virgin_request_count,
       k.virgin_until_n_requests,
       (SELECT count(*) FROM athena_keys.api_key_ip_seen s
         WHERE s.api_key_id = k.id) AS seen_ips,
       k.max_whitelist_ips,
       k.virgin_resolved,
       k.virgin_resolved_at,
       k.previous_valid_until AS rotation_grace_until,
       k.last_used_at,
       k.created_at,
       k.updated_at,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('requests', l.requests, 'per', l.per,
                                                     'burst', l.burst) ORDER BY l.per), '[]')
          FROM athena_keys.api_key_rate_limit l WHERE l.api_key_id = k.id) AS rate_limits
  FROM athena_keys.api_key k;

COMMENT ON VIEW athena_keys.athena_key_status IS
	'One row per key: state (active, inactive, expired, learning, locked), binding, rights, list sizes, learning progress, last use, rate limits.';

CREATE VIEW athena_keys.athena_recent_failures WITH (security_barrier) AS
SELECT l.created_at,
       l.failure_reason,
       l.status,
       l.allowed,
       l.enforced,
       l.api_key_id,
       l.api_key_public_id,
       k.name AS key_name,
       l.client_name,
       k.client_name AS key_client_name,
       l.remote_addr,
       l.required_rights,
       l.granted_rights,
       l.missing_rights,
       CASE l.failure_reason
           WHEN 'API key required' THEN
               'No key was presented and enforcement is on for client ' || coalesce(quote_literal(l.client_name), '(none)') || '.'
           WHEN 'Invalid API key' THEN
               CASE WHEN l.api_key_public_id IS NULL THEN 'The presented key is not of the form ath_{public_id}.{secret}.'
                    WHEN l.api_key_id IS NULL THEN 'No key has public id ' || l.api_key_public_id || '.'
                    ELSE 'The secret does not match key ' || l.api_key_public_id || ' (copied wrongly, or rotated).' END
           WHEN 'Inactive API key' THEN 'The key is deactivated (is_active = false).'
           WHEN 'Expired API key' THEN 'The key expired at ' || coalesce(k.expires_at::text, 'a time since changed') || '.'
           WHEN 'API key client mismatch' THEN
               'The key is bound to ' || coalesce(quote_literal(k.client_name), 'another client') ||
               ' but the request named ' || coalesce(quote_literal(l.client_name), 'no client') || '.'
           WHEN 'Insufficient API key rights' THEN
               'Missing ' || array_to_string(l.missing_rights, ', ') || '.'
           WHEN 'IP blocked' THEN 'The address matches a global or per-key blacklist entry.'
           WHEN 'IP not allowed' THEN 'A whitelist applies and the address is in none of its entries.'
           WHEN 'Client IP required' THEN 'IP rules or learning apply but the proxy passed no caller address.'
           WHEN 'Rate limit exceeded' THEN 'A rate limit of the key or of client ' || coalesce(quote_literal(l.client_name), '(none)') || ' had no units left.'
           WHEN 'API key policy unavailable' THEN 'The decision needed a write that this server cannot make (read-only or standby), or a rate limit bucket it could not have (athena_keys not preloaded, or its table full).'
       END AS explanation
  FROM athena_keys.api_key_auth_log l
  LEFT JOIN athena_keys.api_key k ON k.id = l.api_key_id
 WHERE l.failure_reason IS NOT NULL
   AND l.created_at >= now() - interval '1 day'
 ORDER BY l.created_at DESC, l.id DESC;

COMMENT ON VIEW athena_keys.athena_recent_failures IS
	'Failed decisions of the last 24 hours, newest first, with reason, key, client, address and an explanation.';

CREATE VIEW athena_keys.athena_failure_summary WITH (security_barrier) AS
SELECT l.failure_reason,
       l.api_key_id,
       l.api_key_public_id,
       k.name AS key_name,
       l.client_name,
       count(*) FILTER (WHERE l.created_at >= now() - interval '1 hour') AS last_hour,
       count(*) AS last_day,
       max(l.created_at) AS last_seen_at
  FROM athena_keys.api_key_auth_log l
  LEFT JOIN athena_keys.api_key k ON k.id = l.api_key_id
 WHERE l.failure_reason IS NOT NULL
   AND l.created_at >= now() - interval '1 day'
 GROUP BY l.failure_reason, l.api_key_id, l.api_key_public_id, k.name, l.client_name
 ORDER BY last_hour DESC, last_day DESC;

COMMENT ON VIEW athena_keys.athena_failure_summary IS
	'Failure counts per reason, key and client over the last hour and the last day.';

CREATE VIEW athena_keys.athena_ip_rules AS
SELECT 'key'::text AS scope, r.list, r.addr, r.api_key_id, k.public_id, NULL::text AS client_name,
       r.label, r.from_lock_in, r.created_at
  FROM athena_keys.api_key_ip_rule r JOIN athena_keys.api_key k ON k.id = r.api_key_id
UNION ALL
SELECT 'global', g.list, g.addr, NULL, NULL, g.client_name, g.label, false, g.created_at
  FROM athena_keys.api_key_global_ip_rule g;

COMMENT ON VIEW athena_keys.athena_ip_rules IS
	'Every whitelist and blacklist entry, global and per key, with where it came from.';

CREATE VIEW athena_keys.athena_ip_seen AS
SELECT s.api_key_id, k.public_id, k.name AS key_name, s.addr, s.first_seen_at, s.last_seen_at,
       s.hit_count, s.locked_in
  FROM athena_keys.api_key_ip_seen s JOIN athena_keys.api_key k ON k.id = s.api_key_id;

COMMENT ON VIEW athena_keys.athena_ip_seen IS
	'Addresses that learning keys have seen, and which of them lock-in whitelisted.';

CREATE VIEW athena_keys.athena_enforcement AS
SELECT NULL::text AS client_name, c.enforce_api_keys, c.fail_mode, c.updated_at
  FROM athena_keys.api_key_config c
UNION ALL
SELECT cc.client_name, cc.enforce_api_keys, NULL, cc.updated_at
  FROM athena_keys.api_key_client_config cc;

COMMENT ON VIEW athena_keys.athena_enforcement IS
	'Global enforcement and fail mode (client_name NULL), then per-client overrides.';

CREATE VIEW athena_keys.athena_rate_limits AS
SELECT CASE WHEN l.api_key_id IS NOT NULL THEN 'key' ELSE 'client' END AS scope,
       l.api_key_id, k.public_id, k.name AS key_name, l.client_name,
       l.requests, l.per, l.burst, l.created_at, l.updated_at
  FROM athena_keys.api_key_rate_limit l
  LEFT JOIN athena_keys.api_key k ON k.id = l.api_key_id;

COMMENT ON VIEW athena_keys.athena_rate_limits IS
	'Every rate limit, of a key or of a client name: requests per period and burst.';
