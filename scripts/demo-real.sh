#!/usr/bin/env bash
# One real rotation: a PostgreSQL password changed by a rotation function while a dependent
# app keeps connecting, then the old password refused. Called by scripts/demo.sh (its last
# step) with the moto endpoint and the work dir; runs on its own too:
#
#   scripts/demo-real.sh MOTO_ENDPOINT WORK_DIR
#
# Needs Debian's postgresql server (scripts/test.sh installs it) and the .venv of
# scripts/install-moto.sh. What runs, all on loopback:
#   - a scratch PostgreSQL server (as `nobody` when run as root: PostgreSQL refuses root);
#   - tests/rotation_host/host.py in front of moto: Secrets Manager with a single-user
#     rotation function attached to demo/real/orders-db (the customer's Lambda: it is the
#     only thing that reads or writes the password);
#   - tests/rotation_host/dependent.py: the customer's app, logging in once a second with
#     the credential it cached, re-reading it after a refused login;
#   - rotationd rotate --emergency, pointed at the host.
# Everything it starts is stopped on exit.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENDPOINT=${1:?usage: demo-real.sh MOTO_ENDPOINT WORK_DIR}
WORK=${2:?usage: demo-real.sh MOTO_ENDPOINT WORK_DIR}
PY="$REPO/.venv/bin/python"
BIN="${BIN:-$REPO/target/release/rotationd}"
DIR="$WORK/real"
PIDS=()
mkdir -p "$DIR"

if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then BOLD=$'\e[1m' DIM=$'\e[2m' OFF=$'\e[0m'; else BOLD="" DIM="" OFF=""; fi
note() { printf '  %s%s%s\n' "$DIM" "$*" "$OFF"; }
die() { echo "demo-real.sh: error: $*" >&2; exit 1; }
finish() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  [[ -f $DIR/pg/data/postmaster.pid ]] && kill -KILL "$(head -1 "$DIR/pg/data/postmaster.pid")" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap finish EXIT

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x $PGBIN/postgres ]] || die "no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)"
# The host and the app exit when their stdin closes: hold a FIFO open for them, so they
# go when this script does, however it ends.
mkfifo "$DIR/hold"
exec 9<>"$DIR/hold"
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- PostgreSQL -----------------------------------------------------------------------------
PGPORT=$(free_port)
SUPER="demo-superuser"
mkdir -p "$DIR/pg"
printf '%s' "$SUPER" >"$DIR/pg/pwfile"
as_pg=()
if [[ $(id -u) == 0 ]]; then
  chmod o+x "$WORK" "$DIR"
  chown -R nobody "$DIR/pg"
  as_pg=(runuser -u nobody --)
fi
"${as_pg[@]}" "$PGBIN/initdb" -D "$DIR/pg/data" -U postgres --pwfile="$DIR/pg/pwfile" \
  --auth-host=scram-sha-256 --auth-local=trust --no-sync >"$DIR/initdb.log" 2>&1 \
  || { cat "$DIR/initdb.log" >&2; die "initdb failed"; }
"${as_pg[@]}" "$PGBIN/postgres" -D "$DIR/pg/data" -p "$PGPORT" -k "$DIR/pg" \
  -c listen_addresses=127.0.0.1 -c fsync=off >"$DIR/postgres.log" 2>&1 &
PIDS+=($!)
psql_as() { # user password sql
  PGPASSWORD=$2 psql "host=127.0.0.1 port=$PGPORT user=$1 dbname=postgres sslmode=disable connect_timeout=3" -XtAc "$3" 2>&1
}
for _ in $(seq 100); do psql_as postgres "$SUPER" "select 1" >/dev/null 2>&1 && break; sleep 0.1; done
psql_as postgres "$SUPER" "CREATE ROLE orders WITH LOGIN PASSWORD 'orders-Old-Pa55'" >/dev/null \
  || die "PostgreSQL did not start (see $DIR/postgres.log)"
echo "  PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT, role orders"

# ---- the secret, its rotation function, the dependent app ----------------------------------
"$PY" "$REPO/tests/rotation_host/host.py" --moto "$ENDPOINT" --port 0 \
  <"$DIR/hold" >"$DIR/host.port" 2>"$DIR/host.log" &
PIDS+=($!)
for _ in $(seq 100); do [[ -s $DIR/host.port ]] && break; sleep 0.1; done
HOST="http://$(awk '{print $3}' "$DIR/host.port")"
"$PY" - "$ENDPOINT" "$HOST" "$PGPORT" <<'PY'
import json, sys, urllib.request, boto3
endpoint, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
sm = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1")
value = {"engine": "postgres", "host": "127.0.0.1", "port": port, "username": "orders",
         "password": "orders-Old-Pa55", "dbname": "postgres"}
sm.create_secret(Name="demo/real/orders-db", SecretString=json.dumps(value))
spec = {"secret_id": "demo/real/orders-db", "function": "single-user",
        "delays": {"createSecret": 1.0, "setSecret": 1.0, "testSecret": 1.0, "finishSecret": 1.0}}
req = urllib.request.Request(host + "/_rotation_host/functions", data=json.dumps(spec).encode(), method="POST")
print("  rotation function", json.loads(urllib.request.urlopen(req).read())["lambda_arn"],
      "attached to demo/real/orders-db")
PY
"$PY" "$REPO/tests/rotation_host/dependent.py" --endpoint "$ENDPOINT" --secret-id demo/real/orders-db \
  --namespace Demo/Orders --dimension Service=orders-api --status "$DIR/app.json" \
  <"$DIR/hold" >"$DIR/app.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [[ -s $DIR/app.json ]] && break; sleep 0.1; done
echo "  orders-api (the dependent app) logs into PostgreSQL once a second with its cached password"

cat >"$DIR/real.toml" <<EOF
[aws]
region = "us-east-1"
endpoint_url = "$HOST"

[daemon]
state_path = "$DIR/state.db"

[alerts]
security_topic_arn = "arn:aws:sns:us-east-1:123456789012:rotationd-demo-security"

[policy]
max_age = "93d"

[[secret]]
id = "demo/real/orders-db"
strategy = "single-user"
change_ticket = "CHG-9000"
EOF

# ---- the rotation ---------------------------------------------------------------------------
printf '\n  %s$ rotationd rotate --secret demo/real/orders-db --ticket INC-9001 --reason "..." --emergency%s\n' "$BOLD" "$OFF"
"$BIN" --config "$DIR/real.toml" rotate --secret demo/real/orders-db --ticket INC-9001 \
  --reason "demo: a real password change" --emergency 2>&1 | sed 's/^/  /' \
  || die "the real rotation failed (see $DIR/host.log)"
sleep 3 # the app notices the refused password, re-reads the secret and logs in again

printf '\n  %sWhat PostgreSQL says now%s (psql, password authentication over TCP)\n' "$BOLD" "$OFF"
old=$(psql_as orders 'orders-Old-Pa55' "select 'accepted'" | tail -1 || true)
new_pw=$("$PY" -c '
import boto3, json, sys
sm = boto3.client("secretsmanager", endpoint_url=sys.argv[1], region_name="us-east-1")
print(json.loads(sm.get_secret_value(SecretId="demo/real/orders-db", VersionStage="AWSCURRENT")["SecretString"])["password"])' "$ENDPOINT")
new=$(psql_as orders "$new_pw" "select 'accepted'" | tail -1 || true)
echo "  old password: ${old/psql: error: /}"
echo "  new password (AWSCURRENT, read by the app, never by rotationd): $new"
[[ $old == *"password authentication failed"* && $new == accepted ]] || die "the password was not changed"

printf '\n  %sThe dependent app%s (its own log)\n' "$BOLD" "$OFF"
"$PY" -c '
import json, sys
s = json.load(open(sys.argv[1]))
print("  logins ok: %(ok)d, refused: %(auth_failures)d, secret read %(rereads)d times; now on version %(version)s" % s)' "$DIR/app.json"
grep -m3 "authentication failed" "$DIR/app.log" | sed 's/^/  /' || true
note "A single-user rotation has a short gap between setSecret (the database takes the new"
note "password) and finishSecret (AWSCURRENT moves): an app that logs in then is refused once,"
note "re-reads the secret and goes on. Alternating users avoid the gap; rollback of a single-user"
note "secret cannot bring the old password back, which is why auto_rollback refuses it."
