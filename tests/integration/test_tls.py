# SPDX-License-Identifier: MIT
"""TLS on the ingress listener.

The sender only knows one HTTPS URL, so with `tls:` configured the listener
must speak TLS, store what arrives over it, and never answer a plain-text
request as if it had been accepted.
"""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402


def make_cert(ctx):
    """A throwaway self-signed certificate and key in the case's temp dir."""
    cert, key = ctx.path("tls.crt"), ctx.path("tls.key")
    try:
        res = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                              "-days", "1", "-subj", "/CN=127.0.0.1",
                              "-keyout", key, "-out", cert],
                             capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        h.fail("openssl is not installed; it is needed to make the test certificate")
    h.check(res.returncode == 0, "openssl req failed:\n" + h.tail(res.stderr))
    return cert, key


def tls_server(ctx):
    """A server with TLS on its ingress listener."""
    cert, key = make_cert(ctx)
    return ctx.server(ctx.config(tls={"cert": cert, "key": key}))


def case_https_post_accepted(ctx):
    """An event posted over HTTPS gets 200 and is stored."""
    srv = tls_server(ctx)
    event_id = srv.post_ok(h.load_example("form_signed"), tls=True)
    rows = {r["id"]: r["event_type"] for r in h.list_events(ctx, srv.cfg_path)}
    h.check_eq(rows.get(event_id), "form_signed", "listed type of the HTTPS event")


def case_https_auth_enforced(ctx):
    """TLS does not replace the bearer check."""
    srv = tls_server(ctx)
    reply = srv.post(h.load_example("form_signed"), tls=True, secret="wrong")
    h.check_eq(reply.status, 401, "status with a wrong secret over HTTPS")


def case_plain_http_refused(ctx):
    """Plain HTTP to the TLS port is never answered 200, and stores nothing."""
    srv = tls_server(ctx)
    sock = h.raw_connect(srv.port)
    try:
        body = b'{"event_type": "form_sent", "payload": {}}'
        head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % (h.WEBHOOK_PATH, h.SECRET, len(body)))
        try:
            sock.sendall(head.encode() + body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, data = h.read_status_line(sock, timeout=5.0)
    finally:
        sock.close()
    h.check(status != 200, "plain HTTP to the TLS port got %r" % data[:200])
    h.check_eq(h.list_events(ctx, srv.cfg_path), [], "events after a plain-HTTP attempt")
    srv.post_ok(h.load_example("form_sent"), tls=True)


CASES = [
    ("POST over HTTPS with a self-signed cert gets 200", case_https_post_accepted),
    ("bearer is still checked over HTTPS", case_https_auth_enforced),
    ("plain HTTP to the TLS port is not answered 200", case_plain_http_refused),
]

if __name__ == "__main__":
    h.main(CASES)
