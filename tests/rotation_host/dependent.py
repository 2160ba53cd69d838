"""A dependent service: the customer's app that uses a database credential.

It reads the secret's AWSCURRENT value from Secrets Manager, caches it, and logs into
PostgreSQL once a second with it. Like real apps it re-reads the secret only after an
authentication failure, with back-off (1 s, 2 s, 4 s, at most 8 s); with
``--reread never`` it keeps its cached credential forever (an app that must be restarted
to pick up a new password).

Each authentication failure (PostgreSQL 28P01/28000, the analogue of an HTTP 401/403) is
published as the CloudWatch metric ``--namespace``/``AuthFailures`` (value 1; a successful
login publishes 0 so the series exists), which the secret's ``[[dependent.metrics]]``
watches. With ``--log-group``, it also writes its log lines to that CloudWatch Logs group
(one stream per run), as an app's log agent would: a line per successful login, and
``FATAL: password authentication failed for user "U"`` per failure; with
``--log-password``, the failure line also carries the password it tried, as a careless
app's would (a canary: rotationd must never repeat a line's text). Its counters go to
``--status`` as JSON (never a password). It exits when its standard input closes.
"""

import argparse
import json
import os
import sys
import threading
import time

import boto3
import pg8000.native

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from functions import try_connect  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--secret-id", required=True)
    p.add_argument("--namespace", required=True)
    p.add_argument("--dimension", default=None, help="Name=Value")
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--reread", choices=["on-failure", "never"], default="on-failure")
    p.add_argument("--status", required=True)
    p.add_argument("--log-group", default=None)
    p.add_argument("--log-password", action="store_true")
    a = p.parse_args()

    def watch_stdin():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)

    threading.Thread(target=watch_stdin, daemon=True).start()
    conf = dict(endpoint_url=a.endpoint, region_name=a.region,
                aws_access_key_id="testing", aws_secret_access_key="testing")
    sm = boto3.client("secretsmanager", **conf)
    cw = boto3.client("cloudwatch", **conf)
    logs = boto3.client("logs", **conf) if a.log_group else None
    stream = f"dependent-{os.getpid()}"
    if logs:
        try:
            logs.create_log_group(logGroupName=a.log_group)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
        logs.create_log_stream(logGroupName=a.log_group, logStreamName=stream)

    def log(line):
        print(f"dependent: {line}", flush=True)
        if logs:
            logs.put_log_events(logGroupName=a.log_group, logStreamName=stream, logEvents=[
                {"timestamp": int(time.time() * 1000), "message": line}])

    dims = []
    if a.dimension:
        k, v = a.dimension.split("=", 1)
        dims = [{"Name": k, "Value": v}]

    status = {"ok": 0, "auth_failures": 0, "errors": 0, "rereads": 0,
              "last_ok": None, "last_auth_failure": None, "version": None, "username": None}
    cached = None
    reread_at = 0.0
    backoff = 1.0

    def save():
        tmp = a.status + ".tmp"
        with open(tmp, "w") as f:
            json.dump(status, f)
        os.replace(tmp, a.status)

    while True:
        started = time.time()
        try:
            if cached is None and started >= reread_at:
                out = sm.get_secret_value(SecretId=a.secret_id, VersionStage="AWSCURRENT")
                cached = json.loads(out["SecretString"])
                status["version"] = out["VersionId"]
                status["username"] = cached["username"]
                status["rereads"] += 1
            if cached is not None:
                conn = try_connect(cached)
                if conn is None:
                    status["auth_failures"] += 1
                    status["last_auth_failure"] = time.time()
                    line = f'FATAL: password authentication failed for user "{cached["username"]}"'
                    if a.log_password:
                        line += f' (password tried: {cached["password"]})'
                    log(line)
                    value = 1.0
                    if a.reread == "on-failure":
                        cached = None
                        reread_at = time.time() + backoff
                        backoff = min(backoff * 2, 8.0)
                else:
                    conn.run("SELECT 1")
                    conn.close()
                    if logs:
                        log(f"GET /orders 200 as {cached['username']}")
                    status["ok"] += 1
                    status["last_ok"] = time.time()
                    backoff = 1.0
                    value = 0.0
                cw.put_metric_data(Namespace=a.namespace, MetricData=[
                    {"MetricName": "AuthFailures", "Dimensions": dims, "Value": value, "Unit": "Count"}])
        except (OSError, pg8000.native.InterfaceError, pg8000.native.DatabaseError, Exception) as e:
            status["errors"] += 1
            print(f"dependent: error: {type(e).__name__}", flush=True)
        save()
        time.sleep(max(0.0, a.interval - (time.time() - started)))


if __name__ == "__main__":
    main()
