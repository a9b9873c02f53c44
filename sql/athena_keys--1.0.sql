-- athena_keys 1.0: gateway API keys decided in one SQL call.
-- Every object lives in schema athena_keys; PUBLIC is granted nothing.

\echo Use "CREATE EXTENSION athena_keys" to load this file. \quit

--------------------------------------------------------------------------
-- Tables
--------------------------------------------------------------------------

CREATE TABLE athena_keys.api_key (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	public_id text NOT NULL UNIQUE
		CONSTRAINT api_key_public_id_format CHECK (public_id ~ '^[0-9A-Za-z_-]{8,64}$'),
	name text NOT NULL
		CONSTRAINT api_key_name_length CHECK (length(name) BETWEEN 1 AND 200),
	description text
		CONSTRAINT api_key_description_length CHECK (length(description) <= 2000),
	client_name text
		CONSTRAINT api_key_client_name_format CHECK (length(client_name) BETWEEN 1 AND 256),
	key_salt text NOT NULL
		CONSTRAINT api_key_salt_format CHECK (key_salt ~ '^[!-~]+$' AND length(key_salt) <= 256),
	key_hash text NOT NULL
		CONSTRAINT api_key_hash_format CHECK (key_hash ~ '^[0-9a-f]{64}$'),
	-- The secret before the last rotation, honoured until previous_valid_until.
	previous_key_salt text
		CONSTRAINT api_key_previous_salt_format CHECK (previous_key_salt ~ '^[!-~]+$' AND length(previous_key_salt) <= 256),
	previous_key_hash text
		CONSTRAINT api_key_previous_hash_format CHECK (previous_key_hash ~ '^[0-9a-f]{64}$'),
	previous_valid_until timestamptz,
	is_active boolean NOT NULL DEFAULT true,
	expires_at timestamptz,
	last_used_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	virgin_mode boolean NOT NULL DEFAULT false,
	virgin_until_n_requests integer NOT NULL DEFAULT 0
		CONSTRAINT api_key_virgin_until_nonnegative CHECK (virgin_until_n_requests >= 0),
	max_whitelist_ips integer NOT NULL DEFAULT 0
		CONSTRAINT api_key_max_whitelist_nonnegative CHECK (max_whitelist_ips >= 0),
	virgin_request_count bigint NOT NULL DEFAULT 0
		CONSTRAINT api_key_virgin_count_nonnegative CHECK (virgin_request_count >= 0),
	virgin_resolved boolean NOT NULL DEFAULT false,
	virgin_resolved_at timestamptz,
	CONSTRAINT api_key_virgin_threshold CHECK
		(NOT virgin_mode OR virgin_until_n_requests > 0 OR max_whitelist_ips > 0),
	CONSTRAINT api_key_virgin_resolution CHECK
		(virgin_resolved = (virgin_resolved_at IS NOT NULL)),
	CONSTRAINT api_key_previous_complete CHECK
		((previous_key_salt IS NULL) = (previous_key_hash IS NULL) AND
		 (previous_key_hash IS NULL) = (previous_valid_until IS NULL))
) WITH (fillfactor = 80);

COMMENT ON TABLE athena_keys.api_key IS
	'One row per gateway API key. The secret is never stored: key_hash is SHA-256 of key_salt:secret.';

CREATE TABLE athena_keys.api_key_right (
	name text PRIMARY KEY
		CONSTRAINT api_key_right_name_format CHECK (name ~ '^[A-Za-z0-9_.*:-]{1,200}$'),
	description text,
	native boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE athena_keys.api_key_right IS
	'The right catalog; a right (or wildcard pattern) must be listed here before it can be granted.';

CREATE TABLE athena_keys.api_key_right_grant (
	api_key_id uuid NOT NULL REFERENCES athena_keys.api_key (id) ON DELETE CASCADE,
	right_name text NOT NULL REFERENCES athena_keys.api_key_right (name)
		ON DELETE CASCADE ON UPDATE CASCADE,
	granted_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (api_key_id, right_name)
);
CREATE INDEX api_key_right_grant_right_idx ON athena_keys.api_key_right_grant (right_name);

-- Per-key whitelist and blacklist entries.
CREATE TABLE athena_keys.api_key_ip_rule (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	api_key_id uuid NOT NULL REFERENCES athena_keys.api_key (id) ON DELETE CASCADE,
	list text NOT NULL CONSTRAINT api_key_ip_rule_list CHECK (list IN ('whitelist', 'blacklist')),
	addr cidr NOT NULL,
	label text CONSTRAINT api_key_ip_rule_label_length CHECK (length(label) <= 200),
	-- true for entries that lock-in created; reset removes only those.
	from_lock_in boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now(),
	UNIQUE (api_key_id, list, addr)
);

-- Global whitelist and blacklist entries; client_name NULL = every client.
CREATE TABLE athena_keys.api_key_global_ip_rule (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	list text NOT NULL CONSTRAINT api_key_global_ip_rule_list CHECK (list IN ('whitelist', 'blacklist')),
	addr cidr NOT NULL,
	client_name text CONSTRAINT api_key_global_ip_rule_client CHECK (length(client_name) BETWEEN 1 AND 256),
	label text CONSTRAINT api_key_global_ip_rule_label_length CHECK (length(label) <= 200),
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX api_key_global_ip_rule_unique
	ON athena_keys.api_key_global_ip_rule (list, addr, (coalesce(client_name, '')));

-- Learning observations of keys in virgin mode.
CREATE TABLE athena_keys.api_key_ip_seen (
	api_key_id uuid NOT NULL REFERENCES athena_keys.api_key (id) ON DELETE CASCADE,
	addr inet NOT NULL,
	first_seen_at timestamptz NOT NULL DEFAULT now(),
	last_seen_at timestamptz NOT NULL DEFAULT now(),
	hit_count bigint NOT NULL DEFAULT 1 CONSTRAINT api_key_ip_seen_hits CHECK (hit_count >= 1),
	locked_in boolean NOT NULL DEFAULT false,
	PRIMARY KEY (api_key_id, addr)
);

-- The single global configuration row.
CREATE TABLE athena_keys.api_key_config (
	id boolean PRIMARY KEY DEFAULT true CONSTRAINT api_key_config_single_row CHECK (id),
	enforce_api_keys boolean NOT NULL DEFAULT true,
	fail_mode text NOT NULL DEFAULT 'fail_closed'
		CONSTRAINT api_key_config_fail_mode CHECK (fail_mode IN ('fail_closed', 'fail_open')),
	updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE athena_keys.api_key_client_config (
	client_name text PRIMARY KEY
		CONSTRAINT api_key_client_config_name CHECK (length(client_name) BETWEEN 1 AND 256),
	enforce_api_keys boolean NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per decision.  No foreign key: log rows outlive deleted keys.
-- Partitioned by day (UTC) so that retention drops whole partitions; rows
-- for days without a partition land in the default partition.
CREATE SEQUENCE athena_keys.api_key_auth_log_id_seq;
CREATE TABLE athena_keys.api_key_auth_log (
	id bigint NOT NULL DEFAULT nextval('athena_keys.api_key_auth_log_id_seq'),
	created_at timestamptz NOT NULL DEFAULT now(),
	api_key_id uuid,
	api_key_public_id text,
	client_name text,
	remote_addr inet,
	required_rights text[],
	granted_rights text[],
	missing_rights text[],
	authenticated boolean NOT NULL,
	authorized boolean NOT NULL,
	enforced boolean NOT NULL,
	allowed boolean NOT NULL,
	status smallint NOT NULL,
	failure_reason text,
	locked_in boolean NOT NULL DEFAULT false
) PARTITION BY RANGE (created_at);
ALTER SEQUENCE athena_keys.api_key_auth_log_id_seq OWNED BY athena_keys.api_key_auth_log.id;
CREATE TABLE athena_keys.api_key_auth_log_default
	PARTITION OF athena_keys.api_key_auth_log DEFAULT;
CREATE INDEX api_key_auth_log_created_at_idx ON athena_keys.api_key_auth_log (created_at);
CREATE INDEX api_key_auth_log_failures_idx ON athena_keys.api_key_auth_log (created_at)
	WHERE failure_reason IS NOT NULL;

COMMENT ON TABLE athena_keys.api_key_auth_log IS
	'One row per athena_authenticate decision. Never holds a secret or the digest of a presented key.';

--------------------------------------------------------------------------
-- Seed data
--------------------------------------------------------------------------

INSERT INTO athena_keys.api_key_config DEFAULT VALUES;

INSERT INTO athena_keys.api_key_right (name, description, native) VALUES
	('*', 'Every right', true),
	('gateway.*', 'Every gateway right', true),
	('gateway.read', 'Read any resource through the gateway', true),
	('gateway.write', 'Insert or update any resource through the gateway', true),
	('gateway.delete', 'Delete from any resource through the gateway', true),
	('gateway.query', 'Run raw SQL through /gateway/query and /gateway/sql', true),
	('gateway.rpc.execute', 'Call functions through /gateway/rpc', true),
	('gateway.storage_proxy', 'Use the storage proxy routes', true),
	('gateway.typesense_proxy', 'Use the Typesense proxy routes', true),
	('management.read', 'Read management metadata', true),
	('management.tables.write', 'Create or alter tables', true),
	('management.tables.drop', 'Drop tables', true),
	('management.columns.drop', 'Drop columns', true),
	('management.indexes.write', 'Create indexes', true),
	('management.indexes.drop', 'Drop indexes', true),
	('management.extensions.write', 'Install extensions', true),
	('management.functions.read', 'Read function definitions', true),
	('management.functions.write', 'Create or replace functions', true),
	('management.functions.drop', 'Drop functions', true),
	('management.provision.write', 'Provision databases', true),
	('*.read', 'Read on any resource', true),
	('*.write', 'Write on any resource', true),
	('*.delete', 'Delete on any resource', true);

--------------------------------------------------------------------------
-- pg_dump support
--------------------------------------------------------------------------

-- The seeded config row would collide with the dumped one on restore, so an
-- insert of a second row turns into an update of the existing one.
CREATE FUNCTION athena_keys._config_insert_as_update() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	UPDATE athena_keys.api_key_config
	   SET enforce_api_keys = NEW.enforce_api_keys,
	       fail_mode = NEW.fail_mode,
	       updated_at = NEW.updated_at
	 WHERE id = NEW.id;
	IF FOUND THEN
		RETURN NULL;
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER api_key_config_insert_as_update
	BEFORE INSERT ON athena_keys.api_key_config
	FOR EACH ROW EXECUTE FUNCTION athena_keys._config_insert_as_update();

SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key', '');
SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_right', 'WHERE NOT native');
SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_right_grant', '');
SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_ip_rule', '');
SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_global_ip_rule', '');
SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_ip_seen', '');
SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_config', '');
SELECT pg_catalog.pg_extension_config_dump('athena_keys.api_key_client_config', '');

--------------------------------------------------------------------------
-- Cache invalidation: every backend drops its cached config, rules and keys
-- when a change to them commits (relcache callbacks, no timers).
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys._invalidate_caches() RETURNS trigger
	AS 'MODULE_PATHNAME', 'athena_invalidate_caches' LANGUAGE C;

CREATE TRIGGER api_key_config_invalidate
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON athena_keys.api_key_config
	FOR EACH STATEMENT EXECUTE FUNCTION athena_keys._invalidate_caches();
CREATE TRIGGER api_key_client_config_invalidate
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON athena_keys.api_key_client_config
	FOR EACH STATEMENT EXECUTE FUNCTION athena_keys._invalidate_caches();
CREATE TRIGGER api_key_global_ip_rule_invalidate
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON athena_keys.api_key_global_ip_rule
	FOR EACH STATEMENT EXECUTE FUNCTION athena_keys._invalidate_caches();
CREATE TRIGGER api_key_ip_rule_invalidate
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON athena_keys.api_key_ip_rule
	FOR EACH STATEMENT EXECUTE FUNCTION athena_keys._invalidate_caches();
CREATE TRIGGER api_key_right_grant_invalidate
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON athena_keys.api_key_right_grant
	FOR EACH STATEMENT EXECUTE FUNCTION athena_keys._invalidate_caches();
CREATE TRIGGER api_key_insert_delete_invalidate
	AFTER INSERT OR DELETE OR TRUNCATE ON athena_keys.api_key
	FOR EACH STATEMENT EXECUTE FUNCTION athena_keys._invalidate_caches();
-- Learning counters and last_used_at change on the hot path and are never
-- cached, so only changes to what the cache holds invalidate it.
CREATE TRIGGER api_key_update_invalidate
	AFTER UPDATE ON athena_keys.api_key
	FOR EACH ROW WHEN (
		OLD.public_id IS DISTINCT FROM NEW.public_id OR
		OLD.key_salt IS DISTINCT FROM NEW.key_salt OR
		OLD.key_hash IS DISTINCT FROM NEW.key_hash OR
		OLD.previous_key_salt IS DISTINCT FROM NEW.previous_key_salt OR
		OLD.previous_key_hash IS DISTINCT FROM NEW.previous_key_hash OR
		OLD.previous_valid_until IS DISTINCT FROM NEW.previous_valid_until OR
		OLD.is_active IS DISTINCT FROM NEW.is_active OR
		OLD.expires_at IS DISTINCT FROM NEW.expires_at OR
		OLD.client_name IS DISTINCT FROM NEW.client_name OR
		OLD.virgin_mode IS DISTINCT FROM NEW.virgin_mode OR
		OLD.virgin_resolved IS DISTINCT FROM NEW.virgin_resolved)
	EXECUTE FUNCTION athena_keys._invalidate_caches();

--------------------------------------------------------------------------
-- The decision
--------------------------------------------------------------------------

CREATE TYPE athena_keys.athena_auth_result AS (
	allowed boolean,
	status integer,
	reason text,
	authenticated boolean,
	authorized boolean,
	enforced boolean,
	key_id uuid,
	public_id text,
	client_name text,
	granted_rights text[],
	missing_rights text[],
	locked_in boolean,
	fail_mode text
);

CREATE FUNCTION athena_keys.athena_authenticate(
	key text, client text, ip inet, rights text[])
RETURNS athena_keys.athena_auth_result
AS 'MODULE_PATHNAME', 'athena_authenticate'
LANGUAGE C VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE
SECURITY DEFINER SET search_path = pg_catalog, pg_temp;

COMMENT ON FUNCTION athena_keys.athena_authenticate(text, text, inet, text[]) IS
	'Decide one gateway request: key genuine, active, unexpired, client-bound, rights, IP policy; logs the decision.';

--------------------------------------------------------------------------
-- Internal helpers (C)
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys._random_hex(nbytes integer) RETURNS text
	AS 'MODULE_PATHNAME', 'athena_random_hex' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION athena_keys._key_digest(salt text, secret text) RETURNS text
	AS 'MODULE_PATHNAME', 'athena_key_digest' LANGUAGE C IMMUTABLE STRICT;

CREATE FUNCTION athena_keys._learn(key_id uuid, ip inet) RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- One learning observation for a key in virgin mode, under the key's row
-- lock so that the count is exact and lock-in happens once.  Returns
-- 'learning', 'locked_in' (this call completed lock-in), or, when another
-- call resolved the key first, 'whitelisted' / 'not_whitelisted' from the
-- committed per-key whitelist.
DECLARE
	k record;
	request_count bigint;
	distinct_ips bigint;
BEGIN
	SELECT virgin_mode, virgin_resolved, virgin_until_n_requests, max_whitelist_ips
	  INTO k
	  FROM athena_keys.api_key WHERE id = key_id FOR UPDATE;
	IF NOT FOUND OR NOT k.virgin_mode THEN
		RETURN 'not_learning';
	END IF;
	IF k.virgin_resolved THEN
		IF EXISTS (SELECT 1 FROM athena_keys.api_key_ip_rule r
		            WHERE r.api_key_id = key_id AND r.list = 'whitelist') AND
		   NOT EXISTS (SELECT 1 FROM athena_keys.api_key_ip_rule r
		                WHERE r.api_key_id = key_id AND r.list = 'whitelist'
		                  AND r.addr OPERATOR(pg_catalog.>>=) ip) THEN
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

--------------------------------------------------------------------------
-- Administration.  Every function validates all of its input before it
-- changes anything, so an error never leaves a half-applied change.
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys._require_key(key_id uuid) RETURNS athena_keys.api_key
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- The key row, locked for update, or a clear error.
DECLARE
	k athena_keys.api_key;
BEGIN
	IF key_id IS NULL THEN
		RAISE EXCEPTION 'api key id must not be null'
			USING ERRCODE = 'null_value_not_allowed',
			      DETAIL = 'Every key function needs the id of an existing key.',
			      HINT = 'Pass the id returned by athena_create_key or listed in athena_keys.athena_key_status.';
	END IF;
	SELECT * INTO k FROM athena_keys.api_key WHERE id = key_id FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'api key % does not exist', key_id
			USING ERRCODE = 'undefined_object',
			      DETAIL = 'No key has this id; it may have been deleted.',
			      HINT = 'List existing keys with SELECT id, name FROM athena_keys.athena_key_status.';
	END IF;
	RETURN k;
END
$$;

CREATE FUNCTION athena_keys._require_not_null(value anyelement, what text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Raise a clear error when a required argument is NULL.
BEGIN
	IF value IS NULL THEN
		RAISE EXCEPTION '% must not be null', what
			USING ERRCODE = 'null_value_not_allowed',
			      DETAIL = format('The argument %s is required.', what),
			      HINT = format('Pass a value for %s.', what);
	END IF;
END
$$;

CREATE FUNCTION athena_keys._require_rights(rights text[]) RETURNS text[]
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- The distinct right names of rights, or an error naming every one that is
-- NULL or missing from the catalog.
DECLARE
	unknown text[];
BEGIN
	IF rights IS NULL THEN
		RETURN '{}';
	END IF;
	IF array_position(rights, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'rights must not contain null'
			USING ERRCODE = 'null_value_not_allowed',
			      DETAIL = 'A right name is a non-empty string.',
			      HINT = 'Remove the NULL elements from the rights array.';
	END IF;
	SELECT array_agg(DISTINCT r ORDER BY r) INTO unknown
	  FROM unnest(rights) AS r
	 WHERE NOT EXISTS (SELECT 1 FROM athena_keys.api_key_right c WHERE c.name = r);
	IF unknown IS NOT NULL THEN
		-- Name a few: an error listing thousands of names helps nobody.
		RAISE EXCEPTION 'right % is not in the catalog',
			array_to_string(unknown[1:5], ', ') ||
			CASE WHEN cardinality(unknown) > 5
			     THEN format(' (and %s more)', cardinality(unknown) - 5) ELSE '' END
			USING ERRCODE = 'undefined_object',
			      DETAIL = 'Only rights listed in athena_keys.api_key_right can be granted.',
			      HINT = 'Add the right first with athena_keys.athena_create_right(name).';
	END IF;
	RETURN ARRAY(SELECT DISTINCT r FROM unnest(rights) AS r ORDER BY r);
END
$$;

CREATE FUNCTION athena_keys._require_client_name(client_name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Reject empty or oversized client names (NULL is allowed: it means none).
BEGIN
	IF client_name IS NOT NULL AND (client_name = '' OR length(client_name) > 256) THEN
		RAISE EXCEPTION 'client name must be 1 to 256 characters long'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('The client name given has %s characters.', length(client_name)),
			      HINT = 'Pass NULL for "no client" and a non-empty name otherwise.';
	END IF;
END
$$;

CREATE FUNCTION athena_keys._require_cidrs(addrs cidr[], what text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Reject NULL elements in an address list.
BEGIN
	IF addrs IS NOT NULL AND array_position(addrs, NULL) IS NOT NULL THEN
		RAISE EXCEPTION '% must not contain null', what
			USING ERRCODE = 'null_value_not_allowed',
			      DETAIL = 'Every entry is an IPv4 or IPv6 address or CIDR block.',
			      HINT = format('Remove the NULL elements from %s.', what);
	END IF;
END
$$;

CREATE FUNCTION athena_keys._require_list(list text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Reject anything but 'whitelist' and 'blacklist'.
BEGIN
	PERFORM athena_keys._require_not_null(list, 'list');
	IF list IS NULL OR list NOT IN ('whitelist', 'blacklist') THEN
		RAISE EXCEPTION 'unknown ip list "%"', coalesce(list, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'An IP rule belongs to the whitelist or the blacklist.',
			      HINT = 'Pass ''whitelist'' or ''blacklist''.';
	END IF;
END
$$;

CREATE FUNCTION athena_keys._require_key_name(name text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Reject a missing, empty or oversized key name.
BEGIN
	IF name IS NULL OR name = '' OR length(name) > 200 THEN
		RAISE EXCEPTION 'key name must be 1 to 200 characters long'
			USING ERRCODE = CASE WHEN name IS NULL THEN 'null_value_not_allowed' ELSE 'invalid_parameter_value' END,
			      DETAIL = 'Every key has a name that operators recognise it by.',
			      HINT = 'Pass a short descriptive name, such as the calling service.';
	END IF;
END
$$;

CREATE FUNCTION athena_keys._require_key_description(description text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Reject an oversized key description (NULL means none).
BEGIN
	IF length(description) > 2000 THEN
		RAISE EXCEPTION 'key description must be at most 2000 characters long'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('The description given has %s characters.', length(description)),
			      HINT = 'Shorten the description.';
	END IF;
END
$$;

CREATE FUNCTION athena_keys.athena_create_key(
	name text,
	client_name text DEFAULT NULL,
	rights text[] DEFAULT '{}',
	expires_at timestamptz DEFAULT NULL,
	description text DEFAULT NULL,
	virgin_mode boolean DEFAULT false,
	virgin_until_n_requests integer DEFAULT 0,
	max_whitelist_ips integer DEFAULT 0,
	ip_whitelist cidr[] DEFAULT '{}',
	ip_blacklist cidr[] DEFAULT '{}')
RETURNS TABLE (api_key text, id uuid, public_id text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Issue a key.  The plaintext is returned here and never again.
DECLARE
	granted text[];
	new_public_id text;
	new_secret text;
	new_salt text;
	new_id uuid;
	attempt integer := 0;
BEGIN
	PERFORM athena_keys._require_key_name(name);
	PERFORM athena_keys._require_key_description(description);
	PERFORM athena_keys._require_client_name(client_name);
	granted := athena_keys._require_rights(rights);
	PERFORM athena_keys._require_not_null(virgin_mode, 'virgin_mode');
	PERFORM athena_keys._require_not_null(virgin_until_n_requests, 'virgin_until_n_requests');
	PERFORM athena_keys._require_not_null(max_whitelist_ips, 'max_whitelist_ips');
	IF virgin_until_n_requests < 0 OR max_whitelist_ips < 0 THEN
		RAISE EXCEPTION 'virgin_until_n_requests and max_whitelist_ips must not be negative'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got virgin_until_n_requests = %s and max_whitelist_ips = %s.',
			                      virgin_until_n_requests, max_whitelist_ips),
			      HINT = 'Pass 0 to disable a threshold, or a positive number.';
	END IF;
	IF virgin_mode AND virgin_until_n_requests = 0 AND max_whitelist_ips = 0 THEN
		RAISE EXCEPTION 'a key in virgin mode needs a positive threshold'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'Both virgin_until_n_requests and max_whitelist_ips are 0, so learning would never lock in.',
			      HINT = 'Set virgin_until_n_requests, max_whitelist_ips, or both, to a positive number.';
	END IF;
	PERFORM athena_keys._require_cidrs(ip_whitelist, 'ip_whitelist');
	PERFORM athena_keys._require_cidrs(ip_blacklist, 'ip_blacklist');
	IF virgin_mode AND (cardinality(ip_whitelist) > 0 OR cardinality(ip_blacklist) > 0) THEN
		RAISE EXCEPTION 'a key in virgin mode starts with no per-key ip lists'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'A learning key builds its whitelist from the addresses it sees.',
			      HINT = 'Create the key without ip_whitelist and ip_blacklist, then add blacklist entries with athena_add_ip_rule.';
	END IF;

	LOOP
		new_public_id := athena_keys._random_hex(8);
		new_secret := athena_keys._random_hex(32);
		new_salt := athena_keys._random_hex(16);
		BEGIN
			INSERT INTO athena_keys.api_key AS k
				(public_id, name, description, client_name, key_salt, key_hash, expires_at,
				 virgin_mode, virgin_until_n_requests, max_whitelist_ips)
			VALUES (new_public_id, athena_create_key.name, athena_create_key.description,
			        athena_create_key.client_name, new_salt,
			        athena_keys._key_digest(new_salt, new_secret), athena_create_key.expires_at,
			        athena_create_key.virgin_mode, athena_create_key.virgin_until_n_requests,
			        athena_create_key.max_whitelist_ips)
			RETURNING k.id INTO new_id;
			EXIT;
		EXCEPTION WHEN unique_violation THEN
			-- 64 random bits collided; draw again (vanishingly rare).
			attempt := attempt + 1;
			IF attempt >= 5 THEN
				RAISE;
			END IF;
		END;
	END LOOP;

	INSERT INTO athena_keys.api_key_right_grant (api_key_id, right_name)
	SELECT new_id, r FROM unnest(granted) AS r;
	INSERT INTO athena_keys.api_key_ip_rule (api_key_id, list, addr)
	SELECT DISTINCT new_id, 'whitelist', a FROM unnest(ip_whitelist) AS a;
	INSERT INTO athena_keys.api_key_ip_rule (api_key_id, list, addr)
	SELECT DISTINCT new_id, 'blacklist', a FROM unnest(ip_blacklist) AS a;

	api_key := 'ath_' || new_public_id || '.' || new_secret;
	id := new_id;
	public_id := new_public_id;
	RETURN NEXT;
END
$$;

CREATE FUNCTION athena_keys.athena_import_key(
	public_id text,
	key_salt text,
	key_hash text,
	name text,
	client_name text DEFAULT NULL,
	rights text[] DEFAULT '{}',
	expires_at timestamptz DEFAULT NULL)
RETURNS uuid
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Bring over an existing Athena key by its public id, salt and SHA-256 hash.
DECLARE
	granted text[];
	new_id uuid;
BEGIN
	PERFORM athena_keys._require_not_null(public_id, 'public_id');
	PERFORM athena_keys._require_not_null(key_salt, 'key_salt');
	PERFORM athena_keys._require_not_null(key_hash, 'key_hash');
	IF public_id IS NULL OR public_id !~ '^[0-9A-Za-z_-]{8,64}$' THEN
		RAISE EXCEPTION 'public id must be 8 to 64 characters from [0-9A-Za-z_-]'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'The public id is the part between "ath_" and "." in the plaintext key.',
			      HINT = 'Copy public_id exactly as Athena stored it.';
	END IF;
	IF key_salt IS NULL OR key_salt !~ '^[!-~]+$' OR length(key_salt) > 256 THEN
		RAISE EXCEPTION 'key salt must be 1 to 256 printable ASCII characters'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'The salt is hashed as text together with the secret.',
			      HINT = 'Copy key_salt exactly as Athena stored it.';
	END IF;
	IF key_hash IS NULL OR lower(key_hash) !~ '^[0-9a-f]{64}$' THEN
		RAISE EXCEPTION 'key hash must be 64 hex characters'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'The hash is the SHA-256 of key_salt || '':'' || secret, in hex.',
			      HINT = 'Copy key_hash exactly as Athena stored it.';
	END IF;
	PERFORM athena_keys._require_key_name(name);
	PERFORM athena_keys._require_client_name(client_name);
	granted := athena_keys._require_rights(rights);
	IF EXISTS (SELECT 1 FROM athena_keys.api_key k WHERE k.public_id = athena_import_key.public_id) THEN
		RAISE EXCEPTION 'a key with public id % already exists', public_id
			USING ERRCODE = 'unique_violation',
			      DETAIL = 'Public ids identify keys and must be unique.',
			      HINT = 'Skip keys that were imported before, or delete the existing key first.';
	END IF;

	INSERT INTO athena_keys.api_key AS k
		(public_id, name, client_name, key_salt, key_hash, expires_at)
	VALUES (athena_import_key.public_id, athena_import_key.name, athena_import_key.client_name,
	        athena_import_key.key_salt, lower(athena_import_key.key_hash), athena_import_key.expires_at)
	RETURNING k.id INTO new_id;
	INSERT INTO athena_keys.api_key_right_grant (api_key_id, right_name)
	SELECT new_id, r FROM unnest(granted) AS r;
	RETURN new_id;
END
$$;

CREATE FUNCTION athena_keys.athena_rotate_key(id uuid, grace interval DEFAULT '0')
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- New secret for the same key id and public id; the old secret keeps
-- working until now() + grace.  Returns the new plaintext, this once.
DECLARE
	k athena_keys.api_key;
	new_secret text := athena_keys._random_hex(32);
	new_salt text := athena_keys._random_hex(16);
BEGIN
	PERFORM athena_keys._require_not_null(grace, 'grace');
	IF grace < interval '0' OR NOT isfinite(grace) THEN
		RAISE EXCEPTION 'grace period must be a finite, non-negative interval'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got %s.', coalesce(grace::text, 'NULL')),
			      HINT = 'Pass interval ''0'' to revoke the old secret at once, or e.g. interval ''1 hour''.';
	END IF;
	k := athena_keys._require_key(id);
	UPDATE athena_keys.api_key AS a
	   SET previous_key_salt = CASE WHEN grace > interval '0' THEN k.key_salt END,
	       previous_key_hash = CASE WHEN grace > interval '0' THEN k.key_hash END,
	       previous_valid_until = CASE WHEN grace > interval '0' THEN now() + grace END,
	       key_salt = new_salt,
	       key_hash = athena_keys._key_digest(new_salt, new_secret),
	       updated_at = now()
	 WHERE a.id = k.id;
	RETURN 'ath_' || k.public_id || '.' || new_secret;
END
$$;

CREATE FUNCTION athena_keys.athena_set_key_active(id uuid, active boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Deactivate or reactivate a key; effective for every session at commit.
DECLARE
	k athena_keys.api_key;
BEGIN
	PERFORM athena_keys._require_not_null(active, 'active');
	k := athena_keys._require_key(id);
	UPDATE athena_keys.api_key AS a SET is_active = active, updated_at = now() WHERE a.id = k.id;
END
$$;

CREATE FUNCTION athena_keys.athena_set_key_expiry(id uuid, expires_at timestamptz) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Set the hard cutoff; NULL removes it.
DECLARE
	k athena_keys.api_key;
BEGIN
	k := athena_keys._require_key(id);
	UPDATE athena_keys.api_key AS a
	   SET expires_at = athena_set_key_expiry.expires_at, updated_at = now()
	 WHERE a.id = k.id;
END
$$;

CREATE FUNCTION athena_keys.athena_set_key_client(id uuid, client_name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Bind a key to a client (exact, case-sensitive); NULL unbinds.
DECLARE
	k athena_keys.api_key;
BEGIN
	PERFORM athena_keys._require_client_name(client_name);
	k := athena_keys._require_key(id);
	UPDATE athena_keys.api_key AS a
	   SET client_name = athena_set_key_client.client_name, updated_at = now()
	 WHERE a.id = k.id;
END
$$;

CREATE FUNCTION athena_keys.athena_delete_key(id uuid) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Remove a key with its grants, rules and seen rows; its log rows stay.
DECLARE
	k athena_keys.api_key;
BEGIN
	k := athena_keys._require_key(id);
	DELETE FROM athena_keys.api_key AS a WHERE a.id = k.id;
END
$$;

CREATE FUNCTION athena_keys.athena_create_right(name text, description text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Add a right, or a wildcard pattern such as users.*, to the catalog.
BEGIN
	IF name IS NULL OR name !~ '^[A-Za-z0-9_.*:-]{1,200}$' THEN
		RAISE EXCEPTION 'right name must be 1 to 200 characters from [A-Za-z0-9_.*:-]'
			USING ERRCODE = CASE WHEN name IS NULL THEN 'null_value_not_allowed' ELSE 'invalid_parameter_value' END,
			      DETAIL = format('Got %s.', coalesce(quote_literal(name), 'NULL')),
			      HINT = 'Use dotted names such as users.read, users.* or *.read.';
	END IF;
	IF EXISTS (SELECT 1 FROM athena_keys.api_key_right r WHERE r.name = athena_create_right.name) THEN
		RAISE EXCEPTION 'right % already exists', name
			USING ERRCODE = 'duplicate_object',
			      DETAIL = 'Right names are unique in the catalog.',
			      HINT = 'Grant the existing right, or pick another name.';
	END IF;
	INSERT INTO athena_keys.api_key_right (name, description)
	VALUES (athena_create_right.name, athena_create_right.description);
END
$$;

CREATE FUNCTION athena_keys.athena_delete_right(name text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Remove a right from the catalog, and with it every grant of it.
BEGIN
	PERFORM athena_keys._require_not_null(name, 'name');
	DELETE FROM athena_keys.api_key_right r WHERE r.name = athena_delete_right.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'right % does not exist', coalesce(name, 'NULL')
			USING ERRCODE = 'undefined_object',
			      DETAIL = 'Only rights in athena_keys.api_key_right can be deleted.',
			      HINT = 'List the catalog with SELECT name FROM athena_keys.api_key_right.';
	END IF;
END
$$;

CREATE FUNCTION athena_keys.athena_grant_rights(id uuid, rights text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Grant catalog rights to a key (already granted ones are left as they are).
DECLARE
	k athena_keys.api_key;
	granted text[];
BEGIN
	PERFORM athena_keys._require_not_null(rights, 'rights');
	granted := athena_keys._require_rights(rights);
	k := athena_keys._require_key(id);
	INSERT INTO athena_keys.api_key_right_grant (api_key_id, right_name)
	SELECT k.id, r FROM unnest(granted) AS r
	ON CONFLICT DO NOTHING;
	UPDATE athena_keys.api_key AS a SET updated_at = now() WHERE a.id = k.id;
END
$$;

CREATE FUNCTION athena_keys.athena_revoke_rights(id uuid, rights text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Revoke rights from a key (rights it does not hold are ignored).
DECLARE
	k athena_keys.api_key;
	revoked text[];
BEGIN
	PERFORM athena_keys._require_not_null(rights, 'rights');
	revoked := athena_keys._require_rights(rights);
	k := athena_keys._require_key(id);
	DELETE FROM athena_keys.api_key_right_grant g
	 WHERE g.api_key_id = k.id AND g.right_name = ANY (revoked);
	UPDATE athena_keys.api_key AS a SET updated_at = now() WHERE a.id = k.id;
END
$$;

CREATE FUNCTION athena_keys.athena_add_ip_rule(
	list text, addr cidr, key_id uuid DEFAULT NULL,
	client_name text DEFAULT NULL, label text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Add (or relabel) a whitelist or blacklist entry: per key when key_id is
-- given, else global, optionally scoped to one client.
#variable_conflict use_column
DECLARE
	k athena_keys.api_key;
BEGIN
	PERFORM athena_keys._require_list(list);
	PERFORM athena_keys._require_not_null(addr, 'addr');
	PERFORM athena_keys._require_client_name(client_name);
	IF length(label) > 200 THEN
		RAISE EXCEPTION 'rule label must be at most 200 characters long'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('The label given has %s characters.', length(label)),
			      HINT = 'Shorten the label.';
	END IF;
	IF key_id IS NOT NULL AND client_name IS NOT NULL THEN
		RAISE EXCEPTION 'client_name applies only to global rules'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'A per-key rule already belongs to one key; scoping it to a client means nothing.',
			      HINT = 'Pass either key_id or client_name, not both.';
	END IF;
	IF key_id IS NULL THEN
		INSERT INTO athena_keys.api_key_global_ip_rule AS g (list, addr, client_name, label)
		VALUES (athena_add_ip_rule.list, athena_add_ip_rule.addr,
		        athena_add_ip_rule.client_name, athena_add_ip_rule.label)
		ON CONFLICT (list, addr, (coalesce(client_name, ''))) DO UPDATE SET label = EXCLUDED.label;
	ELSE
		k := athena_keys._require_key(key_id);
		INSERT INTO athena_keys.api_key_ip_rule AS r (api_key_id, list, addr, label)
		VALUES (k.id, athena_add_ip_rule.list, athena_add_ip_rule.addr, athena_add_ip_rule.label)
		ON CONFLICT (api_key_id, list, addr) DO UPDATE SET label = EXCLUDED.label;
		UPDATE athena_keys.api_key AS a SET updated_at = now() WHERE a.id = k.id;
	END IF;
END
$$;

CREATE FUNCTION athena_keys.athena_remove_ip_rule(
	list text, addr cidr, key_id uuid DEFAULT NULL, client_name text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Remove an entry; returns whether one was there.
DECLARE
	k athena_keys.api_key;
BEGIN
	PERFORM athena_keys._require_list(list);
	PERFORM athena_keys._require_not_null(addr, 'addr');
	IF key_id IS NOT NULL AND client_name IS NOT NULL THEN
		RAISE EXCEPTION 'client_name applies only to global rules'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'A per-key rule already belongs to one key; scoping it to a client means nothing.',
			      HINT = 'Pass either key_id or client_name, not both.';
	END IF;
	IF key_id IS NULL THEN
		DELETE FROM athena_keys.api_key_global_ip_rule g
		 WHERE g.list = athena_remove_ip_rule.list AND g.addr = athena_remove_ip_rule.addr
		   AND g.client_name IS NOT DISTINCT FROM athena_remove_ip_rule.client_name;
		RETURN FOUND;
	END IF;
	k := athena_keys._require_key(key_id);
	DELETE FROM athena_keys.api_key_ip_rule r
	 WHERE r.api_key_id = k.id AND r.list = athena_remove_ip_rule.list
	   AND r.addr = athena_remove_ip_rule.addr;
	RETURN FOUND;
END
$$;

CREATE FUNCTION athena_keys.athena_promote_key(id uuid) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Lock a learning key in now; returns the number of whitelist entries made.
DECLARE
	k athena_keys.api_key;
BEGIN
	k := athena_keys._require_key(id);
	IF NOT k.virgin_mode OR k.virgin_resolved THEN
		RAISE EXCEPTION 'api key % is not learning', k.id
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      DETAIL = CASE WHEN NOT k.virgin_mode THEN 'The key was not created in virgin mode.'
			                    ELSE format('The key locked in at %s.', k.virgin_resolved_at) END,
			      HINT = 'Use athena_reset_key_learning to start learning again.';
	END IF;
	RETURN athena_keys._lock_in(k.id);
END
$$;

CREATE FUNCTION athena_keys.athena_reset_key_learning(id uuid, clear_seen boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Start learning again: counter to 0, unresolved, lock-in whitelist entries
-- removed (operator entries stay); with clear_seen the seen rows go too.
DECLARE
	k athena_keys.api_key;
BEGIN
	PERFORM athena_keys._require_not_null(clear_seen, 'clear_seen');
	k := athena_keys._require_key(id);
	IF NOT k.virgin_mode THEN
		RAISE EXCEPTION 'api key % is not in virgin mode', k.id
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      DETAIL = 'Only keys created in virgin mode learn their addresses.',
			      HINT = 'Manage this key''s whitelist with athena_add_ip_rule and athena_remove_ip_rule.';
	END IF;
	DELETE FROM athena_keys.api_key_ip_rule r
	 WHERE r.api_key_id = k.id AND r.list = 'whitelist' AND r.from_lock_in;
	IF clear_seen THEN
		DELETE FROM athena_keys.api_key_ip_seen s WHERE s.api_key_id = k.id;
	ELSE
		UPDATE athena_keys.api_key_ip_seen s SET locked_in = false
		 WHERE s.api_key_id = k.id AND s.locked_in;
	END IF;
	UPDATE athena_keys.api_key AS a
	   SET virgin_request_count = 0, virgin_resolved = false, virgin_resolved_at = NULL,
	       updated_at = now()
	 WHERE a.id = k.id;
END
$$;

CREATE FUNCTION athena_keys.athena_set_enforcement(enforce boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Turn global enforcement on or off (off = shadow mode).
BEGIN
	PERFORM athena_keys._require_not_null(enforce, 'enforce');
	UPDATE athena_keys.api_key_config SET enforce_api_keys = enforce, updated_at = now();
END
$$;

CREATE FUNCTION athena_keys.athena_set_fail_mode(mode text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Choose what proxies and learning keys do when a decision cannot be made.
BEGIN
	PERFORM athena_keys._require_not_null(mode, 'mode');
	IF mode IS NULL OR mode NOT IN ('fail_closed', 'fail_open') THEN
		RAISE EXCEPTION 'unknown fail mode "%"', coalesce(mode, 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'The fail mode decides whether a request passes when the key system cannot decide.',
			      HINT = 'Pass ''fail_closed'' (reject with 503) or ''fail_open'' (let the request through).';
	END IF;
	UPDATE athena_keys.api_key_config SET fail_mode = mode, updated_at = now();
END
$$;

CREATE FUNCTION athena_keys.athena_set_client_enforcement(client_name text, enforce boolean)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Override global enforcement for one client.
BEGIN
	PERFORM athena_keys._require_not_null(client_name, 'client_name');
	PERFORM athena_keys._require_client_name(client_name);
	PERFORM athena_keys._require_not_null(enforce, 'enforce');
	INSERT INTO athena_keys.api_key_client_config AS c (client_name, enforce_api_keys)
	VALUES (athena_set_client_enforcement.client_name, enforce)
	ON CONFLICT ON CONSTRAINT api_key_client_config_pkey
	DO UPDATE SET enforce_api_keys = EXCLUDED.enforce_api_keys, updated_at = now();
END
$$;

CREATE FUNCTION athena_keys.athena_clear_client_enforcement(client_name text) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Drop a client's override so it follows the global setting again;
-- returns whether there was one.
BEGIN
	PERFORM athena_keys._require_not_null(client_name, 'client_name');
	DELETE FROM athena_keys.api_key_client_config c
	 WHERE c.client_name = athena_clear_client_enforcement.client_name;
	RETURN FOUND;
END
$$;

--------------------------------------------------------------------------
-- Triage views (no hashes, no salts)
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
       k.updated_at
  FROM athena_keys.api_key k;

COMMENT ON VIEW athena_keys.athena_key_status IS
	'One row per key: state (active, inactive, expired, learning, locked), binding, rights, list sizes, learning progress, last use.';

CREATE VIEW athena_keys.athena_recent_failures AS
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
           WHEN 'API key policy unavailable' THEN 'The decision needed a write that this server cannot make (read-only or standby).'
       END AS explanation
  FROM athena_keys.api_key_auth_log l
  LEFT JOIN athena_keys.api_key k ON k.id = l.api_key_id
 WHERE l.failure_reason IS NOT NULL
   AND l.created_at >= now() - interval '1 day'
 ORDER BY l.created_at DESC, l.id DESC;

COMMENT ON VIEW athena_keys.athena_recent_failures IS
	'Failed decisions of the last 24 hours, newest first, with reason, key, client, address and an explanation.';

CREATE VIEW athena_keys.athena_failure_summary AS
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

--------------------------------------------------------------------------
-- Privileges: PUBLIC gets nothing.  Operators grant roles with the two
-- helpers below (superuser only).
--------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA athena_keys FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA athena_keys FROM PUBLIC;
REVOKE ALL ON SCHEMA athena_keys FROM PUBLIC;
REVOKE ALL ON TYPE athena_keys.athena_auth_result FROM PUBLIC;

CREATE FUNCTION athena_keys.athena_grant_gateway_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Let role_name call athena_authenticate and nothing else.
BEGIN
	PERFORM athena_keys._require_not_null(role_name, 'role_name');
	EXECUTE format('GRANT USAGE ON SCHEMA athena_keys TO %I', role_name);
	EXECUTE format('GRANT USAGE ON TYPE athena_keys.athena_auth_result TO %I', role_name);
	EXECUTE format('GRANT EXECUTE ON FUNCTION athena_keys.athena_authenticate(text, text, inet, text[]) TO %I', role_name);
END
$$;

CREATE FUNCTION athena_keys.athena_grant_admin_role(role_name name) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Let role_name run the admin functions and read the triage views, but no
-- table directly (so never key_hash, key_salt or raw log rows).
DECLARE
	f regprocedure;
	v regclass;
BEGIN
	PERFORM athena_keys._require_not_null(role_name, 'role_name');
	EXECUTE format('GRANT USAGE ON SCHEMA athena_keys TO %I', role_name);
	EXECUTE format('GRANT USAGE ON TYPE athena_keys.athena_auth_result TO %I', role_name);
	FOR f IN
		SELECT p.oid::regprocedure FROM pg_proc p
		 WHERE p.pronamespace = 'athena_keys'::regnamespace AND p.proname LIKE 'athena\_%'
		   AND p.proname NOT IN ('athena_grant_gateway_role', 'athena_grant_admin_role')
	LOOP
		EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, role_name);
	END LOOP;
	FOR v IN
		SELECT c.oid::regclass FROM pg_class c
		 WHERE c.relnamespace = 'athena_keys'::regnamespace AND c.relkind = 'v'
	LOOP
		EXECUTE format('GRANT SELECT ON %s TO %I', v, role_name);
	END LOOP;
END
$$;

REVOKE ALL ON FUNCTION athena_keys.athena_grant_gateway_role(name) FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys.athena_grant_admin_role(name) FROM PUBLIC;

--------------------------------------------------------------------------
-- Auth log retention: one partition per UTC day.
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys._auth_log_partition_name(day date) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
RETURN 'api_key_auth_log_p' || to_char(day, 'YYYYMMDD');

CREATE FUNCTION athena_keys._create_auth_log_partition(day date) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- Create the partition for one UTC day unless it exists.  Rows that already
-- fell into the default partition for that day are moved into it, under a
-- short exclusive lock on the default partition.  New partitions become
-- members of the extension, so pg_dump leaves the log out and DROP
-- EXTENSION removes them.  Returns whether a partition was created.
DECLARE
	part text := athena_keys._auth_log_partition_name(day);
	lo timestamptz := day::timestamp AT TIME ZONE 'UTC';
	hi timestamptz := (day + 1)::timestamp AT TIME ZONE 'UTC';
BEGIN
	IF to_regclass('athena_keys.' || quote_ident(part)) IS NOT NULL THEN
		RETURN false;
	END IF;
	EXECUTE format('CREATE TABLE athena_keys.%I (LIKE athena_keys.api_key_auth_log INCLUDING DEFAULTS)', part);
	LOCK TABLE athena_keys.api_key_auth_log_default IN ACCESS EXCLUSIVE MODE;
	EXECUTE format('WITH moved AS (DELETE FROM athena_keys.api_key_auth_log_default
	                                WHERE created_at >= $1 AND created_at < $2 RETURNING *)
	                INSERT INTO athena_keys.%I SELECT * FROM moved', part) USING lo, hi;
	EXECUTE format('ALTER TABLE athena_keys.api_key_auth_log ATTACH PARTITION athena_keys.%I
	                FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
	IF NOT EXISTS (SELECT 1 FROM pg_depend d
	                WHERE d.classid = 'pg_class'::regclass
	                  AND d.objid = ('athena_keys.' || quote_ident(part))::regclass
	                  AND d.deptype = 'e') THEN
		EXECUTE format('ALTER EXTENSION athena_keys ADD TABLE athena_keys.%I', part);
	END IF;
	RETURN true;
END
$$;

CREATE FUNCTION athena_keys.athena_maintain_auth_log(days_ahead integer DEFAULT 7) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Make sure partitions exist from today (UTC) to days_ahead days ahead.
-- Returns the number created.  athena_prune_auth_log calls it too.
DECLARE
	today date := (now() AT TIME ZONE 'UTC')::date;
	created integer := 0;
	i integer;
BEGIN
	IF days_ahead IS NULL OR days_ahead < 0 OR days_ahead > 366 THEN
		RAISE EXCEPTION 'days_ahead must be between 0 and 366'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got %s.', coalesce(days_ahead::text, 'NULL')),
			      HINT = 'Pass the number of future days to prepare, e.g. 7.';
	END IF;
	FOR i IN 0 .. days_ahead LOOP
		IF athena_keys._create_auth_log_partition(today + i) THEN
			created := created + 1;
		END IF;
	END LOOP;
	RETURN created;
END
$$;

CREATE FUNCTION athena_keys.athena_prune_auth_log(older_than interval) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Drop every daily partition that holds only rows older than now() -
-- older_than (cost grows with the number of partitions, not rows), remove
-- such rows from the default partition, and prepare the coming week's
-- partitions.  Retention is exact to the day.  Returns partitions dropped.
DECLARE
	cutoff timestamptz;
	part record;
	dropped integer := 0;
BEGIN
	IF older_than IS NULL OR older_than < interval '0' OR NOT isfinite(older_than) THEN
		RAISE EXCEPTION 'older_than must be a finite, non-negative interval'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got %s.', coalesce(older_than::text, 'NULL')),
			      HINT = 'Pass the retention to keep, e.g. interval ''30 days''.';
	END IF;
	cutoff := now() - older_than;
	FOR part IN
		SELECT c.relname, to_date(substr(c.relname, length('api_key_auth_log_p') + 1), 'YYYYMMDD') AS day
		  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		 WHERE i.inhparent = 'athena_keys.api_key_auth_log'::regclass
		   AND c.relname ~ '^api_key_auth_log_p[0-9]{8}$'
		 ORDER BY 2
	LOOP
		EXIT WHEN ((part.day + 1)::timestamp AT TIME ZONE 'UTC') > cutoff;
		EXECUTE format('ALTER EXTENSION athena_keys DROP TABLE athena_keys.%I', part.relname);
		EXECUTE format('DROP TABLE athena_keys.%I', part.relname);
		dropped := dropped + 1;
	END LOOP;
	DELETE FROM athena_keys.api_key_auth_log_default WHERE created_at < cutoff;
	PERFORM athena_keys.athena_maintain_auth_log(7);
	RETURN dropped;
END
$$;

REVOKE ALL ON FUNCTION athena_keys._auth_log_partition_name(date) FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys._create_auth_log_partition(date) FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys.athena_maintain_auth_log(integer) FROM PUBLIC;
REVOKE ALL ON FUNCTION athena_keys.athena_prune_auth_log(interval) FROM PUBLIC;

-- Today's partition and the coming week's.
SELECT athena_keys.athena_maintain_auth_log(7);
