/* SPDX-License-Identifier: MIT */
/*
 * Dispatch (SPEC §7): hands due deliveries to their outputs' plugins and
 * stores what each attempt came to.
 *
 * One scheduler thread reads due deliveries from the spool on a reader
 * connection of its own, so it never waits on the writer, and queues them
 * per output. Each output has its own queue and worker threads (its
 * `concurrency`, or one when the plugin is not thread-safe): a slow or
 * stuck output fills only its own queue. A worker's outcome goes back
 * through the spool's writer like an event (sb_spool_settle), so the
 * state a crash leaves behind is always one that was committed: a
 * delivery whose outcome never committed is still pending and is tried
 * again (at least once, never lost).
 */
#ifndef SB_DISPATCH_H
#define SB_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "spool.h"
#include "status.h"

struct sb_dispatch;

/*
 * Prepares dispatch for every output of `cfg`, whose instances are open,
 * and registers with `spool` to hear of new deliveries; call before
 * sb_spool_start(). Starts no thread yet. Each output's lane takes a
 * reference to `cfg`; `spool` is borrowed until sb_dispatch_free().
 */
enum sb_status sb_dispatch_new(struct sb_config *cfg, struct sb_spool *spool,
                               struct sb_dispatch **out, struct sb_error *err);

/* Starts the scheduler and the workers; call after sb_spool_start(). */
enum sb_status sb_dispatch_start(struct sb_dispatch *d, struct sb_error *err);

/*
 * Whether a reload to a config with `out` would keep the running lane and
 * instance of the output of that name (nothing it was created from
 * changed), so `out` itself need not be opened.
 */
int sb_dispatch_keeps(struct sb_dispatch *d, const struct sb_output *out);

/*
 * Switches to the outputs of `cfg` (a reload): lanes whose output did not
 * change keep running with their instance; the others finish the attempt
 * under way (waiting at most `grace_ms`), hand back what they queued and
 * have their instance destroyed; outputs new or changed get new lanes,
 * with the instances the caller opened in `cfg`. Pending deliveries stay
 * in the spool whatever happens to their output.
 */
enum sb_status sb_dispatch_reload(struct sb_dispatch *d, struct sb_config *cfg,
                                  uint64_t grace_ms, struct sb_error *err);

/*
 * Calls every instance's reopen(), if the plugin has one (SIGHUP: files
 * were rotated). Thread-safe with deliveries running.
 */
void sb_dispatch_reopen(struct sb_dispatch *d);

/*
 * Stops taking new work and waits up to `grace_ms` for the attempts under
 * way to finish and their outcomes to be queued with the spool. Queued
 * deliveries not yet begun stay pending for the next start. Returns how
 * many attempts were still inside a plugin's deliver() at the deadline:
 * when that is not 0 those threads are abandoned (they will touch nothing
 * once they return) and neither the dispatch nor the outputs' instances
 * may be freed; the caller flushes the spool and exits.
 */
size_t sb_dispatch_stop(struct sb_dispatch *d, uint64_t grace_ms);

/* Frees a dispatch that was never started or stopped with 0. NULL ok. */
void sb_dispatch_free(struct sb_dispatch *d);

/*
 * The delay before attempt `attempts` + 1 of a delivery whose attempt
 * number `attempts` (1-based) asked to retry: the plugin's `retry_after_ms`
 * capped at the policy's max_delay, or else full jitter, uniform in
 * [0, min(max_delay, initial * 2^(attempts - 1))]. `random` is a uniform
 * 64-bit value. Exposed for the unit tests.
 */
uint64_t sb_dispatch_retry_delay(const struct sb_retry_policy *policy,
                                 uint64_t attempts, uint64_t retry_after_ms,
                                 uint64_t random);

#endif
