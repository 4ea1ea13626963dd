# SPDX-License-Identifier: MIT
"""A serve/stop cycle under valgrind: no leak, no invalid access.

The unit tests run under ASan; this covers what only the real binary does:
the listener threads, suspended requests, the spool writer and an orderly
shutdown after every kind of answer (200, 400, 401, 404, 413). Plugins are
loaded and used on the way: a file output and two testout outputs (one
answering at once, one retrying first) get their deliveries, a SIGHUP
reopens the file, and every instance is destroyed at stop.
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
DELIVERY_TIMEOUT = 60.0


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


def plugin_outputs(ctx):
    """plugins.dir with file.so and testout.so; outputs and a rule that use them."""
    folder = ctx.path("plugins")
    os.makedirs(folder)
    shutil.copy(os.path.join(h.plugins_dir(), "file.so"), folder)
    shutil.copy(os.path.join(h.test_plugins_dir(), "testout.so"), folder)
    fast = {"initial": "50ms", "max_delay": "200ms", "max_attempts": 5}
    outputs = {
        "archive": {"plugin": "file", "path": ctx.path("out", "archive.jsonl"),
                    "retry": dict(fast)},
        "rec": {"plugin": "testout", "path": ctx.path("rec.jsonl"), "retry": dict(fast)},
        "flaky": {"plugin": "testout", "path": ctx.path("flaky.jsonl"), "mode": "retry",
                  "retries": 1, "retry": dict(fast)},
    }
    rules = [{"name": "everything", "send": [
        "archive", "rec", {"to": "flaky", "text": "{{event_type}} {{payload.duration_seconds}}"}]}]
    return {"dir": folder}, outputs, rules


def answered(path):
    """Records of a testout file that are answers, not starts."""
    return [r for r in h.read_jsonl(path) if r.get("result") != "start"]


def exercise(ctx, port, pid, cfg, cfg_path):
    """One request of each kind of answer; the valid ones delivered to every output."""
    event = h.load_example("inbound_end_of_call")
    h.check_eq(h.post_event(port, event, timeout=30).status, 200, "valid event")
    h.check_eq(h.post_event(port, event, secret="wrong", timeout=30).status, 401,
               "wrong secret")
    h.check_eq(h.request(port, body=b"[1]", timeout=30).status, 400, "array body")
    h.check_eq(h.request(port, path="/elsewhere", body=b"{}", timeout=30).status, 404,
               "other path")
    big = {"event_type": "x", "payload": {"pad": "p" * 4096}}
    h.check_eq(h.post_event(port, big, timeout=30).status, 413, "body over max_body")

    archive = ctx.path("out", "archive.jsonl")
    h.wait_for("the first line in the file output",
               lambda: len(h.read_jsonl(archive)) >= 1, timeout=DELIVERY_TIMEOUT)
    os.rename(archive, archive + ".1")
    # A reload that changes rec: its lane and instance are replaced, the
    # others kept; the old instance is destroyed on the way.
    cfg["outputs"]["rec"]["error"] = "changed"
    with open(cfg_path, "w") as f:
        f.write(h.to_yaml(cfg))
    os.kill(pid, signal.SIGHUP)
    h.wait_for("the reload done", lambda: 'msg="config reloaded"' in
               h.read_text(ctx.path("serve.stderr")), timeout=DELIVERY_TIMEOUT)
    h.check_eq(h.post_event(port, event, timeout=30).status, 200, "valid event after SIGHUP")
    h.wait_for("the second line in the reopened file",
               lambda: len(h.read_jsonl(archive)) >= 1, timeout=DELIVERY_TIMEOUT)
    h.wait_for("both events delivered to rec",
               lambda: len(answered(ctx.path("rec.jsonl"))) >= 2, timeout=DELIVERY_TIMEOUT)
    h.wait_for("both events delivered to flaky after a retry",
               lambda: [r["result"] for r in answered(ctx.path("flaky.jsonl"))].count(
                   "delivered") >= 2, timeout=DELIVERY_TIMEOUT)


def case_serve_stop_is_clean(ctx):
    if shutil.which("valgrind") is None:
        h.fail("valgrind is not installed (tools/install-deps.sh test installs it)")
    plugins, outputs, rules = plugin_outputs(ctx)
    cfg = ctx.config(max_body="2KiB", admin={"listen": "127.0.0.1:%d" % h.free_port()},
                     plugins=plugins, outputs=outputs, rules=rules)
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
        exercise(ctx, port, proc.pid, cfg, cfg_path)
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
    flaky = [r["result"] for r in answered(ctx.path("flaky.jsonl"))]
    h.check_eq(sorted(flaky), ["delivered", "delivered", "retry", "retry"],
               "flaky's answers: one retry, then delivered, per event")


CASES = [
    ("serve/stop with plugins under valgrind: no leak, no invalid access",
     case_serve_stop_is_clean),
]

if __name__ == "__main__":
    h.main(CASES, timeout=150.0)
