/*-------------------------------------------------------------------------
 * unit_check.c
 *		Counting and reporting of unit test checks (see unit_check.h).
 *-------------------------------------------------------------------------
 */
#include "unit_check.h"

#include <stdarg.h>
#include <stdio.h>

static int	n_checks = 0;
static int	n_failed = 0;

/* Record one check and print its TAP-like line, so a failure names itself */
void
Check(int cond, const char *fmt,...)
{
	va_list		ap;

	n_checks++;
	if (!cond)
		n_failed++;
	printf("%s %d - ", cond ? "ok" : "not ok", n_checks);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* Print the summary line; the exit status for main, non-zero on any failure */
int
CheckSummary(void)
{
	printf("%d passed, %d failed\n", n_checks - n_failed, n_failed);
	return n_failed == 0 ? 0 : 1;
}
