/*-------------------------------------------------------------------------
 * test_rights_match.c
 *		Unit tests of rights_match (SPEC section 4), with the inputs the fuzzers
 *		found in the "regressions" section at the end (test/fuzz/README.md).
 *
 * Built and run by make -C test/unit test (see unit_check.h for the output).
 *-------------------------------------------------------------------------
 */
#include "rights_match.h"
#include "unit_check.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Rights (SPEC section 4, "Rights matching")                          */
/* ------------------------------------------------------------------ */

typedef struct RightCase
{
	const char *granted;
	const char *required;
	bool		want;
} RightCase;

static const RightCase right_cases[] = {
	/* "*" satisfies everything */
	{"*", "users.read", true},
	{"*", "gateway.rpc.execute", true},
	{"*", "anything", true},
	{"*", "", true},
	{"*", "*", true},
	/* equality, case-sensitive */
	{"users.read", "users.read", true},
	{"gateway.query", "gateway.query", true},
	{"users.read", "Users.read", false},
	{"users.read", "users.READ", false},
	{"Users.read", "users.read", false},
	{"users.read", "users.read ", false},
	{"users.read", "users.rea", false},
	{"users.rea", "users.read", false},
	{"users.read", "users.write", false},
	{"users", "users", true},
	/* P.* */
	{"gateway.*", "gateway.rpc.execute", true},
	{"gateway.*", "gateway.query", true},
	{"users.*", "users.read", true},
	{"users.*", "users.a.b.c", true},
	{"users.*", "users", false},	/* SPEC: users.* does not match users */
	{"users.*", "usersx.read", false},
	{"users.*", "user.read", false},
	{"users.*", "Users.read", false},
	{"users.*", "xusers.read", false},
	{"users.*", "orders.read", false},
	{"users.*", "users.*", true},	/* equality */
	{"a.b.*", "a.b.c", true},
	{"a.b.*", "a.b", false},
	{"a.b.*", "a.c.d", false},
	{"USERS.*", "users.read", false},
	/* *.A */
	{"*.read", "users.read", true},
	{"*.read", "a.b.read", true},
	{"*.read", "gateway.read", true},
	{"*.read", "users.write", false},
	{"*.read", "users.READ", false},
	{"*.read", "users.reader", false},
	{"*.read", "users.xread", false},
	{"*.read", "read.users", false},
	{"*.READ", "users.read", false},
	{"*.write", "users.write", true},
	{"*.delete", "users.delete", true},
	{"*.a.b", "x.a.b", false},	/* a last dot-segment never contains a dot */
	/* gateway.read / gateway.write / gateway.delete */
	{"gateway.read", "users.read", true},
	{"gateway.read", "orders.read", true},
	{"gateway.write", "users.write", true},
	{"gateway.delete", "users.delete", true},
	{"gateway.read", "users.write", false},
	{"gateway.write", "users.read", false},
	{"gateway.delete", "users.read", false},
	{"gateway.read", "a.b.read", false},	/* three segments */
	{"gateway.read", "read", false},	/* one segment */
	{"gateway.read", ".read", false},	/* empty resource */
	{"gateway.read", "users.", false},
	{"gateway.read", "users.Read", false},
	{"gateway.read", "users.reads", false},
	{"gateway.read", "gateway.read", true},
	{"Gateway.read", "users.read", false},
	{"gateway.READ", "users.read", false},
	{"gateway.query", "users.query", false},	/* only read/write/delete */
	{"gateway.rpc.execute", "users.rpc.execute", false},
	/* no other rule */
	{"read", "users.read", false},
	{"users", "users.read", false},
	{"users.read", "users", false},
	{"*x", "users.read", false},
	{"x*", "xusers", false},
	{"users*", "users.read", false},
	{"*users", "users", false},
	/* empty strings */
	{"", "users.read", false},
	{"users.read", "", false},
	{"users.*", "", false},
	{"*.read", "", false},
	{"gateway.read", "", false},
};

static void
TestRights(void)
{
	size_t		i;

	for (i = 0; i < sizeof(right_cases) / sizeof(right_cases[0]); i++)
	{
		const RightCase *rc = &right_cases[i];
		bool		got = RightSatisfies(rc->granted, strlen(rc->granted),
										 rc->required, strlen(rc->required));

		Check(got == rc->want, "right granted '%s' %s required '%s'",
			  rc->granted, rc->want ? "satisfies" : "does not satisfy", rc->required);
	}

	/* lengths, not NUL terminators, delimit the strings */
	Check(RightSatisfies("users.read/garbage", 10, "users.read", 10),
		  "RightSatisfies uses the lengths given (granted longer buffer)");
	Check(!RightSatisfies("users.read", 10, "users.read\0x", 12),
		  "RightSatisfies: embedded NUL in required makes it different");
	Check(RightSatisfies("*.read", 6, "users.read", 10) &&
		  !RightSatisfies("*.read", 6, "users.read", 9),
		  "RightSatisfies: *.read with a truncated required length");
}

/* ------------------------------------------------------------------ */
/* Regressions: inputs found by the fuzzers (see test/fuzz/README.md)  */
/* ------------------------------------------------------------------ */

static void
TestRegressions(void)
{
	/*
	 * Found by fuzz_rights (input "users.*\nusers."): SPEC 4 says granted
	 * "P.*" satisfies a required right that starts with "P.", and "users."
	 * does; RightSatisfies used to demand a character after the dot.
	 */
	Check(RightSatisfies("users.*", 7, "users.", 6),
		  "regression: granted 'users.*' satisfies required 'users.' (starts with 'users.')");
	Check(RightSatisfies("gateway.*", 9, "gateway.", 8),
		  "regression: granted 'gateway.*' satisfies required 'gateway.'");
}


/* Run every rights_match check and summarise */
int
main(void)
{
	TestRights();
	TestRegressions();
	return CheckSummary();
}
