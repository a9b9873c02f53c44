/*-------------------------------------------------------------------------
 * metrics.h
 *		Process-wide counters of athena-authd and their Prometheus text
 *		form, served on the health listener (/metrics).
 *
 * Recording is lock-free (C11 atomics); rendering needs no I/O, so it is
 * unit tested in test/test_metrics.c.
 *-------------------------------------------------------------------------
 */
#ifndef AUTHD_METRICS_H
#define AUTHD_METRICS_H

#include <stdbool.h>
#include <stddef.h>

extern void MetricsCountRequest(unsigned int status, const char *reason);
extern void MetricsObserveDbCall(double seconds);
extern void MetricsCountPoolWait(double seconds, bool timed_out);
extern void MetricsCountBatch(int calls);
extern void MetricsCountConnect(bool ok);
extern void MetricsCountFailOpen(void);
extern void MetricsCountContentError(void);
extern char *RenderMetrics(void);
extern void ResetMetrics(void);

#endif							/* AUTHD_METRICS_H */
