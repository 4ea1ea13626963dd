/* SPDX-License-Identifier: MIT */
/*
 * The JSON reader behind rules and templates. A recursive-descent parser,
 * bounded by SB_JSON_MAX_DEPTH, builds every value of a document in one
 * arena of a few large blocks; children of an open array or object wait
 * on a scratch stack until the container closes and its exact size is
 * known. Also here: lookups, exact number comparison, equality, compact
 * writing and compiled field paths.
 */
#include "build_config.h"

#include "json.h"

#include <locale.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JSON_BLOCK_MIN 4096 /* bytes in the smallest arena block */
#define JSON_STACK_MIN 32   /* scratch entries reserved at first use */

/* ---- the arena --------------------------------------------------------- */

struct json_block {
    struct json_block *next;
    size_t used;
    size_t size;
    max_align_t data[]; /* `size` bytes follow */
};

struct json_arena {
    struct json_block *head; /* the block being filled; older ones follow */
    size_t next_size;        /* doubles with every block, so few are made */
};

struct sb_json_doc {
    struct json_block *blocks; /* every block, the doc itself included */
    const struct sb_json *root;
};

static enum sb_status json_arena_grow(struct json_arena *arena, size_t need)
{
    struct json_block *blk;
    size_t size = arena->next_size;

    if (size < need) {
        size = need;
    }
    if (size > SIZE_MAX - sizeof(*blk)) {
        return SB_ERR_NOMEM;
    }
    blk = malloc(sizeof(*blk) + size);
    if (blk == NULL) {
        return SB_ERR_NOMEM;
    }
    blk->next = arena->head;
    blk->used = 0;
    blk->size = size;
    arena->head = blk;
    if (arena->next_size <= SIZE_MAX / 2) {
        arena->next_size *= 2;
    }
    return SB_OK;
}

/* `align` is a power of two no larger than max_align_t's alignment. */
static void *json_arena_alloc(struct json_arena *arena, size_t size,
                              size_t align)
{
    struct json_block *blk = arena->head;
    size_t at;

    if (blk != NULL) {
        at = (blk->used + align - 1) & ~(align - 1);
        if (at <= blk->size && size <= blk->size - at) {
            blk->used = at + size;
            return (unsigned char *)blk->data + at;
        }
    }
    /* A fresh block starts max-aligned, so `size` bytes are enough. */
    if (json_arena_grow(arena, size) != SB_OK) {
        return NULL;
    }
    blk = arena->head;
    blk->used = size;
    return blk->data;
}

static void json_arena_free(struct json_block *blk)
{
    while (blk != NULL) {
        struct json_block *next = blk->next;

        free(blk);
        blk = next;
    }
}

/* ---- the scratch stack ------------------------------------------------- */

struct json_stack {
    unsigned char *data;
    size_t len; /* in elements */
    size_t alloc;
    size_t elem; /* bytes per element */
};

static enum sb_status json_stack_push(struct json_stack *st, const void *elem)
{
    if (st->len == st->alloc) {
        size_t alloc = st->alloc > 0 ? st->alloc * 2 : JSON_STACK_MIN;
        unsigned char *data;

        if (alloc < st->alloc || alloc > SIZE_MAX / st->elem) {
            return SB_ERR_NOMEM;
        }
        data = realloc(st->data, alloc * st->elem);
        if (data == NULL) {
            return SB_ERR_NOMEM;
        }
        st->data = data;
        st->alloc = alloc;
    }
    memcpy(st->data + st->len * st->elem, elem, st->elem);
    st->len++;
    return SB_OK;
}

/* ---- the parser -------------------------------------------------------- */

struct json_parser {
    const unsigned char *text;
    size_t len;
    size_t pos;
    int depth;
    struct json_arena arena;
    struct json_stack items;   /* const struct sb_json * of open arrays */
    struct json_stack members; /* struct sb_json_member of open objects */
    struct sb_error *err;
};

static pthread_once_t json_locale_once = PTHREAD_ONCE_INIT;
static locale_t json_c_locale;

static void json_locale_init(void)
{
    /* glibc hands out its static C locale here: nothing to free later. */
    json_c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/*
 * strtod reads the decimal point of LC_NUMERIC, which a library user may
 * have set to ','. `text` already matched the JSON number grammar.
 */
static double json_strtod(const char *text)
{
    pthread_once(&json_locale_once, json_locale_init);
    if (json_c_locale != (locale_t)0) {
        return strtod_l(text, NULL, json_c_locale);
    }
    /* switchboard never calls setlocale, so this is the C locale too. */
    return strtod(text, NULL);
}

static enum sb_status json_fail(struct json_parser *ps, size_t at,
                                const char *what)
{
    sb_error_set(ps->err, "%s at byte %zu", what, at);
    return SB_ERR_INVALID;
}

static enum sb_status json_nomem(struct json_parser *ps)
{
    sb_error_set(ps->err, "out of memory while parsing JSON");
    return SB_ERR_NOMEM;
}

static int json_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static void json_skip_ws(struct json_parser *ps)
{
    while (ps->pos < ps->len) {
        unsigned char c = ps->text[ps->pos];

        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return;
        }
        ps->pos++;
    }
}

static enum sb_status json_node(struct json_parser *ps, enum sb_json_type type,
                                struct sb_json **out_node)
{
    struct sb_json *node;

    node = json_arena_alloc(&ps->arena, sizeof(*node), alignof(struct sb_json));
    *out_node = node;
    if (node == NULL) {
        return json_nomem(ps);
    }
    memset(node, 0, sizeof(*node));
    node->type = type;
    return SB_OK;
}

/* Moves the entries above `base` from `st` into the arena. */
static enum sb_status json_stack_take(struct json_parser *ps,
                                      struct json_stack *st, size_t base,
                                      size_t align, void **out_copy,
                                      size_t *out_count)
{
    size_t n = st->len - base;
    void *copy = NULL;

    if (n > 0) {
        copy = json_arena_alloc(&ps->arena, n * st->elem, align);
        if (copy == NULL) {
            *out_copy = NULL;
            *out_count = 0;
            return json_nomem(ps);
        }
        memcpy(copy, st->data + base * st->elem, n * st->elem);
    }
    st->len = base;
    *out_copy = copy;
    *out_count = n;
    return SB_OK;
}

/* ---- strings ----------------------------------------------------------- */

/*
 * Length of the UTF-8 sequence at `s` (RFC 3629 §4: no overlong forms, no
 * surrogates, nothing past U+10FFFF), or 0 when it is not one.
 */
static size_t json_utf8_len(const unsigned char *s, size_t avail)
{
    unsigned char lo = 0x80;
    unsigned char hi = 0xbf;
    size_t n;
    size_t i;

    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        lo = s[0] == 0xe0 ? 0xa0 : 0x80;
        hi = s[0] == 0xed ? 0x9f : 0xbf;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        lo = s[0] == 0xf0 ? 0x90 : 0x80;
        hi = s[0] == 0xf4 ? 0x8f : 0xbf;
    } else {
        return 0;
    }
    if (avail < n || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (i = 2; i < n; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf) {
            return 0;
        }
    }
    return n;
}

static size_t json_utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Reads "\uXXXX" at `at` if it lies wholly before `end`; -1 if not. */
static long json_hex4(const unsigned char *text, size_t at, size_t end)
{
    long v = 0;
    size_t i;

    if (end - at < 6 || text[at] != '\\' || text[at + 1] != 'u') {
        return -1;
    }
    for (i = at + 2; i < at + 6; i++) {
        unsigned char c = text[i];

        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= c - '0';
        } else if (c >= 'a' && c <= 'f') {
            v |= c - 'a' + 10;
        } else if (c >= 'A' && c <= 'F') {
            v |= c - 'A' + 10;
        } else {
            return -1;
        }
    }
    return v;
}

/* Decodes "\u..." at *at (one escape, or a surrogate pair of two). */
static enum sb_status json_unicode(struct json_parser *ps, size_t *at,
                                   size_t end, char *dst, size_t *n)
{
    long hi = json_hex4(ps->text, *at, end);
    long lo;
    uint32_t cp;

    if (hi < 0) {
        return json_fail(ps, *at, "invalid \\u escape; expected 4 hex digits");
    }
    cp = (uint32_t)hi;
    if (hi >= 0xdc00 && hi <= 0xdfff) {
        return json_fail(ps, *at, "unpaired surrogate in a \\u escape");
    }
    if (hi >= 0xd800 && hi <= 0xdbff) {
        lo = json_hex4(ps->text, *at + 6, end);
        if (lo < 0xdc00 || lo > 0xdfff) {
            return json_fail(ps, *at, "unpaired surrogate in a \\u escape");
        }
        cp =
            0x10000 + (((uint32_t)hi - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
        *at += 6;
    }
    *at += 6;
    *n += json_utf8_put(cp, dst + *n);
    return SB_OK;
}

static enum sb_status json_escape(struct json_parser *ps, size_t *at,
                                  size_t end, char *dst, size_t *n)
{
    static const char from[] = "\"\\/bfnrt";
    static const char to[] = "\"\\/\b\f\n\r\t";
    unsigned char c = ps->text[*at + 1];
    const char *hit;

    if (c == 'u') {
        return json_unicode(ps, at, end, dst, n);
    }
    hit = c != '\0' ? strchr(from, c) : NULL;
    if (hit == NULL) {
        return json_fail(ps, *at, "invalid escape in a string");
    }
    dst[(*n)++] = to[hit - from];
    *at += 2;
    return SB_OK;
}

/* Finds the closing quote of the string that opens at ps->pos. */
static int json_string_end(const struct json_parser *ps, size_t *out_end)
{
    size_t i = ps->pos + 1;

    while (i < ps->len) {
        unsigned char c = ps->text[i];

        if (c == '"') {
            *out_end = i;
            return 1;
        }
        /* An escape hides the byte after it, which may be a quote. */
        i += c == '\\' ? 2 : 1;
    }
    *out_end = ps->len;
    return 0;
}

/* Copies the character or escape at *at to dst + *n, checking it. */
static enum sb_status json_string_unit(struct json_parser *ps, size_t *at,
                                       size_t end, char *dst, size_t *n)
{
    unsigned char c = ps->text[*at];
    size_t k;

    if (c == '\\') {
        return json_escape(ps, at, end, dst, n);
    }
    if (c < 0x20) {
        return json_fail(ps, *at, "unescaped control character in a string");
    }
    k = c < 0x80 ? 1 : json_utf8_len(ps->text + *at, end - *at);
    if (k == 0) {
        return json_fail(ps, *at, "invalid UTF-8 in a string");
    }
    memcpy(dst + *n, ps->text + *at, k);
    *n += k;
    *at += k;
    return SB_OK;
}

/*
 * Unescapes the string at ps->pos into the arena. The result is never
 * longer than the raw bytes: every escape shrinks or keeps its length.
 */
static enum sb_status json_string(struct json_parser *ps, const char **out_text,
                                  size_t *out_len)
{
    size_t end;
    size_t i = ps->pos + 1;
    size_t n = 0;
    char *dst;
    enum sb_status rc;

    *out_text = NULL;
    *out_len = 0;
    if (!json_string_end(ps, &end)) {
        return json_fail(ps, ps->pos, "unterminated string");
    }
    dst = json_arena_alloc(&ps->arena, end - i + 1, 1);
    if (dst == NULL) {
        return json_nomem(ps);
    }
    while (i < end) {
        size_t run = i;

        /* Plain ASCII, the bulk of most strings, is copied in runs. */
        while (run < end && ps->text[run] >= 0x20 && ps->text[run] < 0x80 &&
               ps->text[run] != '\\') {
            run++;
        }
        memcpy(dst + n, ps->text + i, run - i);
        n += run - i;
        i = run;
        if (i < end) {
            rc = json_string_unit(ps, &i, end, dst, &n);
            if (rc != SB_OK) {
                return rc;
            }
        }
    }
    dst[n] = '\0';
    ps->pos = end + 1;
    *out_text = dst;
    *out_len = n;
    return SB_OK;
}

static enum sb_status json_string_value(struct json_parser *ps,
                                        const struct sb_json **out)
{
    struct sb_json *node;
    enum sb_status rc;

    *out = NULL;
    rc = json_node(ps, SB_JSON_STRING, &node);
    if (rc != SB_OK) {
        return rc;
    }
    rc = json_string(ps, &node->u.string.text, &node->u.string.len);
    if (rc != SB_OK) {
        return rc;
    }
    *out = node;
    return SB_OK;
}

/* ---- numbers and literals ---------------------------------------------- */

static size_t json_skip_digits(const struct json_parser *ps, size_t i)
{
    while (i < ps->len && json_is_digit(ps->text[i])) {
        i++;
    }
    return i;
}

/* Checks RFC 8259 §6 from ps->pos; sets *out_end past the number. */
static enum sb_status json_number_grammar(struct json_parser *ps,
                                          size_t *out_end, int *out_integer)
{
    const unsigned char *t = ps->text;
    size_t i = ps->pos;

    *out_end = i;
    *out_integer = 1;
    if (t[i] == '-') {
        i++;
    }
    if (i >= ps->len || !json_is_digit(t[i])) {
        return json_fail(ps, i, "expected a digit in a number");
    }
    if (t[i] == '0' && i + 1 < ps->len && json_is_digit(t[i + 1])) {
        return json_fail(ps, i, "leading zero in a number");
    }
    i = json_skip_digits(ps, i);
    if (i < ps->len && t[i] == '.') {
        *out_integer = 0;
        i++;
        if (i >= ps->len || !json_is_digit(t[i])) {
            return json_fail(ps, i, "expected a digit after the decimal point");
        }
        i = json_skip_digits(ps, i);
    }
    if (i < ps->len && (t[i] == 'e' || t[i] == 'E')) {
        *out_integer = 0;
        i++;
        if (i < ps->len && (t[i] == '+' || t[i] == '-')) {
            i++;
        }
        if (i >= ps->len || !json_is_digit(t[i])) {
            return json_fail(ps, i, "expected a digit in the exponent");
        }
        i = json_skip_digits(ps, i);
    }
    *out_end = i;
    return SB_OK;
}

/* The int64 value of an integer's text, when it has one. */
static int json_int64(const char *s, size_t n, int64_t *out)
{
    int neg = s[0] == '-';
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t mag = 0;
    size_t i;

    for (i = (size_t)neg; i < n; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');

        if (mag > (limit - d) / 10) {
            return 0;
        }
        mag = mag * 10 + d;
    }
    if (neg && mag == (uint64_t)INT64_MAX + 1) {
        *out = INT64_MIN;
    } else {
        *out = neg ? -(int64_t)mag : (int64_t)mag;
    }
    return 1;
}

/*
 * The double of a number. Integers within 2^53 convert exactly, so the
 * common case (ids, counts, durations) skips strtod; "-0" does not, to
 * keep its sign as strtod would.
 */
static double json_number_value(const struct sb_json *v)
{
    int64_t limit = (int64_t)1 << 53;
    int64_t i = v->u.number.int_value;

    if (v->u.number.fits_int64 && i <= limit && i >= -limit && i != 0) {
        return (double)i;
    }
    return json_strtod(v->u.number.text);
}

static enum sb_status json_number(struct json_parser *ps,
                                  const struct sb_json **out)
{
    struct sb_json *node;
    size_t end;
    size_t n;
    int integer;
    char *text;
    enum sb_status rc;

    *out = NULL;
    rc = json_number_grammar(ps, &end, &integer);
    if (rc != SB_OK) {
        return rc;
    }
    rc = json_node(ps, SB_JSON_NUMBER, &node);
    if (rc != SB_OK) {
        return rc;
    }
    /* A NUL-terminated copy bounds strtod to the number and outlives text. */
    n = end - ps->pos;
    text = json_arena_alloc(&ps->arena, n + 1, 1);
    if (text == NULL) {
        return json_nomem(ps);
    }
    memcpy(text, ps->text + ps->pos, n);
    text[n] = '\0';
    ps->pos = end;

    node->u.number.text = text;
    node->u.number.len = n;
    node->u.number.is_integer = integer;
    if (integer) {
        node->u.number.fits_int64 =
            json_int64(text, n, &node->u.number.int_value);
    }
    node->u.number.value = json_number_value(node);
    *out = node;
    return SB_OK;
}

static enum sb_status json_literal(struct json_parser *ps, const char *word,
                                   enum sb_json_type type,
                                   const struct sb_json **out)
{
    size_t n = strlen(word);
    struct sb_json *node;
    enum sb_status rc;

    *out = NULL;
    if (ps->len - ps->pos < n || memcmp(ps->text + ps->pos, word, n) != 0) {
        return json_fail(ps, ps->pos, "expected a value");
    }
    rc = json_node(ps, type, &node);
    if (rc != SB_OK) {
        return rc;
    }
    ps->pos += n;
    *out = node;
    return SB_OK;
}

/* ---- arrays and objects ------------------------------------------------ */

static enum sb_status json_value(struct json_parser *ps,
                                 const struct sb_json **out);

/*
 * Consumes the opening bracket, refusing to nest past the limit, and the
 * closing one at once when the container is empty (*out_more is then 0).
 */
static enum sb_status json_enter(struct json_parser *ps, unsigned char close,
                                 int *out_more)
{
    *out_more = 0;
    if (ps->depth >= SB_JSON_MAX_DEPTH) {
        sb_error_set(ps->err, "nesting deeper than %d levels at byte %zu",
                     SB_JSON_MAX_DEPTH, ps->pos);
        return SB_ERR_INVALID;
    }
    ps->depth++;
    ps->pos++;
    json_skip_ws(ps);
    if (ps->pos < ps->len && ps->text[ps->pos] == close) {
        ps->pos++;
        return SB_OK;
    }
    *out_more = 1;
    return SB_OK;
}

/*
 * After an item: consumes ',' (returns 1) or the closing byte (returns
 * 0); anything else is an error (-1).
 */
static int json_next(struct json_parser *ps, unsigned char close,
                     const char *expected)
{
    json_skip_ws(ps);
    if (ps->pos < ps->len && ps->text[ps->pos] == ',') {
        ps->pos++;
        return 1;
    }
    if (ps->pos < ps->len && ps->text[ps->pos] == close) {
        ps->pos++;
        return 0;
    }
    json_fail(ps, ps->pos, expected);
    return -1;
}

static enum sb_status json_array(struct json_parser *ps,
                                 const struct sb_json **out)
{
    size_t base = ps->items.len;
    const struct sb_json *item;
    struct sb_json *node;
    void *items;
    int more;
    enum sb_status rc;

    *out = NULL;
    rc = json_enter(ps, ']', &more);
    if (rc != SB_OK) {
        return rc;
    }
    while (more) {
        rc = json_value(ps, &item);
        if (rc != SB_OK) {
            return rc;
        }
        if (json_stack_push(&ps->items, &item) != SB_OK) {
            return json_nomem(ps);
        }
        more = json_next(ps, ']', "expected ',' or ']'");
        if (more < 0) {
            return SB_ERR_INVALID;
        }
    }

    rc = json_node(ps, SB_JSON_ARRAY, &node);
    if (rc == SB_OK) {
        rc = json_stack_take(ps, &ps->items, base, alignof(struct sb_json *),
                             &items, &node->u.array.count);
        node->u.array.items = items;
    }
    ps->depth--;
    *out = rc == SB_OK ? node : NULL;
    return rc;
}

/* Reads `"key": value` at ps->pos onto the members stack. */
static enum sb_status json_member(struct json_parser *ps)
{
    struct sb_json_member member;
    enum sb_status rc;

    if (ps->pos >= ps->len || ps->text[ps->pos] != '"') {
        return json_fail(ps, ps->pos, "expected a string key");
    }
    rc = json_string(ps, &member.key, &member.key_len);
    if (rc != SB_OK) {
        return rc;
    }
    json_skip_ws(ps);
    if (ps->pos >= ps->len || ps->text[ps->pos] != ':') {
        return json_fail(ps, ps->pos, "expected ':' after a key");
    }
    ps->pos++;
    rc = json_value(ps, &member.value);
    if (rc != SB_OK) {
        return rc;
    }
    if (json_stack_push(&ps->members, &member) != SB_OK) {
        return json_nomem(ps);
    }
    return SB_OK;
}

static enum sb_status json_object(struct json_parser *ps,
                                  const struct sb_json **out)
{
    size_t base = ps->members.len;
    struct sb_json *node;
    void *members;
    int more;
    enum sb_status rc;

    *out = NULL;
    rc = json_enter(ps, '}', &more);
    if (rc != SB_OK) {
        return rc;
    }
    while (more) {
        json_skip_ws(ps);
        rc = json_member(ps);
        if (rc != SB_OK) {
            return rc;
        }
        more = json_next(ps, '}', "expected ',' or '}'");
        if (more < 0) {
            return SB_ERR_INVALID;
        }
    }

    rc = json_node(ps, SB_JSON_OBJECT, &node);
    if (rc == SB_OK) {
        rc = json_stack_take(ps, &ps->members, base,
                             alignof(struct sb_json_member), &members,
                             &node->u.object.count);
        node->u.object.members = members;
    }
    ps->depth--;
    *out = rc == SB_OK ? node : NULL;
    return rc;
}

static enum sb_status json_value(struct json_parser *ps,
                                 const struct sb_json **out)
{
    unsigned char c;

    *out = NULL;
    json_skip_ws(ps);
    if (ps->pos >= ps->len) {
        return json_fail(ps, ps->pos, "expected a value, found the end");
    }
    c = ps->text[ps->pos];
    switch (c) {
    case '{':
        return json_object(ps, out);
    case '[':
        return json_array(ps, out);
    case '"':
        return json_string_value(ps, out);
    case 't':
        return json_literal(ps, "true", SB_JSON_TRUE, out);
    case 'f':
        return json_literal(ps, "false", SB_JSON_FALSE, out);
    case 'n':
        return json_literal(ps, "null", SB_JSON_NULL, out);
    case '\0':
        return json_fail(ps, ps->pos, "NUL byte where a value was expected");
    default:
        break;
    }
    if (c == '-' || json_is_digit(c)) {
        return json_number(ps, out);
    }
    return json_fail(ps, ps->pos, "expected a value");
}

/* ---- documents --------------------------------------------------------- */

static void json_parser_init(struct json_parser *ps, const char *text,
                             size_t len, struct sb_error *err)
{
    memset(ps, 0, sizeof(*ps));
    ps->text = (const unsigned char *)text;
    ps->len = len;
    ps->err = err;
    ps->items.elem = sizeof(const struct sb_json *);
    ps->members.elem = sizeof(struct sb_json_member);
    /* Most documents fit the first block; a dense one needs a few more. */
    ps->arena.next_size = JSON_BLOCK_MIN;
    if (len < SIZE_MAX / 4 && len * 2 > JSON_BLOCK_MIN) {
        ps->arena.next_size = len * 2;
    }
}

enum sb_status sb_json_parse(const char *text, size_t len,
                             struct sb_json_doc **out_doc, struct sb_error *err)
{
    struct json_parser ps;
    struct sb_json_doc *doc;
    const struct sb_json *root;
    enum sb_status rc;

    *out_doc = NULL;
    json_parser_init(&ps, text, len, err);
    doc =
        json_arena_alloc(&ps.arena, sizeof(*doc), alignof(struct sb_json_doc));
    if (doc == NULL) {
        rc = json_nomem(&ps);
        goto out;
    }
    rc = json_value(&ps, &root);
    if (rc != SB_OK) {
        goto out;
    }
    json_skip_ws(&ps);
    if (ps.pos < len) {
        rc = json_fail(&ps, ps.pos,
                       ps.text[ps.pos] == '\0'
                           ? "NUL byte after the value"
                           : "unexpected data after the value");
        goto out;
    }

    doc->root = root;
    doc->blocks = ps.arena.head;
    ps.arena.head = NULL;
    *out_doc = doc;
out:
    free(ps.members.data);
    free(ps.items.data);
    json_arena_free(ps.arena.head);
    return rc;
}

const struct sb_json *sb_json_root(const struct sb_json_doc *doc)
{
    return doc->root;
}

void sb_json_doc_free(struct sb_json_doc *doc)
{
    if (doc == NULL) {
        return;
    }
    /* The doc lives in one of its own blocks: nothing of it is read after. */
    json_arena_free(doc->blocks);
}

/* ---- lookups ----------------------------------------------------------- */

static int json_key_is(const struct sb_json_member *m, const char *key,
                       size_t key_len)
{
    return m->key_len == key_len &&
           (key_len == 0 || memcmp(m->key, key, key_len) == 0);
}

const struct sb_json *sb_json_get(const struct sb_json *obj, const char *key,
                                  size_t key_len)
{
    size_t i;

    if (obj == NULL || obj->type != SB_JSON_OBJECT) {
        return NULL;
    }
    for (i = 0; i < obj->u.object.count; i++) {
        if (json_key_is(&obj->u.object.members[i], key, key_len)) {
            return obj->u.object.members[i].value;
        }
    }
    return NULL;
}

const struct sb_json *sb_json_at(const struct sb_json *arr, size_t index)
{
    if (arr == NULL || arr->type != SB_JSON_ARRAY ||
        index >= arr->u.array.count) {
        return NULL;
    }
    return arr->u.array.items[index];
}

/* ---- comparison -------------------------------------------------------- */

/* An integer's sign (-1, 0, 1) and its digits without leading zeros. */
static int json_int_parts(const struct sb_json *v, const char **out_digits,
                          size_t *out_n)
{
    const char *s = v->u.number.text;
    size_t n = v->u.number.len;
    int neg = 0;

    if (n > 0 && s[0] == '-') {
        neg = 1;
        s++;
        n--;
    }
    while (n > 0 && s[0] == '0') {
        s++;
        n--;
    }
    *out_digits = s;
    *out_n = n;
    if (n == 0) {
        return 0;
    }
    return neg ? -1 : 1;
}

/* Integers of any length, by sign, then digit count, then digits. */
static int json_int_cmp(const struct sb_json *a, const struct sb_json *b)
{
    const char *da;
    const char *db;
    size_t na;
    size_t nb;
    int sign_a = json_int_parts(a, &da, &na);
    int sign_b = json_int_parts(b, &db, &nb);
    int mag;

    if (sign_a != sign_b) {
        return sign_a < sign_b ? -1 : 1;
    }
    if (na != nb) {
        mag = na < nb ? -1 : 1;
    } else {
        mag = memcmp(da, db, na);
        mag = mag < 0 ? -1 : mag > 0;
    }
    return sign_a * mag;
}

int sb_json_number_cmp(const struct sb_json *a, const struct sb_json *b)
{
    double x;
    double y;

    /* Not numbers is a caller's mistake; order by type to stay total. */
    if (a->type != SB_JSON_NUMBER || b->type != SB_JSON_NUMBER) {
        return a->type < b->type ? -1 : a->type > b->type;
    }
    if (a->u.number.is_integer && b->u.number.is_integer) {
        return json_int_cmp(a, b);
    }
    x = a->u.number.value;
    y = b->u.number.value;
    return x < y ? -1 : x > y;
}

/* true and false are one type here, so `true` vs `false` is "unequal". */
static int json_kind(const struct sb_json *v)
{
    return v->type == SB_JSON_TRUE ? SB_JSON_FALSE : (int)v->type;
}

/* The `nth` (0-based) member named `key`, or NULL. */
static const struct sb_json *
json_nth(const struct sb_json *obj, const char *key, size_t key_len, size_t nth)
{
    size_t i;

    for (i = 0; i < obj->u.object.count; i++) {
        if (json_key_is(&obj->u.object.members[i], key, key_len)) {
            if (nth == 0) {
                return obj->u.object.members[i].value;
            }
            nth--;
        }
    }
    return NULL;
}

/*
 * Members in the same order compare pairwise. Once the orders part, each
 * member of `a` is matched with the same occurrence of its key in `b`
 * (the first "k" with the first "k"), so a repeated key is compared too.
 * That is quadratic, which is harmless: the counts must agree first, and
 * rules compare a payload value against a small literal.
 */
static int json_object_equal(const struct sb_json *a, const struct sb_json *b)
{
    const struct sb_json_member *ma = a->u.object.members;
    const struct sb_json_member *mb = b->u.object.members;
    const struct sb_json *other;
    size_t count = a->u.object.count;
    int in_order = 1;
    size_t i;
    size_t j;
    size_t nth;

    if (count != b->u.object.count) {
        return 0;
    }
    for (i = 0; i < count; i++) {
        in_order = in_order && json_key_is(&mb[i], ma[i].key, ma[i].key_len);
        if (in_order) {
            other = mb[i].value;
        } else {
            nth = 0;
            for (j = 0; j < i; j++) {
                nth += (size_t)json_key_is(&ma[j], ma[i].key, ma[i].key_len);
            }
            other = json_nth(b, ma[i].key, ma[i].key_len, nth);
        }
        if (!sb_json_equal(ma[i].value, other)) {
            return 0;
        }
    }
    return 1;
}

int sb_json_equal(const struct sb_json *a, const struct sb_json *b)
{
    size_t i;

    if (a == b) {
        return 1;
    }
    if (a == NULL || b == NULL || json_kind(a) != json_kind(b)) {
        return 0;
    }
    switch (a->type) {
    case SB_JSON_NULL:
    case SB_JSON_FALSE:
    case SB_JSON_TRUE:
        return a->type == b->type;
    case SB_JSON_NUMBER:
        return sb_json_number_cmp(a, b) == 0;
    case SB_JSON_STRING:
        return a->u.string.len == b->u.string.len &&
               memcmp(a->u.string.text, b->u.string.text, a->u.string.len) == 0;
    case SB_JSON_ARRAY:
        if (a->u.array.count != b->u.array.count) {
            return 0;
        }
        for (i = 0; i < a->u.array.count; i++) {
            if (!sb_json_equal(a->u.array.items[i], b->u.array.items[i])) {
                return 0;
            }
        }
        return 1;
    case SB_JSON_OBJECT:
        return json_object_equal(a, b);
    }
    return 0;
}

/* ---- writing ----------------------------------------------------------- */

/* The escape for byte `c` in a string, or NULL when it stands as is. */
static const char *json_escape_for(unsigned char c, char buf[7])
{
    static const char hex[] = "0123456789abcdef";

    /* RFC 8259 §7: the two-character forms where they exist. */
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    default:
        break;
    }
    if (c >= 0x20) {
        return NULL;
    }
    memcpy(buf, "\\u00", 4);
    buf[4] = hex[c >> 4];
    buf[5] = hex[c & 0xf];
    buf[6] = '\0';
    return buf;
}

enum sb_status sb_json_write_string(const char *text, size_t len,
                                    struct sb_buf *out)
{
    char buf[7];
    size_t run = 0;
    size_t i;
    enum sb_status rc;

    rc = sb_buf_addc(out, '"');
    for (i = 0; i < len && rc == SB_OK; i++) {
        const char *esc = json_escape_for((unsigned char)text[i], buf);

        if (esc == NULL) {
            continue;
        }
        /* Plain bytes go out in runs, not one call each. */
        rc = sb_buf_add(out, text + run, i - run);
        if (rc == SB_OK) {
            rc = sb_buf_adds(out, esc);
        }
        run = i + 1;
    }
    if (rc == SB_OK) {
        rc = sb_buf_add(out, text + run, len - run);
    }
    if (rc == SB_OK) {
        rc = sb_buf_addc(out, '"');
    }
    return rc;
}

static enum sb_status json_write_object(const struct sb_json *value,
                                        struct sb_buf *out)
{
    const struct sb_json_member *m = value->u.object.members;
    enum sb_status rc;
    size_t i;

    rc = sb_buf_addc(out, '{');
    for (i = 0; i < value->u.object.count && rc == SB_OK; i++) {
        if (i > 0) {
            rc = sb_buf_addc(out, ',');
        }
        if (rc == SB_OK) {
            rc = sb_json_write_string(m[i].key, m[i].key_len, out);
        }
        if (rc == SB_OK) {
            rc = sb_buf_addc(out, ':');
        }
        if (rc == SB_OK) {
            rc = sb_json_write(m[i].value, out);
        }
    }
    if (rc == SB_OK) {
        rc = sb_buf_addc(out, '}');
    }
    return rc;
}

static enum sb_status json_write_array(const struct sb_json *value,
                                       struct sb_buf *out)
{
    enum sb_status rc;
    size_t i;

    rc = sb_buf_addc(out, '[');
    for (i = 0; i < value->u.array.count && rc == SB_OK; i++) {
        if (i > 0) {
            rc = sb_buf_addc(out, ',');
        }
        if (rc == SB_OK) {
            rc = sb_json_write(value->u.array.items[i], out);
        }
    }
    if (rc == SB_OK) {
        rc = sb_buf_addc(out, ']');
    }
    return rc;
}

enum sb_status sb_json_write(const struct sb_json *value, struct sb_buf *out)
{
    switch (value->type) {
    case SB_JSON_NULL:
        return sb_buf_adds(out, "null");
    case SB_JSON_FALSE:
        return sb_buf_adds(out, "false");
    case SB_JSON_TRUE:
        return sb_buf_adds(out, "true");
    case SB_JSON_NUMBER:
        return sb_buf_add(out, value->u.number.text, value->u.number.len);
    case SB_JSON_STRING:
        return sb_json_write_string(value->u.string.text, value->u.string.len,
                                    out);
    case SB_JSON_ARRAY:
        return json_write_array(value, out);
    case SB_JSON_OBJECT:
        return json_write_object(value, out);
    }
    return SB_ERR_INVALID;
}

/* ---- field paths ------------------------------------------------------- */

/* Records `what` at byte `at` of `text`, as a 1-based character column. */
static enum sb_status json_path_fail(struct sb_error *err, const char *text,
                                     size_t at, const char *what)
{
    unsigned col = 1;
    size_t i;

    for (i = 0; i < at; i++) {
        /* UTF-8 continuation bytes do not start a character. */
        if (((unsigned char)text[i] & 0xc0) != 0x80) {
            col++;
        }
    }
    sb_error_at(err, NULL, 1, col, "%s", what);
    return SB_ERR_INVALID;
}

static enum sb_status json_path_key(const char *text, size_t *at,
                                    struct sb_json_step *out_step,
                                    struct sb_error *err)
{
    size_t start = *at;
    size_t i = start;

    while (text[i] != '\0' && text[i] != '.' && text[i] != '[' &&
           text[i] != ']') {
        i++;
    }
    if (i == start) {
        return json_path_fail(err, text, i,
                              text[i] == ']' ? "']' without '['"
                                             : "empty segment in a path");
    }
    out_step->key = text + start;
    out_step->key_len = i - start;
    out_step->index = 0;
    *at = i;
    return SB_OK;
}

/* Reads "[N]" at *at. */
static enum sb_status json_path_index(const char *text, size_t *at,
                                      struct sb_json_step *out_step,
                                      struct sb_error *err)
{
    size_t open = *at;
    size_t i = open + 1;
    size_t index = 0;

    if (text[i] == ']') {
        return json_path_fail(err, text, i, "empty index in a path");
    }
    while (json_is_digit((unsigned char)text[i])) {
        size_t d = (size_t)(text[i] - '0');

        if (index > (SIZE_MAX - d) / 10) {
            return json_path_fail(err, text, open + 1, "index is too large");
        }
        index = index * 10 + d;
        i++;
    }
    if (text[i] == '\0') {
        return json_path_fail(err, text, open, "unclosed '[' in a path");
    }
    if (text[i] != ']') {
        return json_path_fail(err, text, i, "index must be digits only");
    }
    out_step->key = NULL;
    out_step->key_len = 0;
    out_step->index = index;
    *at = i + 1;
    return SB_OK;
}

/* Consumes what joins two steps: '.' before a name, or nothing before '['. */
static enum sb_status json_path_join(const char *text, size_t *at,
                                     struct sb_error *err)
{
    size_t i = *at;

    if (text[i] == '[') {
        return SB_OK;
    }
    if (text[i] == ']') {
        return json_path_fail(err, text, i, "']' without '['");
    }
    if (text[i] != '.') {
        return json_path_fail(err, text, i, "expected '.' or '[' after ']'");
    }
    /* A dot must lead to a name: "a.[0]" has an empty segment. */
    if (text[i + 1] == '[') {
        return json_path_fail(err, text, i + 1, "empty segment in a path");
    }
    *at = i + 1;
    return SB_OK;
}

/* Checks `text` and counts its steps, storing them when `steps` is set. */
static enum sb_status json_path_scan(const char *text,
                                     struct sb_json_step *steps,
                                     size_t *out_count, struct sb_error *err)
{
    struct sb_json_step step;
    size_t count = 0;
    size_t i = 0;
    enum sb_status rc;

    *out_count = 0;
    if (text[0] == '\0') {
        return json_path_fail(err, text, 0, "empty path");
    }
    for (;;) {
        if (text[i] == '[') {
            rc = json_path_index(text, &i, &step, err);
        } else {
            rc = json_path_key(text, &i, &step, err);
        }
        if (rc != SB_OK) {
            return rc;
        }
        if (steps != NULL) {
            steps[count] = step;
        }
        count++;
        if (text[i] == '\0') {
            break;
        }
        rc = json_path_join(text, &i, err);
        if (rc != SB_OK) {
            return rc;
        }
    }
    *out_count = count;
    return SB_OK;
}

enum sb_status sb_json_path_compile(const char *text, struct sb_json_path *path,
                                    struct sb_error *err)
{
    size_t len = strlen(text);
    size_t count;
    enum sb_status rc;

    memset(path, 0, sizeof(*path));
    rc = json_path_scan(text, NULL, &count, err);
    if (rc != SB_OK) {
        return rc;
    }
    path->text = malloc(len + 1);
    path->steps = calloc(count, sizeof(*path->steps));
    if (path->text == NULL || path->steps == NULL) {
        sb_json_path_cleanup(path);
        sb_error_set(err, "out of memory while compiling a path");
        return SB_ERR_NOMEM;
    }
    memcpy(path->text, text, len + 1);
    /* Again over the owned copy, so the keys point into path->text. */
    json_path_scan(path->text, path->steps, &path->count, err);
    return SB_OK;
}

const struct sb_json *sb_json_path_get(const struct sb_json_path *path,
                                       const struct sb_json *root)
{
    const struct sb_json *v = root;
    size_t i;

    for (i = 0; i < path->count && v != NULL; i++) {
        const struct sb_json_step *step = &path->steps[i];

        if (step->key != NULL) {
            v = sb_json_get(v, step->key, step->key_len);
        } else {
            v = sb_json_at(v, step->index);
        }
    }
    return v;
}

void sb_json_path_cleanup(struct sb_json_path *path)
{
    free(path->steps);
    free(path->text);
    path->text = NULL;
    path->steps = NULL;
    path->count = 0;
}
