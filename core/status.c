/* SPDX-License-Identifier: MIT */
/*
 * The error record: formatting of messages with and without a config
 * position.
 */
#include "build_config.h"

#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void sb_error_clear(struct sb_error *err)
{
    if (err == NULL) {
        return;
    }
    memset(err, 0, sizeof(*err));
}

static void error_vset(struct sb_error *err, const char *fmt, va_list ap)
{
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

void sb_error_set(struct sb_error *err, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL) {
        return;
    }
    sb_error_clear(err);
    va_start(ap, fmt);
    error_vset(err, fmt, ap);
    va_end(ap);
}

void sb_error_at(struct sb_error *err, const char *file, unsigned line,
                 unsigned col, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL) {
        return;
    }
    sb_error_clear(err);
    snprintf(err->file, sizeof(err->file), "%s", file ? file : "");
    err->line = line;
    err->col = col;
    va_start(ap, fmt);
    error_vset(err, fmt, ap);
    va_end(ap);
}

const char *sb_error_format(const struct sb_error *err, char *buf, size_t cap)
{
    if (err->file[0] != '\0' && err->line > 0) {
        snprintf(buf, cap, "%s:%u:%u: %s", err->file, err->line, err->col,
                 err->msg);
    } else if (err->file[0] != '\0') {
        snprintf(buf, cap, "%s: %s", err->file, err->msg);
    } else {
        snprintf(buf, cap, "%s", err->msg);
    }
    return buf;
}

void sb_errors_clear(struct sb_errors *errs)
{
    errs->count = 0;
    errs->dropped = 0;
}

void sb_errors_add(struct sb_errors *errs, const struct sb_error *err)
{
    if (errs->count == SB_ERRORS_MAX) {
        errs->dropped++;
        return;
    }
    errs->items[errs->count++] = *err;
}

size_t sb_errors_total(const struct sb_errors *errs)
{
    return errs->count + errs->dropped;
}

const char *sb_status_name(enum sb_status rc)
{
    switch (rc) {
    case SB_OK:
        return "ok";
    case SB_ERR_NOMEM:
        return "out of memory";
    case SB_ERR_INVALID:
        return "invalid";
    case SB_ERR_IO:
        return "i/o error";
    case SB_ERR_FULL:
        return "full";
    }
    return "unknown";
}
