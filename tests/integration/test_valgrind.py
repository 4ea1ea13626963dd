# SPDX-License-Identifier: MIT
"""A serve/stop cycle under valgrind: no leak, no invalid access.

The unit tests run under ASan; this covers what only the real binary does:
the listener threads, suspended requests, the spool writer and an orderly
shutdown after every kind of answer (200, 400, 401, 404, 413).
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

VALGRIND_START = 60.0   # valgrind slows start-up many times over
VALGRIND_STOP = 60.0


def wait_listening(proc, port, log_path):
    """Wait until port accepts connections; fail with valgrind's log if serve died."""
    deadline = time.monotonic() + VALGRIND_START
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            h.fail("serve exited %d under valgrind:\n%s"
                   % (proc.returncode, h.tail(h.read_text(log_path))))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    h.fail("serve not listening under valgrind after %.0fs" % VALGRIND_START)


def exercise(port):
    """One request of each kind of answer."""
    event = h.load_example("inbound_end_of_call")
    h.check_eq(h.post_event(port, event, timeout=30).status, 200, "valid event")
    h.check_eq(h.post_event(port, event, secret="wrong", timeout=30).status, 401,
               "wrong secret")
    h.check_eq(h.request(port, body=b"[1]", timeout=30).status, 400, "array body")
    h.check_eq(h.request(port, path="/elsewhere", body=b"{}", timeout=30).status, 404,
               "other path")
    big = {"event_type": "x", "payload": {"pad": "p" * 4096}}
    h.check_eq(h.post_event(port, big, timeout=30).status, 413, "body over max_body")


def case_serve_stop_is_clean(ctx):
    if shutil.which("valgrind") is None:
        h.fail("valgrind is not installed (tools/install-deps.sh test installs it)")
    cfg = ctx.config(max_body="2KiB", admin={"listen": "127.0.0.1:%d" % h.free_port()})
    cfg_path = ctx.write_config(cfg)
    port = int(cfg["listen"].rsplit(":", 1)[1])
    log_path = ctx.path("valgrind.log")
    cmd = ["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
           "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
           "--log-file=" + log_path, h.binary(), "serve", "-c", cfg_path]
    with open(ctx.path("serve.stderr"), "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                cwd=ctx.tmp, env=ctx.env())
    try:
        wait_listening(proc, port, log_path)
        exercise(port)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=VALGRIND_STOP)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    report = h.read_text(log_path)
    h.check(rc == 0, "serve under valgrind exited %d; valgrind says:\n%s"
            % (rc, h.tail(report, 40)))
    h.check(not re.search(r"definitely lost: [1-9]|Invalid (read|write)", report),
            "valgrind found problems:\n%s" % h.tail(report, 40))


CASES = [
    ("serve/stop under valgrind: no leak, no invalid access", case_serve_stop_is_clean),
]

if __name__ == "__main__":
    h.main(CASES, timeout=150.0)
