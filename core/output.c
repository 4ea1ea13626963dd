/* SPDX-License-Identifier: MIT */
/*
 * The built-in output kinds (SPEC §8's table) and the event envelope that
 * the file and http outputs send by default.
 *
 * LIMIT: the kinds are a table compiled into the router, not descriptors
 * read from loaded plugins. Matters when: a user names a plugin of their
 * own. Until then: such a name is refused by `check` with the list of
 * known kinds, so nothing is accepted that cannot be honoured.
 */
#include "build_config.h"

#include "output.h"

#include <stdlib.h>
#include <string.h>

static const char *const output_file_keys[] = {"path", "fsync", NULL};
static const char *const output_file_required[] = {"path", NULL};
static const char *const output_no_secrets[] = {NULL};

static const char *const output_slack_keys[] = {"webhook_url", "channel",
                                                "username", "icon_emoji", NULL};
static const char *const output_slack_required[] = {"webhook_url", NULL};
static const char *const output_slack_secrets[] = {"webhook_url", NULL};

static const char *const output_smtp_keys[] = {
    "url", "starttls", "username", "password", "from", "to", "cc", NULL};
static const char *const output_smtp_required[] = {"url", "from", "to", NULL};
static const char *const output_smtp_secrets[] = {"password", NULL};

static const char *const output_sms_keys[] = {
    "provider", "account_sid", "auth_token", "from",   "to", "base_url",
    "url",      "method",      "headers",    "format", NULL};
static const char *const output_sms_required[] = {"provider", NULL};
static const char *const output_sms_secrets[] = {"auth_token", NULL};

static const char *const output_http_keys[] = {"url", "method", "headers",
                                               "signing_secret", NULL};
static const char *const output_http_required[] = {"url", NULL};
static const char *const output_http_secrets[] = {"signing_secret", NULL};

static const struct sb_output_kind output_kinds[] = {
    {"file",
     output_file_keys,
     output_file_required,
     output_no_secrets,
     {{"line", NULL, SB_ESCAPE_NONE}},
     1},
    {"slack",
     output_slack_keys,
     output_slack_required,
     output_slack_secrets,
     {{"text", "{{event_type}} event {{event_id}}", SB_ESCAPE_SLACK}},
     1},
    {"smtp",
     output_smtp_keys,
     output_smtp_required,
     output_smtp_secrets,
     {{"subject", "[switchboard] {{event_type}}", SB_ESCAPE_HEADER},
      {"body", "Event {{event_id}} ({{event_type}}) received {{received_at}}.",
       SB_ESCAPE_NONE}},
     2},
    {"sms",
     output_sms_keys,
     output_sms_required,
     output_sms_secrets,
     {{"body", "{{event_type}} event {{event_id}}", SB_ESCAPE_NONE}},
     1},
    {"http",
     output_http_keys,
     output_http_required,
     output_http_secrets,
     {{"body", NULL, SB_ESCAPE_JSON}},
     1},
};

const struct sb_output_kind *sb_output_kind_find(const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(output_kinds) / sizeof(output_kinds[0]); i++) {
        if (strcmp(output_kinds[i].name, name) == 0) {
            return &output_kinds[i];
        }
    }
    return NULL;
}

const char *sb_output_kind_names(void)
{
    return "file, slack, smtp, sms, http";
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

int sb_output_key_is_secret(const struct sb_output_kind *kind, const char *key)
{
    size_t i;

    for (i = 0; kind->secrets[i] != NULL; i++) {
        if (strcmp(kind->secrets[i], key) == 0) {
            return 1;
        }
    }
    return 0;
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

void sb_output_cleanup(struct sb_output *out)
{
    size_t i;

    if (out == NULL) {
        return;
    }
    for (i = 0; i < SB_OUTPUT_MAX_FIELDS; i++) {
        sb_template_free(out->defaults[i]);
        out->defaults[i] = NULL;
    }
    free(out->name);
    out->name = NULL;
}
