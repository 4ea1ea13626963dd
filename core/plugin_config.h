/* SPDX-License-Identifier: MIT */
/*
 * An output's plugin keys as the plugin reads them: a small tree copied
 * out of the YAML document at load (the document is gone by the time
 * create() runs), every scalar already ${VAR}-expanded, every node with
 * its file:line:col. The accessors of struct sb_plugin_host read it, mark
 * what they read, and record errors at the key's position; whatever no
 * accessor read is reported as an unknown key.
 */
#ifndef SB_PLUGIN_CONFIG_H
#define SB_PLUGIN_CONFIG_H

#include <yaml.h>

#include "status.h"
#include "switchboard/plugin.h"
#include "yml.h"

/*
 * Copies the pairs of `map` whose keys are not in `skip` (NULL-terminated:
 * the keys the router reads itself) into a new tree. Scalars are expanded;
 * an unset ${VAR} is recorded in y's errors and returns SB_ERR_INVALID.
 * On SB_OK the caller owns *out (sb_plugin_config_free).
 */
enum sb_status sb_plugin_config_build(struct sb_yml *y, yaml_node_t *map,
                                      const char *const *skip,
                                      struct sb_plugin_config **out);

/*
 * Fills `host`'s accessor functions; errors they find go to `errs`
 * (borrowed until sb_plugin_config_unread). Not thread-safe: create() runs
 * on one thread.
 */
void sb_plugin_config_bind(struct sb_plugin_config *cfg,
                           struct sb_plugin_host *host, struct sb_errors *errs);

/*
 * Records, in the errors bound above, every key no accessor read, with
 * the plugin's name; returns how many there were.
 */
size_t sb_plugin_config_unread(struct sb_plugin_config *cfg,
                               const char *plugin);

/*
 * Whether two trees hold the same keys with the same values, in the same
 * order: a reload keeps an output's instance when nothing it was created
 * from changed. NULL equals NULL.
 */
int sb_plugin_config_equal(const struct sb_plugin_config *a,
                           const struct sb_plugin_config *b);

/* Frees the tree and wipes its values (they may be secrets). NULL is ok. */
void sb_plugin_config_free(struct sb_plugin_config *cfg);

#endif
