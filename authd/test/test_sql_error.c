/*-------------------------------------------------------------------------
 * test_sql_error.c
 *		Unit tests of athena-authd's sql_error: SQLSTATE classes.
 *		No database, no network.
 *
 * Built and run by make test (see test/unit/unit_check.h at the top level
 * for the output).
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql_error.h"
#include "unit_check.h"

/* SQLSTATE classes: only infrastructure failures are "unavailable" */
static void
TestClassifySqlState(void)
{
	CHECK(ClassifySqlState("22021") == DB_CONTENT_ERROR);	/* invalid byte sequence */
	CHECK(ClassifySqlState("22P02") == DB_CONTENT_ERROR);	/* invalid text representation */
	CHECK(ClassifySqlState("22001") == DB_CONTENT_ERROR);	/* string too long */
	CHECK(ClassifySqlState("57014") == DB_UNAVAILABLE);	/* statement timeout */
	CHECK(ClassifySqlState("57P01") == DB_UNAVAILABLE);	/* admin shutdown */
	CHECK(ClassifySqlState("08006") == DB_UNAVAILABLE);
	CHECK(ClassifySqlState("53300") == DB_UNAVAILABLE);	/* too many connections */
	CHECK(ClassifySqlState("40001") == DB_UNAVAILABLE);
	CHECK(ClassifySqlState(NULL) == DB_UNAVAILABLE);
	CHECK(ClassifySqlState("42883") == DB_SERVER_ERROR);	/* function missing */
	CHECK(ClassifySqlState("42501") == DB_SERVER_ERROR);	/* permission denied */
	CHECK(ClassifySqlState("XX000") == DB_SERVER_ERROR);
}

/* Run every sql_error check and summarise */
int
main(void)
{
	TestClassifySqlState();
	return CheckSummary();
}
