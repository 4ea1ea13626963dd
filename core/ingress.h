/* SPDX-License-Identifier: MIT */
/*
 * The webhook listener (SPEC §6): libmicrohttpd with an internal thread
 * pool, bearer check, body limits, validation, and an answer of 200 only
 * once the spool has committed the event. A request waiting for its
 * commit is suspended, not parked on a thread.
 */
#ifndef SB_INGRESS_H
#define SB_INGRESS_H

#include "config.h"
#include "spool.h"
#include "status.h"

#define SB_INGRESS_CONN_LIMIT     1000        /* connections at once */
#define SB_INGRESS_IDLE_TIMEOUT_S 10          /* cut clients silent this long */
#define SB_INGRESS_CONN_MEMORY    (32 * 1024) /* headers + read buffer */

struct sb_ingress;

/*
 * Binds the listener `cfg` describes and starts serving into `spool`,
 * which must outlive the ingress. The ingress takes a reference to `cfg`
 * (events are routed with cfg->rules). On SB_OK the caller owns
 * *out_ingress; on SB_ERR_IO (bind or TLS failure) `err` says why.
 */
enum sb_status sb_ingress_start(struct sb_config *cfg, struct sb_spool *spool,
                                struct sb_ingress **out_ingress,
                                struct sb_error *err);

/*
 * Stops accepting connections and waits up to `timeout_ms` for requests
 * already begun to be answered. Returns how many are still unanswered.
 */
unsigned sb_ingress_drain(struct sb_ingress *ingress, unsigned timeout_ms);

/*
 * Serves new requests with `cfg` (a reload): path, secrets, max_body and
 * rules. Requests already begun finish with the config they began with;
 * the old one is released when the last of them completes. The listen
 * address and TLS stay as they were started. Thread-safe with requests.
 */
enum sb_status sb_ingress_swap(struct sb_ingress *ingress,
                               struct sb_config *cfg);

/* Stops the listener, closing remaining connections. Accepts NULL. */
void sb_ingress_free(struct sb_ingress *ingress);

#endif
