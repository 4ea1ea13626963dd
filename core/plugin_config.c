/* SPDX-License-Identifier: MIT */
/*
 * The tree a plugin reads its config from, and the accessor functions the
 * host hands it (struct sb_plugin_host). Errors name the key's position
 * and never quote a value: plugin keys hold passwords and tokens.
 */
#include "build_config.h"

#include "plugin_config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

enum pcfg_kind {
    PCFG_SCALAR,
    PCFG_LIST,
    PCFG_MAP,
};

/* What every node of one tree shares; lives in the root. */
struct pcfg_shared {
    char *file;
    char *base_dir;
    const char *output; /* borrowed from the host while bound */
    struct sb_errors *errs;
    /* Every config_path answer, kept until the tree is freed. */
    char **joined;
    size_t joined_count;
};

struct sb_plugin_config {
    enum pcfg_kind kind;
    char *key;     /* in its parent map; NULL for list items and the root */
    char *text;    /* scalars: expanded */
    unsigned line; /* of the value */
    unsigned col;
    unsigned key_line; /* of the key, in a map: where "unknown key" points */
    unsigned key_col;
    int used;
    struct sb_plugin_config *children; /* map values or list items */
    size_t count;
    const char **texts; /* list: item texts; map: key names */
    struct pcfg_shared *shared;
};

static enum sb_status pcfg_fill(struct sb_yml *y, yaml_node_t *node,
                                struct sb_plugin_config *out,
                                struct pcfg_shared *shared);

static int pcfg_skipped(const char *key, const char *const *skip)
{
    size_t i;

    for (i = 0; skip != NULL && skip[i] != NULL; i++) {
        if (strcmp(skip[i], key) == 0) {
            return 1;
        }
    }
    return 0;
}

static enum sb_status pcfg_fill_map(struct sb_yml *y, yaml_node_t *node,
                                    const char *const *skip,
                                    struct sb_plugin_config *out)
{
    yaml_node_pair_t *pair;
    enum sb_status rc = SB_OK;
    size_t cap =
        (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);

    out->children = calloc(cap + 1, sizeof(*out->children));
    out->texts = calloc(cap + 1, sizeof(*out->texts));
    if (out->children == NULL || out->texts == NULL) {
        return SB_ERR_NOMEM;
    }
    for (pair = node->data.mapping.pairs.start;
         pair < node->data.mapping.pairs.top; pair++) {
        yaml_node_t *k = sb_yml_node(y, pair->key);
        struct sb_plugin_config *child = &out->children[out->count];
        enum sb_status step;

        if (k->type != YAML_SCALAR_NODE) {
            rc = sb_yml_fail(y, k, "expected a plain key, got %s",
                             sb_yml_kind(k));
            continue;
        }
        if (pcfg_skipped(sb_yml_text(k), skip)) {
            continue;
        }
        if (sb_yml_key_repeats(y, node, pair)) {
            rc = sb_yml_fail(y, k, "key \"%s\" repeats an earlier key",
                             sb_yml_text(k));
            continue;
        }
        child->key = strdup(sb_yml_text(k));
        if (child->key == NULL) {
            return SB_ERR_NOMEM;
        }
        child->key_line = (unsigned)k->start_mark.line + 1;
        child->key_col = (unsigned)k->start_mark.column + 1;
        out->texts[out->count] = child->key;
        out->count++;
        step = pcfg_fill(y, sb_yml_node(y, pair->value), child, out->shared);
        if (step == SB_ERR_NOMEM) {
            return step;
        }
        rc = step != SB_OK ? step : rc;
    }
    return rc;
}

static enum sb_status pcfg_fill_list(struct sb_yml *y, yaml_node_t *node,
                                     struct sb_plugin_config *out)
{
    yaml_node_item_t *item;
    enum sb_status rc = SB_OK;
    size_t cap = (size_t)(node->data.sequence.items.top -
                          node->data.sequence.items.start);

    out->children = calloc(cap + 1, sizeof(*out->children));
    out->texts = calloc(cap + 1, sizeof(*out->texts));
    if (out->children == NULL || out->texts == NULL) {
        return SB_ERR_NOMEM;
    }
    for (item = node->data.sequence.items.start;
         item < node->data.sequence.items.top; item++) {
        struct sb_plugin_config *child = &out->children[out->count];
        enum sb_status step =
            pcfg_fill(y, sb_yml_node(y, *item), child, out->shared);

        out->texts[out->count] = child->text; /* NULL unless a scalar */
        out->count++;
        if (step == SB_ERR_NOMEM) {
            return step;
        }
        rc = step != SB_OK ? step : rc;
    }
    return rc;
}

static enum sb_status pcfg_fill(struct sb_yml *y, yaml_node_t *node,
                                struct sb_plugin_config *out,
                                struct pcfg_shared *shared)
{
    out->shared = shared;
    out->line = (unsigned)node->start_mark.line + 1;
    out->col = (unsigned)node->start_mark.column + 1;
    if (node->type == YAML_SCALAR_NODE) {
        out->kind = PCFG_SCALAR;
        return sb_yml_scalar(y, node, out->key ? out->key : "value",
                             &out->text);
    }
    if (node->type == YAML_SEQUENCE_NODE) {
        out->kind = PCFG_LIST;
        return pcfg_fill_list(y, node, out);
    }
    out->kind = PCFG_MAP;
    return pcfg_fill_map(y, node, NULL, out);
}

enum sb_status sb_plugin_config_build(struct sb_yml *y, yaml_node_t *map,
                                      const char *const *skip,
                                      struct sb_plugin_config **out)
{
    struct sb_plugin_config *root = calloc(1, sizeof(*root));
    struct pcfg_shared *shared = calloc(1, sizeof(*shared));
    enum sb_status rc = SB_ERR_NOMEM;

    *out = NULL;
    if (root == NULL || shared == NULL) {
        free(root);
        free(shared);
        return SB_ERR_NOMEM;
    }
    root->shared = shared;
    root->kind = PCFG_MAP;
    root->line = (unsigned)map->start_mark.line + 1;
    root->col = (unsigned)map->start_mark.column + 1;
    shared->file = strdup(y->file);
    shared->base_dir = strdup(y->base_dir ? y->base_dir : ".");
    if (shared->file != NULL && shared->base_dir != NULL) {
        rc = pcfg_fill_map(y, map, skip, root);
    }
    if (rc != SB_OK) {
        sb_plugin_config_free(root);
        return rc;
    }
    *out = root;
    return SB_OK;
}

/* ---- errors ---------------------------------------------------------------
 */

static void pcfg_record(const struct sb_plugin_config *at, const char *fmt,
                        va_list ap) __attribute__((format(printf, 2, 0)));

static void pcfg_record(const struct sb_plugin_config *at, const char *fmt,
                        va_list ap)
{
    struct pcfg_shared *shared = at->shared;
    struct sb_error err;
    char msg[sizeof(err.msg)];

    if (shared->errs == NULL) {
        return;
    }
    vsnprintf(msg, sizeof(msg), fmt, ap);
    sb_error_at(&err, shared->file, at->line, at->col, "output \"%s\": %s",
                shared->output ? shared->output : "?", msg);
    sb_errors_add(shared->errs, &err);
}

static int pcfg_fail(const struct sb_plugin_config *at, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int pcfg_fail(const struct sb_plugin_config *at, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    pcfg_record(at, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- the accessors ----------------------------------------------------- */

/* The child called `key`, marked read; NULL when absent. */
static struct sb_plugin_config *pcfg_find(const struct sb_plugin_config *map,
                                          const char *key)
{
    size_t i;

    if (map == NULL || map->kind != PCFG_MAP) {
        return NULL;
    }
    for (i = 0; i < map->count; i++) {
        if (strcmp(map->children[i].key, key) == 0) {
            map->children[i].used = 1;
            return &map->children[i];
        }
    }
    return NULL;
}

/*
 * The scalar at `key`: 1 found, 0 absent and optional, -1 recorded error
 * (absent but required, or not a scalar).
 */
static int pcfg_scalar(const struct sb_plugin_config *map, const char *key,
                       int required, const char *expected,
                       const struct sb_plugin_config **out)
{
    const struct sb_plugin_config *node = pcfg_find(map, key);

    *out = node;
    if (node == NULL) {
        return required ? pcfg_fail(map, "missing key \"%s\"; expected %s", key,
                                    expected)
                        : 0;
    }
    if (node->kind != PCFG_SCALAR) {
        return pcfg_fail(node, "%s: expected %s, got a %s", key, expected,
                         node->kind == PCFG_MAP ? "mapping" : "list");
    }
    return 1;
}

static int pcfg_string(const struct sb_plugin_config *cfg, const char *key,
                       int required, const char *def, const char **out)
{
    const struct sb_plugin_config *node;
    int found = pcfg_scalar(cfg, key, required, "a string", &node);

    *out = found == 1 ? node->text : def;
    return found < 0 ? -1 : 0;
}

static int pcfg_path(const struct sb_plugin_config *cfg, const char *key,
                     int required, const char *def, const char **out)
{
    struct pcfg_shared *shared = cfg->shared;
    const char *text = NULL;
    char **joined;

    *out = NULL;
    if (pcfg_string(cfg, key, required, def, &text) != 0) {
        return -1;
    }
    if (text == NULL) {
        return 0;
    }
    joined =
        realloc(shared->joined, (shared->joined_count + 1) * sizeof(*joined));
    if (joined == NULL) {
        return pcfg_fail(cfg, "%s: out of memory", key);
    }
    shared->joined = joined;
    joined[shared->joined_count] = sb_yml_join_path(shared->base_dir, text);
    if (joined[shared->joined_count] == NULL) {
        return pcfg_fail(cfg, "%s: out of memory", key);
    }
    *out = joined[shared->joined_count++];
    return 0;
}

static int pcfg_integer(const struct sb_plugin_config *cfg, const char *key,
                        int required, int64_t def, int64_t *out)
{
    const struct sb_plugin_config *node;
    int found = pcfg_scalar(cfg, key, required, "an integer", &node);
    char *end = NULL;
    long long v;

    *out = def;
    if (found != 1) {
        return found;
    }
    errno = 0;
    v = strtoll(node->text, &end, 10);
    if (errno != 0 || end == node->text || *end != '\0') {
        return pcfg_fail(node, "%s: expected an integer", key);
    }
    *out = v;
    return 0;
}

static int pcfg_boolean(const struct sb_plugin_config *cfg, const char *key,
                        int required, int def, int *out)
{
    const struct sb_plugin_config *node;
    int found = pcfg_scalar(cfg, key, required, "true or false", &node);

    *out = def;
    if (found != 1) {
        return found;
    }
    if (strcmp(node->text, "true") == 0 || strcmp(node->text, "false") == 0) {
        *out = node->text[0] == 't';
        return 0;
    }
    return pcfg_fail(node, "%s: expected true or false", key);
}

static int pcfg_duration(const struct sb_plugin_config *cfg, const char *key,
                         int required, uint64_t def, uint64_t *out_ms)
{
    const struct sb_plugin_config *node;
    int found = pcfg_scalar(cfg, key, required, "a duration", &node);
    struct sb_error why;

    *out_ms = def;
    if (found != 1) {
        return found;
    }
    if (sb_config_parse_duration(node->text, out_ms, &why) != SB_OK) {
        *out_ms = def;
        return pcfg_fail(node, "%s: %s", key, why.msg);
    }
    return 0;
}

static int pcfg_size(const struct sb_plugin_config *cfg, const char *key,
                     int required, size_t def, size_t *out)
{
    const struct sb_plugin_config *node;
    int found = pcfg_scalar(cfg, key, required, "a size", &node);
    struct sb_error why;

    *out = def;
    if (found != 1) {
        return found;
    }
    if (sb_config_parse_size(node->text, out, &why) != SB_OK) {
        *out = def;
        return pcfg_fail(node, "%s: %s", key, why.msg);
    }
    return 0;
}

static int pcfg_strings(const struct sb_plugin_config *cfg, const char *key,
                        int required, struct sb_plugin_strings *out)
{
    const struct sb_plugin_config *node = pcfg_find(cfg, key);
    size_t i;

    *out = (struct sb_plugin_strings){NULL, 0};
    if (node == NULL) {
        return required
                   ? pcfg_fail(cfg,
                               "missing key \"%s\"; expected a list of strings",
                               key)
                   : 0;
    }
    if (node->kind == PCFG_SCALAR) {
        *out = (struct sb_plugin_strings){(const char *const *)&node->text, 1};
        return 0;
    }
    if (node->kind == PCFG_MAP) {
        return pcfg_fail(node, "%s: expected a list of strings, got a mapping",
                         key);
    }
    for (i = 0; i < node->count; i++) {
        if (node->texts[i] == NULL) {
            return pcfg_fail(&node->children[i],
                             "%s: expected a string in the list", key);
        }
    }
    *out = (struct sb_plugin_strings){node->texts, node->count};
    return 0;
}

static int pcfg_map(const struct sb_plugin_config *cfg, const char *key,
                    int required, const struct sb_plugin_config **out)
{
    const struct sb_plugin_config *node = pcfg_find(cfg, key);

    *out = NULL;
    if (node == NULL) {
        return required
                   ? pcfg_fail(cfg, "missing key \"%s\"; expected a mapping",
                               key)
                   : 0;
    }
    if (node->kind != PCFG_MAP) {
        return pcfg_fail(node, "%s: expected a mapping", key);
    }
    *out = node;
    return 0;
}

static int pcfg_keys(const struct sb_plugin_config *cfg,
                     struct sb_plugin_strings *out)
{
    *out = (struct sb_plugin_strings){cfg->texts, cfg->count};
    return 0;
}

static int pcfg_error(const struct sb_plugin_config *cfg, const char *key,
                      const char *fmt, ...)
{
    const struct sb_plugin_config *at = NULL;
    size_t i;
    va_list ap;

    for (i = 0; cfg->kind == PCFG_MAP && i < cfg->count; i++) {
        if (strcmp(cfg->children[i].key, key) == 0) {
            at = &cfg->children[i];
        }
    }
    va_start(ap, fmt);
    pcfg_record(at ? at : cfg, fmt, ap);
    va_end(ap);
    return -1;
}

void sb_plugin_config_bind(struct sb_plugin_config *cfg,
                           struct sb_plugin_host *host, struct sb_errors *errs)
{
    cfg->shared->errs = errs;
    cfg->shared->output = host->output;
    host->config_string = pcfg_string;
    host->config_path = pcfg_path;
    host->config_integer = pcfg_integer;
    host->config_boolean = pcfg_boolean;
    host->config_duration = pcfg_duration;
    host->config_size = pcfg_size;
    host->config_strings = pcfg_strings;
    host->config_map = pcfg_map;
    host->config_keys = pcfg_keys;
    host->config_error = pcfg_error;
}

/* Unread keys of one map; maps that were read are walked too. */
static size_t pcfg_unread(const struct sb_plugin_config *map,
                          const char *plugin)
{
    size_t n = 0;
    size_t i;

    for (i = 0; i < map->count; i++) {
        const struct sb_plugin_config *child = &map->children[i];

        if (!child->used) {
            struct sb_plugin_config at = *child;

            at.line = child->key_line;
            at.col = child->key_col;
            pcfg_fail(&at, "unknown key \"%s\" for plugin %s", child->key,
                      plugin);
            n++;
        } else if (child->kind == PCFG_MAP) {
            n += pcfg_unread(child, plugin);
        }
    }
    return n;
}

size_t sb_plugin_config_unread(struct sb_plugin_config *cfg, const char *plugin)
{
    return pcfg_unread(cfg, plugin);
}

int sb_plugin_config_equal(const struct sb_plugin_config *a,
                           const struct sb_plugin_config *b)
{
    size_t i;

    if (a == NULL || b == NULL) {
        return a == b;
    }
    if (a->kind != b->kind || a->count != b->count ||
        (a->key == NULL) != (b->key == NULL) ||
        (a->key != NULL && strcmp(a->key, b->key) != 0) ||
        (a->text == NULL) != (b->text == NULL) ||
        (a->text != NULL && strcmp(a->text, b->text) != 0)) {
        return 0;
    }
    for (i = 0; i < a->count; i++) {
        if (!sb_plugin_config_equal(&a->children[i], &b->children[i])) {
            return 0;
        }
    }
    return 1;
}

/* Frees what a node owns, not the node (nodes live in arrays). */
static void pcfg_cleanup(struct sb_plugin_config *node)
{
    size_t i;

    for (i = 0; i < node->count; i++) {
        pcfg_cleanup(&node->children[i]);
    }
    free(node->children);
    free(node->texts);
    free(node->key);
    if (node->text != NULL) {
        explicit_bzero(node->text, strlen(node->text));
        free(node->text);
    }
}

void sb_plugin_config_free(struct sb_plugin_config *cfg)
{
    struct pcfg_shared *shared;

    if (cfg == NULL) {
        return;
    }
    shared = cfg->shared;
    pcfg_cleanup(cfg);
    free(cfg);
    if (shared != NULL) {
        free(shared->file);
        free(shared->base_dir);
        for (size_t i = 0; i < shared->joined_count; i++) {
            free(shared->joined[i]);
        }
        free(shared->joined);
        free(shared);
    }
}
