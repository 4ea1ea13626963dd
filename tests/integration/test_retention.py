# SPDX-License-Identifier: MIT
"""spool.retention: finished events are purged after it, and not before.

Events have no deliveries yet, so every stored event counts as finished. A
purge with the wrong unit would either keep the spool growing forever or
delete events the operator still expects to see; both directions are tested.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

PURGE_WITHIN = 5.0           # seconds after restart for the purge to have run


def post_some(srv, n=3):
    """Post n events and return their ids."""
    return [srv.post_ok({"event_type": "form_opened", "payload": {"n": i}}) for i in range(n)]


def restart_after(srv, pause):
    """Stop cleanly, let time pass with the server down, start again on the same spool."""
    h.check_eq(srv.stop(), 0, "exit code after SIGTERM")
    time.sleep(pause)
    srv.start()


def wait_listed(ctx, srv, ids, want_present, within):
    """Poll `events` until every id is (or none is) listed; fail after within seconds."""
    deadline = time.monotonic() + within
    while True:
        listed = h.listed_ids(ctx, srv.cfg_path)
        present = set(ids) & listed
        done = present == set(ids) if want_present else not present
        if done:
            return
        if time.monotonic() > deadline:
            h.fail("after %.0fs, %d of %d events still %s"
                   % (within, len(set(ids) - present) if want_present else len(present),
                      len(ids), "missing" if want_present else "listed"))
        time.sleep(0.25)


def case_short_retention_purges(ctx):
    """retention: 1s; events 1.5 s old are purged once the server is back."""
    srv = ctx.server(ctx.config(spool={"path": ctx.path("var", "spool.db"), "retention": "1s"}))
    ids = post_some(srv)
    restart_after(srv, 1.5)
    wait_listed(ctx, srv, ids, want_present=False, within=PURGE_WITHIN)


def case_new_events_not_purged_early(ctx):
    """retention: 1s does not purge an event the moment it arrives."""
    srv = ctx.server(ctx.config(spool={"path": ctx.path("var", "spool.db"), "retention": "1s"}))
    event_id = srv.post_ok({"event_type": "form_sent", "payload": {}})
    h.check(event_id in h.listed_ids(ctx, srv.cfg_path), "event purged right after arriving")


def case_long_retention_keeps(ctx):
    """retention: 7d; the same pause and restart keep every event."""
    srv = ctx.server(ctx.config(spool={"path": ctx.path("var", "spool.db"), "retention": "7d"}))
    ids = post_some(srv)
    restart_after(srv, 1.5)
    time.sleep(1.0)  # give a purge that would wrongly run at start-up time to do so
    wait_listed(ctx, srv, ids, want_present=True, within=0.0)


CASES = [
    ("retention 1s: events are purged after a restart", case_short_retention_purges),
    ("retention 1s: a fresh event is still listed", case_new_events_not_purged_early),
    ("retention 7d: events survive a restart", case_long_retention_keeps),
]

if __name__ == "__main__":
    h.main(CASES)
