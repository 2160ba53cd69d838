#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it (.ci/run calls this script).
# Installs what the tests need (moto in .venv), then: fmt, clippy, every test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "installing test dependencies (moto server and the PostgreSQL driver in .venv)"
scripts/install-moto.sh

need_apt() { # command, Debian package: install the package when the command is missing
  command -v "$1" >/dev/null 2>&1 && return 0
  echo "installing $2 (for $1)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && apt-get install -y -qq "$2" >/dev/null
  else
    sudo apt-get update -qq >/dev/null && sudo apt-get install -y -qq "$2" >/dev/null
  fi
}
need_apt systemd-analyze systemd
need_apt promtool prometheus
need_apt prometheus prometheus  # the server, for tests/prometheus.rs
# The real rotations of tests/real_rotation.rs run against a PostgreSQL server the tests
# start themselves (as the unprivileged user `nobody` when run as root).
if ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
  echo "installing postgresql (for the real rotation tests)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && apt-get install -y -qq postgresql >/dev/null
  else
    sudo apt-get update -qq >/dev/null && sudo apt-get install -y -qq postgresql >/dev/null
  fi
fi

# A clean build's incremental caches are written once and never read again in CI; without
# them the build needs far less disk (see [profile.dev] in Cargo.toml for the rest).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

# The binary as it ships, for tests/release_hooks.rs (which builds it itself when missing):
# built here, before the tests, so that its build does not compete with them for the CPU.
step "cargo build --release (the shipped binary, without test hooks)"
cargo build --release --locked --bin rotationd

# The .deb from that binary (cargo deb --no-build), unpacked and checked; installs the
# pinned cargo-deb first when missing (about 2 minutes of compiling, once per machine).
step "the Debian package (scripts/package.sh)"
scripts/package.sh

# clippy --all-targets has type-checked the benchmarks and examples already.
step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --locked --no-fail-fast
else
  cargo test --locked --no-fail-fast
fi
step "promtool: alerting rules and their unit tests"
promtool check rules prometheus/rotationd.rules.yml
promtool test rules prometheus/rotationd.rules.test.yml

step "systemd-analyze verify systemd/rotationd.service"
unit_dir=$(mktemp -d)
# verify needs ExecStart to exist: point it at the binary the tests just built.
sed "s|ExecStart=/usr/bin/rotationd|ExecStart=$PWD/target/debug/rotationd|" \
  systemd/rotationd.service >"$unit_dir/rotationd.service"
systemd-analyze verify "$unit_dir/rotationd.service"
# Hardening: exposure at most 2.0 ("OK"); --offline needs no running systemd.
systemd-analyze security --offline=true --threshold=20 "$unit_dir/rotationd.service" | tail -1
rm -rf "$unit_dir"
echo "all checks passed"
