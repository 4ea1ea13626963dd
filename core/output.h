/* SPDX-License-Identifier: MIT */
/*
 * Outputs as the config names them (SPEC §3 `outputs:`): a name, the
 * plugin that serves it, its retry policy and concurrency, and the
 * template fields the plugin declares with their defaults and escaping.
 *
 * The plugin kinds are a built-in table until the plugin ABI lands.
 */
#ifndef SB_OUTPUT_H
#define SB_OUTPUT_H

#include <stddef.h>
#include <stdint.h>

#include "template.h"

#define SB_OUTPUT_MAX_FIELDS 4

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

/* What one plugin accepts. */
struct sb_output_kind {
    const char *name;
    const char *const *keys; /* plugin keys, NULL-terminated */
    const char *const *required;
    const char *const *secrets; /* keys whose values are never shown */
    struct sb_output_field fields[SB_OUTPUT_MAX_FIELDS];
    size_t field_count;
};

struct sb_retry_policy {
    uint64_t max_attempts;
    uint64_t initial_ms;
    uint64_t max_delay_ms;
    uint64_t max_age_ms;
};

struct sb_output {
    char *name;
    const struct sb_output_kind *kind;
    struct sb_retry_policy retry;
    uint64_t concurrency;
    /* The kind's fields in order; NULL where the envelope is the default. */
    struct sb_template *defaults[SB_OUTPUT_MAX_FIELDS];
};

/* The kind called `name`, or NULL. */
const struct sb_output_kind *sb_output_kind_find(const char *name);

/* "file, slack, smtp, sms, http": for "expected one of" messages. */
const char *sb_output_kind_names(void);

/* The index of field `name` in `kind`, or -1. */
int sb_output_field_index(const struct sb_output_kind *kind, const char *name);

/* Whether `key` of `kind` holds a secret. */
int sb_output_key_is_secret(const struct sb_output_kind *kind, const char *key);

/*
 * Writes the event envelope {"id","received_at","event_type","payload",
 * "rule"} as one line of compact JSON: the default of a field whose
 * default_text is NULL. With ctx->redact the payload is "[payload]".
 */
enum sb_status sb_output_envelope(const struct sb_template_context *ctx,
                                  struct sb_buf *out);

/* Frees what an output owns (not the struct). */
void sb_output_cleanup(struct sb_output *out);

#endif
