# SPDX-License-Identifier: MIT
"""The admin listener: /healthz, /readyz and nothing else by accident.

A load balancer takes an instance out of rotation on a failing /readyz and
sends it no traffic until it passes again, so /readyz must recover on its own
once the spool can write, without needing a request to prove it.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

LIMIT = 1024 * 1024          # file-size cap that makes the spool "full" (see test_disk_full)
PAD = 48 * 1024
MAX_POSTS = 200
READY_WITHIN = 10.0          # seconds for /readyz to follow the spool's state


def admin_server(ctx):
    """A server with an admin listener on its own loopback port."""
    return ctx.server(ctx.config(admin={"listen": "127.0.0.1:%d" % h.free_port()}))


def case_healthz(ctx):
    srv = admin_server(ctx)
    reply = srv.admin("/healthz")
    h.check_eq(reply.status, 200, "/healthz status")
    h.check(b"ok" in reply.body.lower(), "/healthz body should say ok, got %r" % reply.body)


def case_readyz_healthy(ctx):
    srv = admin_server(ctx)
    h.check_eq(srv.admin("/readyz").status, 200, "/readyz status on a healthy server")


def case_unknown_admin_path(ctx):
    """Unknown admin paths are 404, and the webhook is not reachable through admin."""
    srv = admin_server(ctx)
    for path in ["/nope", "/healthz/extra", h.WEBHOOK_PATH]:
        h.check_eq(srv.admin(path).status, 404, "GET %s on admin" % path)


def wait_readyz(srv, want, within):
    """Poll /readyz until it answers want; fail with the last answer after within seconds."""
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        last = srv.admin("/readyz", timeout=5.0)
        if last.status == want:
            return time.monotonic() - (deadline - within)
        time.sleep(0.2)
    h.fail("/readyz did not become %d within %.0fs; last %r" % (want, within, last))


def fill_spool(srv):
    """Post large events until the capped spool answers 503."""
    for seq in range(MAX_POSTS):
        event = h.load_example("inbound_end_of_call")
        event["payload"]["short_report"] = "r" * PAD
        event["payload"]["seq"] = seq
        status = srv.post(event).status
        if status == 503:
            return seq
        h.check_eq(status, 200, "post %d while filling the spool" % seq)
    h.fail("no 503 after %d large posts under a %d KiB cap" % (MAX_POSTS, LIMIT // 1024))


def case_readyz_follows_spool(ctx):
    """/readyz: 503 while the spool cannot write, 200 again once it can, with no traffic."""
    srv = admin_server(ctx)
    h.limit_file_size(srv.pid, LIMIT)
    fill_spool(srv)
    took = wait_readyz(srv, 503, READY_WITHIN)
    ctx.note("/readyz 503 %.1fs after the first 503 on ingress" % took)
    h.check_eq(srv.admin("/healthz").status, 200, "/healthz while the spool is full")
    h.lift_file_size(srv.pid)
    took = wait_readyz(srv, 200, READY_WITHIN)
    ctx.note("/readyz 200 %.1fs after lifting the cap" % took)
    srv.post_ok(h.load_example("form_submitted"))


CASES = [
    ("/healthz answers 200 ok", case_healthz),
    ("/readyz answers 200 when healthy", case_readyz_healthy),
    ("unknown admin paths give 404", case_unknown_admin_path),
    ("/readyz is 503 while the spool cannot write and 200 after", case_readyz_follows_spool),
]

if __name__ == "__main__":
    h.main(CASES)
