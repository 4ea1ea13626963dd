/* SPDX-License-Identifier: MIT */
/*
 * The smtp output: one plain-text mail per delivery, sent with libcurl's
 * SMTP over STARTTLS or implicit TLS. It owns the message's shape
 * (RFC 5322 headers, an RFC 2047 subject, a quoted-printable UTF-8 body)
 * and the guarantee behind it: recipients and headers come from the
 * config alone, so no payload value can add either.
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

#include <switchboard/plugin.h>

#include "../common/web.h"

#define SMTP_MAX_RECIPIENTS 50
#define SMTP_MAX_NAME       128           /* display name, in bytes */
#define SMTP_MAX_ADDRESS    254           /* RFC 5321 path limit */
#define SMTP_MESSAGE_MAX    (1024 * 1024) /* a whole message */
#define SMTP_LINE_MAX       78            /* RFC 5322 §2.1.1 */
#define SMTP_QP_LINE        76            /* RFC 2045 §6.7 */
#define SMTP_WORD_BYTES     42            /* UTF-8 bytes per encoded word */
#define SMTP_HANDLES        64 /* pooled handles: an output's most workers */

enum smtp_key_type {
    SMTP_KEY_STRING,
    SMTP_KEY_PATH,
    SMTP_KEY_BOOL,
    SMTP_KEY_DURATION,
    SMTP_KEY_LIST,
};

/* What create() reads, borrowed from the config until create() returns. */
struct smtp_settings {
    const char *url;
    const char *starttls; /* NULL: not given */
    const char *username;
    const char *password;
    const char *from;
    struct sb_plugin_strings to;
    struct sb_plugin_strings cc;
    const char *ca_file;
    int tls_verify;
    uint64_t timeout_ms;
    uint64_t connect_timeout_ms;
};

struct smtp_key {
    const char *name;
    enum smtp_key_type type;
    int required;
    const char *def_text;
    uint64_t def_num;
    size_t offset;
    const char *help;
};

#define SMTP_AT(field) offsetof(struct smtp_settings, field)

static const struct smtp_key smtp_keys[] = {
    {"url", SMTP_KEY_STRING, 1, NULL, 0, SMTP_AT(url),
     "smtp://host:port (STARTTLS) or smtps://host:port (TLS)"},
    {"starttls", SMTP_KEY_STRING, 0, NULL, 0, SMTP_AT(starttls),
     "required (default), optional or off; smtp:// only"},
    {"username", SMTP_KEY_STRING, 0, NULL, 0, SMTP_AT(username),
     "AUTH user name"},
    {"password", SMTP_KEY_STRING, 0, NULL, 0, SMTP_AT(password),
     "AUTH password: a secret"},
    {"from", SMTP_KEY_STRING, 1, NULL, 0, SMTP_AT(from),
     "sender: address, or Display Name <address>"},
    {"to", SMTP_KEY_LIST, 1, NULL, 0, SMTP_AT(to), "recipients"},
    {"cc", SMTP_KEY_LIST, 0, NULL, 0, SMTP_AT(cc), "copy recipients"},
    {"ca_file", SMTP_KEY_PATH, 0, NULL, 0, SMTP_AT(ca_file),
     "PEM file of CAs to trust instead of the system's"},
    {"tls_verify", SMTP_KEY_BOOL, 0, NULL, 1, SMTP_AT(tls_verify),
     "verify the server's certificate (false is logged)"},
    {"timeout", SMTP_KEY_DURATION, 0, NULL, 30000, SMTP_AT(timeout_ms),
     "total time for one message"},
    {"connect_timeout", SMTP_KEY_DURATION, 0, NULL, 5000,
     SMTP_AT(connect_timeout_ms), "time to connect"},
};

/* A growing text with a cap; `failed` once it could not grow. */
struct smtp_buf {
    char *data;
    size_t len;
    size_t cap;
    int failed;
};

/* An address from the config, split into its display name and address. */
struct smtp_mailbox {
    char name[SMTP_MAX_NAME + 1]; /* "" when none */
    char addr[SMTP_MAX_ADDRESS + 1];
};

struct smtp_handle {
    CURL *curl;
    int busy;
};

struct smtp {
    const struct sb_plugin_host *host;
    char *url;
    char *host_name;
    long use_ssl;
    char *username; /* NULL: no AUTH */
    char *password;
    char *mail_from; /* "<address>" */
    char *domain;    /* of the sender: the right side of Message-IDs */
    struct curl_slist *rcpt;
    char *headers; /* From, To, Cc and the MIME headers, CRLF-ended */
    char *ca_file;
    int tls_verify;
    long timeout_ms;
    long connect_timeout_ms;
    pthread_mutex_t lock; /* guards pool */
    struct smtp_handle pool[SMTP_HANDLES];
};

/* What the read callback hands curl. */
struct smtp_upload {
    const char *data;
    size_t len;
    size_t pos;
};

static pthread_once_t smtp_once = PTHREAD_ONCE_INIT;
static CURLcode smtp_global_rc;

static void smtp_global_init(void)
{
    smtp_global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- text building ----------------------------------------------------- */

static void smtp_put(struct smtp_buf *b, const char *s, size_t n)
{
    size_t cap = b->cap ? b->cap : 256;
    char *grown;

    if (b->failed) {
        return;
    }
    while (cap < b->len + n + 1) {
        cap *= 2;
    }
    if (cap > SMTP_MESSAGE_MAX) {
        b->failed = 1;
        return;
    }
    if (cap != b->cap) {
        grown = realloc(b->data, cap);
        if (grown == NULL) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void smtp_puts(struct smtp_buf *b, const char *s)
{
    smtp_put(b, s, strlen(s));
}

/* Characters on the line being written. */
static size_t smtp_column(const struct smtp_buf *b)
{
    size_t i = b->len;

    while (i > 0 && b->data[i - 1] != '\n') {
        i--;
    }
    return b->len - i;
}

/*
 * A space, then `s`; the space becomes CRLF SP (folding, RFC 5322 §3.2.2)
 * when `s` would pass SMTP_LINE_MAX. An empty token never folds: a line
 * of only white space is not allowed.
 */
static void smtp_put_token(struct smtp_buf *b, const char *s, size_t n)
{
    if (n > 0 && smtp_column(b) + 1 + n > SMTP_LINE_MAX) {
        smtp_puts(b, "\r\n");
    }
    smtp_put(b, " ", 1);
    smtp_put(b, s, n);
}

static void smtp_put_base64(struct smtp_buf *b, const unsigned char *s,
                            size_t n)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "abcdefghijklmnopqrstuvwxyz0123456789+/";
    char quad[4];
    size_t i;

    for (i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;

        v |= i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0;
        v |= i + 2 < n ? (uint32_t)s[i + 2] : 0;
        quad[0] = digits[(v >> 18) & 63];
        quad[1] = digits[(v >> 12) & 63];
        quad[2] = i + 1 < n ? digits[(v >> 6) & 63] : '=';
        quad[3] = i + 2 < n ? digits[v & 63] : '=';
        smtp_put(b, quad, 4);
    }
}

/*
 * `text` as RFC 2047 "B" encoded words, each on a token of its own and cut
 * at code point boundaries (§5: a word holds whole characters), so every
 * line stays within SMTP_LINE_MAX.
 */
static void smtp_put_encoded(struct smtp_buf *b, const char *text, size_t n)
{
    struct smtp_buf word = {NULL, 0, 0, 0};
    size_t start = 0;

    while (start < n) {
        size_t end = start + SMTP_WORD_BYTES < n ? start + SMTP_WORD_BYTES : n;

        while (end < n && end > start + 1 &&
               ((unsigned char)text[end] & 0xC0) == 0x80) {
            end--;
        }
        word.len = 0;
        smtp_puts(&word, "=?UTF-8?B?");
        smtp_put_base64(&word, (const unsigned char *)text + start,
                        end - start);
        smtp_puts(&word, "?=");
        if (word.failed) {
            b->failed = 1;
            break;
        }
        smtp_put_token(b, word.data, word.len);
        start = end;
    }
    free(word.data);
}

/* Encoded words unless plain ASCII words that fold to short lines do. */
static int smtp_needs_encoding(const char *text, size_t n)
{
    size_t word = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];

        if (c < 0x20 || c > 0x7e) {
            return 1;
        }
        word = c == ' ' ? 0 : word + 1;
        if (word > SMTP_LINE_MAX - 1) {
            return 1;
        }
    }
    /* Plain "=?" could be decoded by the reader as an encoded word. */
    return memmem(text, n, "=?", 2) != NULL;
}

/* The Subject header; CR, LF and other controls become spaces first. */
static void smtp_put_subject(struct smtp_buf *b, const char *text, size_t n)
{
    char *clean = malloc(n + 1);
    size_t i;
    size_t word = 0;

    if (clean == NULL) {
        b->failed = 1;
        return;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];

        clean[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    smtp_puts(b, "Subject:");
    if (smtp_needs_encoding(clean, n)) {
        smtp_put_encoded(b, clean, n);
    } else {
        for (i = 0; i <= n; i++) {
            if (i == n || clean[i] == ' ') {
                smtp_put_token(b, clean + word, i - word);
                word = i + 1;
            }
        }
    }
    smtp_puts(b, "\r\n");
    free(clean);
}

/* A mailbox for a header: a quoted or encoded name, then <address>. */
static void smtp_put_mailbox(struct smtp_buf *b, const struct smtp_mailbox *m,
                             int last)
{
    struct smtp_buf token = {NULL, 0, 0, 0};
    const char *p;

    if (m->name[0] != '\0' && smtp_needs_encoding(m->name, strlen(m->name))) {
        smtp_put_encoded(b, m->name, strlen(m->name));
    } else if (m->name[0] != '\0') {
        smtp_puts(&token, "\"");
        for (p = m->name; *p != '\0'; p++) {
            smtp_put(&token, "\\", *p == '"' || *p == '\\');
            smtp_put(&token, p, 1);
        }
        smtp_puts(&token, "\"");
        smtp_put_token(b, token.data, token.len);
        token.len = 0;
    }
    smtp_puts(&token, "<");
    smtp_puts(&token, m->addr);
    smtp_puts(&token, last ? ">" : ">,");
    b->failed |= token.failed;
    if (!token.failed) {
        smtp_put_token(b, token.data, token.len);
    }
    free(token.data);
}

/*
 * The body as quoted-printable (RFC 2045 §6.7): any line ending becomes
 * CRLF, long lines get soft breaks, and everything but printable ASCII is
 * =XX. No bare CR or LF reaches the wire, so the body cannot end the DATA
 * phase early; curl doubles a leading dot.
 */
static void smtp_put_qp(struct smtp_buf *b, const char *text, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t col = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)text[i];
        int eol = i + 1 == n || text[i + 1] == '\r' || text[i + 1] == '\n';
        char esc[3] = {'=', hex[c >> 4], hex[c & 15]};
        int plain = (c >= 33 && c <= 126 && c != '=') ||
                    ((c == ' ' || c == '\t') && !eol);

        if (c == '\r' || c == '\n') {
            i += c == '\r' && i + 1 < n && text[i + 1] == '\n';
            smtp_puts(b, "\r\n");
            col = 0;
            continue;
        }
        if (col + (plain ? 1 : 3) > SMTP_QP_LINE - 1) {
            smtp_puts(b, "=\r\n");
            col = 0;
        }
        smtp_put(b, plain ? (const char *)&text[i] : esc, plain ? 1 : 3);
        col += plain ? 1 : 3;
    }
    if (n == 0 || (text[n - 1] != '\r' && text[n - 1] != '\n')) {
        smtp_puts(b, "\r\n");
    }
}

/* RFC 5322 §3.3, in UTC; names spelled here so no locale changes them. */
static void smtp_put_date(struct smtp_buf *b, time_t now)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                    "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr",
                                       "May", "Jun", "Jul", "Aug",
                                       "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    char line[64];

    gmtime_r(&now, &tm);
    snprintf(line, sizeof(line),
             "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n",
             days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    smtp_puts(b, line);
}

/* ---- config ------------------------------------------------------------ */

static int smtp_read_key(const struct sb_plugin_host *host,
                         const struct sb_plugin_config *cfg,
                         const struct smtp_key *k, struct smtp_settings *set)
{
    char *at = (char *)set + k->offset;

    switch (k->type) {
    case SMTP_KEY_STRING:
        return host->config_string(cfg, k->name, k->required, k->def_text,
                                   (const char **)(void *)at);
    case SMTP_KEY_PATH:
        return host->config_path(cfg, k->name, k->required, k->def_text,
                                 (const char **)(void *)at);
    case SMTP_KEY_BOOL:
        return host->config_boolean(cfg, k->name, k->required, (int)k->def_num,
                                    (int *)(void *)at);
    case SMTP_KEY_DURATION:
        return host->config_duration(cfg, k->name, k->required, k->def_num,
                                     (uint64_t *)(void *)at);
    case SMTP_KEY_LIST:
        return host->config_strings(cfg, k->name, k->required,
                                    (struct sb_plugin_strings *)(void *)at);
    }
    return -1;
}

/* local@domain in the plain ASCII forms RFC 5321 paths take. */
static int smtp_address_ok(const char *addr)
{
    static const char alnum[] = "abcdefghijklmnopqrstuvwxyz"
                                "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const char *at = strchr(addr, '@');
    size_t local;
    size_t domain;

    if (at == NULL || at == addr || strchr(at + 1, '@') != NULL) {
        return 0;
    }
    local = strspn(addr, alnum);
    while (addr[local] != '@' &&
           strchr("!#$%&'*+-/=?^_`{|}~.", addr[local]) != NULL) {
        local += 1 + strspn(addr + local + 1, alnum);
    }
    domain = strspn(at + 1, "abcdefghijklmnopqrstuvwxyz"
                            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");
    return addr + local == at && domain > 0 && at[1 + domain] == '\0' &&
           at[1] != '.' && at[domain] != '.';
}

/* Copies `s[0..n)` without surrounding spaces and quotes; 0 if too long. */
static int smtp_copy_trimmed(char *to, size_t cap, const char *s, size_t n)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) {
        n--;
    }
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s++;
        n -= 2;
    }
    if (n >= cap) {
        return 0;
    }
    memcpy(to, s, n);
    to[n] = '\0';
    return 1;
}

/* "address" or "Display Name <address>"; 0 when it is neither. */
static int smtp_parse_mailbox(const char *text, struct smtp_mailbox *out)
{
    const char *lt = strchr(text, '<');
    const char *gt = lt ? strchr(lt, '>') : NULL;
    const char *p;

    memset(out, 0, sizeof(*out));
    for (p = text; *p != '\0'; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            return 0;
        }
    }
    if (lt == NULL) {
        return smtp_copy_trimmed(out->addr, sizeof(out->addr), text,
                                 strlen(text)) &&
               smtp_address_ok(out->addr);
    }
    if (gt == NULL || gt[1 + strspn(gt + 1, " \t")] != '\0' ||
        !smtp_copy_trimmed(out->name, sizeof(out->name), text,
                           (size_t)(lt - text)) ||
        !smtp_copy_trimmed(out->addr, sizeof(out->addr), lt + 1,
                           (size_t)(gt - lt - 1))) {
        return 0;
    }
    return strpbrk(out->name, "<>\"") == NULL && smtp_address_ok(out->addr);
}

/* Adds "To:" or "Cc:" with every mailbox of `list`, and their envelope. */
static int smtp_read_recipients(struct smtp *smtp,
                                const struct sb_plugin_config *cfg,
                                const char *key,
                                const struct sb_plugin_strings *list,
                                struct smtp_buf *headers)
{
    struct smtp_mailbox m;
    char path[SMTP_MAX_ADDRESS + 3];
    struct curl_slist *grown;
    int rc = 0;
    size_t i;

    if (list->count == 0) {
        return 0;
    }
    smtp_puts(headers, strcmp(key, "to") == 0 ? "To:" : "Cc:");
    for (i = 0; i < list->count; i++) {
        if (!smtp_parse_mailbox(list->items[i], &m)) {
            rc = smtp->host->config_error(
                cfg, key, "%s: item %zu: expected an address or Name <address>",
                key, i + 1);
            continue;
        }
        smtp_put_mailbox(headers, &m, i + 1 == list->count);
        snprintf(path, sizeof(path), "<%s>", m.addr);
        grown = curl_slist_append(smtp->rcpt, path);
        if (grown == NULL) {
            return smtp->host->config_error(cfg, key, "out of memory");
        }
        smtp->rcpt = grown;
    }
    smtp_puts(headers, "\r\n");
    return rc;
}

/* From, To, Cc and the MIME headers, which every message shares. */
static int smtp_read_addresses(struct smtp *smtp,
                               const struct sb_plugin_config *cfg,
                               const struct smtp_settings *set)
{
    struct smtp_buf headers = {NULL, 0, 0, 0};
    struct smtp_mailbox from;
    int rc = 0;

    if (!smtp_parse_mailbox(set->from, &from)) {
        rc = smtp->host->config_error(
            cfg, "from", "from: expected an address or Name <address>");
    }
    if (set->to.count == 0 ||
        set->to.count + set->cc.count > SMTP_MAX_RECIPIENTS) {
        rc = smtp->host->config_error(
            cfg, "to", "to: expected 1 to %d recipients, cc included",
            SMTP_MAX_RECIPIENTS);
    }
    smtp_puts(&headers, "From:");
    smtp_put_mailbox(&headers, &from, 1);
    smtp_puts(&headers, "\r\n");
    rc |= smtp_read_recipients(smtp, cfg, "to", &set->to, &headers);
    rc |= smtp_read_recipients(smtp, cfg, "cc", &set->cc, &headers);
    smtp_puts(&headers, "MIME-Version: 1.0\r\n"
                        "Content-Type: text/plain; charset=utf-8\r\n"
                        "Content-Transfer-Encoding: quoted-printable\r\n"
                        "Auto-Submitted: auto-generated\r\n");
    smtp->headers = headers.data;
    if (rc != 0) {
        return -1;
    }
    smtp->domain = strdup(strchr(from.addr, '@') + 1);
    smtp->mail_from = malloc(strlen(from.addr) + 3);
    if (headers.failed || smtp->domain == NULL || smtp->mail_from == NULL) {
        rc = smtp->host->config_error(cfg, "from", "out of memory");
    }
    if (smtp->mail_from != NULL) {
        snprintf(smtp->mail_from, strlen(from.addr) + 3, "<%s>", from.addr);
    }
    return rc;
}

/* The URL's scheme picks the TLS mode; starttls refines smtp:// only. */
static int smtp_read_tls_mode(struct smtp *smtp,
                              const struct sb_plugin_config *cfg,
                              const struct smtp_settings *set, int implicit)
{
    const char *mode = set->starttls ? set->starttls : "required";

    smtp->use_ssl = (long)CURLUSESSL_ALL;
    if (implicit && strcmp(mode, "required") != 0) {
        return smtp->host->config_error(
            cfg, "starttls",
            "starttls: smtps:// is always TLS; optional or off need smtp://");
    }
    if (strcmp(mode, "optional") == 0) {
        smtp->use_ssl = (long)CURLUSESSL_TRY;
    } else if (strcmp(mode, "off") == 0) {
        smtp->use_ssl = (long)CURLUSESSL_NONE;
    } else if (strcmp(mode, "required") != 0) {
        return smtp->host->config_error(
            cfg, "starttls", "starttls: expected required, optional or off");
    }
    if (!implicit && smtp->use_ssl != (long)CURLUSESSL_ALL &&
        smtp->host_name != NULL && !web_is_loopback(smtp->host_name) &&
        !smtp->host->check_only) {
        smtp->host->log(smtp->host, SB_PLUGIN_LOG_WARN,
                        "mail to %s may travel unencrypted (starttls: %s)",
                        smtp->host_name, mode);
    }
    return 0;
}

/* smtp:// or smtps:// with a host; the host is what logs show. */
static int smtp_read_url(struct smtp *smtp, const struct sb_plugin_config *cfg,
                         const struct smtp_settings *set)
{
    CURLU *u = curl_url();
    char *scheme = NULL;
    char *name = NULL;
    int rc = -1;

    if (u == NULL || curl_url_set(u, CURLUPART_URL, set->url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &name, 0) != CURLUE_OK ||
        (strcmp(scheme, "smtp") != 0 && strcmp(scheme, "smtps") != 0)) {
        smtp->host->config_error(
            cfg, "url", "url: expected smtp://host:port or smtps://host:port");
        smtp_read_tls_mode(smtp, cfg, set, 0); /* its mistakes too */
        goto out;
    }
    smtp->url = strdup(set->url);
    smtp->host_name = strdup(name);
    if (smtp->url == NULL || smtp->host_name == NULL) {
        smtp->host->config_error(cfg, "url", "out of memory");
        goto out;
    }
    rc = smtp_read_tls_mode(smtp, cfg, set, strcmp(scheme, "smtps") == 0);
out:
    curl_free(scheme);
    curl_free(name);
    curl_url_cleanup(u);
    return rc;
}

static int smtp_read_common(struct smtp *smtp,
                            const struct sb_plugin_config *cfg,
                            const struct smtp_settings *set)
{
    const struct sb_plugin_host *host = smtp->host;

    smtp->tls_verify = set->tls_verify;
    smtp->timeout_ms = (long)set->timeout_ms;
    smtp->connect_timeout_ms = (long)set->connect_timeout_ms;
    if ((set->username == NULL) != (set->password == NULL)) {
        return host->config_error(cfg, set->username ? "username" : "password",
                                  "username and password go together");
    }
    if (set->ca_file != NULL && access(set->ca_file, R_OK) != 0) {
        return host->config_error(cfg, "ca_file",
                                  "ca_file: cannot read the file");
    }
    smtp->ca_file = set->ca_file ? strdup(set->ca_file) : NULL;
    smtp->username = set->username ? strdup(set->username) : NULL;
    smtp->password = set->password ? strdup(set->password) : NULL;
    if ((set->ca_file && !smtp->ca_file) ||
        (set->username && (!smtp->username || !smtp->password))) {
        return host->config_error(cfg, "url", "out of memory");
    }
    return 0;
}

/* ---- lifecycle --------------------------------------------------------- */

static void smtp_destroy(void *instance)
{
    struct smtp *smtp = instance;
    size_t i;

    if (smtp == NULL) {
        return;
    }
    for (i = 0; i < SMTP_HANDLES; i++) {
        curl_easy_cleanup(smtp->pool[i].curl);
    }
    curl_slist_free_all(smtp->rcpt);
    if (smtp->password != NULL) {
        explicit_bzero(smtp->password, strlen(smtp->password));
    }
    free(smtp->password);
    free(smtp->username);
    free(smtp->url);
    free(smtp->host_name);
    free(smtp->mail_from);
    free(smtp->domain);
    free(smtp->headers);
    free(smtp->ca_file);
    pthread_mutex_destroy(&smtp->lock);
    free(smtp);
}

/* Reads every key, so each mistake of the output is reported at once. */
static int smtp_read_settings(const struct sb_plugin_config *cfg,
                              const struct sb_plugin_host *host,
                              struct smtp_settings *set)
{
    int rc = 0;
    size_t i;

    for (i = 0; i < sizeof(smtp_keys) / sizeof(smtp_keys[0]); i++) {
        if (smtp_read_key(host, cfg, &smtp_keys[i], set) != 0) {
            rc = -1;
        }
    }
    return rc;
}

static int smtp_create(const struct sb_plugin_config *cfg,
                       const struct sb_plugin_host *host, void **out_instance)
{
    struct smtp_settings set;
    struct smtp *smtp;
    int rc = 0;

    *out_instance = NULL;
    memset(&set, 0, sizeof(set));
    pthread_once(&smtp_once, smtp_global_init);
    if (smtp_global_rc != CURLE_OK) {
        host->log(host, SB_PLUGIN_LOG_ERROR, "libcurl did not initialise");
        return -1;
    }
    if (smtp_read_settings(cfg, host, &set) != 0) {
        return -1;
    }
    smtp = calloc(1, sizeof(*smtp));
    if (smtp == NULL || pthread_mutex_init(&smtp->lock, NULL) != 0) {
        free(smtp);
        return host->config_error(cfg, "url", "out of memory");
    }
    smtp->host = host;
    rc |= smtp_read_url(smtp, cfg, &set);
    rc |= smtp_read_addresses(smtp, cfg, &set);
    rc |= smtp_read_common(smtp, cfg, &set);
    if (rc != 0) {
        smtp_destroy(smtp);
        return -1;
    }
    if (!smtp->tls_verify && !host->check_only) {
        host->log(
            host, SB_PLUGIN_LOG_WARN,
            "TLS certificate verification is off for %s (tls_verify: false)",
            smtp->host_name);
    }
    *out_instance = smtp;
    return 0;
}

/* ---- curl handles ------------------------------------------------------ */

/*
 * One handle per delivering thread, reused so its connection survives
 * between messages. A pool rather than thread-local storage, so destroy()
 * can free every handle whatever threads ran.
 */
static CURL *smtp_handle_take(struct smtp *smtp)
{
    CURL *curl = NULL;
    size_t i;

    pthread_mutex_lock(&smtp->lock);
    for (i = 0; i < SMTP_HANDLES && curl == NULL; i++) {
        if (!smtp->pool[i].busy) {
            if (smtp->pool[i].curl == NULL) {
                smtp->pool[i].curl = curl_easy_init();
            }
            if (smtp->pool[i].curl != NULL) {
                smtp->pool[i].busy = 1;
                curl = smtp->pool[i].curl;
            }
        }
    }
    pthread_mutex_unlock(&smtp->lock);
    /* More threads than slots: a handle for this delivery only. */
    return curl != NULL ? curl : curl_easy_init();
}

static void smtp_handle_give(struct smtp *smtp, CURL *curl)
{
    size_t i;

    pthread_mutex_lock(&smtp->lock);
    for (i = 0; i < SMTP_HANDLES; i++) {
        if (smtp->pool[i].curl == curl) {
            smtp->pool[i].busy = 0;
            curl = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&smtp->lock);
    curl_easy_cleanup(curl);
}

/* ---- one message ------------------------------------------------------- */

/* The whole message: headers, a blank line, the quoted-printable body. */
static int smtp_build(const struct smtp *smtp,
                      const struct sb_plugin_message *msg, struct smtp_buf *b)
{
    char line[SMTP_MAX_ADDRESS + 128];
    char id[64];
    size_t n = strspn(msg->event_id, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "abcdefghijklmnopqrstuvwxyz");

    /* Stable across attempts, so a resent copy is seen as the same mail. */
    snprintf(id, sizeof(id), "%.*s", n < 40 ? (int)n : 40, msg->event_id);
    snprintf(line, sizeof(line), "Message-ID: <%lld.%s@%s>\r\n",
             (long long)msg->delivery_id, id, smtp->domain);
    smtp_put_date(b, time(NULL));
    smtp_puts(b, line);
    smtp_put_subject(b, msg->fields[0], msg->field_lens[0]);
    smtp_puts(b, smtp->headers);
    smtp_puts(b, "\r\n");
    smtp_put_qp(b, msg->fields[1], msg->field_lens[1]);
    return b->failed ? -1 : 0;
}

static size_t smtp_on_read(char *to, size_t size, size_t count, void *arg)
{
    struct smtp_upload *up = arg;
    size_t room = size * count;
    size_t n = up->len - up->pos < room ? up->len - up->pos : room;

    memcpy(to, up->data + up->pos, n);
    up->pos += n;
    return n;
}

static void smtp_setup(const struct smtp *smtp, CURL *curl,
                       struct smtp_upload *up)
{
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, smtp->url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, smtp->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, smtp->connect_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_USE_SSL, smtp->use_ssl);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, smtp->tls_verify ? 1L : 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, smtp->tls_verify ? 2L : 0L);
    if (smtp->ca_file != NULL) {
        curl_easy_setopt(curl, CURLOPT_CAINFO, smtp->ca_file);
    }
    if (smtp->username != NULL) {
        curl_easy_setopt(curl, CURLOPT_USERNAME, smtp->username);
        curl_easy_setopt(curl, CURLOPT_PASSWORD, smtp->password);
    }
    curl_easy_setopt(curl, CURLOPT_MAIL_FROM, smtp->mail_from);
    curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, smtp->rcpt);
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, smtp_on_read);
    curl_easy_setopt(curl, CURLOPT_READDATA, up);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)up->len);
}

/* The server's last reply decides: 4xx retry, 5xx failed; no reply retry. */
static enum sb_plugin_status smtp_classify(CURL *curl, CURLcode cc,
                                           struct sb_plugin_result *out)
{
    long code = 0;

    if (cc == CURLE_OK) {
        return SB_PLUGIN_DELIVERED;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 400 && code <= 599) {
        snprintf(out->error, sizeof(out->error), "SMTP %ld", code);
        return code >= 500 ? SB_PLUGIN_FAILED : SB_PLUGIN_RETRY;
    }
    snprintf(out->error, sizeof(out->error), "%s", curl_easy_strerror(cc));
    return SB_PLUGIN_RETRY;
}

static enum sb_plugin_status smtp_deliver(void *instance,
                                          const struct sb_plugin_message *msg,
                                          struct sb_plugin_result *out)
{
    struct smtp *smtp = instance;
    struct smtp_buf message = {NULL, 0, 0, 0};
    struct smtp_upload up = {NULL, 0, 0};
    enum sb_plugin_status status = SB_PLUGIN_RETRY;
    CURL *curl = NULL;

    if (smtp_build(smtp, msg, &message) != 0) {
        snprintf(out->error, sizeof(out->error),
                 "message over %d bytes or out of memory", SMTP_MESSAGE_MAX);
        status = SB_PLUGIN_FAILED;
        goto out;
    }
    curl = smtp_handle_take(smtp);
    if (curl == NULL) {
        snprintf(out->error, sizeof(out->error), "out of memory");
        goto out;
    }
    up = (struct smtp_upload){message.data, message.len, 0};
    smtp_setup(smtp, curl, &up);
    status = smtp_classify(curl, curl_easy_perform(curl), out);
    curl_easy_setopt(curl, CURLOPT_READDATA, NULL);
    smtp_handle_give(smtp, curl);
out:
    if (message.data != NULL) {
        explicit_bzero(message.data, message.len);
    }
    free(message.data);
    return status;
}

static const struct sb_plugin_field smtp_fields[] = {
    {"subject", "[switchboard] {{event_type}}", SB_PLUGIN_ESCAPE_HEADER},
    {"body", "Event {{event_id}} ({{event_type}}) received {{received_at}}.",
     SB_PLUGIN_ESCAPE_NONE},
};

SB_PLUGIN_DECLARE = {
    .abi_version = SB_PLUGIN_ABI_VERSION,
    .size = sizeof(struct sb_plugin_descriptor),
    .name = "smtp",
    .description = "plain-text mail over SMTP with STARTTLS or TLS",
    .flags = SB_PLUGIN_THREAD_SAFE,
    .fields = smtp_fields,
    .field_count = sizeof(smtp_fields) / sizeof(smtp_fields[0]),
    .create = smtp_create,
    .deliver = smtp_deliver,
    .destroy = smtp_destroy,
};
