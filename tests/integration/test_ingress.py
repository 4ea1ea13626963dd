# SPDX-License-Identifier: MIT
"""HTTP ingress: every row of SPEC section 6, against the real binary.

The sender never retries a non-2xx and gives up after 10 s, so each status
code here is a promise: 200 only for a stored event, a clear 4xx for a request
that can never succeed, and an answer even while other clients misbehave.
"""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

ROTATED = "sbitest-rotated-Mw7T2xQ9-next"
ROTATED_ENV = "SB_ITEST_FIRST"


def simple_event(event_type="inbound_end_of_call", **payload):
    """A small valid event."""
    return {"event_type": event_type, "payload": payload or {"n": 1}}


def check_json_error(reply, what):
    """A rejection must carry a JSON object with an error string, for the sender's logs."""
    doc = reply.json()
    h.check(isinstance(doc, dict) and isinstance(doc.get("error"), str) and doc["error"],
            "%s: body must be {\"error\": \"...\"}, got %r" % (what, reply.body))


def check_unauthorized(reply, what):
    """401 with a Bearer challenge, as RFC 6750 section 3 asks."""
    h.check_eq(reply.status, 401, what + ": status")
    challenge = reply.headers.get("www-authenticate", "")
    h.check(challenge.lower().startswith("bearer"),
            "%s: WWW-Authenticate must start with Bearer, got %r" % (what, challenge))


def case_valid_event_stored(ctx):
    """200 {"id"} and the id is then listed by `events` with its type and time."""
    srv = ctx.server()
    event = h.load_example("inbound_end_of_call")
    event_id = srv.post_ok(event)
    rows = {r["id"]: r for r in h.list_events(ctx, srv.cfg_path)}
    h.check(event_id in rows, "id %s not listed by events: %r" % (event_id, rows))
    row = rows[event_id]
    h.check_eq(row["event_type"], "inbound_end_of_call", "listed event_type")
    h.check(h.RFC3339_MS_UTC_RE.match(row["received_at"]),
            "received_at %r is not RFC 3339 UTC with ms" % row["received_at"])


def case_every_example_accepted(ctx):
    """Each sample in examples/ is a valid event that the router stores under its type."""
    srv = ctx.server()
    types = h.example_types()
    h.check(len(types) >= 8, "examples/ should hold the 8 known types, has %r" % types)
    sent = {srv.post_ok(h.load_example(t)): t for t in types}
    rows = {r["id"]: r["event_type"] for r in h.list_events(ctx, srv.cfg_path)}
    for event_id, event_type in sent.items():
        h.check_eq(rows.get(event_id), event_type, "listed type of %s" % event_id)


def case_unknown_type_accepted(ctx):
    """New event types may appear at any time (SPEC section 1) and must be stored."""
    srv = ctx.server()
    event_id = srv.post_ok(simple_event("appointment_rescheduled_v2", slot="tomorrow"))
    rows = {r["id"]: r["event_type"] for r in h.list_events(ctx, srv.cfg_path)}
    h.check_eq(rows.get(event_id), "appointment_rescheduled_v2", "listed type")


def case_payload_absent_accepted(ctx):
    """Only a payload that is present and not an object is invalid; none at all is fine."""
    srv = ctx.server()
    srv.post_ok({"event_type": "contact_exists"})


def case_missing_bearer_401(ctx):
    srv = ctx.server()
    check_unauthorized(srv.post(simple_event(), secret=None), "no Authorization")


def case_wrong_bearer_401(ctx):
    """Wrong secrets, including near misses a length-unaware compare might let through."""
    srv = ctx.server()
    for wrong in ["not-the-secret", h.SECRET + "x", h.SECRET[:-1], h.SECRET.upper(), ""]:
        check_unauthorized(srv.post(simple_event(), secret=wrong), "bearer %r" % wrong)


def case_wrong_scheme_401(ctx):
    """The right secret under another scheme is still not a bearer token."""
    srv = ctx.server()
    for value in ["Basic " + h.SECRET, "Token " + h.SECRET, h.SECRET]:
        reply = srv.post(simple_event(), secret=None, headers={"Authorization": value})
        check_unauthorized(reply, "Authorization %r" % value.replace(h.SECRET, "<secret>"))


def case_rejected_auth_not_stored(ctx):
    """A 401 must not leave an event behind."""
    srv = ctx.server()
    srv.post(simple_event(), secret="wrong")
    h.check_eq(h.list_events(ctx, srv.cfg_path), [], "events after a 401")


INVALID_BODIES = [
    ("not JSON", b"this is not json"),
    ("truncated JSON", b'{"event_type": "form_sent", "payload": {'),
    ("array", b'[{"event_type": "form_sent", "payload": {}}]'),
    ("string", b'"form_sent"'),
    ("event_type missing", b'{"payload": {"a": 1}}'),
    ("event_type empty", b'{"event_type": "", "payload": {}}'),
    ("event_type number", b'{"event_type": 42, "payload": {}}'),
    ("event_type null", b'{"event_type": null, "payload": {}}'),
    ("payload a string", b'{"event_type": "form_sent", "payload": "hello"}'),
    ("payload an array", b'{"event_type": "form_sent", "payload": [1, 2]}'),
    ("empty body", b""),
]


def case_invalid_bodies_400(ctx):
    """Each kind of invalid body gets 400 with a JSON error, and nothing is stored."""
    srv = ctx.server()
    for what, body in INVALID_BODIES:
        reply = srv.post(body)
        h.check_eq(reply.status, 400, "%s: status (body %r)" % (what, reply.body[:120]))
        check_json_error(reply, what)
    h.check_eq(h.list_events(ctx, srv.cfg_path), [], "events after only 400s")


def body_of_size(size):
    """A valid event whose JSON encoding is exactly size bytes."""
    base = {"event_type": "form_opened", "payload": {"pad": ""}}
    fill = size - len(json.dumps(base))
    h.check(fill >= 0, "size %d too small for an event" % size)
    base["payload"]["pad"] = "p" * fill
    data = json.dumps(base).encode()
    h.check_eq(len(data), size, "padded body length")
    return data


def case_body_at_limit_accepted(ctx):
    """max_body is inclusive: a body of exactly max_body bytes is accepted."""
    srv = ctx.server(ctx.config(max_body="1KiB"))
    srv.post_ok(body_of_size(1024))


def case_body_over_limit_413(ctx):
    """One byte over max_body is refused with 413."""
    srv = ctx.server(ctx.config(max_body="1KiB"))
    reply = srv.post(body_of_size(1025))
    h.check_eq(reply.status, 413, "status for 1025 bytes with max_body 1KiB")


def case_413_before_body(ctx):
    """413 comes back from the headers alone, without the server waiting for the body.

    A raw socket announces 10 MiB and sends nothing more; the answer must
    arrive anyway, quickly, so a flood of large bodies costs us no reading.
    """
    srv = ctx.server(ctx.config(max_body="256KiB"))
    sock = h.raw_connect(srv.port)
    try:
        head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % (h.WEBHOOK_PATH, h.SECRET, 10 * 1024 * 1024))
        sock.sendall(head.encode())
        status, data = h.read_status_line(sock, timeout=5.0)
    finally:
        sock.close()
    h.check_eq(status, 413, "status before any body byte was sent (got %r)" % data[:200])


def case_chunked_over_limit_refused(ctx):
    """A chunked body that grows past max_body is never accepted."""
    srv = ctx.server(ctx.config(max_body="1KiB"))
    sock = h.raw_connect(srv.port)
    try:
        head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                % (h.WEBHOOK_PATH, h.SECRET))
        body = body_of_size(4096)
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 512]), body[i:i + 512])
                          for i in range(0, len(body), 512))
        try:
            sock.sendall(head.encode() + chunks + b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, data = h.read_status_line(sock, timeout=5.0)
    finally:
        sock.close()
    h.check(status is None or status >= 400,
            "chunked 4 KiB body with max_body 1KiB answered %r" % data[:200])
    h.check_eq(h.list_events(ctx, srv.cfg_path), [], "events after oversized chunked body")


def case_other_method_405(ctx):
    """GET/PUT/DELETE on the webhook path: 405 with Allow: POST (RFC 9110 section 15.5.6)."""
    srv = ctx.server()
    for method in ["GET", "PUT", "DELETE"]:
        body = json.dumps(simple_event()) if method == "PUT" else None
        reply = h.request(srv.port, method, body=body)
        h.check_eq(reply.status, 405, method + " status")
        allow = reply.headers.get("allow", "")
        h.check("POST" in allow.upper(), "%s: Allow header should list POST, got %r"
                % (method, allow))


def case_other_path_404(ctx):
    """Any other path is 404, whatever the method and even with the right secret."""
    srv = ctx.server()
    for method, path in [("POST", "/other"), ("GET", "/"), ("POST", h.WEBHOOK_PATH + "/x")]:
        body = json.dumps(simple_event()) if method == "POST" else None
        reply = h.request(srv.port, method, path=path, body=body)
        h.check_eq(reply.status, 404, "%s %s status" % (method, path))
    h.check_eq(h.list_events(ctx, srv.cfg_path), [], "events after 404s")


def case_rotated_secrets(ctx):
    """Two bearer entries, one from ${VAR} and one from file:PATH; both are accepted.

    The file ends in a newline, as `echo` writes it; that newline is not part
    of the secret.
    """
    secret_file = ctx.write("next_secret", ROTATED + "\n")
    os.chmod(secret_file, 0o600)
    cfg = ctx.config(auth={"bearer": ["${%s}" % ROTATED_ENV, "file:" + secret_file]})
    srv = ctx.server(cfg, env=ctx.env(**{ROTATED_ENV: h.SECRET}))
    srv.post_ok(simple_event(), secret=h.SECRET)
    srv.post_ok(simple_event(), secret=ROTATED)
    check_unauthorized(srv.post(simple_event(), secret=ROTATED + "z"), "neither secret")


def hold_idle_connections(port):
    """Open connections that misbehave in each slow way; return them as (what, socket)."""
    idle = h.raw_connect(port)
    partial_head = h.raw_connect(port)
    partial_head.sendall(("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\n" % h.WEBHOOK_PATH).encode())
    partial_body = h.raw_connect(port)
    partial_body.sendall(("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                          "Content-Length: 200\r\n\r\n{\"event_type\": "
                          % (h.WEBHOOK_PATH, h.SECRET)).encode())
    return [("idle", idle), ("partial head", partial_head), ("partial body", partial_body)]


def case_idle_clients_cut_off(ctx):
    """Silent or stalled clients are closed by the server (contract: 10 s of inactivity).

    Meanwhile a well-behaved request is still answered 200: a stalled client
    must never hold up the sender's 10 s budget.
    """
    srv = ctx.server()
    socks = hold_idle_connections(srv.port)
    try:
        started = time.monotonic()
        srv.post_ok(simple_event(), timeout=5.0)
        deadline = started + 15.0
        results = {}
        threads = [threading.Thread(target=lambda w=w, s=s: results.__setitem__(
            w, h.read_until_closed(s, deadline)), daemon=True) for w, s in socks]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=16.0)
        for what, _ in socks:
            data, closed = results.get(what, (b"", False))
            h.check(closed, "%s connection still open after 15 s" % what)
            h.check(not data.startswith(b"HTTP/1.1 2"), "%s connection got %r" % (what, data))
        ctx.note("stalled connections closed after %.1fs" % (time.monotonic() - started))
        srv.post_ok(simple_event(), timeout=5.0)
    finally:
        for _, s in socks:
            s.close()


CASES = [
    ("valid event answered 200 {id} and listed by events", case_valid_event_stored),
    ("every sample in examples/ is accepted under its type", case_every_example_accepted),
    ("unknown event type is accepted", case_unknown_type_accepted),
    ("event without payload is accepted", case_payload_absent_accepted),
    ("missing Authorization gives 401 with WWW-Authenticate: Bearer", case_missing_bearer_401),
    ("wrong bearer secret gives 401", case_wrong_bearer_401),
    ("wrong auth scheme gives 401", case_wrong_scheme_401),
    ("a 401 stores nothing", case_rejected_auth_not_stored),
    ("invalid bodies give 400 with a JSON error", case_invalid_bodies_400),
    ("body of exactly max_body is accepted", case_body_at_limit_accepted),
    ("body one byte over max_body gives 413", case_body_over_limit_413),
    ("413 is answered from headers, before any body is sent", case_413_before_body),
    ("chunked body past max_body is refused", case_chunked_over_limit_refused),
    ("other methods on the path give 405 with Allow: POST", case_other_method_405),
    ("other paths give 404", case_other_path_404),
    ("rotated secrets from ${VAR} and file: are both accepted", case_rotated_secrets),
    ("idle and stalled clients are cut off; valid requests still served",
     case_idle_clients_cut_off),
]

if __name__ == "__main__":
    h.main(CASES)
