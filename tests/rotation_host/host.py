"""A Secrets Manager endpoint with rotation functions attached, in front of moto.

moto runs no rotation function (it would need Docker and Lambda): with no function its
RotateSecret promotes a new version at once. This host plays what AWS does when a secret
has a rotation function, for the secrets registered with it, and passes every other
request to moto unchanged:

- ``RotateSecret`` answers at once (``VersionId`` = ``ClientRequestToken``), then runs
  the function's four steps in a thread, in order, with the payload AWS sends
  (``Step``, ``SecretId``, ``ClientRequestToken``, ``RotationToken``). Each step works
  through the ordinary Secrets Manager API on moto, as a real function does.
- Like AWS, it refuses a new ``RotateSecret`` while AWSPENDING sits on a version without
  AWSCURRENT ("A previous rotation isn't complete"), and a repeated token is idempotent.
- A failed step leaves AWSPENDING where it is, as AWS does, and the host sends a
  ``RotationFailed`` event to the registered events queue in the envelope EventBridge
  delivers (``AWS Service Event via CloudTrail``, ``errorMessage`` "Error when executing
  lambda ARN during STEP step"). ``RotationStarted`` and ``RotationSucceeded`` go there too.
- ``DescribeSecret`` and ``ListSecrets`` show ``RotationEnabled``, the function's ARN, the
  rules and ``LastRotatedDate`` of a registered secret.

Per function, each step can be given a delay, a failure, or a hang (the function never
returns). The control API is under ``/_rotation_host/``:

- ``POST /_rotation_host/functions``: ``{"secret_id", "function": "single-user" |
  "alternating-users", "name", "delays": {STEP: seconds}, "fail_at": STEP, "hang_at": STEP,
  "queue_url", "drop_previous": bool}`` registers (or re-registers) a secret's function;
  answers its ARNs (``drop_previous``: a broken finishSecret that also removes AWSPREVIOUS);
- ``GET /_rotation_host/calls``: every RotateSecret received and every step invoked.

The host plays the customer's Lambda, so it reads and writes secret values; it never
logs them. It exits when its standard input closes (the test harness holds the pipe).

Usage: ``host.py --moto http://127.0.0.1:PORT [--port 0] [--region us-east-1]``; the
first line on stdout is ``listening on 127.0.0.1:PORT``.
"""

import argparse
import datetime
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from functions import FUNCTIONS  # noqa: E402

STEPS = ["createSecret", "setSecret", "testSecret", "finishSecret"]
ACCOUNT = "123456789012"


def log(msg):
    print(f"rotation_host: {msg}", file=sys.stderr, flush=True)


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Registration:
    def __init__(self, arn, name, function, lambda_name, region):
        self.arn = arn
        self.name = name
        self.function = function
        self.lambda_arn = f"arn:aws:lambda:{region}:{ACCOUNT}:function:{lambda_name}"
        self.delays = {}
        self.fail_at = None
        self.hang_at = None
        self.queue_url = None
        # A broken finishSecret (for tests): AWSPREVIOUS taken off the old version after
        # AWSCURRENT moved, so the old credential can no longer be restored by label.
        self.drop_previous = False
        self.rules = {"AutomaticallyAfterDays": 90}
        self.last_rotated = None
        self.running = None  # the token of the rotation in progress


class Host:
    def __init__(self, moto, region):
        self.moto = urllib.parse.urlparse(moto)
        self.region = region
        self.lock = threading.Lock()
        self.by_arn = {}
        self.by_name = {}
        self.calls = []
        self.invocations = []
        self.stop = threading.Event()
        conf = dict(
            endpoint_url=moto,
            region_name=region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        self.sm = boto3.client("secretsmanager", **conf)
        self.sqs = boto3.client("sqs", **conf)

    # ---- registry ----
    def find(self, secret_id):
        if not secret_id:
            return None
        with self.lock:
            return self.by_arn.get(secret_id) or self.by_name.get(secret_id)

    def register(self, spec):
        meta = self.sm.describe_secret(SecretId=spec["secret_id"])
        function = spec.get("function", "single-user")
        if function not in FUNCTIONS:
            raise ValueError(f"unknown function {function}")
        with self.lock:
            reg = self.by_arn.get(meta["ARN"])
            if reg is None:
                name = spec.get("name") or "rotate-" + meta["Name"].replace("/", "-")
                reg = Registration(meta["ARN"], meta["Name"], function, name, self.region)
                self.by_arn[reg.arn] = reg
                self.by_name[reg.name] = reg
            reg.function = function
            reg.delays = {k: float(v) for k, v in (spec.get("delays") or {}).items()}
            for step in list(reg.delays) + [spec.get("fail_at"), spec.get("hang_at")]:
                if step is not None and step not in STEPS:
                    raise ValueError(f"unknown step {step}")
            reg.fail_at = spec.get("fail_at")
            reg.hang_at = spec.get("hang_at")
            reg.queue_url = spec.get("queue_url")
            reg.drop_previous = bool(spec.get("drop_previous"))
        return {"arn": reg.arn, "lambda_arn": reg.lambda_arn}

    # ---- Secrets Manager, as AWS with a function attached ----
    def rotate_secret(self, body):
        reg = self.find(body.get("SecretId"))
        token = body.get("ClientRequestToken") or str(uuid.uuid4())
        with self.lock:
            self.calls.append({"secret": reg.arn, "token": token, "at": time.time()})
        if "RotationRules" in body:
            reg.rules = body["RotationRules"]
        versions = self.sm.describe_secret(SecretId=reg.arn).get("VersionIdsToStages", {})
        dangling = [
            v for v, s in versions.items() if "AWSPENDING" in s and "AWSCURRENT" not in s
        ]
        answer = {"ARN": reg.arn, "Name": reg.name, "VersionId": token}
        with self.lock:
            if reg.running == token or token in versions:
                return 200, answer  # the same request again: idempotent
            if reg.running is not None or (dangling and dangling != [token]):
                return 400, {
                    "__type": "InvalidRequestException",
                    "message": "A previous rotation isn't complete. That rotation will be reattempted.",
                }
            if body.get("RotateImmediately") is False:
                return 200, {"ARN": reg.arn, "Name": reg.name}
            reg.running = token
        threading.Thread(target=self.run_rotation, args=(reg, token), daemon=True).start()
        return 200, answer

    def run_rotation(self, reg, token):
        self.send_event(reg, "RotationStarted")
        function = FUNCTIONS[reg.function](self.sm)
        try:
            for step in STEPS:
                delay = reg.delays.get(step, 0.0)
                if delay:
                    self.stop.wait(delay)
                record = {"secret": reg.arn, "token": token, "step": step, "started": time.time()}
                with self.lock:
                    self.invocations.append(record)
                if reg.hang_at == step:
                    log(f"{reg.name}: {step} hangs (as configured)")
                    self.stop.wait()
                    return
                try:
                    if reg.fail_at == step:
                        raise RuntimeError(f"{step} failed (injected by the test host)")
                    function(
                        {
                            "Step": step,
                            "SecretId": reg.arn,
                            "ClientRequestToken": token,
                            "RotationToken": str(uuid.uuid4()),
                        }
                    )
                except Exception as e:  # the Lambda raised: AWS stops the rotation here
                    record.update(ended=time.time(), ok=False, error=str(e))
                    log(f"{reg.name}: {step} failed: {e}")
                    self.send_event(
                        reg,
                        "RotationFailed",
                        f"Error when executing lambda {reg.lambda_arn} during {step} step",
                        token,
                    )
                    return
                if step == "finishSecret" and reg.drop_previous:
                    versions = self.sm.describe_secret(SecretId=reg.arn)["VersionIdsToStages"]
                    for version, stages in versions.items():
                        if "AWSPREVIOUS" in stages:
                            self.sm.update_secret_version_stage(
                                SecretId=reg.arn, VersionStage="AWSPREVIOUS", RemoveFromVersionId=version
                            )
                record.update(ended=time.time(), ok=True)
                log(f"{reg.name}: {step} done")
            reg.last_rotated = time.time()
            self.send_event(reg, "RotationSucceeded", None, token)
        finally:
            with self.lock:
                if reg.running == token:
                    reg.running = None

    def send_event(self, reg, name, error=None, token=None):
        if not reg.queue_url:
            return
        at = now_iso()
        detail = {
            "eventVersion": "1.08",
            "userIdentity": {"accountId": ACCOUNT, "invokedBy": "secretsmanager.amazonaws.com"},
            "eventTime": at,
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": name,
            "awsRegion": self.region,
            "sourceIPAddress": "secretsmanager.amazonaws.com",
            "userAgent": "secretsmanager.amazonaws.com",
            "requestParameters": None,
            "responseElements": None,
            "additionalEventData": {"SecretId": reg.arn},
            "requestID": f"Rotation-{reg.arn}-{token or ''}",
            "eventID": str(uuid.uuid4()),
            "readOnly": False,
            "eventType": "AwsServiceEvent",
            "managementEvent": True,
            "recipientAccountId": ACCOUNT,
            "eventCategory": "Management",
        }
        if error is not None:
            detail["errorMessage"] = error
        envelope = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "AWS Service Event via CloudTrail",
            "source": "aws.secretsmanager",
            "account": ACCOUNT,
            "time": at,
            "region": self.region,
            "resources": [],
            "detail": detail,
        }
        try:
            self.sqs.send_message(QueueUrl=reg.queue_url, MessageBody=json.dumps(envelope))
        except Exception as e:
            log(f"could not deliver {name} for {reg.name}: {e}")

    def decorate(self, entry):
        """What DescribeSecret / ListSecrets show for a secret with a function attached."""
        reg = self.find(entry.get("ARN"))
        if reg is None:
            return
        entry["RotationEnabled"] = True
        entry["RotationLambdaARN"] = reg.lambda_arn
        entry["RotationRules"] = reg.rules
        if reg.last_rotated is not None:
            entry["LastRotatedDate"] = reg.last_rotated


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    host: Host = None

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body, headers=None, content_type="application/x-amz-json-1.1"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        if self.path == "/_rotation_host/calls":
            with self.host.lock:
                out = {"rotate_secret": list(self.host.calls), "invocations": list(self.host.invocations)}
            return self.reply(200, out, content_type="application/json")
        if self.path == "/_rotation_host/health":
            return self.reply(200, {"ok": True}, content_type="application/json")
        self.forward(b"")

    def do_POST(self):
        raw = self.body()
        if self.path == "/_rotation_host/functions":
            try:
                return self.reply(200, self.host.register(json.loads(raw)), content_type="application/json")
            except Exception as e:
                return self.reply(400, {"error": str(e)}, content_type="application/json")
        target = self.headers.get("X-Amz-Target", "")
        if target == "secretsmanager.RotateSecret":
            body = json.loads(raw or b"{}")
            if self.host.find(body.get("SecretId")) is not None:
                status, out = self.host.rotate_secret(body)
                return self.reply(status, out)
        if target in ("secretsmanager.DescribeSecret", "secretsmanager.ListSecrets"):
            status, headers, data = self.forward_raw(raw)
            if status == 200:
                out = json.loads(data)
                for entry in out.get("SecretList", [out]):
                    self.host.decorate(entry)
                data = json.dumps(out).encode()
            return self.reply(status, data, {k: v for k, v in headers if k.lower() == "x-amzn-requestid"})
        self.forward(raw)

    do_PUT = do_POST
    do_DELETE = do_POST

    def forward_raw(self, raw):
        moto = self.host.moto
        conn = http.client.HTTPConnection(moto.hostname, moto.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        headers["Host"] = f"{moto.hostname}:{moto.port}"
        headers["Content-Length"] = str(len(raw))
        conn.request(self.command, self.path, body=raw, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, resp.getheaders(), data

    def forward(self, raw):
        try:
            status, headers, data = self.forward_raw(raw)
        except OSError as e:
            return self.reply(502, {"message": f"moto unreachable: {e}"})
        self.send_response(status)
        skip = ("content-length", "connection", "transfer-encoding", "server", "date")
        for k, v in headers:
            if k.lower() not in skip:
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def exit_when_stdin_closes():
    """The test harness holds our stdin: when the test process dies, so do we."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)


def main():
    threading.Thread(target=exit_when_stdin_closes, daemon=True).start()
    p = argparse.ArgumentParser()
    p.add_argument("--moto", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--region", default="us-east-1")
    a = p.parse_args()
    Handler.host = Host(a.moto, a.region)
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
