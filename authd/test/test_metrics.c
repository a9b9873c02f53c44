/*-------------------------------------------------------------------------
 * test_metrics.c
 *		Unit tests of athena-authd's metrics: the Prometheus text.
 *		No database, no network.
 *
 * Built and run by make test (see test/unit/unit_check.h at the top level
 * for the output).
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "unit_check.h"

/* Metrics text: fixed label values, cumulative histogram */
static void
TestMetrics(void)
{
	char	   *text;

	ResetMetrics();
	MetricsCountRequest(200, NULL);
	MetricsCountRequest(200, NULL);
	MetricsCountRequest(401, "Invalid API key");
	MetricsCountRequest(403, "a client-chosen \"reason\"\n");
	MetricsCountRequest(418, "IP blocked");
	MetricsCountRequest(429, "Rate limit exceeded");
	MetricsCountRequest(413, "Request body too large");
	MetricsObserveDbCall(0.0004);
	MetricsObserveDbCall(0.003);
	MetricsObserveDbCall(9.0);
	MetricsCountPoolWait(0.5, true);
	MetricsCountConnect(true);
	MetricsCountConnect(false);
	MetricsCountFailOpen();
	MetricsCountBatch(1);
	MetricsCountBatch(7);
	MetricsCountBatch(3);
	text = RenderMetrics();
	CHECK(text != NULL);
	if (text == NULL)
		return;
	CHECK(strstr(text, "athena_authd_requests_total{status=\"200\",reason=\"\"} 2\n") != NULL);
	CHECK(strstr(text, "athena_authd_requests_total{status=\"401\",reason=\"Invalid API key\"} 1\n") != NULL);
	CHECK(strstr(text, "athena_authd_requests_total{status=\"403\",reason=\"other\"} 1\n") != NULL);
	CHECK(strstr(text, "athena_authd_requests_total{status=\"other\",reason=\"IP blocked\"} 1\n") != NULL);
	CHECK(strstr(text, "athena_authd_requests_total{status=\"429\",reason=\"Rate limit exceeded\"} 1\n") != NULL);
	CHECK(strstr(text, "athena_authd_requests_total{status=\"413\",reason=\"Request body too large\"} 1\n") != NULL);
	CHECK(strstr(text, "client-chosen") == NULL);
	CHECK(strstr(text, "athena_authd_db_call_seconds_bucket{le=\"0.0005\"} 1\n") != NULL);
	CHECK(strstr(text, "athena_authd_db_call_seconds_bucket{le=\"0.005\"} 2\n") != NULL);
	CHECK(strstr(text, "athena_authd_db_call_seconds_bucket{le=\"5\"} 2\n") != NULL);
	CHECK(strstr(text, "athena_authd_db_call_seconds_bucket{le=\"+Inf\"} 3\n") != NULL);
	CHECK(strstr(text, "athena_authd_db_call_seconds_count 3\n") != NULL);
	CHECK(strstr(text, "athena_authd_pool_exhausted_total 1\n") != NULL);
	CHECK(strstr(text, "athena_authd_db_connects_total{result=\"failed\"} 1\n") != NULL);
	CHECK(strstr(text, "athena_authd_fail_open_total 1\n") != NULL);
	CHECK(strstr(text, "athena_authd_db_batches_total 3\n") != NULL);
	CHECK(strstr(text, "athena_authd_db_batched_calls_total 11\n") != NULL);
	CHECK(strstr(text, "athena_authd_db_largest_batch 7\n") != NULL);
	free(text);
}

/* Run every metrics check and summarise */
int
main(void)
{
	TestMetrics();
	return CheckSummary();
}
