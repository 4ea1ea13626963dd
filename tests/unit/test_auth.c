/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/auth: which Authorization values pass, rotation
 * across several secrets, and the constant-time comparison.
 */
#include "build_config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "auth.h"

static void test_auth_accepts_each_secret(void **state)
{
    char *secrets[] = {(char *)"current-secret", (char *)"next-secret"};
    struct sb_auth auth;

    (void)state;
    assert_int_equal(sb_auth_init(&auth, secrets, 2), SB_OK);
    assert_true(sb_auth_check(&auth, "Bearer current-secret"));
    assert_true(sb_auth_check(&auth, "Bearer next-secret"));
    assert_true(sb_auth_check(&auth, "bearer next-secret"));
    sb_auth_cleanup(&auth);
}

static void test_auth_refuses_the_rest(void **state)
{
    static const char *bad[] = {
        "",
        "Bearer",
        "Bearer ",
        "Bearer current",
        "Bearer current-secretX",
        "Basic current-secret",
        "current-secret",
        "Bearer CURRENT-SECRET",
    };
    char *secrets[] = {(char *)"current-secret"};
    struct sb_auth auth;
    size_t i;

    (void)state;
    assert_int_equal(sb_auth_init(&auth, secrets, 1), SB_OK);
    assert_false(sb_auth_check(&auth, NULL));
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (sb_auth_check(&auth, bad[i])) {
            fail_msg("\"%s\" was accepted", bad[i]);
        }
    }
    sb_auth_cleanup(&auth);
}

static void test_auth_needs_secrets(void **state)
{
    struct sb_auth auth;

    (void)state;
    assert_int_equal(sb_auth_init(&auth, NULL, 0), SB_ERR_INVALID);
    assert_int_equal(auth.count, 0);
    assert_false(sb_auth_check(&auth, "Bearer anything"));
}

static void test_auth_equal_compares_every_byte(void **state)
{
    uint8_t a[32];
    uint8_t b[32];
    size_t i;

    (void)state;
    memset(a, 0x5a, sizeof(a));
    memcpy(b, a, sizeof(b));
    assert_true(sb_auth_equal(a, b, sizeof(a)));
    for (i = 0; i < sizeof(a); i++) {
        b[i] ^= 1;
        if (sb_auth_equal(a, b, sizeof(a))) {
            fail_msg("a difference at byte %zu went unnoticed", i);
        }
        b[i] ^= 1;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_auth_accepts_each_secret),
        cmocka_unit_test(test_auth_refuses_the_rest),
        cmocka_unit_test(test_auth_needs_secrets),
        cmocka_unit_test(test_auth_equal_compares_every_byte),
    };

    return cmocka_run_group_tests_name("auth", tests, NULL, NULL);
}
