/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/event: what a valid body is, and ids that are
 * unique and sort by time.
 */
#include "build_config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "event.h"

/* Parses a copy of `text`; returns the status, frees what it made. */
static enum sb_status parse_text(const char *text, struct sb_error *err)
{
    size_t len = strlen(text);
    char *body = malloc(len + 1);
    struct sb_event *event = NULL;
    enum sb_status rc;

    assert_non_null(body);
    memcpy(body, text, len + 1);
    sb_error_clear(err);
    rc = sb_event_parse(body, len, &event, err);
    if (rc == SB_OK) {
        sb_event_free(event); /* owns body */
    } else {
        assert_null(event);
        free(body);
    }
    return rc;
}

static void test_event_accepts_valid_bodies(void **state)
{
    static const char *good[] = {
        "{\"event_type\":\"inbound_end_of_call\",\"payload\":{\"a\":1}}",
        "{\"event_type\":\"brand_new_type\"}",
        "  {\"event_type\":\"x\",\"payload\":{},\"extra\":[1,2]}\n",
    };
    struct sb_error err;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (parse_text(good[i], &err) != SB_OK) {
            fail_msg("valid body %zu refused: %s", i, err.msg);
        }
    }
}

static void test_event_rejects_invalid_bodies(void **state)
{
    static const struct {
        const char *body;
        const char *why;
    } bad[] = {
        {"", "not valid JSON"},
        {"{\"event_type\":", "not valid JSON"},
        {"{\"event_type\":\"x\"} trailing", "not valid JSON"},
        {"[1,2]", "must be a JSON object"},
        {"\"text\"", "must be a JSON object"},
        {"{}", "event_type must be a non-empty string"},
        {"{\"event_type\":\"\"}", "event_type must be a non-empty string"},
        {"{\"event_type\":7}", "event_type must be a non-empty string"},
        {"{\"event_type\":\"x\",\"payload\":\"s\"}",
         "payload must be a JSON object"},
        {"{\"event_type\":\"x\",\"payload\":[]}",
         "payload must be a JSON object"},
    };
    struct sb_error err;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (parse_text(bad[i].body, &err) != SB_ERR_INVALID ||
            strstr(err.msg, bad[i].why) == NULL) {
            fail_msg("body %zu: expected \"%s\", got \"%s\"", i, bad[i].why,
                     err.msg);
        }
    }
}

static void test_event_rejects_embedded_nul(void **state)
{
    static const char text[] = "{\"event_type\":\"x\"}\0{}";
    char *body = malloc(sizeof(text));
    struct sb_event *event = NULL;
    struct sb_error err;

    (void)state;
    assert_non_null(body);
    memcpy(body, text, sizeof(text));
    assert_int_equal(sb_event_parse(body, sizeof(text) - 1, &event, &err),
                     SB_ERR_INVALID);
    free(body);
}

static void test_event_ids_are_unique_and_ordered(void **state)
{
    char prev[SB_EVENT_ID_LEN + 1] = "";
    char id[SB_EVENT_ID_LEN + 1];
    int64_t ms;
    int i;

    (void)state;
    for (i = 0; i < 20000; i++) {
        sb_event_new_id(id, &ms);
        assert_int_equal(strlen(id), SB_EVENT_ID_LEN);
        if (strcmp(prev, id) >= 0) {
            fail_msg("id %d not above the previous: %s <= %s", i, id, prev);
        }
        memcpy(prev, id, sizeof(id));
    }
}

static void test_event_id_floor_bounds_a_millisecond(void **state)
{
    char floor_id[SB_EVENT_ID_LEN + 1];
    char next_floor[SB_EVENT_ID_LEN + 1];
    char id[SB_EVENT_ID_LEN + 1];
    int64_t ms;

    (void)state;
    sb_event_new_id(id, &ms);
    sb_event_id_floor(ms, floor_id);
    sb_event_id_floor(ms + 1, next_floor);
    assert_true(strcmp(floor_id, id) <= 0);
    assert_true(strcmp(id, next_floor) < 0);
    assert_memory_equal(floor_id, id, 10); /* the time part */
}

static void test_event_time_format(void **state)
{
    char text[SB_EVENT_TIME_LEN + 1];

    (void)state;
    sb_event_format_time(1796320489852LL, text);
    assert_string_equal(text, "2026-12-03T17:54:49.852Z");
    sb_event_format_time(5, text);
    assert_string_equal(text, "1970-01-01T00:00:00.005Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_accepts_valid_bodies),
        cmocka_unit_test(test_event_rejects_invalid_bodies),
        cmocka_unit_test(test_event_rejects_embedded_nul),
        cmocka_unit_test(test_event_ids_are_unique_and_ordered),
        cmocka_unit_test(test_event_id_floor_bounds_a_millisecond),
        cmocka_unit_test(test_event_time_format),
    };

    return cmocka_run_group_tests_name("event", tests, NULL, NULL);
}
