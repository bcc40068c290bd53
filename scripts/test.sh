#!/usr/bin/env bash
# Runs spotguard's whole test suite:
#  1. `cargo test`: unit tests, the built binary against the fake Spotify, and the end-to-end
#     tests on a private D-Bus session bus. Those need real programs: `dbus-daemon`, GNOME
#     Keyring with `secret-tool` (the OS secret store tests), `systemd-analyze` (the unit file),
#     Chromium (the HTML report), libfaketime (the wall clock stepped under the daemon), and
#     util-linux `script` (a terminal for the question `devices trust --all` asks).
#  2. The booted-system test (tests/booted/run.sh): the .deb and a home install under a real
#     systemd booted in containers (Debian 12 and 13, systemd-nspawn). It needs root,
#     `debootstrap`, `systemd-nspawn` and `cargo-deb`; without root it is skipped with a
#     message (CI runs as root and never skips it).
# As root on Debian/Ubuntu this script installs what is missing; otherwise it says what to
# install. Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test e2e desktop::`), and
# then only cargo's tests run.
set -euo pipefail
cd "$(dirname "$0")/.."

root=false
[ "$(id -u)" = 0 ] && root=true
missing=()
command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus-daemon)
command -v gnome-keyring-daemon >/dev/null 2>&1 || missing+=(gnome-keyring)
command -v secret-tool >/dev/null 2>&1 || missing+=(libsecret-tools)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
command -v script >/dev/null 2>&1 || missing+=(bsdutils)
# The e-mail channel is tested against a real SMTP server: Debian's aiosmtpd.
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || missing+=(python3-aiosmtpd)
if $root && [ $# = 0 ]; then
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  command -v systemd-nspawn >/dev/null 2>&1 || missing+=(systemd-container)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if $root && command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: installing ${missing[*]} (the end-to-end tests use them for real)" >&2
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "scripts/test.sh: the end-to-end tests need: ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
fi

cargo test --locked "$@"
[ $# = 0 ] || exit 0

if ! $root; then
  if [ "${CI:-}" = true ]; then
    echo "scripts/test.sh: CI must run the booted-system test, which needs root" >&2
    exit 1
  fi
  echo "scripts/test.sh: skipped the booted-system test (tests/booted/run.sh): it needs root" >&2
  exit 0
fi
scripts/package.sh
tests/booted/run.sh
