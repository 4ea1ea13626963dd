/* SPDX-License-Identifier: MIT */
/*
 * The slack output: posts each message to a Slack incoming webhook as
 * {"text": ...} with the optional channel, username and icon_emoji, and
 * sorts Slack's answer into delivered (200), retry (429, 5xx, timeouts,
 * network errors) and failed (any other 4xx, with Slack's error word).
 * The webhook URL carries Slack's token in its path: only its host is
 * ever logged.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include <switchboard/plugin.h>

#define SLACK_POOL_MAX  64            /* idle handles kept per output */
#define SLACK_BODY_MAX  (1024 * 1024) /* the JSON we post */
#define SLACK_REPLY_MAX 128           /* kept of Slack's answer: one word */
#define SLACK_WORD_MAX  64            /* the longest error word we quote */
#define SLACK_HOST_MAX  256

enum slack_kind {
    SLACK_STRING,
    SLACK_PATH,
    SLACK_BOOLEAN,
    SLACK_DURATION,
};

/* What the config says; strings are owned copies. */
struct slack_conf {
    char *webhook_url;
    char *channel;
    char *username;
    char *icon_emoji;
    char *ca_file;
    int tls_verify;
    uint64_t timeout_ms;
    uint64_t connect_timeout_ms;
};

struct slack_option {
    const char *key;
    enum slack_kind kind;
    int required;
    size_t offset;   /* in struct slack_conf */
    uint64_t def;    /* booleans and durations */
    uint64_t max_ms; /* durations: the longest accepted */
};

#define SLACK_AT(member) offsetof(struct slack_conf, member)

static const struct slack_option slack_options[] = {
    /* The incoming webhook; its path is a secret. */
    {"webhook_url", SLACK_STRING, 1, SLACK_AT(webhook_url), 0, 0},
    /* Overrides the webhook's channel, e.g. "#on-call". */
    {"channel", SLACK_STRING, 0, SLACK_AT(channel), 0, 0},
    /* Overrides the name the message is posted under. */
    {"username", SLACK_STRING, 0, SLACK_AT(username), 0, 0},
    /* Overrides the poster's icon, e.g. ":telephone_receiver:". */
    {"icon_emoji", SLACK_STRING, 0, SLACK_AT(icon_emoji), 0, 0},
    /* PEM bundle of the CAs to trust instead of the system's. */
    {"ca_file", SLACK_PATH, 0, SLACK_AT(ca_file), 0, 0},
    /* Off only by an explicit choice, logged at warn. */
    {"tls_verify", SLACK_BOOLEAN, 0, SLACK_AT(tls_verify), 1, 0},
    /* The whole attempt, connecting included. */
    {"timeout", SLACK_DURATION, 0, SLACK_AT(timeout_ms), 10000, 600000},
    {"connect_timeout", SLACK_DURATION, 0, SLACK_AT(connect_timeout_ms), 5000,
     600000},
};

struct slack {
    const struct sb_plugin_host *host;
    struct slack_conf conf;
    char host_name[SLACK_HOST_MAX]; /* the URL's host: what logs show */
    struct curl_slist *headers;
    int curl_ready; /* holds a curl_global_init reference */
    pthread_mutex_t lock;
    CURL *idle[SLACK_POOL_MAX]; /* handles no deliver() is using */
    size_t idle_count;
};

/* Slack's answer, cut at SLACK_REPLY_MAX. */
struct slack_reply {
    char text[SLACK_REPLY_MAX + 1];
    size_t len;
};

/*
 * curl_global_init is not thread-safe and counts its callers: every
 * instance that will deliver takes one reference under this lock and
 * gives it back in destroy(), so nothing of curl's outlives the plugin.
 */
static pthread_mutex_t slack_global_lock = PTHREAD_MUTEX_INITIALIZER;

static int slack_global_take(void)
{
    CURLcode code;

    pthread_mutex_lock(&slack_global_lock);
    code = curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_mutex_unlock(&slack_global_lock);
    return code == CURLE_OK ? 0 : -1;
}

static void slack_global_give(void)
{
    pthread_mutex_lock(&slack_global_lock);
    curl_global_cleanup();
    pthread_mutex_unlock(&slack_global_lock);
}

/* ---- config ------------------------------------------------------------ */

static int slack_read_string(const struct sb_plugin_config *cfg,
                             const struct sb_plugin_host *host,
                             const struct slack_option *opt, char **out)
{
    const char *text = NULL;
    int rc =
        opt->kind == SLACK_PATH
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

static int slack_read_option(const struct sb_plugin_config *cfg,
                             const struct sb_plugin_host *host,
                             const struct slack_option *opt,
                             struct slack_conf *conf)
{
    void *at = (char *)conf + opt->offset;
    uint64_t *ms = at;
    int rc;

    switch (opt->kind) {
    case SLACK_STRING:
    case SLACK_PATH:
        return slack_read_string(cfg, host, opt, at);
    case SLACK_BOOLEAN:
        return host->config_boolean(cfg, opt->key, opt->required, (int)opt->def,
                                    at);
    case SLACK_DURATION:
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

static int slack_is_loopback(const char *host)
{
    return strcmp(host, "127.0.0.1") == 0 ||
           strcasecmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0;
}

/*
 * Copies the host of an http(s) URL into out_host. Returns 1 for https,
 * 0 for http, -1 for anything else: another scheme, user info (a
 * password has no place in a webhook URL), an empty host, a bad port.
 */
static int slack_url_host(const char *url, char *out_host, size_t size)
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

/* Checks the values that were read; each problem is recorded. */
static int slack_check(const struct sb_plugin_config *cfg, struct slack *s)
{
    const struct sb_plugin_host *host = s->host;
    int scheme = 1;
    int rc = 0;

    if (s->conf.webhook_url != NULL) {
        scheme = slack_url_host(s->conf.webhook_url, s->host_name,
                                sizeof(s->host_name));
    }
    if (scheme < 0 || (scheme == 0 && !slack_is_loopback(s->host_name))) {
        rc = host->config_error(
            cfg, "webhook_url",
            "webhook_url: expected https://, or http:// to localhost");
    }
    if (s->conf.ca_file != NULL && access(s->conf.ca_file, R_OK) != 0) {
        rc =
            host->config_error(cfg, "ca_file", "ca_file: cannot read the file");
    }
    return rc;
}

/* ---- curl handles ------------------------------------------------------ */

static size_t slack_on_reply(char *data, size_t size, size_t count,
                             void *userdata)
{
    struct slack_reply *reply = userdata;
    size_t n = size * count;
    size_t room = SLACK_REPLY_MAX - reply->len;
    size_t keep = n < room ? n : room;

    memcpy(reply->text + reply->len, data, keep);
    reply->len += keep;
    reply->text[reply->len] = '\0';
    return n;
}

/* A new handle with everything that stays the same from one post on. */
static CURL *slack_handle_new(const struct slack *s)
{
    const struct slack_conf *c = &s->conf;
    CURL *h = curl_easy_init();
    CURLcode rc = h != NULL ? CURLE_OK : CURLE_OUT_OF_MEMORY;

#define SLACK_SET(opt, val)                         \
    do {                                            \
        if (rc == CURLE_OK) {                       \
            rc = curl_easy_setopt(h, (opt), (val)); \
        }                                           \
    } while (0)
    SLACK_SET(CURLOPT_URL, c->webhook_url);
    SLACK_SET(CURLOPT_NOSIGNAL, 1L);
    SLACK_SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SLACK_SET(CURLOPT_CONNECTTIMEOUT_MS, (long)c->connect_timeout_ms);
    SLACK_SET(CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    SLACK_SET(CURLOPT_SSL_VERIFYPEER, c->tls_verify ? 1L : 0L);
    SLACK_SET(CURLOPT_SSL_VERIFYHOST, c->tls_verify ? 2L : 0L);
    if (c->ca_file != NULL) {
        SLACK_SET(CURLOPT_CAINFO, c->ca_file);
    }
    SLACK_SET(CURLOPT_POST, 1L);
    SLACK_SET(CURLOPT_HTTPHEADER, s->headers);
    SLACK_SET(CURLOPT_USERAGENT, "switchboard");
    SLACK_SET(CURLOPT_WRITEFUNCTION, slack_on_reply);
#undef SLACK_SET
    if (rc != CURLE_OK) {
        curl_easy_cleanup(h);
        return NULL;
    }
    return h;
}

/* An idle handle, or a new one; NULL only when curl cannot make one. */
static CURL *slack_handle_take(struct slack *s)
{
    CURL *h = NULL;

    pthread_mutex_lock(&s->lock);
    if (s->idle_count > 0) {
        h = s->idle[--s->idle_count];
    }
    pthread_mutex_unlock(&s->lock);
    return h != NULL ? h : slack_handle_new(s);
}

/* Keeps the handle, and its open connection, for the next deliver(). */
static void slack_handle_give(struct slack *s, CURL *h)
{
    if (h == NULL) {
        return;
    }
    pthread_mutex_lock(&s->lock);
    if (s->idle_count < SLACK_POOL_MAX) {
        s->idle[s->idle_count++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    curl_easy_cleanup(h);
}

/* ---- the message ------------------------------------------------------- */

/* Writes s[0..n) as a JSON string at out; returns the bytes written. */
static size_t slack_json_string(char *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *at = out;
    size_t i;

    *at++ = '"';
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            *at++ = '\\';
            *at++ = (char)c;
        } else if (c == '\n') {
            *at++ = '\\';
            *at++ = 'n';
        } else if (c < 0x20) {
            memcpy(at, "\\u00", 4);
            at[4] = hex[c >> 4];
            at[5] = hex[c & 0xf];
            at += 6;
        } else {
            *at++ = (char)c;
        }
    }
    *at++ = '"';
    return (size_t)(at - out);
}

/* Appends `,"key":"value"` when value is set. */
static size_t slack_json_member(char *out, const char *key, const char *value)
{
    size_t n;

    if (value == NULL) {
        return 0;
    }
    out[0] = ',';
    n = 1 + slack_json_string(out + 1, key, strlen(key));
    out[n++] = ':';
    return n + slack_json_string(out + n, value, strlen(value));
}

static size_t slack_len(const char *s)
{
    return s != NULL ? strlen(s) : 0;
}

/*
 * The JSON body Slack wants. Returns 0 with *out_body (the caller frees)
 * and its length, 1 when it would pass SLACK_BODY_MAX, -1 out of memory.
 */
static int slack_body(const struct slack *s, const char *text, size_t len,
                      char **out_body, size_t *out_len)
{
    const struct slack_conf *c = &s->conf;
    /* Every byte escapes to at most 6; keys and punctuation fit in 64. */
    size_t plain = len + slack_len(c->channel) + slack_len(c->username) +
                   slack_len(c->icon_emoji);
    size_t n;
    char *body;

    *out_body = NULL;
    *out_len = 0;
    if (plain > SLACK_BODY_MAX / 6 - 64) {
        return 1;
    }
    body = malloc(plain * 6 + 64);
    if (body == NULL) {
        return -1;
    }
    memcpy(body, "{\"text\":", 8);
    n = 8 + slack_json_string(body + 8, text, len);
    n += slack_json_member(body + n, "channel", c->channel);
    n += slack_json_member(body + n, "username", c->username);
    n += slack_json_member(body + n, "icon_emoji", c->icon_emoji);
    body[n++] = '}';
    *out_body = body;
    *out_len = n;
    return 0;
}

/* ---- one attempt ------------------------------------------------------- */

/* Slack's error word ("no_service"), or NULL when the answer is not one. */
static const char *slack_error_word(struct slack_reply *reply)
{
    size_t n = reply->len;
    size_t i;

    while (n > 0 && (reply->text[n - 1] == '\n' || reply->text[n - 1] == '\r' ||
                     reply->text[n - 1] == ' ')) {
        n--;
    }
    if (n == 0 || n > SLACK_WORD_MAX || reply->len == SLACK_REPLY_MAX) {
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (reply->text[i] != '_' &&
            (reply->text[i] < 'a' || reply->text[i] > 'z')) {
            return NULL;
        }
    }
    reply->text[n] = '\0';
    return reply->text;
}

static enum sb_plugin_status slack_classify(CURL *h, long status,
                                            struct slack_reply *reply,
                                            struct sb_plugin_result *out)
{
    curl_off_t wait_s = 0;
    const char *word;

    if (status >= 200 && status < 300) {
        return SB_PLUGIN_DELIVERED;
    }
    if (status == 408 || status == 429 || status >= 500) {
        /* Seconds or an HTTP date; curl turns either into seconds. */
        if (curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &wait_s) == CURLE_OK &&
            wait_s > 0) {
            out->retry_after_ms = (uint64_t)wait_s * 1000u;
        }
        snprintf(out->error, sizeof(out->error), "HTTP %ld", status);
        return SB_PLUGIN_RETRY;
    }
    word = slack_error_word(reply);
    if (word != NULL) {
        snprintf(out->error, sizeof(out->error), "%s (HTTP %ld)", word, status);
    } else {
        snprintf(out->error, sizeof(out->error), "HTTP %ld", status);
    }
    return SB_PLUGIN_FAILED;
}

/* Posts body on h; a network failure or timeout is a retry. */
static enum sb_plugin_status slack_post(struct slack *s, CURL *h,
                                        const char *body, size_t len,
                                        struct sb_plugin_result *out)
{
    struct slack_reply reply = {.len = 0};
    long status = 0;
    CURLcode rc;

    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &reply);
    rc = curl_easy_perform(h);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    if (rc != CURLE_OK) {
        /* curl's words name the failure, never the URL. */
        snprintf(out->error, sizeof(out->error), "%s", curl_easy_strerror(rc));
        s->host->log(s->host, SB_PLUGIN_LOG_DEBUG, "POST to %s: %s",
                     s->host_name, out->error);
        return SB_PLUGIN_RETRY;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    s->host->log(s->host, SB_PLUGIN_LOG_DEBUG, "POST to %s: HTTP %ld",
                 s->host_name, status);
    return slack_classify(h, status, &reply, out);
}

/* ---- the plugin -------------------------------------------------------- */

static void slack_destroy(void *instance)
{
    struct slack *s = instance;
    size_t i;

    if (s == NULL) {
        return;
    }
    for (i = 0; i < s->idle_count; i++) {
        curl_easy_cleanup(s->idle[i]);
    }
    curl_slist_free_all(s->headers);
    if (s->curl_ready) {
        slack_global_give();
    }
    pthread_mutex_destroy(&s->lock);
    if (s->conf.webhook_url != NULL) {
        explicit_bzero(s->conf.webhook_url, strlen(s->conf.webhook_url));
    }
    free(s->conf.webhook_url);
    free(s->conf.channel);
    free(s->conf.username);
    free(s->conf.icon_emoji);
    free(s->conf.ca_file);
    free(s);
}

/* What only a delivering instance needs: curl and its headers. */
static int slack_start(struct slack *s)
{
    struct curl_slist *more;

    if (slack_global_take() != 0) {
        s->host->log(s->host, SB_PLUGIN_LOG_ERROR, "libcurl did not start");
        return -1;
    }
    s->curl_ready = 1;
    s->headers = curl_slist_append(NULL, "Content-Type: application/json");
    /* A webhook answers at once: no 100-continue round trip. */
    more = s->headers ? curl_slist_append(s->headers, "Expect:") : NULL;
    if (more == NULL) {
        s->host->log(s->host, SB_PLUGIN_LOG_ERROR, "out of memory");
        return -1;
    }
    return 0;
}

static int slack_create(const struct sb_plugin_config *cfg,
                        const struct sb_plugin_host *host, void **out_instance)
{
    struct slack *s = calloc(1, sizeof(*s));
    int rc = 0;
    size_t i;

    *out_instance = NULL;
    if (s == NULL || pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        host->log(host, SB_PLUGIN_LOG_ERROR, "out of memory");
        return -1;
    }
    s->host = host;
    for (i = 0; i < sizeof(slack_options) / sizeof(slack_options[0]); i++) {
        rc |= slack_read_option(cfg, host, &slack_options[i], &s->conf);
    }
    rc |= slack_check(cfg, s);
    if (rc == 0 && !s->conf.tls_verify) {
        host->log(host, SB_PLUGIN_LOG_WARN,
                  "tls_verify is false: the certificate of %s is not checked",
                  s->host_name);
    }
    if (rc == 0 && !host->check_only) {
        rc = slack_start(s);
    }
    if (rc != 0) {
        slack_destroy(s);
        return -1;
    }
    *out_instance = s;
    return 0;
}

static enum sb_plugin_status slack_deliver(void *instance,
                                           const struct sb_plugin_message *msg,
                                           struct sb_plugin_result *out)
{
    struct slack *s = instance;
    enum sb_plugin_status st = SB_PLUGIN_RETRY;
    char *body = NULL;
    size_t len = 0;
    CURL *h = NULL;
    int built;

    if (msg->field_count < 1) {
        snprintf(out->error, sizeof(out->error), "no text field");
        return SB_PLUGIN_FAILED;
    }
    built = slack_body(s, msg->fields[0], msg->field_lens[0], &body, &len);
    if (built != 0) {
        snprintf(out->error, sizeof(out->error), "%s",
                 built > 0 ? "message too large" : "out of memory");
        return built > 0 ? SB_PLUGIN_FAILED : SB_PLUGIN_RETRY;
    }
    h = slack_handle_take(s);
    if (h == NULL) {
        snprintf(out->error, sizeof(out->error), "no curl handle");
    } else {
        st = slack_post(s, h, body, len, out);
    }
    slack_handle_give(s, h);
    free(body);
    return st;
}

static const struct sb_plugin_field slack_fields[] = {
    {"text", "{{event_type}} event {{event_id}}", SB_PLUGIN_ESCAPE_SLACK},
};

SB_PLUGIN_DECLARE = {
    .abi_version = SB_PLUGIN_ABI_VERSION,
    .size = sizeof(struct sb_plugin_descriptor),
    .name = "slack",
    .description = "posts to a Slack incoming webhook",
    .flags = SB_PLUGIN_THREAD_SAFE,
    .fields = slack_fields,
    .field_count = sizeof(slack_fields) / sizeof(slack_fields[0]),
    .create = slack_create,
    .deliver = slack_deliver,
    .destroy = slack_destroy,
    .reopen = NULL,
};
