/* SPDX-License-Identifier: MIT */
/*
 * Named schedules (SPEC §3, §4 within/outside): days of the week and
 * hour ranges in the configured timezone, e.g.
 *   business-hours: { days: mon-fri, hours: "08:00-18:00" }
 *   night:          { days: "mon-sun", hours: "22:00-06:00" }
 * A range that crosses midnight belongs to the day it starts on: with
 * days mon-fri, "22:00-06:00" covers Friday 22:00 to Saturday 06:00 but
 * not Sunday 22:00 to Monday 06:00. Starts are inclusive, ends exclusive.
 *
 * Times are converted with localtime_r(), so the process timezone (TZ,
 * set from the config's `timezone` by sb_schedule_set_timezone before any
 * thread starts) decides; daylight-saving changes follow the tz database.
 */
#ifndef SB_SCHEDULE_H
#define SB_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define SB_SCHEDULE_MAX_RANGES 8

struct sb_schedule_range {
    uint16_t start; /* minutes after local midnight, 0..1439 */
    uint16_t end;   /* 1..1440; end <= start means it crosses midnight */
};

struct sb_schedule {
    uint8_t days; /* bit 0 = Sunday ... bit 6 = Saturday (struct tm) */
    struct sb_schedule_range ranges[SB_SCHEDULE_MAX_RANGES];
    size_t range_count; /* 0 means the whole of each listed day */
};

/*
 * Parses days: names mon tue wed thu fri sat sun, ranges "mon-fri" (a
 * range may wrap: "fri-mon"), lists "sat,sun" or "mon-wed,fri", spaces
 * allowed around commas. On SB_ERR_INVALID `err` says what was expected,
 * with err->col the 1-based position of the bad part within `text`.
 */
enum sb_status sb_schedule_parse_days(const char *text, uint8_t *out_days,
                                      struct sb_error *err);

/*
 * Parses hour ranges: "HH:MM-HH:MM", several separated by commas; "24:00"
 * allowed as an end. Fills sched->ranges and range_count. Errors as for
 * sb_schedule_parse_days, including an empty range ("09:00-09:00").
 */
enum sb_status sb_schedule_parse_hours(const char *text,
                                       struct sb_schedule *sched,
                                       struct sb_error *err);

/*
 * Whether Unix time `ms` falls inside the schedule, in the process
 * timezone. Thread-safe; does not allocate.
 */
int sb_schedule_contains(const struct sb_schedule *sched, int64_t ms);

/*
 * Checks that `name` is a timezone the tz database knows (a file under
 * /usr/share/zoneinfo, or "UTC") and makes it the process timezone.
 * MUST be called before other threads start: it sets TZ. Returns
 * SB_ERR_INVALID with a message naming the timezone when unknown.
 */
enum sb_status sb_schedule_set_timezone(const char *name, struct sb_error *err);

/*
 * From now on sb_schedule_set_timezone() accepts only the zone already
 * set: serve calls this once its threads run, so a reload cannot change
 * TZ under them (a new zone needs a restart).
 */
void sb_schedule_freeze_timezone(void);

#endif
