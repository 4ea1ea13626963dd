/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/schedule: the days and hours parsers with the column
 * of every error, inclusive starts and exclusive ends, ranges that cross
 * midnight, daylight-saving changes in Los Angeles and Berlin, and which
 * timezone names are accepted.
 */
#include "build_config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "schedule.h"

/* Bits of `days`, numbered like struct tm's tm_wday. */
#define SUN (1u << 0)
#define MON (1u << 1)
#define TUE (1u << 2)
#define WED (1u << 3)
#define THU (1u << 4)
#define FRI (1u << 5)
#define SAT (1u << 6)

#define DAYS_EXPECTED "expected mon, tue, wed, thu, fri, sat or sun"

/* One instant, given as a UTC wall clock, and whether it is inside. */
struct probe {
    int year, month, day, hour, minute;
    int want;
    const char *what; /* the local time it stands for, for messages */
};

static int is_leap(int year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

/*
 * Milliseconds since the epoch of a UTC date and time, worked out by hand
 * so the expected instants do not depend on the timezone under test.
 */
static int64_t utc_ms(int year, int month, int day, int hour, int minute)
{
    static const int before_month[12] = {0,   31,  59,  90,  120, 151,
                                         181, 212, 243, 273, 304, 334};
    int64_t days = 0;
    int y;

    for (y = 1970; y < year; y++) {
        days += is_leap(y) ? 366 : 365;
    }
    days += before_month[month - 1] + day - 1;
    if (month > 2 && is_leap(year)) {
        days++;
    }
    return ((days * 24 + hour) * 60 + minute) * 60 * 1000;
}

static void use_timezone(const char *name)
{
    struct sb_error err;

    sb_error_clear(&err);
    if (sb_schedule_set_timezone(name, &err) != SB_OK) {
        fail_msg("timezone %s was rejected: %s", name, err.msg);
    }
}

/* A schedule from config text; `hours` NULL means whole days. */
static struct sb_schedule make_schedule(const char *days, const char *hours)
{
    struct sb_schedule sched;
    struct sb_error err;

    memset(&sched, 0, sizeof(sched));
    sb_error_clear(&err);
    if (sb_schedule_parse_days(days, &sched.days, &err) != SB_OK) {
        fail_msg("days \"%s\" were rejected: %s", days, err.msg);
    }
    if (hours != NULL &&
        sb_schedule_parse_hours(hours, &sched, &err) != SB_OK) {
        fail_msg("hours \"%s\" were rejected: %s", hours, err.msg);
    }
    return sched;
}

static void check_probes(const struct sb_schedule *sched,
                         const struct probe *probes, size_t count)
{
    size_t i;

    for (i = 0; i < count; i++) {
        const struct probe *pr = &probes[i];
        int64_t ms = utc_ms(pr->year, pr->month, pr->day, pr->hour, pr->minute);
        int got = sb_schedule_contains(sched, ms);

        if (got != pr->want) {
            fail_msg("%04d-%02d-%02d %02d:%02d UTC (%s): expected %s, got %s",
                     pr->year, pr->month, pr->day, pr->hour, pr->minute,
                     pr->what, pr->want ? "inside" : "outside",
                     got ? "inside" : "outside");
        }
    }
}

static void expect_days(const char *text, unsigned want)
{
    struct sb_error err;
    uint8_t days = 0;

    sb_error_clear(&err);
    if (sb_schedule_parse_days(text, &days, &err) != SB_OK) {
        fail_msg("days \"%s\" were rejected: %s", text, err.msg);
    }
    if (days != want) {
        fail_msg("days \"%s\": expected mask 0x%02x, got 0x%02x", text, want,
                 days);
    }
}

static void expect_days_error(const char *text, unsigned col,
                              const char *needle)
{
    struct sb_error err;
    uint8_t days = 0xff;
    enum sb_status rc;

    sb_error_clear(&err);
    rc = sb_schedule_parse_days(text, &days, &err);
    if (rc != SB_ERR_INVALID || err.col != col ||
        strstr(err.msg, needle) == NULL) {
        fail_msg("days \"%s\": expected an error at column %u containing "
                 "\"%s\", got rc=%d at column %u: %s",
                 text, col, needle, rc, err.col, err.msg);
    }
    if (days != 0 || err.line != 0 || err.file[0] != '\0') {
        fail_msg("days \"%s\": a failure must leave no days and no line", text);
    }
}

static void expect_hours_error(const char *text, unsigned col,
                               const char *needle)
{
    struct sb_schedule sched;
    struct sb_error err;
    enum sb_status rc;

    memset(&sched, 0, sizeof(sched));
    sched.range_count = 3;
    sb_error_clear(&err);
    rc = sb_schedule_parse_hours(text, &sched, &err);
    if (rc != SB_ERR_INVALID || err.col != col ||
        strstr(err.msg, needle) == NULL) {
        fail_msg("hours \"%s\": expected an error at column %u containing "
                 "\"%s\", got rc=%d at column %u: %s",
                 text, col, needle, rc, err.col, err.msg);
    }
    if (sched.range_count != 0) {
        fail_msg("hours \"%s\": a failure left %zu ranges behind", text,
                 sched.range_count);
    }
}

static void expect_range(const struct sb_schedule *sched, size_t i,
                         unsigned start, unsigned end)
{
    if (i >= sched->range_count || sched->ranges[i].start != start ||
        sched->ranges[i].end != end) {
        fail_msg("range %zu: expected %u-%u minutes", i, start, end);
    }
}

static void expect_timezone_error(const char *name, const char *needle)
{
    struct sb_error err;
    enum sb_status rc;

    sb_error_clear(&err);
    rc = sb_schedule_set_timezone(name, &err);
    if (rc != SB_ERR_INVALID || strstr(err.msg, needle) == NULL) {
        fail_msg("timezone \"%s\": expected rejection containing \"%s\", "
                 "got rc=%d: %s",
                 name, needle, rc, err.msg);
    }
}

static void test_schedule_days_names_ranges_and_lists(void **state)
{
    (void)state;
    expect_days("mon", MON);
    expect_days("sun", SUN);
    expect_days("mon-fri", MON | TUE | WED | THU | FRI);
    expect_days("sat,sun", SAT | SUN);
    expect_days("mon-wed,fri", MON | TUE | WED | FRI);
    expect_days(" sat , sun ", SAT | SUN);
    expect_days("sun-sat", 0x7f);
    expect_days("mon-mon", MON);
    expect_days("tue,tue", TUE);
}

static void test_schedule_days_ranges_wrap(void **state)
{
    (void)state;
    expect_days("fri-mon", FRI | SAT | SUN | MON);
    expect_days("sat-sun", SAT | SUN);
    expect_days("sat-tue,thu", SAT | SUN | MON | TUE | THU);
}

static void test_schedule_days_errors_point_at_the_bad_part(void **state)
{
    (void)state;
    expect_days_error("", 1, "missing day; " DAYS_EXPECTED);
    expect_days_error("   ", 1, "missing day");
    expect_days_error("mon,", 4, "missing day after ','");
    expect_days_error("mon, ", 4, "missing day after ','");
    expect_days_error("mon,,tue", 5, "missing day before ','");
    expect_days_error(",mon", 1, "missing day before ','");
    expect_days_error("mon-", 4, "missing day after '-'");
    expect_days_error("Mon", 1, "unknown day \"Mon\"");
    expect_days_error("MON-FRI", 1, DAYS_EXPECTED);
    expect_days_error("monday", 1, "unknown day \"monday\"");
    expect_days_error("mon-fry", 5, "unknown day \"fry\"");
    expect_days_error("sat, sunday", 6, "unknown day \"sunday\"");
    expect_days_error("mon tue", 5, "expected ',' or the end, found \"tue\"");
    expect_days_error("mon-fri-sat", 8, "expected ',' or the end");
}

static void test_schedule_hours_ranges_and_lists(void **state)
{
    struct sb_schedule sched = make_schedule("mon", "08:00-18:00");

    (void)state;
    if (sched.range_count != 1) {
        fail_msg("expected one range, got %zu", sched.range_count);
    }
    expect_range(&sched, 0, 480, 1080);

    sched = make_schedule("mon", "09:00-12:00, 13:00-17:30 ,22:00-06:00");
    if (sched.range_count != 3) {
        fail_msg("expected three ranges, got %zu", sched.range_count);
    }
    expect_range(&sched, 0, 540, 720);
    expect_range(&sched, 1, 780, 1050);
    expect_range(&sched, 2, 1320, 360);

    sched = make_schedule("mon", "00:00-24:00");
    expect_range(&sched, 0, 0, 1440);
    sched = make_schedule("mon", "23:59-00:00");
    expect_range(&sched, 0, 1439, 0);
}

static void test_schedule_hours_errors_point_at_the_bad_part(void **state)
{
    (void)state;
    expect_hours_error("", 1, "missing time; expected HH:MM-HH:MM");
    expect_hours_error("8:00-18:00", 1, "bad time \"8:00\"");
    expect_hours_error("08:00-18:00x", 7, "bad time \"18:00x\"");
    expect_hours_error("0800-1800", 1, "bad time \"0800\"");
    expect_hours_error("08:00-25:00", 7, "hour 25 is out of range");
    expect_hours_error("08:60-18:00", 4, "minute 60 is out of range");
    expect_hours_error("24:00-06:00", 1, "hour 24 is out of range");
    expect_hours_error("08:00-24:30", 7, "hour 24 is out of range");
    expect_hours_error("09:00-09:00", 1, "empty range 09:00-09:00");
    expect_hours_error("08:00-12:00, 00:00-00:00", 14, "empty range");
    expect_hours_error("08:00-18:00,", 12, "missing time after ','");
    expect_hours_error("08:00-", 6, "missing time after '-'");
    expect_hours_error("08:00 18:00", 6, "expected '-' after 08:00");
    expect_hours_error("08:00-12:00 13:00-17:00", 13,
                       "expected ',' or the end, found \"13:00-17:00\"");
}

static void test_schedule_hours_at_most_max_ranges(void **state)
{
    static const char eight[] = "00:00-01:00,02:00-03:00,04:00-05:00,"
                                "06:00-07:00,08:00-09:00,10:00-11:00,"
                                "12:00-13:00,14:00-15:00";
    static const char nine[] = "00:00-01:00,02:00-03:00,04:00-05:00,"
                               "06:00-07:00,08:00-09:00,10:00-11:00,"
                               "12:00-13:00,14:00-15:00,16:00-17:00";
    struct sb_schedule sched = make_schedule("mon", eight);

    (void)state;
    if (sched.range_count != SB_SCHEDULE_MAX_RANGES) {
        fail_msg("expected %d ranges, got %zu", SB_SCHEDULE_MAX_RANGES,
                 sched.range_count);
    }
    expect_range(&sched, 7, 840, 900);
    expect_hours_error(nine, 8 * 12 + 1, "more than 8 hour ranges");
}

static void test_schedule_start_inclusive_end_exclusive(void **state)
{
    static const struct probe probes[] = {
        {2026, 3, 4, 7, 59, 0, "Wed 07:59"},
        {2026, 3, 4, 8, 0, 1, "Wed 08:00, the start"},
        {2026, 3, 4, 17, 59, 1, "Wed 17:59"},
        {2026, 3, 4, 18, 0, 0, "Wed 18:00, the end"},
        {2026, 3, 7, 10, 0, 0, "Sat 10:00, not a listed day"},
    };
    struct sb_schedule sched;
    int64_t start_ms = utc_ms(2026, 3, 4, 8, 0);
    int64_t end_ms = utc_ms(2026, 3, 4, 18, 0);

    (void)state;
    use_timezone("UTC");
    sched = make_schedule("mon-fri", "08:00-18:00");
    check_probes(&sched, probes, sizeof(probes) / sizeof(probes[0]));
    if (sb_schedule_contains(&sched, start_ms - 1) ||
        !sb_schedule_contains(&sched, end_ms - 1)) {
        fail_msg("the millisecond before each edge is on the wrong side");
    }
}

static void test_schedule_whole_day_without_hours(void **state)
{
    static const struct probe probes[] = {
        {2026, 3, 6, 23, 59, 0, "Fri 23:59"},
        {2026, 3, 7, 0, 0, 1, "Sat 00:00"},
        {2026, 3, 8, 23, 59, 1, "Sun 23:59"},
        {2026, 3, 9, 0, 0, 0, "Mon 00:00"},
    };
    struct sb_schedule sched;

    (void)state;
    use_timezone("UTC");
    sched = make_schedule("sat,sun", NULL);
    check_probes(&sched, probes, sizeof(probes) / sizeof(probes[0]));
}

static void test_schedule_several_ranges(void **state)
{
    static const struct probe probes[] = {
        {2026, 3, 4, 11, 59, 1, "Wed 11:59"},
        {2026, 3, 4, 12, 0, 0, "Wed 12:00, lunch"},
        {2026, 3, 4, 13, 0, 1, "Wed 13:00"},
        {2026, 3, 4, 17, 0, 0, "Wed 17:00"},
    };
    struct sb_schedule sched;

    (void)state;
    use_timezone("UTC");
    sched = make_schedule("mon-fri", "09:00-12:00,13:00-17:00");
    check_probes(&sched, probes, sizeof(probes) / sizeof(probes[0]));
}

static void test_schedule_crossing_midnight_belongs_to_start_day(void **state)
{
    static const struct probe probes[] = {
        {2026, 3, 6, 21, 59, 0, "Fri 21:59"},
        {2026, 3, 6, 22, 0, 1, "Fri 22:00, a listed day"},
        {2026, 3, 7, 5, 59, 1, "Sat 05:59, the night Friday started"},
        {2026, 3, 7, 6, 0, 0, "Sat 06:00, the end"},
        {2026, 3, 7, 22, 0, 0, "Sat 22:00, not a listed day"},
        {2026, 3, 8, 23, 0, 0, "Sun 23:00, not a listed day"},
        {2026, 3, 9, 1, 0, 0, "Mon 01:00, the night Sunday started"},
        {2026, 3, 9, 22, 0, 1, "Mon 22:00"},
        {2026, 3, 10, 1, 0, 1, "Tue 01:00, the night Monday started"},
    };
    struct sb_schedule sched;

    (void)state;
    use_timezone("UTC");
    sched = make_schedule("mon-fri", "22:00-06:00");
    check_probes(&sched, probes, sizeof(probes) / sizeof(probes[0]));
}

static void test_schedule_crossing_midnight_every_night(void **state)
{
    static const struct probe probes[] = {
        {2026, 3, 8, 23, 0, 1, "Sun 23:00"},
        {2026, 3, 9, 1, 0, 1, "Mon 01:00"},
        {2026, 3, 9, 12, 0, 0, "Mon 12:00"},
    };
    struct sb_schedule sched;

    (void)state;
    use_timezone("UTC");
    sched = make_schedule("mon-sun", "22:00-06:00");
    check_probes(&sched, probes, sizeof(probes) / sizeof(probes[0]));
}

static void test_schedule_before_1970_rounds_down(void **state)
{
    struct sb_schedule wed;
    struct sb_schedule thu;

    (void)state;
    use_timezone("UTC");
    /* -1 ms is Wednesday 1969-12-31 23:59:59.999, not Thursday 00:00. */
    wed = make_schedule("wed", "23:00-24:00");
    thu = make_schedule("thu", "00:00-01:00");
    if (!sb_schedule_contains(&wed, -1) || sb_schedule_contains(&thu, -1)) {
        fail_msg("-1 ms was not placed in Wednesday 23:59 UTC");
    }
}

static void test_schedule_los_angeles_spring_forward(void **state)
{
    /* 2026-03-08 02:00 PST (10:00 UTC) jumps to 03:00 PDT. */
    static const struct probe business[] = {
        {2026, 3, 6, 15, 59, 0, "Fri 07:59 PST"},
        {2026, 3, 6, 16, 0, 1, "Fri 08:00 PST"},
        {2026, 3, 7, 1, 59, 1, "Fri 17:59 PST"},
        {2026, 3, 7, 2, 0, 0, "Fri 18:00 PST"},
        {2026, 3, 9, 14, 59, 0, "Mon 07:59 PDT"},
        {2026, 3, 9, 15, 0, 1, "Mon 08:00 PDT"},
        {2026, 3, 10, 0, 59, 1, "Mon 17:59 PDT"},
        {2026, 3, 10, 1, 0, 0, "Mon 18:00 PDT"},
    };
    static const struct probe change_day[] = {
        {2026, 3, 8, 14, 59, 0, "Sun 07:59 PDT"},
        {2026, 3, 8, 15, 0, 1, "Sun 08:00 PDT"},
    };
    static const struct probe skipped_hour[] = {
        {2026, 3, 7, 10, 0, 1, "Sat 02:00 PST, a day earlier"},
        {2026, 3, 8, 9, 59, 0, "Sun 01:59 PST"},
        {2026, 3, 8, 10, 0, 0, "Sun 03:00 PDT"},
    };
    struct sb_schedule sched;

    (void)state;
    use_timezone("America/Los_Angeles");
    sched = make_schedule("mon-fri", "08:00-18:00");
    check_probes(&sched, business, sizeof(business) / sizeof(business[0]));
    sched = make_schedule("mon-sun", "08:00-18:00");
    check_probes(&sched, change_day,
                 sizeof(change_day) / sizeof(change_day[0]));
    sched = make_schedule("mon-sun", "02:00-03:00");
    check_probes(&sched, skipped_hour,
                 sizeof(skipped_hour) / sizeof(skipped_hour[0]));
}

static void test_schedule_los_angeles_fall_back(void **state)
{
    /* 2026-11-01 02:00 PDT (09:00 UTC) falls back to 01:00 PST. */
    static const struct probe business[] = {
        {2026, 10, 30, 14, 59, 0, "Fri 07:59 PDT"},
        {2026, 10, 30, 15, 0, 1, "Fri 08:00 PDT"},
        {2026, 11, 2, 15, 0, 0, "Mon 07:00 PST"},
        {2026, 11, 2, 15, 59, 0, "Mon 07:59 PST"},
        {2026, 11, 2, 16, 0, 1, "Mon 08:00 PST"},
        {2026, 11, 3, 1, 59, 1, "Mon 17:59 PST"},
        {2026, 11, 3, 2, 0, 0, "Mon 18:00 PST"},
    };
    static const struct probe repeated_hour[] = {
        {2026, 11, 1, 7, 59, 0, "Sun 00:59 PDT"},
        {2026, 11, 1, 8, 0, 1, "Sun 01:00 PDT"},
        {2026, 11, 1, 8, 59, 1, "Sun 01:59 PDT"},
        {2026, 11, 1, 9, 0, 1, "Sun 01:00 PST, the second time"},
        {2026, 11, 1, 9, 59, 1, "Sun 01:59 PST"},
        {2026, 11, 1, 10, 0, 0, "Sun 02:00 PST"},
    };
    static const struct probe long_night[] = {
        {2026, 11, 1, 4, 59, 0, "Sat 21:59 PDT"},
        {2026, 11, 1, 5, 0, 1, "Sat 22:00 PDT"},
        {2026, 11, 1, 13, 59, 1, "Sun 05:59 PST, nine hours later"},
        {2026, 11, 1, 14, 0, 0, "Sun 06:00 PST"},
    };
    struct sb_schedule sched;

    (void)state;
    use_timezone("America/Los_Angeles");
    sched = make_schedule("mon-fri", "08:00-18:00");
    check_probes(&sched, business, sizeof(business) / sizeof(business[0]));
    sched = make_schedule("sun", "01:00-02:00");
    check_probes(&sched, repeated_hour,
                 sizeof(repeated_hour) / sizeof(repeated_hour[0]));
    sched = make_schedule("sat", "22:00-06:00");
    check_probes(&sched, long_night,
                 sizeof(long_night) / sizeof(long_night[0]));
}

static void test_schedule_berlin_summer_time(void **state)
{
    /*
     * 2026-03-29 01:00 UTC: 02:00 CET becomes 03:00 CEST.
     * 2026-10-25 01:00 UTC: 03:00 CEST becomes 02:00 CET.
     */
    static const struct probe business[] = {
        {2026, 3, 27, 6, 59, 0, "Fri 07:59 CET"},
        {2026, 3, 27, 7, 0, 1, "Fri 08:00 CET"},
        {2026, 3, 30, 5, 59, 0, "Mon 07:59 CEST"},
        {2026, 3, 30, 6, 0, 1, "Mon 08:00 CEST"},
        {2026, 3, 30, 15, 59, 1, "Mon 17:59 CEST"},
        {2026, 3, 30, 16, 0, 0, "Mon 18:00 CEST"},
        {2026, 10, 23, 6, 0, 1, "Fri 08:00 CEST"},
        {2026, 10, 26, 6, 0, 0, "Mon 07:00 CET"},
        {2026, 10, 26, 7, 0, 1, "Mon 08:00 CET"},
        {2026, 10, 26, 16, 59, 1, "Mon 17:59 CET"},
        {2026, 10, 26, 17, 0, 0, "Mon 18:00 CET"},
    };
    static const struct probe two_to_three[] = {
        {2026, 3, 29, 0, 59, 0, "Sun 01:59 CET"},
        {2026, 3, 29, 1, 0, 0, "Sun 03:00 CEST, 02:00 skipped"},
        {2026, 10, 25, 0, 0, 1, "Sun 02:00 CEST"},
        {2026, 10, 25, 1, 0, 1, "Sun 02:00 CET, the second time"},
        {2026, 10, 25, 1, 59, 1, "Sun 02:59 CET"},
        {2026, 10, 25, 2, 0, 0, "Sun 03:00 CET"},
    };
    struct sb_schedule sched;

    (void)state;
    use_timezone("Europe/Berlin");
    sched = make_schedule("mon-fri", "08:00-18:00");
    check_probes(&sched, business, sizeof(business) / sizeof(business[0]));
    sched = make_schedule("sun", "02:00-03:00");
    check_probes(&sched, two_to_three,
                 sizeof(two_to_three) / sizeof(two_to_three[0]));
}

static void test_schedule_timezone_accepts_known_names(void **state)
{
    static const char *names[] = {"UTC", "Europe/Berlin",
                                  "America/Los_Angeles"};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *tz;

        use_timezone(names[i]);
        tz = getenv("TZ");
        if (tz == NULL || strcmp(tz, names[i]) != 0) {
            fail_msg("TZ is \"%s\" after setting %s", tz ? tz : "(unset)",
                     names[i]);
        }
    }
}

static void test_schedule_timezone_rejects_unknown(void **state)
{
    const char *tz;

    (void)state;
    use_timezone("Europe/Berlin");
    expect_timezone_error("Mars/Olympus_Mons",
                          "unknown timezone \"Mars/Olympus_Mons\"");
    expect_timezone_error("", "empty timezone");
    expect_timezone_error("../etc/passwd",
                          "unknown timezone \"../etc/passwd\"");
    expect_timezone_error("America/../../../etc/passwd", "unknown timezone");
    expect_timezone_error("/etc/passwd", "unknown timezone \"/etc/passwd\"");
    expect_timezone_error("America", "unknown timezone \"America\"");
    expect_timezone_error("zone.tab", "unknown timezone \"zone.tab\"");
    expect_timezone_error("utc", "expected a tz database name");

    /* A rejected name must leave the previous timezone in force. */
    tz = getenv("TZ");
    if (tz == NULL || strcmp(tz, "Europe/Berlin") != 0) {
        fail_msg("a rejected timezone changed TZ to \"%s\"",
                 tz ? tz : "(unset)");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_days_names_ranges_and_lists),
        cmocka_unit_test(test_schedule_days_ranges_wrap),
        cmocka_unit_test(test_schedule_days_errors_point_at_the_bad_part),
        cmocka_unit_test(test_schedule_hours_ranges_and_lists),
        cmocka_unit_test(test_schedule_hours_errors_point_at_the_bad_part),
        cmocka_unit_test(test_schedule_hours_at_most_max_ranges),
        cmocka_unit_test(test_schedule_start_inclusive_end_exclusive),
        cmocka_unit_test(test_schedule_whole_day_without_hours),
        cmocka_unit_test(test_schedule_several_ranges),
        cmocka_unit_test(test_schedule_crossing_midnight_belongs_to_start_day),
        cmocka_unit_test(test_schedule_crossing_midnight_every_night),
        cmocka_unit_test(test_schedule_before_1970_rounds_down),
        cmocka_unit_test(test_schedule_los_angeles_spring_forward),
        cmocka_unit_test(test_schedule_los_angeles_fall_back),
        cmocka_unit_test(test_schedule_berlin_summer_time),
        cmocka_unit_test(test_schedule_timezone_accepts_known_names),
        cmocka_unit_test(test_schedule_timezone_rejects_unknown),
    };

    return cmocka_run_group_tests_name("schedule", tests, NULL, NULL);
}
