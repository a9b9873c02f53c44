--------------------------------------------------------------------------
-- Administration: learning.  Lock a learning key in early, or make it
-- learn again.
--------------------------------------------------------------------------

CREATE FUNCTION athena_keys.athena_promote_key(id uuid) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
-- Lock a learning key in now; returns the number of whitelist entries made.
-- A key that has seen no address would lock in with an empty whitelist,
-- i.e. shown as locked while restricting nothing, so that is refused.
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
	IF NOT EXISTS (SELECT 1 FROM athena_keys.api_key_ip_seen s WHERE s.api_key_id = k.id) THEN
		RAISE EXCEPTION 'api key % has not seen any address yet', k.id
			USING ERRCODE = 'object_not_in_prerequisite_state',
			      DETAIL = 'Locking it in now would give it an empty whitelist, which restricts no address.',
			      HINT = 'Let the key make requests from its addresses first, or whitelist them with athena_add_ip_rule.';
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
