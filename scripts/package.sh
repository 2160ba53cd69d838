#!/usr/bin/env bash
# The Debian package, built and checked as an installer would see it (scripts/test.sh calls
# this after its release build; run it alone after `cargo build --release --locked --bin
# rotationd`):
#   1. cargo-deb, pinned, installed when missing (a compile of a minute or two, once);
#   2. the man pages and bash/zsh/fish completions generated from the binary's own clap
#      definitions (`rotationd generate`) into target/package/;
#   3. `cargo deb --no-build`: the release binary as it is, not built a second time;
#   4. the package unpacked into a scratch root (dpkg-deb -x): every file there, the
#      example config a conffile that validates, `systemd-analyze verify` on the installed
#      unit (ExecStart pointed at the unpacked binary), `rotationd --help` run from it, the
#      man pages readable and the completions well-formed.
# Prints the package's path last.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION="3.8.0"   # newest on crates.io at time of writing; bump deliberately

die() { echo "package.sh: error: $*" >&2; exit 1; }

bin=target/release/rotationd
[[ -x $bin ]] || die "no release binary at $bin; build it first: cargo build --release --locked --bin rotationd"

if [[ "$(cargo deb --version 2>/dev/null || true)" != *"$CARGO_DEB_VERSION"* ]]; then
  echo "installing cargo-deb $CARGO_DEB_VERSION"
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked --quiet
fi

# Generated from the clap definitions: they cannot drift from the parser.
gen=target/package
rm -rf "$gen"
mkdir -p "$gen/man" "$gen/completions"
"$bin" generate man "$gen/man"
gzip -n -9 "$gen"/man/*.1
"$bin" generate completions bash >"$gen/completions/rotationd"
"$bin" generate completions zsh >"$gen/completions/_rotationd"
"$bin" generate completions fish >"$gen/completions/rotationd.fish"

rm -f target/debian/rotationd_*.deb
cargo deb --no-build --quiet --output target/debian/ >/dev/null
deb=$(ls target/debian/rotationd_*.deb)

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
dpkg-deb -x "$deb" "$root"

for f in \
  usr/bin/rotationd \
  etc/rotationd/rotationd.toml \
  usr/share/rotationd/prometheus/rotationd.rules.yml \
  usr/share/rotationd/grafana/rotationd.json \
  usr/share/rotationd/iam-policy.json \
  usr/share/doc/rotationd/README.md \
  usr/share/man/man1/rotationd.1.gz \
  usr/share/man/man1/rotationd-audit.1.gz \
  usr/share/man/man1/rotationd-run.1.gz \
  usr/share/bash-completion/completions/rotationd \
  usr/share/zsh/vendor-completions/_rotationd \
  usr/share/fish/vendor_completions.d/rotationd.fish; do
  [[ -s $root/$f ]] || die "$f is missing from $deb (or empty)"
done
cmp -s "$root/etc/rotationd/rotationd.toml" config/rotationd.example.toml \
  || die "/etc/rotationd/rotationd.toml in $deb is not config/rotationd.example.toml"
dpkg-deb --info "$deb" conffiles | grep -qx /etc/rotationd/rotationd.toml \
  || die "/etc/rotationd/rotationd.toml is not a conffile of $deb: an upgrade would overwrite the operator's edits"
if ls "$root"/usr/share/man/man1/rotationd-generate* >/dev/null 2>&1; then
  die "the hidden generate command has a man page"
fi

# The unit as installed, verified with its ExecStart at the unpacked binary (verify needs
# the program to exist).
unit=$(find "$root" -path '*/systemd/system/rotationd.service')
[[ -n $unit ]] || die "no systemd unit in $deb"
mkdir "$root/verify"
sed "s|ExecStart=/usr/bin/rotationd|ExecStart=$root/usr/bin/rotationd|" "$unit" >"$root/verify/rotationd.service"
grep -q "ExecStart=$root/usr/bin/rotationd run" "$root/verify/rotationd.service" \
  || die "the installed unit does not start /usr/bin/rotationd run"
systemd-analyze verify "$root/verify/rotationd.service"

"$root/usr/bin/rotationd" --help | grep -q '^Usage: rotationd ' || die "rotationd --help from the package printed no usage"
"$root/usr/bin/rotationd" --config "$root/etc/rotationd/rotationd.toml" validate >/dev/null \
  || die "the packaged example configuration does not validate"

# Man pages: roff with the title and the commands' options.
zcat "$root/usr/share/man/man1/rotationd.1.gz" | grep -q '^\.TH rotationd 1' || die "rotationd.1 has no .TH title"
zcat "$root/usr/share/man/man1/rotationd-audit.1.gz" | grep -q 'anchors' || die "rotationd-audit.1 does not document --anchors"
# Completions: parse as their shell's code (bash -n) and name the commands.
bash -n "$root/usr/share/bash-completion/completions/rotationd" || die "the bash completion does not parse"
for f in usr/share/bash-completion/completions/rotationd usr/share/zsh/vendor-completions/_rotationd usr/share/fish/vendor_completions.d/rotationd.fish; do
  grep -q 'setup-events' "$root/$f" || die "$f does not complete the commands"
  if grep -q 'generate' "$root/$f"; then die "$f completes the hidden generate command"; fi
done
head -1 "$root/usr/share/zsh/vendor-completions/_rotationd" | grep -q '^#compdef rotationd' || die "the zsh completion has no #compdef line"

echo "package OK: $deb"
