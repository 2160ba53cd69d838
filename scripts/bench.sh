#!/usr/bin/env bash
# One-command benchmarks. Figures go to stdout; README.md quotes them.
#   scripts/bench.sh            planner figures (fast)
#   scripts/bench.sh --criterion  also the criterion planner benchmark (minutes)
#   scripts/bench.sh --idle [BINARY]  only the idle daemon's CPU over 60 s (900 secrets,
#                                 events queue long-polled) of BINARY (default: the release
#                                 build), e.g. to compare a build before and after a change
set -euo pipefail
cd "$(dirname "$0")/.."

start_moto() { # sets $port, $work, $moto_pid; stops moto and removes $work on exit
  scripts/install-moto.sh >/dev/null
  work=$(mktemp -d)
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  MOTO_RECORDER_FILEPATH="$work/recording" .venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
  moto_pid=$!
  trap 'kill $moto_pid 2>/dev/null; rm -rf "$work"' EXIT
  for _ in $(seq 100); do
    python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/data.json')" 2>/dev/null && break
    sleep 0.2
  done
}

if [ "${1:-}" = "--idle" ]; then
  binary=${2:-target/release/rotationd}
  [ -n "${2:-}" ] || cargo build --release --quiet --bin rotationd
  start_moto
  echo "== idle: $binary, 60 s after the first reconcile"
  .venv/bin/python scripts/bench-events.py --idle-only --endpoint "http://127.0.0.1:$port" \
    --rotationd "$binary" --workdir "$work"
  exit 0
fi

measure() { # label, command...: wall time and peak RSS from GNU time
  local label=$1; shift
  local log; log=$(mktemp)
  /usr/bin/time -v "$@" >"$log.out" 2>"$log"
  local rss wall user sys
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log")
  user=$(awk -F': ' '/User time/ {print $2}' "$log")
  sys=$(awk -F': ' '/System time/ {print $2}' "$log")
  printf '%-52s wall %s  cpu %ss user + %ss sys  peak RSS %d MB\n' "$label" "$wall" "$user" "$sys" $((rss / 1024))
  cat "$log.out" | head -3
  rm -f "$log" "$log.out"
}

[ -x /usr/bin/time ] || { echo "bench.sh needs GNU time: apt-get install time" >&2; exit 1; }
cargo build --release --quiet --bin rotationd --example plan_fleet

echo "== planner: 100,000 secrets over one year (in-process targets)"
measure "plan_fleet 100000" target/release/examples/plan_fleet 100000

echo "== rotationd plan on a 100,000-entry TOML file (config parse included)"
cfg=$(mktemp --suffix=.toml)
python3 scripts/gen-fleet-config.py 100000 "$cfg"
measure "rotationd validate (100k [[secret]])" target/release/rotationd --config "$cfg" validate
measure "rotationd plan --days 365 --format json (100k)" \
  sh -c "target/release/rotationd --config '$cfg' plan --from 2027-01-01T00:00:00Z --days 365 --format json | wc -l"
rm -f "$cfg"

echo "== inventory: one reconcile of 10,000 quiet secrets on moto (rotationd status)"
start_moto
.venv/bin/python scripts/seed-fleet.py --endpoint "http://127.0.0.1:$port" --count 10000 --prefix bench/
cat >"$work/bench.toml" <<TOML
[aws]
region = "us-east-1"
endpoint_url = "http://127.0.0.1:$port"
[daemon]
state_path = "$work/state.db"
[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:security"
[policy]
require_change_ticket = false
max_age = "93d"
[[selector]]
name_prefix = "bench/"
strategy = "single-user"
TOML
python3 -c "import urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:$port/moto-api/recorder/start-recording', method='POST'))"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
measure "rotationd status (10,000 secrets)" \
  sh -c "target/release/rotationd --config '$work/bench.toml' status --format json | grep -c '\"secret\"'"
python3 scripts/count-requests.py "$work/recording"

echo "== events: idle CPU and RSS, put_events -> rotation latency, a burst with duplicates (moto)"
.venv/bin/python scripts/bench-events.py --endpoint "http://127.0.0.1:$port" \
  --rotationd target/release/rotationd --workdir "$work"

echo "== real rotation: departure -> password changed in PostgreSQL (rotation host, 50 departures)"
.venv/bin/python scripts/bench-real-rotation.py --rotationd target/release/rotationd --count 50

if [ "${1:-}" = "--criterion" ]; then
  cargo bench --bench planner
fi
