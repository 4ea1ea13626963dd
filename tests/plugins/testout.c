/* SPDX-License-Identifier: MIT */
/*
 * The testout output: a plugin the integration tests script through its
 * config. It answers delivered, retry or failed as told, or stalls inside
 * deliver(), and appends to `path` one JSON line when an attempt starts
 * and one when it answers, so a test can read what the router did and
 * when. It takes the template fields of the slack, smtp, sms and file
 * outputs, so a rule set written for them can point at testout outputs.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <switchboard/plugin.h>

#define TESTOUT_FOREVER     UINT64_MAX /* stall_for absent */
#define TESTOUT_RETRY_EVER  INT64_MIN  /* retries absent */
#define TESTOUT_STALL_STEP  1          /* seconds a stall sleeps at a time */
#define TESTOUT_DEFAULT_ERR "scripted"

enum testout_mode {
    TESTOUT_DELIVER,
    TESTOUT_RETRY,
    TESTOUT_FAIL,
    TESTOUT_STALL,
};

static const char *const testout_modes[] = {"deliver", "retry", "fail",
                                            "stall"};

struct testout {
    const struct sb_plugin_host *host;
    char *path;
    enum testout_mode mode;
    int64_t retries;         /* RETRY attempts before DELIVERED */
    uint64_t retry_after_ms; /* with RETRY: the delay asked for */
    char *error;             /* out->error for RETRY and FAILED */
    uint64_t stall_ms;       /* mode stall: how long deliver() sleeps */
    char *fail_on_type;      /* this event type always fails; may be NULL */
    char *lifecycle; /* appends "created <output>" and "destroyed <output>" */
    int fd;
    pthread_mutex_t lock; /* one record is one write() */
};

/* Field order is the order deliver() gets them in. */
static const struct sb_plugin_field testout_fields[] = {
    {"text", "{{event_type}} {{event_id}}", SB_PLUGIN_ESCAPE_NONE},
    {"subject", "[t] {{event_type}}", SB_PLUGIN_ESCAPE_HEADER},
    {"body", NULL, SB_PLUGIN_ESCAPE_NONE},
    {"line", NULL, SB_PLUGIN_ESCAPE_NONE},
};

#define TESTOUT_FIELD_COUNT (sizeof(testout_fields) / sizeof(testout_fields[0]))

/* ---- config ------------------------------------------------------------ */

/* Keeps a copy of a borrowed config string; NULL stays NULL. */
static int testout_copy(const struct sb_plugin_config *cfg,
                        const struct sb_plugin_host *host, const char *key,
                        const char *text, char **out)
{
    *out = NULL;
    if (text == NULL) {
        return 0;
    }
    *out = strdup(text);
    if (*out == NULL) {
        return host->config_error(cfg, key, "%s: out of memory", key);
    }
    return 0;
}

static int testout_string(const struct sb_plugin_config *cfg,
                          const struct sb_plugin_host *host, const char *key,
                          const char *def, char **out)
{
    const char *text = NULL;

    *out = NULL;
    if (host->config_string(cfg, key, 0, def, &text) != 0) {
        return -1;
    }
    return testout_copy(cfg, host, key, text, out);
}

static int testout_read_mode(const struct sb_plugin_config *cfg,
                             const struct sb_plugin_host *host,
                             enum testout_mode *out)
{
    const char *word = NULL;
    size_t i;

    *out = TESTOUT_DELIVER;
    if (host->config_string(cfg, "mode", 0, "deliver", &word) != 0) {
        return -1;
    }
    for (i = 0; i < sizeof(testout_modes) / sizeof(testout_modes[0]); i++) {
        if (strcmp(word, testout_modes[i]) == 0) {
            *out = (enum testout_mode)i;
            return 0;
        }
    }
    return host->config_error(cfg, "mode",
                              "mode: expected deliver, retry, fail or stall");
}

/*
 * Reads every key, even after one has failed, so each mistake is
 * reported at once and no key is left unread (reported as unknown).
 */
static int testout_read(const struct sb_plugin_config *cfg,
                        const struct sb_plugin_host *host, struct testout *t)
{
    const char *path = NULL;
    int rc = host->config_path(cfg, "path", 1, NULL, &path);

    rc |= testout_copy(cfg, host, "path", path, &t->path);
    rc |= testout_read_mode(cfg, host, &t->mode);
    rc |= host->config_integer(cfg, "retries", 0, TESTOUT_RETRY_EVER,
                               &t->retries);
    if (t->retries < 0 && t->retries != TESTOUT_RETRY_EVER) {
        rc = host->config_error(cfg, "retries", "retries: expected 0 or more");
    }
    rc |= host->config_duration(cfg, "retry_after", 0, 0, &t->retry_after_ms);
    rc |= testout_string(cfg, host, "error", TESTOUT_DEFAULT_ERR, &t->error);
    rc |= host->config_duration(cfg, "stall_for", 0, TESTOUT_FOREVER,
                                &t->stall_ms);
    rc |= testout_string(cfg, host, "fail_on_type", NULL, &t->fail_on_type);
    path = NULL;
    rc |= host->config_path(cfg, "lifecycle", 0, NULL, &path);
    rc |= testout_copy(cfg, host, "lifecycle", path, &t->lifecycle);
    return rc != 0 ? -1 : 0;
}

/* ---- the record -------------------------------------------------------- */

/* Writes s[0..n) as a JSON string; bytes >= 0x80 pass through as is. */
static void testout_json_string(FILE *f, const char *s, size_t n)
{
    size_t i;

    fputc('"', f);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
        } else {
            fputc(c, f);
        }
    }
    fputc('"', f);
}

static void testout_json_text(FILE *f, const char *s)
{
    if (s == NULL) {
        fputs("null", f);
    } else {
        testout_json_string(f, s, strlen(s));
    }
}

static long long testout_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void testout_json_fields(FILE *f, const struct sb_plugin_message *msg)
{
    size_t i;

    fputs(",\"fields\":{", f);
    for (i = 0; i < msg->field_count && i < TESTOUT_FIELD_COUNT; i++) {
        fputs(i > 0 ? "," : "", f);
        testout_json_text(f, testout_fields[i].name);
        fputc(':', f);
        if (msg->fields[i] == NULL) {
            fputs("null", f);
        } else {
            testout_json_string(f, msg->fields[i], msg->field_lens[i]);
        }
    }
    fputs("}}\n", f);
}

/* One whole line in memory, so that it reaches the file in one write(). */
static int testout_line(const struct sb_plugin_message *msg, const char *result,
                        char **out_line, size_t *out_len)
{
    FILE *f = open_memstream(out_line, out_len);

    if (f == NULL) {
        return -1;
    }
    fputs("{\"event_id\":", f);
    testout_json_text(f, msg->event_id);
    fputs(",\"event_type\":", f);
    testout_json_text(f, msg->event_type);
    fputs(",\"rule\":", f);
    testout_json_text(f, msg->rule);
    fprintf(f, ",\"delivery_id\":%lld,\"attempt\":%u,\"result\":\"%s\"",
            (long long)msg->delivery_id, (unsigned)msg->attempt, result);
    fprintf(f, ",\"t_ms\":%lld", testout_now_ms());
    testout_json_fields(f, msg);
    return fclose(f) == 0 ? 0 : -1;
}

static int testout_write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Appends the attempt's line; a failure is logged, never answered. */
static void testout_record(struct testout *t,
                           const struct sb_plugin_message *msg,
                           const char *result)
{
    char *line = NULL;
    size_t len = 0;
    int rc = testout_line(msg, result, &line, &len);

    if (rc == 0) {
        pthread_mutex_lock(&t->lock);
        rc = testout_write_all(t->fd, line, len);
        pthread_mutex_unlock(&t->lock);
    }
    if (rc != 0) {
        t->host->log(t->host, SB_PLUGIN_LOG_ERROR,
                     "cannot append the attempt's record: %s", strerror(errno));
    }
    free(line);
}

/* ---- delivering -------------------------------------------------------- */

/* Sleeps stall_ms, or for ever in steps that look at nothing. */
static void testout_stall(const struct testout *t)
{
    struct timespec left;

    if (t->stall_ms == TESTOUT_FOREVER) {
        for (;;) {
            sleep(TESTOUT_STALL_STEP);
        }
    }
    left.tv_sec = (time_t)(t->stall_ms / 1000);
    left.tv_nsec = (long)(t->stall_ms % 1000) * 1000000L;
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
        continue;
    }
}

static enum sb_plugin_status testout_answer(const struct testout *t,
                                            const struct sb_plugin_message *msg,
                                            struct sb_plugin_result *out)
{
    int fails = t->fail_on_type != NULL && msg->event_type != NULL &&
                strcmp(msg->event_type, t->fail_on_type) == 0;

    if (fails || t->mode == TESTOUT_FAIL) {
        snprintf(out->error, sizeof(out->error), "%s", t->error);
        return SB_PLUGIN_FAILED;
    }
    if (t->mode == TESTOUT_RETRY &&
        (t->retries == TESTOUT_RETRY_EVER || msg->attempt <= t->retries)) {
        snprintf(out->error, sizeof(out->error), "%s", t->error);
        out->retry_after_ms = t->retry_after_ms;
        return SB_PLUGIN_RETRY;
    }
    if (t->mode == TESTOUT_STALL) {
        testout_stall(t);
    }
    return SB_PLUGIN_DELIVERED;
}

static enum sb_plugin_status
testout_deliver(void *instance, const struct sb_plugin_message *msg,
                struct sb_plugin_result *out)
{
    static const char *const words[] = {"delivered", "retry", "failed"};
    struct testout *t = instance;
    enum sb_plugin_status status;

    testout_record(t, msg, "start");
    status = testout_answer(t, msg, out);
    testout_record(t, msg, words[status]);
    return status;
}

/* ---- life cycle -------------------------------------------------------- */

/* One line in the lifecycle file, when there is one: how reloads act. */
static void testout_lifecycle(const struct testout *t, const char *what)
{
    char line[256];
    int fd;
    int n;

    if (t->lifecycle == NULL) {
        return;
    }
    fd = open(t->lifecycle, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        return;
    }
    n = snprintf(line, sizeof(line), "%s %s\n", what, t->host->output);
    if (n > 0 && (size_t)n < sizeof(line) &&
        testout_write_all(fd, line, (size_t)n) != 0) {
        t->host->log(t->host, SB_PLUGIN_LOG_ERROR,
                     "cannot append to the lifecycle file");
    }
    close(fd);
}

static void testout_free(struct testout *t)
{
    if (t == NULL) {
        return;
    }
    if (t->fd >= 0) {
        close(t->fd);
        pthread_mutex_destroy(&t->lock);
    }
    free(t->lifecycle);
    free(t->path);
    free(t->error);
    free(t->fail_on_type);
    free(t);
}

static int testout_open(struct testout *t)
{
    t->fd = open(t->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (t->fd < 0) {
        t->host->log(t->host, SB_PLUGIN_LOG_ERROR, "cannot open path: %s",
                     strerror(errno));
        return -1;
    }
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        close(t->fd);
        t->fd = -1;
        return -1;
    }
    return 0;
}

static int testout_create(const struct sb_plugin_config *cfg,
                          const struct sb_plugin_host *host,
                          void **out_instance)
{
    struct testout *t = calloc(1, sizeof(*t));
    int rc = -1;

    *out_instance = NULL;
    if (t == NULL) {
        host->log(host, SB_PLUGIN_LOG_ERROR, "out of memory");
        return -1;
    }
    t->host = host;
    t->fd = -1;
    if (testout_read(cfg, host, t) != 0) {
        goto out;
    }
    /* check and test validate only: no file is created. */
    if (!host->check_only && testout_open(t) != 0) {
        goto out;
    }
    if (!host->check_only) {
        testout_lifecycle(t, "created");
    }
    *out_instance = t;
    rc = 0;

out:
    if (rc != 0) {
        testout_free(t);
    }
    return rc;
}

static void testout_destroy(void *instance)
{
    struct testout *t = instance;

    if (t->fd >= 0) {
        testout_lifecycle(t, "destroyed");
    }
    testout_free(t);
}

SB_PLUGIN_DECLARE = {
    .abi_version = SB_PLUGIN_ABI_VERSION,
    .size = sizeof(struct sb_plugin_descriptor),
    .name = "testout",
    .description = "scripted answers and a JSON line per attempt, for tests",
    .flags = SB_PLUGIN_THREAD_SAFE,
    .fields = testout_fields,
    .field_count = TESTOUT_FIELD_COUNT,
    .create = testout_create,
    .deliver = testout_deliver,
    .destroy = testout_destroy,
};
