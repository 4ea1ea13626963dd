/* SPDX-License-Identifier: MIT */
/*
 * Templates: parsed once into a flat list of nodes (literal text, value
 * tags, and section openings that know where their section ends), then
 * rendered by one loop over that list, with no recursion and no memory
 * but the output buffer's. Values are escaped in place in the output.
 */
#include "build_config.h"

#include "template.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TPL_QUOTE_MAX 80  /* bytes of a path quoted in an error message */
#define TPL_REP_MAX   8   /* the longest escape: \u00XX or \ufffd */
#define TPL_PAD       256 /* bytes added per step when an escape grows */

/* Messages, whole on one line each so they can be found with grep. */
#define TPL_MSG_UNCLOSED_TAG \
    "unclosed \"{{\"; expected \"}}\" before the end of the line"
#define TPL_MSG_FOREIGN \
    "unsupported tag \"{{%c\"; expected {{path}}, {{#path}} or {{^path}}"
#define TPL_MSG_NO_PATH \
    "tag has no path; expected a field path such as {{event_type}}"
#define TPL_MSG_BAD_CHAR \
    "bad path \"%s\"; expected a field path with no spaces or braces"
#define TPL_MSG_BAD_PATH \
    "bad path \"%s\": %s at character %u; expected e.g. payload.items[0].sku"
#define TPL_MSG_DEPTH \
    "sections nested more than %d deep; expected at most %d open at once"
#define TPL_MSG_STRAY \
    "{{/%s}} closes no open section; expected {{#%s}} or {{^%s}} first"
#define TPL_MSG_MISMATCH \
    "{{/%s}} does not match \"%s\" opened at %u:%u; expected {{/%s}}"
#define TPL_MSG_UNCLOSED "unclosed section \"%s\" opened here; expected {{/%s}}"

enum tpl_kind {
    TPL_TEXT,
    TPL_VALUE,
    TPL_SECTION,
    TPL_INVERTED,
};

/* Where a tag's value comes from: the event body or the context. */
enum tpl_source {
    TPL_FROM_EVENT,
    TPL_FROM_EVENT_ID,
    TPL_FROM_RECEIVED_AT,
    TPL_FROM_RULE,
};

struct tpl_node {
    enum tpl_kind kind;
    enum tpl_source source;
    size_t off; /* the literal text, or the tag's path, in tpl->text */
    size_t len;
    struct sb_json_path path; /* TPL_FROM_EVENT tags only */
    size_t end;               /* sections: the first node after it */
};

struct sb_template {
    char *text; /* a copy of the source; each path NUL-terminated in it */
    struct tpl_node *nodes;
    size_t count;
    size_t alloc;
};

/* A section still waiting for its close tag. */
struct tpl_open {
    size_t node;
    unsigned line;
    unsigned col;
};

struct tpl_parser {
    struct sb_template *tpl;
    size_t pos;    /* the next byte of tpl->text to read */
    unsigned line; /* where `pos` is, 1-based */
    unsigned col;
    struct tpl_open open[SB_TEMPLATE_MAX_DEPTH];
    size_t depth;
    struct sb_error *err;
};

/* One "{{...}}" as found in the text, before it becomes a node. */
struct tpl_tag {
    char sigil;   /* '\0', '#', '^' or '/' */
    size_t start; /* the path, trimmed: [start, end) of tpl->text */
    size_t end;
    size_t next; /* the byte after "}}" */
    unsigned line;
    unsigned col;
};

static const struct {
    const char *name;
    enum tpl_source source;
} tpl_builtins[] = {
    {"event_id", TPL_FROM_EVENT_ID},
    {"received_at", TPL_FROM_RECEIVED_AT},
    {"rule", TPL_FROM_RULE},
};

/* Bytes of nothing, appended to make room before an escape grows. */
static const char tpl_pad[TPL_PAD];

/* ---- parsing ----------------------------------------------------------- */

static enum sb_status tpl_fail(struct tpl_parser *p, unsigned line,
                               unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static enum sb_status tpl_fail(struct tpl_parser *p, unsigned line,
                               unsigned col, const char *fmt, ...)
{
    char msg[sizeof(p->err->msg)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sb_error_at(p->err, "", line, col, "%s", msg);
    return SB_ERR_INVALID;
}

/*
 * A path as a message quotes it: shortened, and with control bytes as
 * '?', so the message stays one readable line.
 */
static const char *tpl_quote(const char *s, size_t n,
                             char buf[TPL_QUOTE_MAX + 4])
{
    size_t i;
    size_t len = n < TPL_QUOTE_MAX ? n : TPL_QUOTE_MAX;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        buf[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (len < n) {
        memcpy(buf + len, "...", 3);
        len += 3;
    }
    buf[len] = '\0';
    return buf;
}

/* Moves the read position to `to`, counting lines and characters. */
static void tpl_advance(struct tpl_parser *p, size_t to)
{
    const char *s = p->tpl->text;

    for (; p->pos < to; p->pos++) {
        unsigned char c = (unsigned char)s[p->pos];

        if (c == '\n') {
            p->line++;
            p->col = 1;
        } else if ((c & 0xc0) != 0x80) {
            /* A UTF-8 continuation byte is not a character of its own. */
            p->col++;
        }
    }
}

static enum sb_status tpl_push(struct sb_template *tpl,
                               const struct tpl_node *node)
{
    struct tpl_node *nodes;
    size_t alloc;

    if (tpl->count == tpl->alloc) {
        alloc = tpl->alloc == 0 ? 8 : tpl->alloc * 2;
        nodes = realloc(tpl->nodes, alloc * sizeof(*nodes));
        if (nodes == NULL) {
            return SB_ERR_NOMEM;
        }
        tpl->nodes = nodes;
        tpl->alloc = alloc;
    }
    tpl->nodes[tpl->count++] = *node;
    return SB_OK;
}

static enum sb_status tpl_add_text(struct sb_template *tpl, size_t off,
                                   size_t len)
{
    struct tpl_node node;

    memset(&node, 0, sizeof(node));
    node.kind = TPL_TEXT;
    node.off = off;
    node.len = len;
    return tpl_push(tpl, &node);
}

static int tpl_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Finds the "}}" that ends the tag opened at p->pos. A tag stays on its
 * line and holds no other "{{", so a forgotten "}}" is reported where it
 * was forgotten instead of swallowing the text up to a later tag.
 */
static enum sb_status tpl_find_close(struct tpl_parser *p, struct tpl_tag *tag,
                                     size_t *out_close)
{
    const char *s = p->tpl->text;
    size_t i;

    *out_close = 0;
    for (i = p->pos + 2; s[i] != '}' || s[i + 1] != '}'; i++) {
        if (s[i] == '\0' || s[i] == '\n' || s[i] == '\r' ||
            (s[i] == '{' && s[i + 1] == '{')) {
            return tpl_fail(p, tag->line, tag->col, TPL_MSG_UNCLOSED_TAG);
        }
    }
    *out_close = i;
    return SB_OK;
}

/* The sigils of Mustache tags this language does not have. */
static int tpl_is_foreign_sigil(char c)
{
    return c != '\0' && strchr("!&{>=<$", c) != NULL;
}

/* Checks the trimmed path: characters of a field path, nothing else. */
static enum sb_status tpl_check_path(struct tpl_parser *p,
                                     const struct tpl_tag *tag)
{
    const char *s = p->tpl->text;
    char q[TPL_QUOTE_MAX + 4];
    size_t i;

    if (tag->start == tag->end) {
        return tpl_fail(p, tag->line, tag->col, TPL_MSG_NO_PATH);
    }
    for (i = tag->start; i < tag->end; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c <= 0x20 || c == 0x7f || c == '{' || c == '}') {
            return tpl_fail(
                p, tag->line, tag->col, TPL_MSG_BAD_CHAR,
                tpl_quote(s + tag->start, tag->end - tag->start, q));
        }
    }
    return SB_OK;
}

/* Reads the tag at p->pos into `tag`: its sigil and its trimmed path. */
static enum sb_status tpl_scan_tag(struct tpl_parser *p, struct tpl_tag *tag)
{
    const char *s = p->tpl->text;
    size_t close;
    enum sb_status rc;

    tag->line = p->line;
    tag->col = p->col;
    rc = tpl_find_close(p, tag, &close);
    if (rc != SB_OK) {
        return rc;
    }
    tag->next = close + 2;

    tag->start = p->pos + 2;
    while (tpl_is_blank(s[tag->start])) {
        tag->start++;
    }
    tag->sigil = '\0';
    if (tpl_is_foreign_sigil(s[tag->start])) {
        return tpl_fail(p, tag->line, tag->col, TPL_MSG_FOREIGN, s[tag->start]);
    }
    if (s[tag->start] == '#' || s[tag->start] == '^' || s[tag->start] == '/') {
        tag->sigil = s[tag->start++];
    }
    while (tag->start < close && tpl_is_blank(s[tag->start])) {
        tag->start++;
    }
    tag->end = close;
    while (tag->end > tag->start && tpl_is_blank(s[tag->end - 1])) {
        tag->end--;
    }
    return tpl_check_path(p, tag);
}

/* Fills in where a tag's value comes from: a built-in or a path. */
static enum sb_status tpl_compile(struct tpl_parser *p,
                                  const struct tpl_tag *tag,
                                  struct tpl_node *node)
{
    char *s = p->tpl->text;
    char q[TPL_QUOTE_MAX + 4];
    struct sb_error path_err;
    enum sb_status rc;
    size_t i;

    node->off = tag->start;
    node->len = tag->end - tag->start;
    /*
     * The tag's own bytes are never literal text, so the path may end in
     * place: the compiler and redaction read it as a C string.
     */
    s[tag->end] = '\0';
    for (i = 0; i < sizeof(tpl_builtins) / sizeof(tpl_builtins[0]); i++) {
        if (strcmp(s + tag->start, tpl_builtins[i].name) == 0) {
            node->source = tpl_builtins[i].source;
            return SB_OK;
        }
    }

    node->source = TPL_FROM_EVENT;
    sb_error_clear(&path_err);
    rc = sb_json_path_compile(s + tag->start, &node->path, &path_err);
    if (rc == SB_ERR_INVALID) {
        return tpl_fail(p, tag->line, tag->col, TPL_MSG_BAD_PATH,
                        tpl_quote(s + tag->start, node->len, q), path_err.msg,
                        path_err.col);
    }
    return rc;
}

/* A value tag or a section opening becomes a node. */
static enum sb_status tpl_open_tag(struct tpl_parser *p,
                                   const struct tpl_tag *tag)
{
    struct tpl_node node;
    enum sb_status rc;

    memset(&node, 0, sizeof(node));
    node.kind = tag->sigil == '#'   ? TPL_SECTION
                : tag->sigil == '^' ? TPL_INVERTED
                                    : TPL_VALUE;
    if (node.kind != TPL_VALUE && p->depth == SB_TEMPLATE_MAX_DEPTH) {
        return tpl_fail(p, tag->line, tag->col, TPL_MSG_DEPTH,
                        SB_TEMPLATE_MAX_DEPTH, SB_TEMPLATE_MAX_DEPTH);
    }
    rc = tpl_compile(p, tag, &node);
    if (rc == SB_OK) {
        rc = tpl_push(p->tpl, &node);
    }
    if (rc != SB_OK) {
        sb_json_path_cleanup(&node.path);
        return rc;
    }

    if (node.kind != TPL_VALUE) {
        p->open[p->depth].node = p->tpl->count - 1;
        p->open[p->depth].line = tag->line;
        p->open[p->depth].col = tag->col;
        p->depth++;
    }
    return SB_OK;
}

/* A close tag ends the innermost open section, which it must name. */
static enum sb_status tpl_close(struct tpl_parser *p, const struct tpl_tag *tag)
{
    const char *s = p->tpl->text;
    size_t len = tag->end - tag->start;
    const struct tpl_open *open;
    const struct tpl_node *node;
    char q[TPL_QUOTE_MAX + 4];
    char q_open[TPL_QUOTE_MAX + 4];

    tpl_quote(s + tag->start, len, q);
    if (p->depth == 0) {
        return tpl_fail(p, tag->line, tag->col, TPL_MSG_STRAY, q, q, q);
    }
    open = &p->open[p->depth - 1];
    node = &p->tpl->nodes[open->node];
    if (node->len != len || memcmp(s + node->off, s + tag->start, len) != 0) {
        tpl_quote(s + node->off, node->len, q_open);
        return tpl_fail(p, tag->line, tag->col, TPL_MSG_MISMATCH, q, q_open,
                        open->line, open->col, q_open);
    }
    p->tpl->nodes[open->node].end = p->tpl->count;
    p->depth--;
    return SB_OK;
}

static enum sb_status tpl_parse_tag(struct tpl_parser *p)
{
    struct tpl_tag tag = {0};
    enum sb_status rc;

    rc = tpl_scan_tag(p, &tag);
    if (rc != SB_OK) {
        return rc;
    }
    if (tag.sigil == '/') {
        rc = tpl_close(p, &tag);
    } else {
        rc = tpl_open_tag(p, &tag);
    }
    if (rc != SB_OK) {
        return rc;
    }
    tpl_advance(p, tag.next);
    return SB_OK;
}

static enum sb_status tpl_parse_all(struct tpl_parser *p)
{
    const char *s = p->tpl->text;
    const struct tpl_open *open;
    char q[TPL_QUOTE_MAX + 4];
    enum sb_status rc = SB_OK;

    while (rc == SB_OK && s[p->pos] != '\0') {
        const char *tag = strstr(s + p->pos, "{{");
        size_t at;

        /* strlen from `pos`: earlier paths end in NULs of their own. */
        at = tag != NULL ? (size_t)(tag - s) : p->pos + strlen(s + p->pos);

        if (at > p->pos) {
            rc = tpl_add_text(p->tpl, p->pos, at - p->pos);
        }
        tpl_advance(p, at);
        if (rc == SB_OK && tag != NULL) {
            rc = tpl_parse_tag(p);
        }
    }
    if (rc != SB_OK || p->depth == 0) {
        return rc;
    }

    /* The innermost is the one that had to be closed first. */
    open = &p->open[p->depth - 1];
    tpl_quote(s + p->tpl->nodes[open->node].off, p->tpl->nodes[open->node].len,
              q);
    return tpl_fail(p, open->line, open->col, TPL_MSG_UNCLOSED, q, q);
}

enum sb_status sb_template_parse(const char *text, struct sb_template **out_tpl,
                                 struct sb_error *err)
{
    struct sb_template *tpl;
    struct tpl_parser p;
    enum sb_status rc;

    *out_tpl = NULL;
    tpl = calloc(1, sizeof(*tpl));
    if (tpl == NULL) {
        return SB_ERR_NOMEM;
    }
    tpl->text = strdup(text);
    if (tpl->text == NULL) {
        free(tpl);
        return SB_ERR_NOMEM;
    }

    memset(&p, 0, sizeof(p));
    p.tpl = tpl;
    p.line = 1;
    p.col = 1;
    p.err = err;
    rc = tpl_parse_all(&p);
    if (rc != SB_OK) {
        sb_template_free(tpl);
        return rc;
    }
    *out_tpl = tpl;
    return SB_OK;
}

/* ---- escaping ---------------------------------------------------------- */

/* The length of the valid UTF-8 sequence at `s`, or 0 (RFC 3629 §4). */
static size_t tpl_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;
    size_t len;
    size_t i;

    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        /* No overlong forms, no UTF-16 surrogates. */
        len = 3;
        lo = s[0] == 0xe0 ? 0xa0 : 0x80;
        hi = s[0] == 0xed ? 0x9f : 0xbf;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        /* No overlong forms, nothing past U+10FFFF. */
        len = 4;
        lo = s[0] == 0xf0 ? 0x90 : 0x80;
        hi = s[0] == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (i = 2; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
    }
    return len;
}

/*
 * Inside a JSON string (RFC 8259 §7). Bytes that are not UTF-8 become
 * U+FFFD so the string the text lands in stays valid JSON.
 */
static size_t tpl_escape_json(const unsigned char *s, size_t n,
                              char rep[TPL_REP_MAX], size_t *out_used)
{
    static const char hex[] = "0123456789abcdef";
    static const char short_forms[][2] = {
        {'"', '"'},  {'\\', '\\'}, {'\b', 'b'}, {'\f', 'f'},
        {'\n', 'n'}, {'\r', 'r'},  {'\t', 't'},
    };
    size_t i;

    *out_used = 1;
    for (i = 0; i < sizeof(short_forms) / sizeof(short_forms[0]); i++) {
        if (s[0] == (unsigned char)short_forms[i][0]) {
            rep[0] = '\\';
            rep[1] = short_forms[i][1];
            return 2;
        }
    }
    if (s[0] < 0x20) {
        memcpy(rep, "\\u00", 4);
        rep[4] = hex[s[0] >> 4];
        rep[5] = hex[s[0] & 0xf];
        return 6;
    }
    if (s[0] < 0x80) {
        return 0;
    }
    *out_used = tpl_utf8_len(s, n);
    if (*out_used == 0) {
        *out_used = 1;
        memcpy(rep, "\\ufffd", 6);
        return 6;
    }
    return 0;
}

static size_t tpl_escape_slack(unsigned char c, char rep[TPL_REP_MAX])
{
    const char *entity;

    switch (c) {
    case '&':
        entity = "&amp;";
        break;
    case '<':
        entity = "&lt;";
        break;
    case '>':
        entity = "&gt;";
        break;
    default:
        return 0;
    }
    memcpy(rep, entity, strlen(entity));
    return strlen(entity);
}

/*
 * Escapes the unit at `s`: one byte, or in JSON mode one whole UTF-8
 * sequence, whose length goes to *out_used. Returns the length of the
 * replacement written to `rep`, or 0 when the unit stays as it is. A
 * replacement is never shorter than its unit, which in-place escaping
 * relies on.
 */
static size_t tpl_escape_unit(enum sb_escape mode, const unsigned char *s,
                              size_t n, char rep[TPL_REP_MAX], size_t *out_used)
{
    *out_used = 1;
    switch (mode) {
    case SB_ESCAPE_JSON:
        return tpl_escape_json(s, n, rep, out_used);
    case SB_ESCAPE_SLACK:
        return tpl_escape_slack(s[0], rep);
    case SB_ESCAPE_HEADER:
        if (s[0] == '\r' || s[0] == '\n') {
            rep[0] = ' ';
            return 1;
        }
        return 0;
    case SB_ESCAPE_NONE:
        break;
    }
    return 0;
}

static size_t tpl_escaped_len(enum sb_escape mode, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    char rep[TPL_REP_MAX];
    size_t total = 0;
    size_t used;
    size_t i = 0;

    while (i < n) {
        size_t k = tpl_escape_unit(mode, u + i, n - i, rep, &used);

        total += k != 0 ? k : used;
        i += used;
    }
    return total;
}

/*
 * Writes the escaping of src[0..n) to `dst`. `dst` may overlap `src`
 * from below: each unit is read before its replacement is written, and
 * the writes never pass the next unread byte as long as `dst` starts no
 * further below `src` than the whole escaping grows.
 */
static void tpl_escape_copy(enum sb_escape mode, const char *src, size_t n,
                            char *dst)
{
    const unsigned char *u = (const unsigned char *)src;
    char rep[TPL_REP_MAX];
    size_t used;
    size_t i = 0;
    size_t w = 0;

    while (i < n) {
        size_t k = tpl_escape_unit(mode, u + i, n - i, rep, &used);

        if (k != 0) {
            memcpy(dst + w, rep, k);
            w += k;
        } else {
            memmove(dst + w, src + i, used);
            w += used;
        }
        i += used;
    }
}

/* Drops what was appended after `len`, such as a half-escaped value. */
static void tpl_truncate(struct sb_buf *out, size_t len)
{
    out->len = len;
    if (out->data != NULL) {
        out->data[len] = '\0';
    }
}

/* Appends `n` bytes of room, all of them or none. */
static enum sb_status tpl_grow(struct sb_buf *out, size_t n)
{
    size_t start = out->len;
    enum sb_status rc = SB_OK;

    if (n > out->max - out->len) {
        return SB_ERR_FULL;
    }
    while (n > 0 && rc == SB_OK) {
        size_t k = n < sizeof(tpl_pad) ? n : sizeof(tpl_pad);

        rc = sb_buf_add(out, tpl_pad, k);
        n -= k;
    }
    if (rc != SB_OK) {
        tpl_truncate(out, start);
    }
    return rc;
}

/*
 * Escapes, in place, everything appended to `out` since `start`. The
 * raw bytes move to the end of the grown region and are escaped from
 * there back to `start`, so no second buffer is needed. On failure the
 * region is dropped whole: raw text must never stay in the output.
 */
static enum sb_status tpl_escape_from(struct sb_buf *out, size_t start,
                                      enum sb_escape mode)
{
    size_t raw = out->len - start;
    size_t extra;
    enum sb_status rc;

    if (mode == SB_ESCAPE_NONE || raw == 0) {
        return SB_OK;
    }
    extra = tpl_escaped_len(mode, out->data + start, raw) - raw;
    rc = tpl_grow(out, extra);
    if (rc != SB_OK) {
        tpl_truncate(out, start);
        return rc;
    }
    memmove(out->data + start + extra, out->data + start, raw);
    tpl_escape_copy(mode, out->data + start + extra, raw, out->data + start);
    return SB_OK;
}

/* ---- rendering --------------------------------------------------------- */

/*
 * The value a tag names, or NULL when absent. A built-in is dressed as
 * a JSON string in `scratch` so every value takes the same path.
 */
static const struct sb_json *tpl_resolve(const struct tpl_node *node,
                                         const struct sb_template_context *ctx,
                                         struct sb_json *scratch)
{
    const char *text = NULL;

    switch (node->source) {
    case TPL_FROM_EVENT:
        if (ctx->event == NULL) {
            return NULL;
        }
        return sb_json_path_get(&node->path, ctx->event);
    case TPL_FROM_EVENT_ID:
        text = ctx->event_id;
        break;
    case TPL_FROM_RECEIVED_AT:
        text = ctx->received_at;
        break;
    case TPL_FROM_RULE:
        text = ctx->rule;
        break;
    }
    if (text == NULL) {
        return NULL;
    }
    memset(scratch, 0, sizeof(*scratch));
    scratch->type = SB_JSON_STRING;
    scratch->u.string.text = text;
    scratch->u.string.len = strlen(text);
    return scratch;
}

/* Whether a number's text is not zero: "0", "-0.0" and "0e7" are zero. */
static int tpl_number_nonzero(const char *text, size_t len)
{
    size_t i;

    /* The exponent cannot make a zero mantissa nonzero, nor the reverse. */
    for (i = 0; i < len && text[i] != 'e' && text[i] != 'E'; i++) {
        if (text[i] >= '1' && text[i] <= '9') {
            return 1;
        }
    }
    return 0;
}

static int tpl_truthy(const struct sb_json *v)
{
    if (v == NULL) {
        return 0;
    }
    switch (v->type) {
    case SB_JSON_NULL:
    case SB_JSON_FALSE:
        return 0;
    case SB_JSON_TRUE:
        return 1;
    case SB_JSON_NUMBER:
        return tpl_number_nonzero(v->u.number.text, v->u.number.len);
    case SB_JSON_STRING:
        return v->u.string.len > 0;
    case SB_JSON_ARRAY:
        return v->u.array.count > 0;
    case SB_JSON_OBJECT:
        return v->u.object.count > 0;
    }
    return 0;
}

/* Appends a present value as text, unescaped. */
static enum sb_status tpl_add_raw(const struct sb_json *v, struct sb_buf *out)
{
    switch (v->type) {
    case SB_JSON_STRING:
        return sb_buf_add(out, v->u.string.text, v->u.string.len);
    case SB_JSON_NUMBER:
        /* As the sender wrote it: 1e3 stays 1e3, 2^53 + 1 stays exact. */
        return sb_buf_add(out, v->u.number.text, v->u.number.len);
    case SB_JSON_TRUE:
        return sb_buf_adds(out, "true");
    case SB_JSON_FALSE:
        return sb_buf_adds(out, "false");
    case SB_JSON_ARRAY:
    case SB_JSON_OBJECT:
        return sb_json_write(v, out);
    case SB_JSON_NULL:
        break;
    }
    return SB_OK;
}

/* "[payload.caller_phone_number]": the shape without the value. */
static enum sb_status tpl_add_redacted(const struct sb_template *tpl,
                                       const struct tpl_node *node,
                                       struct sb_buf *out)
{
    enum sb_status rc;

    rc = sb_buf_addc(out, '[');
    if (rc == SB_OK) {
        rc = sb_buf_add(out, tpl->text + node->off, node->len);
    }
    if (rc == SB_OK) {
        rc = sb_buf_addc(out, ']');
    }
    return rc;
}

static enum sb_status tpl_put_value(const struct sb_template *tpl,
                                    const struct tpl_node *node,
                                    const struct sb_template_context *ctx,
                                    enum sb_escape escape, struct sb_buf *out)
{
    struct sb_json scratch;
    const struct sb_json *v;
    size_t start = out->len;
    enum sb_status rc;

    v = tpl_resolve(node, ctx, &scratch);
    if (v == NULL || v->type == SB_JSON_NULL) {
        return SB_OK;
    }
    if (ctx->redact) {
        rc = tpl_add_redacted(tpl, node, out);
    } else {
        rc = tpl_add_raw(v, out);
    }
    if (rc != SB_OK) {
        tpl_truncate(out, start);
        return rc;
    }
    return tpl_escape_from(out, start, escape);
}

static enum sb_status tpl_put_text(const struct sb_template *tpl,
                                   const struct tpl_node *node,
                                   enum sb_escape escape, struct sb_buf *out)
{
    size_t start = out->len;
    enum sb_status rc;

    rc = sb_buf_add(out, tpl->text + node->off, node->len);
    if (rc != SB_OK || escape != SB_ESCAPE_HEADER) {
        return rc;
    }
    /* Literal text is the user's own, but a header takes no CR/LF at all. */
    return tpl_escape_from(out, start, SB_ESCAPE_HEADER);
}

enum sb_status sb_template_render(const struct sb_template *tpl,
                                  const struct sb_template_context *ctx,
                                  enum sb_escape escape, struct sb_buf *out)
{
    struct sb_json scratch;
    const struct tpl_node *node;
    enum sb_status rc = SB_OK;
    size_t i = 0;

    while (i < tpl->count && rc == SB_OK) {
        node = &tpl->nodes[i];
        switch (node->kind) {
        case TPL_TEXT:
            rc = tpl_put_text(tpl, node, escape, out);
            i++;
            break;
        case TPL_VALUE:
            rc = tpl_put_value(tpl, node, ctx, escape, out);
            i++;
            break;
        case TPL_SECTION:
        case TPL_INVERTED:
            /*
             * Sections render once or not at all: no iteration, so a
             * skip is a jump past the section's last node.
             */
            if (tpl_truthy(tpl_resolve(node, ctx, &scratch)) ==
                (node->kind == TPL_SECTION)) {
                i++;
            } else {
                i = node->end;
            }
            break;
        }
    }
    return rc;
}

int sb_template_is_literal(const struct sb_template *tpl)
{
    size_t i;

    for (i = 0; i < tpl->count; i++) {
        if (tpl->nodes[i].kind != TPL_TEXT) {
            return 0;
        }
    }
    return 1;
}

void sb_template_free(struct sb_template *tpl)
{
    size_t i;

    if (tpl == NULL) {
        return;
    }
    for (i = 0; i < tpl->count; i++) {
        sb_json_path_cleanup(&tpl->nodes[i].path);
    }
    free(tpl->nodes);
    free(tpl->text);
    free(tpl);
}
