/*-------------------------------------------------------------------------
 * test_key_digest.c
 *		Unit tests of key_digest: salted SHA-256, digest comparison, random bytes.
 *
 * Built and run by make -C test/unit test (see unit_check.h for the output).
 *-------------------------------------------------------------------------
 */
#include "key_digest.h"
#include "key_format.h"
#include "unit_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Digest                                                              */
/* ------------------------------------------------------------------ */

static void
DigestHex(const char *salt, const char *secret, char *hex)
{
	unsigned char d[KEY_DIGEST_LEN];

	if (!ComputeKeyDigest(salt, strlen(salt), secret, strlen(secret), d))
	{
		strcpy(hex, "(ComputeKeyDigest failed)");
		return;
	}
	EncodeHex(d, KEY_DIGEST_LEN, hex);
}

static void
TestDigest(void)
{
	char		hex[2 * KEY_DIGEST_LEN + 1];
	unsigned char a[KEY_DIGEST_LEN];
	unsigned char b[KEY_DIGEST_LEN];
	unsigned char r1[32];
	unsigned char r2[32];
	int			i;

	/* printf 'salt:secret' | sha256sum */
	DigestHex("salt", "secret", hex);
	Check(strcmp(hex, "e0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f828") == 0,
		  "SHA-256(\"salt:secret\") known answer (got %s)", hex);
	/* printf ':' | sha256sum */
	DigestHex("", "", hex);
	Check(strcmp(hex, "e7ac0786668e0ff0f02b62bd04f45ff636fd82db63b1104601c975dc005f3a67") == 0,
		  "SHA-256(\":\") known answer for empty salt and secret (got %s)", hex);
	/* the context is reused: a second call gives the same answer */
	DigestHex("salt", "secret", hex);
	Check(strcmp(hex, "e0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f828") == 0,
		  "second call with the reused context gives the same digest");
	DigestHex("salt", "secreT", hex);
	Check(strcmp(hex, "e0daae7ddca6117bae5f642d182bf4c456a16fe195e74ccb38714372c533f828") != 0,
		  "different secret, different digest");

	Check(ComputeKeyDigest("salt", 4, "secret", 6, a) && ComputeKeyDigest("salt", 4, "secret", 6, b) &&
		  KeyDigestsEqual(a, b), "KeyDigestsEqual: equal digests");
	Check(KeyDigestsEqual(a, a), "KeyDigestsEqual: same buffer");
	for (i = 0; i < KEY_DIGEST_LEN; i += 1)
	{
		memcpy(b, a, sizeof(a));
		b[i] ^= 0x01;
		if (KeyDigestsEqual(a, b))
			break;
	}
	Check(i == KEY_DIGEST_LEN, "KeyDigestsEqual: one flipped bit at any of the 32 positions differs");
	memcpy(b, a, sizeof(a));
	b[31] ^= 0x80;
	Check(!KeyDigestsEqual(a, b), "KeyDigestsEqual: last byte differs");

	Check(FillRandomBytes(r1, sizeof(r1)) && FillRandomBytes(r2, sizeof(r2)),
		  "FillRandomBytes succeeds");
	Check(memcmp(r1, r2, sizeof(r1)) != 0, "two 32-byte random draws differ");
	Check(FillRandomBytes(r1, 0), "FillRandomBytes of 0 bytes succeeds");
}


/* Run every key_digest check and summarise */
int
main(void)
{
	TestDigest();
	return CheckSummary();
}
