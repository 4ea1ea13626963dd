/* SPDX-License-Identifier: MIT */
/*
 * The sms output: one text message per recipient, through Twilio's REST
 * API (provider twilio) or any gateway that takes a form or JSON body over
 * HTTP (provider http). It owns the E.164 checks done at load, the body's
 * 1600-character cap, and the memory of which recipients of a delivery
 * already got their message, so a retry texts only those still waiting.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#include <switchboard/plugin.h>

#include "../common/web.h"

#define SMS_MAX_RECIPIENTS 32
#define SMS_MAX_HEADERS    32
#define SMS_BODY_MAX_CHARS 1600 /* Twilio's limit, in characters */
#define SMS_ELLIPSIS       "\xe2\x80\xa6"
#define SMS_SENT_SLOTS     256 /* recipients remembered across retries */
/* Pooled curl handles: as many as an output can have workers. */
#define SMS_HANDLES    64
#define SMS_REPLY_MAX  8192 /* reply bytes kept to find Twilio's code */
#define SMS_TWILIO_URL "https://api.twilio.com"

enum sms_provider {
    SMS_TWILIO = 1,
    SMS_HTTP = 2,
};
#define SMS_BOTH (SMS_TWILIO | SMS_HTTP)

enum sms_key_type {
    SMS_KEY_STRING,
    SMS_KEY_PATH,
    SMS_KEY_BOOL,
    SMS_KEY_DURATION,
    SMS_KEY_LIST,
    SMS_KEY_MAP,
};

/* What create() reads, borrowed from the config until create() returns. */
struct sms_settings {
    const char *ca_file;
    int tls_verify;
    uint64_t timeout_ms;
    uint64_t connect_timeout_ms;
    const char *account_sid;
    const char *auth_token;
    const char *base_url;
    const char *url;
    const char *method;
    const char *format;
    const struct sb_plugin_config *headers;
    const char *from;
    struct sb_plugin_strings to;
};

/* A key the plugin takes; `providers` read it, `required` must have it. */
struct sms_key {
    const char *name;
    enum sms_key_type type;
    unsigned providers;
    unsigned required;
    const char *def_text;
    uint64_t def_num;
    size_t offset;
    const char *help;
};

#define SMS_AT(field) offsetof(struct sms_settings, field)

static const struct sms_key sms_keys[] = {
    {"ca_file", SMS_KEY_PATH, SMS_BOTH, 0, NULL, 0, SMS_AT(ca_file),
     "PEM file of CAs to trust instead of the system's"},
    {"tls_verify", SMS_KEY_BOOL, SMS_BOTH, 0, NULL, 1, SMS_AT(tls_verify),
     "verify the peer's certificate (false is logged)"},
    {"timeout", SMS_KEY_DURATION, SMS_BOTH, 0, NULL, 10000, SMS_AT(timeout_ms),
     "total time for one request"},
    {"connect_timeout", SMS_KEY_DURATION, SMS_BOTH, 0, NULL, 5000,
     SMS_AT(connect_timeout_ms), "time to connect"},
    {"account_sid", SMS_KEY_STRING, SMS_TWILIO, SMS_TWILIO, NULL, 0,
     SMS_AT(account_sid), "Twilio account SID: user name of Basic auth"},
    {"auth_token", SMS_KEY_STRING, SMS_TWILIO, SMS_TWILIO, NULL, 0,
     SMS_AT(auth_token), "Twilio auth token: a secret"},
    {"base_url", SMS_KEY_STRING, SMS_TWILIO, 0, SMS_TWILIO_URL, 0,
     SMS_AT(base_url), "Twilio API root; http only on loopback"},
    {"url", SMS_KEY_STRING, SMS_HTTP, SMS_HTTP, NULL, 0, SMS_AT(url),
     "gateway URL; http only on loopback"},
    {"method", SMS_KEY_STRING, SMS_HTTP, 0, "POST", 0, SMS_AT(method),
     "POST or PUT"},
    {"format", SMS_KEY_STRING, SMS_HTTP, 0, "form", 0, SMS_AT(format),
     "form (To, From, Body) or json ({to, from, body})"},
    {"headers", SMS_KEY_MAP, SMS_HTTP, 0, NULL, 0, SMS_AT(headers),
     "extra request headers, name: value"},
    {"from", SMS_KEY_STRING, SMS_BOTH, SMS_TWILIO, NULL, 0, SMS_AT(from),
     "sender number, E.164 (optional for http)"},
    {"to", SMS_KEY_LIST, SMS_BOTH, SMS_BOTH, NULL, 0, SMS_AT(to),
     "recipient numbers, E.164"},
};

/* A recipient of a delivery that has its answer: sent, or refused. */
struct sms_done {
    int64_t delivery_id;
    uint32_t recipient; /* index into `to`, plus one; 0: a free slot */
    int failed;
    char error[64];
};

struct sms_handle {
    CURL *curl;
    int busy;
};

struct sms {
    const struct sb_plugin_host *host;
    enum sms_provider provider;
    int json;
    int put;
    char *url; /* may hold a token in its path: never logged */
    char *host_name;
    char *user;
    char *password;
    char *from; /* NULL: none (provider http) */
    char **to;
    size_t to_count;
    struct curl_slist *headers;
    char *ca_file;
    int tls_verify;
    long timeout_ms;
    long connect_timeout_ms;
    pthread_mutex_t lock; /* guards pool, done and done_next */
    struct sms_handle pool[SMS_HANDLES];
    struct sms_done done[SMS_SENT_SLOTS];
    size_t done_next;
};

/* A reply body, kept up to SMS_REPLY_MAX bytes. */
struct sms_reply {
    char data[SMS_REPLY_MAX + 1];
    size_t len;
};

static pthread_once_t sms_once = PTHREAD_ONCE_INIT;
static CURLcode sms_global_rc;

static void sms_global_init(void)
{
    sms_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- config ------------------------------------------------------------ */

static int sms_read_key(const struct sb_plugin_host *host,
                        const struct sb_plugin_config *cfg,
                        const struct sms_key *k, int required,
                        struct sms_settings *set)
{
    char *at = (char *)set + k->offset;

    switch (k->type) {
    case SMS_KEY_STRING:
        return host->config_string(cfg, k->name, required, k->def_text,
                                   (const char **)(void *)at);
    case SMS_KEY_PATH:
        return host->config_path(cfg, k->name, required, k->def_text,
                                 (const char **)(void *)at);
    case SMS_KEY_BOOL:
        return host->config_boolean(cfg, k->name, required, (int)k->def_num,
                                    (int *)(void *)at);
    case SMS_KEY_DURATION:
        return host->config_duration(cfg, k->name, required, k->def_num,
                                     (uint64_t *)(void *)at);
    case SMS_KEY_LIST:
        return host->config_strings(cfg, k->name, required,
                                    (struct sb_plugin_strings *)(void *)at);
    case SMS_KEY_MAP:
        return host->config_map(cfg, k->name, required,
                                (const struct sb_plugin_config **)(void *)at);
    }
    return -1;
}

/* "+" then 8 to 15 digits, the first not 0 (ITU-T E.164). */
static int sms_is_e164(const char *s)
{
    size_t n = 0;

    if (s[0] != '+' || s[1] == '0') {
        return 0;
    }
    for (s++; *s != '\0'; s++) {
        if (*s < '0' || *s > '9') {
            return 0;
        }
        n++;
    }
    return n >= 8 && n <= 15;
}

/*
 * Checks that `key` holds an https URL (http only on loopback, for tests
 * and local gateways) and gives its host, the one part logs may show.
 */
static int sms_check_url(const struct sb_plugin_host *host,
                         const struct sb_plugin_config *cfg, const char *key,
                         const char *url, char **out_host)
{
    CURLU *u = curl_url();
    char *scheme = NULL;
    char *name = NULL;
    int rc = -1;

    *out_host = NULL;
    if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &name, 0) != CURLUE_OK) {
        host->config_error(cfg, key, "%s: not a valid URL", key);
        goto out;
    }
    if (strcmp(scheme, "https") != 0 &&
        !(strcmp(scheme, "http") == 0 && web_is_loopback(name))) {
        host->config_error(
            cfg, key,
            "%s: expected https:// (http:// only to 127.0.0.1 or localhost)",
            key);
        goto out;
    }
    *out_host = strdup(name);
    rc = *out_host != NULL ? 0 : host->config_error(cfg, key, "out of memory");
out:
    curl_free(scheme);
    curl_free(name);
    curl_url_cleanup(u);
    return rc;
}

/* Every recipient (and a sender, when given) must be E.164. */
static int sms_check_numbers(const struct sb_plugin_host *host,
                             const struct sb_plugin_config *cfg,
                             const struct sms_settings *set)
{
    int rc = 0;
    size_t i;

    if (set->from != NULL && !sms_is_e164(set->from)) {
        rc = host->config_error(
            cfg, "from",
            "from: expected an E.164 number (+ then 8 to 15 digits)");
    }
    if (set->to.count == 0 || set->to.count > SMS_MAX_RECIPIENTS) {
        return host->config_error(cfg, "to", "to: expected 1 to %d numbers",
                                  SMS_MAX_RECIPIENTS);
    }
    for (i = 0; i < set->to.count; i++) {
        if (!sms_is_e164(set->to.items[i])) {
            rc = host->config_error(
                cfg, "to",
                "to: item %zu is not an E.164 number (+ then 8 to 15 digits)",
                i + 1);
        }
    }
    return rc;
}

/* A header name is an RFC 9110 token; a value has no control characters. */
static int sms_header_ok(const char *name, const char *value)
{
    const char *p;

    if (name[0] == '\0' ||
        strspn(name, "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(name)) {
        return 0;
    }
    for (p = value; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 && *p != '\t') {
            return 0;
        }
    }
    return 1;
}

static int sms_add_header(struct curl_slist **list, const char *name,
                          const char *value)
{
    size_t n = strlen(name) + strlen(value) + 3;
    char *line = malloc(n);
    struct curl_slist *grown = NULL;

    if (line != NULL) {
        snprintf(line, n, "%s: %s", name, value);
        grown = curl_slist_append(*list, line);
        explicit_bzero(line, n); /* it may be an Authorization header */
        free(line);
    }
    if (grown == NULL) {
        return -1;
    }
    *list = grown;
    return 0;
}

/* The http provider's request headers, plus Content-Type and no Expect. */
static int sms_read_headers(struct sms *sms, const struct sms_settings *set)
{
    const struct sb_plugin_host *host = sms->host;
    struct sb_plugin_strings names = {NULL, 0};
    int have_type = 0;
    int rc = 0;
    size_t i;

    if (set->headers != NULL) {
        host->config_keys(set->headers, &names);
    }
    if (names.count > SMS_MAX_HEADERS) {
        return host->config_error(set->headers, names.items[0],
                                  "headers: at most %d", SMS_MAX_HEADERS);
    }
    for (i = 0; i < names.count && rc == 0; i++) {
        const char *value = NULL;

        if (host->config_string(set->headers, names.items[i], 1, NULL,
                                &value) != 0) {
            rc = -1;
        } else if (!sms_header_ok(names.items[i], value)) {
            rc = host->config_error(
                set->headers, names.items[i],
                "headers: %s: a bad name, or control characters in the value",
                names.items[i]);
        } else {
            have_type |= strcasecmp(names.items[i], "Content-Type") == 0;
            rc = sms_add_header(&sms->headers, names.items[i], value);
        }
    }
    if (rc == 0 && sms->json && !have_type) {
        rc = sms_add_header(&sms->headers, "Content-Type", "application/json");
    }
    /* A 100-continue round trip only slows a small body down. */
    return rc == 0 ? sms_add_header(&sms->headers, "Expect", "") : rc;
}

static char *sms_twilio_url(const char *base, const char *sid)
{
    size_t len = strlen(base);
    size_t n;
    char *url;

    while (len > 0 && base[len - 1] == '/') {
        len--;
    }
    n = len + strlen(sid) + sizeof("/2010-04-01/Accounts//Messages.json");
    url = malloc(n);
    if (url != NULL) {
        snprintf(url, n, "%.*s/2010-04-01/Accounts/%s/Messages.json", (int)len,
                 base, sid);
    }
    return url;
}

static int sms_setup_twilio(struct sms *sms, const struct sb_plugin_config *cfg,
                            const struct sms_settings *set)
{
    const struct sb_plugin_host *host = sms->host;
    const char *sid = set->account_sid;

    /* The SID lands in the URL's path: letters and digits only. */
    if (sid[0] == '\0' ||
        strspn(sid, "0123456789abcdefghijklmnopqrstuvwxyz"
                    "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != strlen(sid)) {
        return host->config_error(cfg, "account_sid",
                                  "account_sid: expected letters and digits");
    }
    if (sms_check_url(host, cfg, "base_url", set->base_url, &sms->host_name) !=
        0) {
        return -1;
    }
    sms->url = sms_twilio_url(set->base_url, sid);
    sms->user = strdup(sid);
    sms->password = strdup(set->auth_token);
    if (sms->url == NULL || sms->user == NULL || sms->password == NULL ||
        sms_add_header(&sms->headers, "Expect", "") != 0) {
        return host->config_error(cfg, "account_sid", "out of memory");
    }
    return 0;
}

static int sms_setup_http(struct sms *sms, const struct sb_plugin_config *cfg,
                          const struct sms_settings *set)
{
    const struct sb_plugin_host *host = sms->host;
    int rc = 0;

    if (strcasecmp(set->method, "POST") != 0 &&
        strcasecmp(set->method, "PUT") != 0) {
        rc = host->config_error(cfg, "method", "method: expected POST or PUT");
    }
    sms->put = strcasecmp(set->method, "PUT") == 0;
    if (strcmp(set->format, "form") != 0 && strcmp(set->format, "json") != 0) {
        rc = host->config_error(cfg, "format", "format: expected form or json");
    }
    sms->json = strcmp(set->format, "json") == 0;
    if (sms_check_url(host, cfg, "url", set->url, &sms->host_name) != 0) {
        rc = -1;
    }
    sms->url = strdup(set->url);
    if (sms->url == NULL) {
        rc = host->config_error(cfg, "url", "out of memory");
    }
    return sms_read_headers(sms, set) != 0 ? -1 : rc;
}

static int sms_copy_common(struct sms *sms, const struct sb_plugin_config *cfg,
                           const struct sms_settings *set)
{
    size_t i;

    sms->tls_verify = set->tls_verify;
    sms->timeout_ms = (long)set->timeout_ms;
    sms->connect_timeout_ms = (long)set->connect_timeout_ms;
    if (set->ca_file != NULL && access(set->ca_file, R_OK) != 0) {
        return sms->host->config_error(cfg, "ca_file",
                                       "ca_file: cannot read the file");
    }
    sms->ca_file = set->ca_file ? strdup(set->ca_file) : NULL;
    sms->from = set->from ? strdup(set->from) : NULL;
    sms->to = calloc(set->to.count, sizeof(*sms->to));
    if ((set->ca_file && !sms->ca_file) || (set->from && !sms->from) ||
        sms->to == NULL) {
        return sms->host->config_error(cfg, "to", "out of memory");
    }
    for (i = 0; i < set->to.count; i++) {
        sms->to[i] = strdup(set->to.items[i]);
        if (sms->to[i] == NULL) {
            return sms->host->config_error(cfg, "to", "out of memory");
        }
        sms->to_count++;
    }
    return 0;
}

/* ---- lifecycle --------------------------------------------------------- */

static void sms_destroy(void *instance)
{
    struct sms *sms = instance;
    size_t i;

    if (sms == NULL) {
        return;
    }
    for (i = 0; i < SMS_HANDLES; i++) {
        curl_easy_cleanup(sms->pool[i].curl);
    }
    for (i = 0; i < sms->to_count; i++) {
        free(sms->to[i]);
    }
    free(sms->to);
    curl_slist_free_all(sms->headers);
    if (sms->password != NULL) {
        explicit_bzero(sms->password, strlen(sms->password));
    }
    free(sms->password);
    free(sms->user);
    free(sms->url);
    free(sms->host_name);
    free(sms->from);
    free(sms->ca_file);
    pthread_mutex_destroy(&sms->lock);
    free(sms);
}

/* Reads every key the provider takes, so each mistake is reported. */
static int sms_read_settings(const struct sb_plugin_config *cfg,
                             const struct sb_plugin_host *host,
                             enum sms_provider provider,
                             struct sms_settings *set)
{
    int rc = 0;
    size_t i;

    for (i = 0; i < sizeof(sms_keys) / sizeof(sms_keys[0]); i++) {
        const struct sms_key *k = &sms_keys[i];

        if ((k->providers & provider) != 0 &&
            sms_read_key(host, cfg, k, (k->required & provider) != 0, set) !=
                0) {
            rc = -1;
        }
    }
    return rc;
}

static int sms_read_provider(const struct sb_plugin_config *cfg,
                             const struct sb_plugin_host *host,
                             enum sms_provider *out)
{
    const char *name = NULL;

    *out = SMS_TWILIO;
    if (host->config_string(cfg, "provider", 1, NULL, &name) != 0) {
        return -1;
    }
    if (strcmp(name, "http") == 0) {
        *out = SMS_HTTP;
    } else if (strcmp(name, "twilio") != 0) {
        return host->config_error(cfg, "provider",
                                  "provider: expected twilio or http");
    }
    return 0;
}

static int sms_create(const struct sb_plugin_config *cfg,
                      const struct sb_plugin_host *host, void **out_instance)
{
    struct sms_settings set;
    struct sms *sms = NULL;
    enum sms_provider provider;
    int numbers_rc;
    int rc = -1;

    *out_instance = NULL;
    memset(&set, 0, sizeof(set));
    pthread_once(&sms_once, sms_global_init);
    if (sms_global_rc != CURLE_OK) {
        host->log(host, SB_PLUGIN_LOG_ERROR, "libcurl did not initialise");
        return -1;
    }
    if (sms_read_provider(cfg, host, &provider) != 0 ||
        sms_read_settings(cfg, host, provider, &set) != 0) {
        return -1;
    }
    /* Checked apart, so a bad number and a bad URL are reported together. */
    numbers_rc = sms_check_numbers(host, cfg, &set);
    sms = calloc(1, sizeof(*sms));
    if (sms == NULL || pthread_mutex_init(&sms->lock, NULL) != 0) {
        free(sms);
        return host->config_error(cfg, "provider", "out of memory");
    }
    sms->host = host;
    sms->provider = provider;
    rc = provider == SMS_TWILIO ? sms_setup_twilio(sms, cfg, &set)
                                : sms_setup_http(sms, cfg, &set);
    if (sms_copy_common(sms, cfg, &set) != 0 || rc != 0 || numbers_rc != 0) {
        sms_destroy(sms);
        return -1;
    }
    if (!sms->tls_verify && !host->check_only) {
        host->log(
            host, SB_PLUGIN_LOG_WARN,
            "TLS certificate verification is off for %s (tls_verify: false)",
            sms->host_name);
    }
    *out_instance = sms;
    return 0;
}

/* ---- curl handles ------------------------------------------------------ */

/*
 * One handle per delivering thread, reused so its connection and TLS
 * session survive between messages. A pool rather than thread-local
 * storage, so destroy() can free every handle whatever threads ran.
 */
static CURL *sms_handle_take(struct sms *sms)
{
    CURL *curl = NULL;
    size_t i;

    pthread_mutex_lock(&sms->lock);
    for (i = 0; i < SMS_HANDLES && curl == NULL; i++) {
        if (!sms->pool[i].busy) {
            if (sms->pool[i].curl == NULL) {
                sms->pool[i].curl = curl_easy_init();
            }
            if (sms->pool[i].curl != NULL) {
                sms->pool[i].busy = 1;
                curl = sms->pool[i].curl;
            }
        }
    }
    pthread_mutex_unlock(&sms->lock);
    /* More threads than slots: a handle for this delivery only. */
    return curl != NULL ? curl : curl_easy_init();
}

static void sms_handle_give(struct sms *sms, CURL *curl)
{
    size_t i;

    pthread_mutex_lock(&sms->lock);
    for (i = 0; i < SMS_HANDLES; i++) {
        if (sms->pool[i].curl == curl) {
            sms->pool[i].busy = 0;
            curl = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&sms->lock);
    curl_easy_cleanup(curl);
}

/* ---- who already has the message ---------------------------------------
 *
 * Delivery is at-least-once: this table lives in memory only, so after a
 * restart or a reload, or once SMS_SENT_SLOTS newer answers pushed an
 * entry out, a retry texts that recipient again.
 */

static struct sms_done *sms_done_find(struct sms *sms, int64_t delivery_id,
                                      size_t recipient)
{
    size_t i;

    for (i = 0; i < SMS_SENT_SLOTS; i++) {
        if (sms->done[i].recipient == recipient + 1 &&
            sms->done[i].delivery_id == delivery_id) {
            return &sms->done[i];
        }
    }
    return NULL;
}

static int sms_done_get(struct sms *sms, int64_t delivery_id, size_t recipient)
{
    int found;

    pthread_mutex_lock(&sms->lock);
    found = sms_done_find(sms, delivery_id, recipient) != NULL;
    pthread_mutex_unlock(&sms->lock);
    return found;
}

static void sms_done_put(struct sms *sms, int64_t delivery_id, size_t recipient,
                         const char *error)
{
    struct sms_done *slot;

    pthread_mutex_lock(&sms->lock);
    slot = &sms->done[sms->done_next];
    sms->done_next = (sms->done_next + 1) % SMS_SENT_SLOTS;
    slot->delivery_id = delivery_id;
    slot->recipient = (uint32_t)recipient + 1;
    slot->failed = error != NULL;
    snprintf(slot->error, sizeof(slot->error), "%.*s",
             (int)sizeof(slot->error) - 1, error ? error : "");
    pthread_mutex_unlock(&sms->lock);
}

/*
 * Forgets a delivery that has its final answer, and says which recipient
 * refused it, if any: out->error names it, the delivery failed.
 */
static int sms_done_finish(struct sms *sms, int64_t delivery_id,
                           struct sb_plugin_result *out)
{
    int failed = 0;
    size_t i;

    pthread_mutex_lock(&sms->lock);
    for (i = 0; i < SMS_SENT_SLOTS; i++) {
        struct sms_done *slot = &sms->done[i];

        if (slot->recipient == 0 || slot->delivery_id != delivery_id) {
            continue;
        }
        if (slot->failed && !failed) {
            failed = 1;
            snprintf(out->error, sizeof(out->error), "recipient %u of %zu: %s",
                     slot->recipient, sms->to_count, slot->error);
        }
        memset(slot, 0, sizeof(*slot));
    }
    pthread_mutex_unlock(&sms->lock);
    return failed;
}

/* ---- one message ------------------------------------------------------- */

/*
 * The body cut to SMS_BODY_MAX_CHARS characters (code points, not
 * bytes), the last one an ellipsis when anything was cut. Caller frees.
 */
static char *sms_body_cap(const char *text, size_t len)
{
    size_t chars = 0;
    size_t cut = len;
    size_t i;
    char *body;

    for (i = 0; i < len; i++) {
        if (((unsigned char)text[i] & 0xC0) != 0x80) {
            if (chars == SMS_BODY_MAX_CHARS - 1) {
                cut = i;
            }
            chars++;
        }
    }
    if (chars <= SMS_BODY_MAX_CHARS) {
        cut = len;
    }
    body = malloc(cut + sizeof(SMS_ELLIPSIS));
    if (body != NULL) {
        memcpy(body, text, cut);
        memcpy(body + cut, cut < len ? SMS_ELLIPSIS : "",
               cut < len ? sizeof(SMS_ELLIPSIS) : 1);
    }
    return body;
}

/* `name=value&`, the value percent-encoded; 0 or -1 out of memory. */
static int sms_form_add(CURL *curl, char **buf, const char *name,
                        const char *value)
{
    char *escaped = curl_easy_escape(curl, value, 0);
    size_t have = *buf ? strlen(*buf) : 0;
    size_t n;
    char *grown;

    if (escaped == NULL) {
        return -1;
    }
    n = have + strlen(name) + strlen(escaped) + 3;
    grown = realloc(*buf, n);
    if (grown != NULL) {
        snprintf(grown + have, n - have, "%s%s=%s", have ? "&" : "", name,
                 escaped);
        *buf = grown;
    }
    curl_free(escaped);
    return grown != NULL ? 0 : -1;
}

/* The request body for one recipient; NULL when out of memory. */
static char *sms_payload(const struct sms *sms, CURL *curl, const char *to,
                         const char *body)
{
    cJSON *doc;
    char *out = NULL;

    if (!sms->json) {
        if (sms_form_add(curl, &out, "To", to) != 0 ||
            (sms->from && sms_form_add(curl, &out, "From", sms->from) != 0) ||
            sms_form_add(curl, &out, "Body", body) != 0) {
            free(out);
            return NULL;
        }
        return out;
    }
    doc = cJSON_CreateObject();
    if (doc != NULL && cJSON_AddStringToObject(doc, "to", to) != NULL &&
        (sms->from == NULL ||
         cJSON_AddStringToObject(doc, "from", sms->from) != NULL) &&
        cJSON_AddStringToObject(doc, "body", body) != NULL) {
        char *text = cJSON_PrintUnformatted(doc);

        out = text ? strdup(text) : NULL;
        cJSON_free(text);
    }
    cJSON_Delete(doc);
    return out;
}

static size_t sms_on_reply(char *data, size_t size, size_t count, void *arg)
{
    struct sms_reply *reply = arg;
    size_t n = size * count;
    size_t room = SMS_REPLY_MAX - reply->len;
    size_t take = n < room ? n : room;

    memcpy(reply->data + reply->len, data, take);
    reply->len += take;
    reply->data[reply->len] = '\0';
    return n;
}

static void sms_setup_request(const struct sms *sms, CURL *curl,
                              const char *payload, struct sms_reply *reply)
{
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, sms->url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, sms->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, sms->connect_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, sms->tls_verify ? 1L : 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, sms->tls_verify ? 2L : 0L);
    if (sms->ca_file != NULL) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, sms->ca_file);
    }
    if (sms->user != NULL) {
        curl_easy_setopt(curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(curl, CURLOPT_USERNAME, sms->user);
        curl_easy_setopt(curl, CURLOPT_PASSWORD, sms->password);
    }
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, sms->headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                     (curl_off_t)strlen(payload));
    if (sms->put) {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "PUT");
    }
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, sms_on_reply);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply);
}

/* Twilio's numeric error code from a JSON reply, or 0. */
static long sms_twilio_code(const struct sms_reply *reply)
{
    cJSON *doc = cJSON_ParseWithLength(reply->data, reply->len);
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(doc, "code");
    long value = cJSON_IsNumber(code) ? (long)code->valuedouble : 0;

    cJSON_Delete(doc);
    return value;
}

/* 2xx delivered; 408, 429, 5xx and no answer retry; the rest failed. */
static enum sb_plugin_status sms_classify(const struct sms *sms, CURL *curl,
                                          CURLcode cc,
                                          const struct sms_reply *reply,
                                          struct sb_plugin_result *out)
{
    curl_off_t wait_s = 0;
    long status = 0;
    long code;

    if (cc != CURLE_OK) {
        snprintf(out->error, sizeof(out->error), "%s", curl_easy_strerror(cc));
        return SB_PLUGIN_RETRY;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    snprintf(out->error, sizeof(out->error), "HTTP %ld", status);
    if (status >= 200 && status < 300) {
        out->error[0] = '\0';
        return SB_PLUGIN_DELIVERED;
    }
    if (status == 408 || status == 429 || status >= 500) {
        if (curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &wait_s) ==
                CURLE_OK &&
            wait_s > 0) {
            out->retry_after_ms = (uint64_t)wait_s * 1000;
        }
        return SB_PLUGIN_RETRY;
    }
    code = sms->provider == SMS_TWILIO ? sms_twilio_code(reply) : 0;
    if (code > 0) {
        snprintf(out->error, sizeof(out->error), "HTTP %ld twilio %ld", status,
                 code);
    }
    return SB_PLUGIN_FAILED;
}

static enum sb_plugin_status sms_send_one(const struct sms *sms, CURL *curl,
                                          const char *to, const char *body,
                                          struct sb_plugin_result *out)
{
    struct sms_reply *reply = calloc(1, sizeof(*reply));
    char *payload = sms_payload(sms, curl, to, body);
    enum sb_plugin_status status = SB_PLUGIN_RETRY;

    snprintf(out->error, sizeof(out->error), "out of memory");
    if (reply != NULL && payload != NULL) {
        sms_setup_request(sms, curl, payload, reply);
        status = sms_classify(sms, curl, curl_easy_perform(curl), reply, out);
        /* No pointer into this call's memory stays in the handle. */
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, NULL);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, NULL);
    }
    if (payload != NULL) {
        explicit_bzero(payload, strlen(payload));
    }
    free(payload);
    free(reply);
    return status;
}

/*
 * Texts every recipient that has no answer yet for this delivery; stops at
 * the first that must be retried, since the next would likely meet the
 * same outage. A refusal for one number does not keep the others waiting.
 */
static enum sb_plugin_status sms_deliver(void *instance,
                                         const struct sb_plugin_message *msg,
                                         struct sb_plugin_result *out)
{
    struct sms *sms = instance;
    char *body = sms_body_cap(msg->fields[0], msg->field_lens[0]);
    CURL *curl = sms_handle_take(sms);
    enum sb_plugin_status status = SB_PLUGIN_DELIVERED;
    size_t i;

    if (body == NULL || curl == NULL) {
        snprintf(out->error, sizeof(out->error), "out of memory");
        status = SB_PLUGIN_RETRY;
        goto out;
    }
    for (i = 0; i < sms->to_count && status != SB_PLUGIN_RETRY; i++) {
        if (sms_done_get(sms, msg->delivery_id, i)) {
            continue;
        }
        status = sms_send_one(sms, curl, sms->to[i], body, out);
        if (status == SB_PLUGIN_DELIVERED) {
            sms_done_put(sms, msg->delivery_id, i, NULL);
        } else if (status == SB_PLUGIN_FAILED) {
            sms_done_put(sms, msg->delivery_id, i, out->error);
        }
    }
    if (status != SB_PLUGIN_RETRY) {
        out->error[0] = '\0';
        status = sms_done_finish(sms, msg->delivery_id, out)
                     ? SB_PLUGIN_FAILED
                     : SB_PLUGIN_DELIVERED;
    }
out:
    if (curl != NULL) {
        sms_handle_give(sms, curl);
    }
    if (body != NULL) {
        explicit_bzero(body, strlen(body));
    }
    free(body);
    return status;
}

static const struct sb_plugin_field sms_fields[] = {
    {"body", "{{event_type}} event {{event_id}}", SB_PLUGIN_ESCAPE_NONE},
};

SB_PLUGIN_DECLARE = {
    .abi_version = SB_PLUGIN_ABI_VERSION,
    .size = sizeof(struct sb_plugin_descriptor),
    .name = "sms",
    .description = "text messages through Twilio or an HTTP gateway",
    .flags = SB_PLUGIN_THREAD_SAFE,
    .fields = sms_fields,
    .field_count = sizeof(sms_fields) / sizeof(sms_fields[0]),
    .create = sms_create,
    .deliver = sms_deliver,
    .destroy = sms_destroy,
};
