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
	CHECK(ClassifySqlState("55P03") == DB_UNAVAILABLE);	/* lock timeout, as 57014 */
	CHECK(ClassifySqlState("55000") == DB_SERVER_ERROR);	/* the rest of class 55: not a timeout */
	CHECK(ClassifySqlState("55006") == DB_SERVER_ERROR);
	CHECK(ClassifySqlState(NULL) == DB_UNAVAILABLE);
	CHECK(ClassifySqlState("42883") == DB_SERVER_ERROR);	/* function missing */
	CHECK(ClassifySqlState("42501") == DB_SERVER_ERROR);	/* permission denied */
	CHECK(ClassifySqlState("XX000") == DB_SERVER_ERROR);
}

/*
 * Failures while connecting or preparing: only infrastructure is
 * "unavailable"; a permission, authentication or configuration error
 * fails closed
 */
static void
TestClassifyConnectFailure(void)
{
	CHECK(ClassifyConnectFailure(NULL) == DB_UNAVAILABLE);	/* libpq: refused, timed out */
	CHECK(ClassifyConnectFailure("08006") == DB_UNAVAILABLE);
	CHECK(ClassifyConnectFailure("57P01") == DB_UNAVAILABLE);	/* admin shutdown */
	CHECK(ClassifyConnectFailure("57P02") == DB_UNAVAILABLE);	/* crash shutdown */
	CHECK(ClassifyConnectFailure("57P03") == DB_UNAVAILABLE);	/* cannot connect now */
	CHECK(ClassifyConnectFailure("53300") == DB_UNAVAILABLE);	/* too many connections */
	CHECK(ClassifyConnectFailure("28P01") == DB_SERVER_ERROR);	/* wrong password */
	CHECK(ClassifyConnectFailure("28000") == DB_SERVER_ERROR);	/* no pg_hba.conf entry */
	CHECK(ClassifyConnectFailure("42501") == DB_SERVER_ERROR);	/* no CONNECT, no USAGE */
	CHECK(ClassifyConnectFailure("42883") == DB_SERVER_ERROR);	/* function missing */
	CHECK(ClassifyConnectFailure("3F000") == DB_SERVER_ERROR);	/* schema missing */
	CHECK(ClassifyConnectFailure("3D000") == DB_SERVER_ERROR);	/* database missing */
	CHECK(ClassifyConnectFailure("22023") == DB_SERVER_ERROR);	/* no request values yet */
}

/* The SQLSTATE of a verbose libpq connection failure message */
static void
TestSqlStateFromMessage(void)
{
	char		state[6];

	CHECK(SqlStateFromMessage("connection to server at \"127.0.0.1\", port 5432 failed: "
							  "FATAL:  28P01: password authentication failed for user \"gw\"\n", state));
	CHECK(strcmp(state, "28P01") == 0);
	CHECK(SqlStateFromMessage("connection to server at \"127.0.0.1\", port 5432 failed: "
							  "FATAL:  42501: permission denied for database \"app\"\nDETAIL:  x\n", state));
	CHECK(strcmp(state, "42501") == 0);
	CHECK(SqlStateFromMessage("ERROR:  42501: permission denied for schema athena_keys\n", state));
	CHECK(strcmp(state, "42501") == 0);
	CHECK(!SqlStateFromMessage("connection to server at \"127.0.0.1\", port 1 failed: "
							   "Connection refused\n\tIs the server running on that host?\n", state));
	CHECK(state[0] == '\0');
	CHECK(!SqlStateFromMessage("FATAL:  password authentication failed\n", state));	/* terse */
	CHECK(!SqlStateFromMessage("ERROR:  2850: short\n", state));
	CHECK(!SqlStateFromMessage("ERROR:  28p01: lower case\n", state));
	CHECK(!SqlStateFromMessage(NULL, state));
	CHECK(!SqlStateFromMessage("", state));
}

/* Run every sql_error check and summarise */
int
main(void)
{
	TestClassifySqlState();
	TestClassifyConnectFailure();
	TestSqlStateFromMessage();
	return CheckSummary();
}
