/* SPDX-License-Identifier: MIT */
/*
 * A descriptor that is only its first two fields, as a plugin built
 * against a much older header would export. The object itself is that
 * small, so a loader that read past `size` would read past the end of
 * it (and the sanitizers would say so); the loader must refuse it.
 */
#include <stddef.h>
#include <stdint.h>

#include <switchboard/plugin.h>

struct small_desc {
    uint32_t abi_version;
    size_t size;
};

SB_PLUGIN_EXPORT extern const struct small_desc switchboard_plugin;

const struct small_desc switchboard_plugin = {
    .abi_version = SB_PLUGIN_ABI_VERSION,
    .size = sizeof(struct small_desc),
};
