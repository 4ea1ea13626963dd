/* SPDX-License-Identifier: MIT */
/*
 * Reading YAML files for the config and the rules: libyaml's document API
 * (which keeps every node's line and column), ${VAR} expansion of
 * scalars, and errors recorded as file:line:col into an error list so one
 * pass reports every mistake it finds.
 */
#ifndef SB_YML_H
#define SB_YML_H

#include <stddef.h>

#include <yaml.h>

#include "status.h"

#define SB_YML_MAX_FILE_BYTES (1024 * 1024)

/* One loaded file and where its errors go. */
struct sb_yml {
    char *file;     /* the path as given, for messages */
    char *base_dir; /* relative paths inside the file start here */
    yaml_document_t doc;
    int loaded;
    struct sb_errors *errs; /* borrowed */
};

/*
 * Reads and parses `path` into `y` (caller's storage). On SB_ERR_INVALID
 * (unreadable file, YAML syntax error) the error is in `errs` and `y` only
 * needs sb_yml_cleanup. `errs` must outlive `y`.
 */
enum sb_status sb_yml_load(const char *path, struct sb_errors *errs,
                           struct sb_yml *y);

/* Frees the document and names. Accepts a zeroed `y`. */
void sb_yml_cleanup(struct sb_yml *y);

/* The root node, NULL for an empty file. */
yaml_node_t *sb_yml_root(struct sb_yml *y);

/* The node with document index `id` (from pairs and items). */
yaml_node_t *sb_yml_node(struct sb_yml *y, int id);

/*
 * Records "file:line:col: message" at `node` (the file alone when NULL)
 * and returns SB_ERR_INVALID, so callers can `return sb_yml_fail(...)`.
 */
enum sb_status sb_yml_fail(struct sb_yml *y, const yaml_node_t *node,
                           const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "a scalar", "a list", "a mapping": for "expected X, got Y". */
const char *sb_yml_kind(const yaml_node_t *node);

/* The raw text of a scalar node, NULL for other kinds. */
const char *sb_yml_text(const yaml_node_t *node);

/* Whether a scalar was written plain (unquoted): only those are typed. */
int sb_yml_is_plain(const yaml_node_t *node);

/*
 * The ${VAR}-expanded text of a scalar node, new, the caller frees it.
 * `what` names the key in messages. Records the error and returns
 * SB_ERR_INVALID for another kind of node or an unset variable.
 */
enum sb_status sb_yml_scalar(struct sb_yml *y, yaml_node_t *node,
                             const char *what, char **out);

/*
 * Checks a mapping's key at `pair` against `allowed` (NULL-terminated):
 * a non-scalar key, an unknown one (listing what is allowed) or a repeat
 * of an earlier key is recorded. Returns SB_OK or SB_ERR_INVALID.
 */
enum sb_status sb_yml_check_key(struct sb_yml *y, yaml_node_t *map,
                                yaml_node_pair_t *pair,
                                const char *const *allowed, const char *where);

/* Whether the key at `pair` was already used earlier in `map`. */
int sb_yml_key_repeats(struct sb_yml *y, yaml_node_t *map,
                       yaml_node_pair_t *pair);

/*
 * Expands ${VAR} and ${VAR:-default} in `text` from the environment; "$$"
 * is a literal "$". On SB_OK *out is a new string the caller frees. An
 * unset variable without a default, or an unclosed "${", is SB_ERR_INVALID
 * with the variable's name (never its value) in `err`.
 */
enum sb_status sb_yml_expand(const char *text, char **out,
                             struct sb_error *err);

/* `path` resolved against `base_dir` unless absolute; new string. */
char *sb_yml_join_path(const char *base_dir, const char *path);

/*
 * Reads a whole file of at most SB_YML_MAX_FILE_BYTES; `what` names it in
 * errors ("secret file"). *out is new and NUL-terminated on SB_OK.
 */
enum sb_status sb_yml_read_file(const char *path, const char *what, char **out,
                                struct sb_error *err);

#endif
