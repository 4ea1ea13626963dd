/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/template: every tag kind, sections and what counts
 * as falsy, each escaping mode (CR/LF injection into a header above
 * all), numbers as written, redaction, the output cap, and the line and
 * column of every kind of parse error.
 */
#include "build_config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "template.h"

#define TEST_EVENT_ID    "01HZX3K4M5N6P7Q8R9S0T1V2W3"
#define TEST_RECEIVED_AT "2024-05-01T12:00:00.123Z"
#define TEST_RULE        "urgent-calls"

/* An inbound_end_of_call as the sender posts it. */
static const char test_call[] =
    "{\"event_type\": \"inbound_end_of_call\", \"payload\": {"
    "\"caller_phone_number\": \"+14155550123\","
    "\"is_urgent\": true, \"is_spam\": false, \"is_empty\": false,"
    "\"duration_seconds\": 72,"
    "\"super_short_report\": \"Chest pain, asks for a callback\","
    "\"items\": [{\"sku\": \"A-1\"}, {\"sku\": \"B-2\"}]}}";

static struct sb_template_context test_context(const struct sb_json *event)
{
    struct sb_template_context ctx;

    memset(&ctx, 0, sizeof(ctx));
    ctx.event = event;
    ctx.event_id = TEST_EVENT_ID;
    ctx.received_at = TEST_RECEIVED_AT;
    ctx.rule = TEST_RULE;
    return ctx;
}

static struct sb_template *parse_ok(const char *text)
{
    struct sb_template *tpl = NULL;
    struct sb_error err;

    sb_error_clear(&err);
    if (sb_template_parse(text, &tpl, &err) != SB_OK) {
        fail_msg("template \"%s\" did not parse: %u:%u: %s", text, err.line,
                 err.col, err.msg);
    }
    assert_non_null(tpl);
    return tpl;
}

static struct sb_json_doc *json_ok(const char *json)
{
    struct sb_json_doc *doc = NULL;
    struct sb_error err;

    sb_error_clear(&err);
    if (sb_json_parse(json, strlen(json), &doc, &err) != SB_OK) {
        fail_msg("test event does not parse: %s: %s", json, err.msg);
    }
    return doc;
}

/* Renders `text` against `ctx` and expects exactly `want`. */
static void expect_render_ctx(const char *text,
                              const struct sb_template_context *ctx,
                              enum sb_escape escape, const char *want)
{
    struct sb_template *tpl = parse_ok(text);
    struct sb_buf out;
    enum sb_status rc;

    sb_buf_init(&out, SB_TEMPLATE_MAX_OUTPUT);
    rc = sb_template_render(tpl, ctx, escape, &out);
    if (rc != SB_OK) {
        fail_msg("rendering \"%s\" failed: %s", text, sb_status_name(rc));
    }
    if (strcmp(sb_buf_str(&out), want) != 0) {
        fail_msg("template \"%s\" (escape %d): expected \"%s\", got \"%s\"",
                 text, (int)escape, want, sb_buf_str(&out));
    }
    sb_buf_cleanup(&out);
    sb_template_free(tpl);
}

/* Renders `text` against the event `json` with the test built-ins. */
static void expect_render(const char *text, const char *json,
                          enum sb_escape escape, const char *want)
{
    struct sb_json_doc *doc = json_ok(json);
    struct sb_template_context ctx = test_context(sb_json_root(doc));

    expect_render_ctx(text, &ctx, escape, want);
    sb_json_doc_free(doc);
}

/*
 * Expects `text` to fail at line:col with `needle` in the message, and
 * the message not to quote the literal word SECRET from the template.
 */
static void expect_error(const char *text, unsigned line, unsigned col,
                         const char *needle)
{
    struct sb_template *tpl = NULL;
    struct sb_error err;
    enum sb_status rc;

    sb_error_clear(&err);
    rc = sb_template_parse(text, &tpl, &err);
    if (rc != SB_ERR_INVALID || err.line != line || err.col != col ||
        strstr(err.msg, needle) == NULL) {
        fail_msg("template \"%s\": expected an error at %u:%u containing "
                 "\"%s\", got rc=%d at %u:%u: %s",
                 text, line, col, needle, rc, err.line, err.col, err.msg);
    }
    assert_null(tpl);
    if (strstr(err.msg, "SECRET") != NULL) {
        fail_msg("error message quotes literal text: %s", err.msg);
    }
}

static void test_template_literal_text(void **state)
{
    struct sb_template *tpl;

    (void)state;
    expect_render("plain text, } and }} and { alone", test_call, SB_ESCAPE_NONE,
                  "plain text, } and }} and { alone");
    expect_render("", test_call, SB_ESCAPE_JSON, "");

    tpl = parse_ok("no tags at all");
    assert_true(sb_template_is_literal(tpl));
    sb_template_free(tpl);
    tpl = parse_ok("");
    assert_true(sb_template_is_literal(tpl));
    sb_template_free(tpl);
    tpl = parse_ok("a {{payload.x}}");
    assert_false(sb_template_is_literal(tpl));
    sb_template_free(tpl);
    tpl = parse_ok("{{#payload.x}}{{/payload.x}}");
    assert_false(sb_template_is_literal(tpl));
    sb_template_free(tpl);
}

static void test_template_value_tags(void **state)
{
    (void)state;
    expect_render(":rotating_light: Urgent call from "
                  "{{payload.caller_phone_number}}: "
                  "{{payload.super_short_report}}",
                  test_call, SB_ESCAPE_NONE,
                  ":rotating_light: Urgent call from +14155550123: "
                  "Chest pain, asks for a callback");
    expect_render("{{event_type}}", test_call, SB_ESCAPE_NONE,
                  "inbound_end_of_call");
    expect_render("{{payload.items[1].sku}}/{{payload.items[0].sku}}",
                  test_call, SB_ESCAPE_NONE, "B-2/A-1");
    expect_render("{{payload.x}}{{payload.x}}", "{\"payload\":{\"x\":\"ab\"}}",
                  SB_ESCAPE_NONE, "abab");
}

static void test_template_whitespace_in_tags(void **state)
{
    (void)state;
    expect_render("[{{ payload.caller_phone_number }}]", test_call,
                  SB_ESCAPE_NONE, "[+14155550123]");
    expect_render("[{{\tevent_type\t}}]", test_call, SB_ESCAPE_NONE,
                  "[inbound_end_of_call]");
    expect_render("{{# payload.is_urgent }}U{{/ payload.is_urgent }}"
                  "{{ ^payload.is_spam}}S{{ / payload.is_spam }}",
                  test_call, SB_ESCAPE_NONE, "US");
    /* The close tag matches the path, not the spelling around it. */
    expect_render("{{#payload.is_urgent}}U{{/  payload.is_urgent}}", test_call,
                  SB_ESCAPE_NONE, "U");
}

static void test_template_builtins(void **state)
{
    struct sb_json_doc *doc = json_ok(test_call);
    struct sb_template_context ctx = test_context(sb_json_root(doc));

    (void)state;
    expect_render_ctx("{{event_id}} {{received_at}} {{rule}} {{event_type}}",
                      &ctx, SB_ESCAPE_NONE,
                      TEST_EVENT_ID " " TEST_RECEIVED_AT " " TEST_RULE
                                    " inbound_end_of_call");
    expect_render_ctx("{{#rule}}by {{rule}}{{/rule}}", &ctx, SB_ESCAPE_NONE,
                      "by " TEST_RULE);

    /* A dry run outside any rule has no rule: empty, and falsy. */
    ctx.rule = NULL;
    expect_render_ctx("[{{rule}}]{{^rule}}no rule{{/rule}}", &ctx,
                      SB_ESCAPE_NONE, "[]no rule");
    ctx.event_id = "";
    expect_render_ctx("[{{event_id}}]{{#event_id}}id{{/event_id}}", &ctx,
                      SB_ESCAPE_NONE, "[]");

    /* Built-ins come from the context, not from the body. */
    sb_json_doc_free(doc);
    doc = json_ok("{\"rule\": \"from-body\", \"event_id\": \"forged\"}");
    ctx = test_context(sb_json_root(doc));
    expect_render_ctx("{{rule}} {{event_id}}", &ctx, SB_ESCAPE_NONE,
                      TEST_RULE " " TEST_EVENT_ID);
    sb_json_doc_free(doc);
}

static void test_template_sections(void **state)
{
    (void)state;
    expect_render("{{#payload.is_urgent}}URGENT {{/payload.is_urgent}}call",
                  test_call, SB_ESCAPE_NONE, "URGENT call");
    expect_render("{{#payload.is_spam}}spam {{/payload.is_spam}}call",
                  test_call, SB_ESCAPE_NONE, "call");
    /* Rendered once: a list is a condition here, not a loop. */
    expect_render("{{#payload.items}}has items{{/payload.items}}", test_call,
                  SB_ESCAPE_NONE, "has items");
}

static void test_template_nested_sections(void **state)
{
    static const char json[] =
        "{\"payload\": {\"a\": true, \"b\": 1, \"c\": 0, \"v\": \"x\"}}";

    (void)state;
    expect_render("{{#payload.a}}A{{#payload.b}}B{{v}}{{payload.v}}"
                  "{{/payload.b}}{{#payload.c}}C{{/payload.c}}a{{/payload.a}}.",
                  json, SB_ESCAPE_NONE, "ABxa.");
    /* A skipped outer section skips everything inside it. */
    expect_render("{{#payload.c}}{{#payload.a}}A{{payload.v}}{{/payload.a}}"
                  "{{^payload.c}}never{{/payload.c}}{{/payload.c}}end",
                  json, SB_ESCAPE_NONE, "end");
    /* The same path may be nested in itself. */
    expect_render("{{#payload.a}}1{{#payload.a}}2{{/payload.a}}3{{/payload.a}}",
                  json, SB_ESCAPE_NONE, "123");
}

static void test_template_inverted_sections(void **state)
{
    (void)state;
    expect_render("{{^payload.is_spam}}not spam{{/payload.is_spam}}", test_call,
                  SB_ESCAPE_NONE, "not spam");
    expect_render("{{^payload.is_urgent}}routine{{/payload.is_urgent}}.",
                  test_call, SB_ESCAPE_NONE, ".");
    expect_render("{{^payload.missing}}no {{payload.caller_phone_number}}"
                  "{{/payload.missing}}",
                  test_call, SB_ESCAPE_NONE, "no +14155550123");
    expect_render("{{#payload.is_urgent}}{{^payload.is_empty}}U+"
                  "{{/payload.is_empty}}{{/payload.is_urgent}}",
                  test_call, SB_ESCAPE_NONE, "U+");
}

static void test_template_falsy_values(void **state)
{
    static const char *falsy[] = {
        "{\"payload\": {}}",
        "{\"payload\": {\"v\": null}}",
        "{\"payload\": {\"v\": false}}",
        "{\"payload\": {\"v\": 0}}",
        "{\"payload\": {\"v\": 0.0}}",
        "{\"payload\": {\"v\": -0}}",
        "{\"payload\": {\"v\": 0e5}}",
        "{\"payload\": {\"v\": \"\"}}",
        "{\"payload\": {\"v\": []}}",
        "{\"payload\": {\"v\": {}}}",
        "{}",
    };
    static const char *truthy[] = {
        "{\"payload\": {\"v\": true}}",
        "{\"payload\": {\"v\": 1}}",
        "{\"payload\": {\"v\": -0.001}}",
        "{\"payload\": {\"v\": 1e-3}}",
        "{\"payload\": {\"v\": \"0\"}}",
        "{\"payload\": {\"v\": \"false\"}}",
        "{\"payload\": {\"v\": \" \"}}",
        "{\"payload\": {\"v\": [0]}}",
        "{\"payload\": {\"v\": {\"k\": null}}}",
    };
    static const char tpl[] = "{{#payload.v}}T{{/payload.v}}"
                              "{{^payload.v}}F{{/payload.v}}";
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(falsy) / sizeof(falsy[0]); i++) {
        expect_render(tpl, falsy[i], SB_ESCAPE_NONE, "F");
    }
    for (i = 0; i < sizeof(truthy) / sizeof(truthy[0]); i++) {
        expect_render(tpl, truthy[i], SB_ESCAPE_NONE, "T");
    }
}

static void test_template_header_stops_crlf_injection(void **state)
{
    static const char json[] =
        "{\"payload\": {\"s\": \"x\\r\\nBcc: evil@example.com\","
        " \"lf\": \"a\\nb\", \"cr\": \"a\\rb\"}}";
    static const char tpl_text[] = "Call {{payload.s}}";
    struct sb_json_doc *doc = json_ok(json);
    struct sb_template_context ctx = test_context(sb_json_root(doc));
    struct sb_template *tpl = parse_ok(tpl_text);
    struct sb_buf out;

    (void)state;
    sb_buf_init(&out, SB_TEMPLATE_MAX_OUTPUT);
    assert_int_equal(sb_template_render(tpl, &ctx, SB_ESCAPE_HEADER, &out),
                     SB_OK);
    if (strchr(sb_buf_str(&out), '\r') != NULL ||
        strchr(sb_buf_str(&out), '\n') != NULL) {
        fail_msg("a header carries CR or LF: \"%s\"", sb_buf_str(&out));
    }
    assert_string_equal(sb_buf_str(&out), "Call x  Bcc: evil@example.com");
    sb_buf_cleanup(&out);
    sb_template_free(tpl);
    sb_json_doc_free(doc);

    expect_render("{{payload.lf}}|{{payload.cr}}", json, SB_ESCAPE_HEADER,
                  "a b|a b");
    /* Only HEADER mode touches CR/LF in values. */
    expect_render("{{payload.lf}}", json, SB_ESCAPE_NONE, "a\nb");
    expect_render("{{payload.lf}}", json, SB_ESCAPE_SLACK, "a\nb");
}

static void test_template_header_replaces_literal_crlf(void **state)
{
    (void)state;
    expect_render("Urgent\r\nBcc: x@example.com {{payload.is_urgent}}\n",
                  test_call, SB_ESCAPE_HEADER,
                  "Urgent  Bcc: x@example.com true ");
    expect_render("{{#payload.is_urgent}}\nline{{/payload.is_urgent}}\r",
                  test_call, SB_ESCAPE_HEADER, " line ");
    /* Every other mode leaves the template's own text alone. */
    expect_render("a\r\nb", test_call, SB_ESCAPE_NONE, "a\r\nb");
    expect_render("a\r\n\"b\"", test_call, SB_ESCAPE_JSON, "a\r\n\"b\"");
}

static void test_template_json_escapes(void **state)
{
    static const char json[] =
        "{\"payload\": {\"q\": \"say \\\"hi\\\" \\\\o/\","
        " \"c\": \"\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f\","
        " \"nul\": \"a\\u0000b\", \"slash\": \"a/b\"}}";

    (void)state;
    expect_render("{\"text\": \"{{payload.q}}\"}", json, SB_ESCAPE_JSON,
                  "{\"text\": \"say \\\"hi\\\" \\\\o/\"}");
    expect_render("{{payload.c}}", json, SB_ESCAPE_JSON,
                  "\\b\\f\\n\\r\\t\\u0001\\u001f\x7f");
    /* A NUL inside a string must not cut the value short. */
    expect_render("{{payload.nul}}", json, SB_ESCAPE_JSON, "a\\u0000b");
    expect_render("{{payload.slash}}", json, SB_ESCAPE_JSON, "a/b");
    /* A CR/LF injection cannot end the JSON string either. */
    expect_render("{{payload.s}}",
                  "{\"payload\": {\"s\": \"x\\\",\\\"admin\\\":true\"}}",
                  SB_ESCAPE_JSON, "x\\\",\\\"admin\\\":true");
}

static void test_template_json_replaces_invalid_utf8(void **state)
{
    struct sb_template_context ctx = test_context(NULL);

    (void)state;
    /* Only the context can carry bytes a JSON parser would refuse. */
    ctx.rule = "a\xff"
               "b\xc3"
               "\xe2\x82"
               "c\xed\xa0\x80";
    expect_render_ctx("{{rule}}", &ctx, SB_ESCAPE_JSON,
                      "a\\ufffdb\\ufffd\\ufffd\\ufffdc\\ufffd\\ufffd\\ufffd");
    ctx.rule = "\xc3\xa9\xf0\x9f\x9a\x91";
    expect_render_ctx("{{rule}}", &ctx, SB_ESCAPE_JSON,
                      "\xc3\xa9\xf0\x9f\x9a\x91");
}

static void test_template_slack_escapes(void **state)
{
    static const char json[] =
        "{\"payload\": {\"r\": \"<!channel> Tom & Jerry > cats <@U1>\"}}";

    (void)state;
    expect_render("*Report:* <{{payload.r}}>", json, SB_ESCAPE_SLACK,
                  "*Report:* <&lt;!channel&gt; Tom &amp; Jerry &gt; cats "
                  "&lt;@U1&gt;>");
    expect_render("{{payload.r}}", json, SB_ESCAPE_NONE,
                  "<!channel> Tom & Jerry > cats <@U1>");
    expect_render("\"{{payload.r}}\"", json, SB_ESCAPE_SLACK,
                  "\"&lt;!channel&gt; Tom &amp; Jerry &gt; cats &lt;@U1&gt;\"");
}

static void test_template_utf8_unchanged(void **state)
{
    static const char json[] =
        "{\"payload\": {\"n\": \"Zo\xc3\xab \xe6\x97\xa5\xe6\x9c\xac "
        "\xf0\x9f\x9a\x91\", \"e\": \"caf\\u00e9 \\ud83d\\ude91\"}}";
    static const enum sb_escape modes[] = {SB_ESCAPE_NONE, SB_ESCAPE_JSON,
                                           SB_ESCAPE_SLACK, SB_ESCAPE_HEADER};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        expect_render("\xc2\xbb{{payload.n}}", json, modes[i],
                      "\xc2\xbbZo\xc3\xab \xe6\x97\xa5\xe6\x9c\xac "
                      "\xf0\x9f\x9a\x91");
        expect_render("{{payload.e}}", json, modes[i],
                      "caf\xc3\xa9 \xf0\x9f\x9a\x91");
    }
}

static void test_template_numbers_as_written(void **state)
{
    static const char json[] =
        "{\"payload\": {\"i\": 72, \"f\": 0.5, \"e\": 1e3, \"neg\": -12,"
        " \"big\": 9007199254740993, \"cents\": 7.50, \"E\": 2.5E-3}}";

    (void)state;
    expect_render("{{payload.i}} {{payload.f}} {{payload.e}} {{payload.neg}}",
                  json, SB_ESCAPE_JSON, "72 0.5 1e3 -12");
    expect_render("{{payload.big}} {{payload.cents}} {{payload.E}}", json,
                  SB_ESCAPE_NONE, "9007199254740993 7.50 2.5E-3");
    expect_render("{{payload.is_urgent}} {{payload.is_spam}}", test_call,
                  SB_ESCAPE_JSON, "true false");
}

static void test_template_objects_and_arrays_compact(void **state)
{
    static const char json[] =
        "{\"payload\": {\"o\": { \"a\" : [ 1, 2.50, { \"b\" : null } ] ,"
        " \"c\" : \"d<e>\" }, \"l\": [ ], \"m\": { }, \"t\": [true, \"x\"]}}";

    (void)state;
    expect_render("{{payload.o}}", json, SB_ESCAPE_NONE,
                  "{\"a\":[1,2.50,{\"b\":null}],\"c\":\"d<e>\"}");
    expect_render("{{payload.l}}{{payload.m}}{{payload.t}}", json,
                  SB_ESCAPE_NONE, "[]{}[true,\"x\"]");
    /* Compact JSON is a value like any other: escaped for where it lands. */
    expect_render("\"{{payload.o}}\"", json, SB_ESCAPE_JSON,
                  "\"{\\\"a\\\":[1,2.50,{\\\"b\\\":null}],"
                  "\\\"c\\\":\\\"d<e>\\\"}\"");
    expect_render("{{payload.o}}", json, SB_ESCAPE_SLACK,
                  "{\"a\":[1,2.50,{\"b\":null}],\"c\":\"d&lt;e&gt;\"}");
    expect_render("{{payload.t}}", "{\"payload\": {\"t\": [\"a\\r\\nb\"]}}",
                  SB_ESCAPE_HEADER, "[\"a\\r\\nb\"]");
}

static void test_template_absent_values_are_empty(void **state)
{
    struct sb_template_context ctx = test_context(NULL);

    (void)state;
    expect_render("[{{payload.nope}}][{{payload.n}}][{{nope.deeper.x}}]"
                  "[{{payload.items[9].sku}}][{{payload.x.y}}]",
                  "{\"payload\": {\"n\": null, \"x\": \"str\"}}",
                  SB_ESCAPE_JSON, "[][][][][]");
    expect_render("[{{payload.items[0]}}]", test_call, SB_ESCAPE_NONE,
                  "[{\"sku\":\"A-1\"}]");
    /* No event at all: every path is absent, built-ins still render. */
    expect_render_ctx("[{{payload.x}}]{{^payload.x}}-{{/payload.x}}{{rule}}",
                      &ctx, SB_ESCAPE_NONE, "[]-" TEST_RULE);
}

static void test_template_redact(void **state)
{
    struct sb_json_doc *doc = json_ok(test_call);
    struct sb_template_context ctx = test_context(sb_json_root(doc));

    (void)state;
    ctx.redact = 1;
    expect_render_ctx(
        "From {{ payload.caller_phone_number }} ({{event_id}}, {{rule}}, "
        "{{received_at}}, {{event_type}}): {{payload.super_short_report}}"
        "{{#payload.is_urgent}} URGENT{{/payload.is_urgent}}"
        "{{#payload.is_spam}} SPAM{{/payload.is_spam}}"
        "{{^payload.is_empty}} {{payload.duration_seconds}}s"
        "{{/payload.is_empty}}",
        &ctx, SB_ESCAPE_NONE,
        "From [payload.caller_phone_number] ([event_id], [rule], "
        "[received_at], [event_type]): [payload.super_short_report]"
        " URGENT [payload.duration_seconds]s");
    /* What would insert nothing still inserts nothing. */
    expect_render_ctx("[{{payload.nope}}]", &ctx, SB_ESCAPE_NONE, "[]");
    expect_render_ctx("{{payload.items}}", &ctx, SB_ESCAPE_JSON,
                      "[payload.items]");
    sb_json_doc_free(doc);
}

/* Renders into a buffer capped at `cap` and expects `rc` and `want`. */
static void expect_capped(const char *text, const char *json,
                          enum sb_escape escape, size_t cap,
                          enum sb_status want_rc, const char *want)
{
    struct sb_json_doc *doc = json_ok(json);
    struct sb_template_context ctx = test_context(sb_json_root(doc));
    struct sb_template *tpl = parse_ok(text);
    struct sb_buf out;
    enum sb_status rc;

    sb_buf_init(&out, cap);
    rc = sb_template_render(tpl, &ctx, escape, &out);
    if (rc != want_rc || strcmp(sb_buf_str(&out), want) != 0) {
        fail_msg("\"%s\" capped at %zu: expected %s \"%s\", got %s \"%s\"",
                 text, cap, sb_status_name(want_rc), want, sb_status_name(rc),
                 sb_buf_str(&out));
    }
    assert_true(out.len <= cap);
    sb_buf_cleanup(&out);
    sb_template_free(tpl);
    sb_json_doc_free(doc);
}

static void test_template_output_cap(void **state)
{
    static const char json[] =
        "{\"payload\": {\"x\": \"cde\", \"q\": \"\\\"\\\"\\\"\\\"\","
        " \"o\": {\"k\": \"vvvvvvvvvv\"}, \"nl\": \"a\\nb\"}}";

    (void)state;
    expect_capped("0123456789abc", json, SB_ESCAPE_NONE, 10, SB_ERR_FULL, "");
    expect_capped("ab{{payload.x}}", json, SB_ESCAPE_NONE, 5, SB_OK, "abcde");
    /* A value that does not fit is left out whole, not cut. */
    expect_capped("ab{{payload.x}}", json, SB_ESCAPE_NONE, 4, SB_ERR_FULL,
                  "ab");
    /* Fits raw, not escaped: no unescaped quote may stay behind. */
    expect_capped("{{payload.q}}", json, SB_ESCAPE_JSON, 6, SB_ERR_FULL, "");
    expect_capped("{{payload.q}}", json, SB_ESCAPE_JSON, 8, SB_OK,
                  "\\\"\\\"\\\"\\\"");
    expect_capped("-{{payload.o}}", json, SB_ESCAPE_NONE, 12, SB_ERR_FULL, "-");
    expect_capped("-{{payload.o}}", json, SB_ESCAPE_JSON, 22, SB_ERR_FULL, "-");
    expect_capped("-{{payload.o}}", json, SB_ESCAPE_JSON, 23, SB_OK,
                  "-{\\\"k\\\":\\\"vvvvvvvvvv\\\"}");
    expect_capped("{{payload.nl}}", json, SB_ESCAPE_JSON, 3, SB_ERR_FULL, "");
    /* Stops at the cap: nothing after the first failure is appended. */
    expect_capped("{{payload.x}}{{payload.o}}{{payload.x}}", json,
                  SB_ESCAPE_NONE, 10, SB_ERR_FULL, "cde");
    expect_capped("{{#payload.x}}0123456789{{/payload.x}}", json,
                  SB_ESCAPE_HEADER, 9, SB_ERR_FULL, "");
}

static void test_template_parse_errors(void **state)
{
    (void)state;
    expect_error("SECRET {{payload.x", 1, 8,
                 "unclosed \"{{\"; expected \"}}\"");
    expect_error("SECRET {{payload.x\n}}", 1, 8, "unclosed \"{{\"");
    expect_error("{{a {{b}} SECRET", 1, 1, "unclosed \"{{\"");
    expect_error("{{#payload.is_urgent}}SECRET", 1, 1,
                 "unclosed section \"payload.is_urgent\" opened here; "
                 "expected {{/payload.is_urgent}}");
    expect_error("{{#a}}{{^b}}SECRET{{/b}}", 1, 1,
                 "unclosed section \"a\" opened here; expected {{/a}}");
    expect_error("{{#a}}{{#b}}SECRET", 1, 7,
                 "unclosed section \"b\" opened here; expected {{/b}}");
    expect_error("SECRET {{/payload.x}}", 1, 8,
                 "{{/payload.x}} closes no open section; expected "
                 "{{#payload.x}} or {{^payload.x}} first");
    expect_error("{{#a}}SECRET{{/b}}{{/a}}", 1, 13,
                 "{{/b}} does not match \"a\" opened at 1:1; expected {{/a}}");
    expect_error("{{#a}}{{#b}}{{/a}}{{/b}}", 1, 13, "expected {{/b}}");
    expect_error("SECRET {{}}", 1, 8, "tag has no path; expected a field");
    expect_error("{{  }}", 1, 1, "tag has no path");
    expect_error("{{#}}{{/}}", 1, 1, "tag has no path");
    expect_error("{{^ }}", 1, 1, "tag has no path");
    expect_error("x{{/\t}}", 1, 2, "tag has no path");
    expect_error("{{payload x}}", 1, 1, "bad path \"payload x\"; expected");
    /* The path compiler's own words come between; its column stays. */
    expect_error("{{payload..x}}", 1, 1, "bad path \"payload..x\": ");
    expect_error("{{payload..x}}", 1, 1, "at character 9; expected e.g. ");
    expect_error("{{payload.x[}}", 1, 1, "bad path");
    expect_error("{{{payload.x}}}", 1, 1, "unsupported tag \"{{{\"");
    expect_error("{{&payload.x}}", 1, 1, "unsupported tag \"{{&\"; expected");
    expect_error("{{! SECRET }}", 1, 1, "unsupported tag \"{{!\"");
    expect_error("{{> partial}}", 1, 1, "unsupported tag \"{{>\"");
}

static void test_template_parse_error_positions(void **state)
{
    (void)state;
    expect_error("Dear {{payload.name}},\nyour call SECRET:\n"
                 "  {{#payload.is_urgent}}urgent\nend",
                 3, 3,
                 "unclosed section \"payload.is_urgent\" opened here; "
                 "expected {{/payload.is_urgent}}");
    expect_error("a\nb SECRET\nxyz {{payload.x\n", 3, 5, "unclosed \"{{\"");
    expect_error("a\r\nbc\r\n\t{{/x}}", 3, 2, "closes no open section");
    expect_error("{{#a}}\n{{#b}}\n{{/a}}", 3, 1,
                 "does not match \"b\" opened at 2:1; expected {{/b}}");
    /* Columns count characters, not bytes. */
    expect_error("Zo\xc3\xab \xf0\x9f\x9a\x91 {{", 1, 7, "unclosed \"{{\"");
}

static void test_template_long_paths_are_shortened_in_messages(void **state)
{
    char text[256];
    struct sb_template *tpl = NULL;
    struct sb_error err;

    (void)state;
    memset(text, 0, sizeof(text));
    memcpy(text, "{{#", 3);
    memset(text + 3, 'p', 150);
    memcpy(text + 153, "}}", 2);
    sb_error_clear(&err);
    assert_int_equal(sb_template_parse(text, &tpl, &err), SB_ERR_INVALID);
    assert_null(tpl);
    assert_int_equal(err.line, 1);
    assert_int_equal(err.col, 1);
    if (strstr(err.msg, "...\" opened here") == NULL || strlen(err.msg) > 250) {
        fail_msg("long path not shortened: %s", err.msg);
    }
}

static void test_template_nesting_limit(void **state)
{
    char text[1024];
    size_t len = 0;
    int i;

    (void)state;
    for (i = 0; i < SB_TEMPLATE_MAX_DEPTH; i++) {
        len += (size_t)snprintf(text + len, sizeof(text) - len, "{{#a}}");
    }
    for (i = 0; i < SB_TEMPLATE_MAX_DEPTH; i++) {
        len += (size_t)snprintf(text + len, sizeof(text) - len, "{{/a}}");
    }
    expect_render(text, "{\"a\": 1}", SB_ESCAPE_NONE, "");

    len = 0;
    for (i = 0; i <= SB_TEMPLATE_MAX_DEPTH; i++) {
        len += (size_t)snprintf(text + len, sizeof(text) - len, "{{#a}}");
    }
    expect_error(text, 1, SB_TEMPLATE_MAX_DEPTH * 6 + 1,
                 "sections nested more than 16 deep");

    /* Depth counts open sections, not sections in total. */
    len = 0;
    for (i = 0; i <= SB_TEMPLATE_MAX_DEPTH * 2; i++) {
        len += (size_t)snprintf(text + len, sizeof(text) - len, "{{#a}}{{/a}}");
    }
    expect_render(text, "{\"a\": 1}", SB_ESCAPE_NONE, "");
}

static void test_template_free_accepts_null(void **state)
{
    (void)state;
    sb_template_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_template_literal_text),
        cmocka_unit_test(test_template_value_tags),
        cmocka_unit_test(test_template_whitespace_in_tags),
        cmocka_unit_test(test_template_builtins),
        cmocka_unit_test(test_template_sections),
        cmocka_unit_test(test_template_nested_sections),
        cmocka_unit_test(test_template_inverted_sections),
        cmocka_unit_test(test_template_falsy_values),
        cmocka_unit_test(test_template_header_stops_crlf_injection),
        cmocka_unit_test(test_template_header_replaces_literal_crlf),
        cmocka_unit_test(test_template_json_escapes),
        cmocka_unit_test(test_template_json_replaces_invalid_utf8),
        cmocka_unit_test(test_template_slack_escapes),
        cmocka_unit_test(test_template_utf8_unchanged),
        cmocka_unit_test(test_template_numbers_as_written),
        cmocka_unit_test(test_template_objects_and_arrays_compact),
        cmocka_unit_test(test_template_absent_values_are_empty),
        cmocka_unit_test(test_template_redact),
        cmocka_unit_test(test_template_output_cap),
        cmocka_unit_test(test_template_parse_errors),
        cmocka_unit_test(test_template_parse_error_positions),
        cmocka_unit_test(test_template_long_paths_are_shortened_in_messages),
        cmocka_unit_test(test_template_nesting_limit),
        cmocka_unit_test(test_template_free_accepts_null),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
