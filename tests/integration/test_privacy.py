# SPDX-License-Identifier: MIT
"""What the logs may and may not say (SPEC section 9, STYLE section 5).

Logs are shipped to places with weaker access control than the spool, so a
caller's phone number, what they said, a contact's name or the bearer secret
must never reach them; the event id must, so an operator can follow an event.
"""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

PHONE = "+15035550199"
PHONE_DIGITS = "5035550199"          # catches a reformatted number, e.g. (503) 555-0199
SUPER_SHORT = "Zephyrine Quillfeather needs her retainer adjusted before Friday"
SHORT = ("Caller Zephyrine Quillfeather said her retainer cracked during a hockey game and "
         "she would like the Friday 9:30 slot; she mentioned a penicillin allergy.")
CONTACT_NAME = "Octavian Brightwater-Vale"
CONTACT_EMAIL = "octavian.bv@example.com"
WRONG = "sbitest-wrong-Pz7k1-close-to-real"

# key=value pairs, values bare or double-quoted with backslash escapes
LOGFMT_PAIR = r'[A-Za-z_][\w.-]*=(?:"(?:[^"\\]|\\.)*"|[^\s"]*)'
LOGFMT_LINE = re.compile(r"^%s(?: %s)*$" % (LOGFMT_PAIR, LOGFMT_PAIR))


def call_event():
    """The sample call with distinctive personal data to search the logs for."""
    event = h.load_example("inbound_end_of_call")
    event["payload"].update(caller_phone_number=PHONE, super_short_report=SUPER_SHORT,
                            short_report=SHORT)
    return event


def contact_event():
    """A contact change with a distinctive name, e-mail and phone number."""
    event = h.load_example("contact_updated")
    first, last = CONTACT_NAME.split(" ", 1)
    event["payload"].update(first_name=first, last_name=last, email=CONTACT_EMAIL,
                            phone_number=PHONE)
    return event


def check_absent(log, needles, what):
    """Fail naming the first forbidden value found in the log, and the line it is on."""
    for label, needle in needles:
        for line in log.splitlines():
            h.check(needle not in line, "%s: %s appears in a log line: %s"
                    % (what, label, line.replace(needle, "<" + label + ">")))


def exercise(ctx, log_level):
    """Run a server through accepted, unauthorized and invalid requests; return (ids, log)."""
    srv = ctx.server(ctx.config(log_level=log_level))
    ids = [srv.post_ok(call_event()), srv.post_ok(contact_event())]
    h.check_eq(srv.post(call_event(), secret=WRONG).status, 401, "wrong secret status")
    h.check_eq(srv.post(call_event(), secret=None).status, 401, "no secret status")
    bad = '{"event_type": "inbound_end_of_call", "payload": "%s %s"}' % (PHONE, SHORT)
    h.check_eq(srv.post(bad).status, 400, "payload-as-string status")
    h.check_eq(srv.post("%s said: %s" % (PHONE, SUPER_SHORT)).status, 400, "not-JSON status")
    h.check_eq(srv.stop(), 0, "exit code after SIGTERM")
    return ids, srv.stderr() + srv.stdout()


FORBIDDEN = [
    ("the caller's phone number", PHONE),
    ("the caller's phone digits", PHONE_DIGITS),
    ("the super_short_report", SUPER_SHORT),
    ("the short_report", SHORT),
    ("a name from the report", "Quillfeather"),
    ("the bearer secret", h.SECRET),
    ("a wrong bearer a client sent", WRONG),
]
CONTACT = [("a contact's name", "Brightwater"), ("a contact's e-mail", CONTACT_EMAIL)]


def case_no_call_data_at_info(ctx):
    """At info: no phone number, report text or secret in any log line, for any outcome."""
    _, log = exercise(ctx, "info")
    check_absent(log, FORBIDDEN, "log_level info")


def case_no_contact_data_at_info(ctx):
    """At info: no contact name or e-mail either (STYLE: payload values are never logged)."""
    _, log = exercise(ctx, "info")
    check_absent(log, CONTACT, "log_level info")


def case_no_secrets_at_debug(ctx):
    """Even at debug the bearer secret, right or wrong, is never logged."""
    _, log = exercise(ctx, "debug")
    check_absent(log, [f for f in FORBIDDEN if "bearer" in f[0]], "log_level debug")


def case_event_id_logged(ctx):
    """Each accepted event has an info line with event_id=<the id answered to the sender>."""
    ids, log = exercise(ctx, "info")
    for event_id in ids:
        lines = [ln for ln in log.splitlines() if re.search(r"\bevent_id=%s\b" % event_id, ln)]
        h.check(lines, "no log line with event_id=%s in:\n%s" % (event_id, h.tail(log)))
        h.check(any(re.search(r"\blevel=info\b", ln) for ln in lines),
                "no level=info line for event_id=%s: %r" % (event_id, lines))


def case_logfmt(ctx):
    """Every log line is logfmt and starts with ts= then level=."""
    _, log = exercise(ctx, "info")
    h.check(log.strip(), "serve wrote no log at all")
    for line in log.splitlines():
        if not line.strip():
            continue
        h.check(LOGFMT_LINE.match(line), "not a logfmt line: %r" % line)
        h.check(re.match(r"^ts=\S+ level=(error|warn|info|debug) ", line),
                "line should start with ts= level=: %r" % line)


def case_no_log_injection(ctx):
    """A sender-chosen event_type with a newline and quotes cannot forge a log line."""
    srv = ctx.server()
    forged = 'x"\nts=2000-01-01T00:00:00.000Z level=error comp=forged msg="injected'
    srv.post_ok({"event_type": forged, "payload": {}})
    h.check_eq(srv.stop(), 0, "exit code after SIGTERM")
    log = srv.stderr()
    for line in log.splitlines():
        h.check(not line.startswith("ts=2000-01-01"), "forged log line: %r" % line)
        h.check(LOGFMT_LINE.match(line), "not a logfmt line: %r" % line)


CASES = [
    ("no phone number, report text or secret in logs at info", case_no_call_data_at_info),
    ("no contact name or e-mail in logs at info", case_no_contact_data_at_info),
    ("no bearer secret in logs at debug", case_no_secrets_at_debug),
    ("each accepted event has an info line with its event_id=", case_event_id_logged),
    ("log lines are logfmt: ts= level= ...", case_logfmt),
    ("an event_type with a newline cannot forge a log line", case_no_log_injection),
]

if __name__ == "__main__":
    h.main(CASES)
