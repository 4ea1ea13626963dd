/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/config: sizes, durations, ${VAR} expansion, file:
 * secrets, and the file:line:col of every kind of config error.
 */
#include "build_config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "fake_plugins.h"
#include "yml.h"

/* Writes `text` to a fresh temporary file; the caller unlinks it. */
static void write_temp(char path[64], const char *text)
{
    int fd;
    FILE *f;

    snprintf(path, 64, "/tmp/sb-test-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Loads `yaml` and expects failure at line:col with `needle` in the text. */
static void expect_error(const char *yaml, unsigned line, unsigned col,
                         const char *needle)
{
    char path[64];
    struct sb_config *cfg = NULL;
    static struct sb_errors errs;
    struct sb_error err;
    enum sb_status rc;

    write_temp(path, yaml);
    rc = sb_config_load(path, &cfg, &errs);
    unlink(path);
    sb_error_clear(&err);
    if (errs.count > 0) {
        err = errs.items[0];
    }
    if (rc != SB_ERR_INVALID || err.line != line || err.col != col ||
        strstr(err.msg, needle) == NULL) {
        fail_msg("expected error at %u:%u containing \"%s\", got rc=%d at "
                 "%u:%u: %s",
                 line, col, needle, rc, err.line, err.col, err.msg);
    }
    assert_null(cfg);
    assert_string_equal(err.file, path);
}

static struct sb_config *load_ok(const char *yaml)
{
    char path[64];
    struct sb_config *cfg = NULL;
    static struct sb_errors errs;
    enum sb_status rc;

    write_temp(path, yaml);
    rc = sb_config_load(path, &cfg, &errs);
    unlink(path);
    if (rc != SB_OK) {
        fail_msg("expected the config to load, got %u:%u: %s",
                 errs.items[0].line, errs.items[0].col, errs.items[0].msg);
    }
    return cfg;
}

static void test_config_size_units(void **state)
{
    struct sb_error err;
    size_t n = 0;

    (void)state;
    assert_int_equal(sb_config_parse_size("256KiB", &n, &err), SB_OK);
    assert_int_equal(n, 256 * 1024);
    assert_int_equal(sb_config_parse_size("1 MiB", &n, &err), SB_OK);
    assert_int_equal(n, 1024 * 1024);
    assert_int_equal(sb_config_parse_size("4096", &n, &err), SB_OK);
    assert_int_equal(n, 4096);
    assert_int_equal(sb_config_parse_size("10B", &n, &err), SB_OK);
    assert_int_equal(n, 10);
}

static void test_config_size_rejects_garbage(void **state)
{
    static const char *bad[] = {"",       "KiB",    "12 parsecs",
                                "1.5MiB", "-1",     "99999999999999999999",
                                "10kb",   "1 KiB x"};
    struct sb_error err;
    size_t n;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sb_error_clear(&err);
        if (sb_config_parse_size(bad[i], &n, &err) != SB_ERR_INVALID) {
            fail_msg("size \"%s\" was accepted", bad[i]);
        }
        assert_non_null(strstr(err.msg, "expected"));
    }
}

static void test_config_duration_units(void **state)
{
    struct sb_error err;
    uint64_t ms = 0;

    (void)state;
    assert_int_equal(sb_config_parse_duration("500ms", &ms, &err), SB_OK);
    assert_int_equal(ms, 500);
    assert_int_equal(sb_config_parse_duration("10s", &ms, &err), SB_OK);
    assert_int_equal(ms, 10000);
    assert_int_equal(sb_config_parse_duration("1h30m", &ms, &err), SB_OK);
    assert_int_equal(ms, 5400000);
    assert_int_equal(sb_config_parse_duration("7d", &ms, &err), SB_OK);
    assert_int_equal(ms, 7ULL * 86400000);
}

static void test_config_duration_rejects_garbage(void **state)
{
    static const char *bad[] = {
        "", "10", "ten s", "5w", "1.5h", "10 sec", "99999999999999999999d"};
    struct sb_error err;
    uint64_t ms;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sb_config_parse_duration(bad[i], &ms, &err) != SB_ERR_INVALID) {
            fail_msg("duration \"%s\" was accepted", bad[i]);
        }
    }
}

static void test_config_expand_vars(void **state)
{
    struct sb_error err;
    char *out = NULL;

    (void)state;
    setenv("SB_TEST_VAR", "value", 1);
    unsetenv("SB_TEST_UNSET");
    assert_int_equal(sb_yml_expand("a-${SB_TEST_VAR}-b", &out, &err), SB_OK);
    assert_string_equal(out, "a-value-b");
    free(out);
    assert_int_equal(sb_yml_expand("${SB_TEST_UNSET:-dflt}", &out, &err),
                     SB_OK);
    assert_string_equal(out, "dflt");
    free(out);
    assert_int_equal(sb_yml_expand("${SB_TEST_VAR:-dflt}", &out, &err), SB_OK);
    assert_string_equal(out, "value");
    free(out);
    assert_int_equal(sb_yml_expand("cost $$5 $x", &out, &err), SB_OK);
    assert_string_equal(out, "cost $5 $x");
    free(out);
}

static void test_config_expand_unset_names_variable(void **state)
{
    struct sb_error err;
    char *out = (char *)"untouched";

    (void)state;
    unsetenv("SB_TEST_UNSET");
    sb_error_clear(&err);
    assert_int_equal(sb_yml_expand("x${SB_TEST_UNSET}", &out, &err),
                     SB_ERR_INVALID);
    assert_null(out);
    assert_non_null(strstr(err.msg, "SB_TEST_UNSET is not set"));
    assert_int_equal(sb_yml_expand("${BROKEN", &out, &err), SB_ERR_INVALID);
    assert_int_equal(sb_yml_expand("${1X}", &out, &err), SB_ERR_INVALID);
}

static void test_config_secret_file_drops_one_newline(void **state)
{
    char path[64];
    char ref[80];
    struct sb_error err;
    char *secret = NULL;

    (void)state;
    write_temp(path, "tok3n\n\n");
    snprintf(ref, sizeof(ref), "file:%s", path);
    assert_int_equal(sb_config_read_secret(ref, "/", &secret, &err), SB_OK);
    assert_string_equal(secret, "tok3n\n");
    free(secret);
    unlink(path);
    assert_int_equal(sb_config_read_secret(ref, "/", &secret, &err),
                     SB_ERR_INVALID);
    assert_non_null(strstr(err.msg, "cannot read secret file"));
    assert_int_equal(sb_config_read_secret("plain", "/", &secret, &err), SB_OK);
    assert_string_equal(secret, "plain");
    free(secret);
}

static void test_config_loads_full_example(void **state)
{
    struct sb_config *cfg;

    (void)state;
    setenv("SB_TEST_SECRET", "first-secret", 1);
    cfg = load_ok("listen: 127.0.0.1:9000\n"
                  "path: /hook\n"
                  "max_body: 64KiB\n"
                  "auth:\n"
                  "  bearer:\n"
                  "    - ${SB_TEST_SECRET}\n"
                  "    - second\n"
                  "admin: { listen: \"[::1]:9091\" }\n"
                  "spool: { path: /tmp/x/spool.db, retention: \"2d\" }\n"
                  "log_level: debug\n");
    assert_string_equal(cfg->listen.host, "127.0.0.1");
    assert_int_equal(cfg->listen.port, 9000);
    assert_string_equal(cfg->path, "/hook");
    assert_int_equal(cfg->max_body, 64 * 1024);
    assert_int_equal(cfg->bearer_count, 2);
    assert_string_equal(cfg->bearer[0], "first-secret");
    assert_true(cfg->admin_enabled);
    assert_string_equal(cfg->admin_listen.host, "::1");
    assert_string_equal(cfg->spool_path, "/tmp/x/spool.db");
    assert_int_equal(cfg->retention_ms, 2ULL * 86400000);
    assert_int_equal(cfg->log_level, SB_LOG_DEBUG);
    sb_config_free(cfg);
}

static void test_config_defaults(void **state)
{
    struct sb_config *cfg;

    (void)state;
    cfg = load_ok("auth: { bearer: [only] }\n");
    assert_string_equal(cfg->listen.host, "127.0.0.1");
    assert_int_equal(cfg->listen.port, 8080);
    assert_string_equal(cfg->path, "/webhook");
    assert_int_equal(cfg->max_body, 256 * 1024);
    assert_false(cfg->admin_enabled);
    assert_null(cfg->tls_cert_path);
    assert_int_equal(cfg->retention_ms, 7ULL * 86400000);
    sb_config_free(cfg);
}

static void test_config_relative_paths_follow_the_file(void **state)
{
    struct sb_config *cfg;

    (void)state;
    cfg = load_ok("auth: { bearer: [x] }\nspool: { path: var/s.db }\n");
    assert_string_equal(cfg->spool_path, "/tmp/var/s.db");
    sb_config_free(cfg);
}

static void test_config_errors_have_positions(void **state)
{
    (void)state;
    unsetenv("SB_TEST_UNSET");
    expect_error("auth: { bearer: [x] }\nlisten: 1.2.3.4:80\nfrobnicate: 1\n",
                 3, 1, "unknown key \"frobnicate\"");
    expect_error("auth: { bearer: [x] }\nspool:\n  pth: /x\n", 3, 3,
                 "expected one of path, retention");
    expect_error("auth: { bearer: [x] }\nmax_body: [1]\n", 2, 11,
                 "expected a string, got a list");
    expect_error("auth: { bearer: [x] }\nmax_body: 12 parsecs\n", 2, 11,
                 "bad size");
    expect_error("auth: { bearer: [x] }\nspool: { retention: 10 }\n", 2, 21,
                 "bad duration");
    expect_error("auth:\n  bearer:\n    - ${SB_TEST_UNSET}\n", 3, 7,
                 "SB_TEST_UNSET is not set");
    expect_error("auth: { bearer: [x] }\nlisten: nowhere\n", 2, 9,
                 "expected HOST:PORT");
    expect_error("auth: { bearer: [x] }\npath: hook\n", 2, 7,
                 "starting with \"/\"");
    expect_error("auth: { bearer: [x] }\nlog_level: loud\n", 2, 12,
                 "expected one of error, warn, info, debug");
    expect_error("auth: { bearer: [x] }\npath: /a\npath: /b\n", 3, 1,
                 "duplicate key");
    expect_error("listen: :8080\n", 1, 1, "auth.bearer");
    expect_error("auth: { bearer: [x] }\ntls: { cert: /nonexistent }\n", 2, 6,
                 "both cert and key");
    expect_error("auth: { bearer: x }\n", 1, 17,
                 "expected a list of secrets, got a scalar");
    expect_error("auth: { bearer: [\"file:/nonexistent/s\"] }\n", 1, 18,
                 "cannot read secret file");
    expect_error("auth: [ x\n", 2, 1, "invalid YAML");
    expect_error("- a\n- b\n", 1, 1, "expected a mapping at the top level");
}

static void test_config_reports_every_error(void **state)
{
    char path[64];
    struct sb_config *cfg = NULL;
    static struct sb_errors errs;

    (void)state;
    write_temp(path, "auth: { bearer: [x] }\n"
                     "listen: nowhere\n"
                     "max_body: lots\n"
                     "colour: blue\n");
    assert_int_equal(sb_config_load(path, &cfg, &errs), SB_ERR_INVALID);
    unlink(path);
    if (errs.count != 3 || errs.items[0].line != 2 || errs.items[1].line != 3 ||
        errs.items[2].line != 4) {
        fail_msg("expected errors on lines 2, 3 and 4, got %zu errors",
                 errs.count);
    }
}

static void test_config_tls_pair_is_checked_at_load(void **state)
{
    char cert[64];
    char key[64];
    char yaml[256];

    (void)state;
    write_temp(cert, "-----BEGIN CERTIFICATE-----\nnot base64\n");
    write_temp(key, "garbage\n");
    snprintf(yaml, sizeof(yaml),
             "auth: { bearer: [x] }\ntls:\n  cert: %s\n  key: %s\n", cert, key);
    expect_error(yaml, 3, 3, "unusable certificate or key");
    unlink(cert);
    unlink(key);
}

static void test_config_errors_never_show_secrets(void **state)
{
    char path[64];
    struct sb_config *cfg = NULL;
    static struct sb_errors errs;
    char text[1024];

    (void)state;
    write_temp(path, "auth: { bearer: [ hunter2-secret, \"\" ] }\n");
    assert_int_equal(sb_config_load(path, &cfg, &errs), SB_ERR_INVALID);
    unlink(path);
    assert_int_equal(errs.count, 1);
    sb_error_format(&errs.items[0], text, sizeof(text));
    assert_null(strstr(text, "hunter2"));
    assert_non_null(strstr(text, "secret is empty"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_size_units),
        cmocka_unit_test(test_config_size_rejects_garbage),
        cmocka_unit_test(test_config_duration_units),
        cmocka_unit_test(test_config_duration_rejects_garbage),
        cmocka_unit_test(test_config_expand_vars),
        cmocka_unit_test(test_config_expand_unset_names_variable),
        cmocka_unit_test(test_config_secret_file_drops_one_newline),
        cmocka_unit_test(test_config_loads_full_example),
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_relative_paths_follow_the_file),
        cmocka_unit_test(test_config_errors_have_positions),
        cmocka_unit_test(test_config_reports_every_error),
        cmocka_unit_test(test_config_tls_pair_is_checked_at_load),
        cmocka_unit_test(test_config_errors_never_show_secrets),
    };

    fake_plugins_preload();
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
