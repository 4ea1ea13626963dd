/* SPDX-License-Identifier: MIT */
/*
 * The shared parts of the HTTP outputs; see web.h.
 */
#include "web.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define WEB_MAX_WAIT_MS 600000 /* the longest timeout accepted: 10 min */

static int web_read_string(const struct sb_plugin_config *cfg,
                           const struct sb_plugin_host *host,
                           const struct web_option *opt, char **out)
{
    const char *text = NULL;
    int rc =
        opt->kind == WEB_PATH
            ? host->config_path(cfg, opt->key, opt->required, NULL, &text)
            : host->config_string(cfg, opt->key, opt->required, NULL, &text);

    if (rc != 0 || text == NULL) {
        return rc;
    }
    *out = strdup(text);
    if (*out == NULL) {
        return host->config_error(cfg, opt->key, "%s: out of memory", opt->key);
    }
    return 0;
}

static int web_read_option(const struct sb_plugin_config *cfg,
                           const struct sb_plugin_host *host,
                           const struct web_option *opt, void *settings)
{
    void *at = (char *)settings + opt->offset;
    uint64_t *ms = at;
    int rc;

    switch (opt->kind) {
    case WEB_STRING:
    case WEB_PATH:
        return web_read_string(cfg, host, opt, at);
    case WEB_BOOLEAN:
        return host->config_boolean(cfg, opt->key, opt->required, (int)opt->def,
                                    at);
    case WEB_DURATION:
        rc = host->config_duration(cfg, opt->key, opt->required, opt->def, ms);
        if (rc == 0 && (*ms == 0 || *ms > opt->max_ms)) {
            return host->config_error(cfg, opt->key,
                                      "%s: expected 1ms to %llus", opt->key,
                                      (unsigned long long)opt->max_ms / 1000);
        }
        return rc;
    }
    return -1;
}

int web_read_options(const struct sb_plugin_config *cfg,
                     const struct sb_plugin_host *host,
                     const struct web_option *options, size_t count,
                     void *settings)
{
    int rc = 0;
    size_t i;

    for (i = 0; i < count; i++) {
        rc |= web_read_option(cfg, host, &options[i], settings);
    }
    return rc;
}

static const struct web_option web_transport_options[] = {
    {"ca_file", WEB_PATH, 0, offsetof(struct web_transport, ca_file), 0, 0},
    {"tls_verify", WEB_BOOLEAN, 0, offsetof(struct web_transport, tls_verify),
     1, 0},
    {"timeout", WEB_DURATION, 0, offsetof(struct web_transport, timeout_ms),
     10000, WEB_MAX_WAIT_MS},
    {"connect_timeout", WEB_DURATION, 0,
     offsetof(struct web_transport, connect_timeout_ms), 5000, WEB_MAX_WAIT_MS},
};

int web_read_transport(const struct sb_plugin_config *cfg,
                       const struct sb_plugin_host *host,
                       struct web_transport *t)
{
    int rc = web_read_options(
        cfg, host, web_transport_options,
        sizeof(web_transport_options) / sizeof(web_transport_options[0]), t);

    if (t->ca_file != NULL && access(t->ca_file, R_OK) != 0) {
        rc =
            host->config_error(cfg, "ca_file", "ca_file: cannot read the file");
    }
    return rc;
}

void web_transport_cleanup(struct web_transport *t)
{
    free(t->ca_file);
    t->ca_file = NULL;
}

int web_is_loopback(const char *host)
{
    return strcmp(host, "127.0.0.1") == 0 ||
           strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0;
}

int web_url_host(const char *url, char *out_host, size_t size)
{
    int tls = strncasecmp(url, "https://", 8) == 0;
    const char *at = url + (tls ? 8 : 7);
    size_t authority;
    size_t host_len;
    size_t i;

    out_host[0] = '\0';
    if (!tls && strncasecmp(url, "http://", 7) != 0) {
        return -1;
    }
    for (i = 0; url[i] != '\0'; i++) {
        if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f) {
            return -1;
        }
    }
    authority = strcspn(at, "/?#");
    host_len = at[0] == '[' ? strcspn(at, "]") + 1 : strcspn(at, ":/?#");
    if (memchr(at, '@', authority) != NULL || host_len == 0 ||
        host_len > authority || host_len >= size) {
        return -1;
    }
    for (i = host_len + 1; i < authority; i++) {
        if (at[host_len] != ':' || at[i] < '0' || at[i] > '9') {
            return -1;
        }
    }
    if (host_len < authority && at[host_len] != ':') {
        return -1;
    }
    memcpy(out_host, at, host_len);
    out_host[host_len] = '\0';
    return tls;
}

/* curl_global_init is not thread-safe; it counts its callers itself. */
static pthread_mutex_t web_global_lock = PTHREAD_MUTEX_INITIALIZER;

int web_global_take(void)
{
    CURLcode code;

    pthread_mutex_lock(&web_global_lock);
    code = curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_unlock(&web_global_lock);
    return code == CURLE_OK ? 0 : -1;
}

void web_global_give(void)
{
    pthread_mutex_lock(&web_global_lock);
    curl_global_cleanup();
    pthread_mutex_unlock(&web_global_lock);
}

CURLcode web_handle_transport(CURL *h, const struct web_transport *t)
{
    CURLcode rc = CURLE_OK;

#define WEB_SET(opt, val)                           \
    do {                                            \
        if (rc == CURLE_OK) {                       \
            rc = curl_easy_setopt(h, (opt), (val)); \
        }                                           \
    } while (0)
    WEB_SET(CURLOPT_NOSIGNAL, 1L);
    WEB_SET(CURLOPT_PROTOCOLS_STR, "http,https");
    WEB_SET(CURLOPT_CONNECTTIMEOUT_MS, (long)t->connect_timeout_ms);
    WEB_SET(CURLOPT_TIMEOUT_MS, (long)t->timeout_ms);
    WEB_SET(CURLOPT_SSL_VERIFYPEER, t->tls_verify ? 1L : 0L);
    WEB_SET(CURLOPT_SSL_VERIFYHOST, t->tls_verify ? 2L : 0L);
    if (t->ca_file != NULL) {
        WEB_SET(CURLOPT_CAINFO, t->ca_file);
    }
    WEB_SET(CURLOPT_USERAGENT, "switchboard");
#undef WEB_SET
    return rc;
}

int web_pool_init(struct web_pool *pool)
{
    pool->count = 0;
    return pthread_mutex_init(&pool->lock, NULL) == 0 ? 0 : -1;
}

CURL *web_pool_take(struct web_pool *pool)
{
    CURL *h = NULL;

    pthread_mutex_lock(&pool->lock);
    if (pool->count > 0) {
        h = pool->idle[--pool->count];
    }
    pthread_mutex_unlock(&pool->lock);
    return h;
}

void web_pool_give(struct web_pool *pool, CURL *h)
{
    if (h == NULL) {
        return;
    }
    pthread_mutex_lock(&pool->lock);
    if (pool->count < WEB_POOL_MAX) {
        pool->idle[pool->count++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&pool->lock);
    curl_easy_cleanup(h);
}

void web_pool_destroy(struct web_pool *pool)
{
    while (pool->count > 0) {
        curl_easy_cleanup(pool->idle[--pool->count]);
    }
    pthread_mutex_destroy(&pool->lock);
}
