#!/usr/bin/env bash
# Install a pinned moto server into $REPO/.venv (git-ignored), with the pinned PostgreSQL
# driver the test rotation functions use. Idempotent: a second run is a fast no-op.
# Prints the path of moto_server on success.
set -euo pipefail

MOTO_VERSION="5.2.5"   # newest 5.x on PyPI at time of writing; bump deliberately
# The rotation functions of tests/rotation_host talk to PostgreSQL with this pure-Python
# driver (no libpq, no compiler).
PG8000_VERSION="1.31.2"

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO/.venv"
PY="$VENV/bin/python"
MOTO_SERVER="$VENV/bin/moto_server"
PYTHON="${PYTHON:-python3}"

die() { echo "install-moto.sh: error: $*" >&2; exit 1; }

# Fast path: already installed at the pinned version.
if [[ -x "$PY" && -x "$MOTO_SERVER" ]] \
   && [[ "$("$PY" -c 'import importlib.metadata as m; print(m.version("moto"), m.version("pg8000"))' 2>/dev/null || true)" == "$MOTO_VERSION $PG8000_VERSION" ]]; then
  echo "$MOTO_SERVER"
  exit 0
fi

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (need Python >= 3.9 with venv)"

if [[ ! -x "$PY" ]]; then
  "$PYTHON" -m venv "$VENV" || die "could not create virtualenv at $VENV (on Debian: apt-get install python3-venv)"
fi

# Keep .venv out of git even if the repo's .gitignore forgets it.
[[ -f "$VENV/.gitignore" ]] || echo '*' > "$VENV/.gitignore"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! "$PY" -m pip install --quiet --disable-pip-version-check --no-input \
      "moto[server]==$MOTO_VERSION" "pg8000==$PG8000_VERSION" >"$log" 2>&1; then
  cat "$log" >&2
  die "pip install moto[server]==$MOTO_VERSION pg8000==$PG8000_VERSION failed (output above)"
fi

[[ -x "$MOTO_SERVER" ]] || die "moto installed but $MOTO_SERVER is missing"
echo "$MOTO_SERVER"
