/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for the retry policy of core/dispatch: exponential growth of
 * the jitter's bound, the bound capped at max_delay, full jitter reaching
 * both ends, and a plugin's Retry-After honoured within the policy.
 */
#include "build_config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dispatch.h"

static const struct sb_retry_policy test_policy = {
    .max_attempts = 12,
    .initial_ms = 1000,
    .max_delay_ms = 600000,
    .max_age_ms = 86400000,
};

/*
 * Full jitter draws random % (bound + 1): `bound` itself is reachable and
 * bound + 1 wraps to 0, which pins the bound exactly.
 */
static void assert_bound(uint64_t attempts, uint64_t bound)
{
    assert_int_equal(sb_dispatch_retry_delay(&test_policy, attempts, 0, bound),
                     bound);
    assert_int_equal(
        sb_dispatch_retry_delay(&test_policy, attempts, 0, bound + 1), 0);
}

static void test_dispatch_bound_doubles_per_attempt(void **state)
{
    (void)state;
    assert_bound(1, 1000);
    assert_bound(2, 2000);
    assert_bound(3, 4000);
    assert_bound(8, 128000);
    assert_bound(9, 256000);
    assert_bound(10, 512000);
}

static void test_dispatch_bound_stops_at_max_delay(void **state)
{
    (void)state;
    assert_bound(11, 600000);
    assert_bound(12, 600000);
    /* Far past where doubling would overflow 64 bits. */
    assert_bound(70, 600000);
    assert_bound(UINT64_MAX, 600000);
}

static void test_dispatch_jitter_spans_zero_to_bound(void **state)
{
    uint64_t r;

    (void)state;
    assert_int_equal(sb_dispatch_retry_delay(&test_policy, 3, 0, 0), 0);
    /* random % (bound + 1): every value from 0 to the bound is reachable. */
    assert_int_equal(sb_dispatch_retry_delay(&test_policy, 3, 0, 4000), 4000);
    assert_int_equal(sb_dispatch_retry_delay(&test_policy, 3, 0, 4001), 0);
    for (r = 0; r < 100000; r += 997) {
        uint64_t d = sb_dispatch_retry_delay(&test_policy, 2, 0, r * 7919);

        assert_true(d <= 2000);
    }
}

static void test_dispatch_retry_after_within_policy(void **state)
{
    (void)state;
    /* The peer's wish wins over the jitter, whatever the attempt. */
    assert_int_equal(sb_dispatch_retry_delay(&test_policy, 1, 30000, 0), 30000);
    assert_int_equal(sb_dispatch_retry_delay(&test_policy, 9, 1, UINT64_MAX),
                     1);
    /* ... but never past max_delay. */
    assert_int_equal(sb_dispatch_retry_delay(&test_policy, 1, 3600000, 0),
                     600000);
}

static void test_dispatch_zero_initial_retries_at_once(void **state)
{
    struct sb_retry_policy p = test_policy;

    (void)state;
    p.initial_ms = 0;
    assert_int_equal(sb_dispatch_retry_delay(&p, 5, 0, UINT64_MAX), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dispatch_bound_doubles_per_attempt),
        cmocka_unit_test(test_dispatch_bound_stops_at_max_delay),
        cmocka_unit_test(test_dispatch_jitter_spans_zero_to_bound),
        cmocka_unit_test(test_dispatch_retry_after_within_policy),
        cmocka_unit_test(test_dispatch_zero_initial_retries_at_once),
    };

    return cmocka_run_group_tests_name("dispatch", tests, NULL, NULL);
}
