/* SPDX-License-Identifier: MIT */
/*
 * The rules benchmark: loads a config, parses the sample events, and
 * times sb_rules_evaluate, then sb_rules_route, over them on one thread.
 * The allocator's entry points are replaced in this executable by
 * wrappers that count calls while a measured loop runs, so allocations
 * made inside libc (regexec's) are counted with switchboard's own.
 *
 * Usage: rules [-l LABEL -d SECS -n RUNS -w SECS -e SECS] CONFIG EVENT...
 * (label of the rows, seconds per run, runs, warm-up seconds, seconds per
 * run of the one-event breakdown, 0 to skip it).
 * Prints "cold|...", "main|..." and "event|..." lines of markdown cells
 * for bench/rules-run to put under table headers.
 */
#include "build_config.h"

#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "event.h"
#include "rules.h"
#include "status.h"

#define BENCH_MAX_EVENTS  64
#define BENCH_MAX_RUNS    31
#define BENCH_CHECK_EVERY 16 /* passes over the events between clock reads */
#define BENCH_BODY_MAX    (1024 * 1024)
#define BENCH_USAGE \
    "usage: rules [-l LABEL -d SECS -n RUNS -w SECS -e SECS] CONFIG EVENT..."

/*
 * Friday 2025-03-14 16:45:00 UTC, inside business hours and near the
 * samples' own timestamps. Every event is given this receipt time so the
 * within/outside rules decide the same way whenever the benchmark runs.
 */
#define BENCH_RECEIVED_MS 1741970700000LL

enum bench_call {
    BENCH_EVALUATE,
    BENCH_ROUTE,
};

struct bench {
    const struct sb_ruleset *rules;
    struct sb_event *events[BENCH_MAX_EVENTS];
    size_t event_count;
    double seconds; /* measured per run */
    double warmup;
    double event_seconds; /* per run of the one-event breakdown; 0: none */
    int runs;
    const char *label;
};

/* What the measured loops of one call add up to. */
struct bench_totals {
    double ns[BENCH_MAX_RUNS]; /* per evaluation, one per run */
    int runs;
    uint64_t evaluations;
    uint64_t allocs;
    uint64_t frees;
    uint64_t matched; /* rules matched, or deliveries planned */
};

/* ---- counting allocator ------------------------------------------------ */

/*
 * glibc's allocator under its own names. Defining malloc and the rest
 * here interposes them for the whole process, libc's internal callers
 * included; the wrappers add one branch and forward.
 */
void *__libc_malloc(size_t size);
void *__libc_calloc(size_t count, size_t size);
void *__libc_realloc(void *ptr, size_t size);
void *__libc_memalign(size_t align, size_t size);
void __libc_free(void *ptr);

/*
 * One thread measures, so no atomics. volatile because the compiler takes
 * libc's allocating builtins (strdup) for functions that cannot see them.
 */
static volatile int bench_counting;
static volatile uint64_t bench_allocs;
static volatile uint64_t bench_frees;

void *malloc(size_t size)
{
    bench_allocs += (uint64_t)bench_counting;
    return __libc_malloc(size);
}

void *calloc(size_t count, size_t size)
{
    bench_allocs += (uint64_t)bench_counting;
    return __libc_calloc(count, size);
}

void *realloc(void *ptr, size_t size)
{
    bench_allocs += (uint64_t)bench_counting;
    return __libc_realloc(ptr, size);
}

void *memalign(size_t align, size_t size)
{
    bench_allocs += (uint64_t)bench_counting;
    return __libc_memalign(align, size);
}

void *aligned_alloc(size_t align, size_t size)
{
    return memalign(align, size);
}

int posix_memalign(void **out, size_t align, size_t size)
{
    void *p;

    if (align < sizeof(void *) || (align & (align - 1)) != 0) {
        return EINVAL;
    }
    p = memalign(align, size);
    if (p == NULL) {
        return ENOMEM;
    }
    *out = p;
    return 0;
}

void free(void *ptr)
{
    if (ptr != NULL) {
        bench_frees += (uint64_t)bench_counting;
    }
    __libc_free(ptr);
}

/*
 * Proves the wrappers see libc's own allocations: strdup allocates from
 * inside libc. A static link or another allocator would make every count
 * in the report a silent zero.
 */
static int bench_check_interposed(void)
{
    static const char *volatile text = "switchboard";
    char *volatile copy;
    uint64_t before = bench_allocs;

    bench_counting = 1;
    copy = strdup(text);
    bench_counting = 0;
    free(copy);
    return copy != NULL && bench_allocs == before + 1;
}

/* ---- setup -------------------------------------------------------------- */

static double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads a whole file into a new NUL-terminated buffer. */
static char *bench_read_file(const char *path, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    char *body = malloc(BENCH_BODY_MAX + 1);
    size_t len = 0;

    *out_len = 0;
    if (f == NULL || body == NULL) {
        fprintf(stderr, "rules: %s: %s\n", path, strerror(errno));
        free(body);
        if (f != NULL) {
            fclose(f);
        }
        return NULL;
    }
    len = fread(body, 1, BENCH_BODY_MAX, f);
    fclose(f);
    body[len] = '\0';
    *out_len = len;
    return body;
}

static int bench_load_event(struct bench *b, const char *path)
{
    struct sb_event *event = NULL;
    struct sb_error err;
    size_t len;
    char *body = bench_read_file(path, &len);

    if (body == NULL) {
        return -1;
    }
    sb_error_clear(&err);
    if (sb_event_parse(body, len, &event, &err) != SB_OK) {
        fprintf(stderr, "rules: %s: %s\n", path, err.msg);
        free(body);
        return -1;
    }
    sb_event_stamp(event);
    event->received_ms = BENCH_RECEIVED_MS;
    b->events[b->event_count++] = event;
    return 0;
}

static struct sb_config *bench_load_config(const char *path)
{
    static struct sb_errors errs; /* large */
    struct sb_config *cfg = NULL;
    char line[1024];
    size_t i;

    if (sb_config_load(path, &cfg, &errs) == SB_OK) {
        return cfg;
    }
    for (i = 0; i < errs.count; i++) {
        fprintf(stderr, "rules: %s\n",
                sb_error_format(&errs.items[i], line, sizeof(line)));
    }
    return NULL;
}

/* ---- measuring ---------------------------------------------------------- */

/* One call on one event; returns rules matched or deliveries planned. */
static size_t bench_call_once(const struct bench *b, enum bench_call call,
                              size_t index)
{
    static unsigned char matched[SB_RULES_MAX];
    static struct sb_route route;
    size_t n;

    if (call == BENCH_EVALUATE) {
        return sb_rules_evaluate(b->rules, b->events[index], matched);
    }
    if (sb_rules_route(b->rules, b->events[index], 0, &route, NULL) != SB_OK) {
        fprintf(stderr, "rules: routing failed\n");
        exit(1);
    }
    n = route.count;
    /* Give the throttle keys back so every pass claims them afresh. */
    sb_rules_release(b->rules, &route);
    sb_route_cleanup(&route);
    return n;
}

/*
 * Calls `call` on events [first, first + count) in turn for `seconds`,
 * reading the clock every BENCH_CHECK_EVERY passes. With `totals` not
 * NULL the run is measured: its time and allocations are added there.
 */
static void bench_loop(const struct bench *b, enum bench_call call,
                       size_t first, size_t count, double seconds,
                       struct bench_totals *totals)
{
    uint64_t allocs = bench_allocs;
    uint64_t frees = bench_frees;
    uint64_t evaluations = 0;
    uint64_t matched = 0;
    double start = bench_now();
    double end;
    size_t pass;
    size_t i;

    bench_counting = totals != NULL;
    do {
        for (pass = 0; pass < BENCH_CHECK_EVERY; pass++) {
            for (i = first; i < first + count; i++) {
                matched += bench_call_once(b, call, i);
            }
        }
        evaluations += BENCH_CHECK_EVERY * count;
        end = bench_now();
    } while (end - start < seconds);
    bench_counting = 0;
    if (totals == NULL) {
        return;
    }
    totals->ns[totals->runs++] = (end - start) * 1e9 / (double)evaluations;
    totals->evaluations += evaluations;
    totals->allocs += bench_allocs - allocs;
    totals->frees += bench_frees - frees;
    totals->matched += matched;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Sorts the runs' times and returns their median. */
static double bench_median(struct bench_totals *t)
{
    qsort(t->ns, (size_t)t->runs, sizeof(t->ns[0]), bench_cmp_double);
    if (t->runs % 2 == 1) {
        return t->ns[t->runs / 2];
    }
    return (t->ns[t->runs / 2 - 1] + t->ns[t->runs / 2]) / 2;
}

static void bench_measure(const struct bench *b, enum bench_call call,
                          size_t first, size_t count, double seconds,
                          struct bench_totals *out)
{
    int run;

    memset(out, 0, sizeof(*out));
    bench_loop(b, call, first, count, b->warmup, NULL);
    for (run = 0; run < b->runs; run++) {
        bench_loop(b, call, first, count, seconds, out);
    }
}

/* ---- report ------------------------------------------------------------- */

static void bench_report_call(const struct bench *b, enum bench_call call)
{
    struct bench_totals t;
    double median;

    bench_measure(b, call, 0, b->event_count, b->seconds, &t);
    median = bench_median(&t);
    printf("main| %s | %s | %.0f | %.0f-%.0f | %.3f | %" PRIu64 " / %" PRIu64
           " | %.3f | %.3f |\n",
           b->label,
           call == BENCH_EVALUATE ? "sb_rules_evaluate" : "sb_rules_route",
           median, t.ns[0], t.ns[t.runs - 1],
           (double)t.allocs / (double)t.evaluations, t.allocs, t.evaluations,
           (double)t.frees / (double)t.evaluations,
           (double)t.matched / (double)t.evaluations);
    fflush(stdout);
}

/*
 * One counted pass of sb_rules_evaluate over every event, before anything
 * else has run: what the first events after a start allocate (glibc
 * builds a regex's matcher states on first use and keeps them).
 */
static void bench_report_cold(const struct bench *b)
{
    static unsigned char matched[SB_RULES_MAX];
    uint64_t allocs = bench_allocs;
    size_t i;

    bench_counting = 1;
    for (i = 0; i < b->event_count; i++) {
        sb_rules_evaluate(b->rules, b->events[i], matched);
    }
    bench_counting = 0;
    printf("cold| %s | %" PRIu64 " |\n", b->label, bench_allocs - allocs);
}

/* sb_rules_evaluate on each event alone: where the time goes. */
static void bench_report_events(const struct bench *b)
{
    struct bench_totals t;
    double median;
    size_t i;

    for (i = 0; i < b->event_count; i++) {
        bench_measure(b, BENCH_EVALUATE, i, 1, b->event_seconds, &t);
        median = bench_median(&t);
        printf("event| %s | %s | %.0f | %.0f-%.0f | %.3f | %.0f |\n", b->label,
               b->events[i]->event_type, median, t.ns[0], t.ns[t.runs - 1],
               (double)t.allocs / (double)t.evaluations,
               (double)t.matched / (double)t.evaluations);
        fflush(stdout);
    }
}

/* ---- main --------------------------------------------------------------- */

static int bench_usage(void)
{
    fprintf(stderr, "%s\n", BENCH_USAGE);
    return 2;
}

/* Reads the options; returns the index of CONFIG, or -1. */
static int bench_options(int argc, char **argv, struct bench *b)
{
    int opt;

    while ((opt = getopt(argc, argv, "l:d:n:w:e:")) != -1) {
        if (opt == 'l') {
            b->label = optarg;
        } else if (opt == 'd') {
            b->seconds = strtod(optarg, NULL);
        } else if (opt == 'n') {
            b->runs = (int)strtol(optarg, NULL, 10);
        } else if (opt == 'w') {
            b->warmup = strtod(optarg, NULL);
        } else if (opt == 'e') {
            b->event_seconds = strtod(optarg, NULL);
        } else {
            return -1;
        }
    }
    if (b->runs < 1 || b->runs > BENCH_MAX_RUNS || b->seconds <= 0 ||
        b->warmup < 0 || b->event_seconds < 0 || argc - optind < 2 ||
        argc - optind - 1 > BENCH_MAX_EVENTS) {
        return -1;
    }
    return optind;
}

int main(int argc, char **argv)
{
    struct bench b = {.seconds = 3,
                      .warmup = 1,
                      .event_seconds = 1,
                      .runs = 5,
                      .label = "rules"};
    struct sb_config *cfg;
    int first = bench_options(argc, argv, &b);
    int i;

    if (first < 0) {
        return bench_usage();
    }
    if (!bench_check_interposed()) {
        fprintf(stderr, "rules: malloc is not interposed: no count holds\n");
        return 1;
    }
    cfg = bench_load_config(argv[first]);
    if (cfg == NULL) {
        return 1;
    }
    b.rules = cfg->rules;
    for (i = first + 1; i < argc; i++) {
        if (bench_load_event(&b, argv[i]) != 0) {
            return 1;
        }
    }
    bench_report_cold(&b);
    bench_report_call(&b, BENCH_EVALUATE);
    bench_report_call(&b, BENCH_ROUTE);
    if (b.event_seconds > 0) {
        bench_report_events(&b);
    }
    for (i = 0; (size_t)i < b.event_count; i++) {
        sb_event_free(b.events[i]);
    }
    sb_config_free(cfg);
    return 0;
}
