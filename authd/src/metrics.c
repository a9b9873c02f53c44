/*-------------------------------------------------------------------------
 * metrics.c
 *		athena-authd's counters and their Prometheus text exposition.
 *
 * Label values come from fixed lists, never from a request: a reason the
 * list does not know is counted as "other" and a status outside it as
 * "other", so no client can grow the number of series.
 *-------------------------------------------------------------------------
 */
#include "metrics.h"

#include "failure_reasons.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The answers' reasons: "" (allowed), the extension's failure texts
 * (failure_reasons.c, in its order), athena-authd's own answers when it
 * cannot ask the database and when a request's declared body is too
 * large (413), and "other".
 */
#define AUTHD_REASON_UNAVAILABLE "API key validation unavailable"
#define AUTHD_REASON_BODY_TOO_LARGE "Request body too large"
#define REASON_UNAVAILABLE_INDEX FAILURE_COUNT
#define REASON_BODY_TOO_LARGE_INDEX (FAILURE_COUNT + 1)
#define REASON_OTHER_INDEX (FAILURE_COUNT + 2)
#define REASON_COUNT (FAILURE_COUNT + 3)

/* The label of reason index r */
static const char *
ReasonLabel(size_t r)
{
	if (r == 0)
		return "";
	if (r < FAILURE_COUNT)
		return FailureReason((Failure) r);
	if (r == REASON_UNAVAILABLE_INDEX)
		return AUTHD_REASON_UNAVAILABLE;
	return r == REASON_BODY_TOO_LARGE_INDEX ? AUTHD_REASON_BODY_TOO_LARGE : "other";
}

static const unsigned int known_statuses[] = {200, 204, 401, 403, 413, 429, 503, 0};

#define STATUS_COUNT (sizeof(known_statuses) / sizeof(known_statuses[0]))

/* Upper bounds of the database-call latency histogram, seconds */
static const double latency_bounds[] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5
};

#define BUCKET_COUNT (sizeof(latency_bounds) / sizeof(latency_bounds[0]))

static atomic_ulong requests[STATUS_COUNT][REASON_COUNT];
static atomic_ulong latency_buckets[BUCKET_COUNT + 1];	/* last: +Inf only */
static atomic_ulong latency_sum_us;
static atomic_ulong pool_waits;
static atomic_ulong pool_wait_us;
static atomic_ulong pool_timeouts;
static atomic_ulong connects_ok;
static atomic_ulong connects_failed;
static atomic_ulong fail_open_passes;
static atomic_ulong content_errors;
static atomic_ulong batches;
static atomic_ulong batched_calls;
static atomic_ulong largest_batch;

/* Index of a reason among the labels ("other" when unknown) */
static size_t
ReasonIndex(const char *reason)
{
	Failure		failure;

	if (reason == NULL || reason[0] == '\0')
		return 0;
	if (FailureFromReason(reason, strlen(reason), &failure))
		return (size_t) failure;
	if (strcmp(reason, AUTHD_REASON_UNAVAILABLE) == 0)
		return REASON_UNAVAILABLE_INDEX;
	if (strcmp(reason, AUTHD_REASON_BODY_TOO_LARGE) == 0)
		return REASON_BODY_TOO_LARGE_INDEX;
	return REASON_OTHER_INDEX;
}

/* Index of a status in known_statuses (the last, "other", when unknown) */
static size_t
StatusIndex(unsigned int status)
{
	for (size_t i = 0; i < STATUS_COUNT - 1; i++)
	{
		if (known_statuses[i] == status)
			return i;
	}
	return STATUS_COUNT - 1;
}

/* Count one answered authorization request */
void
MetricsCountRequest(unsigned int status, const char *reason)
{
	atomic_fetch_add(&requests[StatusIndex(status)][ReasonIndex(reason)], 1);
}

/* Record the duration of one athena_authenticate() call that completed */
void
MetricsObserveDbCall(double seconds)
{
	size_t		bucket = 0;

	while (bucket < BUCKET_COUNT && seconds > latency_bounds[bucket])
		bucket++;
	atomic_fetch_add(&latency_buckets[bucket], 1);
	atomic_fetch_add(&latency_sum_us, (unsigned long) (seconds * 1e6));
}

/* Count a request that had to wait for a pooled connection */
void
MetricsCountPoolWait(double seconds, bool timed_out)
{
	atomic_fetch_add(&pool_waits, 1);
	atomic_fetch_add(&pool_wait_us, (unsigned long) (seconds * 1e6));
	if (timed_out)
		atomic_fetch_add(&pool_timeouts, 1);
}

/*
 * Count one round trip to the database and the calls it carried (more
 * than one when concurrent decisions shared it as a pipeline)
 */
void
MetricsCountBatch(int calls)
{
	unsigned long seen = atomic_load(&largest_batch);

	atomic_fetch_add(&batches, 1);
	atomic_fetch_add(&batched_calls, (unsigned long) calls);
	while ((unsigned long) calls > seen &&
		   !atomic_compare_exchange_weak(&largest_batch, &seen, (unsigned long) calls))
		;
}

/* Count one database connection attempt */
void
MetricsCountConnect(bool ok)
{
	atomic_fetch_add(ok ? &connects_ok : &connects_failed, 1);
}

/* Count a request let through by fail_open */
void
MetricsCountFailOpen(void)
{
	atomic_fetch_add(&fail_open_passes, 1);
}

/* Count a call the database rejected because of the request's content */
void
MetricsCountContentError(void)
{
	atomic_fetch_add(&content_errors, 1);
}

/* Growable output buffer for RenderMetrics */
typedef struct TextBuffer
{
	char	   *data;
	size_t		used;
	size_t		size;
	bool		failed;
} TextBuffer;

/* Append printf-formatted text; marks the buffer failed when out of memory */
static void
Append(TextBuffer *buffer, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void
Append(TextBuffer *buffer, const char *format, ...)
{
	va_list		args;
	int			needed;

	if (buffer->failed)
		return;
	for (;;)
	{
		va_start(args, format);
		needed = vsnprintf(buffer->data + buffer->used, buffer->size - buffer->used, format, args);
		va_end(args);
		if (needed < 0)
		{
			buffer->failed = true;
			return;
		}
		if ((size_t) needed < buffer->size - buffer->used)
		{
			buffer->used += (size_t) needed;
			return;
		}
		{
			size_t		new_size = buffer->size * 2 + (size_t) needed;
			char	   *grown = realloc(buffer->data, new_size);

			if (grown == NULL)
			{
				buffer->failed = true;
				return;
			}
			buffer->data = grown;
			buffer->size = new_size;
		}
	}
}

/* Append a single-valued counter with its HELP and TYPE lines */
static void
AppendCounter(TextBuffer *buffer, const char *name, const char *help, unsigned long value)
{
	Append(buffer, "# HELP %s %s\n# TYPE %s counter\n%s %lu\n", name, help, name, name, value);
}

/*
 * The Prometheus text exposition (format 0.0.4) of every metric, as a
 * malloc'd string, or NULL when out of memory.
 */
char *
RenderMetrics(void)
{
	TextBuffer	buffer = {malloc(4096), 0, 4096, false};
	unsigned long cumulative = 0;

	if (buffer.data == NULL)
		return NULL;
	Append(&buffer, "# HELP athena_authd_requests_total Authorization requests answered, by status and reason.\n"
		   "# TYPE athena_authd_requests_total counter\n");
	for (size_t s = 0; s < STATUS_COUNT; s++)
	{
		for (size_t r = 0; r < REASON_COUNT; r++)
		{
			unsigned long count = atomic_load(&requests[s][r]);
			char		status_text[16];

			if (count == 0)
				continue;
			if (known_statuses[s] == 0)
				snprintf(status_text, sizeof(status_text), "other");
			else
				snprintf(status_text, sizeof(status_text), "%u", known_statuses[s]);
			Append(&buffer, "athena_authd_requests_total{status=\"%s\",reason=\"%s\"} %lu\n",
				   status_text, ReasonLabel(r), count);
		}
	}
	Append(&buffer, "# HELP athena_authd_db_call_seconds Duration of athena_authenticate() calls that returned.\n"
		   "# TYPE athena_authd_db_call_seconds histogram\n");
	for (size_t b = 0; b < BUCKET_COUNT; b++)
	{
		cumulative += atomic_load(&latency_buckets[b]);
		Append(&buffer, "athena_authd_db_call_seconds_bucket{le=\"%g\"} %lu\n", latency_bounds[b], cumulative);
	}
	cumulative += atomic_load(&latency_buckets[BUCKET_COUNT]);
	Append(&buffer, "athena_authd_db_call_seconds_bucket{le=\"+Inf\"} %lu\n", cumulative);
	Append(&buffer, "athena_authd_db_call_seconds_sum %.6f\n", (double) atomic_load(&latency_sum_us) / 1e6);
	Append(&buffer, "athena_authd_db_call_seconds_count %lu\n", cumulative);
	AppendCounter(&buffer, "athena_authd_db_batches_total",
				  "Round trips to the database (each carries one or more pipelined calls).",
				  atomic_load(&batches));
	AppendCounter(&buffer, "athena_authd_db_batched_calls_total",
				  "Calls sent in those round trips.", atomic_load(&batched_calls));
	Append(&buffer, "# HELP athena_authd_db_largest_batch Most calls one round trip carried since start.\n"
		   "# TYPE athena_authd_db_largest_batch gauge\n"
		   "athena_authd_db_largest_batch %lu\n", atomic_load(&largest_batch));
	AppendCounter(&buffer, "athena_authd_pool_waits_total",
				  "Requests that waited for a free pooled database connection.", atomic_load(&pool_waits));
	Append(&buffer, "# HELP athena_authd_pool_wait_seconds_total Time spent waiting for a pooled connection.\n"
		   "# TYPE athena_authd_pool_wait_seconds_total counter\n"
		   "athena_authd_pool_wait_seconds_total %.6f\n", (double) atomic_load(&pool_wait_us) / 1e6);
	AppendCounter(&buffer, "athena_authd_pool_exhausted_total",
				  "Requests that found no free pooled connection before the timeout.", atomic_load(&pool_timeouts));
	Append(&buffer, "# HELP athena_authd_db_connects_total Database connection attempts (start-up and reconnects).\n"
		   "# TYPE athena_authd_db_connects_total counter\n"
		   "athena_authd_db_connects_total{result=\"ok\"} %lu\n"
		   "athena_authd_db_connects_total{result=\"failed\"} %lu\n",
		   atomic_load(&connects_ok), atomic_load(&connects_failed));
	AppendCounter(&buffer, "athena_authd_fail_open_total",
				  "Requests let through by fail_open while the database could not decide.",
				  atomic_load(&fail_open_passes));
	AppendCounter(&buffer, "athena_authd_content_errors_total",
				  "Calls the database rejected because of request content (never fail_open).",
				  atomic_load(&content_errors));
	if (buffer.failed)
	{
		free(buffer.data);
		return NULL;
	}
	return buffer.data;
}

/* Zero every counter (for tests) */
void
ResetMetrics(void)
{
	for (size_t s = 0; s < STATUS_COUNT; s++)
		for (size_t r = 0; r < REASON_COUNT; r++)
			atomic_store(&requests[s][r], 0);
	for (size_t b = 0; b <= BUCKET_COUNT; b++)
		atomic_store(&latency_buckets[b], 0);
	atomic_store(&latency_sum_us, 0);
	atomic_store(&pool_waits, 0);
	atomic_store(&pool_wait_us, 0);
	atomic_store(&pool_timeouts, 0);
	atomic_store(&connects_ok, 0);
	atomic_store(&connects_failed, 0);
	atomic_store(&fail_open_passes, 0);
	atomic_store(&content_errors, 0);
	atomic_store(&batches, 0);
	atomic_store(&batched_calls, 0);
	atomic_store(&largest_batch, 0);
}
