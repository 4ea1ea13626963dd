/* SPDX-License-Identifier: MIT */
/*
 * The plugin registry: one dlopen per plugin file per config, the ABI
 * handshake, and the router's view of each descriptor.
 */
#include "build_config.h"

#include "plugin_host.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLUGINS_MAX 64

struct plugin_entry {
    char *name;
    void *handle; /* NULL for a preloaded descriptor */
    struct sb_output_kind kind;
};

struct sb_plugins {
    char *dir;
    struct plugin_entry entries[PLUGINS_MAX];
    size_t count;
};

static const struct sb_plugin_descriptor *const *plugins_preloaded;

void sb_plugins_preload(const struct sb_plugin_descriptor *const *descs)
{
    plugins_preloaded = descs;
}

enum sb_status sb_plugins_new(const char *dir, struct sb_plugins **out)
{
    struct sb_plugins *reg = calloc(1, sizeof(*reg));

    *out = NULL;
    if (reg == NULL) {
        return SB_ERR_NOMEM;
    }
    reg->dir = strdup(dir);
    if (reg->dir == NULL) {
        free(reg);
        return SB_ERR_NOMEM;
    }
    *out = reg;
    return SB_OK;
}

/* A plugin name is a file name: no path tricks through the config. */
static int plugins_name_ok(const char *name)
{
    size_t i;

    for (i = 0; name[i] != '\0'; i++) {
        char c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-')) {
            return 0;
        }
    }
    return i > 0 && i < 64;
}

static const struct sb_plugin_descriptor *
plugins_find_preloaded(const char *name)
{
    size_t i;

    for (i = 0; plugins_preloaded != NULL && plugins_preloaded[i] != NULL;
         i++) {
        if (strcmp(plugins_preloaded[i]->name, name) == 0) {
            return plugins_preloaded[i];
        }
    }
    return NULL;
}

/*
 * The handshake, in the order that keeps a wrong plugin from being read
 * past its end: the version first, then the size, then the rest.
 */
static enum sb_status plugins_check(const struct sb_plugin_descriptor *desc,
                                    const char *path, const char *name,
                                    struct sb_output_kind *kind,
                                    struct sb_error *err)
{
    struct sb_error why;

    if (desc->abi_version != SB_PLUGIN_ABI_VERSION) {
        sb_error_set(
            err,
            "%s: plugin ABI version %u; this switchboard speaks %u (rebuild the plugin against its header)",
            path, (unsigned)desc->abi_version, SB_PLUGIN_ABI_VERSION);
        return SB_ERR_INVALID;
    }
    sb_error_clear(&why);
    if (sb_output_kind_init(kind, desc, &why) != SB_OK) {
        sb_error_set(err, "%s: %s", path, why.msg);
        return SB_ERR_INVALID;
    }
    if (strcmp(desc->name, name) != 0) {
        sb_error_set(
            err,
            "%s: the plugin calls itself \"%.64s\"; expected \"%s\" as its file name says",
            path, desc->name, name);
        return SB_ERR_INVALID;
    }
    return SB_OK;
}

/* dlopen and dlsym; the handle is closed again on any failure. */
static enum sb_status plugins_open(const char *path, const char *name,
                                   struct plugin_entry *entry,
                                   struct sb_error *err)
{
    const struct sb_plugin_descriptor *desc;
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);

    if (handle == NULL) {
        /* dlerror() names the file and says why (missing, bad ELF). */
        sb_error_set(err, "cannot load plugin %s: %s", name, dlerror());
        return SB_ERR_INVALID;
    }
    desc = dlsym(handle, SB_PLUGIN_SYMBOL);
    if (desc == NULL) {
        sb_error_set(err, "%s: no symbol %s; is it a switchboard plugin?", path,
                     SB_PLUGIN_SYMBOL);
        dlclose(handle);
        return SB_ERR_INVALID;
    }
    if (plugins_check(desc, path, name, &entry->kind, err) != SB_OK) {
        dlclose(handle);
        return SB_ERR_INVALID;
    }
    entry->handle = handle;
    return SB_OK;
}

static enum sb_status plugins_load(struct sb_plugins *reg, const char *name,
                                   struct plugin_entry *entry,
                                   struct sb_error *err)
{
    const struct sb_plugin_descriptor *pre = plugins_find_preloaded(name);
    char path[4096];

    if (pre != NULL) {
        return plugins_check(pre, "(preloaded)", name, &entry->kind, err);
    }
    if (snprintf(path, sizeof(path), "%s/%s.so", reg->dir, name) >=
        (int)sizeof(path)) {
        sb_error_set(err, "plugins.dir is too long");
        return SB_ERR_INVALID;
    }
    return plugins_open(path, name, entry, err);
}

enum sb_status sb_plugins_find(struct sb_plugins *reg, const char *name,
                               const struct sb_output_kind **out_kind,
                               struct sb_error *err)
{
    struct plugin_entry *entry;
    enum sb_status rc;
    size_t i;

    *out_kind = NULL;
    for (i = 0; i < reg->count; i++) {
        if (strcmp(reg->entries[i].name, name) == 0) {
            *out_kind = &reg->entries[i].kind;
            return SB_OK;
        }
    }
    if (!plugins_name_ok(name)) {
        sb_error_set(err, "bad plugin name; expected letters, digits, _ or -");
        return SB_ERR_INVALID;
    }
    if (reg->count == PLUGINS_MAX) {
        sb_error_set(err, "too many plugins; at most %d", PLUGINS_MAX);
        return SB_ERR_INVALID;
    }
    entry = &reg->entries[reg->count];
    memset(entry, 0, sizeof(*entry));
    rc = plugins_load(reg, name, entry, err);
    if (rc != SB_OK) {
        return rc;
    }
    entry->name = strdup(name);
    if (entry->name == NULL) {
        if (entry->handle != NULL) {
            dlclose(entry->handle);
        }
        return SB_ERR_NOMEM;
    }
    reg->count++;
    *out_kind = &entry->kind;
    return SB_OK;
}

void sb_plugins_free(struct sb_plugins *reg)
{
    size_t i;

    if (reg == NULL) {
        return;
    }
    for (i = 0; i < reg->count; i++) {
        if (reg->entries[i].handle != NULL) {
            dlclose(reg->entries[i].handle);
        }
        free(reg->entries[i].name);
    }
    free(reg->dir);
    free(reg);
}
