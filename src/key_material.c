/*-------------------------------------------------------------------------
 * key_material.c
 *		C helpers behind the admin functions: key material from OpenSSL's
 *		RAND_bytes and the salted SHA-256 of a secret.
 *
 * The admin functions themselves are PL/pgSQL in the install script; these
 * two are the parts that must not be written with random() or pgcrypto.
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"

#include "key_digest.h"
#include "key_format.h"

PG_FUNCTION_INFO_V1(athena_random_hex);
PG_FUNCTION_INFO_V1(athena_key_digest);

/* Longest random string handed out, in bytes before hex encoding */
#define RANDOM_HEX_MAX_BYTES 64

/* nbytes cryptographically strong random bytes, as lowercase hex */
Datum
athena_random_hex(PG_FUNCTION_ARGS)
{
	int32		nbytes = PG_GETARG_INT32(0);
	unsigned char bytes[RANDOM_HEX_MAX_BYTES];
	char		hex[2 * RANDOM_HEX_MAX_BYTES + 1];

	if (nbytes < 1 || nbytes > RANDOM_HEX_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("random byte count must be between 1 and %d", RANDOM_HEX_MAX_BYTES),
				 errdetail("The count given was %d.", nbytes),
				 errhint("Ask for fewer bytes.")));
	if (!FillRandomBytes(bytes, nbytes))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes"),
				 errdetail("OpenSSL's RAND_bytes reported a failure."),
				 errhint("Check that the server's OpenSSL random generator is seeded.")));
	EncodeHex(bytes, nbytes, hex);
	PG_RETURN_TEXT_P(cstring_to_text(hex));
}

/* Lowercase hex SHA-256 of salt || ':' || secret (Athena's stored form) */
Datum
athena_key_digest(PG_FUNCTION_ARGS)
{
	text	   *salt = PG_GETARG_TEXT_PP(0);
	text	   *secret = PG_GETARG_TEXT_PP(1);
	unsigned char digest[KEY_DIGEST_LEN];
	char		hex[2 * KEY_DIGEST_LEN + 1];

	if (!ComputeKeyDigest(VARDATA_ANY(salt), VARSIZE_ANY_EXHDR(salt),
						  VARDATA_ANY(secret), VARSIZE_ANY_EXHDR(secret), digest))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a sha-256 digest"),
				 errdetail("OpenSSL reported a failure while hashing."),
				 errhint("Check the server log for OpenSSL errors.")));
	EncodeHex(digest, KEY_DIGEST_LEN, hex);
	PG_RETURN_TEXT_P(cstring_to_text(hex));
}
