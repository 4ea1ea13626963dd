/* SPDX-License-Identifier: MIT */
/*
 * Finding plugins: dlopen of `<plugins.dir>/<name>.so` with RTLD_NOW |
 * RTLD_LOCAL, the ABI handshake (version and descriptor size before
 * anything else), and the checks that turn a bad plugin into a clear
 * error naming its path instead of a crash. Each plugin is loaded once
 * per config, however many outputs name it, and unloaded with the config.
 */
#ifndef SB_PLUGIN_HOST_H
#define SB_PLUGIN_HOST_H

#include "output.h"
#include "status.h"
#include "switchboard/plugin.h"

struct sb_plugins;

/*
 * A registry that loads from `dir` (copied). On SB_OK the caller owns
 * *out (sb_plugins_free, after every instance of its plugins is gone).
 */
enum sb_status sb_plugins_new(const char *dir, struct sb_plugins **out);

/*
 * The kind for plugin `name`, loading it on first use. On SB_OK *out_kind
 * is borrowed from the registry. SB_ERR_INVALID with `err` saying what is
 * wrong and naming the file: not found, not a shared object, no
 * `switchboard_plugin` symbol, another ABI version, a descriptor too
 * small, a name that does not match the file, a bad field table.
 */
enum sb_status sb_plugins_find(struct sb_plugins *reg, const char *name,
                               const struct sb_output_kind **out_kind,
                               struct sb_error *err);

/*
 * Descriptors every registry finds before looking on disk, for unit tests
 * and fuzzing, which load configs without plugin files. `descs` is
 * NULL-terminated and must outlive every registry. Not thread-safe: call
 * it once, before any registry exists.
 */
void sb_plugins_preload(const struct sb_plugin_descriptor *const *descs);

/* Unloads every plugin. Accepts NULL. */
void sb_plugins_free(struct sb_plugins *reg);

#endif
