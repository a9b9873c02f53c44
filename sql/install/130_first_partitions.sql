--------------------------------------------------------------------------
-- Today's auth log partition and the coming week's.  Made last, after the
-- privileges, so that they carry the same (default) privileges as every
-- partition athena_maintain_auth_log makes later.
--------------------------------------------------------------------------

SELECT athena_keys.athena_maintain_auth_log(7);
-- The default partition's BRIN indexes were built with the log's, before any
-- row: its range 0 is left unsummarized like a new partition's.
SELECT athena_keys._desummarize_auth_log_tail('athena_keys.api_key_auth_log_default');
