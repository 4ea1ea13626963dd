/* SPDX-License-Identifier: MIT */
/*
 * The fakes fake_plugins.h describes. Field tables match the real
 * plugins' (SPEC §8), which is what rules and templates are checked
 * against.
 */
#include "fake_plugins.h"

#include <stddef.h>

#include "plugin_host.h"

static int fake_create(const struct sb_plugin_config *cfg,
                       const struct sb_plugin_host *host, void **out_instance)
{
    (void)cfg;
    (void)host;
    *out_instance = NULL;
    return -1;
}

static enum sb_plugin_status fake_deliver(void *instance,
                                          const struct sb_plugin_message *msg,
                                          struct sb_plugin_result *out)
{
    (void)instance;
    (void)msg;
    (void)out;
    return SB_PLUGIN_FAILED;
}

static void fake_destroy(void *instance)
{
    (void)instance;
}

#define FAKE(var, plugin, field_table)                               \
    static const struct sb_plugin_descriptor var = {                 \
        .abi_version = SB_PLUGIN_ABI_VERSION,                        \
        .size = sizeof(struct sb_plugin_descriptor),                 \
        .name = plugin,                                              \
        .fields = field_table,                                       \
        .field_count = sizeof(field_table) / sizeof(field_table[0]), \
        .create = fake_create,                                       \
        .deliver = fake_deliver,                                     \
        .destroy = fake_destroy,                                     \
    }

static const struct sb_plugin_field fake_file_fields[] = {
    {"line", NULL, SB_PLUGIN_ESCAPE_NONE},
};
static const struct sb_plugin_field fake_slack_fields[] = {
    {"text", "{{event_type}} event {{event_id}}", SB_PLUGIN_ESCAPE_SLACK},
};
static const struct sb_plugin_field fake_smtp_fields[] = {
    {"subject", "[switchboard] {{event_type}}", SB_PLUGIN_ESCAPE_HEADER},
    {"body", "Event {{event_id}} ({{event_type}}) received {{received_at}}.",
     SB_PLUGIN_ESCAPE_NONE},
};
static const struct sb_plugin_field fake_sms_fields[] = {
    {"body", "{{event_type}} event {{event_id}}", SB_PLUGIN_ESCAPE_NONE},
};
static const struct sb_plugin_field fake_http_fields[] = {
    {"body", NULL, SB_PLUGIN_ESCAPE_JSON},
};

FAKE(fake_file, "file", fake_file_fields);
FAKE(fake_slack, "slack", fake_slack_fields);
FAKE(fake_smtp, "smtp", fake_smtp_fields);
FAKE(fake_sms, "sms", fake_sms_fields);
FAKE(fake_http, "http", fake_http_fields);

static const struct sb_plugin_descriptor *const fake_all[] = {
    &fake_file, &fake_slack, &fake_smtp, &fake_sms, &fake_http, NULL,
};

void fake_plugins_preload(void)
{
    sb_plugins_preload(fake_all);
}
