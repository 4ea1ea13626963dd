/* SPDX-License-Identifier: MIT */
/*
 * Counters and histograms for /metrics (Prometheus text format 0.0.4).
 *
 * Counting is a relaxed atomic add and never takes a lock: it happens on
 * the request threads, the dispatch workers and the spool's writer. Every
 * label value comes from a bounded set: the known event types plus
 * "other", a fixed list of rejection reasons, and the names of the rules
 * and outputs the config defines. A rule's or an output's counters (its
 * cell) are found or created by name when a config is loaded, under a
 * lock taken only then, and live for the process: a reload that keeps a
 * name keeps counting where the old config left off.
 *
 * All state is static and zero-initialised: nothing needs to be set up
 * before the first count, and nothing is freed.
 */
#ifndef SB_METRICS_H
#define SB_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "status.h"

#define SB_METRICS_MAX_BUCKETS 20   /* finite buckets of one histogram */
#define SB_METRICS_MAX_RULES   4096 /* rule names over the process's life */
#define SB_METRICS_MAX_OUTPUTS 256  /* output names over the process's life */

/* Why ingress refused a request; each is one `reason` label value. */
enum sb_metrics_reject {
    SB_METRICS_REJECT_AUTH,        /* 401: missing or wrong bearer */
    SB_METRICS_REJECT_TOO_LARGE,   /* 413, or a chunked body cut off */
    SB_METRICS_REJECT_BAD_JSON,    /* 400: not JSON, or not a valid event */
    SB_METRICS_REJECT_NOT_FOUND,   /* 404: another path */
    SB_METRICS_REJECT_METHOD,      /* 405: not POST */
    SB_METRICS_REJECT_UNAVAILABLE, /* 503: not stored (spool, memory) */
    SB_METRICS_REJECT_OTHER,       /* any other status */
    SB_METRICS_REJECT_COUNT
};

/*
 * A histogram with fixed buckets over whole numbers of some unit (ms,
 * µs, attempts). Define one with static storage, setting the first three
 * fields; the counts start at zero. Observing is lock-free.
 */
struct sb_metrics_histogram {
    const uint64_t *bounds; /* upper bounds, ascending, in observed units */
    size_t bound_count;     /* at most SB_METRICS_MAX_BUCKETS */
    uint64_t per_unit;      /* observed units per exported one (1000: ms) */
    /* Per bucket, not cumulative; the last one is +Inf. */
    atomic_uint_least64_t counts[SB_METRICS_MAX_BUCKETS + 1];
    atomic_uint_least64_t sum; /* in observed units */
};

/* One output's deliveries waiting and given up, read from the spool. */
struct sb_metrics_backlog {
    const char *output;
    uint64_t pending;
    uint64_t dead;
};

struct sb_metrics_rule;
struct sb_metrics_output;

/* Counts one stored event; types switchboard does not know count as other. */
void sb_metrics_event_received(const char *event_type);

/* Counts one refused request. */
void sb_metrics_request_rejected(enum sb_metrics_reject reason);

/* The reason an answer with HTTP status `status` (not 2xx) gives. */
enum sb_metrics_reject sb_metrics_reject_for_status(unsigned status);

/*
 * The counters of the rule named `name`, created on first use. Takes a
 * lock: call when a config is loaded, never per event. The cell lives
 * for the process. NULL when SB_METRICS_MAX_RULES names were taken
 * already or memory ran out (logged once): counting with NULL does
 * nothing.
 */
struct sb_metrics_rule *sb_metrics_rule_get(const char *name);

/* Counts a match of the rule, or a match its throttle held back. */
void sb_metrics_rule_matched(struct sb_metrics_rule *rule);
void sb_metrics_rule_throttled(struct sb_metrics_rule *rule);

/* Like sb_metrics_rule_get, for an output (SB_METRICS_MAX_OUTPUTS). */
struct sb_metrics_output *sb_metrics_output_get(const char *name);

/*
 * Counts a delivery outcome once it is stored: `state` is the one stored
 * ("delivered", "pending" for a retry, "dead"), `attempts` how many were
 * made so far, `latency_ms` the time since the event was received. Final
 * outcomes add to the attempts histogram; deliveries add to the latency
 * histogram. `output` may be NULL.
 */
void sb_metrics_delivery_settled(struct sb_metrics_output *output,
                                 const char *state, int64_t attempts,
                                 int64_t latency_ms);

/* Records one spool commit: how long it took and how many writes it held. */
void sb_metrics_spool_committed(uint64_t elapsed_us, size_t writes);

/* Adds `value` (in the histogram's units) to `h`. Thread-safe. */
void sb_metrics_observe(struct sb_metrics_histogram *h, uint64_t value);

/*
 * Appends `h` as the samples of histogram family `name`: cumulative
 * _bucket lines, _sum and _count, each with the label `label`=`value`
 * first when `label` is not NULL. Returns SB_ERR_FULL or SB_ERR_NOMEM
 * from `out`.
 */
enum sb_status
sb_metrics_render_histogram(struct sb_buf *out, const char *name,
                            const char *label, const char *value,
                            const struct sb_metrics_histogram *h);

/*
 * Appends `value` escaped for a label value: backslash, double quote and
 * newline become \\, \" and \n. Returns SB_ERR_FULL or SB_ERR_NOMEM.
 */
enum sb_status sb_metrics_add_label_value(struct sb_buf *out,
                                          const char *value);

/*
 * Appends every family, with HELP and TYPE lines, to `out`. `backlog`
 * (borrowed for the call) holds `count` rows read from the spool for the
 * pending and dead gauges; outputs without a row show 0. NULL when the
 * spool could not be read: the gauges then have no samples rather than
 * wrong ones. Safe while other threads count; values read one by one, so
 * a scrape is not one instant, but a histogram's _count always equals its
 * +Inf bucket.
 */
enum sb_status sb_metrics_render(const struct sb_metrics_backlog *backlog,
                                 size_t count, struct sb_buf *out);

#endif
