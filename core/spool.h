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

#define SB_SPOOL_QUEUE_MAX      4096 /* events waiting for the writer */
#define SB_SPOOL_BATCH_MAX      1024 /* writes in one transaction */
#define SB_SPOOL_SETTLE_RESERVE 1024 /* queue slots only outcomes may take */

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

/*
 * What one delivery attempt came to, written in the writer's next batch:
 * attempts grow by one, and state, next attempt and last error are set.
 */
struct sb_spool_settle {
    int64_t delivery_id;
    const char *state;      /* pending (to retry), delivered or dead */
    int64_t next_at_ms;     /* with pending */
    const char *last_error; /* NULL: none; borrowed until done */
};

/* A due delivery with what deliver() needs; borrowed during the call. */
struct sb_spool_due {
    int64_t id;
    const char *event_id;
    const char *rule;
    int64_t attempts;   /* made so far */
    int64_t series_ms;  /* when this run of attempts began: max_age */
    const char *fields; /* rendered at routing: a JSON object */
    int64_t received_ms;
    const char *event_type;
    const char *body;
    size_t body_len;
};

typedef void (*sb_spool_due_fn)(void *arg, const struct sb_spool_due *due);

/* What `events` and `replay` select; zero fields select everything. */
struct sb_spool_filter {
    size_t limit;       /* events listed; 0: all */
    const char *state;  /* deliveries in this state */
    const char *output; /* deliveries to this output */
    int64_t since_ms;   /* events received at or after */
    int64_t until_ms;   /* events received before; 0: no bound */
    const int64_t *ids; /* replay: these deliveries */
    size_t id_count;
};

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

/* One output's backlog; `output` is borrowed for the duration of the call. */
typedef void (*sb_spool_backlog_fn)(void *arg, const char *output,
                                    uint64_t pending, uint64_t dead);

/* One write of a batch: an event (with its deliveries) or a settle. */
struct sb_spool_write {
    struct sb_event *event;
    const struct sb_spool_settle *settle;
};

/* What a backend provides; see spool_sqlite.c. */
struct sb_spool_backend {
    const char *name;
    /* Writes everything in one transaction, durable when SB_OK. */
    enum sb_status (*write_batch)(void *db, const struct sb_spool_write *w,
                                  size_t count, struct sb_error *err);
    /* Deletes events received before `before_ms` that need nothing more. */
    enum sb_status (*purge)(void *db, int64_t before_ms, size_t *out_count,
                            struct sb_error *err);
    /*
     * A write transaction of `bytes`: could the largest event we accept
     * be stored right now? What it writes replaces the previous probe.
     */
    enum sb_status (*probe)(void *db, size_t bytes, struct sb_error *err);
    /* Newest first, the events `filter` selects. */
    enum sb_status (*list)(void *db, const struct sb_spool_filter *filter,
                           sb_spool_row_fn fn, void *arg, struct sb_error *err);
    /* One event's deliveries `filter` selects, in planned order. */
    enum sb_status (*list_deliveries)(void *db, const char *event_id,
                                      const struct sb_spool_filter *filter,
                                      sb_spool_delivery_fn fn, void *arg,
                                      struct sb_error *err);
    /*
     * Pending deliveries to `output` due at `now_ms` whose ids are not
     * among `skip`, soonest first, at most `limit`. Runs on a reader
     * connection, not the writer's.
     */
    enum sb_status (*due)(void *db, const char *output, int64_t now_ms,
                          const int64_t *skip, size_t skip_count, size_t limit,
                          sb_spool_due_fn fn, void *arg, struct sb_error *err);
    /* Dead deliveries `filter` selects become pending, due at `now_ms`. */
    enum sb_status (*replay)(void *db, const struct sb_spool_filter *filter,
                             int64_t now_ms, size_t *out_count,
                             struct sb_error *err);
    /* Per output holding any, its pending and dead deliveries; a reader's. */
    enum sb_status (*backlog)(void *db, sb_spool_backlog_fn fn, void *arg,
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
 * Queues a delivery's outcome for the next commit, like sb_spool_submit:
 * `done(arg, rc)` follows exactly once when SB_OK is returned, and the
 * spool borrows `settle` until then. Thread-safe.
 */
enum sb_status sb_spool_settle(struct sb_spool *spool,
                               const struct sb_spool_settle *settle,
                               sb_spool_done_fn done, void *arg);

/*
 * Called on the writer thread after every commit that stored deliveries,
 * so dispatch starts on them at once. Set before sb_spool_start().
 */
void sb_spool_on_commit(struct sb_spool *spool, void (*fn)(void *arg),
                        void *arg);

/*
 * Lists stored events newest first, as `filter` selects, calling `fn` per
 * row on the caller's thread. Only for SB_SPOOL_READ spools.
 */
enum sb_status sb_spool_list(struct sb_spool *spool,
                             const struct sb_spool_filter *filter,
                             sb_spool_row_fn fn, void *arg,
                             struct sb_error *err);

/* Lists the deliveries of `event_id` `filter` selects. */
enum sb_status sb_spool_list_deliveries(struct sb_spool *spool,
                                        const char *event_id,
                                        const struct sb_spool_filter *filter,
                                        sb_spool_delivery_fn fn, void *arg,
                                        struct sb_error *err);

/*
 * Re-queues the dead deliveries `filter` selects (ids, output, time
 * range: all that are set must hold) and says how many in *out_count.
 * Safe while a server runs on the same spool.
 */
enum sb_status sb_spool_replay(struct sb_spool *spool,
                               const struct sb_spool_filter *filter,
                               size_t *out_count, struct sb_error *err);

/*
 * A second connection to the same store for one dispatch thread to read
 * due deliveries with, never blocking the writer. On SB_OK the caller owns
 * *out_reader (sb_spool_reader_free).
 */
struct sb_spool_reader;
enum sb_status sb_spool_reader_open(struct sb_spool *spool,
                                    struct sb_spool_reader **out_reader,
                                    struct sb_error *err);

/*
 * Pending deliveries to `output` due now, soonest first, at most `limit`,
 * leaving out the `skip_count` ids in `skip` (those dispatch holds).
 */
enum sb_status sb_spool_due(struct sb_spool_reader *reader, const char *output,
                            const int64_t *skip, size_t skip_count,
                            size_t limit, sb_spool_due_fn fn, void *arg,
                            struct sb_error *err);

/*
 * Calls `fn` once per output that holds pending or dead deliveries, in
 * name order, with how many of each (/metrics). Counts rows of the index:
 * for a scrape, not for every event. Same thread rules as sb_spool_due.
 */
enum sb_status sb_spool_backlog(struct sb_spool_reader *reader,
                                sb_spool_backlog_fn fn, void *arg,
                                struct sb_error *err);

void sb_spool_reader_free(struct sb_spool_reader *reader);

/* Unix milliseconds now, the clock every spool time is on. */
int64_t sb_spool_now_ms(void);

/*
 * Stops the writer after it has committed everything already queued, then
 * closes the store and frees the spool. Accepts NULL.
 */
void sb_spool_free(struct sb_spool *spool);

#endif
