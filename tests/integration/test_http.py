# SPDX-License-Identifier: MIT
"""The http output against a receiver on 127.0.0.1 (SPEC §8, issue 5).

The receiver is test_slack's stand-in: an http.server in a thread that
records every request and answers from a script per path, over plain HTTP
or HTTPS with a certificate this file makes with openssl. Each case checks
what arrived (method, headers, the envelope body), verifies the Standard
Webhooks signature the way a receiver would, with nothing but hmac,
hashlib and base64, and checks the delivery state the router stored.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from test_slack import StandIn  # noqa: E402

# A path and a query that carry tokens, as a CRM's inbound URL often does.
TOKEN_PATH = "/hooks/in/sbitest-path-token-do-not-log"
HOOK = TOKEN_PATH + "?key=sbitest-query-key-do-not-log"
API_TOKEN = "sbitest-api-token-do-not-log"
API_TOKEN_ENV = "SB_ITEST_API_TOKEN"
# whsec_ and the base64 of 32 bytes, as the standard's libraries make them.
KEY = bytes(range(101, 133))
SIGNING_SECRET = "whsec_" + base64.b64encode(KEY).decode()
SECRETS = ["sbitest-path-token-do-not-log", "sbitest-query-key-do-not-log", API_TOKEN,
           SIGNING_SECRET, SIGNING_SECRET[len("whsec_"):]]
TOLERANCE_S = 5 * 60
DELIVERY_TIMEOUT = 20.0
FAST_RETRY = {"initial": "50ms", "max_delay": "200ms", "max_attempts": 6}


# --------------------------------------------------------------------------
# What a receiver does: verify a Standard Webhooks signature
# --------------------------------------------------------------------------

def verify(secret, headers, body, now=None):
    """True when headers carry a valid signature of body, per Standard Webhooks.

    The key is the base64 after "whsec_"; the signed content is
    "id.timestamp.body"; webhook-signature is a space-separated list of
    "v1,<base64 HMAC-SHA256>", any of which may match; the timestamp must be
    within 5 minutes of now.
    """
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures or not stamp.isdigit():
        return False
    now = time.time() if now is None else now
    if abs(now - int(stamp)) > TOLERANCE_S:
        return False
    key = secret[len("whsec_"):]
    # The standard's libraries take the key with or without its padding.
    key = base64.b64decode(key + "=" * (-len(key) % 4), validate=True)
    signed = msg_id.encode() + b"." + stamp.encode() + b"." + body
    want = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for entry in signatures.split(" "):
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig, want):
            return True
    return False


def check_signed(req, what="request"):
    """The request verifies, and only with the untampered body and a fresh timestamp."""
    headers = req["headers"]
    h.check(verify(SIGNING_SECRET, headers, req["body"]),
            "%s: the signature does not verify: %r" % (what, {
                k: v for k, v in headers.items() if k.startswith("webhook-")}))
    h.check(not verify(SIGNING_SECRET, headers, req["body"] + b" "),
            "%s: a tampered body still verifies" % what)
    h.check(not verify(SIGNING_SECRET, headers, req["body"],
                       now=int(headers["webhook-timestamp"]) + TOLERANCE_S + 60),
            "%s: a stale timestamp still verifies" % what)
    other = "whsec_" + base64.b64encode(bytes(32)).decode()
    h.check(not verify(other, headers, req["body"]), "%s: another key verifies" % what)


# --------------------------------------------------------------------------
# Configs and waiting
# --------------------------------------------------------------------------

def http_output(url, **keys):
    out = {"plugin": "http", "url": url, "retry": dict(FAST_RETRY)}
    out.update(keys)
    return out


def http_config(ctx, outputs):
    """A config where every test_alert goes to every output; debug logs, to catch leaks."""
    return ctx.config(plugins={"dir": h.plugins_dir()}, log_level="debug", outputs=outputs,
                      rules=[{"name": "alerts", "match": {"event_type": "test_alert"},
                              "send": list(outputs)}])


def alert(note="all quiet"):
    return {"event_type": "test_alert", "payload": {"note": note, "who": "Dr. Ruiz"}}


def env(ctx):
    """The environment of serve and the CLI: the API token a header takes from it."""
    return ctx.env(**{API_TOKEN_ENV: API_TOKEN})


def serve(ctx, outputs):
    return ctx.server(http_config(ctx, outputs), env=env(ctx))


def wait_settled(ctx, srv, event_id, count=1, timeout=DELIVERY_TIMEOUT):
    """The event's deliveries once `count` exist and none is pending."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = [d for d in h.deliveries(ctx, srv.cfg_path, env=env(ctx))
               if d["event_id"] == event_id]
        if len(got) >= count and all(d["state"] != "pending" for d in got):
            return got
        h.check(srv.alive(), "serve exited; stderr:\n%s" % h.tail(srv.stderr()))
        time.sleep(0.1)
    h.fail("deliveries still pending after %.0fs: %r\nserver stderr:\n%s"
           % (timeout, got, h.tail(srv.stderr())))


def shape(got):
    return [(d["state"], d["attempts"]) for d in got]


def check_quiet(text, what="serve's stderr"):
    """No token of the URL, header or signing secret in text."""
    for secret in SECRETS:
        h.check(secret not in text, "%s shows %r:\n%s" % (what, secret, h.tail(text)))


def run_one(ctx, script, signed=False, **keys):
    """serve with one http output to a receiver answering `script`; post one alert.

    Returns (server, event id, its delivery, the requests received).
    """
    receiver = StandIn(ctx, {HOOK: script})
    if signed:
        keys["signing_secret"] = SIGNING_SECRET
    srv = serve(ctx, {"hook": http_output(receiver.url(HOOK), **keys)})
    event_id = srv.post_ok(alert())
    got = wait_settled(ctx, srv, event_id)
    h.check_eq(len(got), 1, "deliveries stored")
    check_quiet(srv.stderr())
    return srv, event_id, got[0], receiver.server.seen(HOOK)


def make_cert(ctx, name):
    """A self-signed certificate for 127.0.0.1; returns (cert, key) paths."""
    cert, key = ctx.path(name + ".crt"), ctx.path(name + ".key")
    res = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                          "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                          "-addext", "subjectAltName=IP:127.0.0.1"],
                         capture_output=True, text=True, timeout=30)
    h.check_eq(res.returncode, 0, "openssl exit code (%s)" % res.stderr)
    return cert, key


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------

def case_envelope_and_headers(ctx):
    headers = {"Authorization": "Bearer ${%s}" % API_TOKEN_ENV,
               "X-Switchboard-Event": "{{event_type}}/{{event_id}} rule={{rule}}",
               "X-Received": "{{received_at}}"}
    srv, event_id, row, reqs = run_one(ctx, [(200, {}, b"")], headers=headers)
    h.check_eq((row["state"], row["attempts"]), ("delivered", 1), "state and attempts")
    h.check_eq(len(reqs), 1, "requests received")
    req = reqs[0]
    h.check_eq((req["method"], req["path"]), ("POST", HOOK), "method and path")
    got = req["headers"]
    h.check_eq(got.get("content-type"), "application/json", "Content-Type")
    h.check_eq(got.get("authorization"), "Bearer " + API_TOKEN, "the ${VAR} header")
    h.check_eq(got.get("x-switchboard-event"), "test_alert/%s rule=alerts" % event_id,
               "the templated header")
    h.check(not any(k.startswith("webhook-") for k in got),
            "unsigned output sends webhook-* headers: %r" % got)
    doc = json.loads(req["body"].decode("utf-8"))
    h.check_eq(sorted(doc), ["event_type", "id", "payload", "received_at", "rule"],
               "envelope keys")
    h.check_eq((doc["id"], doc["event_type"], doc["rule"], doc["payload"]),
               (event_id, "test_alert", "alerts", alert()["payload"]), "envelope values")
    h.check(h.RFC3339_MS_UTC_RE.match(doc["received_at"]), "received_at %r" % doc)
    h.check_eq(got.get("x-received"), doc["received_at"], "{{received_at}} in a header")
    h.check(b"\n" not in req["body"], "the envelope is one line")
    h.check(re.search(r"output=hook .*127\.0\.0\.1", srv.stderr()),
            "the log names the output and the host:\n" + h.tail(srv.stderr()))


def case_put_with_body_template(ctx):
    body = '{"note": "{{payload.note}}", "type": "{{event_type}}"}'
    headers = {"Content-Type": "application/vnd.crm+json"}
    receiver = StandIn(ctx, {HOOK: [(204, {}, b"")]})
    srv = serve(ctx, {"hook": http_output(receiver.url(HOOK), method="PUT", body=body,
                                          headers=headers)})
    event_id = srv.post_ok(alert('say "hi"\n\\ now'))
    got = wait_settled(ctx, srv, event_id)
    h.check_eq(shape(got), [("delivered", 1)], "state and attempts")
    reqs = receiver.server.seen(HOOK)
    h.check_eq(len(reqs), 1, "requests received")
    h.check_eq(reqs[0]["method"], "PUT", "method")
    h.check_eq(reqs[0]["headers"].get("content-type"), "application/vnd.crm+json",
               "the configured Content-Type replaces the default")
    h.check_eq(json.loads(reqs[0]["body"]), {"note": 'say "hi"\n\\ now', "type": "test_alert"},
               "the body template, payload values escaped for JSON")


def case_header_values_cannot_add_headers(ctx):
    """An event type holding CR LF lands in its header as spaces, never as a new header."""
    receiver = StandIn(ctx, {HOOK: [(200, {}, b"")]})
    cfg = http_config(ctx, {"hook": http_output(receiver.url(HOOK),
                                                headers={"X-Type": "<{{event_type}}>"})})
    cfg["rules"] = [{"name": "all", "send": ["hook"]}]
    srv = ctx.server(cfg, env=env(ctx))
    event_id = srv.post_ok({"event_type": "odd\r\nX-Injected: 1\n\tx", "payload": {}})
    h.check_eq(shape(wait_settled(ctx, srv, event_id)), [("delivered", 1)],
               "state and attempts")
    reqs = receiver.server.seen(HOOK)
    h.check_eq(len(reqs), 1, "requests received")
    h.check("x-injected" not in reqs[0]["headers"], "a header was injected: %r"
            % reqs[0]["headers"])
    h.check_eq(reqs[0]["headers"].get("x-type"), "<odd  X-Injected: 1 \tx>", "X-Type")


def case_signature_verifies(ctx):
    _, event_id, row, reqs = run_one(ctx, [(200, {}, b"")], signed=True)
    h.check_eq((row["state"], row["attempts"]), ("delivered", 1), "state and attempts")
    req = reqs[0]
    check_signed(req)
    stamp = int(req["headers"]["webhook-timestamp"])
    h.check(abs(time.time() - stamp) < 60, "webhook-timestamp %d is not now" % stamp)
    h.check(event_id in req["headers"]["webhook-id"],
            "webhook-id %r does not name the event" % req["headers"]["webhook-id"])
    sig = req["headers"]["webhook-signature"]
    h.check(re.match(r"^v1,[A-Za-z0-9+/]{43}=$", sig), "webhook-signature %r" % sig)


def case_retries_keep_the_webhook_id(ctx):
    """500 three times, then 200: four attempts, one webhook-id, each signed afresh."""
    script = [(500, {}, b"oops")] * 3 + [(200, {}, b"")]
    _, _, row, reqs = run_one(ctx, script, signed=True)
    h.check_eq((row["state"], row["attempts"]), ("delivered", 4), "state and attempts")
    h.check_eq(len(reqs), 4, "requests received")
    for i, req in enumerate(reqs):
        check_signed(req, "attempt %d" % (i + 1))
    ids = {req["headers"]["webhook-id"] for req in reqs}
    h.check_eq(len(ids), 1, "distinct webhook-ids across the attempts of one delivery")
    h.check_eq(len({req["body"] for req in reqs}), 1, "distinct bodies across attempts")


def case_deliveries_have_their_own_ids(ctx):
    """Two events to two outputs: four ids. hook2's secret lacks its padding "="."""
    h.check(SIGNING_SECRET.endswith("="), "the test key's base64 ends in padding")
    receiver = StandIn(ctx, {HOOK: [(200, {}, b"")]})
    out = http_output(receiver.url(HOOK), signing_secret=SIGNING_SECRET)
    out2 = http_output(receiver.url(HOOK), signing_secret=SIGNING_SECRET.rstrip("="))
    srv = serve(ctx, {"hook": out, "hook2": out2})
    first = srv.post_ok(alert("one"))
    second = srv.post_ok(alert("two"))
    wait_settled(ctx, srv, first, count=2)
    wait_settled(ctx, srv, second, count=2)
    reqs = receiver.server.seen(HOOK)
    h.check_eq(len(reqs), 4, "requests received")
    for req in reqs:
        check_signed(req)
    h.check_eq(len({req["headers"]["webhook-id"] for req in reqs}), 4,
               "distinct webhook-ids for 2 events x 2 outputs")


def case_429_honours_retry_after(ctx):
    script = [(429, {"Retry-After": "1"}, b""), (200, {}, b"")]
    # The router caps a Retry-After at max_delay: give it room.
    retry = {"initial": "50ms", "max_delay": "5s", "max_attempts": 3}
    _, _, row, reqs = run_one(ctx, script, retry=retry)
    h.check_eq((row["state"], row["attempts"]), ("delivered", 2), "state and attempts")
    h.check_eq(len(reqs), 2, "requests received")
    gap = reqs[1]["time"] - reqs[0]["time"]
    h.check(gap >= 0.95, "second attempt %.3fs after the 429; Retry-After said 1s" % gap)


def case_408_is_retried(ctx):
    _, _, row, reqs = run_one(ctx, [(408, {}, b""), (200, {}, b"")])
    h.check_eq((row["state"], row["attempts"]), ("delivered", 2), "state and attempts")
    h.check_eq(len(reqs), 2, "requests received")


def case_404_is_dead(ctx):
    receiver = StandIn(ctx, {HOOK: [(404, {}, b"no such hook sbitest-reply-body")]})
    srv = serve(ctx, {"hook": http_output(receiver.url(HOOK))})
    got = wait_settled(ctx, srv, srv.post_ok(alert()))
    h.check_eq(shape(got), [("dead", 1)], "state and attempts")
    h.check_eq(got[0]["last_error"], "HTTP 404", "last_error (no reply body)")
    time.sleep(0.3)
    h.check_eq(len(receiver.server.seen(HOOK)), 1, "a 404 is not retried")
    h.check("sbitest-reply-body" not in srv.stderr(), "the log shows the reply body")
    check_quiet(srv.stderr())


def case_500_until_the_policy_gives_up(ctx):
    retry = {"initial": "50ms", "max_delay": "100ms", "max_attempts": 3}
    _, _, row, reqs = run_one(ctx, [(503, {}, b"")], retry=retry)
    h.check_eq((row["state"], row["attempts"]), ("dead", 3), "state and attempts")
    h.check(row["last_error"].startswith("HTTP 503"), "last_error %r" % row["last_error"])
    h.check_eq(len(reqs), 3, "requests received")


def case_total_timeout(ctx):
    """A receiver that accepts and never answers: the attempt ends at `timeout`."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []
    stop = threading.Event()

    def hold():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except socket.timeout:
                continue
            except OSError:
                return

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        url = "http://127.0.0.1:%d%s" % (listener.getsockname()[1], HOOK)
        retry = {"initial": "50ms", "max_delay": "50ms", "max_attempts": 2}
        srv = serve(ctx, {"hook": http_output(url, timeout="500ms", retry=retry)})
        started = time.monotonic()
        event_id = srv.post_ok(alert())
        got = wait_settled(ctx, srv, event_id)
        took = time.monotonic() - started
    finally:
        stop.set()
        thread.join(2)
        listener.close()
        for conn in held:
            conn.close()
    h.check_eq(shape(got), [("dead", 2)], "state and attempts")
    h.check(re.search(r"(?i)timeout|timed out", got[0]["last_error"]),
            "last_error %r" % got[0]["last_error"])
    h.check(took < 10, "two 500ms attempts took %.1fs" % took)
    check_quiet(srv.stderr())


def case_https_needs_a_trusted_certificate(ctx):
    cert, key = make_cert(ctx, "receiver")
    receiver = StandIn(ctx, {HOOK: [(200, {}, b"")]}, tls=(cert, key))
    retry = {"initial": "50ms", "max_delay": "50ms", "max_attempts": 2}
    untrusted = http_output(receiver.url(HOOK), retry=retry)
    trusted = http_output(receiver.url(HOOK), ca_file=cert, signing_secret=SIGNING_SECRET)
    srv = serve(ctx, {"untrusted": untrusted, "trusted": trusted})
    event_id = srv.post_ok(alert())
    got = {d["output"]: d for d in wait_settled(ctx, srv, event_id, count=2)}
    bad = got["untrusted"]
    h.check_eq((bad["state"], bad["attempts"]), ("dead", 2), "untrusted: state and attempts")
    h.check(re.search(r"(?i)ssl|tls|certificate", bad["last_error"]),
            "untrusted: last_error %r names no TLS failure" % bad["last_error"])
    good = got["trusted"]
    h.check_eq((good["state"], good["attempts"]), ("delivered", 1),
               "ca_file: state and attempts (last_error %r)" % good["last_error"])
    reqs = receiver.server.seen(HOOK)
    h.check_eq(len(reqs), 1, "requests that reached the receiver: only the trusted one")
    check_signed(reqs[0])
    check_quiet(srv.stderr())


def run_one_tls(ctx, cert, key, **keys):
    receiver = StandIn(ctx, {HOOK: [(200, {}, b"")]}, tls=(cert, key))
    srv = serve(ctx, {"hook": http_output(receiver.url(HOOK), **keys)})
    log = srv.stderr()
    h.check(re.search(r"level=warn .*output=hook .*tls_verify is false", log),
            "tls_verify: false is not logged at warn:\n" + h.tail(log))
    event_id = srv.post_ok(alert())
    got = wait_settled(ctx, srv, event_id)
    check_quiet(srv.stderr())
    return srv, event_id, got[0], receiver.server.seen(HOOK)


def case_tls_verify_off_is_logged(ctx):
    cert, key = make_cert(ctx, "receiver")
    _, _, row, reqs = run_one_tls(ctx, cert, key, tls_verify=False)
    h.check_eq((row["state"], row["attempts"]), ("delivered", 1), "state and attempts")
    h.check_eq(len(reqs), 1, "requests received")


def case_check_reports_mistakes(ctx):
    base = "https://crm.example" + HOOK
    text = """listen: 127.0.0.1:%d
path: %s
auth: { bearer: [ "${%s}" ] }
spool: { path: var/spool.db }
plugins: { dir: %s }
outputs:
  a:
    plugin: http
    url: ftp://crm.example%s
  b:
    plugin: http
    url: %s
    signing_secret: %s
  c:
    plugin: http
    url: %s
    signing_secret: whsec_%sA
  d:
    plugin: http
    url: https://sbitest-user:%s@crm.example/in
    method: PATCH
    headers:
      Content-Length: "12"
      X-Note: "{{payload.note}} %s"
      X-Open: "{{event_id"
rules: []
""" % (h.free_port(), h.WEBHOOK_PATH, h.SECRET_ENV, h.plugins_dir(), HOOK, base,
       SIGNING_SECRET[len("whsec_"):], base, SIGNING_SECRET[len("whsec_"):], API_TOKEN,
       API_TOKEN)
    cfg = ctx.write_config(text)
    res = h.run_cli(ctx, ["check", "-c", cfg])
    h.check_eq(res.returncode, 1, "check exit code (stdout %r)" % res.stdout)
    for line, pattern in ((9, "url: expected an http:// or https:// URL"),
                          (13, "signing_secret: expected whsec_"),
                          (17, "signing_secret: expected whsec_"),
                          (20, "url: expected an http:// or https:// URL"),
                          (21, "method: expected POST or PUT"),
                          (23, "Content-Length"),
                          (24, "X-Note"),
                          (25, "X-Open")):
        h.check(re.search(r"(?m)^%s:%d:\d+: .*%s" % (re.escape(cfg), line, re.escape(pattern)),
                          res.stderr), "check stderr lacks line %d %r:\n%s"
                % (line, pattern, res.stderr))
    check_quiet(res.stdout + res.stderr, "check's output")

    cert, _ = make_cert(ctx, "crm")
    good = ctx.write_config(http_config(ctx, {"hook": http_output(
        base, method="PUT", signing_secret=SIGNING_SECRET, ca_file=cert,
        headers={"Authorization": "Bearer ${%s}" % API_TOKEN_ENV,
                 "X-Event": "{{ event_type }} {{event_id}}"})}))
    res = h.run_cli(ctx, ["check", "-c", good], env=env(ctx))
    h.check_eq(res.returncode, 0, "check of a valid config (stderr %r)" % res.stderr)
    check_quiet(res.stdout + res.stderr, "check's output")


CASES = [
    ("200: the envelope arrives with the templated and ${VAR} headers",
     case_envelope_and_headers),
    ("PUT with a body template and a Content-Type of its own", case_put_with_body_template),
    ("CR LF in an event type cannot add a header", case_header_values_cannot_add_headers),
    ("the receiver verifies the Standard Webhooks signature; tampering fails it",
     case_signature_verifies),
    ("500 three times then 200: 4 attempts, one webhook-id, each signature valid",
     case_retries_keep_the_webhook_id),
    ("each delivery has its own webhook-id; a secret without its padding signs alike",
     case_deliveries_have_their_own_ids),
    ("429 with Retry-After: 1 waits a second, then delivers", case_429_honours_retry_after),
    ("408 is retried", case_408_is_retried),
    ("404 is dead at once with the status in last_error", case_404_is_dead),
    ("503 until max_attempts: dead after 3", case_500_until_the_policy_gives_up),
    ("a receiver that never answers: the total timeout ends each attempt",
     case_total_timeout),
    ("HTTPS: a self-signed certificate fails unless ca_file trusts it",
     case_https_needs_a_trusted_certificate),
    ("HTTPS with tls_verify: false delivers and says so at warn", case_tls_verify_off_is_logged),
    ("check reports http config mistakes with file:line:col, quoting no secret",
     case_check_reports_mistakes),
]

if __name__ == "__main__":
    h.main(CASES)
