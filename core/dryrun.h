/* SPDX-License-Identifier: MIT */
/*
 * `switchboard test`: routes one event through the loaded rules without
 * storing or sending anything, and says for each rule whether it matched
 * and, when not, the first condition that failed; then every delivery
 * that would be made with its rendered fields. Values from the event are
 * never printed: fields render "[path]" where a value would go, and
 * reasons give a value's type and size, not its text.
 */
#ifndef SB_DRYRUN_H
#define SB_DRYRUN_H

#include <stdio.h>

#include "config.h"
#include "status.h"

/*
 * Routes the event in `body` (`len` bytes, malloc'd with a NUL at
 * body[len]; taken over, freed here) through cfg->rules and writes the
 * report to `out`, for people or, with `json`, for machines. Returns
 * SB_ERR_INVALID with `err` set when the body is not a valid event.
 */
enum sb_status sb_dryrun_run(const struct sb_config *cfg, char *body,
                             size_t len, int json, FILE *out,
                             struct sb_error *err);

#endif
