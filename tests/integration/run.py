# SPDX-License-Identifier: MIT
"""Run every tests/integration/test_*.py (or those named) and total their results.

Each file runs in its own process, so one file's stray server or signal
handler cannot affect the next. The run ends with one line, `N passed, N
failed`, and exits 1 when any case failed or any file did not finish.
"""

import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FILE_TIMEOUT = 240.0         # seconds per file: each case is bounded, this bounds the rest


def test_files(names):
    """The test files to run: those named on the command line, else all, sorted."""
    if names:
        return [n if os.path.sep in n else os.path.join(HERE, n) for n in names]
    return sorted(os.path.join(HERE, n) for n in os.listdir(HERE)
                  if n.startswith("test_") and n.endswith(".py"))


def run_file(path):
    """Run one file, echo its report, and return (passed, failed) counted from its lines."""
    name = os.path.basename(path)
    print("# %s" % name, flush=True)
    started = time.monotonic()
    try:
        res = subprocess.run([sys.executable, path], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=FILE_TIMEOUT)
    except subprocess.TimeoutExpired:
        print("not ok - %s finished within %.0fs" % (name, FILE_TIMEOUT), flush=True)
        return 0, 1
    sys.stdout.write(res.stdout)
    if res.stderr.strip():
        sys.stdout.write("".join("#   stderr: %s\n" % ln for ln in res.stderr.splitlines()))
    passed = len(re.findall(r"(?m)^ok - ", res.stdout))
    failed = len(re.findall(r"(?m)^not ok - ", res.stdout))
    if res.returncode != 0 and failed == 0:
        print("not ok - %s exited %d without a failing case" % (name, res.returncode))
        failed = 1
    print("# %s: %.1fs" % (name, time.monotonic() - started), flush=True)
    return passed, failed


def main():
    total_passed = total_failed = 0
    for path in test_files(sys.argv[1:]):
        passed, failed = run_file(path)
        total_passed += passed
        total_failed += failed
    print("%d passed, %d failed" % (total_passed, total_failed), flush=True)
    sys.exit(1 if total_failed else 0)


if __name__ == "__main__":
    main()
