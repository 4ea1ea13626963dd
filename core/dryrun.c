/* SPDX-License-Identifier: MIT */
/*
 * The dry run's two reports: a readable one and a JSON one built with
 * cJSON, from the same routing result.
 */
#include "build_config.h"

#include "dryrun.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "event.h"
#include "json.h"
#include "rules.h"

/* The plugin serving output `name`, for the report. */
static const char *dryrun_plugin(const struct sb_config *cfg, const char *name)
{
    size_t i;

    for (i = 0; i < cfg->output_count; i++) {
        if (strcmp(cfg->outputs[i].name, name) == 0) {
            return cfg->outputs[i].kind->name;
        }
    }
    return "?";
}

static void dryrun_print_fields(const char *fields, FILE *out)
{
    struct sb_json_doc *doc = NULL;
    struct sb_error err;
    const struct sb_json *root;
    size_t i;

    if (sb_json_parse(fields, strlen(fields), &doc, &err) != SB_OK) {
        return;
    }
    root = sb_json_root(doc);
    for (i = 0; i < root->u.object.count; i++) {
        const struct sb_json_member *m = &root->u.object.members[i];

        fprintf(out, "       %s: %s\n", m->key, m->value->u.string.text);
    }
    sb_json_doc_free(doc);
}

static void dryrun_print_text(const struct sb_config *cfg,
                              const struct sb_event *event,
                              const struct sb_route *route,
                              const struct sb_rules_trace *trace, FILE *out)
{
    char when[SB_EVENT_TIME_LEN + 1];
    size_t i;

    sb_event_format_time(event->received_ms, when);
    fprintf(out, "event %s, received %s\n\nrules:\n", event->event_type, when);
    for (i = 0; i < trace->count; i++) {
        const struct sb_rule_trace *t = &trace->rules[i];
        const char *verdict = !t->matched    ? "not matched: "
                              : t->throttled ? "matched, throttled"
                              : t->stopped   ? "matched, stop"
                                             : "matched";

        fprintf(out, "  %-24s %s%s\n", t->rule, verdict,
                t->matched ? "" : t->why);
    }
    if (trace->count == 0) {
        fprintf(out, "  (none)\n");
    }
    fprintf(out, "\ndeliveries: %zu\n", route->count);
    for (i = 0; i < route->count; i++) {
        const struct sb_delivery_plan *d = &route->deliveries[i];

        fprintf(out, "  %zu. %s (%s) from rule %s\n", i + 1, d->output,
                dryrun_plugin(cfg, d->output), d->rule);
        dryrun_print_fields(d->fields, out);
    }
    for (i = 0; i < trace->skipped_count; i++) {
        fprintf(out, "  skipped %s\n", trace->skipped[i]);
    }
}

static cJSON *dryrun_rules_json(const struct sb_rules_trace *trace)
{
    cJSON *rules = cJSON_CreateArray();
    size_t i;

    for (i = 0; rules != NULL && i < trace->count; i++) {
        const struct sb_rule_trace *t = &trace->rules[i];
        cJSON *r = cJSON_CreateObject();

        cJSON_AddStringToObject(r, "name", t->rule);
        cJSON_AddBoolToObject(r, "matched", t->matched);
        cJSON_AddBoolToObject(r, "throttled", t->throttled);
        cJSON_AddBoolToObject(r, "stop", t->stopped);
        if (!t->matched) {
            cJSON_AddStringToObject(r, "why", t->why);
        }
        cJSON_AddItemToArray(rules, r);
    }
    return rules;
}

static cJSON *dryrun_deliveries_json(const struct sb_config *cfg,
                                     const struct sb_route *route)
{
    cJSON *list = cJSON_CreateArray();
    size_t i;

    for (i = 0; list != NULL && i < route->count; i++) {
        const struct sb_delivery_plan *d = &route->deliveries[i];
        cJSON *item = cJSON_CreateObject();

        cJSON_AddStringToObject(item, "output", d->output);
        cJSON_AddStringToObject(item, "plugin", dryrun_plugin(cfg, d->output));
        cJSON_AddStringToObject(item, "rule", d->rule);
        cJSON_AddItemToObject(item, "fields", cJSON_Parse(d->fields));
        cJSON_AddItemToArray(list, item);
    }
    return list;
}

static void dryrun_print_json(const struct sb_config *cfg,
                              const struct sb_event *event,
                              const struct sb_route *route,
                              const struct sb_rules_trace *trace, FILE *out)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *skipped = cJSON_CreateArray();
    char *text;
    size_t i;

    cJSON_AddStringToObject(root, "event_type", event->event_type);
    cJSON_AddItemToObject(root, "rules", dryrun_rules_json(trace));
    cJSON_AddItemToObject(root, "deliveries",
                          dryrun_deliveries_json(cfg, route));
    for (i = 0; i < trace->skipped_count; i++) {
        cJSON_AddItemToArray(skipped, cJSON_CreateString(trace->skipped[i]));
    }
    cJSON_AddItemToObject(root, "skipped", skipped);
    text = cJSON_PrintUnformatted(root);
    if (text != NULL) {
        fprintf(out, "%s\n", text);
        cJSON_free(text);
    }
    cJSON_Delete(root);
}

enum sb_status sb_dryrun_run(const struct sb_config *cfg, char *body,
                             size_t len, int json, FILE *out,
                             struct sb_error *err)
{
    struct sb_event *event = NULL;
    struct sb_rules_trace *trace = calloc(1, sizeof(*trace));
    struct sb_route *route = calloc(1, sizeof(*route));
    enum sb_status rc = SB_ERR_NOMEM;

    if (trace == NULL || route == NULL) {
        free(body);
        goto out;
    }
    rc = sb_event_parse(body, len, &event, err);
    if (rc != SB_OK) {
        free(body);
        goto out;
    }
    sb_event_stamp(event);
    rc = sb_rules_route(cfg->rules, event, 1, route, trace);
    if (rc != SB_OK) {
        sb_error_set(err, "routing failed: %s", sb_status_name(rc));
        goto out;
    }
    if (json) {
        dryrun_print_json(cfg, event, route, trace, out);
    } else {
        dryrun_print_text(cfg, event, route, trace, out);
    }
    sb_route_cleanup(route);

out:
    sb_event_free(event);
    free(route);
    free(trace);
    return rc;
}
