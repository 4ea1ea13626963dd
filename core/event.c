/* SPDX-License-Identifier: MIT */
/*
 * Validation of incoming bodies and the id generator.
 */
#include "build_config.h"

#include "event.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static const char event_base32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* The last id handed out, so the next one within a millisecond is larger. */
static struct {
    pthread_mutex_t lock;
    int64_t ms;
    uint8_t rand[10];
} event_ids = {PTHREAD_MUTEX_INITIALIZER, 0, {0}};

/* The 400 reason for a parsed body, or NULL when it is a valid event. */
static const char *event_invalid(const struct sb_json *root)
{
    const struct sb_json *type;
    const struct sb_json *payload;

    if (root->type != SB_JSON_OBJECT) {
        return "body must be a JSON object";
    }
    type = sb_json_get(root, "event_type", 10);
    if (type == NULL || type->type != SB_JSON_STRING ||
        type->u.string.len == 0 ||
        strlen(type->u.string.text) != type->u.string.len) {
        return "event_type must be a non-empty string";
    }
    payload = sb_json_get(root, "payload", 7);
    if (payload != NULL && payload->type != SB_JSON_OBJECT) {
        return "payload must be a JSON object";
    }
    return NULL;
}

enum sb_status sb_event_parse(char *body, size_t len,
                              struct sb_event **out_event, struct sb_error *err)
{
    struct sb_json_doc *doc = NULL;
    struct sb_error why;
    const char *invalid;
    struct sb_event *event;
    enum sb_status rc;

    *out_event = NULL;
    rc = sb_json_parse(body, len, &doc, &why);
    if (rc == SB_ERR_INVALID) {
        sb_error_set(err, "body is not valid JSON: %s", why.msg);
        return rc;
    }
    if (rc != SB_OK) {
        return rc;
    }
    invalid = event_invalid(sb_json_root(doc));
    if (invalid != NULL) {
        sb_json_doc_free(doc);
        sb_error_set(err, "%s", invalid);
        return SB_ERR_INVALID;
    }
    event = calloc(1, sizeof(*event));
    if (event == NULL) {
        sb_json_doc_free(doc);
        return SB_ERR_NOMEM;
    }
    event->doc = doc;
    event->event_type =
        sb_json_get(sb_json_root(doc), "event_type", 10)->u.string.text;
    event->body = body;
    event->body_len = len;
    *out_event = event;
    return SB_OK;
}

const struct sb_json *sb_event_json(const struct sb_event *event)
{
    return sb_json_root(event->doc);
}

static int64_t event_now_ms(void)
{
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Adds one to the 80-bit big-endian counter; wraps only after 2^80 ids. */
static void event_increment(uint8_t rand[10])
{
    int i;

    for (i = 9; i >= 0; i--) {
        if (++rand[i] != 0) {
            break;
        }
    }
}

static void event_fill_random(uint8_t rand[10])
{
    size_t got = 0;

    while (got < 10) {
        ssize_t n = getrandom(rand + got, 10 - got, 0);

        if (n > 0) {
            got += (size_t)n;
        }
    }
    /* The top bit stays clear so increments within a ms cannot wrap. */
    rand[0] &= 0x7f;
}

/* 128 bits (6 bytes of time, 10 of randomness) as 26 base32 digits. */
static void event_encode(int64_t ms, const uint8_t rand[10],
                         char out[SB_EVENT_ID_LEN + 1])
{
    uint8_t bytes[16];
    int i;

    for (i = 0; i < 6; i++) {
        bytes[i] = (uint8_t)((uint64_t)ms >> (8 * (5 - i)));
    }
    memcpy(bytes + 6, rand, 10);

    /* 130 bits of digits for 128 bits of data: the first digit holds 3. */
    for (i = 0; i < SB_EVENT_ID_LEN; i++) {
        int bit = i * 5 - 2; /* position of this digit's top bit */
        unsigned v = 0;
        int b;

        for (b = 0; b < 5; b++) {
            int pos = bit + b;

            v <<= 1;
            if (pos >= 0) {
                v |= (bytes[pos / 8] >> (7 - pos % 8)) & 1u;
            }
        }
        out[i] = event_base32[v];
    }
    out[SB_EVENT_ID_LEN] = '\0';
}

void sb_event_new_id(char out_id[SB_EVENT_ID_LEN + 1], int64_t *out_ms)
{
    int64_t now = event_now_ms();
    uint8_t rand[10];
    int64_t ms;

    pthread_mutex_lock(&event_ids.lock);
    if (now > event_ids.ms) {
        event_ids.ms = now;
        event_fill_random(event_ids.rand);
    } else {
        /* Same millisecond, or the clock stepped back: stay ordered. */
        event_increment(event_ids.rand);
    }
    ms = event_ids.ms;
    memcpy(rand, event_ids.rand, sizeof(rand));
    pthread_mutex_unlock(&event_ids.lock);

    event_encode(ms, rand, out_id);
    *out_ms = ms;
}

void sb_event_id_floor(int64_t ms, char out_id[SB_EVENT_ID_LEN + 1])
{
    static const uint8_t zero[10] = {0};

    event_encode(ms < 0 ? 0 : ms, zero, out_id);
}

void sb_event_stamp(struct sb_event *event)
{
    sb_event_new_id(event->id, &event->received_ms);
}

void sb_event_format_time(int64_t ms, char out[SB_EVENT_TIME_LEN + 1])
{
    time_t secs = (time_t)(ms / 1000);
    unsigned millis = (unsigned)(ms % 1000);
    struct tm tm;
    size_t n;

    gmtime_r(&secs, &tm);
    n = strftime(out, SB_EVENT_TIME_LEN + 1, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n + 5 <= SB_EVENT_TIME_LEN) {
        out[n++] = '.';
        out[n++] = (char)('0' + millis / 100);
        out[n++] = (char)('0' + millis / 10 % 10);
        out[n++] = (char)('0' + millis % 10);
        out[n++] = 'Z';
    }
    out[n] = '\0';
}

void sb_event_free(struct sb_event *event)
{
    if (event == NULL) {
        return;
    }
    sb_json_doc_free(event->doc);
    free(event->body);
    free(event);
}
