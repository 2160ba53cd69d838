#!/usr/bin/env python3
"""The moto side of scripts/demo.sh: the emulator, the fleet, the events, the read-backs.

Run with the moto virtualenv's Python (.venv/bin/python; boto3 comes with moto).

  demo-seed.py serve --port P            moto_server on 127.0.0.1:P, with the two patches below
  demo-seed.py seed --endpoint URL       the fleet of config/demo.toml, SNS topics, SQS queues
  demo-seed.py inject --endpoint URL     bob's departure and a RotationFailed, via EventBridge
  demo-seed.py settle --db F --metrics URL --since T --pid P [--events N] [--reconciled]
                                         waits until rotationd has handled everything due
  demo-seed.py rotations --db F --since T    the rotations rotationd performed
  demo-seed.py inbox --endpoint URL --queue NAME [--brief]
                                         SNS messages that reached a subscribed queue
  demo-seed.py metrics --url URL         an excerpt of /metrics

`settle` and `rotations` read rotationd's state store (SQLite, opened read-only), as
scripts/bench-events.py does; they follow the schema of src/store/schema.rs.

Why `serve` patches moto (moto 5.2.5), and only moto (rotationd runs unmodified, on the
real clock):
  1. moto stamps every secret, version and rotation with the current time, and has no way
     to create a secret that was last rotated months ago. `serve` lets a request carry an
     `X-Demo-Clock: <unix time>` header; moto then runs that one request at that time.
     Only `seed` sends it, so the fleet has a history; everything after runs at real time.
  2. moto's ListSecretVersionIds reports the time of the call as every version's
     CreatedDate, so an AWSPENDING left behind two days ago would look brand new (a
     rotation in progress, not a stuck one). `serve` returns the version's own creation
     date, as AWS does.
"""

import argparse
import datetime as dt
import json
import os
import random
import sqlite3
import sys
import time
import urllib.request
import uuid

ACCOUNT = "123456789012"
REGION = "us-east-1"
PREFIX = "rotationd-demo"
CLOCK_HEADER = "X-Demo-Clock"
UTC = dt.timezone.utc


# --------------------------------------------------------------------------------------
# serve
# --------------------------------------------------------------------------------------

def serve(port):
    import threading

    real_time = time.time
    request_clock = threading.local()

    def demo_time():
        at = getattr(request_clock, "at", None)
        return real_time() if at is None else at

    # Patch 1: a per-request clock. Installed before moto is imported, so every
    # `time.time()` moto makes while handling a request with the header sees that time.
    time.time = demo_time

    import moto.server
    from moto.secretsmanager import models as sm_models

    # Patch 2: ListSecretVersionIds with each version's real creation date.
    def list_secret_version_ids(self, secret_id):
        secret = self.secrets[secret_id]
        versions = [
            {
                "CreatedDate": v["createdate"],
                "LastAccessedDate": int(time.time()),
                "VersionId": vid,
                "VersionStages": v["version_stages"],
            }
            for vid, v in secret.versions.items()
        ]
        return json.dumps({"ARN": secret.secret_id, "Name": secret.name,
                           "NextToken": "", "Versions": versions})

    sm_models.SecretsManagerBackend.list_secret_version_ids = list_secret_version_ids

    run_simple = moto.server.run_simple

    def run_simple_with_clock(host, p, app, **kw):
        def clocked(environ, start_response):
            header = environ.get("HTTP_" + CLOCK_HEADER.upper().replace("-", "_"))
            request_clock.at = float(header) if header else None
            try:
                return app(environ, start_response)
            finally:
                request_clock.at = None
        return run_simple(host, p, clocked, **kw)

    moto.server.run_simple = run_simple_with_clock

    # Patch 3: moto delivers no email. With DEMO_MAIL_DIR set, an `email` subscription's
    # body (what SNS would mail: the `email` key of a MessageStructure=json Publish) is
    # written there, one file per message, as a mail spool would hold it.
    mail_dir = os.environ.get("DEMO_MAIL_DIR")
    if mail_dir:
        from moto.sns import models as sns_models

        original = sns_models.Subscription.publish

        def publish(self, message, message_id, subject=None, *args, **kw):
            if self.protocol == "email":
                body = message
                if kw.get("message_structure") == "json":
                    body = self._parse_message_structure(message, "email")
                os.makedirs(mail_dir, exist_ok=True)
                name = f"{time.time():.6f}-{message_id}.txt"
                with open(os.path.join(mail_dir, name), "w") as f:
                    f.write(f"To: {self.endpoint}\nSubject: {subject}\n\n{body}")
            return original(self, message, message_id, subject, *args, **kw)

        sns_models.Subscription.publish = publish
    moto.server.main(["-H", "127.0.0.1", "-p", str(port)])


# --------------------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------------------

def clients(endpoint, *names):
    import boto3
    kw = dict(endpoint_url=endpoint, region_name=REGION,
              aws_access_key_id="testing", aws_secret_access_key="testing")
    return [boto3.client(n, **kw) for n in names]


class Clock:
    """Sets the X-Demo-Clock header on every request of the clients it is attached to."""

    def __init__(self, *cs):
        self.at = None
        for c in cs:
            c.meta.events.register("before-sign.secretsmanager", self._stamp)

    def _stamp(self, request, **_):
        if self.at is not None:
            request.headers[CLOCK_HEADER] = str(int(self.at.timestamp()))


# --------------------------------------------------------------------------------------
# seed
# --------------------------------------------------------------------------------------

QUARTERS = (1, 4, 7, 10)
EVERY_MONTH = tuple(range(1, 13))

# (hour, window hours, day of month, months): the schedules of config/demo.toml.
PAYMENTS = (3, 3, 1, QUARTERS)        # "0 3 1 1,4,7,10 *", 3h
VENDOR = (4, 2, 15, EVERY_MONTH)      # "0 4 15 * *", 2h
ANALYTICS = (5, 3, 1, QUARTERS)       # "0 5 1 1,4,7,10 *", 3h
QUARTERLY = (0, 4, 1, QUARTERS)       # @quarterly, default_window 4h
INTERNAL = (2, 4, 1, QUARTERS)        # "0 2 1 1,4,7,10 *", default_window 4h

SERVICES = ["orders", "inventory", "shipping", "catalog", "search", "notifications", "auth",
            "checkout", "pricing", "reviews", "media", "fraud", "gateway", "recommendations",
            "loyalty", "support"]
OVERDUE = {"prod/shipping/db", "prod/media/api-key", "prod/reviews/db", "prod/loyalty/api-key",
           "prod/internal/backup-s3"}
NEVER_ROTATED = "prod/internal/reporting-api-key"
STUCK = "prod/internal/cache-redis"
INTERNAL_NAMES = ["backup-s3", "cache-redis", "reporting-api-key", "ci-deploy-key",
                  "grafana-admin", "smtp-relay", "vpn-radius", "metrics-db", "jira-bot",
                  "artifact-registry"]
# The secret Secrets Manager's own rotation fails on (the RotationFailed event).
FAILING = "prod/search/db"
DEPARTING = "bob"


def closed_windows(now, schedule):
    """Fire times of `schedule` whose window has closed by `now`, newest first."""
    hour, window_h, day, months = schedule
    fires = [dt.datetime(y, m, day, hour, tzinfo=UTC)
             for y in range(now.year - 2, now.year + 1) for m in months]
    return sorted((f for f in fires if f + dt.timedelta(hours=window_h) <= now), reverse=True)


def fleet(now):
    """Every secret to create: (name, tags, description, schedule, state)."""
    out = [
        ("prod/payments/db", {"team": "payments"}, "payments PostgreSQL (app users)", PAYMENTS, "ok"),
        ("prod/payments/ledger-db", {"team": "payments"}, "ledger PostgreSQL", PAYMENTS, "ok"),
        ("prod/payments/stripe-api-key", {"team": "payments", "vendor": "stripe"}, "Stripe restricted key", VENDOR, "ok"),
        ("prod/payments/adyen-api-key", {"team": "payments", "vendor": "adyen"}, "Adyen API key", VENDOR, "ok"),
        ("prod/analytics/warehouse", {"team": "analytics"}, "warehouse loader user", ANALYTICS, "ok"),
        ("prod/identity/ldap-bind", {"team": "identity"}, "LDAP bind account", QUARTERLY, "ok"),
    ]
    for svc in SERVICES:
        for kind, what in (("db", "PostgreSQL"), ("api-key", "internal API key")):
            name = f"prod/{svc}/{kind}"
            out.append((name, {"rotation": "quarterly", "team": svc, "env": "prod"},
                        f"{svc} {what}", QUARTERLY, "overdue" if name in OVERDUE else "ok"))
    for n in INTERNAL_NAMES:
        name = f"prod/internal/{n}"
        state = ("overdue" if name in OVERDUE else "never" if name == NEVER_ROTATED
                 else "stuck" if name == STUCK else "ok")
        out.append((name, {"team": "platform"}, f"internal {n}", INTERNAL, state))
    # Not in config/demo.toml: rotationd must leave them alone.
    out.append(("dev/sandbox/scratch-token", {"team": "sandbox"}, "developer sandbox", QUARTERLY, "unmanaged"))
    out.append(("staging/orders/db", {"team": "orders", "env": "staging"}, "staging PostgreSQL", QUARTERLY, "unmanaged"))
    return out


def seed(endpoint):
    sm, sns, sqs = clients(endpoint, "secretsmanager", "sns", "sqs")
    clock = Clock(sm)
    now = dt.datetime.now(UTC)
    rng = random.Random(2027)
    counts = {}
    for i, (name, tags, desc, schedule, state) in enumerate(fleet(now)):
        windows = closed_windows(now, schedule)
        # Planned rotations start a few minutes into their window (staggered).
        rotated = windows[2 if state == "overdue" else 0] + dt.timedelta(minutes=5 + 3 * (i % 12), seconds=rng.randrange(60))
        created = rotated - dt.timedelta(days=rng.randrange(300, 900))
        if state == "never":
            created = now - dt.timedelta(days=12, hours=5)
        clock.at = created
        sm.create_secret(Name=name, Description=desc, SecretString="seed-" + os.urandom(8).hex(),
                         Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
        if state != "never":
            # Rotation configured (moto needs no Lambda), rotated once at `rotated`.
            clock.at = rotated
            sm.rotate_secret(SecretId=name, RotationRules={"AutomaticallyAfterDays": 90})
        if state == "stuck":
            # Two days ago a rotation started and its function is gone: moto keeps the new
            # version labelled AWSPENDING only, next to AWSCURRENT (docs/moto-findings.md, c).
            clock.at = now - dt.timedelta(days=2, hours=3)
            try:
                sm.rotate_secret(SecretId=name, ClientRequestToken="stuck-" + "0" * 30,
                                 RotationLambdaARN=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:cache-redis-rotation")
                sys.exit("demo-seed.py: expected the rotation with a missing function to fail")
            except sm.exceptions.ResourceNotFoundException:
                pass
        counts[state] = counts.get(state, 0) + 1
    clock.at = None

    # Security's and the dependent teams' topics, each with a queue subscribed to it.
    for audience in ("security", "notify"):
        topic = sns.create_topic(Name=f"{PREFIX}-{audience}")["TopicArn"]
        url = sqs.create_queue(QueueName=f"{PREFIX}-{audience}-inbox")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        print(f"  topic {topic}  ->  queue {PREFIX}-{audience}-inbox")
        if audience == "security":
            # The on-call engineer reads mail (the demo's moto spools it: serve, patch 3).
            sns.subscribe(TopicArn=topic, Protocol="email", Endpoint="security-oncall@example.com")
            print(f"  topic {topic}  ->  email security-oncall@example.com")
    events_url = sqs.create_queue(QueueName=f"{PREFIX}-events")["QueueUrl"]
    print(f"  events queue {events_url} (EventBridge delivers here once setup-events ran)")
    total = sum(counts.values())
    print(f"  {total} secrets: {counts.get('ok', 0)} rotated in their last window, "
          f"{counts.get('overdue', 0)} last rotated two windows ago (overdue),\n"
          f"  {counts.get('never', 0)} never rotated (created 12 days ago without rotation), "
          f"{counts.get('stuck', 0)} stuck (a rotation 2 days ago left AWSPENDING behind),\n"
          f"  {counts.get('unmanaged', 0)} not in config/demo.toml (rotationd leaves them alone)")


# --------------------------------------------------------------------------------------
# inject
# --------------------------------------------------------------------------------------

def inject(endpoint):
    events, sm = clients(endpoint, "events", "secretsmanager")
    now = dt.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    failing_arn = sm.describe_secret(SecretId=FAILING)["ARN"]
    trail_id = str(uuid.uuid4())
    departure = {
        "Source": "com.example.hr", "DetailType": "Employee Offboarded",
        "Detail": json.dumps({"username": DEPARTING, "employee_id": "E-1042",
                              "team": "payments", "last_day": now[:10]}),
    }
    failed = {
        "Source": "aws.secretsmanager", "DetailType": "AWS Service Event via CloudTrail",
        "Detail": json.dumps({
            "eventVersion": "1.08", "eventSource": "secretsmanager.amazonaws.com",
            "eventName": "RotationFailed", "eventID": trail_id,
            "eventTime": now, "eventType": "AwsServiceEvent",
            "errorMessage": "setSecret: password authentication failed for user search_app",
            "additionalEventData": {"SecretId": failing_arn},
            "requestParameters": None, "recipientAccountId": ACCOUNT,
        }),
    }
    for what, entry in (("Employee Offboarded (com.example.hr): username bob", departure),
                        (f"RotationFailed (aws.secretsmanager): {FAILING}, CloudTrail event {trail_id}", failed)):
        out = events.put_events(Entries=[dict(entry, EventBusName="default")])
        if out.get("FailedEntryCount"):
            sys.exit(f"demo-seed.py: put_events failed: {out['Entries']}")
        print(f"  put {what} (EventBridge id {out['Entries'][0]['EventId'][:8]})")


# --------------------------------------------------------------------------------------
# settle / rotations
# --------------------------------------------------------------------------------------

def db_rows(path, sql, args=()):
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql, args).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return None


def metrics_text(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def metric_sum(text, name, label_filter=""):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and label_filter in line and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not running; /proc says so on Linux.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def settle(db, metrics_url, since, events, timeout, reconciled_after, pid):
    """Waits until `events` events were consumed, no attempt is running, no trigger that is
    due waits and the alert outbox is empty; with `reconciled_after`, also until a reconcile
    ran after the last rotation (so that the rotationd_secrets gauges are current)."""
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        now = int(time.time())
        text = metrics_text(metrics_url)
        # From the state store, not /metrics: an event id is recorded in the same
        # transaction as the triggers it causes (the received counter moves before).
        seen = db_rows(db, "SELECT COUNT(*) FROM seen_events WHERE first_seen_at >= ?", (since,))
        outbox = db_rows(db, "SELECT COUNT(*) FROM alert_outbox WHERE published_at IS NULL")
        running = db_rows(db, "SELECT COUNT(*) FROM attempts WHERE finished_at IS NULL")
        due = db_rows(db, "SELECT COUNT(*) FROM triggers WHERE status IN ('pending', 'running') "
                          "AND (not_before IS NULL OR not_before <= ?)", (now,))
        done = db_rows(db, "SELECT COUNT(*), COALESCE(MAX(finished_at), 0) FROM attempts "
                           "WHERE finished_at IS NOT NULL AND started_at >= ? AND id NOT LIKE 'event-%'",
                       (since,))
        reconciled = metric_sum(text, "rotationd_last_reconcile_success_timestamp_seconds")
        if None in (seen, outbox, running, due, done) or not text:
            state, ok = "waiting for rotationd", False
        else:
            finished, last_finish = done[0]
            received, outbox = seen[0][0], outbox[0][0]
            state = (f"events consumed {received}/{events}, attempts finished {finished}, "
                     f"running {running[0][0]}, due {due[0][0]}, alerts waiting to be published {outbox}")
            ok = (received >= events and running[0][0] == 0 and due[0][0] == 0 and outbox == 0)
            if ok and reconciled_after and reconciled <= last_finish:
                state, ok = state + "; waiting for the next reconcile", False
        if state != last:
            print(f"  {time.strftime('%H:%M:%S')}  {state}", flush=True)
            last = state
        if ok:
            return 0
        if not alive(pid):
            print(f"  rotationd (pid {pid}) is not running any more", flush=True)
            return 1
        if time.monotonic() > deadline:
            print(f"  gave up waiting after {timeout}s", flush=True)
            return 1
        time.sleep(0.3)


def fmt_time(t):
    return dt.datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else "-"


def rotations(db, since):
    rows = db_rows(db, """
        SELECT a.id, a.secret, a.trigger_kind, a.ticket, a.state, a.new_version,
               COALESCE(a.error, ''), COALESCE(t.reason, ''), t.deadline, a.finished_at
        FROM attempts a LEFT JOIN triggers t ON t.id = a.trigger_id
        WHERE a.started_at >= ? ORDER BY a.rowid""", (since,))
    if rows is None:
        sys.exit("demo-seed.py: cannot read the state store")
    ours = [r for r in rows if not r[0].startswith("event-")]
    print(f"  {'SECRET':<29} {'TRIGGER':<10} {'TICKET':<10} {'RESULT':<10} {'DONE AT':<9} WHY")
    for _, secret, kind, ticket, state, new, error, reason, deadline, finished in ours:
        why = error or reason
        if kind == "departure" and deadline:
            why += f"; SLA deadline {fmt_time(deadline)}"
        at = dt.datetime.fromtimestamp(finished, UTC).strftime("%H:%M:%S") if finished else "-"
        print(f"  {secret:<29} {kind:<10} {ticket or '-':<10} {state:<10} {at:<9} {why}")
    pending = db_rows(db, "SELECT secret, kind, not_before FROM triggers WHERE status = 'pending' "
                          "AND kind IN ('departure', 'overdue') ORDER BY not_before") or []
    for secret, kind, nb in pending:
        print(f"  {secret:<29} {kind:<10} pending: runs in its window at {fmt_time(nb)}, before the SLA deadline")
    ok = sum(1 for r in ours if r[4] == "succeeded")
    print(f"  => {ok} rotation(s) succeeded, {len(ours) - ok} other attempt(s). Overdue (planned) rotations run under\n"
          f"     the secret's CHG ticket, event-triggered ones carry none. Each new AWSCURRENT version id is\n"
          f"     rotationd's ClientRequestToken, e.g. {next((r[5] for r in ours if r[5]), '-')}")
    for _, secret, _, _, _, _, error, _, _, _ in (r for r in rows if r[0].startswith("event-")):
        print(f"  recorded from an event, not run by rotationd: {secret}: {error}")


# --------------------------------------------------------------------------------------
# inbox / metrics
# --------------------------------------------------------------------------------------

def inbox(endpoint, queue, brief):
    (sqs,) = clients(endpoint, "sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    messages = []
    empty = 0
    while empty < 2:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        empty = 0 if got else empty + 1
        for m in got:
            envelope = json.loads(m["Body"])
            messages.append((envelope.get("Subject", ""), json.loads(envelope["Message"])))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    messages.sort(key=lambda sm: (sm[1].get("severity", ""), sm[1].get("kind", ""), sm[0]))
    if brief:
        kinds = {}
        for _, m in messages:
            kinds[m.get("kind")] = kinds.get(m.get("kind"), 0) + 1
        print(f"  {len(messages)} message(s): " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
        notices = [(s, m) for s, m in messages if (m.get("details") or {}).get("dependents")]
        for subject, m in notices[:3]:
            deps = ", ".join(m["details"]["dependents"])
            print(f"    {subject}  (dependents: {deps}; trigger {m.get('trigger')}, ticket {m.get('ticket') or '-'})")
        return
    print(f"  {len(messages)} message(s) on {queue}:")
    for subject, m in messages:
        print(f"  - {subject}")
        fields = [("trigger", m.get("trigger")), ("ticket", m.get("ticket")),
                  ("error", m.get("error")), ("reason", m.get("reason")),
                  ("occurred_at", m.get("occurred_at"))]
        details = m.get("details") or {}
        if isinstance(details, dict):
            fields += [(k, v) for k, v in details.items() if k in ("current_version_created", "max_age", "deadline")]
        line = "; ".join(f"{k}: {v}" for k, v in fields if v)
        if line:
            print(f"      {line}")
        runbook = m.get("runbook") or []
        if runbook:
            print(f"      runbook[0]: {runbook[0]}")


def mail(spool):
    """The first P1 email in the spool, as the on-call engineer reads it."""
    files = sorted(os.listdir(spool)) if os.path.isdir(spool) else []
    for name in files:
        text = open(os.path.join(spool, name)).read()
        if "\nSubject: [P1] " in text:
            for line in text.splitlines():
                print("  | " + line)
            print(f"  ({len(files)} email(s) in {spool})")
            return
    sys.exit(f"demo-seed.py: no P1 email in {spool}")


def metrics(url):
    text = metrics_text(url)
    if not text:
        sys.exit(f"demo-seed.py: nothing at {url}")
    keep = ("rotationd_secrets{", "rotationd_rotations_total{", "rotationd_events_received_total{",
            "rotationd_events_rejected_total{", "rotationd_alerts_published_total{",
            "rotationd_alerts_outbox", "rotationd_ready", "rotationd_build_info{")
    for line in text.splitlines():
        if line.startswith(keep):
            name, value = line.rsplit(" ", 1)
            # Zero-valued series are noise in an excerpt, except the status gauges.
            if value != "0" or line.startswith("rotationd_secrets{"):
                print("  " + line)
    print(f"  (excerpt: {len(text.splitlines())} lines in all)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("serve")
    p.add_argument("--port", type=int, required=True)
    for name in ("seed", "inject"):
        sub.add_parser(name).add_argument("--endpoint", required=True)
    p = sub.add_parser("settle")
    p.add_argument("--db", required=True)
    p.add_argument("--metrics", required=True)
    p.add_argument("--since", type=int, required=True)
    p.add_argument("--events", type=int, default=2)
    p.add_argument("--timeout", type=int, default=90)
    p.add_argument("--reconciled", action="store_true")
    p.add_argument("--pid", type=int, required=True, help="rotationd's pid: stop waiting if it exits")
    p = sub.add_parser("rotations")
    p.add_argument("--db", required=True)
    p.add_argument("--since", type=int, required=True)
    p = sub.add_parser("inbox")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--brief", action="store_true")
    p = sub.add_parser("metrics")
    p.add_argument("--url", required=True)
    p = sub.add_parser("mail")
    p.add_argument("--spool", required=True)
    a = ap.parse_args()
    if a.cmd == "serve":
        serve(a.port)
    elif a.cmd == "seed":
        seed(a.endpoint)
    elif a.cmd == "inject":
        inject(a.endpoint)
    elif a.cmd == "settle":
        sys.exit(settle(a.db, a.metrics, a.since, a.events, a.timeout, a.reconciled, a.pid))
    elif a.cmd == "rotations":
        rotations(a.db, a.since)
    elif a.cmd == "inbox":
        inbox(a.endpoint, a.queue, a.brief)
    elif a.cmd == "metrics":
        metrics(a.url)
    elif a.cmd == "mail":
        mail(a.spool)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
