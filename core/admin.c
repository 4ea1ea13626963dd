/* SPDX-License-Identifier: MIT */
/*
 * Health endpoints on one libmicrohttpd thread: they are polled, not
 * loaded, and must answer even while the webhook listener is saturated.
 */
#include "build_config.h"

#include "admin.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#include "log.h"
#include "net.h"

#define SB_ADMIN_CONN_LIMIT     64
#define SB_ADMIN_IDLE_TIMEOUT_S 10

struct sb_admin {
    struct MHD_Daemon *daemon;
    struct sb_spool *spool;
};

static enum MHD_Result admin_answer(struct MHD_Connection *conn,
                                    unsigned status, const char *text)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(strlen(text), (void *)text,
                                           MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; charset=utf-8");
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
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
    rc = sb_net_listen(&cfg->admin_listen, &fd, &ipv6, err);
    if (rc != SB_OK) {
        free(admin);
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
        free(admin);
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
    MHD_stop_daemon(admin->daemon);
    free(admin);
}
