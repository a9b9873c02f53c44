-- athena_keys: gateway API keys decided in one SQL call.  The install
-- script of the current version (default_version in athena_keys.control).
-- Every object lives in schema athena_keys; PUBLIC is granted nothing.
--
-- make builds the script from the pieces in sql/install/, joined in the
-- order of their names, one area per piece: edit the pieces, never the built
-- sql/athena_keys--VERSION.sql.  It creates the current objects directly.
-- Databases made at an earlier version reach the same objects through the
-- upgrade scripts (athena_keys--X--Y.sql), and test/t/005_upgrade.pl proves
-- that both paths end with the same catalog.

\echo Use "CREATE EXTENSION athena_keys" to load this file. \quit
