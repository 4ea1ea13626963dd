/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/notify: what a service manager listening on
 * $NOTIFY_SOCKET receives (a path socket and an abstract one), and that
 * a missing, malformed or dead socket changes nothing for the caller.
 */
#include "build_config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "notify.h"

#define NOTIFY_WAIT_MS 2000

/* A datagram socket standing in for systemd, in a folder of its own. */
struct manager {
    char dir[64];
    char path[96]; /* fits in sun_path */
    int fd;
};

static int manager_bind(struct manager *m, const struct sockaddr_un *addr,
                        socklen_t len)
{
    m->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (m->fd < 0) {
        return -1;
    }
    return bind(m->fd, (const struct sockaddr *)addr, len);
}

static void manager_start_path(struct manager *m)
{
    struct sockaddr_un addr;

    snprintf(m->dir, sizeof(m->dir), "/tmp/sb-notify-XXXXXX");
    assert_non_null(mkdtemp(m->dir));
    snprintf(m->path, sizeof(m->path), "%s/notify", m->dir);
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", m->path);
    if (manager_bind(m, &addr, sizeof(addr)) != 0) {
        fail_msg("cannot bind %s", m->path);
    }
    assert_int_equal(setenv("NOTIFY_SOCKET", m->path, 1), 0);
}

/* An abstract socket: NOTIFY_SOCKET says "@name". */
static void manager_start_abstract(struct manager *m)
{
    struct sockaddr_un addr;
    size_t len;

    m->dir[0] = '\0';
    snprintf(m->path, sizeof(m->path), "@sb-notify-test-%ld-%ld",
             (long)getpid(), (long)time(NULL));
    len = strlen(m->path);
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path + 1, m->path + 1, len - 1);
    if (manager_bind(
            m, &addr,
            (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) != 0) {
        fail_msg("cannot bind the abstract socket %s", m->path);
    }
    assert_int_equal(setenv("NOTIFY_SOCKET", m->path, 1), 0);
}

/* The next datagram, or "" when none came within NOTIFY_WAIT_MS. */
static void manager_receive(struct manager *m, char *buf, size_t cap,
                            int wait_ms)
{
    struct pollfd p = {.fd = m->fd, .events = POLLIN};
    ssize_t n;

    buf[0] = '\0';
    if (poll(&p, 1, wait_ms) != 1) {
        return;
    }
    n = recv(m->fd, buf, cap - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
}

static void manager_stop(struct manager *m)
{
    unsetenv("NOTIFY_SOCKET");
    close(m->fd);
    if (m->dir[0] != '\0') {
        unlink(m->path);
        rmdir(m->dir);
    }
}

static void test_notify_sends_state_to_a_path_socket(void **state)
{
    struct manager m;
    char got[256];

    (void)state;
    manager_start_path(&m);
    sb_notify("READY=1");
    manager_receive(&m, got, sizeof(got), NOTIFY_WAIT_MS);
    if (strcmp(got, "READY=1") != 0) {
        fail_msg("expected \"READY=1\" on %s, got \"%s\"", m.path, got);
    }
    sb_notify("STOPPING=1");
    manager_receive(&m, got, sizeof(got), NOTIFY_WAIT_MS);
    if (strcmp(got, "STOPPING=1") != 0) {
        fail_msg("expected \"STOPPING=1\", got \"%s\"", got);
    }
    manager_stop(&m);
}

static void test_notify_sends_to_an_abstract_socket(void **state)
{
    struct manager m;
    char got[256];

    (void)state;
    manager_start_abstract(&m);
    sb_notify("READY=1\nSTATUS=up");
    manager_receive(&m, got, sizeof(got), NOTIFY_WAIT_MS);
    if (strcmp(got, "READY=1\nSTATUS=up") != 0) {
        fail_msg("expected READY and STATUS on %s, got \"%s\"", m.path, got);
    }
    manager_stop(&m);
}

static unsigned long long notify_now_usec(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (unsigned long long)now.tv_sec * 1000000ULL +
           (unsigned long long)now.tv_nsec / 1000ULL;
}

static void test_notify_reloading_carries_the_monotonic_time(void **state)
{
    struct manager m;
    char got[256];
    unsigned long long before;
    unsigned long long after;
    unsigned long long usec = 0;
    int end = 0;

    (void)state;
    manager_start_path(&m);
    before = notify_now_usec();
    sb_notify_reloading();
    after = notify_now_usec();
    manager_receive(&m, got, sizeof(got), NOTIFY_WAIT_MS);
    if (sscanf(got, "RELOADING=1\nMONOTONIC_USEC=%llu%n", &usec, &end) != 1 ||
        got[end] != '\0') {
        fail_msg("expected RELOADING=1 and MONOTONIC_USEC=N, got \"%s\"", got);
    }
    if (usec < before || usec > after) {
        fail_msg("MONOTONIC_USEC=%llu is not between %llu and %llu", usec,
                 before, after);
    }
    manager_stop(&m);
}

static void test_notify_status_is_one_bounded_line(void **state)
{
    struct manager m;
    char got[512];
    char long_text[400];

    (void)state;
    manager_start_path(&m);
    sb_notify_status("listening on %s:%d", "127.0.0.1", 8080);
    manager_receive(&m, got, sizeof(got), NOTIFY_WAIT_MS);
    if (strcmp(got, "STATUS=listening on 127.0.0.1:8080") != 0) {
        fail_msg("expected the formatted status, got \"%s\"", got);
    }
    sb_notify_status("first line\nREADY=1");
    manager_receive(&m, got, sizeof(got), NOTIFY_WAIT_MS);
    if (strcmp(got, "STATUS=first line") != 0) {
        fail_msg("a newline must end the status, got \"%s\"", got);
    }
    memset(long_text, 'x', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    sb_notify_status("%s", long_text);
    manager_receive(&m, got, sizeof(got), NOTIFY_WAIT_MS);
    assert_int_equal(strncmp(got, "STATUS=xxx", 10), 0);
    if (strlen(got) != strlen("STATUS=") + 200) {
        fail_msg("a long status must be cut at 200 bytes, got %zu bytes",
                 strlen(got));
    }
    manager_stop(&m);
}

static void test_notify_without_a_manager_does_nothing(void **state)
{
    static const char *const bad[] = {
        "",
        "@",
        "relative/notify",
        "/nonexistent-sb-folder/notify",
    };
    struct manager m;
    char got[256];
    size_t i;

    (void)state;
    unsetenv("NOTIFY_SOCKET");
    sb_notify("READY=1");
    sb_notify_reloading();
    sb_notify_status("nobody listens");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(setenv("NOTIFY_SOCKET", bad[i], 1), 0);
        sb_notify("READY=1");
        sb_notify_reloading();
    }
    /* A working manager after all that still hears the next message. */
    manager_start_path(&m);
    sb_notify("READY=1");
    manager_receive(&m, got, sizeof(got), NOTIFY_WAIT_MS);
    if (strcmp(got, "READY=1") != 0) {
        fail_msg("expected \"READY=1\" after the bad addresses, got \"%s\"",
                 got);
    }
    manager_receive(&m, got, sizeof(got), 50);
    if (got[0] != '\0') {
        fail_msg("a bad address reached the manager: \"%s\"", got);
    }
    manager_stop(&m);
}

static void test_notify_path_too_long_is_ignored(void **state)
{
    char name[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];

    (void)state;
    memset(name, 'a', sizeof(name) - 1);
    name[0] = '/';
    name[sizeof(name) - 1] = '\0';
    assert_int_equal(setenv("NOTIFY_SOCKET", name, 1), 0);
    sb_notify("READY=1");
    name[sizeof(((struct sockaddr_un *)0)->sun_path)] = '\0';
    assert_int_equal(setenv("NOTIFY_SOCKET", name, 1), 0);
    sb_notify("READY=1");
    unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_notify_sends_state_to_a_path_socket),
        cmocka_unit_test(test_notify_sends_to_an_abstract_socket),
        cmocka_unit_test(test_notify_reloading_carries_the_monotonic_time),
        cmocka_unit_test(test_notify_status_is_one_bounded_line),
        cmocka_unit_test(test_notify_without_a_manager_does_nothing),
        cmocka_unit_test(test_notify_path_too_long_is_ignored),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
