# SPDX-License-Identifier: MIT
"""What `make install` puts on a machine (SPEC §9), checked in a DESTDIR.

`make -C build install DESTDIR=<tmp>` must install the binary, the six
plugins, the plugin header, switchboard.pc, the man pages switchboard(1)
and switchboard.yaml(5), the systemd unit and the example config. The
pages must render with `man -l` without a warning (and pass `mandoc -T
lint` when mandoc is there), and must document what the code has: every
command and option of the usage, every config key, rule operator,
template form and plugin key found in the sources. The unit must pass
`systemd-analyze verify` where systemd-analyze exists, and the example
config must pass the installed binary's `check`. Last, `serve` must tell
a service manager on $NOTIFY_SOCKET when it is ready, reloading and
stopping (Type=notify).
"""

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

INSTALL_TIMEOUT = 60.0
TOOL_TIMEOUT = 30.0
NOTIFY_TIMEOUT = 10.0
PLUGINS = ["example", "file", "http", "slack", "sms", "smtp"]
MAN_ENV = {"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "MANWIDTH": "80", "MANPAGER": "cat",
           "PAGER": "cat"}
SECRET_FILE = "webhook-secret"
INSTALL_SECRET = "sbitest-install-Rw7m2-secret"


def source(*parts):
    with open(os.path.join(h.REPO, *parts), encoding="utf-8") as f:
        return f.read()


def build_dir():
    """The configured build tree the binary under test comes from (build/ by default)."""
    guess = os.path.dirname(os.path.dirname(os.path.abspath(h.binary())))
    if os.path.exists(os.path.join(guess, "Makefile")):
        return guess
    return os.path.join(h.REPO, "build")


def run(ctx, args, env=None, timeout=TOOL_TIMEOUT, cwd=None):
    """Run a command to completion; its CompletedProcess (text)."""
    try:
        return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", env=env or ctx.env(), cwd=cwd or ctx.tmp,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        h.fail("%s did not finish within %.0fs" % (" ".join(args), timeout))


class Installed:
    """An installed tree in the case's DESTDIR, and where its parts are."""

    def __init__(self, ctx):
        h.check(shutil.which("make") is not None, "make is not installed")
        self.ctx = ctx
        self.dest = ctx.path("dest")
        self.install()
        pcs = self.find("switchboard.pc")
        h.check_eq(len(pcs), 1, "switchboard.pc files installed under %s" % self.dest)
        h.check_eq(os.path.basename(os.path.dirname(pcs[0])), "pkgconfig",
                   "folder of switchboard.pc")
        self.libdir = os.path.dirname(os.path.dirname(pcs[0]))
        self.prefix = os.path.dirname(self.libdir)
        self.bin = os.path.join(self.prefix, "bin", "switchboard")
        self.plugins = os.path.join(self.libdir, "switchboard", "plugins")
        self.etc = os.path.join(self.prefix, "etc", "switchboard")
        self.man1 = os.path.join(self.prefix, "share", "man", "man1", "switchboard.1")
        self.man5 = os.path.join(self.prefix, "share", "man", "man5", "switchboard.yaml.5")
        units = self.find("switchboard.service")
        h.check_eq(len(units), 1, "switchboard.service files installed under %s" % self.dest)
        self.unit = units[0]
        h.check(self.unit.endswith(os.path.join("systemd", "system", "switchboard.service")),
                "the unit is not in a systemd/system folder: %s" % self.unit)

    def install(self):
        res = run(self.ctx, ["make", "-s", "-C", build_dir(), "install", "DESTDIR=" + self.dest],
                  timeout=INSTALL_TIMEOUT)
        h.check(res.returncode == 0, "make install exited %d:\n%s"
                % (res.returncode, h.tail(res.stdout + res.stderr, 30)))

    def find(self, name):
        found = []
        for root, _, files in os.walk(self.dest):
            found += [os.path.join(root, f) for f in files if f == name]
        return found

    def real(self, path):
        """The path the installed file will have on the machine (without DESTDIR)."""
        return path[len(self.dest):]


def unit_settings(text):
    """The unit's settings as {key: [values]} (comments and sections left out)."""
    settings = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def seconds(text):
    """A systemd time span such as 40s, 1min 30s or 90 as seconds."""
    total = 0.0
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "ms": 0.001}
    for number, unit in re.findall(r"(\d+)\s*([a-z]*)", text):
        h.check(unit in units, "unknown time unit %r in %r" % (unit, text))
        total += int(number) * units[unit]
    return total


# --------------------------------------------------------------------------
# What the pages must document, read from the sources
# --------------------------------------------------------------------------

def config_keys():
    """Every key core/config.c and core/rules.c accept, outputs' own keys included."""
    config = source("core", "config.c")
    rules = source("core", "rules.c")
    keys = set(re.findall(r'\{"(\w+)", cfg_apply_', config))
    tables = r"static const char \*const (?:keys|rules_rule_keys)\[\] = \{([^}]*)\}"
    for table in re.findall(tables, config + rules):
        keys |= set(re.findall(r'"(\w+)"', table))
    keys |= set(re.findall(r'skip\[[^\]]*\] = \{([^}]*)\}', config)[0].replace('"', " ")
                .replace(",", " ").split())
    keys |= {"include", "to", "when"}
    h.check(len(keys) > 25, "too few config keys found in the sources: %s" % sorted(keys))
    return keys


def rule_words():
    """The operators and combinators core/rules.c compiles."""
    rules = source("core", "rules.c")
    ops = re.findall(r'\[RULES_\w+\] = "(\w+)"', rules)
    words = re.findall(r'rules_cond_words\[\] = \{([^}]*)\}', rules)
    combinators = re.findall(r'"(\w+)"', words[0]) if words else []
    h.check(len(ops) >= 14 and len(combinators) == 5,
            "operators %s, combinators %s: not found in core/rules.c" % (ops, combinators))
    return ops, combinators


def template_builtins():
    return re.findall(r'\{"(\w+)", TPL_FROM_', source("core", "template.c"))


def plugin_keys(name):
    """Every key plugins/NAME/NAME.c reads, and its template fields."""
    text = source("plugins", name, name + ".c")
    keys = set(re.findall(r'\{"(\w+)", (?:SLACK|HTTP)_(?:STRING|PATH|BOOLEAN|DURATION)', text))
    keys |= set(re.findall(r'\{"(\w+)", (?:SMTP|SMS)_KEY_', text))
    keys |= set(re.findall(r'config_\w+\(\s*\w+,\s*"(\w+)"', text))
    keys |= set(re.findall(r'\{"(\w+)",\s*(?:NULL|"[^"]*"),\s*SB_PLUGIN_ESCAPE_', text))
    h.check(keys, "no keys found in plugins/%s/%s.c" % (name, name))
    return keys


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------

def render(ctx, page):
    """`man -l PAGE` as a reader sees it at 80 columns; fails on any warning."""
    h.check(shutil.which("man") is not None, "man is not installed (apt-get install man-db)")
    res = run(ctx, ["man", "--warnings", "-l", page], env=ctx.env(**MAN_ENV))
    h.check_eq(res.returncode, 0, "man -l %s exit code (stderr %r)" % (page, res.stderr))
    h.check_eq(res.stderr.strip(), "", "warnings from man -l %s" % os.path.basename(page))
    h.check(len(res.stdout.splitlines()) > 50, "man -l %s rendered almost nothing:\n%s"
            % (page, res.stdout))
    wide = [line for line in res.stdout.splitlines() if len(line) > 80]
    h.check(not wide, "%s renders lines over 80 columns:\n%s"
            % (os.path.basename(page), "\n".join(wide[:5])))
    # Words groff hyphenated across a line end are joined again.
    text = re.sub("\u2010\n\\s*", "", res.stdout)
    return text.replace("\u2010", "-").replace("\u2212", "-")


def lint(ctx, page):
    """`mandoc -T lint` at warning level and above, when mandoc is there."""
    if shutil.which("mandoc") is None:
        ctx.note("mandoc is not installed; lint skipped (apt-get install mandoc)")
        return
    res = run(ctx, ["mandoc", "-T", "lint", "-W", "warning", page])
    h.check(res.returncode == 0 and not (res.stdout + res.stderr).strip(),
            "mandoc -T lint %s:\n%s" % (os.path.basename(page), res.stdout + res.stderr))


def section(text, title, next_title):
    """The text of a page's section, from its heading to the next one."""
    start = text.find("\n%s\n" % title)
    end = text.find("\n%s\n" % next_title, start + 1)
    h.check(start >= 0 and end > start,
            "no section %r (before %r) in the page" % (title, next_title))
    return text[start:end]


def subsections(text):
    """{name: text} for the page's subsections (a heading indented 3 spaces)."""
    heads = list(re.finditer(r"(?m)^   (\S.*)$", text))
    out = {}
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        out[m.group(1).strip()] = text[m.end():end]
    return out


def has_word(text, word):
    return re.search(r"(?<![\w-])%s(?![\w])" % re.escape(word), text) is not None


def has_tag(text, word):
    """`word` starts a tagged paragraph (an item of a list), alone or in a list of names."""
    return re.search(r"(?m)^ {5,}(?:[\w.]+, )*%s\b" % re.escape(word), text) is not None


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------

def case_installed_tree(ctx):
    inst = Installed(ctx)
    h.check(os.access(inst.bin, os.X_OK), "no executable bin/switchboard under %s" % inst.prefix)
    for name in PLUGINS:
        so = os.path.join(inst.plugins, name + ".so")
        h.check(os.path.isfile(so), "plugin %s.so not installed in %s" % (name, inst.plugins))
    for path in (os.path.join(inst.prefix, "include", "switchboard", "plugin.h"),
                 inst.man1, inst.man5, os.path.join(inst.etc, "switchboard.yaml.example")):
        h.check(os.path.isfile(path), "%s not installed" % inst.real(path))
    h.check(not os.path.exists(os.path.join(inst.etc, "switchboard.yaml")),
            "make install created a real switchboard.yaml")
    for page in (inst.man1, inst.man5):
        h.check_eq(oct(stat.S_IMODE(os.stat(page).st_mode)), oct(0o644), "mode of %s" % page)

    # A second install must leave an operator's config alone.
    real_cfg = os.path.join(inst.etc, "switchboard.yaml")
    with open(real_cfg, "w", encoding="utf-8") as f:
        f.write("# the operator's own\n")
    inst.install()
    h.check_eq(h.read_text(real_cfg), "# the operator's own\n",
               "switchboard.yaml after a second make install")


def case_unit_file(ctx):
    inst = Installed(ctx)
    text = h.read_text(inst.unit)
    h.check(not re.search(r"@\w+@", text), "unsubstituted @...@ left in the unit:\n%s" % text)
    s = unit_settings(text)

    def one(key):
        h.check(key in s, "the unit has no %s=" % key)
        return s[key][-1]

    bindir = os.path.dirname(inst.real(inst.bin))
    etc = inst.real(inst.etc)
    h.check_eq(one("ExecStart"), "%s/switchboard serve -c %s/switchboard.yaml" % (bindir, etc),
               "ExecStart")
    h.check_eq(one("Type"), "notify", "Type")
    h.check_eq(one("ExecReload"), "/bin/kill -HUP $MAINPID", "ExecReload")
    h.check_eq(one("KillSignal"), "SIGTERM", "KillSignal")
    h.check_eq(one("Restart"), "on-failure", "Restart")
    for key, want in (("DynamicUser", "yes"), ("StateDirectory", "switchboard"),
                      ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                      ("PrivateTmp", "yes"), ("NoNewPrivileges", "yes"),
                      ("CapabilityBoundingSet", "")):
        h.check_eq(one(key), want, key)
    h.check("@system-service" in s.get("SystemCallFilter", []),
            "SystemCallFilter=@system-service missing: %r" % s.get("SystemCallFilter"))
    families = set(one("RestrictAddressFamilies").split())
    h.check(families <= {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"} and
            {"AF_UNIX", "AF_INET", "AF_INET6"} <= families,
            "RestrictAddressFamilies=%s" % " ".join(sorted(families)))
    # Stop waits up to 15 s for requests, then up to 10 s for deliveries.
    h.check(seconds(one("TimeoutStopSec")) > 25, "TimeoutStopSec=%s is not above 25 s"
            % one("TimeoutStopSec"))
    h.check("man:switchboard(1)" in one("Documentation"), "Documentation= names no man page")
    h.check_eq(one("LoadCredential"), "%s:%s/%s" % (SECRET_FILE, etc, SECRET_FILE),
               "LoadCredential (what the example config reads)")


def case_unit_verifies(ctx):
    inst = Installed(ctx)
    tool = shutil.which("systemd-analyze")
    if tool is None:
        ctx.note("systemd-analyze is not installed; the unit was not verified")
        return
    # verify wants ExecStart's binary where the unit says: point it into DESTDIR.
    unit_dir = ctx.path("units")
    os.makedirs(unit_dir)
    unit = os.path.join(unit_dir, "switchboard.service")
    with open(unit, "w", encoding="utf-8") as f:
        f.write(h.read_text(inst.unit).replace("ExecStart=" + inst.real(inst.bin),
                                               "ExecStart=" + inst.bin))
    env = ctx.env(MANPATH=os.path.join(inst.prefix, "share", "man"), SYSTEMD_PAGER="cat",
                  SYSTEMD_COLORS="0")
    res = run(ctx, [tool, "verify", unit], env=env)
    h.check(res.returncode == 0 and not res.stderr.strip() and not res.stdout.strip(),
            "systemd-analyze verify (exit %d):\n%s" % (res.returncode, res.stdout + res.stderr))
    res = run(ctx, [tool, "security", "--offline=yes", unit], env=env)
    got = re.search(r"Overall exposure level for switchboard\.service: ([\d.]+)", res.stdout)
    if got is None:
        ctx.note("systemd-analyze security --offline is not supported here: %s"
                 % h.tail(res.stderr, 3))
        return
    h.check(float(got.group(1)) <= 2.0, "the unit's exposure level is %s, above 2.0:\n%s"
            % (got.group(1), "\n".join(ln for ln in res.stdout.splitlines() if "\u2717" in ln)))


def case_switchboard_1(ctx):
    inst = Installed(ctx)
    lint(ctx, inst.man1)
    text = render(ctx, inst.man1)
    res = run(ctx, [inst.bin, "--help"])
    h.check_eq(res.returncode, 0, "switchboard --help exit code")
    commands = re.findall(r"switchboard (\w+)", res.stdout)
    options = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", res.stdout))
    h.check(len(commands) >= 6 and len(options) >= 10,
            "usage lists too little: %s %s" % (commands, sorted(options)))
    synopsis = section(text, "SYNOPSIS", "DESCRIPTION")
    for cmd in commands:
        h.check(has_word(synopsis, cmd), "command %s missing from the SYNOPSIS" % cmd)
        h.check(has_tag(section(text, "DESCRIPTION", "OPTIONS"), cmd),
                "command %s is not described" % cmd)
    described = section(text, "OPTIONS", "WEBHOOK")
    for opt in sorted(options):
        h.check(has_tag(described, opt) or re.search(r"(?m)^ {5,}.*, %s\b" % re.escape(opt),
                                                      described),
                "option %s is not described under OPTIONS" % opt)
    for title in ("EXIT STATUS", "SIGNALS", "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO"):
        h.check("\n%s\n" % title in text, "no %s section" % title)
    for word in ("SIGTERM", "SIGHUP", "NOTIFY_SOCKET", "switchboard.yaml(5)"):
        h.check(word in text, "%s is not mentioned" % word)
    metrics = os.path.join(h.REPO, "core", "metrics.c")
    if os.path.exists(metrics):
        for name in sorted(set(re.findall(r'"(switchboard_\w+)"', source("core", "metrics.c")))):
            h.check(has_word(text, name), "metric %s is not documented" % name)


def case_switchboard_yaml_5(ctx):
    inst = Installed(ctx)
    lint(ctx, inst.man5)
    text = render(ctx, inst.man5)
    for key in sorted(config_keys()):
        h.check(has_word(text, key), "config key %s is not documented" % key)
    ops, combinators = rule_words()
    conditions = section(text, "CONDITIONS", "SEND ENTRIES")
    for word in ops + combinators:
        h.check(has_tag(conditions, word), "%s is not documented under CONDITIONS" % word)
    templates = section(text, "TEMPLATES", "PLUGINS")
    for form in ("{{path}}", "{{#path}}", "{{^path}}", "{{/path}}"):
        h.check(form in templates, "template form %s is not documented" % form)
    for name in template_builtins():
        h.check(has_word(templates, name), "template value %s is not documented" % name)
    subs = subsections(section(text, "PLUGINS", "FILES"))
    shared = next((body for title, body in subs.items() if title.startswith("Keys of")), "")
    for name in PLUGINS:
        h.check(name in subs, "plugin %s has no subsection (have %s)" % (name, sorted(subs)))
        for key in sorted(plugin_keys(name)):
            h.check(has_tag(subs[name], key) or (name != "file" and name != "example"
                                                 and has_tag(shared, key)),
                    "key %s of plugin %s is not documented" % (key, name))


def installed_config(ctx, inst):
    """The example installed as the real config, with plugins.dir set to the installed plugins."""
    example = h.read_text(os.path.join(inst.etc, "switchboard.yaml.example"))
    h.check("plugins:" not in re.sub(r"(?m)#.*$", "", example),
            "the example should leave plugins.dir at its default")
    path = os.path.join(inst.etc, "switchboard.yaml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(example + "\nplugins:\n  dir: %s\n" % inst.plugins)
    return path


def write_secret(folder):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, SECRET_FILE)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(INSTALL_SECRET + "\n")
    return path


def case_example_config_checks(ctx):
    inst = Installed(ctx)
    cfg = installed_config(ctx, inst)
    env = ctx.env(CREDENTIALS_DIRECTORY=None)

    res = run(ctx, [inst.bin, "check", "-c", cfg], env=env)
    h.check_eq(res.returncode, 1, "check without the secret file (stderr %r)" % res.stderr)
    h.check(SECRET_FILE in res.stderr, "the error should name %s: %r" % (SECRET_FILE, res.stderr))

    secret = write_secret(inst.etc)
    res = run(ctx, [inst.bin, "check", "-c", cfg], env=env)
    h.check_eq(res.returncode, 0, "check of the installed example (stderr %r)" % res.stderr)
    for want in (": ok", "1 secret set", "/var/lib/switchboard/spool.db", "outputs:   1"):
        h.check(want in res.stdout, "check output lacks %r:\n%s" % (want, res.stdout))
    res = run(ctx, [inst.bin, "test", "-c", cfg,
                    os.path.join(h.EXAMPLES, "inbound_end_of_call.json")], env=env)
    h.check_eq(res.returncode, 0, "test with the example (stderr %r)" % res.stderr)
    h.check("archive (file) from rule archive-everything" in res.stdout,
            "the example does not archive the event:\n%s" % res.stdout)

    # Under systemd the secret comes from $CREDENTIALS_DIRECTORY instead.
    os.unlink(secret)
    write_secret(ctx.path("credentials"))
    res = run(ctx, [inst.bin, "check", "-c", cfg],
              env=ctx.env(CREDENTIALS_DIRECTORY=ctx.path("credentials")))
    h.check_eq(res.returncode, 0, "check with $CREDENTIALS_DIRECTORY (stderr %r)" % res.stderr)
    h.check(INSTALL_SECRET not in res.stdout + res.stderr, "check printed the secret")


def notifications(srv, sock, want):
    """Datagrams from `sock` until one has the assignment `want`; all seen so far."""
    deadline = time.monotonic() + NOTIFY_TIMEOUT
    seen = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            h.fail("no %s from serve within %.0fs; got %r; stderr:\n%s"
                   % (want, NOTIFY_TIMEOUT, seen, h.tail(srv.stderr(), 10)))
        sock.settimeout(min(left, 0.5))
        try:
            msg = sock.recv(4096).decode("utf-8", "replace")
        except socket.timeout:
            # Nothing queued and nobody left to send it: fail now.
            h.check(srv.alive(), "serve exited (%s) before sending %s; got %r; stderr:\n%s"
                    % (srv.proc.returncode, want, seen, h.tail(srv.stderr(), 10)))
            continue
        seen.append(msg)
        if want in msg.split("\n"):
            return seen


def case_serve_notifies(ctx):
    path = ctx.path("notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        srv = h.Server(ctx, ctx.config(), env=ctx.env(NOTIFY_SOCKET=path)).start(wait=False)
        notifications(srv, sock, "READY=1")
        # READY=1 promises the listener is up: no waiting for it here.
        socket.create_connection(("127.0.0.1", srv.port), timeout=2.0).close()

        srv.proc.send_signal(signal.SIGHUP)
        seen = notifications(srv, sock, "READY=1")
        reloading = [m for m in seen if "RELOADING=1" in m.split("\n")]
        h.check(reloading and seen.index(reloading[0]) < len(seen) - 1,
                "SIGHUP should send RELOADING=1, then READY=1: %r" % seen)
        h.check(re.search(r"(?m)^MONOTONIC_USEC=\d+$", reloading[0]),
                "RELOADING=1 without MONOTONIC_USEC: %r" % reloading[0])

        srv.proc.send_signal(signal.SIGTERM)
        notifications(srv, sock, "STOPPING=1")
        h.check_eq(srv.wait_exit(h.STOP_TIMEOUT), 0, "serve exit code after SIGTERM")
    finally:
        sock.close()


CASES = [
    ("make install puts binary, plugins, header, .pc, man pages, unit, example config",
     case_installed_tree),
    ("the installed unit: paths, Type=notify, sandboxing, stop timeout", case_unit_file),
    ("systemd-analyze verify accepts the installed unit", case_unit_verifies),
    ("switchboard(1) renders cleanly and documents every command and option",
     case_switchboard_1),
    ("switchboard.yaml(5) renders cleanly and documents every key, operator, template form",
     case_switchboard_yaml_5),
    ("the installed example config passes the installed check", case_example_config_checks),
    ("serve tells $NOTIFY_SOCKET ready, reloading and stopping", case_serve_notifies),
]

if __name__ == "__main__":
    h.main(CASES)
