/*-------------------------------------------------------------------------
 * unit_check.h
 *		The harness every plain C unit test program shares (athena_keys'
 *		pure modules in test/unit, athena-authd's in authd/test).
 *
 * No framework: every check prints "ok N - what" or "not ok N - what",
 * the last line is "P passed, F failed", and the program's exit status is
 * 1 when anything failed, so make and test/run_tests.sh see a failure.
 *-------------------------------------------------------------------------
 */
#ifndef ATHENA_UNIT_CHECK_H
#define ATHENA_UNIT_CHECK_H

#include <stdbool.h>

extern void Check(int cond, const char *fmt,...) __attribute__((format(printf, 2, 3)));
extern int	CheckSummary(void);

/* A check named by its own source text and line */
#define CHECK(condition) Check((condition), "line %d: %s", __LINE__, #condition)

#endif							/* ATHENA_UNIT_CHECK_H */
