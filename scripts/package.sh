#!/usr/bin/env bash
# Builds the Debian package: target/debian/spotguard_<version>_<arch>.deb, with the binary in
# /usr/bin, the user unit in /usr/lib/systemd/user, the man page, shell completions and the
# example config. Needs cargo-deb (`cargo install --locked cargo-deb`); as root on Debian it is
# installed when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo deb --version >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "scripts/package.sh: installing cargo-deb" >&2
    cargo install --locked --quiet cargo-deb
  else
    echo "scripts/package.sh: needs cargo-deb: cargo install --locked cargo-deb" >&2
    exit 1
  fi
fi
cargo build --release --locked
rm -rf target/assets/man
cargo run --locked --quiet --example package-assets -- target/assets
gzip -9nf target/assets/man/*.1
cargo deb --no-build --locked "$@"
