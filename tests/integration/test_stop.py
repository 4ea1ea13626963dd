# SPDX-License-Identifier: MIT
"""SIGTERM under load: every request that got a 200 is stored, deliveries
under way finish or stay pending, and serve exits 0 within its grace."""

import os
import signal
import threading
import time

import harness as h


def case_sigterm_under_load_keeps_every_200(ctx):
    folder = ctx.path("plugins")
    os.makedirs(folder)
    os.symlink(os.path.join(h.test_plugins_dir(), "testout.so"),
               os.path.join(folder, "testout.so"))
    cfg = ctx.config(plugins={"dir": folder},
                     # Slow deliveries: some are under way when the signal comes.
                     outputs={"rec": {"plugin": "testout", "path": ctx.path("rec.jsonl"),
                                      "mode": "stall", "stall_for": "300ms"}},
                     rules=[{"name": "all", "send": ["rec"]}])
    srv = ctx.server(cfg)
    accepted = []
    other = []
    lock = threading.Lock()
    stop = threading.Event()

    def poster():
        while not stop.is_set():
            try:
                reply = srv.post(h.load_example("inbound_end_of_call"))
            except OSError:
                return  # the listener closed: the server is stopping
            with lock:
                if reply.status == 200:
                    accepted.append(reply.json()["id"])
                else:
                    other.append(reply.status)

    threads = [threading.Thread(target=poster) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    rc = srv.wait_exit(30.0)
    took = time.monotonic() - started
    stop.set()
    for t in threads:
        t.join(timeout=15)
    h.check(rc is not None, "serve still running 30 s after SIGTERM")
    h.check_eq(rc, 0, "exit status after SIGTERM under load")
    h.check(took < 26.0, "stopping took %.1fs; the graces are 15 s and 10 s" % took)
    h.check(accepted, "no request was answered 200 before the stop")
    stored = {e["id"]: e for e in h.events_json(ctx, srv.cfg_path)}
    missing = [i for i in accepted if i not in stored]
    h.check(not missing, "%d events answered 200 are not stored" % len(missing))
    states = [d["state"] for e in stored.values() for d in e["deliveries"]]
    h.check(all(s in ("pending", "delivered") for s in states), "states %r" % set(states))
    h.check(set(other) <= {503}, "answers other than 200 and 503: %r" % sorted(set(other)))
    ctx.note("%d answered 200 before the stop, all stored; %d delivered, %d pending; stopped "
             "in %.1fs" % (len(accepted), states.count("delivered"), states.count("pending"), took))


CASES = [
    ("SIGTERM under load: every 200 is stored, exit 0 within the grace",
     case_sigterm_under_load_keeps_every_200),
]

if __name__ == "__main__":
    h.main(CASES)
