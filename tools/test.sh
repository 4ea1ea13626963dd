#!/bin/sh
# SPDX-License-Identifier: MIT
# The second quick-start command, and what CI runs: install what is
# missing, build (plain, and with ASan+UBSan, both -Werror), make
# distcheck, check the layout, run the unit tests under the sanitizers,
# the fuzz targets, the integration tests against the real binary (a
# serve/stop cycle under valgrind among them), then the threaded ones
# against the ASan/UBSan and ThreadSanitizer builds. Ends with one line
# "N passed, N failed"; exits 1 when anything failed.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
log=$(mktemp -d /tmp/switchboard-test.XXXXXX)
passed=0
failed=0
skipped=0

count() {
    p=$(grep -Ec '^ok ' "$1" || true)
    f=$(grep -E '^not ok ' "$1" | grep -vc '# SKIP' || true)
    s=$(grep -E '^not ok ' "$1" | grep -c '# SKIP' || true)
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + s))
}

fail_step() {
    echo "not ok - $1"
    failed=$((failed + 1))
}

sh tools/install-deps.sh test || { fail_step "install dependencies"; }
if sh tools/build.sh build --enable-werror >"$log/build.txt" 2>&1; then
    echo "ok - build"
    passed=$((passed + 1))
else
    cat "$log/build.txt"
    fail_step "build"
fi
if sh tools/build.sh build-san --enable-sanitizers --enable-werror \
    >"$log/build-san.txt" 2>&1 &&
    make -s -C build-san/tests check TESTS= >>"$log/build-san.txt" 2>&1; then
    echo "ok - build with sanitizers"
    passed=$((passed + 1))
else
    cat "$log/build-san.txt"
    fail_step "build with sanitizers"
fi

# The release tarball: complete, builds and passes `make check` in a
# read-only copy of itself, installs and uninstalls cleanly. The unit
# tests only; the integration tests run below against build/.
if make -s -C build -j"$(nproc)" distcheck >"$log/distcheck.txt" 2>&1; then
    echo "ok - make distcheck"
    passed=$((passed + 1))
else
    tail -40 "$log/distcheck.txt"
    fail_step "make distcheck"
fi

# Layout: the committed .clang-format settles it (STYLE.md).
if clang-format --dry-run --Werror core/*.[ch] tests/unit/*.c plugins/*/*.[ch] \
    tests/plugins/*.c include/switchboard/*.h \
    >"$log/format.txt" 2>&1; then
    echo "ok - C sources follow .clang-format"
    passed=$((passed + 1))
else
    head -40 "$log/format.txt"
    fail_step "C sources follow .clang-format"
fi

# Unit tests: cmocka speaks TAP when asked.
for t in build-san/tests/unit/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    CMOCKA_MESSAGE_OUTPUT=TAP "$t" >"$log/$name.txt" 2>&1
    rc=$?
    sed "s/^\(not \)\{0,1\}ok [0-9]* - /&$name: /" "$log/$name.txt"
    count "$log/$name.txt"
    if [ $rc -ne 0 ] && ! grep '^not ok' "$log/$name.txt" | grep -vq SKIP; then
        fail_step "$name exited $rc"
    fi
done

# Fuzz targets (libFuzzer, ASan, UBSan), each for a bounded time on a
# copy of its seed corpus. FUZZ_SECONDS=0 skips them.
fuzz_seconds=${FUZZ_SECONDS:-60}
fuzz_sources="core/status.c core/log.c core/buf.c core/yml.c core/json.c
core/template.c core/schedule.c core/output.c core/plugin_config.c
core/plugin_host.c core/rules.c core/config.c core/event.c core/metrics.c
tests/unit/fake_plugins.c"
fuzz_libs=$(pkg-config --libs yaml-0.1 gnutls libcjson 2>/dev/null)
for target in json template config; do
    [ "$fuzz_seconds" -gt 0 ] || break
    bin="$log/fuzz_$target"
    corpus="$log/corpus_$target"
    cp -r "tests/fuzz/corpus/$target" "$corpus"
    # shellcheck disable=SC2086 # word lists are meant to split
    if clang -g -O1 -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=all -D_GNU_SOURCE -Icore -Iinclude -Ibuild \
        -Itests/unit -DSB_PLUGINDIR='"/nonexistent"' \
        "tests/fuzz/fuzz_$target.c" $fuzz_sources $fuzz_libs -lm -pthread \
        -o "$bin" >"$log/fuzz_$target.txt" 2>&1 &&
        "$bin" -max_total_time="$fuzz_seconds" -timeout=10 \
            -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="$log/" "$corpus" \
            >>"$log/fuzz_$target.txt" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' \
            "$log/fuzz_$target.txt" | grep -o '[0-9]*$')
        echo "ok - fuzz $target for ${fuzz_seconds}s (${runs:-?} runs)"
        passed=$((passed + 1))
    else
        tail -30 "$log/fuzz_$target.txt"
        fail_step "fuzz $target"
    fi
done

# Integration tests: the real binary, real sockets, on 127.0.0.1.
SWITCHBOARD_BIN="$top/build/core/switchboard" \
    python3 tests/integration/run.py >"$log/integration.txt" 2>&1
rc=$?
grep -v ' passed, .* failed$' "$log/integration.txt"
count "$log/integration.txt"
if [ $rc -ne 0 ] && ! grep -q '^not ok' "$log/integration.txt"; then
    fail_step "integration runner exited $rc"
fi

# The threaded parts (ingress, spool writer, dispatch, plugins) again,
# built with ASan and UBSan: any report or leak fails the server's exit.
SWITCHBOARD_BIN="$top/build-san/core/switchboard" \
    SWITCHBOARD_PLUGINS_DIR="$top/build-san/plugins/.libs" \
    SWITCHBOARD_TEST_PLUGINS_DIR="$top/build-san/tests/plugins/.libs" \
    python3 tests/integration/run.py test_ingress.py test_routing.py \
    test_delivery.py test_file.py test_reload.py test_stop.py \
    test_metrics.py >"$log/integration-san.txt" 2>&1
rc=$?
grep -v ' passed, .* failed$' "$log/integration-san.txt" |
    sed "s/^\(not \)\{0,1\}ok - /&sanitizers: /"
count "$log/integration-san.txt"
if [ $rc -ne 0 ] && ! grep -q '^not ok' "$log/integration-san.txt"; then
    fail_step "integration runner (sanitizers) exited $rc"
fi

# And against a ThreadSanitizer build: the reload swap, dispatch lanes,
# settles and metrics under real threads. A report makes serve exit 66,
# which fails the case that stopped it.
if sh tools/build.sh build-tsan CFLAGS="-g -O1 -fsanitize=thread" \
    LDFLAGS="-fsanitize=thread" >"$log/build-tsan.txt" 2>&1; then
    TSAN_OPTIONS="halt_on_error=1 exitcode=66" \
        SWITCHBOARD_BIN="$top/build-tsan/core/switchboard" \
        SWITCHBOARD_PLUGINS_DIR="$top/build-tsan/plugins/.libs" \
        SWITCHBOARD_TEST_PLUGINS_DIR="$top/build-tsan/tests/plugins/.libs" \
        python3 tests/integration/run.py test_routing.py test_reload.py \
        test_stop.py test_metrics.py test_file.py \
        >"$log/integration-tsan.txt" 2>&1
    rc=$?
    grep -v ' passed, .* failed$' "$log/integration-tsan.txt" |
        sed "s/^\(not \)\{0,1\}ok - /&threads: /"
    count "$log/integration-tsan.txt"
    if [ $rc -ne 0 ] && ! grep -q '^not ok' "$log/integration-tsan.txt"; then
        fail_step "integration runner (thread sanitizer) exited $rc"
    fi
else
    tail -30 "$log/build-tsan.txt"
    fail_step "build with the thread sanitizer"
fi

if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
