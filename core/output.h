/* SPDX-License-Identifier: MIT */
/*
 * Outputs as the config names them (SPEC §3 `outputs:`): a name, the
 * plugin that serves it, its retry policy and concurrency, the template
 * fields the plugin declares with their defaults and escaping, and, once
 * opened, the plugin's instance.
 */
#ifndef SB_OUTPUT_H
#define SB_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "switchboard/plugin.h"
#include "template.h"

#define SB_OUTPUT_MAX_FIELDS      8
#define SB_OUTPUT_MAX_CONCURRENCY 64

/* A template field a plugin takes (SPEC §8, italics). */
struct sb_output_field {
    const char *name;
    /*
     * NULL: the field defaults to the event envelope, which the plugin
     * builds from the stored event at delivery (stored as null).
     */
    const char *default_text;
    enum sb_escape escape;
};

/* A loaded plugin as the router sees it; owned by the plugin registry. */
struct sb_output_kind {
    const char *name;
    const struct sb_plugin_descriptor *plugin;
    struct sb_output_field fields[SB_OUTPUT_MAX_FIELDS];
    size_t field_count;
    uint32_t default_concurrency; /* 0: the router's */
};

struct sb_retry_policy {
    uint64_t max_attempts;
    uint64_t initial_ms;
    uint64_t max_delay_ms;
    uint64_t max_age_ms;
};

struct sb_plugin_config;

struct sb_output {
    char *name;
    const struct sb_output_kind *kind;
    struct sb_retry_policy retry;
    uint64_t concurrency; /* deliveries in flight at once */
    /* The kind's fields in order; NULL where the envelope is the default. */
    struct sb_template *defaults[SB_OUTPUT_MAX_FIELDS];
    struct sb_plugin_config *plugin_config; /* the plugin's own keys */
    struct sb_plugin_host host;             /* handed to the instance */
    void *instance;                         /* set by sb_output_open */
    int opened;
};

/*
 * Fills `kind` from a descriptor whose ABI handshake already passed:
 * checks its callbacks and field table. SB_ERR_INVALID says what is wrong
 * in `err`, prefixed by nothing: the caller names the file.
 */
enum sb_status sb_output_kind_init(struct sb_output_kind *kind,
                                   const struct sb_plugin_descriptor *desc,
                                   struct sb_error *err);

/* The index of field `name` in `kind`, or -1. */
int sb_output_field_index(const struct sb_output_kind *kind, const char *name);

/*
 * Creates the plugin instance of `out` from its config. With `check_only`
 * the plugin only validates (SPEC: `check` touches nothing) and the
 * instance is destroyed again before returning. Every problem, including
 * keys the plugin never read, goes to `errs`. Returns SB_ERR_INVALID when
 * any was found. Not thread-safe.
 */
enum sb_status sb_output_open(struct sb_output *out, int check_only,
                              struct sb_errors *errs);

/*
 * Destroys the instance, exactly once after a successful open; the caller
 * makes sure no deliver() is running. Accepts an output never opened.
 */
void sb_output_close(struct sb_output *out);

/*
 * Writes the event envelope {"id","received_at","event_type","payload",
 * "rule"} as one line of compact JSON: the default of a field whose
 * default_text is NULL. With ctx->redact the payload is "[payload]".
 */
enum sb_status sb_output_envelope(const struct sb_template_context *ctx,
                                  struct sb_buf *out);

/*
 * Whether `a` and `b` would create the same instance: the same plugin,
 * plugin keys, retry policy and concurrency. Their names may differ.
 */
int sb_output_same(const struct sb_output *a, const struct sb_output *b);

/* Closes the output and frees what it owns (not the struct). */
void sb_output_cleanup(struct sb_output *out);

#endif
