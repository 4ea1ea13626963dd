/* SPDX-License-Identifier: MIT */
/*
 * Rules (SPEC §4): compiled once at load into a tree that evaluates
 * without allocating (paths pre-split, values parsed, regexes compiled),
 * then run on every accepted event, on the request's own thread, to
 * decide its deliveries: one per matched send entry whose `when` holds
 * and whose rule's throttle lets it through. Every rule that matches
 * sends, in order, until a matched rule says `stop: true`.
 */
#ifndef SB_RULES_H
#define SB_RULES_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "event.h"
#include "output.h"
#include "schedule.h"
#include "status.h"
#include "yml.h"

#define SB_RULES_MAX           1000  /* rules in a config, includes too */
#define SB_RULES_MAX_SENDS     64    /* send entries in one rule */
#define SB_RULES_MAX_INCLUDES  8     /* nesting of include: */
#define SB_RULES_THROTTLE_KEYS 10000 /* remembered keys per rule */

struct sb_ruleset;
struct sb_rule;

/* A named schedule the config defines. */
struct sb_named_schedule {
    char *name;
    struct sb_schedule schedule;
};

/* What rules may refer to by name; owned by the config. */
struct sb_rules_refs {
    const struct sb_output *outputs;
    size_t output_count;
    const struct sb_named_schedule *schedules;
    size_t schedule_count;
};

/*
 * Compiles the rules list `node` of file `y` (entries are rule mappings
 * or {include: GLOB}, globs relative to the file that holds them, read in
 * sorted order). Every mistake is recorded in y->errs with its file:line:
 * col; compiling goes on after one so all are reported. On SB_OK the
 * caller owns *out_rules (sb_rules_free). `refs` must outlive the rules.
 */
enum sb_status sb_rules_compile(struct sb_yml *y, yaml_node_t *node,
                                const struct sb_rules_refs *refs,
                                struct sb_ruleset **out_rules);

/* An empty rule set: no event creates a delivery. */
enum sb_status sb_rules_new_empty(struct sb_ruleset **out_rules);

/* How many rules; their names, in order. */
size_t sb_rules_count(const struct sb_ruleset *rules);
const char *sb_rules_name(const struct sb_ruleset *rules, size_t index);

/* A throttle key routing claimed, to give back if the event is lost. */
struct sb_throttle_claim {
    struct sb_rule *rule;
    char *key;
    int64_t previous_ms; /* 0: the key was free */
};

/*
 * What routing decided for one event. The arrays are sized for every send
 * entry and every throttled rule of the rule set, so routing never runs
 * out of room: an event is never refused for matching many rules.
 */
struct sb_route {
    struct sb_delivery_plan *deliveries;
    size_t count;
    struct sb_throttle_claim *claims;
    size_t claim_count;
    size_t throttled; /* matches a throttle held back */
};

/*
 * Why one rule did or did not send, for `switchboard test`. Values from
 * the event appear only as their type and size, never their text.
 */
struct sb_rule_trace {
    const char *rule;
    int matched;
    int throttled;
    int stopped; /* evaluation ended after this rule */
    char why[256];
};

struct sb_rules_trace {
    struct sb_rule_trace rules[SB_RULES_MAX];
    size_t count;
    char skipped[SB_RULES_MAX_SENDS][256]; /* send entries `when` held back */
    size_t skipped_count;
};

/*
 * Routes `event`: evaluates every rule in order, renders the fields of
 * each delivery (escaped per field), and claims throttle keys. `redact`
 * renders "[path]" instead of values (dry runs). `trace`, when not NULL,
 * receives the reasons. On SB_OK the caller owns what *route holds
 * (sb_route_cleanup). Thread-safe: throttle state has its own lock.
 */
enum sb_status sb_rules_route(const struct sb_ruleset *rules,
                              const struct sb_event *event, int redact,
                              struct sb_route *route,
                              struct sb_rules_trace *trace);

/*
 * Evaluates every rule's `match` on `event`, in order, honouring `stop`,
 * and sets matched[i] to 1 or 0 for rule i (0 after a stop). Decides and
 * renders nothing else: this is the part that runs for every rule on
 * every event, and it allocates nothing. Returns how many matched.
 */
size_t sb_rules_evaluate(const struct sb_ruleset *rules,
                         const struct sb_event *event, unsigned char *matched);

/*
 * Gives back the throttle keys `route` claimed: the event they were for
 * was not stored (503), so the next matching event must still send.
 */
void sb_rules_release(const struct sb_ruleset *rules, struct sb_route *route);

/* Frees what sb_rules_route allocated in `route`. */
void sb_route_cleanup(struct sb_route *route);

/* Frees a rule set. Accepts NULL. */
void sb_rules_free(struct sb_ruleset *rules);

/*
 * A reload: each throttled rule of `next` whose name, key template and
 * window are those of a rule in `old` starts with the keys `old` holds
 * inside their window, so reloading during an incident pages no one
 * twice. Call before `next` routes anything; `old` may be in use. A key
 * an in-flight request takes in `old` after this is not seen by `next`:
 * at most one alert too many, never one too few.
 */
void sb_rules_inherit_throttles(struct sb_ruleset *next,
                                const struct sb_ruleset *old);

#endif
