# SPDX-License-Identifier: MIT
"""A spool that cannot grow: 503, never a 2xx that is not stored, and recovery.

The disk is made "full" by capping the server's file size (RLIMIT_FSIZE) on
the running process: SQLite's writes past the cap fail with EFBIG, which the
server sees exactly as it would see ENOSPC. The cap is applied once the server
is listening, so start-up (schema, WAL creation) never depends on its value,
and lifted on the same process to show it recovers without a restart.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

LIMIT = 1024 * 1024          # bytes any one spool file may reach while "full"
PAD = 48 * 1024              # report text per event, so the cap is reached in ~20 posts
MAX_POSTS = 200              # bound: the cap must bite long before this
POSTS_AFTER_503 = 8          # keep posting after the first 503 to catch a late 2xx
RECOVER_WITHIN = 5.0         # seconds after lifting the cap for a post to succeed again


def big_event(seq):
    """An inbound call whose long report makes the spool grow fast."""
    event = h.load_example("inbound_end_of_call")
    event["payload"]["short_report"] = ("seq %06d " % seq) + "r" * PAD
    event["payload"]["seq"] = seq
    return event


def fill_until_503(srv):
    """Post until the spool refuses; return (acked ids, statuses in order).

    Every answer must be 200 or 503: anything else tells the sender something
    false (a 4xx says "never retry this", a 5xx other than 503 hides the cause).
    """
    acked, statuses, first_503 = [], [], None
    for seq in range(MAX_POSTS):
        reply = srv.post(big_event(seq))
        statuses.append(reply.status)
        if reply.status == 200:
            acked.append(reply.json()["id"])
        elif reply.status == 503:
            doc = reply.json()
            h.check(isinstance(doc, dict) and isinstance(doc.get("error"), str),
                    "503 body must be {\"error\": ...}, got %r" % reply.body)
            first_503 = seq if first_503 is None else first_503
        else:
            h.fail("post %d with the spool full: expected 200 or 503, got %r" % (seq, reply))
        if first_503 is not None and seq >= first_503 + POSTS_AFTER_503:
            break
    h.check(first_503 is not None, "no 503 after %d posts of %d KiB under a %d KiB file cap"
            % (MAX_POSTS, PAD // 1024, LIMIT // 1024))
    return acked, statuses


def full_server(ctx):
    """A running server whose spool files may not grow past LIMIT."""
    srv = ctx.server()
    h.limit_file_size(srv.pid, LIMIT)
    return srv


def case_503_and_nothing_lost(ctx):
    """Once the spool is full: 503, no 2xx while it stays full, every 200 kept.

    The acknowledged events are checked while the server runs and again after
    a SIGKILL, since a full disk must not turn an acknowledged event into a
    lost one at the next crash either.
    """
    srv = full_server(ctx)
    acked, statuses = fill_until_503(srv)
    first = statuses.index(503)
    ctx.note("%d accepted before the first 503; statuses after it: %r"
             % (len(acked), statuses[first:]))
    h.check(200 not in statuses[first:],
            "a 2xx came after the first 503 while the disk stayed full: %r" % statuses[first:])
    h.check(srv.alive(), "server died on a full disk:\n" + h.tail(srv.stderr()))
    missing = set(acked) - h.listed_ids(ctx, srv.cfg_path)
    h.check(not missing, "acknowledged but not listed (server running): %r" % sorted(missing))
    srv.kill()
    missing = set(acked) - h.listed_ids(ctx, srv.cfg_path)
    h.check(not missing, "acknowledged but not listed (after SIGKILL): %r" % sorted(missing))


def post_until_200(srv, within):
    """Post small events until one is accepted or `within` seconds pass; return its id.

    A server may need a moment to notice the disk has room again; 503s in
    between are honest answers, only the eventual recovery is required.
    """
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        last = srv.post(h.load_example("contact_updated"))
        if last.status == 200:
            return last.json()["id"]
        h.check(last.status == 503, "while recovering: expected 200 or 503, got %r" % last)
        time.sleep(0.2)
    h.fail("no 200 within %.0fs of lifting the file-size cap; last answer %r" % (within, last))


def case_recovers_when_space_returns(ctx):
    """Lifting the cap on the running process makes posts succeed again, and they are kept."""
    srv = full_server(ctx)
    acked, _ = fill_until_503(srv)
    h.lift_file_size(srv.pid)
    acked.append(post_until_200(srv, RECOVER_WITHIN))
    acked.append(srv.post_ok(big_event(MAX_POSTS + 1)))
    missing = set(acked) - h.listed_ids(ctx, srv.cfg_path)
    h.check(not missing, "acknowledged but not listed: %r" % sorted(missing))
    h.check_eq(srv.stop(), 0, "exit code after SIGTERM")


CASES = [
    ("full spool: 503, no 2xx after it, every 200 kept", case_503_and_nothing_lost),
    ("full spool: recovers once the disk has room again", case_recovers_when_space_returns),
]

if __name__ == "__main__":
    h.main(CASES)
