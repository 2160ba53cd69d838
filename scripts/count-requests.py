#!/usr/bin/env python3
"""Counts the requests in a moto recording (MOTO_RECORDER_FILEPATH) by operation.

Usage: count-requests.py RECORDING [--user-agent SUBSTRING]
Only requests whose User-Agent contains SUBSTRING are counted (default: app/rotationd,
i.e. rotationd's own requests).
"""
import base64
import collections
import json
import sys
import urllib.parse

path = sys.argv[1]
ua = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--user-agent" else "app/rotationd"
counts = collections.Counter()
with open(path) as f:
    for line in f:
        if not line.strip():
            continue
        r = json.loads(line)
        headers = {k.lower(): v for k, v in (r.get("headers") or {}).items()}
        agent = headers.get("user-agent", "") + " " + headers.get("x-amz-user-agent", "")
        if ua not in agent:
            continue
        target = headers.get("x-amz-target")
        if target:
            op = target.rsplit(".", 1)[-1]
        else:
            body = r.get("body") or ""
            if r.get("body_encoded"):
                body = base64.b64decode(body).decode("utf-8", "replace")
            op = urllib.parse.parse_qs(body).get("Action", [r.get("method", "?")])[0]
        counts[op] += 1
total = sum(counts.values())
print(f"requests: {total} (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")")
