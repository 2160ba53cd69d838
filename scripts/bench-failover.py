#!/usr/bin/env python3
"""Failover time of rotationd's active/standby on the DynamoDB state backend.

Usage: bench-failover.py --binary PATH [--trials 20] [--lease 30s]

Starts moto_server (from .venv) and, per trial, two `rotationd run` processes sharing one
state table: A (waited for until it leads), then B (waited for until it stands by). After a
random pause (so the kill lands anywhere in A's renewal cycle) A is killed with SIGKILL,
and the time until B's /metrics says `rotationd_leader 1` is the failover time. B is then
stopped with SIGTERM (which releases the lease) before the next trial. Both consume one SQS
queue per trial (`[events]`), so the standby's event recorder runs as in production.

The expected range with a lease L renewed every L/3: B takes over once A's last renewal
has expired (up to L after the kill) at its next try (up to L/3 later), so at most 4L/3,
within the two lease periods the design promises.
"""

import argparse
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.read().decode()
    except Exception:
        return None


def wait(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.05)
    sys.exit(f"bench-failover: timed out waiting for {what}")


def leads(port):
    m = get(port, "/metrics")
    return m is not None and "\nrotationd_leader 1" in m


def stands_by(port):
    r = get(port, "/readyz")
    return r is not None and r.startswith("standby")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--lease", default="30s")
    args = ap.parse_args()

    import boto3  # from .venv, installed with moto

    work = tempfile.mkdtemp(prefix="rotationd-failover-")
    moto_port = free_port()
    moto = subprocess.Popen(
        [os.path.join(ROOT, ".venv/bin/moto_server"), "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(work, "moto.log"), "w"),
    )
    endpoint = f"http://127.0.0.1:{moto_port}"
    try:
        wait(lambda: get(moto_port, "/moto-api/") is not None, 30, "moto")
        kw = dict(
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        topic = boto3.client("sns", **kw).create_topic(Name="security")["TopicArn"]
        sqs = boto3.client("sqs", **kw)
        times = []
        for trial in range(args.trials):
            table = f"failover-{trial}"
            # Both instances consume it: the leader's consumers and the standby's recorder
            # run as in production.
            queue_url = sqs.create_queue(QueueName=f"{table}-events")["QueueUrl"]
            nodes = {}
            for name in ("a", "b"):
                port = free_port()
                cfg = os.path.join(work, f"{table}-{name}.toml")
                with open(cfg, "w") as f:
                    f.write(
                        f"""[aws]
region = "us-east-1"
endpoint_url = "{endpoint}"

[daemon]
state_path = "{work}/unused.db"
metrics_listen = "127.0.0.1:{port}"
reconcile_interval = "1h"

[alerts]
security_topic_arn = "{topic}"

[policy]
require_change_ticket = false

[state]
backend = "dynamodb"
table = "{table}"
lease = "{args.lease}"

[events]
queue_url = "{queue_url}"
allowed_accounts = ["123456789012"]

[[selector]]
name_prefix = "nothing-matches/"
strategy = "single-user"
"""
                    )
                nodes[name] = (cfg, port)
            env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                       AWS_EC2_METADATA_DISABLED="true", NO_COLOR="1")
            env.pop("AWS_PROFILE", None)

            def start(name):
                cfg, _ = nodes[name]
                log = open(os.path.join(work, f"{table}-{name}.log"), "w")
                return subprocess.Popen([args.binary, "--config", cfg, "run"], env=env,
                                        stdout=subprocess.DEVNULL, stderr=log)

            a = start("a")
            wait(lambda: leads(nodes["a"][1]), 60, "a to lead")
            b = start("b")
            wait(lambda: stands_by(nodes["b"][1]), 60, "b to stand by")
            time.sleep(random.uniform(0.5, 10.0))
            a.send_signal(signal.SIGKILL)
            t0 = time.monotonic()
            a.wait()
            wait(lambda: leads(nodes["b"][1]), 300, "b to take over")
            took = time.monotonic() - t0
            times.append(took)
            print(f"trial {trial + 1:2d}: {took:6.2f} s", flush=True)
            b.send_signal(signal.SIGTERM)
            b.wait(timeout=60)
        print(
            f"failover over {len(times)} trials (lease {args.lease}): "
            f"median {statistics.median(times):.1f} s, max {max(times):.1f} s, "
            f"min {min(times):.1f} s"
        )
    finally:
        moto.terminate()
        moto.wait()


if __name__ == "__main__":
    main()
