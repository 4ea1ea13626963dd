/* SPDX-License-Identifier: MIT */
/*
 * Status codes every fallible function returns, and the error record that
 * carries the human-readable detail (with file:line:col for config) from the
 * place a failure happens to the layer that reports it.
 */
#ifndef SB_STATUS_H
#define SB_STATUS_H

#include <stddef.h>

enum sb_status {
    SB_OK = 0,
    SB_ERR_NOMEM,   /* allocation failed */
    SB_ERR_INVALID, /* bad input or config: exit code 1 */
    SB_ERR_IO,      /* file, socket or database failure: exit code 2 */
    SB_ERR_FULL,    /* a bounded queue or buffer is full */
};

/*
 * Filled once, where the failure happens. `line` and `col` are 1-based and 0
 * when the error has no position; `file` is then empty too.
 */
struct sb_error {
    char file[256];
    unsigned line;
    unsigned col;
    char msg[512];
};

#define SB_ERRORS_MAX 64

/*
 * Every error found in one pass (SPEC §2: `check` reports them all, not
 * only the first). Past SB_ERRORS_MAX they are counted, not kept.
 */
struct sb_errors {
    struct sb_error items[SB_ERRORS_MAX];
    size_t count;   /* kept in items */
    size_t dropped; /* found beyond the cap */
};

/* Empties the list. */
void sb_errors_clear(struct sb_errors *errs);

/* Appends a copy of `err`. */
void sb_errors_add(struct sb_errors *errs, const struct sb_error *err);

/* Total found, kept or not. */
size_t sb_errors_total(const struct sb_errors *errs);

/* Resets `err` to "no error". */
void sb_error_clear(struct sb_error *err);

/* Records a message without a position. `err` may be NULL. */
void sb_error_set(struct sb_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Records a message at file:line:col. `err` may be NULL. */
void sb_error_at(struct sb_error *err, const char *file, unsigned line,
                 unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * Writes "file:line:col: msg" (or just "msg") into `buf` of `cap` bytes,
 * always NUL-terminated. Returns `buf`.
 */
const char *sb_error_format(const struct sb_error *err, char *buf, size_t cap);

/* A short lowercase name for a status, for logs. */
const char *sb_status_name(enum sb_status rc);

#endif
