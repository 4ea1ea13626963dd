/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/rules, driven the way the router drives it: a config
 * file with outputs, schedules and `rules:` is loaded, events are routed,
 * and the deliveries, their rendered fields and the trace are inspected.
 * Covers every operator, absent fields, type strictness, exact numbers,
 * combinators, stop, send `when`, templates, throttling, include: and the
 * file:line:col of every kind of rule mistake `check` reports.
 */
#include "build_config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "event.h"
#include "fake_plugins.h"
#include "rules.h"

/* Instants in UTC, the test config's timezone. 2024-05-01 is a Wednesday. */
#define TEST_HOUR_MS      3600000LL
#define TEST_WED_MIDNIGHT 1714521600000LL
#define TEST_WED_NOON     (TEST_WED_MIDNIGHT + 12 * TEST_HOUR_MS)
#define TEST_SAT_NOON     (TEST_WED_NOON + 3 * 24 * TEST_HOUR_MS)
#define TEST_MINUTE_MS    60000LL

/* Everything a rule may name; the rules under test follow `rules:`. */
static const char test_head[] =
    "auth: { bearer: [x] }\n"
    "timezone: UTC\n"
    "schedules:\n"
    "  business-hours: { days: mon-fri, hours: \"08:00-18:00\" }\n"
    "outputs:\n"
    "  chat: { plugin: slack, webhook_url: \"https://x.example/hook\" }\n"
    "  loud:\n"
    "    plugin: slack\n"
    "    webhook_url: \"https://x.example/loud\"\n"
    "    text: \"Loud: {{payload.caller}}\"\n"
    "  desk:\n"
    "    plugin: smtp\n"
    "    url: smtp://mail.example\n"
    "    from: alerts@example.org\n"
    "    to: [desk@example.org]\n"
    "  pager: { plugin: sms, provider: twilio }\n"
    "  arch: { plugin: file, path: /tmp/sb-test-rules.jsonl }\n"
    "rules:\n";

/* A call as the sender posts it, with a value for every kind of test. */
static const char test_call[] =
    "{\"event_type\": \"inbound_end_of_call\", \"payload\": {"
    "\"caller\": \"+14155550123\", \"is_urgent\": true, \"is_spam\": false,"
    "\"duration\": 72, \"ratio\": 72.0, \"score\": 0.75, \"temp\": -5,"
    "\"nothing\": null, \"code\": \"72\", \"flag\": \"true\","
    "\"report\": \"Chest pain. ÉCOLE Hauptstraße 5\","
    "\"big\": 9007199254740993, \"huge\": 123456789012345678901234567890,"
    "\"neg_huge\": -123456789012345678901234567890,"
    "\"items\": [{\"sku\": \"A-1\", \"qty\": 2}, {\"sku\": \"B-2\"}]}}";

/* Large: the trace holds a slot per possible rule. */
static struct sb_errors test_errs;
static struct sb_route test_route;
static struct sb_rules_trace test_trace;

/* ---- helpers ------------------------------------------------------------ */

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (f == NULL) {
        fail_msg("cannot create %s", path);
    }
    fputs(text, f);
    fclose(f);
}

/* Writes test_head then `rules` to a fresh temporary file. */
static void write_config(char path[64], const char *rules)
{
    FILE *f;
    int fd;

    snprintf(path, 64, "/tmp/sb-rules-XXXXXX");
    fd = mkstemp(path);
    if (fd < 0) {
        fail_msg("cannot create a temporary config");
    }
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(test_head, f);
    fputs(rules, f);
    fclose(f);
}

static void format_first_error(char *buf, size_t cap)
{
    if (test_errs.count == 0) {
        snprintf(buf, cap, "no error recorded");
        return;
    }
    sb_error_format(&test_errs.items[0], buf, cap);
}

static struct sb_config *load_path(const char *path)
{
    struct sb_config *cfg = NULL;
    char msg[1024];

    if (sb_config_load(path, &cfg, &test_errs) != SB_OK) {
        format_first_error(msg, sizeof(msg));
        fail_msg("expected the config to load; %zu errors, the first: %s",
                 sb_errors_total(&test_errs), msg);
    }
    assert_non_null(cfg);
    return cfg;
}

/* Loads test_head plus `rules`; the test fails when that does not load. */
static struct sb_config *load_rules(const char *rules)
{
    struct sb_config *cfg = NULL;
    char path[64];
    char msg[1024];
    enum sb_status rc;

    write_config(path, rules);
    rc = sb_config_load(path, &cfg, &test_errs);
    unlink(path);
    if (rc != SB_OK) {
        format_first_error(msg, sizeof(msg));
        fail_msg("expected the rules to load; %zu errors, the first: %s",
                 sb_errors_total(&test_errs), msg);
    }
    assert_non_null(cfg);
    return cfg;
}

/* An event parsed from `json`, received at `ms`. */
static struct sb_event *event_at(const char *json, int64_t ms)
{
    struct sb_event *ev = NULL;
    struct sb_error err;
    size_t len = strlen(json);
    char *body = malloc(len + 1);

    assert_non_null(body);
    memcpy(body, json, len + 1);
    sb_error_clear(&err);
    if (sb_event_parse(body, len, &ev, &err) != SB_OK) {
        free(body);
        fail_msg("test event does not parse: %s", err.msg);
    }
    sb_event_stamp(ev);
    ev->received_ms = ms;
    return ev;
}

static void route_ok(const struct sb_config *cfg, const struct sb_event *ev,
                     int redact)
{
    enum sb_status rc;

    /* The previous event's deliveries and claims are ours to free. */
    sb_route_cleanup(&test_route);
    rc = sb_rules_route(cfg->rules, ev, redact, &test_route, &test_trace);
    if (rc != SB_OK) {
        fail_msg("routing failed: %s", sb_status_name(rc));
    }
}

/* Routes `json` received at `ms` and frees the event. */
static void route_json(const struct sb_config *cfg, const char *json,
                       int64_t ms)
{
    struct sb_event *ev = event_at(json, ms);

    route_ok(cfg, ev, 0);
    sb_event_free(ev);
}

/* The deliveries as "rule>output,rule>output", in order. */
static const char *routed(char *buf, size_t cap)
{
    size_t len = 0;
    size_t i;

    buf[0] = '\0';
    for (i = 0; i < test_route.count && len < cap; i++) {
        int n = snprintf(buf + len, cap - len, "%s%s>%s", i ? "," : "",
                         test_route.deliveries[i].rule,
                         test_route.deliveries[i].output);

        if (n < 0) {
            break;
        }
        len += (size_t)n;
    }
    return buf;
}

static void expect_routed(const char *what, const char *want)
{
    char got[1024];

    if (strcmp(routed(got, sizeof(got)), want) != 0) {
        fail_msg("%s: expected deliveries \"%s\", got \"%s\"", what, want, got);
    }
}

static void expect_count(const char *what, size_t got, size_t want)
{
    if (got != want) {
        fail_msg("%s: expected %zu, got %zu", what, want, got);
    }
}

static void expect_fields(size_t index, const char *want)
{
    if (index >= test_route.count) {
        fail_msg("expected a delivery #%zu, there are %zu", index,
                 test_route.count);
    }
    if (strcmp(test_route.deliveries[index].fields, want) != 0) {
        fail_msg("delivery #%zu (%s): expected fields %s, got %s", index,
                 test_route.deliveries[index].output, want,
                 test_route.deliveries[index].fields);
    }
}

/* ---- match conditions, one rule per case -------------------------------- */

struct match_case {
    const char *match; /* a flow mapping for `match:` */
    int want;
};

/*
 * Routes `json` through a single rule with each case's `match` and checks
 * that it sends exactly when the case says, and that the trace agrees.
 */
static void expect_matches(const char *json, const struct match_case *cases,
                           size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        struct sb_config *cfg;
        char rules[1024];
        char why[256];
        int sent;
        int matched;

        snprintf(rules, sizeof(rules),
                 "  - name: probe\n    match: %s\n    send: [arch]\n",
                 cases[i].match);
        cfg = load_rules(rules);
        route_json(cfg, json, TEST_WED_NOON);
        sent = test_route.count == 1;
        matched = test_trace.count == 1 && test_trace.rules[0].matched;
        snprintf(why, sizeof(why), "%s", test_trace.rules[0].why);
        sb_route_cleanup(&test_route);
        sb_config_free(cfg);
        if (sent != cases[i].want || matched != cases[i].want) {
            fail_msg("match %s: expected %s, the rule %s and the trace says "
                     "%s (why: \"%s\")",
                     cases[i].match, cases[i].want ? "a match" : "no match",
                     sent ? "sent" : "did not send",
                     matched ? "matched" : "not matched", why);
        }
    }
}

#define EXPECT_MATCHES(json, cases) \
    expect_matches((json), (cases), sizeof(cases) / sizeof((cases)[0]))

static void test_rules_operators(void **state)
{
    static const struct match_case cases[] = {
        {"{ event_type: inbound_end_of_call }", 1},
        {"{ event_type: outbound_call }", 0},
        {"{ payload.duration: { eq: 72 } }", 1},
        {"{ payload.duration: { eq: 73 } }", 0},
        {"{ payload.duration: { ne: 73 } }", 1},
        {"{ payload.duration: { ne: 72 } }", 0},
        {"{ payload.duration: { in: [70, 72] } }", 1},
        {"{ payload.duration: { in: [70, 71] } }", 0},
        {"{ payload.duration: [70, 72] }", 1},
        {"{ payload.duration: [70, 71] }", 0},
        {"{ payload.duration: { not_in: [70, 71] } }", 1},
        {"{ payload.duration: { not_in: [72] } }", 0},
        {"{ payload.duration: { gt: 71 } }", 1},
        {"{ payload.duration: { gt: 72 } }", 0},
        {"{ payload.duration: { gte: 72 } }", 1},
        {"{ payload.duration: { gte: 73 } }", 0},
        {"{ payload.duration: { lt: 73 } }", 1},
        {"{ payload.duration: { lt: 72 } }", 0},
        {"{ payload.duration: { lte: 72 } }", 1},
        {"{ payload.duration: { lte: 71 } }", 0},
        {"{ payload.caller: { gt: \"+1\" } }", 1},
        {"{ payload.caller: { lt: \"+1\" } }", 0},
        {"{ payload.caller: { lte: \"+2\" } }", 1},
        {"{ payload.caller: { regex: \"5550\" } }", 1},
        {"{ payload.caller: { regex: \"5551\" } }", 0},
        {"{ event_type: { glob: \"inbound_*\" } }", 1},
        {"{ event_type: { glob: \"*_end_of_?all\" } }", 1},
        {"{ event_type: { glob: \"form_*\" } }", 0},
        {"{ event_type: { glob: \"inbound\" } }", 0},
        {"{ payload.report: { contains: \"CHEST\" } }", 1},
        {"{ payload.report: { contains: \"pain, \" } }", 0},
        {"{ payload.report: { starts_with: \"Chest\" } }", 1},
        {"{ payload.report: { starts_with: \"chest\" } }", 0},
        {"{ payload.report: { starts_with: \"pain\" } }", 0},
        {"{ payload.report: { ends_with: \"straße 5\" } }", 1},
        {"{ payload.report: { ends_with: \"STRASSE 5\" } }", 0},
        {"{ payload.report: { ends_with: \"Chest\" } }", 0},
        {"{ payload.caller: { exists: true } }", 1},
        {"{ payload.caller: { exists: false } }", 0},
        {"{ payload.is_spam: { exists: true } }", 1},
        {"{ payload.duration: { gt: 60, lt: 80 } }", 1},
        {"{ payload.duration: { gt: 60, lt: 70 } }", 0},
    };

    (void)state;
    EXPECT_MATCHES(test_call, cases);
}

static void test_rules_absent_fields(void **state)
{
    static const struct match_case cases[] = {
        {"{ payload.missing: { ne: 1 } }", 1},
        {"{ payload.missing: { ne: null } }", 0},
        {"{ payload.missing: { not_in: [1, \"a\"] } }", 1},
        {"{ payload.missing: { exists: false } }", 1},
        {"{ payload.missing: { exists: true } }", 0},
        {"{ payload.missing: null }", 1},
        {"{ payload.missing: { eq: null } }", 1},
        {"{ payload.missing: { in: [1, null] } }", 1},
        {"{ payload.missing: 1 }", 0},
        {"{ payload.missing: { eq: \"\" } }", 0},
        {"{ payload.missing: false }", 0},
        {"{ payload.missing: { gt: 0 } }", 0},
        {"{ payload.missing: { gte: 0 } }", 0},
        {"{ payload.missing: { lt: 0 } }", 0},
        {"{ payload.missing: { lte: 0 } }", 0},
        {"{ payload.missing: { lt: \"z\" } }", 0},
        {"{ payload.missing: { regex: \".*\" } }", 0},
        {"{ payload.missing: { glob: \"*\" } }", 0},
        {"{ payload.missing: { contains: \"\" } }", 0},
        {"{ payload.missing: { starts_with: \"\" } }", 0},
        {"{ no.such.path: { ne: 1 } }", 1},
        {"{ payload.nothing: null }", 1},
        {"{ payload.nothing: { exists: true } }", 0},
        {"{ payload.nothing: { gt: 0 } }", 0},
        {"{ payload.caller.deeper: { exists: false } }", 1},
    };

    (void)state;
    EXPECT_MATCHES(test_call, cases);
}

static void test_rules_type_strictness(void **state)
{
    static const struct match_case cases[] = {
        {"{ payload.code: 72 }", 0},
        {"{ payload.code: \"72\" }", 1},
        {"{ payload.duration: \"72\" }", 0},
        {"{ payload.duration: '72' }", 0},
        {"{ payload.duration: 72.0 }", 1},
        {"{ payload.ratio: 72 }", 1},
        {"{ payload.duration: 7.2e1 }", 1},
        {"{ payload.code: { in: [72, 73] } }", 0},
        {"{ payload.code: { ne: 72 } }", 1},
        {"{ payload.is_urgent: true }", 1},
        {"{ payload.is_urgent: \"true\" }", 0},
        {"{ payload.is_urgent: 1 }", 0},
        {"{ payload.flag: true }", 0},
        {"{ payload.flag: \"true\" }", 1},
        {"{ payload.is_spam: false }", 1},
        {"{ payload.is_spam: 0 }", 0},
        {"{ payload.is_spam: null }", 0},
        {"{ payload.nothing: false }", 0},
        {"{ payload.duration: { gt: \"7\" } }", 0},
        {"{ payload.code: { gt: 7 } }", 0},
        {"{ payload.code: { regex: \"72\" } }", 1},
        {"{ payload.duration: { regex: \"72\" } }", 0},
        {"{ payload.duration: { contains: \"7\" } }", 0},
        {"{ payload.is_urgent: { starts_with: \"t\" } }", 0},
    };

    (void)state;
    EXPECT_MATCHES(test_call, cases);
}

static void test_rules_numeric_edges(void **state)
{
    static const struct match_case cases[] = {
        {"{ payload.big: 9007199254740993 }", 1},
        {"{ payload.big: 9007199254740992 }", 0},
        {"{ payload.big: { ne: 9007199254740992 } }", 1},
        {"{ payload.big: { gt: 9007199254740992 } }", 1},
        {"{ payload.big: { lt: 9007199254740994 } }", 1},
        {"{ payload.big: { in: [9007199254740992, 9007199254740994] } }", 0},
        {"{ payload.temp: -5 }", 1},
        {"{ payload.temp: { lt: -4 } }", 1},
        {"{ payload.temp: { gt: -4 } }", 0},
        {"{ payload.temp: { gte: -5.0 } }", 1},
        {"{ payload.temp: { lt: 0 } }", 1},
        {"{ payload.score: 0.75 }", 1},
        {"{ payload.score: { gt: 0.5 } }", 1},
        {"{ payload.score: { lt: 0.75 } }", 0},
        {"{ payload.score: { lte: 7.5e-1 } }", 1},
        {"{ payload.score: { gt: 0 } }", 1},
        {"{ payload.score: { lt: 1 } }", 1},
        {"{ payload.huge: 123456789012345678901234567890 }", 1},
        {"{ payload.huge: 123456789012345678901234567891 }", 0},
        {"{ payload.huge: { gt: 123456789012345678901234567889 } }", 1},
        {"{ payload.huge: { gt: 9223372036854775807 } }", 1},
        {"{ payload.huge: { lt: 9223372036854775807 } }", 0},
        {"{ payload.neg_huge: { lt: -123456789012345678901234567889 } }", 1},
        {"{ payload.neg_huge: { gt: -9223372036854775808 } }", 0},
        {"{ payload.neg_huge: { lt: 0 } }", 1},
        {"{ payload.duration: { lt: 123456789012345678901234567890 } }", 1},
        {"{ payload.duration: { gt: -123456789012345678901234567890 } }", 1},
    };

    (void)state;
    EXPECT_MATCHES(test_call, cases);
}

static void test_rules_regex_anchoring(void **state)
{
    static const struct match_case cases[] = {
        {"{ payload.caller: { regex: \"555\" } }", 1},
        {"{ payload.caller: { regex: \"^555\" } }", 0},
        {"{ payload.caller: { regex: '^\\+1[0-9]{10}$' } }", 1},
        {"{ payload.caller: { regex: '^\\+1[0-9]{9}$' } }", 0},
        {"{ payload.caller: { regex: '0123$' } }", 1},
        {"{ payload.caller: { regex: '^0123' } }", 0},
        {"{ event_type: { regex: \"^(inbound|outbound)_\" } }", 1},
        {"{ event_type: { regex: \"^INBOUND\" } }", 0},
        {"{ payload.report: { regex: \"pain\\\\.\" } }", 1},
    };

    (void)state;
    EXPECT_MATCHES(test_call, cases);
}

/* ASCII needles take a byte-wise path: it must agree with the general one. */
static void test_rules_contains_ascii(void **state)
{
    static const struct match_case cases[] = {
        {"{ payload.report: { contains: \"chest\" } }", 1},
        {"{ payload.report: { contains: \"PAIN.\" } }", 1},
        {"{ payload.report: { contains: \"n. \" } }", 1},
        {"{ payload.report: { contains: \"e 5\" } }", 1},
        {"{ payload.report: { contains: \"5\" } }", 1},
        {"{ payload.report: { contains: \"e 6\" } }", 0},
        {"{ payload.report: { contains: \"paint\" } }", 0},
        {"{ payload.report: { contains: \"c\" } }", 1},
        {"{ payload.caller: { contains: \"+14155550123\" } }", 1},
        {"{ payload.caller: { contains: \"+141555501234\" } }", 0},
        {"{ payload.code: { contains: \"\" } }", 1},
        {"{ \"payload.items[0].sku\": { contains: \"a-1\" } }", 1},
    };

    (void)state;
    EXPECT_MATCHES(test_call, cases);
}

static void test_rules_contains_utf8(void **state)
{
    static const struct match_case cases[] = {
        {"{ payload.report: { contains: \"école\" } }", 1},
        {"{ payload.report: { contains: \"ÉCOLE\" } }", 1},
        {"{ payload.report: { contains: \"École h\" } }", 1},
        {"{ payload.report: { contains: \"ecole\" } }", 0},
        {"{ payload.report: { contains: \"Straße\" } }", 1},
        {"{ payload.report: { contains: \"STRAßE\" } }", 1},
        {"{ payload.report: { contains: \"hauptSTRAßE 5\" } }", 1},
        {"{ payload.report: { contains: \"straße 6\" } }", 0},
        {"{ payload.report: { contains: \"ß\" } }", 1},
        {"{ payload.report: { contains: \"é\" } }", 1},
        {"{ payload.report: { contains: \"è\" } }", 0},
    };

    (void)state;
    EXPECT_MATCHES(test_call, cases);
}

/* In a flow mapping YAML reads [ and ] as a list: such keys are quoted. */
static void test_rules_array_index_paths(void **state)
{
    static const struct match_case cases[] = {
        {"{ \"payload.items[0].sku\": A-1 }", 1},
        {"{ \"payload.items[1].sku\": { eq: B-2 } }", 1},
        {"{ \"payload.items[0].sku\": B-2 }", 0},
        {"{ \"payload.items[0].qty\": { gte: 2 } }", 1},
        {"{ \"payload.items[1].qty\": { exists: false } }", 1},
        {"{ \"payload.items[2].sku\": { exists: false } }", 1},
        {"{ \"payload.items[2].sku\": { ne: A-1 } }", 1},
        {"{ \"payload.items[2].sku\": { eq: A-1 } }", 0},
        {"{ payload.items.sku: { exists: true } }", 0},
        {"{ \"payload.caller[0]\": { exists: true } }", 0},
    };
    struct sb_config *cfg;

    (void)state;
    EXPECT_MATCHES(test_call, cases);

    cfg = load_rules("  - name: block\n"
                     "    match:\n"
                     "      payload.items[1].sku: B-2\n"
                     "      payload.items[0].qty: { lt: 3 }\n"
                     "    send: [arch]\n");
    route_json(cfg, test_call, TEST_WED_NOON);
    expect_routed("index paths as block keys", "block>arch");
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);
}

static void test_rules_combinators(void **state)
{
    static const struct match_case cases[] = {
        {"{ any: [ { event_type: a }, { payload.duration: 72 } ] }", 1},
        {"{ any: [ { event_type: a }, { payload.duration: 71 } ] }", 0},
        {"{ all: [ { payload.is_urgent: true }, { payload.duration: 72 } ] }",
         1},
        {"{ all: [ { payload.is_urgent: true }, { payload.duration: 71 } ] }",
         0},
        {"{ not: { payload.is_spam: true } }", 1},
        {"{ not: { payload.is_urgent: true } }", 0},
        {"{ not: { payload.is_urgent: true, payload.duration: 1 } }", 1},
        {"{ event_type: inbound_end_of_call, payload.is_spam: true }", 0},
        {"{ event_type: inbound_end_of_call, payload.is_spam: false }", 1},
        {"{ any: [ { all: [ { payload.is_urgent: true },"
         " { not: { payload.duration: { lt: 60 } } } ] },"
         " { event_type: x } ] }",
         1},
        {"{ any: [ { all: [ { payload.is_urgent: true },"
         " { not: { payload.duration: { lt: 80 } } } ] },"
         " { event_type: x } ] }",
         0},
        {"{ not: { any: [ { payload.is_spam: true },"
         " { payload.duration: { gt: 100 } } ] } }",
         1},
        {"{ not: { not: { payload.is_urgent: true } } }", 1},
        {"{ all: [ { any: [ { payload.temp: 0 }, { payload.score: 1 } ] } ] }",
         0},
        {"{ event_type: { glob: \"inbound_*\" },"
         " any: [ { payload.temp: 0 }, { payload.score: 0.75 } ] }",
         1},
        {"{ all: [] }", 1},
        {"{ any: [] }", 0},
        {"{}", 1},
    };

    (void)state;
    EXPECT_MATCHES(test_call, cases);
}

/* ---- routing across rules ------------------------------------------------ */

static void test_rules_every_matching_rule_sends(void **state)
{
    struct sb_config *cfg =
        load_rules("  - name: urgent\n"
                   "    match: { payload.is_urgent: true }\n"
                   "    send: [chat, pager]\n"
                   "  - name: spam\n"
                   "    match: { payload.is_spam: true }\n"
                   "    send: [desk]\n"
                   "  - name: calls\n"
                   "    match: { event_type: { glob: "
                   "\"inbound_*\" } }\n"
                   "    send: [arch]\n");

    (void)state;
    route_json(cfg, test_call, TEST_WED_NOON);
    expect_routed("two of three rules match",
                  "urgent>chat,urgent>pager,calls>arch");
    expect_count("pager's place in its send list",
                 test_route.deliveries[1].send_index, 1);
    expect_count("arch's place in its send list",
                 test_route.deliveries[2].send_index, 0);
    if (test_trace.count != 3 || !test_trace.rules[0].matched ||
        test_trace.rules[1].matched || !test_trace.rules[2].matched) {
        fail_msg("expected the trace to show matched, not, matched over 3 "
                 "rules; it has %zu",
                 test_trace.count);
    }
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);
}

/* Routes like the server does: no trace, so the per-type index is used. */
static void route_served(const struct sb_config *cfg, const char *json)
{
    struct sb_event *ev = event_at(json, TEST_WED_NOON);
    unsigned char matched[8] = {0};
    size_t n;

    sb_route_cleanup(&test_route);
    if (sb_rules_route(cfg->rules, ev, 0, &test_route, NULL) != SB_OK) {
        fail_msg("routing failed for %s", json);
    }
    n = sb_rules_evaluate(cfg->rules, ev, matched);
    if (n > sb_rules_count(cfg->rules)) {
        fail_msg("evaluate counted %zu matches of %zu rules", n,
                 sb_rules_count(cfg->rules));
    }
    sb_event_free(ev);
}

static void test_rules_type_index_keeps_order_and_stop(void **state)
{
    struct sb_config *cfg = load_rules(
        "  - name: a\n"
        "    match: { event_type: call, payload.x: 1 }\n"
        "    send: [chat]\n"
        "  - name: b\n"
        "    match: { payload.x: 1 }\n"
        "    send: [desk]\n"
        "  - name: c\n"
        "    match: { event_type: [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9] }\n"
        "    send: [arch]\n"
        "  - name: d\n"
        "    match: { event_type: call }\n"
        "    stop: true\n"
        "  - name: e\n"
        "    send: [arch]\n");

    (void)state;
    route_served(cfg, "{\"event_type\":\"call\",\"payload\":{\"x\":1}}");
    expect_routed("call: typed and untyped rules in order, then stop",
                  "a>chat,b>desk");
    route_served(cfg, "{\"event_type\":\"f9\"}");
    expect_routed("the tenth type of a list", "c>arch,e>arch");
    route_served(cfg, "{\"event_type\":\"other\",\"payload\":{\"x\":1}}");
    expect_routed("a type no rule names", "b>desk,e>arch");
    route_json(cfg, "{\"event_type\":\"other\",\"payload\":{\"x\":1}}",
               TEST_WED_NOON);
    expect_routed("a dry run agrees", "b>desk,e>arch");
    expect_count("a dry run traces every rule", test_trace.count, 5);
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);
}

static void test_rules_stop_ends_evaluation(void **state)
{
    struct sb_config *cfg = load_rules("  - name: drop-spam\n"
                                       "    match: { payload.is_spam: true }\n"
                                       "    stop: true\n"
                                       "  - name: first-only\n"
                                       "    match: { payload.first: true }\n"
                                       "    send: [chat]\n"
                                       "    stop: true\n"
                                       "  - name: not-stopping\n"
                                       "    match: { payload.is_spam: false }\n"
                                       "    stop: false\n"
                                       "    send: [desk]\n"
                                       "  - name: archive\n"
                                       "    send: [arch]\n");

    (void)state;
    route_json(cfg, "{\"event_type\":\"c\",\"payload\":{\"is_spam\":true}}",
               TEST_WED_NOON);
    expect_routed("spam stops everything", "");
    if (test_trace.count != 1 || !test_trace.rules[0].stopped) {
        fail_msg("expected the trace to end at drop-spam, stopped; it has "
                 "%zu rules",
                 test_trace.count);
    }

    route_json(cfg, "{\"event_type\":\"c\",\"payload\":{\"first\":true}}",
               TEST_WED_NOON);
    expect_routed("a stop rule still sends its own", "first-only>chat");

    route_json(cfg, "{\"event_type\":\"c\",\"payload\":{\"is_spam\":false}}",
               TEST_WED_NOON);
    expect_routed("stop: false does not stop",
                  "not-stopping>desk,archive>arch");
    if (test_trace.count != 4 || test_trace.rules[2].stopped) {
        fail_msg("expected all 4 rules traced and none stopped, got %zu",
                 test_trace.count);
    }
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);
}

static void test_rules_without_match_match_everything(void **state)
{
    struct sb_config *cfg = load_rules("  - send: [arch]\n");

    (void)state;
    route_json(cfg, "{\"event_type\":\"anything\"}", TEST_WED_NOON);
    expect_routed("a rule without match", "rule-1>arch");
    route_json(cfg, test_call, TEST_SAT_NOON);
    expect_routed("a rule without match", "rule-1>arch");
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);
}

static void test_rules_default_names(void **state)
{
    struct sb_config *cfg = load_rules("  - send: [arch]\n"
                                       "  - name: named\n"
                                       "    send: [chat]\n"
                                       "  - match: { event_type: x }\n"
                                       "  - send: [desk]\n");
    static const char *const want[] = {"rule-1", "named", "rule-3", "rule-4"};
    size_t i;

    (void)state;
    expect_count("rules", sb_rules_count(cfg->rules), 4);
    for (i = 0; i < 4; i++) {
        if (strcmp(sb_rules_name(cfg->rules, i), want[i]) != 0) {
            fail_msg("rule #%zu: expected the name %s, got %s", i, want[i],
                     sb_rules_name(cfg->rules, i));
        }
    }
    route_json(cfg, "{\"event_type\":\"y\"}", TEST_WED_NOON);
    expect_routed("default names", "rule-1>arch,named>chat,rule-4>desk");
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);
}

static void test_rules_send_when(void **state)
{
    struct sb_config *cfg =
        load_rules("  - name: urgent\n"
                   "    match: { payload.is_urgent: true }\n"
                   "    send:\n"
                   "      - chat\n"
                   "      - to: pager\n"
                   "        when: { outside: business-hours }\n"
                   "      - to: desk\n"
                   "        when: { within: business-hours, payload.duration: "
                   "{ gt: 60 } }\n"
                   "      - to: arch\n"
                   "        when: { payload.is_spam: true }\n");
    static const struct {
        const char *what;
        int64_t ms;
        const char *want;
    } cases[] = {
        {"Wednesday noon", TEST_WED_NOON, "urgent>chat,urgent>desk"},
        {"Wednesday 08:00, a start is inside",
         TEST_WED_MIDNIGHT + 8 * TEST_HOUR_MS, "urgent>chat,urgent>desk"},
        {"Wednesday 07:59:59.999", TEST_WED_MIDNIGHT + 8 * TEST_HOUR_MS - 1,
         "urgent>chat,urgent>pager"},
        {"Wednesday 18:00, an end is outside",
         TEST_WED_MIDNIGHT + 18 * TEST_HOUR_MS, "urgent>chat,urgent>pager"},
        {"Wednesday 17:59",
         TEST_WED_MIDNIGHT + 18 * TEST_HOUR_MS - TEST_MINUTE_MS,
         "urgent>chat,urgent>desk"},
        {"Saturday noon", TEST_SAT_NOON, "urgent>chat,urgent>pager"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        route_json(cfg, test_call, cases[i].ms);
        expect_routed(cases[i].what, cases[i].want);
        if (test_trace.skipped_count != 2) {
            fail_msg("%s: expected 2 send entries held back by when, the "
                     "trace lists %zu",
                     cases[i].what, test_trace.skipped_count);
        }
    }
    expect_count("pager's place in its send list",
                 test_route.deliveries[1].send_index, 1);
    if (strstr(test_trace.skipped[1], "arch (rule urgent): when: "
                                      "payload.is_spam") == NULL) {
        fail_msg("expected the trace to say why arch was held back, got "
                 "\"%s\"",
                 test_trace.skipped[1]);
    }
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);
}

static void test_rules_match_within_schedule(void **state)
{
    struct sb_config *cfg = load_rules("  - name: day\n"
                                       "    match: { within: business-hours }\n"
                                       "    send: [chat]\n"
                                       "  - name: night\n"
                                       "    match: { outside: business-hours,"
                                       " not: { event_type: quiet } }\n"
                                       "    send: [pager]\n");

    (void)state;
    route_json(cfg, test_call, TEST_WED_NOON);
    expect_routed("within on a weekday noon", "day>chat");
    route_json(cfg, test_call, TEST_WED_NOON + 9 * TEST_HOUR_MS);
    expect_routed("outside on a weekday at 21:00", "night>pager");
    if (strstr(test_trace.rules[0].why, "within business-hours") == NULL) {
        fail_msg("expected the trace to name the schedule, got \"%s\"",
                 test_trace.rules[0].why);
    }
    route_json(cfg, "{\"event_type\":\"quiet\"}", TEST_SAT_NOON);
    expect_routed("outside on Saturday, but quiet", "");
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);
}

/* Schedules are read in the config's timezone, not in UTC. */
static void test_rules_schedule_in_config_timezone(void **state)
{
    static const char rules[] = "  - name: day\n"
                                "    match: { within: business-hours }\n"
                                "    send: [chat]\n";
    static const struct {
        const char *what;
        int64_t ms;
        const char *want;
    } cases[] = {
        {"12:00 UTC is 08:00 in New York", TEST_WED_NOON, "day>chat"},
        {"11:59 UTC is 07:59 in New York", TEST_WED_NOON - TEST_MINUTE_MS, ""},
        {"21:59 UTC is 17:59 in New York",
         TEST_WED_NOON + 10 * TEST_HOUR_MS - TEST_MINUTE_MS, "day>chat"},
        {"22:00 UTC is 18:00 in New York", TEST_WED_NOON + 10 * TEST_HOUR_MS,
         ""},
    };
    char config[sizeof(test_head) + sizeof(rules) + 32];
    const char *utc = strstr(test_head, "timezone: UTC\n");
    char path[64];
    struct sb_config *cfg;
    size_t i;
    int fd;

    (void)state;
    assert_non_null(utc);
    snprintf(config, sizeof(config), "%.*stimezone: America/New_York\n%s%s",
             (int)(utc - test_head), test_head, utc + strlen("timezone: UTC\n"),
             rules);
    snprintf(path, sizeof(path), "/tmp/sb-rules-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path, config);
    cfg = load_path(path);
    unlink(path);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        route_json(cfg, test_call, cases[i].ms);
        expect_routed(cases[i].what, cases[i].want);
    }
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);
}

/* ---- rendered fields ---------------------------------------------------- */

static void test_rules_template_fields(void **state)
{
    static const char event[] =
        "{\"event_type\":\"call\",\"payload\":{\"caller\":\"+14155550123\","
        "\"n\":72}}";
    struct sb_config *cfg = load_rules(
        "  - name: fields\n"
        "    send:\n"
        "      - chat\n"
        "      - loud\n"
        "      - to: loud\n"
        "        text: \"{{payload.n}}s from {{payload.caller}} ({{rule}})\"\n"
        "      - to: desk\n"
        "        subject: \"Urgent: {{payload.caller}}\"\n"
        "      - arch\n"
        "      - to: pager\n"
        "        body: \"{{event_id}} at {{received_at}}{{#payload.x}}!"
        "{{/payload.x}}{{^payload.x}}.{{/payload.x}}\"\n");
    struct sb_event *ev = event_at(event, TEST_WED_NOON + 123);
    char want[1024];

    (void)state;
    route_ok(cfg, ev, 0);
    expect_routed("six sends",
                  "fields>chat,fields>loud,fields>loud,fields>desk,"
                  "fields>arch,fields>pager");

    snprintf(want, sizeof(want), "{\"text\":\"call event %s\"}", ev->id);
    expect_fields(0, want);
    expect_fields(1, "{\"text\":\"Loud: +14155550123\"}");
    expect_fields(2, "{\"text\":\"72s from +14155550123 (fields)\"}");
    snprintf(want, sizeof(want),
             "{\"subject\":\"Urgent: +14155550123\",\"body\":\"Event %s "
             "(call) received 2024-05-01T12:00:00.123Z.\"}",
             ev->id);
    expect_fields(3, want);
    /* The envelope is built from the stored event at delivery. */
    expect_fields(4, "{\"line\":null}");
    snprintf(want, sizeof(want),
             "{\"body\":\"%s at 2024-05-01T12:00:00.123Z.\"}", ev->id);
    expect_fields(5, want);

    sb_route_cleanup(&test_route);
    sb_event_free(ev);
    sb_config_free(cfg);
}

static void test_rules_fields_escaped_per_output(void **state)
{
    static const char event[] = "{\"event_type\":\"call\",\"payload\":{"
                                "\"name\":\"Tom & Jerry <tj@example.org>\","
                                "\"line\":\"Hi\\r\\nBcc: all@example.org\"}}";
    struct sb_config *cfg =
        load_rules("  - name: esc\n"
                   "    send:\n"
                   "      - to: chat\n"
                   "        text: \"<!here> *{{payload.name}}* & co\"\n"
                   "      - to: desk\n"
                   "        subject: \"{{payload.line}}\"\n"
                   "        body: \"{{payload.name}}\\n{{payload.line}}\"\n");

    (void)state;
    route_json(cfg, event, TEST_WED_NOON);
    expect_fields(0, "{\"text\":\"<!here> *Tom &amp; Jerry "
                     "&lt;tj@example.org&gt;* & co\"}");
    expect_fields(1, "{\"subject\":\"Hi  Bcc: all@example.org\",\"body\":"
                     "\"Tom & Jerry <tj@example.org>\\nHi\\r\\nBcc: "
                     "all@example.org\"}");
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);
}

static void test_rules_redact_renders_paths(void **state)
{
    struct sb_config *cfg =
        load_rules("  - name: dry\n"
                   "    throttle: { key: \"{{payload.caller}}\", per: 1m }\n"
                   "    send:\n"
                   "      - to: chat\n"
                   "        text: \"From {{payload.caller}}\"\n"
                   "      - arch\n");
    struct sb_event *ev = event_at(test_call, TEST_WED_NOON);

    (void)state;
    route_ok(cfg, ev, 1);
    expect_fields(0, "{\"text\":\"From [payload.caller]\"}");
    if (strstr(test_route.deliveries[1].fields, "4155550123") != NULL) {
        fail_msg("a redacted envelope shows the payload: %s",
                 test_route.deliveries[1].fields);
    }
    if (test_route.claim_count != 1 ||
        strcmp(test_route.claims[0].key, "+14155550123") != 0) {
        fail_msg("expected the throttle key to be the real value even in a "
                 "dry run");
    }
    sb_route_cleanup(&test_route);
    sb_event_free(ev);
    sb_config_free(cfg);
}

/* ---- throttling ---------------------------------------------------------- */

static const char test_throttled[] =
    "  - name: urgent\n"
    "    match: { payload.is_urgent: true }\n"
    "    throttle: { key: \"{{payload.caller}}\", per: 10m }\n"
    "    send: [chat]\n"
    "  - name: archive\n"
    "    send: [arch]\n";

/* Routes a call from `caller` at `ms`; returns how many deliveries. */
static size_t route_caller(const struct sb_config *cfg, const char *caller,
                           int64_t ms)
{
    char json[256];

    snprintf(json, sizeof(json),
             "{\"event_type\":\"call\",\"payload\":{\"is_urgent\":true,"
             "\"caller\":\"%s\"}}",
             caller);
    route_json(cfg, json, ms);
    return test_route.count;
}

static void expect_throttle(const char *what, int held)
{
    const char *want = held ? "archive>arch" : "urgent>chat,archive>arch";

    expect_routed(what, want);
    if (test_route.throttled != (size_t)held ||
        test_trace.rules[0].throttled != held) {
        fail_msg("%s: expected throttled %d, the route says %zu and the "
                 "trace %d",
                 what, held, test_route.throttled,
                 test_trace.rules[0].throttled);
    }
    if (!test_trace.rules[0].matched) {
        fail_msg("%s: a throttled rule still matched", what);
    }
}

static void test_rules_throttle_window(void **state)
{
    struct sb_config *cfg = load_rules(test_throttled);
    int64_t t0 = TEST_WED_NOON;

    (void)state;
    route_caller(cfg, "+1555", t0);
    expect_throttle("the first match", 0);
    route_caller(cfg, "+1555", t0 + 1);
    expect_throttle("1 ms later", 1);
    route_caller(cfg, "+1555", t0 + 10 * TEST_MINUTE_MS - 1);
    expect_throttle("just inside the window", 1);
    route_caller(cfg, "+1555", t0 + 10 * TEST_MINUTE_MS);
    expect_throttle("when the window has passed", 0);
    route_caller(cfg, "+1555", t0 + 15 * TEST_MINUTE_MS);
    expect_throttle("within the new window", 1);
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);
}

static void test_rules_throttle_keys_independent(void **state)
{
    struct sb_config *cfg = load_rules(test_throttled);
    int64_t t0 = TEST_WED_NOON;

    (void)state;
    route_caller(cfg, "+1555", t0);
    expect_throttle("the first caller", 0);
    route_caller(cfg, "+1666", t0 + 1);
    expect_throttle("a second caller", 0);
    route_caller(cfg, "+1555", t0 + 2);
    expect_throttle("the first caller again", 1);
    route_caller(cfg, "", t0 + 3);
    expect_throttle("an empty key", 0);
    route_caller(cfg, "", t0 + 4);
    expect_throttle("the empty key again", 1);
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);
}

static void test_rules_throttle_release(void **state)
{
    struct sb_config *cfg = load_rules(test_throttled);
    int64_t t0 = TEST_WED_NOON;

    (void)state;
    route_caller(cfg, "+1555", t0);
    expect_throttle("the first match", 0);
    expect_count("claims of the first match", test_route.claim_count, 1);
    sb_rules_release(cfg->rules, &test_route);
    route_caller(cfg, "+1555", t0 + 1);
    expect_throttle("after the first claim was given back", 0);

    /* A claim on a key whose window had passed gives back that state. */
    route_caller(cfg, "+1555", t0 + 20 * TEST_MINUTE_MS);
    expect_throttle("a new window", 0);
    sb_rules_release(cfg->rules, &test_route);
    route_caller(cfg, "+1555", t0 + 20 * TEST_MINUTE_MS + 1);
    expect_throttle("after the second claim was given back", 0);
    route_caller(cfg, "+1555", t0 + 21 * TEST_MINUTE_MS);
    expect_throttle("a kept claim", 1);
    expect_count("claims of a throttled match", test_route.claim_count, 0);
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);
}

/*
 * A full key table lets events through rather than lose them, and keys
 * whose window has passed make room again.
 */
static void test_rules_throttle_table_full(void **state)
{
    struct sb_config *cfg = load_rules(test_throttled);
    int64_t t0 = TEST_WED_NOON;
    char key[32];
    int i;

    (void)state;
    for (i = 0; i < SB_RULES_THROTTLE_KEYS; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        if (route_caller(cfg, key, t0) != 2) {
            fail_msg("key %s, the first time: expected it to send", key);
        }
    }
    route_caller(cfg, "k0", t0 + 1);
    expect_throttle("a remembered key in a full table", 1);
    route_caller(cfg, "extra", t0 + 2);
    expect_throttle("a new key in a full table", 0);
    route_caller(cfg, "extra", t0 + 3);
    expect_throttle("the same new key, still no room", 0);
    route_caller(cfg, "extra", t0 + 10 * TEST_MINUTE_MS);
    expect_throttle("a new key once the old ones expired", 0);
    route_caller(cfg, "extra", t0 + 10 * TEST_MINUTE_MS + 1);
    expect_throttle("that key, remembered now", 1);
    route_caller(cfg, "k1", t0 + 10 * TEST_MINUTE_MS + 2);
    expect_throttle("an expired key", 0);
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);
}

/* More deliveries than SB_RULES_MAX_SENDS: none at all, claims given back. */
static void test_rules_too_many_deliveries(void **state)
{
    char rules[2048];
    size_t len;
    struct sb_config *cfg;
    struct sb_event *ev;
    int i;

    (void)state;
    len = (size_t)snprintf(rules, sizeof(rules),
                           "  - name: urgent\n"
                           "    throttle: { key: k, per: 10m }\n"
                           "    send: [chat");
    for (i = 1; i < SB_RULES_MAX_SENDS / 2 + 1; i++) {
        len += (size_t)snprintf(rules + len, sizeof(rules) - len, ", arch");
    }
    len += (size_t)snprintf(rules + len, sizeof(rules) - len,
                            "]\n  - name: many\n"
                            "    match: { payload.many: true }\n"
                            "    send: [desk");
    for (i = 1; i < SB_RULES_MAX_SENDS / 2; i++) {
        len += (size_t)snprintf(rules + len, sizeof(rules) - len, ", arch");
    }
    snprintf(rules + len, sizeof(rules) - len, "]\n");
    cfg = load_rules(rules);

    /* 65 deliveries for one event: routing has room for every entry. */
    ev = event_at("{\"event_type\":\"c\",\"payload\":{\"many\":true}}",
                  TEST_WED_NOON);
    sb_route_cleanup(&test_route);
    if (sb_rules_route(cfg->rules, ev, 0, &test_route, NULL) != SB_OK ||
        test_route.count != SB_RULES_MAX_SENDS + 1 ||
        test_route.claim_count != 1) {
        fail_msg("expected %d deliveries and 1 claim, got %zu and %zu",
                 SB_RULES_MAX_SENDS + 1, test_route.count,
                 test_route.claim_count);
    }
    sb_route_cleanup(&test_route);
    sb_event_free(ev);
    sb_config_free(cfg);
}

/* ---- the trace ---------------------------------------------------------- */

/* Routes test_call through one rule matching `match`; returns its why. */
static const char *trace_why(const char *match, int want_matched)
{
    static char why[256];
    struct sb_config *cfg;
    char rules[512];

    snprintf(rules, sizeof(rules),
             "  - name: probe\n    match: %s\n    send: [arch]\n", match);
    cfg = load_rules(rules);
    route_json(cfg, test_call, TEST_WED_NOON);
    if (test_trace.rules[0].matched != want_matched) {
        fail_msg("match %s: expected matched=%d", match, want_matched);
    }
    snprintf(why, sizeof(why), "%s", test_trace.rules[0].why);
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);
    return why;
}

static void test_rules_trace_why(void **state)
{
    const char *why;

    (void)state;
    why = trace_why("{ payload.caller: \"+1999\" }", 0);
    if (strstr(why, "payload.caller") == NULL ||
        strstr(why, "a string of 12 bytes") == NULL ||
        strstr(why, "4155550123") != NULL) {
        fail_msg("expected the path and the value's size, never its text; "
                 "got \"%s\"",
                 why);
    }
    why = trace_why("{ payload.missing: { gt: 1 } }", 0);
    if (strstr(why, "absent") == NULL) {
        fail_msg("expected an absent field to be named so, got \"%s\"", why);
    }
    why = trace_why("{ any: [ { payload.duration: 1 },"
                    " { payload.is_urgent: true } ] }",
                    1);
    if (why[0] != '\0') {
        fail_msg("a matched rule has no reason to fail, got \"%s\"", why);
    }
    why = trace_why("{ any: [ { payload.duration: 1 },"
                    " { payload.is_urgent: true } ], payload.temp: 0 }",
                    0);
    if (strstr(why, "payload.temp") == NULL) {
        fail_msg("expected the condition that failed (payload.temp), got "
                 "\"%s\"",
                 why);
    }
    why = trace_why("{ not: { payload.is_urgent: true } }", 0);
    if (strstr(why, "not:") == NULL) {
        fail_msg("expected the not to be the reason, got \"%s\"", why);
    }
}

/* ---- include ------------------------------------------------------------ */

static void test_rules_include_sorted(void **state)
{
    char dir[64];
    char path[128];
    char config[sizeof(test_head) + 256];
    static const char *const files[][2] = {
        {"30-last.yaml", "- name: last\n  send: [arch]\n"},
        {"10-first.yaml", "- name: first\n  send: [chat]\n"},
        {"20-middle.yaml", "- send: [desk]\n- name: middle\n  send: [pager]\n"},
        {"15-notes.txt", "not: [rules\n"},
    };
    static const char *const want[] = {"before", "first", "rule-3",
                                       "middle", "last",  "after"};
    struct sb_config *cfg;
    size_t i;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sb-rules-inc-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/rules", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    for (i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/rules/%s", dir, files[i][0]);
        write_file(path, files[i][1]);
    }
    snprintf(config, sizeof(config),
             "%s  - name: before\n    send: [arch]\n"
             "  - include: rules/*.yaml\n"
             "  - name: after\n",
             test_head);
    snprintf(path, sizeof(path), "%s/switchboard.yaml", dir);
    write_file(path, config);

    cfg = load_path(path);
    expect_count("rules, included ones too", sb_rules_count(cfg->rules), 6);
    for (i = 0; i < 6; i++) {
        if (strcmp(sb_rules_name(cfg->rules, i), want[i]) != 0) {
            fail_msg("rule #%zu: expected %s, got %s", i, want[i],
                     sb_rules_name(cfg->rules, i));
        }
    }
    route_json(cfg, test_call, TEST_WED_NOON);
    expect_routed("included rules in file order",
                  "before>arch,first>chat,rule-3>desk,middle>pager,last>arch");
    sb_route_cleanup(&test_route);
    sb_config_free(cfg);

    unlink(path);
    for (i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/rules/%s", dir, files[i][0]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/rules", dir);
    rmdir(path);
    rmdir(dir);
}

static void test_rules_include_errors_name_their_file(void **state)
{
    char dir[64];
    char path[128];
    char rules[128];
    char config[sizeof(test_head) + 256];
    struct sb_config *cfg = NULL;
    const struct sb_error *err;
    enum sb_status rc;

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sb-rules-inc-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(rules, sizeof(rules), "%s/bad.yaml", dir);
    write_file(rules, "- name: ok\n  send: [arch]\n"
                      "- name: bad\n  match: { a: { greater: 1 } }\n");
    snprintf(config, sizeof(config), "%s  - include: \"*.yaml\"\n", test_head);
    snprintf(path, sizeof(path), "%s/main.yml", dir);
    write_file(path, config);

    rc = sb_config_load(path, &cfg, &test_errs);
    unlink(path);
    unlink(rules);
    rmdir(dir);
    if (rc != SB_ERR_INVALID || cfg != NULL || test_errs.count != 1) {
        fail_msg("expected one error from the included file, got rc %d and "
                 "%zu errors",
                 rc, test_errs.count);
    }
    err = &test_errs.items[0];
    if (strcmp(err->file, rules) != 0 || err->line != 4 || err->col != 17) {
        fail_msg("expected the error at %s:4:17, got %s:%u:%u", rules,
                 err->file, err->line, err->col);
    }
}

/* ---- check errors -------------------------------------------------------- */

/* Line and column (1-based) where `at` first appears in `rules`. */
static void position_of(const char *rules, const char *at, unsigned *line,
                        unsigned *col)
{
    const char *p = strstr(rules, at);
    const char *start = rules;
    const char *q;

    if (p == NULL) {
        fail_msg("test bug: \"%s\" is not in the rules", at);
    }
    *line = 1;
    for (q = test_head; *q != '\0'; q++) {
        *line += *q == '\n';
    }
    for (q = rules; q < p; q++) {
        if (*q == '\n') {
            (*line)++;
            start = q + 1;
        }
    }
    *col = (unsigned)(p - start) + 1;
}

/* Whether some recorded error sits at line:col and says `needle`. */
static int has_error(const char *path, unsigned line, unsigned col,
                     const char *needle)
{
    size_t i;

    for (i = 0; i < test_errs.count; i++) {
        const struct sb_error *e = &test_errs.items[i];

        if (e->line == line && e->col == col && strcmp(e->file, path) == 0 &&
            strstr(e->msg, needle) != NULL) {
            return 1;
        }
    }
    return 0;
}

static void dump_errors(char *buf, size_t cap)
{
    size_t len = 0;
    size_t i;

    buf[0] = '\0';
    for (i = 0; i < test_errs.count && len + 1 < cap; i++) {
        char one[1024];

        len += (size_t)snprintf(
            buf + len, cap - len, "\n  %s",
            sb_error_format(&test_errs.items[i], one, sizeof(one)));
    }
}

/*
 * Loads `rules` and expects exactly one error, at the first place `at`
 * appears, whose message contains `needle`.
 */
static void expect_rule_error(const char *rules, const char *at,
                              const char *needle)
{
    struct sb_config *cfg = NULL;
    char path[64];
    char all[4096];
    unsigned line;
    unsigned col;
    enum sb_status rc;

    position_of(rules, at, &line, &col);
    write_config(path, rules);
    rc = sb_config_load(path, &cfg, &test_errs);
    unlink(path);
    dump_errors(all, sizeof(all));
    if (rc != SB_ERR_INVALID || cfg != NULL) {
        sb_config_free(cfg);
        fail_msg("expected the rules to be refused at %u:%u (%s):\n%s", line,
                 col, needle, rules);
    }
    if (sb_errors_total(&test_errs) != 1 ||
        !has_error(path, line, col, needle)) {
        fail_msg("expected one error at %u:%u containing \"%s\", got:%s", line,
                 col, needle, all);
    }
}

static void test_rules_error_unknown_operator(void **state)
{
    (void)state;
    expect_rule_error("  - name: a\n"
                      "    match: { payload.duration: { greater: 1 } }\n"
                      "    send: [arch]\n",
                      "greater",
                      "unknown key \"greater\" in a condition; expected one "
                      "of eq, ne, in, not_in, gt, gte, lt, lte, regex, glob, "
                      "contains, starts_with, ends_with, exists");
    expect_rule_error("  - name: a\n"
                      "    match:\n"
                      "      payload.duration:\n"
                      "        gt: 1\n"
                      "        equals: 2\n",
                      "equals", "unknown key \"equals\" in a condition");
}

static void test_rules_error_unknown_rule_key(void **state)
{
    (void)state;
    expect_rule_error("  - name: a\n"
                      "    matches: { event_type: x }\n"
                      "    send: [arch]\n",
                      "matches",
                      "unknown key \"matches\" in a rule; expected one of "
                      "name, match, stop, throttle, send");
    expect_rule_error("  - name: a\n"
                      "    send: [arch]\n"
                      "    stop: yes\n",
                      "yes", "stop: expected true or false");
    expect_rule_error("  - name: a\n"
                      "    send: [arch]\n"
                      "    name: b\n",
                      "name: b", "duplicate key \"name\"");
    expect_rule_error("  - name: a\n"
                      "    throttle: { key: x, every: 10m }\n"
                      "    send: [arch]\n",
                      "every", "unknown key \"every\" in throttle");
    expect_rule_error("  - name: a\n"
                      "    throttle: { key: x, per: 10 }\n",
                      "10 }", "per: ");
    expect_rule_error("  - name: a\n"
                      "    throttle: { key: x, per: 0s }\n",
                      "0s", "per: expected a duration above zero");
}

static void test_rules_error_bad_regex(void **state)
{
    (void)state;
    expect_rule_error("  - name: a\n"
                      "    match: { payload.caller: { regex: \"a(\" } }\n",
                      "\"a(\"", "regex: ");
    expect_rule_error("  - name: a\n"
                      "    send:\n"
                      "      - to: arch\n"
                      "        when: { event_type: { regex: \"[z-a]\" } }\n",
                      "\"[z-a]\"", "regex: ");
}

static void test_rules_error_bad_template(void **state)
{
    (void)state;
    expect_rule_error("  - name: a\n"
                      "    send:\n"
                      "      - to: chat\n"
                      "        text: \"{{#payload.x}} open\"\n",
                      "\"{{#", "text: template line 1 column");
    expect_rule_error("  - name: a\n"
                      "    throttle: { key: \"{{payload.x\", per: 1m }\n"
                      "    send: [chat]\n",
                      "\"{{payload.x\"", "throttle.key: template line 1");
    expect_rule_error("  - name: a\n"
                      "    send:\n"
                      "      - to: chat\n"
                      "        body: \"x\"\n",
                      "body",
                      "unknown key \"body\" for output \"chat\"; expected to, "
                      "when, text");
    expect_rule_error("  - name: a\n"
                      "    send:\n"
                      "      - to: chat\n"
                      "        text: first\n"
                      "        text: second\n",
                      "text: second", "duplicate key \"text\"");
    expect_rule_error("  - name: a\n"
                      "    send:\n"
                      "      - to: chat\n"
                      "        when: { payload.x: 1 }\n"
                      "        to: desk\n",
                      "to: desk", "duplicate key \"to\"");
}

static void test_rules_error_undefined_names(void **state)
{
    (void)state;
    expect_rule_error("  - name: a\n"
                      "    send: [arch, nowhere]\n",
                      "nowhere",
                      "undefined output \"nowhere\"; define it under outputs:");
    expect_rule_error("  - name: a\n"
                      "    send:\n"
                      "      - to: elsewhere\n"
                      "        text: hi\n",
                      "elsewhere", "undefined output \"elsewhere\"");
    expect_rule_error("  - name: a\n"
                      "    match: { within: night }\n",
                      "night", "undefined schedule \"night\"; see schedules:");
    expect_rule_error("  - name: a\n"
                      "    send:\n"
                      "      - to: pager\n"
                      "        when: { outside: weekends }\n",
                      "weekends", "undefined schedule \"weekends\"");
}

static void test_rules_error_duplicate_name(void **state)
{
    static const char rules[] = "  - name: twice\n"
                                "    send: [arch]\n"
                                "  - send: [chat]\n"
                                "    name: twice\n";
    char first[64];
    unsigned line;
    unsigned col;

    (void)state;
    expect_rule_error(rules, "send: [chat]", "duplicate rule name \"twice\"");
    position_of(rules, "name: twice", &line, &col);
    snprintf(first, sizeof(first), ":%u", line);
    if (strstr(test_errs.items[0].msg, "; the first is at /tmp/sb-rules-") ==
            NULL ||
        strstr(test_errs.items[0].msg, first) == NULL) {
        fail_msg("expected the message to point at the first rule (line %u), "
                 "got %s",
                 line, test_errs.items[0].msg);
    }
    expect_rule_error("  - send: [arch]\n"
                      "  - name: rule-1\n"
                      "    send: [chat]\n",
                      "name: rule-1", "duplicate rule name \"rule-1\"");
}

static void test_rules_error_wrong_value_type(void **state)
{
    static const struct {
        const char *match;
        const char *at;
        const char *needle;
    } cases[] = {
        {"{ payload.x: { in: 555 } }", "555", "in: expected a list of values"},
        {"{ payload.x: { not_in: abc } }", "abc",
         "not_in: expected a list of values"},
        {"{ payload.x: { regex: 556 } }", "556", "regex: expected a string"},
        {"{ payload.x: { glob: true } }", "true", "glob: expected a string"},
        {"{ payload.x: { contains: [a] } }", "[a]",
         "contains: expected a string"},
        {"{ payload.x: { starts_with: null } }", "null",
         "starts_with: expected a string"},
        {"{ payload.x: { gt: [1] } }", "[1]",
         "gt: expected a number or a string"},
        {"{ payload.x: { lte: false } }", "false",
         "lte: expected a number or a string"},
        {"{ payload.x: { exists: 1 } }", "1 }",
         "exists: expected true or false"},
        {"{ payload.x: { eq: { a: 1 } } }", "{ a: 1 }",
         "expected a value or a list, got a mapping"},
        {"{ payload.x: [1, [2]] }", "[2]", "expected a plain value"},
        {"{ any: { payload.x: 1 } }", "{ payload.x: 1 }",
         "expected a list of conditions, got a mapping"},
        {"{ not: [ { payload.x: 1 } ] }", "[ {",
         "expected a mapping of conditions, got a list"},
        {"{ payload.x: {} }", "{} }", "expected at least one operator"},
        {"{ \"payload..x\": 1 }", "\"payload..x\"", "bad field path"},
    };
    char rules[512];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(rules, sizeof(rules),
                 "  - name: a\n    match: %s\n    send: [arch]\n",
                 cases[i].match);
        expect_rule_error(rules, cases[i].at, cases[i].needle);
    }
}

static void test_rules_error_ambiguous_plain_value(void **state)
{
    static const char *const words[] = {"yes", "No", "True", "FALSE", "on",
                                        "Off", "y",  "~",    "Null"};
    char rules[256];
    char needle[64];
    char at[16];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        snprintf(rules, sizeof(rules),
                 "  - name: a\n    match: { payload.x: %s }\n", words[i]);
        snprintf(needle, sizeof(needle), "ambiguous value \"%s\"", words[i]);
        snprintf(at, sizeof(at), "%s }", words[i]);
        expect_rule_error(rules, at, needle);
    }
    expect_rule_error("  - name: a\n    match: { payload.x: { ne: True } }\n",
                      "True", "write true, false or null, or quote a string");
    expect_rule_error("  - name: a\n    match: { payload.x: [1, yes] }\n",
                      "yes", "ambiguous value \"yes\"");
}

static void test_rules_quoted_words_are_strings(void **state)
{
    static const struct match_case cases[] = {
        {"{ payload.answer: \"yes\" }", 1},
        {"{ payload.answer: 'yes' }", 1},
        {"{ payload.answer: { in: [\"no\", \"yes\"] } }", 1},
        {"{ payload.answer: true }", 0},
    };

    (void)state;
    EXPECT_MATCHES("{\"event_type\":\"q\",\"payload\":{\"answer\":\"yes\"}}",
                   cases);
}

static void test_rules_error_include_nested_too_deep(void **state)
{
    char dir[64];
    char path[128];
    char rules[128];
    char config[sizeof(test_head) + 256];
    struct sb_config *cfg = NULL;
    enum sb_status rc;
    char all[4096];

    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/sb-rules-inc-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(rules, sizeof(rules), "%s/self.yaml", dir);
    write_file(rules, "- include: self.yaml\n");
    snprintf(config, sizeof(config), "%s  - include: self.yaml\n", test_head);
    snprintf(path, sizeof(path), "%s/main.yml", dir);
    write_file(path, config);

    rc = sb_config_load(path, &cfg, &test_errs);
    unlink(path);
    unlink(rules);
    rmdir(dir);
    dump_errors(all, sizeof(all));
    if (rc != SB_ERR_INVALID || cfg != NULL ||
        sb_errors_total(&test_errs) != 1 ||
        strcmp(test_errs.items[0].file, rules) != 0 ||
        test_errs.items[0].line != 1 || test_errs.items[0].col != 12 ||
        strstr(test_errs.items[0].msg, "include: nested more than 8 deep") ==
            NULL) {
        fail_msg("expected one error at %s:1:12 on an include of itself, "
                 "got:%s",
                 rules, all);
    }
}

static void test_rules_error_include_matches_nothing(void **state)
{
    (void)state;
    expect_rule_error("  - name: a\n"
                      "    send: [arch]\n"
                      "  - include: /nonexistent-sb-dir/*.yaml\n",
                      "/nonexistent",
                      "include: no file matches \"/nonexistent-sb-dir/"
                      "*.yaml\"");
    expect_rule_error("  - include: /nonexistent-sb-dir/*.yaml\n"
                      "    name: x\n",
                      "include:", "include: stands alone in its entry");
}

static void test_rules_error_all_reported(void **state)
{
    static const char rules[] =
        "  - name: one\n"
        "    match: { payload.x: { greater: 1 } }\n"
        "    send: [nowhere]\n"
        "  - name: two\n"
        "    match: { payload.y: { regex: \"(\" }, payload.z: yes }\n"
        "    send: [arch]\n"
        "  - name: one\n"
        "    send:\n"
        "      - to: chat\n"
        "        text: \"{{^x}}\"\n"
        "    throttle: { key: a }\n";
    static const struct {
        const char *at;
        const char *needle;
    } want[] = {
        {"greater", "unknown key \"greater\""},
        {"nowhere", "undefined output \"nowhere\""},
        {"\"(\"", "regex: "},
        {"yes", "ambiguous value \"yes\""},
        {"\"{{^x}}\"", "text: template line 1"},
        {"{ key: a }", "throttle: both key and per are required"},
    };
    struct sb_config *cfg = NULL;
    char path[64];
    char all[4096];
    enum sb_status rc;
    size_t i;

    (void)state;
    write_config(path, rules);
    rc = sb_config_load(path, &cfg, &test_errs);
    unlink(path);
    dump_errors(all, sizeof(all));
    if (rc != SB_ERR_INVALID || cfg != NULL ||
        sb_errors_total(&test_errs) < 6) {
        fail_msg("expected every mistake reported, got %zu:%s",
                 sb_errors_total(&test_errs), all);
    }
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        unsigned line;
        unsigned col;

        position_of(rules, want[i].at, &line, &col);
        if (!has_error(path, line, col, want[i].needle)) {
            fail_msg("expected an error at %u:%u containing \"%s\", got:%s",
                     line, col, want[i].needle, all);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_operators),
        cmocka_unit_test(test_rules_absent_fields),
        cmocka_unit_test(test_rules_type_strictness),
        cmocka_unit_test(test_rules_numeric_edges),
        cmocka_unit_test(test_rules_regex_anchoring),
        cmocka_unit_test(test_rules_contains_ascii),
        cmocka_unit_test(test_rules_contains_utf8),
        cmocka_unit_test(test_rules_array_index_paths),
        cmocka_unit_test(test_rules_combinators),
        cmocka_unit_test(test_rules_quoted_words_are_strings),
        cmocka_unit_test(test_rules_every_matching_rule_sends),
        cmocka_unit_test(test_rules_stop_ends_evaluation),
        cmocka_unit_test(test_rules_type_index_keeps_order_and_stop),
        cmocka_unit_test(test_rules_without_match_match_everything),
        cmocka_unit_test(test_rules_default_names),
        cmocka_unit_test(test_rules_send_when),
        cmocka_unit_test(test_rules_match_within_schedule),
        cmocka_unit_test(test_rules_schedule_in_config_timezone),
        cmocka_unit_test(test_rules_template_fields),
        cmocka_unit_test(test_rules_fields_escaped_per_output),
        cmocka_unit_test(test_rules_redact_renders_paths),
        cmocka_unit_test(test_rules_throttle_window),
        cmocka_unit_test(test_rules_throttle_keys_independent),
        cmocka_unit_test(test_rules_throttle_release),
        cmocka_unit_test(test_rules_throttle_table_full),
        cmocka_unit_test(test_rules_too_many_deliveries),
        cmocka_unit_test(test_rules_trace_why),
        cmocka_unit_test(test_rules_include_sorted),
        cmocka_unit_test(test_rules_include_errors_name_their_file),
        cmocka_unit_test(test_rules_error_unknown_operator),
        cmocka_unit_test(test_rules_error_unknown_rule_key),
        cmocka_unit_test(test_rules_error_bad_regex),
        cmocka_unit_test(test_rules_error_bad_template),
        cmocka_unit_test(test_rules_error_undefined_names),
        cmocka_unit_test(test_rules_error_duplicate_name),
        cmocka_unit_test(test_rules_error_wrong_value_type),
        cmocka_unit_test(test_rules_error_ambiguous_plain_value),
        cmocka_unit_test(test_rules_error_include_nested_too_deep),
        cmocka_unit_test(test_rules_error_include_matches_nothing),
        cmocka_unit_test(test_rules_error_all_reported),
    };

    fake_plugins_preload();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
