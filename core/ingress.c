/* SPDX-License-Identifier: MIT */
/*
 * One request's life: headers (path, method, bearer, declared length,
 * each refused as early as possible), body (bounded by max_body), then
 * validation, a suspended wait for the spool's commit, and the answer.
 * Nothing here knows SQL: the spool calls back with a status.
 */
#include "build_config.h"

#include "ingress.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "auth.h"
#include "event.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "rules.h"

enum ingress_stage {
    INGRESS_READING,    /* collecting the body */
    INGRESS_COMMITTING, /* suspended until the spool calls back */
    INGRESS_COMMITTED,  /* resumed; commit_rc holds the outcome */
};

/*
 * What one config says about requests: path, secrets, body limit, rules.
 * A request holds the view it began with until it completes, so a reload
 * never changes the rules under an event being routed.
 */
struct ingress_view {
    struct sb_config *cfg; /* a reference */
    struct sb_auth auth;
    atomic_uint refs;
};

struct sb_ingress {
    struct MHD_Daemon *daemon;
    struct sb_spool *spool;
    _Atomic(struct ingress_view *) view; /* the current one */
    atomic_uint acquiring; /* requests between loading view and its ref */
    atomic_uint in_flight; /* requests begun and not yet completed */
};

struct ingress_request {
    struct sb_ingress *ingress;
    struct ingress_view *view; /* a reference, until completed */
    struct MHD_Connection *conn;
    enum ingress_stage stage;
    char *body;
    size_t len;
    size_t cap;
    struct sb_event *event;
    struct sb_route *route; /* what routing decided; stored with the event */
    enum sb_status commit_rc;
};

/* ---- the view of the config ------------------------------------------- */

static struct ingress_view *ingress_view_new(struct sb_config *cfg)
{
    struct ingress_view *view = calloc(1, sizeof(*view));

    if (view == NULL) {
        return NULL;
    }
    if (sb_auth_init(&view->auth, cfg->bearer, cfg->bearer_count) != SB_OK) {
        free(view);
        return NULL;
    }
    view->cfg = sb_config_ref(cfg);
    atomic_init(&view->refs, 1);
    return view;
}

static void ingress_view_release(struct ingress_view *view)
{
    if (view != NULL && atomic_fetch_sub(&view->refs, 1) == 1) {
        sb_auth_cleanup(&view->auth);
        sb_config_unref(view->cfg);
        free(view);
    }
}

/*
 * The current view with a reference taken, without a lock: `acquiring`
 * tells a swap that some request may hold the old pointer without its
 * reference yet, and the swap waits for that window to close.
 */
static struct ingress_view *ingress_view_acquire(struct sb_ingress *ing)
{
    struct ingress_view *view;

    atomic_fetch_add(&ing->acquiring, 1);
    view = atomic_load(&ing->view);
    atomic_fetch_add(&view->refs, 1);
    atomic_fetch_sub(&ing->acquiring, 1);
    return view;
}

/* ---- answers ----------------------------------------------------------- */

static enum MHD_Result ingress_answer(struct MHD_Connection *conn,
                                      unsigned status, const char *json)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(strlen(json), (void *)json,
                                           MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/json");
    if (status == MHD_HTTP_UNAUTHORIZED) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer");
    } else if (status == MHD_HTTP_METHOD_NOT_ALLOWED) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "POST");
    }
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result ingress_error(struct MHD_Connection *conn,
                                     unsigned status, const char *message)
{
    char json[sizeof(((struct sb_error *)0)->msg) + 16];

    /* Every refusal answers here, so each is counted exactly once. */
    sb_metrics_request_rejected(sb_metrics_reject_for_status(status));
    snprintf(json, sizeof(json), "{\"error\":\"%s\"}", message);
    return ingress_answer(conn, status, json);
}

/* ---- the request before its body ------------------------------------ */

/* The declared Content-Length, or -1 when absent or unparsable. */
static long long ingress_content_length(struct MHD_Connection *conn)
{
    const char *text = MHD_lookup_connection_value(
        conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    char *end = NULL;
    unsigned long long n;

    if (text == NULL) {
        return -1;
    }
    errno = 0;
    n = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || n > LLONG_MAX) {
        return -1;
    }
    return (long long)n;
}

static void ingress_log_rejection(struct MHD_Connection *conn, unsigned status,
                                  const char *why)
{
    (void)conn;
    SB_LOG_WARN("ingress", "status=%u msg=\"request rejected\" reason=\"%s\"",
                status, why);
}

/*
 * Checks everything knowable from the headers. Answers and returns 1 when
 * the request is refused; returns 0 when its body should be read.
 */
static int ingress_refuse_early(const struct ingress_view *view,
                                struct MHD_Connection *conn, const char *url,
                                const char *method, enum MHD_Result *out_ret)
{
    const char *authz;
    long long declared;

    if (strcmp(url, view->cfg->path) != 0) {
        *out_ret = ingress_error(conn, MHD_HTTP_NOT_FOUND, "not found");
        return 1;
    }
    if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
        *out_ret = ingress_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                                 "method not allowed; use POST");
        return 1;
    }
    authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                        MHD_HTTP_HEADER_AUTHORIZATION);
    if (!sb_auth_check(&view->auth, authz)) {
        ingress_log_rejection(conn, 401, "missing or wrong bearer token");
        *out_ret = ingress_error(conn, MHD_HTTP_UNAUTHORIZED,
                                 "missing or wrong bearer token");
        return 1;
    }
    declared = ingress_content_length(conn);
    if (declared > (long long)view->cfg->max_body) {
        ingress_log_rejection(conn, 413, "body larger than max_body");
        *out_ret = ingress_error(conn, MHD_HTTP_CONTENT_TOO_LARGE,
                                 "body larger than max_body");
        return 1;
    }
    return 0;
}

static enum MHD_Result ingress_begin(struct sb_ingress *ing,
                                     struct MHD_Connection *conn,
                                     const char *url, const char *method,
                                     void **con_cls)
{
    struct ingress_view *view = ingress_view_acquire(ing);
    struct ingress_request *req;
    long long declared;
    enum MHD_Result ret;

    if (ingress_refuse_early(view, conn, url, method, &ret)) {
        ingress_view_release(view);
        return ret;
    }
    req = calloc(1, sizeof(*req));
    if (req == NULL) {
        ingress_view_release(view);
        return ingress_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                             "out of memory");
    }
    declared = ingress_content_length(conn);
    req->ingress = ing;
    req->view = view;
    req->conn = conn;
    req->stage = INGRESS_READING;
    req->cap = declared >= 0 ? (size_t)declared : 4096;
    req->body = malloc(req->cap + 1);
    if (req->body == NULL) {
        free(req);
        ingress_view_release(view);
        return ingress_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                             "out of memory");
    }
    atomic_fetch_add(&ing->in_flight, 1);
    *con_cls = req;
    return MHD_YES;
}

/* ---- the body ------------------------------------------------------------ */

/*
 * Appends a piece of body. A chunked body that grows past max_body cannot
 * be answered mid-upload, so the connection is closed (MHD_NO).
 */
static enum MHD_Result ingress_read(struct ingress_request *req,
                                    const char *data, size_t *size)
{
    size_t need = req->len + *size;

    if (need > req->view->cfg->max_body) {
        ingress_log_rejection(req->conn, 413,
                              "chunked body larger than max_body");
        sb_metrics_request_rejected(SB_METRICS_REJECT_TOO_LARGE);
        return MHD_NO;
    }
    if (need > req->cap) {
        size_t cap = req->cap * 2 > need ? req->cap * 2 : need;
        char *body;

        if (cap > req->view->cfg->max_body) {
            cap = req->view->cfg->max_body;
        }
        body = realloc(req->body, cap + 1);
        if (body == NULL) {
            return MHD_NO;
        }
        req->body = body;
        req->cap = cap;
    }
    memcpy(req->body + req->len, data, *size);
    req->len = need;
    *size = 0;
    return MHD_YES;
}

/* Runs on the spool's writer thread; must not block. */
static void ingress_committed(void *arg, enum sb_status rc)
{
    struct ingress_request *req = arg;

    req->commit_rc = rc;
    req->stage = INGRESS_COMMITTED;
    if (rc != SB_OK) {
        /* Not stored: the next matching event must not be throttled. */
        sb_rules_release(req->view->cfg->rules, req->route);
    }
    MHD_resume_connection(req->conn);
}

/* debug: where the event goes, by rule and output names only. */
static void ingress_log_route(const struct sb_event *event,
                              const struct sb_route *route)
{
    size_t i;

    if (!sb_log_enabled(SB_LOG_DEBUG)) {
        return;
    }
    for (i = 0; i < route->count; i++) {
        SB_LOG_DEBUG(
            "ingress", "event_id=%s rule=%s output=%s msg=\"delivery planned\"",
            event->id, route->deliveries[i].rule, route->deliveries[i].output);
    }
    if (route->count == 0) {
        SB_LOG_DEBUG("ingress", "event_id=%s msg=\"no rule sends it anywhere\"",
                     event->id);
    }
}

/* Decides the event's deliveries, on this thread, before the commit. */
static enum sb_status ingress_route(struct ingress_request *req)
{
    enum sb_status rc;

    req->route = malloc(sizeof(*req->route));
    if (req->route == NULL) {
        return SB_ERR_NOMEM;
    }
    rc = sb_rules_route(req->view->cfg->rules, req->event, 0, req->route, NULL);
    if (rc != SB_OK) {
        free(req->route);
        req->route = NULL;
        return rc;
    }
    req->event->plans = req->route->deliveries;
    req->event->plan_count = req->route->count;
    ingress_log_route(req->event, req->route);
    return SB_OK;
}

/* The whole body is here: validate, stamp, and wait for the commit. */
static enum MHD_Result ingress_submit(struct ingress_request *req)
{
    struct sb_error err;
    enum sb_status rc;

    req->body[req->len] = '\0';
    sb_error_clear(&err);
    rc = sb_event_parse(req->body, req->len, &req->event, &err);
    if (rc == SB_ERR_INVALID) {
        ingress_log_rejection(req->conn, 400, err.msg);
        return ingress_error(req->conn, MHD_HTTP_BAD_REQUEST, err.msg);
    }
    if (rc != SB_OK) {
        return ingress_error(req->conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                             "out of memory");
    }
    req->body = NULL; /* the event owns it now */
    sb_event_stamp(req->event);
    rc = ingress_route(req);
    if (rc != SB_OK) {
        SB_LOG_ERROR("ingress", "event_id=%s msg=\"routing failed\" err=%s",
                     req->event->id, sb_status_name(rc));
        return ingress_error(req->conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                             "event not stored; routing failed");
    }

    /* Suspend before submitting: the callback may resume at once. */
    req->stage = INGRESS_COMMITTING;
    MHD_suspend_connection(req->conn);
    rc = sb_spool_submit(req->ingress->spool, req->event, ingress_committed,
                         req);
    if (rc != SB_OK) {
        /* Refused without a commit (queue full): answer as a failed one. */
        ingress_committed(req, rc);
    }
    return MHD_YES;
}

static enum MHD_Result ingress_reply_committed(struct ingress_request *req)
{
    char json[64];
    char type[128];

    if (req->commit_rc != SB_OK) {
        return ingress_error(req->conn, MHD_HTTP_SERVICE_UNAVAILABLE,
                             "event not stored; the spool is unavailable");
    }
    SB_LOG_INFO("ingress",
                "event_id=%s type=%s bytes=%zu deliveries=%zu throttled=%zu "
                "msg=\"event stored\"",
                req->event->id,
                sb_log_quote(type, sizeof(type), req->event->event_type),
                req->event->body_len, req->route->count, req->route->throttled);
    sb_metrics_event_received(req->event->event_type);
    snprintf(json, sizeof(json), "{\"id\":\"%s\"}", req->event->id);
    return ingress_answer(req->conn, MHD_HTTP_OK, json);
}

static enum MHD_Result ingress_handle(void *cls, struct MHD_Connection *conn,
                                      const char *url, const char *method,
                                      const char *version,
                                      const char *upload_data,
                                      size_t *upload_data_size, void **con_cls)
{
    struct ingress_request *req = *con_cls;

    (void)version;
    if (req == NULL) {
        return ingress_begin(cls, conn, url, method, con_cls);
    }
    switch (req->stage) {
    case INGRESS_READING:
        if (*upload_data_size > 0) {
            return ingress_read(req, upload_data, upload_data_size);
        }
        return ingress_submit(req);
    case INGRESS_COMMITTING:
        /* Woken without a commit: keep waiting. */
        return MHD_YES;
    case INGRESS_COMMITTED:
        return ingress_reply_committed(req);
    }
    return MHD_NO;
}

static void ingress_completed(void *cls, struct MHD_Connection *conn,
                              void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    struct sb_ingress *ing = cls;
    struct ingress_request *req = *con_cls;

    (void)conn;
    (void)toe;
    if (req == NULL) {
        return;
    }
    if (req->route != NULL) {
        sb_route_cleanup(req->route);
        free(req->route);
    }
    sb_event_free(req->event);
    free(req->body);
    ingress_view_release(req->view);
    free(req);
    *con_cls = NULL;
    atomic_fetch_sub(&ing->in_flight, 1);
}

/* libmicrohttpd's own messages (TLS handshakes, resets): debug only. */
static void ingress_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];

    (void)cls;
    if (!sb_log_enabled(SB_LOG_DEBUG)) {
        return;
    }
    vsnprintf(line, sizeof(line), fmt, ap);
    SB_LOG_DEBUG("mhd", "msg=\"%s\"", line);
}

/* ---- lifecycle ----------------------------------------------------------- */

static unsigned ingress_thread_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 1) {
        return 1;
    }
    return n > 8 ? 8 : (unsigned)n;
}

static struct MHD_Daemon *ingress_start_daemon(struct sb_ingress *ing,
                                               const struct sb_config *cfg,
                                               int fd, int ipv6)
{
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    struct MHD_OptionItem tls[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, cfg->tls_cert_pem},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, cfg->tls_key_pem},
        {MHD_OPTION_END, 0, NULL},
    };

    if (ipv6) {
        flags |= MHD_USE_IPv6;
    }
    if (cfg->tls_cert_pem == NULL) {
        tls[0].option = MHD_OPTION_END;
    } else {
        flags |= MHD_USE_TLS;
    }
    return MHD_start_daemon(
        flags, 0, NULL, NULL, ingress_handle, ing, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_THREAD_POOL_SIZE, ingress_thread_count(),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)SB_INGRESS_CONN_LIMIT,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SB_INGRESS_IDLE_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)SB_INGRESS_CONN_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, ingress_completed, ing,
        MHD_OPTION_EXTERNAL_LOGGER, ingress_mhd_log, NULL, MHD_OPTION_ARRAY,
        tls, MHD_OPTION_END);
}

enum sb_status sb_ingress_start(struct sb_config *cfg, struct sb_spool *spool,
                                struct sb_ingress **out_ingress,
                                struct sb_error *err)
{
    struct sb_ingress *ing = calloc(1, sizeof(*ing));
    enum sb_status rc;
    int fd = -1;
    int ipv6 = 0;

    *out_ingress = NULL;
    if (ing == NULL) {
        return SB_ERR_NOMEM;
    }
    ing->spool = spool;
    atomic_init(&ing->in_flight, 0);
    atomic_init(&ing->acquiring, 0);
    atomic_init(&ing->view, ingress_view_new(cfg));
    rc = atomic_load(&ing->view) != NULL ? SB_OK : SB_ERR_NOMEM;
    if (rc == SB_OK) {
        rc = sb_net_listen(&cfg->listen, &fd, &ipv6, err);
    }
    if (rc == SB_OK) {
        ing->daemon = ingress_start_daemon(ing, cfg, fd, ipv6);
        if (ing->daemon == NULL) {
            close(fd);
            sb_error_set(err, "cannot start the HTTP%s listener on %s:%u",
                         cfg->tls_cert_pem ? "S" : "", cfg->listen.host,
                         cfg->listen.port);
            rc = SB_ERR_IO;
        }
    }
    if (rc != SB_OK) {
        sb_ingress_free(ing);
        return rc;
    }
    *out_ingress = ing;
    return SB_OK;
}

unsigned sb_ingress_drain(struct sb_ingress *ing, unsigned timeout_ms)
{
    struct timespec tick = {0, 10 * 1000 * 1000};
    unsigned waited = 0;
    int fd = MHD_quiesce_daemon(ing->daemon);

    if (fd >= 0) {
        close(fd);
    }
    while (atomic_load(&ing->in_flight) > 0 && waited < timeout_ms) {
        nanosleep(&tick, NULL);
        waited += 10;
    }
    return atomic_load(&ing->in_flight);
}

void sb_ingress_free(struct sb_ingress *ing)
{
    if (ing == NULL) {
        return;
    }
    if (ing->daemon != NULL) {
        MHD_stop_daemon(ing->daemon);
    }
    ingress_view_release(atomic_load(&ing->view));
    free(ing);
}

enum sb_status sb_ingress_swap(struct sb_ingress *ing, struct sb_config *cfg)
{
    struct ingress_view *view = ingress_view_new(cfg);
    struct ingress_view *old;

    if (view == NULL) {
        return SB_ERR_NOMEM;
    }
    old = atomic_exchange(&ing->view, view);
    /* A request that read the old pointer takes its reference first. */
    while (atomic_load(&ing->acquiring) > 0) {
        sched_yield();
    }
    ingress_view_release(old);
    return SB_OK;
}
