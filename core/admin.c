/* SPDX-License-Identifier: MIT */
/*
 * Health endpoints and /metrics on one libmicrohttpd thread: they are
 * polled, not loaded, and must answer even while the webhook listener is
 * saturated. A scrape reads the counters without a lock and the backlog
 * from the spool on a reader connection of the admin's own.
 */
#include "build_config.h"

#include "admin.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "net.h"

#define SB_ADMIN_CONN_LIMIT     64
#define SB_ADMIN_IDLE_TIMEOUT_S 10
#define SB_ADMIN_METRICS_MAX    ((size_t)16 << 20) /* one scrape's text */
/* Outputs with a backlog a scrape lists: names ever configured, no more. */
#define SB_ADMIN_BACKLOG_MAX (2 * SB_METRICS_MAX_OUTPUTS)

/* Version 0.0.4 of the text format, as Prometheus asks for it. */
#define SB_ADMIN_METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct sb_admin {
    struct MHD_Daemon *daemon;
    struct sb_spool *spool;
    pthread_mutex_t lock; /* one scrape at a time on the reader */
    struct sb_spool_reader *reader;
};

/* The backlog rows of one scrape; names are copies. */
struct admin_backlog {
    struct sb_metrics_backlog rows[SB_ADMIN_BACKLOG_MAX];
    size_t count;
    int short_of_memory;
};

static enum MHD_Result admin_respond(struct MHD_Connection *conn,
                                     unsigned status, const char *type,
                                     const char *text, size_t len,
                                     enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(len, (void *)text, mode);
    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result admin_answer(struct MHD_Connection *conn,
                                    unsigned status, const char *text)
{
    return admin_respond(conn, status, "text/plain; charset=utf-8", text,
                         strlen(text), MHD_RESPMEM_PERSISTENT);
}

/* sb_spool_backlog callback: keep a copy of the row. */
static void admin_backlog_row(void *arg, const char *output, uint64_t pending,
                              uint64_t dead)
{
    struct admin_backlog *b = arg;
    char *name;

    if (b->count == SB_ADMIN_BACKLOG_MAX || output == NULL) {
        return;
    }
    name = strdup(output);
    if (name == NULL) {
        b->short_of_memory = 1;
        return;
    }
    b->rows[b->count++] = (struct sb_metrics_backlog){name, pending, dead};
}

static void admin_backlog_cleanup(struct admin_backlog *b)
{
    size_t i;

    for (i = 0; i < b->count; i++) {
        free((char *)b->rows[i].output);
    }
    b->count = 0;
}

/*
 * Reads the backlog into `b`; 0 when it could not be read (logged), and
 * the gauges are then left without samples rather than shown as 0.
 */
static int admin_read_backlog(struct sb_admin *admin, struct admin_backlog *b)
{
    struct sb_error err;
    enum sb_status rc;

    sb_error_clear(&err);
    rc = sb_spool_backlog(admin->reader, admin_backlog_row, b, &err);
    if (rc == SB_OK && b->short_of_memory) {
        sb_error_set(&err, "out of memory");
        rc = SB_ERR_NOMEM;
    }
    if (rc != SB_OK) {
        SB_LOG_WARN("admin",
                    "msg=\"cannot count pending and dead deliveries\" "
                    "err=\"%s\"",
                    err.msg);
        admin_backlog_cleanup(b);
        return 0;
    }
    return 1;
}

static enum MHD_Result admin_metrics(struct sb_admin *admin,
                                     struct MHD_Connection *conn)
{
    struct admin_backlog *b = calloc(1, sizeof(*b));
    struct sb_buf text;
    enum sb_status rc = SB_ERR_NOMEM;
    enum MHD_Result ret;
    int known;

    sb_buf_init(&text, SB_ADMIN_METRICS_MAX);
    if (b != NULL) {
        pthread_mutex_lock(&admin->lock);
        known = admin_read_backlog(admin, b);
        pthread_mutex_unlock(&admin->lock);
        rc = sb_metrics_render(known ? b->rows : NULL, b->count, &text);
        admin_backlog_cleanup(b);
        free(b);
    }
    if (rc != SB_OK) {
        SB_LOG_WARN("admin", "msg=\"cannot render /metrics\" err=%s",
                    sb_status_name(rc));
        sb_buf_cleanup(&text);
        return admin_answer(conn, MHD_HTTP_INTERNAL_SERVER_ERROR,
                            "cannot render the metrics\n");
    }
    ret = admin_respond(conn, MHD_HTTP_OK, SB_ADMIN_METRICS_TYPE,
                        sb_buf_str(&text), text.len, MHD_RESPMEM_MUST_COPY);
    sb_buf_cleanup(&text);
    return ret;
}

static enum MHD_Result admin_handle(void *cls, struct MHD_Connection *conn,
                                    const char *url, const char *method,
                                    const char *version,
                                    const char *upload_data,
                                    size_t *upload_data_size, void **con_cls)
{
    struct sb_admin *admin = cls;

    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
        return admin_answer(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                            "method not allowed\n");
    }
    if (strcmp(url, "/healthz") == 0) {
        return admin_answer(conn, MHD_HTTP_OK, "ok\n");
    }
    if (strcmp(url, "/readyz") == 0) {
        if (!sb_spool_ready(admin->spool)) {
            return admin_answer(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                                "not ready: the spool is not writable\n");
        }
        return admin_answer(conn, MHD_HTTP_OK, "ready\n");
    }
    if (strcmp(url, "/metrics") == 0) {
        return admin_metrics(admin, conn);
    }
    return admin_answer(conn, MHD_HTTP_NOT_FOUND, "not found\n");
}

enum sb_status sb_admin_start(const struct sb_config *cfg,
                              struct sb_spool *spool,
                              struct sb_admin **out_admin, struct sb_error *err)
{
    struct sb_admin *admin = calloc(1, sizeof(*admin));
    enum sb_status rc;
    int fd = -1;
    int ipv6 = 0;

    *out_admin = NULL;
    if (admin == NULL) {
        return SB_ERR_NOMEM;
    }
    admin->spool = spool;
    pthread_mutex_init(&admin->lock, NULL);
    rc = sb_spool_reader_open(spool, &admin->reader, err);
    if (rc == SB_OK) {
        rc = sb_net_listen(&cfg->admin_listen, &fd, &ipv6, err);
    }
    if (rc != SB_OK) {
        sb_admin_free(admin);
        return rc;
    }
    admin->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
            (ipv6 ? MHD_USE_IPv6 : 0),
        0, NULL, NULL, admin_handle, admin, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)SB_ADMIN_CONN_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SB_ADMIN_IDLE_TIMEOUT_S,
        MHD_OPTION_END);
    if (admin->daemon == NULL) {
        close(fd);
        sb_admin_free(admin);
        sb_error_set(err, "cannot start the admin listener on %s:%u",
                     cfg->admin_listen.host, cfg->admin_listen.port);
        return SB_ERR_IO;
    }
    *out_admin = admin;
    return SB_OK;
}

void sb_admin_free(struct sb_admin *admin)
{
    if (admin == NULL) {
        return;
    }
    if (admin->daemon != NULL) {
        MHD_stop_daemon(admin->daemon);
    }
    sb_spool_reader_free(admin->reader);
    pthread_mutex_destroy(&admin->lock);
    free(admin);
}
