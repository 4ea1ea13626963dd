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

static void main_print_row(void *arg, const struct sb_spool_row *row)
{
    char when[SB_EVENT_TIME_LEN + 1];

    (void)arg;
    sb_event_format_time(row->received_ms, when);
    printf("%-26s  %-24s  %-24s  %s\n", row->id, when, row->event_type, "none");
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
        rc = sb_spool_list(spool, args->limit, main_print_row, NULL, &err);
    }
    if (rc != SB_OK) {
        main_print_error(&err);
    }
    sb_spool_free(spool);
    sb_config_free(cfg);
    return rc == SB_OK ? 0 : main_exit_code(rc);
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
