/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/json: every value type, escapes and UTF-8, what the
 * parser refuses and where it says so, exact numbers, equality, compact
 * writing, and compiled field paths with their error columns.
 */
#include "build_config.h"

#include <locale.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Parses `len` bytes of `text` and fails the test if that does not work. */
static struct sb_json_doc *parse_n(const char *text, size_t len)
{
    struct sb_json_doc *doc = NULL;
    struct sb_error err;

    sb_error_clear(&err);
    if (sb_json_parse(text, len, &doc, &err) != SB_OK) {
        fail_msg("expected to parse, got: %s", err.msg);
    }
    assert_non_null(doc);
    return doc;
}

static struct sb_json_doc *parse(const char *text)
{
    return parse_n(text, strlen(text));
}

/* Expects `len` bytes of `text` to be refused with `needle` in the message. */
static void expect_invalid_n(const char *text, size_t len, const char *needle)
{
    struct sb_json_doc *doc = (struct sb_json_doc *)&doc;
    struct sb_error err;
    enum sb_status rc;

    sb_error_clear(&err);
    rc = sb_json_parse(text, len, &doc, &err);
    if (rc != SB_ERR_INVALID || strstr(err.msg, needle) == NULL) {
        fail_msg(
            "input of %zu bytes: expected an error with \"%s\", got rc=%d: "
            "%s",
            len, needle, rc, err.msg);
    }
    assert_null(doc);
}

static void expect_invalid(const char *text, const char *needle)
{
    expect_invalid_n(text, strlen(text), needle);
}

/* Parses `text` as the only value and returns its root; keeps the doc. */
static const struct sb_json *root_of(struct sb_json_doc **doc, const char *text)
{
    *doc = parse(text);
    return sb_json_root(*doc);
}

/* Whether two documents' roots are equal, by sb_json_equal. */
static int texts_equal(const char *a, const char *b)
{
    struct sb_json_doc *da = parse(a);
    struct sb_json_doc *db = parse(b);
    int eq = sb_json_equal(sb_json_root(da), sb_json_root(db));

    sb_json_doc_free(da);
    sb_json_doc_free(db);
    return eq;
}

/* sb_json_number_cmp of two number texts, normalised to -1, 0 or 1. */
static int number_cmp(const char *a, const char *b)
{
    struct sb_json_doc *da = parse(a);
    struct sb_json_doc *db = parse(b);
    int c = sb_json_number_cmp(sb_json_root(da), sb_json_root(db));

    sb_json_doc_free(da);
    sb_json_doc_free(db);
    return c < 0 ? -1 : c > 0;
}

static void expect_cmp(const char *a, const char *b, int want)
{
    int got = number_cmp(a, b);

    if (got != want) {
        fail_msg("cmp(%s, %s) = %d, expected %d", a, b, got, want);
    }
    got = number_cmp(b, a);
    if (got != -want) {
        fail_msg("cmp(%s, %s) = %d, expected %d", b, a, got, -want);
    }
}

/* Parses `text`, writes it compactly, and compares with `want`. */
static void expect_written(const char *text, const char *want)
{
    struct sb_json_doc *doc = parse(text);
    struct sb_buf out;

    sb_buf_init(&out, 4096);
    assert_int_equal(sb_json_write(sb_json_root(doc), &out), SB_OK);
    if (strcmp(sb_buf_str(&out), want) != 0) {
        fail_msg("wrote %s, expected %s", sb_buf_str(&out), want);
    }
    sb_buf_cleanup(&out);
    sb_json_doc_free(doc);
}

static void test_json_parses_every_type(void **state)
{
    struct sb_json_doc *doc;
    const struct sb_json *root;
    const struct sb_json *v;

    (void)state;
    root = root_of(&doc, " {\"n\": null, \"f\": false, \"t\": true, "
                         "\"num\": -12.5, \"s\": \"hi\", \"a\": [1, [], {}], "
                         "\"o\": {\"k\": \"v\"}} ");
    assert_int_equal(root->type, SB_JSON_OBJECT);
    assert_int_equal(root->u.object.count, 7);
    assert_string_equal(root->u.object.members[0].key, "n");
    assert_int_equal(sb_json_get(root, "n", 1)->type, SB_JSON_NULL);
    assert_int_equal(sb_json_get(root, "f", 1)->type, SB_JSON_FALSE);
    assert_int_equal(sb_json_get(root, "t", 1)->type, SB_JSON_TRUE);
    v = sb_json_get(root, "num", 3);
    assert_int_equal(v->type, SB_JSON_NUMBER);
    assert_true(v->u.number.value == -12.5);
    v = sb_json_get(root, "s", 1);
    assert_int_equal(v->type, SB_JSON_STRING);
    assert_string_equal(v->u.string.text, "hi");
    assert_int_equal(v->u.string.len, 2);
    v = sb_json_get(root, "a", 1);
    assert_int_equal(v->type, SB_JSON_ARRAY);
    assert_int_equal(v->u.array.count, 3);
    assert_int_equal(sb_json_at(v, 1)->type, SB_JSON_ARRAY);
    assert_int_equal(sb_json_at(v, 1)->u.array.count, 0);
    assert_int_equal(sb_json_at(v, 2)->type, SB_JSON_OBJECT);
    assert_int_equal(sb_json_at(v, 2)->u.object.count, 0);
    v = sb_json_get(root, "o", 1);
    assert_string_equal(sb_json_get(v, "k", 1)->u.string.text, "v");
    sb_json_doc_free(doc);

    /* Any value may stand alone, scalars included (RFC 8259 §2). */
    root = root_of(&doc, "\t\r\n 42 \n");
    assert_int_equal(root->type, SB_JSON_NUMBER);
    sb_json_doc_free(doc);
    root = root_of(&doc, "null");
    assert_int_equal(root->type, SB_JSON_NULL);
    sb_json_doc_free(doc);
}

static void test_json_string_escapes(void **state)
{
    struct sb_json_doc *doc;
    const struct sb_json *v;

    (void)state;
    v = root_of(&doc, "\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u0041\\u00e9"
                      "\\u20AC\"");
    assert_string_equal(v->u.string.text,
                        "q\" b\\ s/ \b\f\n\r\t A\xc3\xa9\xe2\x82\xac");
    sb_json_doc_free(doc);

    /* Raw UTF-8 passes through unchanged. */
    v = root_of(&doc, "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
    assert_string_equal(v->u.string.text, "caf\xc3\xa9 \xf0\x9f\x98\x80");
    sb_json_doc_free(doc);
}

static void test_json_surrogate_pairs(void **state)
{
    struct sb_json_doc *doc;
    const struct sb_json *v;

    (void)state;
    v = root_of(&doc, "\"\\ud83d\\ude00|\\uD800\\uDC00|\\uDBFF\\uDFFF\"");
    assert_string_equal(v->u.string.text, "\xf0\x9f\x98\x80|"
                                          "\xf0\x90\x80\x80|"
                                          "\xf4\x8f\xbf\xbf");
    sb_json_doc_free(doc);

    expect_invalid("\"\\ud83d\"", "unpaired surrogate");
    expect_invalid("\"\\ud83dx\"", "unpaired surrogate");
    expect_invalid("\"\\ud83d\\u0041\"", "unpaired surrogate");
    expect_invalid("\"\\ud83d\\ud83d\"", "unpaired surrogate");
    expect_invalid("\"\\ude00\"", "unpaired surrogate");
    expect_invalid("\"\\ude00\\ud83d\"", "unpaired surrogate");
}

static void test_json_nul_escape_keeps_length(void **state)
{
    struct sb_json_doc *doc;
    const struct sb_json *v;

    (void)state;
    v = root_of(&doc, "{\"a\\u0000b\": \"x\\u0000yz\"}");
    assert_int_equal(v->u.object.members[0].key_len, 3);
    assert_memory_equal(v->u.object.members[0].key, "a\0b", 4);
    assert_non_null(sb_json_get(v, "a\0b", 3));
    assert_null(sb_json_get(v, "a", 1));
    v = v->u.object.members[0].value;
    assert_int_equal(v->u.string.len, 4);
    assert_int_equal(strlen(v->u.string.text), 1);
    assert_memory_equal(v->u.string.text, "x\0yz", 5);
    sb_json_doc_free(doc);
}

static void test_json_rejects_invalid_inputs(void **state)
{
    static const struct {
        const char *text;
        const char *needle;
    } bad[] = {
        {"", "expected a value"},
        {"   ", "expected a value"},
        {"[1] x", "unexpected data after the value at byte 4"},
        {"{} {}", "unexpected data after the value"},
        {"01", "leading zero in a number at byte 0"},
        {"-01", "leading zero"},
        {"[00]", "leading zero"},
        {"1.", "expected a digit after the decimal point at byte 2"},
        {"1.e5", "expected a digit after the decimal point"},
        {".5", "expected a value at byte 0"},
        {"-", "expected a digit in a number at byte 1"},
        {"-x", "expected a digit in a number"},
        {"1e", "expected a digit in the exponent at byte 2"},
        {"1e+", "expected a digit in the exponent"},
        {"+1", "expected a value at byte 0"},
        {"0x10", "unexpected data after the value"},
        {"NaN", "expected a value"},
        {"Infinity", "expected a value"},
        {"-Infinity", "expected a digit"},
        {"tru", "expected a value"},
        {"nul", "expected a value"},
        {"True", "expected a value"},
        {"'a'", "expected a value"},
        {"\xef\xbb\xbf{}", "expected a value"},
        {"[1,]", "expected a value at byte 3"},
        {"[1 2]", "expected ',' or ']' at byte 3"},
        {"[1", "expected ',' or ']' at byte 2"},
        {"{\"a\":1,}", "expected a string key at byte 7"},
        {"{\"a\" 1}", "expected ':' after a key at byte 5"},
        {"{1:2}", "expected a string key"},
        {"{\"a\":1", "expected ',' or '}'"},
        {"\"abc", "unterminated string at byte 0"},
        {"\"abc\\\"", "unterminated string"},
        {"\"\\x\"", "invalid escape in a string at byte 1"},
        {"\"\\U0041\"", "invalid escape"},
        {"\"\\u12\"", "invalid \\u escape"},
        {"\"\\u12G4\"", "invalid \\u escape"},
        {"\"a\tb\"", "unescaped control character in a string at byte 2"},
        {"\"a\nb\"", "unescaped control character"},
        {"\"\x1f\"", "unescaped control character"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(bad); i++) {
        expect_invalid(bad[i].text, bad[i].needle);
    }
}

static void test_json_rejects_nul_bytes(void **state)
{
    (void)state;
    expect_invalid_n("\0", 1, "NUL byte where a value was expected at byte 0");
    expect_invalid_n("[1,\0]", 5, "NUL byte where a value was expected");
    expect_invalid_n("{} \0", 4, "NUL byte after the value at byte 3");
    expect_invalid_n("1\0", 2, "NUL byte after the value at byte 1");
    /* Inside a string a raw NUL is a control character like any other. */
    expect_invalid_n("\"a\0\"", 4, "unescaped control character");
    /* The length given is what counts, not the first NUL. */
    expect_invalid_n("[1]\0[2]", 7, "NUL byte after the value");
}

static void test_json_rejects_bad_utf8(void **state)
{
    static const char *bad[] = {
        "\"\x80\"",                   /* a continuation byte alone */
        "\"\xc3\"",                   /* cut short */
        "\"\xc3\x28\"",               /* second byte no continuation */
        "\"\xc0\xaf\"",               /* overlong '/' */
        "\"\xc1\xbf\"",               /* overlong */
        "\"\xe0\x80\xaf\"",           /* overlong, three bytes */
        "\"\xe2\x82\"",               /* three bytes cut short */
        "\"\xed\xa0\x80\"",           /* UTF-16 surrogate D800 */
        "\"\xed\xbf\xbf\"",           /* UTF-16 surrogate DFFF */
        "\"\xf0\x80\x80\xaf\"",       /* overlong, four bytes */
        "\"\xf4\x90\x80\x80\"",       /* past U+10FFFF */
        "\"\xf5\x80\x80\x80\"",       /* no such lead byte */
        "\"\xff\"",                   /* never valid */
        "\"\xf0\x9f\x98\"",           /* four bytes cut short */
        "{\"\xe9t\xe9\": 1}",         /* Latin-1 in a key */
        "\"ok\xf0\x9f\x98\x80\xfe\"", /* a valid sequence, then junk */
    };
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(bad); i++) {
        expect_invalid(bad[i], "invalid UTF-8 in a string");
    }
    expect_invalid("\"ab\xc3\x28\"", "invalid UTF-8 in a string at byte 3");
}

static void test_json_errors_never_quote_input(void **state)
{
    struct sb_json_doc *doc = NULL;
    struct sb_error err;

    (void)state;
    sb_error_clear(&err);
    assert_int_equal(
        sb_json_parse("{\"ssn\": \"078-05-1120\" hunter2}", 30, &doc, &err),
        SB_ERR_INVALID);
    assert_null(strstr(err.msg, "hunter2"));
    assert_null(strstr(err.msg, "078"));
    assert_non_null(strstr(err.msg, "at byte 22"));
}

/* `levels` nested arrays, then as many closing brackets. */
static char *nested(size_t levels, char open, char close)
{
    char *text = malloc(2 * levels + 1);
    size_t i;

    assert_non_null(text);
    for (i = 0; i < levels; i++) {
        text[i] = open;
        text[levels + i] = close;
    }
    text[2 * levels] = '\0';
    return text;
}

static void test_json_depth_limit(void **state)
{
    struct sb_json_doc *doc;
    char *text;
    char obj[8 * 66];
    size_t len = 0;
    size_t i;

    (void)state;
    text = nested(SB_JSON_MAX_DEPTH, '[', ']');
    doc = parse(text);
    sb_json_doc_free(doc);
    free(text);

    text = nested(SB_JSON_MAX_DEPTH + 1, '[', ']');
    expect_invalid(text, "nesting deeper than 64 levels at byte 64");
    free(text);

    /* Far too deep is refused at the limit, never recursed into. */
    text = nested(1000000, '[', ']');
    expect_invalid(text, "nesting deeper than 64 levels");
    free(text);

    /* Objects count too: 65 levels of {"a": ...}. */
    for (i = 0; i < SB_JSON_MAX_DEPTH + 1; i++) {
        memcpy(obj + len, "{\"a\":", 5);
        len += 5;
    }
    obj[len++] = '1';
    for (i = 0; i < SB_JSON_MAX_DEPTH + 1; i++) {
        obj[len++] = '}';
    }
    expect_invalid_n(obj, len, "nesting deeper than 64 levels at byte 320");
}

static void test_json_number_fields(void **state)
{
    static const struct {
        const char *text;
        int is_integer;
        int fits;
        int64_t value;
    } cases[] = {
        {"0", 1, 1, 0},
        {"-0", 1, 1, 0},
        {"72", 1, 1, 72},
        {"-72", 1, 1, -72},
        {"9223372036854775807", 1, 1, INT64_MAX},
        {"-9223372036854775808", 1, 1, INT64_MIN},
        {"9223372036854775808", 1, 0, 0},
        {"-9223372036854775809", 1, 0, 0},
        {"123456789012345678901234567890", 1, 0, 0},
        {"72.0", 0, 0, 0},
        {"1e3", 0, 0, 0},
        {"1E-3", 0, 0, 0},
        {"-0.5", 0, 0, 0},
        {"9007199254740993", 1, 1, 9007199254740993LL},
        {"-9007199254740992", 1, 1, -9007199254740992LL},
        {"1e400", 0, 0, 0},
    };
    struct sb_json_doc *doc;
    const struct sb_json *v;
    double want;
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(cases); i++) {
        v = root_of(&doc, cases[i].text);
        assert_int_equal(v->type, SB_JSON_NUMBER);
        assert_string_equal(v->u.number.text, cases[i].text);
        assert_int_equal(v->u.number.len, strlen(cases[i].text));
        if (v->u.number.is_integer != cases[i].is_integer ||
            v->u.number.fits_int64 != cases[i].fits ||
            (cases[i].fits && v->u.number.int_value != cases[i].value)) {
            fail_msg("%s: is_integer %d fits_int64 %d int_value %lld",
                     cases[i].text, v->u.number.is_integer,
                     v->u.number.fits_int64, (long long)v->u.number.int_value);
        }
        /* memcmp, so that -0 must keep its sign too. */
        want = strtod(cases[i].text, NULL);
        if (memcmp(&v->u.number.value, &want, sizeof(want)) != 0) {
            fail_msg("%s: double value %.17g", cases[i].text,
                     v->u.number.value);
        }
        sb_json_doc_free(doc);
    }

    /* The text is kept as written, trailing zeros and all. */
    v = root_of(&doc, "[7.50, 1e+3]");
    assert_string_equal(sb_json_at(v, 0)->u.number.text, "7.50");
    assert_true(sb_json_at(v, 0)->u.number.value == 7.5);
    assert_string_equal(sb_json_at(v, 1)->u.number.text, "1e+3");
    assert_true(sb_json_at(v, 1)->u.number.value == 1000.0);
    sb_json_doc_free(doc);
}

static void test_json_number_values_ignore_locale(void **state)
{
    static const char *commas[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8",
                                   "fr_FR.utf8", "ru_RU.UTF-8"};
    struct sb_json_doc *doc;
    const char *set = NULL;
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(commas) && set == NULL; i++) {
        set = setlocale(LC_NUMERIC, commas[i]);
    }
    if (set == NULL) {
        skip();
    }
    doc = parse("2.5");
    setlocale(LC_NUMERIC, "C");
    assert_true(sb_json_root(doc)->u.number.value == 2.5);
    sb_json_doc_free(doc);
}

static void test_json_number_cmp_integer_and_float(void **state)
{
    (void)state;
    expect_cmp("72", "72.0", 0);
    expect_cmp("72", "7.2e1", 0);
    expect_cmp("72", "72.5", -1);
    expect_cmp("100", "1e2", 0);
    expect_cmp("0.5", "0.25", 1);
    expect_cmp("1.5", "1.50", 0);
    assert_true(texts_equal("72", "72.0"));
    assert_false(texts_equal("72", "72.01"));
}

static void test_json_number_cmp_beyond_double(void **state)
{
    (void)state;
    /* 2^53 + 1 and 2^53 are one double, but two different ids. */
    expect_cmp("9007199254740993", "9007199254740992", 1);
    assert_false(texts_equal("9007199254740993", "9007199254740992"));
    assert_true(texts_equal("9007199254740993", "9007199254740993"));
    expect_cmp("-9007199254740993", "-9007199254740992", -1);
}

static void test_json_number_cmp_huge_integers(void **state)
{
    (void)state;
    expect_cmp("123456789012345678901234567890",
               "123456789012345678901234567890", 0);
    expect_cmp("123456789012345678901234567891",
               "123456789012345678901234567890", 1);
    expect_cmp("1000000000000000000000000000000",
               "999999999999999999999999999999", 1);
    expect_cmp("-1000000000000000000000000000000",
               "-999999999999999999999999999999", -1);
    expect_cmp("-123456789012345678901234567890",
               "123456789012345678901234567890", -1);
    expect_cmp("18446744073709551616", "18446744073709551615", 1);
    expect_cmp("9223372036854775808", "9223372036854775807", 1);
}

static void test_json_number_cmp_negatives_and_floats(void **state)
{
    (void)state;
    expect_cmp("-1", "1", -1);
    expect_cmp("-2", "-1", -1);
    expect_cmp("-10", "-9", -1);
    expect_cmp("-1.5", "-1.25", -1);
    expect_cmp("-1.5", "1", -1);
    expect_cmp("3.14159", "3.1416", -1);
    expect_cmp("1e-3", "0.001", 0);
    expect_cmp("1e300", "1e299", 1);
}

static void test_json_negative_zero_equals_zero(void **state)
{
    (void)state;
    expect_cmp("-0", "0", 0);
    expect_cmp("-0", "0.0", 0);
    expect_cmp("-0.0", "0", 0);
    expect_cmp("0e5", "-0", 0);
    assert_true(texts_equal("-0", "0"));
    expect_cmp("-0", "1", -1);
    expect_cmp("-0", "-1", 1);
}

static void test_json_equal_by_type(void **state)
{
    (void)state;
    assert_true(texts_equal("true", "true"));
    assert_true(texts_equal("false", "false"));
    assert_true(texts_equal("null", "null"));
    assert_false(texts_equal("true", "false"));
    assert_false(texts_equal("false", "null"));
    assert_false(texts_equal("0", "false"));
    assert_false(texts_equal("1", "\"1\""));
    assert_false(texts_equal("\"\"", "null"));
    assert_false(texts_equal("[]", "{}"));
    assert_true(texts_equal("\"a\\u0000b\"", "\"a\\u0000b\""));
    assert_false(texts_equal("\"a\\u0000b\"", "\"a\\u0000c\""));
    assert_false(texts_equal("\"a\"", "\"a\\u0000\""));
    assert_true(texts_equal("\"\\u00e9\"", "\"\xc3\xa9\""));
    assert_true(texts_equal("[1, [2, {\"a\": null}]]", "[1,[2,{\"a\":null}]]"));
    assert_false(texts_equal("[1, 2]", "[2, 1]"));
    assert_false(texts_equal("[1, 2]", "[1, 2, 3]"));
    assert_true(sb_json_equal(NULL, NULL));
}

static void test_json_equal_ignores_member_order(void **state)
{
    (void)state;
    assert_true(texts_equal("{\"a\": 1, \"b\": [true], \"c\": {\"x\": 1}}",
                            "{\"c\": {\"x\": 1.0}, \"a\": 1, \"b\": [true]}"));
    assert_false(texts_equal("{\"a\": 1, \"b\": 2}", "{\"b\": 2, \"a\": 3}"));
    assert_false(texts_equal("{\"a\": 1, \"b\": 2}", "{\"a\": 1}"));
    assert_false(texts_equal("{\"a\": 1}", "{\"b\": 1}"));
    assert_true(texts_equal("{}", "{}"));
    /* A repeated key is compared occurrence by occurrence. */
    assert_true(texts_equal("{\"k\": 1, \"j\": 0, \"k\": 2}",
                            "{\"j\": 0, \"k\": 1, \"k\": 2}"));
    assert_false(texts_equal("{\"k\": 1, \"j\": 0, \"k\": 2}",
                             "{\"j\": 0, \"k\": 2, \"k\": 1}"));
    assert_false(texts_equal("{\"k\": 1, \"k\": 1}", "{\"k\": 1, \"j\": 1}"));
}

static void test_json_get_and_at(void **state)
{
    struct sb_json_doc *doc;
    const struct sb_json *root;
    const struct sb_json *arr;

    (void)state;
    root = root_of(&doc, "{\"k\": 1, \"\": 2, \"k\": 3, \"arr\": [10, 20]}");
    assert_string_equal(sb_json_get(root, "k", 1)->u.number.text, "1");
    assert_string_equal(sb_json_get(root, "", 0)->u.number.text, "2");
    assert_non_null(sb_json_get(root, "kx", 1));
    assert_null(sb_json_get(root, "kx", 2));
    assert_null(sb_json_get(root, "K", 1));
    assert_null(sb_json_get(NULL, "k", 1));
    arr = sb_json_get(root, "arr", 3);
    assert_null(sb_json_get(arr, "k", 1));
    assert_string_equal(sb_json_at(arr, 1)->u.number.text, "20");
    assert_null(sb_json_at(arr, 2));
    assert_null(sb_json_at(arr, SIZE_MAX));
    assert_null(sb_json_at(root, 0));
    assert_null(sb_json_at(NULL, 0));
    sb_json_doc_free(doc);
    sb_json_doc_free(NULL);
}

static void test_json_large_document(void **state)
{
    size_t count = 100000;
    size_t cap = count * 16 + 16;
    char *text = malloc(cap);
    struct sb_json_doc *doc;
    const struct sb_json *root;
    size_t len = 0;
    size_t i;

    (void)state;
    assert_non_null(text);
    text[len++] = '[';
    for (i = 0; i < count; i++) {
        len += (size_t)snprintf(text + len, cap - len, "%s{\"i\":%zu}",
                                i ? "," : "", i);
    }
    text[len++] = ']';
    doc = parse_n(text, len);
    root = sb_json_root(doc);
    assert_int_equal(root->u.array.count, count);
    for (i = 0; i < count; i += 9999) {
        const struct sb_json *v = sb_json_get(sb_json_at(root, i), "i", 1);

        assert_int_equal(v->u.number.int_value, (int64_t)i);
    }
    sb_json_doc_free(doc);
    free(text);
}

static void test_json_write_round_trip(void **state)
{
    const char *text = " { \"a\" : [ 1 , 7.50 , -0 , 1E+3 , true , false , "
                       "null ] , \"s\" : \"x\\u00e9\\ud83d\\ude00\" , "
                       "\"o\" : { } , \"e\" : [ ] } ";
    struct sb_json_doc *doc = parse(text);
    struct sb_json_doc *again;
    struct sb_buf out;

    (void)state;
    sb_buf_init(&out, 4096);
    assert_int_equal(sb_json_write(sb_json_root(doc), &out), SB_OK);
    assert_string_equal(sb_buf_str(&out),
                        "{\"a\":[1,7.50,-0,1E+3,true,false,null],"
                        "\"s\":\"x\xc3\xa9\xf0\x9f\x98\x80\",\"o\":{},"
                        "\"e\":[]}");
    again = parse_n(out.data, out.len);
    assert_true(sb_json_equal(sb_json_root(doc), sb_json_root(again)));
    sb_json_doc_free(again);
    sb_json_doc_free(doc);
    sb_buf_cleanup(&out);
}

static void test_json_write_escapes_strings(void **state)
{
    (void)state;
    expect_written("\"q\\\" b\\\\ s\\/\"", "\"q\\\" b\\\\ s/\"");
    expect_written("\"\\b\\f\\n\\r\\t\"", "\"\\b\\f\\n\\r\\t\"");
    expect_written("\"\\u0000\\u0001\\u001f\\u001F\"",
                   "\"\\u0000\\u0001\\u001f\\u001f\"");
    expect_written("\"\\u007f \\u2028\"", "\"\x7f \xe2\x80\xa8\"");
    expect_written("{\"k\\n\\u0000\":\"v\"}", "{\"k\\n\\u0000\":\"v\"}");
}

static void test_json_write_string_literal(void **state)
{
    struct sb_buf out;

    (void)state;
    sb_buf_init(&out, 64);
    assert_int_equal(sb_json_write_string("a\"b\\c\0d\x01\n\xc3\xa9", 11, &out),
                     SB_OK);
    assert_string_equal(sb_buf_str(&out),
                        "\"a\\\"b\\\\c\\u0000d\\u0001\\n\xc3\xa9\"");
    sb_buf_reset(&out);
    assert_int_equal(sb_json_write_string("", 0, &out), SB_OK);
    assert_string_equal(sb_buf_str(&out), "\"\"");
    sb_buf_cleanup(&out);

    sb_buf_init(&out, 5);
    assert_int_equal(sb_json_write_string("abc", 3, &out), SB_OK);
    sb_buf_reset(&out);
    assert_int_equal(sb_json_write_string("abcd", 4, &out), SB_ERR_FULL);
    sb_buf_reset(&out);
    assert_int_equal(sb_json_write_string("\x01", 1, &out), SB_ERR_FULL);
    sb_buf_cleanup(&out);
}

static void test_json_write_stops_at_cap(void **state)
{
    struct sb_json_doc *doc = parse("{\"key\": \"a long enough value\"}");
    struct sb_buf out;
    size_t full = strlen("{\"key\":\"a long enough value\"}");

    (void)state;
    sb_buf_init(&out, full);
    assert_int_equal(sb_json_write(sb_json_root(doc), &out), SB_OK);
    assert_int_equal(out.len, full);
    sb_buf_cleanup(&out);

    sb_buf_init(&out, full - 1);
    assert_int_equal(sb_json_write(sb_json_root(doc), &out), SB_ERR_FULL);
    assert_true(out.len <= full - 1);
    sb_buf_cleanup(&out);

    sb_buf_init(&out, 10);
    assert_int_equal(sb_json_write(sb_json_root(doc), &out), SB_ERR_FULL);
    assert_true(out.len <= 10);
    /* What went out is a prefix of the full writing. */
    assert_memory_equal(out.data, "{\"key\":\"a long enough value\"}", out.len);
    sb_buf_cleanup(&out);
    sb_json_doc_free(doc);
}

static void test_json_path_compiles_steps(void **state)
{
    struct sb_json_path path;
    struct sb_error err;

    (void)state;
    assert_int_equal(sb_json_path_compile("payload.items[0].sku", &path, &err),
                     SB_OK);
    assert_string_equal(path.text, "payload.items[0].sku");
    assert_int_equal(path.count, 4);
    assert_int_equal(path.steps[0].key_len, 7);
    assert_memory_equal(path.steps[0].key, "payload", 7);
    assert_memory_equal(path.steps[1].key, "items", 5);
    assert_null(path.steps[2].key);
    assert_int_equal(path.steps[2].index, 0);
    assert_memory_equal(path.steps[3].key, "sku", 3);
    sb_json_path_cleanup(&path);

    assert_int_equal(sb_json_path_compile("m[12][3]", &path, &err), SB_OK);
    assert_int_equal(path.count, 3);
    assert_int_equal(path.steps[1].index, 12);
    assert_int_equal(path.steps[2].index, 3);
    sb_json_path_cleanup(&path);

    assert_int_equal(sb_json_path_compile("[2]", &path, &err), SB_OK);
    assert_int_equal(path.count, 1);
    sb_json_path_cleanup(&path);
    sb_json_path_cleanup(&path);
}

static void test_json_path_errors_have_columns(void **state)
{
    static const struct {
        const char *text;
        unsigned col;
        const char *needle;
    } bad[] = {
        {"", 1, "empty path"},
        {".a", 1, "empty segment"},
        {"a.", 3, "empty segment"},
        {"a..b", 3, "empty segment"},
        {"a.[0]", 3, "empty segment"},
        {"items[", 6, "unclosed '['"},
        {"items[12", 6, "unclosed '['"},
        {"items[]", 7, "empty index"},
        {"items[x]", 7, "index must be digits"},
        {"items[-1]", 7, "index must be digits"},
        {"items[1x]", 8, "index must be digits"},
        {"items[ 1]", 7, "index must be digits"},
        {"items[99999999999999999999999]", 7, "index is too large"},
        {"a]", 2, "']' without '['"},
        {"a.]", 3, "']' without '['"},
        {"a[0]b", 5, "expected '.' or '[' after ']'"},
        {"a[0]]", 5, "']' without '['"},
        /* Columns count characters: "é" is two bytes but one column. */
        {"caf\xc3\xa9..x", 6, "empty segment"},
    };
    struct sb_json_path path;
    struct sb_error err;
    size_t i;

    (void)state;
    for (i = 0; i < ARRAY_LEN(bad); i++) {
        enum sb_status rc;

        memset(&path, 0x5a, sizeof(path));
        sb_error_clear(&err);
        rc = sb_json_path_compile(bad[i].text, &path, &err);
        if (rc != SB_ERR_INVALID || err.col != bad[i].col ||
            strstr(err.msg, bad[i].needle) == NULL) {
            fail_msg("path \"%s\": expected col %u \"%s\", got rc=%d col "
                     "%u: %s",
                     bad[i].text, bad[i].col, bad[i].needle, rc, err.col,
                     err.msg);
        }
        assert_null(path.text);
        assert_null(path.steps);
        assert_int_equal(path.count, 0);
        sb_json_path_cleanup(&path);
    }
}

static void test_json_path_index_limit(void **state)
{
    struct sb_json_path path;
    struct sb_error err;
    char text[64];

    (void)state;
    snprintf(text, sizeof(text), "a[%zu]", (size_t)SIZE_MAX);
    assert_int_equal(sb_json_path_compile(text, &path, &err), SB_OK);
    assert_true(path.steps[1].index == SIZE_MAX);
    sb_json_path_cleanup(&path);
    /* One more than SIZE_MAX: 18446744073709551616 on 64-bit. */
    text[strlen(text) - 2]++;
    assert_int_equal(sb_json_path_compile(text, &path, &err), SB_ERR_INVALID);
    assert_non_null(strstr(err.msg, "index is too large"));
}

/* The value at `path` in `root`, or NULL; fails on a bad path. */
static const struct sb_json *lookup(const struct sb_json *root,
                                    const char *text)
{
    struct sb_json_path path;
    struct sb_error err;
    const struct sb_json *v;

    if (sb_json_path_compile(text, &path, &err) != SB_OK) {
        fail_msg("path \"%s\" did not compile: %s", text, err.msg);
    }
    v = sb_json_path_get(&path, root);
    sb_json_path_cleanup(&path);
    return v;
}

static void test_json_path_lookups(void **state)
{
    struct sb_json_doc *doc;
    const struct sb_json *root;
    const struct sb_json *v;

    (void)state;
    root = root_of(&doc, "{\"event_type\": \"order\", \"payload\": "
                         "{\"items\": [{\"sku\": \"A-1\"}, {\"sku\": \"B-2\", "
                         "\"tags\": [[\"x\", \"y\"]]}], \"n\": null}}");
    v = lookup(root, "payload.items[0].sku");
    assert_non_null(v);
    assert_string_equal(v->u.string.text, "A-1");
    assert_string_equal(lookup(root, "payload.items[1].sku")->u.string.text,
                        "B-2");
    assert_string_equal(
        lookup(root, "payload.items[1].tags[0][1]")->u.string.text, "y");
    assert_string_equal(lookup(root, "event_type")->u.string.text, "order");
    assert_int_equal(lookup(root, "payload.n")->type, SB_JSON_NULL);
    assert_int_equal(lookup(root, "payload")->type, SB_JSON_OBJECT);

    assert_null(lookup(root, "payload.items[2].sku"));
    assert_null(lookup(root, "payload.items[0].price"));
    assert_null(lookup(root, "payload.missing.deeper"));
    assert_null(lookup(root, "payload[0]"));
    assert_null(lookup(root, "payload.items.sku"));
    assert_null(lookup(root, "event_type.x"));
    assert_null(lookup(root, "payload.n.x"));
    assert_null(lookup(root, "[0]"));
    assert_null(lookup(NULL, "payload"));
    sb_json_doc_free(doc);

    root = root_of(&doc, "[[1, 2], {\"a b\": 3}]");
    assert_string_equal(lookup(root, "[0][1]")->u.number.text, "2");
    assert_string_equal(lookup(root, "[1].a b")->u.number.text, "3");
    sb_json_doc_free(doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_parses_every_type),
        cmocka_unit_test(test_json_string_escapes),
        cmocka_unit_test(test_json_surrogate_pairs),
        cmocka_unit_test(test_json_nul_escape_keeps_length),
        cmocka_unit_test(test_json_rejects_invalid_inputs),
        cmocka_unit_test(test_json_rejects_nul_bytes),
        cmocka_unit_test(test_json_rejects_bad_utf8),
        cmocka_unit_test(test_json_errors_never_quote_input),
        cmocka_unit_test(test_json_depth_limit),
        cmocka_unit_test(test_json_number_fields),
        cmocka_unit_test(test_json_number_values_ignore_locale),
        cmocka_unit_test(test_json_number_cmp_integer_and_float),
        cmocka_unit_test(test_json_number_cmp_beyond_double),
        cmocka_unit_test(test_json_number_cmp_huge_integers),
        cmocka_unit_test(test_json_number_cmp_negatives_and_floats),
        cmocka_unit_test(test_json_negative_zero_equals_zero),
        cmocka_unit_test(test_json_equal_by_type),
        cmocka_unit_test(test_json_equal_ignores_member_order),
        cmocka_unit_test(test_json_get_and_at),
        cmocka_unit_test(test_json_large_document),
        cmocka_unit_test(test_json_write_round_trip),
        cmocka_unit_test(test_json_write_escapes_strings),
        cmocka_unit_test(test_json_write_string_literal),
        cmocka_unit_test(test_json_write_stops_at_cap),
        cmocka_unit_test(test_json_path_compiles_steps),
        cmocka_unit_test(test_json_path_errors_have_columns),
        cmocka_unit_test(test_json_path_index_limit),
        cmocka_unit_test(test_json_path_lookups),
    };

    return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
