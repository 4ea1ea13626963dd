/* SPDX-License-Identifier: MIT */
/*
 * The logfmt writer behind the SB_LOG_* macros: timestamp, level and
 * component prefix, sanitising into a single line, one write(2) per line.
 */
#include "build_config.h"

#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SB_LOG_LINE_MAX 2048

static const char *const log_level_names[] = {
    [SB_LOG_ERROR] = "error",
    [SB_LOG_WARN] = "warn",
    [SB_LOG_INFO] = "info",
    [SB_LOG_DEBUG] = "debug",
};

static atomic_int log_threshold = SB_LOG_INFO;

void sb_log_set_level(enum sb_log_level level)
{
    atomic_store(&log_threshold, (int)level);
}

int sb_log_enabled(enum sb_log_level level)
{
    return (int)level <= atomic_load(&log_threshold);
}

enum sb_status sb_log_level_parse(const char *name,
                                  enum sb_log_level *out_level)
{
    size_t i;

    for (i = 0; i < sizeof(log_level_names) / sizeof(log_level_names[0]); i++) {
        if (strcmp(name, log_level_names[i]) == 0) {
            *out_level = (enum sb_log_level)i;
            return SB_OK;
        }
    }
    *out_level = SB_LOG_INFO;
    return SB_ERR_INVALID;
}

static size_t log_format_time(char *buf, size_t cap)
{
    struct timespec now;
    struct tm tm;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(buf + n, cap - n, ".%03ldZ", now.tv_nsec / 1000000L);
    return n;
}

/* One line means one line: a newline in a value must not forge another. */
static void log_flatten(char *line, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f) {
            line[i] = ' ';
        }
    }
}

void sb_log_write(enum sb_log_level level, const char *comp,
                  const char *fields_fmt, ...)
{
    char line[SB_LOG_LINE_MAX];
    char ts[40];
    va_list ap;
    int n;
    size_t len;
    ssize_t written;

    log_format_time(ts, sizeof(ts));
    n = snprintf(line, sizeof(line), "ts=%s level=%s comp=%s ", ts,
                 log_level_names[level], comp);
    len = (size_t)n;

    va_start(ap, fields_fmt);
    n = vsnprintf(line + len, sizeof(line) - len, fields_fmt, ap);
    va_end(ap);
    len += n < 0 ? 0 : (size_t)n;
    if (len > sizeof(line) - 2) {
        len = sizeof(line) - 2;
    }

    log_flatten(line, len);
    line[len++] = '\n';
    written = write(STDERR_FILENO, line, len);
    (void)written; /* nowhere left to report a failing stderr */
}

const char *sb_log_quote(char *buf, size_t cap, const char *value)
{
    size_t out = 0;
    const char *p;

    if (cap < 3) {
        buf[0] = '\0';
        return buf;
    }
    buf[out++] = '"';
    for (p = value; *p != '\0' && out + 3 < cap; p++) {
        if (*p == '"' || *p == '\\') {
            buf[out++] = '\\';
        }
        buf[out++] = *p;
    }
    buf[out++] = '"';
    buf[out] = '\0';
    return buf;
}
