# SPDX-License-Identifier: MIT
"""The smtp output against a real SMTP server: Debian's aiosmtpd (SPEC §8, issue 5).

aiosmtpd listens on 127.0.0.1, plain, with STARTTLS (a self-signed
certificate made with openssl) and with AUTH. Every message it receives
must parse under Python's email.policy.strict with the headers a mail
reader expects; a payload value cannot add a header or a recipient; a
non-ASCII subject arrives intact; a 4xx reply is retried and a 5xx one
ends the delivery dead.
"""

import email
import email.policy
import logging
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

try:
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult
except ImportError:
    h.reexec_under_debian_python()  # its packages are Debian's
    Controller = None

# The server's own notes (AUTH without TLS in the plain tests, the refused
# handshakes the certificate test provokes) are expected, not results.
warnings.filterwarnings("ignore", module="aiosmtpd")
logging.getLogger("mail.log").setLevel(logging.CRITICAL)

FROM = "AI Secretary <alerts@clinic.example>"
TO = ["frontdesk@clinic.example", "Dr. Ada Weber <weber@clinic.example>"]
CC = ["records@clinic.example"]
USER = "alerts@clinic.example"
PASSWORD = "sbitest-smtp-password-do-not-leak"
REPORT = "Caller asks to move the appointment"
DELIVERY_TIMEOUT = 20.0

DELIVERY_RE = re.compile(r"^\s+delivery\s+(\d+)\s+(\S+)\s+rule=(\S+)\s+state=(\S+)"
                         r"\s+attempts=(\d+)\s+next=(\S+)(?:\s+last_error=(.*))?$")


class Recorder:
    """An aiosmtpd handler: keeps every message's envelope and bytes, answers from a script.

    script: replies to DATA used in order ("451 4.3.0 try later"); once it
    runs out, messages are accepted.
    """

    def __init__(self, script=None):
        self.script = list(script or [])
        self.messages = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.messages.append({
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "content": envelope.original_content or envelope.content,
                "tls": session.ssl is not None,
                "auth": session.authenticated,
            })
            return self.script.pop(0) if self.script else "250 OK"

    def taken(self):
        with self.lock:
            return list(self.messages)


def check_password(server, session, envelope, mechanism, auth_data):
    """aiosmtpd authenticator: only USER with PASSWORD gets in."""
    ok = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
    # handled=False: aiosmtpd then answers 535 itself (its default is silence).
    return AuthResult(success=ok, handled=False)


def make_cert(ctx):
    """A self-signed certificate for 127.0.0.1; returns (cert, key) paths."""
    cert, key = ctx.path("smtp.crt"), ctx.path("smtp.key")
    res = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                          "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                          "-addext", "subjectAltName=IP:127.0.0.1"],
                         capture_output=True, text=True, timeout=30)
    h.check_eq(res.returncode, 0, "openssl exit code (%s)" % res.stderr)
    return cert, key


def smtp_server(ctx, recorder, starttls=False, auth=False):
    """A running aiosmtpd Controller on 127.0.0.1; stopped by the case's cleanup."""
    kw = {}
    if starttls:
        cert, key = make_cert(ctx)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(cert, key)
        kw.update(tls_context=tls, require_starttls=True)
        ctx.cert = cert
    if auth:
        kw.update(authenticator=check_password, auth_required=True,
                  auth_require_tls=starttls)
    ctrl = Controller(recorder, hostname="127.0.0.1", port=h.free_port(), **kw)
    ctrl.start()
    ctx.servers.append(StopOnCleanup(ctrl))
    return ctrl


class StopOnCleanup:
    """Lets Context.cleanup stop a Controller the way it kills a server."""

    def __init__(self, ctrl):
        self.ctrl = ctrl

    def kill(self):
        self.ctrl.stop()


def smtp_output(ctrl, **extra):
    out = {
        "plugin": "smtp",
        "url": "smtp://127.0.0.1:%d" % ctrl.port,
        "starttls": "off",
        "from": FROM,
        "to": TO,
        "cc": CC,
        "subject": "Call from {{payload.caller_name}}",
        "body": "{{payload.super_short_report}}",
        "retry": {"initial": "200ms", "max_delay": "1s", "max_attempts": 4},
    }
    out.update(extra)
    return out


def call_event(name="Anna Schmidt", report=REPORT):
    event = h.load_example("inbound_end_of_call")
    event["payload"]["caller_name"] = name
    event["payload"]["super_short_report"] = report
    return event


def deliveries(ctx, cfg_path):
    """[{id, output, state, attempts, last_error}] from `events --deliveries`."""
    res = h.run_cli(ctx, ["events", "-c", cfg_path, "--limit", "0", "--deliveries"])
    h.check_eq(res.returncode, 0, "events exit code (stderr %r)" % res.stderr)
    rows = []
    for line in res.stdout.splitlines():
        m = DELIVERY_RE.match(line)
        if m:
            rows.append({"id": m.group(1), "output": m.group(2), "state": m.group(4),
                         "attempts": int(m.group(5)), "last_error": (m.group(7) or "").strip()})
    return rows


def deliver_one(ctx, output, event=None, timeout=DELIVERY_TIMEOUT):
    """Serve with one smtp output, post one event, wait until its delivery settles."""
    srv = ctx.server(ctx.config(plugins={"dir": h.plugins_dir()}, outputs={"mail": output},
                                rules=[{"name": "mail", "send": ["mail"]}]))
    srv.post_ok(event or call_event())
    deadline = time.monotonic() + timeout
    rows = []
    while time.monotonic() < deadline:
        rows = deliveries(ctx, srv.cfg_path)
        if rows and all(r["state"] != "pending" for r in rows):
            h.check_eq(len(rows), 1, "deliveries stored")
            return srv, rows[0]
        h.check(srv.alive(), "serve exited; stderr:\n%s" % h.tail(srv.stderr()))
        time.sleep(0.2)
    h.fail("delivery still pending after %.0fs: %r\nstderr:\n%s"
           % (timeout, rows, h.tail(srv.stderr())))


def parse(raw):
    """The message under email.policy.strict: any defect fails the case."""
    h.check(b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b""),
            "line endings are not all CRLF")
    try:
        return email.message_from_bytes(raw, policy=email.policy.strict)
    except Exception as exc:  # strict raises on the first defect
        h.fail("message does not parse under email.policy.strict: %r\n%r" % (exc, raw[:600]))


def addresses(header):
    return [a.addr_spec for a in header.addresses] if header is not None else []


def check_shape(msg, raw, subject):
    """The headers every message carries, and lines a mail reader accepts."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        h.check(len(line) <= 78, "header line over 78 characters: %r" % line)
    names = sorted(k.lower() for k in msg.keys())
    h.check_eq(names, sorted(["date", "message-id", "from", "to", "cc", "subject",
                              "mime-version", "content-type", "content-transfer-encoding",
                              "auto-submitted"]), "header names")
    h.check(msg["Date"].datetime is not None, "Date parses")
    h.check(re.match(r"^<\d+\.[0-9A-Z]{26}@clinic\.example>$", msg["Message-ID"]),
            "Message-ID %r" % msg["Message-ID"])
    h.check_eq(addresses(msg["From"]), ["alerts@clinic.example"], "From")
    h.check_eq(msg["From"].addresses[0].display_name, "AI Secretary", "From's name")
    h.check_eq(addresses(msg["To"]), ["frontdesk@clinic.example", "weber@clinic.example"], "To")
    h.check_eq(addresses(msg["Cc"]), ["records@clinic.example"], "Cc")
    h.check_eq(str(msg["Subject"]), subject, "Subject")
    h.check_eq(msg.get_content_type(), "text/plain", "content type")
    h.check_eq(msg.get_content_charset(), "utf-8", "charset")


ENVELOPE = ["frontdesk@clinic.example", "weber@clinic.example", "records@clinic.example"]


def case_plain_message_parses_strictly(ctx):
    if Controller is None:
        h.fail("python3-aiosmtpd is not installed (sh tools/install-deps.sh test)")
    recorder = Recorder()
    ctrl = smtp_server(ctx, recorder)
    report = "Line one.\n.\n.hidden dot line\n" + "long " * 40 + "\ttab end \n"
    srv, row = deliver_one(ctx, smtp_output(ctrl), call_event(report=report))
    h.check_eq((row["state"], row["attempts"]), ("delivered", 1), "state and attempts")
    got = recorder.taken()
    h.check_eq(len(got), 1, "messages received")
    h.check_eq(got[0]["mail_from"], "alerts@clinic.example", "MAIL FROM")
    h.check_eq(got[0]["rcpt_tos"], ENVELOPE, "RCPT TO: to and cc exactly")
    msg = parse(got[0]["content"])
    check_shape(msg, got[0]["content"], "Call from Anna Schmidt")
    body = msg.get_content().replace("\r\n", "\n")
    h.check_eq(body, report, "body after decoding (dots and trailing white space kept)")
    log = srv.stderr()
    h.check(REPORT not in log and "Anna Schmidt" not in log, "the log shows payload values")


def case_injection_adds_no_header_or_recipient(ctx):
    if Controller is None:
        h.fail("python3-aiosmtpd is not installed")
    recorder = Recorder()
    ctrl = smtp_server(ctx, recorder)
    evil = "Eve\r\nBcc: x@y.example\r\nX-Evil: 1"
    body = "hi\r\n.\r\nMAIL FROM:<x@y.example>\r\nRCPT TO:<x@y.example>\r\nBcc: x@y\n"
    _, row = deliver_one(ctx, smtp_output(ctrl), call_event(name=evil, report=body))
    h.check_eq(row["state"], "delivered", "state")
    got = recorder.taken()
    h.check_eq(len(got), 1, "messages received (a smuggled second one would show)")
    h.check_eq(got[0]["rcpt_tos"], ENVELOPE, "RCPT TO: to and cc exactly")
    msg = parse(got[0]["content"])
    h.check(msg["Bcc"] is None and msg["X-Evil"] is None, "an injected header exists")
    check_shape(msg, got[0]["content"], "Call from Eve  Bcc: x@y.example  X-Evil: 1")


def case_non_ascii_subject_arrives_intact(ctx):
    if Controller is None:
        h.fail("python3-aiosmtpd is not installed")
    recorder = Recorder()
    ctrl = smtp_server(ctx, recorder)
    subject = "Notfall: Müller ☎ " + "Rückruf erbeten, dringend " * 4
    _, row = deliver_one(ctx, smtp_output(ctrl, subject="{{payload.caller_name}}"),
                         call_event(name=subject, report="Grüße ☎"))
    h.check_eq(row["state"], "delivered", "state")
    got = recorder.taken()
    msg = parse(got[0]["content"])
    check_shape(msg, got[0]["content"], subject)
    h.check(b"=?UTF-8?B?" in got[0]["content"], "the subject is RFC 2047 encoded")
    h.check_eq(msg.get_content().rstrip("\r\n"), "Grüße ☎", "body")


def case_starttls_and_auth(ctx):
    if Controller is None:
        h.fail("python3-aiosmtpd is not installed")
    recorder = Recorder()
    ctrl = smtp_server(ctx, recorder, starttls=True, auth=True)
    out = smtp_output(ctrl, starttls="required", ca_file=ctx.cert, username=USER,
                      password=PASSWORD)
    srv, row = deliver_one(ctx, out)
    h.check_eq(row["state"], "delivered", "state (last error %r)" % row["last_error"])
    got = recorder.taken()
    h.check(got[0]["tls"] and got[0]["auth"], "sent over TLS after AUTH: %r" % got[0])
    h.check(PASSWORD not in srv.stderr(), "the log shows the password")


def case_starttls_without_verification(ctx):
    if Controller is None:
        h.fail("python3-aiosmtpd is not installed")
    recorder = Recorder()
    ctrl = smtp_server(ctx, recorder, starttls=True)
    srv, row = deliver_one(ctx, smtp_output(ctrl, starttls="required", tls_verify=False))
    h.check_eq(row["state"], "delivered", "state (last error %r)" % row["last_error"])
    h.check(recorder.taken()[0]["tls"], "sent over TLS")
    h.check(re.search(r"level=warn.*verification is off", srv.stderr()),
            "tls_verify: false is logged at warn:\n" + h.tail(srv.stderr()))


def case_untrusted_certificate_is_retried(ctx):
    if Controller is None:
        h.fail("python3-aiosmtpd is not installed")
    recorder = Recorder()
    ctrl = smtp_server(ctx, recorder, starttls=True)
    out = smtp_output(ctrl, starttls="required",
                      retry={"initial": "200ms", "max_delay": "200ms", "max_attempts": 2})
    _, row = deliver_one(ctx, out)
    h.check_eq((row["state"], row["attempts"]), ("dead", 2), "state and attempts")
    h.check_eq(recorder.taken(), [], "messages received without a trusted certificate")


def case_auth_refused_is_dead(ctx):
    if Controller is None:
        h.fail("python3-aiosmtpd is not installed")
    recorder = Recorder()
    ctrl = smtp_server(ctx, recorder, auth=True)
    _, row = deliver_one(ctx, smtp_output(ctrl, username=USER, password="wrong"))
    h.check_eq((row["state"], row["attempts"]), ("dead", 1), "state and attempts")
    h.check("SMTP 535" in row["last_error"], "last error %r" % row["last_error"])


def case_451_is_retried(ctx):
    if Controller is None:
        h.fail("python3-aiosmtpd is not installed")
    recorder = Recorder(script=["451 4.3.0 try later"])
    ctrl = smtp_server(ctx, recorder)
    _, row = deliver_one(ctx, smtp_output(ctrl))
    h.check_eq((row["state"], row["attempts"]), ("delivered", 2), "state and attempts")
    got = recorder.taken()
    h.check_eq(len(got), 2, "messages received")
    ids = [parse(m["content"])["Message-ID"] for m in got]
    h.check_eq(ids[0], ids[1], "Message-ID across attempts")


def case_550_is_dead(ctx):
    if Controller is None:
        h.fail("python3-aiosmtpd is not installed")
    recorder = Recorder(script=["550 5.7.1 rejected"] * 3)
    ctrl = smtp_server(ctx, recorder)
    _, row = deliver_one(ctx, smtp_output(ctrl))
    h.check_eq((row["state"], row["attempts"]), ("dead", 1), "state and attempts")
    h.check("SMTP 550" in row["last_error"], "last error %r" % row["last_error"])
    h.check_eq(len(recorder.taken()), 1, "messages received")


def case_check_rejects_bad_config(ctx):
    text = """listen: 127.0.0.1:%d
path: %s
auth: { bearer: [ "${%s}" ] }
spool: { path: var/spool.db }
plugins: { dir: %s }
outputs:
  mail:
    plugin: smtp
    url: smtps://mail.example:465
    starttls: off
    from: "AI Secretary alerts@clinic.example"
    to: [frontdesk@clinic.example, "not an address"]
    password: %s
rules:
  - name: mail
    send: [ mail ]
""" % (h.free_port(), h.WEBHOOK_PATH, h.SECRET_ENV, h.plugins_dir(), PASSWORD)
    cfg = ctx.write_config(text)
    res = h.run_cli(ctx, ["check", "-c", cfg])
    h.check_eq(res.returncode, 1, "check exit code (stdout %r)" % res.stdout)
    for line, pattern in ((10, "starttls: smtps:// is always TLS"),
                          (11, "from: expected an address"),
                          (12, "to: item 2: expected an address"),
                          (13, "username and password go together")):
        h.check(re.search(r"(?m)^%s:%d:\d+: .*%s" % (re.escape(cfg), line, re.escape(pattern)),
                          res.stderr), "check stderr lacks line %d %r:\n%s"
                % (line, pattern, res.stderr))
    h.check(PASSWORD not in res.stdout + res.stderr, "check shows the password")


CASES = [
    ("plain SMTP: the message parses under email.policy.strict, dots and all",
     case_plain_message_parses_strictly),
    ("a payload holding CRLF Bcc adds no header and no recipient",
     case_injection_adds_no_header_or_recipient),
    ("a non-ASCII subject arrives intact, folded", case_non_ascii_subject_arrives_intact),
    ("STARTTLS with ca_file and AUTH", case_starttls_and_auth),
    ("STARTTLS with tls_verify: false, logged at warn", case_starttls_without_verification),
    ("an untrusted certificate is never sent to", case_untrusted_certificate_is_retried),
    ("AUTH refused (535) is dead", case_auth_refused_is_dead),
    ("451 once is retried and delivered with the same Message-ID", case_451_is_retried),
    ("550 is dead after one attempt", case_550_is_dead),
    ("check reports smtp config mistakes with file:line:col", case_check_rejects_bad_config),
]

if __name__ == "__main__":
    h.main(CASES)
