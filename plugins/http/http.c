/* SPDX-License-Identifier: MIT */
/*
 * The http output: POSTs (or PUTs) each message, by default the event's
 * envelope JSON, to a URL with the configured headers (whose values may
 * name the event's id, type, time and rule), and, given a
 * `signing_secret`, signs it as the Standard Webhooks specification does
 * so a receiver verifies it with that standard's libraries. 2xx is
 * delivered; 408, 429 and 5xx retry; any other answer fails. The URL may
 * carry tokens in its path or query: only its host is ever logged.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include <switchboard/plugin.h>

#include "../common/web.h"

#define HTTP_HEADERS_MAX 32  /* headers an output may set */
#define HTTP_KEY_MAX     256 /* bytes of a decoded signing key */
#define HTTP_SECRET_TAG  "whsec_"
#define HTTP_SHA256_LEN  32

/* What the config says; strings are owned copies. */
struct http_conf {
    char *url;
    char *method;
    char *signing_secret;
    struct web_transport transport; /* ca_file, tls_verify, timeouts */
};

#define HTTP_AT(member) offsetof(struct http_conf, member)

/* `headers`, a map of names to values, is read apart: see http_headers. */
static const struct web_option http_options[] = {
    /* Where to send; http:// or https://. */
    {"url", WEB_STRING, 1, HTTP_AT(url), 0, 0},
    /* POST (the default) or PUT, in any case. */
    {"method", WEB_STRING, 0, HTTP_AT(method), 0, 0},
    /* whsec_<base64 key>: sign each request (Standard Webhooks). */
    {"signing_secret", WEB_STRING, 0, HTTP_AT(signing_secret), 0, 0},
};

/* A configured header whose value names the event: rendered per request. */
struct http_dynamic {
    char *name;
    char *value; /* the template, checked by http_template_check */
};

struct http {
    const struct sb_plugin_host *host;
    struct http_conf conf;
    char host_name[WEB_HOST_MAX]; /* the URL's host: what logs show */
    int put;                      /* method: PUT, else POST */
    unsigned char key[HTTP_KEY_MAX];
    size_t key_len; /* 0: requests are not signed */
    int has_content_type;
    struct curl_slist *headers; /* the user's fixed ones, then ours */
    struct http_dynamic dynamic[HTTP_HEADERS_MAX];
    size_t dynamic_count;
    int curl_ready; /* holds a web_global_take reference */
    struct web_pool pool;
};

/* ---- base64 (RFC 4648 §4, padded) -------------------------------------- */

static const char http_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Writes 4 * ceil(len / 3) characters and a NUL at out. */
static void http_b64_encode(const unsigned char *in, size_t len, char *out)
{
    size_t i;

    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v =
            (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

        *out++ = http_b64[v >> 18];
        *out++ = http_b64[(v >> 12) & 63];
        *out++ = http_b64[(v >> 6) & 63];
        *out++ = http_b64[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16 |
                     (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0);

        *out++ = http_b64[v >> 18];
        *out++ = http_b64[(v >> 12) & 63];
        *out++ = i + 1 < len ? http_b64[(v >> 6) & 63] : '=';
        *out++ = '=';
    }
    *out = '\0';
}

static int http_b64_value(char c)
{
    const char *at = c != '\0' ? strchr(http_b64, c) : NULL;

    return at != NULL ? (int)(at - http_b64) : -1;
}

/*
 * Decodes base64 into out, which has room for `room` bytes. The padding
 * may be left off: the Standard Webhooks libraries take a secret either
 * way, so switchboard does too. Returns the decoded length, or -1 for
 * anything that is not base64 or does not fit.
 */
static long http_b64_decode(const char *in, unsigned char *out, size_t room)
{
    size_t len = strlen(in);
    size_t pad = 0;
    size_t n = 0;
    uint32_t bits = 0;
    int held = 0; /* bits of `bits` not yet written */
    size_t i;

    while (len > 0 && in[len - 1] == '=' && pad < 2) {
        len--;
        pad++;
    }
    if (len % 4 == 1 || (pad > 0 && (len + pad) % 4 != 0)) {
        return -1;
    }
    for (i = 0; i < len; i++) {
        int d = http_b64_value(in[i]);

        if (d < 0) {
            return -1;
        }
        bits = bits << 6 | (uint32_t)d;
        held += 6;
        if (held >= 8) {
            held -= 8;
            if (n == room) {
                return -1;
            }
            out[n++] = (unsigned char)(bits >> held);
        }
    }
    return (long)n;
}

/* ---- header templates -------------------------------------------------- */

/*
 * LIMIT: a header value names only the event's own facts below, not
 * payload paths or sections. Matters when: a receiver wants a payload
 * value (a conversation id) in a header. Until then: such a template is
 * a `check` error with its line, and payload values travel in the body,
 * where receivers look for them and proxies do not log them.
 */
static const char *const http_template_names[] = {
    "event_id",
    "event_type",
    "received_at",
    "rule",
};

#define HTTP_TEMPLATE_NAMES \
    (sizeof(http_template_names) / sizeof(http_template_names[0]))

static const char *http_template_value(const struct sb_plugin_message *msg,
                                       size_t index)
{
    const char *value = NULL;

    switch (index) {
    case 0:
        value = msg->event_id;
        break;
    case 1:
        value = msg->event_type;
        break;
    case 2:
        value = msg->received_at;
        break;
    case 3:
        value = msg->rule;
        break;
    }
    return value != NULL ? value : "";
}

static int http_is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Finds the next tag at or after `at`. Returns 1 with *out_open at its
 * "{{", *out_index its name's place in http_template_names and *out_next
 * just past its "}}"; 0 when there is none; -1 for an unclosed tag or a
 * name not in the table. Blanks around the name are allowed.
 */
static int http_template_tag(const char *at, const char **out_open,
                             size_t *out_index, const char **out_next)
{
    const char *open = strstr(at, "{{");
    const char *close = open != NULL ? strstr(open + 2, "}}") : NULL;
    const char *name = open != NULL ? open + 2 : NULL;
    const char *end = close;
    size_t i;

    *out_open = open;
    *out_index = 0;
    *out_next = NULL;
    if (open == NULL) {
        return 0;
    }
    if (close == NULL) {
        return -1;
    }
    while (name < end && http_is_blank(*name)) {
        name++;
    }
    while (end > name && http_is_blank(end[-1])) {
        end--;
    }
    for (i = 0; i < HTTP_TEMPLATE_NAMES; i++) {
        if (strlen(http_template_names[i]) == (size_t)(end - name) &&
            memcmp(http_template_names[i], name, (size_t)(end - name)) == 0) {
            *out_index = i;
            *out_next = close + 2;
            return 1;
        }
    }
    return -1;
}

/* Returns 1 when value holds tags, 0 when it is fixed, -1 when bad. */
static int http_template_check(const char *value)
{
    const char *open;
    const char *next;
    size_t index;
    int found = 0;
    int rc;

    while ((rc = http_template_tag(value, &open, &index, &next)) == 1) {
        found = 1;
        value = next;
    }
    return rc < 0 ? -1 : found;
}

/*
 * Copies n bytes to out (when out is not NULL), each control byte a
 * space: a value from the event never starts a new header line.
 */
static size_t http_put(char *out, const char *text, size_t n, int escape)
{
    size_t i;

    for (i = 0; out != NULL && i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        int control = (c < ' ' && c != '\t') || c == 0x7f;

        out[i] = escape && control ? ' ' : (char)c;
    }
    return n;
}

/*
 * "Name: value" with the value's tags replaced by the message's values.
 * One pass measures and a second writes, so the line is allocated once
 * at its size. Returns the line (the caller frees it), or NULL when out
 * of memory.
 */
static char *http_template_render(const struct http_dynamic *d,
                                  const struct sb_plugin_message *msg)
{
    char *line = NULL;
    size_t n = 0;
    int pass;

    for (pass = 0; pass < 2; pass++) {
        const char *at = d->value;
        const char *open;
        const char *next;
        size_t index;

        n = http_put(line, d->name, strlen(d->name), 0);
        n += http_put(line != NULL ? line + n : NULL, ": ", 2, 0);
        while (http_template_tag(at, &open, &index, &next) == 1) {
            const char *value = http_template_value(msg, index);

            n += http_put(line != NULL ? line + n : NULL, at,
                          (size_t)(open - at), 0);
            n += http_put(line != NULL ? line + n : NULL, value, strlen(value),
                          1);
            at = next;
        }
        n += http_put(line != NULL ? line + n : NULL, at, strlen(at), 0);
        if (line == NULL) {
            line = malloc(n + 1);
            if (line == NULL) {
                return NULL;
            }
        }
    }
    line[n] = '\0';
    return line;
}

/* ---- config ------------------------------------------------------------ */

/* RFC 9110 §5.6.2: a token. */
static int http_is_token(const char *s)
{
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                         "0123456789!#$%&'*+-.^_`|~");

    return n > 0 && s[n] == '\0';
}

/* Tab and visible characters only: no CR or LF to start a new header. */
static int http_is_field_value(const char *s)
{
    for (; *s != '\0'; s++) {
        if (((unsigned char)*s < ' ' && *s != '\t') || *s == 0x7f) {
            return 0;
        }
    }
    return 1;
}

static int http_is_signing(const char *name)
{
    return strcasecmp(name, "webhook-id") == 0 ||
           strcasecmp(name, "webhook-timestamp") == 0 ||
           strcasecmp(name, "webhook-signature") == 0;
}

/* Headers that frame the body: curl's to set, or the request breaks. */
static int http_is_framing(const char *name)
{
    return strcasecmp(name, "content-length") == 0 ||
           strcasecmp(name, "transfer-encoding") == 0;
}

/* Adds "Name: value" to the instance's headers (skipped when checking). */
static int http_header_add(struct http *s, const char *name, const char *value)
{
    size_t size = strlen(name) + strlen(value) + 3;
    char *line = malloc(size);
    struct curl_slist *more = NULL;

    if (line == NULL) {
        return -1;
    }
    /* "Name;" is how curl sends a header with an empty value. */
    snprintf(line, size, value[0] != '\0' ? "%s: %s" : "%s;", name, value);
    more = curl_slist_append(s->headers, line);
    explicit_bzero(line, size);
    free(line);
    if (more == NULL) {
        return -1;
    }
    s->headers = more;
    return 0;
}

/* Keeps a templated header for http_template_render. */
static int http_dynamic_add(struct http *s, const char *name, const char *value)
{
    struct http_dynamic *d = &s->dynamic[s->dynamic_count];

    d->name = strdup(name);
    d->value = strdup(value);
    if (d->name == NULL || d->value == NULL) {
        free(d->name);
        free(d->value);
        d->name = NULL;
        d->value = NULL;
        return -1;
    }
    s->dynamic_count++;
    return 0;
}

static int http_header(const struct sb_plugin_config *map, struct http *s,
                       const char *name)
{
    const struct sb_plugin_host *host = s->host;
    const char *value = NULL;
    int templated;
    int rc = 0;

    if (host->config_string(map, name, 1, NULL, &value) != 0) {
        return -1;
    }
    if (!http_is_token(name)) {
        return host->config_error(map, name,
                                  "headers: a name that is not an HTTP token");
    }
    if (!http_is_field_value(value)) {
        return host->config_error(
            map, name, "headers: %s: a CR, LF or control byte in the value",
            name);
    }
    if (http_is_framing(name) ||
        (s->conf.signing_secret != NULL && http_is_signing(name))) {
        return host->config_error(map, name,
                                  "headers: %s is set by switchboard", name);
    }
    templated = http_template_check(value);
    if (templated < 0) {
        return host->config_error(
            map, name,
            "headers: %s: a template names only event_id, event_type, received_at or rule",
            name);
    }
    if (strcasecmp(name, "content-type") == 0) {
        s->has_content_type = 1;
    }
    if (!host->check_only) {
        rc = templated ? http_dynamic_add(s, name, value)
                       : http_header_add(s, name, value);
    }
    return rc == 0 ? 0
                   : host->config_error(map, name, "headers: out of memory");
}

static int http_headers(const struct sb_plugin_config *cfg, struct http *s)
{
    const struct sb_plugin_config *map = NULL;
    struct sb_plugin_strings names = {NULL, 0};
    int rc = 0;
    size_t i;

    if (s->host->config_map(cfg, "headers", 0, &map) != 0) {
        return -1;
    }
    if (map == NULL) {
        return 0;
    }
    s->host->config_keys(map, &names);
    if (names.count > HTTP_HEADERS_MAX) {
        return s->host->config_error(map, names.items[0], "headers: at most %d",
                                     HTTP_HEADERS_MAX);
    }
    for (i = 0; i < names.count; i++) {
        rc |= http_header(map, s, names.items[i]);
    }
    return rc;
}

static int http_check_secret(const struct sb_plugin_config *cfg, struct http *s)
{
    const char *secret = s->conf.signing_secret;
    size_t tag = strlen(HTTP_SECRET_TAG);
    long n = -1;

    if (strncmp(secret, HTTP_SECRET_TAG, tag) == 0) {
        n = http_b64_decode(secret + tag, s->key, sizeof(s->key));
    }
    if (n <= 0) {
        return s->host->config_error(
            cfg, "signing_secret",
            "signing_secret: expected whsec_<base64 key>");
    }
    s->key_len = (size_t)n;
    return 0;
}

/* Checks the values that were read; each problem is recorded. */
static int http_check(const struct sb_plugin_config *cfg, struct http *s)
{
    const struct sb_plugin_host *host = s->host;
    const struct http_conf *c = &s->conf;
    int rc = 0;

    if (c->url != NULL &&
        web_url_host(c->url, s->host_name, sizeof(s->host_name)) < 0) {
        rc = host->config_error(cfg, "url",
                                "url: expected an http:// or https:// URL");
    }
    if (c->method != NULL && strcasecmp(c->method, "POST") != 0 &&
        strcasecmp(c->method, "PUT") != 0) {
        rc = host->config_error(cfg, "method", "method: expected POST or PUT");
    }
    s->put = c->method != NULL && strcasecmp(c->method, "PUT") == 0;
    if (c->signing_secret != NULL) {
        rc |= http_check_secret(cfg, s);
    }
    return rc;
}

/* ---- curl handles ------------------------------------------------------ */

/* The answer's body is not needed: only its status. */
static size_t http_on_reply(char *data, size_t size, size_t count,
                            void *userdata)
{
    (void)data;
    (void)userdata;
    return size * count;
}

/* A new handle with everything that stays the same from one request on. */
static CURL *http_handle_new(const struct http *s)
{
    const struct http_conf *c = &s->conf;
    CURL *h = curl_easy_init();
    CURLcode rc = h != NULL ? CURLE_OK : CURLE_OUT_OF_MEMORY;

#define HTTP_SET(opt, val)                          \
    do {                                            \
        if (rc == CURLE_OK) {                       \
            rc = curl_easy_setopt(h, (opt), (val)); \
        }                                           \
    } while (0)
    if (rc == CURLE_OK) {
        rc = web_handle_transport(h, &c->transport);
    }
    HTTP_SET(CURLOPT_URL, c->url);
    /* A PUT is sent the way a POST is, under its own name. */
    HTTP_SET(CURLOPT_POST, 1L);
    if (s->put) {
        HTTP_SET(CURLOPT_CUSTOMREQUEST, "PUT");
    }
    HTTP_SET(CURLOPT_HTTPHEADER, s->headers);
    HTTP_SET(CURLOPT_WRITEFUNCTION, http_on_reply);
#undef HTTP_SET
    if (rc != CURLE_OK) {
        curl_easy_cleanup(h);
        return NULL;
    }
    return h;
}

/* An idle handle, or a new one; NULL only when curl cannot make one. */
static CURL *http_handle_take(struct http *s)
{
    CURL *h = web_pool_take(&s->pool);

    return h != NULL ? h : http_handle_new(s);
}

/* Header lines may hold tokens: wiped before they are freed. */
static void http_headers_free(struct curl_slist *list)
{
    struct curl_slist *h;

    for (h = list; h != NULL; h = h->next) {
        explicit_bzero(h->data, strlen(h->data));
    }
    curl_slist_free_all(list);
}

/* ---- signing ----------------------------------------------------------- */

/* base64(HMAC-SHA256(key, id "." timestamp "." body)) into out (45 B). */
static int http_sign(const struct http *s, const char *id, const char *ts,
                     const char *body, size_t len, char *out)
{
    unsigned char mac[HTTP_SHA256_LEN];
    gnutls_hmac_hd_t hd;
    int rc;

    rc = gnutls_hmac_init(&hd, GNUTLS_MAC_SHA256, s->key, s->key_len);
    if (rc < 0) {
        return -1;
    }
    rc = gnutls_hmac(hd, id, strlen(id));
    rc = rc < 0 ? rc : gnutls_hmac(hd, ".", 1);
    rc = rc < 0 ? rc : gnutls_hmac(hd, ts, strlen(ts));
    rc = rc < 0 ? rc : gnutls_hmac(hd, ".", 1);
    rc = rc < 0 ? rc : gnutls_hmac(hd, body, len);
    gnutls_hmac_deinit(hd, mac);
    if (rc < 0) {
        return -1;
    }
    http_b64_encode(mac, sizeof(mac), out);
    explicit_bzero(mac, sizeof(mac));
    return 0;
}

/* Appends a copy of line; on failure frees the whole list. */
static int http_slist_add(struct curl_slist **list, const char *line)
{
    struct curl_slist *more = curl_slist_append(*list, line);

    if (more == NULL) {
        http_headers_free(*list);
        *list = NULL;
        return -1;
    }
    *list = more;
    return 0;
}

/* The three headers of Standard Webhooks, signing this attempt's body. */
static int http_sign_headers(const struct http *s,
                             const struct sb_plugin_message *msg,
                             struct curl_slist **list)
{
    char id[128];
    char ts[32];
    char sig[HTTP_SHA256_LEN / 3 * 4 + 8];
    char line[192];
    int rc;

    /*
     * The same id on every attempt of a delivery, so a receiver can drop
     * a repeat; the timestamp, and so the signature, are the attempt's.
     */
    snprintf(id, sizeof(id), "msg_%s_%lld", msg->event_id,
             (long long)msg->delivery_id);
    snprintf(ts, sizeof(ts), "%lld", (long long)time(NULL));
    if (http_sign(s, id, ts, msg->fields[0], msg->field_lens[0], sig) != 0) {
        http_headers_free(*list);
        *list = NULL;
        return -1;
    }
    snprintf(line, sizeof(line), "webhook-id: %s", id);
    rc = http_slist_add(list, line);
    snprintf(line, sizeof(line), "webhook-timestamp: %s", ts);
    rc = rc == 0 ? http_slist_add(list, line) : rc;
    snprintf(line, sizeof(line), "webhook-signature: v1,%s", sig);
    rc = rc == 0 ? http_slist_add(list, line) : rc;
    return rc;
}

/*
 * The headers of one request: the instance's fixed ones, the templated
 * ones rendered for msg, and the signature's. Returns 0 with *out_list
 * (the caller frees it with http_headers_free), or -1 when out of memory
 * or unable to sign.
 */
static int http_request_headers(const struct http *s,
                                const struct sb_plugin_message *msg,
                                struct curl_slist **out_list)
{
    const struct curl_slist *h;
    struct curl_slist *list = NULL;
    int rc = 0;
    size_t i;

    *out_list = NULL;
    for (h = s->headers; h != NULL && rc == 0; h = h->next) {
        rc = http_slist_add(&list, h->data);
    }
    for (i = 0; i < s->dynamic_count && rc == 0; i++) {
        char *line = http_template_render(&s->dynamic[i], msg);

        if (line == NULL) {
            http_headers_free(list);
            return -1;
        }
        rc = http_slist_add(&list, line);
        explicit_bzero(line, strlen(line));
        free(line);
    }
    if (rc == 0 && s->key_len > 0) {
        rc = http_sign_headers(s, msg, &list);
    }
    if (rc != 0) {
        return -1;
    }
    *out_list = list;
    return 0;
}

/* ---- one attempt ------------------------------------------------------- */

static enum sb_plugin_status http_classify(CURL *h, long status,
                                           struct sb_plugin_result *out)
{
    curl_off_t wait_s = 0;

    if (status >= 200 && status < 300) {
        return SB_PLUGIN_DELIVERED;
    }
    snprintf(out->error, sizeof(out->error), "HTTP %ld", status);
    if (status == 408 || status == 429 || status >= 500) {
        /* Seconds or an HTTP date; curl turns either into seconds. */
        if (curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &wait_s) == CURLE_OK &&
            wait_s > 0) {
            out->retry_after_ms = (uint64_t)wait_s * 1000u;
        }
        return SB_PLUGIN_RETRY;
    }
    return SB_PLUGIN_FAILED;
}

/* Sends the body on h; a network failure or timeout is a retry. */
static enum sb_plugin_status http_send(struct http *s, CURL *h,
                                       const struct sb_plugin_message *msg,
                                       struct curl_slist *headers,
                                       struct sb_plugin_result *out)
{
    long status = 0;
    CURLcode rc;

    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, msg->fields[0]);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)msg->field_lens[0]);
    rc = curl_easy_perform(h);
    /* The handle outlives this call; the message and the list do not. */
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, s->headers);
    if (rc != CURLE_OK) {
        /* curl's words name the failure, never the URL. */
        snprintf(out->error, sizeof(out->error), "%s", curl_easy_strerror(rc));
        s->host->log(s->host, SB_PLUGIN_LOG_DEBUG, "request to %s: %s",
                     s->host_name, out->error);
        return SB_PLUGIN_RETRY;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    s->host->log(s->host, SB_PLUGIN_LOG_DEBUG, "request to %s: HTTP %ld",
                 s->host_name, status);
    return http_classify(h, status, out);
}

/* ---- the plugin -------------------------------------------------------- */

static void http_destroy(void *instance)
{
    struct http *s = instance;
    size_t i;

    if (s == NULL) {
        return;
    }
    web_pool_destroy(&s->pool);
    http_headers_free(s->headers);
    for (i = 0; i < s->dynamic_count; i++) {
        explicit_bzero(s->dynamic[i].value, strlen(s->dynamic[i].value));
        free(s->dynamic[i].name);
        free(s->dynamic[i].value);
    }
    if (s->curl_ready) {
        web_global_give();
    }
    /* The URL may carry a token, the secret is one. */
    if (s->conf.url != NULL) {
        explicit_bzero(s->conf.url, strlen(s->conf.url));
    }
    if (s->conf.signing_secret != NULL) {
        explicit_bzero(s->conf.signing_secret, strlen(s->conf.signing_secret));
    }
    explicit_bzero(s->key, sizeof(s->key));
    free(s->conf.url);
    free(s->conf.method);
    free(s->conf.signing_secret);
    web_transport_cleanup(&s->conf.transport);
    free(s);
}

/* What only a delivering instance needs: curl and our own headers. */
static int http_start(struct http *s)
{
    int rc = 0;

    if (web_global_take() != 0) {
        s->host->log(s->host, SB_PLUGIN_LOG_ERROR, "libcurl did not start");
        return -1;
    }
    s->curl_ready = 1;
    if (!s->has_content_type) {
        rc = http_header_add(s, "Content-Type", "application/json");
    }
    /* "Expect:" drops curl's 100-continue round trip. */
    if (rc == 0) {
        rc = http_slist_add(&s->headers, "Expect:");
    }
    if (rc != 0) {
        s->host->log(s->host, SB_PLUGIN_LOG_ERROR, "out of memory");
    }
    return rc;
}

/* Choices that weaken transport security are made loudly. */
static void http_warn(const struct http *s)
{
    const struct sb_plugin_host *host = s->host;

    if (!s->conf.transport.tls_verify) {
        host->log(host, SB_PLUGIN_LOG_WARN,
                  "tls_verify is false: the certificate of %s is not checked",
                  s->host_name);
    }
    if (strncasecmp(s->conf.url, "http://", 7) == 0 &&
        !web_is_loopback(s->host_name)) {
        host->log(host, SB_PLUGIN_LOG_WARN,
                  "url is plain http: requests to %s travel unencrypted",
                  s->host_name);
    }
}

static int http_create(const struct sb_plugin_config *cfg,
                       const struct sb_plugin_host *host, void **out_instance)
{
    struct http *s = calloc(1, sizeof(*s));
    int rc;

    *out_instance = NULL;
    if (s == NULL || web_pool_init(&s->pool) != 0) {
        free(s);
        host->log(host, SB_PLUGIN_LOG_ERROR, "out of memory");
        return -1;
    }
    s->host = host;
    rc = web_read_options(cfg, host, http_options,
                          sizeof(http_options) / sizeof(http_options[0]),
                          &s->conf);
    rc |= web_read_transport(cfg, host, &s->conf.transport);
    rc |= http_check(cfg, s);
    rc |= http_headers(cfg, s);
    if (rc == 0) {
        http_warn(s);
    }
    if (rc == 0 && !host->check_only) {
        rc = http_start(s);
    }
    if (rc != 0) {
        http_destroy(s);
        return -1;
    }
    *out_instance = s;
    return 0;
}

static enum sb_plugin_status http_deliver(void *instance,
                                          const struct sb_plugin_message *msg,
                                          struct sb_plugin_result *out)
{
    struct http *s = instance;
    struct curl_slist *headers = NULL;
    enum sb_plugin_status st = SB_PLUGIN_RETRY;
    CURL *h = NULL;

    if (msg->field_count < 1) {
        snprintf(out->error, sizeof(out->error), "no body field");
        return SB_PLUGIN_FAILED;
    }
    /* Fixed headers only: the instance's list serves every request. */
    if ((s->key_len > 0 || s->dynamic_count > 0) &&
        http_request_headers(s, msg, &headers) != 0) {
        snprintf(out->error, sizeof(out->error),
                 "could not build the request headers");
        return SB_PLUGIN_RETRY;
    }
    h = http_handle_take(s);
    if (h == NULL) {
        snprintf(out->error, sizeof(out->error), "no curl handle");
    } else {
        st = http_send(s, h, msg, headers != NULL ? headers : s->headers, out);
    }
    web_pool_give(&s->pool, h);
    http_headers_free(headers);
    return st;
}

static const struct sb_plugin_field http_fields[] = {
    /* NULL: the event envelope, one line of JSON. */
    {"body", NULL, SB_PLUGIN_ESCAPE_JSON},
};

SB_PLUGIN_DECLARE = {
    .abi_version = SB_PLUGIN_ABI_VERSION,
    .size = sizeof(struct sb_plugin_descriptor),
    .name = "http",
    .description = "sends each event to an HTTP endpoint, optionally signed",
    .flags = SB_PLUGIN_THREAD_SAFE,
    .fields = http_fields,
    .field_count = sizeof(http_fields) / sizeof(http_fields[0]),
    .create = http_create,
    .deliver = http_deliver,
    .destroy = http_destroy,
    .reopen = NULL,
};
