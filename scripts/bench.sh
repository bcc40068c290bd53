#!/usr/bin/env bash
# Measures spotguard's cost targets with the release binary against the fake Spotify, on a
# private D-Bus bus: requests per idle poll, idle memory, CPU per poll, wake-ups, alert
# latency. Needs dbus-daemon (see scripts/test.sh) and Linux /proc. Exits 1 if a target is missed.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --locked --bench pipeline
