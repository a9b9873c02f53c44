/*-------------------------------------------------------------------------
 * key_digest.h
 *		SHA-256 of salt:secret with OpenSSL, and constant-time comparison.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_KEY_DIGEST_H
#define ATHENA_KEY_DIGEST_H

#include <stdbool.h>
#include <stddef.h>

#define KEY_DIGEST_LEN 32

extern bool ComputeKeyDigest(const char *salt, size_t salt_len,
							 const char *secret, size_t secret_len,
							 unsigned char out[KEY_DIGEST_LEN]);
extern bool KeyDigestsEqual(const unsigned char *a, const unsigned char *b);
extern bool FillRandomBytes(unsigned char *buf, size_t len);

#endif
