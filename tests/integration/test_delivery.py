# SPDX-License-Identifier: MIT
"""The delivery engine (SPEC §7): retries, backoff, dead letters, replay, isolation.

The testout plugin (tests/plugins/testout.c) answers as its config tells it:
delivered, retry (optionally with a Retry-After), failed, or it stalls inside
deliver(). It appends one JSON line when an attempt starts and one when it
answers, each with a wall-clock `t_ms`, so a case can read what the router
did and when. The real `file` plugin stands in where a case needs to see
lines arrive from an output that works.

Timing checks are bounds, never exact values: the scheduler looks for due
deliveries every 100 ms, and a loaded 2-core machine adds more.
"""

import json
import os
import re
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

# Scheduling slack on top of a computed delay: the 100 ms poll, the
# commit of the outcome, a busy machine.
SLACK_MS = 400
# testout and the shared clock both write whole milliseconds.
CLOCK_SLACK_MS = 50
SETTLE_TIMEOUT = 15.0
# A delivery that must stay pending while a case looks at it.
NEVER_AGAIN = {"initial": "1h", "max_delay": "1h", "max_attempts": 100}
DELIVERY_KEYS = {"id", "output", "rule", "state", "attempts", "next_at", "last_error"}
ENVELOPE_KEYS = ["id", "received_at", "event_type", "payload", "rule"]


# --------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------

def plugin_dir(ctx):
    """One folder with testout and file: plugins.dir names a single folder."""
    path = ctx.path("plugins")
    if not os.path.isdir(path):
        os.makedirs(path)
        for src, name in ((h.test_plugins_dir(), "testout"), (h.plugins_dir(), "file")):
            os.symlink(os.path.join(src, name + ".so"), os.path.join(path, name + ".so"))
    return path


def delivery_config(ctx, outputs, rules=None):
    """A config with the given outputs; by default every event goes to each of them."""
    cfg = ctx.config()
    cfg["plugins"] = {"dir": plugin_dir(ctx)}
    cfg["log_level"] = "debug"
    cfg["outputs"] = outputs
    cfg["rules"] = rules or [{"name": "everything", "send": list(outputs)}]
    return cfg


def testout(ctx, name, retry=None, **keys):
    """A testout output recording into NAME.jsonl in the case's folder."""
    out = {"plugin": "testout", "path": ctx.path(name + ".jsonl")}
    out.update(keys)
    if retry:
        out["retry"] = retry
    return out


def file_output(ctx, name):
    return {"plugin": "file", "path": ctx.path(name + ".jsonl")}


def restart(ctx, srv, cfg, name):
    """Stop srv (which must exit 0) and start cfg on the same spool with a new port."""
    h.check_eq(srv.stop(), 0, "exit code after SIGTERM")
    cfg["listen"] = "127.0.0.1:%d" % h.free_port()
    return h.Server(ctx, cfg, name=name).start()


def event(n, event_type="test_delivery"):
    return {"event_type": event_type, "payload": {"n": n}}


# --------------------------------------------------------------------------
# Reading what happened
# --------------------------------------------------------------------------

def record(ctx, name):
    """The testout record NAME.jsonl: one dict per attempt start and per answer."""
    return h.read_jsonl(ctx.path(name + ".jsonl"))


def attempts_of(records):
    """{delivery_id: {attempt: {"start": t_ms, "end": t_ms, "result": word}}}."""
    out = {}
    for r in records:
        a = out.setdefault(r["delivery_id"], {}).setdefault(r["attempt"], {})
        key = "start" if r["result"] == "start" else "end"
        h.check(key not in a, "delivery %d attempt %d has two %s records: a delivery is "
                "never attempted twice at once" % (r["delivery_id"], r["attempt"], key))
        a[key] = r["t_ms"]
        if key == "end":
            a["result"] = r["result"]
    return out


def gaps(attempts):
    """[(n, ms)]: from attempt n's answer to attempt n+1's start, for one delivery."""
    out = []
    for n in sorted(attempts):
        if n + 1 in attempts and "end" in attempts[n] and "start" in attempts[n + 1]:
            out.append((n, attempts[n + 1]["start"] - attempts[n]["end"]))
    return out


def full_jitter_cap(n, initial_ms, max_delay_ms):
    """The largest delay full jitter may pick after attempt n."""
    return min(max_delay_ms, initial_ms * 2 ** (n - 1))


def by_output(ctx, srv, *args):
    """{output: [delivery, ...]} over every stored delivery (events --json ARGS)."""
    out = {}
    for d in h.deliveries(ctx, srv.cfg_path, *args):
        out.setdefault(d["output"], []).append(d)
    return out


def wait_settled(ctx, srv, count, timeout=SETTLE_TIMEOUT):
    """Every delivery once `count` exist and none is pending; fails with the log's tail."""
    def done():
        got = h.deliveries(ctx, srv.cfg_path)
        if len(got) == count and all(d["state"] != "pending" for d in got):
            return got
        return None
    try:
        return h.wait_for("%d deliveries settled" % count, done, timeout=timeout)
    except h.CaseFailure as exc:
        h.fail("%s\nstored: %r\nserver stderr:\n%s" % (
            exc, h.deliveries(ctx, srv.cfg_path), h.tail(srv.stderr())))


def replay(ctx, srv, *args):
    """`switchboard replay ARGS`; returns how many it said it re-queued."""
    res = h.run_cli(ctx, ["replay", "-c", srv.cfg_path] + list(args))
    h.check_eq(res.returncode, 0, "replay %s exit code (stderr %r)" % (" ".join(args),
                                                                        res.stderr))
    m = re.match(r"^(\d+) dead deliveries re-queued\n$", res.stdout)
    h.check(m, "replay %s printed %r" % (" ".join(args), res.stdout))
    return int(m.group(1))


def line_ids(ctx, name):
    """Event ids of the envelope lines a file output wrote to NAME.jsonl."""
    return {line["id"] for line in h.read_jsonl(ctx.path(name + ".jsonl"))}


def rfc3339_ms(epoch_ms):
    secs, ms = divmod(int(epoch_ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + ".%03dZ" % ms


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------

def case_retried_then_delivered(ctx):
    """retry three times, then delivered: four attempts in order, jittered gaps."""
    initial, max_delay = 200, 2000
    cfg = delivery_config(ctx, {"flaky": testout(
        ctx, "flaky", mode="retry", retries=3, error="HTTP 503",
        retry={"initial": "200ms", "max_delay": "2s"})})
    srv = ctx.server(cfg)
    event_id = srv.post_ok(event(1))
    got = wait_settled(ctx, srv, 1)
    d = got[0]
    h.check_eq((d["state"], d["attempts"], d["last_error"]), ("delivered", 4, None),
               "state, attempts and last_error")

    recs = record(ctx, "flaky")
    h.check_eq([(r["attempt"], r["result"]) for r in recs],
               [(1, "start"), (1, "retry"), (2, "start"), (2, "retry"),
                (3, "start"), (3, "retry"), (4, "start"), (4, "delivered")],
               "the record's attempts")
    h.check(all(r["event_id"] == event_id and r["delivery_id"] == d["id"] for r in recs),
            "every attempt carries the event id and the same delivery id: %r" % recs)
    steps = gaps(attempts_of(recs)[d["id"]])
    h.check_eq([n for n, _ in steps], [1, 2, 3], "gaps measured")
    for n, gap in steps:
        cap = full_jitter_cap(n, initial, max_delay)
        h.check(-CLOCK_SLACK_MS <= gap <= cap + SLACK_MS,
                "gap after attempt %d is %d ms; full jitter allows [0, %d] (+%d ms slack)"
                % (n, gap, cap, SLACK_MS))
    ctx.note("gaps (ms): %s" % ", ".join(str(g) for _, g in steps))


def case_jitter_spreads_and_backoff_grows(ctx):
    """20 deliveries retried 4 times: every gap within its cap, later gaps longer."""
    initial, max_delay, retries, count = 100, 2000, 4, 20
    cfg = delivery_config(ctx, {"flaky": testout(
        ctx, "flaky", mode="retry", retries=retries,
        retry={"initial": "100ms", "max_delay": "2s"})})
    srv = ctx.server(cfg)
    for n in range(count):
        srv.post_ok(event(n))
    got = wait_settled(ctx, srv, count, timeout=30.0)
    h.check(all((d["state"], d["attempts"]) == ("delivered", retries + 1) for d in got),
            "every delivery delivered on attempt %d: %r" % (retries + 1, got))

    per_n = {n: [] for n in range(1, retries + 1)}
    for delivery_id, attempts in attempts_of(record(ctx, "flaky")).items():
        steps = gaps(attempts)
        h.check_eq([n for n, _ in steps], list(range(1, retries + 1)),
                   "gaps of delivery %d" % delivery_id)
        for n, gap in steps:
            cap = full_jitter_cap(n, initial, max_delay)
            h.check(-CLOCK_SLACK_MS <= gap <= cap + SLACK_MS,
                    "delivery %d: gap after attempt %d is %d ms; cap %d ms (+%d slack)"
                    % (delivery_id, n, gap, cap, SLACK_MS))
            per_n[n].append(gap)
    means = {n: statistics.mean(v) for n, v in per_n.items()}
    ctx.note("mean gap after attempt n (ms): %s" % ", ".join(
        "%d: %.0f" % (n, m) for n, m in sorted(means.items())))
    # Expected means are about 50, 100, 200 and 400 ms plus the poll's
    # ~50: the first and last differ by far more than their spread.
    h.check(means[retries] > means[1] + 100,
            "backoff grows: the mean gap after attempt %d (%.0f ms) should exceed the "
            "first's (%.0f ms) clearly" % (retries, means[retries], means[1]))
    early = statistics.mean(per_n[1] + per_n[2])
    late = statistics.mean(per_n[3] + per_n[4])
    h.check(late > early, "later gaps (mean %.0f ms) longer than earlier ones (%.0f ms)"
            % (late, early))
    # Full jitter spreads retries: uniform on [0, 800] has a 231 ms spread.
    spread = statistics.pstdev(per_n[retries])
    h.check(spread > 50, "gaps after attempt %d are spread out (stdev %.0f ms): %r"
            % (retries, spread, per_n[retries]))


def case_failed_is_dead_at_once(ctx):
    cfg = delivery_config(ctx, {"picky": testout(
        ctx, "picky", mode="fail", error="HTTP 422 unprocessable",
        retry={"initial": "50ms", "max_delay": "100ms"})})
    srv = ctx.server(cfg)
    srv.post_ok(event(1))
    d = wait_settled(ctx, srv, 1)[0]
    h.check_eq((d["state"], d["attempts"], d["last_error"]),
               ("dead", 1, "HTTP 422 unprocessable"), "state, attempts and last_error")
    # Dead is final: nothing due is left to attempt again.
    h.check_eq([(r["attempt"], r["result"]) for r in record(ctx, "picky")],
               [(1, "start"), (1, "failed")], "the record's attempts")
    h.check("delivery dead" in srv.stderr(), "a dead delivery is logged")


def case_retry_after_honoured_and_capped(ctx):
    """Retry-After 1.5 s waits 1.5 s; 5 s against max_delay 300 ms waits 300 ms."""
    cfg = delivery_config(ctx, {
        "polite": testout(ctx, "polite", mode="retry", retries=1, retry_after="1500ms",
                          retry={"initial": "50ms", "max_delay": "5s"}),
        "capped": testout(ctx, "capped", mode="retry", retries=1, retry_after="5s",
                          retry={"initial": "50ms", "max_delay": "300ms"}),
    })
    srv = ctx.server(cfg)
    srv.post_ok(event(1))
    got = wait_settled(ctx, srv, 2)
    h.check(all((d["state"], d["attempts"]) == ("delivered", 2) for d in got),
            "both delivered on the second attempt: %r" % got)

    (polite,) = attempts_of(record(ctx, "polite")).values()
    gap = polite[2]["start"] - polite[1]["end"]
    ctx.note("Retry-After 1500 ms: second attempt %d ms after the first answered" % gap)
    h.check(1500 - CLOCK_SLACK_MS <= gap < 2500,
            "Retry-After 1500 ms: the second attempt began %d ms after the first answered"
            % gap)

    (capped,) = attempts_of(record(ctx, "capped")).values()
    gap = capped[2]["start"] - capped[1]["end"]
    ctx.note("Retry-After 5 s, max_delay 300 ms: second attempt after %d ms" % gap)
    h.check(300 - CLOCK_SLACK_MS <= gap <= 300 + SLACK_MS,
            "Retry-After 5 s is capped at max_delay 300 ms; the gap was %d ms" % gap)


def case_max_attempts_ends_dead(ctx):
    cfg = delivery_config(ctx, {"down": testout(
        ctx, "down", mode="retry", error="connection refused",
        retry={"max_attempts": 3, "initial": "50ms", "max_delay": "100ms"})})
    srv = ctx.server(cfg)
    srv.post_ok(event(1))
    d = wait_settled(ctx, srv, 1)[0]
    h.check_eq((d["state"], d["attempts"]), ("dead", 3), "state and attempts")
    h.check("gave up after 3 attempts" in (d["last_error"] or ""),
            "last_error says why: %r" % d["last_error"])
    h.check((d["last_error"] or "").startswith("connection refused"),
            "last_error keeps the plugin's error: %r" % d["last_error"])
    h.check_eq([r["attempt"] for r in record(ctx, "down") if r["result"] == "start"],
               [1, 2, 3], "attempts started")


def case_max_age_ends_dead(ctx):
    cfg = delivery_config(ctx, {"down": testout(
        ctx, "down", mode="retry",
        retry={"max_age": "1s", "initial": "300ms", "max_delay": "5s"})})
    srv = ctx.server(cfg)
    started = time.monotonic()
    srv.post_ok(event(1))
    d = wait_settled(ctx, srv, 1, timeout=4.0)
    took = time.monotonic() - started
    d = d[0]
    h.check_eq(d["state"], "dead", "state")
    h.check("max_age" in (d["last_error"] or ""), "last_error names max_age: %r"
            % d["last_error"])
    h.check(1 <= d["attempts"] < 12, "max_age, not max_attempts (12), ended it: %d attempts"
            % d["attempts"])
    starts = [r["t_ms"] for r in record(ctx, "down") if r["result"] == "start"]
    h.check_eq(len(starts), d["attempts"], "attempts recorded")
    h.check(starts[-1] - starts[0] <= 1000 + SLACK_MS,
            "no attempt starts past max_age: the last began %d ms after the first"
            % (starts[-1] - starts[0]))
    ctx.note("dead after %d attempts, %.1fs after the POST" % (d["attempts"], took))


def case_replay(ctx):
    """Dead deliveries re-queued by id, output and time while serve runs."""
    outputs = {"a": testout(ctx, "a", mode="fail", error="HTTP 400"),
               "b": testout(ctx, "b", mode="fail", error="HTTP 400")}
    cfg = delivery_config(ctx, outputs)
    srv = ctx.server(cfg)
    ids = [srv.post_ok(event(n)) for n in range(3)]
    got = wait_settled(ctx, srv, 6)
    h.check(all(d["state"] == "dead" for d in got), "all dead: %r" % got)

    for out in outputs.values():
        out["mode"] = "deliver"
    srv = restart(ctx, srv, cfg, "fixed")
    dead = by_output(ctx, srv, "--state", "dead")
    h.check_eq({k: len(v) for k, v in dead.items()}, {"a": 3, "b": 3},
               "dead deliveries after the restart")

    first = [d for d in dead["a"] if d["event_id"] == ids[0]][0]
    h.check_eq(replay(ctx, srv, "--id", str(first["id"])), 1, "replay --id")
    h.wait_for("replayed delivery %d delivered" % first["id"], lambda: [
        d for d in h.deliveries(ctx, srv.cfg_path, "--state", "delivered")
        if d["id"] == first["id"] and d["attempts"] == 1])
    h.check_eq(len(h.deliveries(ctx, srv.cfg_path, "--state", "dead")), 5,
               "the other dead deliveries stay dead")
    h.check_eq([(r["event_id"], r["attempt"], r["result"]) for r in record(ctx, "a")
                if r["result"] != "start"][-1], (ids[0], 1, "delivered"),
               "the replayed attempt is attempt 1 again")

    h.check_eq(replay(ctx, srv, "--output", "b"), 3, "replay --output b")
    h.wait_for("b's deliveries delivered", lambda: len(h.deliveries(
        ctx, srv.cfg_path, "--state", "delivered", "--output", "b")) == 3)
    h.check_eq(replay(ctx, srv, "--since", "1h"), 2, "replay --since 1h")
    wait_settled(ctx, srv, 6)
    h.check(all(d["state"] == "delivered" for d in h.deliveries(ctx, srv.cfg_path)),
            "every delivery delivered after the replays")
    h.check_eq(replay(ctx, srv, "--output", "a"), 0, "replay with nothing dead")

    res = h.run_cli(ctx, ["replay", "-c", srv.cfg_path])
    h.check_eq(res.returncode, 1, "replay without a selector: exit code")
    h.check("--id" in res.stderr and "--output" in res.stderr,
            "replay without a selector says what it needs: %r" % res.stderr)


def case_stalled_output_does_not_delay_another(ctx):
    """A stuck for 10 s while B delivers every event within 2 s; SIGTERM still exits."""
    cfg = delivery_config(ctx, {"stuck": testout(ctx, "stuck", mode="stall"),
                                "archive": file_output(ctx, "archive")})
    srv = ctx.server(cfg)
    ids = []
    stuck_since = None
    slowest_post = slowest_line = 0.0
    pending = []
    while True:
        began = time.monotonic()
        event_id = srv.post_ok(event(len(ids)))
        answered = time.monotonic()
        ids.append(event_id)
        h.wait_for("archive line of event %d within 2 s of its 200" % len(ids),
                   lambda: event_id in line_ids(ctx, "archive"), timeout=2.0, interval=0.02)
        slowest_post = max(slowest_post, answered - began)
        slowest_line = max(slowest_line, time.monotonic() - answered)
        if stuck_since is None:
            h.wait_for("the stuck output began an attempt",
                       lambda: record(ctx, "stuck"), timeout=2.0)
            stuck_since = time.monotonic()
        if len(ids) % 7 == 0:
            pending.append(len(h.deliveries(ctx, srv.cfg_path, "--state", "pending",
                                            "--output", "stuck")))
        if time.monotonic() - stuck_since >= 10.5 and len(ids) >= 20:
            break
        h.wait_for("the next event's turn", lambda: time.monotonic() >= began + 0.5,
                   timeout=2.0, interval=0.01)
    ctx.note("%d events over %.1fs of stall; slowest 200 %.3fs, slowest archive line %.3fs"
             % (len(ids), time.monotonic() - stuck_since, slowest_post, slowest_line))
    h.check(slowest_post < 2.0, "ingestion answered within 2 s (slowest %.3fs)" % slowest_post)
    stuck = record(ctx, "stuck")
    h.check(stuck and all(r["result"] == "start" for r in stuck),
            "the stuck output never answered: %r" % stuck[:3])
    h.check(len(pending) >= 2 and pending == sorted(set(pending)),
            "the stuck output's pending count grows: %r" % pending)
    h.check_eq(len(h.deliveries(ctx, srv.cfg_path, "--state", "pending", "--output",
                                "stuck")), len(ids), "the stuck output's pending deliveries")

    stopping = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    rc = srv.wait_exit(25.0)
    h.check(rc is not None, "serve exits after SIGTERM with a stuck deliver(); stderr:\n%s"
            % h.tail(srv.stderr()))
    ctx.note("serve exited %.1fs after SIGTERM" % (time.monotonic() - stopping))
    h.check_eq(rc, 0, "exit code after SIGTERM")
    h.check("abandoned=" in srv.stderr(), "the abandoned attempts are logged:\n%s"
            % h.tail(srv.stderr(), 5))
    states = {(d["output"], d["state"]) for d in h.deliveries(ctx, srv.cfg_path)}
    h.check_eq(states, {("stuck", "pending"), ("archive", "delivered")},
               "stored states after the stop")
    h.check_eq(len(h.deliveries(ctx, srv.cfg_path, "--state", "pending")), len(ids),
               "every stuck delivery stays pending in the spool")


def case_kill_during_attempts(ctx):
    """kill -9 with attempts inside deliver(): after a restart each event is delivered."""
    outputs = {"slow": testout(ctx, "slow", mode="stall", stall_for="2s")}
    cfg = delivery_config(ctx, outputs)
    srv = ctx.server(cfg)
    ids = [srv.post_ok(event(n)) for n in range(8)]
    h.wait_for("four attempts under way", lambda: len(record(ctx, "slow")) >= 4, timeout=5.0)
    srv.kill()
    before = record(ctx, "slow")
    answered = {r["delivery_id"] for r in before if r["result"] != "start"}
    in_flight = {r["event_id"] for r in before
                 if r["result"] == "start" and r["delivery_id"] not in answered}
    h.check(in_flight, "attempts were in flight at the kill: %r" % before)

    outputs["slow"] = testout(ctx, "after", mode="deliver")
    cfg["listen"] = "127.0.0.1:%d" % h.free_port()
    srv = h.Server(ctx, cfg, name="restarted").start()
    got = wait_settled(ctx, srv, len(ids))
    h.check(all(d["state"] == "delivered" for d in got), "all delivered: %r" % got)
    delivered = {r["event_id"] for r in before + record(ctx, "after")
                 if r["result"] == "delivered"}
    h.check_eq(sorted(set(ids) - delivered), [], "events never delivered")
    again = {r["event_id"] for r in record(ctx, "after") if r["result"] == "delivered"}
    h.check_eq(sorted(in_flight - again), [],
               "attempts cut off by the kill were made again after the restart")
    ctx.note("%d attempts in flight at the kill" % len(in_flight))


def case_events_filters(ctx):
    cfg = delivery_config(ctx, {
        "ok": testout(ctx, "ok"),
        "bad": testout(ctx, "bad", mode="fail", error="HTTP 410"),
        "later": testout(ctx, "later", mode="retry", retry=NEVER_AGAIN),
    })
    srv = ctx.server(cfg)
    early = [srv.post_ok(event(n)) for n in range(2)]
    mark_ms = int(time.time() * 1000) + 1
    h.wait_for("the clock passes the mark", lambda: time.time() * 1000 > mark_ms + 5,
               timeout=1.0, interval=0.005)
    late = [srv.post_ok(event(n)) for n in range(2, 4)]
    newest_first = list(reversed(early + late))
    h.wait_for("ok delivered, bad dead, later tried", lambda: (
        len(h.deliveries(ctx, srv.cfg_path, "--state", "delivered")) == 4 and
        len(h.deliveries(ctx, srv.cfg_path, "--state", "dead")) == 4 and
        len({r["event_id"] for r in record(ctx, "later")}) == 4), timeout=SETTLE_TIMEOUT)

    every = h.events_json(ctx, srv.cfg_path)
    h.check_eq([e["id"] for e in every], newest_first, "events, newest first")
    for e in every:
        h.check_eq(set(e), {"id", "received_at", "event_type", "deliveries"}, "event keys")
        h.check(h.RFC3339_MS_UTC_RE.match(e["received_at"]), "received_at %r"
                % e["received_at"])
        h.check_eq(e["event_type"], "test_delivery", "event_type")
        h.check_eq(sorted(d["output"] for d in e["deliveries"]), ["bad", "later", "ok"],
                   "deliveries of %s" % e["id"])
        for d in e["deliveries"]:
            h.check_eq(set(d), DELIVERY_KEYS, "delivery keys")
            h.check(isinstance(d["id"], int) and isinstance(d["attempts"], int),
                    "id and attempts are numbers: %r" % d)
            h.check(h.RFC3339_MS_UTC_RE.match(d["next_at"]), "next_at %r" % d["next_at"])
            h.check_eq(d["rule"], "everything", "rule")

    def shown(*args):
        """[(event id, [(output, state)])] for events ARGS."""
        return [(e["id"], [(d["output"], d["state"]) for d in e["deliveries"]])
                for e in h.events_json(ctx, srv.cfg_path, *args)]

    h.check_eq(shown("--state", "delivered"),
               [(i, [("ok", "delivered")]) for i in newest_first], "--state delivered")
    h.check_eq(shown("--state", "dead"),
               [(i, [("bad", "dead")]) for i in newest_first], "--state dead")
    h.check(all(d["last_error"] == "HTTP 410"
                for d in h.deliveries(ctx, srv.cfg_path, "--state", "dead")),
            "dead deliveries keep the plugin's error")
    h.check_eq(shown("--state", "pending", "--output", "later"),
               [(i, [("later", "pending")]) for i in newest_first],
               "--state pending --output later")
    h.check_eq(shown("--state", "pending", "--output", "ok"), [],
               "--state pending --output ok")
    h.check_eq(shown("--output", "bad"), [(i, [("bad", "dead")]) for i in newest_first],
               "--output bad")

    mark = rfc3339_ms(mark_ms)
    h.check_eq([e[0] for e in shown("--since", mark)], newest_first[:2],
               "--since %s" % mark)
    h.check_eq([e[0] for e in shown("--until", mark)], newest_first[2:],
               "--until %s" % mark)
    local = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(mark_ms // 1000 + 7200))
    offset = "%s.%03d+02:00" % (local, mark_ms % 1000)
    h.check_eq([e[0] for e in shown("--since", offset)], newest_first[:2],
               "--since %s (an offset)" % offset)
    h.check_eq([e[0] for e in shown("--since", "1h")], newest_first, "--since 1h")
    posted_ms = time.time() * 1000
    h.wait_for("half a second passes", lambda: time.time() * 1000 > posted_ms + 500,
               timeout=2.0, interval=0.01)
    h.check_eq(shown("--since", "100ms"), [], "--since 100ms, half a second later")

    res = h.run_cli(ctx, ["events", "-c", srv.cfg_path, "--json", "--limit", "2"])
    h.check_eq(res.returncode, 0, "events --limit 2 exit code")
    h.check_eq([json.loads(line)["id"] for line in res.stdout.splitlines()],
               newest_first[:2], "--limit 2")
    res = h.run_cli(ctx, ["events", "-c", srv.cfg_path, "--json", "--limit", "1",
                          "--state", "dead"])
    h.check_eq([json.loads(line)["id"] for line in res.stdout.splitlines()],
               newest_first[:1], "--limit 1 --state dead")

    res = h.run_cli(ctx, ["events", "-c", srv.cfg_path, "--state", "bogus"])
    h.check_eq(res.returncode, 1, "events --state bogus: exit code")
    h.check("--state needs pending, delivered or dead" in res.stderr,
            "events --state bogus says what it takes: %r" % res.stderr)
    h.check_eq(res.stdout, "", "events --state bogus lists nothing")


def case_fields_rendered_at_routing(ctx):
    """The plugin gets the fields rendered at ingest, and the envelope for a null one."""
    outputs = {"chat": testout(ctx, "chat", mode="fail"),
               "archive": file_output(ctx, "archive")}
    rules = [{"name": "notes", "send": [
        {"to": "chat", "text": "note {{payload.note}} #{{payload.n}}"}, "archive"]}]
    cfg = delivery_config(ctx, outputs, rules)
    srv = ctx.server(cfg)
    payload = {"note": "<b>& \"quoted\"", "n": 7, "nested": {"a": [1, None, 2.5]}}
    event_id = srv.post_ok({"event_type": "form_signed", "payload": payload})
    wait_settled(ctx, srv, 2)

    # A later template (and a now-working chat) must not change what was routed.
    rules[0]["send"][0]["text"] = "CHANGED {{payload.n}}"
    outputs["chat"]["mode"] = "deliver"
    srv = restart(ctx, srv, cfg, "changed")
    h.check_eq(replay(ctx, srv, "--output", "chat"), 1, "replay --output chat")
    wait_settled(ctx, srv, 2)
    stored = {d["output"]: d for d in h.deliveries(ctx, srv.cfg_path, "--fields")}
    h.check_eq(stored["chat"]["fields"],
               {"text": "note <b>& \"quoted\" #7", "subject": "[t] form_signed",
                "body": None, "line": None}, "stored fields of chat")
    received_at = h.events_json(ctx, srv.cfg_path)[0]["received_at"]

    sent = [r for r in record(ctx, "chat") if r["result"] == "delivered"]
    h.check_eq(len(sent), 1, "chat deliveries")
    got = sent[0]
    h.check_eq((got["event_id"], got["event_type"], got["rule"]),
               (event_id, "form_signed", "notes"), "what chat's plugin was told")
    h.check_eq(got["fields"]["text"], "note <b>& \"quoted\" #7",
               "the text rendered at routing")
    h.check_eq(got["fields"]["subject"], "[t] form_signed", "a default field")
    want = {"id": event_id, "received_at": received_at, "event_type": "form_signed",
            "payload": payload, "rule": "notes"}
    for name in ("body", "line"):
        envelope = json.loads(got["fields"][name], object_pairs_hook=list)
        h.check_eq([k for k, _ in envelope], ENVELOPE_KEYS, "envelope keys of %s" % name)
        h.check_eq(json.loads(got["fields"][name]), want, "the envelope in %s" % name)

    lines = h.read_jsonl(ctx.path("archive.jsonl"))
    h.check_eq(lines, [want], "the file output's default line")
    with open(ctx.path("archive.jsonl"), encoding="utf-8") as f:
        text = f.read()
    h.check_eq([k for k, _ in json.loads(text, object_pairs_hook=list)], ENVELOPE_KEYS,
               "the file line's key order")


CASES = [
    ("retry 3 times then delivered: attempts 1..4 in order, gaps within full jitter",
     case_retried_then_delivered),
    ("20 deliveries retried: every gap within its cap, backoff grows, jitter spreads",
     case_jitter_spreads_and_backoff_grows),
    ("failed: dead after 1 attempt with the plugin's error", case_failed_is_dead_at_once),
    ("Retry-After is waited for, and capped at max_delay",
     case_retry_after_honoured_and_capped),
    ("max_attempts 3: dead, 'gave up after 3 attempts'", case_max_attempts_ends_dead),
    ("max_age 1s: dead within it, last_error names max_age", case_max_age_ends_dead),
    ("replay by --id, --output and --since while serving; no selector exits 1",
     case_replay),
    ("an output stuck 10 s does not delay another, nor ingestion; SIGTERM exits 0",
     case_stalled_output_does_not_delay_another),
    ("kill -9 during attempts: every event delivered after the restart",
     case_kill_during_attempts),
    ("events filters: --state, --output, --since, --until, --limit, --json",
     case_events_filters),
    ("fields rendered at routing reach the plugin; a null field is the envelope",
     case_fields_rendered_at_routing),
]

if __name__ == "__main__":
    h.main(CASES)
