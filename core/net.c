/* SPDX-License-Identifier: MIT */
/*
 * Address resolution and listening sockets.
 */
#include "build_config.h"

#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SB_NET_BACKLOG 1024

static int net_bind_one(const struct addrinfo *ai, int *out_errno)
{
    int one = 1;
    int fd =
        socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
               ai->ai_protocol);

    if (fd < 0) {
        *out_errno = errno;
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(fd, SB_NET_BACKLOG) != 0) {
        *out_errno = errno;
        close(fd);
        return -1;
    }
    return fd;
}

enum sb_status sb_net_listen(const struct sb_listen *addr, int *out_fd,
                             int *out_ipv6, struct sb_error *err)
{
    struct addrinfo hints = {0};
    struct addrinfo *res = NULL;
    struct addrinfo *ai;
    char port[8];
    int saved_errno = 0;
    int fd = -1;
    int gai;

    *out_fd = -1;
    *out_ipv6 = 0;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    snprintf(port, sizeof(port), "%u", addr->port);
    gai = getaddrinfo(addr->host, port, &hints, &res);
    if (gai != 0) {
        sb_error_set(err, "cannot resolve listen address %s:%u: %s", addr->host,
                     addr->port, gai_strerror(gai));
        return SB_ERR_IO;
    }
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = net_bind_one(ai, &saved_errno);
        if (fd >= 0) {
            *out_ipv6 = ai->ai_family == AF_INET6;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        sb_error_set(err, "cannot listen on %s:%u: %s", addr->host, addr->port,
                     strerror(saved_errno));
        return SB_ERR_IO;
    }
    *out_fd = fd;
    return SB_OK;
}
