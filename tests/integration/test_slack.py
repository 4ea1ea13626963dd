# SPDX-License-Identifier: MIT
"""The slack output against a stand-in for Slack's incoming webhooks.

A small HTTP server on 127.0.0.1 records every request and answers from a
script per webhook path, the way Slack does: 200 "ok", 429 with
Retry-After, 500, 404 "no_service". Each case checks what arrived (method,
JSON shape, mrkdwn escaping of payload values) and the delivery state the
router stored (delivered or dead, attempts, last error, timing).
"""

import http.server
import json
import os
import re
import ssl
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

TOKEN_PATH = "/services/T0SB/B0SB/slk-Xq7-token-do-not-log"
DELIVERY_TIMEOUT = 20.0
FAST_RETRY = {"initial": "200ms", "max_delay": "1s", "max_attempts": 6}


class Recorder(http.server.ThreadingHTTPServer):
    """Records requests; answers each path from its script, then repeats the last answer."""

    daemon_threads = True

    def __init__(self, scripts):
        super().__init__(("127.0.0.1", 0), SlackHandler)
        self.scripts = {path: list(answers) for path, answers in scripts.items()}
        self.requests = []
        self.lock = threading.Lock()

    @property
    def port(self):
        return self.server_address[1]

    def answer(self, path):
        """The next scripted (status, headers, body) for path."""
        with self.lock:
            script = self.scripts.get(path)
            if not script:
                return 404, {}, b"no_service"
            return script.pop(0) if len(script) > 1 else script[0]

    def seen(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r["path"] == path]


class SlackHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        record = {"time": time.monotonic(), "method": self.command, "path": self.path,
                  "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
        with self.server.lock:
            self.server.requests.append(record)
        status, headers, reply = self.server.answer(self.path)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_PUT = do_POST

    def log_message(self, fmt, *args):
        pass


class StandIn:
    """A running Recorder; stopped when the case ends, whatever happens.

    test_http.py uses it too, for its receivers.

    It sits in ctx.servers so the case's cleanup stops it; cfg_path and
    stderr() are there for the timeout report, which lists every server.
    """

    cfg_path = "(Slack stand-in)"

    def __init__(self, ctx, scripts, tls=None):
        """tls: (cert, key) to answer over HTTPS with that certificate."""
        self.server = Recorder(scripts)
        self.scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        ctx.servers.append(self)

    def url(self, path):
        return "%s://127.0.0.1:%d%s" % (self.scheme, self.server.port, path)

    def stderr(self):
        return ""

    def kill(self):
        self.server.shutdown()
        self.server.server_close()


def slack_config(ctx, outputs, rules=None):
    """A config with the given outputs; by default each test_alert goes to every output."""
    cfg = ctx.config()
    cfg["plugins"] = {"dir": h.plugins_dir()}
    cfg["log_level"] = "debug"
    cfg["outputs"] = outputs
    cfg["rules"] = rules or [{
        "name": "alerts",
        "match": {"event_type": "test_alert"},
        "send": [{"to": name} for name in outputs],
    }]
    return cfg


def slack_output(url, **keys):
    out = {"plugin": "slack", "webhook_url": url, "retry": dict(FAST_RETRY)}
    out.update(keys)
    return out


def deliveries(ctx, cfg_path):
    """{event_id: [{"output", "state", "attempts", "last_error"}]} from `events --deliveries`."""
    res = h.run_cli(ctx, ["events", "-c", cfg_path, "--limit", "0", "--deliveries"])
    h.check_eq(res.returncode, 0, "events exit code (stderr %r)" % res.stderr)
    out, current = {}, None
    for line in res.stdout.splitlines():
        m = re.match(r"^([0-9A-Z]{26})\s", line)
        if m:
            current = out.setdefault(m.group(1), [])
            continue
        m = re.match(r"^\s+delivery\s+\d+\s+(\S+)\s+rule=\S+\s+state=(\S+)\s+attempts=(\d+)"
                     r"\s+next=\S+(?: last_error=(.*))?$", line)
        if m and current is not None:
            current.append({"output": m.group(1), "state": m.group(2),
                            "attempts": int(m.group(3)), "last_error": m.group(4) or ""})
    return out


def wait_settled(ctx, srv, event_id, timeout=DELIVERY_TIMEOUT):
    """The event's deliveries once none is pending; fails the case after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        got = deliveries(ctx, srv.cfg_path).get(event_id, [])
        if got and all(d["state"] != "pending" for d in got):
            return got
        if time.monotonic() > deadline:
            h.fail("deliveries still pending after %.0fs: %r\nserver stderr:\n%s"
                   % (timeout, got, h.tail(srv.stderr())))
        time.sleep(0.1)


def alert(note="all quiet"):
    return {"event_type": "test_alert", "payload": {"note": note, "who": "Dr. Ruiz"}}


def check_no_secret(srv):
    """The webhook path is Slack's token: it must not reach the log at any level."""
    log = srv.stderr()
    h.check("slk-Xq7-token-do-not-log" not in log, "the webhook token is in the log:\n" +
            h.tail(log))


def case_delivered_and_escaped(ctx):
    stand_in = StandIn(ctx, {TOKEN_PATH: [(200, {}, b"ok")]})
    cfg = slack_config(ctx, {"chat": slack_output(
        stand_in.url(TOKEN_PATH), channel="#on-call", username="switchboard",
        icon_emoji=":telephone_receiver:",
        text="<!channel> {{payload.note}} \"from\" {{payload.who}}")})
    srv = ctx.server(cfg)
    event_id = srv.post_ok(alert("<b>& urgent"))
    got = wait_settled(ctx, srv, event_id)
    h.check_eq([(d["output"], d["state"], d["attempts"]) for d in got],
               [("chat", "delivered", 1)], "deliveries")

    reqs = stand_in.server.seen(TOKEN_PATH)
    h.check_eq(len(reqs), 1, "requests received")
    req = reqs[0]
    h.check_eq(req["method"], "POST", "method")
    h.check(req["headers"].get("content-type", "").startswith("application/json"),
            "content type %r" % req["headers"].get("content-type"))
    doc = json.loads(req["body"].decode("utf-8"))
    h.check_eq(doc, {"text": "<!channel> &lt;b&gt;&amp; urgent \"from\" Dr. Ruiz",
                     "channel": "#on-call", "username": "switchboard",
                     "icon_emoji": ":telephone_receiver:"}, "posted JSON")
    check_no_secret(srv)
    h.check("127.0.0.1" in srv.stderr(), "the log names the webhook's host")


def case_default_text(ctx):
    stand_in = StandIn(ctx, {TOKEN_PATH: [(200, {}, b"ok")]})
    srv = ctx.server(slack_config(ctx, {"chat": slack_output(stand_in.url(TOKEN_PATH))}))
    event_id = srv.post_ok(alert())
    wait_settled(ctx, srv, event_id)
    doc = json.loads(stand_in.server.seen(TOKEN_PATH)[0]["body"])
    h.check_eq(doc, {"text": "test_alert event %s" % event_id}, "posted JSON")


def case_429_honours_retry_after(ctx):
    stand_in = StandIn(ctx, {TOKEN_PATH: [(429, {"Retry-After": "1"}, b"rate_limited"),
                                          (200, {}, b"ok")]})
    srv = ctx.server(slack_config(ctx, {"chat": slack_output(stand_in.url(TOKEN_PATH))}))
    event_id = srv.post_ok(alert())
    got = wait_settled(ctx, srv, event_id)
    h.check_eq([(d["state"], d["attempts"]) for d in got], [("delivered", 2)], "deliveries")
    reqs = stand_in.server.seen(TOKEN_PATH)
    h.check_eq(len(reqs), 2, "requests received")
    gap = reqs[1]["time"] - reqs[0]["time"]
    h.check(gap >= 0.95, "second attempt %.3fs after the 429; Retry-After said 1s" % gap)
    check_no_secret(srv)


def case_500_three_times_then_200(ctx):
    stand_in = StandIn(ctx, {TOKEN_PATH: [(500, {}, b"")] * 3 + [(200, {}, b"ok")]})
    srv = ctx.server(slack_config(ctx, {"chat": slack_output(stand_in.url(TOKEN_PATH))}))
    event_id = srv.post_ok(alert())
    got = wait_settled(ctx, srv, event_id)
    h.check_eq([(d["state"], d["attempts"]) for d in got], [("delivered", 4)], "deliveries")
    h.check_eq(len(stand_in.server.seen(TOKEN_PATH)), 4, "requests received")


def case_404_is_dead_with_slack_word(ctx):
    stand_in = StandIn(ctx, {TOKEN_PATH: [(404, {}, b"no_service")]})
    srv = ctx.server(slack_config(ctx, {"chat": slack_output(stand_in.url(TOKEN_PATH))}))
    event_id = srv.post_ok(alert())
    got = wait_settled(ctx, srv, event_id)
    h.check_eq([(d["state"], d["attempts"]) for d in got], [("dead", 1)], "deliveries")
    h.check("no_service" in got[0]["last_error"], "last_error %r" % got[0]["last_error"])
    time.sleep(0.5)
    h.check_eq(len(stand_in.server.seen(TOKEN_PATH)), 1, "a 404 is not retried")
    check_no_secret(srv)


def case_unreachable_retries(ctx):
    """Nobody listening: a connection error is a retry, never delivered."""
    url = "http://127.0.0.1:%d%s" % (h.free_port(), TOKEN_PATH)
    out = slack_output(url, connect_timeout="500ms", timeout="1s")
    out["retry"] = {"initial": "200ms", "max_delay": "200ms", "max_attempts": 2}
    srv = ctx.server(slack_config(ctx, {"chat": out}))
    event_id = srv.post_ok(alert())
    got = wait_settled(ctx, srv, event_id)
    h.check_eq([(d["state"], d["attempts"]) for d in got], [("dead", 2)], "deliveries")
    h.check(got[0]["last_error"] != "", "a last error is recorded")
    h.check(TOKEN_PATH not in got[0]["last_error"], "last_error shows the URL")
    check_no_secret(srv)


def check_config_error(ctx, outputs, pattern):
    cfg = ctx.write_config(slack_config(ctx, outputs))
    res = h.run_cli(ctx, ["check", "-c", cfg])
    h.check_eq(res.returncode, 1, "check exit code (stdout %r)" % res.stdout)
    h.check(re.search(pattern, res.stderr), "check stderr lacks %r:\n%s" % (pattern, res.stderr))
    h.check("slk-Xq7-token-do-not-log" not in res.stdout + res.stderr,
            "check shows the webhook token")


def case_config_errors(ctx):
    remote = "http://hooks.slack.example" + TOKEN_PATH
    check_config_error(ctx, {"chat": slack_output(remote)},
                       r'output "chat": webhook_url: expected https://')
    check_config_error(ctx, {"chat": {"plugin": "slack"}},
                       r'output "chat": missing key "webhook_url"')
    remote = "https://hooks.slack.example" + TOKEN_PATH
    check_config_error(ctx, {"chat": slack_output(remote, timeout="0s"),
                             "chat2": slack_output(remote, colour="red")},
                       r'(?s)output "chat": timeout: .*unknown key "colour"')
    good = ctx.write_config(slack_config(ctx, {"chat": slack_output(
        "https://hooks.slack.example" + TOKEN_PATH, tls_verify=False)}))
    res = h.run_cli(ctx, ["check", "-c", good])
    h.check_eq(res.returncode, 0, "check of a valid config (stderr %r)" % res.stderr)


CASES = [
    ("200: the JSON arrives with payload values escaped, the template's own kept",
     case_delivered_and_escaped),
    ("the default text names the event type and id", case_default_text),
    ("429 with Retry-After: 1 waits a second, then delivers", case_429_honours_retry_after),
    ("500 three times then 200: delivered after 4 attempts", case_500_three_times_then_200),
    ("404 no_service: dead at once, Slack's word in last_error", case_404_is_dead_with_slack_word),
    ("no listener: retried until the policy gives up", case_unreachable_retries),
    ("check rejects plain http to a remote host and bad keys", case_config_errors),
]

if __name__ == "__main__":
    h.main(CASES)
