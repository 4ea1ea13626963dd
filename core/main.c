/* SPDX-License-Identifier: MIT */
/*
 * The command line (SPEC §2): serve, check, test, events, replay,
 * version. Start-up order for serve: config and output instances, spool
 * (and its writer), dispatch, admin, then the webhook listener last, so
 * nothing is accepted before it can be stored; shutdown runs the other
 * way and lets every begun request and delivery finish.
 */
#include "build_config.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "admin.h"
#include "config.h"
#include "dispatch.h"
#include "dryrun.h"
#include "event.h"
#include "ingress.h"
#include "log.h"
#include "notify.h"
#include "schedule.h"
#include "spool.h"

#define EXIT_INVALID 1 /* bad input or config */
#define EXIT_RUNTIME 2 /* could not run: port in use, spool unusable */

#define MAIN_DRAIN_TIMEOUT_MS     15000
#define MAIN_DISPATCH_GRACE_MS    10000
#define MAIN_EVENTS_DEFAULT_LIMIT 50
#define MAIN_MAX_IDS              1000

struct main_args {
    const char *command;
    const char *config_path;
    size_t limit;
    const char *event_path;        /* test: a file, or "-" for stdin */
    int json;                      /* test --json, events --json */
    int deliveries;                /* events --deliveries */
    int fields;                    /* events --fields */
    int log_level;                 /* serve --log-level; -1: the config's */
    struct sb_spool_filter filter; /* events and replay */
    int64_t ids[MAIN_MAX_IDS];     /* replay --id */
};

static void main_usage(FILE *out)
{
    fprintf(
        out,
        "usage: switchboard serve   [-c FILE] [--log-level LEVEL]\n"
        "       switchboard check   [-c FILE]\n"
        "       switchboard test    [-c FILE] [--json] EVENT|-\n"
        "       switchboard events  [-c FILE] [--limit N] [--state STATE]\n"
        "                           [--output NAME] [--since T] [--until T]\n"
        "                           [--deliveries] [--fields] [--json]\n"
        "       switchboard replay  [-c FILE] [--id N]... [--output NAME]\n"
        "                           [--since T] [--until T]\n"
        "       switchboard version\n"
        "\n"
        "  -c, --config FILE  config file (default ./switchboard.yaml, then /etc/switchboard/switchboard.yaml)\n"
        "  --limit N          how many events to list (default 50, 0: all)\n"
        "  --state STATE      deliveries in this state: pending, delivered or dead\n"
        "  --output NAME      deliveries to this output\n"
        "  --since T          events received at or after T: a duration ago (2h) or RFC 3339\n"
        "  --until T          events received before T (same forms)\n"
        "  --id N             replay this delivery (repeatable)\n"
        "  --log-level LEVEL  error, warn, info or debug; overrides log.level\n"
        "  --deliveries       list each event's deliveries too\n"
        "  --fields           ... with what each will send\n"
        "  --json             one JSON object per line (events), or the dry run as JSON (test)\n");
}

static int main_exit_code(enum sb_status rc)
{
    return rc == SB_ERR_INVALID ? EXIT_INVALID : EXIT_RUNTIME;
}

static void main_print_error(const struct sb_error *err)
{
    char text[1024];

    /* A positioned error starts with its file, so editors can jump to it. */
    fprintf(stderr, "%s%s\n", err->file[0] != '\0' ? "" : "switchboard: ",
            sb_error_format(err, text, sizeof(text)));
}

static int main_parse_limit(const char *text, size_t *out)
{
    char *end = NULL;
    unsigned long long n;

    errno = 0;
    n = strtoull(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || text[0] == '-') {
        return -1;
    }
    *out = (size_t)n;
    return 0;
}

/*
 * "2h" (that long ago) or RFC 3339 ("2026-12-03T18:27:47Z", with optional
 * fraction and offset) to Unix milliseconds. Returns 0 or -1.
 */
static int main_parse_time(const char *text, int64_t *out_ms)
{
    struct tm tm;
    uint64_t ago = 0;
    struct sb_error err;
    const char *p;
    int64_t ms = 0;
    int sign;
    unsigned oh = 0;
    unsigned om = 0;

    if (sb_config_parse_duration(text, &ago, &err) == SB_OK) {
        *out_ms = sb_spool_now_ms() - (int64_t)ago;
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    p = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL) {
        return -1;
    }
    if (*p == '.') {
        int64_t scale = 100;

        for (p++; *p >= '0' && *p <= '9'; p++) {
            ms += (*p - '0') * scale;
            scale /= 10;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
        sign = 0;
    } else if ((*p == '+' || *p == '-') &&
               sscanf(p + 1, "%2u:%2u", &oh, &om) == 2 && oh < 24 && om < 60) {
        sign = *p == '+' ? 1 : -1;
        p += 6;
    } else {
        return -1;
    }
    if (*p != '\0') {
        return -1;
    }
    *out_ms =
        ((int64_t)timegm(&tm) - sign * (int64_t)(oh * 3600 + om * 60)) * 1000 +
        ms;
    return 0;
}

static int main_parse_state(const char *text)
{
    return strcmp(text, "pending") == 0 || strcmp(text, "delivered") == 0 ||
           strcmp(text, "dead") == 0;
}

/* What a filter option's value must be, for its error message. */
static const char *main_filter_expects(const char *opt)
{
    static const struct {
        const char *opt;
        const char *expects;
    } table[] = {
        {"--state", "pending, delivered or dead"},
        {"--output", "an output name"},
        {"--since",
         "a duration ago (2h) or an RFC 3339 time (2026-12-03T18:00:00Z)"},
        {"--until",
         "a duration ago (2h) or an RFC 3339 time (2026-12-03T18:00:00Z)"},
        {"--id", "a delivery id (a positive number; at most 1000 of them)"},
    };
    size_t i;

    for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        if (strcmp(table[i].opt, opt) == 0) {
            return table[i].expects;
        }
    }
    return "a number";
}

/*
 * Takes the option at argv[*i] if it is one of the filters of events and
 * replay, with its value. Returns 1 when taken, 0 when it is not a
 * filter, -1 after printing what was wrong with its value.
 */
static int main_parse_filter(int argc, char **argv, int *i,
                             struct main_args *args)
{
    struct sb_spool_filter *f = &args->filter;
    const char *opt = argv[*i];
    const char *value = *i + 1 < argc ? argv[*i + 1] : NULL;
    int ok;

    if (strcmp(opt, "--limit") == 0) {
        ok = value != NULL && main_parse_limit(value, &args->limit) == 0;
    } else if (strcmp(opt, "--state") == 0) {
        ok = value != NULL && main_parse_state(value);
        f->state = value;
    } else if (strcmp(opt, "--output") == 0) {
        ok = value != NULL && value[0] != '\0';
        f->output = value;
    } else if (strcmp(opt, "--since") == 0) {
        ok = value != NULL && main_parse_time(value, &f->since_ms) == 0;
    } else if (strcmp(opt, "--until") == 0) {
        ok = value != NULL && main_parse_time(value, &f->until_ms) == 0;
    } else if (strcmp(opt, "--id") == 0) {
        size_t id = 0;

        ok = value != NULL && main_parse_limit(value, &id) == 0 && id > 0 &&
             f->id_count < MAIN_MAX_IDS;
        if (ok) {
            args->ids[f->id_count++] = (int64_t)id;
        }
    } else {
        return 0;
    }
    if (!ok) {
        fprintf(stderr, "switchboard: %s needs %s\n", opt,
                main_filter_expects(opt));
        return -1;
    }
    (*i)++;
    return 1;
}

/* Returns 0, or -1 after printing what was wrong. */
static int main_parse_args(int argc, char **argv, struct main_args *args)
{
    int i;

    memset(args, 0, sizeof(*args));
    args->command = argc > 1 ? argv[1] : NULL;
    args->limit = MAIN_EVENTS_DEFAULT_LIMIT;
    args->log_level = -1;
    args->filter.ids = args->ids;
    for (i = 2; i < argc; i++) {
        const char *a = argv[i];
        int taken;

        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) &&
            i + 1 < argc) {
            args->config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            args->config_path = a + 9;
        } else if ((taken = main_parse_filter(argc, argv, &i, args)) != 0) {
            if (taken < 0) {
                return -1;
            }
        } else if (strcmp(a, "--log-level") == 0) {
            enum sb_log_level level;

            if (i + 1 >= argc ||
                sb_log_level_parse(argv[i + 1], &level) != SB_OK) {
                fprintf(
                    stderr,
                    "switchboard: --log-level needs error, warn, info or debug\n");
                return -1;
            }
            args->log_level = (int)level;
            i++;
        } else if (strcmp(a, "--json") == 0) {
            args->json = 1;
        } else if (strcmp(a, "--deliveries") == 0) {
            args->deliveries = 1;
        } else if (strcmp(a, "--fields") == 0) {
            args->deliveries = 1;
            args->fields = 1;
        } else if (args->event_path == NULL &&
                   (a[0] != '-' || strcmp(a, "-") == 0)) {
            args->event_path = a;
        } else {
            fprintf(stderr, "switchboard: unexpected argument \"%s\"\n", a);
            return -1;
        }
    }
    if (args->config_path == NULL) {
        args->config_path = sb_config_default_path();
    }
    /* A delivery filter is about deliveries: show them. */
    if (args->filter.state != NULL || args->filter.output != NULL) {
        args->deliveries = 1;
    }
    args->filter.limit = args->limit;
    return 0;
}

/* Prints every config error, one per line, then how many there were. */
static void main_print_errors(const struct sb_errors *errs)
{
    size_t i;

    for (i = 0; i < errs->count; i++) {
        main_print_error(&errs->items[i]);
    }
    if (errs->dropped > 0) {
        fprintf(stderr, "switchboard: %zu more errors not shown\n",
                errs->dropped);
    }
    if (sb_errors_total(errs) > 1) {
        fprintf(stderr, "switchboard: %zu errors\n", sb_errors_total(errs));
    }
}

static int main_load(const char *path, struct sb_config **out_cfg)
{
    static struct sb_errors errs; /* large; main's thread only */
    enum sb_status rc;

    rc = sb_config_load(path, out_cfg, &errs);
    if (rc != SB_OK) {
        main_print_errors(&errs);
        return main_exit_code(rc);
    }
    return 0;
}

/*
 * Creates every output's plugin instance. With `check_only` (check, test)
 * the plugins only validate their keys and nothing is opened. Prints
 * every problem; returns 0 or an exit code.
 */
static int main_open_outputs(struct sb_config *cfg, int check_only)
{
    static struct sb_errors errs; /* large; main's thread only */
    size_t i;

    sb_errors_clear(&errs);
    for (i = 0; i < cfg->output_count; i++) {
        sb_output_open(&cfg->outputs[i], check_only, &errs);
    }
    if (sb_errors_total(&errs) > 0) {
        main_print_errors(&errs);
        return EXIT_INVALID;
    }
    return 0;
}

/* ---- check ----------------------------------------------------------------
 */

static int main_check(const struct main_args *args)
{
    struct sb_config *cfg = NULL;
    int code = main_load(args->config_path, &cfg);

    if (code == 0) {
        code = main_open_outputs(cfg, 1);
    }
    if (code == 0) {
        printf("%s: ok\n", cfg->source);
        sb_config_describe(cfg, stdout);
    }
    sb_config_free(cfg);
    return code;
}

/* ---- events ---------------------------------------------------------------
 */

struct main_events_ctx {
    const struct main_args *args;
    struct sb_spool *spool;
    cJSON *deliveries; /* --json: the current event's list */
    int failed;
};

static void main_print_delivery(const struct main_args *args,
                                const struct sb_spool_delivery *d)
{
    char next[SB_EVENT_TIME_LEN + 1];

    sb_event_format_time(d->next_at_ms, next);
    printf(
        "    delivery %-6lld %-20s rule=%s state=%s attempts=%lld next=%s%s%s\n",
        (long long)d->id, d->output, d->rule, d->state, (long long)d->attempts,
        next, d->last_error != NULL ? " last_error=" : "",
        d->last_error != NULL ? d->last_error : "");
    if (args->fields) {
        printf("      fields %s\n", d->fields);
    }
}

static void main_add_delivery_json(cJSON *list,
                                   const struct sb_spool_delivery *d,
                                   int with_fields)
{
    char next[SB_EVENT_TIME_LEN + 1];
    cJSON *o = cJSON_CreateObject();

    if (o == NULL) {
        return;
    }
    sb_event_format_time(d->next_at_ms, next);
    cJSON_AddNumberToObject(o, "id", (double)d->id);
    cJSON_AddStringToObject(o, "output", d->output);
    cJSON_AddStringToObject(o, "rule", d->rule);
    cJSON_AddStringToObject(o, "state", d->state);
    cJSON_AddNumberToObject(o, "attempts", (double)d->attempts);
    cJSON_AddStringToObject(o, "next_at", next);
    if (d->last_error != NULL) {
        cJSON_AddStringToObject(o, "last_error", d->last_error);
    } else {
        cJSON_AddNullToObject(o, "last_error");
    }
    if (with_fields) {
        cJSON_AddItemToObject(o, "fields", cJSON_Parse(d->fields));
    }
    cJSON_AddItemToArray(list, o);
}

static void main_on_delivery(void *arg, const struct sb_spool_delivery *d)
{
    struct main_events_ctx *ctx = arg;

    if (ctx->deliveries != NULL) {
        main_add_delivery_json(ctx->deliveries, d, ctx->args->fields);
    } else {
        main_print_delivery(ctx->args, d);
    }
}

static void main_print_row_text(const struct sb_spool_row *row)
{
    char when[SB_EVENT_TIME_LEN + 1];
    char summary[96];

    sb_event_format_time(row->received_ms, when);
    if (row->pending + row->delivered + row->dead == 0) {
        snprintf(summary, sizeof(summary), "none");
    } else {
        snprintf(summary, sizeof(summary),
                 "%zu pending, %zu delivered, %zu dead", row->pending,
                 row->delivered, row->dead);
    }
    printf("%-26s  %-24s  %-24s  %s\n", row->id, when, row->event_type,
           summary);
}

/* --json: {id, received_at, event_type, deliveries: [...]} on one line. */
static void main_print_row_json(struct main_events_ctx *ctx,
                                const struct sb_spool_row *row)
{
    char when[SB_EVENT_TIME_LEN + 1];
    struct sb_error err;
    cJSON *o = cJSON_CreateObject();
    char *line;

    if (o == NULL) {
        ctx->failed = 1;
        return;
    }
    sb_event_format_time(row->received_ms, when);
    cJSON_AddStringToObject(o, "id", row->id);
    cJSON_AddStringToObject(o, "received_at", when);
    cJSON_AddStringToObject(o, "event_type", row->event_type);
    ctx->deliveries = cJSON_AddArrayToObject(o, "deliveries");
    if (ctx->deliveries != NULL &&
        sb_spool_list_deliveries(ctx->spool, row->id, &ctx->args->filter,
                                 main_on_delivery, ctx, &err) != SB_OK) {
        main_print_error(&err);
        ctx->failed = 1;
    }
    ctx->deliveries = NULL;
    line = cJSON_PrintUnformatted(o);
    if (line != NULL) {
        printf("%s\n", line);
        free(line);
    } else {
        ctx->failed = 1;
    }
    cJSON_Delete(o);
}

static void main_on_row(void *arg, const struct sb_spool_row *row)
{
    struct main_events_ctx *ctx = arg;
    struct sb_error err;

    if (ctx->args->json) {
        main_print_row_json(ctx, row);
        return;
    }
    main_print_row_text(row);
    if (ctx->args->deliveries &&
        sb_spool_list_deliveries(ctx->spool, row->id, &ctx->args->filter,
                                 main_on_delivery, ctx, &err) != SB_OK) {
        main_print_error(&err);
        ctx->failed = 1;
    }
}

/* Opens the spool of the config at args->config_path for events/replay. */
static int main_open_spool(const struct main_args *args, struct sb_config **cfg,
                           struct sb_spool **spool)
{
    struct sb_error err;
    enum sb_status rc;
    int code = main_load(args->config_path, cfg);

    if (code != 0) {
        return code;
    }
    sb_error_clear(&err);
    rc = sb_spool_open(*cfg, SB_SPOOL_READ, spool, &err);
    if (rc != SB_OK) {
        main_print_error(&err);
        return main_exit_code(rc);
    }
    return 0;
}

static int main_events(const struct main_args *args)
{
    struct sb_config *cfg = NULL;
    struct sb_spool *spool = NULL;
    struct main_events_ctx ctx = {.args = args};
    struct sb_error err;
    enum sb_status rc = SB_OK;
    int code = main_open_spool(args, &cfg, &spool);

    if (code == 0) {
        if (!args->json) {
            printf("%-26s  %-24s  %-24s  %s\n", "ID", "RECEIVED_AT",
                   "EVENT_TYPE", "DELIVERIES");
        }
        ctx.spool = spool;
        sb_error_clear(&err);
        rc = sb_spool_list(spool, &args->filter, main_on_row, &ctx, &err);
        if (rc != SB_OK) {
            main_print_error(&err);
            code = main_exit_code(rc);
        } else if (ctx.failed) {
            code = EXIT_RUNTIME;
        }
    }
    sb_spool_free(spool);
    sb_config_free(cfg);
    return code;
}

/* ---- replay ---------------------------------------------------------------
 */

static int main_replay(const struct main_args *args)
{
    const struct sb_spool_filter *f = &args->filter;
    struct sb_config *cfg = NULL;
    struct sb_spool *spool = NULL;
    struct sb_error err;
    size_t count = 0;
    enum sb_status rc;
    int code;

    /* Re-queueing every dead delivery ever must be asked for by name. */
    if (f->id_count == 0 && f->output == NULL && f->since_ms == 0) {
        fprintf(
            stderr,
            "switchboard: replay needs --id N, --output NAME or --since T (with --until T)\n");
        return EXIT_INVALID;
    }
    if (f->state != NULL && strcmp(f->state, "dead") != 0) {
        fprintf(stderr, "switchboard: replay re-queues dead deliveries only\n");
        return EXIT_INVALID;
    }
    code = main_open_spool(args, &cfg, &spool);
    if (code == 0) {
        sb_error_clear(&err);
        rc = sb_spool_replay(spool, f, &count, &err);
        if (rc != SB_OK) {
            main_print_error(&err);
            code = main_exit_code(rc);
        } else {
            printf("%zu dead deliveries re-queued\n", count);
        }
    }
    sb_spool_free(spool);
    sb_config_free(cfg);
    return code;
}

/* ---- test -----------------------------------------------------------------
 */

/* Reads the event file (or stdin for "-"), at most `max` bytes. */
static int main_read_event(const char *path, size_t max, char **out_body,
                           size_t *out_len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    char *body;
    size_t len;

    *out_body = NULL;
    if (f == NULL) {
        fprintf(stderr, "switchboard: cannot read %s: %s\n", path,
                strerror(errno));
        return EXIT_INVALID;
    }
    body = malloc(max + 2);
    len = body != NULL ? fread(body, 1, max + 1, f) : 0;
    if (f != stdin) {
        fclose(f);
    }
    if (body == NULL || len > max) {
        fprintf(stderr, "switchboard: %s: %s\n", path,
                body == NULL ? "out of memory" : "larger than max_body");
        free(body);
        return body == NULL ? EXIT_RUNTIME : EXIT_INVALID;
    }
    body[len] = '\0';
    *out_body = body;
    *out_len = len;
    return 0;
}

static int main_test(const struct main_args *args)
{
    struct sb_config *cfg = NULL;
    struct sb_error err;
    char *body = NULL;
    size_t len = 0;
    enum sb_status rc;
    int code;

    if (args->event_path == NULL) {
        fprintf(stderr, "switchboard: test needs an event file, or -\n");
        return EXIT_INVALID;
    }
    code = main_load(args->config_path, &cfg);
    if (code == 0) {
        code = main_open_outputs(cfg, 1);
    }
    if (code == 0) {
        code = main_read_event(args->event_path, cfg->max_body, &body, &len);
    }
    if (code == 0) {
        sb_error_clear(&err);
        rc = sb_dryrun_run(cfg, body, len, args->json, stdout, &err);
        if (rc != SB_OK) {
            fprintf(stderr, "switchboard: %s: %s\n", args->event_path, err.msg);
            code = main_exit_code(rc);
        }
    }
    sb_config_free(cfg);
    return code;
}

/* ---- serve ----------------------------------------------------------------
 */

/*
 * Signals are blocked in every thread (the mask is inherited) and taken
 * synchronously here, so no handler ever runs inside library code.
 */
static void main_block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    /* A full disk under RLIMIT_FSIZE must fail the write, not the process. */
    signal(SIGXFSZ, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
}

/* What serve runs, in start order. */
struct main_server {
    struct sb_spool *spool;
    struct sb_dispatch *dispatch;
    struct sb_admin *admin;
    struct sb_ingress *ingress;
};

static enum sb_status main_start(struct sb_config *cfg, struct main_server *s,
                                 struct sb_error *err)
{
    enum sb_status rc = sb_spool_open(cfg, SB_SPOOL_SERVE, &s->spool, err);

    if (rc == SB_OK) {
        rc = sb_dispatch_new(cfg, s->spool, &s->dispatch, err);
    }
    if (rc == SB_OK) {
        rc = sb_spool_start(s->spool);
        if (rc != SB_OK) {
            sb_error_set(err, "cannot start the spool writer thread");
        }
    }
    if (rc == SB_OK) {
        rc = sb_dispatch_start(s->dispatch, err);
    }
    if (rc == SB_OK && cfg->admin_enabled) {
        rc = sb_admin_start(cfg, s->spool, &s->admin, err);
    }
    if (rc == SB_OK) {
        rc = sb_ingress_start(cfg, s->spool, &s->ingress, err);
    }
    return rc;
}

/* --log-level wins over the config's log.level, at start and on reload. */
static void main_apply_log_level(const struct main_args *args,
                                 const struct sb_config *cfg)
{
    sb_log_set_level(args->log_level >= 0 ? (enum sb_log_level)args->log_level
                                          : cfg->log_level);
}

/* ---- reload ------------------------------------------------------------ */

/*
 * What a running server cannot change without a restart: its sockets, its
 * spool, and TZ (read by every thread). Adds an error for each that
 * differs; returns how many.
 */
static size_t main_restart_needed(const struct sb_config *cur,
                                  const struct sb_config *next,
                                  struct sb_errors *errs)
{
    const char *changed[6];
    size_t n = 0;
    size_t i;

    if (strcmp(cur->listen.host, next->listen.host) != 0 ||
        cur->listen.port != next->listen.port) {
        changed[n++] = "listen";
    }
    if ((cur->tls_cert_pem == NULL) != (next->tls_cert_pem == NULL) ||
        (cur->tls_cert_pem != NULL &&
         (strcmp(cur->tls_cert_pem, next->tls_cert_pem) != 0 ||
          strcmp(cur->tls_key_pem, next->tls_key_pem) != 0))) {
        changed[n++] = "tls";
    }
    if (cur->admin_enabled != next->admin_enabled ||
        strcmp(cur->admin_listen.host, next->admin_listen.host) != 0 ||
        cur->admin_listen.port != next->admin_listen.port) {
        changed[n++] = "admin.listen";
    }
    if (strcmp(cur->spool_path, next->spool_path) != 0) {
        changed[n++] = "spool.path";
    }
    if (cur->retention_ms != next->retention_ms) {
        changed[n++] = "spool.retention";
    }
    if ((cur->timezone == NULL) != (next->timezone == NULL) ||
        (cur->timezone != NULL && strcmp(cur->timezone, next->timezone) != 0)) {
        changed[n++] = "timezone";
    }
    for (i = 0; i < n; i++) {
        struct sb_error err;

        sb_error_set(&err, "%s: %s changed; that needs a restart", next->source,
                     changed[i]);
        sb_errors_add(errs, &err);
    }
    return n;
}

/*
 * Validates every output of `next`, then opens those a reload cannot keep
 * running as they are. Returns 0, or the number of errors added.
 */
static size_t main_reload_outputs(struct sb_dispatch *d, struct sb_config *next,
                                  struct sb_errors *errs)
{
    size_t i;

    for (i = 0; i < next->output_count; i++) {
        sb_output_open(&next->outputs[i], 1, errs);
    }
    for (i = 0; sb_errors_total(errs) == 0 && i < next->output_count; i++) {
        if (!sb_dispatch_keeps(d, &next->outputs[i])) {
            sb_output_open(&next->outputs[i], 0, errs);
        }
    }
    return sb_errors_total(errs);
}

static void main_log_reload_errors(const struct sb_errors *errs)
{
    char text[1024];
    char quoted[1100];
    size_t i;

    for (i = 0; i < errs->count; i++) {
        SB_LOG_ERROR(
            "main", "err=%s msg=\"reload refused\"",
            sb_log_quote(quoted, sizeof(quoted),
                         sb_error_format(&errs->items[i], text, sizeof(text))));
    }
}

/*
 * SIGHUP: builds the new config completely (rules, templates, plugins,
 * output instances) beside the running one and switches to it in one
 * step, or logs why not and keeps serving with the old one. Requests and
 * deliveries under way finish with the config they began with.
 */
static void main_reload(const struct main_args *args, struct main_server *s,
                        struct sb_config **current)
{
    static struct sb_errors errs; /* large; main's thread only */
    struct sb_config *next = NULL;
    struct sb_error err;
    enum sb_status rc;

    SB_LOG_INFO(
        "main",
        "msg=\"SIGHUP: reopening output files and reloading the config\"");
    sb_dispatch_reopen(s->dispatch);
    rc = sb_config_load(args->config_path, &next, &errs);
    if (rc == SB_OK && (main_restart_needed(*current, next, &errs) > 0 ||
                        main_reload_outputs(s->dispatch, next, &errs) > 0)) {
        rc = SB_ERR_INVALID;
    }
    if (rc != SB_OK) {
        main_log_reload_errors(&errs);
        SB_LOG_ERROR(
            "main",
            "errors=%zu msg=\"the new config is not used; still serving with the old one\"",
            sb_errors_total(&errs));
        sb_config_free(next);
        return;
    }
    sb_rules_inherit_throttles(next->rules, (*current)->rules);
    sb_error_clear(&err);
    if (sb_dispatch_reload(s->dispatch, next, MAIN_DISPATCH_GRACE_MS, &err) !=
        SB_OK) {
        SB_LOG_ERROR("main", "err=\"%s\" msg=\"some outputs could not start\"",
                     err.msg);
    }
    if (sb_ingress_swap(s->ingress, next) != SB_OK) {
        SB_LOG_ERROR("main",
                     "msg=\"out of memory; requests keep the old rules\"");
    }
    main_apply_log_level(args, next);
    sb_config_unref(*current);
    *current = next;
    SB_LOG_INFO("main", "outputs=%zu msg=\"config reloaded\"",
                next->output_count);
}

static void main_wait_for_stop(const sigset_t *set,
                               const struct main_args *args,
                               struct main_server *s, struct sb_config **cfg)
{
    int sig = 0;

    for (;;) {
        if (sigwait(set, &sig) != 0) {
            continue;
        }
        if (sig == SIGHUP) {
            /* systemd: reloading until READY again, applied or refused. */
            sb_notify_reloading();
            main_reload(args, s, cfg);
            sb_notify("READY=1");
            continue;
        }
        sb_notify("STOPPING=1");
        SB_LOG_INFO("main",
                    "signal=%d msg=\"stopping; finishing requests in flight\"",
                    sig);
        return;
    }
}

/*
 * Stops in reverse order: no new requests, requests in flight answered,
 * deliveries under way finished and their outcomes committed, spool
 * closed. Returns how many deliveries were abandoned inside a plugin.
 */
static size_t main_stop(struct main_server *s)
{
    size_t abandoned;

    sb_ingress_free(s->ingress);
    abandoned = sb_dispatch_stop(s->dispatch, MAIN_DISPATCH_GRACE_MS);
    sb_admin_free(s->admin);
    sb_spool_free(s->spool);
    if (abandoned == 0) {
        sb_dispatch_free(s->dispatch);
    }
    return abandoned;
}

static int main_serve(const struct main_args *args)
{
    struct sb_config *cfg = NULL;
    struct main_server server = {0};
    struct sb_error err;
    sigset_t stop_signals;
    enum sb_status rc;
    size_t abandoned;
    int code = main_load(args->config_path, &cfg);

    if (code != 0) {
        return code;
    }
    main_apply_log_level(args, cfg);
    main_block_signals(&stop_signals);
    /* Validate every output first: a rejected config creates no file. */
    code = main_open_outputs(cfg, 1);
    if (code == 0) {
        code = main_open_outputs(cfg, 0);
    }
    if (code != 0) {
        sb_config_free(cfg);
        return code;
    }
    sb_error_clear(&err);
    rc = main_start(cfg, &server, &err);
    if (rc != SB_OK) {
        char text[1024];

        SB_LOG_ERROR("main", "msg=\"cannot start\" err=\"%s\"",
                     sb_error_format(&err, text, sizeof(text)));
        code = main_exit_code(rc == SB_ERR_INVALID ? SB_ERR_IO : rc);
        goto out;
    }
    SB_LOG_INFO(
        "main",
        "version=%s addr=%s:%u tls=%s path=%s admin=%s outputs=%zu msg=\"listening\"",
        PACKAGE_VERSION, cfg->listen.host, cfg->listen.port,
        cfg->tls_cert_pem ? "on" : "off", cfg->path,
        cfg->admin_enabled ? "on" : "off", cfg->output_count);
    sb_schedule_freeze_timezone();
    sb_notify("READY=1"); /* the listener is up: Type=notify */
    main_wait_for_stop(&stop_signals, args, &server, &cfg);
    if (sb_ingress_drain(server.ingress, MAIN_DRAIN_TIMEOUT_MS) > 0) {
        SB_LOG_ERROR("main", "msg=\"requests still unanswered at shutdown\"");
    }

out:
    abandoned = main_stop(&server);
    if (abandoned > 0) {
        /*
         * LIMIT: a plugin is stuck in deliver(): its instance cannot be
         * destroyed under it, so we exit without destroying any.
         * Everything owed is committed; those deliveries stay pending for
         * the next start (docs/LIMITS.md).
         */
        SB_LOG_ERROR(
            "main",
            "abandoned=%zu msg=\"deliveries still running after the grace period; they stay pending\"",
            abandoned);
        _exit(code);
    }
    sb_config_unref(cfg); /* the last reference: listener and lanes are gone */
    if (code == 0) {
        SB_LOG_INFO("main", "msg=\"stopped\"");
    }
    return code;
}

int main(int argc, char **argv)
{
    struct main_args args;

    if (main_parse_args(argc, argv, &args) != 0) {
        main_usage(stderr);
        return EXIT_INVALID;
    }
    if (args.command == NULL) {
        main_usage(stderr);
        return EXIT_INVALID;
    }
    if (strcmp(args.command, "serve") == 0) {
        return main_serve(&args);
    }
    if (strcmp(args.command, "check") == 0) {
        return main_check(&args);
    }
    if (strcmp(args.command, "test") == 0) {
        return main_test(&args);
    }
    if (strcmp(args.command, "events") == 0) {
        return main_events(&args);
    }
    if (strcmp(args.command, "replay") == 0) {
        return main_replay(&args);
    }
    if (strcmp(args.command, "version") == 0) {
        printf("switchboard %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (strcmp(args.command, "-h") == 0 ||
        strcmp(args.command, "--help") == 0 ||
        strcmp(args.command, "help") == 0) {
        main_usage(stdout);
        return 0;
    }
    fprintf(stderr, "switchboard: unknown command \"%s\"\n", args.command);
    main_usage(stderr);
    return EXIT_INVALID;
}
