\echo Use "ALTER EXTENSION athena_keys UPDATE TO '1.4'" to load this file. \quit
-- athena_keys 1.3 -> 1.4.  1.4 is the first version with a maintained
-- install script: a fresh CREATE EXTENSION runs athena_keys--1.4.sql, built
-- by make from sql/install/, instead of 1.0 and every delta.  A change to
-- the objects goes here, as a delta for databases already installed, and
-- into the piece of sql/install/ that holds the object, for fresh ones;
-- test/t/005_upgrade.pl fails when the two paths end differently.

--------------------------------------------------------------------------
-- athena_authenticate decides as its caller and performs the effects that
-- need a table (a cache fill, learning, a log insert, a last_used_at
-- stamp) with the extension owner's rights for exactly those sections
-- (src/request_effects.c); it no longer hands whole calls to its SECURITY
-- DEFINER twin.  The twin stays, unchanged and granted to nobody, because
-- a backend that loaded the 1.3 library before this update still calls it
-- until it reconnects; the 1.4 library answers it with the same decision.
-- A later version drops it.
--------------------------------------------------------------------------

COMMENT ON FUNCTION athena_keys._authenticate_privileged(text, text, inet, text[]) IS
	'The 1.2/1.3 SECURITY DEFINER twin of athena_authenticate, granted to nobody; kept for backends that loaded the 1.3 library until they reconnect, and decided like athena_authenticate by the 1.4 library.';
