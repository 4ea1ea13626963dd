# SPDX-License-Identifier: MIT
"""The plugin loader as a user meets it (SPEC §8): `check`, `serve`, `test`.

An output may name a plugin file that is missing, built for another ABI,
not a plugin at all, too small a descriptor, or one that calls itself by
another name. Each must stop `check` and `serve` with exit code 1 and one
line naming the file and the `plugin:` entry's file:line:col, never a
crash; every such mistake is reported in the same run. A plugin's own
keys are checked too: a misspelt one is named even when the plugin fails
for another reason. `check` and `test` open, create and send nothing, and
no error quotes a secret.
"""

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

BROKEN = ["missing", "wrong_abi", "no_symbol", "small_desc", "bad_name"]

# What each broken plugin's error must say besides its path.
BROKEN_WHY = {
    "missing": r"cannot open|no such file",
    "wrong_abi": r"ABI version 2; this switchboard speaks 1",
    "no_symbol": r"switchboard_plugin",
    "small_desc": r"descriptor is \d+ bytes",
    "bad_name": r"calls itself \"good_name\"",
}

SMS_TOKEN = "sbitest-twilio-token-Hq4-do-not-leak"
SMTP_PASSWORD = "sbitest-smtp-pass-Wd9-do-not-leak"

# Signs of a crash or a memory error rather than a clean refusal.
CRASH_RE = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:|Segmentation|"
                      r"core dumped|Aborted|==\d+==|stack-buffer|heap-buffer")


def plugin_dir(ctx, names):
    """A plugins.dir holding copies of the named test plugins (and real ones by name)."""
    folder = ctx.path("plugins")
    os.makedirs(folder, exist_ok=True)
    for name in names:
        for src in (h.test_plugins_dir(), h.plugins_dir()):
            path = os.path.join(src, name + ".so")
            if os.path.exists(path):
                shutil.copy(path, os.path.join(folder, name + ".so"))
                break
        else:
            h.fail("no %s.so in %s or %s" % (name, h.test_plugins_dir(), h.plugins_dir()))
    return folder


def broken_config(ctx, folder, names):
    """YAML with one output per broken plugin name, and {name: (line, col)} of its value.

    Written by hand so the position of each `plugin:` value is known.
    """
    port = h.free_port()
    lines = [
        "listen: 127.0.0.1:%d" % port,
        "path: %s" % h.WEBHOOK_PATH,
        "auth:",
        "  bearer: [ \"${%s}\" ]" % h.SECRET_ENV,
        "spool: { path: var/spool.db }",
        "plugins: { dir: %s }" % folder,
        "outputs:",
    ]
    where = {}
    for name in names:
        lines.append("  out-%s:" % name.replace("_", "-"))
        lines.append("    plugin: %s" % name)
        where[name] = (len(lines), len("    plugin: ") + 1)
        lines.append("    retry: { initial: 50ms }")
    lines += ["rules:", "  - name: everything", "    send:"]
    lines += ["      - out-%s" % name.replace("_", "-") for name in names]
    return "\n".join(lines) + "\n", port, where


def check_clean_refusal(res, what):
    """Exit 1 by choice: no signal, no crash or sanitizer text."""
    h.check(res.returncode >= 0, "%s died of signal %d; stderr:\n%s"
            % (what, -res.returncode, h.tail(res.stderr)))
    h.check_eq(res.returncode, 1, "%s exit code (stderr %r)" % (what, res.stderr))
    h.check(not CRASH_RE.search(res.stderr), "%s: crash or sanitizer text:\n%s"
            % (what, h.tail(res.stderr, 40)))


def error_lines(stderr, cfg_name):
    """The stderr lines that report a config position."""
    prefix = re.compile(r"^(?:.*/)?%s:(\d+):(\d+): " % re.escape(cfg_name))
    return [ln for ln in stderr.splitlines() if prefix.match(ln)]


def check_broken_errors(stderr, cfg_name, folder, where, what):
    """One line per broken plugin, with its path, its position and why; nothing else."""
    lines = error_lines(stderr, cfg_name)
    for name, (line, col) in where.items():
        path = os.path.join(folder, name + ".so")
        mine = [ln for ln in lines if path in ln]
        h.check_eq(len(mine), 1, "%s: lines naming %s in:\n%s" % (what, path, stderr))
        m = re.match(r"^(?:.*/)?%s:(\d+):(\d+): " % re.escape(cfg_name), mine[0])
        h.check_eq(int(m.group(1)), line, "%s: line of the %s error %r" % (what, name, mine[0]))
        # The loader points at the value; the key's column would do too.
        h.check(int(m.group(2)) in (col, col - len("plugin: ")),
                "%s: column of the %s error %r; expected %d" % (what, name, mine[0], col))
        h.check(re.search(BROKEN_WHY[name], mine[0], re.IGNORECASE),
                "%s: the %s error does not say why (%s): %r"
                % (what, name, BROKEN_WHY[name], mine[0]))
    h.check_eq(len(lines), len(where), "%s: error lines in:\n%s" % (what, stderr))
    others = [ln for ln in stderr.splitlines()
              if ln not in lines and not re.match(r"^switchboard: \d+ errors$", ln)]
    h.check(not others, "%s: unexpected stderr lines %r" % (what, others))
    if len(where) > 1:
        h.check("switchboard: %d errors" % len(where) in stderr,
                "%s: no error count line in:\n%s" % (what, stderr))


def port_closed(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return False
    except OSError:
        return True


def case_check_reports_every_broken_plugin(ctx):
    folder = plugin_dir(ctx, [n for n in BROKEN if n != "missing"])
    text, _, where = broken_config(ctx, folder, BROKEN)
    cfg_path = ctx.write_config(text)
    res = h.run_cli(ctx, ["check", "-c", cfg_path])
    check_clean_refusal(res, "check")
    check_broken_errors(res.stderr, "switchboard.yaml", folder, where, "check")
    h.check(not os.path.exists(ctx.path("var")), "check created the spool folder")


def case_serve_reports_every_broken_plugin(ctx):
    folder = plugin_dir(ctx, [n for n in BROKEN if n != "missing"])
    text, port, where = broken_config(ctx, folder, BROKEN)
    cfg_path = ctx.write_config(text)
    # serve must refuse to start: run_cli fails the case if it runs on.
    res = h.run_cli(ctx, ["serve", "-c", cfg_path])
    check_clean_refusal(res, "serve")
    check_broken_errors(res.stderr, "switchboard.yaml", folder, where, "serve")
    h.check(port_closed(port), "serve left something listening on %d" % port)
    h.check(not os.path.exists(ctx.path("var", "spool.db")),
            "serve created the spool although the config is invalid")


def case_each_broken_plugin_alone(ctx):
    folder = plugin_dir(ctx, [n for n in BROKEN if n != "missing"])
    for name in BROKEN:
        text, _, where = broken_config(ctx, folder, [name])
        cfg_path = ctx.write_config(text, name + ".yaml")
        for cmd in ("check", "serve"):
            res = h.run_cli(ctx, [cmd, "-c", cfg_path])
            what = "%s with %s" % (cmd, name)
            check_clean_refusal(res, what)
            check_broken_errors(res.stderr, name + ".yaml", folder, where, what)


def case_symlinked_plugin_loads(ctx):
    """A plugins.dir of symlinks (how packagers often lay it out) works, broken ones too."""
    folder = ctx.path("links")
    os.makedirs(folder)
    os.symlink(os.path.join(h.test_plugins_dir(), "testout.so"),
               os.path.join(folder, "testout.so"))
    os.symlink(os.path.join(h.test_plugins_dir(), "wrong_abi.so"),
               os.path.join(folder, "wrong_abi.so"))
    cfg = ctx.config(plugins={"dir": folder},
                     outputs={"rec": {"plugin": "testout", "path": ctx.path("rec.jsonl")}})
    res = h.run_cli(ctx, ["check", "-c", ctx.write_config(cfg, "good.yaml")])
    h.check_eq(res.returncode, 0, "check of a symlinked testout (stderr %r)" % res.stderr)
    text, _, where = broken_config(ctx, folder, ["wrong_abi"])
    res = h.run_cli(ctx, ["check", "-c", ctx.write_config(text, "bad.yaml")])
    check_clean_refusal(res, "check with a symlinked wrong_abi")
    check_broken_errors(res.stderr, "bad.yaml", folder, where, "symlinked wrong_abi")


def case_broken_plugins_under_valgrind(ctx):
    """check on every broken plugin: no invalid read (small_desc is 16 bytes), no leak."""
    if shutil.which("valgrind") is None:
        h.fail("valgrind is not installed (tools/install-deps.sh test installs it)")
    folder = plugin_dir(ctx, [n for n in BROKEN if n != "missing"])
    text, _, where = broken_config(ctx, folder, BROKEN)
    cfg_path = ctx.write_config(text)
    log_path = ctx.path("valgrind.log")
    cmd = ["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
           "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
           "--log-file=" + log_path, h.binary(), "check", "-c", cfg_path]
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                             errors="replace", cwd=ctx.tmp, env=ctx.env(), timeout=60)
    except subprocess.TimeoutExpired:
        h.fail("check under valgrind did not finish within 60s")
    report = h.read_text(log_path)
    h.check_eq(res.returncode, 1, "check under valgrind exit code; valgrind says:\n%s"
               % h.tail(report, 40))
    h.check(not re.search(r"Invalid (read|write)|definitely lost: [1-9]|uninitialised",
                          report), "valgrind found problems:\n%s" % h.tail(report, 40))
    check_broken_errors(res.stderr, "switchboard.yaml", folder, where, "check under valgrind")


def case_misspelt_key_named_when_create_fails(ctx):
    """A misspelt key is reported with its position and plugin, beside create()'s own error."""
    folder = plugin_dir(ctx, ["testout", "file"])
    port = h.free_port()
    text = """listen: 127.0.0.1:%d
auth:
  bearer: [ "${%s}" ]
spool: { path: var/spool.db }
plugins: { dir: %s }
outputs:
  rec:
    plugin: testout
    path: rec.jsonl
    mode: sometimes
    retires: 3
  arch:
    plugin: file
    path: %s
    fsnyc: always
""" % (port, h.SECRET_ENV, folder, ctx.path("regular", "below", "out.jsonl"))
    # A regular file where a folder should be: the file plugin cannot open its path.
    ctx.write("regular", "not a folder\n")
    cfg_path = ctx.write_config(text)
    for cmd in ("check", "serve"):
        res = h.run_cli(ctx, [cmd, "-c", cfg_path])
        check_clean_refusal(res, cmd)
        err = res.stderr
        # An unknown key is pointed at by its name, as the core's own are.
        h.check(re.search(r"switchboard\.yaml:11:5: .*\"retires\".*testout", err),
                "%s: misspelt retires not reported at line 11 with plugin testout:\n%s"
                % (cmd, err))
        h.check(re.search(r"switchboard\.yaml:10:11: .*mode", err),
                "%s: bad mode word not reported at 10:11:\n%s" % (cmd, err))
        h.check(re.search(r"switchboard\.yaml:15:5: .*\"fsnyc\".*file", err),
                "%s: misspelt fsnyc not reported at line 15 with plugin file:\n%s" % (cmd, err))
        # serve validates every output before it opens any, so a rejected
        # config never gets as far as the file plugin's open.
        h.check("cannot open" not in err,
                "%s: opened outputs of a config it rejects:\n%s" % (cmd, err))
        h.check(not CRASH_RE.search(err), "%s: crash text:\n%s" % (cmd, err))
        h.check(not os.path.exists(ctx.path("rec.jsonl")),
                "%s created testout's record file for an invalid config" % cmd)


def case_check_opens_nothing(ctx):
    """check with valid file and testout outputs: their paths (and folders) stay absent."""
    cfg = ctx.config(
        plugins={"dir": plugin_dir(ctx, ["testout", "file"])},
        outputs={
            "arch": {"plugin": "file", "path": ctx.path("out", "deep", "arch.jsonl")},
            "rec": {"plugin": "testout", "path": ctx.path("rec.jsonl")},
        },
        rules=[{"name": "all", "send": ["arch", "rec"]}])
    res = h.run_cli(ctx, ["check", "-c", ctx.write_config(cfg)])
    h.check_eq(res.returncode, 0, "check exit code (stderr %r)" % res.stderr)
    h.check("outputs:   2" in res.stdout or re.search(r"outputs:\s+2\b", res.stdout),
            "check summary should count 2 outputs:\n%s" % res.stdout)
    for path in ("out", "rec.jsonl", "var"):
        h.check(not os.path.exists(ctx.path(path)), "check created %s" % path)


class Gateway(http.server.ThreadingHTTPServer):
    """Counts every request; a dry run must send it none."""

    daemon_threads = True

    def __init__(self):
        self.hits = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(inner):
                self.hits.append(inner.path)
                inner.send_response(201)
                inner.send_header("Content-Length", "2")
                inner.end_headers()
                inner.wfile.write(b"{}")

            def log_message(inner, fmt, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    # ctx.servers cleanup and the timeout report call these.
    cfg_path = "(SMS gateway stand-in)"

    def stderr(self):
        return ""

    def kill(self):
        self.shutdown()
        self.server_close()


def case_dry_run_sends_nothing(ctx):
    gateway = Gateway()
    ctx.servers.append(gateway)
    cfg = ctx.config(
        plugins={"dir": plugin_dir(ctx, ["testout", "file", "sms"])},
        outputs={
            "arch": {"plugin": "file", "path": ctx.path("out", "arch.jsonl")},
            "rec": {"plugin": "testout", "path": ctx.path("rec.jsonl")},
            "text": {"plugin": "sms", "provider": "twilio", "account_sid": "AC0123",
                     "auth_token": SMS_TOKEN, "from": "+14155550100",
                     "to": ["+14155550199"],
                     "base_url": "http://127.0.0.1:%d" % gateway.server_address[1]},
        },
        rules=[{"name": "all", "send": [
            "arch", "rec",
            {"to": "text", "body": "call from {{payload.caller_phone_number}}"}]}])
    cfg_path = ctx.write_config(cfg)
    event = h.load_example("inbound_end_of_call")
    event_path = ctx.write("event.json", json.dumps(event))
    res = h.run_cli(ctx, ["test", "-c", cfg_path, event_path])
    h.check_eq(res.returncode, 0, "test exit code (stderr %r)" % res.stderr)
    out = res.stdout
    h.check(re.search(r"deliveries: 3", out), "test should list 3 deliveries:\n%s" % out)
    for want in ("arch (file)", "rec (testout)", "text (sms)",
                 "call from [payload.caller_phone_number]"):
        h.check(want in out, "test output lacks %r:\n%s" % (want, out))
    res_json = h.run_cli(ctx, ["test", "--json", "-c", cfg_path, event_path])
    h.check_eq(res_json.returncode, 0, "test --json exit code (stderr %r)" % res_json.stderr)
    doc = json.loads(res_json.stdout)
    h.check_eq(sorted(d["output"] for d in doc["deliveries"]), ["arch", "rec", "text"],
               "test --json outputs")
    phone = event["payload"]["caller_phone_number"]
    for text in (out, res.stderr, res_json.stdout, res_json.stderr):
        h.check(phone not in text and SMS_TOKEN not in text,
                "test output shows the phone number or the token")
    h.check_eq(gateway.hits, [], "requests the SMS gateway got from a dry run")
    for path in ("out", "rec.jsonl", "var"):
        h.check(not os.path.exists(ctx.path(path)), "test created %s" % path)


def case_errors_never_quote_secrets(ctx):
    """Bad sms and smtp outputs: every error names the key, none shows its secret."""
    folder = plugin_dir(ctx, ["sms", "smtp"])
    cfg = ctx.config(
        plugins={"dir": folder},
        outputs={
            "text": {"plugin": "sms", "provider": "twilio", "account_sid": "AC0123",
                     "auth_token": SMS_TOKEN, "from": SMS_TOKEN,
                     "to": [SMS_TOKEN], "base_url": SMS_TOKEN, "auth_tokn": SMS_TOKEN},
            "mail": {"plugin": "smtp", "url": SMTP_PASSWORD, "username": "alerts",
                     "password": SMTP_PASSWORD, "from": SMTP_PASSWORD,
                     "to": [SMTP_PASSWORD], "starttls": SMTP_PASSWORD,
                     "pasword": SMTP_PASSWORD},
        })
    cfg_path = ctx.write_config(cfg)
    for cmd in ("check", "serve"):
        res = h.run_cli(ctx, [cmd, "-c", cfg_path])
        check_clean_refusal(res, cmd)
        lines = error_lines(res.stderr, "switchboard.yaml")
        h.check(len(lines) >= 4, "%s: expected several errors, got:\n%s" % (cmd, res.stderr))
        for key in ("auth_tokn", "pasword"):
            h.check(any(key in ln for ln in lines), "%s: misspelt %s not reported:\n%s"
                    % (cmd, key, res.stderr))
        for secret in (SMS_TOKEN, SMTP_PASSWORD, "sbitest-", "do-not-leak"):
            h.check(secret not in res.stderr + res.stdout,
                    "%s quoted a secret value:\n%s" % (cmd, res.stderr))


CASES = [
    ("check: missing, wrong_abi, no_symbol, small_desc, bad_name all reported at once",
     case_check_reports_every_broken_plugin),
    ("serve: the same five refused in one run, exit 1, nothing listening",
     case_serve_reports_every_broken_plugin),
    ("each broken plugin alone: check and serve exit 1 with one line naming it",
     case_each_broken_plugin_alone),
    ("plugins.dir of symlinks: a good plugin loads, a broken one is refused",
     case_symlinked_plugin_loads),
    ("check on broken plugins under valgrind: no invalid access, no leak",
     case_broken_plugins_under_valgrind),
    ("a misspelt plugin key is named with file:line:col even when create() fails",
     case_misspelt_key_named_when_create_fails),
    ("check creates no output file, folder or spool", case_check_opens_nothing),
    ("test (dry run) with plugin outputs lists deliveries and sends nothing",
     case_dry_run_sends_nothing),
    ("plugin config errors never quote a secret", case_errors_never_quote_secrets),
]

if __name__ == "__main__":
    h.main(CASES)
