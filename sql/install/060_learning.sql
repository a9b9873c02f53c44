--------------------------------------------------------------------------
-- Learning: keys in virgin mode record the addresses they see and lock in.
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys._ipv4_unmapped(addr inet) RETURNS inet
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
-- An IPv4-mapped IPv6 address or network (inside ::ffff:0:0/96) as the IPv4
-- one it denotes, anything else unchanged: the rule matching of the C code
-- (ip_rules.c) treats both spellings alike, and so must SQL that judges
-- the same rules.
SELECT CASE
	WHEN family(addr) = 6 AND masklen(addr) >= 96
	     AND addr OPERATOR(pg_catalog.<<=) '::ffff:0:0/96'::inet
	THEN set_masklen('0.0.0.0'::inet OPERATOR(pg_catalog.+)
	                 (host(addr)::inet OPERATOR(pg_catalog.-) '::ffff:0.0.0.0'::inet),
	                 masklen(addr) - 96)
	ELSE addr
END
$$;

CREATE FUNCTION athena_keys._learn(key_id uuid, ip inet) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- One learning observation for a key in virgin mode, under the key's row
-- lock so that the count is exact and lock-in happens once.  Returns
-- 'learning', 'locked_in' (this call completed lock-in), or, when another
-- call resolved the key first, 'whitelisted' / 'not_whitelisted' from the
-- committed per-key whitelist.  The row the lock returns is the newest: a
-- key deleted, deactivated or expired (by the decision's clock: the
-- calling statement's start, or the transaction's when later) while this
-- call waited for it returns 'deleted', 'inactive' or 'expired', which the
-- decision answers as such.
DECLARE
	k record;
	request_count bigint;
	distinct_ips bigint;
BEGIN
	SELECT virgin_mode, virgin_resolved, virgin_until_n_requests, max_whitelist_ips,
	       is_active, expires_at
	  INTO k
	  FROM athena_keys.api_key WHERE id = key_id FOR UPDATE;
	IF NOT FOUND THEN
		RETURN 'deleted';
	ELSIF NOT k.is_active THEN
		RETURN 'inactive';
	ELSIF k.expires_at <= GREATEST(now(), statement_timestamp()) THEN
		RETURN 'expired';
	ELSIF NOT k.virgin_mode THEN
		RETURN 'not_learning';
	END IF;
	IF k.virgin_resolved THEN
		IF EXISTS (SELECT 1 FROM athena_keys.api_key_ip_rule r
		            WHERE r.api_key_id = key_id AND r.list = 'whitelist') AND
		   NOT EXISTS (SELECT 1 FROM athena_keys.api_key_ip_rule r
		                WHERE r.api_key_id = key_id AND r.list = 'whitelist'
		                  AND athena_keys._ipv4_unmapped(r.addr) OPERATOR(pg_catalog.>>=)
		                      athena_keys._ipv4_unmapped(ip)) THEN
			RETURN 'not_whitelisted';
		END IF;
		RETURN 'whitelisted';
	END IF;

	-- clock_timestamp(): calls inside one transaction still order by arrival.
	INSERT INTO athena_keys.api_key_ip_seen AS s (api_key_id, addr, first_seen_at, last_seen_at)
	VALUES (key_id, ip, clock_timestamp(), clock_timestamp())
	ON CONFLICT (api_key_id, addr) DO UPDATE
	   SET hit_count = s.hit_count + 1, last_seen_at = clock_timestamp();

	UPDATE athena_keys.api_key
	   SET virgin_request_count = virgin_request_count + 1, last_used_at = now()
	 WHERE id = key_id
	RETURNING virgin_request_count INTO request_count;

	IF k.max_whitelist_ips > 0 THEN
		SELECT count(*) INTO distinct_ips
		  FROM athena_keys.api_key_ip_seen WHERE api_key_id = key_id;
	END IF;

	IF (k.virgin_until_n_requests > 0 AND request_count >= k.virgin_until_n_requests) OR
	   (k.max_whitelist_ips > 0 AND distinct_ips >= k.max_whitelist_ips) THEN
		PERFORM athena_keys._lock_in(key_id);
		RETURN 'locked_in';
	END IF;
	RETURN 'learning';
END
$$;

CREATE FUNCTION athena_keys._lock_in(key_id uuid) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Copy seen IPs into the per-key whitelist, earliest first, capped by
-- max_whitelist_ips when positive; mark them locked_in; resolve the key.
-- The caller holds the key's row lock.  Returns the entries created.
DECLARE
	cap integer;
	created integer;
BEGIN
	SELECT max_whitelist_ips INTO cap FROM athena_keys.api_key WHERE id = key_id;

	WITH chosen AS (
		SELECT addr FROM athena_keys.api_key_ip_seen
		 WHERE api_key_id = key_id
		 ORDER BY first_seen_at, addr
		 LIMIT CASE WHEN cap > 0 THEN cap END
	), marked AS (
		UPDATE athena_keys.api_key_ip_seen s SET locked_in = true
		  FROM chosen c WHERE s.api_key_id = key_id AND s.addr = c.addr
		RETURNING s.addr
	)
	INSERT INTO athena_keys.api_key_ip_rule (api_key_id, list, addr, label, from_lock_in)
	SELECT key_id, 'whitelist', m.addr::cidr, 'learned', true FROM marked m
	ON CONFLICT (api_key_id, list, addr) DO NOTHING;
	GET DIAGNOSTICS created = ROW_COUNT;

	UPDATE athena_keys.api_key
	   SET virgin_resolved = true, virgin_resolved_at = now()
	 WHERE id = key_id;
	RETURN created;
END
$$;
