#!/usr/bin/env bash
# One-command benchmarks. Figures go to stdout; README.md quotes them.
#   scripts/bench.sh            planner figures (fast)
#   scripts/bench.sh --criterion  also the criterion planner benchmark (minutes)
set -euo pipefail
cd "$(dirname "$0")/.."

measure() { # label, command...: wall time and peak RSS from GNU time
  local label=$1; shift
  local log; log=$(mktemp)
  /usr/bin/time -v "$@" >"$log.out" 2>"$log"
  local rss wall
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log")
  printf '%-58s wall %s  peak RSS %d MB\n' "$label" "$wall" $((rss / 1024))
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

if [ "${1:-}" = "--criterion" ]; then
  cargo bench --bench planner
fi
