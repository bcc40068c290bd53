#!/usr/bin/env bash
# Runs spotguard's whole test suite: unit tests, the built binary against the fake Spotify,
# and the end-to-end tests on a private D-Bus session bus. Those need real programs: the
# `dbus-daemon`, GNOME Keyring with `secret-tool` for the OS secret store tests, and
# `systemd-analyze` to verify the unit file, and Chromium to render the HTML report. As root on
# Debian/Ubuntu this script installs what is missing; otherwise it says what to install.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test desktop`).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus-daemon)
command -v gnome-keyring-daemon >/dev/null 2>&1 || missing+=(gnome-keyring)
command -v secret-tool >/dev/null 2>&1 || missing+=(libsecret-tools)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: installing ${missing[*]} (the end-to-end tests use them for real)" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "scripts/test.sh: the end-to-end tests need: ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

exec cargo test --locked "$@"
