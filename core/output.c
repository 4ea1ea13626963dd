/* SPDX-License-Identifier: MIT */
/*
 * Outputs: the router's view of a loaded plugin (its fields and their
 * escaping), an output's instance from create() to destroy(), the logging
 * service plugins get, and the event envelope the file and http outputs
 * send by default.
 */
#include "build_config.h"

#include "output.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "plugin_config.h"

/* The smallest descriptor we accept: everything up to destroy(). */
#define OUTPUT_DESCRIPTOR_MIN                         \
    (offsetof(struct sb_plugin_descriptor, destroy) + \
     sizeof(((struct sb_plugin_descriptor *)0)->destroy))

static enum sb_status output_kind_field(struct sb_output_field *field,
                                        const struct sb_plugin_field *from,
                                        struct sb_error *err)
{
    struct sb_template *tpl = NULL;
    struct sb_error why;

    if (from->name == NULL || from->name[0] == '\0') {
        sb_error_set(err, "a template field has no name");
        return SB_ERR_INVALID;
    }
    if ((unsigned)from->escape > SB_PLUGIN_ESCAPE_HEADER) {
        sb_error_set(err, "field \"%s\": unknown escaping %u", from->name,
                     (unsigned)from->escape);
        return SB_ERR_INVALID;
    }
    if (from->default_template != NULL) {
        if (sb_template_parse(from->default_template, &tpl, &why) != SB_OK) {
            sb_error_set(err, "field \"%s\": default template: %s", from->name,
                         why.msg);
            return SB_ERR_INVALID;
        }
        sb_template_free(tpl);
    }
    field->name = from->name;
    field->default_text = from->default_template;
    /* The two enums list the same modes in the same order. */
    field->escape = (enum sb_escape)from->escape;
    return SB_OK;
}

enum sb_status sb_output_kind_init(struct sb_output_kind *kind,
                                   const struct sb_plugin_descriptor *desc,
                                   struct sb_error *err)
{
    size_t i;

    memset(kind, 0, sizeof(*kind));
    if (desc->size < OUTPUT_DESCRIPTOR_MIN) {
        sb_error_set(err, "descriptor is %zu bytes; expected at least %zu",
                     desc->size, (size_t)OUTPUT_DESCRIPTOR_MIN);
        return SB_ERR_INVALID;
    }
    if (desc->name == NULL || desc->create == NULL || desc->deliver == NULL ||
        desc->destroy == NULL) {
        sb_error_set(err,
                     "descriptor lacks a name, create, deliver or destroy");
        return SB_ERR_INVALID;
    }
    if (desc->field_count > SB_OUTPUT_MAX_FIELDS ||
        (desc->field_count > 0 && desc->fields == NULL)) {
        sb_error_set(err, "declares %zu template fields; at most %d",
                     desc->field_count, SB_OUTPUT_MAX_FIELDS);
        return SB_ERR_INVALID;
    }
    for (i = 0; i < desc->field_count; i++) {
        enum sb_status rc =
            output_kind_field(&kind->fields[i], &desc->fields[i], err);

        if (rc != SB_OK) {
            return rc;
        }
    }
    kind->name = desc->name;
    kind->plugin = desc;
    kind->field_count = desc->field_count;
    /* Read only from a descriptor built with a header that has it. */
    if (desc->size >=
            offsetof(struct sb_plugin_descriptor, default_concurrency) +
                sizeof(desc->default_concurrency) &&
        desc->default_concurrency <= SB_OUTPUT_MAX_CONCURRENCY) {
        kind->default_concurrency = desc->default_concurrency;
    }
    return SB_OK;
}

int sb_output_field_index(const struct sb_output_kind *kind, const char *name)
{
    size_t i;

    for (i = 0; i < kind->field_count; i++) {
        if (strcmp(kind->fields[i].name, name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* struct sb_plugin_host.log: the plugin's words, quoted, with its output. */
static void output_host_log(const struct sb_plugin_host *host,
                            enum sb_plugin_log_level level, const char *fmt,
                            ...)
{
    enum sb_log_level ours =
        level > SB_PLUGIN_LOG_DEBUG ? SB_LOG_DEBUG : (enum sb_log_level)level;
    char text[1024];
    char quoted[1100];
    va_list ap;

    if (!sb_log_enabled(ours)) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    sb_log_write(ours, "plugin", "output=%s msg=%s", host->output,
                 sb_log_quote(quoted, sizeof(quoted), text));
}

enum sb_status sb_output_open(struct sb_output *out, int check_only,
                              struct sb_errors *errs)
{
    const struct sb_plugin_descriptor *desc = out->kind->plugin;
    size_t before = sb_errors_total(errs);
    void *instance = NULL;
    int rc;

    out->host = (struct sb_plugin_host){
        .abi_version = SB_PLUGIN_ABI_VERSION,
        .size = sizeof(struct sb_plugin_host),
        .version = PACKAGE_VERSION,
        .output = out->name,
        .check_only = check_only,
        .log = output_host_log,
    };
    sb_plugin_config_bind(out->plugin_config, &out->host, errs);
    rc = desc->create(out->plugin_config, &out->host, &instance);
    /* Even after a failed create: a misspelt key is often why it failed. */
    sb_plugin_config_unread(out->plugin_config, desc->name);
    if (rc == 0 && (check_only || sb_errors_total(errs) > before)) {
        desc->destroy(instance);
        instance = NULL;
    } else if (rc == 0) {
        out->instance = instance;
        out->opened = 1;
    }
    sb_plugin_config_bind(out->plugin_config, &out->host, NULL);
    if (rc != 0 && sb_errors_total(errs) == before) {
        struct sb_error err;

        sb_error_set(&err,
                     "output \"%s\": plugin %s could not start (see the log)",
                     out->name, desc->name);
        sb_errors_add(errs, &err);
    }
    return sb_errors_total(errs) > before ? SB_ERR_INVALID : SB_OK;
}

void sb_output_close(struct sb_output *out)
{
    if (out->opened) {
        out->kind->plugin->destroy(out->instance);
        out->instance = NULL;
        out->opened = 0;
    }
}

/* Appends `"name":` then a JSON string. */
static enum sb_status output_add_string(struct sb_buf *out, const char *name,
                                        const char *value)
{
    enum sb_status rc = sb_json_write_string(name, strlen(name), out);

    if (rc == SB_OK) {
        rc = sb_buf_addc(out, ':');
    }
    if (rc == SB_OK) {
        rc = sb_json_write_string(value, strlen(value), out);
    }
    return rc;
}

enum sb_status sb_output_envelope(const struct sb_template_context *ctx,
                                  struct sb_buf *out)
{
    const struct sb_json *type = sb_json_get(ctx->event, "event_type", 10);
    const struct sb_json *payload = sb_json_get(ctx->event, "payload", 7);
    enum sb_status rc = sb_buf_addc(out, '{');

    if (rc == SB_OK) {
        rc = output_add_string(out, "id", ctx->event_id);
    }
    if (rc == SB_OK) {
        rc = sb_buf_addc(out, ',');
    }
    if (rc == SB_OK) {
        rc = output_add_string(out, "received_at", ctx->received_at);
    }
    if (rc == SB_OK) {
        rc = sb_buf_adds(out, ",\"event_type\":");
    }
    if (rc == SB_OK) {
        rc = sb_json_write(type, out);
    }
    if (rc == SB_OK) {
        rc = sb_buf_adds(out, ",\"payload\":");
    }
    if (rc == SB_OK) {
        /* A dry run shows where the payload goes, never what it says. */
        if (ctx->redact) {
            rc = sb_buf_adds(out, "\"[payload]\"");
        } else {
            rc = payload ? sb_json_write(payload, out) : sb_buf_adds(out, "{}");
        }
    }
    if (rc == SB_OK) {
        rc = sb_buf_addc(out, ',');
    }
    if (rc == SB_OK) {
        rc = output_add_string(out, "rule", ctx->rule ? ctx->rule : "");
    }
    return rc == SB_OK ? sb_buf_addc(out, '}') : rc;
}

int sb_output_same(const struct sb_output *a, const struct sb_output *b)
{
    return a->kind->plugin == b->kind->plugin &&
           a->retry.max_attempts == b->retry.max_attempts &&
           a->retry.initial_ms == b->retry.initial_ms &&
           a->retry.max_delay_ms == b->retry.max_delay_ms &&
           a->retry.max_age_ms == b->retry.max_age_ms &&
           a->concurrency == b->concurrency &&
           sb_plugin_config_equal(a->plugin_config, b->plugin_config);
}

void sb_output_cleanup(struct sb_output *out)
{
    size_t i;

    if (out == NULL) {
        return;
    }
    sb_output_close(out);
    sb_plugin_config_free(out->plugin_config);
    out->plugin_config = NULL;
    for (i = 0; i < SB_OUTPUT_MAX_FIELDS; i++) {
        sb_template_free(out->defaults[i]);
        out->defaults[i] = NULL;
    }
    free(out->name);
    out->name = NULL;
}
