/* SPDX-License-Identifier: MIT */
/*
 * The command line (SPEC §2): serve, check, events, version. Start-up
 * order for serve: config, spool (and its writer), admin, then the
 * webhook listener last, so nothing is accepted before it can be stored;
 * shutdown runs the other way and lets every begun request finish.
 */
#include "build_config.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "config.h"
#include "dryrun.h"
#include "event.h"
#include "ingress.h"
#include "log.h"
#include "spool.h"

#define EXIT_INVALID 1 /* bad input or config */
#define EXIT_RUNTIME 2 /* could not run: port in use, spool unusable */

#define MAIN_DRAIN_TIMEOUT_MS     15000
#define MAIN_EVENTS_DEFAULT_LIMIT 50

struct main_args {
    const char *command;
    const char *config_path;
    size_t limit;
    const char *event_path; /* test: a file, or "-" for stdin */
    int json;               /* test --json */
    int deliveries;         /* events --deliveries */
    int fields;             /* events --fields */
};

static void main_usage(FILE *out)
{
    fprintf(
        out,
        "usage: switchboard serve   [-c FILE]\n"
        "       switchboard check   [-c FILE]\n"
        "       switchboard events  [-c FILE] [--limit N]\n"
        "       switchboard version\n"
        "\n"
        "  -c, --config FILE  config file (default ./switchboard.yaml, "
        "then /etc/switchboard/switchboard.yaml)\n"
        "  --limit N          how many events to list (default 50, 0: all)\n");
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

/* Returns 0, or -1 after printing what was wrong. */
static int main_parse_args(int argc, char **argv, struct main_args *args)
{
    int i;

    args->command = argc > 1 ? argv[1] : NULL;
    args->config_path = NULL;
    args->limit = MAIN_EVENTS_DEFAULT_LIMIT;
    args->event_path = NULL;
    args->json = 0;
    args->deliveries = 0;
    args->fields = 0;
    for (i = 2; i < argc; i++) {
        const char *a = argv[i];

        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) &&
            i + 1 < argc) {
            args->config_path = argv[++i];
        } else if (strncmp(a, "--config=", 9) == 0) {
            args->config_path = a + 9;
        } else if (strcmp(a, "--limit") == 0 && i + 1 < argc &&
                   main_parse_limit(argv[i + 1], &args->limit) == 0) {
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

/* ---- check ----------------------------------------------------------------
 */

static int main_check(const struct main_args *args)
{
    struct sb_config *cfg = NULL;
    int code = main_load(args->config_path, &cfg);

    if (code != 0) {
        return code;
    }
    printf("%s: ok\n", cfg->source);
    sb_config_describe(cfg, stdout);
    sb_config_free(cfg);
    return 0;
}

/* ---- events ---------------------------------------------------------------
 */

struct main_events_ctx {
    const struct main_args *args;
    struct sb_spool *spool;
};

static void main_print_delivery(void *arg, const struct sb_spool_delivery *d)
{
    const struct main_args *args = arg;
    char next[SB_EVENT_TIME_LEN + 1];

    sb_event_format_time(d->next_at_ms, next);
    printf("    delivery %-6lld %-20s rule=%s state=%s attempts=%lld "
           "next=%s%s%s\n",
           (long long)d->id, d->output, d->rule, d->state,
           (long long)d->attempts, next,
           d->last_error != NULL ? " last_error=" : "",
           d->last_error != NULL ? d->last_error : "");
    if (args->fields) {
        printf("      fields %s\n", d->fields);
    }
}

static void main_print_row(void *arg, const struct sb_spool_row *row)
{
    struct main_events_ctx *ctx = arg;
    char when[SB_EVENT_TIME_LEN + 1];
    char summary[96];
    struct sb_error err;

    sb_event_format_time(row->received_ms, when);
    if (row->pending + row->delivered + row->dead == 0) {
        snprintf(summary, sizeof(summary), "none");
    } else {
        snprintf(summary, sizeof(summary),
                 "%zu pending, %zu delivered, "
                 "%zu dead",
                 row->pending, row->delivered, row->dead);
    }
    printf("%-26s  %-24s  %-24s  %s\n", row->id, when, row->event_type,
           summary);
    if (ctx->args->deliveries) {
        sb_spool_list_deliveries(ctx->spool, row->id, main_print_delivery,
                                 (void *)ctx->args, &err);
    }
}

static int main_events(const struct main_args *args)
{
    struct sb_config *cfg = NULL;
    struct sb_spool *spool = NULL;
    struct sb_error err;
    enum sb_status rc;
    int code = main_load(args->config_path, &cfg);

    if (code != 0) {
        return code;
    }
    sb_error_clear(&err);
    rc = sb_spool_open(cfg, SB_SPOOL_READ, &spool, &err);
    if (rc == SB_OK) {
        printf("%-26s  %-24s  %-24s  %s\n", "ID", "RECEIVED_AT", "EVENT_TYPE",
               "DELIVERIES");
        struct main_events_ctx ctx = {.args = args, .spool = spool};

        rc = sb_spool_list(spool, args->limit, main_print_row, &ctx, &err);
    }
    if (rc != SB_OK) {
        main_print_error(&err);
    }
    sb_spool_free(spool);
    sb_config_free(cfg);
    return rc == SB_OK ? 0 : main_exit_code(rc);
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

static void main_wait_for_stop(const sigset_t *set)
{
    int sig = 0;

    for (;;) {
        if (sigwait(set, &sig) != 0) {
            continue;
        }
        if (sig == SIGHUP) {
            SB_LOG_WARN(
                "main",
                "msg=\"SIGHUP ignored: no reload yet; restart instead\"");
            continue;
        }
        SB_LOG_INFO("main",
                    "signal=%d msg=\"stopping; finishing requests in flight\"",
                    sig);
        return;
    }
}

static enum sb_status main_start(const struct sb_config *cfg,
                                 struct sb_spool **spool,
                                 struct sb_admin **admin,
                                 struct sb_ingress **ingress,
                                 struct sb_error *err)
{
    enum sb_status rc = sb_spool_open(cfg, SB_SPOOL_SERVE, spool, err);

    if (rc == SB_OK) {
        rc = sb_spool_start(*spool);
        if (rc != SB_OK) {
            sb_error_set(err, "cannot start the spool writer thread");
        }
    }
    if (rc == SB_OK && cfg->admin_enabled) {
        rc = sb_admin_start(cfg, *spool, admin, err);
    }
    if (rc == SB_OK) {
        rc = sb_ingress_start(cfg, *spool, ingress, err);
    }
    return rc;
}

static int main_serve(const struct main_args *args)
{
    struct sb_config *cfg = NULL;
    struct sb_spool *spool = NULL;
    struct sb_admin *admin = NULL;
    struct sb_ingress *ingress = NULL;
    struct sb_error err;
    sigset_t stop_signals;
    enum sb_status rc;
    int code = main_load(args->config_path, &cfg);

    if (code != 0) {
        return code;
    }
    sb_log_set_level(cfg->log_level);
    main_block_signals(&stop_signals);
    sb_error_clear(&err);
    rc = main_start(cfg, &spool, &admin, &ingress, &err);
    if (rc != SB_OK) {
        char text[1024];

        SB_LOG_ERROR("main", "msg=\"cannot start\" err=\"%s\"",
                     sb_error_format(&err, text, sizeof(text)));
        code = main_exit_code(rc == SB_ERR_INVALID ? SB_ERR_IO : rc);
        goto out;
    }
    SB_LOG_INFO("main",
                "version=%s addr=%s:%u tls=%s path=%s admin=%s "
                "msg=\"listening\"",
                PACKAGE_VERSION, cfg->listen.host, cfg->listen.port,
                cfg->tls_cert_pem ? "on" : "off", cfg->path,
                cfg->admin_enabled ? "on" : "off");
    main_wait_for_stop(&stop_signals);
    if (sb_ingress_drain(ingress, MAIN_DRAIN_TIMEOUT_MS) > 0) {
        SB_LOG_ERROR("main", "msg=\"requests still unanswered at shutdown\"");
    }

out:
    sb_ingress_free(ingress);
    sb_admin_free(admin);
    sb_spool_free(spool);
    sb_config_free(cfg);
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
