/* SPDX-License-Identifier: MIT */
/*
 * A valid descriptor in the wrong file: it calls itself "good_name"
 * while its file is bad_name.so, so an output saying `plugin: bad_name`
 * would get a plugin of another name. The loader must refuse it.
 */
#include <stddef.h>

#include <switchboard/plugin.h>

static int bad_name_create(const struct sb_plugin_config *cfg,
                           const struct sb_plugin_host *host,
                           void **out_instance)
{
    (void)cfg;
    (void)host;
    *out_instance = NULL;
    return -1;
}

static enum sb_plugin_status
bad_name_deliver(void *instance, const struct sb_plugin_message *msg,
                 struct sb_plugin_result *out)
{
    (void)instance;
    (void)msg;
    (void)out;
    return SB_PLUGIN_FAILED;
}

static void bad_name_destroy(void *instance)
{
    (void)instance;
}

SB_PLUGIN_DECLARE = {
    .abi_version = SB_PLUGIN_ABI_VERSION,
    .size = sizeof(struct sb_plugin_descriptor),
    .name = "good_name",
    .description = "names itself after another file",
    .create = bad_name_create,
    .deliver = bad_name_deliver,
    .destroy = bad_name_destroy,
};
