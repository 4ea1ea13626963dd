/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/buf: appending, the NUL after the contents, and the
 * cap that refuses a whole append rather than part of it.
 */
#include "build_config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"

static void test_buf_starts_empty(void **state)
{
    struct sb_buf buf;

    (void)state;
    sb_buf_init(&buf, 16);
    assert_null(buf.data);
    assert_int_equal(buf.len, 0);
    assert_string_equal(sb_buf_str(&buf), "");
    /* Appending nothing allocates nothing. */
    assert_int_equal(sb_buf_add(&buf, "", 0), SB_OK);
    assert_null(buf.data);
    sb_buf_cleanup(&buf);
}

static void test_buf_appends_and_terminates(void **state)
{
    struct sb_buf buf;

    (void)state;
    sb_buf_init(&buf, 1024);
    assert_int_equal(sb_buf_adds(&buf, "hello"), SB_OK);
    assert_int_equal(sb_buf_addc(&buf, ','), SB_OK);
    assert_int_equal(sb_buf_add(&buf, " world!!", 6), SB_OK);
    assert_int_equal(buf.len, 12);
    assert_string_equal(sb_buf_str(&buf), "hello, world");
    assert_true(buf.alloc > buf.len);
    /* Bytes are bytes: a NUL inside is kept and counted. */
    assert_int_equal(sb_buf_add(&buf, "\0x", 2), SB_OK);
    assert_int_equal(buf.len, 14);
    assert_memory_equal(buf.data, "hello, world\0x", 15);
    sb_buf_cleanup(&buf);
}

static void test_buf_grows_to_the_cap(void **state)
{
    struct sb_buf buf;
    char chunk[100];
    size_t i;

    (void)state;
    memset(chunk, 'z', sizeof(chunk));
    sb_buf_init(&buf, 10000);
    for (i = 0; i < 100; i++) {
        if (sb_buf_add(&buf, chunk, sizeof(chunk)) != SB_OK) {
            fail_msg("append %zu of 100 failed below the cap", i + 1);
        }
    }
    assert_int_equal(buf.len, 10000);
    assert_int_equal(strlen(sb_buf_str(&buf)), 10000);
    /* Never more memory than the cap can use. */
    assert_true(buf.alloc <= 10001);
    assert_int_equal(sb_buf_addc(&buf, 'z'), SB_ERR_FULL);
    sb_buf_cleanup(&buf);
}

static void test_buf_cap_refuses_whole_append(void **state)
{
    struct sb_buf buf;

    (void)state;
    sb_buf_init(&buf, 8);
    assert_int_equal(sb_buf_adds(&buf, "abcde"), SB_OK);
    assert_int_equal(sb_buf_adds(&buf, "fghi"), SB_ERR_FULL);
    assert_int_equal(buf.len, 5);
    assert_string_equal(sb_buf_str(&buf), "abcde");
    assert_int_equal(sb_buf_add(&buf, "x", SIZE_MAX), SB_ERR_FULL);
    assert_int_equal(buf.len, 5);
    assert_int_equal(sb_buf_adds(&buf, "fgh"), SB_OK);
    assert_string_equal(sb_buf_str(&buf), "abcdefgh");
    assert_int_equal(sb_buf_addc(&buf, 'i'), SB_ERR_FULL);
    assert_int_equal(sb_buf_add(&buf, "", 0), SB_OK);
    assert_string_equal(sb_buf_str(&buf), "abcdefgh");
    sb_buf_cleanup(&buf);

    sb_buf_init(&buf, 0);
    assert_int_equal(sb_buf_addc(&buf, 'a'), SB_ERR_FULL);
    assert_string_equal(sb_buf_str(&buf), "");
    sb_buf_cleanup(&buf);
}

static void test_buf_reset_keeps_memory_and_cap(void **state)
{
    struct sb_buf buf;
    const char *data;

    (void)state;
    sb_buf_init(&buf, 6);
    assert_int_equal(sb_buf_adds(&buf, "abcdef"), SB_OK);
    data = buf.data;
    sb_buf_reset(&buf);
    assert_int_equal(buf.len, 0);
    assert_string_equal(sb_buf_str(&buf), "");
    assert_ptr_equal(buf.data, data);
    assert_int_equal(sb_buf_adds(&buf, "ghijkl"), SB_OK);
    assert_int_equal(sb_buf_addc(&buf, 'm'), SB_ERR_FULL);
    assert_string_equal(sb_buf_str(&buf), "ghijkl");
    sb_buf_cleanup(&buf);
    sb_buf_reset(&buf);
}

static void test_buf_reusable_after_cleanup(void **state)
{
    struct sb_buf buf;

    (void)state;
    sb_buf_init(&buf, 4);
    assert_int_equal(sb_buf_adds(&buf, "abcd"), SB_OK);
    sb_buf_cleanup(&buf);
    assert_null(buf.data);
    assert_string_equal(sb_buf_str(&buf), "");
    sb_buf_cleanup(&buf);
    sb_buf_init(&buf, 2);
    assert_int_equal(sb_buf_adds(&buf, "abc"), SB_ERR_FULL);
    assert_int_equal(sb_buf_adds(&buf, "ab"), SB_OK);
    assert_string_equal(sb_buf_str(&buf), "ab");
    sb_buf_cleanup(&buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_starts_empty),
        cmocka_unit_test(test_buf_appends_and_terminates),
        cmocka_unit_test(test_buf_grows_to_the_cap),
        cmocka_unit_test(test_buf_cap_refuses_whole_append),
        cmocka_unit_test(test_buf_reset_keeps_memory_and_cap),
        cmocka_unit_test(test_buf_reusable_after_cleanup),
    };

    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
