-- The call never changes how the caller's transaction commits, and every
-- decision is logged whatever the caller's transaction mode, or answered
-- under the fail mode where it cannot be (this server has no preloaded
-- log writer, so a read-only transaction has nowhere to log).
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
DROP TABLE IF EXISTS app_orders;
RESET client_min_messages;
CREATE EXTENSION athena_keys;

SELECT api_key AS k, id AS k_id FROM athena_keys.athena_create_key('modes') \gset
CREATE TABLE app_orders (n int);

\set v 'allowed, status, reason, authenticated'

------------------------------------------------------------------------
-- Async logging never weakens the caller's own writes.  Without the
-- preloaded writer the call inserts its log row (and the first call stamps
-- last_used_at): the transaction's commit stays synchronous, so an
-- application row written after the call is as durable as it asked.
------------------------------------------------------------------------
SET athena_keys.log_durability = async;
BEGIN;
SELECT :v FROM athena_keys.athena_authenticate(:'k', 'app', '10.0.0.1', NULL);
SHOW synchronous_commit;
INSERT INTO app_orders VALUES (1);
COMMIT;
-- Also when the caller had written first, and with log_decisions = failures.
BEGIN;
INSERT INTO app_orders VALUES (2);
SELECT :v FROM athena_keys.athena_authenticate('ath_0000000000000000.' || repeat('0', 64), 'app', NULL, NULL);
SHOW synchronous_commit;
COMMIT;
RESET athena_keys.log_durability;
SELECT count(*) AS app_rows FROM app_orders;
SELECT count(*) AS logged FROM athena_keys.api_key_auth_log WHERE client_name = 'app';

------------------------------------------------------------------------
-- Read-only transactions: the decision cannot be logged here, so a request
-- that would pass is answered as "API key policy unavailable" under the
-- fail mode (503 when failing closed, allowed when failing open) and never
-- passes unlogged when failing closed; a refusal stays what it is.
------------------------------------------------------------------------
BEGIN READ ONLY;
SELECT :v FROM athena_keys.athena_authenticate(:'k', 'ro', '10.0.0.1', NULL);
SELECT :v FROM athena_keys.athena_authenticate('garbage', 'ro', '10.0.0.1', NULL);
COMMIT;

SET default_transaction_read_only = on;
SELECT :v FROM athena_keys.athena_authenticate(:'k', 'ro', '10.0.0.1', NULL);
RESET default_transaction_read_only;

SELECT athena_keys.athena_set_fail_mode('fail_open') \g /dev/null
BEGIN READ ONLY;
SELECT :v FROM athena_keys.athena_authenticate(:'k', 'ro', '10.0.0.1', NULL);
COMMIT;
SELECT athena_keys.athena_set_fail_mode('fail_closed') \g /dev/null

-- When the settings log nothing, nothing has to be written: the verdict
-- stands (and with failures only, a success is not logged either).
SET athena_keys.log_decisions = none;
BEGIN READ ONLY;
SELECT :v FROM athena_keys.athena_authenticate(:'k', 'ro', '10.0.0.1', NULL);
COMMIT;
SET athena_keys.log_decisions = failures;
BEGIN READ ONLY;
SELECT :v FROM athena_keys.athena_authenticate(:'k', 'ro', '10.0.0.1', NULL);
SELECT :v FROM athena_keys.athena_authenticate('garbage', 'ro', '10.0.0.1', NULL);
COMMIT;
RESET athena_keys.log_decisions;

SELECT count(*) AS logged_read_only FROM athena_keys.api_key_auth_log WHERE client_name = 'ro';

DROP TABLE app_orders;
DROP EXTENSION athena_keys CASCADE;
