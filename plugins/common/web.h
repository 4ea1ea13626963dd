/* SPDX-License-Identifier: MIT */
/*
 * What the outputs that speak HTTP through libcurl (slack, http) share:
 * reading their keys from a table, the URL rules, libcurl's global
 * state, the transport settings of a handle, and the pool of idle handles
 * that keeps connections open between deliveries; sms and smtp share the
 * loopback rule. Compiled into each of those plugins (hidden, like the
 * rest of a plugin); not part of the ABI.
 */
#ifndef SB_PLUGINS_WEB_H
#define SB_PLUGINS_WEB_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>

#include <switchboard/plugin.h>

#define WEB_POOL_MAX 64 /* idle handles kept: an output's most workers */
#define WEB_HOST_MAX 256

enum web_kind {
    WEB_STRING,
    WEB_PATH,
    WEB_BOOLEAN,
    WEB_DURATION,
};

/* One key of a plugin's config, read into a struct at `offset`. */
struct web_option {
    const char *key;
    enum web_kind kind;
    int required;
    size_t offset;   /* in the plugin's settings struct */
    uint64_t def;    /* booleans and durations */
    uint64_t max_ms; /* durations: the longest accepted */
};

/* How a handle reaches its peer: the keys every such output takes. */
struct web_transport {
    char *ca_file;  /* PEM bundle of the CAs to trust instead of the system's */
    int tls_verify; /* off only by an explicit choice, logged at warn */
    uint64_t timeout_ms; /* the whole attempt, connecting included */
    uint64_t connect_timeout_ms;
};

/*
 * Reads every key of `options` into `settings`, even after one failed,
 * so each mistake is reported at once. Strings are owned copies.
 * Returns 0, or -1 having recorded the errors.
 */
int web_read_options(const struct sb_plugin_config *cfg,
                     const struct sb_plugin_host *host,
                     const struct web_option *options, size_t count,
                     void *settings);

/*
 * Reads ca_file (which must be readable), tls_verify (default true),
 * timeout (10s) and connect_timeout (5s) into `t`; 0, or -1 having
 * recorded the errors.
 */
int web_read_transport(const struct sb_plugin_config *cfg,
                       const struct sb_plugin_host *host,
                       struct web_transport *t);

/* Frees what web_read_transport copied. */
void web_transport_cleanup(struct web_transport *t);

/* 127.0.0.1, localhost or [::1]: where plain http is acceptable. */
int web_is_loopback(const char *host);

/*
 * Copies the host of an http(s) URL into out_host. Returns 1 for https,
 * 0 for http, -1 for anything else: another scheme, user info (a
 * password belongs in a header, not a URL), an empty host, a bad port.
 */
int web_url_host(const char *url, char *out_host, size_t size);

/*
 * libcurl's global state, counted: an instance that will deliver takes
 * one reference in create() and gives it back in destroy(), so nothing of
 * curl's outlives the plugin. Returns 0 or -1.
 */
int web_global_take(void);
void web_global_give(void);

/*
 * Sets what every request of a handle shares: NOSIGNAL, http and https
 * only, the timeouts and TLS checks of `t`, the user agent. Returns
 * curl's code.
 */
CURLcode web_handle_transport(CURL *h, const struct web_transport *t);

/* Idle handles, each keeping its connection open for the next deliver(). */
struct web_pool {
    pthread_mutex_t lock;
    CURL *idle[WEB_POOL_MAX];
    size_t count;
};

int web_pool_init(struct web_pool *pool);

/* An idle handle, or NULL when there is none (the caller makes one). */
CURL *web_pool_take(struct web_pool *pool);

/* Keeps `h` for the next deliver(), or cleans it up when the pool is full. */
void web_pool_give(struct web_pool *pool, CURL *h);

/* Cleans up every idle handle. */
void web_pool_destroy(struct web_pool *pool);

#endif
