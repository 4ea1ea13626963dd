/* SPDX-License-Identifier: MIT */
/*
 * The embedded spool backend: one SQLite file in WAL mode with
 * synchronous=FULL, so a COMMIT returns only after the WAL is on disk.
 * Only the spool's writer thread touches a serving connection.
 */
#include "build_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "spool.h"

#define SQLITE_BUSY_TIMEOUT_MS 5000
#define SQLITE_SCHEMA_VERSION  1

struct sqlite_db {
    sqlite3 *conn;
    char *path;
    sqlite3_stmt *insert;
    sqlite3_stmt *insert_delivery;
    sqlite3_stmt *settle;
    sqlite3_stmt *due; /* readers: prepared on first use */
};

static const char sqlite_schema[] =
    "CREATE TABLE IF NOT EXISTS events ("
    "  id TEXT PRIMARY KEY,"          /* sorts by time of receipt */
    "  received_at INTEGER NOT NULL," /* Unix milliseconds */
    "  event_type TEXT NOT NULL,"
    "  body BLOB NOT NULL" /* the request body as received */
    ") WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS deliveries ("
    "  id INTEGER PRIMARY KEY,"
    "  event_id TEXT NOT NULL,"
    "  output TEXT NOT NULL,"
    "  rule TEXT NOT NULL,"
    "  send_index INTEGER NOT NULL,"
    "  state TEXT NOT NULL DEFAULT 'pending'"
    "    CHECK (state IN ('pending', 'delivered', 'dead')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  next_at INTEGER NOT NULL," /* Unix ms of the next attempt */
    "  last_error TEXT,"
    "  fields TEXT NOT NULL," /* rendered at routing: a reload keeps them */
    "  series_at INTEGER NOT NULL DEFAULT 0" /* max_age counts from here */
    ");"
    "CREATE INDEX IF NOT EXISTS deliveries_by_event"
    "  ON deliveries (event_id);"
    "CREATE INDEX IF NOT EXISTS deliveries_due"
    "  ON deliveries (state, output, next_at);"
    "CREATE TABLE IF NOT EXISTS meta ("
    "  key TEXT PRIMARY KEY,"
    "  value BLOB NOT NULL"
    ") WITHOUT ROWID;"
    "PRAGMA user_version = 3;";

/* Version 2 spools lack series_at: their runs began at their first due. */
static const char sqlite_upgrade_v2[] =
    "ALTER TABLE deliveries ADD COLUMN series_at INTEGER NOT NULL DEFAULT 0;"
    "UPDATE deliveries SET series_at = next_at;"
    "PRAGMA user_version = 3;";

static enum sb_status sqlite_fail(struct sqlite_db *db, struct sb_error *err,
                                  const char *what)
{
    sb_error_set(err, "%s: %s: %s", db->path, what, sqlite3_errmsg(db->conn));
    return SB_ERR_IO;
}

static enum sb_status sqlite_exec(struct sqlite_db *db, const char *sql,
                                  struct sb_error *err, const char *what)
{
    if (sqlite3_exec(db->conn, sql, NULL, NULL, NULL) != SQLITE_OK) {
        return sqlite_fail(db, err, what);
    }
    return SB_OK;
}

/* mkdir -p for the spool's folder; 0700 since the spool holds PHI. */
static enum sb_status sqlite_make_parent(const char *path, struct sb_error *err)
{
    char dir[4096];
    char *p;

    if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir)) {
        sb_error_set(err, "spool path is too long");
        return SB_ERR_INVALID;
    }
    p = strrchr(dir, '/');
    if (p == NULL || p == dir) {
        return SB_OK;
    }
    *p = '\0';
    for (p = dir + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
                goto fail;
            }
            *p = '/';
        }
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        goto fail;
    }
    return SB_OK;

fail:
    sb_error_set(err, "cannot create spool folder %s: %s", dir,
                 strerror(errno));
    return SB_ERR_IO;
}

/* SQLite would create the file 0644; event bodies are patients' data. */
static enum sb_status sqlite_create_private(const char *path,
                                            struct sb_error *err)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

    if (fd < 0) {
        sb_error_set(err, "cannot create spool %s: %s", path, strerror(errno));
        return SB_ERR_IO;
    }
    close(fd);
    return SB_OK;
}

static int sqlite_user_version(struct sqlite_db *db)
{
    sqlite3_stmt *st = NULL;
    int version = -1;

    if (sqlite3_prepare_v2(db->conn, "PRAGMA user_version", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        version = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    return version;
}

static enum sb_status sqlite_prepare_schema(struct sqlite_db *db,
                                            struct sb_error *err)
{
    enum sb_status rc;

    rc = sqlite_exec(db, "PRAGMA journal_mode=WAL", err, "enabling WAL");
    if (rc == SB_OK) {
        rc = sqlite_exec(db, "PRAGMA synchronous=FULL", err,
                         "setting synchronous=FULL");
    }
    if (rc == SB_OK && sqlite_user_version(db) == 2) {
        rc = sqlite_exec(db, sqlite_upgrade_v2, err, "upgrading the schema");
    }
    if (rc == SB_OK) {
        rc = sqlite_exec(db, sqlite_schema, err, "creating the schema");
    }
    if (rc == SB_OK &&
        sqlite3_prepare_v3(db->conn,
                           "INSERT INTO events (id, received_at, event_type,"
                           " body) VALUES (?, ?, ?, ?)",
                           -1, SQLITE_PREPARE_PERSISTENT, &db->insert,
                           NULL) != SQLITE_OK) {
        rc = sqlite_fail(db, err, "preparing the insert");
    }
    if (rc == SB_OK &&
        sqlite3_prepare_v3(db->conn,
                           "INSERT INTO deliveries (event_id, output, rule,"
                           " send_index, next_at, fields, series_at)"
                           " VALUES (?, ?, ?, ?, ?5, ?, ?5)",
                           -1, SQLITE_PREPARE_PERSISTENT, &db->insert_delivery,
                           NULL) != SQLITE_OK) {
        rc = sqlite_fail(db, err, "preparing the delivery insert");
    }
    if (rc == SB_OK &&
        sqlite3_prepare_v3(db->conn,
                           "UPDATE deliveries SET state = ?, next_at = ?,"
                           " last_error = ?, attempts = attempts + 1"
                           " WHERE id = ?",
                           -1, SQLITE_PREPARE_PERSISTENT, &db->settle,
                           NULL) != SQLITE_OK) {
        rc = sqlite_fail(db, err, "preparing the settle");
    }
    return rc;
}

static void sqlite_close(void *handle)
{
    struct sqlite_db *db = handle;

    if (db == NULL) {
        return;
    }
    sqlite3_finalize(db->insert);
    sqlite3_finalize(db->insert_delivery);
    sqlite3_finalize(db->settle);
    sqlite3_finalize(db->due);
    sqlite3_close(db->conn);
    free(db->path);
    free(db);
}

enum sb_status sb_spool_sqlite_open(const char *path, enum sb_spool_mode mode,
                                    void **out_db, struct sb_error *err)
{
    struct sqlite_db *db = calloc(1, sizeof(*db));
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    enum sb_status rc = SB_ERR_NOMEM;

    *out_db = NULL;
    if (db == NULL) {
        return SB_ERR_NOMEM;
    }
    db->path = strdup(path);
    if (db->path == NULL) {
        goto out;
    }
    if (mode == SB_SPOOL_SERVE) {
        rc = sqlite_make_parent(path, err);
        if (rc == SB_OK) {
            rc = sqlite_create_private(path, err);
        }
        if (rc != SB_OK) {
            goto out;
        }
    } else if (access(path, F_OK) != 0) {
        sb_error_set(err, "spool %s does not exist yet (serve creates it)",
                     path);
        rc = SB_ERR_IO;
        goto out;
    }
    if (sqlite3_open_v2(path, &db->conn, flags, NULL) != SQLITE_OK) {
        rc = sqlite_fail(db, err, "cannot open");
        goto out;
    }
    sqlite3_busy_timeout(db->conn, SQLITE_BUSY_TIMEOUT_MS);
    rc = mode == SB_SPOOL_SERVE ? sqlite_prepare_schema(db, err) : SB_OK;

out:
    if (rc != SB_OK) {
        sqlite_close(db);
        return rc;
    }
    *out_db = db;
    return SB_OK;
}

static enum sb_status sqlite_insert_delivery(struct sqlite_db *db,
                                             const struct sb_event *ev,
                                             const struct sb_delivery_plan *d,
                                             struct sb_error *err)
{
    sqlite3_stmt *st = db->insert_delivery;
    int rc;

    sqlite3_bind_text(st, 1, ev->id, SB_EVENT_ID_LEN, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, d->output, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, d->rule, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)d->send_index);
    sqlite3_bind_int64(st, 5, ev->received_ms);
    sqlite3_bind_text(st, 6, d->fields, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        return sqlite_fail(db, err, "storing a delivery");
    }
    return SB_OK;
}

/* The event and its deliveries: stored together or not at all. */
static enum sb_status sqlite_insert(struct sqlite_db *db,
                                    const struct sb_event *ev,
                                    struct sb_error *err)
{
    sqlite3_stmt *st = db->insert;
    size_t i;
    int rc;

    sqlite3_bind_text(st, 1, ev->id, SB_EVENT_ID_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, ev->received_ms);
    sqlite3_bind_text(st, 3, ev->event_type, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, ev->body, (int)ev->body_len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        return sqlite_fail(db, err, "storing an event");
    }
    for (i = 0; i < ev->plan_count; i++) {
        enum sb_status step =
            sqlite_insert_delivery(db, ev, &ev->plans[i], err);

        if (step != SB_OK) {
            return step;
        }
    }
    return SB_OK;
}

/* Leaves no transaction open whatever failed, so the next batch can run. */
static void sqlite_rollback(struct sqlite_db *db)
{
    if (!sqlite3_get_autocommit(db->conn)) {
        sqlite3_exec(db->conn, "ROLLBACK", NULL, NULL, NULL);
    }
}

static enum sb_status sqlite_settle(struct sqlite_db *db,
                                    const struct sb_spool_settle *s,
                                    struct sb_error *err)
{
    sqlite3_stmt *st = db->settle;
    int rc;

    sqlite3_bind_text(st, 1, s->state, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, s->next_at_ms);
    if (s->last_error != NULL) {
        sqlite3_bind_text(st, 3, s->last_error, -1, SQLITE_STATIC);
    } else {
        sqlite3_bind_null(st, 3);
    }
    sqlite3_bind_int64(st, 4, s->delivery_id);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE) {
        return sqlite_fail(db, err, "storing a delivery's outcome");
    }
    return SB_OK;
}

static enum sb_status sqlite_write_batch(void *handle,
                                         const struct sb_spool_write *writes,
                                         size_t count, struct sb_error *err)
{
    struct sqlite_db *db = handle;
    enum sb_status rc;
    size_t i;

    rc = sqlite_exec(db, "BEGIN IMMEDIATE", err, "starting a transaction");
    for (i = 0; rc == SB_OK && i < count; i++) {
        rc = writes[i].event != NULL ? sqlite_insert(db, writes[i].event, err)
                                     : sqlite_settle(db, writes[i].settle, err);
    }
    if (rc == SB_OK) {
        rc = sqlite_exec(db, "COMMIT", err, "committing");
    }
    if (rc != SB_OK) {
        sqlite_rollback(db);
    }
    return rc;
}

/*
 * Runs one statement with the id floor bound to ?1 and adds the rows it
 * changed to *count.
 */
static enum sb_status sqlite_purge_step(struct sqlite_db *db, const char *sql,
                                        const char *floor_id, size_t *count,
                                        struct sb_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(db->conn, sql, -1, &st, NULL) != SQLITE_OK) {
        return sqlite_fail(db, err, "preparing the purge");
    }
    sqlite3_bind_text(st, 1, floor_id, SB_EVENT_ID_LEN, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        return sqlite_fail(db, err, "purging");
    }
    *count += (size_t)sqlite3_changes(db->conn);
    return SB_OK;
}

/*
 * An event leaves once it is older than the retention and nothing is
 * owed on it: every delivery delivered (dead ones stay, to be replayed).
 * Ids sort by time, so "received before T" is "id below the smallest id
 * of T", which the primary key answers without another index.
 */
static enum sb_status sqlite_purge(void *handle, int64_t before_ms,
                                   size_t *out_count, struct sb_error *err)
{
    struct sqlite_db *db = handle;
    char floor_id[SB_EVENT_ID_LEN + 1];
    size_t ignored = 0;
    enum sb_status rc;

    *out_count = 0;
    sb_event_id_floor(before_ms, floor_id);
    rc = sqlite_exec(db, "BEGIN IMMEDIATE", err, "starting the purge");
    if (rc == SB_OK) {
        rc = sqlite_purge_step(
            db,
            "DELETE FROM deliveries WHERE event_id < ?1 AND event_id NOT IN"
            " (SELECT event_id FROM deliveries"
            "  WHERE event_id < ?1 AND state != 'delivered')",
            floor_id, &ignored, err);
    }
    if (rc == SB_OK) {
        rc = sqlite_purge_step(
            db,
            "DELETE FROM events WHERE id < ?1 AND NOT EXISTS"
            " (SELECT 1 FROM deliveries d WHERE d.event_id = events.id)",
            floor_id, out_count, err);
    }
    if (rc == SB_OK) {
        rc = sqlite_exec(db, "COMMIT", err, "committing the purge");
    }
    if (rc != SB_OK) {
        sqlite_rollback(db);
        *out_count = 0;
    }
    return rc;
}

static enum sb_status sqlite_probe(void *handle, size_t bytes,
                                   struct sb_error *err)
{
    struct sqlite_db *db = handle;
    sqlite3_stmt *st = NULL;
    enum sb_status rc;

    if (sqlite3_prepare_v2(db->conn,
                           "INSERT OR REPLACE INTO meta (key, value)"
                           " VALUES ('probe', zeroblob(?))",
                           -1, &st, NULL) != SQLITE_OK) {
        return sqlite_fail(db, err, "preparing the probe");
    }
    sqlite3_bind_int64(st, 1, (sqlite3_int64)bytes);
    rc = sqlite_exec(db, "BEGIN IMMEDIATE", err, "probing");
    if (rc == SB_OK && sqlite3_step(st) != SQLITE_DONE) {
        rc = sqlite_fail(db, err, "probing");
    }
    sqlite3_finalize(st);
    if (rc == SB_OK) {
        rc = sqlite_exec(db, "COMMIT", err, "probing");
    }
    if (rc != SB_OK) {
        sqlite_rollback(db);
    }
    return rc;
}

/* Binds the filter's time range as id floors (ids sort by time). */
static void sqlite_bind_range(sqlite3_stmt *st, int since_at, int until_at,
                              const struct sb_spool_filter *f,
                              char since_id[SB_EVENT_ID_LEN + 1],
                              char until_id[SB_EVENT_ID_LEN + 1])
{
    sb_event_id_floor(f->since_ms > 0 ? f->since_ms : 0, since_id);
    sqlite3_bind_text(st, since_at, since_id, SB_EVENT_ID_LEN, SQLITE_STATIC);
    if (f->until_ms > 0) {
        sb_event_id_floor(f->until_ms, until_id);
        sqlite3_bind_text(st, until_at, until_id, SB_EVENT_ID_LEN,
                          SQLITE_STATIC);
    }
}

/* NULL binds as SQL NULL, which the queries read as "any". */
static void sqlite_bind_opt(sqlite3_stmt *st, int at, const char *text)
{
    if (text != NULL) {
        sqlite3_bind_text(st, at, text, -1, SQLITE_STATIC);
    }
}

static enum sb_status sqlite_list(void *handle, const struct sb_spool_filter *f,
                                  sb_spool_row_fn fn, void *arg,
                                  struct sb_error *err)
{
    struct sqlite_db *db = handle;
    char since_id[SB_EVENT_ID_LEN + 1];
    char until_id[SB_EVENT_ID_LEN + 1];
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(
            db->conn,
            "SELECT e.id, e.received_at, e.event_type,"
            " (SELECT count(*) FROM deliveries d WHERE"
            "  d.event_id = e.id AND d.state = 'pending'),"
            " (SELECT count(*) FROM deliveries d WHERE"
            "  d.event_id = e.id AND d.state = 'delivered'),"
            " (SELECT count(*) FROM deliveries d WHERE"
            "  d.event_id = e.id AND d.state = 'dead')"
            " FROM events e WHERE e.id >= ?1 AND (?2 IS NULL OR e.id < ?2)"
            " AND ((?3 IS NULL AND ?4 IS NULL) OR EXISTS (SELECT 1"
            "  FROM deliveries d WHERE d.event_id = e.id"
            "  AND (?3 IS NULL OR d.state = ?3)"
            "  AND (?4 IS NULL OR d.output = ?4)))"
            " ORDER BY e.id DESC LIMIT ?5",
            -1, &st, NULL) != SQLITE_OK) {
        return sqlite_fail(db, err, "listing events");
    }
    sqlite_bind_range(st, 1, 2, f, since_id, until_id);
    sqlite_bind_opt(st, 3, f->state);
    sqlite_bind_opt(st, 4, f->output);
    sqlite3_bind_int64(st, 5, f->limit == 0 ? -1 : (sqlite3_int64)f->limit);
    for (;;) {
        struct sb_spool_row row;

        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            break;
        }
        row = (struct sb_spool_row){
            .id = (const char *)sqlite3_column_text(st, 0),
            .received_ms = sqlite3_column_int64(st, 1),
            .event_type = (const char *)sqlite3_column_text(st, 2),
            .pending = (size_t)sqlite3_column_int64(st, 3),
            .delivered = (size_t)sqlite3_column_int64(st, 4),
            .dead = (size_t)sqlite3_column_int64(st, 5),
        };

        fn(arg, &row);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        return sqlite_fail(db, err, "listing events");
    }
    return SB_OK;
}

static enum sb_status sqlite_list_deliveries(void *handle, const char *event_id,
                                             const struct sb_spool_filter *f,
                                             sb_spool_delivery_fn fn, void *arg,
                                             struct sb_error *err)
{
    struct sqlite_db *db = handle;
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(db->conn,
                           "SELECT id, output, rule, state, attempts, next_at,"
                           " last_error, fields FROM deliveries"
                           " WHERE event_id = ?1"
                           " AND (?2 IS NULL OR state = ?2)"
                           " AND (?3 IS NULL OR output = ?3) ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK) {
        return sqlite_fail(db, err, "listing deliveries");
    }
    sqlite3_bind_text(st, 1, event_id, -1, SQLITE_STATIC);
    sqlite_bind_opt(st, 2, f->state);
    sqlite_bind_opt(st, 3, f->output);
    for (;;) {
        struct sb_spool_delivery d;

        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            break;
        }
        d = (struct sb_spool_delivery){
            .id = sqlite3_column_int64(st, 0),
            .output = (const char *)sqlite3_column_text(st, 1),
            .rule = (const char *)sqlite3_column_text(st, 2),
            .state = (const char *)sqlite3_column_text(st, 3),
            .attempts = sqlite3_column_int64(st, 4),
            .next_at_ms = sqlite3_column_int64(st, 5),
            .last_error = (const char *)sqlite3_column_text(st, 6),
            .fields = (const char *)sqlite3_column_text(st, 7),
        };
        fn(arg, &d);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        return sqlite_fail(db, err, "listing deliveries");
    }
    return SB_OK;
}

static struct sb_spool_due sqlite_due_row(sqlite3_stmt *st)
{
    return (struct sb_spool_due){
        .id = sqlite3_column_int64(st, 0),
        .event_id = (const char *)sqlite3_column_text(st, 1),
        .rule = (const char *)sqlite3_column_text(st, 2),
        .attempts = sqlite3_column_int64(st, 3),
        .series_ms = sqlite3_column_int64(st, 4),
        .fields = (const char *)sqlite3_column_text(st, 5),
        .received_ms = sqlite3_column_int64(st, 6),
        .event_type = (const char *)sqlite3_column_text(st, 7),
        .body = sqlite3_column_blob(st, 8),
        .body_len = (size_t)sqlite3_column_bytes(st, 8),
    };
}

/* "[1,2,3]" for json_each(); NULL when there are no ids. */
static char *sqlite_id_list(const int64_t *ids, size_t count)
{
    size_t cap = count * 21 + 3;
    char *list;
    size_t len = 1;
    size_t i;

    if (count == 0) {
        return NULL;
    }
    list = malloc(cap);
    if (list == NULL) {
        return NULL;
    }
    list[0] = '[';
    for (i = 0; i < count; i++) {
        len += (size_t)snprintf(list + len, cap - len, "%s%lld",
                                i > 0 ? "," : "", (long long)ids[i]);
    }
    snprintf(list + len, cap - len, "]");
    return list;
}

/* The (state, output, next_at) index answers this without a scan. */
static enum sb_status sqlite_due(void *handle, const char *output,
                                 int64_t now_ms, const int64_t *skip,
                                 size_t skip_count, size_t limit,
                                 sb_spool_due_fn fn, void *arg,
                                 struct sb_error *err)
{
    struct sqlite_db *db = handle;
    char *skipped = sqlite_id_list(skip, skip_count);
    int rc;

    if (skip_count > 0 && skipped == NULL) {
        return SB_ERR_NOMEM;
    }

    if (db->due == NULL &&
        sqlite3_prepare_v3(
            db->conn,
            "SELECT d.id, d.event_id, d.rule, d.attempts, d.series_at,"
            " d.fields, e.received_at, e.event_type, e.body"
            " FROM deliveries d JOIN events e ON e.id = d.event_id"
            " WHERE d.state = 'pending' AND d.output = ?1 AND d.next_at <= ?2"
            " AND (?4 IS NULL OR d.id NOT IN"
            "  (SELECT value FROM json_each(?4)))"
            " ORDER BY d.next_at LIMIT ?3",
            -1, SQLITE_PREPARE_PERSISTENT, &db->due, NULL) != SQLITE_OK) {
        free(skipped);
        return sqlite_fail(db, err, "preparing the due query");
    }
    sqlite3_bind_text(db->due, 1, output, -1, SQLITE_STATIC);
    sqlite3_bind_int64(db->due, 2, now_ms);
    sqlite3_bind_int64(db->due, 3, (sqlite3_int64)limit);
    sqlite_bind_opt(db->due, 4, skipped);
    for (;;) {
        struct sb_spool_due due;

        rc = sqlite3_step(db->due);
        if (rc != SQLITE_ROW) {
            break;
        }
        due = sqlite_due_row(db->due);
        fn(arg, &due);
    }
    sqlite3_reset(db->due);
    sqlite3_clear_bindings(db->due);
    free(skipped);
    if (rc != SQLITE_DONE) {
        return sqlite_fail(db, err, "reading due deliveries");
    }
    return SB_OK;
}

static enum sb_status sqlite_replay(void *handle,
                                    const struct sb_spool_filter *f,
                                    int64_t now_ms, size_t *out_count,
                                    struct sb_error *err)
{
    struct sqlite_db *db = handle;
    char since_id[SB_EVENT_ID_LEN + 1];
    char until_id[SB_EVENT_ID_LEN + 1];
    char *ids = sqlite_id_list(f->ids, f->id_count);
    sqlite3_stmt *st = NULL;
    int rc;

    *out_count = 0;
    if (f->id_count > 0 && ids == NULL) {
        return SB_ERR_NOMEM;
    }
    if (sqlite3_prepare_v2(
            db->conn,
            "UPDATE deliveries SET state = 'pending', attempts = 0,"
            " next_at = ?1, series_at = ?1, last_error = NULL"
            " WHERE state = 'dead' AND event_id >= ?2"
            " AND (?3 IS NULL OR event_id < ?3)"
            " AND (?4 IS NULL OR output = ?4)"
            " AND (?5 IS NULL OR id IN (SELECT value FROM json_each(?5)))",
            -1, &st, NULL) != SQLITE_OK) {
        free(ids);
        return sqlite_fail(db, err, "preparing the replay");
    }
    sqlite3_bind_int64(st, 1, now_ms);
    sqlite_bind_range(st, 2, 3, f, since_id, until_id);
    sqlite_bind_opt(st, 4, f->output);
    sqlite_bind_opt(st, 5, ids);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    free(ids);
    if (rc != SQLITE_DONE) {
        return sqlite_fail(db, err, "replaying");
    }
    *out_count = (size_t)sqlite3_changes(db->conn);
    return SB_OK;
}

/* The (state, output, next_at) index covers this: no table rows are read. */
static enum sb_status sqlite_backlog(void *handle, sb_spool_backlog_fn fn,
                                     void *arg, struct sb_error *err)
{
    struct sqlite_db *db = handle;
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(db->conn,
                           "SELECT output, sum(state = 'pending'),"
                           " sum(state = 'dead') FROM deliveries"
                           " WHERE state IN ('pending', 'dead')"
                           " GROUP BY output ORDER BY output",
                           -1, &st, NULL) != SQLITE_OK) {
        return sqlite_fail(db, err, "counting the backlog");
    }
    for (;;) {
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            break;
        }
        fn(arg, (const char *)sqlite3_column_text(st, 0),
           (uint64_t)sqlite3_column_int64(st, 1),
           (uint64_t)sqlite3_column_int64(st, 2));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        return sqlite_fail(db, err, "counting the backlog");
    }
    return SB_OK;
}

const struct sb_spool_backend sb_spool_sqlite_backend = {
    .name = "sqlite",
    .write_batch = sqlite_write_batch,
    .purge = sqlite_purge,
    .probe = sqlite_probe,
    .list = sqlite_list,
    .list_deliveries = sqlite_list_deliveries,
    .due = sqlite_due,
    .replay = sqlite_replay,
    .backlog = sqlite_backlog,
    .close = sqlite_close,
};
