/* SPDX-License-Identifier: MIT */
/*
 * logfmt lines on stderr: "ts= level= comp= <context fields> msg=... err=".
 * The level is checked before any argument is evaluated, and one line is one
 * write(2), so lines from several threads never interleave.
 *
 * Callers pass the part after comp= as a printf format. Never put secrets or
 * payload values (phone numbers, names, report texts) in it: STYLE.md §5.
 */
#ifndef SB_LOG_H
#define SB_LOG_H

#include <stddef.h>

#include "status.h"

enum sb_log_level {
    SB_LOG_ERROR = 0,
    SB_LOG_WARN,
    SB_LOG_INFO,
    SB_LOG_DEBUG,
};

/* Sets the most verbose level written. Safe from any thread. */
void sb_log_set_level(enum sb_log_level level);

/* Whether a line at `level` would be written. Safe from any thread. */
int sb_log_enabled(enum sb_log_level level);

/*
 * Parses "error", "warn", "info" or "debug" into *out_level. Returns
 * SB_ERR_INVALID (leaving *out_level at SB_LOG_INFO) for anything else.
 */
enum sb_status sb_log_level_parse(const char *name,
                                  enum sb_log_level *out_level);

/*
 * Writes one line. `fields_fmt` formats the fields after comp=, msg= among
 * them. Control characters in the result are replaced by spaces so one call
 * is always one line; the line is cut at 2 KiB.
 */
void sb_log_write(enum sb_log_level level, const char *comp,
                  const char *fields_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Quotes `value` for logfmt into `buf` (cap bytes): surrounding double
 * quotes, inner quotes and backslashes escaped, cut to fit. Returns `buf`.
 */
const char *sb_log_quote(char *buf, size_t cap, const char *value);

#define SB_LOG(level, comp, ...)                        \
    do {                                                \
        if (sb_log_enabled(level)) {                    \
            sb_log_write((level), (comp), __VA_ARGS__); \
        }                                               \
    } while (0)

#define SB_LOG_ERROR(comp, ...) SB_LOG(SB_LOG_ERROR, comp, __VA_ARGS__)
#define SB_LOG_WARN(comp, ...)  SB_LOG(SB_LOG_WARN, comp, __VA_ARGS__)
#define SB_LOG_INFO(comp, ...)  SB_LOG(SB_LOG_INFO, comp, __VA_ARGS__)
#define SB_LOG_DEBUG(comp, ...) SB_LOG(SB_LOG_DEBUG, comp, __VA_ARGS__)

#endif
