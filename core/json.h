/* SPDX-License-Identifier: MIT */
/*
 * JSON documents as rules and templates read them: parsed once into one
 * arena (a few allocations per document, none per lookup), strings
 * unescaped to UTF-8, and numbers kept exactly: their source text, their
 * double value, and their int64 value when they are integers that fit.
 * Rules need that exactness (an id of 2^53 + 1 must not equal 2^53) and
 * templates render a number as the sender wrote it.
 *
 * cJSON stays for building wire JSON; it cannot keep a number exact.
 */
#ifndef SB_JSON_H
#define SB_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "status.h"

#define SB_JSON_MAX_DEPTH 64 /* deeper nesting is refused, not recursed */

enum sb_json_type {
    SB_JSON_NULL,
    SB_JSON_FALSE,
    SB_JSON_TRUE,
    SB_JSON_NUMBER,
    SB_JSON_STRING,
    SB_JSON_ARRAY,
    SB_JSON_OBJECT,
};

struct sb_json;

struct sb_json_member {
    const char *key; /* unescaped, NUL-terminated */
    size_t key_len;
    const struct sb_json *value;
};

struct sb_json {
    enum sb_json_type type;
    union {
        struct {
            const char *text; /* unescaped UTF-8, NUL-terminated */
            size_t len;       /* may be less than strlen: \u0000 */
        } string;
        struct {
            const char *text; /* as written: "-12", "7.50", "1e3" */
            size_t len;
            double value;
            int is_integer; /* no fraction, no exponent in the text */
            int fits_int64; /* is_integer and within int64 */
            int64_t int_value;
        } number;
        struct {
            const struct sb_json_member *members; /* in document order */
            size_t count;
        } object;
        struct {
            const struct sb_json *const *items;
            size_t count;
        } array;
    } u;
};

struct sb_json_doc;

/*
 * Parses `len` bytes of `text` (RFC 8259: one value, surrounded by
 * whitespace only; no NUL bytes outside strings; at most SB_JSON_MAX_DEPTH
 * levels). On SB_OK *out_doc is a new document the caller frees with
 * sb_json_doc_free; `text` is not referenced afterwards. On SB_ERR_INVALID
 * `err` says what was wrong and at which byte offset, without quoting the
 * input. Thread-safe.
 */
enum sb_status sb_json_parse(const char *text, size_t len,
                             struct sb_json_doc **out_doc,
                             struct sb_error *err);

/* The document's root value; borrowed for the document's life. */
const struct sb_json *sb_json_root(const struct sb_json_doc *doc);

/* Frees a document and every value in it. Accepts NULL. */
void sb_json_doc_free(struct sb_json_doc *doc);

/*
 * Member `key` (`key_len` bytes) of an object: the first one when a key
 * repeats. NULL when `obj` is NULL, not an object, or has no such key.
 */
const struct sb_json *sb_json_get(const struct sb_json *obj, const char *key,
                                  size_t key_len);

/* Item `index` of an array; NULL when out of range or not an array. */
const struct sb_json *sb_json_at(const struct sb_json *arr, size_t index);

/*
 * Compares two numbers exactly: integers as integers (of any length),
 * anything else as doubles, so 72 == 72.0 and 2^53 + 1 != 2^53. Returns
 * <0, 0 or >0.
 */
int sb_json_number_cmp(const struct sb_json *a, const struct sb_json *b);

/*
 * Whether two values are equal: same type (true/false count as one type),
 * numbers by sb_json_number_cmp, strings byte for byte, arrays item by
 * item, objects member by member regardless of order.
 */
int sb_json_equal(const struct sb_json *a, const struct sb_json *b);

/*
 * Appends `value` as compact JSON (numbers as written, strings escaped
 * per RFC 8259). SB_ERR_FULL when `out`'s cap is reached.
 */
enum sb_status sb_json_write(const struct sb_json *value, struct sb_buf *out);

/*
 * Appends `len` bytes of `text` as a JSON string literal, quotes
 * included, escaped per RFC 8259. SB_ERR_FULL when `out`'s cap is reached.
 */
enum sb_status sb_json_write_string(const char *text, size_t len,
                                    struct sb_buf *out);

/*
 * A field path compiled once: "payload.items[0].sku" becomes the steps
 * key "payload", key "items", index 0, key "sku". Keys are dot-separated
 * names; [N] indexes arrays; a key holding '.', '[' or ']' cannot be
 * addressed.
 */
struct sb_json_step {
    const char *key; /* NULL for an index step */
    size_t key_len;
    size_t index;
};

struct sb_json_path {
    char *text; /* the path as written, owned */
    struct sb_json_step *steps;
    size_t count;
};

/*
 * Compiles `text` into `path` (caller's storage). On SB_ERR_INVALID `err`
 * says what is wrong and at which character (err->col, 1-based, relative
 * to `text`).
 */
enum sb_status sb_json_path_compile(const char *text, struct sb_json_path *path,
                                    struct sb_error *err);

/* Follows `path` from `root`; NULL when any step is missing. */
const struct sb_json *sb_json_path_get(const struct sb_json_path *path,
                                       const struct sb_json *root);

/* Frees what sb_json_path_compile allocated. Accepts a zeroed path. */
void sb_json_path_cleanup(struct sb_json_path *path);

#endif
