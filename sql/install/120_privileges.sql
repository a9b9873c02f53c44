--------------------------------------------------------------------------
-- Privileges: PUBLIC gets nothing.  The schema, the result type and every
-- table, view and function are revoked from PUBLIC here, after the other
-- pieces made them, so no piece needs a REVOKE of its own (an upgrade
-- script revokes what it creates).  Operators give roles what they need
-- with the helpers of 085_admin_roles.sql (superuser only).
--------------------------------------------------------------------------

REVOKE ALL ON ALL TABLES IN SCHEMA athena_keys FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA athena_keys FROM PUBLIC;
REVOKE ALL ON SCHEMA athena_keys FROM PUBLIC;
REVOKE ALL ON TYPE athena_keys.athena_auth_result FROM PUBLIC;
