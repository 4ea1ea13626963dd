/* SPDX-License-Identifier: MIT */
/*
 * Reads switchboard.yaml with libyaml's document API, which keeps the
 * line and column of every node, and walks it with tables of known keys:
 * one row per option a user can set, with its parser and bounds. Anything
 * not in a table is an error at its own position.
 */
#include "build_config.h"

#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <yaml.h>

#define CFG_DEFAULT_LISTEN_HOST "127.0.0.1"
#define CFG_DEFAULT_LISTEN_PORT 8080
#define CFG_DEFAULT_PATH        "/webhook"
#define CFG_DEFAULT_MAX_BODY    (256 * 1024)
#define CFG_DEFAULT_SPOOL       "/var/lib/switchboard/spool.db"
#define CFG_SIZE_EXPECTED \
    "bad size; expected a number with an optional unit B, KiB, MiB or GiB"
#define CFG_DURATION_EXPECTED \
    "bad duration; expected numbers with units ms, s, m, h, d (30s, 1h30m)"
#define CFG_VAR_EXPECTED \
    "malformed ${...}; expected ${NAME} or ${NAME:-default}"
#define CFG_DEFAULT_RETENTION (7ULL * 24 * 3600 * 1000)

struct cfg_ctx {
    const char *file;
    char *base_dir;
    yaml_document_t *doc;
    struct sb_config *cfg;
    struct sb_error *err;
};

struct cfg_key;

typedef enum sb_status (*cfg_apply_fn)(struct cfg_ctx *ctx,
                                       const struct cfg_key *key,
                                       yaml_node_t *node);

/* One option: its name, how to read it, where it lands, its bounds. */
struct cfg_key {
    const char *name;
    cfg_apply_fn apply;
    size_t offset;
    uint64_t min;
    uint64_t max;
    const struct cfg_key *children;
    const char *help;
};

/* ---- positions and messages ---------------------------------------- */

static enum sb_status cfg_fail(struct cfg_ctx *ctx, const yaml_node_t *node,
                               const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum sb_status cfg_fail(struct cfg_ctx *ctx, const yaml_node_t *node,
                               const char *fmt, ...)
{
    char msg[sizeof(ctx->err->msg)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (node != NULL) {
        sb_error_at(ctx->err, ctx->file, (unsigned)node->start_mark.line + 1,
                    (unsigned)node->start_mark.column + 1, "%s", msg);
    } else {
        sb_error_at(ctx->err, ctx->file, 0, 0, "%s", msg);
    }
    return SB_ERR_INVALID;
}

static const char *cfg_node_kind(const yaml_node_t *node)
{
    switch (node->type) {
    case YAML_SCALAR_NODE:
        return "a scalar";
    case YAML_SEQUENCE_NODE:
        return "a list";
    case YAML_MAPPING_NODE:
        return "a mapping";
    case YAML_NO_NODE:
        break;
    }
    return "nothing";
}

/* Appends "a, b, c" of a key table, for "expected one of" messages. */
static void cfg_key_names(const struct cfg_key *keys, char *buf, size_t cap)
{
    size_t len = 0;
    const struct cfg_key *k;

    buf[0] = '\0';
    for (k = keys; k->name != NULL && len < cap; k++) {
        int n =
            snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", k->name);
        if (n < 0) {
            break;
        }
        len += (size_t)n;
    }
}

/* ---- scalars ---------------------------------------------------------- */

static int cfg_var_char(char c, int first)
{
    if (c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) {
        return 1;
    }
    return !first && c >= '0' && c <= '9';
}

struct cfg_buf {
    char *data;
    size_t len;
    size_t cap;
};

static enum sb_status cfg_buf_add(struct cfg_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *p = realloc(b->data, cap);

        if (p == NULL) {
            return SB_ERR_NOMEM;
        }
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return SB_OK;
}

/*
 * Expands one "${...}" starting at `p` (just past "${"). Sets *out_end past
 * the closing brace.
 */
static enum sb_status cfg_expand_var(const char *p, struct cfg_buf *b,
                                     const char **out_end, struct sb_error *err)
{
    const char *name = p;
    const char *close = strchr(p, '}');
    const char *value;
    size_t name_len = 0;
    char var[128];

    *out_end = p;
    while (cfg_var_char(name[name_len], name_len == 0)) {
        name_len++;
    }
    if (close == NULL || name_len == 0 || name_len >= sizeof(var)) {
        sb_error_set(err, CFG_VAR_EXPECTED);
        return SB_ERR_INVALID;
    }
    if (name[name_len] != '}' && strncmp(name + name_len, ":-", 2) != 0) {
        sb_error_set(err, CFG_VAR_EXPECTED);
        return SB_ERR_INVALID;
    }
    memcpy(var, name, name_len);
    var[name_len] = '\0';
    *out_end = close + 1;

    value = getenv(var);
    if (value != NULL) {
        return cfg_buf_add(b, value, strlen(value));
    }
    if (name[name_len] == ':') {
        const char *def = name + name_len + 2;

        return cfg_buf_add(b, def, (size_t)(close - def));
    }
    sb_error_set(err,
                 "environment variable %s is not set; ${%s:-x} gives a default",
                 var, var);
    return SB_ERR_INVALID;
}

enum sb_status sb_config_expand(const char *text, char **out,
                                struct sb_error *err)
{
    struct cfg_buf b = {0};
    const char *p = text;
    enum sb_status rc = cfg_buf_add(&b, "", 0);

    while (rc == SB_OK && *p != '\0') {
        const char *dollar = strchr(p, '$');

        if (dollar == NULL) {
            rc = cfg_buf_add(&b, p, strlen(p));
            break;
        }
        rc = cfg_buf_add(&b, p, (size_t)(dollar - p));
        if (rc != SB_OK) {
            break;
        }
        if (dollar[1] == '$') {
            rc = cfg_buf_add(&b, "$", 1);
            p = dollar + 2;
        } else if (dollar[1] == '{') {
            rc = cfg_expand_var(dollar + 2, &b, &p, err);
        } else {
            rc = cfg_buf_add(&b, "$", 1);
            p = dollar + 1;
        }
    }
    if (rc != SB_OK) {
        free(b.data);
        *out = NULL;
        return rc;
    }
    *out = b.data;
    return SB_OK;
}

/* Resolves `path` against `base_dir` unless it is absolute. */
static char *cfg_join_path(const char *base_dir, const char *path)
{
    size_t n;
    char *joined;

    if (path[0] == '/' || base_dir == NULL || base_dir[0] == '\0') {
        return strdup(path);
    }
    n = strlen(base_dir) + strlen(path) + 2;
    joined = malloc(n);
    if (joined != NULL) {
        snprintf(joined, n, "%s/%s", base_dir, path);
    }
    return joined;
}

/* Reads a whole small file; `what` names it in errors ("secret file"). */
static enum sb_status cfg_read_file(const char *path, const char *what,
                                    char **out, struct sb_error *err)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t len;

    *out = NULL;
    if (f == NULL) {
        sb_error_set(err, "cannot read %s \"%s\": %s", what, path,
                     strerror(errno));
        return SB_ERR_INVALID;
    }
    data = malloc(SB_CONFIG_MAX_FILE_BYTES + 1);
    if (data == NULL) {
        fclose(f);
        return SB_ERR_NOMEM;
    }
    len = fread(data, 1, SB_CONFIG_MAX_FILE_BYTES + 1, f);
    if (ferror(f) || len > SB_CONFIG_MAX_FILE_BYTES) {
        sb_error_set(err, "cannot read %s \"%s\": %s", what, path,
                     ferror(f) ? strerror(errno) : "larger than 1 MiB");
        free(data);
        fclose(f);
        return SB_ERR_INVALID;
    }
    fclose(f);
    data[len] = '\0';
    *out = data;
    return SB_OK;
}

enum sb_status sb_config_read_secret(const char *text, const char *base_dir,
                                     char **out, struct sb_error *err)
{
    char *path;
    char *data;
    size_t len;
    enum sb_status rc;

    *out = NULL;
    if (strncmp(text, "file:", 5) != 0) {
        *out = strdup(text);
        return *out ? SB_OK : SB_ERR_NOMEM;
    }
    path = cfg_join_path(base_dir, text + 5);
    if (path == NULL) {
        return SB_ERR_NOMEM;
    }
    rc = cfg_read_file(path, "secret file", &data, err);
    free(path);
    if (rc != SB_OK) {
        return rc;
    }
    len = strlen(data);
    if (len > 0 && data[len - 1] == '\n') {
        data[--len] = '\0';
        if (len > 0 && data[len - 1] == '\r') {
            data[--len] = '\0';
        }
    }
    *out = data;
    return SB_OK;
}

/* The expanded text of a scalar node; the caller frees it. */
static enum sb_status cfg_scalar(struct cfg_ctx *ctx, yaml_node_t *node,
                                 const char *key, char **out)
{
    struct sb_error why;
    enum sb_status rc;

    *out = NULL;
    if (node->type != YAML_SCALAR_NODE) {
        return cfg_fail(ctx, node, "%s: expected a string, got %s", key,
                        cfg_node_kind(node));
    }
    sb_error_clear(&why);
    rc = sb_config_expand((const char *)node->data.scalar.value, out, &why);
    if (rc == SB_ERR_INVALID) {
        return cfg_fail(ctx, node, "%s: %s", key, why.msg);
    }
    return rc;
}

/* ---- sizes and durations --------------------------------------------- */

static const char *cfg_skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return p;
}

/* Reads decimal digits into *out; returns the end, or NULL on overflow. */
static const char *cfg_read_uint(const char *p, uint64_t *out)
{
    uint64_t v = 0;

    while (*p >= '0' && *p <= '9') {
        uint64_t digit = (uint64_t)(*p - '0');

        if (v > (UINT64_MAX - digit) / 10) {
            return NULL;
        }
        v = v * 10 + digit;
        p++;
    }
    *out = v;
    return p;
}

enum sb_status sb_config_parse_size(const char *text, size_t *out_bytes,
                                    struct sb_error *err)
{
    static const struct {
        const char *unit;
        uint64_t factor;
    } units[] = {
        {"", 1},
        {"B", 1},
        {"KiB", 1024},
        {"MiB", 1024 * 1024},
        {"GiB", 1024ULL * 1024 * 1024},
    };
    uint64_t n;
    const char *p = cfg_skip_space(text);
    const char *end;
    size_t i;

    *out_bytes = 0;
    end = (*p >= '0' && *p <= '9') ? cfg_read_uint(p, &n) : NULL;
    if (end == NULL) {
        sb_error_set(err, "%s", CFG_SIZE_EXPECTED);
        return SB_ERR_INVALID;
    }
    end = cfg_skip_space(end);
    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(cfg_skip_space(end), units[i].unit) == 0) {
            if (n > SIZE_MAX / units[i].factor) {
                break;
            }
            *out_bytes = (size_t)(n * units[i].factor);
            return SB_OK;
        }
    }
    sb_error_set(err, "%s", CFG_SIZE_EXPECTED);
    return SB_ERR_INVALID;
}

/* The factor of a duration unit at `p`, 0 when there is none. */
static uint64_t cfg_duration_unit(const char *p, size_t *out_len)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
    };
    size_t i;

    for (i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        size_t n = strlen(units[i].unit);

        if (strncmp(p, units[i].unit, n) == 0 &&
            !(p[n] >= 'a' && p[n] <= 'z')) {
            *out_len = n;
            return units[i].ms;
        }
    }
    *out_len = 0;
    return 0;
}

enum sb_status sb_config_parse_duration(const char *text, uint64_t *out_ms,
                                        struct sb_error *err)
{
    const char *p = cfg_skip_space(text);
    uint64_t total = 0;
    int parts = 0;

    *out_ms = 0;
    while (*p != '\0') {
        uint64_t n;
        uint64_t factor;
        size_t unit_len;
        const char *end =
            (*p >= '0' && *p <= '9') ? cfg_read_uint(p, &n) : NULL;

        factor = end ? cfg_duration_unit(end, &unit_len) : 0;
        if (factor == 0 || n > (UINT64_MAX - total) / factor) {
            sb_error_set(err, "%s", CFG_DURATION_EXPECTED);
            return SB_ERR_INVALID;
        }
        total += n * factor;
        parts++;
        p = cfg_skip_space(end + unit_len);
    }
    if (parts == 0) {
        sb_error_set(err, "%s", CFG_DURATION_EXPECTED);
        return SB_ERR_INVALID;
    }
    *out_ms = total;
    return SB_OK;
}

/* ---- option parsers ----------------------------------------------------- */

#define CFG_FIELD(ctx, key, type) ((type *)((char *)(ctx)->cfg + (key)->offset))

static enum sb_status cfg_apply_map(struct cfg_ctx *ctx,
                                    const struct cfg_key *key,
                                    yaml_node_t *node);

static enum sb_status cfg_apply_string(struct cfg_ctx *ctx,
                                       const struct cfg_key *key,
                                       yaml_node_t *node)
{
    char **field = CFG_FIELD(ctx, key, char *);
    char *value;
    enum sb_status rc = cfg_scalar(ctx, node, key->name, &value);

    if (rc != SB_OK) {
        return rc;
    }
    free(*field);
    *field = value;
    return SB_OK;
}

static enum sb_status cfg_apply_url_path(struct cfg_ctx *ctx,
                                         const struct cfg_key *key,
                                         yaml_node_t *node)
{
    enum sb_status rc = cfg_apply_string(ctx, key, node);
    const char *path = *CFG_FIELD(ctx, key, char *);

    if (rc == SB_OK && (path[0] != '/' || strpbrk(path, " ?#") != NULL)) {
        return cfg_fail(ctx, node,
                        "%s: expected a path starting with \"/\" (no ?, #)",
                        key->name);
    }
    return rc;
}

static enum sb_status cfg_apply_file_path(struct cfg_ctx *ctx,
                                          const struct cfg_key *key,
                                          yaml_node_t *node)
{
    char **field = CFG_FIELD(ctx, key, char *);
    char *value;
    enum sb_status rc = cfg_scalar(ctx, node, key->name, &value);

    if (rc != SB_OK) {
        return rc;
    }
    if (value[0] == '\0') {
        free(value);
        return cfg_fail(ctx, node, "%s: expected a file path, got \"\"",
                        key->name);
    }
    free(*field);
    *field = cfg_join_path(ctx->base_dir, value);
    free(value);
    return *field ? SB_OK : SB_ERR_NOMEM;
}

/* "host:port", "[v6]:port" or ":port" (all interfaces). */
static enum sb_status cfg_parse_listen(const char *text, struct sb_listen *l)
{
    const char *colon = strrchr(text, ':');
    const char *host = text;
    size_t host_len;
    uint64_t port;
    const char *end;

    if (colon == NULL) {
        return SB_ERR_INVALID;
    }
    host_len = (size_t)(colon - text);
    if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
        host++;
        host_len -= 2;
    }
    end = cfg_read_uint(colon + 1, &port);
    if (end == NULL || end == colon + 1 || *end != '\0' || port == 0 ||
        port > 65535 || host_len >= sizeof(l->host)) {
        return SB_ERR_INVALID;
    }
    if (host_len == 0) {
        snprintf(l->host, sizeof(l->host), "0.0.0.0");
    } else {
        snprintf(l->host, sizeof(l->host), "%.*s", (int)host_len, host);
    }
    l->port = (uint16_t)port;
    return SB_OK;
}

static enum sb_status cfg_apply_listen(struct cfg_ctx *ctx,
                                       const struct cfg_key *key,
                                       yaml_node_t *node)
{
    char *text;
    enum sb_status rc = cfg_scalar(ctx, node, key->name, &text);

    if (rc != SB_OK) {
        return rc;
    }
    rc = cfg_parse_listen(text, CFG_FIELD(ctx, key, struct sb_listen));
    free(text);
    if (rc != SB_OK) {
        return cfg_fail(ctx, node,
                        "%s: expected HOST:PORT like 127.0.0.1:8080 or :8080",
                        key->name);
    }
    return SB_OK;
}

static enum sb_status cfg_apply_size(struct cfg_ctx *ctx,
                                     const struct cfg_key *key,
                                     yaml_node_t *node)
{
    struct sb_error why;
    size_t bytes;
    char *text;
    enum sb_status rc = cfg_scalar(ctx, node, key->name, &text);

    if (rc != SB_OK) {
        return rc;
    }
    sb_error_clear(&why);
    rc = sb_config_parse_size(text, &bytes, &why);
    free(text);
    if (rc != SB_OK) {
        return cfg_fail(ctx, node, "%s: %s", key->name, why.msg);
    }
    if (bytes < key->min || bytes > key->max) {
        return cfg_fail(ctx, node,
                        "%s: out of range; expected %" PRIu64 " to %" PRIu64
                        " bytes",
                        key->name, key->min, key->max);
    }
    *CFG_FIELD(ctx, key, size_t) = bytes;
    return SB_OK;
}

static enum sb_status cfg_apply_duration(struct cfg_ctx *ctx,
                                         const struct cfg_key *key,
                                         yaml_node_t *node)
{
    struct sb_error why;
    uint64_t ms;
    char *text;
    enum sb_status rc = cfg_scalar(ctx, node, key->name, &text);

    if (rc != SB_OK) {
        return rc;
    }
    sb_error_clear(&why);
    rc = sb_config_parse_duration(text, &ms, &why);
    free(text);
    if (rc != SB_OK) {
        return cfg_fail(ctx, node, "%s: %s", key->name, why.msg);
    }
    if (ms < key->min || ms > key->max) {
        return cfg_fail(ctx, node,
                        "%s: out of range; expected %" PRIu64 "ms to %" PRIu64
                        "ms",
                        key->name, key->min, key->max);
    }
    *CFG_FIELD(ctx, key, uint64_t) = ms;
    return SB_OK;
}

static enum sb_status cfg_apply_log_level(struct cfg_ctx *ctx,
                                          const struct cfg_key *key,
                                          yaml_node_t *node)
{
    char *text;
    enum sb_status rc = cfg_scalar(ctx, node, key->name, &text);

    if (rc != SB_OK) {
        return rc;
    }
    rc = sb_log_level_parse(text, CFG_FIELD(ctx, key, enum sb_log_level));
    free(text);
    if (rc != SB_OK) {
        return cfg_fail(ctx, node,
                        "%s: expected one of error, warn, info, debug",
                        key->name);
    }
    return SB_OK;
}

/*
 * One secret of auth.bearer. The message never quotes the value: a typo in
 * a secret must not print the secret.
 */
static enum sb_status cfg_add_secret(struct cfg_ctx *ctx, yaml_node_t *node)
{
    struct sb_config *cfg = ctx->cfg;
    struct sb_error why;
    char *text;
    char *secret;
    enum sb_status rc = cfg_scalar(ctx, node, "bearer", &text);

    if (rc != SB_OK) {
        return rc;
    }
    sb_error_clear(&why);
    rc = sb_config_read_secret(text, ctx->base_dir, &secret, &why);
    free(text);
    if (rc == SB_ERR_INVALID) {
        return cfg_fail(ctx, node, "bearer: %s", why.msg);
    }
    if (rc != SB_OK) {
        return rc;
    }
    if (secret[0] == '\0') {
        free(secret);
        return cfg_fail(ctx, node, "bearer: the secret is empty");
    }
    if (cfg->bearer_count == SB_CONFIG_MAX_SECRETS) {
        free(secret);
        return cfg_fail(ctx, node, "bearer: too many secrets; at most %d",
                        SB_CONFIG_MAX_SECRETS);
    }
    cfg->bearer[cfg->bearer_count++] = secret;
    return SB_OK;
}

static enum sb_status cfg_apply_secret_list(struct cfg_ctx *ctx,
                                            const struct cfg_key *key,
                                            yaml_node_t *node)
{
    yaml_node_item_t *item;
    enum sb_status rc = SB_OK;

    if (node->type != YAML_SEQUENCE_NODE) {
        return cfg_fail(ctx, node, "%s: expected a list of secrets, got %s",
                        key->name, cfg_node_kind(node));
    }
    for (item = node->data.sequence.items.start;
         rc == SB_OK && item < node->data.sequence.items.top; item++) {
        rc = cfg_add_secret(ctx, yaml_document_get_node(ctx->doc, *item));
    }
    return rc;
}

/* Whether the PEM certificate and key load as one usable pair. */
static int cfg_tls_pair_ok(const char *cert, const char *key, const char **why)
{
    gnutls_certificate_credentials_t creds;
    gnutls_datum_t c = {(unsigned char *)cert, (unsigned)strlen(cert)};
    gnutls_datum_t k = {(unsigned char *)key, (unsigned)strlen(key)};
    int rc;

    if (gnutls_certificate_allocate_credentials(&creds) < 0) {
        *why = "out of memory";
        return 0;
    }
    rc =
        gnutls_certificate_set_x509_key_mem(creds, &c, &k, GNUTLS_X509_FMT_PEM);
    gnutls_certificate_free_credentials(creds);
    *why = rc < 0 ? gnutls_strerror(rc) : NULL;
    return rc >= 0;
}

/* tls: both files, readable, and a matching pair, checked at load. */
static enum sb_status
cfg_apply_tls(struct cfg_ctx *ctx, const struct cfg_key *key, yaml_node_t *node)
{
    struct sb_config *cfg = ctx->cfg;
    struct sb_error why;
    const char *bad_pair;
    enum sb_status rc = cfg_apply_map(ctx, key, node);

    if (rc != SB_OK) {
        return rc;
    }
    if (cfg->tls_cert_path == NULL || cfg->tls_key_path == NULL) {
        return cfg_fail(ctx, node, "tls: both cert and key are required");
    }
    sb_error_clear(&why);
    rc = cfg_read_file(cfg->tls_cert_path, "TLS certificate",
                       &cfg->tls_cert_pem, &why);
    if (rc == SB_OK) {
        rc = cfg_read_file(cfg->tls_key_path, "TLS key", &cfg->tls_key_pem,
                           &why);
    }
    if (rc == SB_ERR_INVALID) {
        return cfg_fail(ctx, node, "tls: %s", why.msg);
    }
    if (rc == SB_OK &&
        !cfg_tls_pair_ok(cfg->tls_cert_pem, cfg->tls_key_pem, &bad_pair)) {
        return cfg_fail(ctx, node, "tls: unusable certificate or key: %s",
                        bad_pair);
    }
    return rc;
}

/* ---- the tables -----------------------------------------------------------
 */

static const struct cfg_key tls_keys[] = {
    {"cert", cfg_apply_file_path, offsetof(struct sb_config, tls_cert_path), 0,
     0, NULL, "PEM certificate (chain) file"},
    {"key", cfg_apply_file_path, offsetof(struct sb_config, tls_key_path), 0, 0,
     NULL, "PEM private key file"},
    {NULL, NULL, 0, 0, 0, NULL, NULL},
};

static const struct cfg_key auth_keys[] = {
    {"bearer", cfg_apply_secret_list, 0, 0, 0, NULL,
     "accepted bearer secrets; several allow rotation"},
    {NULL, NULL, 0, 0, 0, NULL, NULL},
};

static const struct cfg_key admin_keys[] = {
    {"listen", cfg_apply_listen, offsetof(struct sb_config, admin_listen), 0, 0,
     NULL, "HOST:PORT of /healthz and /readyz"},
    {NULL, NULL, 0, 0, 0, NULL, NULL},
};

static const struct cfg_key spool_keys[] = {
    {"path", cfg_apply_file_path, offsetof(struct sb_config, spool_path), 0, 0,
     NULL, "SQLite spool file"},
    {"retention", cfg_apply_duration, offsetof(struct sb_config, retention_ms),
     1000, 3650ULL * 86400 * 1000, NULL, "how long delivered events are kept"},
    {NULL, NULL, 0, 0, 0, NULL, NULL},
};

static const struct cfg_key root_keys[] = {
    {"listen", cfg_apply_listen, offsetof(struct sb_config, listen), 0, 0, NULL,
     "HOST:PORT the webhook listener binds"},
    {"path", cfg_apply_url_path, offsetof(struct sb_config, path), 0, 0, NULL,
     "URL path the sender posts to"},
    {"tls", cfg_apply_tls, 0, 0, 0, tls_keys, "HTTPS certificate and key"},
    {"max_body", cfg_apply_size, offsetof(struct sb_config, max_body), 64,
     64ULL * 1024 * 1024, NULL, "largest accepted request body"},
    {"auth", cfg_apply_map, 0, 0, 0, auth_keys, "who may post"},
    {"admin", cfg_apply_map, 0, 0, 0, admin_keys, "health listener"},
    {"spool", cfg_apply_map, 0, 0, 0, spool_keys, "durable storage"},
    {"log_level", cfg_apply_log_level, offsetof(struct sb_config, log_level), 0,
     0, NULL, "error, warn, info or debug"},
    {NULL, NULL, 0, 0, 0, NULL, NULL},
};

static const struct cfg_key *cfg_find_key(const struct cfg_key *keys,
                                          const char *name)
{
    const struct cfg_key *k;

    for (k = keys; k->name != NULL; k++) {
        if (strcmp(k->name, name) == 0) {
            return k;
        }
    }
    return NULL;
}

/* Rejects a key seen earlier in the same mapping. */
static enum sb_status cfg_check_duplicate(struct cfg_ctx *ctx, yaml_node_t *map,
                                          yaml_node_pair_t *pair,
                                          yaml_node_t *key_node)
{
    yaml_node_pair_t *prev;

    for (prev = map->data.mapping.pairs.start; prev < pair; prev++) {
        yaml_node_t *k = yaml_document_get_node(ctx->doc, prev->key);

        if (k->type == YAML_SCALAR_NODE &&
            strcmp((char *)k->data.scalar.value,
                   (char *)key_node->data.scalar.value) == 0) {
            return cfg_fail(ctx, key_node, "duplicate key \"%s\"",
                            (char *)key_node->data.scalar.value);
        }
    }
    return SB_OK;
}

static enum sb_status cfg_apply_pairs(struct cfg_ctx *ctx,
                                      const struct cfg_key *keys,
                                      yaml_node_t *map, const char *where)
{
    yaml_node_pair_t *pair;
    char expected[512];
    enum sb_status rc = SB_OK;

    for (pair = map->data.mapping.pairs.start;
         rc == SB_OK && pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = yaml_document_get_node(ctx->doc, pair->key);
        yaml_node_t *v = yaml_document_get_node(ctx->doc, pair->value);
        const struct cfg_key *known;

        if (k->type != YAML_SCALAR_NODE) {
            return cfg_fail(ctx, k, "expected a key name, got %s",
                            cfg_node_kind(k));
        }
        known = cfg_find_key(keys, (char *)k->data.scalar.value);
        if (known == NULL) {
            cfg_key_names(keys, expected, sizeof(expected));
            return cfg_fail(ctx, k,
                            "unknown key \"%s\" in %s; expected one of %s",
                            (char *)k->data.scalar.value, where, expected);
        }
        rc = cfg_check_duplicate(ctx, map, pair, k);
        if (rc == SB_OK) {
            rc = known->apply(ctx, known, v);
        }
    }
    return rc;
}

static enum sb_status
cfg_apply_map(struct cfg_ctx *ctx, const struct cfg_key *key, yaml_node_t *node)
{
    if (node->type != YAML_MAPPING_NODE) {
        return cfg_fail(ctx, node, "%s: expected a mapping, got %s", key->name,
                        cfg_node_kind(node));
    }
    return cfg_apply_pairs(ctx, key->children, node, key->name);
}

/* ---- the whole file -------------------------------------------------------
 */

static void cfg_set_defaults(struct sb_config *cfg)
{
    snprintf(cfg->listen.host, sizeof(cfg->listen.host), "%s",
             CFG_DEFAULT_LISTEN_HOST);
    cfg->listen.port = CFG_DEFAULT_LISTEN_PORT;
    cfg->max_body = CFG_DEFAULT_MAX_BODY;
    cfg->retention_ms = CFG_DEFAULT_RETENTION;
    cfg->log_level = SB_LOG_INFO;
}

static enum sb_status cfg_fill_defaults(struct sb_config *cfg)
{
    if (cfg->path == NULL) {
        cfg->path = strdup(CFG_DEFAULT_PATH);
    }
    if (cfg->spool_path == NULL) {
        cfg->spool_path = strdup(CFG_DEFAULT_SPOOL);
    }
    return cfg->path && cfg->spool_path ? SB_OK : SB_ERR_NOMEM;
}

/* Cross-key rules, checked once every key is read. */
static enum sb_status cfg_validate(struct cfg_ctx *ctx, yaml_node_t *root)
{
    struct sb_config *cfg = ctx->cfg;

    if (cfg->bearer_count == 0) {
        return cfg_fail(ctx, root,
                        "auth.bearer: expected a list of at least one secret");
    }
    cfg->admin_enabled = cfg->admin_listen.port != 0;
    return cfg_fill_defaults(cfg);
}

static enum sb_status cfg_parse_document(struct cfg_ctx *ctx)
{
    yaml_node_t *root = yaml_document_get_root_node(ctx->doc);
    static const struct cfg_key root_key = {"config", cfg_apply_map, 0,   0,
                                            0,        root_keys,     NULL};
    enum sb_status rc;

    if (root == NULL) {
        return cfg_fail(ctx, NULL,
                        "the file is empty; expected at least auth.bearer");
    }
    if (root->type != YAML_MAPPING_NODE) {
        return cfg_fail(ctx, root,
                        "expected a mapping at the top level, got %s",
                        cfg_node_kind(root));
    }
    rc = cfg_apply_pairs(ctx, root_key.children, root, "the top level");
    if (rc != SB_OK) {
        return rc;
    }
    return cfg_validate(ctx, root);
}

static enum sb_status cfg_load_yaml(struct cfg_ctx *ctx, FILE *f)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    enum sb_status rc;

    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = SB_ERR_INVALID;
        sb_error_at(
            ctx->err, ctx->file, (unsigned)parser.problem_mark.line + 1,
            (unsigned)parser.problem_mark.column + 1, "invalid YAML: %s%s%s",
            parser.problem ? parser.problem : "parse error",
            parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return rc;
    }
    ctx->doc = &doc;
    rc = cfg_parse_document(ctx);
    ctx->doc = NULL;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

static char *cfg_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL) {
        return strdup(".");
    }
    if (slash == path) {
        return strdup("/");
    }
    return strndup(path, (size_t)(slash - path));
}

enum sb_status sb_config_load(const char *path, struct sb_config **out_cfg,
                              struct sb_error *err)
{
    struct cfg_ctx ctx = {.file = path, .err = err};
    struct sb_config *cfg = calloc(1, sizeof(*cfg));
    FILE *f = NULL;
    enum sb_status rc = SB_ERR_NOMEM;

    *out_cfg = NULL;
    ctx.cfg = cfg;
    ctx.base_dir = cfg_dir_of(path);
    if (cfg == NULL || ctx.base_dir == NULL) {
        goto out;
    }
    cfg_set_defaults(cfg);
    cfg->source = strdup(path);
    f = fopen(path, "rb");
    if (f == NULL) {
        sb_error_at(err, path, 0, 0, "cannot open config: %s", strerror(errno));
        rc = SB_ERR_INVALID;
        goto out;
    }
    rc = cfg->source ? cfg_load_yaml(&ctx, f) : SB_ERR_NOMEM;

out:
    if (f != NULL) {
        fclose(f);
    }
    free(ctx.base_dir);
    if (rc != SB_OK) {
        sb_config_free(cfg);
        return rc;
    }
    *out_cfg = cfg;
    return SB_OK;
}

const char *sb_config_default_path(void)
{
    if (access(SB_CONFIG_DEFAULT_PATH, F_OK) != 0 &&
        access(SB_CONFIG_SYSTEM_PATH, F_OK) == 0) {
        return SB_CONFIG_SYSTEM_PATH;
    }
    return SB_CONFIG_DEFAULT_PATH;
}

static void cfg_free_secret(char *secret)
{
    if (secret != NULL) {
        explicit_bzero(secret, strlen(secret));
        free(secret);
    }
}

void sb_config_free(struct sb_config *cfg)
{
    size_t i;

    if (cfg == NULL) {
        return;
    }
    for (i = 0; i < cfg->bearer_count; i++) {
        cfg_free_secret(cfg->bearer[i]);
    }
    cfg_free_secret(cfg->tls_key_pem);
    free(cfg->tls_cert_pem);
    free(cfg->tls_cert_path);
    free(cfg->tls_key_path);
    free(cfg->spool_path);
    free(cfg->path);
    free(cfg->source);
    free(cfg);
}

void sb_config_describe(const struct sb_config *cfg, FILE *out)
{
    fprintf(out, "  listen:    %s:%u%s\n", cfg->listen.host, cfg->listen.port,
            cfg->tls_cert_path ? " (https)" : " (http)");
    fprintf(out, "  path:      %s\n", cfg->path);
    fprintf(out, "  max_body:  %zu bytes\n", cfg->max_body);
    fprintf(out, "  bearer:    %zu secret%s set\n", cfg->bearer_count,
            cfg->bearer_count == 1 ? "" : "s");
    if (cfg->admin_enabled) {
        fprintf(out, "  admin:     %s:%u\n", cfg->admin_listen.host,
                cfg->admin_listen.port);
    } else {
        fprintf(out, "  admin:     off\n");
    }
    fprintf(out, "  spool:     %s (retention %" PRIu64 "s)\n", cfg->spool_path,
            cfg->retention_ms / 1000);
}
