/*-------------------------------------------------------------------------
 * key_digest.c
 *		Key verification material: SHA-256 over "salt:secret", compared in
 *		constant time, and random bytes for new keys.
 *
 * Only OpenSSL is used here, so the fuzzer and unit tests link this file
 * directly.  The stored form is Athena's own, so imported keys verify.
 *-------------------------------------------------------------------------
 */
#include "key_digest.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

/*
 * Compute SHA-256(salt || ':' || secret).  The digest context is kept for
 * the life of the process: allocating one per call would cost more than
 * hashing an 80-byte input.  So is the algorithm: with OpenSSL 3, naming it
 * through EVP_sha256() makes every initialisation look it up again among
 * the providers, under a lock, which costs more than the hashing itself.
 * Returns false only if OpenSSL fails.
 */
bool
ComputeKeyDigest(const char *salt, size_t salt_len,
				 const char *secret, size_t secret_len,
				 unsigned char out[KEY_DIGEST_LEN])
{
	static EVP_MD_CTX *ctx = NULL;
	unsigned int out_len = 0;
	int			initialised;

	if (ctx == NULL)
	{
		ctx = EVP_MD_CTX_new();
		if (ctx == NULL)
			return false;
	}
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
	{
		static EVP_MD *sha256 = NULL;

		if (sha256 == NULL)
		{
			sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
			if (sha256 == NULL)
				return false;
		}
		initialised = EVP_DigestInit_ex2(ctx, sha256, NULL);
	}
#else
	initialised = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
#endif
	if (initialised != 1 ||
		EVP_DigestUpdate(ctx, salt, salt_len) != 1 ||
		EVP_DigestUpdate(ctx, ":", 1) != 1 ||
		EVP_DigestUpdate(ctx, secret, secret_len) != 1 ||
		EVP_DigestFinal_ex(ctx, out, &out_len) != 1)
		return false;
	return out_len == KEY_DIGEST_LEN;
}

/* Compare two digests without a data-dependent early exit */
bool
KeyDigestsEqual(const unsigned char *a, const unsigned char *b)
{
	return CRYPTO_memcmp(a, b, KEY_DIGEST_LEN) == 0;
}

/* Fill buf with cryptographically strong random bytes */
bool
FillRandomBytes(unsigned char *buf, size_t len)
{
	return RAND_bytes(buf, (int) len) == 1;
}
