#!/usr/bin/env python3
"""Seeds a Secrets Manager emulator (moto) with a fleet of secrets for benchmarks and demos.

Usage: seed-fleet.py --endpoint URL --count N [--prefix P] [--rotated-fraction F]

Secrets are named PREFIX app-NNNNN/db. A fraction of them is rotated once (which also
configures rotation, as moto sets RotationEnabled when rules are given); the rest keep their
first version. Runs with the moto virtualenv's Python (boto3 comes with moto).
"""
import argparse
import concurrent.futures as cf

import boto3

ap = argparse.ArgumentParser()
ap.add_argument("--endpoint", required=True)
ap.add_argument("--count", type=int, required=True)
ap.add_argument("--prefix", default="bench/")
ap.add_argument("--rotated-fraction", type=float, default=0.5)
args = ap.parse_args()

sm = boto3.client(
    "secretsmanager",
    endpoint_url=args.endpoint,
    region_name="us-east-1",
    aws_access_key_id="testing",
    aws_secret_access_key="testing",
)
rotated = int(args.count * args.rotated_fraction)


def seed(i):
    name = f"{args.prefix}app-{i:05}/db"
    sm.create_secret(Name=name, SecretString=f"seed-{i}")
    if i < rotated:
        sm.rotate_secret(SecretId=name, RotationRules={"AutomaticallyAfterDays": 90})


with cf.ThreadPoolExecutor(8) as pool:
    for f in cf.as_completed([pool.submit(seed, i) for i in range(args.count)]):
        f.result()
print(f"seeded {args.count} secrets under {args.prefix} ({rotated} rotated once)")
