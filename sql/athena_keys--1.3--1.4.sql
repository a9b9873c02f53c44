-- athena_keys 1.3 -> 1.4

-- athena_authenticate decides as its caller and performs the effects that
-- need a table (a cache fill, learning, a log insert, a last_used_at
-- stamp) with the extension owner's rights for exactly those sections:
-- the SECURITY DEFINER twin it used to hand whole calls to is gone.
DROP FUNCTION athena_keys._authenticate_privileged(text, text, inet, text[]);
