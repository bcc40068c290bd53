#!/bin/bash
# The booted-system test: spotguard installed and run as a person would, under a real systemd
# booted in a container, on the systemd versions people have.
#
#   debian12-deb       Debian 12 (systemd 252): the .deb installed, its packaged unit enabled
#   debian13-home      Debian 13 (systemd 257): a binary in ~/.local/bin, a unit in ~/.config
#   debian12-nouserns  Debian 12 where the user's service manager may not create user namespaces
#                      (RestrictNamespaces=~user on user@1000.service, a seccomp stand-in for
#                      Ubuntu's AppArmor restriction or user.max_user_namespaces=0, which this
#                      machine's /proc/sys does not let us set): install must fall back to the
#                      reduced profile and still watch
#
# Each root file system is made once with debootstrap and cached under /var/tmp (keyed by the
# package list and setup below), then booted with `systemd-nspawn --boot --volatile=overlay`
# (nothing is written to the cache) and `--private-network` (only a loopback). Inside,
# tests/booted/inside.sh runs the checks and powers off. Needs root, debootstrap and
# systemd-nspawn (Debian: debootstrap, systemd-container), and the .deb from scripts/package.sh.
#
# Usage: tests/booted/run.sh [CASE...]   (default: all three). Prints PASS/FAIL per check and
# ends with "booted: N passed, M failed"; exits non-zero if any check failed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
CACHE=${SPOTGUARD_BOOTED_CACHE:-/var/tmp/spotguard-booted}
MIRROR=${SPOTGUARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,dunst,xvfb,xauth,procps,curl,ca-certificates,bc,util-linux
CASES=("$@")
[ ${#CASES[@]} -gt 0 ] || CASES=(debian12-deb debian13-home debian12-nouserns)

if [ "$(id -u)" != 0 ]; then echo "tests/booted/run.sh: needs root (debootstrap, systemd-nspawn)" >&2; exit 1; fi
for tool in debootstrap systemd-nspawn; do
  command -v $tool >/dev/null || { echo "tests/booted/run.sh: needs $tool (apt-get install debootstrap systemd-container)" >&2; exit 1; }
done

DEB=$(ls -t target/debian/spotguard_*.deb 2>/dev/null | head -1 || true)
BIN=target/release/spotguard
# The fake Spotify is test code, not in the release binary or the .deb: a debug build with the
# `fake` feature serves it inside the container (cheap: it reuses `cargo test`'s build).
cargo build --quiet --features fake --bin spotguard
FAKE=target/debug/spotguard

# The setup applied to a fresh root file system; its text is part of the cache key.
setup_rootfs() {
  local r=$1
  chroot "$r" useradd -m -u 1000 -s /bin/bash alice
  mkdir -p "$r/var/lib/systemd/linger" && touch "$r/var/lib/systemd/linger/alice"
  # Persistent journal: user journals are split per user, so `journalctl --user` works.
  mkdir -p "$r/var/log/journal"
  echo sgtest > "$r/etc/hostname"
  cat > "$r/etc/systemd/system/sgtest.service" <<'EOF'
[Unit]
Description=spotguard booted-system test
ConditionPathExists=/opt/sgtest/inside.sh
After=multi-user.target user@1000.service
Wants=user@1000.service
[Service]
Type=oneshot
ExecStart=/bin/bash /opt/sgtest/inside.sh
StandardOutput=journal
[Install]
WantedBy=multi-user.target
EOF
  ln -sf /etc/systemd/system/sgtest.service "$r/etc/systemd/system/multi-user.target.wants/sgtest.service"
  # No login prompt on the console.
  ln -sf /dev/null "$r/etc/systemd/system/console-getty.service"
}

rootfs() {
  local release=$1
  local key
  key=$( { echo "$PACKAGES $MIRROR"; declare -f setup_rootfs; } | sha256sum | cut -c1-12)
  local dir=$CACHE/$release-$key
  if [ ! -e "$dir/.complete" ]; then
    echo "booted: building the $release root file system (cached in $dir)" >&2
    rm -rf "$dir" "$dir.tmp"
    mkdir -p "$CACHE"
    debootstrap --variant=minbase --include=$PACKAGES "$release" "$dir.tmp" "$MIRROR" > "$CACHE/$release.debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/$release.debootstrap.log" >&2; exit 1; }
    setup_rootfs "$dir.tmp"
    chroot "$dir.tmp" apt-get clean
    touch "$dir.tmp/.complete"
    mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

passed=0
failed=0

run_case() {
  local name=$1 release mode profile
  case $name in
    debian12-deb) release=bookworm mode=deb profile=full ;;
    debian13-home) release=trixie mode=home profile=full ;;
    debian12-nouserns) release=bookworm mode=nouserns profile=reduced ;;
    *) echo "unknown case $name" >&2; exit 2 ;;
  esac
  local root
  root=$(rootfs $release)
  local work=$CACHE/run-$name
  rm -rf "$work" && mkdir -p "$work/payload" "$work/results"
  cp tests/booted/inside.sh "$work/payload/"
  cp "$FAKE" "$work/payload/spotguard-fake"
  echo $mode > "$work/payload/mode"
  echo $profile > "$work/payload/profile"
  if [ $mode = deb ]; then
    [ -n "$DEB" ] || { echo "tests/booted/run.sh: no .deb in target/debian: run scripts/package.sh first" >&2; exit 1; }
    cp "$DEB" "$work/payload/spotguard.deb"
  else
    [ -x "$BIN" ] || { echo "tests/booted/run.sh: no $BIN: cargo build --release first" >&2; exit 1; }
    cp "$BIN" "$work/payload/spotguard"
  fi
  echo "booted: $name ($release, $mode)"
  local start=$SECONDS
  timeout 420 systemd-nspawn --quiet --directory="$root" --volatile=overlay --boot --private-network \
    --register=no --keep-unit --machine="sg-$name" \
    --bind-ro="$work/payload:/opt/sgtest" --bind="$work/results:/results" \
    > "$work/console.log" 2>&1 || true
  if ! grep -q '^DONE' "$work/results/log" 2>/dev/null; then
    echo "FAIL $name: the container did not finish its checks; console:" 
    tail -30 "$work/console.log" | sed 's/^/    /'
    failed=$((failed + 1))
  fi
  sed "s/^/[$name] /" "$work/results/log" 2>/dev/null | grep -v '^\[.*\] DONE$' || true
  local p f
  p=$(grep -c '^PASS' "$work/results/log" 2>/dev/null || true)
  f=$(grep -c '^FAIL' "$work/results/log" 2>/dev/null || true)
  passed=$((passed + p)); failed=$((failed + f))
  echo "booted: $name: $p passed, $f failed in $((SECONDS - start)) s"
}

for c in "${CASES[@]}"; do run_case "$c"; done
echo "booted: $passed passed, $failed failed"
[ $failed = 0 ]
