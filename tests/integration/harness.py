# SPDX-License-Identifier: MIT
"""Shared helpers for switchboard's black-box integration tests.

Every test file starts the real binary on 127.0.0.1 with its own config in its
own temporary directory, talks to it over HTTP(S), and reports one TAP-ish line
per case: `ok - NAME` or `not ok - NAME`, followed by `# ` diagnostics. A file
exits 1 when any case failed, so a runner only has to look at exit codes.

Everything here is bounded in time: a wedged server must fail a case, never
hang the suite. Python 3 standard library only, so CI needs nothing extra.
"""

import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(REPO, "examples")
DATA = os.path.join(REPO, "tests", "data")

# Distinctive, so a grep over any output finds a leak without false positives.
SECRET = "sbitest-Zq8v3Kp0-do-not-leak"
SECRET_ENV = "SB_ITEST_SECRET"
WEBHOOK_PATH = "/yousquared/webhook"

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 15.0
HTTP_TIMEOUT = 10.0
CASE_TIMEOUT = 60.0

# Crockford base32 (no I, L, O, U); 26 characters like a ULID.
ID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$", re.IGNORECASE)
RFC3339_MS_UTC_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


class CaseFailure(Exception):
    """A test expectation did not hold; the message says what and why."""


class CaseTimeout(Exception):
    """A case ran past its time budget; raised from SIGALRM in the main thread."""


def fail(msg):
    """Stop the current case with a readable reason."""
    raise CaseFailure(msg)


def check(cond, msg):
    """Fail the case with msg unless cond holds."""
    if not cond:
        fail(msg)


def check_eq(got, want, what):
    """Fail with both values shown, because 'expected X, got Y' is what a reader needs."""
    if got != want:
        fail("%s: expected %r, got %r" % (what, want, got))


# --------------------------------------------------------------------------
# Locating the binary, ports, files
# --------------------------------------------------------------------------

def reexec_under_debian_python():
    """Start this test file again under /usr/bin/python3, if that is another python.

    Debian's Python packages (python3-aiosmtpd, python3-prometheus-client)
    are importable only by Debian's python3; a python3 earlier in PATH
    (pyenv, a venv) does not see them. Returns only when it cannot help.
    """
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3") \
            and not os.environ.get("SB_ITEST_REEXEC"):
        os.environ["SB_ITEST_REEXEC"] = "1"
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)


def binary():
    """The switchboard binary under test: $SWITCHBOARD_BIN, else the build tree's."""
    return os.environ.get("SWITCHBOARD_BIN") or os.path.join(REPO, "build", "core", "switchboard")


def plugins_dir():
    """The built plugins: $SWITCHBOARD_PLUGINS_DIR, else the build tree's."""
    return os.environ.get("SWITCHBOARD_PLUGINS_DIR") or os.path.join(REPO, "build", "plugins", ".libs")


def test_plugins_dir():
    """Plugins built only for tests: $SWITCHBOARD_TEST_PLUGINS_DIR, else the build tree's."""
    return os.environ.get("SWITCHBOARD_TEST_PLUGINS_DIR") or os.path.join(
        REPO, "build", "tests", "plugins", ".libs")


def free_port():
    """A loopback port nobody listens on right now.

    The kernel picks it, so parallel runs do not collide; the small race
    between closing it here and the server binding it is acceptable in tests.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_text(path):
    """Whole file as text; empty when it does not exist (a server that never wrote)."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def tail(text, lines=20):
    """Last lines of text, for diagnostics that stay short."""
    return "\n".join(text.splitlines()[-lines:])


def load_example(event_type):
    """The sample event shipped in examples/, as a dict."""
    with open(os.path.join(EXAMPLES, event_type + ".json"), encoding="utf-8") as f:
        return json.load(f)


def example_types():
    """Event types that have a sample in examples/, sorted."""
    return sorted(n[:-5] for n in os.listdir(EXAMPLES) if n.endswith(".json"))


def yaml_scalar(value):
    """A YAML scalar for value: JSON strings are valid YAML double-quoted scalars."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))


def to_yaml(obj, indent=0):
    """Block-style YAML for nested dicts/lists of scalars.

    Tests describe configs as dicts so each can tweak one key; the output
    keeps one key per line so error line numbers stay predictable.
    """
    pad = " " * indent
    out = []
    if isinstance(obj, dict):
        for key, val in obj.items():
            if isinstance(val, (dict, list)) and val:
                out.append("%s%s:" % (pad, key))
                out.append(to_yaml(val, indent + 2))
            else:
                out.append("%s%s: %s" % (pad, key, yaml_scalar(val)))
    else:
        for val in obj:
            if isinstance(val, (dict, list)) and val:
                out.append("%s-" % pad)
                out.append(to_yaml(val, indent + 2))
            else:
                out.append("%s- %s" % (pad, yaml_scalar(val)))
    return "\n".join(out)


# --------------------------------------------------------------------------
# HTTP clients
# --------------------------------------------------------------------------

class Reply:
    """One HTTP answer: status, headers (lower-cased names) and raw body."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        """Body parsed as JSON, or a case failure that shows the body."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            fail("body is not JSON (status %d): %r" % (self.status, self.body[:200]))

    def __repr__(self):
        return "Reply(%d, %r)" % (self.status, self.body[:200])


def unverified_tls_context():
    """TLS context for the tests' self-signed certificates."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def request(port, method="POST", path=WEBHOOK_PATH, body=None, secret=SECRET, headers=None,
            tls=False, timeout=HTTP_TIMEOUT):
    """Send one request on a fresh connection and return its Reply.

    body may be a dict (sent as JSON), str or bytes. secret=None sends no
    Authorization header; headers override anything set here.
    """
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    hdrs = {"Content-Type": "application/json"}
    if secret is not None:
        hdrs["Authorization"] = "Bearer " + secret
    hdrs.update(headers or {})
    if tls:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                           context=unverified_tls_context())
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        names = {k.lower(): v for k, v in resp.getheaders()}
        return Reply(resp.status, names, data)
    finally:
        conn.close()


def post_event(port, event, **kw):
    """POST an event and return its Reply."""
    return request(port, "POST", body=event, **kw)


def post_ok(port, event, **kw):
    """POST an event that must be accepted; return the id the server gave it."""
    reply = post_event(port, event, **kw)
    check(reply.status == 200, "POST expected 200, got %r" % reply)
    doc = reply.json()
    check(isinstance(doc, dict) and isinstance(doc.get("id"), str),
          "200 body must be {\"id\": ...}, got %r" % reply.body)
    check(ID_RE.match(doc["id"]), "id %r is not a 26-char Crockford base32 id" % doc["id"])
    return doc["id"]


def raw_connect(port, timeout=5.0):
    """A plain TCP socket to the server, for requests http.client cannot shape."""
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def read_until_closed(sock, deadline):
    """Read until the peer closes or deadline passes.

    Returns (data, closed). A reset counts as closed: the server cut us off.
    """
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, False
        sock.settimeout(min(left, 1.0))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return data, True
        if not chunk:
            return data, True
        data += chunk


def read_status_line(sock, timeout=5.0):
    """Read until the end of the response head; return (status or None, head bytes)."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\r\n\r\n" not in data and time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    return (int(m.group(1)) if m else None), data


# --------------------------------------------------------------------------
# The server under test
# --------------------------------------------------------------------------

class Server:
    """One `switchboard serve` process with its config, logs and ports.

    stderr goes to a file rather than a pipe: a pipe nobody drains would
    block a chatty server, and the file outlives the process for checks.
    """

    def __init__(self, ctx, config, env=None, name="server", port=None):
        """config is a dict, or raw YAML text whose ingress port must then be given."""
        self.ctx = ctx
        self.cfg_path = ctx.write_config(config, name + ".yaml")
        if isinstance(config, str):
            config = {}
        self.port = port or int(config["listen"].rsplit(":", 1)[1])
        admin = config.get("admin", {}).get("listen")
        self.admin_port = int(admin.rsplit(":", 1)[1]) if admin else None
        self.env = env if env is not None else ctx.env()
        self.stderr_path = os.path.join(ctx.tmp, name + ".stderr")
        self.stdout_path = os.path.join(ctx.tmp, name + ".stdout")
        self.proc = None
        self.tls = "tls" in config

    def start(self, wait=True, preexec_fn=None):
        """Start serve; with wait, return only once the listener accepts connections."""
        err = open(self.stderr_path, "ab")
        out = open(self.stdout_path, "ab")
        try:
            self.proc = subprocess.Popen([binary(), "serve", "-c", self.cfg_path],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         cwd=self.ctx.tmp, env=self.env,
                                         preexec_fn=preexec_fn)
        finally:
            err.close()
            out.close()
        self.ctx.servers.append(self)
        if wait:
            self.wait_ready()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def stderr(self):
        """Everything the server wrote to stderr so far."""
        return read_text(self.stderr_path)

    def stdout(self):
        """Everything the server wrote to stdout so far."""
        return read_text(self.stdout_path)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=START_TIMEOUT):
        """Wait until the ingress (and admin) port accepts TCP connections.

        Fails early, with the stderr tail, when the process exits instead.
        """
        ports = [self.port] + ([self.admin_port] if self.admin_port else [])
        deadline = time.monotonic() + timeout
        for port in ports:
            while True:
                if self.proc.poll() is not None:
                    fail("serve exited with %d before listening on %d; stderr:\n%s"
                         % (self.proc.returncode, port, tail(self.stderr())))
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    fail("serve not listening on %d after %.0fs; stderr:\n%s"
                         % (port, timeout, tail(self.stderr())))
                time.sleep(0.05)

    def wait_exit(self, timeout):
        """Exit code once the process ends, or None if it is still running at timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=STOP_TIMEOUT):
        """SIGTERM and wait; a server that ignores it is killed and the case fails."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        if rc is None:
            self.kill()
            fail("serve did not exit within %.0fs of SIGTERM; stderr:\n%s"
                 % (timeout, tail(self.stderr())))
        return rc

    def kill(self):
        """SIGKILL and reap: the crash tests' power cut, and the cleanup of last resort."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)

    def post(self, event, **kw):
        """POST an event to this server."""
        kw.setdefault("tls", self.tls)
        return post_event(self.port, event, **kw)

    def post_ok(self, event, **kw):
        """POST an event that must be accepted; return its id."""
        kw.setdefault("tls", self.tls)
        return post_ok(self.port, event, **kw)

    def admin(self, path, timeout=HTTP_TIMEOUT):
        """GET an admin path."""
        check(self.admin_port is not None, "this server has no admin listener")
        return request(self.admin_port, "GET", path=path, secret=None, timeout=timeout)


def limit_file_size(pid, nbytes):
    """Cap the size any file of process pid may grow to (RLIMIT_FSIZE).

    This is how the tests make the spool's disk "full": writes past nbytes
    fail with EFBIG (switchboard ignores SIGXFSZ). The hard limit stays
    unlimited so lift_file_size can undo it on the running process.
    """
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (nbytes, resource.RLIM_INFINITY))


def lift_file_size(pid):
    """Undo limit_file_size on the running process: the disk has room again."""
    resource.prlimit(pid, resource.RLIMIT_FSIZE,
                     (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


# --------------------------------------------------------------------------
# The CLI
# --------------------------------------------------------------------------

def run_cli(ctx, args, env=None, timeout=CLI_TIMEOUT, cwd=None):
    """Run `switchboard ARGS` to completion and return the CompletedProcess (text)."""
    try:
        return subprocess.run([binary()] + list(args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, errors="replace",
                              env=env if env is not None else ctx.env(),
                              cwd=cwd or ctx.tmp, timeout=timeout)
    except subprocess.TimeoutExpired:
        fail("switchboard %s did not finish within %.0fs" % (" ".join(args), timeout))


def parse_events(text):
    """Rows of `switchboard events` output as dicts (id, received_at, event_type, deliveries).

    Columns are separated by two or more spaces; the header row starts with ID.
    """
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = re.split(r"\s{2,}", line.strip())
        if parts[0] == "ID" or parts[0].startswith("ID "):
            continue
        if len(parts) < 4:
            parts = line.split()
        rows.append({
            "id": parts[0],
            "received_at": parts[1] if len(parts) > 1 else "",
            "event_type": parts[2] if len(parts) > 2 else "",
            "deliveries": " ".join(parts[3:]),
        })
    return rows


def list_events(ctx, cfg_path, limit=0, env=None):
    """Stored events per `switchboard events --limit N`; a failing command fails the case."""
    res = run_cli(ctx, ["events", "-c", cfg_path, "--limit", str(limit)], env=env)
    if res.returncode != 0:
        fail("switchboard events exited %d; stderr:\n%s" % (res.returncode, tail(res.stderr)))
    first = res.stdout.splitlines()[0] if res.stdout.strip() else ""
    check(first.split()[:4] == ["ID", "RECEIVED_AT", "EVENT_TYPE", "DELIVERIES"],
          "events header line expected 'ID RECEIVED_AT EVENT_TYPE DELIVERIES', got %r" % first)
    return parse_events(res.stdout)


def listed_ids(ctx, cfg_path, env=None):
    """The set of every stored event id (`events --limit 0`)."""
    return {row["id"] for row in list_events(ctx, cfg_path, limit=0, env=env)}


def events_json(ctx, cfg_path, *args, env=None):
    """Stored events per `switchboard events --json --limit 0 ARGS`: a list of dicts.

    Each has id, received_at, event_type and deliveries (id, output, rule,
    state, attempts, next_at, last_error; fields too with --fields).
    """
    res = run_cli(ctx, ["events", "-c", cfg_path, "--json", "--limit", "0"] + list(args),
                  env=env)
    if res.returncode != 0:
        fail("switchboard events --json exited %d; stderr:\n%s" % (res.returncode,
                                                                  tail(res.stderr)))
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def deliveries(ctx, cfg_path, *args, env=None):
    """Every stored delivery (events --json ARGS), each with its event's id as event_id."""
    out = []
    for ev in events_json(ctx, cfg_path, *args, env=env):
        for d in ev["deliveries"]:
            d = dict(d)
            d["event_id"] = ev["id"]
            out.append(d)
    return out


def wait_for(what, predicate, timeout=10.0, interval=0.05):
    """Poll predicate() until it returns something true and return that; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() >= deadline:
            fail("%s: not within %.1fs" % (what, timeout))
        time.sleep(interval)


def read_jsonl(path):
    """The JSON lines of `path` (an output file or a testout record); [] if it is missing.

    A last line without its newline (being written) is left out.
    """
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return []
    lines = data.split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]


# --------------------------------------------------------------------------
# Per-case context and the reporter
# --------------------------------------------------------------------------

class Context:
    """What one case owns: a temp dir, its servers, its notes. Cleaned up after the case."""

    def __init__(self, name):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="sb-itest-")
        self.servers = []
        self.notes = []

    def note(self, msg):
        """A diagnostic shown under the case's result line."""
        self.notes.append(str(msg))

    def env(self, **extra):
        """Environment for the binary: ours, the test secret, plus extra (None unsets)."""
        env = dict(os.environ)
        env[SECRET_ENV] = SECRET
        for key, val in extra.items():
            if val is None:
                env.pop(key, None)
            else:
                env[key] = val
        return env

    def path(self, *parts):
        """A path inside this case's temp dir."""
        return os.path.join(self.tmp, *parts)

    def write(self, name, text):
        """Write text to a file in the temp dir and return its path."""
        p = self.path(name)
        with open(p, "w", encoding="utf-8") as f:
            f.write(text)
        return p

    def write_config(self, config, name="switchboard.yaml"):
        """Write a config (dict or raw YAML text) and return its path."""
        text = config if isinstance(config, str) else to_yaml(config) + "\n"
        return self.write(name, text)

    def config(self, **overrides):
        """A minimal valid config for this case: loopback port, spool in the temp dir.

        Keyword overrides replace top-level keys; a value of None drops the key.
        """
        cfg = {
            "listen": "127.0.0.1:%d" % free_port(),
            "path": WEBHOOK_PATH,
            "auth": {"bearer": ["${%s}" % SECRET_ENV]},
            "spool": {"path": self.path("var", "spool.db")},
        }
        for key, val in overrides.items():
            if val is None:
                cfg.pop(key, None)
            else:
                cfg[key] = val
        return cfg

    def server(self, config=None, env=None, name="server", start=True):
        """A Server for config (default: self.config()), started and ready unless start=False."""
        srv = Server(self, config or self.config(), env=env, name=name)
        if start:
            srv.start()
        return srv

    def cleanup(self):
        """Kill what is still running and remove the temp dir (kept with SB_ITEST_KEEP=1)."""
        for srv in self.servers:
            try:
                srv.kill()
            except Exception:  # cleanup must not hide the case's own result
                pass
        if os.environ.get("SB_ITEST_KEEP"):
            self.note("kept temp dir %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.contextmanager
def time_limit(seconds):
    """Raise CaseTimeout in the main thread if the block runs longer than seconds."""
    def on_alarm(signum, frame):
        raise CaseTimeout("case exceeded its %.0fs budget" % seconds)

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def emit(line):
    """Print one report line now, so a killed run still shows what finished."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def emit_diag(text):
    for line in str(text).splitlines() or [""]:
        emit("#   " + line)


def run_case(name, fn, timeout):
    """Run one case; report it; return True when it passed."""
    ctx = Context(name)
    started = time.monotonic()
    passed = False
    detail = None
    try:
        with time_limit(timeout):
            fn(ctx)
        passed = True
    except CaseFailure as exc:
        detail = str(exc)
    except CaseTimeout as exc:
        detail = str(exc)
        for srv in ctx.servers:
            detail += "\n%s stderr tail:\n%s" % (srv.cfg_path, tail(srv.stderr(), 10))
    except Exception:  # an unexpected error is a failure with its traceback, not a crash
        detail = traceback.format_exc()
    finally:
        ctx.cleanup()
    emit("%s - %s" % ("ok" if passed else "not ok", name))
    if detail:
        emit_diag(detail)
    for msg in ctx.notes:
        emit_diag(msg)
    if os.environ.get("SB_ITEST_VERBOSE"):
        emit("#   (%.2fs)" % (time.monotonic() - started))
    return passed


def main(cases, timeout=CASE_TIMEOUT):
    """Run (name, fn) cases in order, print results, exit 1 if any failed.

    A missing binary fails every case with one clear reason rather than a
    traceback per case.
    """
    passed = failed = 0
    missing = not os.access(binary(), os.X_OK)
    for name, fn in cases:
        if missing:
            emit("not ok - %s" % name)
            emit_diag("switchboard binary not found at %s (build with `sh tools/build.sh` "
                      "or set SWITCHBOARD_BIN)" % binary())
            ok = False
        else:
            ok = run_case(name, fn, timeout)
        passed += ok
        failed += not ok
    emit("# %d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
