# SPDX-License-Identifier: MIT
"""/metrics on the admin listener (SPEC §9): Prometheus text format 0.0.4.

Each case scrapes, posts, scrapes again and checks that the counters moved
by exactly what was done: events by type, refusals by reason, rule matches
and throttles, delivery outcomes by output, the backlog gauges, and the
_count of each histogram. Every scrape is parsed with the Prometheus
project's own parser (prometheus_client, Debian's python3-prometheus-client),
and its values are read from what that parser made of the text, so a
malformed exposition fails the case rather than being read around.
"""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    h.reexec_under_debian_python()  # its packages are Debian's
    text_string_to_metric_families = None

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
SETTLE_TIMEOUT = 20.0
MAX_BODY = 4096
BAD_TOKEN = "sbitest-wrong-token-Hq41vX-do-not-leak"
UNKNOWN_TYPE = "sbitest_unknown_type_42"

# Family name as the parser reports it (counters lose _total) and type.
FAMILIES = {
    "switchboard_build_info": "gauge",
    "switchboard_events_received": "counter",
    "switchboard_requests_rejected": "counter",
    "switchboard_rule_matches": "counter",
    "switchboard_throttled": "counter",
    "switchboard_deliveries": "counter",
    "switchboard_delivery_latency_seconds": "histogram",
    "switchboard_delivery_attempts": "histogram",
    "switchboard_deliveries_pending": "gauge",
    "switchboard_deliveries_dead": "gauge",
    "switchboard_spool_commit_seconds": "histogram",
    "switchboard_spool_commit_writes": "histogram",
}
KNOWN_TYPES = ["inbound_end_of_call", "contact_updated", "contact_exists", "lead_update",
               "form_sent", "form_opened", "form_submitted", "form_signed"]
REASONS = ["auth", "too_large", "bad_json", "not_found", "method_not_allowed",
           "unavailable", "other"]
FAST = {"initial": "50ms", "max_delay": "100ms", "max_attempts": 5}


# --------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------

def plugin_dir(ctx):
    path = ctx.path("plugins")
    if not os.path.isdir(path):
        os.makedirs(path)
        os.symlink(os.path.join(h.test_plugins_dir(), "testout.so"),
                   os.path.join(path, "testout.so"))
    return path


def testout(ctx, name, **keys):
    out = {"plugin": "testout", "path": ctx.path(name + ".jsonl"), "retry": FAST}
    out.update(keys)
    return out


def metrics_config(ctx):
    """good delivers, broken fails (dead at once), stuck stalls inside
    deliver(), flaky asks for one retry then delivers."""
    cfg = ctx.config(admin={"listen": "127.0.0.1:%d" % h.free_port()},
                     max_body="%dB" % MAX_BODY)
    cfg["plugins"] = {"dir": plugin_dir(ctx)}
    cfg["outputs"] = {
        "good": testout(ctx, "good"),
        "broken": testout(ctx, "broken", mode="fail"),
        "stuck": testout(ctx, "stuck", mode="stall", stall_for="1h"),
        "flaky": testout(ctx, "flaky", mode="retry", retries=1),
    }
    cfg["rules"] = [
        {"name": "calls", "match": {"event_type": "inbound_end_of_call"},
         "send": ["good", "broken", "stuck"]},
        {"name": "forms", "match": {"event_type": {"glob": "form_*"}},
         "throttle": {"key": "{{event_type}}", "per": "1h"},
         "send": ["good"]},
        {"name": "everything", "send": ["flaky"]},
    ]
    return cfg


# --------------------------------------------------------------------------
# Scraping
# --------------------------------------------------------------------------

class Scrape:
    """One /metrics answer, parsed by prometheus_client.

    values maps (sample name, sorted label pairs) to the value;
    families maps each family's name to its type and its samples.
    """

    def __init__(self, reply):
        h.check_eq(reply.status, 200, "/metrics status")
        h.check_eq(reply.headers.get("content-type"), CONTENT_TYPE, "/metrics Content-Type")
        self.text = reply.body.decode("utf-8")
        if text_string_to_metric_families is None:
            h.fail("python3-prometheus-client is not installed "
                   "(sh tools/install-deps.sh test)")
        self.families = {}
        self.values = {}
        try:
            for fam in text_string_to_metric_families(self.text):
                h.check(fam.name not in self.families,
                        "family %s appears twice: its samples are not together" % fam.name)
                self.families[fam.name] = (fam.type, fam.samples)
                for s in fam.samples:
                    key = (s.name, tuple(sorted(s.labels.items())))
                    h.check(key not in self.values, "sample %r appears twice" % (key,))
                    self.values[key] = s.value
        except ValueError as exc:
            h.fail("prometheus_client cannot parse /metrics: %s\n%s"
                   % (exc, h.tail(self.text, 10)))

    def get(self, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        h.check(key in self.values, "no sample %s%r in /metrics" % (name, labels))
        return self.values[key]


def scrape(srv):
    return Scrape(srv.admin("/metrics"))


def delta(before, after, name, **labels):
    return after.get(name, **labels) - before.get(name, **labels)


def check_delta(before, after, want, name, **labels):
    h.check_eq(delta(before, after, name, **labels), want,
               "change of %s%s" % (name, json.dumps(labels, sort_keys=True)))


def wait_scrape(srv, what, predicate):
    """Scrape until predicate(scrape) holds; return that scrape."""
    return h.wait_for(what, lambda: (lambda s: s if predicate(s) else None)(scrape(srv)),
                      timeout=SETTLE_TIMEOUT, interval=0.1)


# --------------------------------------------------------------------------
# Traffic
# --------------------------------------------------------------------------

def post_chunked_too_large(srv):
    """A chunked body that grows past max_body: cut off, never answered 2xx."""
    head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            % (h.WEBHOOK_PATH, h.SECRET))
    piece = b"x" * 512
    chunks = b"%x\r\n%s\r\n" % (len(piece), piece) * (2 * MAX_BODY // len(piece))
    sock = h.raw_connect(srv.port)
    try:
        try:
            sock.sendall(head.encode() + chunks + b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        data, closed = h.read_until_closed(sock, time.monotonic() + 10.0)
    finally:
        sock.close()
    h.check(closed, "the server kept the connection of an oversized chunked body open")
    h.check(not data.startswith(b"HTTP/1.1 2"), "oversized chunked body answered %r"
            % data[:100])


def post_traffic(srv):
    """Six events stored and six refused, each reason a client can cause.

    Returns the phone numbers and texts sent, which no scrape may show.
    """
    call = h.load_example("inbound_end_of_call")
    secrets = [h.SECRET, BAD_TOKEN, UNKNOWN_TYPE, call["payload"]["caller_phone_number"],
               call["payload"]["super_short_report"]]
    srv.post_ok(call)
    srv.post_ok(call)
    srv.post_ok(h.load_example("form_sent"))
    srv.post_ok(h.load_example("form_sent"))  # throttled: same key within 1h
    srv.post_ok(h.load_example("contact_updated"))
    srv.post_ok({"event_type": UNKNOWN_TYPE, "payload": {"phone": "+15035550148"}})
    secrets.append("+15035550148")

    h.check_eq(srv.post(call, secret=BAD_TOKEN).status, 401, "wrong token")
    big = {"event_type": "lead_update", "payload": {"pad": "x" * (2 * MAX_BODY)}}
    h.check_eq(srv.post(big).status, 413, "body over max_body")
    h.check_eq(srv.post('{"event_type": "lead_update", "payload": {').status, 400,
               "truncated JSON")
    h.check_eq(h.request(srv.port, "POST", path="/nope", body=call).status, 404, "other path")
    h.check_eq(h.request(srv.port, "GET").status, 405, "GET on the webhook path")
    post_chunked_too_large(srv)
    return secrets


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------

def case_format(ctx):
    """Content-Type, every family with HELP and TYPE and the right type, build info."""
    srv = ctx.server(metrics_config(ctx))
    s = scrape(srv)
    for name, typ in FAMILIES.items():
        h.check(name in s.families, "family %s missing; got %s" % (name, sorted(s.families)))
        h.check_eq(s.families[name][0], typ, "type of %s" % name)
    # The lax parser turns a stray sample into an untyped family of its own.
    extra = sorted(set(s.families) - set(FAMILIES))
    h.check(not extra, "families nobody declared (stray samples?): %s" % extra)
    for name in FAMILIES:
        exposed = name + ("_total" if FAMILIES[name] == "counter" else "")
        h.check("# HELP %s " % exposed in s.text, "no HELP line for %s" % exposed)
        h.check("# TYPE %s %s\n" % (exposed, FAMILIES[name]) in s.text,
                "no TYPE line for %s" % exposed)
    version = [smp.labels.get("version") for smp in s.families["switchboard_build_info"][1]]
    h.check(len(version) == 1 and version[0], "one build_info sample with a version: %r"
            % version)
    h.check_eq(s.get("switchboard_build_info", version=version[0]), 1.0, "build_info value")
    res = h.run_cli(ctx, ["version"])
    h.check(version[0] in res.stdout, "build_info version %r is not what `switchboard "
            "version` prints: %r" % (version[0], res.stdout))
    # Bounded labels: every known type, other, every reason, from the start.
    for t in KNOWN_TYPES + ["other"]:
        h.check_eq(s.get("switchboard_events_received_total", event_type=t), 0.0,
                   "received %s before any event" % t)
    for r in REASONS:
        h.check_eq(s.get("switchboard_requests_rejected_total", reason=r), 0.0,
                   "rejected %s before any request" % r)
    # Outputs and rules of the config are there at 0 before any traffic.
    for out in ("good", "broken", "stuck", "flaky"):
        for result in ("delivered", "retry", "dead"):
            h.check_eq(s.get("switchboard_deliveries_total", output=out, result=result), 0.0,
                       "deliveries %s/%s at start" % (out, result))
        h.check_eq(s.get("switchboard_deliveries_pending", output=out), 0.0,
                   "pending %s at start" % out)
    for rule in ("calls", "forms", "everything"):
        h.check_eq(s.get("switchboard_rule_matches_total", rule=rule), 0.0,
                   "matches of %s at start" % rule)
    h.check_eq(srv.admin("/healthz").status, 200, "/healthz still answers")


def case_counts_move_exactly(ctx):
    """Scrape, post, scrape: every counter moved by exactly what was done."""
    srv = ctx.server(metrics_config(ctx))
    before = scrape(srv)
    secrets = post_traffic(srv)
    after = scrape(srv)

    received = {"inbound_end_of_call": 2, "form_sent": 2, "contact_updated": 1, "other": 1}
    for t in KNOWN_TYPES + ["other"]:
        check_delta(before, after, received.get(t, 0), "switchboard_events_received_total",
                    event_type=t)
    rejected = {"auth": 1, "too_large": 2, "bad_json": 1, "not_found": 1,
                "method_not_allowed": 1}
    for r in REASONS:
        check_delta(before, after, rejected.get(r, 0), "switchboard_requests_rejected_total",
                    reason=r)
    check_delta(before, after, 2, "switchboard_rule_matches_total", rule="calls")
    check_delta(before, after, 2, "switchboard_rule_matches_total", rule="forms")
    check_delta(before, after, 6, "switchboard_rule_matches_total", rule="everything")
    check_delta(before, after, 0, "switchboard_throttled_total", rule="calls")
    check_delta(before, after, 1, "switchboard_throttled_total", rule="forms")
    check_delta(before, after, 0, "switchboard_throttled_total", rule="everything")

    text = after.text + srv.admin("/metrics").body.decode("utf-8")
    for s in secrets:
        h.check(s not in text, "/metrics shows a value it was sent (%d chars)" % len(s))
    h.check("Bearer" not in text, "/metrics mentions a bearer token")


def settled(s):
    """Every delivery that can end has ended (stuck's never answer)."""
    return (s.get("switchboard_deliveries_total", output="good", result="delivered") >= 3
            and s.get("switchboard_deliveries_total", output="broken", result="dead") >= 2
            and s.get("switchboard_deliveries_total", output="flaky", result="delivered") >= 6)


def case_deliveries_and_backlog(ctx):
    """Outcomes by output and result, the backlog gauges, histograms' _count."""
    srv = ctx.server(metrics_config(ctx))
    before = scrape(srv)
    post_traffic(srv)
    wait_scrape(srv, "every delivery that can end has ended", settled)
    h.wait_for("stuck's first attempt to begin",
               lambda: any(r["result"] == "start"
                           for r in h.read_jsonl(ctx.path("stuck.jsonl"))), timeout=10)
    after = scrape(srv)

    want = {
        ("good", "delivered"): 3, ("good", "retry"): 0, ("good", "dead"): 0,
        ("broken", "delivered"): 0, ("broken", "retry"): 0, ("broken", "dead"): 2,
        ("flaky", "delivered"): 6, ("flaky", "retry"): 6, ("flaky", "dead"): 0,
        ("stuck", "delivered"): 0, ("stuck", "retry"): 0, ("stuck", "dead"): 0,
    }
    for (out, result), n in sorted(want.items()):
        check_delta(before, after, n, "switchboard_deliveries_total", output=out, result=result)

    # The spool's own view: two stuck deliveries (one inside deliver(),
    # one queued behind it) and the two broken ones dead.
    gauges = {"good": (0, 0), "broken": (0, 2), "stuck": (2, 0), "flaky": (0, 0)}
    for out, (pending, dead) in gauges.items():
        h.check_eq(after.get("switchboard_deliveries_pending", output=out), float(pending),
                   "pending gauge of %s" % out)
        h.check_eq(after.get("switchboard_deliveries_dead", output=out), float(dead),
                   "dead gauge of %s" % out)
    stored = h.deliveries(ctx, srv.cfg_path)
    for out, (pending, dead) in gauges.items():
        states = [d["state"] for d in stored if d["output"] == out]
        h.check_eq((states.count("pending"), states.count("dead")), (pending, dead),
                   "`events` agrees with the gauges for %s" % out)

    for out, n in (("good", 3), ("flaky", 6), ("broken", 0), ("stuck", 0)):
        check_delta(before, after, n, "switchboard_delivery_latency_seconds_count", output=out)
        check_delta(before, after, n, "switchboard_delivery_latency_seconds_bucket",
                    output=out, le="+Inf")
    # Final outcomes: 3 good and 2 broken in one attempt, 6 flaky in two.
    check_delta(before, after, 11, "switchboard_delivery_attempts_count")
    check_delta(before, after, 3 + 2 + 12, "switchboard_delivery_attempts_sum")
    check_delta(before, after, 5, "switchboard_delivery_attempts_bucket", le="1")
    check_delta(before, after, 11, "switchboard_delivery_attempts_bucket", le="2")
    # Every write committed: 6 events, 3 + 2 + 12 outcomes (stuck's none).
    check_delta(before, after, 6 + 3 + 2 + 12, "switchboard_spool_commit_writes_sum")
    commits = delta(before, after, "switchboard_spool_commit_seconds_count")
    h.check(1 <= commits <= 23, "spool commits for 23 writes: %r" % commits)
    check_delta(before, after, commits, "switchboard_spool_commit_writes_count")
    h.check(delta(before, after, "switchboard_spool_commit_seconds_sum") > 0,
            "commits take some time")
    # Latency is from receipt: positive, and far below the case's own length.
    lat = delta(before, after, "switchboard_delivery_latency_seconds_sum", output="good")
    h.check(0 <= lat < 3 * SETTLE_TIMEOUT, "latency sum of good: %r s" % lat)


def case_reload_keeps_counting(ctx):
    """SIGHUP: rules and outputs that keep their name keep their counts."""
    cfg = metrics_config(ctx)
    srv = ctx.server(cfg)
    renamed = json.loads(json.dumps(cfg))  # same listeners and spool
    renamed["rules"][0]["name"] = "urgent_calls"
    srv.post_ok(h.load_example("inbound_end_of_call"))
    srv.post_ok(h.load_example("lead_update"))
    first = wait_scrape(srv, "good delivered once",
                        lambda s: s.get("switchboard_deliveries_total", output="good",
                                        result="delivered") >= 1)
    reloads = srv.stderr().count("config reloaded")
    ctx.write_config(renamed, os.path.basename(srv.cfg_path))
    os.kill(srv.pid, signal.SIGHUP)
    h.wait_for("the reload to be logged",
               lambda: srv.stderr().count("config reloaded") > reloads, timeout=10)
    srv.post_ok(h.load_example("inbound_end_of_call"))
    after = wait_scrape(srv, "good delivered twice",
                        lambda s: s.get("switchboard_deliveries_total", output="good",
                                        result="delivered") >= 2)
    check_delta(first, after, 1, "switchboard_deliveries_total", output="good",
                result="delivered")
    h.check_eq(after.get("switchboard_rule_matches_total", rule="everything"), 3.0,
               "matches of a rule kept across the reload")
    h.check_eq(after.get("switchboard_rule_matches_total", rule="calls"), 1.0,
               "a renamed rule's old name keeps its count")
    h.check_eq(after.get("switchboard_rule_matches_total", rule="urgent_calls"), 1.0,
               "the new name counts from 0")
    h.check_eq(after.get("switchboard_events_received_total", event_type="inbound_end_of_call"),
               2.0, "received across the reload")


def case_admin_methods(ctx):
    """GET and HEAD /metrics answer; other methods and longer paths do not."""
    srv = ctx.server(metrics_config(ctx))
    reply = h.request(srv.admin_port, "POST", path="/metrics", body="x", secret=None)
    h.check_eq(reply.status, 405, "POST /metrics")
    h.check_eq(srv.admin("/metrics/extra").status, 404, "GET /metrics/extra")
    head = h.request(srv.admin_port, "HEAD", path="/metrics", secret=None)
    h.check_eq(head.status, 200, "HEAD /metrics")


CASES = [
    ("/metrics: format, families, types, build info, zeros at start", case_format),
    ("/metrics: counters move by exactly what was posted; no secret or phone leaks",
     case_counts_move_exactly),
    ("/metrics: delivery outcomes, backlog gauges and histograms after delivery",
     case_deliveries_and_backlog),
    ("/metrics: a reload keeps counting for names it keeps", case_reload_keeps_counting),
    ("/metrics: methods and paths on the admin listener", case_admin_methods),
]

if __name__ == "__main__":
    h.main(CASES)
