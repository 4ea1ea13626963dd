# SPDX-License-Identifier: MIT
"""The file output (plugins/file/file.c) as the real router drives it.

Each delivery appends one line: by default the event envelope
{"id","received_at","event_type","payload","rule"} as JSON, or a rule's
own `line:` template. The file is created 0600 with its missing folders;
`fsync` takes always, batch or never; SIGHUP after logrotate's `mv` makes
new lines go to a fresh file with nothing lost between the two; and
deliveries running at once never interleave their lines.
"""

import json
import os
import re
import signal
import stat
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

DELIVERY_TIMEOUT = 20.0
FAST_RETRY = {"initial": "50ms", "max_delay": "200ms", "max_attempts": 20}


def file_output(path, **keys):
    out = {"plugin": "file", "path": path, "retry": dict(FAST_RETRY)}
    out.update(keys)
    return out


def file_config(ctx, outputs, send=None, **overrides):
    """A config whose one rule, `archive`, sends every event to every output."""
    cfg = ctx.config(**overrides)
    cfg["plugins"] = {"dir": h.plugins_dir()}
    cfg["outputs"] = outputs
    cfg["rules"] = [{"name": "archive", "send": send or list(outputs)}]
    return cfg


def sample(n, **extra):
    """A small event whose payload says which one it is."""
    payload = {"n": n, "note": "caf\u00e9 \"quoted\" <tag> & \\ back\nslash"}
    payload.update(extra)
    return {"event_type": "file_test", "payload": payload}


def wait_lines(path, count, timeout=DELIVERY_TIMEOUT):
    """The JSON lines of path once there are at least count of them."""
    def enough():
        rows = h.read_jsonl(path)
        return rows if len(rows) >= count else None
    return h.wait_for("%d lines in %s" % (count, os.path.basename(path)), enough,
                      timeout=timeout)


def text_lines(path):
    """Complete lines of a text file (a last line still being written is left out)."""
    data = h.read_text(path)
    return data.split("\n")[:-1]


def wait_delivered(ctx, cfg_path, count, timeout=DELIVERY_TIMEOUT):
    """Every delivery stored, once count of them are delivered."""
    def settled():
        ds = h.deliveries(ctx, cfg_path)
        done = [d for d in ds if d["state"] == "delivered"]
        return ds if len(done) >= count else None
    return h.wait_for("%d deliveries delivered" % count, settled, timeout=timeout)


def case_default_line_is_the_envelope(ctx):
    path = ctx.path("archive.jsonl")
    cfg = file_config(ctx, {"archive": file_output(path)})
    srv = ctx.server(cfg)
    events = [sample(1), h.load_example("inbound_end_of_call"), sample(3, nested={"a": [1, 2.5]})]
    ids = [srv.post_ok(ev) for ev in events]
    rows = wait_lines(path, len(ids))
    h.check_eq(len(rows), len(ids), "lines in the file")
    stored = {ev["id"]: ev for ev in h.events_json(ctx, srv.cfg_path)}
    for ev_id, event, row in zip(ids, events, sorted(rows, key=lambda r: ids.index(r["id"]))):
        h.check_eq(sorted(row), ["event_type", "id", "payload", "received_at", "rule"],
                   "envelope keys")
        h.check_eq(row["id"], ev_id, "envelope id")
        h.check_eq(row["event_type"], event["event_type"], "envelope event_type")
        h.check_eq(row["payload"], event["payload"], "envelope payload")
        h.check_eq(row["rule"], "archive", "envelope rule")
        h.check(h.RFC3339_MS_UTC_RE.match(row["received_at"]),
                "received_at %r is not RFC 3339 UTC with ms" % row["received_at"])
        h.check_eq(row["received_at"], stored[ev_id]["received_at"],
                   "received_at against `events`")
    raw = text_lines(path)
    h.check(all("\n" not in ln and ln.startswith("{") for ln in raw),
            "every envelope is one line: %r" % raw[:3])
    wait_delivered(ctx, srv.cfg_path, len(ids))


def case_line_template_overrides(ctx):
    plain = ctx.path("plain.txt")
    cfg = file_config(
        ctx, {"plain": file_output(plain), "default": file_output(ctx.path("default.jsonl"))},
        send=[{"to": "plain", "line": "{{event_type}} n={{payload.n}} id={{event_id}} "
                                      "rule={{rule}}"}, "default"])
    srv = ctx.server(cfg)
    ids = [srv.post_ok(sample(n)) for n in (7, 8)]
    h.wait_for("2 lines in plain.txt", lambda: len(text_lines(plain)) >= 2,
               timeout=DELIVERY_TIMEOUT)
    want = sorted("file_test n=%d id=%s rule=archive" % (n, i) for n, i in zip((7, 8), ids))
    h.check_eq(sorted(text_lines(plain)), want, "lines from the send entry's template")
    rows = wait_lines(ctx.path("default.jsonl"), 2)
    h.check_eq(sorted(r["id"] for r in rows), sorted(ids),
               "the output without an override still writes envelopes")


def case_created_0600_with_parents(ctx):
    path = ctx.path("logs", "switchboard", "deep", "archive.jsonl")
    cfg = file_config(ctx, {"archive": file_output(path)})
    srv = h.Server(ctx, cfg)
    # umask 0: a mode that came from the umask rather than the plugin shows.
    srv.start(preexec_fn=lambda: os.umask(0))
    h.check(os.path.exists(path), "the file exists once serve has started")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    h.check_eq(oct(mode), oct(0o600), "mode of the created file")
    for folder in (ctx.path("logs"), ctx.path("logs", "switchboard"),
                   ctx.path("logs", "switchboard", "deep")):
        h.check(os.path.isdir(folder), "%s was created" % folder)
        h.check_eq(stat.S_IMODE(os.stat(folder).st_mode) & 0o077, 0,
                   "group/other bits of %s" % folder)
    ev_id = srv.post_ok(sample(1))
    h.check_eq([r["id"] for r in wait_lines(path, 1)], [ev_id], "the line written")


def case_fsync_modes(ctx):
    outputs = {mode: file_output(ctx.path(mode + ".jsonl"), fsync=mode)
               for mode in ("always", "batch", "never")}
    srv = ctx.server(file_config(ctx, outputs))
    ids = sorted(srv.post_ok(sample(n)) for n in range(5))
    for mode in outputs:
        rows = wait_lines(ctx.path(mode + ".jsonl"), len(ids))
        h.check_eq(sorted(r["id"] for r in rows), ids, "ids in %s.jsonl" % mode)
    ds = wait_delivered(ctx, srv.cfg_path, 3 * len(ids))
    h.check_eq(sorted({d["output"] for d in ds}), ["always", "batch", "never"],
               "outputs with deliveries")
    h.check(all(d["attempts"] == 1 for d in ds),
            "each line written at the first attempt: %r"
            % [d for d in ds if d["attempts"] != 1][:3])


def case_dev_null_is_not_synced(ctx):
    """A path that is no regular file (/dev/null) delivers, even with fsync: always."""
    outputs = {mode: file_output("/dev/null", fsync=mode) for mode in ("always", "batch")}
    srv = ctx.server(file_config(ctx, outputs))
    srv.post_ok(sample(1))
    ds = wait_delivered(ctx, srv.cfg_path, 2)
    h.check_eq(sorted((d["output"], d["state"], d["attempts"]) for d in ds),
               [("always", "delivered", 1), ("batch", "delivered", 1)],
               "deliveries to /dev/null")


def case_bad_fsync_word(ctx):
    lines = ctx.config(plugins={"dir": h.plugins_dir()})
    text = h.to_yaml(lines) + "\n" + (
        "outputs:\n"
        "  archive:\n"
        "    plugin: file\n"
        "    path: out.jsonl\n"
        "    fsync: sometimes\n")
    cfg_path = ctx.write_config(text)
    line = text.splitlines().index("    fsync: sometimes") + 1
    for cmd in ("check", "serve"):
        res = h.run_cli(ctx, [cmd, "-c", cfg_path])
        h.check_eq(res.returncode, 1, "%s exit code (stderr %r)" % (cmd, res.stderr))
        # The position names the key; the message need only give the words.
        m = re.search(r"switchboard\.yaml:(\d+):(\d+): [^\n]*always, batch or never",
                      res.stderr)
        h.check(m, "%s: no fsync error with its position and the words:\n%s"
                % (cmd, res.stderr))
        h.check_eq(int(m.group(1)), line, "%s: line of the fsync error" % cmd)
        h.check(int(m.group(2)) in (5, 12), "%s: column of the fsync error: %s"
                % (cmd, m.group(2)))
        h.check("sometimes" not in res.stderr, "%s quotes the value" % cmd)
    h.check(not os.path.exists(ctx.path("out.jsonl")), "a rejected config created the file")


def case_sighup_after_logrotate(ctx):
    path = ctx.path("out.jsonl")
    rotated = path + ".1"
    srv = ctx.server(file_config(ctx, {"archive": file_output(path)}))
    before = [srv.post_ok(sample(n)) for n in range(5)]
    wait_lines(path, len(before))

    # Posts keep coming while the file is moved and the router told.
    during = []
    stop = threading.Event()
    errors = []

    def keep_posting():
        n = 100
        while not stop.is_set():
            try:
                during.append(srv.post_ok(sample(n)))
            except Exception as exc:  # reported by the main thread
                errors.append(repr(exc))
                return
            n += 1

    poster = threading.Thread(target=keep_posting, daemon=True)
    poster.start()
    try:
        h.wait_for("posts while rotating", lambda: len(during) >= 5, timeout=10)
        os.rename(path, rotated)
        h.wait_for("posts into the moved file", lambda: len(during) >= 10, timeout=10)
        os.kill(srv.pid, signal.SIGHUP)
        h.wait_for("SIGHUP acknowledged in the log",
                   lambda: "SIGHUP" in srv.stderr(), timeout=10)
        # during[mark] may have been answered before SIGHUP was handled;
        # every post after it began later.
        mark = len(during) + 1
        h.wait_for("posts after SIGHUP", lambda: len(during) >= mark + 5, timeout=10)
    finally:
        stop.set()
        poster.join(timeout=15)
    h.check(not errors, "a post failed: %s" % errors[:1])
    after = [srv.post_ok(sample(n)) for n in range(1000, 1005)]
    every = before + during + after

    h.wait_for("every line in one file or the other",
               lambda: len(h.read_jsonl(path)) + len(h.read_jsonl(rotated)) >= len(every),
               timeout=DELIVERY_TIMEOUT)
    old = [r["id"] for r in h.read_jsonl(rotated)]
    new = [r["id"] for r in h.read_jsonl(path)]
    h.check_eq(len(old) + len(new), len(every), "lines across both files")
    h.check_eq(sorted(old + new), sorted(every), "ids across both files, each once")
    h.check(set(before) <= set(old), "lines from before the move stay in the moved file")
    h.check(set(after) <= set(new), "lines after SIGHUP go to the fresh file")
    h.check(set(during[mark:]) <= set(new),
            "posts accepted after SIGHUP was handled went to the moved file")
    h.check_eq(oct(stat.S_IMODE(os.stat(path).st_mode)), oct(0o600), "mode of the fresh file")
    h.check(re.search(r"reopened", srv.stderr()), "no `reopened` log line:\n%s"
            % h.tail(srv.stderr()))
    h.check_eq(srv.stop(), 0, "serve exit code")


def case_concurrent_posts_whole_lines(ctx):
    path = ctx.path("out.jsonl")
    total, threads = 300, 16
    cfg = file_config(ctx, {"archive": file_output(path, concurrency=16)})
    srv = ctx.server(cfg)
    ids = []
    errors = []
    lock = threading.Lock()
    # A payload of a few KiB, varied per event, makes a torn write visible.
    pad = "x" * 3000

    def worker(k):
        for n in range(k, total, threads):
            try:
                ev_id = srv.post_ok(sample(n, pad=pad[: 1000 + (n * 37) % 2000]))
            except Exception as exc:  # reported by the main thread
                with lock:
                    errors.append(repr(exc))
                return
            with lock:
                ids.append(ev_id)

    pool = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=45)
    h.check(not errors, "posts failed: %s" % errors[:3])
    h.check_eq(len(ids), total, "events accepted")
    h.wait_for("%d lines" % total, lambda: len(text_lines(path)) >= total,
               timeout=DELIVERY_TIMEOUT)
    raw = text_lines(path)
    h.check_eq(len(raw), total, "lines in the file")
    seen = []
    for i, line in enumerate(raw):
        try:
            row = json.loads(line)
        except ValueError:
            h.fail("line %d is not one whole JSON envelope: %r" % (i + 1, line[:120]))
        h.check_eq(len(row["payload"]["pad"]), 1000 + (row["payload"]["n"] * 37) % 2000,
                   "pad length of line %d" % (i + 1))
        seen.append(row["id"])
    h.check_eq(sorted(seen), sorted(ids), "one line per event, each once")
    h.check(h.read_text(path).endswith("\n"), "the file ends with a whole line")
    ds = wait_delivered(ctx, srv.cfg_path, total, timeout=DELIVERY_TIMEOUT)
    h.check_eq(len(ds), total, "deliveries stored")


CASES = [
    ("default line: the envelope {id, received_at, event_type, payload, rule}",
     case_default_line_is_the_envelope),
    ("a send entry's line: template replaces the envelope", case_line_template_overrides),
    ("the file is created 0600, its missing folders too", case_created_0600_with_parents),
    ("fsync: always, batch and never all write every line", case_fsync_modes),
    ("/dev/null as path: delivered at once, fsync or not", case_dev_null_is_not_synced),
    ("fsync: a bad word is an error at its file:line:col", case_bad_fsync_word),
    ("SIGHUP after mv (logrotate): a fresh file, nothing lost", case_sighup_after_logrotate),
    ("300 posts on 16 threads: one whole line per event", case_concurrent_posts_whole_lines),
]

if __name__ == "__main__":
    h.main(CASES)
