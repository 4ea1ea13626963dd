/* SPDX-License-Identifier: MIT */
/*
 * The HTTP ceiling for the ingest benchmark: a libmicrohttpd server run in
 * the same mode as switchboard's ingress (internal epoll thread pool of two
 * threads) that checks path, method and bearer token, reads and discards
 * the body and answers 200 with a tiny body. It stores nothing, so the gap
 * between its rate and switchboard's is the price of parsing, routing and
 * the durable commit.
 *
 * Usage: BENCH_SECRET=s ceiling PORT [PATH]   (listens on 127.0.0.1 only)
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <microhttpd.h>

/*
 * switchboard's ingress flags, suspend/resume included though the ceiling
 * never suspends, so both daemons run the same event loop. switchboard
 * sizes its pool by the CPU count; the benchmark machine has two.
 */
#define CEILING_FLAGS                                           \
    (MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | \
     MHD_USE_ERROR_LOG)
#define CEILING_THREADS       2
#define CEILING_CONN_LIMIT    1000
#define CEILING_TIMEOUT_S     10
#define CEILING_DEFAULT_PATH  "/yousquared/webhook"
#define CEILING_BEARER_PREFIX "Bearer "

struct ceiling {
    const char *path;
    const char *secret;
    size_t secret_len;
};

static const char ceiling_ok_body[] = "{\"id\":\"0\"}";
static const char ceiling_denied_body[] = "{\"error\":\"unauthorized\"}";

/*
 * Marks a request whose headers were seen and whose token was accepted; the
 * per-request pointer needs no allocation because nothing else is kept.
 */
static int ceiling_accepted;

/*
 * Compares in time that depends only on the lengths, as switchboard does, so
 * the ceiling pays the same cost for the check.
 */
static int ceiling_token_ok(const struct ceiling *c, const char *header)
{
    size_t prefix_len = sizeof(CEILING_BEARER_PREFIX) - 1;
    size_t len;
    unsigned char diff = 0;
    size_t i;

    if (header == NULL) {
        return 0;
    }
    len = strlen(header);
    if (len != prefix_len + c->secret_len) {
        return 0;
    }
    if (strncmp(header, CEILING_BEARER_PREFIX, prefix_len) != 0) {
        return 0;
    }
    for (i = 0; i < c->secret_len; i++) {
        diff |= (unsigned char)(header[prefix_len + i] ^ c->secret[i]);
    }
    return diff == 0;
}

static enum MHD_Result ceiling_reply(struct MHD_Connection *conn,
                                     unsigned int status, const char *body,
                                     size_t len)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(len, (void *)body,
                                           MHD_RESPMEM_PERSISTENT);
    if (resp == NULL) {
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "application/json");
    if (status == MHD_HTTP_UNAUTHORIZED) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer");
    }
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result ceiling_handle(void *cls, struct MHD_Connection *conn,
                                      const char *url, const char *method,
                                      const char *version,
                                      const char *upload_data,
                                      size_t *upload_data_size, void **req_cls)
{
    const struct ceiling *c = cls;
    const char *auth;

    (void)version;
    (void)upload_data;

    if (*req_cls == NULL) {
        /* First call: headers only. Refuse early, as switchboard does. */
        if (strcmp(url, c->path) != 0) {
            return ceiling_reply(conn, MHD_HTTP_NOT_FOUND, "{}", 2);
        }
        if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
            return ceiling_reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "{}", 2);
        }
        auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                           MHD_HTTP_HEADER_AUTHORIZATION);
        if (!ceiling_token_ok(c, auth)) {
            return ceiling_reply(conn, MHD_HTTP_UNAUTHORIZED,
                                 ceiling_denied_body,
                                 sizeof(ceiling_denied_body) - 1);
        }
        *req_cls = &ceiling_accepted;
        return MHD_YES;
    }

    if (*upload_data_size != 0) {
        /* The body is read and dropped: consuming it is the whole job. */
        *upload_data_size = 0;
        return MHD_YES;
    }

    return ceiling_reply(conn, MHD_HTTP_OK, ceiling_ok_body,
                         sizeof(ceiling_ok_body) - 1);
}

static int ceiling_parse_port(const char *text, uint16_t *out_port)
{
    char *end = NULL;
    unsigned long v;

    *out_port = 0;
    errno = 0;
    v = strtoul(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v == 0 || v > 65535) {
        return -1;
    }
    *out_port = (uint16_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    struct ceiling c;
    struct sockaddr_in addr;
    struct MHD_Daemon *d;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_SOCK_ADDR, 0, &addr},
        {MHD_OPTION_THREAD_POOL_SIZE, CEILING_THREADS, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, CEILING_CONN_LIMIT, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, CEILING_TIMEOUT_S, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    sigset_t stop;
    uint16_t port;
    int sig = 0;

    if (argc < 2 || argc > 3 || ceiling_parse_port(argv[1], &port) != 0) {
        fprintf(stderr, "usage: BENCH_SECRET=... ceiling PORT [PATH]\n");
        return 1;
    }
    c.path = argc == 3 ? argv[2] : CEILING_DEFAULT_PATH;
    c.secret = getenv("BENCH_SECRET");
    if (c.secret == NULL || c.secret[0] == '\0') {
        fprintf(stderr, "ceiling: BENCH_SECRET is not set\n");
        return 1;
    }
    c.secret_len = strlen(c.secret);

    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    /* Block the stop signals first: MHD threads inherit the mask. */
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    d = MHD_start_daemon(CEILING_FLAGS, port, NULL, NULL, ceiling_handle, &c,
                         MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "ceiling: cannot listen on 127.0.0.1:%u\n",
                (unsigned int)port);
        return 2;
    }
    fprintf(stderr, "ceiling: listening on 127.0.0.1:%u%s\n",
            (unsigned int)port, c.path);

    sigwait(&stop, &sig);
    MHD_stop_daemon(d);
    return 0;
}
