# SPDX-License-Identifier: MIT
"""The whole path: one sample call in, a chat message, a text and a mail out (issue 5).

One config, shaped like examples/clinic.yaml with the rules of rules/, has
three real outputs: slack to a stand-in for Slack's incoming webhooks, sms
(provider twilio) to a stand-in for Twilio's API, and smtp to a real SMTP
server (Debian's aiosmtpd), all on 127.0.0.1. The urgent sample call must
reach all three, each rendered for its medium; the same call marked spam
is dropped by a rule with `stop` and reaches none. The log names no
caller, report or secret.
"""

import base64
import email
import email.policy
import json
import logging
import os
import sys
import time
import urllib.parse
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from test_slack import StandIn  # noqa: E402

try:
    from aiosmtpd.controller import Controller
except ImportError:
    h.reexec_under_debian_python()  # its packages are Debian's
    Controller = None

warnings.filterwarnings("ignore", module="aiosmtpd")
logging.getLogger("mail.log").setLevel(logging.CRITICAL)

SLACK_PATH = "/services/T0SB/B0SB/wp-slack-token-do-not-log"
SID = "AC0123456789abcdef0123456789abcdef"
TWILIO_TOKEN = "sbitest-wp-twilio-token-do-not-leak"
TWILIO_PATH = "/2010-04-01/Accounts/%s/Messages.json" % SID
SMS_FROM = "+14155550100"
SMS_TO = "+14155550199"
MAIL_TO = "frontdesk@clinic.example"
SECRETS = ["wp-slack-token-do-not-log", TWILIO_TOKEN]
DELIVERY_TIMEOUT = 20.0

RULES = """rules:
  - name: drop-spam
    match: { event_type: inbound_end_of_call, payload.is_spam: true }
    stop: true
  - name: urgent-calls
    match:
      event_type: inbound_end_of_call
      payload.is_urgent: true
      payload.is_empty: { ne: true }
    throttle: { key: "{{payload.caller_phone_number}}", per: 10m }
    send:
      - to: oncall-slack
        text: ":rotating_light: Urgent call from {{payload.caller_phone_number}}: {{payload.super_short_report}}"
      - to: oncall-sms
        when: { within: always }
        body: "URGENT {{payload.caller_phone_number}}: {{payload.super_short_report}}"
      - to: front-desk
        subject: "Urgent call from {{payload.caller_phone_number}}"
        body: "{{payload.short_report}}"
  - name: archive-everything
    send: [ archive ]
"""


class MailBox:
    """An aiosmtpd handler that keeps every message it is given."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append({"mail_from": envelope.mail_from,
                              "rcpt_tos": list(envelope.rcpt_tos),
                              "content": envelope.original_content or envelope.content})
        return "250 OK"


class StopOnCleanup:
    """Lets Context.cleanup stop a Controller the way it kills a server."""

    def __init__(self, ctrl):
        self.ctrl = ctrl

    def kill(self):
        self.ctrl.stop()


class Peers:
    """The three peers of one case, started on 127.0.0.1 and stopped by its cleanup."""

    def __init__(self, ctx):
        if Controller is None:
            h.fail("python3-aiosmtpd is not installed (sh tools/install-deps.sh test)")
        self.slack = StandIn(ctx, {SLACK_PATH: [(200, {}, b"ok")]})
        self.twilio = StandIn(ctx, {TWILIO_PATH: [(201, {}, b'{"sid": "SM0"}')]})
        self.mailbox = MailBox()
        self.smtp = Controller(self.mailbox, hostname="127.0.0.1", port=h.free_port())
        self.smtp.start()
        ctx.servers.append(StopOnCleanup(self.smtp))

    def counts(self):
        return (len(self.slack.server.seen()), len(self.twilio.server.seen()),
                len(self.mailbox.messages))


def whole_config(peers, port):
    """examples/clinic.yaml's shape, pointed at the peers.

    `always` is a schedule that always holds, so the SMS's `when` does.
    """
    return """listen: 127.0.0.1:%d
path: %s
auth: { bearer: [ "${%s}" ] }
spool: { path: var/spool.db }
timezone: America/Los_Angeles
schedules:
  always: { days: mon-sun }
plugins: { dir: %s }
outputs:
  oncall-slack:
    plugin: slack
    webhook_url: %s
    retry: { initial: 50ms, max_delay: 500ms, max_attempts: 5 }
  oncall-sms:
    plugin: sms
    provider: twilio
    account_sid: %s
    auth_token: %s
    base_url: %s
    from: "%s"
    to: ["%s"]
    retry: { initial: 50ms, max_delay: 500ms, max_attempts: 5 }
  front-desk:
    plugin: smtp
    url: smtp://127.0.0.1:%d
    starttls: "off"
    from: "AI Secretary <alerts@clinic.example>"
    to: [%s]
    retry: { initial: 50ms, max_delay: 500ms, max_attempts: 5 }
  archive:
    plugin: file
    path: archive.jsonl
%s""" % (port, h.WEBHOOK_PATH, h.SECRET_ENV, h.plugins_dir(),
         peers.slack.url(SLACK_PATH), SID, TWILIO_TOKEN, peers.twilio.url(""), SMS_FROM,
         SMS_TO, peers.smtp.port, MAIL_TO, RULES)


def serve(ctx, peers):
    port = h.free_port()
    return h.Server(ctx, whole_config(peers, port), port=port).start()


def wait_delivered(ctx, srv, event_id, outputs):
    """The event's deliveries once every one is delivered; fails on dead or timeout."""
    got = []
    deadline = time.monotonic() + DELIVERY_TIMEOUT
    while time.monotonic() < deadline:
        got = [d for d in h.deliveries(ctx, srv.cfg_path) if d["event_id"] == event_id]
        h.check(not any(d["state"] == "dead" for d in got), "a delivery is dead: %r" % got)
        if sorted(d["output"] for d in got) == sorted(outputs) and \
                all(d["state"] == "delivered" for d in got):
            return got
        h.check(srv.alive(), "serve exited; stderr:\n%s" % h.tail(srv.stderr()))
        time.sleep(0.1)
    h.fail("not all delivered after %.0fs: %r\nserver stderr:\n%s"
           % (DELIVERY_TIMEOUT, got, h.tail(srv.stderr())))


def check_quiet(srv, call):
    """No caller number, report text or secret in serve's log (info level)."""
    log = srv.stderr()
    payload = call["payload"]
    for text in SECRETS + [payload["caller_phone_number"], payload["super_short_report"],
                           payload["short_report"], SMS_TO]:
        h.check(text not in log, "the log shows %r:\n%s" % (text, h.tail(log)))


def case_urgent_call_reaches_all_three(ctx):
    peers = Peers(ctx)
    srv = serve(ctx, peers)
    call = h.load_example("inbound_end_of_call")
    payload = call["payload"]
    h.check(payload["is_urgent"] and not payload["is_spam"], "the sample is an urgent call")
    event_id = srv.post_ok(call)
    wait_delivered(ctx, srv, event_id, ["oncall-slack", "oncall-sms", "front-desk", "archive"])
    h.check_eq(peers.counts(), (1, 1, 1), "messages at Slack, Twilio and the mail server")

    posted = json.loads(peers.slack.server.seen(SLACK_PATH)[0]["body"])
    h.check_eq(posted, {"text": ":rotating_light: Urgent call from %s: %s" % (
        payload["caller_phone_number"], payload["super_short_report"])}, "Slack's JSON")

    req = peers.twilio.server.seen(TWILIO_PATH)[0]
    auth = "Basic " + base64.b64encode(("%s:%s" % (SID, TWILIO_TOKEN)).encode()).decode()
    h.check_eq(req["headers"].get("authorization"), auth, "Twilio's Basic auth")
    form = dict(urllib.parse.parse_qsl(req["body"].decode("utf-8"), strict_parsing=True))
    h.check_eq(form, {"To": SMS_TO, "From": SMS_FROM, "Body": "URGENT %s: %s" % (
        payload["caller_phone_number"], payload["super_short_report"])}, "Twilio's form")

    mail = peers.mailbox.messages[0]
    h.check_eq((mail["mail_from"], mail["rcpt_tos"]), ("alerts@clinic.example", [MAIL_TO]),
               "SMTP envelope")
    msg = email.message_from_bytes(mail["content"], policy=email.policy.strict)
    h.check_eq(str(msg["Subject"]), "Urgent call from " + payload["caller_phone_number"],
               "Subject")
    h.check_eq(msg.get_content().replace("\r\n", "\n").rstrip("\n"), payload["short_report"],
               "mail body")

    archived = h.read_jsonl(ctx.path("archive.jsonl"))
    h.check_eq([(a["id"], a["payload"]) for a in archived], [(event_id, payload)],
               "the archive line")
    check_quiet(srv, call)


def case_spam_reaches_none(ctx):
    """The spam call goes first; once the urgent one after it is everywhere, nothing else is."""
    peers = Peers(ctx)
    srv = serve(ctx, peers)
    spam = h.load_example("inbound_end_of_call")
    spam["payload"]["is_spam"] = True
    spam["payload"]["caller_phone_number"] = "+15035550111"
    spam_id = srv.post_ok(spam)
    urgent_id = srv.post_ok(h.load_example("inbound_end_of_call"))
    wait_delivered(ctx, srv, urgent_id, ["oncall-slack", "oncall-sms", "front-desk", "archive"])

    stored = {ev["id"]: ev for ev in h.events_json(ctx, srv.cfg_path)}
    h.check(spam_id in stored, "the spam call is stored")
    h.check_eq(stored[spam_id]["deliveries"], [], "the spam call's deliveries")
    # Deliveries of one output go out in the order they fell due: had the
    # spam call any, they would have gone before the urgent call's.
    time.sleep(0.3)
    h.check_eq(peers.counts(), (1, 1, 1), "messages at Slack, Twilio and the mail server")
    sent = peers.twilio.server.seen(TWILIO_PATH)[0]["body"].decode()
    h.check("5035550111" not in sent and "5035550111" not in peers.slack.server.seen()[0][
        "body"].decode(), "the spam caller's number went out")
    h.check_eq([a["id"] for a in h.read_jsonl(ctx.path("archive.jsonl"))], [urgent_id],
               "archived events")
    check_quiet(srv, spam)


CASES = [
    ("the urgent sample call reaches Slack, Twilio and SMTP, each rendered for its medium",
     case_urgent_call_reaches_all_three),
    ("a spam call is dropped by drop-spam and reaches no peer", case_spam_reaches_none),
]

if __name__ == "__main__":
    h.main(CASES)
