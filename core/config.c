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

#include "plugin_config.h"
#include "plugin_host.h"
#include "schedule.h"
#include "yml.h"

#define CFG_DEFAULT_LISTEN_HOST "127.0.0.1"
#define CFG_DEFAULT_LISTEN_PORT 8080
#define CFG_DEFAULT_PATH        "/webhook"
#define CFG_DEFAULT_MAX_BODY    (256 * 1024)
#define CFG_DEFAULT_SPOOL       "/var/lib/switchboard/spool.db"
#define CFG_SIZE_EXPECTED \
    "bad size; expected a number with an optional unit B, KiB, MiB or GiB"
#define CFG_DURATION_EXPECTED \
    "bad duration; expected numbers with units ms, s, m, h, d (30s, 1h30m)"
#define CFG_DEFAULT_RETENTION (7ULL * 24 * 3600 * 1000)
/* Per output: a day of retries, ending ten minutes apart. */
#define CFG_DEFAULT_RETRY                                         \
    {                                                             \
        .max_attempts = 12, .initial_ms = 1000,                   \
        .max_delay_ms = 10 * 60 * 1000, .max_age_ms = 86400000ULL \
    }
#define CFG_DEFAULT_CONCURRENCY 4

struct cfg_ctx {
    struct sb_yml *y;
    struct sb_config *cfg;
    yaml_node_t *outputs; /* read once plugins.dir is known */
    yaml_node_t *rules;   /* compiled last: it names outputs and schedules */
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
    path = sb_yml_join_path(base_dir, text + 5);
    if (path == NULL) {
        return SB_ERR_NOMEM;
    }
    rc = sb_yml_read_file(path, "secret file", &data, err);
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
    enum sb_status rc = sb_yml_scalar(ctx->y, node, key->name, &value);

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
        return sb_yml_fail(ctx->y, node,
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
    enum sb_status rc = sb_yml_scalar(ctx->y, node, key->name, &value);

    if (rc != SB_OK) {
        return rc;
    }
    if (value[0] == '\0') {
        free(value);
        return sb_yml_fail(ctx->y, node, "%s: expected a file path, got \"\"",
                           key->name);
    }
    free(*field);
    *field = sb_yml_join_path(ctx->y->base_dir, value);
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
    enum sb_status rc = sb_yml_scalar(ctx->y, node, key->name, &text);

    if (rc != SB_OK) {
        return rc;
    }
    rc = cfg_parse_listen(text, CFG_FIELD(ctx, key, struct sb_listen));
    free(text);
    if (rc != SB_OK) {
        return sb_yml_fail(
            ctx->y, node, "%s: expected HOST:PORT like 127.0.0.1:8080 or :8080",
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
    enum sb_status rc = sb_yml_scalar(ctx->y, node, key->name, &text);

    if (rc != SB_OK) {
        return rc;
    }
    sb_error_clear(&why);
    rc = sb_config_parse_size(text, &bytes, &why);
    free(text);
    if (rc != SB_OK) {
        return sb_yml_fail(ctx->y, node, "%s: %s", key->name, why.msg);
    }
    if (bytes < key->min || bytes > key->max) {
        return sb_yml_fail(ctx->y, node,
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
    enum sb_status rc = sb_yml_scalar(ctx->y, node, key->name, &text);

    if (rc != SB_OK) {
        return rc;
    }
    sb_error_clear(&why);
    rc = sb_config_parse_duration(text, &ms, &why);
    free(text);
    if (rc != SB_OK) {
        return sb_yml_fail(ctx->y, node, "%s: %s", key->name, why.msg);
    }
    if (ms < key->min || ms > key->max) {
        return sb_yml_fail(ctx->y, node,
                           "%s: out of range; expected %" PRIu64
                           "ms to %" PRIu64 "ms",
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
    enum sb_status rc = sb_yml_scalar(ctx->y, node, key->name, &text);

    if (rc != SB_OK) {
        return rc;
    }
    rc = sb_log_level_parse(text, CFG_FIELD(ctx, key, enum sb_log_level));
    free(text);
    if (rc != SB_OK) {
        return sb_yml_fail(ctx->y, node,
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
    enum sb_status rc = sb_yml_scalar(ctx->y, node, "bearer", &text);

    if (rc != SB_OK) {
        return rc;
    }
    sb_error_clear(&why);
    rc = sb_config_read_secret(text, ctx->y->base_dir, &secret, &why);
    free(text);
    if (rc == SB_ERR_INVALID) {
        return sb_yml_fail(ctx->y, node, "bearer: %s", why.msg);
    }
    if (rc != SB_OK) {
        return rc;
    }
    if (secret[0] == '\0') {
        free(secret);
        return sb_yml_fail(ctx->y, node, "bearer: the secret is empty");
    }
    if (cfg->bearer_count == SB_CONFIG_MAX_SECRETS) {
        free(secret);
        return sb_yml_fail(ctx->y, node, "bearer: too many secrets; at most %d",
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
        return sb_yml_fail(ctx->y, node,
                           "%s: expected a list of secrets, got %s", key->name,
                           sb_yml_kind(node));
    }
    for (item = node->data.sequence.items.start;
         rc == SB_OK && item < node->data.sequence.items.top; item++) {
        rc = cfg_add_secret(ctx, sb_yml_node(ctx->y, *item));
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
        return sb_yml_fail(ctx->y, node, "tls: both cert and key are required");
    }
    sb_error_clear(&why);
    rc = sb_yml_read_file(cfg->tls_cert_path, "TLS certificate",
                          &cfg->tls_cert_pem, &why);
    if (rc == SB_OK) {
        rc = sb_yml_read_file(cfg->tls_key_path, "TLS key", &cfg->tls_key_pem,
                              &why);
    }
    if (rc == SB_ERR_INVALID) {
        return sb_yml_fail(ctx->y, node, "tls: %s", why.msg);
    }
    if (rc == SB_OK &&
        !cfg_tls_pair_ok(cfg->tls_cert_pem, cfg->tls_key_pem, &bad_pair)) {
        return sb_yml_fail(ctx->y, node, "tls: unusable certificate or key: %s",
                           bad_pair);
    }
    return rc;
}

/* ---- timezone, schedules, outputs, rules --------------------------------- */

static enum sb_status cfg_apply_timezone(struct cfg_ctx *ctx,
                                         const struct cfg_key *key,
                                         yaml_node_t *node)
{
    struct sb_error why;
    enum sb_status rc = cfg_apply_string(ctx, key, node);

    if (rc != SB_OK) {
        return rc;
    }
    sb_error_clear(&why);
    rc = sb_schedule_set_timezone(ctx->cfg->timezone, &why);
    if (rc == SB_ERR_INVALID) {
        return sb_yml_fail(ctx->y, node, "timezone: %s", why.msg);
    }
    return rc;
}

/* A schedule's `days` or `hours`: an error's column is inside the text. */
static enum sb_status cfg_schedule_part(struct cfg_ctx *ctx, yaml_node_t *node,
                                        const char *part,
                                        struct sb_schedule *sched)
{
    struct sb_error why;
    char *text = NULL;
    enum sb_status rc = sb_yml_scalar(ctx->y, node, part, &text);

    if (rc != SB_OK) {
        return rc;
    }
    sb_error_clear(&why);
    rc = part[0] == 'd' ? sb_schedule_parse_days(text, &sched->days, &why)
                        : sb_schedule_parse_hours(text, sched, &why);
    free(text);
    if (rc == SB_ERR_INVALID) {
        return sb_yml_fail(ctx->y, node, "%s: %s (at character %u)", part,
                           why.msg, why.col);
    }
    return rc;
}

static enum sb_status cfg_add_schedule(struct cfg_ctx *ctx, yaml_node_t *name,
                                       yaml_node_t *node)
{
    static const char *const keys[] = {"days", "hours", NULL};
    struct sb_named_schedule *entry;
    yaml_node_pair_t *pair;
    enum sb_status rc = SB_OK;

    if (node->type != YAML_MAPPING_NODE) {
        return sb_yml_fail(ctx->y, node,
                           "schedule: expected {days: ..., hours: ...}, got %s",
                           sb_yml_kind(node));
    }
    entry = &ctx->cfg->schedules[ctx->cfg->schedule_count];
    entry->name = strdup(sb_yml_text(name));
    if (entry->name == NULL) {
        return SB_ERR_NOMEM;
    }
    ctx->cfg->schedule_count++;
    entry->schedule.days = 0x7f; /* every day unless days: says otherwise */
    for (pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        enum sb_status step =
            sb_yml_check_key(ctx->y, node, pair, keys, "a schedule");

        if (step == SB_OK) {
            step = cfg_schedule_part(
                ctx, sb_yml_node(ctx->y, pair->value),
                sb_yml_text(sb_yml_node(ctx->y, pair->key)), &entry->schedule);
        }
        rc = step != SB_OK ? step : rc;
    }
    return rc;
}

/*
 * Walks a mapping of named entries (schedules:, outputs:), calling `add`
 * per entry; names must be scalars and unique, at most `max` of them.
 */
static enum sb_status cfg_named_entries(
    struct cfg_ctx *ctx, yaml_node_t *node, const char *what, size_t max,
    enum sb_status (*add)(struct cfg_ctx *, yaml_node_t *, yaml_node_t *))
{
    yaml_node_pair_t *pair;
    enum sb_status rc = SB_OK;

    if (node->type != YAML_MAPPING_NODE) {
        return sb_yml_fail(ctx->y, node,
                           "%s: expected a mapping of names, got %s", what,
                           sb_yml_kind(node));
    }
    if ((size_t)(node->data.mapping.pairs.top -
                 node->data.mapping.pairs.start) > max) {
        return sb_yml_fail(ctx->y, node, "%s: more than %zu entries", what,
                           max);
    }
    for (pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *name = sb_yml_node(ctx->y, pair->key);
        const char *text = sb_yml_text(name);
        enum sb_status step = SB_OK;

        if (sb_yml_key_repeats(ctx->y, node, pair)) {
            step = sb_yml_fail(ctx->y, name, "duplicate name \"%s\"", text);
        }
        if (text == NULL || text[0] == '\0') {
            step = sb_yml_fail(ctx->y, name, "%s: expected a name", what);
        }
        if (step == SB_OK) {
            step = add(ctx, name, sb_yml_node(ctx->y, pair->value));
        }
        if (step == SB_ERR_NOMEM) {
            return step;
        }
        rc = step != SB_OK ? step : rc;
    }
    return rc;
}

static enum sb_status cfg_apply_schedules(struct cfg_ctx *ctx,
                                          const struct cfg_key *key,
                                          yaml_node_t *node)
{
    ctx->cfg->schedules =
        calloc(SB_CONFIG_MAX_SCHEDULES, sizeof(*ctx->cfg->schedules));
    if (ctx->cfg->schedules == NULL) {
        return SB_ERR_NOMEM;
    }
    return cfg_named_entries(ctx, node, key->name, SB_CONFIG_MAX_SCHEDULES,
                             cfg_add_schedule);
}

static enum sb_status cfg_output_template(struct cfg_ctx *ctx,
                                          yaml_node_t *node, const char *field,
                                          struct sb_template **out)
{
    struct sb_error why;
    char *text = NULL;
    enum sb_status rc = sb_yml_scalar(ctx->y, node, field, &text);

    if (rc != SB_OK) {
        return rc;
    }
    sb_template_free(*out);
    *out = NULL;
    sb_error_clear(&why);
    rc = sb_template_parse(text, out, &why);
    free(text);
    if (rc == SB_ERR_INVALID) {
        return sb_yml_fail(ctx->y, node, "%s: template line %u column %u: %s",
                           field, why.line, why.col, why.msg);
    }
    return rc;
}

static enum sb_status cfg_output_number(struct cfg_ctx *ctx, yaml_node_t *node,
                                        const char *what, int duration,
                                        uint64_t *out)
{
    struct sb_error why;
    char *text = NULL;
    size_t n = 0;
    enum sb_status rc = sb_yml_scalar(ctx->y, node, what, &text);

    if (rc != SB_OK) {
        return rc;
    }
    if (duration) {
        rc = sb_config_parse_duration(text, out, &why);
    } else {
        rc = sb_config_parse_size(text, &n, &why);
        *out = n;
        if (rc == SB_OK && (strpbrk(text, "BKMG") != NULL || n == 0)) {
            rc = SB_ERR_INVALID;
            snprintf(why.msg, sizeof(why.msg), "expected a whole number > 0");
        }
    }
    free(text);
    if (rc == SB_ERR_INVALID) {
        return sb_yml_fail(ctx->y, node, "%s: %s", what, why.msg);
    }
    return rc;
}

static enum sb_status cfg_output_concurrency(struct cfg_ctx *ctx,
                                             yaml_node_t *node, uint64_t *out)
{
    enum sb_status rc = cfg_output_number(ctx, node, "concurrency", 0, out);

    if (rc == SB_OK && *out > SB_OUTPUT_MAX_CONCURRENCY) {
        return sb_yml_fail(ctx->y, node, "concurrency: at most %d",
                           SB_OUTPUT_MAX_CONCURRENCY);
    }
    return rc;
}

static enum sb_status cfg_output_retry(struct cfg_ctx *ctx, yaml_node_t *node,
                                       struct sb_retry_policy *retry)
{
    static const char *const keys[] = {"max_attempts", "initial", "max_delay",
                                       "max_age", NULL};
    yaml_node_pair_t *pair;
    enum sb_status rc = SB_OK;

    if (node->type != YAML_MAPPING_NODE) {
        return sb_yml_fail(ctx->y, node, "retry: expected a mapping, got %s",
                           sb_yml_kind(node));
    }
    for (pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *v = sb_yml_node(ctx->y, pair->value);
        enum sb_status step =
            sb_yml_check_key(ctx->y, node, pair, keys, "retry");
        const char *k = sb_yml_text(sb_yml_node(ctx->y, pair->key));

        if (step == SB_OK && strcmp(k, "max_attempts") == 0) {
            step = cfg_output_number(ctx, v, k, 0, &retry->max_attempts);
        } else if (step == SB_OK && strcmp(k, "initial") == 0) {
            step = cfg_output_number(ctx, v, k, 1, &retry->initial_ms);
        } else if (step == SB_OK && strcmp(k, "max_delay") == 0) {
            step = cfg_output_number(ctx, v, k, 1, &retry->max_delay_ms);
        } else if (step == SB_OK) {
            step = cfg_output_number(ctx, v, k, 1, &retry->max_age_ms);
        }
        rc = step != SB_OK ? step : rc;
    }
    return rc;
}

/* The router's own keys of an output, and a template field of its plugin. */
static enum sb_status cfg_output_key(struct cfg_ctx *ctx, struct sb_output *o,
                                     yaml_node_t *key, yaml_node_t *value)
{
    const char *name = sb_yml_text(key);
    int field;

    if (name == NULL || strcmp(name, "plugin") == 0) {
        return SB_OK; /* read first, by cfg_output_kind */
    }
    if (strcmp(name, "retry") == 0) {
        return cfg_output_retry(ctx, value, &o->retry);
    }
    if (strcmp(name, "concurrency") == 0) {
        return cfg_output_concurrency(ctx, value, &o->concurrency);
    }
    field = sb_output_field_index(o->kind, name);
    if (field >= 0) {
        return cfg_output_template(ctx, value, name, &o->defaults[field]);
    }
    return SB_OK; /* the plugin's: read by its create() */
}

static enum sb_status cfg_output_kind(struct cfg_ctx *ctx, yaml_node_t *node,
                                      struct sb_output *o)
{
    yaml_node_pair_t *pair;
    struct sb_error why;
    char *name = NULL;
    enum sb_status rc;

    for (pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        const char *k = sb_yml_text(sb_yml_node(ctx->y, pair->key));
        yaml_node_t *v = sb_yml_node(ctx->y, pair->value);

        if (k == NULL || strcmp(k, "plugin") != 0) {
            continue;
        }
        rc = sb_yml_scalar(ctx->y, v, "plugin", &name);
        if (rc != SB_OK) {
            return rc;
        }
        sb_error_clear(&why);
        rc = sb_plugins_find(ctx->cfg->plugins, name, &o->kind, &why);
        free(name);
        if (rc == SB_ERR_INVALID) {
            return sb_yml_fail(ctx->y, v, "%s", why.msg);
        }
        return rc;
    }
    return sb_yml_fail(ctx->y, node, "output: expected plugin: NAME");
}

/*
 * Copies the keys the plugin reads itself into its config tree: all but
 * the router's own and the plugin's template fields.
 */
static enum sb_status cfg_output_plugin_keys(struct cfg_ctx *ctx,
                                             yaml_node_t *node,
                                             struct sb_output *o)
{
    const char *skip[SB_OUTPUT_MAX_FIELDS + 4] = {"plugin", "retry",
                                                  "concurrency"};
    size_t i;

    for (i = 0; i < o->kind->field_count; i++) {
        skip[3 + i] = o->kind->fields[i].name;
    }
    return sb_plugin_config_build(ctx->y, node, skip, &o->plugin_config);
}

static enum sb_status cfg_output_defaults(struct sb_output *o)
{
    struct sb_error why;
    size_t i;

    for (i = 0; i < o->kind->field_count; i++) {
        const char *text = o->kind->fields[i].default_text;

        if (o->defaults[i] == NULL && text != NULL &&
            sb_template_parse(text, &o->defaults[i], &why) != SB_OK) {
            return SB_ERR_NOMEM; /* built-in defaults always parse */
        }
    }
    return SB_OK;
}

static enum sb_status cfg_add_output(struct cfg_ctx *ctx, yaml_node_t *name,
                                     yaml_node_t *node)
{
    struct sb_output *o = &ctx->cfg->outputs[ctx->cfg->output_count];
    yaml_node_pair_t *pair;
    enum sb_status rc;

    if (node->type != YAML_MAPPING_NODE) {
        return sb_yml_fail(ctx->y, node,
                           "output: expected a mapping with plugin:, got %s",
                           sb_yml_kind(node));
    }
    o->name = strdup(sb_yml_text(name));
    if (o->name == NULL) {
        return SB_ERR_NOMEM;
    }
    ctx->cfg->output_count++;
    o->concurrency = CFG_DEFAULT_CONCURRENCY;
    o->retry = (struct sb_retry_policy)CFG_DEFAULT_RETRY;
    rc = cfg_output_kind(ctx, node, o);
    if (rc != SB_OK) {
        return rc;
    }
    if (o->kind->default_concurrency > 0) {
        o->concurrency = o->kind->default_concurrency;
    }
    rc = cfg_output_plugin_keys(ctx, node, o);
    for (pair = node->data.mapping.pairs.start;
         rc != SB_ERR_NOMEM && pair < node->data.mapping.pairs.top; pair++) {
        enum sb_status step =
            cfg_output_key(ctx, o, sb_yml_node(ctx->y, pair->key),
                           sb_yml_node(ctx->y, pair->value));

        rc = step != SB_OK ? step : rc;
    }
    return rc == SB_OK ? cfg_output_defaults(o) : rc;
}

static enum sb_status cfg_apply_outputs(struct cfg_ctx *ctx,
                                        const struct cfg_key *key,
                                        yaml_node_t *node)
{
    (void)key;
    ctx->outputs = node;
    return SB_OK;
}

/* Outputs need plugins.dir, wherever in the file it is: read after it. */
static enum sb_status cfg_read_outputs(struct cfg_ctx *ctx)
{
    struct sb_config *cfg = ctx->cfg;
    enum sb_status rc;

    if (cfg->plugins_dir == NULL) {
        cfg->plugins_dir = strdup(SB_PLUGINDIR);
    }
    cfg->outputs = calloc(SB_CONFIG_MAX_OUTPUTS, sizeof(*cfg->outputs));
    if (cfg->plugins_dir == NULL || cfg->outputs == NULL) {
        return SB_ERR_NOMEM;
    }
    rc = sb_plugins_new(cfg->plugins_dir, &cfg->plugins);
    if (rc != SB_OK || ctx->outputs == NULL) {
        return rc;
    }
    return cfg_named_entries(ctx, ctx->outputs, "outputs",
                             SB_CONFIG_MAX_OUTPUTS, cfg_add_output);
}

static enum sb_status cfg_apply_rules(struct cfg_ctx *ctx,
                                      const struct cfg_key *key,
                                      yaml_node_t *node)
{
    (void)key;
    ctx->rules = node;
    return SB_OK;
}

static enum sb_status cfg_compile_rules(struct cfg_ctx *ctx)
{
    struct sb_config *cfg = ctx->cfg;
    struct sb_rules_refs refs = {
        .outputs = cfg->outputs,
        .output_count = cfg->output_count,
        .schedules = cfg->schedules,
        .schedule_count = cfg->schedule_count,
    };

    if (ctx->rules == NULL) {
        return sb_rules_new_empty(&cfg->rules);
    }
    return sb_rules_compile(ctx->y, ctx->rules, &refs, &cfg->rules);
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

static const struct cfg_key log_keys[] = {
    {"level", cfg_apply_log_level, offsetof(struct sb_config, log_level), 0, 0,
     NULL, "error, warn, info or debug"},
    {NULL, NULL, 0, 0, 0, NULL, NULL},
};

static const struct cfg_key plugins_keys[] = {
    {"dir", cfg_apply_file_path, offsetof(struct sb_config, plugins_dir), 0, 0,
     NULL, "folder of plugin shared objects"},
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
    {"log", cfg_apply_map, 0, 0, 0, log_keys, "logging"},
    /* The older spelling of log.level, still read. */
    {"log_level", cfg_apply_log_level, offsetof(struct sb_config, log_level), 0,
     0, NULL, "error, warn, info or debug"},
    {"timezone", cfg_apply_timezone, offsetof(struct sb_config, timezone), 0, 0,
     NULL, "tz database name for schedules"},
    {"schedules", cfg_apply_schedules, 0, 0, 0, NULL, "named time windows"},
    {"plugins", cfg_apply_map, 0, 0, 0, plugins_keys, "plugin folder"},
    {"outputs", cfg_apply_outputs, 0, 0, 0, NULL, "where events go"},
    {"rules", cfg_apply_rules, 0, 0, 0, NULL, "what goes where"},
    {NULL, NULL, 0, 0, 0, NULL, NULL},
};

static const struct cfg_key *cfg_find_key(const struct cfg_key *keys,
                                          const char *name)
{
    const struct cfg_key *k;

    for (k = keys; name != NULL && k->name != NULL; k++) {
        if (strcmp(k->name, name) == 0) {
            return k;
        }
    }
    return NULL;
}

/* The names of a key table, NULL-terminated, for sb_yml_check_key. */
static void cfg_key_names(const struct cfg_key *keys, const char **names,
                          size_t cap)
{
    size_t n = 0;

    while (keys[n].name != NULL && n + 1 < cap) {
        names[n] = keys[n].name;
        n++;
    }
    names[n] = NULL;
}

/*
 * Applies every pair of `map`. A bad key or value is recorded and the
 * walk goes on, so one `check` reports every mistake in the file.
 */
static enum sb_status cfg_apply_pairs(struct cfg_ctx *ctx,
                                      const struct cfg_key *keys,
                                      yaml_node_t *map, const char *where)
{
    const char *names[32];
    yaml_node_pair_t *pair;
    enum sb_status rc = SB_OK;

    cfg_key_names(keys, names, sizeof(names) / sizeof(names[0]));
    for (pair = map->data.mapping.pairs.start;
         pair < map->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = sb_yml_node(ctx->y, pair->key);
        const struct cfg_key *known;
        enum sb_status step;

        step = sb_yml_check_key(ctx->y, map, pair, names, where);
        known = cfg_find_key(keys, sb_yml_text(k));
        if (step == SB_OK && known != NULL) {
            step = known->apply(ctx, known, sb_yml_node(ctx->y, pair->value));
        }
        if (step == SB_ERR_NOMEM) {
            return step;
        }
        if (step != SB_OK) {
            rc = step;
        }
    }
    return rc;
}

static enum sb_status
cfg_apply_map(struct cfg_ctx *ctx, const struct cfg_key *key, yaml_node_t *node)
{
    if (node->type != YAML_MAPPING_NODE) {
        return sb_yml_fail(ctx->y, node, "%s: expected a mapping, got %s",
                           key->name, sb_yml_kind(node));
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
        return sb_yml_fail(
            ctx->y, root,
            "auth.bearer: expected a list of at least one secret");
    }
    cfg->admin_enabled = cfg->admin_listen.port != 0;
    return cfg_fill_defaults(cfg);
}

static enum sb_status cfg_parse_document(struct cfg_ctx *ctx)
{
    yaml_node_t *root = sb_yml_root(ctx->y);
    enum sb_status rc;
    enum sb_status step;

    if (root == NULL) {
        return sb_yml_fail(ctx->y, NULL,
                           "the file is empty; expected at least auth.bearer");
    }
    if (root->type != YAML_MAPPING_NODE) {
        return sb_yml_fail(ctx->y, root,
                           "expected a mapping at the top level, got %s",
                           sb_yml_kind(root));
    }
    rc = cfg_apply_pairs(ctx, root_keys, root, "the top level");
    if (rc == SB_ERR_NOMEM) {
        return rc;
    }
    step = cfg_read_outputs(ctx);
    if (step == SB_ERR_NOMEM) {
        return step;
    }
    rc = step != SB_OK ? step : rc;
    step = cfg_compile_rules(ctx);
    if (step == SB_ERR_NOMEM) {
        return step;
    }
    if (cfg_validate(ctx, root) != SB_OK || rc != SB_OK || step != SB_OK) {
        return SB_ERR_INVALID;
    }
    return SB_OK;
}

enum sb_status sb_config_load(const char *path, struct sb_config **out_cfg,
                              struct sb_errors *errs)
{
    struct sb_yml y;
    struct cfg_ctx ctx = {.y = &y};
    struct sb_config *cfg = calloc(1, sizeof(*cfg));
    enum sb_status rc;

    *out_cfg = NULL;
    sb_errors_clear(errs);
    if (cfg == NULL) {
        return SB_ERR_NOMEM;
    }
    atomic_init(&cfg->refs, 1);
    ctx.cfg = cfg;
    cfg_set_defaults(cfg);
    cfg->source = strdup(path);
    rc = sb_yml_load(path, errs, &y);
    if (rc == SB_OK) {
        rc = cfg->source ? cfg_parse_document(&ctx) : SB_ERR_NOMEM;
    }
    sb_yml_cleanup(&y);
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

struct sb_config *sb_config_ref(struct sb_config *cfg)
{
    atomic_fetch_add(&cfg->refs, 1);
    return cfg;
}

void sb_config_unref(struct sb_config *cfg)
{
    if (cfg != NULL && atomic_fetch_sub(&cfg->refs, 1) == 1) {
        sb_config_free(cfg);
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
    for (i = 0; i < cfg->output_count; i++) {
        sb_output_cleanup(&cfg->outputs[i]);
    }
    free(cfg->outputs);
    sb_plugins_free(cfg->plugins); /* after every instance is destroyed */
    for (i = 0; i < cfg->schedule_count; i++) {
        free(cfg->schedules[i].name);
    }
    free(cfg->schedules);
    sb_rules_free(cfg->rules);
    free(cfg->timezone);
    free(cfg->plugins_dir);
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
    fprintf(out, "  outputs:   %zu, schedules: %zu, rules: %zu\n",
            cfg->output_count, cfg->schedule_count, sb_rules_count(cfg->rules));
}
