# SPDX-License-Identifier: MIT
"""Routing at ingest and the dry run (SPEC §4, §5; `switchboard test`).

The real binary loads the example rules in rules/, the 8 sample events are
posted, and the deliveries stored with each event must be exactly those the
rules call for: urgent calls to chat, signed and submitted forms to the
front desk, spam nowhere, everything else archived, a repeated urgent call
held back by the throttle.
"""

import json
import os
import re
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

RULES_DIR = os.path.join(h.REPO, "rules")


def routing_config(ctx):
    """A config using the shipped rules/ files; business hours are all day.

    All-day business hours make `outside: business-hours` never hold, so
    the expected deliveries do not depend on when the test runs.
    """
    shutil.copytree(RULES_DIR, ctx.path("rules"))
    port = h.free_port()
    text = """listen: 127.0.0.1:%d
path: %s
auth:
  bearer: [ "${%s}" ]
spool: { path: var/spool.db }
timezone: America/Los_Angeles
schedules:
  business-hours: { days: mon-sun }
plugins: { dir: %s }
outputs:
  # testout stands in for slack, sms, smtp and file: it takes their
  # template fields and records every attempt in a file.
  oncall-slack: { plugin: testout, path: slack.jsonl }
  oncall-sms: { plugin: testout, path: sms.jsonl }
  front-desk: { plugin: testout, path: email.jsonl }
  archive: { plugin: testout, path: archive.jsonl }
rules:
  - include: rules/*.yaml
""" % (port, h.WEBHOOK_PATH, h.SECRET_ENV, h.test_plugins_dir())
    return text, port


def deliveries_by_event(ctx, cfg_path):
    """{event_id: [(output, rule, state, fields)]} from `events --fields`."""
    res = h.run_cli(ctx, ["events", "-c", cfg_path, "--limit", "0", "--fields"])
    h.check_eq(res.returncode, 0, "events exit code (stderr %r)" % res.stderr)
    out = {}
    current = None
    for line in res.stdout.splitlines():
        m = re.match(r"^([0-9A-Z]{26})\s", line)
        if m:
            current = m.group(1)
            out[current] = []
            continue
        m = re.match(r"^\s+delivery\s+\d+\s+(\S+)\s+rule=(\S+)\s+state=(\S+)", line)
        if m:
            out[current].append([m.group(1), m.group(2), m.group(3), None])
            continue
        m = re.match(r"^\s+fields (.*)$", line)
        if m:
            out[current][-1][3] = json.loads(m.group(1))
    return out


def case_samples_route_as_the_rules_say(ctx):
    text, port = routing_config(ctx)
    srv = h.Server(ctx, text, port=port)
    srv.start()
    ids = {t: srv.post_ok(h.load_example(t)) for t in h.example_types()}
    spam = h.load_example("inbound_end_of_call")
    spam["payload"]["is_spam"] = True
    spam_id = srv.post_ok(spam)
    again_id = srv.post_ok(h.load_example("inbound_end_of_call"))
    # 9 archived, 1 to Slack, 2 forms to the front desk.
    h.wait_for("all 12 deliveries recorded as delivered", lambda: sum(
        1 for name in ("slack", "sms", "email", "archive")
        for r in h.read_jsonl(ctx.path(name + ".jsonl")) if r["result"] == "delivered") == 12)
    h.check_eq(srv.stop(), 0, "exit code after SIGTERM")

    got = deliveries_by_event(ctx, srv.cfg_path)
    for event_type, event_id in ids.items():
        want = [("archive", "archive-everything")]
        if event_type == "inbound_end_of_call":
            want = [("oncall-slack", "urgent-calls")] + want
        if event_type in ("form_signed", "form_submitted"):
            want = [("front-desk", "signed-forms")] + want
        have = [(d[0], d[1]) for d in got.get(event_id, [])]
        h.check_eq(have, want, "deliveries of %s" % event_type)
        h.check(all(d[2] == "delivered" for d in got[event_id]),
                "deliveries are delivered: %r" % got[event_id])
    h.check_eq(got.get(spam_id), [], "deliveries of a spam call")
    h.check_eq([(d[0], d[1]) for d in got.get(again_id, [])],
               [("archive", "archive-everything")],
               "a second urgent call from the same number within 10m")

    slack = got[ids["inbound_end_of_call"]][0][3]
    call = h.load_example("inbound_end_of_call")["payload"]
    h.check_eq(slack["text"], ":rotating_light: Urgent call from %s: %s" % (
        call["caller_phone_number"], call["super_short_report"]), "rendered Slack text")
    # The archive's line defaults to the envelope, which is built from the
    # stored event at delivery rather than stored twice.
    h.check_eq(got[ids["form_sent"]][0][3],
               {"text": "form_sent %s" % ids["form_sent"], "subject": "[t] form_sent",
                "body": None, "line": None}, "archive fields")
    sent = [r for r in h.read_jsonl(ctx.path("slack.jsonl")) if r["result"] == "delivered"]
    h.check_eq([r["event_id"] for r in sent], [ids["inbound_end_of_call"]],
               "the Slack stand-in's deliveries")
    h.check_eq(sent[0]["fields"]["text"], slack["text"], "the text the plugin was handed")
    h.check_eq(h.read_jsonl(ctx.path("sms.jsonl")), [],
               "no SMS inside business hours")
    log = srv.stderr()
    h.check("throttled=1" in log, "the throttled call is counted in the log")
    h.check(call["caller_phone_number"] not in log, "no phone number in the log")


def case_dry_run_explains_without_patient_data(ctx):
    text, _ = routing_config(ctx)
    cfg = ctx.write_config(text)
    res = h.run_cli(ctx, ["test", "-c", cfg, os.path.join(h.EXAMPLES,
                                                          "inbound_end_of_call.json")])
    h.check_eq(res.returncode, 0, "test exit code (stderr %r)" % res.stderr)
    call = h.load_example("inbound_end_of_call")["payload"]
    for secret in (call["caller_phone_number"], call["super_short_report"], "t0k"):
        h.check(secret not in res.stdout + res.stderr, "test output reveals %r" % secret)
    h.check(re.search(r"drop-spam\s+not matched: payload.is_spam: expected eq true, got false",
                      res.stdout), "the reason drop-spam did not match:\n" + res.stdout)
    h.check(re.search(r"urgent-calls\s+matched", res.stdout), "urgent-calls matched")
    h.check("[payload.caller_phone_number]" in res.stdout, "redacted field shown")

    res = h.run_cli(ctx, ["test", "-c", cfg, "--json",
                          os.path.join(h.EXAMPLES, "form_signed.json")])
    h.check_eq(res.returncode, 0, "test --json exit code (stderr %r)" % res.stderr)
    report = json.loads(res.stdout)
    h.check_eq([d["output"] for d in report["deliveries"]], ["front-desk", "archive"],
               "form_signed deliveries in --json")
    h.check_eq([r["matched"] for r in report["rules"]], [False, False, True, True],
               "rules matched in --json")


def case_dry_run_rejects_bad_events(ctx):
    text, _ = routing_config(ctx)
    cfg = ctx.write_config(text)
    bad = ctx.write("bad.json", '{"payload": {}}')
    res = h.run_cli(ctx, ["test", "-c", cfg, bad])
    h.check_eq(res.returncode, 1, "exit code for an event without event_type")
    h.check("event_type must be a non-empty string" in res.stderr, res.stderr)
    res = h.run_cli(ctx, ["test", "-c", cfg])
    h.check_eq(res.returncode, 1, "exit code without an event")


def case_check_reports_every_rule_error(ctx):
    text, _ = routing_config(ctx)
    text += """  - name: broken
    match:
      payload.duration_seconds: { greater: 60 }
      payload.conversation_type: { regex: "([" }
    send:
      - to: nowhere
      - to: oncall-slack
        text: "{{#payload.is_urgent}}unclosed"
"""
    cfg = ctx.write_config(text)
    res = h.run_cli(ctx, ["check", "-c", cfg])
    h.check_eq(res.returncode, 1, "check exit code")
    want = [
        r'unknown key "greater" in a condition; expected one of eq, ne, in',
        r"regex: ",
        r'undefined output "nowhere"',
        r"unclosed section",
    ]
    for pattern in want:
        h.check(re.search(r"(?m)^%s:\d+:\d+: .*%s" % (re.escape(cfg_name(cfg)), pattern),
                          res.stderr), "check stderr lacks %r:\n%s" % (pattern, res.stderr))


def cfg_name(path):
    """How check names the config in its messages: the path it was given."""
    return path


CASES = [
    ("the 8 samples and a spam call route as rules/ says", case_samples_route_as_the_rules_say),
    ("test explains each rule and shows no patient data", case_dry_run_explains_without_patient_data),
    ("test rejects an invalid event with exit 1", case_dry_run_rejects_bad_events),
    ("check reports every rule error with file:line:col", case_check_reports_every_rule_error),
]

if __name__ == "__main__":
    h.main(CASES)
