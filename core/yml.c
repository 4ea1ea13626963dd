/* SPDX-License-Identifier: MIT */
/*
 * YAML loading with positions, scalar expansion and error recording,
 * shared by the config and the rules so both report mistakes the same way.
 */
#include "build_config.h"

#include "yml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define YML_VAR_EXPECTED \
    "malformed ${...}; expected ${NAME} or ${NAME:-default}"

/* ---- positions and messages ------------------------------------------ */

enum sb_status sb_yml_fail(struct sb_yml *y, const yaml_node_t *node,
                           const char *fmt, ...)
{
    struct sb_error err;
    char msg[sizeof(err.msg)];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (node != NULL) {
        sb_error_at(&err, y->file, (unsigned)node->start_mark.line + 1,
                    (unsigned)node->start_mark.column + 1, "%s", msg);
    } else {
        sb_error_at(&err, y->file, 0, 0, "%s", msg);
    }
    sb_errors_add(y->errs, &err);
    return SB_ERR_INVALID;
}

const char *sb_yml_kind(const yaml_node_t *node)
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

const char *sb_yml_text(const yaml_node_t *node)
{
    if (node == NULL || node->type != YAML_SCALAR_NODE) {
        return NULL;
    }
    return (const char *)node->data.scalar.value;
}

int sb_yml_is_plain(const yaml_node_t *node)
{
    return node->type == YAML_SCALAR_NODE &&
           node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

yaml_node_t *sb_yml_root(struct sb_yml *y)
{
    return y->loaded ? yaml_document_get_root_node(&y->doc) : NULL;
}

yaml_node_t *sb_yml_node(struct sb_yml *y, int id)
{
    return yaml_document_get_node(&y->doc, id);
}

/* ---- scalars ------------------------------------------------------------ */

static int yml_var_char(char c, int first)
{
    if (c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) {
        return 1;
    }
    return !first && c >= '0' && c <= '9';
}

/*
 * Expands one "${...}" starting at `p` (just past "${"). Sets *out_end past
 * the closing brace.
 */
static enum sb_status yml_expand_var(const char *p, struct sb_buf *b,
                                     const char **out_end, struct sb_error *err)
{
    const char *name = p;
    const char *close = strchr(p, '}');
    const char *value;
    size_t name_len = 0;
    char var[128];

    *out_end = p;
    while (yml_var_char(name[name_len], name_len == 0)) {
        name_len++;
    }
    if (close == NULL || name_len == 0 || name_len >= sizeof(var)) {
        sb_error_set(err, YML_VAR_EXPECTED);
        return SB_ERR_INVALID;
    }
    if (name[name_len] != '}' && strncmp(name + name_len, ":-", 2) != 0) {
        sb_error_set(err, YML_VAR_EXPECTED);
        return SB_ERR_INVALID;
    }
    memcpy(var, name, name_len);
    var[name_len] = '\0';
    *out_end = close + 1;

    value = getenv(var);
    if (value != NULL) {
        return sb_buf_add(b, value, strlen(value));
    }
    if (name[name_len] == ':') {
        const char *def = name + name_len + 2;

        return sb_buf_add(b, def, (size_t)(close - def));
    }
    sb_error_set(err,
                 "environment variable %s is not set; ${%s:-x} gives a default",
                 var, var);
    return SB_ERR_INVALID;
}

enum sb_status sb_yml_expand(const char *text, char **out, struct sb_error *err)
{
    struct sb_buf b;
    const char *p = text;
    enum sb_status rc = SB_OK;

    sb_buf_init(&b, SB_YML_MAX_FILE_BYTES);

    while (rc == SB_OK && *p != '\0') {
        const char *dollar = strchr(p, '$');

        if (dollar == NULL) {
            rc = sb_buf_add(&b, p, strlen(p));
            break;
        }
        rc = sb_buf_add(&b, p, (size_t)(dollar - p));
        if (rc != SB_OK) {
            break;
        }
        if (dollar[1] == '$') {
            rc = sb_buf_add(&b, "$", 1);
            p = dollar + 2;
        } else if (dollar[1] == '{') {
            rc = yml_expand_var(dollar + 2, &b, &p, err);
        } else {
            rc = sb_buf_add(&b, "$", 1);
            p = dollar + 1;
        }
    }
    if (rc != SB_OK) {
        sb_buf_cleanup(&b);
        *out = NULL;
        return rc;
    }
    /* An empty result never allocated: hand out an empty string. */
    *out = b.data != NULL ? b.data : strdup("");
    return *out != NULL ? SB_OK : SB_ERR_NOMEM;
}

enum sb_status sb_yml_scalar(struct sb_yml *y, yaml_node_t *node,
                             const char *what, char **out)
{
    struct sb_error why;
    enum sb_status rc;

    *out = NULL;
    if (node->type != YAML_SCALAR_NODE) {
        return sb_yml_fail(y, node, "%s: expected a string, got %s", what,
                           sb_yml_kind(node));
    }
    sb_error_clear(&why);
    rc = sb_yml_expand((const char *)node->data.scalar.value, out, &why);
    if (rc == SB_ERR_INVALID) {
        return sb_yml_fail(y, node, "%s: %s", what, why.msg);
    }
    return rc;
}

/* ---- keys ---------------------------------------------------------------- */

/* "a, b, c" for "expected one of" messages. */
static void yml_key_names(const char *const *names, char *buf, size_t cap)
{
    size_t len = 0;
    size_t i;

    buf[0] = '\0';
    for (i = 0; names[i] != NULL && len < cap; i++) {
        int n =
            snprintf(buf + len, cap - len, "%s%s", len ? ", " : "", names[i]);

        if (n < 0) {
            break;
        }
        len += (size_t)n;
    }
}

static int yml_is_allowed(const char *const *allowed, const char *name)
{
    size_t i;

    for (i = 0; allowed[i] != NULL; i++) {
        if (strcmp(allowed[i], name) == 0) {
            return 1;
        }
    }
    return 0;
}

enum sb_status sb_yml_check_key(struct sb_yml *y, yaml_node_t *map,
                                yaml_node_pair_t *pair,
                                const char *const *allowed, const char *where)
{
    yaml_node_t *key = sb_yml_node(y, pair->key);
    const char *name = sb_yml_text(key);
    char expected[512];

    if (name == NULL) {
        return sb_yml_fail(y, key, "expected a key name, got %s",
                           sb_yml_kind(key));
    }
    if (!yml_is_allowed(allowed, name)) {
        yml_key_names(allowed, expected, sizeof(expected));
        return sb_yml_fail(y, key,
                           "unknown key \"%s\" in %s; expected one of %s", name,
                           where, expected);
    }
    if (sb_yml_key_repeats(y, map, pair)) {
        return sb_yml_fail(y, key, "duplicate key \"%s\"", name);
    }
    return SB_OK;
}

int sb_yml_key_repeats(struct sb_yml *y, yaml_node_t *map,
                       yaml_node_pair_t *pair)
{
    const char *name = sb_yml_text(sb_yml_node(y, pair->key));
    yaml_node_pair_t *prev;

    for (prev = map->data.mapping.pairs.start; name && prev < pair; prev++) {
        const char *seen = sb_yml_text(sb_yml_node(y, prev->key));

        if (seen != NULL && strcmp(seen, name) == 0) {
            return 1;
        }
    }
    return 0;
}

/* ---- files --------------------------------------------------------------- */

/* Resolves `path` against `base_dir` unless it is absolute. */
char *sb_yml_join_path(const char *base_dir, const char *path)
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
enum sb_status sb_yml_read_file(const char *path, const char *what, char **out,
                                struct sb_error *err)
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
    data = malloc(SB_YML_MAX_FILE_BYTES + 1);
    if (data == NULL) {
        fclose(f);
        return SB_ERR_NOMEM;
    }
    len = fread(data, 1, SB_YML_MAX_FILE_BYTES + 1, f);
    if (ferror(f) || len > SB_YML_MAX_FILE_BYTES) {
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

static char *yml_dir_of(const char *path)
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

static enum sb_status yml_parse(struct sb_yml *y, FILE *f)
{
    yaml_parser_t parser;
    struct sb_error err;

    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    if (!yaml_parser_load(&parser, &y->doc)) {
        sb_error_at(
            &err, y->file, (unsigned)parser.problem_mark.line + 1,
            (unsigned)parser.problem_mark.column + 1, "invalid YAML: %s%s%s",
            parser.problem ? parser.problem : "parse error",
            parser.context ? " " : "", parser.context ? parser.context : "");
        sb_errors_add(y->errs, &err);
        yaml_parser_delete(&parser);
        return SB_ERR_INVALID;
    }
    y->loaded = 1;
    yaml_parser_delete(&parser);
    return SB_OK;
}

enum sb_status sb_yml_load(const char *path, struct sb_errors *errs,
                           struct sb_yml *y)
{
    struct sb_error err;
    enum sb_status rc;
    FILE *f;

    memset(y, 0, sizeof(*y));
    y->errs = errs;
    y->file = strdup(path);
    y->base_dir = yml_dir_of(path);
    if (y->file == NULL || y->base_dir == NULL) {
        return SB_ERR_NOMEM;
    }
    f = fopen(path, "rb");
    if (f == NULL) {
        sb_error_at(&err, path, 0, 0, "cannot open: %s", strerror(errno));
        sb_errors_add(errs, &err);
        return SB_ERR_INVALID;
    }
    rc = yml_parse(y, f);
    fclose(f);
    return rc;
}

void sb_yml_cleanup(struct sb_yml *y)
{
    if (y->loaded) {
        yaml_document_delete(&y->doc);
    }
    free(y->file);
    free(y->base_dir);
    memset(y, 0, sizeof(*y));
}
