#!/usr/bin/env bash
# Failover time of active/standby on the DynamoDB state backend (moto): 20 trials with the
# default 30 s lease, median and max. About 15 minutes. See scripts/bench-failover.py.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-moto.sh >/dev/null
cargo build --quiet --bin rotationd
exec .venv/bin/python scripts/bench-failover.py --binary target/debug/rotationd "$@"
