--------------------------------------------------------------------------
-- Administration: rate limits.  A limit is requests per period with a
-- burst (the units a full bucket holds, default requests), on one key or
-- on one client name; one limit per subject and period, so setting the
-- same period again replaces it.  A change takes effect at commit, like
-- every other admin change (the caches are invalidated); a changed limit
-- starts with a full bucket.
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys._require_rate_limit(requests integer, per interval, burst integer)
RETURNS interval
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
-- The period as the seconds it stands for, after checking the limit: at
-- least one request, a period from 1 millisecond to 1 year, a burst of at
-- least 1, and no more than one request per microsecond.
DECLARE
	seconds numeric;
BEGIN
	PERFORM athena_keys._require_not_null(requests, 'requests');
	PERFORM athena_keys._require_not_null(per, 'per');
	IF requests < 1 THEN
		RAISE EXCEPTION 'rate limit requests must be positive'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('The limit given allows %s requests.', requests),
			      HINT = 'Pass the number of requests allowed per period, 1 or more; to lift a limit, clear it.';
	END IF;
	seconds := extract(epoch FROM per);
	IF seconds < 0.001 OR seconds > 31557600 THEN
		RAISE EXCEPTION 'rate limit period must be between 1 millisecond and 1 year'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('The period given is %s.', per),
			      HINT = 'Pass a period such as interval ''1 second'', ''1 minute'' or ''1 day''.';
	END IF;
	IF requests > seconds * 1000000 THEN
		RAISE EXCEPTION 'rate limit of % per % is faster than one request per microsecond', requests, per
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = 'A limit admits at most 1000000 requests per second.',
			      HINT = 'Pass fewer requests or a longer period.';
	END IF;
	IF burst IS NOT NULL AND burst < 1 THEN
		RAISE EXCEPTION 'rate limit burst must be positive'
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('The burst given is %s.', burst),
			      HINT = 'Pass the requests a full bucket may take at once, or NULL for as many as the limit allows per period.';
	END IF;
	IF burst IS NOT NULL AND seconds * burst > 3155760000::numeric * requests THEN
		RAISE EXCEPTION 'rate limit bucket of % per % with a burst of % is too long', requests, per, burst
			USING ERRCODE = 'invalid_parameter_value',
			      DETAIL = format('A full bucket would take %s years to earn; a limit''s burst x period / requests is at most 100 years.',
			                      round(seconds * burst / requests / 31557600, 1)),
			      HINT = 'Pass a smaller burst, or more requests per period.';
	END IF;
	RETURN justify_hours(make_interval(secs => seconds));
END
$$;

CREATE FUNCTION athena_keys.athena_set_key_rate_limit(
	id uuid, requests integer, per interval, burst integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Limit a key to requests per period (burst NULL: as many as requests);
-- the key's limit of the same period is replaced.
DECLARE
	k athena_keys.api_key;
	normalized interval;
BEGIN
	k := athena_keys._require_key(id);
	normalized := athena_keys._require_rate_limit(requests, per, burst);
	INSERT INTO athena_keys.api_key_rate_limit AS l (api_key_id, requests, per, burst)
	VALUES (k.id, requests, normalized, coalesce(burst, requests))
	ON CONFLICT ON CONSTRAINT api_key_rate_limit_key_per
	DO UPDATE SET requests = EXCLUDED.requests, burst = EXCLUDED.burst, updated_at = now();
END
$$;

CREATE FUNCTION athena_keys.athena_clear_key_rate_limit(id uuid, per interval DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Lift a key's limit of one period (per NULL: all of them); returns how
-- many were lifted.
DECLARE
	k athena_keys.api_key;
	normalized interval;
	lifted integer;
BEGIN
	k := athena_keys._require_key(id);
	IF per IS NOT NULL THEN
		normalized := athena_keys._require_rate_limit(1, per, NULL);
	END IF;
	DELETE FROM athena_keys.api_key_rate_limit l
	 WHERE l.api_key_id = k.id AND (normalized IS NULL OR l.per = normalized);
	GET DIAGNOSTICS lifted = ROW_COUNT;
	RETURN lifted;
END
$$;

CREATE FUNCTION athena_keys.athena_set_client_rate_limit(
	client text, requests integer, per interval, burst integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Limit every key presenting client, together, to requests per period
-- (burst NULL: as many as requests); the client's limit of the same period
-- is replaced.
DECLARE
	normalized interval;
BEGIN
	PERFORM athena_keys._require_not_null(client, 'client');
	PERFORM athena_keys._require_client_name(client);
	normalized := athena_keys._require_rate_limit(requests, per, burst);
	INSERT INTO athena_keys.api_key_rate_limit AS l (client_name, requests, per, burst)
	VALUES (client, requests, normalized, coalesce(burst, requests))
	ON CONFLICT ON CONSTRAINT api_key_rate_limit_client_per
	DO UPDATE SET requests = EXCLUDED.requests, burst = EXCLUDED.burst, updated_at = now();
END
$$;

CREATE FUNCTION athena_keys.athena_clear_client_rate_limit(client text, per interval DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Lift a client's limit of one period (per NULL: all of them); returns how
-- many were lifted.
DECLARE
	normalized interval;
	lifted integer;
BEGIN
	PERFORM athena_keys._require_not_null(client, 'client');
	IF per IS NOT NULL THEN
		normalized := athena_keys._require_rate_limit(1, per, NULL);
	END IF;
	DELETE FROM athena_keys.api_key_rate_limit l
	 WHERE l.client_name = client AND (normalized IS NULL OR l.per = normalized);
	GET DIAGNOSTICS lifted = ROW_COUNT;
	RETURN lifted;
END
$$;

COMMENT ON FUNCTION athena_keys.athena_set_key_rate_limit(uuid, integer, interval, integer) IS
	'Limit a key to requests per period with a burst (default requests); replaces its limit of that period.';
COMMENT ON FUNCTION athena_keys.athena_clear_key_rate_limit(uuid, interval) IS
	'Lift a key''s limit of one period, or all of them; returns how many were lifted.';
COMMENT ON FUNCTION athena_keys.athena_set_client_rate_limit(text, integer, interval, integer) IS
	'Limit all keys presenting a client, together, to requests per period with a burst; replaces that period''s limit.';
COMMENT ON FUNCTION athena_keys.athena_clear_client_rate_limit(text, interval) IS
	'Lift a client''s limit of one period, or all of them; returns how many were lifted.';
