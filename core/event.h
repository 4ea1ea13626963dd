/* SPDX-License-Identifier: MIT */
/*
 * The event envelope: our id, the time we received it, the sender's
 * event_type and the body exactly as it arrived (validated JSON). Ids are
 * 26 characters of Crockford base32, a 48-bit millisecond time then 80
 * bits that are random per millisecond and incremented within one, so
 * they are unique and sort by time of receipt.
 */
#ifndef SB_EVENT_H
#define SB_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "json.h"
#include "status.h"

#define SB_EVENT_ID_LEN   26
#define SB_EVENT_TIME_LEN 24 /* "2026-12-03T18:27:47.123Z" */

/* A delivery routing decided on, stored in the event's transaction. */
struct sb_delivery_plan {
    const char *output; /* the output's name, borrowed from the config */
    const char *rule;   /* the rule's name, borrowed from the config */
    size_t send_index;  /* the entry's place in the rule's send list */
    char *fields;       /* rendered fields as one JSON object, owned */
};

struct sb_event {
    char id[SB_EVENT_ID_LEN + 1];
    int64_t received_ms;    /* Unix time in milliseconds */
    const char *event_type; /* borrowed from `doc` */
    char *body;             /* the request body, NUL-terminated */
    size_t body_len;
    struct sb_json_doc *doc; /* the parsed body */
    /* What routing decided; borrowed from whoever routed the event. */
    const struct sb_delivery_plan *plans;
    size_t plan_count;
};

/*
 * Validates a request body (SPEC §6: a JSON object whose event_type is a
 * non-empty string and whose payload, when present, is an object) and
 * builds an event that takes ownership of `body` (malloc'd, `len` bytes,
 * with a NUL at body[len]). On SB_OK *out_event is new, not yet stamped.
 * On SB_ERR_INVALID `err` holds a message safe to send back to the sender
 * (it never quotes the body) and `body` is still the caller's.
 */
enum sb_status sb_event_parse(char *body, size_t len,
                              struct sb_event **out_event,
                              struct sb_error *err);

/* The parsed body, borrowed for the event's life. */
const struct sb_json *sb_event_json(const struct sb_event *event);

/* Gives the event a fresh id and its receipt time. Thread-safe. */
void sb_event_stamp(struct sb_event *event);

/*
 * Writes a fresh id and its millisecond time, for callers that need an id
 * without an event. Thread-safe.
 */
void sb_event_new_id(char out_id[SB_EVENT_ID_LEN + 1], int64_t *out_ms);

/*
 * Writes the smallest id a millisecond can have: every event received at
 * or after `ms` has a larger id, every earlier one a smaller id.
 */
void sb_event_id_floor(int64_t ms, char out_id[SB_EVENT_ID_LEN + 1]);

/* Formats Unix milliseconds as RFC 3339 UTC with milliseconds. */
void sb_event_format_time(int64_t ms, char out[SB_EVENT_TIME_LEN + 1]);

/* Frees the event, its body and its JSON. Accepts NULL. */
void sb_event_free(struct sb_event *event);

#endif
