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

#include "../common/web.h"

#define SLACK_BODY_MAX  (1024 * 1024) /* the JSON we post */
#define SLACK_REPLY_MAX 128           /* kept of Slack's answer: one word */
#define SLACK_WORD_MAX  64            /* the longest error word we quote */

/* What the config says; strings are owned copies. */
struct slack_conf {
    char *webhook_url;
    char *channel;
    char *username;
    char *icon_emoji;
    struct web_transport transport; /* ca_file, tls_verify, timeouts */
};

#define SLACK_AT(member) offsetof(struct slack_conf, member)

static const struct web_option slack_options[] = {
    /* The incoming webhook; its path is a secret. */
    {"webhook_url", WEB_STRING, 1, SLACK_AT(webhook_url), 0, 0},
    /* Overrides the webhook's channel, e.g. "#on-call". */
    {"channel", WEB_STRING, 0, SLACK_AT(channel), 0, 0},
    /* Overrides the name the message is posted under. */
    {"username", WEB_STRING, 0, SLACK_AT(username), 0, 0},
    /* Overrides the poster's icon, e.g. ":telephone_receiver:". */
    {"icon_emoji", WEB_STRING, 0, SLACK_AT(icon_emoji), 0, 0},
};

struct slack {
    const struct sb_plugin_host *host;
    struct slack_conf conf;
    char host_name[WEB_HOST_MAX]; /* the URL's host: what logs show */
    struct curl_slist *headers;
    int curl_ready; /* holds a web_global_take reference */
    struct web_pool pool;
};

/* Slack's answer, cut at SLACK_REPLY_MAX. */
struct slack_reply {
    char text[SLACK_REPLY_MAX + 1];
    size_t len;
};

/* ---- config ------------------------------------------------------------ */

/* Checks the values that were read; each problem is recorded. */
static int slack_check(const struct sb_plugin_config *cfg, struct slack *s)
{
    const struct sb_plugin_host *host = s->host;
    int scheme = 1;
    int rc = 0;

    if (s->conf.webhook_url != NULL) {
        scheme = web_url_host(s->conf.webhook_url, s->host_name,
                              sizeof(s->host_name));
    }
    if (scheme < 0 || (scheme == 0 && !web_is_loopback(s->host_name))) {
        rc = host->config_error(
            cfg, "webhook_url",
            "webhook_url: expected https://, or http:// to localhost");
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
    if (rc == CURLE_OK) {
        rc = web_handle_transport(h, &c->transport);
    }
    SLACK_SET(CURLOPT_URL, c->webhook_url);
    SLACK_SET(CURLOPT_POST, 1L);
    SLACK_SET(CURLOPT_HTTPHEADER, s->headers);
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
    CURL *h = web_pool_take(&s->pool);

    return h != NULL ? h : slack_handle_new(s);
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

    if (s == NULL) {
        return;
    }
    web_pool_destroy(&s->pool);
    curl_slist_free_all(s->headers);
    if (s->curl_ready) {
        web_global_give();
    }
    if (s->conf.webhook_url != NULL) {
        explicit_bzero(s->conf.webhook_url, strlen(s->conf.webhook_url));
    }
    free(s->conf.webhook_url);
    free(s->conf.channel);
    free(s->conf.username);
    free(s->conf.icon_emoji);
    web_transport_cleanup(&s->conf.transport);
    free(s);
}

/* What only a delivering instance needs: curl and its headers. */
static int slack_start(struct slack *s)
{
    struct curl_slist *more;

    if (web_global_take() != 0) {
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
    int rc;

    *out_instance = NULL;
    if (s == NULL || web_pool_init(&s->pool) != 0) {
        free(s);
        host->log(host, SB_PLUGIN_LOG_ERROR, "out of memory");
        return -1;
    }
    s->host = host;
    rc = web_read_options(cfg, host, slack_options,
                          sizeof(slack_options) / sizeof(slack_options[0]),
                          &s->conf);
    rc |= web_read_transport(cfg, host, &s->conf.transport);
    rc |= slack_check(cfg, s);
    if (rc == 0 && !s->conf.transport.tls_verify) {
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
    web_pool_give(&s->pool, h);
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
