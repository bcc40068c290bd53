//! spotguard as a supervised service: the unit and the agent as rendered, `service install`
//! and `uninstall` against a temporary HOME, the systemd notify protocol on a socket this
//! test listens on (READY, STATUS, WATCHDOG, RELOADING, STOPPING), SIGHUP with a good and a
//! bad config, the second-instance refusal, and journal-friendly logs.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::sandbox::{Sandbox, stderr, stdout};
use spotguard::fake;
use spotguard::service::{self, Paths};

const WAIT: Duration = Duration::from_secs(15);

/// `service install --dry-run`'s unit text.
fn rendered_unit(out: &str) -> String {
    let mut lines = out.lines().skip_while(|l| !l.starts_with("Would write ")).skip(1);
    lines.by_ref().take_while(|l| !l.starts_with("Would run:")).map(|l| format!("{l}\n")).collect()
}

/// A directory of stand-ins for systemd's tools. Each appends its arguments to
/// `systemd.log`. `systemctl show` prints `state` (a running unit unless a test writes
/// another); a file `nobus` makes every `systemctl` fail as it does without a user bus.
/// `systemd-run` really runs the self-check after `--`, unless `refuse-full` holds an exit code
/// for a probe that asks for `PrivateUsers=yes` (a host without user namespaces): then it fails
/// as systemd 252's does, and `systemctl show` of the probe unit reports that exit code.
/// `restart` starts a new run (a new InvocationID: run-1, run-2, ...) unless `restart-ignored`
/// exists. `journalctl` prints `journal`.
fn fake_systemd(dir: &Path) -> PathBuf {
    let bin = dir.join("fakebin");
    std::fs::create_dir_all(&bin).expect("dir");
    let d = dir.display();
    let scripts = [
        (
            "systemctl",
            format!(
                r#"#!/bin/sh
echo "systemctl $*" >> '{d}/systemd.log'
if [ -e '{d}/nobus' ]; then echo 'Failed to connect to bus: No medium found' >&2; exit 1; fi
case "$2" in
  show) case "$5" in
      spotguard-probe-*) printf 'ActiveState=failed\nSubState=failed\nResult=exit-code\nExecMainCode=1\nExecMainStatus=%s\n' "$(cat '{d}/refuse-full')" ;;
      *) if [ -e '{d}/state' ]; then cat '{d}/state'; else printf 'ActiveState=active\nSubState=running\nResult=success\nStatusText=default: last poll 12:00:00\n'; fi
         echo "InvocationID=$(cat '{d}/invocation' 2>/dev/null || echo run-1)" ;;
    esac ;;
  restart) if [ ! -e '{d}/restart-ignored' ]; then
      n=$(cat '{d}/invocation' 2>/dev/null | tr -dc 0-9); echo "run-$((${{n:-1}} + 1))" > '{d}/invocation'
    fi ;;
  enable) echo "Created symlink $HOME/.config/systemd/user/default.target.wants/spotguard.service." >&2 ;;
  status) if grep -q failed '{d}/state' 2>/dev/null; then echo '     Active: failed (Result: exit-code) since today'; exit 3; fi ;;
  is-enabled) echo enabled ;;
esac
exit 0
"#
            ),
        ),
        (
            "systemd-run",
            format!(
                r#"#!/bin/sh
echo "systemd-run $*" >> '{d}/systemd.log'
full=no
for a in "$@"; do [ "$a" = PrivateUsers=yes ] && full=yes; [ "$a" = PrivateUsers=no ] && full=no; done
if [ "$full" = yes ] && [ -e '{d}/refuse-full' ]; then
  # As systemd 252 does: exit 1, and only the job's failure on stderr.
  echo "Job for spotguard-probe-full.service failed because the control process exited with error code." >&2; exit 1
fi
while [ "$1" != -- ]; do shift; done; shift
exec "$@"
"#
            ),
        ),
        (
            "journalctl",
            format!(
                r#"#!/bin/sh
echo "journalctl $*" >> '{d}/systemd.log'
cat '{d}/journal' 2>/dev/null
exit 0
"#
            ),
        ),
    ];
    for (name, text) in scripts {
        let script = bin.join(name);
        std::fs::write(&script, text).expect("script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    bin
}

async fn run_with(s: &Sandbox, bin: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = s.cmd(args);
    cmd.env("PATH", path_with(bin));
    tokio::task::spawn_blocking(move || cmd.output().expect("runs")).await.expect("join")
}

fn systemd_log(s: &Sandbox) -> String {
    std::fs::read_to_string(s.path().join("systemd.log")).unwrap_or_default()
}

fn path_with(bin: &Path) -> String {
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn rendered_unit_passes_systemd_analyze_verify() {
    let s = Sandbox::new().await;
    let out = s.run(&["service", "install", "--dry-run"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let unit = rendered_unit(&text);
    assert!(unit.contains(&format!("--config {}", s.config_path().display())), "{unit}");
    assert!(text.contains("systemctl --user enable spotguard.service"), "{text}");
    assert!(
        text.contains("systemd-run --user --wait --service-type=exec --unit=spotguard-probe-full-"),
        "{text}"
    );
    // The unit as rendered for this user, and as the Debian package ships it.
    for (name, unit) in [
        ("spotguard.service", unit),
        (
            "packaged/spotguard.service",
            // verify wants the binary to exist; the specifiers are what is checked here.
            service::systemd::render_packaged().replace("/usr/bin/spotguard", common::sandbox::BIN),
        ),
    ] {
        let path = s.path().join(name);
        std::fs::create_dir_all(path.parent().expect("dir")).expect("dir");
        std::fs::write(&path, &unit).expect("write unit");
        let verify = Command::new("systemd-analyze")
            .args(["verify", "--user", "--man=no"])
            .arg(&path)
            .env("HOME", s.path())
            .env("XDG_RUNTIME_DIR", s.path())
            .output()
            .expect("systemd-analyze is a test dependency (Debian: systemd); tests never skip");
        let said = String::from_utf8_lossy(&verify.stderr);
        assert!(verify.status.success() && said.trim().is_empty(), "systemd-analyze verify {name}: {said}");
    }
    // The full profile's exposure, as systemd rates the unit file: at most 1.7 (the rest is the
    // network access it needs and what user units cannot have).
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--user"])
        .arg(s.path().join("spotguard.service"))
        .env("HOME", s.path())
        .env("XDG_RUNTIME_DIR", s.path())
        .output()
        .expect("systemd-analyze runs");
    let table = String::from_utf8_lossy(&security.stdout);
    let score: f64 = table
        .lines()
        .find_map(|l| l.split("Overall exposure level for spotguard.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{table}"));
    assert!(score <= 1.7, "exposure {score} > 1.7:\n{table}");
    assert!(!s.path().join("xdg-config/systemd").exists(), "--dry-run writes nothing");
    // Issue 14: building the context opened (and migrated) the database, so a dry run made one.
    assert!(!s.db_path().exists(), "--dry-run creates no database");
}

#[test]
fn launchd_agent_parses_with_the_promised_keys() {
    let target = Paths {
        binary: PathBuf::from("/usr/local/bin/spotguard"),
        config: Some(PathBuf::from("/Users/me/Library/Application Support/spotguard/config.toml")),
        config_dir: PathBuf::from("/Users/me/Library/Application Support/spotguard"),
        data_dir: PathBuf::from("/Users/me/Library/Application Support/spotguard"),
    };
    let text =
        service::render_launchd(&target, Path::new("/Users/me/Library/Logs/spotguard")).expect("renders");
    let v: plist::Value = plist::from_bytes(text.as_bytes()).expect("a valid plist");
    let d = v.as_dictionary().expect("a dictionary");
    assert_eq!(d.get("Label").and_then(|v| v.as_string()), Some("io.github.spotguard"));
    let args: Vec<&str> = d
        .get("ProgramArguments")
        .and_then(|v| v.as_array())
        .expect("ProgramArguments")
        .iter()
        .filter_map(|v| v.as_string())
        .collect();
    assert_eq!(
        args,
        [
            "/usr/local/bin/spotguard",
            "run",
            "--config",
            "/Users/me/Library/Application Support/spotguard/config.toml"
        ]
    );
    assert_eq!(d.get("RunAtLoad").and_then(|v| v.as_boolean()), Some(true));
    let keep = d.get("KeepAlive").and_then(|v| v.as_dictionary()).expect("KeepAlive");
    assert_eq!(keep.get("SuccessfulExit").and_then(|v| v.as_boolean()), Some(false), "restart on crash only");
    assert_eq!(d.get("ThrottleInterval").and_then(|v| v.as_signed_integer()), Some(10));
    assert_eq!(d.get("ProcessType").and_then(|v| v.as_string()), Some("Background"));
    for key in ["StandardOutPath", "StandardErrorPath"] {
        let p = d.get(key).and_then(|v| v.as_string()).expect(key);
        assert!(p.starts_with("/Users/me/Library/Logs/spotguard/"), "{key}: {p}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn install_probes_the_sandbox_starts_the_unit_and_uninstall_undoes_it() {
    let s = Sandbox::new().await;
    let bin = fake_systemd(s.path());
    let out = run_with(&s, &bin, &["service", "install"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Sandbox: full (own user namespace"), "{text}");
    assert!(text.contains("Status: default: last poll"), "{text}");
    assert!(text.contains("loginctl enable-linger"), "{text}");
    let unit = s.path().join("xdg-config/systemd/user/spotguard.service");
    let written = std::fs::read_to_string(&unit).expect("unit written");
    assert!(written.contains("PrivateUsers=yes"));
    assert!(written.contains(&format!("BindPaths={}\n", s.db_path().parent().expect("dir").display())));
    assert!(!s.path().join("xdg-config/systemd/user/spotguard.service.d/profile.conf").exists());
    let log = systemd_log(&s);
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "systemctl --user daemon-reload");
    // The probe ran the real self-check under the unit's own sandbox settings.
    assert!(lines[1].starts_with("systemd-run --user --wait --service-type=exec"), "{log}");
    assert!(lines[1].contains("-p PrivateUsers=yes") && lines[1].contains("-p ProtectHome=tmpfs"), "{log}");
    assert!(
        lines[1].ends_with(&format!(
            "-- {} --config {} service self-check",
            std::fs::canonicalize(common::sandbox::BIN).expect("bin").display(),
            s.config_path().display()
        )),
        "{log}"
    );
    let rest = &lines[2..];
    assert_eq!(
        rest[..3],
        [
            "systemctl --user daemon-reload",
            "systemctl --user enable spotguard.service",
            "systemctl --user reset-failed spotguard.service",
        ],
        "{log}"
    );
    // Which run is current before the restart, so the old one is not taken for the new.
    assert!(rest[3].starts_with("systemctl --user show -p ActiveState"), "{log}");
    assert!(rest[3].contains("InvocationID"), "{log}");
    assert_eq!(rest[4], "systemctl --user restart --no-block spotguard.service", "{log}");
    assert!(rest[5].starts_with("systemctl --user show -p ActiveState"), "{log}");

    let out = run_with(&s, &bin, &["service", "status"]).await;
    let text = stdout(&out);
    assert!(text.contains("enabled: enabled") && text.contains("state: active (running)"), "{text}");
    assert!(text.contains("sandbox: full"), "{text}");

    let out = run_with(&s, &bin, &["service", "uninstall"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!unit.exists(), "unit removed");
    assert!(s.db_path().exists(), "data kept");
    assert!(systemd_log(&s).ends_with(
        "systemctl --user disable --now spotguard.service\nsystemctl --user reset-failed spotguard.service\n\
         systemctl --user daemon-reload\n"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_user_namespaces_install_falls_back_to_the_reduced_profile_and_says_so() {
    let s = Sandbox::new().await;
    let bin = fake_systemd(s.path());
    std::fs::write(s.path().join("refuse-full"), "226").expect("write");
    let out = run_with(&s, &bin, &["service", "install"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("The full sandbox does not start on this host (status=226/NAMESPACE"), "{text}");
    assert!(text.contains("Sandbox: reduced"), "{text}");
    let dropin = s.path().join("xdg-config/systemd/user/spotguard.service.d/profile.conf");
    let d = std::fs::read_to_string(&dropin).expect("drop-in written");
    assert!(d.contains("# Why: status=226/NAMESPACE") && d.contains("PrivateUsers=no"), "{d}");
    let log = systemd_log(&s);
    assert_eq!(log.lines().filter(|l| l.starts_with("systemd-run")).count(), 2, "{log}");
    let text = stdout(&run_with(&s, &bin, &["service", "status"]).await);
    assert!(text.contains("sandbox: reduced") && text.contains("status=226/NAMESPACE"), "{text}");

    // Once the host allows the full sandbox, installing again removes the drop-in.
    std::fs::remove_file(s.path().join("refuse-full")).expect("rm");
    let out = run_with(&s, &bin, &["service", "install"]).await;
    assert!(out.status.success() && stdout(&out).contains("Sandbox: full"), "{}", stdout(&out));
    assert!(!dropin.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unit_that_does_not_start_is_reported_in_systemds_own_words() {
    let s = Sandbox::new().await;
    let bin = fake_systemd(s.path());
    std::fs::write(
        s.path().join("state"),
        "ActiveState=failed\nSubState=failed\nResult=exit-code\nExecMainCode=1\nExecMainStatus=218\n",
    )
    .expect("write");
    std::fs::write(
        s.path().join("journal"),
        "spotguard.service: Failed to drop capabilities: Operation not permitted\n",
    )
    .expect("write");
    let out = run_with(&s, &bin, &["service", "install"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("did not start: failed (failed), result exit-code, last exit status=218/CAPABILITIES"),
        "{err}"
    );
    assert!(err.contains("Active: failed (Result: exit-code)"), "{err}");
    assert!(err.contains("Failed to drop capabilities: Operation not permitted"), "{err}");
    assert!(err.contains("What to do: run `spotguard run` in a terminal"), "{err}");
    assert!(!err.contains("Created symlink"), "systemd's success line is not the reason: {err}");
    assert!(!err.contains("session bus"), "the bus was fine: {err}");
}

/// A reinstall over a running service: the old run is still active right after the restart is
/// queued, and must not be taken for the new one reporting ready.
#[tokio::test(flavor = "multi_thread")]
async fn a_reinstall_waits_for_the_new_run_not_the_old_one() {
    let s = Sandbox::new().await;
    let bin = fake_systemd(s.path());
    std::fs::write(s.path().join("restart-ignored"), "").expect("write");
    let out = run_with(&s, &bin, &["service", "install"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("did not report ready within 15s"), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn install_without_a_user_bus_says_what_to_do() {
    let s = Sandbox::new().await;
    let bin = fake_systemd(s.path());
    std::fs::write(s.path().join("nobus"), "").expect("write");
    let out = run_with(&s, &bin, &["service", "install"]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("No medium found") && err.contains("user session bus"), "{err}");
}

/// Datagrams the daemon sent to NOTIFY_SOCKET, gathered until `done` holds.
fn gather(sock: &UnixDatagram, seen: &mut Vec<String>, done: impl Fn(&[String]) -> bool) {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while !done(seen) {
        assert!(start.elapsed() < WAIT, "notify messages so far: {seen:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

fn has(seen: &[String], line: &str) -> bool {
    seen.iter().any(|m| m.lines().any(|l| l == line))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_notify_protocol_and_sighup_reload_good_and_bad() {
    let s = Sandbox::new().await;
    s.spotify.set_devices(vec![fake::device("a", "Laptop", "Computer", false)]);
    let sock_path = s.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let socket = sock_path.display().to_string();
    let mut d = s.spawn_daemon(&[("NOTIFY_SOCKET", socket.as_str()), ("WATCHDOG_USEC", "1000000")]);
    let mut seen = Vec::new();
    let (sock2, mut seen2) = tokio::task::spawn_blocking(move || {
        gather(&sock, &mut seen, |s| {
            has(s, "READY=1")
                && has(s, "WATCHDOG=1")
                && s.iter().any(|m| m.contains("STATUS=default: last poll"))
        });
        (sock, seen)
    })
    .await
    .expect("join");
    assert!(seen2.iter().any(|m| m.contains("1 not trusted")), "{seen2:?}");

    // A bad config: refused, the old one stays, polling goes on.
    let good = std::fs::read_to_string(s.config_path()).expect("config");
    std::fs::write(s.config_path(), format!("{good}\n[bogus]\nkey = 1\n")).expect("bad config");
    d.signal("HUP");
    let polls = s.spotify.request_count("/v1/me/player/devices");
    s.wait_for_polls(polls + 2, WAIT).await;
    let log = d.log_text();
    assert!(log.contains("the changed configuration is refused; the old one stays in force"), "{log}");
    assert!(log.contains("unknown field `bogus`"), "{log}");

    // A good one: reloaded, with RELOADING=1 then READY=1 again.
    std::fs::write(s.config_path(), good.replace("every = \"1s\"", "every = \"2s\"")).expect("good config");
    seen2.clear();
    d.signal("HUP");
    let (sock3, seen3) = tokio::task::spawn_blocking(move || {
        let mut seen = seen2;
        gather(&sock2, &mut seen, |s| has(s, "RELOADING=1") && has(s, "READY=1"));
        (sock2, seen)
    })
    .await
    .expect("join");
    assert!(seen3.iter().any(|m| m.contains("MONOTONIC_USEC=")), "{seen3:?}");
    let start = Instant::now();
    while !d.log_text().contains("configuration reloaded") {
        assert!(start.elapsed() < WAIT, "{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(d.log_text().contains("polling every 2s"), "{}", d.log_text());

    d.signal("TERM");
    let (_, seen4) = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        gather(&sock3, &mut seen, |s| has(s, "STOPPING=1"));
        (sock3, seen)
    })
    .await
    .expect("join");
    assert!(has(&seen4, "STOPPING=1"));
    assert!(d.wait(WAIT).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_daemon_on_the_same_database_is_refused_with_the_pid() {
    let s = Sandbox::new().await;
    let mut first = s.spawn_daemon(&[]);
    s.wait_for_polls(1, WAIT).await;
    let start = Instant::now();
    let out = s.run(&["run"]).await;
    assert!(start.elapsed() < Duration::from_secs(5), "refused at once");
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("another spotguard is already running"), "{err}");
    assert!(err.contains(&format!("(pid {})", first.child.id())), "{err}");
    // A killed daemon leaves no stale lock behind.
    first.signal("KILL");
    first.wait(WAIT).await;
    let mut again = s.spawn_daemon(&[]);
    let polls = s.spotify.request_count("/v1/me/player/devices");
    s.wait_for_polls(polls + 1, WAIT).await;
    again.signal("TERM");
    assert!(again.wait(WAIT).await.success(), "{}", again.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn under_the_journal_log_lines_carry_no_timestamp() {
    let s = Sandbox::new().await;
    let mut d = s.spawn_daemon(&[("JOURNAL_STREAM", "8:12345")]);
    s.wait_for_polls(1, WAIT).await;
    d.signal("TERM");
    d.wait(WAIT).await;
    let log = d.log_text();
    let first = log.lines().next().expect("a log line");
    assert!(first.trim_start().starts_with("WARN") || first.trim_start().starts_with("INFO"), "{first}");
    assert!(!first.starts_with("20"), "no date: {first}");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_says_whether_a_daemon_runs_and_when_it_polls_next() {
    let s = Sandbox::new().await;
    let out = s.run(&["status", "--json"]).await;
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(json["daemon_running"], false);
    let mut d = s.spawn_daemon(&[]);
    s.wait_for_polls(1, WAIT).await;
    let out = s.run(&["status", "--json"]).await;
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(json["daemon_running"], true);
    assert_eq!(json["daemon_pid"], d.child.id());
    assert_eq!(json["schedule"], "every 1s");
    assert!(json["accounts"][0]["next_poll_at"].is_string(), "{json}");
    assert_eq!(json["accounts"][0]["trusted_devices"], 0);
    assert!(json["accounts"][0]["unknown_devices"].is_number(), "{json}");
    let text = stdout(&s.run(&["status"]).await);
    assert!(text.starts_with(&format!("daemon: running (pid {})", d.child.id())), "{text}");
    d.signal("TERM");
    d.wait(WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_help_shows_an_example() {
    let s = Sandbox::new().await;
    let commands: &[&[&str]] = &[
        &["run"],
        &["check"],
        &["devices"],
        &["devices", "trust"],
        &["devices", "untrust"],
        &["devices", "label"],
        &["devices", "mute"],
        &["devices", "unmute"],
        &["devices", "merge"],
        &["devices", "forget"],
        &["history"],
        &["report"],
        &["completions"],
        &["login"],
        &["logout"],
        &["doctor"],
        &["status"],
        &["service"],
        &["service", "install"],
        &["service", "uninstall"],
        &["service", "status"],
        &["demo"],
    ];
    for c in commands {
        let mut args = c.to_vec();
        args.push("--help");
        let out = s.run(&args).await;
        assert!(out.status.success(), "{c:?}: {}", stderr(&out));
        let text = stdout(&out);
        assert!(text.contains("Example"), "{c:?} --help has no example:\n{text}");
    }
}

/// Replaces the sandbox config's `storage.database` with `toml_value` (a TOML string, escapes
/// and all).
fn set_database(s: &Sandbox, toml_value: &str) {
    let text = std::fs::read_to_string(s.config_path()).expect("config");
    let line = format!("database = \"{}\"", s.db_path().display());
    assert!(text.contains(&line), "{text}");
    std::fs::write(s.config_path(), text.replace(&line, &format!("database = {toml_value}")))
        .expect("config");
}

/// Issue 11: a newline in `storage.database` injected lines into the rendered unit (an
/// `ExecStartPre=` was verified). Now the config is refused before anything is written or run.
#[tokio::test(flavor = "multi_thread")]
async fn a_newline_in_storage_database_makes_install_refuse_and_writes_no_unit() {
    let s = Sandbox::new().await;
    let bin = fake_systemd(s.path());
    let pwned = s.path().join("pwned");
    set_database(
        &s,
        &format!(
            "\"{}/x\\nExecStartPre=/bin/touch {}\\n/spotguard.db\"",
            s.path().display(),
            pwned.display()
        ),
    );
    for args in [&["service", "install"][..], &["service", "install", "--dry-run"]] {
        let out = run_with(&s, &bin, args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("storage.database:") && err.contains("control character"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one sentence, the newline shown escaped: {err}");
        assert!(!stdout(&out).contains("ExecStartPre"), "{}", stdout(&out));
    }
    assert!(!s.path().join("xdg-config/systemd").exists(), "no unit written");
    assert_eq!(systemd_log(&s), "", "nothing run");
    assert!(!pwned.exists());
    let made: Vec<String> = std::fs::read_dir(s.path())
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("x\n"))
        .collect();
    assert!(made.is_empty(), "no directory made from the path: {made:?}");
}

/// A data dir with a `:` (which `BindPaths=` reads as source:destination) and a `$` (which it
/// does not expand) is one quoted word that systemd reads back as one absolute path.
#[tokio::test(flavor = "multi_thread")]
async fn a_data_dir_with_a_colon_and_a_dollar_is_one_path_to_systemd() {
    let s = Sandbox::new().await;
    let dir = s.path().join("odd:dir$HOME");
    set_database(&s, &format!("\"{}/spotguard.db\"", dir.display()));
    let out = s.run(&["service", "install", "--dry-run"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let unit = rendered_unit(&stdout(&out));
    assert!(unit.contains(&format!("BindPaths=\"{}\"\n", dir.display())), "{unit}");
    let path = s.path().join("spotguard.service");
    std::fs::write(&path, &unit).expect("write unit");
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--user", "--man=no"])
        .arg(&path)
        .env("HOME", s.path())
        .env("XDG_RUNTIME_DIR", s.path())
        .output()
        .expect("systemd-analyze runs");
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(verify.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}
