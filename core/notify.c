/* SPDX-License-Identifier: MIT */
/*
 * The sd_notify(3) protocol, written out: the message is one datagram
 * on an AF_UNIX socket whose address systemd passes in $NOTIFY_SOCKET.
 * The kernel attaches our credentials, so systemd knows the sender is
 * the service's main process (NotifyAccess=main).
 */
#include "build_config.h"

#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define NOTIFY_STATUS_MAX 200 /* bytes of a STATUS= text */

/*
 * Fills `addr` from the socket's name: "/path" or "@abstract" (the '@'
 * stands for the leading NUL byte). Returns the address length, or 0
 * when the name is empty, relative or too long.
 */
static socklen_t notify_address(const char *name, struct sockaddr_un *addr)
{
    size_t len = strlen(name);

    if ((name[0] != '/' && name[0] != '@') || len < 2 ||
        len > sizeof(addr->sun_path)) {
        return 0;
    }
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    memcpy(addr->sun_path, name, len);
    if (name[0] == '@') {
        addr->sun_path[0] = '\0';
    } else if (len == sizeof(addr->sun_path)) {
        return 0; /* a path needs its terminating NUL */
    }
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

void sb_notify(const char *state)
{
    const char *name = getenv("NOTIFY_SOCKET");
    struct sockaddr_un addr;
    socklen_t addr_len;
    ssize_t sent;
    int fd;

    if (name == NULL || state == NULL) {
        return;
    }
    addr_len = notify_address(name, &addr);
    if (addr_len == 0) {
        SB_LOG_DEBUG("notify", "msg=\"NOTIFY_SOCKET is not a usable address\"");
        return;
    }
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        SB_LOG_DEBUG("notify",
                     "msg=\"no socket for the service manager\" errno=%d",
                     errno);
        return;
    }
    sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
                  (const struct sockaddr *)&addr, addr_len);
    if (sent < 0) {
        SB_LOG_DEBUG("notify",
                     "msg=\"cannot notify the service manager\" errno=%d",
                     errno);
    }
    close(fd);
}

void sb_notify_reloading(void)
{
    struct timespec now;
    char state[64];

    if (getenv("NOTIFY_SOCKET") == NULL) {
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &now);
    snprintf(state, sizeof(state), "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)now.tv_sec * 1000000ULL +
                 (unsigned long long)now.tv_nsec / 1000ULL);
    sb_notify(state);
}

void sb_notify_status(const char *fmt, ...)
{
    char state[sizeof("STATUS=") + NOTIFY_STATUS_MAX];
    size_t prefix = sizeof("STATUS=") - 1;
    va_list ap;

    if (getenv("NOTIFY_SOCKET") == NULL) {
        return;
    }
    memcpy(state, "STATUS=", prefix);
    va_start(ap, fmt);
    vsnprintf(state + prefix, sizeof(state) - prefix, fmt, ap);
    va_end(ap);
    /* A newline would start another assignment: the status ends there. */
    state[prefix + strcspn(state + prefix, "\n")] = '\0';
    sb_notify(state);
}
