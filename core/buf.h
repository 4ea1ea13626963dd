/* SPDX-License-Identifier: MIT */
/*
 * A growable byte buffer with a hard cap set when it is made, so no
 * input can make it grow without bound (STYLE.md §4). The contents are
 * always NUL-terminated.
 */
#ifndef SB_BUF_H
#define SB_BUF_H

#include <stddef.h>

#include "status.h"

struct sb_buf {
    char *data; /* NULL until the first byte; then NUL-terminated */
    size_t len;
    size_t alloc;
    size_t max; /* len never exceeds this */
};

/* Prepares `buf` (caller's storage) to hold at most `max` bytes. */
void sb_buf_init(struct sb_buf *buf, size_t max);

/*
 * Appends `n` bytes. Returns SB_ERR_FULL, appending nothing, when the
 * result would exceed the cap; SB_ERR_NOMEM when allocation fails.
 */
enum sb_status sb_buf_add(struct sb_buf *buf, const char *data, size_t n);

/* Appends a NUL-terminated string (see sb_buf_add). */
enum sb_status sb_buf_adds(struct sb_buf *buf, const char *text);

/* Appends one byte (see sb_buf_add). */
enum sb_status sb_buf_addc(struct sb_buf *buf, char c);

/* Empties the buffer, keeping its memory and cap. */
void sb_buf_reset(struct sb_buf *buf);

/* The contents, "" when empty; borrowed until the next change. */
const char *sb_buf_str(const struct sb_buf *buf);

/* Frees the memory; the buffer may be used again after sb_buf_init. */
void sb_buf_cleanup(struct sb_buf *buf);

#endif
