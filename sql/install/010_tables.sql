--------------------------------------------------------------------------
-- Tables
--------------------------------------------------------------------------

-- Every UPDATE of a key row evaluates all its CHECKs (the log writer's
-- last_used_at batches too), so the format checks avoid bounded repetition
-- ({64}, {8,64}), which PostgreSQL's regex engine matches ten times slower
-- than a length and one negated class.
CREATE TABLE athena_keys.api_key (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	public_id text NOT NULL UNIQUE
		CONSTRAINT api_key_public_id_format CHECK
			(length(public_id) BETWEEN 8 AND 64 AND public_id !~ '[^0-9A-Za-z_-]'),
	name text NOT NULL
		CONSTRAINT api_key_name_length CHECK (length(name) BETWEEN 1 AND 200),
	description text
		CONSTRAINT api_key_description_length CHECK (length(description) <= 2000),
	client_name text
		CONSTRAINT api_key_client_name_format CHECK (length(client_name) BETWEEN 1 AND 256),
	key_salt text NOT NULL
		CONSTRAINT api_key_salt_format CHECK (key_salt ~ '^[!-~]+$' AND length(key_salt) <= 256),
	key_hash text NOT NULL
		CONSTRAINT api_key_hash_format CHECK (length(key_hash) = 64 AND key_hash !~ '[^0-9a-f]'),
	-- The secret before the last rotation, honoured until previous_valid_until.
	previous_key_salt text
		CONSTRAINT api_key_previous_salt_format CHECK (previous_key_salt ~ '^[!-~]+$' AND length(previous_key_salt) <= 256),
	previous_key_hash text
		CONSTRAINT api_key_previous_hash_format CHECK
			(length(previous_key_hash) = 64 AND previous_key_hash !~ '[^0-9a-f]'),
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

-- What a key cache miss looks a public id up by (src/key_rows.c): in the "C"
-- collation a descent of a large key table compares bytes instead of
-- collating them (half of a 1M-key miss's descent under C.UTF-8).  The column
-- and its UNIQUE constraint, which SQL uses, keep the database collation;
-- equality is the same in both (it is deterministic), so either index finds
-- the same key.
CREATE UNIQUE INDEX api_key_public_id_lookup_idx ON athena_keys.api_key (public_id COLLATE "C");

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

-- Rate limits: requests per period with a burst, on one key or on one
-- client name (shared by every key presenting it).  per is kept as the
-- seconds it stands for (athena_set_*_rate_limit normalizes it), so that
-- equal periods are equal; the buckets live in shared memory
-- (src/rate_limit.c), never here.
CREATE TABLE athena_keys.api_key_rate_limit (
	id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	api_key_id uuid REFERENCES athena_keys.api_key (id) ON DELETE CASCADE,
	client_name text
		CONSTRAINT api_key_rate_limit_client_name CHECK (length(client_name) BETWEEN 1 AND 256),
	requests integer NOT NULL CONSTRAINT api_key_rate_limit_requests CHECK (requests > 0),
	per interval NOT NULL
		CONSTRAINT api_key_rate_limit_per CHECK (extract(epoch FROM per) BETWEEN 0.001 AND 31557600),
	burst integer NOT NULL CONSTRAINT api_key_rate_limit_burst CHECK (burst >= 1),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT api_key_rate_limit_subject CHECK ((api_key_id IS NULL) <> (client_name IS NULL)),
	CONSTRAINT api_key_rate_limit_rate CHECK (requests <= extract(epoch FROM per) * 1000000),
	-- a bucket holds burst x per / requests: at most 100 years
	CONSTRAINT api_key_rate_limit_bucket CHECK (extract(epoch FROM per) * burst <= 3155760000::numeric * requests),
	CONSTRAINT api_key_rate_limit_key_per UNIQUE (api_key_id, per),
	CONSTRAINT api_key_rate_limit_client_per UNIQUE (client_name, per)
);

COMMENT ON TABLE athena_keys.api_key_rate_limit IS
	'Rate limits (requests per period, burst) of one key or one client name; enforced from shared memory.';

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
-- Rows arrive in created_at order, and the log is only ever searched by time
-- ranges (the views use the failures index): a BRIN index finds a range for a
-- small fixed cost per row written (a btree entry cost the log writer more than
-- the row itself, and grew with the partition).
CREATE INDEX api_key_auth_log_created_at_idx ON athena_keys.api_key_auth_log USING brin (created_at);
CREATE INDEX api_key_auth_log_failures_idx ON athena_keys.api_key_auth_log (created_at)
	WHERE failure_reason IS NOT NULL;

COMMENT ON TABLE athena_keys.api_key_auth_log IS
	'One row per athena_authenticate decision. Never holds a secret or the digest of a presented key.';
