#!/usr/bin/env bash
# Runs spotguard's whole test suite: unit tests, the built binary against the fake Spotify,
# and the end-to-end tests on a private D-Bus session bus. Those need the real `dbus-daemon`;
# as root on Debian/Ubuntu this script installs it, otherwise it says what to install.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test desktop`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dbus-daemon >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: installing dbus-daemon (the D-Bus tests need a real bus)" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dbus-daemon >/dev/null
  else
    echo "scripts/test.sh: the D-Bus tests need dbus-daemon: install it (Debian/Ubuntu: sudo apt-get install dbus-daemon; Fedora: sudo dnf install dbus-daemon)" >&2
    exit 1
  fi
fi

exec cargo test --locked "$@"
