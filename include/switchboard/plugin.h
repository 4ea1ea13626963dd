/* SPDX-License-Identifier: MIT */
/*
 * The switchboard output plugin ABI: the only header a plugin includes.
 *
 * A plugin is a shared object that exports one symbol,
 * `switchboard_plugin`, a const struct sb_plugin_descriptor. The router
 * dlopens it from `plugins.dir`, checks `abi_version` and `size` before it
 * reads anything else, and then, for every output of the config that
 * names the plugin, calls create() once (after a validating create() with
 * `check_only`, see below), deliver() for each delivery, and destroy()
 * once at exit.
 *
 * Build one with:
 *     cc -shared -fPIC $(pkg-config --cflags switchboard) my.c -o my.so
 * and see plugins/example/ for a commented one to start from.
 *
 * Ownership: the side that allocates frees. The router owns every string
 * and struct it hands a plugin; a plugin owns its instance.
 */
#ifndef SWITCHBOARD_PLUGIN_H
#define SWITCHBOARD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change to the structs below. */
#define SB_PLUGIN_ABI_VERSION 1

/* The one symbol the router looks up. */
#define SB_PLUGIN_SYMBOL "switchboard_plugin"

#if defined(__GNUC__)
#define SB_PLUGIN_EXPORT       __attribute__((visibility("default")))
#define SB_PLUGIN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SB_PLUGIN_EXPORT
#define SB_PLUGIN_PRINTF(f, a)
#endif

/* How a template field's values are escaped when it is rendered. */
enum sb_plugin_escape {
    SB_PLUGIN_ESCAPE_NONE = 0, /* as is */
    SB_PLUGIN_ESCAPE_JSON,     /* inside a JSON string */
    SB_PLUGIN_ESCAPE_SLACK,    /* Slack mrkdwn: & < > */
    SB_PLUGIN_ESCAPE_HEADER,   /* a mail header: no CR or LF */
};

/*
 * A template field the plugin takes. A rule's send entry, or the output's
 * config, may set it; otherwise `default_template` applies. NULL as the
 * default means the event envelope, one line of JSON:
 * {"id","received_at","event_type","payload","rule"}.
 */
struct sb_plugin_field {
    const char *name;
    const char *default_template;
    enum sb_plugin_escape escape;
};

/* What an attempt came to. */
enum sb_plugin_status {
    SB_PLUGIN_DELIVERED = 0,
    SB_PLUGIN_RETRY,  /* transient: try again later */
    SB_PLUGIN_FAILED, /* permanent: retrying cannot help */
};

enum sb_plugin_log_level {
    SB_PLUGIN_LOG_ERROR = 0,
    SB_PLUGIN_LOG_WARN,
    SB_PLUGIN_LOG_INFO,
    SB_PLUGIN_LOG_DEBUG,
};

/* A plugin's view of its output's config; opaque. */
struct sb_plugin_config;

/* Values a list of strings or a map gives back; see the accessors. */
struct sb_plugin_strings {
    const char *const *items;
    size_t count;
};

/*
 * What the router offers a plugin instance. One per output, valid from
 * create() until destroy() returns. Every function is safe from any
 * thread.
 *
 * Config accessors read the output's keys. Each returns 0 and sets *out
 * when the key holds a value of the asked type, or when it is absent and a
 * default is given (`required` 0). Otherwise each returns -1 and records
 * an error that names the key's file:line:col (or the output, when the
 * key is missing); the router reports every recorded error and create()'s
 * result is ignored. Values are borrowed until create() returns: copy what
 * you keep. A key the plugin never reads is reported as unknown, so every
 * key a plugin accepts must be read in create(), even when unused.
 * Messages never quote a value: it may be a secret.
 */
struct sb_plugin_host {
    uint32_t abi_version; /* SB_PLUGIN_ABI_VERSION the router speaks */
    size_t size;          /* sizeof(struct sb_plugin_host) in the router */
    const char *version;  /* the router's version, e.g. "0.1.0" */
    const char *output;   /* the output's name from the config */
    /*
     * Non-zero during `switchboard check` and `test`, and in the first of
     * serve's two passes (every output is validated before any is opened,
     * so a rejected config leaves nothing behind): create() MUST only read
     * and validate its config, and MUST NOT open files, connect or start
     * threads. deliver() is never called on such an instance.
     */
    int check_only;

    /* One logfmt line with the output's name; no trailing newline. */
    void (*log)(const struct sb_plugin_host *host,
                enum sb_plugin_log_level level, const char *fmt, ...)
        SB_PLUGIN_PRINTF(3, 4);

    int (*config_string)(const struct sb_plugin_config *cfg, const char *key,
                         int required, const char *def, const char **out);
    int (*config_integer)(const struct sb_plugin_config *cfg, const char *key,
                          int required, int64_t def, int64_t *out);
    int (*config_boolean)(const struct sb_plugin_config *cfg, const char *key,
                          int required, int def, int *out);
    /* A file path; a relative one is taken from the config's folder. */
    int (*config_path)(const struct sb_plugin_config *cfg, const char *key,
                       int required, const char *def, const char **out);
    /* "500ms", "10s", "5m", "1h", "7d": milliseconds. */
    int (*config_duration)(const struct sb_plugin_config *cfg, const char *key,
                           int required, uint64_t def, uint64_t *out_ms);
    /* "512", "64KiB", "1MiB": bytes. */
    int (*config_size)(const struct sb_plugin_config *cfg, const char *key,
                       int required, size_t def, size_t *out);
    /* A list of strings; a single string is a list of one. Absent: empty. */
    int (*config_strings)(const struct sb_plugin_config *cfg, const char *key,
                          int required, struct sb_plugin_strings *out);
    /* A nested map, read with the same accessors. Absent: *out = NULL. */
    int (*config_map)(const struct sb_plugin_config *cfg, const char *key,
                      int required, const struct sb_plugin_config **out);
    /* The keys of a map, in file order (e.g. HTTP header names). */
    int (*config_keys)(const struct sb_plugin_config *cfg,
                       struct sb_plugin_strings *out);
    /*
     * Records a problem with `key`'s value (an unknown enum word, a bad
     * address) at its file:line:col. Always returns -1.
     */
    int (*config_error)(const struct sb_plugin_config *cfg, const char *key,
                        const char *fmt, ...) SB_PLUGIN_PRINTF(3, 4);
};

/*
 * One delivery attempt, borrowed for the duration of deliver(). Strings
 * are NUL-terminated. Fields are rendered and escaped already, in the
 * order of the descriptor's `fields`.
 */
struct sb_plugin_message {
    size_t size; /* sizeof(struct sb_plugin_message) in the router */
    const char *event_id;
    const char *event_type;
    const char *received_at; /* RFC 3339 UTC with milliseconds */
    const char *rule;        /* the rule that matched */
    int64_t delivery_id;     /* stable across attempts: an idempotency key */
    uint32_t attempt;        /* 1 on the first try */
    const char *const *fields;
    const size_t *field_lens;
    size_t field_count;
    const char *body; /* the event as received: a JSON object */
    size_t body_len;
};

/*
 * What deliver() fills in besides its status. The router zeroes it first.
 * `error` is kept as the delivery's last error and shown by `events`: say
 * what went wrong (an HTTP status, Slack's error word), never a payload
 * value, a secret or a response body.
 */
struct sb_plugin_result {
    uint64_t retry_after_ms; /* with RETRY: the peer's wish; 0: policy */
    char error[256];
};

/* Bits of sb_plugin_descriptor.flags. */
#define SB_PLUGIN_THREAD_SAFE 0x1u /* deliver() may run on many threads */

struct sb_plugin_descriptor {
    /* First, and never moved: the router checks these before all else. */
    uint32_t abi_version; /* SB_PLUGIN_ABI_VERSION */
    size_t size;          /* sizeof(struct sb_plugin_descriptor) */

    const char *name; /* must equal the file name without ".so" */
    const char *description;
    uint32_t flags;
    const struct sb_plugin_field *fields;
    size_t field_count;

    /*
     * Reads `cfg` through `host` and builds an instance. Returns 0 and sets
     * *out_instance, or returns -1 having recorded why (config_error, or
     * host->log for a failure that is not the config's: a file that cannot
     * be opened). On failure it MUST leave nothing allocated. `host` stays
     * valid until destroy() returns and may be kept.
     */
    int (*create)(const struct sb_plugin_config *cfg,
                  const struct sb_plugin_host *host, void **out_instance);

    /*
     * Attempts one delivery. MUST return within a bounded time (use
     * timeouts on every network call): a deliver() that never returns
     * stalls its own output. Runs on one thread at a time unless `flags`
     * has SB_PLUGIN_THREAD_SAFE. MUST NOT keep `msg` after returning.
     */
    enum sb_plugin_status (*deliver)(void *instance,
                                     const struct sb_plugin_message *msg,
                                     struct sb_plugin_result *out);

    /* Frees the instance; runs exactly once after a successful create(). */
    void (*destroy)(void *instance);

    /*
     * May be NULL. Asks the instance to reopen files it writes (the router
     * got SIGHUP, e.g. from logrotate). Called from a router thread while
     * deliver() may be running on others.
     */
    void (*reopen)(void *instance);

    /*
     * Deliveries at once when the output does not set `concurrency`; 0
     * means the router's default (4). A plugin whose deliveries share
     * work when they run together (the file output's one fsync for all
     * lines written at once) asks for more. At most 64.
     */
    uint32_t default_concurrency;
};

/* Declares the descriptor with the name and visibility the router wants. */
#define SB_PLUGIN_DECLARE                                     \
    SB_PLUGIN_EXPORT extern const struct sb_plugin_descriptor \
        switchboard_plugin;                                   \
    const struct sb_plugin_descriptor switchboard_plugin

#ifdef __cplusplus
}
#endif

#endif
