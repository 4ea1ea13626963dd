/* SPDX-License-Identifier: MIT */
/*
 * The counters behind /metrics and their rendering in the Prometheus text
 * format 0.0.4. Counts are relaxed atomic adds on static cells; only the
 * registry of rule and output names takes a lock, and only at load.
 */
#include "build_config.h"

#include "metrics.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define METRICS_NONE         SIZE_MAX
#define METRICS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The types SPEC §1 names; any other counts as "other", the last label. */
static const char *const metrics_event_types[] = {
    "inbound_end_of_call", "contact_updated", "contact_exists",
    "lead_update",         "form_sent",       "form_opened",
    "form_submitted",      "form_signed",     "other",
};
#define METRICS_TYPE_COUNT METRICS_ARRAY_LEN(metrics_event_types)

static const char *const metrics_reject_names[SB_METRICS_REJECT_COUNT] = {
    [SB_METRICS_REJECT_AUTH] = "auth",
    [SB_METRICS_REJECT_TOO_LARGE] = "too_large",
    [SB_METRICS_REJECT_BAD_JSON] = "bad_json",
    [SB_METRICS_REJECT_NOT_FOUND] = "not_found",
    [SB_METRICS_REJECT_METHOD] = "method_not_allowed",
    [SB_METRICS_REJECT_UNAVAILABLE] = "unavailable",
    [SB_METRICS_REJECT_OTHER] = "other",
};

enum metrics_result {
    METRICS_DELIVERED,
    METRICS_RETRY,
    METRICS_DEAD,
    METRICS_RESULT_COUNT
};

static const char *const metrics_result_names[METRICS_RESULT_COUNT] = {
    [METRICS_DELIVERED] = "delivered",
    [METRICS_RETRY] = "retry",
    [METRICS_DEAD] = "dead",
};

/*
 * Received to delivered, in ms: seconds for a healthy output, hours for
 * one that was down.
 */
static const uint64_t metrics_latency_bounds[] = {
    10,    25,    50,    100,    250,    500,     1000,     2500,     5000,
    10000, 30000, 60000, 300000, 900000, 3600000, 21600000, 86400000,
};
static const uint64_t metrics_attempt_bounds[] = {
    1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100,
};
/* One commit is one fsync: sub-millisecond on SSDs, more on disks. */
static const uint64_t metrics_commit_bounds[] = {
    250,   500,    1000,   2500,   5000,    10000,   25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,
};
static const uint64_t metrics_write_bounds[] = {
    1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024,
};

struct sb_metrics_rule {
    atomic_uint_least64_t matches;
    atomic_uint_least64_t throttled;
};

struct sb_metrics_output {
    atomic_uint_least64_t results[METRICS_RESULT_COUNT];
    struct sb_metrics_histogram latency;
};

static atomic_uint_least64_t metrics_received[METRICS_TYPE_COUNT];
static atomic_uint_least64_t metrics_rejected[SB_METRICS_REJECT_COUNT];

static struct sb_metrics_histogram metrics_attempts = {
    .bounds = metrics_attempt_bounds,
    .bound_count = METRICS_ARRAY_LEN(metrics_attempt_bounds),
    .per_unit = 1,
};
static struct sb_metrics_histogram metrics_commit_seconds = {
    .bounds = metrics_commit_bounds,
    .bound_count = METRICS_ARRAY_LEN(metrics_commit_bounds),
    .per_unit = 1000000, /* observed in µs */
};
static struct sb_metrics_histogram metrics_commit_writes = {
    .bounds = metrics_write_bounds,
    .bound_count = METRICS_ARRAY_LEN(metrics_write_bounds),
    .per_unit = 1,
};

/*
 * The cells by name. A slot is filled under the lock, then published by
 * a release store of its count, so a scrape reads the names and cells
 * below an acquired count without the lock.
 */
static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static int metrics_warned_full; /* with metrics_lock */
static char *metrics_rule_names[SB_METRICS_MAX_RULES];
static struct sb_metrics_rule metrics_rules[SB_METRICS_MAX_RULES];
static atomic_size_t metrics_rule_count;
static char *metrics_output_names[SB_METRICS_MAX_OUTPUTS];
static struct sb_metrics_output metrics_outputs[SB_METRICS_MAX_OUTPUTS];
static atomic_size_t metrics_output_count;

/* ---- counting ---------------------------------------------------------- */

static void metrics_inc(atomic_uint_least64_t *counter, uint64_t by)
{
    atomic_fetch_add_explicit(counter, by, memory_order_relaxed);
}

static uint64_t metrics_get(const atomic_uint_least64_t *counter)
{
    /* C11 takes no const pointer to an atomic load; reading writes nothing. */
    return atomic_load_explicit((atomic_uint_least64_t *)counter,
                                memory_order_relaxed);
}

void sb_metrics_event_received(const char *event_type)
{
    size_t i;

    for (i = 0; i + 1 < METRICS_TYPE_COUNT; i++) {
        if (strcmp(event_type, metrics_event_types[i]) == 0) {
            break;
        }
    }
    metrics_inc(&metrics_received[i], 1);
}

void sb_metrics_request_rejected(enum sb_metrics_reject reason)
{
    if ((unsigned)reason < SB_METRICS_REJECT_COUNT) {
        metrics_inc(&metrics_rejected[reason], 1);
    }
}

enum sb_metrics_reject sb_metrics_reject_for_status(unsigned status)
{
    switch (status) {
    case 400:
        return SB_METRICS_REJECT_BAD_JSON;
    case 401:
        return SB_METRICS_REJECT_AUTH;
    case 404:
        return SB_METRICS_REJECT_NOT_FOUND;
    case 405:
        return SB_METRICS_REJECT_METHOD;
    case 413:
        return SB_METRICS_REJECT_TOO_LARGE;
    case 503:
        return SB_METRICS_REJECT_UNAVAILABLE;
    default:
        return SB_METRICS_REJECT_OTHER;
    }
}

void sb_metrics_observe(struct sb_metrics_histogram *h, uint64_t value)
{
    size_t i = 0;

    while (i < h->bound_count && value > h->bounds[i]) {
        i++;
    }
    metrics_inc(&h->counts[i], 1);
    metrics_inc(&h->sum, value);
}

void sb_metrics_rule_matched(struct sb_metrics_rule *rule)
{
    if (rule != NULL) {
        metrics_inc(&rule->matches, 1);
    }
}

void sb_metrics_rule_throttled(struct sb_metrics_rule *rule)
{
    if (rule != NULL) {
        metrics_inc(&rule->throttled, 1);
    }
}

void sb_metrics_delivery_settled(struct sb_metrics_output *output,
                                 const char *state, int64_t attempts,
                                 int64_t latency_ms)
{
    enum metrics_result result;

    if (strcmp(state, "delivered") == 0) {
        result = METRICS_DELIVERED;
    } else if (strcmp(state, "dead") == 0) {
        result = METRICS_DEAD;
    } else {
        result = METRICS_RETRY;
    }
    if (result != METRICS_RETRY) {
        sb_metrics_observe(&metrics_attempts,
                           attempts > 0 ? (uint64_t)attempts : 0);
    }
    if (output == NULL) {
        return;
    }
    metrics_inc(&output->results[result], 1);
    if (result == METRICS_DELIVERED) {
        /* Clocks step: a negative span is counted as none. */
        sb_metrics_observe(&output->latency,
                           latency_ms > 0 ? (uint64_t)latency_ms : 0);
    }
}

void sb_metrics_spool_committed(uint64_t elapsed_us, size_t writes)
{
    sb_metrics_observe(&metrics_commit_seconds, elapsed_us);
    sb_metrics_observe(&metrics_commit_writes, (uint64_t)writes);
}

/* ---- cells by name --------------------------------------------------- */

/*
 * With metrics_lock held: the slot of `name` among the *count taken, or
 * the next free one holding a copy of `name`, which the caller fills and
 * publishes (metrics_publish). METRICS_NONE when full or out of memory.
 */
static size_t metrics_slot(char **names, atomic_size_t *count, size_t cap,
                           const char *kind, const char *name)
{
    size_t n = atomic_load_explicit(count, memory_order_relaxed);
    char quoted[128];
    size_t i;

    for (i = 0; i < n; i++) {
        if (strcmp(names[i], name) == 0) {
            return i;
        }
    }
    if (n < cap) {
        names[n] = strdup(name);
        if (names[n] != NULL) {
            return n;
        }
    }
    if (!metrics_warned_full) {
        metrics_warned_full = 1;
        SB_LOG_WARN("metrics",
                    "kind=%s name=%s msg=\"no metrics cell left; not counted\"",
                    kind, sb_log_quote(quoted, sizeof(quoted), name));
    }
    return METRICS_NONE;
}

/* With metrics_lock held: whether slot `i` was just taken. */
static int metrics_is_new(atomic_size_t *count, size_t i)
{
    return i == atomic_load_explicit(count, memory_order_relaxed);
}

/* With metrics_lock held: makes the filled slot `i` visible to scrapes. */
static void metrics_publish(atomic_size_t *count, size_t i)
{
    atomic_store_explicit(count, i + 1, memory_order_release);
}

struct sb_metrics_rule *sb_metrics_rule_get(const char *name)
{
    struct sb_metrics_rule *cell = NULL;
    size_t i;

    pthread_mutex_lock(&metrics_lock);
    i = metrics_slot(metrics_rule_names, &metrics_rule_count,
                     SB_METRICS_MAX_RULES, "rule", name);
    if (i != METRICS_NONE) {
        cell = &metrics_rules[i];
        if (metrics_is_new(&metrics_rule_count, i)) {
            metrics_publish(&metrics_rule_count, i);
        }
    }
    pthread_mutex_unlock(&metrics_lock);
    return cell;
}

struct sb_metrics_output *sb_metrics_output_get(const char *name)
{
    struct sb_metrics_output *cell = NULL;
    size_t i;

    pthread_mutex_lock(&metrics_lock);
    i = metrics_slot(metrics_output_names, &metrics_output_count,
                     SB_METRICS_MAX_OUTPUTS, "output", name);
    if (i != METRICS_NONE) {
        cell = &metrics_outputs[i];
        if (metrics_is_new(&metrics_output_count, i)) {
            cell->latency.bounds = metrics_latency_bounds;
            cell->latency.bound_count =
                METRICS_ARRAY_LEN(metrics_latency_bounds);
            cell->latency.per_unit = 1000;
            metrics_publish(&metrics_output_count, i);
        }
    }
    pthread_mutex_unlock(&metrics_lock);
    return cell;
}

/* ---- the text format ------------------------------------------------- */

/* A buffer whose first failure sticks, so rendering reads as a list. */
struct metrics_out {
    struct sb_buf *buf;
    enum sb_status rc;
};

struct metrics_label {
    const char *name;
    const char *value;
};

static void metrics_add(struct metrics_out *w, const char *text)
{
    if (w->rc == SB_OK) {
        w->rc = sb_buf_adds(w->buf, text);
    }
}

enum sb_status sb_metrics_add_label_value(struct sb_buf *out, const char *value)
{
    enum sb_status rc = SB_OK;
    const char *p;

    for (p = value; *p != '\0' && rc == SB_OK; p++) {
        if (*p == '\\') {
            rc = sb_buf_adds(out, "\\\\");
        } else if (*p == '"') {
            rc = sb_buf_adds(out, "\\\"");
        } else if (*p == '\n') {
            rc = sb_buf_adds(out, "\\n");
        } else {
            rc = sb_buf_addc(out, *p);
        }
    }
    return rc;
}

/* `v` in units of `per_unit` (a power of ten), exactly: 1500/1000 "1.5". */
static void metrics_decimal(uint64_t v, uint64_t per_unit, char *text,
                            size_t cap)
{
    int digits = 0;
    uint64_t p;
    size_t len;

    for (p = per_unit; p > 1 && digits < 19; p /= 10) {
        digits++;
    }
    if (digits == 0) {
        snprintf(text, cap, "%" PRIu64, v);
        return;
    }
    snprintf(text, cap, "%" PRIu64 ".%0*" PRIu64, v / per_unit, digits,
             v % per_unit);
    len = strlen(text);
    while (text[len - 1] == '0') {
        text[--len] = '\0';
    }
    if (text[len - 1] == '.') {
        text[len - 1] = '\0';
    }
}

/* One sample line: name{labels} value. */
static void metrics_sample(struct metrics_out *w, const char *name,
                           const struct metrics_label *labels, size_t count,
                           const char *value)
{
    size_t i;

    metrics_add(w, name);
    for (i = 0; i < count; i++) {
        metrics_add(w, i == 0 ? "{" : ",");
        metrics_add(w, labels[i].name);
        metrics_add(w, "=\"");
        if (w->rc == SB_OK) {
            w->rc = sb_metrics_add_label_value(w->buf, labels[i].value);
        }
        metrics_add(w, "\"");
    }
    metrics_add(w, count > 0 ? "} " : " ");
    metrics_add(w, value);
    metrics_add(w, "\n");
}

static void metrics_count_sample(struct metrics_out *w, const char *name,
                                 const struct metrics_label *labels,
                                 size_t count, uint64_t value)
{
    char text[24];

    snprintf(text, sizeof(text), "%" PRIu64, value);
    metrics_sample(w, name, labels, count, text);
}

static void metrics_family(struct metrics_out *w, const char *name,
                           const char *type, const char *help)
{
    metrics_add(w, "# HELP ");
    metrics_add(w, name);
    metrics_add(w, " ");
    metrics_add(w, help);
    metrics_add(w, "\n# TYPE ");
    metrics_add(w, name);
    metrics_add(w, " ");
    metrics_add(w, type);
    metrics_add(w, "\n");
}

static void metrics_histogram(struct metrics_out *w, const char *name,
                              const char *label, const char *value,
                              const struct sb_metrics_histogram *h)
{
    struct metrics_label labels[2] = {{label, value}, {"le", NULL}};
    size_t own = label != NULL ? 1 : 0; /* labels before le */
    char sample[128];
    char bound[48]; /* 20 digits, a point, 19 more */
    uint64_t total = 0;
    size_t i;

    snprintf(sample, sizeof(sample), "%s_bucket", name);
    for (i = 0; i <= h->bound_count; i++) {
        total += metrics_get(&h->counts[i]);
        if (i < h->bound_count) {
            metrics_decimal(h->bounds[i], h->per_unit, bound, sizeof(bound));
            labels[1].value = bound;
        } else {
            labels[1].value = "+Inf";
        }
        metrics_count_sample(w, sample, labels + 1 - own, own + 1, total);
    }
    snprintf(sample, sizeof(sample), "%s_sum", name);
    metrics_decimal(metrics_get(&h->sum), h->per_unit, bound, sizeof(bound));
    metrics_sample(w, sample, labels, own, bound);
    /* _count from the buckets read, so it always equals +Inf. */
    snprintf(sample, sizeof(sample), "%s_count", name);
    metrics_count_sample(w, sample, labels, own, total);
}

enum sb_status sb_metrics_render_histogram(struct sb_buf *out, const char *name,
                                           const char *label, const char *value,
                                           const struct sb_metrics_histogram *h)
{
    struct metrics_out w = {out, SB_OK};

    metrics_histogram(&w, name, label, value, h);
    return w.rc;
}

/* ---- the families ---------------------------------------------------- */

static void metrics_render_ingress(struct metrics_out *w)
{
    struct metrics_label label;
    size_t i;

    metrics_family(w, "switchboard_build_info", "gauge",
                   "The running switchboard's version; always 1.");
    label = (struct metrics_label){"version", PACKAGE_VERSION};
    metrics_sample(w, "switchboard_build_info", &label, 1, "1");

    metrics_family(w, "switchboard_events_received_total", "counter",
                   "Events stored and answered 200, by event type; types "
                   "switchboard does not know count as other.");
    for (i = 0; i < METRICS_TYPE_COUNT; i++) {
        label = (struct metrics_label){"event_type", metrics_event_types[i]};
        metrics_count_sample(w, "switchboard_events_received_total", &label, 1,
                             metrics_get(&metrics_received[i]));
    }

    metrics_family(w, "switchboard_requests_rejected_total", "counter",
                   "Webhook requests refused, by reason.");
    for (i = 0; i < SB_METRICS_REJECT_COUNT; i++) {
        label = (struct metrics_label){"reason", metrics_reject_names[i]};
        metrics_count_sample(w, "switchboard_requests_rejected_total", &label,
                             1, metrics_get(&metrics_rejected[i]));
    }
}

static void metrics_render_rules(struct metrics_out *w)
{
    size_t n = atomic_load_explicit(&metrics_rule_count, memory_order_acquire);
    struct metrics_label label;
    size_t i;

    metrics_family(w, "switchboard_rule_matches_total", "counter",
                   "Events a rule matched, throttled ones included.");
    for (i = 0; i < n; i++) {
        label = (struct metrics_label){"rule", metrics_rule_names[i]};
        metrics_count_sample(w, "switchboard_rule_matches_total", &label, 1,
                             metrics_get(&metrics_rules[i].matches));
    }
    metrics_family(w, "switchboard_throttled_total", "counter",
                   "Matches a rule's throttle held back.");
    for (i = 0; i < n; i++) {
        label = (struct metrics_label){"rule", metrics_rule_names[i]};
        metrics_count_sample(w, "switchboard_throttled_total", &label, 1,
                             metrics_get(&metrics_rules[i].throttled));
    }
}

static void metrics_render_deliveries(struct metrics_out *w)
{
    size_t n =
        atomic_load_explicit(&metrics_output_count, memory_order_acquire);
    struct metrics_label labels[2];
    size_t i;
    size_t r;

    metrics_family(w, "switchboard_deliveries_total", "counter",
                   "Delivery attempts whose outcome was stored, by output "
                   "and result (delivered, retry, dead).");
    for (i = 0; i < n; i++) {
        for (r = 0; r < METRICS_RESULT_COUNT; r++) {
            labels[0] =
                (struct metrics_label){"output", metrics_output_names[i]};
            labels[1] =
                (struct metrics_label){"result", metrics_result_names[r]};
            metrics_count_sample(w, "switchboard_deliveries_total", labels, 2,
                                 metrics_get(&metrics_outputs[i].results[r]));
        }
    }
    metrics_family(w, "switchboard_delivery_latency_seconds", "histogram",
                   "From an event's receipt to its delivery being stored as "
                   "delivered, by output.");
    for (i = 0; i < n; i++) {
        metrics_histogram(w, "switchboard_delivery_latency_seconds", "output",
                          metrics_output_names[i], &metrics_outputs[i].latency);
    }
    metrics_family(w, "switchboard_delivery_attempts", "histogram",
                   "Attempts a delivery took, counted when it ended "
                   "delivered or dead.");
    metrics_histogram(w, "switchboard_delivery_attempts", NULL, NULL,
                      &metrics_attempts);
}

/* The row for `output` in `backlog`, or NULL. */
static const struct sb_metrics_backlog *
metrics_backlog_find(const struct sb_metrics_backlog *backlog, size_t count,
                     const char *output)
{
    size_t i;

    for (i = 0; i < count; i++) {
        if (strcmp(backlog[i].output, output) == 0) {
            return &backlog[i];
        }
    }
    return NULL;
}

/*
 * One gauge per output known here (0 without a row), then per row whose
 * output no config of this process named (an output removed earlier
 * that still holds deliveries).
 */
static void metrics_gauge(struct metrics_out *w, const char *name, int dead,
                          const struct sb_metrics_backlog *backlog,
                          size_t count)
{
    size_t n =
        atomic_load_explicit(&metrics_output_count, memory_order_acquire);
    struct metrics_label label;
    size_t i;

    for (i = 0; i < n; i++) {
        const struct sb_metrics_backlog *row =
            metrics_backlog_find(backlog, count, metrics_output_names[i]);
        uint64_t value = row == NULL ? 0 : dead ? row->dead : row->pending;

        label = (struct metrics_label){"output", metrics_output_names[i]};
        metrics_count_sample(w, name, &label, 1, value);
    }
    for (i = 0; i < count; i++) {
        size_t k;

        for (k = 0; k < n; k++) {
            if (strcmp(metrics_output_names[k], backlog[i].output) == 0) {
                break;
            }
        }
        if (k == n) {
            label = (struct metrics_label){"output", backlog[i].output};
            metrics_count_sample(w, name, &label, 1,
                                 dead ? backlog[i].dead : backlog[i].pending);
        }
    }
}

static void metrics_render_backlog(struct metrics_out *w,
                                   const struct sb_metrics_backlog *backlog,
                                   size_t count)
{
    metrics_family(w, "switchboard_deliveries_pending", "gauge",
                   "Deliveries stored and not yet settled, by output.");
    if (backlog != NULL) {
        metrics_gauge(w, "switchboard_deliveries_pending", 0, backlog, count);
    }
    metrics_family(w, "switchboard_deliveries_dead", "gauge",
                   "Deliveries that gave up and wait for a replay, by "
                   "output.");
    if (backlog != NULL) {
        metrics_gauge(w, "switchboard_deliveries_dead", 1, backlog, count);
    }
}

enum sb_status sb_metrics_render(const struct sb_metrics_backlog *backlog,
                                 size_t count, struct sb_buf *out)
{
    struct metrics_out w = {out, SB_OK};

    metrics_render_ingress(&w);
    metrics_render_rules(&w);
    metrics_render_deliveries(&w);
    metrics_render_backlog(&w, backlog, count);
    metrics_family(&w, "switchboard_spool_commit_seconds", "histogram",
                   "Time one spool commit took, its fsync included.");
    metrics_histogram(&w, "switchboard_spool_commit_seconds", NULL, NULL,
                      &metrics_commit_seconds);
    metrics_family(&w, "switchboard_spool_commit_writes", "histogram",
                   "Events and delivery outcomes one spool commit stored.");
    metrics_histogram(&w, "switchboard_spool_commit_writes", NULL, NULL,
                      &metrics_commit_writes);
    return w.rc;
}
