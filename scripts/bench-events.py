#!/usr/bin/env python3
"""Event-trigger benchmark over moto: latency from put_events to rotation, and a burst.

Usage: bench-events.py --endpoint URL --rotationd PATH --workdir DIR

1. moto's own floor: put_events on a bus whose rule targets a queue -> receive_message.
2. 200 departure events one at a time: time from put_events to the departed user's secret
   holding a new AWSCURRENT made by rotationd (an upper bound on put -> RotateSecret).
3. A burst of 1,000 events, 30 % of them duplicates (the same envelope sent again, as SQS
   redelivery does): time until every trigger is done; every secret must rotate exactly
   once (no duplicate rotation, no lost trigger).
Before 2, the daemon idles for --idle-seconds (60): its CPU time and RSS are read from /proc,
from 3 s after /readyz first answers 200 (the first reconcile is done, the consumers are in
their long poll, nothing is due). Its loops wait on notifications and due times rather than
ticking, so this is the floor: SQS long polls, and the executor's and the outbox's safety polls.
At the end the daemon is stopped with SIGTERM while its consumers long-poll: the time to exit.

--idle-only stops after the idle figure (about 80 s), e.g. to compare two builds:
    bench-events.py --idle-only --rotationd target/release/rotationd ...
    bench-events.py --idle-only --rotationd /tmp/rotationd-before ...

Runs with the moto virtualenv's Python (boto3 comes with moto).
"""
import argparse
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--endpoint", required=True)
ap.add_argument("--rotationd", required=True)
ap.add_argument("--workdir", required=True)
ap.add_argument("--sequential", type=int, default=200)
ap.add_argument("--burst", type=int, default=1000)
ap.add_argument("--idle-seconds", type=int, default=60)
ap.add_argument("--idle-only", action="store_true",
                help="measure the idle daemon only (no latency or burst runs)")
args = ap.parse_args()

import boto3  # noqa: E402

kw = dict(endpoint_url=args.endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
sm, sqs, eb = (boto3.client(s, **kw) for s in ("secretsmanager", "sqs", "events"))
unique_burst = int(args.burst * 0.7)
users = args.sequential + unique_burst


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def queue(name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def free_port():
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ready(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


# 1. moto's floor.
floor = []
floor_url, floor_arn = queue("bench-floor")
eb.create_event_bus(Name="bench-floor")
eb.put_rule(Name="floor", EventBusName="bench-floor", EventPattern=json.dumps({"source": ["bench.floor"]}))
eb.put_targets(Rule="floor", EventBusName="bench-floor", Targets=[{"Id": "q", "Arn": floor_arn}])
for i in range(0 if args.idle_only else 50):
    t0 = time.monotonic()
    eb.put_events(Entries=[{"EventBusName": "bench-floor", "Source": "bench.floor",
                            "DetailType": "x", "Detail": json.dumps({"i": i})}])
    while True:
        m = sqs.receive_message(QueueUrl=floor_url, WaitTimeSeconds=1).get("Messages", [])
        if m:
            sqs.delete_message(QueueUrl=floor_url, ReceiptHandle=m[0]["ReceiptHandle"])
            break
    floor.append(time.monotonic() - t0)

# Fleet: one secret per user, rotation configured.
for i in range(users):
    name = f"evbench/s-{i:04}"
    sm.create_secret(Name=name, SecretString="seed")
    sm.rotate_secret(SecretId=name, RotationRules={"AutomaticallyAfterDays": 90})

events_url, _ = queue("rotationd-bench-events")
eb.create_event_bus(Name="bench-bus")
cfg = os.path.join(args.workdir, "events-bench.toml")
metrics_port = free_port()
with open(cfg, "w") as f:
    f.write(f"""[aws]
region = "us-east-1"
endpoint_url = "{args.endpoint}"
[daemon]
state_path = "{args.workdir}/events-state.db"
metrics_listen = "127.0.0.1:{metrics_port}"
max_rotations_per_minute = 100000
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:security"
[policy]
require_change_ticket = false
max_age = "93d"
[events]
queue_url = "{events_url}"
event_bus = "bench-bus"
workers = 4
max_event_rotations_per_hour = 100000
[[events.departure]]
source = "bench.hr"
detail_type = "Offboarded"
user_pointer = "/detail/user"
""")
    for i in range(users):
        f.write(f'[[secret]]\nid = "evbench/s-{i:04}"\nstrategy = "single-user"\ncustodians = ["u-{i:04}"]\n')

env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
           AWS_EC2_METADATA_DISABLED="true", RUST_LOG="warn")
subprocess.run([args.rotationd, "--config", cfg, "setup-events"], env=env, check=True,
               stdout=subprocess.DEVNULL)
daemon = subprocess.Popen([args.rotationd, "--config", cfg, "run"], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_seconds(pid):
    """utime + stime of `pid` (fields 14 and 15 of /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def done_departures():
    try:
        db = sqlite3.connect(f"{args.workdir}/events-state.db")
        n = db.execute("SELECT COUNT(*) FROM attempts WHERE trigger_kind = 'departure' "
                       "AND state = 'succeeded'").fetchone()[0]
        db.close()
        return n
    except sqlite3.Error:
        return 0


def depart(i):
    out = eb.put_events(Entries=[{"EventBusName": "bench-bus", "Source": "bench.hr",
                                  "DetailType": "Offboarded",
                                  "Detail": json.dumps({"user": f"u-{i:04}"})}])
    return out["Entries"][0]["EventId"]


try:
    # Ready once the first reconcile has the fleet (the consumers wait for it); then a few
    # seconds for the consumers to enter their long poll and the first passes to settle.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not ready(metrics_port):
        time.sleep(0.2)
    if not ready(metrics_port):
        sys.exit("rotationd did not get ready within 180 s")
    time.sleep(3)

    # Idle: the fleet reconciled, the consumer long-polling an empty queue, nothing due.
    cpu0, t_idle = cpu_seconds(daemon.pid), time.monotonic()
    time.sleep(args.idle_seconds)
    idle_cpu = cpu_seconds(daemon.pid) - cpu0
    idle_wall = time.monotonic() - t_idle
    idle_rss = rss_mb(daemon.pid)
    idle_line = (f"idle {idle_wall:.0f} s ({users} secrets, events queue long-polled): "
                 f"CPU {idle_cpu:.2f} s ({100 * idle_cpu / idle_wall:.2f} % of one core), "
                 f"RSS {idle_rss:.1f} MB")
    if args.idle_only:
        print(idle_line)
        raise SystemExit(0)  # the daemon is stopped on the way out

    # 2. One at a time.
    latencies = []
    for i in range(args.sequential):
        t0 = time.monotonic()
        depart(i)
        while True:
            stages = sm.describe_secret(SecretId=f"evbench/s-{i:04}")["VersionIdsToStages"]
            if any(v.startswith("rotationd-") and "AWSCURRENT" in s for v, s in stages.items()):
                break
            time.sleep(0.01)
        latencies.append(time.monotonic() - t0)

    # 3. Burst with duplicates.
    before = done_departures()
    t0 = time.monotonic()
    sent = []
    for i in range(args.sequential, users):
        event_id = depart(i)
        sent.append((event_id, i))
    dups = random.Random(7).choices(sent, k=args.burst - unique_burst)
    for event_id, i in dups:
        body = {"version": "0", "id": event_id, "detail-type": "Offboarded", "source": "bench.hr",
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "region": "us-east-1",
                "resources": [], "detail": {"user": f"u-{i:04}"}}
        sqs.send_message(QueueUrl=events_url, MessageBody=json.dumps(body))
    while done_departures() < before + unique_burst and time.monotonic() - t0 < 600:
        time.sleep(0.1)
    drain = time.monotonic() - t0
    time.sleep(3)  # let a wrongly handled duplicate show itself
    db = sqlite3.connect(f"{args.workdir}/events-state.db")
    rotated = db.execute("SELECT COUNT(DISTINCT secret) FROM attempts WHERE trigger_kind = 'departure' "
                         "AND state = 'succeeded'").fetchone()[0]
    twice = db.execute("SELECT COUNT(*) FROM (SELECT secret FROM attempts WHERE trigger_kind = 'departure' "
                       "GROUP BY secret HAVING COUNT(*) > 1)").fetchone()[0]
    calls = db.execute("SELECT COALESCE(SUM(rotate_calls), 0) FROM attempts WHERE trigger_kind = 'departure'").fetchone()[0]
    db.close()
finally:
    # The stop: SIGTERM with the consumers' SQS long polls in flight ([G3]/[G4]: <= 2 s).
    t_stop = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=60)
    print(f"SIGTERM -> exit: {time.monotonic() - t_stop:.2f} s (SQS long polls in flight), "
          f"exit status {daemon.returncode}")

print(idle_line)
print(f"moto floor put_events->receive (50): median {statistics.median(floor)*1000:.0f} ms, "
      f"p99 {pct(floor, 99)*1000:.0f} ms")
print(f"departure put_events->rotated ({len(latencies)} one at a time): median "
      f"{statistics.median(latencies)*1000:.0f} ms, p99 {pct(latencies, 99)*1000:.0f} ms")
print(f"burst of {args.burst} events ({args.burst - unique_burst} duplicates): drained in {drain:.1f} s; "
      f"secrets rotated {rotated} of {users}, rotated more than once {twice}, RotateSecret calls {calls}")
ok = rotated == users and twice == 0 and calls == users
print("events benchmark:", "OK" if ok else "FAILED")
sys.exit(0 if ok else 1)
