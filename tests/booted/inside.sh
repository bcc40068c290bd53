#!/bin/bash
# Runs inside a booted Debian container (see tests/booted/run.sh), as root, once the system is
# up: installs spotguard the way a person would (the .deb, or a binary in ~/.local/bin), logs in
# against the fake Spotify on loopback, runs `spotguard service install`, and checks what a
# person relies on: the unit runs, alerts reach dunst, the buttons work, reload, restarts.
# Every check prints one PASS/FAIL line with its evidence to /results/log.
set -u
MODE=$(cat /opt/sgtest/mode)           # deb | home | nouserns
EXPECT_PROFILE=$(cat /opt/sgtest/profile) # full | reduced
OUT=/results/log
: > "$OUT"
A=/home/alice
export LC_ALL=C.UTF-8

say() { echo "$*" | tee -a "$OUT" >/dev/console; }
pass() { say "PASS $1: $2"; }
fail() { say "FAIL $1: $2"; }
# check NAME EVIDENCE COMMAND...: PASS when COMMAND succeeds.
check() { local name=$1 evidence=$2; shift 2; if "$@"; then pass "$name" "$evidence"; else fail "$name" "$evidence"; fi; }
# waited NAME SECONDS EVIDENCE-COMMAND CONDITION...: waits for CONDITION, then shows the evidence
# as it is then.
waited() { local name=$1 secs=$2 evidence=$3; shift 3; if wait_for "$secs" "$@"; then pass "$name" "$(eval "$evidence")"; else fail "$name" "$(eval "$evidence")"; fi; }
restarted_since() { [ "$(prop NRestarts)" -gt "$1" ] && [ "$(prop SubState)" = running ]; }
as_alice() {
  runuser -u alice -- env HOME=$A XDG_RUNTIME_DIR=/run/user/1000 \
    DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus PATH=$A/.local/bin:/usr/local/bin:/usr/bin:/bin \
    DISPLAY=:99 "$@"
}
# wait_for SECONDS COMMAND...: polls every 0.2 s.
wait_for() { local end=$((SECONDS + $1)); shift; until "$@"; do [ $SECONDS -ge $end ] && return 1; sleep 0.2; done; }
prop() { as_alice systemctl --user show -p "$1" --value spotguard.service; }
shown() { grep -c -- "$1" $A/shown.log 2>/dev/null || true; }
finish() {
  # What a failing check needs to be understood, kept beside the log.
  cp $A/shown.log $A/menu.log $A/opened.log /tmp/install.out /results/ 2>/dev/null
  as_alice journalctl --user -o short-monotonic --no-pager > /results/user-journal.txt 2>&1
  say "DONE"
  # The container is thrown away: no need to wait for every user process to stop cleanly.
  sync; systemctl poweroff --force; exit 0
}

say "INFO $(systemctl --version | head -1), mode $MODE, kernel $(uname -r)"

# --- Install spotguard ------------------------------------------------------------------
if [ "$MODE" = deb ]; then
  out=$(dpkg -i /opt/sgtest/spotguard.deb 2>&1)
  check deb-installs "$(echo "$out" | tail -1)" test -x /usr/bin/spotguard
  check deb-unit "$(ls /usr/lib/systemd/user/spotguard.service 2>&1)" test -f /usr/lib/systemd/user/spotguard.service
  check deb-man-pages "$(ls /usr/share/man/man1/ | grep -c spotguard) pages: $(ls /usr/share/man/man1/ | grep spotguard | head -3 | tr '\n' ' ')..." \
    sh -c 'zcat /usr/share/man/man1/spotguard.1.gz | grep -q "^.TH spotguard 1" && zcat /usr/share/man/man1/spotguard-service.1.gz | grep -q "^.TH spotguard-service 1"'
  check deb-completions "$(ls /usr/share/bash-completion/completions/spotguard /usr/share/zsh/vendor-completions/_spotguard /usr/share/fish/vendor_completions.d/spotguard.fish 2>&1 | tr '\n' ' ')" \
    test -f /usr/share/fish/vendor_completions.d/spotguard.fish
  check deb-enables-nothing "user units enabled by the package: $(ls /etc/systemd/user/default.target.wants/ 2>/dev/null | grep -c spotguard)" \
    sh -c '! ls /etc/systemd/user/default.target.wants/ 2>/dev/null | grep -q spotguard'
  BIN=/usr/bin/spotguard
else
  install -d -o alice -g alice $A/.local/bin
  install -o alice -g alice -m 0755 /opt/sgtest/spotguard $A/.local/bin/spotguard
  BIN=$A/.local/bin/spotguard
fi
say "INFO $($BIN --version)"

# --- The container's limit, not the product's -----------------------------------------------
# Inside systemd-nspawn /proc/kmsg is not the kernel's, so ProtectKernelLogs= cannot be set up
# (226/NAMESPACE). A test-only drop-in turns it off for the unit and for install's probes
# (which are named spotguard-probe-*); everything else of the sandbox applies as on a host.
for d in spotguard.service.d spotguard-probe-.service.d; do
  mkdir -p /etc/systemd/user/$d
  printf '# booted-system test: nspawn has no real /proc/kmsg\n[Service]\nProtectKernelLogs=no\n' > /etc/systemd/user/$d/nspawn.conf
done

# --- A host without unprivileged user namespaces -------------------------------------------
# Ubuntu 24.04 restricts them through AppArmor; here a seccomp filter on the user's service
# manager denies creating one, for it and everything it starts (the probes, the unit).
if [ "$MODE" = nouserns ]; then
  mkdir -p /etc/systemd/system/user@1000.service.d
  printf '[Service]\nRestrictNamespaces=~user\n' > /etc/systemd/system/user@1000.service.d/nouserns.conf
  systemctl daemon-reload
  systemctl restart user@1000.service
  check userns-forbidden "unshare -U as alice: $(runuser -u alice -- env XDG_RUNTIME_DIR=/run/user/1000 systemd-run --user --wait --pipe --quiet unshare -U true 2>&1 | head -1)" \
    sh -c '! runuser -u alice -- env XDG_RUNTIME_DIR=/run/user/1000 systemd-run --user --wait --pipe --quiet unshare -U true >/dev/null 2>&1'
fi

# --- The desktop: Xvfb and dunst as user services ----------------------------------------
wait_for 30 test -S /run/user/1000/bus || { fail user-manager "no /run/user/1000/bus"; finish; }
install -d -o alice -g alice $A/.config/systemd/user/dunst.service.d $A/.config/dunst $A/.config/spotguard
cat > $A/.config/systemd/user/xvfb.service <<'EOF'
[Service]
ExecStart=/usr/bin/Xvfb :99 -screen 0 1280x800x24 -nolisten tcp
EOF
cat > $A/.config/systemd/user/dunst.service.d/display.conf <<'EOF'
[Unit]
Requires=xvfb.service
After=xvfb.service
[Service]
Environment=DISPLAY=:99
EOF
# dunst logs every notification it shows; its context menu picks "Sign out everywhere".
cat > $A/.config/dunst/dunstrc <<'EOF'
[global]
dmenu = /usr/local/bin/sg-dmenu
[log-all]
summary = "*"
script = /usr/local/bin/sg-dunst-log
EOF
cat > /usr/local/bin/sg-dunst-log <<'EOF'
#!/bin/sh
printf '%s\t%s\t%s\t%s\n' "$(date +%s.%N)" "$2" "$3" "$5" >> /home/alice/shown.log
EOF
cat > /usr/local/bin/sg-dmenu <<'EOF'
#!/bin/sh
tee -a /home/alice/menu.log | grep -m1 'Sign out everywhere'
EOF
# The URL opener: records what it was asked to open, the display it got, and that it runs
# outside spotguard's sandbox (it can write the home, which the sandbox hides).
cat > /usr/local/bin/sg-opener <<'EOF'
#!/bin/sh
printf 'url=%s display=%s\n' "$1" "${DISPLAY:-}" >> /home/alice/opened.log
EOF
chmod 0755 /usr/local/bin/sg-*
chown -R alice:alice $A
as_alice systemctl --user daemon-reload
as_alice systemctl --user start xvfb.service dunst.service
check dunst-runs "$(as_alice systemctl --user is-active dunst.service)" wait_for 10 sh -c 'runuser -u alice -- env XDG_RUNTIME_DIR=/run/user/1000 systemctl --user is-active -q dunst.service'

# --- The fake Spotify on loopback, and a login -------------------------------------------
as_alice systemd-run --user --unit=sgfake --quiet /opt/sgtest/spotguard-fake fake-spotify --listen 127.0.0.1:8900
wait_for 10 curl -sf -o /dev/null http://127.0.0.1:8900/__fake/stats || { fail fake "the fake did not start"; finish; }
curl -sf -X POST -d '{"client_id":"sgtest","redirect_uris":["http://127.0.0.1:8898/callback"]}' http://127.0.0.1:8900/__fake/apps
devices() { curl -sf -X PUT -d "$1" http://127.0.0.1:8900/__fake/devices; }
dev() { printf '{"id":"%s","is_active":false,"is_private_session":false,"is_restricted":false,"name":"%s","type":"%s","volume_percent":50,"supports_volume":true}' "$1" "$2" "$3"; }
devices "[$(dev lap-1 Laptop Computer)]"
cat > $A/.config/spotguard/config.toml <<'EOF'
[spotify]
api_base = "http://127.0.0.1:8900/v1"
accounts_base = "http://127.0.0.1:8900"
client_id = "sgtest"
redirect_uri = "http://127.0.0.1:8898/callback"

[schedule]
every = "2s"

[alerts]
opener = ["/usr/local/bin/sg-opener"]

[notify]
action_timeout = "5m"
EOF
chown -R alice:alice $A/.config
as_alice $BIN login --no-browser > /tmp/login.out 2>&1 &
login_pid=$!
wait_for 10 grep -q '^http' /tmp/login.out
url=$(grep -m1 '^http' /tmp/login.out)
callback=$(curl -s -o /dev/null -w '%{redirect_url}' "$url")
curl -s -o /dev/null "$callback"
wait $login_pid
check login "$(tail -1 /tmp/login.out)" grep -q 'spotguard now watches' /tmp/login.out

# --- service install -----------------------------------------------------------------------
t0=$(date +%s.%N)
as_alice $BIN service install > /tmp/install.out 2>&1
rc=$?
t1=$(date +%s.%N)
sed 's/^/    install: /' /tmp/install.out | tee -a "$OUT" >/dev/console
check install-exit "exit $rc after $(echo "$t1 - $t0" | bc 2>/dev/null || echo "?") s" test $rc = 0
check install-profile "$(grep -m1 '^Sandbox:' /tmp/install.out)" grep -q "^Sandbox: $EXPECT_PROFILE" /tmp/install.out
if [ "$MODE" = deb ]; then
  check install-uses-package "user copy: $(ls $A/.config/systemd/user/spotguard.service 2>&1 | head -1)" test ! -e $A/.config/systemd/user/spotguard.service
  check install-fragment "$(prop FragmentPath)" test "$(prop FragmentPath)" = /usr/lib/systemd/user/spotguard.service
fi
check ready "ActiveState=$(prop ActiveState) SubState=$(prop SubState)" test "$(prop SubState)" = running
check status-line "StatusText=$(prop StatusText)" wait_for 10 sh -c "runuser -u alice -- env XDG_RUNTIME_DIR=/run/user/1000 systemctl --user show -p StatusText --value spotguard.service | grep -q 'last poll'"
check first-look-summary "$(grep -m1 'found' $A/shown.log)" wait_for 15 grep -q 'spotguard found' $A/shown.log

# The sandbox really applies (full profile): own user namespace, home hidden, data writable.
pid=$(prop MainPID)
[ "${pid:-0}" != 0 ] || pid=none
if [ "$EXPECT_PROFILE" = full ]; then
  check own-user-namespace "$(readlink /proc/$pid/ns/user) vs init $(readlink /proc/1/ns/user)" \
    test "$(readlink /proc/$pid/ns/user)" != "$(readlink /proc/1/ns/user)"
  check no-capabilities "$(grep CapBnd /proc/$pid/status)" grep -q 'CapBnd:.0000000000000000' /proc/$pid/status
  check home-hidden "in the unit's mounts: $(nsenter -t $pid -m ls -A $A 2>&1 | tr '\n' ' ')" \
    sh -c "! nsenter -t $pid -m ls -A $A | grep -q shown.log"
else
  check same-user-namespace "$(readlink /proc/$pid/ns/user)" test "$(readlink /proc/$pid/ns/user)" = "$(readlink /proc/1/ns/user)"
fi
check no-new-privileges "$(grep NoNewPrivs /proc/$pid/status)" grep -q 'NoNewPrivs:.1' /proc/$pid/status
check seccomp "$(grep '^Seccomp:' /proc/$pid/status)" grep -q 'Seccomp:.2' /proc/$pid/status
as_alice systemd-analyze --user security spotguard.service > /results/security-$EXPECT_PROFILE.txt 2>&1
say "INFO exposure ($EXPECT_PROFILE profile): $(tail -1 /results/security-$EXPECT_PROFILE.txt)"

# --- An alert, shown by dunst, and its button ---------------------------------------------
as_alice $BIN devices trust Laptop > /dev/null
t0=$(date +%s.%N)
devices "[$(dev lap-1 Laptop Computer), $(dev gal-9 'Galaxy S24' Smartphone)]"
if wait_for 20 grep -q 'Galaxy S24' $A/shown.log; then
  t1=$(grep -m1 'Galaxy S24' $A/shown.log | cut -f1)
  pass alert-shown "$(grep -m1 'Galaxy S24' $A/shown.log | cut -f2- | tr '\t' '|') after $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s"
else
  fail alert-shown "dunst showed: $(cut -f2 $A/shown.log 2>/dev/null | tr '\n' '|')"
fi
timeout 10 runuser -u alice -- env XDG_RUNTIME_DIR=/run/user/1000 DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus dunstctl context
check sign-out-button "$(cat $A/opened.log 2>/dev/null)" wait_for 10 grep -q 'url=https://www.spotify.com/account/overview/' $A/opened.log
check opener-has-display "$(cat $A/opened.log 2>/dev/null)" grep -q 'display=:99' $A/opened.log

# --- Reload, good and bad ---------------------------------------------------------------------
as_alice systemctl --user reload spotguard.service
check reload "$(as_alice journalctl --user -u spotguard -n 20 -o cat | grep -m1 'configuration reloaded')" \
  wait_for 10 sh -c "runuser -u alice -- env XDG_RUNTIME_DIR=/run/user/1000 journalctl --user -u spotguard -o cat | grep -q 'configuration reloaded'"
cp $A/.config/spotguard/config.toml /tmp/good.toml
printf '\n[bogus]\nkey = 1\n' >> $A/.config/spotguard/config.toml
as_alice systemctl --user reload spotguard.service
check reload-refused "$(as_alice journalctl --user -u spotguard -o cat | grep -m1 'refused')" \
  wait_for 10 sh -c "runuser -u alice -- env XDG_RUNTIME_DIR=/run/user/1000 journalctl --user -u spotguard -o cat | grep -q 'configuration is refused'"
check reload-keeps-running "$(prop ActiveState)/$(prop SubState)" test "$(prop SubState)" = running
cp /tmp/good.toml $A/.config/spotguard/config.toml

# --- Restarts: SIGKILL, then a watchdog timeout; no duplicate alert ----------------------------
restarts=$(prop NRestarts)
as_alice systemctl --user kill -s KILL spotguard.service
waited restart-after-sigkill 30 'echo "NRestarts $restarts -> $(prop NRestarts), $(prop SubState)"' restarted_since $restarts
install -d -o alice -g alice $A/.config/systemd/user/spotguard.service.d
printf '[Service]\nWatchdogSec=4\n' > $A/.config/systemd/user/spotguard.service.d/zz-test-watchdog.conf
chown alice:alice $A/.config/systemd/user/spotguard.service.d/zz-test-watchdog.conf
as_alice systemctl --user daemon-reload
timeout 30 runuser -u alice -- env XDG_RUNTIME_DIR=/run/user/1000 systemctl --user restart spotguard.service
restarts=$(prop NRestarts)
as_alice systemctl --user kill -s STOP spotguard.service
waited restart-after-watchdog 40 'echo "NRestarts $restarts -> $(prop NRestarts), $(prop SubState); $(as_alice journalctl --user -u spotguard -o cat | grep -m1 -i "watchdog timeout")"' restarted_since $restarts
rm $A/.config/systemd/user/spotguard.service.d/zz-test-watchdog.conf
as_alice systemctl --user daemon-reload
sleep 5
check no-duplicate-alert "Galaxy S24 alerts shown: $(shown 'Galaxy S24')" test "$(shown 'Galaxy S24')" = 1

# --- status and uninstall --------------------------------------------------------------------
as_alice $BIN service status > /tmp/status.out 2>&1
sed 's/^/    status: /' /tmp/status.out | tee -a "$OUT" >/dev/console
check service-status "$(grep -m1 '^sandbox' /tmp/status.out)" grep -q "^sandbox: $EXPECT_PROFILE" /tmp/status.out
# Installing again over the running service (an upgrade): the new run must be the one that
# reports ready, not the old one still active when the restart is queued.
old_pid=$(prop MainPID)
as_alice $BIN service install > /tmp/reinstall.out 2>&1
rc=$?
check reinstall "exit $rc, MainPID $old_pid -> $(prop MainPID), $(grep -m1 '^Sandbox:' /tmp/reinstall.out)" \
  sh -c "[ $rc = 0 ] && [ \"\$(runuser -u alice -- env XDG_RUNTIME_DIR=/run/user/1000 systemctl --user show -p MainPID --value spotguard.service)\" != $old_pid ]"
as_alice $BIN service uninstall > /tmp/uninstall.out 2>&1
check uninstall "$(tail -1 /tmp/uninstall.out)" test "$(prop ActiveState)" = inactive
check uninstall-keeps-data "$(ls $A/.local/share/spotguard | tr '\n' ' ')" test -f $A/.local/share/spotguard/spotguard.db
finish
