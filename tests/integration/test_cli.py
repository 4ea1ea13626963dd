# SPDX-License-Identifier: MIT
"""The command line: version, check, serve's exit codes, and secrets kept out of output.

`check` is what a user runs before a reload, so its errors must point at the
exact file, line and column, and nothing it prints may reveal a secret: its
output ends up pasted into tickets and chat.
"""

import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

CFG = "switchboard.yaml"
UNSET = "SB_ITEST_NEVER_SET_VAR"
OPT_ENV = "SB_ITEST_OPTIONAL_SECRET"
DEFAULT_SECRET = "sbitest-default-Vx4r8-fallback"
WRONG_SECRET = "sbitest-wrong-Hq2n5-typo"


def base_lines(ctx):
    """A valid config, one setting per line, so each error case can replace one line."""
    return [
        "listen: 127.0.0.1:%d" % h.free_port(),         # 1
        "path: %s" % h.WEBHOOK_PATH,                     # 2
        "max_body: 256KiB",                              # 3
        "auth:",                                         # 4
        "  bearer:",                                     # 5
        "    - ${%s}" % h.SECRET_ENV,                    # 6
        "spool:",                                        # 7
        "  path: %s" % ctx.path("var", "spool.db"),      # 8
        "  retention: 7d",                               # 9
    ]


def write_lines(ctx, lines):
    """Write config lines as switchboard.yaml in the case's temp dir."""
    return ctx.write(CFG, "\n".join(lines) + "\n")


def check_no_secret(texts, what, secrets=(h.SECRET,)):
    """Fail if any secret appears in any of texts (stdout, stderr, logs)."""
    for secret in secrets:
        for text in texts:
            for line in text.splitlines():
                h.check(secret not in line, "%s reveals a secret: %s"
                        % (what, line.replace(secret, "<secret>")))


def run_check(ctx, args=("-c", CFG), env=None):
    """`switchboard check` in the temp dir; the relative -c path fixes what errors print."""
    res = h.run_cli(ctx, ["check"] + list(args), env=env)
    check_no_secret([res.stdout, res.stderr], "check output")
    return res


def case_version(ctx):
    res = h.run_cli(ctx, ["version"])
    h.check_eq(res.returncode, 0, "version exit code")
    h.check(re.match(r"^switchboard \d+\.\d+\.\d+\S*\s*$", res.stdout),
            "version output should be 'switchboard X.Y.Z', got %r" % res.stdout)


def case_check_ok(ctx):
    """A good config: exit 0 and 'ok' on stdout."""
    write_lines(ctx, base_lines(ctx))
    res = run_check(ctx)
    h.check_eq(res.returncode, 0, "check exit code (stderr %r)" % res.stderr)
    h.check("ok" in res.stdout, "check stdout should say ok, got %r" % res.stdout)


def case_check_default_path(ctx):
    """Without -c, ./switchboard.yaml is the config."""
    write_lines(ctx, base_lines(ctx))
    res = run_check(ctx, args=())
    h.check_eq(res.returncode, 0, "check exit code without -c (stderr %r)" % res.stderr)


def case_check_missing_file(ctx):
    """A config file that does not exist is invalid input: exit 1, naming the file."""
    res = run_check(ctx, args=("-c", "nowhere.yaml"))
    h.check_eq(res.returncode, 1, "exit code for a missing config file")
    h.check("nowhere.yaml" in res.stderr, "error should name the file, got %r" % res.stderr)


# (name, line number to replace or None to append, new line, accepted lines,
#  accepted 1-based columns or None for any, word the message must contain).
# Columns: where the offending key or value starts, whichever the error is about.
ERROR_CASES = [
    ("unknown top-level key", None, "colour: blue", {10}, {1}, "colour"),
    ("unknown nested key", 9, "  retension: 7d", {9}, {3}, "retension"),
    ("wrong type", 3, "max_body: [1]", {3}, {1, 11}, None),
    ("bad size", 3, "max_body: 12 parsecs", {3}, {1, 11}, None),
    ("bad duration", 9, "  retention: 7 fortnights", {9}, {3, 14}, None),
    ("unset ${VAR}", 6, "    - ${%s}" % UNSET, {6}, {5, 7}, UNSET),
    ("missing file: secret", 6, "    - file:/nonexistent/sb-itest/next_secret", {6}, {5, 7},
     "/nonexistent/sb-itest/next_secret"),
    ("YAML syntax error", 3, "max_body: [1", {3, 4}, None, None),
]


def check_error_case(ctx, name, lineno, text, want_lines, cols, word):
    """One broken config: exit 1, `switchboard.yaml:LINE:COL: message` on stderr."""
    lines = base_lines(ctx)
    if lineno is None:
        lines.append(text)
    else:
        lines[lineno - 1] = text
    write_lines(ctx, lines)
    res = run_check(ctx, env=ctx.env(**{UNSET: None}))
    h.check_eq(res.returncode, 1, "%s: check exit code (stderr %r)" % (name, res.stderr))
    m = re.search(r"(?m)^%s:(\d+):(\d+): \S" % re.escape(CFG), res.stderr)
    h.check(m, "%s: stderr lacks '%s:LINE:COL: message', got %r" % (name, CFG, res.stderr))
    got_line, got_col = int(m.group(1)), int(m.group(2))
    h.check(got_line in want_lines, "%s: line %d, expected %s, in %r"
            % (name, got_line, sorted(want_lines), res.stderr.strip()))
    h.check(cols is None or got_col in cols, "%s: column %d, expected one of %r, in %r"
            % (name, got_col, sorted(cols or ()), res.stderr.strip()))
    if word:
        h.check(word in res.stderr, "%s: message should mention %r: %r" % (name, word, res.stderr))


def make_error_case(spec):
    """A case function for one row of ERROR_CASES."""
    def case(ctx):
        check_error_case(ctx, *spec)
    return case


def case_expanded_value_not_echoed(ctx):
    """A secret's variable used in the wrong field is reported without its value.

    Errors quote the bad value to help ("bad size ..."), but a value that came
    from ${VAR} may be a password put in the wrong place by a typo, and the
    error ends up in a ticket. Point at the line; do not print the value.
    """
    lines = base_lines(ctx)
    lines[2] = "max_body: ${%s}" % h.SECRET_ENV
    write_lines(ctx, lines)
    res = run_check(ctx)
    h.check_eq(res.returncode, 1, "check exit code for max_body: ${secret}")
    h.check(re.search(r"(?m)^%s:3:\d+: " % re.escape(CFG), res.stderr),
            "error should point at line 3, got %r" % res.stderr)


def case_var_default(ctx):
    """${VAR:-default}: the default when VAR is unset, VAR's value when it is set."""
    lines = base_lines(ctx)
    lines[2] = "max_body: ${SB_ITEST_UNSET_SIZE:-1KiB}"
    lines[5] = "    - ${%s:-%s}" % (OPT_ENV, DEFAULT_SECRET)
    write_lines(ctx, lines)
    env = ctx.env(**{OPT_ENV: None, "SB_ITEST_UNSET_SIZE": None})
    res = run_check(ctx, env=env, args=("-c", CFG))
    check_no_secret([res.stdout, res.stderr], "check output", (DEFAULT_SECRET,))
    h.check_eq(res.returncode, 0, "check exit code (stderr %r)" % res.stderr)

    srv = h.Server(ctx, "\n".join(lines) + "\n", env=env,
                   port=int(lines[0].rsplit(":", 1)[1]))
    srv.start()
    srv.post_ok({"event_type": "form_sent", "payload": {}}, secret=DEFAULT_SECRET)
    big = {"event_type": "form_sent", "payload": {"pad": "x" * 2000}}
    h.check_eq(srv.post(big, secret=DEFAULT_SECRET).status, 413, "status over the default 1KiB")
    h.check_eq(srv.stop(), 0, "exit code after SIGTERM")
    check_no_secret([srv.stderr(), srv.stdout()], "serve output", (DEFAULT_SECRET,))

    env[OPT_ENV] = h.SECRET
    srv.env = env
    srv.start()
    srv.post_ok({"event_type": "form_sent", "payload": {}}, secret=h.SECRET)
    h.check_eq(srv.post({"event_type": "x"}, secret=DEFAULT_SECRET).status, 401,
               "the default secret when the variable is set")


def case_serve_port_in_use(ctx):
    """serve exits 2 (runtime failure) when its port is taken, without leaking the secret."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        cfg = ctx.config(listen="127.0.0.1:%d" % holder.getsockname()[1])
        srv = ctx.server(cfg, start=False)
        srv.start(wait=False)
        rc = srv.wait_exit(10.0)
        h.check(rc is not None, "serve still running 10 s after failing to bind")
        h.check_eq(rc, 2, "serve exit code with the port in use (stderr %r)"
                   % h.tail(srv.stderr(), 5))
        check_no_secret([srv.stderr(), srv.stdout()], "serve output")
    finally:
        holder.close()


def case_serve_spool_unopenable(ctx):
    """serve exits 2 when the spool cannot be opened (its parent is a regular file)."""
    blocker = ctx.write("not-a-dir", "x")
    srv = ctx.server(ctx.config(spool={"path": os.path.join(blocker, "spool.db")}), start=False)
    srv.start(wait=False)
    rc = srv.wait_exit(10.0)
    h.check(rc is not None, "serve still running 10 s after failing to open its spool")
    h.check_eq(rc, 2, "serve exit code with an unopenable spool (stderr %r)"
               % h.tail(srv.stderr(), 5))


def case_sigterm_keeps_events(ctx):
    """SIGTERM: exit 0, and events answered 200 before it are listed afterwards.

    log_level debug on purpose: not even debug lines may carry the secret or
    a wrong bearer a client sent (often a typo of the real one).
    """
    srv = ctx.server(ctx.config(log_level="debug"))
    ids = [srv.post_ok(h.load_example(t)) for t in ["form_sent", "form_opened", "form_signed"]]
    h.check_eq(srv.post(h.load_example("form_sent"), secret=WRONG_SECRET).status, 401,
               "status with a wrong secret")
    h.check_eq(srv.stop(), 0, "serve exit code after SIGTERM")
    missing = set(ids) - h.listed_ids(ctx, srv.cfg_path)
    h.check(not missing, "events answered 200 before SIGTERM not listed: %r" % sorted(missing))
    check_no_secret([srv.stderr(), srv.stdout()], "serve output", (h.SECRET, WRONG_SECRET))


def case_log_levels(ctx):
    """log.level warn hides info lines; --log-level debug wins and shows the flow.

    The debug flow names rules and outputs, never a payload value.
    """
    folder = ctx.path("plugins")
    os.makedirs(folder)
    os.symlink(os.path.join(h.test_plugins_dir(), "testout.so"), os.path.join(folder, "testout.so"))
    cfg = ctx.config(log={"level": "warn"}, plugins={"dir": folder},
                     outputs={"rec": {"plugin": "testout", "path": ctx.path("rec.jsonl")}},
                     rules=[{"name": "calls", "send": ["rec"]}])
    srv = ctx.server(cfg)
    srv.post_ok(h.load_example("inbound_end_of_call"))
    h.check_eq(srv.stop(), 0, "exit code")
    h.check("level=info" not in srv.stderr(), "info lines at log.level warn:\n" + h.tail(srv.stderr()))

    srv = h.Server(ctx, cfg, name="debug")
    res = h.run_cli(ctx, ["serve", "-c", srv.cfg_path, "--log-level", "loud"])
    h.check_eq(res.returncode, 1, "serve --log-level loud exit code")
    h.check("--log-level needs error, warn, info or debug" in res.stderr, "message: " + res.stderr)
    proc = subprocess.Popen([h.binary(), "serve", "-c", srv.cfg_path, "--log-level", "debug"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(ctx.path("debug.log"), "wb"), env=ctx.env())
    try:
        event = h.load_example("inbound_end_of_call")
        h.wait_for("serve --log-level debug answers", lambda: _posted(srv.port, event))
        h.wait_for("the delivery logged at debug", lambda: "state=delivered" in
                   h.read_text(ctx.path("debug.log")))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    log = h.read_text(ctx.path("debug.log"))
    h.check('rule=calls output=rec msg="delivery planned"' in log, "the planned delivery:\n"
            + h.tail(log))
    for value in (event["payload"]["caller_phone_number"], event["payload"]["super_short_report"]):
        h.check(value not in log, "a payload value in the debug log")


def _posted(port, event):
    try:
        return h.post_event(port, event).status == 200
    except OSError:
        return False


def case_sigint_exits_zero(ctx):
    """SIGINT (Ctrl-C in a terminal) stops serve like SIGTERM."""
    srv = ctx.server()
    srv.post_ok(h.load_example("contact_exists"))
    srv.proc.send_signal(signal.SIGINT)
    rc = srv.wait_exit(10.0)
    h.check(rc is not None, "serve still running 10 s after SIGINT")
    h.check_eq(rc, 0, "serve exit code after SIGINT")


def case_events_limit(ctx):
    """events --limit N lists the newest N; the default shows them all when fewer than 50."""
    srv = ctx.server()
    ids = []
    for n in range(5):
        ids.append(srv.post_ok({"event_type": "contact_updated", "payload": {"n": n}}))
        time.sleep(0.005)  # ids order by millisecond: keep "newest" unambiguous
    res = h.run_cli(ctx, ["events", "-c", srv.cfg_path])
    h.check_eq(res.returncode, 0, "events exit code")
    h.check_eq(sorted(r["id"] for r in h.parse_events(res.stdout)), sorted(ids),
               "events with the default limit")
    rows = h.list_events(ctx, srv.cfg_path, limit=2)
    h.check_eq(len(rows), 2, "rows with --limit 2")
    h.check_eq(sorted(r["id"] for r in rows), sorted(ids[-2:]), "--limit 2 shows the newest two")


CASES = [
    ("version prints 'switchboard X.Y.Z' and exits 0", case_version),
    ("check accepts a good config: exit 0, ok", case_check_ok),
    ("check reads ./switchboard.yaml by default", case_check_default_path),
    ("check on a missing config file exits 1", case_check_missing_file),
] + [
    ("check: %s -> file:line:col, exit 1" % spec[0], make_error_case(spec))
    for spec in ERROR_CASES
] + [
    ("check: a ${VAR} value in the wrong field is not echoed in the error",
     case_expanded_value_not_echoed),
    ("${VAR:-default} uses the default only when VAR is unset", case_var_default),
    ("serve on a port in use exits 2", case_serve_port_in_use),
    ("serve with an unopenable spool exits 2", case_serve_spool_unopenable),
    ("SIGTERM exits 0, events kept, no secret in serve output", case_sigterm_keeps_events),
    ("SIGINT exits 0", case_sigint_exits_zero),
    ("log.level and --log-level; debug shows the flow without payload values",
     case_log_levels),
    ("events --limit", case_events_limit),
]

if __name__ == "__main__":
    h.main(CASES)
