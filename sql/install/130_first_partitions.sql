--------------------------------------------------------------------------
-- Today's auth log partition and the coming week's.  Made last, after the
-- privileges, so that they carry the same (default) privileges as every
-- partition athena_maintain_auth_log makes later.
--------------------------------------------------------------------------

SELECT athena_keys.athena_maintain_auth_log(7);
