# SPDX-License-Identifier: MIT
"""kill -9 at a random instant loses no acknowledged event (SPEC section 6).

Eight clients post as fast as they can while the server is SIGKILLed at a
random moment; after a restart on the same spool, every id that was answered
200 must be listed. Several rounds share one spool, so recovery of a spool
that was itself recovered is exercised too.
"""

import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

ROUNDS = 6
CLIENTS = 8
KILL_AFTER = (0.3, 1.5)      # seconds of load before the SIGKILL
BUDGET = 55.0                # the whole test, so it never eats the suite's time


class Load:
    """CLIENTS threads posting numbered events and recording every acknowledged id."""

    def __init__(self, port, round_no):
        self.port = port
        self.round_no = round_no
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acked = {}
        self.errors = 0
        self.bad = []
        self.threads = [threading.Thread(target=self.client, args=(n,), daemon=True)
                        for n in range(CLIENTS)]

    def client(self, n):
        """Post until told to stop; a refused connection just means the server is gone."""
        seq = 0
        while not self.stop.is_set():
            event = {"event_type": "lead_update",
                     "payload": {"round": self.round_no, "client": n, "seq": seq,
                                 "status": "contacted"}}
            seq += 1
            try:
                reply = h.post_event(self.port, event, timeout=5.0)
            except OSError:
                with self.lock:
                    self.errors += 1
                time.sleep(0.01)
                continue
            with self.lock:
                if reply.status == 200:
                    self.acked[reply.json()["id"]] = (n, seq - 1)
                else:
                    self.bad.append(reply.status)

    def start(self):
        for t in self.threads:
            t.start()

    def finish(self):
        """Stop the clients; an in-flight request ends with the dead server's socket."""
        self.stop.set()
        for t in self.threads:
            t.join(timeout=6.0)
        h.check(not any(t.is_alive() for t in self.threads), "a client thread is stuck")


def one_round(ctx, srv, round_no, rng, earlier):
    """Load, kill -9 mid-flight, restart, and compare acknowledged with listed ids.

    earlier holds the ids acknowledged in previous rounds: recovering this
    round's spool must not lose theirs either.
    """
    load = Load(srv.port, round_no)
    load.start()
    delay = rng.uniform(*KILL_AFTER)
    time.sleep(delay)
    srv.kill()
    load.finish()
    h.check(not load.bad, "round %d: non-200 answers under load: %r"
            % (round_no, sorted(set(load.bad))))
    h.check(load.acked, "round %d: no event acknowledged in %.2fs" % (round_no, delay))
    srv.start()
    listed = h.listed_ids(ctx, srv.cfg_path)
    missing = set(load.acked) - listed
    h.check(not missing, "round %d (kill after %.2fs): %d of %d acknowledged ids lost, e.g. %r"
            % (round_no, delay, len(missing), len(load.acked), sorted(missing)[:5]))
    missing = earlier - listed
    h.check(not missing, "round %d: %d ids acknowledged in earlier rounds lost, e.g. %r"
            % (round_no, len(missing), sorted(missing)[:5]))
    return set(load.acked), delay


def case_kill9_loses_nothing(ctx):
    """ROUNDS rounds of load + SIGKILL + restart on one spool; no acknowledged id lost."""
    seed = int(os.environ.get("SB_ITEST_SEED", time.time_ns() % 1000000))
    rng = random.Random(seed)
    ctx.note("seed %d (set SB_ITEST_SEED to repeat)" % seed)
    srv = ctx.server()
    started = time.monotonic()
    all_acked = set()
    for round_no in range(ROUNDS):
        acked, delay = one_round(ctx, srv, round_no, rng, all_acked)
        all_acked |= acked
        ctx.note("round %d: killed after %.2fs, %d acknowledged, all listed"
                 % (round_no, delay, len(acked)))
    h.check_eq(srv.stop(), 0, "exit code after SIGTERM")
    ctx.note("%d events acknowledged in %.1fs" % (len(all_acked), time.monotonic() - started))


CASES = [
    ("SIGKILL under load loses no acknowledged event (%d rounds)" % ROUNDS,
     case_kill9_loses_nothing),
]

if __name__ == "__main__":
    h.main(CASES, timeout=BUDGET)
