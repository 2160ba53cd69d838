#!/usr/bin/env python3
"""Departure -> password changed in PostgreSQL: p50 and p99 over N departures.

Usage: .venv/bin/python scripts/bench-real-rotation.py --rotationd target/release/rotationd
       [--count 50]

Everything on loopback: a moto server, a scratch PostgreSQL server (as `nobody` under
root), tests/rotation_host/host.py in front of moto with a single-user rotation function
per secret (no added delays: each step takes its natural time, moto and PostgreSQL
round trips), and `rotationd run` with an [events] queue. N login roles, N secrets, each
with its own custodian. One departure at a time: an IAM DeleteUser event is put on the
events queue and the clock runs until PostgreSQL's stored password verifier of that
custodian's role has changed (polled every 10 ms as the superuser), i.e. until the
departed user's password no longer opens the database, not merely until a label moved.
"""
import argparse
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import boto3
import pg8000.native

ap = argparse.ArgumentParser()
ap.add_argument("--rotationd", required=True)
ap.add_argument("--count", type=int, default=50)
args = ap.parse_args()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(REPO, ".venv", "bin")
SUPER = "bench-superuser"
ACCOUNT = "123456789012"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


work = tempfile.mkdtemp(prefix="rotationd-bench-real-")
procs = []


def start(cmd, log, **kw):
    p = subprocess.Popen(cmd, stdout=open(os.path.join(work, log), "w"), stderr=subprocess.STDOUT, **kw)
    procs.append(p)
    return p


try:
    # moto
    moto_port = free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    start([os.path.join(VENV, "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], "moto.log")
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/data.json")
            break
        except OSError:
            time.sleep(0.1)

    # PostgreSQL
    pgbin = sorted(d for d in (os.path.join("/usr/lib/postgresql", v, "bin") for v in os.listdir("/usr/lib/postgresql"))
                   if os.path.exists(os.path.join(d, "postgres")))[-1]
    pgdir = os.path.join(work, "pg")
    os.makedirs(pgdir)
    with open(os.path.join(pgdir, "pwfile"), "w") as f:
        f.write(SUPER)
    as_pg = []
    if os.geteuid() == 0:
        os.chmod(work, 0o755)
        subprocess.run(["chown", "-R", "nobody", pgdir], check=True)
        as_pg = ["runuser", "-u", "nobody", "--"]
    subprocess.run(as_pg + [os.path.join(pgbin, "initdb"), "-D", os.path.join(pgdir, "data"), "-U", "postgres",
                            f"--pwfile={os.path.join(pgdir, 'pwfile')}", "--auth-host=scram-sha-256",
                            "--auth-local=trust", "--no-sync"], check=True, capture_output=True)
    pg_port = free_port()
    start(as_pg + [os.path.join(pgbin, "postgres"), "-D", os.path.join(pgdir, "data"), "-p", str(pg_port),
                   "-k", pgdir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=300"],
          "postgres.log")
    admin = None
    for _ in range(100):
        try:
            admin = pg8000.native.Connection(user="postgres", password=SUPER, host="127.0.0.1", port=pg_port)
            break
        except Exception:
            time.sleep(0.1)

    # The host, and N roles, secrets and functions.
    # The host exits when its stdin closes: this process holds the pipe's write end.
    hold_r, hold_w = os.pipe()
    host = subprocess.Popen([sys.executable, os.path.join(REPO, "tests/rotation_host/host.py"), "--moto", endpoint,
                             "--port", "0"], stdin=hold_r, stdout=subprocess.PIPE,
                            stderr=open(os.path.join(work, "host.log"), "w"))
    procs.append(host)
    host_endpoint = "http://" + host.stdout.readline().decode().split()[-1]
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing")
    sm, sqs = boto3.client("secretsmanager", **kw), boto3.client("sqs", **kw)
    queue = sqs.create_queue(QueueName="bench-real-events")["QueueUrl"]
    secrets = []
    for i in range(args.count):
        role, name = f"app_{i:03}", f"bench/real/db-{i:03}"
        admin.run(f"CREATE ROLE {role} WITH LOGIN PASSWORD 'initial-{i}'")
        sm.create_secret(Name=name, SecretString=json.dumps({
            "engine": "postgres", "host": "127.0.0.1", "port": pg_port, "username": role,
            "password": f"initial-{i}", "dbname": "postgres"}))
        req = urllib.request.Request(host_endpoint + "/_rotation_host/functions", method="POST",
                                     data=json.dumps({"secret_id": name, "function": "single-user"}).encode())
        urllib.request.urlopen(req).read()
        secrets.append((role, name, f"user-{i:03}"))

    config = os.path.join(work, "bench.toml")
    with open(config, "w") as f:
        f.write(f"""[aws]
region = "us-east-1"
endpoint_url = "{host_endpoint}"

[daemon]
state_path = "{work}/state.db"
metrics_listen = "127.0.0.1:{free_port()}"
max_rotations_per_minute = 100

[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:{ACCOUNT}:bench-security"

[events]
queue_url = "{queue}"
allowed_accounts = ["{ACCOUNT}"]
max_event_rotations_per_hour = 1000

[policy]
max_age = "93d"
""")
        for role, name, user in secrets:
            f.write(f'\n[[secret]]\nid = "{name}"\nstrategy = "single-user"\nchange_ticket = "CHG-1"\n'
                    f'custodians = ["{user}"]\n')
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
               AWS_EC2_METADATA_DISABLED="true")
    env.pop("ROTATIOND_TEST_CLOCK_OFFSET", None)
    daemon = start([args.rotationd, "--config", config, "run"], "rotationd.log", env=env)
    db = os.path.join(work, "state.db")
    for _ in range(300):
        try:
            if sqlite3.connect(db).execute("SELECT count(*) FROM cursors").fetchone() is not None:
                break
        except sqlite3.Error:
            pass
        time.sleep(0.1)
    time.sleep(2)  # the first reconcile: departures need the inventory

    def verifier(role):
        return admin.run("SELECT rolpassword FROM pg_authid WHERE rolname = :r", r=role)[0][0]

    latencies = []
    for role, name, user in secrets:
        before = verifier(role)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        event_id = str(uuid.uuid4())
        body = {"version": "0", "id": event_id, "detail-type": "AWS API Call via CloudTrail",
                "source": "aws.iam", "account": ACCOUNT, "time": now, "region": "us-east-1", "resources": [],
                "detail": {"eventVersion": "1.08", "eventSource": "iam.amazonaws.com", "eventName": "DeleteUser",
                           "eventID": event_id, "eventTime": now, "eventType": "AwsApiCall",
                           "requestParameters": {"userName": user}, "recipientAccountId": ACCOUNT}}
        t0 = time.monotonic()
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(body))
        deadline = t0 + 120
        while verifier(role) == before:
            if time.monotonic() > deadline or daemon.poll() is not None:
                sys.exit(f"{name} was not rotated within 120 s; see {work}/rotationd.log")
            time.sleep(0.01)
        latencies.append(time.monotonic() - t0)

    calls = json.loads(urllib.request.urlopen(host_endpoint + "/_rotation_host/calls").read())
    print(f"departure -> password changed in PostgreSQL ({len(latencies)} departures, one at a time, "
          f"single-user function, natural step times): median {statistics.median(latencies) * 1000:.0f} ms, "
          f"p99 {pct(latencies, 99) * 1000:.0f} ms, min {min(latencies) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms; RotateSecret calls {len(calls['rotate_secret'])}")
finally:
    for p in reversed(procs):
        p.kill()
    if os.path.exists(os.path.join(work, "pg", "data", "postmaster.pid")):
        with open(os.path.join(work, "pg", "data", "postmaster.pid")) as f:
            subprocess.run(["kill", "-9", f.readline().strip()], capture_output=True)
    for p in procs:
        p.wait()
    shutil.rmtree(work, ignore_errors=True)
