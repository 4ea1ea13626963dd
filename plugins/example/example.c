/* SPDX-License-Identifier: MIT */
/*
 * The example output: a template to copy when writing a plugin. It appends
 * "<prefix>: <text>" to a file for every delivery, and refuses events of
 * one type on purpose to show the failure path. It owns one open file.
 *
 * Build it out of the tree with only the installed header:
 *     cc -shared -fPIC $(pkg-config --cflags switchboard) example.c \
 *         -o example.so
 * then put example.so in `plugins.dir` and name it in an output:
 *     outputs:
 *       demo: { plugin: example, path: demo.log, prefix: demo }
 *
 * The file name, without ".so", must equal the descriptor's `name`.
 */

/* open(2)'s O_CLOEXEC is POSIX.1-2008; ask for it whatever -std says. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The one switchboard header a plugin includes; it needs no library. */
#include <switchboard/plugin.h>

/*
 * One instance per output that names this plugin. Everything the plugin
 * needs at delivery time lives here: the router keeps no state for it.
 */
struct example {
    const struct sb_plugin_host *host; /* valid until destroy() returns */
    char *prefix;
    char *fail_on_type; /* NULL: fail nothing */
    int fd;
};

/* Copies a borrowed config string (or NULL); -1 only when out of memory. */
static int example_copy(const struct sb_plugin_host *host, const char *from,
                        char **out)
{
    *out = NULL;
    if (from == NULL) {
        return 0;
    }
    *out = strdup(from);
    if (*out == NULL) {
        host->log(host, SB_PLUGIN_LOG_ERROR, "out of memory");
        return -1;
    }
    return 0;
}

/*
 * Reads every key this plugin accepts. Each key MUST be read here, even one
 * a given mode ignores: a key nobody reads is reported as unknown, which
 * is how a typo in the config is caught. Read them all before giving up,
 * so `switchboard check` reports every mistake at once. The accessors
 * record their own errors with the key's file:line:col.
 */
static int example_configure(struct example *ex,
                             const struct sb_plugin_config *cfg,
                             const struct sb_plugin_host *host,
                             const char **out_path)
{
    const char *prefix = NULL;
    const char *fail_on_type = NULL;
    int rc = 0;

    /* config_path: a relative path is taken from the config's folder. */
    if (host->config_path(cfg, "path", 1, NULL, out_path) != 0) {
        rc = -1;
    }
    if (host->config_string(cfg, "prefix", 0, "example", &prefix) != 0 ||
        host->config_string(cfg, "fail_on_type", 0, NULL, &fail_on_type) != 0) {
        return -1;
    }
    /* A value the accessor accepts may still be wrong for us: say where. */
    if (strchr(prefix, '\n') != NULL) {
        return host->config_error(cfg, "prefix", "must be one line");
    }
    /* Values are borrowed until create() returns: copy what we keep. */
    if (example_copy(host, prefix, &ex->prefix) != 0 ||
        example_copy(host, fail_on_type, &ex->fail_on_type) != 0) {
        return -1;
    }
    return rc;
}

/*
 * destroy(): frees the instance. The router calls it exactly once after a
 * successful create() (also after a check_only one), never while deliver()
 * runs. It MUST NOT fail. We also use it to unwind a failed create(),
 * so it accepts a half-built instance.
 */
static void example_destroy(void *instance)
{
    struct example *ex = instance;

    if (ex == NULL) {
        return;
    }
    if (ex->fd >= 0) {
        close(ex->fd);
    }
    free(ex->fail_on_type);
    free(ex->prefix);
    free(ex);
}

/*
 * create(): reads the config and builds an instance. Returns 0 and sets
 * *out_instance, or -1. On failure it MUST leave nothing allocated.
 *
 * With host->check_only set (`switchboard check` and `test`) it MUST only
 * validate: no files opened, no connections, no threads. Otherwise it
 * opens what deliveries need now, so a problem (a folder we may not write
 * to) stops the start with a clear log line instead of failing every
 * delivery later.
 */
static int example_create(const struct sb_plugin_config *cfg,
                          const struct sb_plugin_host *host,
                          void **out_instance)
{
    struct example *ex = calloc(1, sizeof(*ex));
    const char *path = NULL;

    *out_instance = NULL;
    if (ex == NULL) {
        host->log(host, SB_PLUGIN_LOG_ERROR, "out of memory");
        return -1;
    }
    ex->host = host;
    ex->fd = -1;
    if (example_configure(ex, cfg, host, &path) != 0) {
        example_destroy(ex);
        return -1;
    }
    if (!host->check_only) {
        /* 0600: lines can hold patients' details. O_APPEND: whole lines. */
        ex->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (ex->fd < 0) {
            /* errno as a number: strerror() is not thread-safe. */
            host->log(host, SB_PLUGIN_LOG_ERROR, "cannot open %s: errno %d",
                      path, errno);
            example_destroy(ex);
            return -1;
        }
    }
    *out_instance = ex;
    return 0;
}

/* write(2) until every byte is out; a short write is not an error. */
static int example_write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * deliver(): one attempt at one delivery. `msg` is borrowed for the call:
 * MUST NOT be kept. MUST return in bounded time (timeouts on anything that
 * waits). Answer:
 *   SB_PLUGIN_DELIVERED  done; it is never attempted again;
 *   SB_PLUGIN_RETRY      transient (disk full, peer down, 5xx, 429): the
 *                        router tries again with backoff, honouring
 *                        out->retry_after_ms if set;
 *   SB_PLUGIN_FAILED     permanent (the peer refused it for good): the
 *                        delivery is dead at once, kept for `replay`.
 * out->error is stored and shown by `switchboard events`: a short reason,
 * never a payload value, a secret or a response body.
 *
 * msg->fields[i] is descriptor field i, already rendered and escaped.
 */
static enum sb_plugin_status
example_deliver(void *instance, const struct sb_plugin_message *msg,
                struct sb_plugin_result *out)
{
    struct example *ex = instance;
    size_t len = strlen(ex->prefix) + 2 + msg->field_lens[0] + 1;
    char *line;

    if (ex->fail_on_type != NULL &&
        strcmp(msg->event_type, ex->fail_on_type) == 0) {
        snprintf(out->error, sizeof(out->error),
                 "event type refused by fail_on_type");
        return SB_PLUGIN_FAILED;
    }
    line = malloc(len + 1);
    if (line == NULL) {
        snprintf(out->error, sizeof(out->error), "out of memory");
        return SB_PLUGIN_RETRY;
    }
    /* One write per line, so a line is never split by another's. */
    snprintf(line, len + 1, "%s: %s\n", ex->prefix, msg->fields[0]);
    if (example_write_all(ex->fd, line, len) != 0) {
        snprintf(out->error, sizeof(out->error), "write: errno %d", errno);
        free(line);
        return SB_PLUGIN_RETRY;
    }
    free(line);
    /* Safe to log: our ids, the type and the rule. Never payload values. */
    ex->host->log(ex->host, SB_PLUGIN_LOG_DEBUG, "event_id=%s rule=%s wrote",
                  msg->event_id, msg->rule);
    return SB_PLUGIN_DELIVERED;
}

/*
 * Template fields, in the order deliver() receives them. A rule's send
 * entry may override each (`send: [{to: demo, text: "..."}]`); otherwise
 * the default applies. The escape says how values from the event are
 * escaped: NONE here, as the file is plain text. A NULL default would mean
 * the event envelope as one JSON line.
 */
static const struct sb_plugin_field example_fields[] = {
    {"text", "{{event_type}} event {{event_id}}", SB_PLUGIN_ESCAPE_NONE},
};

/*
 * The one exported symbol. abi_version and size come first so the router
 * can refuse a plugin built for another version before reading further.
 *
 * flags: 0 means the router never runs two deliver() calls of an instance
 * at once, so `fd` needs no lock. Set SB_PLUGIN_THREAD_SAFE only when
 * deliver() is safe on several threads at once (see the file plugin).
 *
 * reopen is optional (NULL): the file plugin shows how to reopen files on
 * SIGHUP for logrotate.
 */
SB_PLUGIN_DECLARE = {
    .abi_version = SB_PLUGIN_ABI_VERSION,
    .size = sizeof(struct sb_plugin_descriptor),
    .name = "example",
    .description = "appends a line per delivery to a file; copy me",
    .flags = 0,
    .fields = example_fields,
    .field_count = sizeof(example_fields) / sizeof(example_fields[0]),
    .create = example_create,
    .deliver = example_deliver,
    .destroy = example_destroy,
    .reopen = NULL,
};
