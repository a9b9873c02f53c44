-- Changes to the key tables that no admin function makes, each seen by the
-- next call of a backend that has the key cached (src/cache_invalidation.c):
-- a key's id changed in place (its grants, rules and limits are read by it),
-- and a key table renamed away and back (the backend, which could not
-- match the returning table's invalidations to a table it knew, looks the
-- tables up again).  A missing table of rate limits is an error, not a
-- decision without limits.
\set SHOW_CONTEXT never
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS athena_keys CASCADE;
RESET client_min_messages;
CREATE EXTENSION athena_keys;
SET athena_keys.log_decisions = none;
SET athena_keys.last_used_interval = 86400;

SELECT athena_keys.athena_create_right('admin.all');
SELECT api_key AS k_admin, id AS k_admin_id
  FROM athena_keys.athena_create_key('admin key', rights => ARRAY['admin.all']) \gset
SELECT api_key AS k_plain, id AS k_plain_id FROM athena_keys.athena_create_key('plain key') \gset

-- Both cached: the admin key holds the right, the plain key does not.
SELECT status, reason FROM athena_keys.athena_authenticate(:'k_admin', NULL, '10.0.0.1', ARRAY['admin.all']);
SELECT status, reason FROM athena_keys.athena_authenticate(:'k_plain', NULL, '10.0.0.1', ARRAY['admin.all']);
-- The plain key given the admin key's id in place, and the admin key a new
-- one (the foreign keys are NO ACTION, so the grant now belongs to the plain
-- key; the rows are updated in the order they were made, the admin key's
-- first, so its old id is free when the plain key takes it): each key's next
-- call is judged by the grants of its new id.
UPDATE athena_keys.api_key k
   SET id = CASE k.name WHEN 'admin key' THEN gen_random_uuid() ELSE :'k_admin_id'::uuid END
 WHERE k.name IN ('admin key', 'plain key');
SELECT status, reason, key_id NOT IN (:'k_admin_id', :'k_plain_id') AS has_new_id
  FROM athena_keys.athena_authenticate(:'k_admin', NULL, '10.0.0.1', ARRAY['admin.all']);
SELECT status, reason, key_id = :'k_admin_id' AS has_new_id
  FROM athena_keys.athena_authenticate(:'k_plain', NULL, '10.0.0.1', ARRAY['admin.all']);

-- The global rules renamed away (the call then fails) and back: the next
-- blacklist entry blocks the caller at once.
SELECT status FROM athena_keys.athena_authenticate(:'k_plain', NULL, '10.0.0.1', NULL);
ALTER TABLE athena_keys.api_key_global_ip_rule RENAME TO global_rules_away;
SELECT status FROM athena_keys.athena_authenticate(:'k_plain', NULL, '10.0.0.1', NULL);
ALTER TABLE athena_keys.global_rules_away RENAME TO api_key_global_ip_rule;
SELECT status FROM athena_keys.athena_authenticate(:'k_plain', NULL, '10.0.0.1', NULL);
SELECT athena_keys.athena_add_ip_rule('blacklist', '10.0.0.0/8') IS NOT NULL AS added;
SELECT status, reason FROM athena_keys.athena_authenticate(:'k_plain', NULL, '10.0.0.1', NULL);
SELECT athena_keys.athena_remove_ip_rule('blacklist', '10.0.0.0/8');

-- The same for a key's own table: grants renamed away and back, then a
-- revocation is seen by the next call.
SELECT status FROM athena_keys.athena_authenticate(:'k_plain', NULL, '10.0.0.1', ARRAY['admin.all']);
ALTER TABLE athena_keys.api_key_right_grant RENAME TO grants_away;
SELECT status FROM athena_keys.athena_authenticate(:'k_plain', NULL, '10.0.0.1', ARRAY['admin.all']);
ALTER TABLE athena_keys.grants_away RENAME TO api_key_right_grant;
SELECT status FROM athena_keys.athena_authenticate(:'k_plain', NULL, '10.0.0.1', ARRAY['admin.all']);
SELECT athena_keys.athena_revoke_rights(:'k_admin_id', ARRAY['admin.all']);
SELECT status, reason FROM athena_keys.athena_authenticate(:'k_plain', NULL, '10.0.0.1', ARRAY['admin.all']);

-- Without its table of rate limits a call cannot honour them: an error
-- naming the table, never a decision that ignores every limit.
ALTER TABLE athena_keys.api_key_rate_limit RENAME TO limits_away;
SELECT status FROM athena_keys.athena_authenticate(:'k_plain', NULL, '10.0.0.1', NULL);
ALTER TABLE athena_keys.limits_away RENAME TO api_key_rate_limit;
SELECT status FROM athena_keys.athena_authenticate(:'k_plain', NULL, '10.0.0.1', NULL);

DROP EXTENSION athena_keys CASCADE;
