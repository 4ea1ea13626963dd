# SPDX-License-Identifier: MIT
"""SIGHUP reload: the new config is built whole beside the running one and
swapped in one step, or refused with its errors while the old one serves.

Each case runs the real binary with testout outputs (tests/plugins/testout.c)
whose `lifecycle` file says when an instance was created and destroyed.
"""

import os
import signal
import threading
import time

import harness as h


def plugin_dir(ctx):
    """plugins.dir holding testout (a test plugin) and the real file plugin."""
    folder = ctx.path("plugins")
    os.makedirs(folder, exist_ok=True)
    for name, src in (("testout", h.test_plugins_dir()), ("file", h.plugins_dir())):
        link = os.path.join(folder, name + ".so")
        if not os.path.exists(link):
            os.symlink(os.path.join(src, name + ".so"), link)
    return folder


def base_config(ctx, rules, outputs=None):
    cfg = ctx.config(
        plugins={"dir": plugin_dir(ctx)},
        outputs=outputs or {
            "a": {"plugin": "testout", "path": ctx.path("a.jsonl"),
                  "lifecycle": ctx.path("life.txt")},
            "b": {"plugin": "testout", "path": ctx.path("b.jsonl"),
                  "lifecycle": ctx.path("life.txt")},
        },
        rules=rules)
    return cfg


def lifecycle(ctx):
    return h.read_text(ctx.path("life.txt")).split("\n")[:-1] \
        if os.path.exists(ctx.path("life.txt")) else []


def reload(srv, ctx, cfg, expect):
    """Write `cfg` over the server's config, SIGHUP it, and wait for `expect` in its log."""
    before = srv.stderr().count(expect)
    with open(srv.cfg_path, "w") as f:
        f.write(h.to_yaml(cfg) if isinstance(cfg, dict) else cfg)
    os.kill(srv.pid, signal.SIGHUP)
    h.wait_for("%r logged after SIGHUP" % expect,
               lambda: srv.stderr().count(expect) > before, timeout=15)


def delivered_to(ctx, name):
    return [r["event_id"] for r in h.read_jsonl(ctx.path(name + ".jsonl"))
            if r.get("result") == "delivered"]


def case_new_rule_applies_to_next_event(ctx):
    cfg = base_config(ctx, [{"name": "to-a", "send": ["a"]}])
    srv = ctx.server(cfg)
    first = srv.post_ok(h.load_example("form_sent"))
    h.wait_for("first event delivered to a", lambda: first in delivered_to(ctx, "a"))

    cfg["rules"] = [{"name": "to-b", "send": ["b"]}]
    reload(srv, ctx, cfg, 'msg="config reloaded"')
    second = srv.post_ok(h.load_example("form_sent"))
    h.wait_for("second event delivered to b", lambda: second in delivered_to(ctx, "b"))
    h.check(second not in delivered_to(ctx, "a"), "the old rule still sent to a")
    h.check_eq(srv.stop(), 0, "exit code after SIGTERM")
    # Neither output changed: both instances lived through the reload.
    h.check_eq(sorted(lifecycle(ctx)), ["created a", "created b", "destroyed a", "destroyed b"],
               "instances created and destroyed once each")


def case_broken_rule_keeps_the_old_rules(ctx):
    cfg = base_config(ctx, [{"name": "to-a", "send": ["a"]}])
    srv = ctx.server(cfg)
    text = h.to_yaml(cfg).replace("rules:", "rules:\n  - name: broken\n"
                                  "    match: { payload.x: { greater: 3 } }\n"
                                  "    send: [ a ]", 1)
    reload(srv, ctx, text, 'msg="the new config is not used; still serving with the old one"')
    log = srv.stderr()
    h.check('unknown key \\"greater\\"' in log and srv.cfg_path in log,
            "the refusal names the mistake and the file:\n" + h.tail(log))
    event = srv.post_ok(h.load_example("form_sent"))
    h.wait_for("event delivered by the old rule", lambda: event in delivered_to(ctx, "a"))
    h.check_eq(srv.stop(), 0, "exit code after SIGTERM")


def case_restart_only_keys_are_refused(ctx):
    cfg = base_config(ctx, [{"name": "to-a", "send": ["a"]}])
    srv = ctx.server(cfg)
    moved = dict(cfg, listen="127.0.0.1:%d" % h.free_port())
    moved["spool"] = {"path": ctx.path("var", "other.db")}
    reload(srv, ctx, moved, 'msg="the new config is not used; still serving with the old one"')
    log = srv.stderr()
    h.check("listen changed; that needs a restart" in log, "listen change named:\n" + h.tail(log))
    h.check("spool.path changed; that needs a restart" in log, "spool change named")
    srv.post_ok(h.load_example("form_sent"))  # still on the old port
    h.check_eq(srv.stop(), 0, "exit code after SIGTERM")


def case_changed_and_removed_outputs(ctx):
    cfg = base_config(ctx, [{"name": "both", "send": ["a", "b"]}])
    srv = ctx.server(cfg)
    srv.post_ok(h.load_example("form_sent"))
    h.wait_for("both delivered", lambda: delivered_to(ctx, "a") and delivered_to(ctx, "b"))

    # a changes (a new retry policy), b goes away, c is new.
    cfg["outputs"]["a"]["retry"] = {"max_attempts": 3, "initial": "100ms",
                                    "max_delay": "1s", "max_age": "1h"}
    cfg["outputs"].pop("b")
    cfg["outputs"]["c"] = {"plugin": "testout", "path": ctx.path("c.jsonl"),
                           "lifecycle": ctx.path("life.txt")}
    cfg["rules"] = [{"name": "both", "send": ["a", "c"]}]
    reload(srv, ctx, cfg, 'msg="config reloaded"')
    h.check_eq(sorted(lifecycle(ctx)),
               ["created a", "created a", "created b", "created c", "destroyed a", "destroyed b"],
               "a recreated, b destroyed, c created")
    event = srv.post_ok(h.load_example("form_sent"))
    h.wait_for("the new event reaches a and c",
               lambda: event in delivered_to(ctx, "a") and event in delivered_to(ctx, "c"))
    h.check_eq(srv.stop(), 0, "exit code after SIGTERM")
    h.check_eq(sorted(lifecycle(ctx)),
               ["created a", "created a", "created b", "created c",
                "destroyed a", "destroyed a", "destroyed b", "destroyed c"],
               "every instance destroyed exactly once")


def case_reload_under_load_loses_nothing(ctx):
    cfg = base_config(ctx, [{"name": "to-a", "send": ["a"]}])
    srv = ctx.server(cfg)
    stop = threading.Event()
    results = []
    lock = threading.Lock()

    def poster():
        while not stop.is_set():
            reply = srv.post(h.load_example("inbound_end_of_call"))
            with lock:
                results.append(reply.status)

    threads = [threading.Thread(target=poster) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(6):
            time.sleep(0.3)
            cfg["rules"] = [{"name": "to-a-%d" % i, "send": ["a"]}] if i % 2 else \
                [{"name": "to-b-%d" % i, "send": ["b"]}]
            reload(srv, ctx, cfg, 'msg="config reloaded"')
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
    h.check(results, "no request was made")
    h.check_eq(sorted(set(results)), [200], "every answer during reloads")
    stored = h.wait_for("every stored event delivered", lambda: (
        lambda evs: evs if all(d["state"] == "delivered" for e in evs
                               for d in e["deliveries"]) else None)(
        h.events_json(ctx, srv.cfg_path)), timeout=20)
    h.check_eq(len(stored), len(results), "events stored for the 200s")
    h.check(all(len(e["deliveries"]) == 1 for e in stored), "each event has its one delivery")
    ctx.note("%d events over 6 reloads, all answered 200, all delivered" % len(results))
    h.check_eq(srv.stop(), 0, "exit code after SIGTERM")


def case_throttles_survive_a_reload(ctx):
    """A throttled rule that a reload leaves as it was keeps the keys it holds."""
    throttled = {"name": "urgent", "throttle": {"key": "{{payload.caller_phone_number}}",
                                                "per": "10m"}, "send": ["a"]}
    cfg = base_config(ctx, [throttled])
    srv = ctx.server(cfg)
    call = h.load_example("inbound_end_of_call")
    first = srv.post_ok(call)
    h.wait_for("the first call delivered", lambda: first in delivered_to(ctx, "a"))

    cfg["rules"] = [throttled, {"name": "also", "send": ["b"]}]
    reload(srv, ctx, cfg, 'msg="config reloaded"')
    again = srv.post_ok(call)
    h.wait_for("the repeat reaches b", lambda: again in delivered_to(ctx, "b"))
    stored = {e["id"]: e for e in h.events_json(ctx, srv.cfg_path)}
    h.check_eq([d["output"] for d in stored[again]["deliveries"]], ["b"],
               "the repeat call within 10m, after the reload, is throttled for a")

    # A different window is a different throttle: it starts afresh.
    cfg["rules"] = [dict(throttled, throttle={"key": "{{payload.caller_phone_number}}",
                                              "per": "20m"})]
    reload(srv, ctx, cfg, 'msg="config reloaded"')
    third = srv.post_ok(call)
    h.wait_for("with a new window the call sends again",
               lambda: third in delivered_to(ctx, "a"))
    h.check_eq(srv.stop(), 0, "exit code after SIGTERM")


def case_sighup_reopens_and_keeps_file_output(ctx):
    """logrotate's SIGHUP with an unchanged config: the file output reopens its path."""
    cfg = base_config(ctx, [{"name": "to-f", "send": ["f"]}],
                      outputs={"f": {"plugin": "file", "path": ctx.path("out.jsonl")}})
    srv = ctx.server(cfg)
    first = srv.post_ok(h.load_example("form_sent"))
    h.wait_for("first line", lambda: h.read_jsonl(ctx.path("out.jsonl")))
    os.rename(ctx.path("out.jsonl"), ctx.path("out.jsonl.1"))
    reload(srv, ctx, cfg, 'msg="config reloaded"')
    second = srv.post_ok(h.load_example("form_sent"))
    h.wait_for("second line in the fresh file",
               lambda: [r for r in h.read_jsonl(ctx.path("out.jsonl")) if r["id"] == second])
    h.check_eq([r["id"] for r in h.read_jsonl(ctx.path("out.jsonl.1"))], [first],
               "the rotated file keeps the first line only")
    h.check_eq(srv.stop(), 0, "exit code after SIGTERM")


CASES = [
    ("a reload with a new rule applies to the next event; instances kept",
     case_new_rule_applies_to_next_event),
    ("a reload with a broken rule is refused and the old rules keep serving",
     case_broken_rule_keeps_the_old_rules),
    ("listen and spool.path changes are refused as needing a restart",
     case_restart_only_keys_are_refused),
    ("a changed output gets a new instance, a removed one is destroyed, a new one created",
     case_changed_and_removed_outputs),
    ("reloads under load: every request answered 200, every event delivered",
     case_reload_under_load_loses_nothing),
    ("a throttle a reload leaves alone keeps its keys; a changed one starts afresh",
     case_throttles_survive_a_reload),
    ("SIGHUP after logrotate's mv: the file output writes a fresh file",
     case_sighup_reopens_and_keeps_file_output),
]

if __name__ == "__main__":
    h.main(CASES)
