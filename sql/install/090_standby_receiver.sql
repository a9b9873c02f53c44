--------------------------------------------------------------------------
-- The standby receiver.  A hot standby cannot write its decisions; its log
-- writer ships them to the primary, which validates them and appends them
-- to the log here.  The role that may do this and nothing else is made by
-- athena_grant_shipping_role (085_admin_roles.sql).
--------------------------------------------------------------------------

-- At most max_bytes of s (in the database's encoding), cut at a character
-- boundary: a shipped client name is cut as a call cuts the one it logs.
-- The longest prefix that fits is found by halving, a dozen steps for any
-- length, not one step per character cut off.
CREATE FUNCTION athena_keys._left_bytes(s text, max_bytes integer) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp AS $$
	WITH RECURSIVE cut(lo, hi) AS (
		SELECT 0, least(length(s), max_bytes)
		UNION ALL
		SELECT CASE WHEN octet_length(left(s, (lo + hi + 1) / 2)) <= max_bytes THEN (lo + hi + 1) / 2 ELSE lo END,
		       CASE WHEN octet_length(left(s, (lo + hi + 1) / 2)) <= max_bytes THEN hi ELSE (lo + hi + 1) / 2 - 1 END
		  FROM cut WHERE lo < hi)
	SELECT CASE WHEN octet_length(s) <= max_bytes THEN s
	            ELSE (SELECT left(s, c.lo) FROM cut c WHERE c.lo = c.hi) END
$$;

CREATE FUNCTION athena_keys._append_decisions(decisions jsonb) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- The rows of decisions that athena_authenticate could have produced,
-- appended to the log, and last_used_at stamped for the keys they
-- authenticated (see athena_record_decisions); returns the rows appended.
-- Raises a data exception when a value does not convert to its column.
DECLARE
	appended integer;
BEGIN
	WITH incoming AS (
		SELECT r.*,
		       CASE WHEN r.failure_reason IN ('API key required', 'Invalid API key',
		                                      'Inactive API key', 'Expired API key') THEN 401
		            WHEN r.failure_reason IN ('API key client mismatch', 'Insufficient API key rights',
		                                      'IP blocked', 'IP not allowed', 'Client IP required') THEN 403
		            WHEN r.failure_reason = 'Rate limit exceeded' THEN 429
		            WHEN r.failure_reason = 'API key policy unavailable' THEN 503
		            WHEN r.failure_reason IS NULL THEN 200
		       END AS reason_status
		  FROM jsonb_to_recordset(decisions) AS r(
			created_at timestamptz, api_key_id uuid, api_key_public_id text, client_name text,
			remote_addr inet, required_rights text[], granted_rights text[], missing_rights text[],
			authenticated boolean, authorized boolean, enforced boolean, allowed boolean,
			status smallint, failure_reason text, locked_in boolean)
	), valid AS (
		SELECT * FROM incoming i
		 WHERE i.created_at IS NOT NULL AND isfinite(i.created_at)
		   AND i.created_at <= now() + interval '5 minutes'
		   AND i.created_at >= now() - interval '30 days'
		   AND i.status IN (200, 401, 403, 429, 503)
		   AND i.reason_status IS NOT NULL
		   AND i.authenticated IS NOT NULL AND i.authorized IS NOT NULL
		   AND i.enforced IS NOT NULL AND i.allowed IS NOT NULL
		   -- authorized = authenticated and the client binding, rights and IP
		   -- policy passed: with no reason, and when a rate limit refused; an
		   -- unavailable policy is the learning write's (not authorized) or a
		   -- rate limit bucket's (authorized)
		   AND CASE WHEN i.failure_reason IS NULL OR i.failure_reason = 'Rate limit exceeded'
		            THEN i.authorized = i.authenticated
		            WHEN i.failure_reason = 'API key policy unavailable'
		            THEN i.authenticated OR NOT i.authorized
		            ELSE NOT i.authorized END
		   AND (NOT i.authenticated OR i.api_key_id IS NOT NULL)
		   -- a decision names a key through its public id: a live key's id
		   -- comes with that key's public id, never another's
		   AND (i.api_key_id IS NULL OR i.api_key_public_id IS NOT NULL)
		   AND NOT EXISTS (SELECT 1 FROM athena_keys.api_key k
		                    WHERE k.id OPERATOR(pg_catalog.=) i.api_key_id
		                      AND k.public_id IS DISTINCT FROM i.api_key_public_id)
		   AND (NOT coalesce(i.locked_in, false) OR i.authorized)
		   -- a public id is logged only in the form the key parser accepts
		   AND (i.api_key_public_id IS NULL OR
		        (length(i.api_key_public_id) BETWEEN 8 AND 64 AND i.api_key_public_id !~ '[^0-9A-Za-z_-]'))
		   -- granted and missing rights are names, never NULL (a caller's
		   -- required rights may hold NULLs, which are logged as given);
		   -- a rights failure names what is missing
		   AND array_position(i.granted_rights, NULL) IS NULL
		   AND array_position(i.missing_rights, NULL) IS NULL
		   AND (i.failure_reason IS DISTINCT FROM 'Insufficient API key rights'
		        OR cardinality(i.missing_rights) > 0)
		   -- no address is what makes an address required
		   AND (i.failure_reason IS DISTINCT FROM 'Client IP required' OR i.remote_addr IS NULL)
		   -- 401 reasons come before authentication succeeds, 403 and 429 ones after;
		   -- no reason under enforcement means a genuine key was presented.
		   AND CASE i.reason_status
		         WHEN 401 THEN NOT i.authenticated
		         WHEN 403 THEN i.authenticated
		         WHEN 429 THEN i.authenticated
		         WHEN 200 THEN i.authenticated OR NOT i.enforced
		         ELSE true END
		   AND (i.failure_reason IS DISTINCT FROM 'API key required'
		        OR (i.enforced AND i.api_key_id IS NULL AND i.api_key_public_id IS NULL))
		   -- shadow mode and passes allow with 200; fail_open allows an
		   -- unavailable policy with 200; everything else is refused with
		   -- the reason's status.
		   AND CASE WHEN i.failure_reason IS NULL OR NOT i.enforced THEN i.allowed AND i.status = 200
		            WHEN i.reason_status = 503 THEN i.allowed = (i.status = 200) AND i.status IN (200, 503)
		            ELSE NOT i.allowed AND i.status = i.reason_status END
	), appended_rows AS (
		INSERT INTO athena_keys.api_key_auth_log
			(created_at, api_key_id, api_key_public_id, client_name, remote_addr, required_rights,
			 granted_rights, missing_rights, authenticated, authorized, enforced, allowed, status,
			 failure_reason, locked_in)
		SELECT created_at, api_key_id, api_key_public_id, athena_keys._left_bytes(client_name, 1024),
		       remote_addr, required_rights, granted_rights, missing_rights, authenticated,
		       authorized, enforced, allowed, status, failure_reason, coalesce(locked_in, false)
		  FROM valid
		RETURNING api_key_id, created_at, authenticated
	), used AS (
		SELECT api_key_id, least(max(created_at), now()) AS used_at FROM appended_rows
		 WHERE authenticated AND api_key_id IS NOT NULL GROUP BY api_key_id
	), stamped AS (
		-- A stamp in the future (left by an earlier forged row) is repaired.
		UPDATE athena_keys.api_key k SET last_used_at = u.used_at
		  FROM used u
		 WHERE k.id = u.api_key_id
		   AND (k.last_used_at IS NULL OR k.last_used_at < u.used_at
		        OR k.last_used_at > now() + interval '5 minutes')
		RETURNING k.id
	)
	SELECT count(*) INTO appended FROM appended_rows;
	RETURN appended;
END
$$;

CREATE FUNCTION athena_keys.athena_record_decisions(decisions jsonb) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Append decisions made elsewhere (a hot standby's log writer ships them
-- here in batches) to api_key_auth_log, and stamp last_used_at for the keys
-- they authenticated.  decisions is a JSON array of objects with the log's
-- column names.  Whoever may call this writes into the audit log, so only
-- rows athena_authenticate could have produced are taken: created_at from
-- 30 days ago (a standby keeps its queue while its primary is down) to 5
-- minutes ahead (clock skew), and status, allowed, reason, enforced,
-- authenticated and authorized agreeing with the decision rules, a public
-- id of the key format, granted and missing rights without NULLs (a rights
-- failure naming what is missing), no address for "Client IP required", and a
-- live key named only together with its own public id.  Other rows, and
-- rows with a value that does not convert to its column or that a
-- constraint of the log refuses (the batch is then taken one decision at a
-- time), are skipped and counted in a WARNING.  When a constraint refuses
-- every row of the batch, or a partition refuses a row (a day without its
-- partition), the error is raised: it is the log's, and the standby keeps
-- the batch queued until it is fixed, as the log writer keeps its rows.
-- last_used_at is never stamped beyond now().  Returns the rows appended.
DECLARE
	received integer;
	appended integer;
	refused integer := 0;
	decision jsonb;
	state text;
	constraint_name text;
BEGIN
	PERFORM athena_keys._require_not_null(decisions, 'decisions');
	IF jsonb_typeof(decisions) <> 'array' THEN
		RAISE EXCEPTION 'decisions must be a json array'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('Got a json %s.', jsonb_typeof(decisions)),
			      HINT = 'Pass an array of objects with the columns of athena_keys.api_key_auth_log.';
	END IF;
	received := jsonb_array_length(decisions);
	BEGIN
		appended := athena_keys._append_decisions(decisions);
	EXCEPTION WHEN data_exception OR integrity_constraint_violation THEN
		-- One value that does not convert (an address that is no inet, a
		-- status that is no integer, an element that is no object), or one
		-- row an operator's constraint refuses (a CHECK on the client name's
		-- length), fails the whole set; the others must not be held up with
		-- it.  A partition's refusal (23514 naming no constraint) is the log's.
		GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, constraint_name = CONSTRAINT_NAME;
		IF state = '23514' AND constraint_name = '' THEN
			RAISE;
		END IF;
		appended := 0;
		FOR decision IN SELECT d FROM jsonb_array_elements(decisions) AS d LOOP
			BEGIN
				appended := appended + athena_keys._append_decisions(jsonb_build_array(decision));
			EXCEPTION
				WHEN data_exception THEN
					NULL;
				WHEN integrity_constraint_violation THEN
					GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, constraint_name = CONSTRAINT_NAME;
					IF state = '23514' AND constraint_name = '' THEN
						RAISE;
					END IF;
					refused := refused + 1;
			END;
		END LOOP;
		-- A constraint no row meets is the log's: the batch stays queued
		IF appended = 0 AND refused > 0 THEN
			RAISE;
		END IF;
	END;
	IF appended < received THEN
		RAISE WARNING '% of % shipped decisions were skipped', received - appended, received
			USING DETAIL = 'A decision is recorded only when its values convert to the log''s columns, the log''s '
			               'constraints take it, its created_at '
			               'lies between 30 days ago and 5 minutes ahead, and its status, allowed, failure_reason, '
			               'enforced, authenticated, authorized, public id, rights and address agree as '
			               'athena_authenticate produces them.',
			      HINT = 'Check the clock of the server that made the decisions, that the log takes every row a '
			             'call can write, and that only its log writer calls athena_record_decisions.';
	END IF;
	RETURN appended;
END
$$;

COMMENT ON FUNCTION athena_keys.athena_record_decisions(jsonb) IS
	'Append a batch of decisions made on a hot standby to the log and stamp last_used_at; returns rows appended.';
