/* SPDX-License-Identifier: MIT */
/*
 * Named schedules: the parsers for `days` and `hours`, which report the
 * column of the bad part so config errors can point into the value, the
 * test of an instant against a schedule in local time, and the check that
 * makes a tz database name the process timezone.
 */
#include "build_config.h"

#include "schedule.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SCHEDULE_ZONEINFO_DIR  "/usr/share/zoneinfo"
#define SCHEDULE_SHOWN_MAX     32 /* bytes of a bad token quoted back */
#define SCHEDULE_DAYS_EXPECTED "expected mon, tue, wed, thu, fri, sat or sun"
#define SCHEDULE_HOURS_EXPECTED \
    "expected HH:MM-HH:MM such as 08:00-18:00, several separated by commas"
#define SCHEDULE_TZ_EXPECTED \
    "expected a tz database name such as Europe/Berlin or UTC"
#define SCHEDULE_HOUR_RANGE \
    "hour %.2s is out of range; expected 00 to 23, or 24:00 to end a range"
#define SCHEDULE_EMPTY_RANGE \
    "empty range %.11s: start equals end; 00:00-24:00 is the whole day"
#define SCHEDULE_NO_TZDATA \
    "unknown timezone \"%s\": %s is missing; install the tzdata package"

/* A value being parsed: the whole text is kept so columns are 1-based. */
struct schedule_cursor {
    const char *text;
    const char *p;
    struct sb_error *err;
};

/* Parses one list entry at cur->p and leaves cur->p just past it. */
typedef enum sb_status (*schedule_item_fn)(struct schedule_cursor *cur,
                                           void *ctx);

/* Indexed like struct tm's tm_wday, which is also the bit in `days`. */
static const char *const schedule_day_names[7] = {
    "sun", "mon", "tue", "wed", "thu", "fri", "sat",
};

/* ---- errors with a column ------------------------------------------- */

static enum sb_status schedule_fail(struct schedule_cursor *cur, const char *at,
                                    const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum sb_status schedule_fail(struct schedule_cursor *cur, const char *at,
                                    const char *fmt, ...)
{
    char msg[sizeof(cur->err->msg)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* No file or line: the config layer adds the node's position. */
    sb_error_at(cur->err, NULL, 0, (unsigned)(at - cur->text) + 1, "%s", msg);
    return SB_ERR_INVALID;
}

static int schedule_is_space(char c)
{
    return c == ' ' || c == '\t';
}

static const char *schedule_skip_space(const char *p)
{
    while (schedule_is_space(*p)) {
        p++;
    }
    return p;
}

/* Length of the token at `p` as quoted back in a message. */
static int schedule_shown(const char *p, const char *stops)
{
    size_t len = strcspn(p, stops);

    return len > SCHEDULE_SHOWN_MAX ? SCHEDULE_SHOWN_MAX : (int)len;
}

/*
 * An entry is missing where cur->p stands. Pointing at the separator that
 * has nothing after it reads better than pointing past the end of text.
 */
static enum sb_status schedule_missing(struct schedule_cursor *cur,
                                       const char *noun, const char *expected)
{
    const char *q = cur->p;

    if (*q != '\0') {
        return schedule_fail(cur, q, "missing %s before '%c'; %s", noun, *q,
                             expected);
    }
    while (q > cur->text && schedule_is_space(q[-1])) {
        q--;
    }
    if (q == cur->text) {
        return schedule_fail(cur, q, "missing %s; %s", noun, expected);
    }
    return schedule_fail(cur, q - 1, "missing %s after '%c'; %s", noun, q[-1],
                         expected);
}

/*
 * Walks "entry, entry, ..." with spaces allowed around the commas. An
 * empty entry (no text, ",," or a trailing comma) is left to `item`, which
 * knows what it expected there.
 */
static enum sb_status schedule_walk_list(struct schedule_cursor *cur,
                                         schedule_item_fn item, void *ctx)
{
    enum sb_status rc;

    cur->p = schedule_skip_space(cur->text);
    for (;;) {
        rc = item(cur, ctx);
        if (rc != SB_OK) {
            return rc;
        }
        cur->p = schedule_skip_space(cur->p);
        if (*cur->p == '\0') {
            return SB_OK;
        }
        if (*cur->p != ',') {
            return schedule_fail(cur, cur->p,
                                 "expected ',' or the end, found \"%.*s\"",
                                 schedule_shown(cur->p, ", \t"), cur->p);
        }
        cur->p = schedule_skip_space(cur->p + 1);
    }
}

/* ---- days ----------------------------------------------------------- */

/* Reads one day name; *out_day is its struct tm weekday, 0 on error. */
static enum sb_status schedule_day_name(struct schedule_cursor *cur,
                                        int *out_day)
{
    size_t len = strcspn(cur->p, ", \t-");
    int d;

    *out_day = 0;
    if (len == 0) {
        return schedule_missing(cur, "day", SCHEDULE_DAYS_EXPECTED);
    }
    /* Lowercase only, like every other keyword in the config. */
    for (d = 0; d < 7; d++) {
        if (len == 3 && memcmp(cur->p, schedule_day_names[d], 3) == 0) {
            *out_day = d;
            cur->p += len;
            return SB_OK;
        }
    }
    return schedule_fail(cur, cur->p, "unknown day \"%.*s\"; %s",
                         schedule_shown(cur->p, ", \t-"), cur->p,
                         SCHEDULE_DAYS_EXPECTED);
}

/* "mon" or "fri-mon"; a range runs forward through the week, wrapping. */
static enum sb_status schedule_days_item(struct schedule_cursor *cur, void *ctx)
{
    uint8_t *days = ctx;
    enum sb_status rc;
    int first;
    int last;
    int d;

    rc = schedule_day_name(cur, &first);
    if (rc != SB_OK) {
        return rc;
    }
    last = first;
    if (*cur->p == '-') {
        cur->p++;
        rc = schedule_day_name(cur, &last);
        if (rc != SB_OK) {
            return rc;
        }
    }

    d = first;
    for (;;) {
        *days = (uint8_t)(*days | (1u << d));
        if (d == last) {
            return SB_OK;
        }
        d = (d + 1) % 7;
    }
}

enum sb_status sb_schedule_parse_days(const char *text, uint8_t *out_days,
                                      struct sb_error *err)
{
    struct schedule_cursor cur = {text, text, err};
    uint8_t days = 0;
    enum sb_status rc;

    rc = schedule_walk_list(&cur, schedule_days_item, &days);
    *out_days = rc == SB_OK ? days : 0;
    return rc;
}

/* ---- hours ---------------------------------------------------------- */

static int schedule_is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/*
 * Reads "HH:MM" into minutes after midnight. Only an end may be 24:00,
 * so that a range can reach the end of the day; *out_minutes is 0 on
 * error.
 */
static enum sb_status schedule_time(struct schedule_cursor *cur, int is_end,
                                    unsigned *out_minutes)
{
    const char *p = cur->p;
    size_t len = strcspn(p, ", \t-");
    unsigned hour;
    unsigned minute;

    *out_minutes = 0;
    if (len == 0) {
        return schedule_missing(cur, "time", SCHEDULE_HOURS_EXPECTED);
    }
    if (len != 5 || !schedule_is_digit(p[0]) || !schedule_is_digit(p[1]) ||
        p[2] != ':' || !schedule_is_digit(p[3]) || !schedule_is_digit(p[4])) {
        return schedule_fail(cur, p, "bad time \"%.*s\"; %s",
                             schedule_shown(p, ", \t-"), p,
                             SCHEDULE_HOURS_EXPECTED);
    }
    hour = (unsigned)(p[0] - '0') * 10 + (unsigned)(p[1] - '0');
    minute = (unsigned)(p[3] - '0') * 10 + (unsigned)(p[4] - '0');
    if (minute > 59) {
        return schedule_fail(cur, p + 3,
                             "minute %.2s is out of range; expected 00 to 59",
                             p + 3);
    }
    if (hour > 24 || (hour == 24 && (minute != 0 || !is_end))) {
        return schedule_fail(cur, p, SCHEDULE_HOUR_RANGE, p);
    }
    *out_minutes = hour * 60 + minute;
    cur->p = p + len;
    return SB_OK;
}

/* "HH:MM-HH:MM"; an end at or before the start crosses midnight. */
static enum sb_status schedule_hours_item(struct schedule_cursor *cur,
                                          void *ctx)
{
    struct sb_schedule *sched = ctx;
    const char *item = cur->p;
    enum sb_status rc;
    unsigned start;
    unsigned end;

    rc = schedule_time(cur, 0, &start);
    if (rc != SB_OK) {
        return rc;
    }
    if (*cur->p != '-') {
        return schedule_fail(cur, cur->p, "expected '-' after %.5s; %s", item,
                             SCHEDULE_HOURS_EXPECTED);
    }
    cur->p++;
    rc = schedule_time(cur, 1, &end);
    if (rc != SB_OK) {
        return rc;
    }

    /* Equal ends could mean nothing or the whole day: make the user say. */
    if (start == end) {
        return schedule_fail(cur, item, SCHEDULE_EMPTY_RANGE, item);
    }
    if (sched->range_count == SB_SCHEDULE_MAX_RANGES) {
        return schedule_fail(cur, item, "more than %d hour ranges",
                             SB_SCHEDULE_MAX_RANGES);
    }
    sched->ranges[sched->range_count].start = (uint16_t)start;
    sched->ranges[sched->range_count].end = (uint16_t)end;
    sched->range_count++;
    return SB_OK;
}

enum sb_status sb_schedule_parse_hours(const char *text,
                                       struct sb_schedule *sched,
                                       struct sb_error *err)
{
    struct schedule_cursor cur = {text, text, err};
    enum sb_status rc;

    sched->range_count = 0;
    rc = schedule_walk_list(&cur, schedule_hours_item, sched);
    if (rc != SB_OK) {
        /* Never leave half a list behind. */
        sched->range_count = 0;
    }
    return rc;
}

/* ---- evaluation ----------------------------------------------------- */

static int schedule_day_listed(const struct sb_schedule *sched, int wday)
{
    return (sched->days >> wday) & 1;
}

/*
 * A crossing range belongs to the day it starts on, so its early-morning
 * part counts only when the day before is listed.
 */
static int schedule_range_contains(const struct sb_schedule *sched,
                                   const struct sb_schedule_range *r, int wday,
                                   unsigned minute)
{
    int yesterday = (wday + 6) % 7;

    if (r->start < r->end) {
        return schedule_day_listed(sched, wday) && minute >= r->start &&
               minute < r->end;
    }
    if (schedule_day_listed(sched, wday) && minute >= r->start) {
        return 1;
    }
    return schedule_day_listed(sched, yesterday) && minute < r->end;
}

int sb_schedule_contains(const struct sb_schedule *sched, int64_t ms)
{
    int64_t secs = ms / 1000;
    time_t t;
    struct tm tm;
    unsigned minute;
    size_t i;

    /* Round towards the past: -1 ms is 23:59:59 on 31 December 1969. */
    if (ms % 1000 < 0) {
        secs--;
    }
    t = (time_t)secs;
    /*
     * localtime_r only reads the zone tzset() loaded, under glibc's lock:
     * no allocation here once sb_schedule_set_timezone has run.
     */
    if ((int64_t)t != secs || localtime_r(&t, &tm) == NULL) {
        return 0;
    }
    minute = (unsigned)(tm.tm_hour * 60 + tm.tm_min);
    if (sched->range_count == 0) {
        return schedule_day_listed(sched, tm.tm_wday);
    }
    for (i = 0; i < sched->range_count && i < SB_SCHEDULE_MAX_RANGES; i++) {
        if (schedule_range_contains(sched, &sched->ranges[i], tm.tm_wday,
                                    minute)) {
            return 1;
        }
    }
    return 0;
}

/* ---- timezone ------------------------------------------------------- */

/*
 * glibc falls back to UTC without a word when TZ names something it
 * cannot read, so the name is checked here: a regular file under the
 * zoneinfo directory that starts with the TZif magic. That also rejects
 * zone.tab and the other tables that live beside the zones.
 */
static enum sb_status schedule_zone_check(const char *name,
                                          struct sb_error *err)
{
    char path[sizeof(SCHEDULE_ZONEINFO_DIR) + 256];
    char magic[4];
    struct stat st;
    ssize_t got;
    int fd;
    int n;

    n = snprintf(path, sizeof(path), "%s/%s", SCHEDULE_ZONEINFO_DIR, name);
    if (n < 0 || (size_t)n >= sizeof(path) || stat(path, &st) != 0 ||
        !S_ISREG(st.st_mode)) {
        if (stat(SCHEDULE_ZONEINFO_DIR, &st) != 0) {
            sb_error_set(err, SCHEDULE_NO_TZDATA, name, SCHEDULE_ZONEINFO_DIR);
            return SB_ERR_INVALID;
        }
        sb_error_set(err, "unknown timezone \"%s\"; %s", name,
                     SCHEDULE_TZ_EXPECTED);
        return SB_ERR_INVALID;
    }

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        sb_error_set(err, "cannot read timezone \"%s\" from %s: %s", name, path,
                     strerror(errno));
        return SB_ERR_IO;
    }
    got = read(fd, magic, sizeof(magic));
    close(fd);
    if (got != (ssize_t)sizeof(magic) || memcmp(magic, "TZif", 4) != 0) {
        sb_error_set(err, "unknown timezone \"%s\"; %s", name,
                     SCHEDULE_TZ_EXPECTED);
        return SB_ERR_INVALID;
    }
    return SB_OK;
}

/* Set once serving: from then on TZ is read by other threads. */
static atomic_int schedule_tz_frozen;

void sb_schedule_freeze_timezone(void)
{
    atomic_store(&schedule_tz_frozen, 1);
}

enum sb_status sb_schedule_set_timezone(const char *name, struct sb_error *err)
{
    enum sb_status rc;
    const char *current;

    if (name == NULL || name[0] == '\0') {
        sb_error_set(err, "empty timezone; %s", SCHEDULE_TZ_EXPECTED);
        return SB_ERR_INVALID;
    }
    /* A name, not a path: nothing outside the zoneinfo directory. */
    if (name[0] == '/' || strstr(name, "..") != NULL) {
        sb_error_set(err, "unknown timezone \"%s\"; %s", name,
                     SCHEDULE_TZ_EXPECTED);
        return SB_ERR_INVALID;
    }
    /* TZ=UTC means UTC to glibc whether or not tzdata is installed. */
    if (strcmp(name, "UTC") != 0) {
        rc = schedule_zone_check(name, err);
        if (rc != SB_OK) {
            return rc;
        }
    }

    /* setenv() under threads that read TZ is a data race: refuse it. */
    if (atomic_load(&schedule_tz_frozen)) {
        current = getenv("TZ");
        if (current != NULL && strcmp(current, name) == 0) {
            return SB_OK;
        }
        sb_error_set(err, "changing the timezone needs a restart");
        return SB_ERR_INVALID;
    }
    if (setenv("TZ", name, 1) != 0) {
        sb_error_set(err, "cannot set TZ to \"%s\": %s", name, strerror(errno));
        return SB_ERR_NOMEM;
    }
    tzset();
    return SB_OK;
}
