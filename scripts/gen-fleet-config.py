#!/usr/bin/env python3
"""Writes a rotationd config with N [[secret]] entries for benchmarks.

Usage: gen-fleet-config.py N OUT.toml

The fleet is spread the way a large estate would be: quarterly windows on 28 days x 24
hours (672 distinct schedules), one in ten on a vendor's monthly schedule instead.
"""
import sys

n, out = int(sys.argv[1]), sys.argv[2]
with open(out, "w") as f:
    f.write('[alerts]\nsecurity_topic_arn = "arn:aws:sns:us-east-1:123456789012:security"\n\n')
    f.write('[policy]\nmax_age = "93d"\n\n')
    f.write('[[group]]\nname = "oncall"\nmembers = ["alice", "bob"]\n\n')
    for i in range(n):
        day, hour = 1 + i % 28, (i // 28) % 24
        if i % 10 == 9:
            sched = f"{i % 60} {hour} {day} * *"
        else:
            sched = f"0 {hour} {day} 1,4,7,10 *"
        f.write(
            f'[[secret]]\nid = "prod/app-{i:06}/db"\nschedule = "{sched}"\nwindow = "1h"\n'
            f'strategy = "single-user"\nchange_ticket = "CHG-{10000 + i % 500}"\n'
            f'custodians = ["group:oncall"]\n\n'
        )
