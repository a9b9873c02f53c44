-- A failure inside learning or lock-in never raises from
-- athena_authenticate: the write is rolled back and the request gets the
-- verdict "API key policy unavailable" under the fail mode, with a warning
-- for the operator.  Learning resumes once the fault is gone.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
DROP FUNCTION IF EXISTS learning_fault();
RESET client_min_messages;
CREATE EXTENSION athena_keys;

\set v 'allowed, status, reason, authenticated, locked_in'
SELECT api_key AS learner, id AS learner_id FROM athena_keys.athena_create_key('learner',
       virgin_mode => true, virgin_until_n_requests => 3) \gset

-- Any fault in the learning writes (here: a trigger that raises, standing
-- in for a restored database's stale sequence or a broken constraint).
CREATE FUNCTION learning_fault() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'duplicate key value violates unique constraint "api_key_ip_rule_pkey"'
		USING ERRCODE = 'unique_violation';
END
$$;
CREATE TRIGGER learning_fault BEFORE INSERT ON athena_keys.api_key_ip_seen
	FOR EACH ROW EXECUTE FUNCTION learning_fault();

SELECT :v FROM athena_keys.athena_authenticate(:'learner', NULL, '10.0.0.1', NULL);
SELECT athena_keys.athena_set_fail_mode('fail_open') \g /dev/null
SELECT :v FROM athena_keys.athena_authenticate(:'learner', NULL, '10.0.0.1', NULL);
SELECT athena_keys.athena_set_fail_mode('fail_closed') \g /dev/null
-- Nothing was half applied: no count, no seen row.
SELECT virgin_request_count, (SELECT count(*) FROM athena_keys.api_key_ip_seen) AS seen
  FROM athena_keys.api_key WHERE id = :'learner_id';
-- The failed calls are logged like any decision.
SELECT allowed, status, failure_reason FROM athena_keys.api_key_auth_log
 WHERE api_key_id = :'learner_id' ORDER BY id;

-- A fault at lock-in (the whitelist insert) is rolled back the same way.
DROP TRIGGER learning_fault ON athena_keys.api_key_ip_seen;
CREATE TRIGGER learning_fault BEFORE INSERT ON athena_keys.api_key_ip_rule
	FOR EACH ROW EXECUTE FUNCTION learning_fault();
SELECT :v FROM athena_keys.athena_authenticate(:'learner', NULL, '10.0.0.1', NULL);
SELECT :v FROM athena_keys.athena_authenticate(:'learner', NULL, '10.0.0.2', NULL);
SELECT :v FROM athena_keys.athena_authenticate(:'learner', NULL, '10.0.0.3', NULL);
SELECT virgin_request_count, virgin_resolved FROM athena_keys.api_key WHERE id = :'learner_id';

-- Once the fault is gone, the key learns and locks in.
DROP TRIGGER learning_fault ON athena_keys.api_key_ip_rule;
SELECT :v FROM athena_keys.athena_authenticate(:'learner', NULL, '10.0.0.3', NULL);
SELECT state, whitelist_size FROM athena_keys.athena_key_status WHERE id = :'learner_id';

-- Inside the caller's own subtransaction, too.
SELECT api_key AS learner2, id AS learner2_id FROM athena_keys.athena_create_key('learner2',
       virgin_mode => true, virgin_until_n_requests => 3) \gset
CREATE TRIGGER learning_fault BEFORE INSERT ON athena_keys.api_key_ip_seen
	FOR EACH ROW EXECUTE FUNCTION learning_fault();
BEGIN;
SAVEPOINT s;
SELECT :v FROM athena_keys.athena_authenticate(:'learner2', NULL, '10.0.0.1', NULL);
RELEASE SAVEPOINT s;
SELECT 1 AS still_usable;
COMMIT;
DROP TRIGGER learning_fault ON athena_keys.api_key_ip_seen;

DROP EXTENSION athena_keys CASCADE;
DROP FUNCTION learning_fault();
