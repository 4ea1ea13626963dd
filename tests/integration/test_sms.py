# SPDX-License-Identifier: MIT
"""The sms output against a Twilio stand-in and a plain HTTP gateway (SPEC §8, issue 5).

A small HTTP server on 127.0.0.1 plays Twilio: it records every request,
checks its shape (path, Basic auth, form fields) and answers from a script
(201, 429 with Retry-After, 500, 400 with Twilio's error code). The real
binary delivers to it, and each delivery must end in the state the answers
call for, with one request per recipient and none repeated for a recipient
that already has its message.
"""

import base64
import json
import os
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

SID = "AC0123456789abcdef0123456789abcdef"
TOKEN = "sbitest-twilio-token-do-not-leak"
FROM = "+14155550100"
TO = ["+14155550199", "+4930901820"]
REPORT = "Caller reports chest pain, asks for a call back"
DELIVERY_TIMEOUT = 20.0

DELIVERY_RE = re.compile(r"^\s+delivery\s+(\d+)\s+(\S+)\s+rule=(\S+)\s+state=(\S+)"
                         r"\s+attempts=(\d+)\s+next=(\S+)(?:\s+last_error=(.*))?$")


class Gateway:
    """An HTTP peer on 127.0.0.1 that records requests and answers from a script.

    script: a list of (status, headers, body) used in order, one per request;
    once it runs out every request gets `default`.
    """

    def __init__(self, script=None, default=(201, {}, b'{"sid": "SM0"}')):
        self.script = list(script or [])
        self.default = default
        self.requests = []
        self.lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                gateway.answer(self)

            def do_PUT(self):
                gateway.answer(self)

            def log_message(self, fmt, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, handler):
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length)
        with self.lock:
            self.requests.append({
                "at": time.monotonic(),
                "method": handler.command,
                "path": handler.path,
                "headers": {k.lower(): v for k, v in handler.headers.items()},
                "body": body,
            })
            status, headers, reply = self.script.pop(0) if self.script else self.default
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(reply)))
        handler.end_headers()
        handler.wfile.write(reply)

    def taken(self):
        """A copy of the requests so far."""
        with self.lock:
            return list(self.requests)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def form(req):
    """A request's urlencoded body as {name: value}; a repeated field fails the case."""
    pairs = urllib.parse.parse_qsl(req["body"].decode("utf-8"), keep_blank_values=True,
                                   strict_parsing=True)
    names = [k for k, _ in pairs]
    h.check(len(names) == len(set(names)), "a form field repeats: %r" % names)
    return dict(pairs)


def check_twilio_request(req):
    """Path, Basic auth and content type Twilio expects; returns the form."""
    h.check_eq(req["method"], "POST", "method")
    h.check_eq(req["path"], "/2010-04-01/Accounts/%s/Messages.json" % SID, "path")
    want = "Basic " + base64.b64encode(("%s:%s" % (SID, TOKEN)).encode()).decode()
    h.check_eq(req["headers"].get("authorization"), want, "Authorization")
    h.check(req["headers"].get("content-type", "").startswith(
        "application/x-www-form-urlencoded"), "content type %r" % req["headers"])
    return form(req)


def twilio_output(gateway, to=None, **extra):
    out = {
        "plugin": "sms",
        "provider": "twilio",
        "account_sid": SID,
        "auth_token": TOKEN,
        "base_url": gateway.url,
        "from": FROM,
        "to": to or TO,
        "body": "URGENT {{payload.caller_phone_number}}: {{payload.super_short_report}}",
        "retry": {"initial": "200ms", "max_delay": "1s", "max_attempts": 6},
    }
    out.update(extra)
    return out


def sms_config(ctx, outputs):
    return ctx.config(plugins={"dir": h.plugins_dir()}, outputs=outputs,
                      rules=[{"name": "texts", "send": list(outputs)}])


def urgent_call(report=REPORT):
    event = h.load_example("inbound_end_of_call")
    event["payload"]["super_short_report"] = report
    return event


def deliveries(ctx, cfg_path):
    """[{id, output, rule, state, attempts, last_error}] from `events --deliveries`."""
    res = h.run_cli(ctx, ["events", "-c", cfg_path, "--limit", "0", "--deliveries"])
    h.check_eq(res.returncode, 0, "events exit code (stderr %r)" % res.stderr)
    rows = []
    for line in res.stdout.splitlines():
        m = DELIVERY_RE.match(line)
        if m:
            rows.append({"id": m.group(1), "output": m.group(2), "rule": m.group(3),
                         "state": m.group(4), "attempts": int(m.group(5)),
                         "last_error": (m.group(7) or "").strip()})
    return rows


def wait_settled(ctx, srv, count=1, timeout=DELIVERY_TIMEOUT):
    """Poll until `count` deliveries exist and none is pending; return them."""
    deadline = time.monotonic() + timeout
    rows = []
    while time.monotonic() < deadline:
        rows = deliveries(ctx, srv.cfg_path)
        if len(rows) >= count and all(r["state"] != "pending" for r in rows):
            return rows
        h.check(srv.alive(), "serve exited; stderr:\n%s" % h.tail(srv.stderr()))
        time.sleep(0.2)
    h.fail("deliveries still pending after %.0fs: %r\nstderr:\n%s"
           % (timeout, rows, h.tail(srv.stderr())))


def run_one(ctx, gateway, output, event=None):
    """Start serve with one sms output, post one event, wait; return (server, delivery)."""
    srv = ctx.server(sms_config(ctx, {"texts": output}))
    srv.post_ok(event or urgent_call())
    rows = wait_settled(ctx, srv)
    h.check_eq(len(rows), 1, "deliveries stored")
    return srv, rows[0]


def check_quiet_log(srv):
    """No token, number or report text in the server's log."""
    log = srv.stderr()
    for secret in [TOKEN, REPORT, FROM] + TO + [urgent_call()["payload"]["caller_phone_number"]]:
        h.check(secret not in log, "the log shows %r" % secret)


def case_one_message_per_recipient(ctx):
    gateway = Gateway()
    try:
        srv, row = run_one(ctx, gateway, twilio_output(gateway))
        reqs = gateway.taken()
    finally:
        gateway.close()
    h.check_eq((row["state"], row["attempts"]), ("delivered", 1), "state and attempts")
    h.check_eq(len(reqs), len(TO), "requests, one per recipient")
    call = urgent_call()["payload"]
    for req, number in zip(reqs, TO):
        fields = check_twilio_request(req)
        h.check_eq(fields, {"To": number, "From": FROM, "Body": "URGENT %s: %s" % (
            call["caller_phone_number"], REPORT)}, "form fields")
    check_quiet_log(srv)


def case_429_waits_for_retry_after(ctx):
    gateway = Gateway(script=[(429, {"Retry-After": "1"}, b'{"code": 20429}')])
    try:
        _, row = run_one(ctx, gateway, twilio_output(gateway, to=TO[:1]))
        reqs = gateway.taken()
    finally:
        gateway.close()
    h.check_eq((row["state"], row["attempts"]), ("delivered", 2), "state and attempts")
    h.check_eq(len(reqs), 2, "requests")
    waited = reqs[1]["at"] - reqs[0]["at"]
    h.check(waited >= 0.9, "the retry came %.2fs after a Retry-After of 1s" % waited)


def case_500_three_times_then_201(ctx):
    err = (500, {}, b'{"message": "oops"}')
    gateway = Gateway(script=[err, err, err])
    try:
        _, row = run_one(ctx, gateway, twilio_output(gateway, to=TO[:1]))
        reqs = gateway.taken()
    finally:
        gateway.close()
    h.check_eq((row["state"], row["attempts"]), ("delivered", 4), "state and attempts")
    h.check_eq(len(reqs), 4, "requests")


def case_400_is_dead_with_twilio_code(ctx):
    body = json.dumps({"code": 21211, "message": "The 'To' number is not valid.",
                       "status": 400}).encode()
    gateway = Gateway(script=[(400, {}, body)])
    try:
        srv, row = run_one(ctx, gateway, twilio_output(gateway, to=TO[:1]))
        reqs = gateway.taken()
    finally:
        gateway.close()
    h.check_eq((row["state"], row["attempts"]), ("dead", 1), "state and attempts")
    h.check_eq(len(reqs), 1, "requests")
    h.check("HTTP 400 twilio 21211" in row["last_error"], "last error %r" % row["last_error"])
    h.check("not valid" not in row["last_error"] + srv.stderr(),
            "Twilio's message (a response body) is shown")


def case_retry_skips_recipients_already_sent(ctx):
    gateway = Gateway(script=[(201, {}, b"{}"), (503, {}, b"{}")])
    try:
        _, row = run_one(ctx, gateway, twilio_output(gateway))
        reqs = gateway.taken()
    finally:
        gateway.close()
    h.check_eq((row["state"], row["attempts"]), ("delivered", 2), "state and attempts")
    h.check_eq([form(r)["To"] for r in reqs], [TO[0], TO[1], TO[1]],
               "recipients in request order: the first must not be texted twice")


def case_long_body_is_capped(ctx):
    report = ("Müller ☎ " * 300)[:2000]
    gateway = Gateway()
    try:
        _, row = run_one(ctx, gateway, twilio_output(gateway, to=TO[:1],
                                                     body="{{payload.super_short_report}}"),
                         event=urgent_call(report))
        reqs = gateway.taken()
    finally:
        gateway.close()
    h.check_eq(row["state"], "delivered", "state")
    got = form(reqs[0])["Body"]
    h.check_eq(len(got), 1600, "characters in the body")
    h.check_eq(got, report[:1599] + "\u2026", "the capped body")


def case_http_provider_json(ctx):
    gateway = Gateway(default=(200, {}, b"{}"))
    output = {
        "plugin": "sms",
        "provider": "http",
        "url": gateway.url + "/send?key=sbitest-url-key",
        "method": "PUT",
        "format": "json",
        "headers": {"X-Api-Key": "sbitest-header-key"},
        "to": TO,
        "retry": {"initial": "200ms", "max_delay": "1s", "max_attempts": 3},
    }
    try:
        srv, row = run_one(ctx, gateway, output)
        reqs = gateway.taken()
    finally:
        gateway.close()
    h.check_eq(row["state"], "delivered", "state")
    h.check_eq(len(reqs), 2, "requests")
    for req, number in zip(reqs, TO):
        h.check_eq((req["method"], req["path"]), ("PUT", "/send?key=sbitest-url-key"),
                   "method and path")
        h.check_eq(req["headers"].get("x-api-key"), "sbitest-header-key", "X-Api-Key")
        h.check(req["headers"].get("content-type", "").startswith("application/json"),
                "content type %r" % req["headers"].get("content-type"))
        doc = json.loads(req["body"])
        h.check_eq(sorted(doc), ["body", "to"], "JSON keys without a from")
        h.check_eq(doc["to"], number, "to")
    log = srv.stderr()
    h.check("sbitest-url-key" not in log and "sbitest-header-key" not in log,
            "the log shows a key")


def case_check_rejects_bad_numbers(ctx):
    text = """listen: 127.0.0.1:%d
path: %s
auth: { bearer: [ "${%s}" ] }
spool: { path: var/spool.db }
plugins: { dir: %s }
outputs:
  texts:
    plugin: sms
    provider: twilio
    account_sid: %s
    auth_token: %s
    from: "+14155550100"
    to: ["+14155550199", "0151 2345678"]
    base_url: http://example.com
rules: []
""" % (h.free_port(), h.WEBHOOK_PATH, h.SECRET_ENV, h.plugins_dir(), SID, TOKEN)
    cfg = ctx.write_config(text)
    res = h.run_cli(ctx, ["check", "-c", cfg])
    h.check_eq(res.returncode, 1, "check exit code (stdout %r)" % res.stdout)
    h.check(re.search(r"(?m)^%s:13:\d+: .*to: item 2 is not an E\.164 number"
                      % re.escape(cfg), res.stderr), "check stderr:\n" + res.stderr)
    h.check(re.search(r"(?m)^%s:14:\d+: .*base_url: expected https://" % re.escape(cfg),
                      res.stderr), "check stderr:\n" + res.stderr)
    h.check("0151 2345678" not in res.stderr and TOKEN not in res.stderr,
            "check quotes a value")


CASES = [
    ("twilio: one form POST per recipient, Basic auth, no numbers in the log",
     case_one_message_per_recipient),
    ("twilio: 429 with Retry-After 1 is retried after a second", case_429_waits_for_retry_after),
    ("twilio: 500 three times then 201 is delivered on attempt 4", case_500_three_times_then_201),
    ("twilio: 400 is dead with Twilio's error code", case_400_is_dead_with_twilio_code),
    ("a retry texts only the recipients still waiting", case_retry_skips_recipients_already_sent),
    ("a long body is cut to 1600 characters with an ellipsis", case_long_body_is_capped),
    ("provider http: PUT with a JSON body and custom headers", case_http_provider_json),
    ("check reports a bad number and an http base_url with file:line:col",
     case_check_rejects_bad_numbers),
]

if __name__ == "__main__":
    h.main(CASES)
