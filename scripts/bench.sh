#!/usr/bin/env bash
# Measures spotguard's cost targets with the release binary against the fake Spotify, on a
# private D-Bus bus. Needs dbus-daemon (see scripts/test.sh) and Linux /proc. Exits 1 if a
# target is missed.
#  - benches/pipeline.rs: requests per idle poll, idle memory, CPU per poll, alert latency
#    (about a minute);
#  - benches/clock.rs: idle wake-ups and CPU at every = 60s (5 min) and 1s, CPU per poll over
#    HTTPS (the bench build alone trusts its throwaway CA: --features test-ca), and 1,000
#    accounts in one daemon (10 min). SPOTGUARD_BENCH=idle|tls|accounts runs one part.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench --locked --bench pipeline
cargo bench --locked --features test-ca --bench clock
