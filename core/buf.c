/* SPDX-License-Identifier: MIT */
/*
 * The capped byte buffer: growth by doubling, never past the cap given at
 * init, and a NUL after the last byte so callers can hand the contents to
 * C string functions.
 */
#include "build_config.h"

#include "buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BUF_MIN_ALLOC 64

void sb_buf_init(struct sb_buf *buf, size_t max)
{
    buf->data = NULL;
    buf->len = 0;
    buf->alloc = 0;
    buf->max = max;
}

/* Makes room for `need` bytes plus the NUL; `need` is within the cap. */
static enum sb_status buf_reserve(struct sb_buf *buf, size_t need)
{
    size_t alloc;
    char *data;

    if (need == SIZE_MAX) {
        return SB_ERR_NOMEM;
    }
    if (need + 1 <= buf->alloc) {
        return SB_OK;
    }
    alloc = buf->alloc < BUF_MIN_ALLOC ? BUF_MIN_ALLOC : buf->alloc;
    while (alloc < need + 1 && alloc <= SIZE_MAX / 2) {
        alloc *= 2;
    }
    if (alloc < need + 1) {
        alloc = need + 1;
    }
    /* Doubling past the cap would only hold bytes that can never come. */
    if (buf->max < SIZE_MAX && alloc > buf->max + 1) {
        alloc = buf->max + 1;
    }

    data = realloc(buf->data, alloc);
    if (data == NULL) {
        return SB_ERR_NOMEM;
    }
    buf->data = data;
    buf->alloc = alloc;
    return SB_OK;
}

enum sb_status sb_buf_add(struct sb_buf *buf, const char *data, size_t n)
{
    enum sb_status rc;

    /* len never exceeds max, so the subtraction cannot wrap. */
    if (n > buf->max - buf->len) {
        return SB_ERR_FULL;
    }
    if (n == 0) {
        return SB_OK;
    }
    rc = buf_reserve(buf, buf->len + n);
    if (rc != SB_OK) {
        return rc;
    }
    memcpy(buf->data + buf->len, data, n);
    buf->len += n;
    buf->data[buf->len] = '\0';
    return SB_OK;
}

enum sb_status sb_buf_adds(struct sb_buf *buf, const char *text)
{
    return sb_buf_add(buf, text, strlen(text));
}

enum sb_status sb_buf_addc(struct sb_buf *buf, char c)
{
    return sb_buf_add(buf, &c, 1);
}

void sb_buf_reset(struct sb_buf *buf)
{
    buf->len = 0;
    if (buf->data != NULL) {
        buf->data[0] = '\0';
    }
}

const char *sb_buf_str(const struct sb_buf *buf)
{
    return buf->data != NULL ? buf->data : "";
}

void sb_buf_cleanup(struct sb_buf *buf)
{
    free(buf->data);
    buf->data = NULL;
    buf->len = 0;
    buf->alloc = 0;
}
