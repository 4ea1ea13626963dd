/* SPDX-License-Identifier: MIT */
/*
 * Dispatch: the scheduler that reads due deliveries, the per-output lanes
 * of workers that attempt them, and the retry policy that decides what a
 * retry answer becomes. See dispatch.h for the shape and the guarantees.
 */
#include "build_config.h"

#include "dispatch.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "buf.h"
#include "event.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "output.h"
#include "template.h"

/* How often due deliveries are looked for when nothing wakes us sooner. */
#define DISPATCH_POLL_MS 100
/* A full spool queue: how long a worker waits before offering again. */
#define DISPATCH_SETTLE_WAIT_MS 10
/* The envelope holds the payload re-encoded: room for the worst escaping. */
#define DISPATCH_ENVELOPE_MAX ((size_t)64 << 20)
/*
 * Deliveries a lane holds (queued, running, or waiting for their outcome's
 * commit) per worker, plus slack. An outcome takes a commit or two to be
 * stored, so a lane must hold several commits' worth to keep its workers
 * busy; each held delivery costs a copy of its event in memory.
 */
#define DISPATCH_LANE_SLOTS_PER_WORKER 16
#define DISPATCH_LANE_SLACK            32

struct dispatch_lane;

/* One delivery from the moment it is read until its outcome is stored. */
struct dispatch_job {
    struct dispatch_lane *lane;
    struct dispatch_job *next;
    int64_t id;
    int64_t attempts; /* made before this one */
    int64_t series_ms;
    int64_t received_ms;
    char *event_id; /* these point into the job's own allocation */
    char *rule;
    char *event_type;
    char *fields;
    char *body;
    size_t body_len;
    struct sb_spool_settle settle;
    /* The plugin's error, and why we gave up when we did. */
    char error[sizeof(((struct sb_plugin_result *)0)->error) + 64];
};

/* One output: its queue, the ids it holds, and its workers. */
struct dispatch_lane {
    struct sb_dispatch *d;
    struct sb_config *cfg; /* a reference: `out` lives in it */
    struct sb_output *out;
    struct dispatch_lane *next_retired;
    int retiring; /* with mu: a reload replaced it; take no more jobs */
    size_t alive; /* with d->mu: workers that have not ended */
    pthread_mutex_t mu;
    pthread_cond_t ready; /* a job was queued, or we are stopping */
    struct dispatch_job *head;
    struct dispatch_job *tail;
    size_t queued; /* jobs between head and tail */
    /* Ids queued, being attempted or settling: never read twice at once. */
    int64_t *held;
    size_t held_count;
    size_t slots;  /* capacity of held */
    int64_t *skip; /* the scheduler's copy of held, for the due query */
    pthread_t *workers;
    size_t worker_count;
    size_t workers_started;
    struct sb_metrics_output *metrics; /* by output name; NULL: none */
};

struct sb_dispatch {
    struct sb_spool *spool;
    struct sb_spool_reader *reader;
    /* With mu; lanes are freed only with the dispatch (retired kept). */
    struct dispatch_lane *lanes[SB_CONFIG_MAX_OUTPUTS];
    size_t lane_count;
    struct dispatch_lane *retired;
    pthread_t scheduler;
    int scheduler_started;
    atomic_int stopping;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* for the scheduler: new deliveries, or stop */
    pthread_cond_t idle; /* for stop: a worker ended */
    int kicked;
    int64_t wake_at; /* Unix ms of the soonest retry stored; INT64_MAX: none */
    int abandoned;
    size_t active; /* workers that have not ended */
};

/* What one worker keeps between attempts, so attempts allocate little. */
struct dispatch_worker {
    struct dispatch_lane *lane;
    uint64_t rng;
    struct sb_buf envelope;
};

/* ---- time ------------------------------------------------------------- */

static struct timespec dispatch_deadline(uint64_t ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void dispatch_sleep_ms(uint64_t ms)
{
    struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
                          .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Condition variables on the monotonic clock: wall-clock jumps are moot. */
static int dispatch_cond_init(pthread_cond_t *cond)
{
    pthread_condattr_t attr;
    int rc;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    rc = pthread_cond_init(cond, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

/* ---- the retry policy ------------------------------------------------- */

uint64_t sb_dispatch_retry_delay(const struct sb_retry_policy *policy,
                                 uint64_t attempts, uint64_t retry_after_ms,
                                 uint64_t random)
{
    uint64_t cap = policy->initial_ms;
    uint64_t i;

    if (retry_after_ms > 0) {
        return retry_after_ms < policy->max_delay_ms ? retry_after_ms
                                                     : policy->max_delay_ms;
    }
    for (i = 1; i < attempts && cap < policy->max_delay_ms; i++) {
        cap = cap > UINT64_MAX / 2 ? UINT64_MAX : cap * 2;
    }
    if (cap > policy->max_delay_ms) {
        cap = policy->max_delay_ms;
    }
    /* Full jitter: spreads out the retries of many deliveries at once. */
    return cap == 0 ? 0 : random % (cap + 1);
}

/* xorshift64*: jitter needs spread, not secrecy. */
static uint64_t dispatch_random(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t dispatch_seed(void)
{
    uint64_t seed = 0;
    struct timespec ts;

    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed)) {
        clock_gettime(CLOCK_MONOTONIC, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32);
    }
    return seed != 0 ? seed : 0x9E3779B97F4A7C15ULL;
}

/* ---- jobs and the ids a lane holds ------------------------------------- */

static char *dispatch_copy(char **at, const char *text, size_t len)
{
    char *start = *at;

    memcpy(start, text, len);
    start[len] = '\0';
    *at += len + 1;
    return start;
}

/* One allocation holding the job and copies of every string it needs. */
static struct dispatch_job *dispatch_job_new(struct dispatch_lane *lane,
                                             const struct sb_spool_due *due)
{
    size_t id_len = strlen(due->event_id);
    size_t rule_len = strlen(due->rule);
    size_t type_len = strlen(due->event_type);
    size_t fields_len = strlen(due->fields);
    struct dispatch_job *job =
        malloc(sizeof(*job) + id_len + rule_len + type_len + fields_len +
               due->body_len + 5);
    char *at;

    if (job == NULL) {
        return NULL;
    }
    memset(job, 0, sizeof(*job));
    at = (char *)(job + 1);
    job->lane = lane;
    job->id = due->id;
    job->attempts = due->attempts;
    job->series_ms = due->series_ms;
    job->received_ms = due->received_ms;
    job->event_id = dispatch_copy(&at, due->event_id, id_len);
    job->rule = dispatch_copy(&at, due->rule, rule_len);
    job->event_type = dispatch_copy(&at, due->event_type, type_len);
    job->fields = dispatch_copy(&at, due->fields, fields_len);
    job->body = dispatch_copy(&at, due->body, due->body_len);
    job->body_len = due->body_len;
    return job;
}

/* With lane->mu held. */
static int dispatch_holds(const struct dispatch_lane *lane, int64_t id)
{
    size_t i;

    for (i = 0; i < lane->held_count; i++) {
        if (lane->held[i] == id) {
            return 1;
        }
    }
    return 0;
}

/* With lane->mu held. */
static void dispatch_release(struct dispatch_lane *lane, int64_t id)
{
    size_t i;

    for (i = 0; i < lane->held_count; i++) {
        if (lane->held[i] == id) {
            lane->held[i] = lane->held[--lane->held_count];
            return;
        }
    }
}

/*
 * Kicks the scheduler (a held delivery was released) and makes it wake by
 * `at_ms`, when a retry was just stored for then.
 */
static void dispatch_wake_at(struct sb_dispatch *d, int64_t at_ms)
{
    pthread_mutex_lock(&d->mu);
    if (at_ms < d->wake_at) {
        d->wake_at = at_ms;
    }
    d->kicked = 1;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->mu);
}

/* sb_spool_on_commit callback: new deliveries were stored. */
static void dispatch_kick(void *arg)
{
    dispatch_wake_at(arg, INT64_MAX);
}

/* ---- the scheduler ---------------------------------------------------- */

/* sb_spool_due callback: queue what the lane does not hold already. */
static void dispatch_on_due(void *arg, const struct sb_spool_due *due)
{
    struct dispatch_lane *lane = arg;
    struct dispatch_job *job;

    pthread_mutex_lock(&lane->mu);
    if (lane->retiring || lane->held_count == lane->slots ||
        dispatch_holds(lane, due->id)) {
        pthread_mutex_unlock(&lane->mu);
        return;
    }
    pthread_mutex_unlock(&lane->mu);
    job = dispatch_job_new(lane, due);
    if (job == NULL) {
        return; /* still pending: the next pass tries again */
    }
    pthread_mutex_lock(&lane->mu);
    lane->held[lane->held_count++] = job->id;
    lane->queued++;
    if (lane->tail != NULL) {
        lane->tail->next = job;
    } else {
        lane->head = job;
    }
    lane->tail = job;
    pthread_cond_signal(&lane->ready);
    pthread_mutex_unlock(&lane->mu);
}

static void dispatch_fill(struct sb_dispatch *d, struct dispatch_lane *lane)
{
    struct sb_error err;
    size_t held;

    /* Held ones are still pending and due: the query leaves them out. */
    pthread_mutex_lock(&lane->mu);
    held = lane->held_count;
    memcpy(lane->skip, lane->held, held * sizeof(*lane->held));
    pthread_mutex_unlock(&lane->mu);
    if (held == lane->slots) {
        return;
    }
    sb_error_clear(&err);
    if (sb_spool_due(d->reader, lane->out->name, lane->skip, held,
                     lane->slots - held, dispatch_on_due, lane,
                     &err) != SB_OK) {
        SB_LOG_WARN("dispatch",
                    "output=%s msg=\"cannot read due deliveries\" err=\"%s\"",
                    lane->out->name, err.msg);
    }
}

/* How long the scheduler may sleep: until the poll or the soonest retry. */
static uint64_t dispatch_sleep_for(const struct sb_dispatch *d)
{
    int64_t until_retry;

    if (d->wake_at == INT64_MAX) {
        return DISPATCH_POLL_MS;
    }
    until_retry = d->wake_at - sb_spool_now_ms();
    if (until_retry <= 0) {
        return 0;
    }
    return until_retry < DISPATCH_POLL_MS ? (uint64_t)until_retry
                                          : DISPATCH_POLL_MS;
}

static void *dispatch_schedule(void *arg)
{
    struct sb_dispatch *d = arg;
    struct dispatch_lane *lanes[SB_CONFIG_MAX_OUTPUTS];
    size_t count;
    size_t i;

    pthread_mutex_lock(&d->mu);
    while (!atomic_load(&d->stopping)) {
        struct timespec until;

        d->kicked = 0;
        if (d->wake_at <= sb_spool_now_ms()) {
            d->wake_at = INT64_MAX; /* this pass takes it */
        }
        count = d->lane_count;
        memcpy(lanes, d->lanes, count * sizeof(*lanes));
        pthread_mutex_unlock(&d->mu);
        for (i = 0; i < count && !atomic_load(&d->stopping); i++) {
            dispatch_fill(d, lanes[i]);
        }
        pthread_mutex_lock(&d->mu);
        until = dispatch_deadline(dispatch_sleep_for(d));
        while (!d->kicked && !atomic_load(&d->stopping)) {
            if (pthread_cond_timedwait(&d->wake, &d->mu, &until) == ETIMEDOUT) {
                break;
            }
        }
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* ---- an attempt ------------------------------------------------------- */

/*
 * Points fields[i] at the rendered text of the kind's field i; a field
 * stored as null is the event envelope, built here from the stored body.
 * Returns 0, or -1 with why in `error` (the stored row is unreadable).
 */
static int dispatch_fields(struct dispatch_worker *w, struct dispatch_job *job,
                           const char *received_at,
                           const struct sb_json_doc *fields_doc,
                           const char **fields, size_t *lens, char *error,
                           size_t error_size)
{
    const struct sb_output_kind *kind = w->lane->out->kind;
    const struct sb_json *root = sb_json_root(fields_doc);
    struct sb_json_doc *body_doc = NULL;
    struct sb_error err;
    size_t i;
    int rc = 0;

    for (i = 0; i < kind->field_count && rc == 0; i++) {
        const char *name = kind->fields[i].name;
        const struct sb_json *v = sb_json_get(root, name, strlen(name));

        if (v != NULL && v->type == SB_JSON_STRING) {
            fields[i] = v->u.string.text;
            lens[i] = v->u.string.len;
            continue;
        }
        if (body_doc == NULL) {
            sb_buf_reset(&w->envelope);
            if (sb_json_parse(job->body, job->body_len, &body_doc, &err) !=
                SB_OK) {
                snprintf(error, error_size, "stored event unreadable: %.200s",
                         err.msg);
                rc = -1;
                break;
            }
            struct sb_template_context ctx = {
                .event = sb_json_root(body_doc),
                .event_id = job->event_id,
                .received_at = received_at,
                .rule = job->rule,
            };
            if (sb_output_envelope(&ctx, &w->envelope) != SB_OK) {
                snprintf(error, error_size, "envelope too large");
                rc = -1;
                break;
            }
        }
        fields[i] = sb_buf_str(&w->envelope);
        lens[i] = w->envelope.len;
    }
    sb_json_doc_free(body_doc);
    return rc;
}

/* Calls the plugin; the outcome lands in *res and the return value. */
static enum sb_plugin_status dispatch_deliver(struct dispatch_worker *w,
                                              struct dispatch_job *job,
                                              struct sb_plugin_result *res)
{
    const struct sb_output *out = w->lane->out;
    const char *fields[SB_OUTPUT_MAX_FIELDS];
    size_t lens[SB_OUTPUT_MAX_FIELDS];
    char received_at[SB_EVENT_TIME_LEN + 1];
    struct sb_json_doc *fields_doc = NULL;
    struct sb_error err;
    enum sb_plugin_status st = SB_PLUGIN_FAILED;

    memset(res, 0, sizeof(*res));
    sb_event_format_time(job->received_ms, received_at);
    if (sb_json_parse(job->fields, strlen(job->fields), &fields_doc, &err) !=
        SB_OK) {
        snprintf(res->error, sizeof(res->error),
                 "stored fields unreadable: %.200s", err.msg);
    } else if (dispatch_fields(w, job, received_at, fields_doc, fields, lens,
                               res->error, sizeof(res->error)) == 0) {
        struct sb_plugin_message msg = {
            .size = sizeof(msg),
            .event_id = job->event_id,
            .event_type = job->event_type,
            .received_at = received_at,
            .rule = job->rule,
            .delivery_id = job->id,
            .attempt = (uint32_t)(job->attempts + 1),
            .fields = fields,
            .field_lens = lens,
            .field_count = out->kind->field_count,
            .body = job->body,
            .body_len = job->body_len,
        };

        st = out->kind->plugin->deliver(out->instance, &msg, res);
        res->error[sizeof(res->error) - 1] = '\0';
    }
    sb_json_doc_free(fields_doc);
    return st;
}

/* What a retry answer becomes: pending again, or dead when out of policy. */
static void dispatch_retry_outcome(struct dispatch_worker *w,
                                   struct dispatch_job *job,
                                   const struct sb_plugin_result *res,
                                   int64_t now)
{
    const struct sb_retry_policy *policy = &w->lane->out->retry;
    uint64_t made = (uint64_t)job->attempts + 1;
    const char *why = res->error[0] != '\0' ? res->error : "retry";
    uint64_t delay;

    if (made >= policy->max_attempts) {
        snprintf(job->error, sizeof(job->error),
                 "%s (gave up after %llu attempts)", why,
                 (unsigned long long)made);
        job->settle.state = "dead";
        return;
    }
    delay = sb_dispatch_retry_delay(policy, made, res->retry_after_ms,
                                    dispatch_random(&w->rng));
    if ((uint64_t)(now - job->series_ms) + delay > policy->max_age_ms) {
        snprintf(job->error, sizeof(job->error),
                 "%s (gave up: the next attempt would pass max_age)", why);
        job->settle.state = "dead";
        return;
    }
    snprintf(job->error, sizeof(job->error), "%s", why);
    job->settle.state = "pending";
    job->settle.next_at_ms = now + (int64_t)delay;
}

static void dispatch_outcome(struct dispatch_worker *w,
                             struct dispatch_job *job, enum sb_plugin_status st,
                             const struct sb_plugin_result *res)
{
    int64_t now = sb_spool_now_ms();

    job->settle.delivery_id = job->id;
    job->settle.next_at_ms = now;
    job->settle.last_error = job->error;
    switch (st) {
    case SB_PLUGIN_DELIVERED:
        job->settle.state = "delivered";
        job->settle.last_error = NULL;
        break;
    case SB_PLUGIN_FAILED:
        snprintf(job->error, sizeof(job->error), "%s",
                 res->error[0] != '\0' ? res->error : "failed");
        job->settle.state = "dead";
        break;
    case SB_PLUGIN_RETRY:
        dispatch_retry_outcome(w, job, res, now);
        break;
    default: {
        struct sb_plugin_result odd = *res;

        snprintf(odd.error, sizeof(odd.error),
                 "the plugin answered an unknown status %d", (int)st);
        dispatch_retry_outcome(w, job, &odd, now);
        break;
    }
    }
    if (strcmp(job->settle.state, "dead") == 0) {
        char quoted[sizeof(job->error) + 16];

        SB_LOG_WARN(
            "dispatch",
            "output=%s delivery=%lld event=%s attempts=%lld err=%s msg=\"delivery dead\"",
            w->lane->out->name, (long long)job->id, job->event_id,
            (long long)job->attempts + 1,
            sb_log_quote(quoted, sizeof(quoted), job->error));
    } else {
        SB_LOG_DEBUG("dispatch",
                     "output=%s delivery=%lld event=%s attempt=%lld state=%s",
                     w->lane->out->name, (long long)job->id, job->event_id,
                     (long long)job->attempts + 1, job->settle.state);
    }
}

/* Spool callback, on the writer thread: the outcome is stored (or not). */
static void dispatch_settled(void *arg, enum sb_status rc)
{
    struct dispatch_job *job = arg;
    struct dispatch_lane *lane = job->lane;
    int64_t retry_at = rc == SB_OK && strcmp(job->settle.state, "pending") == 0
                           ? job->settle.next_at_ms
                           : INT64_MAX;
    int running_low;

    if (rc != SB_OK) {
        /*
         * LIMIT: still pending in the store, so it is attempted again: a
         * peer may get it twice while the disk is full (docs/LIMITS.md).
         */
        SB_LOG_WARN(
            "dispatch",
            "output=%s delivery=%lld msg=\"outcome not stored; the delivery will be attempted again\"",
            lane->out->name, (long long)job->id);
    } else {
        sb_metrics_delivery_settled(lane->metrics, job->settle.state,
                                    job->attempts + 1,
                                    sb_spool_now_ms() - job->received_ms);
    }
    pthread_mutex_lock(&lane->mu);
    dispatch_release(lane, job->id);
    /* Refill only when the workers could soon run dry: a pass costs a query. */
    running_low = lane->queued < lane->worker_count;
    pthread_mutex_unlock(&lane->mu);
    if (running_low || retry_at != INT64_MAX) {
        dispatch_wake_at(lane->d, retry_at);
    }
    free(job);
}

/*
 * Queues the outcome with the spool. Returns -1, touching nothing, when
 * stop gave up on this worker while it was inside deliver().
 *
 * LIMIT: the attempt counts only once this commits. A crash inside
 * deliver() leaves the delivery pending with its old count, so a plugin
 * that kills the process on one event is retried without end; counting
 * before the attempt would cost a commit per attempt. See docs/LIMITS.md.
 */
static int dispatch_settle(struct sb_dispatch *d, struct dispatch_job *job)
{
    for (;;) {
        enum sb_status rc;

        pthread_mutex_lock(&d->mu);
        if (d->abandoned) {
            pthread_mutex_unlock(&d->mu);
            return -1;
        }
        rc = sb_spool_settle(d->spool, &job->settle, dispatch_settled, job);
        pthread_mutex_unlock(&d->mu);
        if (rc == SB_OK) {
            return 0;
        }
        /* The queue is full of events: they commit within milliseconds. */
        dispatch_sleep_ms(DISPATCH_SETTLE_WAIT_MS);
    }
}

/* The next job, or NULL when stopping or retired. */
static struct dispatch_job *dispatch_take(struct dispatch_lane *lane)
{
    struct dispatch_job *job = NULL;

    pthread_mutex_lock(&lane->mu);
    while (lane->head == NULL && !lane->retiring &&
           !atomic_load(&lane->d->stopping)) {
        pthread_cond_wait(&lane->ready, &lane->mu);
    }
    /* Queued jobs not begun at stop stay pending in the store. */
    if (!lane->retiring && !atomic_load(&lane->d->stopping)) {
        job = lane->head;
        lane->head = job->next;
        lane->queued--;
        if (lane->head == NULL) {
            lane->tail = NULL;
        }
        job->next = NULL;
    }
    pthread_mutex_unlock(&lane->mu);
    return job;
}

static void *dispatch_work(void *arg)
{
    struct dispatch_worker w = {.lane = arg, .rng = dispatch_seed()};
    struct sb_dispatch *d = w.lane->d;
    struct dispatch_job *job;

    sb_buf_init(&w.envelope, DISPATCH_ENVELOPE_MAX);
    while ((job = dispatch_take(w.lane)) != NULL) {
        struct sb_plugin_result res;
        enum sb_plugin_status st = dispatch_deliver(&w, job, &res);

        dispatch_outcome(&w, job, st, &res);
        if (dispatch_settle(d, job) != 0) {
            /* Abandoned: main is exiting; the delivery stays pending. */
            sb_buf_cleanup(&w.envelope);
            return NULL;
        }
    }
    sb_buf_cleanup(&w.envelope);
    pthread_mutex_lock(&d->mu);
    d->active--;
    w.lane->alive--;
    pthread_cond_broadcast(&d->idle);
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* ---- life cycle ------------------------------------------------------- */

static void dispatch_lane_free(struct dispatch_lane *lane);

/* A lane for `out`, which lives in `cfg`; takes a reference to `cfg`. */
static struct dispatch_lane *dispatch_lane_new(struct sb_dispatch *d,
                                               struct sb_config *cfg,
                                               struct sb_output *out)
{
    int thread_safe = (out->kind->plugin->flags & SB_PLUGIN_THREAD_SAFE) != 0;
    struct dispatch_lane *lane = calloc(1, sizeof(*lane));

    if (lane == NULL) {
        return NULL;
    }
    pthread_mutex_init(&lane->mu, NULL);
    dispatch_cond_init(&lane->ready);
    lane->d = d;
    lane->cfg = sb_config_ref(cfg);
    lane->out = out;
    lane->metrics = sb_metrics_output_get(out->name);
    lane->worker_count =
        thread_safe && out->concurrency > 0 ? (size_t)out->concurrency : 1;
    lane->slots = lane->worker_count * DISPATCH_LANE_SLOTS_PER_WORKER +
                  DISPATCH_LANE_SLACK;
    lane->held = calloc(lane->slots, sizeof(*lane->held));
    lane->skip = calloc(lane->slots, sizeof(*lane->skip));
    lane->workers = calloc(lane->worker_count, sizeof(*lane->workers));
    if (lane->held == NULL || lane->skip == NULL || lane->workers == NULL) {
        dispatch_lane_free(lane);
        return NULL;
    }
    return lane;
}

/* Frees a lane whose workers have ended, and the jobs it still queues. */
static void dispatch_lane_free(struct dispatch_lane *lane)
{
    while (lane->head != NULL) {
        struct dispatch_job *job = lane->head;

        lane->head = job->next;
        free(job);
    }
    free(lane->held);
    free(lane->skip);
    free(lane->workers);
    pthread_mutex_destroy(&lane->mu);
    pthread_cond_destroy(&lane->ready);
    sb_config_unref(lane->cfg);
    free(lane);
}

static enum sb_status dispatch_lane_start(struct sb_dispatch *d,
                                          struct dispatch_lane *lane,
                                          struct sb_error *err)
{
    size_t k;

    for (k = 0; k < lane->worker_count; k++) {
        if (pthread_create(&lane->workers[k], NULL, dispatch_work, lane) != 0) {
            sb_error_set(err, "cannot start a dispatch worker thread");
            return SB_ERR_IO;
        }
        lane->workers_started++;
        pthread_mutex_lock(&d->mu);
        d->active++;
        lane->alive++;
        pthread_mutex_unlock(&d->mu);
    }
    return SB_OK;
}

enum sb_status sb_dispatch_new(struct sb_config *cfg, struct sb_spool *spool,
                               struct sb_dispatch **out, struct sb_error *err)
{
    struct sb_dispatch *d = calloc(1, sizeof(*d));
    enum sb_status rc = SB_OK;
    size_t i;

    *out = NULL;
    if (d == NULL) {
        return SB_ERR_NOMEM;
    }
    d->spool = spool;
    d->wake_at = INT64_MAX;
    pthread_mutex_init(&d->mu, NULL);
    dispatch_cond_init(&d->wake);
    dispatch_cond_init(&d->idle);
    for (i = 0; rc == SB_OK && i < cfg->output_count; i++) {
        d->lanes[i] = dispatch_lane_new(d, cfg, &cfg->outputs[i]);
        if (d->lanes[i] == NULL) {
            sb_error_set(err, "out of memory preparing dispatch");
            rc = SB_ERR_NOMEM;
        } else {
            d->lane_count = i + 1;
        }
    }
    if (rc == SB_OK) {
        rc = sb_spool_reader_open(spool, &d->reader, err);
    }
    if (rc != SB_OK) {
        sb_dispatch_free(d);
        return rc;
    }
    sb_spool_on_commit(spool, dispatch_kick, d);
    *out = d;
    return SB_OK;
}

enum sb_status sb_dispatch_start(struct sb_dispatch *d, struct sb_error *err)
{
    size_t workers = 0;
    size_t i;

    for (i = 0; i < d->lane_count; i++) {
        enum sb_status rc = dispatch_lane_start(d, d->lanes[i], err);

        if (rc != SB_OK) {
            return rc;
        }
        workers += d->lanes[i]->worker_count;
    }
    if (pthread_create(&d->scheduler, NULL, dispatch_schedule, d) != 0) {
        sb_error_set(err, "cannot start the dispatch thread");
        return SB_ERR_IO;
    }
    d->scheduler_started = 1;
    SB_LOG_INFO("dispatch", "outputs=%zu workers=%zu msg=\"dispatch started\"",
                d->lane_count, workers);
    return SB_OK;
}

/* The lane serving an output named `name` like `out`, or NULL. */
static struct dispatch_lane *dispatch_find_same(struct sb_dispatch *d,
                                                const struct sb_output *out)
{
    size_t i;

    for (i = 0; i < d->lane_count; i++) {
        if (strcmp(d->lanes[i]->out->name, out->name) == 0 &&
            sb_output_same(d->lanes[i]->out, out)) {
            return d->lanes[i];
        }
    }
    return NULL;
}

int sb_dispatch_keeps(struct sb_dispatch *d, const struct sb_output *out)
{
    return dispatch_find_same(d, out) != NULL;
}

static size_t dispatch_lane_held(struct dispatch_lane *lane)
{
    size_t held;

    pthread_mutex_lock(&lane->mu);
    held = lane->held_count;
    pthread_mutex_unlock(&lane->mu);
    return held;
}

static int dispatch_passed(const struct timespec *until)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > until->tv_sec ||
           (now.tv_sec == until->tv_sec && now.tv_nsec >= until->tv_nsec);
}

/*
 * Takes a lane out of service: its workers finish the attempt under way
 * and end, its queued deliveries are dropped (still pending in the store)
 * and the outcomes it queued are committed. Then its output's instance is
 * destroyed. Waits at most until `until`; a lane whose worker is stuck in
 * its plugin is left running and its instance alive. With d->mu held.
 */
static void dispatch_retire(struct sb_dispatch *d, struct dispatch_lane *lane,
                            const struct timespec *until)
{
    size_t k;

    pthread_mutex_lock(&lane->mu);
    lane->retiring = 1;
    pthread_cond_broadcast(&lane->ready);
    pthread_mutex_unlock(&lane->mu);
    while (lane->alive > 0 &&
           pthread_cond_timedwait(&d->idle, &d->mu, until) != ETIMEDOUT) {
    }
    /*
     * LIMIT: a retired lane is freed only with the dispatch: outcomes it
     * queued may still call back into it. A few kilobytes per changed
     * output per reload (docs/LIMITS.md).
     */
    lane->next_retired = d->retired;
    d->retired = lane;
    if (lane->alive > 0) {
        SB_LOG_WARN(
            "dispatch",
            "output=%s msg=\"a delivery is still inside the plugin; the old instance stays until exit\"",
            lane->out->name);
        return;
    }
    for (k = 0; k < lane->workers_started; k++) {
        pthread_join(lane->workers[k], NULL);
    }
    lane->workers_started = 0;
    pthread_mutex_lock(&lane->mu);
    while (lane->head != NULL) {
        struct dispatch_job *job = lane->head;

        lane->head = job->next;
        dispatch_release(lane, job->id);
        free(job);
    }
    lane->tail = NULL;
    lane->queued = 0;
    pthread_mutex_unlock(&lane->mu);
    /*
     * Outcomes still settling keep their ids held; once none is, no
     * delivery of this output is in anyone's hands and a new lane may
     * read them.
     */
    pthread_mutex_unlock(&d->mu);
    while (dispatch_lane_held(lane) > 0 && !dispatch_passed(until)) {
        dispatch_sleep_ms(1);
    }
    pthread_mutex_lock(&d->mu);
    if (dispatch_lane_held(lane) == 0) {
        sb_output_close(lane->out);
    }
}

enum sb_status sb_dispatch_reload(struct sb_dispatch *d, struct sb_config *cfg,
                                  uint64_t grace_ms, struct sb_error *err)
{
    struct timespec until = dispatch_deadline(grace_ms);
    struct dispatch_lane *next[SB_CONFIG_MAX_OUTPUTS] = {0};
    enum sb_status rc = SB_OK;
    size_t i;
    size_t k;

    pthread_mutex_lock(&d->mu);
    for (i = 0; i < cfg->output_count; i++) {
        next[i] = dispatch_find_same(d, &cfg->outputs[i]);
    }
    for (k = 0; k < d->lane_count; k++) {
        int kept = 0;

        for (i = 0; i < cfg->output_count; i++) {
            kept |= next[i] == d->lanes[k];
        }
        if (!kept) {
            dispatch_retire(d, d->lanes[k], &until);
        }
    }
    for (i = 0; i < cfg->output_count; i++) {
        if (next[i] != NULL) {
            continue;
        }
        next[i] = dispatch_lane_new(d, cfg, &cfg->outputs[i]);
        if (next[i] == NULL) {
            sb_error_set(err, "out of memory preparing dispatch");
            rc = SB_ERR_NOMEM;
            break;
        }
        pthread_mutex_unlock(&d->mu);
        rc = dispatch_lane_start(d, next[i], err);
        pthread_mutex_lock(&d->mu);
        if (rc != SB_OK) {
            break;
        }
    }
    /* Whatever happened, the lanes in `next` are the ones that run now. */
    d->lane_count = 0;
    for (i = 0; i < cfg->output_count; i++) {
        if (next[i] != NULL) {
            d->lanes[d->lane_count++] = next[i];
        }
    }
    d->kicked = 1;
    pthread_cond_signal(&d->wake);
    pthread_mutex_unlock(&d->mu);
    return rc;
}

void sb_dispatch_reopen(struct sb_dispatch *d)
{
    size_t i;

    if (d == NULL) {
        return;
    }
    pthread_mutex_lock(&d->mu);
    for (i = 0; i < d->lane_count; i++) {
        const struct sb_output *out = d->lanes[i]->out;

        if (out->kind->plugin->reopen != NULL && out->opened) {
            out->kind->plugin->reopen(out->instance);
        }
    }
    pthread_mutex_unlock(&d->mu);
}

/* Every lane, running or retired, to `fn`; with d->mu held. */
static void dispatch_each_lane(struct sb_dispatch *d,
                               void (*fn)(struct dispatch_lane *lane))
{
    struct dispatch_lane *lane;
    size_t i;

    for (i = 0; i < d->lane_count; i++) {
        fn(d->lanes[i]);
    }
    for (lane = d->retired; lane != NULL; lane = lane->next_retired) {
        fn(lane);
    }
}

static void dispatch_wake_workers(struct dispatch_lane *lane)
{
    pthread_mutex_lock(&lane->mu);
    pthread_cond_broadcast(&lane->ready);
    pthread_mutex_unlock(&lane->mu);
}

/* Joins a lane's workers once all have ended; a stuck one is left be. */
static void dispatch_join_workers(struct dispatch_lane *lane)
{
    size_t k;

    if (lane->alive > 0) {
        return;
    }
    for (k = 0; k < lane->workers_started; k++) {
        pthread_join(lane->workers[k], NULL);
    }
    lane->workers_started = 0;
}

size_t sb_dispatch_stop(struct sb_dispatch *d, uint64_t grace_ms)
{
    struct timespec until = dispatch_deadline(grace_ms);
    size_t left;

    if (d == NULL) {
        return 0;
    }
    pthread_mutex_lock(&d->mu);
    atomic_store(&d->stopping, 1);
    pthread_cond_broadcast(&d->wake);
    dispatch_each_lane(d, dispatch_wake_workers);
    pthread_mutex_unlock(&d->mu);
    if (d->scheduler_started) {
        pthread_join(d->scheduler, NULL);
        d->scheduler_started = 0;
    }
    pthread_mutex_lock(&d->mu);
    while (d->active > 0 &&
           pthread_cond_timedwait(&d->idle, &d->mu, &until) != ETIMEDOUT) {
    }
    left = d->active;
    d->abandoned = left > 0;
    dispatch_each_lane(d, dispatch_join_workers);
    pthread_mutex_unlock(&d->mu);
    return left;
}

void sb_dispatch_free(struct sb_dispatch *d)
{
    size_t i;

    if (d == NULL) {
        return;
    }
    for (i = 0; i < d->lane_count; i++) {
        dispatch_lane_free(d->lanes[i]);
    }
    while (d->retired != NULL) {
        struct dispatch_lane *lane = d->retired;

        d->retired = lane->next_retired;
        dispatch_lane_free(lane);
    }
    sb_spool_reader_free(d->reader);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->wake);
    pthread_cond_destroy(&d->idle);
    free(d);
}
