/* SPDX-License-Identifier: MIT */
/*
 * Group commit in front of a spool backend: the bounded submit queue, the
 * writer thread, periodic purging of expired events and the health state
 * /readyz reports.
 */
#include "build_config.h"

#include "spool.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

#define SPOOL_PURGE_EVERY_MS 60000 /* expired events go within a minute */
#define SPOOL_PROBE_EVERY_MS 1000  /* how soon an unready spool recovers */

struct spool_item {
    struct sb_event *event; /* one of these two */
    const struct sb_spool_settle *settle;
    sb_spool_done_fn done;
    void *arg;
};

struct sb_spool {
    const struct sb_spool_backend *backend;
    void *db;
    char *path; /* for readers */
    uint64_t retention_ms;
    size_t probe_bytes; /* max_body: ready means "an event of any size fits" */

    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct spool_item queue[SB_SPOOL_QUEUE_MAX]; /* ring buffer */
    size_t head;
    size_t count;
    int stopping;
    int running;
    pthread_t writer;
    struct spool_item batch[SB_SPOOL_BATCH_MAX]; /* the writer's alone */

    void (*on_commit)(void *arg);
    void *on_commit_arg;

    atomic_int ready;
    uint64_t committed_events;  /* writer thread only */
    uint64_t committed_settles; /* delivery outcomes; writer thread only */
    uint64_t commits;
    int64_t next_purge_ms;
};

int64_t sb_spool_now_ms(void)
{
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void spool_purge(struct sb_spool *spool)
{
    struct sb_error err;
    size_t purged = 0;
    int64_t now = sb_spool_now_ms();
    enum sb_status rc;

    sb_error_clear(&err);
    rc = spool->backend->purge(spool->db, now - (int64_t)spool->retention_ms,
                               &purged, &err);
    spool->next_purge_ms = now + SPOOL_PURGE_EVERY_MS;
    if (rc != SB_OK) {
        SB_LOG_WARN("spool", "msg=\"purge failed; will retry\" err=\"%s\"",
                    err.msg);
    } else if (purged > 0) {
        SB_LOG_INFO("spool", "purged=%zu msg=\"purged expired events\"",
                    purged);
    }
}

enum sb_status sb_spool_open(const struct sb_config *cfg,
                             enum sb_spool_mode mode,
                             struct sb_spool **out_spool, struct sb_error *err)
{
    struct sb_spool *spool = calloc(1, sizeof(*spool));
    enum sb_status rc;

    *out_spool = NULL;
    if (spool == NULL) {
        return SB_ERR_NOMEM;
    }
    spool->backend = &sb_spool_sqlite_backend;
    spool->retention_ms = cfg->retention_ms;
    spool->probe_bytes = cfg->max_body;
    pthread_mutex_init(&spool->lock, NULL);
    pthread_cond_init(&spool->wake, NULL);
    atomic_init(&spool->ready, 1);

    spool->path = strdup(cfg->spool_path);
    rc = spool->path
             ? sb_spool_sqlite_open(cfg->spool_path, mode, &spool->db, err)
             : SB_ERR_NOMEM;
    if (rc != SB_OK) {
        sb_spool_free(spool);
        return rc;
    }
    if (mode == SB_SPOOL_SERVE) {
        spool_purge(spool);
    }
    *out_spool = spool;
    return SB_OK;
}

/* Takes up to SB_SPOOL_BATCH_MAX queued items; called with the lock held. */
static size_t spool_take(struct sb_spool *spool, struct spool_item *batch)
{
    size_t n = 0;

    while (spool->count > 0 && n < SB_SPOOL_BATCH_MAX) {
        batch[n++] = spool->queue[spool->head];
        spool->head = (spool->head + 1) % SB_SPOOL_QUEUE_MAX;
        spool->count--;
    }
    return n;
}

static void spool_set_ready(struct sb_spool *spool, enum sb_status rc,
                            const struct sb_error *err)
{
    int was_ready = atomic_exchange(&spool->ready, rc == SB_OK);

    if (was_ready && rc != SB_OK) {
        SB_LOG_ERROR("spool",
                     "msg=\"spool not writable; answering 503\" err=\"%s\"",
                     err->msg);
    } else if (!was_ready && rc == SB_OK) {
        SB_LOG_INFO("spool", "msg=\"spool is writable again\"");
    }
}

/* Microseconds since `since`, on the monotonic clock. */
static uint64_t spool_elapsed_us(const struct timespec *since)
{
    struct timespec now;
    int64_t us;

    clock_gettime(CLOCK_MONOTONIC, &now);
    us = (int64_t)(now.tv_sec - since->tv_sec) * 1000000 +
         (now.tv_nsec - since->tv_nsec) / 1000;
    return us > 0 ? (uint64_t)us : 0;
}

/* Commits one batch and answers every request in it. */
static void spool_commit_batch(struct sb_spool *spool, struct spool_item *batch,
                               size_t n)
{
    struct sb_spool_write writes[SB_SPOOL_BATCH_MAX];
    struct sb_error err;
    struct timespec began;
    enum sb_status rc;
    size_t planned = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        writes[i].event = batch[i].event;
        writes[i].settle = batch[i].settle;
        planned += batch[i].event ? batch[i].event->plan_count : 0;
    }
    sb_error_clear(&err);
    clock_gettime(CLOCK_MONOTONIC, &began);
    rc = spool->backend->write_batch(spool->db, writes, n, &err);
    spool_set_ready(spool, rc, &err);
    if (rc == SB_OK) {
        for (i = 0; i < n; i++) {
            if (batch[i].event != NULL) {
                spool->committed_events++;
            } else {
                spool->committed_settles++;
            }
        }
        spool->commits++;
        sb_metrics_spool_committed(spool_elapsed_us(&began), n);
    }
    for (i = 0; i < n; i++) {
        batch[i].done(batch[i].arg, rc);
    }
    if (rc == SB_OK && planned > 0 && spool->on_commit != NULL) {
        spool->on_commit(spool->on_commit_arg);
    }
}

/* Purging and probing, done when the writer has nothing else to do. */
static void spool_maintain(struct sb_spool *spool)
{
    struct sb_error err;

    if (!atomic_load(&spool->ready)) {
        sb_error_clear(&err);
        spool_set_ready(
            spool, spool->backend->probe(spool->db, spool->probe_bytes, &err),
            &err);
    }
    if (atomic_load(&spool->ready) &&
        sb_spool_now_ms() >= spool->next_purge_ms) {
        spool_purge(spool);
    }
}

static void spool_wait(struct sb_spool *spool)
{
    struct timespec until;
    int64_t wait_ms = atomic_load(&spool->ready) ? SPOOL_PURGE_EVERY_MS
                                                 : SPOOL_PROBE_EVERY_MS;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(wait_ms / 1000);
    pthread_cond_timedwait(&spool->wake, &spool->lock, &until);
}

static void *spool_writer(void *arg)
{
    struct sb_spool *spool = arg;
    struct spool_item *batch = spool->batch;

    pthread_mutex_lock(&spool->lock);
    for (;;) {
        size_t n = spool_take(spool, batch);

        if (n > 0) {
            pthread_mutex_unlock(&spool->lock);
            spool_commit_batch(spool, batch, n);
            pthread_mutex_lock(&spool->lock);
            continue;
        }
        if (spool->stopping) {
            break;
        }
        pthread_mutex_unlock(&spool->lock);
        spool_maintain(spool);
        pthread_mutex_lock(&spool->lock);
        if (spool->count == 0 && !spool->stopping) {
            spool_wait(spool);
        }
    }
    pthread_mutex_unlock(&spool->lock);
    return NULL;
}

enum sb_status sb_spool_start(struct sb_spool *spool)
{
    if (pthread_create(&spool->writer, NULL, spool_writer, spool) != 0) {
        return SB_ERR_IO;
    }
    spool->running = 1;
    return SB_OK;
}

static enum sb_status spool_enqueue(struct sb_spool *spool,
                                    struct sb_event *event,
                                    const struct sb_spool_settle *settle,
                                    sb_spool_done_fn done, void *arg)
{
    /* Outcomes may take the last slots: ingestion must not starve them. */
    size_t cap = event != NULL ? SB_SPOOL_QUEUE_MAX - SB_SPOOL_SETTLE_RESERVE
                               : SB_SPOOL_QUEUE_MAX;
    struct spool_item *slot;

    pthread_mutex_lock(&spool->lock);
    if (spool->count >= cap || spool->stopping || !spool->running) {
        pthread_mutex_unlock(&spool->lock);
        return SB_ERR_FULL;
    }
    slot = &spool->queue[(spool->head + spool->count) % SB_SPOOL_QUEUE_MAX];
    slot->event = event;
    slot->settle = settle;
    slot->done = done;
    slot->arg = arg;
    spool->count++;
    pthread_cond_signal(&spool->wake);
    pthread_mutex_unlock(&spool->lock);
    return SB_OK;
}

enum sb_status sb_spool_submit(struct sb_spool *spool, struct sb_event *event,
                               sb_spool_done_fn done, void *arg)
{
    return spool_enqueue(spool, event, NULL, done, arg);
}

enum sb_status sb_spool_settle(struct sb_spool *spool,
                               const struct sb_spool_settle *settle,
                               sb_spool_done_fn done, void *arg)
{
    return spool_enqueue(spool, NULL, settle, done, arg);
}

void sb_spool_on_commit(struct sb_spool *spool, void (*fn)(void *arg),
                        void *arg)
{
    spool->on_commit = fn;
    spool->on_commit_arg = arg;
}

int sb_spool_ready(struct sb_spool *spool)
{
    return atomic_load(&spool->ready);
}

enum sb_status sb_spool_list(struct sb_spool *spool,
                             const struct sb_spool_filter *filter,
                             sb_spool_row_fn fn, void *arg,
                             struct sb_error *err)
{
    return spool->backend->list(spool->db, filter, fn, arg, err);
}

enum sb_status sb_spool_list_deliveries(struct sb_spool *spool,
                                        const char *event_id,
                                        const struct sb_spool_filter *filter,
                                        sb_spool_delivery_fn fn, void *arg,
                                        struct sb_error *err)
{
    return spool->backend->list_deliveries(spool->db, event_id, filter, fn, arg,
                                           err);
}

enum sb_status sb_spool_replay(struct sb_spool *spool,
                               const struct sb_spool_filter *filter,
                               size_t *out_count, struct sb_error *err)
{
    return spool->backend->replay(spool->db, filter, sb_spool_now_ms(),
                                  out_count, err);
}

struct sb_spool_reader {
    const struct sb_spool_backend *backend;
    void *db;
};

enum sb_status sb_spool_reader_open(struct sb_spool *spool,
                                    struct sb_spool_reader **out_reader,
                                    struct sb_error *err)
{
    struct sb_spool_reader *reader = calloc(1, sizeof(*reader));
    enum sb_status rc;

    *out_reader = NULL;
    if (reader == NULL) {
        return SB_ERR_NOMEM;
    }
    reader->backend = spool->backend;
    rc = sb_spool_sqlite_open(spool->path, SB_SPOOL_READ, &reader->db, err);
    if (rc != SB_OK) {
        free(reader);
        return rc;
    }
    *out_reader = reader;
    return SB_OK;
}

enum sb_status sb_spool_due(struct sb_spool_reader *reader, const char *output,
                            const int64_t *skip, size_t skip_count,
                            size_t limit, sb_spool_due_fn fn, void *arg,
                            struct sb_error *err)
{
    return reader->backend->due(reader->db, output, sb_spool_now_ms(), skip,
                                skip_count, limit, fn, arg, err);
}

enum sb_status sb_spool_backlog(struct sb_spool_reader *reader,
                                sb_spool_backlog_fn fn, void *arg,
                                struct sb_error *err)
{
    return reader->backend->backlog(reader->db, fn, arg, err);
}

void sb_spool_reader_free(struct sb_spool_reader *reader)
{
    if (reader == NULL) {
        return;
    }
    reader->backend->close(reader->db);
    free(reader);
}

void sb_spool_free(struct sb_spool *spool)
{
    if (spool == NULL) {
        return;
    }
    if (spool->running) {
        pthread_mutex_lock(&spool->lock);
        spool->stopping = 1;
        pthread_cond_signal(&spool->wake);
        pthread_mutex_unlock(&spool->lock);
        pthread_join(spool->writer, NULL);
        SB_LOG_INFO("spool",
                    "events=%" PRIu64 " outcomes=%" PRIu64 " commits=%" PRIu64
                    " msg=\"spool stats\"",
                    spool->committed_events, spool->committed_settles,
                    spool->commits);
    }
    if (spool->db != NULL) {
        spool->backend->close(spool->db);
    }
    pthread_cond_destroy(&spool->wake);
    pthread_mutex_destroy(&spool->lock);
    free(spool->path);
    free(spool);
}
