/* SPDX-License-Identifier: MIT */
/*
 * The durable spool: where an event lives from the moment we answer 2xx.
 *
 * Ingress hands events to sb_spool_submit() and is called back once they
 * are committed. One writer thread takes everything queued, writes it in
 * one transaction through the backend, syncs once, and calls back every
 * waiting request: durability costs one sync per batch, not per event
 * (group commit). The backend (SQLite today; PostgreSQL for scale-out) only
 * has to write a batch atomically and durably; the batching, the queue
 * bound and the health state live here, shared by every backend.
 */
#ifndef SB_SPOOL_H
#define SB_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "event.h"
#include "status.h"

#define SB_SPOOL_QUEUE_MAX 4096 /* events waiting for the writer */
#define SB_SPOOL_BATCH_MAX 1024 /* events in one transaction */

struct sb_spool;

enum sb_spool_mode {
    SB_SPOOL_SERVE, /* create if missing, purge, accept writes */
    SB_SPOOL_READ,  /* inspect an existing spool (events command) */
};

/*
 * Called once per submitted event, on the writer thread, after its batch
 * committed (rc SB_OK: durable) or failed (anything else: nothing of the
 * event is stored). MUST NOT block: the whole batch waits on it.
 */
typedef void (*sb_spool_done_fn)(void *arg, enum sb_status rc);

/* One stored event, borrowed for the duration of an sb_spool_row_fn call. */
struct sb_spool_row {
    const char *id;
    int64_t received_ms;
    const char *event_type;
    size_t pending; /* its deliveries by state */
    size_t delivered;
    size_t dead;
};

typedef void (*sb_spool_row_fn)(void *arg, const struct sb_spool_row *row);

/* One delivery, borrowed for the duration of an sb_spool_delivery_fn. */
struct sb_spool_delivery {
    int64_t id;
    const char *output;
    const char *rule;
    const char *state; /* pending, delivered or dead */
    int64_t attempts;
    int64_t next_at_ms;
    const char *last_error; /* NULL when none */
    const char *fields;     /* the rendered fields, a JSON object */
};

typedef void (*sb_spool_delivery_fn)(void *arg,
                                     const struct sb_spool_delivery *d);

/* What a backend provides; see spool_sqlite.c. */
struct sb_spool_backend {
    const char *name;
    /* Writes all events in one transaction, durable when SB_OK. */
    enum sb_status (*write_batch)(void *db, struct sb_event *const *events,
                                  size_t count, struct sb_error *err);
    /* Deletes events received before `before_ms` that need nothing more. */
    enum sb_status (*purge)(void *db, int64_t before_ms, size_t *out_count,
                            struct sb_error *err);
    /*
     * A write transaction of `bytes`: could the largest event we accept
     * be stored right now? What it writes replaces the previous probe.
     */
    enum sb_status (*probe)(void *db, size_t bytes, struct sb_error *err);
    /* Newest first; limit 0 means all. */
    enum sb_status (*list)(void *db, size_t limit, sb_spool_row_fn fn,
                           void *arg, struct sb_error *err);
    /* The deliveries of one event, in the order they were planned. */
    enum sb_status (*list_deliveries)(void *db, const char *event_id,
                                      sb_spool_delivery_fn fn, void *arg,
                                      struct sb_error *err);
    void (*close)(void *db);
};

/* The SQLite backend's constructor (spool_sqlite.c). */
enum sb_status sb_spool_sqlite_open(const char *path, enum sb_spool_mode mode,
                                    void **out_db, struct sb_error *err);
extern const struct sb_spool_backend sb_spool_sqlite_backend;

/*
 * Opens the spool `cfg` names. In SB_SPOOL_SERVE mode the file is created
 * (mode 0600, parent folder too) and expired events are purged. The
 * writer thread is not running yet: see sb_spool_start(). On SB_OK the
 * caller owns *out_spool (sb_spool_free); `cfg` is only read during the
 * call.
 */
enum sb_status sb_spool_open(const struct sb_config *cfg,
                             enum sb_spool_mode mode,
                             struct sb_spool **out_spool, struct sb_error *err);

/* Starts the writer thread. Returns SB_ERR_IO if the thread can't start. */
enum sb_status sb_spool_start(struct sb_spool *spool);

/*
 * Queues `event` for the next commit; `done(arg, rc)` follows exactly once
 * when SB_OK is returned. The spool borrows `event` until then. Returns
 * SB_ERR_FULL (queue at SB_SPOOL_QUEUE_MAX, or stopping) without calling
 * `done`. Thread-safe.
 */
enum sb_status sb_spool_submit(struct sb_spool *spool, struct sb_event *event,
                               sb_spool_done_fn done, void *arg);

/* Whether the last write (commit or probe) succeeded. Thread-safe. */
int sb_spool_ready(struct sb_spool *spool);

/*
 * Lists stored events newest first (limit 0: all), calling `fn` per row on
 * the caller's thread. Only for SB_SPOOL_READ spools.
 */
enum sb_status sb_spool_list(struct sb_spool *spool, size_t limit,
                             sb_spool_row_fn fn, void *arg,
                             struct sb_error *err);

/* Lists the deliveries of `event_id`, calling `fn` per delivery. */
enum sb_status sb_spool_list_deliveries(struct sb_spool *spool,
                                        const char *event_id,
                                        sb_spool_delivery_fn fn, void *arg,
                                        struct sb_error *err);

/*
 * Stops the writer after it has committed everything already queued, then
 * closes the store and frees the spool. Accepts NULL.
 */
void sb_spool_free(struct sb_spool *spool);

#endif
