/* SPDX-License-Identifier: MIT */
/*
 * A plugin built for the next ABI: the loader must refuse it, naming its
 * path, before it reads anything past the version.
 */
#include <stddef.h>

#include <switchboard/plugin.h>

static int wrong_abi_create(const struct sb_plugin_config *cfg,
                            const struct sb_plugin_host *host,
                            void **out_instance)
{
    (void)cfg;
    (void)host;
    *out_instance = NULL;
    return -1;
}

static enum sb_plugin_status
wrong_abi_deliver(void *instance, const struct sb_plugin_message *msg,
                  struct sb_plugin_result *out)
{
    (void)instance;
    (void)msg;
    (void)out;
    return SB_PLUGIN_FAILED;
}

static void wrong_abi_destroy(void *instance)
{
    (void)instance;
}

SB_PLUGIN_DECLARE = {
    .abi_version = SB_PLUGIN_ABI_VERSION + 1,
    .size = sizeof(struct sb_plugin_descriptor),
    .name = "wrong_abi",
    .description = "speaks an ABI this router does not",
    .create = wrong_abi_create,
    .deliver = wrong_abi_deliver,
    .destroy = wrong_abi_destroy,
};
