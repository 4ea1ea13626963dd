/* SPDX-License-Identifier: MIT */
/*
 * The rule compiler and evaluator. A `match` (or `when`) mapping becomes
 * a tree of conditions: all/any/not nodes, field tests holding a
 * pre-split path and operators with parsed values, and schedule tests.
 * Evaluating it reads the event's JSON in place and allocates nothing;
 * only the deliveries of a matched rule are rendered into new memory.
 */
#include "build_config.h"

#include "rules.h"

#include <fnmatch.h>
#include <glob.h>
#include <locale.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "config.h"
#include "json.h"
#include "metrics.h"
#include "template.h"

#define RULES_NEEDLE_MAX 256 /* code points of a `contains` value */

/* Messages too long for one line of code, whole here so grep finds them. */
#define RULES_AMBIGUOUS_MSG \
    "ambiguous value \"%s\"; write true, false or null, or quote a string"
#define RULES_COND_KEY_MSG \
    "expected a field path or one of all, any, not, within, outside"
#define RULES_SEND_KEY_MSG \
    "unknown key \"%s\" for output \"%s\"; expected to, when, %s%s%s"

enum rules_cond_kind {
    RULES_ALL,
    RULES_ANY,
    RULES_NOT,
    RULES_FIELD,
    RULES_WITHIN,
    RULES_OUTSIDE,
};

enum rules_op_kind {
    RULES_EQ,
    RULES_NE,
    RULES_IN,
    RULES_NOT_IN,
    RULES_GT,
    RULES_GTE,
    RULES_LT,
    RULES_LTE,
    RULES_REGEX,
    RULES_GLOB,
    RULES_CONTAINS,
    RULES_STARTS_WITH,
    RULES_ENDS_WITH,
    RULES_EXISTS,
};

static const char *const rules_op_names[] = {
    [RULES_EQ] = "eq",
    [RULES_NE] = "ne",
    [RULES_IN] = "in",
    [RULES_NOT_IN] = "not_in",
    [RULES_GT] = "gt",
    [RULES_GTE] = "gte",
    [RULES_LT] = "lt",
    [RULES_LTE] = "lte",
    [RULES_REGEX] = "regex",
    [RULES_GLOB] = "glob",
    [RULES_CONTAINS] = "contains",
    [RULES_STARTS_WITH] = "starts_with",
    [RULES_ENDS_WITH] = "ends_with",
    [RULES_EXISTS] = "exists",
    NULL,
};

struct rules_op {
    enum rules_op_kind kind;
    struct sb_json_doc *doc; /* the operand as a JSON value */
    const struct sb_json *value;
    regex_t regex;
    int has_regex;
    wint_t needle[RULES_NEEDLE_MAX]; /* contains: folded code points */
    size_t needle_len;
    int needle_ascii; /* every code point below 128: the byte-wise path */
};

struct rules_cond {
    enum rules_cond_kind kind;
    struct rules_cond *children; /* all, any, not (one child) */
    size_t count;
    struct sb_json_path path; /* field */
    struct rules_op *ops;
    size_t op_count;
    const struct sb_named_schedule *schedule; /* within, outside */
};

struct rules_send {
    const struct sb_output *output;
    struct rules_cond when;
    int has_when;
    struct sb_template *fields[SB_OUTPUT_MAX_FIELDS]; /* NULL: default */
};

struct rules_throttle_slot {
    char *key;
    int64_t last_ms;
};

/*
 * LIMIT: throttle state lives in this struct, in memory. Matters when:
 * the process restarts inside a window, or several instances share one
 * queue. Until then: a forgotten key only lets one more alert through,
 * never holds one back, so nothing that should page is lost.
 */
struct sb_rule {
    char *name;
    char where[300]; /* file:line of the rule, for duplicate names */
    struct rules_cond match;
    int stop;
    struct sb_template *throttle_key;
    char *throttle_source; /* the key's template as written: reloads match it */
    uint64_t throttle_ms;
    struct rules_send *sends;
    size_t send_count;
    pthread_mutex_t lock;              /* guards the throttle slots */
    struct rules_throttle_slot *slots; /* open addressing, 2x the cap */
    size_t slot_count;
    size_t used;
    struct sb_metrics_rule *metrics; /* its counters; NULL: none */
};

/* The rules, in order, that an event of type `name` must evaluate. */
struct rules_by_type {
    const char *name; /* borrowed from a rule's compiled value */
    size_t *rules;
    size_t count;
};

struct sb_ruleset {
    struct sb_rule **rules;
    size_t count;
    size_t cap;
    size_t total_sends;     /* the most deliveries one event can plan */
    size_t throttled_rules; /* the most claims one event can make */
    /*
     * Which rules can match an event of a type: most rules name the type
     * they are for, so an event visits a dozen rules, not every rule.
     */
    struct rules_by_type *types; /* sorted by name */
    size_t type_count;
    struct rules_by_type *untyped; /* the rules for any other type */
};

/* The compiler's state while one config is read. */
struct rules_compiler {
    const struct sb_rules_refs *refs;
    struct sb_ruleset *set;
    int depth; /* include nesting */
};

/* What evaluation reads. */
struct rules_eval {
    const struct sb_json *event;
    int64_t received_ms;
    char *why; /* first reason a condition failed, or NULL */
    size_t why_cap;
};

static const struct sb_json rules_null = {.type = SB_JSON_NULL};

/* A locale whose case folding knows all of Unicode, made once. */
static locale_t rules_locale;
static pthread_once_t rules_locale_once = PTHREAD_ONCE_INIT;

static void rules_make_locale(void)
{
    rules_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static wint_t rules_fold(wint_t c)
{
    if (c < 128) {
        return c >= 'A' && c <= 'Z' ? c + 32 : c;
    }
    pthread_once(&rules_locale_once, rules_make_locale);
    if (rules_locale == (locale_t)0) {
        return c;
    }
    return towlower_l(c, rules_locale);
}

/*
 * Decodes one UTF-8 code point at `p` (at most `n` bytes); invalid bytes
 * decode as themselves so matching degrades, never fails.
 */
static size_t rules_utf8_next(const unsigned char *p, size_t n, wint_t *out)
{
    size_t len = 1;
    wint_t c = p[0];

    if (c >= 0xf0 && n >= 4) {
        c = ((c & 0x07u) << 18) | ((p[1] & 0x3fu) << 12) |
            ((p[2] & 0x3fu) << 6) | (p[3] & 0x3fu);
        len = 4;
    } else if (c >= 0xe0 && n >= 3) {
        c = ((c & 0x0fu) << 12) | ((p[1] & 0x3fu) << 6) | (p[2] & 0x3fu);
        len = 3;
    } else if (c >= 0xc0 && n >= 2) {
        c = ((c & 0x1fu) << 6) | (p[1] & 0x3fu);
        len = 2;
    }
    *out = c;
    return len;
}

/* ---- evaluation ------------------------------------------------------- */

static void rules_why(struct rules_eval *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void rules_why(struct rules_eval *e, const char *fmt, ...)
{
    va_list ap;

    if (e->why == NULL || e->why[0] != '\0') {
        return; /* not asked, or the first reason is already kept */
    }
    va_start(ap, fmt);
    vsnprintf(e->why, e->why_cap, fmt, ap);
    va_end(ap);
}

/*
 * Describes an event value without its content: a phone number or a
 * report must not reach `test` output.
 */
static const char *rules_describe(const struct sb_json *v, char *buf,
                                  size_t cap)
{
    if (v == NULL) {
        return "nothing (the field is absent)";
    }
    switch (v->type) {
    case SB_JSON_NULL:
        return "null";
    case SB_JSON_FALSE:
        return "false";
    case SB_JSON_TRUE:
        return "true";
    case SB_JSON_NUMBER:
        snprintf(buf, cap, "the number %.*s", (int)v->u.number.len,
                 v->u.number.text);
        return buf;
    case SB_JSON_STRING:
        snprintf(buf, cap, "a string of %zu bytes", v->u.string.len);
        return buf;
    case SB_JSON_ARRAY:
        snprintf(buf, cap, "a list of %zu items", v->u.array.count);
        return buf;
    case SB_JSON_OBJECT:
        return "an object";
    }
    return "an unknown value";
}

/* The operand as the config wrote it, for messages. */
static const char *rules_operand(const struct rules_op *op, char *buf,
                                 size_t cap)
{
    struct sb_buf out;

    sb_buf_init(&out, cap - 1);
    if (sb_json_write(op->value, &out) != SB_OK && out.len == 0) {
        sb_buf_cleanup(&out);
        return "...";
    }
    snprintf(buf, cap, "%s", sb_buf_str(&out));
    sb_buf_cleanup(&out);
    return buf;
}

static int rules_in_list(const struct sb_json *list, const struct sb_json *v)
{
    size_t i;

    for (i = 0; i < list->u.array.count; i++) {
        if (sb_json_equal(list->u.array.items[i], v)) {
            return 1;
        }
    }
    return 0;
}

/* Ordering: numbers with numbers, strings with strings, nothing else. */
static int rules_order(const struct sb_json *a, const struct sb_json *b,
                       int *out_cmp)
{
    size_t n;
    int c;

    if (a == NULL) {
        return 0;
    }
    if (a->type == SB_JSON_NUMBER && b->type == SB_JSON_NUMBER) {
        *out_cmp = sb_json_number_cmp(a, b);
        return 1;
    }
    if (a->type != SB_JSON_STRING || b->type != SB_JSON_STRING) {
        return 0;
    }
    n = a->u.string.len < b->u.string.len ? a->u.string.len : b->u.string.len;
    c = memcmp(a->u.string.text, b->u.string.text, n);
    if (c == 0) {
        c = (a->u.string.len > b->u.string.len) -
            (a->u.string.len < b->u.string.len);
    }
    *out_cmp = c;
    return 1;
}

/* Case-insensitive substring over code points (SPEC §4 `contains`). */
static unsigned char rules_ascii_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

/*
 * `contains` with an ASCII needle, byte by byte: in UTF-8 an ASCII byte
 * is always a whole character, so no decoding is needed. (Only U+0130 and
 * U+212A lowercase into ASCII; this path does not fold them.)
 */
static int rules_contains_ascii(const struct rules_op *op,
                                const unsigned char *hay, size_t len)
{
    size_t m = op->needle_len;
    unsigned char lo = (unsigned char)op->needle[0];
    unsigned char up = lo >= 'a' && lo <= 'z' ? (unsigned char)(lo - 32) : lo;
    const unsigned char *end;
    const unsigned char *next_lo;
    const unsigned char *next_up;
    const unsigned char *at;
    size_t k;

    if (m > len) {
        return 0;
    }
    /* Candidates start where the first character is, in either case. */
    end = hay + len - m + 1;
    next_lo = memchr(hay, lo, (size_t)(end - hay));
    next_up = up != lo ? memchr(hay, up, (size_t)(end - hay)) : NULL;
    while (next_lo != NULL || next_up != NULL) {
        int take_lo = next_up == NULL || (next_lo != NULL && next_lo < next_up);

        at = take_lo ? next_lo : next_up;
        for (k = 1; k < m; k++) {
            if (rules_ascii_lower(at[k]) != (unsigned char)op->needle[k]) {
                break;
            }
        }
        if (k == m) {
            return 1;
        }
        if (take_lo) {
            next_lo = memchr(at + 1, lo, (size_t)(end - at - 1));
        } else {
            next_up = memchr(at + 1, up, (size_t)(end - at - 1));
        }
    }
    return 0;
}

static int rules_contains(const struct rules_op *op, const char *text,
                          size_t len)
{
    const unsigned char *hay = (const unsigned char *)text;
    size_t start = 0;

    if (op->needle_len == 0) {
        return 1;
    }
    if (op->needle_ascii) {
        return rules_contains_ascii(op, hay, len);
    }
    while (start < len) {
        size_t pos = start;
        size_t k = 0;
        wint_t c;

        while (k < op->needle_len && pos < len) {
            pos += rules_utf8_next(hay + pos, len - pos, &c);
            if (rules_fold(c) != op->needle[k]) {
                break;
            }
            k++;
        }
        if (k == op->needle_len) {
            return 1;
        }
        start += rules_utf8_next(hay + start, len - start, &c);
    }
    return 0;
}

static int rules_string_op(const struct rules_op *op, const struct sb_json *v)
{
    const char *text;
    size_t len;
    size_t plen;

    if (v == NULL || v->type != SB_JSON_STRING) {
        return 0;
    }
    text = v->u.string.text;
    len = v->u.string.len;
    plen = op->value->u.string.len;
    switch (op->kind) {
    case RULES_REGEX:
        return regexec(&op->regex, text, 0, NULL, 0) == 0;
    case RULES_GLOB:
        return fnmatch(op->value->u.string.text, text, 0) == 0;
    case RULES_CONTAINS:
        return rules_contains(op, text, len);
    case RULES_STARTS_WITH:
        return len >= plen && memcmp(text, op->value->u.string.text, plen) == 0;
    case RULES_ENDS_WITH:
        return len >= plen &&
               memcmp(text + len - plen, op->value->u.string.text, plen) == 0;
    default:
        break;
    }
    return 0;
}

/* One operator on the field's value `v` (NULL when absent). */
static int rules_op_holds(const struct rules_op *op, const struct sb_json *v)
{
    const struct sb_json *as_null = v != NULL ? v : &rules_null;
    int cmp = 0;

    switch (op->kind) {
    case RULES_EQ:
        return sb_json_equal(as_null, op->value);
    case RULES_NE:
        return !sb_json_equal(as_null, op->value);
    case RULES_IN:
        return rules_in_list(op->value, as_null);
    case RULES_NOT_IN:
        return !rules_in_list(op->value, as_null);
    case RULES_GT:
        return rules_order(v, op->value, &cmp) && cmp > 0;
    case RULES_GTE:
        return rules_order(v, op->value, &cmp) && cmp >= 0;
    case RULES_LT:
        return rules_order(v, op->value, &cmp) && cmp < 0;
    case RULES_LTE:
        return rules_order(v, op->value, &cmp) && cmp <= 0;
    case RULES_EXISTS:
        return (v != NULL && v->type != SB_JSON_NULL) ==
               (op->value->type == SB_JSON_TRUE);
    default:
        return rules_string_op(op, v);
    }
}

static int rules_eval_cond(const struct rules_cond *c, struct rules_eval *e);

static int rules_eval_field(const struct rules_cond *c, struct rules_eval *e)
{
    const struct sb_json *v = sb_json_path_get(&c->path, e->event);
    char got[64];
    char want[128];
    size_t i;

    for (i = 0; i < c->op_count; i++) {
        const struct rules_op *op = &c->ops[i];

        if (!rules_op_holds(op, v)) {
            if (e->why == NULL) {
                return 0;
            }
            rules_why(e, "%s: expected %s %s, got %s", c->path.text,
                      rules_op_names[op->kind],
                      rules_operand(op, want, sizeof(want)),
                      rules_describe(v, got, sizeof(got)));
            return 0;
        }
    }
    return 1;
}

static int rules_eval_cond(const struct rules_cond *c, struct rules_eval *e)
{
    int fresh = e->why != NULL && e->why[0] == '\0';
    size_t i;
    int inside;

    switch (c->kind) {
    case RULES_ALL:
        for (i = 0; i < c->count; i++) {
            if (!rules_eval_cond(&c->children[i], e)) {
                return 0;
            }
        }
        return 1;
    case RULES_ANY:
        for (i = 0; i < c->count; i++) {
            if (rules_eval_cond(&c->children[i], e)) {
                if (fresh) {
                    /* The children that failed were not the reason. */
                    e->why[0] = '\0';
                }
                return 1;
            }
        }
        rules_why(e, "any: none of its %zu conditions held", c->count);
        return 0;
    case RULES_NOT:
        if (!rules_eval_cond(&c->children[0], e)) {
            if (e->why != NULL) {
                e->why[0] = '\0'; /* the inner failure is the success */
            }
            return 1;
        }
        rules_why(e, "not: its condition held");
        return 0;
    case RULES_FIELD:
        return rules_eval_field(c, e);
    case RULES_WITHIN:
    case RULES_OUTSIDE:
        inside = sb_schedule_contains(&c->schedule->schedule, e->received_ms);
        if (inside != (c->kind == RULES_WITHIN)) {
            rules_why(e, "%s %s: received %s it",
                      c->kind == RULES_WITHIN ? "within" : "outside",
                      c->schedule->name, inside ? "inside" : "outside");
            return 0;
        }
        return 1;
    }
    return 0;
}

/* ---- compiling values --------------------------------------------------- */

/*
 * YAML 1.1 reads these plain words as booleans or null; JSON does not.
 * A rule comparing with one of them is almost surely wrong, so it is an
 * error to write one unquoted (SPEC: rules must be hard to get wrong).
 */
static const char *const rules_ambiguous[] = {
    "True", "TRUE", "False", "FALSE", "yes", "Yes",  "YES",  "no",
    "No",   "NO",   "on",    "On",    "ON",  "off",  "Off",  "OFF",
    "y",    "Y",    "n",     "N",     "~",   "Null", "NULL", NULL,
};

static int rules_is_ambiguous(const char *text)
{
    size_t i;

    for (i = 0; rules_ambiguous[i] != NULL; i++) {
        if (strcmp(rules_ambiguous[i], text) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Whether `text` alone parses as a JSON number, true, false or null. */
static int rules_is_json_scalar(const char *text)
{
    struct sb_json_doc *doc = NULL;
    struct sb_error err;
    int typed;

    if (sb_json_parse(text, strlen(text), &doc, &err) != SB_OK) {
        return 0;
    }
    typed = sb_json_root(doc)->type != SB_JSON_STRING &&
            sb_json_root(doc)->type != SB_JSON_ARRAY &&
            sb_json_root(doc)->type != SB_JSON_OBJECT;
    sb_json_doc_free(doc);
    return typed;
}

/* Appends a YAML scalar as JSON: typed when plain and JSON-shaped. */
static enum sb_status rules_scalar_json(struct sb_yml *y, yaml_node_t *node,
                                        struct sb_buf *out)
{
    char *text = NULL;
    enum sb_status rc = sb_yml_scalar(y, node, "value", &text);

    if (rc != SB_OK) {
        return rc;
    }
    if (sb_yml_is_plain(node) && rules_is_ambiguous(text)) {
        rc = sb_yml_fail(y, node, RULES_AMBIGUOUS_MSG, text);
    } else if (sb_yml_is_plain(node) && rules_is_json_scalar(text)) {
        rc = sb_buf_adds(out, text);
    } else {
        rc = sb_json_write_string(text, strlen(text), out);
    }
    free(text);
    return rc;
}

/* Turns a scalar or a list of scalars into a JSON document. */
static enum sb_status rules_value(struct sb_yml *y, yaml_node_t *node,
                                  struct sb_json_doc **out_doc)
{
    struct sb_buf text;
    struct sb_error err;
    yaml_node_item_t *item;
    enum sb_status rc = SB_OK;

    *out_doc = NULL;
    sb_buf_init(&text, 64 * 1024);
    if (node->type == YAML_SCALAR_NODE) {
        rc = rules_scalar_json(y, node, &text);
    } else if (node->type == YAML_SEQUENCE_NODE) {
        rc = sb_buf_addc(&text, '[');
        for (item = node->data.sequence.items.start;
             rc == SB_OK && item < node->data.sequence.items.top; item++) {
            yaml_node_t *n = sb_yml_node(y, *item);

            if (item > node->data.sequence.items.start) {
                rc = sb_buf_addc(&text, ',');
            }
            if (rc == SB_OK && n->type != YAML_SCALAR_NODE) {
                rc = sb_yml_fail(y, n, "expected a plain value, got %s",
                                 sb_yml_kind(n));
            } else if (rc == SB_OK) {
                rc = rules_scalar_json(y, n, &text);
            }
        }
        if (rc == SB_OK) {
            rc = sb_buf_addc(&text, ']');
        }
    } else {
        rc = sb_yml_fail(y, node, "expected a value or a list, got %s",
                         sb_yml_kind(node));
    }
    if (rc == SB_OK) {
        rc = sb_json_parse(sb_buf_str(&text), text.len, out_doc, &err);
        if (rc == SB_ERR_INVALID) {
            rc = sb_yml_fail(y, node, "value too large or malformed");
        }
    }
    sb_buf_cleanup(&text);
    return rc;
}

/* ---- compiling operators ------------------------------------------------ */

static int rules_find_op(const char *name)
{
    int i;

    for (i = 0; rules_op_names[i] != NULL; i++) {
        if (strcmp(rules_op_names[i], name) == 0) {
            return i;
        }
    }
    return -1;
}

static enum sb_status rules_fold_needle(struct sb_yml *y, yaml_node_t *node,
                                        struct rules_op *op)
{
    const unsigned char *p = (const unsigned char *)op->value->u.string.text;
    size_t len = op->value->u.string.len;
    size_t pos = 0;
    wint_t c;

    while (pos < len) {
        if (op->needle_len == RULES_NEEDLE_MAX) {
            return sb_yml_fail(y, node, "contains: longer than %d characters",
                               RULES_NEEDLE_MAX);
        }
        pos += rules_utf8_next(p + pos, len - pos, &c);
        op->needle[op->needle_len++] = rules_fold(c);
    }
    op->needle_ascii = 1;
    for (pos = 0; pos < op->needle_len; pos++) {
        op->needle_ascii &= op->needle[pos] < 128;
    }
    return SB_OK;
}

/* Checks the operand's type for its operator and prepares it. */
static enum sb_status rules_prepare_op(struct sb_yml *y, yaml_node_t *node,
                                       struct rules_op *op)
{
    enum sb_json_type t = op->value->type;
    const char *name = rules_op_names[op->kind];
    char msg[256];
    int rc;

    switch (op->kind) {
    case RULES_IN:
    case RULES_NOT_IN:
        if (t != SB_JSON_ARRAY) {
            return sb_yml_fail(y, node, "%s: expected a list of values", name);
        }
        return SB_OK;
    case RULES_GT:
    case RULES_GTE:
    case RULES_LT:
    case RULES_LTE:
        if (t != SB_JSON_NUMBER && t != SB_JSON_STRING) {
            return sb_yml_fail(y, node, "%s: expected a number or a string",
                               name);
        }
        return SB_OK;
    case RULES_EXISTS:
        if (t != SB_JSON_TRUE && t != SB_JSON_FALSE) {
            return sb_yml_fail(y, node, "exists: expected true or false");
        }
        return SB_OK;
    case RULES_EQ:
    case RULES_NE:
        return SB_OK;
    default:
        break;
    }
    if (t != SB_JSON_STRING) {
        return sb_yml_fail(y, node, "%s: expected a string", name);
    }
    if (op->kind == RULES_CONTAINS) {
        return rules_fold_needle(y, node, op);
    }
    if (op->kind != RULES_REGEX) {
        return SB_OK;
    }
    rc =
        regcomp(&op->regex, op->value->u.string.text, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        regerror(rc, &op->regex, msg, sizeof(msg));
        return sb_yml_fail(y, node, "regex: %s", msg);
    }
    op->has_regex = 1;
    return SB_OK;
}

static enum sb_status rules_compile_op(struct sb_yml *y, enum rules_op_kind k,
                                       yaml_node_t *value, struct rules_op *op)
{
    enum sb_status rc;

    op->kind = k;
    rc = rules_value(y, value, &op->doc);
    if (rc != SB_OK) {
        return rc;
    }
    op->value = sb_json_root(op->doc);
    return rules_prepare_op(y, value, op);
}

static void rules_op_cleanup(struct rules_op *op)
{
    if (op->has_regex) {
        regfree(&op->regex);
    }
    sb_json_doc_free(op->doc);
}

/* ---- compiling conditions ------------------------------------------------ */

static enum sb_status rules_compile_cond(struct rules_compiler *rc,
                                         struct sb_yml *y, yaml_node_t *map,
                                         struct rules_cond *out);

static void rules_cond_cleanup(struct rules_cond *c)
{
    size_t i;

    for (i = 0; i < c->count; i++) {
        rules_cond_cleanup(&c->children[i]);
    }
    free(c->children);
    for (i = 0; i < c->op_count; i++) {
        rules_op_cleanup(&c->ops[i]);
    }
    free(c->ops);
    sb_json_path_cleanup(&c->path);
    memset(c, 0, sizeof(*c));
}

/* `field: {op: value, ...}`, `field: [a, b]` (in) or `field: value` (eq). */
static enum sb_status rules_compile_ops(struct sb_yml *y, yaml_node_t *value,
                                        struct rules_cond *c)
{
    yaml_node_pair_t *pair;
    enum sb_status rc = SB_OK;
    size_t n = 1;

    if (value->type == YAML_MAPPING_NODE) {
        n = (size_t)(value->data.mapping.pairs.top -
                     value->data.mapping.pairs.start);
    }
    c->ops = calloc(n == 0 ? 1 : n, sizeof(*c->ops));
    if (c->ops == NULL) {
        return SB_ERR_NOMEM;
    }
    if (value->type != YAML_MAPPING_NODE) {
        c->op_count = 1;
        return rules_compile_op(
            y, value->type == YAML_SEQUENCE_NODE ? RULES_IN : RULES_EQ, value,
            &c->ops[0]);
    }
    if (n == 0) {
        return sb_yml_fail(y, value, "expected at least one operator");
    }
    for (pair = value->data.mapping.pairs.start;
         pair < value->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = sb_yml_node(y, pair->key);
        const char *name = sb_yml_text(k);
        int kind = name ? rules_find_op(name) : -1;
        enum sb_status step;

        step = sb_yml_check_key(y, value, pair, rules_op_names, "a condition");
        if (step == SB_OK && kind >= 0) {
            step = rules_compile_op(y, (enum rules_op_kind)kind,
                                    sb_yml_node(y, pair->value),
                                    &c->ops[c->op_count++]);
        }
        if (step != SB_OK) {
            rc = step;
        }
    }
    return rc;
}

static const struct sb_named_schedule *
rules_find_schedule(const struct sb_rules_refs *refs, const char *name)
{
    size_t i;

    for (i = 0; i < refs->schedule_count; i++) {
        if (strcmp(refs->schedules[i].name, name) == 0) {
            return &refs->schedules[i];
        }
    }
    return NULL;
}

static enum sb_status rules_compile_schedule(struct rules_compiler *rc,
                                             struct sb_yml *y,
                                             yaml_node_t *value,
                                             struct rules_cond *c)
{
    char *name = NULL;
    enum sb_status st = sb_yml_scalar(y, value, "schedule", &name);

    if (st != SB_OK) {
        return st;
    }
    c->schedule = rules_find_schedule(rc->refs, name);
    if (c->schedule == NULL) {
        st = sb_yml_fail(y, value,
                         "undefined schedule \"%s\"; see schedules:", name);
    }
    free(name);
    return st;
}

/* all: and any: take a list of mappings. */
static enum sb_status rules_compile_list(struct rules_compiler *rc,
                                         struct sb_yml *y, yaml_node_t *value,
                                         struct rules_cond *c)
{
    yaml_node_item_t *item;
    enum sb_status st = SB_OK;
    size_t n;

    if (value->type != YAML_SEQUENCE_NODE) {
        return sb_yml_fail(y, value, "expected a list of conditions, got %s",
                           sb_yml_kind(value));
    }
    n = (size_t)(value->data.sequence.items.top -
                 value->data.sequence.items.start);
    c->children = calloc(n == 0 ? 1 : n, sizeof(*c->children));
    if (c->children == NULL) {
        return SB_ERR_NOMEM;
    }
    for (item = value->data.sequence.items.start;
         item < value->data.sequence.items.top; item++) {
        enum sb_status step = rules_compile_cond(rc, y, sb_yml_node(y, *item),
                                                 &c->children[c->count++]);

        if (step != SB_OK) {
            st = step;
        }
    }
    return st;
}

static const char *const rules_cond_words[] = {"all",    "any",     "not",
                                               "within", "outside", NULL};

/* One entry of a condition mapping: a combinator or a field test. */
static enum sb_status rules_compile_entry(struct rules_compiler *rc,
                                          struct sb_yml *y, yaml_node_t *key,
                                          yaml_node_t *value,
                                          struct rules_cond *c)
{
    const char *word = sb_yml_text(key);
    struct sb_error err;
    enum sb_status st;

    if (strcmp(word, "all") == 0 || strcmp(word, "any") == 0) {
        c->kind = word[1] == 'l' ? RULES_ALL : RULES_ANY;
        return rules_compile_list(rc, y, value, c);
    }
    if (strcmp(word, "not") == 0) {
        c->kind = RULES_NOT;
        c->children = calloc(1, sizeof(*c->children));
        if (c->children == NULL) {
            return SB_ERR_NOMEM;
        }
        c->count = 1;
        return rules_compile_cond(rc, y, value, &c->children[0]);
    }
    if (strcmp(word, "within") == 0 || strcmp(word, "outside") == 0) {
        c->kind = word[0] == 'w' ? RULES_WITHIN : RULES_OUTSIDE;
        return rules_compile_schedule(rc, y, value, c);
    }
    c->kind = RULES_FIELD;
    sb_error_clear(&err);
    st = sb_json_path_compile(word, &c->path, &err);
    if (st == SB_ERR_INVALID) {
        return sb_yml_fail(y, key, "bad field path \"%s\": %s", word, err.msg);
    }
    return st == SB_OK ? rules_compile_ops(y, value, c) : st;
}

/* A condition mapping: every entry must hold (an `all` of them). */
static enum sb_status rules_compile_cond(struct rules_compiler *rc,
                                         struct sb_yml *y, yaml_node_t *map,
                                         struct rules_cond *out)
{
    yaml_node_pair_t *pair;
    enum sb_status st = SB_OK;
    size_t n;

    memset(out, 0, sizeof(*out));
    out->kind = RULES_ALL;
    if (map->type != YAML_MAPPING_NODE) {
        return sb_yml_fail(y, map, "expected a mapping of conditions, got %s",
                           sb_yml_kind(map));
    }
    n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    out->children = calloc(n == 0 ? 1 : n, sizeof(*out->children));
    if (out->children == NULL) {
        return SB_ERR_NOMEM;
    }
    for (pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = sb_yml_node(y, pair->key);
        enum sb_status step;

        if (sb_yml_text(k) == NULL) {
            step = sb_yml_fail(y, k, RULES_COND_KEY_MSG);
        } else if (sb_yml_key_repeats(y, map, pair)) {
            step = sb_yml_fail(y, k, "duplicate key \"%s\"", sb_yml_text(k));
        } else {
            step = rules_compile_entry(rc, y, k, sb_yml_node(y, pair->value),
                                       &out->children[out->count++]);
        }
        if (step == SB_ERR_NOMEM) {
            return step;
        }
        if (step != SB_OK) {
            st = step;
        }
    }
    (void)rules_cond_words;
    return st;
}

/* ---- compiling rules ------------------------------------------------------
 */

static const struct sb_output *rules_find_output(const struct sb_rules_refs *r,
                                                 const char *name)
{
    size_t i;

    for (i = 0; i < r->output_count; i++) {
        if (strcmp(r->outputs[i].name, name) == 0) {
            return &r->outputs[i];
        }
    }
    return NULL;
}

static enum sb_status rules_template(struct sb_yml *y, yaml_node_t *node,
                                     const char *what, struct sb_template **out)
{
    struct sb_error err;
    char *text = NULL;
    enum sb_status st = sb_yml_scalar(y, node, what, &text);

    *out = NULL;
    if (st != SB_OK) {
        return st;
    }
    sb_error_clear(&err);
    st = sb_template_parse(text, out, &err);
    free(text);
    if (st == SB_ERR_INVALID) {
        return sb_yml_fail(y, node, "%s: template line %u column %u: %s", what,
                           err.line, err.col, err.msg);
    }
    return st;
}

static enum sb_status rules_send_output(struct rules_compiler *rc,
                                        struct sb_yml *y, yaml_node_t *node,
                                        struct rules_send *send)
{
    char *name = NULL;
    enum sb_status st = sb_yml_scalar(y, node, "to", &name);

    if (st != SB_OK) {
        return st;
    }
    send->output = rules_find_output(rc->refs, name);
    if (send->output != NULL && send->output->kind == NULL) {
        /* Its unknown plugin is already reported at the output. */
        send->output = NULL;
        st = SB_ERR_INVALID;
    } else if (send->output == NULL) {
        st = sb_yml_fail(
            y, node, "undefined output \"%s\"; define it under outputs:", name);
    }
    free(name);
    return st;
}

/* One key of a send mapping other than `to`: `when` or a template field. */
static enum sb_status rules_send_key(struct rules_compiler *rc,
                                     struct sb_yml *y, yaml_node_t *key,
                                     yaml_node_t *value,
                                     struct rules_send *send)
{
    const char *name = sb_yml_text(key);
    const struct sb_output_kind *kind = send->output->kind;
    int field;

    if (strcmp(name, "when") == 0) {
        send->has_when = 1;
        return rules_compile_cond(rc, y, value, &send->when);
    }
    field = sb_output_field_index(kind, name);
    if (field < 0) {
        return sb_yml_fail(y, key, RULES_SEND_KEY_MSG, name, send->output->name,
                           kind->fields[0].name,
                           kind->field_count > 1 ? ", " : "",
                           kind->field_count > 1 ? kind->fields[1].name : "");
    }
    return rules_template(y, value, name, &send->fields[field]);
}

static enum sb_status rules_compile_send(struct rules_compiler *rc,
                                         struct sb_yml *y, yaml_node_t *node,
                                         struct rules_send *send)
{
    yaml_node_pair_t *pair;
    yaml_node_t *to = NULL;
    enum sb_status st = SB_OK;

    if (node->type == YAML_SCALAR_NODE) {
        return rules_send_output(rc, y, node, send);
    }
    if (node->type != YAML_MAPPING_NODE) {
        return sb_yml_fail(y, node,
                           "expected an output or a mapping with to:, got %s",
                           sb_yml_kind(node));
    }
    for (pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        const char *k = sb_yml_text(sb_yml_node(y, pair->key));

        if (k != NULL && strcmp(k, "to") == 0) {
            to = sb_yml_node(y, pair->value);
        }
    }
    if (to == NULL) {
        return sb_yml_fail(y, node, "send: expected to: OUTPUT");
    }
    st = rules_send_output(rc, y, to, send);
    for (pair = node->data.mapping.pairs.start;
         st == SB_OK && pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = sb_yml_node(y, pair->key);
        const char *name = sb_yml_text(k);

        if (sb_yml_key_repeats(y, node, pair)) {
            st = sb_yml_fail(y, k, "duplicate key \"%s\"", name);
        } else if (name != NULL && strcmp(name, "to") != 0) {
            enum sb_status step =
                rules_send_key(rc, y, k, sb_yml_node(y, pair->value), send);

            st = step == SB_ERR_NOMEM ? step : st;
            if (step != SB_OK && st == SB_OK) {
                st = step;
            }
        }
    }
    return st;
}

static enum sb_status rules_compile_sends(struct rules_compiler *rc,
                                          struct sb_yml *y, yaml_node_t *node,
                                          struct sb_rule *rule)
{
    yaml_node_item_t *item;
    enum sb_status st = SB_OK;
    size_t n;

    if (node->type != YAML_SEQUENCE_NODE) {
        return sb_yml_fail(y, node, "send: expected a list, got %s",
                           sb_yml_kind(node));
    }
    n = (size_t)(node->data.sequence.items.top -
                 node->data.sequence.items.start);
    if (n > SB_RULES_MAX_SENDS) {
        return sb_yml_fail(y, node, "send: more than %d entries",
                           SB_RULES_MAX_SENDS);
    }
    rule->sends = calloc(n == 0 ? 1 : n, sizeof(*rule->sends));
    if (rule->sends == NULL) {
        return SB_ERR_NOMEM;
    }
    for (item = node->data.sequence.items.start;
         item < node->data.sequence.items.top; item++) {
        enum sb_status step = rules_compile_send(
            rc, y, sb_yml_node(y, *item), &rule->sends[rule->send_count++]);

        if (step != SB_OK) {
            st = step;
        }
    }
    return st;
}

static enum sb_status rules_compile_throttle(struct sb_yml *y,
                                             yaml_node_t *node,
                                             struct sb_rule *rule)
{
    static const char *const keys[] = {"key", "per", NULL};
    yaml_node_pair_t *pair;
    enum sb_status st = SB_OK;

    if (node->type != YAML_MAPPING_NODE) {
        return sb_yml_fail(y, node, "throttle: expected {key: ..., per: ...}");
    }
    for (pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = sb_yml_node(y, pair->key);
        yaml_node_t *v = sb_yml_node(y, pair->value);
        enum sb_status step = sb_yml_check_key(y, node, pair, keys, "throttle");
        struct sb_error err;
        char *text = NULL;

        if (step == SB_OK && strcmp(sb_yml_text(k), "key") == 0) {
            step = rules_template(y, v, "throttle.key", &rule->throttle_key);
            free(rule->throttle_source);
            rule->throttle_source =
                v->type == YAML_SCALAR_NODE ? strdup(sb_yml_text(v)) : NULL;
        } else if (step == SB_OK) {
            step = sb_yml_scalar(y, v, "per", &text);
            if (step == SB_OK && sb_config_parse_duration(
                                     text, &rule->throttle_ms, &err) != SB_OK) {
                step = sb_yml_fail(y, v, "per: %s", err.msg);
            } else if (step == SB_OK && rule->throttle_ms == 0) {
                step = sb_yml_fail(y, v, "per: expected a duration above zero");
            }
            free(text);
        }
        if (step != SB_OK) {
            st = step;
        }
    }
    if (st == SB_OK && (rule->throttle_key == NULL || rule->throttle_ms == 0)) {
        st = sb_yml_fail(y, node, "throttle: both key and per are required");
    }
    return st;
}

static enum sb_status rules_compile_key(struct rules_compiler *rc,
                                        struct sb_yml *y, yaml_node_t *key,
                                        yaml_node_t *value,
                                        struct sb_rule *rule)
{
    const char *name = sb_yml_text(key);
    char *text = NULL;
    enum sb_status st;

    if (strcmp(name, "name") == 0) {
        free(rule->name);
        rule->name = NULL;
        return sb_yml_scalar(y, value, "name", &rule->name);
    }
    if (strcmp(name, "match") == 0) {
        rules_cond_cleanup(&rule->match);
        return rules_compile_cond(rc, y, value, &rule->match);
    }
    if (strcmp(name, "throttle") == 0) {
        return rules_compile_throttle(y, value, rule);
    }
    if (strcmp(name, "send") == 0) {
        return rules_compile_sends(rc, y, value, rule);
    }
    st = sb_yml_scalar(y, value, "stop", &text);
    if (st == SB_OK && strcmp(text, "true") != 0 &&
        strcmp(text, "false") != 0) {
        st = sb_yml_fail(y, value, "stop: expected true or false");
    }
    rule->stop = st == SB_OK && strcmp(text, "true") == 0;
    free(text);
    return st;
}

static void rules_rule_free(struct sb_rule *rule)
{
    size_t i;
    size_t f;

    if (rule == NULL) {
        return;
    }
    rules_cond_cleanup(&rule->match);
    for (i = 0; i < rule->send_count; i++) {
        if (rule->sends[i].has_when) {
            rules_cond_cleanup(&rule->sends[i].when);
        }
        for (f = 0; f < SB_OUTPUT_MAX_FIELDS; f++) {
            sb_template_free(rule->sends[i].fields[f]);
        }
    }
    free(rule->sends);
    sb_template_free(rule->throttle_key);
    free(rule->throttle_source);
    for (i = 0; i < rule->slot_count; i++) {
        free(rule->slots[i].key);
    }
    free(rule->slots);
    pthread_mutex_destroy(&rule->lock);
    free(rule->name);
    free(rule);
}

static const struct sb_rule *rules_find_rule(const struct sb_ruleset *set,
                                             const char *name)
{
    size_t i;

    for (i = 0; i < set->count; i++) {
        if (strcmp(set->rules[i]->name, name) == 0) {
            return set->rules[i];
        }
    }
    return NULL;
}

static enum sb_status rules_append(struct rules_compiler *rc, struct sb_yml *y,
                                   yaml_node_t *node, struct sb_rule *rule)
{
    struct sb_ruleset *set = rc->set;
    const struct sb_rule *same = rules_find_rule(set, rule->name);

    if (same != NULL) {
        sb_yml_fail(y, node, "duplicate rule name \"%s\"; the first is at %s",
                    rule->name, same->where);
        rules_rule_free(rule);
        return SB_ERR_INVALID;
    }
    if (set->count == SB_RULES_MAX) {
        rules_rule_free(rule);
        return sb_yml_fail(y, node, "more than %d rules", SB_RULES_MAX);
    }
    if (set->count == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 16;
        struct sb_rule **grown = realloc(set->rules, cap * sizeof(*grown));

        if (grown == NULL) {
            rules_rule_free(rule);
            return SB_ERR_NOMEM;
        }
        set->rules = grown;
        set->cap = cap;
    }
    set->rules[set->count++] = rule;
    return SB_OK;
}

static const char *const rules_rule_keys[] = {"name",     "match", "stop",
                                              "throttle", "send",  NULL};

static enum sb_status rules_compile_rule(struct rules_compiler *rc,
                                         struct sb_yml *y, yaml_node_t *node)
{
    struct sb_rule *rule = calloc(1, sizeof(*rule));
    yaml_node_pair_t *pair;
    enum sb_status st = SB_OK;
    char name[32];

    if (rule == NULL) {
        return SB_ERR_NOMEM;
    }
    pthread_mutex_init(&rule->lock, NULL);
    rule->match.kind = RULES_ALL;
    snprintf(rule->where, sizeof(rule->where), "%s:%u", y->file,
             (unsigned)node->start_mark.line + 1);
    for (pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = sb_yml_node(y, pair->key);
        enum sb_status step =
            sb_yml_check_key(y, node, pair, rules_rule_keys, "a rule");

        if (step == SB_OK) {
            step =
                rules_compile_key(rc, y, k, sb_yml_node(y, pair->value), rule);
        }
        if (step != SB_OK) {
            st = step;
        }
    }
    if (rule->name == NULL) {
        /* An unnamed rule is named by its place in the whole list. */
        snprintf(name, sizeof(name), "rule-%zu", rc->set->count + 1);
        rule->name = strdup(name);
    }
    if (st != SB_OK || rule->name == NULL) {
        rules_rule_free(rule);
        return st != SB_OK ? st : SB_ERR_NOMEM;
    }
    return rules_append(rc, y, node, rule);
}

static enum sb_status rules_compile_list_of_rules(struct rules_compiler *rc,
                                                  struct sb_yml *y,
                                                  yaml_node_t *node);

/* `- include: GLOB`: every matching file holds a list of rules. */
static enum sb_status rules_include(struct rules_compiler *rc, struct sb_yml *y,
                                    yaml_node_t *value)
{
    char *pattern = NULL;
    char *full = NULL;
    glob_t g;
    enum sb_status st = sb_yml_scalar(y, value, "include", &pattern);
    size_t i;

    if (st != SB_OK) {
        return st;
    }
    if (rc->depth >= SB_RULES_MAX_INCLUDES) {
        free(pattern);
        return sb_yml_fail(y, value, "include: nested more than %d deep",
                           SB_RULES_MAX_INCLUDES);
    }
    full = sb_yml_join_path(y->base_dir, pattern);
    free(pattern);
    if (full == NULL) {
        return SB_ERR_NOMEM;
    }
    memset(&g, 0, sizeof(g));
    if (glob(full, GLOB_ERR, NULL, &g) != 0 || g.gl_pathc == 0) {
        st = sb_yml_fail(y, value, "include: no file matches \"%s\"", full);
    }
    for (i = 0; st == SB_OK && i < g.gl_pathc; i++) {
        struct sb_yml inc;
        enum sb_status step = sb_yml_load(g.gl_pathv[i], y->errs, &inc);
        yaml_node_t *root = sb_yml_root(&inc);

        if (step == SB_OK && root == NULL) {
            step = SB_OK; /* an empty file holds no rules */
        } else if (step == SB_OK) {
            rc->depth++;
            step = rules_compile_list_of_rules(rc, &inc, root);
            rc->depth--;
        }
        sb_yml_cleanup(&inc);
        if (step == SB_ERR_NOMEM) {
            st = step;
        }
    }
    globfree(&g);
    free(full);
    return st;
}

static enum sb_status rules_compile_item(struct rules_compiler *rc,
                                         struct sb_yml *y, yaml_node_t *node)
{
    yaml_node_pair_t *first;
    const char *key;

    if (node->type != YAML_MAPPING_NODE) {
        return sb_yml_fail(y, node, "expected a rule (a mapping), got %s",
                           sb_yml_kind(node));
    }
    first = node->data.mapping.pairs.start;
    key = first < node->data.mapping.pairs.top
              ? sb_yml_text(sb_yml_node(y, first->key))
              : NULL;
    if (key != NULL && strcmp(key, "include") == 0) {
        if (node->data.mapping.pairs.top - first != 1) {
            return sb_yml_fail(y, node, "include: stands alone in its entry");
        }
        return rules_include(rc, y, sb_yml_node(y, first->value));
    }
    return rules_compile_rule(rc, y, node);
}

static enum sb_status rules_compile_list_of_rules(struct rules_compiler *rc,
                                                  struct sb_yml *y,
                                                  yaml_node_t *node)
{
    yaml_node_item_t *item;
    enum sb_status st = SB_OK;

    if (node->type != YAML_SEQUENCE_NODE) {
        return sb_yml_fail(y, node, "expected a list of rules, got %s",
                           sb_yml_kind(node));
    }
    for (item = node->data.sequence.items.start;
         item < node->data.sequence.items.top; item++) {
        enum sb_status step = rules_compile_item(rc, y, sb_yml_node(y, *item));

        if (step == SB_ERR_NOMEM) {
            return step;
        }
        if (step != SB_OK) {
            st = step;
        }
    }
    return st;
}

/* How much room routing needs at most, so it never runs out. */
static void rules_count_room(struct sb_ruleset *set)
{
    size_t i;

    set->total_sends = 0;
    set->throttled_rules = 0;
    for (i = 0; i < set->count; i++) {
        set->total_sends += set->rules[i]->send_count;
        set->throttled_rules += set->rules[i]->throttle_key != NULL;
    }
}

/*
 * The event types a rule is limited to by a top-level `event_type:` that
 * is a plain string or a list of strings; 0 when it can match any type.
 * Sets *out_value to the operand (a string or a list of strings).
 */
static int rules_rule_types(const struct sb_rule *rule,
                            const struct sb_json **out_value)
{
    size_t i;

    for (i = 0; rule->match.kind == RULES_ALL && i < rule->match.count; i++) {
        const struct rules_cond *c = &rule->match.children[i];
        const struct sb_json *v;
        size_t k;
        int strings = 1;

        if (c->kind != RULES_FIELD || strcmp(c->path.text, "event_type") != 0 ||
            c->op_count != 1) {
            continue;
        }
        v = c->ops[0].value;
        if (c->ops[0].kind == RULES_EQ && v->type == SB_JSON_STRING) {
            *out_value = v;
            return 1;
        }
        if (c->ops[0].kind != RULES_IN) {
            continue;
        }
        for (k = 0; k < v->u.array.count; k++) {
            strings &= v->u.array.items[k]->type == SB_JSON_STRING;
        }
        if (strings) {
            *out_value = v;
            return 1;
        }
    }
    return 0;
}

static int rules_type_cmp(const void *a, const void *b)
{
    return strcmp(((const struct rules_by_type *)a)->name,
                  ((const struct rules_by_type *)b)->name);
}

static struct rules_by_type *rules_find_type(struct sb_ruleset *set,
                                             const char *name)
{
    size_t i;

    for (i = 0; i < set->type_count; i++) {
        if (strcmp(set->types[i].name, name) == 0) {
            return &set->types[i];
        }
    }
    return NULL;
}

/* How many type names the rules name, repeats included. */
static size_t rules_count_type_names(const struct sb_ruleset *set)
{
    size_t total = 0;
    size_t i;

    for (i = 0; i < set->count; i++) {
        const struct sb_json *v = NULL;

        if (rules_rule_types(set->rules[i], &v)) {
            total += v->type == SB_JSON_STRING ? 1 : v->u.array.count;
        }
    }
    return total;
}

/* Every type name any rule is limited to, each once. */
static enum sb_status rules_collect_types(struct sb_ruleset *set)
{
    size_t i;
    size_t k;

    set->types = calloc(rules_count_type_names(set) + 1, sizeof(*set->types));
    if (set->types == NULL) {
        return SB_ERR_NOMEM;
    }
    for (i = 0; i < set->count; i++) {
        const struct sb_json *v = NULL;
        size_t n;

        if (!rules_rule_types(set->rules[i], &v)) {
            continue;
        }
        n = v->type == SB_JSON_STRING ? 1 : v->u.array.count;
        for (k = 0; k < n; k++) {
            const struct sb_json *t =
                v->type == SB_JSON_STRING ? v : v->u.array.items[k];

            if (rules_find_type(set, t->u.string.text) == NULL) {
                set->types[set->type_count++].name = t->u.string.text;
            }
        }
    }
    qsort(set->types, set->type_count, sizeof(*set->types), rules_type_cmp);
    return SB_OK;
}

/* Whether rule `rule` can match an event of type `name` (NULL: other). */
static int rules_may_match(const struct sb_rule *rule, const char *name)
{
    const struct sb_json *v = NULL;
    size_t k;

    if (!rules_rule_types(rule, &v)) {
        return 1;
    }
    if (name == NULL) {
        return 0;
    }
    if (v->type == SB_JSON_STRING) {
        return strcmp(v->u.string.text, name) == 0;
    }
    for (k = 0; k < v->u.array.count; k++) {
        if (strcmp(v->u.array.items[k]->u.string.text, name) == 0) {
            return 1;
        }
    }
    return 0;
}

static enum sb_status rules_fill_list(const struct sb_ruleset *set,
                                      struct rules_by_type *list)
{
    size_t i;

    list->rules = calloc(set->count + 1, sizeof(*list->rules));
    if (list->rules == NULL) {
        return SB_ERR_NOMEM;
    }
    for (i = 0; i < set->count; i++) {
        if (rules_may_match(set->rules[i], list->name)) {
            list->rules[list->count++] = i;
        }
    }
    return SB_OK;
}

/* Builds the per-type lists sb_rules_route and sb_rules_evaluate walk. */
static enum sb_status rules_index_types(struct sb_ruleset *set)
{
    enum sb_status st = rules_collect_types(set);
    size_t i;

    set->untyped = calloc(1, sizeof(*set->untyped));
    if (st != SB_OK || set->untyped == NULL) {
        return SB_ERR_NOMEM;
    }
    st = rules_fill_list(set, set->untyped);
    for (i = 0; st == SB_OK && i < set->type_count; i++) {
        st = rules_fill_list(set, &set->types[i]);
    }
    return st;
}

/* The rules an event must visit, by a binary search on its type. */
static const struct rules_by_type *
rules_for_type(const struct sb_ruleset *rules, const struct sb_event *event)
{
    struct rules_by_type key = {.name = event->event_type};
    const struct rules_by_type *found = NULL;

    if (rules->type_count > 0) {
        found = bsearch(&key, rules->types, rules->type_count,
                        sizeof(*rules->types), rules_type_cmp);
    }
    return found != NULL ? found : rules->untyped;
}

enum sb_status sb_rules_new_empty(struct sb_ruleset **out_rules)
{
    *out_rules = calloc(1, sizeof(**out_rules));
    return *out_rules != NULL ? SB_OK : SB_ERR_NOMEM;
}

/* Once the set is whole: a rule keeps its counters across reloads by name. */
static void rules_attach_metrics(struct sb_ruleset *set)
{
    size_t i;

    for (i = 0; i < set->count; i++) {
        set->rules[i]->metrics = sb_metrics_rule_get(set->rules[i]->name);
    }
}

enum sb_status sb_rules_compile(struct sb_yml *y, yaml_node_t *node,
                                const struct sb_rules_refs *refs,
                                struct sb_ruleset **out_rules)
{
    struct rules_compiler rc = {.refs = refs};
    size_t errors_before = sb_errors_total(y->errs);
    enum sb_status st = sb_rules_new_empty(&rc.set);

    *out_rules = NULL;
    if (st != SB_OK) {
        return st;
    }
    st = rules_compile_list_of_rules(&rc, y, node);
    rules_count_room(rc.set);
    if (st == SB_OK) {
        st = rules_index_types(rc.set);
    }
    if (st == SB_OK && sb_errors_total(y->errs) > errors_before) {
        st = SB_ERR_INVALID; /* an include recorded errors of its own */
    }
    if (st != SB_OK) {
        sb_rules_free(rc.set);
        return st;
    }
    rules_attach_metrics(rc.set);
    *out_rules = rc.set;
    return SB_OK;
}

size_t sb_rules_count(const struct sb_ruleset *rules)
{
    return rules->count;
}

const char *sb_rules_name(const struct sb_ruleset *rules, size_t index)
{
    return rules->rules[index]->name;
}

void sb_rules_free(struct sb_ruleset *rules)
{
    size_t i;

    if (rules == NULL) {
        return;
    }
    for (i = 0; i < rules->count; i++) {
        rules_rule_free(rules->rules[i]);
    }
    for (i = 0; i < rules->type_count; i++) {
        free(rules->types[i].rules);
    }
    free(rules->types);
    if (rules->untyped != NULL) {
        free(rules->untyped->rules);
        free(rules->untyped);
    }
    free(rules->rules);
    free(rules);
}

/* ---- throttling ------------------------------------------------------------
 */

static size_t rules_hash(const char *key)
{
    size_t h = 1469598103934665603ULL;

    for (; *key != '\0'; key++) {
        h = (h ^ (unsigned char)*key) * 1099511628211ULL;
    }
    return h;
}

/* The slot holding `key`, or the empty slot where it would go. */
static struct rules_throttle_slot *rules_slot(struct sb_rule *rule,
                                              const char *key)
{
    size_t i = rules_hash(key) % rule->slot_count;

    while (rule->slots[i].key != NULL && strcmp(rule->slots[i].key, key)) {
        i = (i + 1) % rule->slot_count;
    }
    return &rule->slots[i];
}

/* Drops keys whose window has passed; called when the table is full. */
static void rules_expire(struct sb_rule *rule, int64_t now)
{
    struct rules_throttle_slot *old = rule->slots;
    size_t n = rule->slot_count;
    size_t i;

    rule->slots = calloc(n, sizeof(*rule->slots));
    if (rule->slots == NULL) {
        rule->slots = old;
        return;
    }
    rule->used = 0;
    for (i = 0; i < n; i++) {
        if (old[i].key == NULL) {
            continue;
        }
        if (now - old[i].last_ms >= (int64_t)rule->throttle_ms) {
            free(old[i].key);
            continue;
        }
        *rules_slot(rule, old[i].key) = old[i];
        rule->used++;
    }
    free(old);
}

/*
 * Takes the throttle for `key` at `now`. Returns 1 when the rule may
 * send (and records the claim), 0 when it is held back. Fails open: a
 * table that cannot grow lets the event through rather than lose it.
 */
static int rules_throttle_take(struct sb_rule *rule, const char *key,
                               int64_t now, struct sb_route *route)
{
    struct rules_throttle_slot *slot;
    struct sb_throttle_claim *claim;
    int allowed = 1;

    pthread_mutex_lock(&rule->lock);
    if (rule->slots == NULL) {
        rule->slot_count = 2 * SB_RULES_THROTTLE_KEYS;
        rule->slots = calloc(rule->slot_count, sizeof(*rule->slots));
    }
    slot = rule->slots != NULL ? rules_slot(rule, key) : NULL;
    if (slot != NULL && slot->key == NULL &&
        rule->used >= SB_RULES_THROTTLE_KEYS) {
        /* Only a new key needs room: a known one keeps its window. */
        rules_expire(rule, now);
        slot = rules_slot(rule, key);
    }
    if (slot == NULL ||
        (slot->key == NULL && rule->used >= SB_RULES_THROTTLE_KEYS)) {
        pthread_mutex_unlock(&rule->lock);
        return 1;
    }
    if (slot->key != NULL && now - slot->last_ms < (int64_t)rule->throttle_ms) {
        allowed = 0;
    } else {
        claim = &route->claims[route->claim_count];
        claim->rule = rule;
        claim->previous_ms = slot->key != NULL ? slot->last_ms : 0;
        claim->key = strdup(key);
        if (slot->key == NULL) {
            slot->key = strdup(key);
            rule->used += slot->key != NULL;
        }
        if (slot->key != NULL && claim->key != NULL) {
            slot->last_ms = now;
            route->claim_count++;
        } else {
            free(claim->key);
        }
    }
    pthread_mutex_unlock(&rule->lock);
    return allowed;
}

/*
 * Copies `from`'s keys into `to`'s empty table, with from->lock held. A
 * key whose window has passed is copied too: it counts as free anyway.
 */
static void rules_copy_throttle(struct sb_rule *to, const struct sb_rule *from)
{
    size_t i;

    to->slot_count = from->slot_count;
    to->slots = calloc(to->slot_count, sizeof(*to->slots));
    if (to->slots == NULL) {
        to->slot_count = 0;
        return; /* fails open: the new rule starts with no key held */
    }
    for (i = 0; i < from->slot_count; i++) {
        struct rules_throttle_slot *slot;

        if (from->slots[i].key == NULL) {
            continue;
        }
        slot = rules_slot(to, from->slots[i].key);
        slot->key = strdup(from->slots[i].key);
        slot->last_ms = from->slots[i].last_ms;
        to->used += slot->key != NULL;
    }
}

void sb_rules_inherit_throttles(struct sb_ruleset *next,
                                const struct sb_ruleset *old)
{
    size_t i;
    size_t k;

    for (i = 0; i < next->count; i++) {
        struct sb_rule *to = next->rules[i];

        for (k = 0; to->throttle_source != NULL && k < old->count; k++) {
            struct sb_rule *from = old->rules[k];

            if (from->throttle_source == NULL ||
                strcmp(from->name, to->name) != 0 ||
                strcmp(from->throttle_source, to->throttle_source) != 0 ||
                from->throttle_ms != to->throttle_ms) {
                continue;
            }
            pthread_mutex_lock(&from->lock);
            if (from->slots != NULL) {
                rules_copy_throttle(to, from);
            }
            pthread_mutex_unlock(&from->lock);
            break;
        }
    }
}

void sb_rules_release(const struct sb_ruleset *rules, struct sb_route *route)
{
    size_t i;

    (void)rules;
    for (i = 0; i < route->claim_count; i++) {
        struct sb_throttle_claim *c = &route->claims[i];
        struct rules_throttle_slot *slot;

        pthread_mutex_lock(&c->rule->lock);
        slot = rules_slot(c->rule, c->key);
        if (slot->key != NULL) {
            /* 0 = the key was free: far enough back to be free again. */
            slot->last_ms = c->previous_ms != 0
                                ? c->previous_ms
                                : -(int64_t)c->rule->throttle_ms;
        }
        pthread_mutex_unlock(&c->rule->lock);
    }
}

/* ---- routing
 * ----------------------------------------------------------------- */

/*
 * Renders one field into `one`. A field that overflows its cap is kept
 * cut short: an event must never be refused because a message is long.
 */
static enum sb_status rules_render_field(const struct sb_template *t,
                                         const struct sb_template_context *tc,
                                         enum sb_escape escape,
                                         struct sb_buf *one)
{
    enum sb_status st;

    sb_buf_reset(one);
    st = t != NULL ? sb_template_render(t, tc, escape, one)
                   : sb_output_envelope(tc, one);
    return st == SB_ERR_FULL ? SB_OK : st;
}

/*
 * Renders every field of one delivery into {"field":"text",...}. A field
 * whose default is the envelope is stored as null: the envelope holds the
 * whole payload, which the event row already keeps, so the plugin builds
 * it from the event at delivery. A dry run shows its redacted shape.
 */
static enum sb_status rules_render_fields(const struct rules_send *send,
                                          const struct sb_template_context *tc,
                                          char **out)
{
    const struct sb_output_kind *kind = send->output->kind;
    struct sb_buf fields;
    struct sb_buf one;
    enum sb_status st;
    size_t i;

    sb_buf_init(&fields, SB_OUTPUT_MAX_FIELDS * (SB_TEMPLATE_MAX_OUTPUT * 6));
    sb_buf_init(&one, SB_TEMPLATE_MAX_OUTPUT);
    st = sb_buf_addc(&fields, '{');
    for (i = 0; st == SB_OK && i < kind->field_count; i++) {
        const struct sb_template *t = send->fields[i] != NULL
                                          ? send->fields[i]
                                          : send->output->defaults[i];
        int envelope = t == NULL && !tc->redact;

        if (!envelope) {
            st = rules_render_field(t, tc, kind->fields[i].escape, &one);
        }
        if (st == SB_OK && i > 0) {
            st = sb_buf_addc(&fields, ',');
        }
        if (st == SB_OK) {
            st = sb_json_write_string(kind->fields[i].name,
                                      strlen(kind->fields[i].name), &fields);
        }
        if (st == SB_OK) {
            st = sb_buf_addc(&fields, ':');
        }
        if (st == SB_OK) {
            st = envelope
                     ? sb_buf_adds(&fields, "null")
                     : sb_json_write_string(sb_buf_str(&one), one.len, &fields);
        }
    }
    if (st == SB_OK) {
        st = sb_buf_addc(&fields, '}');
    }
    sb_buf_cleanup(&one);
    *out = st == SB_OK ? strdup(sb_buf_str(&fields)) : NULL;
    sb_buf_cleanup(&fields);
    if (st == SB_OK && *out == NULL) {
        st = SB_ERR_NOMEM;
    }
    return st;
}

/* The rendered throttle key of `rule` for this event. */
static enum sb_status rules_throttle_key(const struct sb_rule *rule,
                                         const struct sb_template_context *tc,
                                         struct sb_buf *key)
{
    struct sb_template_context real = *tc;

    /* The key must be the real value even in a dry run: it is not shown. */
    real.redact = 0;
    sb_buf_reset(key);
    return sb_template_render(rule->throttle_key, &real, SB_ESCAPE_NONE, key);
}

/* Plans the sends of a matched rule. */
static enum sb_status rules_plan_sends(const struct sb_rule *rule,
                                       struct rules_eval *e,
                                       const struct sb_template_context *tc,
                                       struct sb_route *route,
                                       struct sb_rules_trace *trace)
{
    enum sb_status st = SB_OK;
    size_t i;

    for (i = 0; st == SB_OK && i < rule->send_count; i++) {
        const struct rules_send *send = &rule->sends[i];
        struct sb_delivery_plan *d;
        /* Shorter than a trace line: the names go in front of it. */
        char why[192] = "";

        e->why = trace != NULL ? why : NULL;
        e->why_cap = sizeof(why);
        if (send->has_when && !rules_eval_cond(&send->when, e)) {
            if (trace != NULL && trace->skipped_count < SB_RULES_MAX_SENDS) {
                snprintf(trace->skipped[trace->skipped_count++],
                         sizeof(trace->skipped[0]), "%s (rule %s): when: %s",
                         send->output->name, rule->name, why);
            }
            continue;
        }
        d = &route->deliveries[route->count];
        d->output = send->output->name;
        d->rule = rule->name;
        d->send_index = i;
        st = rules_render_fields(send, tc, &d->fields);
        if (st == SB_OK) {
            route->count++;
        }
    }
    return st;
}

/* Evaluates one rule; returns whether evaluation should stop after it. */
static enum sb_status
rules_route_one(struct sb_rule *rule, struct rules_eval *e,
                struct sb_template_context *tc, struct sb_route *route,
                struct sb_rules_trace *trace, struct sb_buf *key, int *out_stop)
{
    struct sb_rule_trace *t = NULL;
    char why[256] = "";
    int matched;

    if (trace != NULL && trace->count < SB_RULES_MAX) {
        t = &trace->rules[trace->count++];
        memset(t, 0, sizeof(*t));
        t->rule = rule->name;
    }
    e->why = t != NULL ? why : NULL;
    e->why_cap = sizeof(why);
    matched = rules_eval_cond(&rule->match, e);
    *out_stop = matched && rule->stop;
    if (t != NULL) {
        t->matched = matched;
        t->stopped = *out_stop;
        snprintf(t->why, sizeof(t->why), "%s", why);
    }
    if (!matched) {
        return SB_OK;
    }
    if (trace == NULL) {
        sb_metrics_rule_matched(rule->metrics); /* a dry run counts nothing */
    }
    tc->rule = rule->name;
    if (rule->throttle_key != NULL) {
        enum sb_status st = rules_throttle_key(rule, tc, key);

        if (st == SB_OK && !rules_throttle_take(rule, sb_buf_str(key),
                                                e->received_ms, route)) {
            route->throttled++;
            if (t != NULL) {
                t->throttled = 1;
            }
            if (trace == NULL) {
                sb_metrics_rule_throttled(rule->metrics);
            }
            return SB_OK;
        }
    }
    return rules_plan_sends(rule, e, tc, route, trace);
}

enum sb_status sb_rules_route(const struct sb_ruleset *rules,
                              const struct sb_event *event, int redact,
                              struct sb_route *route,
                              struct sb_rules_trace *trace)
{
    char received[SB_EVENT_TIME_LEN + 1];
    struct rules_eval e = {.event = sb_event_json(event),
                           .received_ms = event->received_ms};
    struct sb_template_context tc = {.event = e.event,
                                     .event_id = event->id,
                                     .received_at = received,
                                     .redact = redact};
    struct sb_buf key;
    enum sb_status st = SB_OK;
    size_t i;
    int stop = 0;

    memset(route, 0, sizeof(*route));
    route->deliveries =
        calloc(rules->total_sends + 1, sizeof(*route->deliveries));
    route->claims = calloc(rules->throttled_rules + 1, sizeof(*route->claims));
    if (route->deliveries == NULL || route->claims == NULL) {
        sb_route_cleanup(route);
        return SB_ERR_NOMEM;
    }
    if (trace != NULL) {
        trace->count = 0;
        trace->skipped_count = 0;
    }
    sb_event_format_time(event->received_ms, received);
    sb_buf_init(&key, SB_TEMPLATE_MAX_OUTPUT);
    if (trace != NULL) {
        /* A dry run explains every rule, even those for other types. */
        for (i = 0; st == SB_OK && !stop && i < rules->count; i++) {
            st = rules_route_one(rules->rules[i], &e, &tc, route, trace, &key,
                                 &stop);
        }
    } else {
        const struct rules_by_type *list = rules_for_type(rules, event);

        for (i = 0; list && st == SB_OK && !stop && i < list->count; i++) {
            st = rules_route_one(rules->rules[list->rules[i]], &e, &tc, route,
                                 NULL, &key, &stop);
        }
    }
    sb_buf_cleanup(&key);
    if (st != SB_OK) {
        sb_rules_release(rules, route);
        sb_route_cleanup(route);
    }
    return st;
}

void sb_route_cleanup(struct sb_route *route)
{
    size_t i;

    for (i = 0; i < route->count; i++) {
        free(route->deliveries[i].fields);
        route->deliveries[i].fields = NULL;
    }
    for (i = 0; i < route->claim_count; i++) {
        free(route->claims[i].key);
        route->claims[i].key = NULL;
    }
    free(route->deliveries);
    free(route->claims);
    memset(route, 0, sizeof(*route));
}

size_t sb_rules_evaluate(const struct sb_ruleset *rules,
                         const struct sb_event *event, unsigned char *matched)
{
    struct rules_eval e = {.event = sb_event_json(event),
                           .received_ms = event->received_ms};
    const struct rules_by_type *list = rules_for_type(rules, event);
    size_t count = 0;
    size_t i;

    memset(matched, 0, rules->count);
    for (i = 0; list != NULL && i < list->count; i++) {
        const struct sb_rule *rule = rules->rules[list->rules[i]];

        matched[list->rules[i]] = rules_eval_cond(&rule->match, &e);
        if (matched[list->rules[i]]) {
            count++;
            if (rule->stop) {
                break;
            }
        }
    }
    return count;
}
