/* SPDX-License-Identifier: MIT */
/*
 * The admin listener: GET /healthz (the process answers), /readyz (the
 * spool is writable and the config loaded) and /metrics (Prometheus text
 * format 0.0.4, see metrics.h), on an address of its own so it can stay
 * on loopback while the webhook faces the internet.
 */
#ifndef SB_ADMIN_H
#define SB_ADMIN_H

#include "config.h"
#include "spool.h"
#include "status.h"

struct sb_admin;

/*
 * Starts the admin listener on cfg->admin_listen, with a reader connection
 * of its own to `spool` for the backlog gauges. `spool` must outlive it;
 * `cfg` is only read during the call. On SB_OK the caller owns
 * *out_admin; on SB_ERR_IO `err` names the address or the spool and the
 * reason.
 */
enum sb_status sb_admin_start(const struct sb_config *cfg,
                              struct sb_spool *spool,
                              struct sb_admin **out_admin,
                              struct sb_error *err);

/* Stops the listener. Accepts NULL. */
void sb_admin_free(struct sb_admin *admin);

#endif
