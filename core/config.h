/* SPDX-License-Identifier: MIT */
/*
 * The configuration: one YAML file read into a typed, immutable struct.
 * Every scalar goes through ${VAR} expansion; secrets may come from
 * file:PATH; every mistake is reported as file:line:col with what was
 * expected. Relative paths are taken from the config file's folder.
 */
#ifndef SB_CONFIG_H
#define SB_CONFIG_H

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "output.h"
#include "plugin_host.h"
#include "rules.h"
#include "status.h"

#define SB_CONFIG_DEFAULT_PATH  "switchboard.yaml"
#define SB_CONFIG_SYSTEM_PATH   "/etc/switchboard/switchboard.yaml"
#define SB_CONFIG_MAX_SECRETS   16
#define SB_CONFIG_MAX_OUTPUTS   64
#define SB_CONFIG_MAX_SCHEDULES 64

struct sb_listen {
    char host[256];
    uint16_t port;
};

struct sb_config {
    char *source; /* the file this was loaded from */
    struct sb_listen listen;
    char *path;          /* URL path of the webhook */
    char *tls_cert_path; /* NULL: plain HTTP */
    char *tls_key_path;
    char *tls_cert_pem; /* contents, loaded with the config */
    char *tls_key_pem;
    size_t max_body;
    char *bearer[SB_CONFIG_MAX_SECRETS];
    size_t bearer_count;
    int admin_enabled;
    struct sb_listen admin_listen;
    char *spool_path;
    uint64_t retention_ms;
    enum sb_log_level log_level;
    char *timezone; /* NULL: the machine's */
    char *plugins_dir;
    struct sb_named_schedule *schedules;
    size_t schedule_count;
    struct sb_plugins *plugins; /* the loaded plugins the outputs use */
    struct sb_output *outputs;
    size_t output_count;
    struct sb_ruleset *rules; /* never NULL once loaded */
    /*
     * References: a running server shares one config between its listener
     * and its dispatch lanes, and a reload retires it only when the last
     * request and lane using it are done (sb_config_unref).
     */
    atomic_uint refs;
};

/*
 * Loads and validates `path`. On SB_OK, *out_cfg is a new config the caller
 * owns (free with sb_config_free). On failure *out_cfg is NULL, `errs`
 * holds every mistake found, each with file:line:col, and the status is
 * SB_ERR_INVALID (bad or unreadable config) or SB_ERR_NOMEM.
 */
enum sb_status sb_config_load(const char *path, struct sb_config **out_cfg,
                              struct sb_errors *errs);

/*
 * Picks the config file when none was given: ./switchboard.yaml, then
 * /etc/switchboard/switchboard.yaml. Returns a static string: the first
 * that exists, or the first when neither does (so the error names it).
 */
const char *sb_config_default_path(void);

/* Frees a config and wipes its secrets. Accepts NULL. */
void sb_config_free(struct sb_config *cfg);

/* Takes one more reference to `cfg` (loaded with one); returns `cfg`. */
struct sb_config *sb_config_ref(struct sb_config *cfg);

/* Drops a reference; the last one frees the config. Accepts NULL. */
void sb_config_unref(struct sb_config *cfg);

/*
 * Writes a short human summary for `check`: listener, limits, how many
 * secrets are set (never their values), spool.
 */
void sb_config_describe(const struct sb_config *cfg, FILE *out);

/*
 * Parses a size: a non-negative integer with an optional unit B, KiB, MiB
 * or GiB, space between allowed ("256KiB", "1 MiB", "4096"). Returns
 * SB_ERR_INVALID with a message in `err` (no position) when malformed or
 * over SIZE_MAX.
 */
enum sb_status sb_config_parse_size(const char *text, size_t *out_bytes,
                                    struct sb_error *err);

/*
 * Parses a duration: one or more number+unit pairs with units ms, s, m, h,
 * d ("500ms", "10m", "1h30m"). A bare number is an error: the unit is
 * required so "10" is never guessed. Returns SB_ERR_INVALID on bad input.
 */
enum sb_status sb_config_parse_duration(const char *text, uint64_t *out_ms,
                                        struct sb_error *err);

/*
 * Resolves a secret that may be "file:PATH" (relative paths taken from
 * `base_dir`): reads the file and drops one trailing newline. Any other
 * text is copied as it is. On SB_OK *out is a new string the caller frees.
 */
enum sb_status sb_config_read_secret(const char *text, const char *base_dir,
                                     char **out, struct sb_error *err);

#endif
