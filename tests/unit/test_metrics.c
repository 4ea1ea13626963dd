/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/metrics: the text format (label escaping, histogram
 * buckets, sum and count, exact decimals), the cells found by name, the
 * backlog gauges, and counts from many threads at once adding up exactly.
 * The counters are process-wide, so cases compare before and after.
 */
#include "build_config.h"

#include <pthread.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"
#include "metrics.h"

#define RENDER_MAX ((size_t)4 << 20)
#define THREADS    8
#define PER_THREAD 100000

/* The whole exposition, as a scrape would get it without a spool. */
static char *render(const struct sb_metrics_backlog *rows, size_t count)
{
    struct sb_buf buf;
    char *text;

    sb_buf_init(&buf, RENDER_MAX);
    assert_int_equal(sb_metrics_render(rows, count, &buf), SB_OK);
    text = strdup(sb_buf_str(&buf));
    assert_non_null(text);
    sb_buf_cleanup(&buf);
    return text;
}

/* The value of the sample line that starts with `series` then a space. */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    const char *line = text;

    while (line != NULL && *line != '\0') {
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            return strtod(line + n + 1, NULL);
        }
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    fail_msg("no sample %s in the exposition", series);
    return -1;
}

static int has_line(const char *text, const char *line)
{
    const char *at = strstr(text, line);

    /* A whole line: starts the text or follows a newline, ends at one. */
    while (at != NULL) {
        if ((at == text || at[-1] == '\n') && at[strlen(line)] == '\n') {
            return 1;
        }
        at = strstr(at + 1, line);
    }
    return 0;
}

static void test_metrics_escapes_label_values(void **state)
{
    struct sb_buf buf;

    (void)state;
    sb_buf_init(&buf, 256);
    assert_int_equal(sb_metrics_add_label_value(&buf, "a\\b\"c\nd\te é"),
                     SB_OK);
    /* Only the three the format names are escaped; UTF-8 passes as is. */
    assert_string_equal(sb_buf_str(&buf), "a\\\\b\\\"c\\nd\te é");
    sb_buf_cleanup(&buf);

    sb_buf_init(&buf, 3);
    assert_int_equal(sb_metrics_add_label_value(&buf, "\"\"\""), SB_ERR_FULL);
    sb_buf_cleanup(&buf);
}

static const uint64_t test_bounds[] = {1000, 5000, 10000};

static void test_metrics_histogram_buckets_sum_count(void **state)
{
    static struct sb_metrics_histogram h = {
        .bounds = test_bounds,
        .bound_count = 3,
        .per_unit = 1000,
    };
    const uint64_t seen[] = {0, 1000, 1001, 5000, 7250, 10000, 10001, 3600000};
    struct sb_buf buf;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(seen) / sizeof(seen[0]); i++) {
        sb_metrics_observe(&h, seen[i]);
    }
    sb_buf_init(&buf, 4096);
    assert_int_equal(
        sb_metrics_render_histogram(&buf, "t_seconds", NULL, NULL, &h), SB_OK);
    /* Buckets are cumulative and their bound is inclusive (le). */
    assert_string_equal(sb_buf_str(&buf), "t_seconds_bucket{le=\"1\"} 2\n"
                                          "t_seconds_bucket{le=\"5\"} 4\n"
                                          "t_seconds_bucket{le=\"10\"} 6\n"
                                          "t_seconds_bucket{le=\"+Inf\"} 8\n"
                                          "t_seconds_sum 3634.252\n"
                                          "t_seconds_count 8\n");
    sb_buf_cleanup(&buf);
}

static void test_metrics_histogram_label_and_decimals(void **state)
{
    static const uint64_t micro[] = {250, 1000000};
    static struct sb_metrics_histogram h = {
        .bounds = micro,
        .bound_count = 2,
        .per_unit = 1000000,
    };
    struct sb_buf buf;

    (void)state;
    sb_metrics_observe(&h, 7);
    sb_buf_init(&buf, 4096);
    assert_int_equal(
        sb_metrics_render_histogram(&buf, "c_seconds", "output", "a\"b", &h),
        SB_OK);
    /* The label comes first, escaped; le last; decimals exact, trimmed. */
    assert_string_equal(sb_buf_str(&buf),
                        "c_seconds_bucket{output=\"a\\\"b\",le=\"0.00025\"} 1\n"
                        "c_seconds_bucket{output=\"a\\\"b\",le=\"1\"} 1\n"
                        "c_seconds_bucket{output=\"a\\\"b\",le=\"+Inf\"} 1\n"
                        "c_seconds_sum{output=\"a\\\"b\"} 0.000007\n"
                        "c_seconds_count{output=\"a\\\"b\"} 1\n");
    sb_buf_cleanup(&buf);
}

static void test_metrics_reject_reasons(void **state)
{
    (void)state;
    assert_int_equal(sb_metrics_reject_for_status(400),
                     SB_METRICS_REJECT_BAD_JSON);
    assert_int_equal(sb_metrics_reject_for_status(401), SB_METRICS_REJECT_AUTH);
    assert_int_equal(sb_metrics_reject_for_status(404),
                     SB_METRICS_REJECT_NOT_FOUND);
    assert_int_equal(sb_metrics_reject_for_status(405),
                     SB_METRICS_REJECT_METHOD);
    assert_int_equal(sb_metrics_reject_for_status(413),
                     SB_METRICS_REJECT_TOO_LARGE);
    assert_int_equal(sb_metrics_reject_for_status(503),
                     SB_METRICS_REJECT_UNAVAILABLE);
    /* Any status added later still lands in a bounded label. */
    assert_int_equal(sb_metrics_reject_for_status(429),
                     SB_METRICS_REJECT_OTHER);
}

static void test_metrics_counts_move_by_exactly(void **state)
{
    const char *known = "switchboard_events_received_total"
                        "{event_type=\"form_signed\"}";
    const char *other = "switchboard_events_received_total"
                        "{event_type=\"other\"}";
    const char *auth = "switchboard_requests_rejected_total{reason=\"auth\"}";
    char *before;
    char *after;

    (void)state;
    before = render(NULL, 0);
    sb_metrics_event_received("form_signed");
    sb_metrics_event_received("form_signed");
    /* Unknown types, and payload-like strings, share one label. */
    sb_metrics_event_received("brand_new_type");
    sb_metrics_event_received("+4915112345678");
    sb_metrics_request_rejected(SB_METRICS_REJECT_AUTH);
    sb_metrics_request_rejected(SB_METRICS_REJECT_COUNT); /* ignored */
    after = render(NULL, 0);
    assert_true(value_of(after, known) - value_of(before, known) == 2);
    assert_true(value_of(after, other) - value_of(before, other) == 2);
    assert_true(value_of(after, auth) - value_of(before, auth) == 1);
    assert_null(strstr(after, "+4915112345678"));
    assert_null(strstr(after, "brand_new_type"));
    free(before);
    free(after);
}

static void test_metrics_cells_are_found_by_name(void **state)
{
    struct sb_metrics_rule *a = sb_metrics_rule_get("unit-rule-a");
    struct sb_metrics_rule *b = sb_metrics_rule_get("unit-rule-b");
    const char *series = "switchboard_rule_matches_total{rule=\"unit-rule-a\"}";
    char *text;

    (void)state;
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    sb_metrics_rule_matched(a);
    /* A reload finds the same cell: counting goes on where it was. */
    assert_ptr_equal(sb_metrics_rule_get("unit-rule-a"), a);
    sb_metrics_rule_matched(sb_metrics_rule_get("unit-rule-a"));
    sb_metrics_rule_throttled(a);
    sb_metrics_rule_matched(NULL); /* a rule without a cell counts nothing */
    text = render(NULL, 0);
    assert_true(value_of(text, series) == 2);
    assert_true(
        value_of(text, "switchboard_throttled_total{rule=\"unit-rule-a\"}") ==
        1);
    assert_true(value_of(text, "switchboard_rule_matches_total"
                               "{rule=\"unit-rule-b\"}") == 0);
    free(text);
}

static void test_metrics_delivery_outcomes(void **state)
{
    struct sb_metrics_output *out = sb_metrics_output_get("unit-out");
    const char *attempts = "switchboard_delivery_attempts_count";
    char *before;
    char *text;

    (void)state;
    assert_non_null(out);
    before = render(NULL, 0);
    sb_metrics_delivery_settled(out, "pending", 1, 40);
    sb_metrics_delivery_settled(out, "delivered", 2, 1500);
    sb_metrics_delivery_settled(out, "dead", 3, 90000);
    text = render(NULL, 0);
    assert_true(value_of(text, "switchboard_deliveries_total"
                               "{output=\"unit-out\",result=\"retry\"}") == 1);
    assert_true(value_of(text,
                         "switchboard_deliveries_total"
                         "{output=\"unit-out\",result=\"delivered\"}") == 1);
    assert_true(value_of(text, "switchboard_deliveries_total"
                               "{output=\"unit-out\",result=\"dead\"}") == 1);
    /* Latency only for the delivered one: 1.5 s, in the 2.5 s bucket. */
    assert_true(has_line(text, "switchboard_delivery_latency_seconds_bucket"
                               "{output=\"unit-out\",le=\"1\"} 0"));
    assert_true(has_line(text, "switchboard_delivery_latency_seconds_bucket"
                               "{output=\"unit-out\",le=\"2.5\"} 1"));
    assert_true(has_line(text, "switchboard_delivery_latency_seconds_sum"
                               "{output=\"unit-out\"} 1.5"));
    /* Attempts count final outcomes only: delivered and dead. */
    assert_true(value_of(text, attempts) - value_of(before, attempts) == 2);
    free(before);
    free(text);
}

static void test_metrics_backlog_gauges(void **state)
{
    const struct sb_metrics_backlog rows[] = {
        {"unit-gone", 4, 1},
        {"unit-out", 7, 3},
    };
    char *text;

    (void)state;
    assert_non_null(sb_metrics_output_get("unit-out"));
    assert_non_null(sb_metrics_output_get("unit-idle"));
    text = render(rows, 2);
    assert_true(has_line(text, "switchboard_deliveries_pending"
                               "{output=\"unit-out\"} 7"));
    assert_true(has_line(text, "switchboard_deliveries_dead"
                               "{output=\"unit-out\"} 3"));
    /* A known output without a row is 0, not missing. */
    assert_true(has_line(text, "switchboard_deliveries_pending"
                               "{output=\"unit-idle\"} 0"));
    /* A row for an output no config here names still shows. */
    assert_true(has_line(text, "switchboard_deliveries_pending"
                               "{output=\"unit-gone\"} 4"));
    free(text);

    /* An unreadable spool: the families stay, without samples. */
    text = render(NULL, 0);
    assert_true(has_line(text, "# TYPE switchboard_deliveries_pending gauge"));
    assert_null(strstr(text, "switchboard_deliveries_pending{"));
    assert_null(strstr(text, "switchboard_deliveries_dead{"));
    free(text);
}

/* Each line is a HELP, a TYPE, or a sample of the family typed last. */
static void test_metrics_text_is_well_formed(void **state)
{
    regex_t sample;
    char *text;
    char *line;
    char *next;
    char family[128] = "";
    size_t samples = 0;

    (void)state;
    sb_metrics_spool_committed(1234, 3);
    assert_int_equal(
        regcomp(&sample,
                "^[a-zA-Z_:][a-zA-Z0-9_:]*"
                "(\\{[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\""
                "(,[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\")*\\})?"
                " [0-9]+(\\.[0-9]+)?$",
                REG_EXTENDED | REG_NOSUB),
        0);
    text = render(NULL, 0);
    assert_true(strlen(text) > 0 && text[strlen(text) - 1] == '\n');
    for (line = text; *line != '\0'; line = next) {
        next = strchr(line, '\n');
        assert_non_null(next);
        *next++ = '\0';
        if (strncmp(line, "# HELP ", 7) == 0) {
            continue;
        }
        if (strncmp(line, "# TYPE ", 7) == 0) {
            assert_int_equal(sscanf(line + 7, "%127s", family), 1);
            continue;
        }
        assert_int_equal(regexec(&sample, line, 0, NULL, 0), 0);
        assert_int_equal(strncmp(line, family, strlen(family)), 0);
        samples++;
    }
    assert_true(samples > 50);
    regfree(&sample);
    free(text);
}

static void test_metrics_render_respects_the_cap(void **state)
{
    struct sb_buf buf;

    (void)state;
    sb_buf_init(&buf, 512);
    assert_int_equal(sb_metrics_render(NULL, 0, &buf), SB_ERR_FULL);
    assert_true(buf.len <= 512);
    sb_buf_cleanup(&buf);
}

struct hammer {
    struct sb_metrics_rule *rule;
    struct sb_metrics_histogram *h;
};

static void *hammer_run(void *arg)
{
    struct hammer *hm = arg;
    int i;

    for (i = 0; i < PER_THREAD; i++) {
        sb_metrics_event_received("lead_update");
        sb_metrics_rule_matched(hm->rule);
        sb_metrics_observe(hm->h, (uint64_t)(i % 3) * 3000);
    }
    return NULL;
}

static void test_metrics_concurrent_counts_add_up(void **state)
{
    static struct sb_metrics_histogram h = {
        .bounds = test_bounds,
        .bound_count = 3,
        .per_unit = 1000,
    };
    const char *leads = "switchboard_events_received_total"
                        "{event_type=\"lead_update\"}";
    struct hammer hm = {sb_metrics_rule_get("unit-hammered"), &h};
    pthread_t threads[THREADS];
    struct sb_buf buf;
    char *before;
    char *after;
    size_t i;

    (void)state;
    before = render(NULL, 0);
    for (i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, hammer_run, &hm), 0);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(threads[i], NULL);
    }
    after = render(NULL, 0);
    assert_true(value_of(after, leads) - value_of(before, leads) ==
                (double)THREADS * PER_THREAD);
    assert_true(value_of(after, "switchboard_rule_matches_total"
                                "{rule=\"unit-hammered\"}") ==
                (double)THREADS * PER_THREAD);

    sb_buf_init(&buf, 4096);
    assert_int_equal(sb_metrics_render_histogram(&buf, "h", NULL, NULL, &h),
                     SB_OK);
    /* 0, 3000, 6000 in turn: a third in each of le 1, le 5 and le 10. */
    assert_true(value_of(sb_buf_str(&buf), "h_count") ==
                (double)THREADS * PER_THREAD);
    assert_true(value_of(sb_buf_str(&buf), "h_bucket{le=\"1\"}") ==
                (double)THREADS * 33334);
    assert_true(value_of(sb_buf_str(&buf), "h_bucket{le=\"5\"}") ==
                (double)THREADS * (33334 + 33333));
    assert_true(value_of(sb_buf_str(&buf), "h_sum") ==
                (double)THREADS * 33333 * (3 + 6));
    sb_buf_cleanup(&buf);
    free(before);
    free(after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_metrics_escapes_label_values),
        cmocka_unit_test(test_metrics_histogram_buckets_sum_count),
        cmocka_unit_test(test_metrics_histogram_label_and_decimals),
        cmocka_unit_test(test_metrics_reject_reasons),
        cmocka_unit_test(test_metrics_counts_move_by_exactly),
        cmocka_unit_test(test_metrics_cells_are_found_by_name),
        cmocka_unit_test(test_metrics_delivery_outcomes),
        cmocka_unit_test(test_metrics_backlog_gauges),
        cmocka_unit_test(test_metrics_text_is_well_formed),
        cmocka_unit_test(test_metrics_render_respects_the_cap),
        cmocka_unit_test(test_metrics_concurrent_counts_add_up),
    };

    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
