#!/usr/bin/env bash
# rotationd in three minutes, on this machine, against a local AWS emulator (moto).
#
#   scripts/demo.sh            build, run the demo, stop everything it started
#   KEEP=1 scripts/demo.sh     keep the work dir (config, state.db, logs) afterwards
#   MOTO_PORT=5000 METRICS_PORT=9464 scripts/demo.sh   fixed ports (default: free ones)
#
# Needs the Rust toolchain and Python 3 with venv; nothing else, and no AWS account: every
# AWS call goes to moto on 127.0.0.1 with dummy credentials. What it does:
#   1. cargo build --release --bin rotationd
#   2. scripts/install-moto.sh (moto server in the git-ignored .venv), started on loopback
#   3. scripts/demo-seed.py seeds a fleet of 50 secrets (most compliant, 5 overdue, one
#      never rotated, one stuck with a dangling AWSPENDING, 2 unmanaged; custodians and
#      groups in config/demo.toml), the Security and dependents SNS topics with SQS queues
#      subscribed, and the events queue
#   4. rotationd validate, setup-events, status; then rotationd run with config/demo.toml
#   5. an HR departure event and a RotationFailed event put on the EventBridge bus
#   6. the rotations performed, status after, what Security received, /metrics, and the
#      hash-chained audit log (rotationd audit, audit --verify)
#   7. one real rotation (scripts/demo-real.sh): a PostgreSQL password changed by a rotation
#      function while a dependent app keeps connecting, the old password then refused
# rotationd and moto are stopped by PID on exit, error or Ctrl-C.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

KEEP="${KEEP:-0}"
BIN="$REPO/target/release/rotationd"
PY="$REPO/.venv/bin/python"
SEED=(scripts/demo-seed.py)
STEPS=10
WORK=""
MOTO_PID=""
ROTATIOND_PID=""
T0=""

if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then
  BOLD=$'\e[1m' DIM=$'\e[2m' RED=$'\e[31m' OFF=$'\e[0m'
else
  BOLD="" DIM="" RED="" OFF=""
fi

elapsed() { # seconds since the build finished, e.g. 12.3
  local now
  now=$(date +%s%N)
  printf '%d.%d' $(((now - T0) / 1000000000)) $(((now - T0) / 100000000 % 10))
}
step() { # number, title
  printf '\n%s[%s/%s] %s%s %s(+%ss)%s\n' "$BOLD" "$1" "$STEPS" "$2" "$OFF" "$DIM" "$(elapsed)" "$OFF"
}
note() { printf '  %s%s%s\n' "$DIM" "$*" "$OFF"; }
die() {
  printf '%sdemo.sh: error: %s%s\n' "$RED" "$*" "$OFF" >&2
  exit 1
}
show_log() { # file: the last lines of a log, to say why something failed
  [[ -f $1 ]] && { echo "--- last lines of $1:" >&2; tail -n 25 "$1" >&2; }
  return 0
}
rotationd() { "$BIN" --config "$WORK/demo.toml" "$@"; }

# Stops one process we started: SIGTERM, then SIGKILL if it is still there after $3 s.
stop() { # name, pid, grace seconds
  local name=$1 pid=$2 grace=$3 i status=0 t
  [[ -n $pid ]] || return 0
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid" 2>/dev/null || status=$?
    echo "  $name (pid $pid) had already exited (status $status)"
    return 0
  fi
  t=$(date +%s%N)
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "  $name (pid $pid) did not stop within ${grace}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || status=$?
  t=$((($(date +%s%N) - t) / 100000000))
  echo "  stopped $name (pid $pid, exit status $status, $((t / 10)).$((t % 10))s after SIGTERM)"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $ROTATIOND_PID || -n $MOTO_PID ]]; then
    printf '\n%sStopping what the demo started%s\n' "$BOLD" "$OFF"
  fi
  # rotationd first: it finishes its SQS long poll (up to 20 s) before it exits.
  stop rotationd "$ROTATIOND_PID" 40
  stop moto "$MOTO_PID" 10
  if [[ -n $WORK && -d $WORK ]]; then
    if [[ $KEEP == 1 ]]; then
      echo "  kept $WORK (demo.toml, state.db, rotationd.log, moto.log, status-*.txt)"
    else
      rm -rf "$WORK"
    fi
  fi
  if [[ -n $T0 ]]; then
    if ((rc == 0)); then
      printf '%sDemo finished in %ss after the build.%s\n' "$BOLD" "$(elapsed)" "$OFF"
    else
      printf '%sDemo stopped (exit %s) after %ss.%s\n' "$RED" "$rc" "$(elapsed)" "$OFF"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo; echo "interrupted"; exit 130' INT TERM

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Polls URL until it answers 200, at most $2 seconds; fails early if pid $3 died.
wait_http() { # url, seconds, pid
  local url=$1 deadline=$((SECONDS + $2))
  while ((SECONDS < deadline)); do
    kill -0 "$3" 2>/dev/null || return 1
    if "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.3
  done
  return 1
}

# Status rows (table without the header) -> "N status, M status, ..." counts.
status_counts() { # file
  awk 'NR > 1 && !/ with NATIVE drift/ { n[$2]++ } END { for (s in n) printf "%d %s\n", n[s], s }' "$1" | sort -rn | paste -sd, - | sed 's/,/, /g'
}

# ------------------------------------------------------------------------------------------
printf '%sBuilding rotationd%s (cargo build --release --bin rotationd)\n' "$BOLD" "$OFF"
command -v cargo >/dev/null 2>&1 || die "cargo not found: install the Rust toolchain (https://rustup.rs)"
cargo build --release --bin rotationd
T0=$(date +%s%N)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/rotationd-demo.XXXXXX")
# Dummy credentials and no shared AWS config: nothing here can reach a real AWS account.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
: >"$WORK/aws-config"
: >"$WORK/aws-credentials"
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE="$WORK/aws-config"
export AWS_SHARED_CREDENTIALS_FILE="$WORK/aws-credentials" NO_COLOR=1
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_DEFAULT_PROFILE
unset ROTATIOND_CONFIG ROTATIOND_TEST_CLOCK_OFFSET ROTATIOND_TEST_FAILPOINT

# ------------------------------------------------------------------------------------------
step 1 "Installing the AWS emulator (moto server, in the git-ignored .venv)"
[[ -x $PY && -x $REPO/.venv/bin/moto_server ]] \
  || note "first run: pip installs moto[server] into .venv (about 30 s, 300 MB)"
scripts/install-moto.sh >/dev/null || die "scripts/install-moto.sh failed (see above)"
note "$("$PY" -c 'import importlib.metadata as m; print("moto", m.version("moto"), "in .venv")')"

# ------------------------------------------------------------------------------------------
step 2 "Starting moto on loopback"
MOTO_PORT="${MOTO_PORT:-$(free_port)}"
ENDPOINT="http://127.0.0.1:$MOTO_PORT"
DEMO_MAIL_DIR="$WORK/mail" "$PY" "${SEED[@]}" serve --port "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
wait_http "$ENDPOINT/moto-api/data.json" 30 "$MOTO_PID" || { show_log "$WORK/moto.log"; die "moto did not start on $ENDPOINT"; }
echo "  moto server at $ENDPOINT (pid $MOTO_PID)"
note "moto cannot create a secret that was rotated months ago, and reports every version as"
note "created 'now'. demo-seed.py runs moto_server with two small patches: the seeding requests"
note "carry the time they pretend to happen at, and ListSecretVersionIds returns each version's"
note "real creation date (as AWS does). rotationd itself is unmodified and runs on the real clock."

# ------------------------------------------------------------------------------------------
step 3 "Seeding the fleet, the SNS topics and the queues"
"$PY" "${SEED[@]}" seed --endpoint "$ENDPOINT"

# ------------------------------------------------------------------------------------------
step 4 "Configuring rotationd (config/demo.toml)"
METRICS_PORT="${METRICS_PORT:-$(free_port)}"
sed -e "s#127\.0\.0\.1:5000#127.0.0.1:$MOTO_PORT#g" \
    -e "s#127\.0\.0\.1:9464#127.0.0.1:$METRICS_PORT#g" \
    -e "s#/tmp/rotationd-demo#$WORK#g" \
    config/demo.toml >"$WORK/demo.toml"
echo "  $WORK/demo.toml: config/demo.toml with moto on :$MOTO_PORT, /metrics on :$METRICS_PORT, state in the work dir"
echo "  \$ rotationd validate"
rotationd validate | sed 's/^/  /' || die "rotationd validate rejected $WORK/demo.toml (errors above)"

# ------------------------------------------------------------------------------------------
step 5 "rotationd setup-events: EventBridge rules -> the events queue"
echo "  \$ rotationd setup-events"
rotationd setup-events | sed 's/^/  /' || die "rotationd setup-events failed (error above)"

# ------------------------------------------------------------------------------------------
step 6 "rotationd status, before the daemon runs"
echo "  \$ rotationd status"
rotationd status >"$WORK/status-before.txt" || die "rotationd status failed (error above)"
sed 's/^/  /' "$WORK/status-before.txt"
echo "  => $(status_counts "$WORK/status-before.txt")"

# ------------------------------------------------------------------------------------------
step 7 "Starting rotationd run (the daemon)"
SINCE=$(date +%s)
"$BIN" --config "$WORK/demo.toml" run >"$WORK/rotationd.log" 2>&1 &
ROTATIOND_PID=$!
METRICS="http://127.0.0.1:$METRICS_PORT/metrics"
wait_http "http://127.0.0.1:$METRICS_PORT/readyz" 30 "$ROTATIOND_PID" \
  || { show_log "$WORK/rotationd.log"; die "rotationd did not become ready"; }
echo "  rotationd run (pid $ROTATIOND_PID): /readyz 200 after its first reconcile; overdue secrets rotate at once"
"$PY" "${SEED[@]}" settle --db "$WORK/state.db" --metrics "$METRICS" --since "$SINCE" --pid "$ROTATIOND_PID" \
  --events 0 --timeout 60 \
  || { show_log "$WORK/rotationd.log"; die "rotationd did not finish the overdue rotations"; }

# ------------------------------------------------------------------------------------------
step 8 "Injecting a departure and a RotationFailed event (EventBridge PutEvents, default bus)"
note "bob (payments-oncall, custodian of prod/analytics/warehouse) leaves: the HR system puts"
note "'Employee Offboarded'. Secrets Manager reports a failed rotation of prod/search/db; on AWS it"
note "emits that event itself, moto runs no rotation functions, so the demo puts it on the bus."
"$PY" "${SEED[@]}" inject --endpoint "$ENDPOINT"
"$PY" "${SEED[@]}" settle --db "$WORK/state.db" --metrics "$METRICS" --since "$SINCE" --pid "$ROTATIOND_PID" \
  --events 2 --timeout 90 --reconciled \
  || { show_log "$WORK/rotationd.log"; die "rotationd did not handle the events"; }

# ------------------------------------------------------------------------------------------
step 9 "What happened"
printf '\n  %sRotations rotationd performed%s (state store, attempts since it started)\n' "$BOLD" "$OFF"
"$PY" "${SEED[@]}" rotations --db "$WORK/state.db" --since "$SINCE"

printf '\n  %s$ rotationd status%s (rows that changed; the other rows are as before)\n' "$BOLD" "$OFF"
rotationd status >"$WORK/status-after.txt" || die "rotationd status failed (error above)"
awk 'NR == FNR { before[$1] = $0; next }
     FNR == 1 || before[$1] != $0 { print "  " $0; next }
     { same++ }
     END { printf "  (%d unchanged rows not shown)\n", same }' \
  "$WORK/status-before.txt" "$WORK/status-after.txt"
echo "  before => $(status_counts "$WORK/status-before.txt")"
echo "  after  => $(status_counts "$WORK/status-after.txt")"

printf '\n  %sWhat Security received%s (SNS topic rotationd-demo-security, read back from its SQS subscription)\n' "$BOLD" "$OFF"
"$PY" "${SEED[@]}" inbox --endpoint "$ENDPOINT" --queue rotationd-demo-security-inbox
printf '\n  %sThe email of one P1%s (security-oncall@example.com; moto delivers no mail, so the demo spools it)\n' "$BOLD" "$OFF"
"$PY" "${SEED[@]}" mail --spool "$WORK/mail"
note "No page for bob's departure: its rotations ran within the 24 h SLA (departure_sla_at_risk"
note "and departure_sla_missed are raised only when they do not); the never-rotated secret waits"
note "for its first window, and the unmanaged secrets were never touched."
printf '\n  %sWhat the dependent teams received%s (SNS topic rotationd-demo-notify)\n' "$BOLD" "$OFF"
"$PY" "${SEED[@]}" inbox --endpoint "$ENDPOINT" --queue rotationd-demo-notify-inbox --brief

printf '\n  %s/metrics excerpt%s (%s)\n' "$BOLD" "$OFF" "$METRICS"
"$PY" "${SEED[@]}" metrics --url "$METRICS"

printf '\n  %s$ rotationd audit --format csv%s (the history, last 6 of %s rows: who, action, ticket, reason)\n' \
  "$BOLD" "$OFF" "$(rotationd audit --format csv | tail -n +2 | wc -l | tr -d ' ')"
rotationd audit --format csv | tail -6 | cut -c1-150 | sed 's/^/  /'
printf '\n  %s$ rotationd audit --verify%s (every row hash-chained to the one before)\n' "$BOLD" "$OFF"
rotationd audit --verify | sed 's/^/  /' || die "the audit log does not verify"

# ------------------------------------------------------------------------------------------
step 10 "A real rotation: a PostgreSQL password, a rotation function, a dependent app"
note "moto runs no rotation function; tests/rotation_host/host.py stands in front of it and plays"
note "Secrets Manager with one attached (RotateSecret answers at once, the four steps follow)."
scripts/demo-real.sh "$ENDPOINT" "$WORK" || die "the real rotation did not complete (see above)"
