//! `spotguard run` as a process against the fake Spotify: request economy, faults and
//! backoff, failed polls that are not evidence, answers read device by device, signals,
//! secrets kept out of logs and out of reach (non-dumpable), and a planted lock file.

use crate::common;

use std::time::Duration;

use common::dbus::{NotificationServer, TestBus};
use common::receiver::{Answer, Receiver};
use common::sandbox::{Sandbox, TOKEN, until};
use serde_json::json;
use spotguard::fake::{self, Fault};
use spotguard::store::Store;

const DEVICES: &str = "/v1/me/player/devices";
const PLAYER: &str = "/v1/me/player";

fn count(store: &Store, table: &str) -> i64 {
    store.row_counts().expect("counts").into_iter().find(|(t, _)| *t == table).expect("table").1
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_polls_cost_one_request_and_playback_is_asked_only_when_active() {
    let s = Sandbox::new().await;
    s.spotify.set_devices(vec![fake::device("a", "Laptop", "Computer", false)]);
    let mut d = s.spawn_daemon(&[]);
    s.wait_for_polls(4, Duration::from_secs(15)).await;
    assert_eq!(s.spotify.request_count(PLAYER), 0, "nothing active: no playback request");
    let total = s.spotify.requests().len();
    assert_eq!(total, s.spotify.request_count(DEVICES), "one request per idle poll");

    let active = fake::device("a", "Laptop", "Computer", true);
    s.spotify.set_playback(Some(fake::playing(active.clone(), "Song", "Band")));
    s.spotify.set_devices(vec![active]);
    let before = s.spotify.request_count(DEVICES);
    s.wait_for_polls(before + 2, Duration::from_secs(15)).await;
    assert!(s.spotify.request_count(PLAYER) >= 1, "active device: playback asked");
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(10)).await.success());
    // Storage did not grow with polls: one device, one presence interval.
    let st = s.store();
    assert_eq!(count(&st, "devices"), 1);
    assert_eq!(count(&st, "presence"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_poll_is_not_evidence_and_logs_once() {
    let s = Sandbox::new().await;
    s.spotify.set_devices(vec![fake::device("a", "Laptop", "Computer", false)]);
    let mut d = s.spawn_daemon(&[]);
    s.wait_for_store("first poll", Duration::from_secs(10), |st| count(st, "devices") == 1).await;
    let events_before = count(&s.store(), "events");
    // The device list comes back broken, then empty-but-failing: neither is "gone" nor "new".
    s.spotify.set_devices(vec![fake::device("b", "Stranger", "Smartphone", false)]);
    s.spotify.push_fault(Fault::Malformed);
    s.spotify.push_fault(Fault::Unavailable);
    let before = s.spotify.request_count(DEVICES);
    // Backoff after the first failure is at least 15 s, so within the next 4 s only the
    // first failing request happens: ticks are skipped, not queued.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = s.spotify.request_count(DEVICES) - before;
    assert_eq!(during, 1, "one failed poll, then ticks skipped while backing off");
    let st = s.store();
    assert_eq!(count(&st, "events"), events_before, "a failed poll raises nothing");
    assert_eq!(count(&st, "devices"), 1, "and records nothing");
    let status = &st.account_status().expect("status")[0];
    assert!(status.last_error.as_deref().is_some_and(|e| e.contains("not understood")), "{status:?}");
    d.signal("INT");
    assert!(d.wait(Duration::from_secs(10)).await.success(), "SIGINT exits cleanly too");
    let log = d.log_text();
    assert_eq!(log.matches("poll failed").count(), 1, "one warning, not one per tick:\n{log}");
}

/// Regression (issue 10): one device with a field of the wrong type made the whole answer
/// Malformed, and the daemon backed off for good, silently. Now that device is left out (and
/// said once in the log), the readable unknown device next to it reaches the notification
/// server, and polling goes on at its pace.
#[tokio::test(flavor = "multi_thread")]
async fn a_device_with_a_wrong_typed_field_still_alerts_for_the_other_device() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, &["actions", "body"]).await;
    let mut s = Sandbox::new().await;
    s.with_config("[notify]\ndesktop = true\n");
    s.seed_reviewed();
    let mut odd = fake::device("odd-1", "Odd speaker", "Speaker", false);
    odd["name"] = json!({"a": 1});
    s.spotify.set_devices(vec![odd, fake::device("b", "Stranger", "Smartphone", false)]);
    let mut d = s.spawn_daemon(&[("DBUS_SESSION_BUS_ADDRESS", &bus.address)]);

    let n = server.wait_for(1, Duration::from_secs(15)).await.remove(0);
    assert_eq!(n.summary, "Unknown device on your Spotify account");
    assert!(n.body.contains("Stranger"), "{}", n.body);
    // Polls every second, no backoff (which waits 15 s at least after a failure).
    let polls = s.spotify.request_count(DEVICES);
    s.wait_for_polls(polls + 3, Duration::from_secs(8)).await;
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(10)).await.success());

    assert_eq!(server.notifications().len(), 1, "nothing about the unreadable one, no repeat");
    let st = s.store();
    let status = &st.account_status().expect("status")[0];
    assert_eq!(status.last_error, None, "no poll failed: {status:?}");
    let account = st.find_account("default").expect("read").expect("account");
    let names: Vec<String> =
        st.devices(account, false).expect("devices").into_iter().map(|d| d.name).collect();
    assert_eq!(names.len(), 2, "the reviewed one and the stranger, nothing made up: {names:?}");
    let log = d.log_text();
    assert!(!log.contains("poll failed"), "{log}");
    assert_eq!(log.matches("cannot be read").count(), 1, "said once, not per poll:\n{log}");
    assert!(log.contains("devices[0]: `name` is an object; the device is skipped"), "{log}");
}

/// Issue 10's own example: `"is_active": 1` is read as active, so what plays is asked for.
#[tokio::test(flavor = "multi_thread")]
async fn is_active_as_the_number_1_is_read_as_active() {
    let s = Sandbox::new().await;
    let mut laptop = fake::device("a", "Laptop", "Computer", false);
    laptop["is_active"] = json!(1);
    s.spotify.set_devices(vec![laptop]);
    let mut d = s.spawn_daemon(&[]);
    s.wait_for_store("first poll", Duration::from_secs(10), |st| count(st, "devices") == 1).await;
    s.wait_for_polls(2, Duration::from_secs(10)).await;
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(10)).await.success());
    assert!(s.spotify.request_count(PLAYER) >= 1, "active: playback asked\n{}", d.log_text());
    let status = &s.store().account_status().expect("status")[0];
    assert_eq!(status.last_error, None, "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured() {
    let s = Sandbox::new().await;
    s.spotify.push_fault(Fault::RateLimited { retry_after_secs: 3, quota: false });
    let mut d = s.spawn_daemon(&[]);
    s.wait_for_polls(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(s.spotify.request_count(DEVICES), 1, "no request inside Retry-After");
    s.wait_for_polls(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    d.signal("TERM");
    d.wait(Duration::from_secs(10)).await;
    let log = d.log_text();
    assert!(log.contains("rate limiting this app (429); waiting 3s"), "{log}");
    assert!(log.contains("polling works again after 1 failed polls"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn quota_exhaustion_is_said_once_and_waits_long() {
    let s = Sandbox::new().await;
    s.spotify.push_fault(Fault::RateLimited { retry_after_secs: 2, quota: true });
    let mut d = s.spawn_daemon(&[]);
    s.wait_for_polls(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(s.spotify.request_count(DEVICES), 1, "a quota 429 waits far longer than Retry-After");
    d.signal("TERM");
    d.wait(Duration::from_secs(10)).await;
    let log = d.log_text();
    assert_eq!(log.matches("quota is used up").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_hung_poll_exits_cleanly_and_keeps_the_database() {
    let s = Sandbox::new().await;
    s.spotify.set_devices(vec![fake::device("a", "Laptop", "Computer", false)]);
    let mut d = s.spawn_daemon(&[]);
    s.wait_for_store("first poll", Duration::from_secs(10), |st| count(st, "devices") == 1).await;
    s.spotify.push_fault(Fault::Hang { millis: 60_000 });
    let before = s.spotify.request_count(DEVICES);
    s.wait_for_polls(before + 1, Duration::from_secs(10)).await;
    let start = std::time::Instant::now();
    d.signal("TERM");
    let status = d.wait(Duration::from_secs(15)).await;
    assert!(status.success(), "{}", d.log_text());
    assert!(start.elapsed() < Duration::from_secs(10), "bounded shutdown: {:?}", start.elapsed());
    let st = s.store();
    let ok: String = integrity(&st);
    assert_eq!(ok, "ok");
    assert_eq!(count(&st, "devices"), 1);
}

/// SQLite's own verdict on the file.
fn integrity(st: &Store) -> String {
    let conn = rusqlite::Connection::open(st.path()).expect("open");
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check")
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_run_loses_nothing_committed() {
    let s = Sandbox::new().await;
    s.spotify.set_devices(vec![fake::device("a", "Laptop", "Computer", false)]);
    let mut d = s.spawn_daemon(&[]);
    s.wait_for_store("first poll", Duration::from_secs(10), |st| count(st, "events") == 1).await;
    d.signal("KILL");
    d.wait(Duration::from_secs(5)).await;
    // A new daemon starts on the same database and carries on.
    s.spotify.set_devices(vec![
        fake::device("a", "Laptop", "Computer", false),
        fake::device("b", "Tablet", "Tablet", false),
    ]);
    let mut d2 = s.spawn_daemon(&[]);
    s.wait_for_store("second device", Duration::from_secs(10), |st| count(st, "devices") == 2).await;
    d2.signal("TERM");
    assert!(d2.wait(Duration::from_secs(10)).await.success());
    assert_eq!(count(&s.store(), "events"), 2, "one alert per device, none lost or repeated");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_in_trace_logs() {
    let s = Sandbox::new().await;
    s.spotify.set_devices(vec![fake::device("a", "Laptop", "Computer", true)]);
    s.spotify.set_playback(Some(fake::playing(
        fake::device("a", "Laptop", "Computer", true),
        "Song",
        "Band",
    )));
    let mut d = s.spawn_daemon(&[("RUST_LOG", "trace")]);
    s.wait_for_polls(2, Duration::from_secs(20)).await;
    d.signal("TERM");
    d.wait(Duration::from_secs(10)).await;
    let log = d.log_text();
    assert!(log.contains("TRACE") || log.contains("DEBUG"), "trace logging was on");
    assert!(!log.contains(TOKEN), "the access token leaked into the log");
    assert!(!log.contains("test-refresh-token"), "the refresh token leaked into the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_limit_wait_survives_a_restart() {
    let s = Sandbox::new().await;
    s.spotify.push_fault(Fault::RateLimited { retry_after_secs: 60, quota: false });
    let mut d = s.spawn_daemon(&[]);
    s.wait_for_polls(1, Duration::from_secs(10)).await;
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(10)).await.success());
    let mut again = s.spawn_daemon(&[]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.spotify.request_count(DEVICES), 1, "the restarted daemon still waits for Retry-After");
    again.signal("TERM");
    again.wait(Duration::from_secs(10)).await;
    assert!(again.log_text().contains("Spotify asked to wait; next poll in"), "{}", again.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_made_while_the_daemon_runs_is_picked_up_at_the_next_tick() {
    let s = Sandbox::new().await;
    assert!(s.tokens().remove("default").expect("remove"));
    let mut d = s.spawn_daemon(&[]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(s.spotify.request_count(DEVICES), 0, "no token, no request");
    s.tokens().save("default", &common::sandbox::token_set(TOKEN)).expect("login");
    s.wait_for_polls(1, Duration::from_secs(5)).await;
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(10)).await.success());
    let log = d.log_text();
    assert_eq!(log.matches("is not logged in").count(), 1, "said once, not per tick:\n{log}");
}

/// Debian's libfaketime, which steps the wall clock of the binary under test.
fn libfaketime() -> std::path::PathBuf {
    std::fs::read_dir("/usr/lib")
        .expect("/usr/lib")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("faketime/libfaketimeMT.so.1"))
        .chain(std::iter::once(std::path::PathBuf::from("/usr/lib/faketime/libfaketimeMT.so.1")))
        .find(|p| p.exists())
        .expect("libfaketime is a test dependency (Debian: apt-get install faketime); tests never skip")
}

/// Regression (issue 9): with tokio-cron-scheduler, polling stopped for good after the wall
/// clock jumped forward (a resume, NTP). The wall clock of the real binary is stepped with
/// libfaketime, the monotonic clock left alone (as a suspend leaves it): +2 h, then back 30 s.
/// Polling goes on at its pace after each step.
#[tokio::test(flavor = "multi_thread")]
async fn polling_goes_on_after_the_wall_clock_jumps_either_way() {
    let s = Sandbox::new().await;
    // A token that is still valid two hours on, so the step tests the clock, not a refresh.
    let token = spotguard::auth::TokenSet::new_login(
        spotguard::auth::Secret::new(TOKEN),
        None,
        chrono::Duration::hours(6),
    );
    s.tokens().save("default", &token).expect("token file");
    let offset = s.path().join("faketime");
    std::fs::write(&offset, "+0\n").expect("write");
    let lib = libfaketime();
    let mut d = s.spawn_daemon(&[
        ("LD_PRELOAD", lib.to_str().expect("utf-8")),
        ("FAKETIME_TIMESTAMP_FILE", offset.to_str().expect("utf-8")),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ]);
    s.wait_for_polls(2, Duration::from_secs(15)).await;
    for step in ["+7200\n", "+7170\n"] {
        std::fs::write(&offset, step).expect("step the clock");
        let polls = s.spotify.request_count("/v1/me/player/devices");
        let start = std::time::Instant::now();
        // Every second: three more polls in well under ten seconds.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while s.spotify.request_count("/v1/me/player/devices") < polls + 3 {
            assert!(std::time::Instant::now() < deadline, "after {step:?}: {}", d.log_text());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(start.elapsed() < Duration::from_secs(6), "after {step:?}: {:?}", start.elapsed());
    }
    // The daemon did see the stepped clock (its last poll is recorded 2 h ahead).
    let last = s.store().account_status().expect("status")[0].last_poll_at.expect("polled");
    assert!(last > chrono::Utc::now() + chrono::Duration::minutes(100), "{last}");
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(15)).await.success(), "{}", d.log_text());
}

// ---- Never silent: when spotguard cannot watch, the person hears about it. ----

const FULL_CAPS: &[&str] = &["actions", "body", "body-markup", "body-hyperlinks"];
const WAIT: Duration = Duration::from_secs(15);

/// A sandbox with desktop notifications on the given bus, past its first run.
async fn desktop(silent_after: &str) -> Sandbox {
    let mut s = Sandbox::new().await;
    s.with_config(&format!(
        "[notify]\ndesktop = true\naction_timeout = \"1m\"\n[alerts]\nsilent_after = \"{silent_after}\"\n{}\n",
        s.opener_line()
    ));
    s.seed_reviewed();
    s
}

/// Writes an outbox row as another spotguard (or a damaged file) might have.
fn insert_raw_event(s: &Sandbox, kind: &str, details: &str) {
    let conn = rusqlite::Connection::open(s.db_path()).expect("open db");
    conn.execute(
        "INSERT INTO events (account_id, at, kind, details) VALUES ((SELECT id FROM accounts WHERE name = 'default'), ?1, ?2, ?3)",
        rusqlite::params![chrono::Utc::now().timestamp_millis(), kind, details],
    )
    .expect("insert event");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undecodable_outbox_row_does_not_stop_the_next_alert_and_history_exits_0() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL_CAPS).await;
    let s = desktop("1h").await;
    insert_raw_event(&s, "device_appeared", r#"{"kind":"device_appeared","name":{"not":"a name"}}"#);
    insert_raw_event(&s, "hologram_seen", r#"{"kind":"hologram_seen","where":"moon"}"#);
    s.spotify.set_devices(vec![fake::device("x", "Stranger", "Smartphone", false)]);
    let mut d = s.spawn_daemon(&[("DBUS_SESSION_BUS_ADDRESS", &bus.address)]);
    let shown = server.wait_for(2, WAIT).await;
    let summaries: Vec<&str> = shown.iter().map(|n| n.summary.as_str()).collect();
    assert!(summaries.contains(&"Unknown device on your Spotify account"), "{summaries:?}");
    assert!(summaries.contains(&"spotguard recorded an event this version cannot show"), "{summaries:?}");
    let history = s.run(&["history"]).await;
    assert!(history.status.success(), "{}", common::sandbox::stderr(&history));
    let text = common::sandbox::stdout(&history);
    assert!(text.contains("cannot be read"), "{text}");
    assert!(text.contains("hologram_seen"), "{text}");
    let json = s.run(&["history", "--json"]).await;
    assert!(json.status.success(), "{}", common::sandbox::stderr(&json));
    let rows: serde_json::Value = serde_json::from_slice(&json.stdout).expect("history --json is JSON");
    let kinds: Vec<&str> =
        rows.as_array().expect("a list").iter().filter_map(|r| r["kind"].as_str()).collect();
    assert!(kinds.contains(&"unknown") && kinds.contains(&"unreadable"), "{kinds:?}");
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
    assert!(d.log_text().matches("cannot be read and is set aside").count() == 1, "{}", d.log_text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_notification_server_does_not_hold_up_ready_and_polls_go_on() {
    use std::os::unix::net::UnixDatagram;
    let bus = TestBus::start();
    let server = NotificationServer::start_hung(&bus, FULL_CAPS).await;
    let s = desktop("1h").await;
    for i in 0..30 {
        insert_raw_event(
            &s,
            "device_appeared",
            &format!(
                r#"{{"kind":"device_appeared","name":"Old {i}","device_type":"Computer","spotify_id":null}}"#
            ),
        );
    }
    let sock_path = s.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let socket = sock_path.display().to_string();
    let started = std::time::Instant::now();
    let mut d = s.spawn_daemon(&[("DBUS_SESSION_BUS_ADDRESS", &bus.address), ("NOTIFY_SOCKET", &socket)]);
    let ready = tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 4096];
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(n) = sock.recv(&mut buf)
                && String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1")
            {
                return Some(started.elapsed());
            }
        }
        None
    })
    .await
    .expect("join");
    assert!(ready.is_some(), "no READY=1 within 10 s with 30 alerts pending and a hung server");
    let polls = s.spotify.request_count(DEVICES);
    s.wait_for_polls(polls + 3, WAIT).await;
    assert!(server.unanswered() >= 1, "the backlog did try the server");
    assert!(
        server.unanswered() <= 4,
        "one bounded wait per round, not one per alert: {}",
        server.unanswered()
    );
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outage_longer_than_silent_after_gives_one_notice_and_one_recovery_event() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL_CAPS).await;
    let s = desktop("2s").await;
    s.spotify.set_devices(vec![fake::device("reviewed-0", "Reviewed laptop", "Computer", false)]);
    // The first poll fails; backoff then waits at least 15 s, far past silent_after.
    s.spotify.push_fault(Fault::Unavailable);
    let mut d = s.spawn_daemon(&[("DBUS_SESSION_BUS_ADDRESS", &bus.address)]);
    let n = server.wait_for(1, WAIT).await.remove(0);
    assert_eq!(n.summary, "spotguard is not watching default");
    assert!(n.body.contains("has not been able to check default since"), "{}", n.body);
    assert_eq!(n.urgency, Some(2), "critical");
    let status = common::sandbox::stdout(&s.run(&["status"]).await);
    assert!(status.contains("NOT WATCHING: no successful check since"), "{status}");
    s.wait_for_store("watching again", Duration::from_secs(60), |st| {
        st.history(chrono::Utc::now() - chrono::Duration::hours(1), None, None, 50)
            .expect("history")
            .iter()
            .any(|e| e.event.kind() == "watching_again")
    })
    .await;
    let polls = s.spotify.request_count(DEVICES);
    s.wait_for_polls(polls + 3, WAIT).await;
    let kinds: Vec<String> = s
        .store()
        .history(chrono::Utc::now() - chrono::Duration::hours(1), None, None, 50)
        .expect("history")
        .iter()
        .map(|e| e.event.kind().to_string())
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "not_watching").count(), 1, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "watching_again").count(), 1, "{kinds:?}");
    assert_eq!(server.notifications().len(), 1, "the recovery is quiet: {:#?}", server.notifications());
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
}

/// Root is needed to mount a small tmpfs; CI runs as root and must not skip.
fn can_mount() -> bool {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI runs the full-disk tests as root");
    eprintln!("skipped: mounting a tmpfs needs root");
    false
}

/// A small tmpfs over the sandbox's data dir (database and tokens), unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(s: &Sandbox) -> SmallDisk {
        let dir = s.path().join("data");
        let token = std::fs::read(dir.join("tokens/default.json")).ok();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(ok.success(), "mount tmpfs");
        if let Some(token) = token {
            std::fs::create_dir_all(dir.join("tokens")).expect("tokens dir");
            std::fs::write(dir.join("tokens/default.json"), token).expect("token");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join("tokens/default.json"), std::fs::Permissions::from_mode(0o600))
                .expect("chmod");
        }
        SmallDisk(dir)
    }

    /// Empties the daemon's WAL (so its next write must grow a file), fills the disk, and
    /// has a stranger appear beside the reviewed laptop.
    fn fill_then_let_in_a_stranger(&self, s: &Sandbox) {
        let conn = rusqlite::Connection::open(s.db_path()).expect("open");
        conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("checkpoint");
        drop(conn);
        self.fill();
        s.spotify.set_devices(vec![
            fake::device("reviewed-0", "Reviewed laptop", "Computer", false),
            fake::device("intruder", "Stranger", "Smartphone", false),
        ]);
    }

    /// Writes a filler file until the file system refuses.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.0.join("filler")).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = vec![0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.sync_all();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_still_shows_the_intruder_and_says_nothing_is_recorded() {
    if !can_mount() {
        return;
    }
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL_CAPS).await;
    let mut s = Sandbox::new().await;
    let disk = SmallDisk::mount(&s);
    s.with_config(&format!("[notify]\ndesktop = true\n[alerts]\n{}\n", s.opener_line()));
    s.seed_reviewed();
    s.spotify.set_devices(vec![fake::device("reviewed-0", "Reviewed laptop", "Computer", false)]);
    let mut d = s.spawn_daemon(&[("DBUS_SESSION_BUS_ADDRESS", &bus.address)]);
    s.wait_for_polls(2, WAIT).await;
    disk.fill_then_let_in_a_stranger(&s);
    let shown = server.wait_for(2, WAIT).await;
    let summaries: Vec<&str> = shown.iter().map(|n| n.summary.as_str()).collect();
    assert!(summaries.contains(&"spotguard cannot record anything"), "{summaries:?}");
    let alert =
        shown.iter().find(|n| n.summary == "Unknown device on your Spotify account").expect("the alert");
    assert!(alert.body.contains("Stranger"), "{}", alert.body);
    assert!(!alert.action_keys().contains(&"trust".to_string()), "no Trust without a record");
    // Polls go on, and the same intruder is not shown again at every poll.
    let polls = s.spotify.request_count(DEVICES);
    s.wait_for_polls(polls + 3, WAIT).await;
    assert_eq!(server.notifications().len(), 2, "{:#?}", server.notifications());
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
    drop(disk);
}

/// A full disk: the phone hears of the intruder too. What cannot be recorded is pushed to the
/// channels from memory (no id: it is in no history), once each, with the "cannot record"
/// notice, and a channel that is down for it gets a few tries.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_still_pushes_the_intruder_to_the_channels_once() {
    if !can_mount() {
        return;
    }
    let rx = Receiver::start().await;
    rx.answer("/down-once", Answer::Status(503));
    let mut s = Sandbox::new().await;
    let disk = SmallDisk::mount(&s);
    let base = &rx.base;
    s.with_config(&format!(
        "[[channels]]\ntype = \"webhook\"\nname = \"phone\"\nurl = \"{base}/phone\"\n\n\
         [[channels]]\ntype = \"webhook\"\nname = \"flaky\"\nurl = \"{base}/down-once\"\n"
    ));
    s.seed_reviewed();
    s.spotify.set_devices(vec![fake::device("reviewed-0", "Reviewed laptop", "Computer", false)]);
    let mut d = s.spawn_daemon(&[]);
    s.wait_for_polls(2, WAIT).await;
    disk.fill_then_let_in_a_stranger(&s);
    let got = rx.wait_for("/phone", 2, WAIT).await;
    let bodies: Vec<serde_json::Value> = got.iter().map(|r| r.json()).collect();
    let kinds: Vec<&str> = bodies.iter().filter_map(|b| b["kind"].as_str()).collect();
    assert!(kinds.contains(&"not_recording"), "{bodies:?}");
    let alert = bodies.iter().find(|b| b["kind"] == "device_appeared").expect("the intruder's alert");
    assert_eq!(alert["device"]["name"], "Stranger");
    assert!(alert["id"].is_null(), "in no history, so no id: {alert}");
    // The flaky channel refused once; the retry 5 s later delivers.
    rx.answer("/down-once", Answer::Ok);
    rx.wait_for("/down-once", 3, Duration::from_secs(15)).await;
    let accepted = rx.accepted("/down-once");
    assert!(accepted.iter().any(|r| r.json()["kind"] == "device_appeared"), "retried from memory");
    assert!(accepted.iter().any(|r| r.json()["kind"] == "not_recording"), "{accepted:?}");
    // Polls go on; the same intruder is not pushed again at every poll.
    let polls = s.spotify.request_count(DEVICES);
    s.wait_for_polls(polls + 3, WAIT).await;
    assert_eq!(rx.accepted("/phone").len(), 2, "{:?}", rx.requests());
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
    drop(disk);
}

/// A reload on a full disk: a refresh made while nothing could be saved lives only in memory.
/// The sessions SIGHUP builds take it up instead of the spent refresh token on disk, which a
/// rotating token service refuses for good; once there is room again it is saved.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_on_a_full_disk_keeps_the_refresh_that_could_not_be_saved() {
    if !can_mount() {
        return;
    }
    let s = Sandbox::new().await;
    let disk = SmallDisk::mount(&s);
    s.spotify.set_rotation(true);
    // A refreshable login whose access token is due for refresh a few seconds from now.
    let (access, refresh) = s.spotify.issue_tokens(common::sandbox::CLIENT_ID);
    let seeded = spotguard::auth::TokenSet {
        refresh_token: Some(spotguard::auth::Secret::new(refresh)),
        expires_at: chrono::Utc::now()
            + chrono::Duration::from_std(spotguard::auth::session::REFRESH_MARGIN).expect("margin")
            + chrono::Duration::seconds(4),
        authorized_at: chrono::Utc::now() - chrono::Duration::days(1),
        ..common::sandbox::token_set(&access)
    };
    s.tokens().save("default", &seeded).expect("seed the login");
    let mut d = s.spawn_daemon(&[]);
    s.wait_for_polls(2, WAIT).await;
    assert_eq!(s.spotify.token_requests("refresh_token"), 0);
    disk.fill();
    // The refresh comes; its save fails for want of room.
    until(
        WAIT,
        || s.spotify.token_requests("refresh_token") > 0,
        || format!("no refresh came:\n{}", d.log_text()),
    )
    .await;
    let polls = s.spotify.request_count(DEVICES);
    s.wait_for_polls(polls + 1, WAIT).await;
    assert_eq!(s.tokens().load("default").expect("tokens"), seeded, "not saved: the disk is full");
    d.signal("HUP");
    let polls = s.spotify.request_count(DEVICES);
    s.wait_for_polls(polls + 3, WAIT).await;
    assert_eq!(
        s.spotify.token_requests("refresh_token"),
        1,
        "the spent refresh token was not used:\n{}",
        d.log_text()
    );
    assert!(!d.log_text().contains("no longer accepts"), "{}", d.log_text());
    // Room again: the next poll saves the refreshed login.
    std::fs::remove_file(s.path().join("data/filler")).expect("free the disk");
    let saved = || s.tokens().load("default").expect("tokens").refresh_token != seeded.refresh_token;
    until(WAIT, saved, || format!("never saved:\n{}", d.log_text())).await;
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
    drop(disk);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_at_start_is_one_clear_sentence_and_a_failed_exit() {
    if !can_mount() {
        return;
    }
    let s = Sandbox::new().await;
    let disk = SmallDisk::mount(&s);
    disk.fill();
    let out = s.run(&["run"]).await;
    assert!(!out.status.success());
    let err = common::sandbox::stderr(&out);
    let db = s.db_path().display().to_string();
    assert!(err.contains(&format!("cannot open the database {db}: its disk is full (")), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    drop(disk);
}

/// Issue 11: the lock file followed a symlink planted at `<db>.lock` and truncated its target.
#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_at_the_lock_file_is_refused_and_its_target_untouched() {
    let s = Sandbox::new().await;
    let victim = s.path().join("victim.txt");
    std::fs::write(&victim, "precious").expect("victim");
    std::fs::create_dir_all(s.db_path().parent().expect("data dir")).expect("data dir");
    let lock = s.path().join("data/spotguard.db.lock");
    std::os::unix::fs::symlink(&victim, &lock).expect("plant a symlink");
    let out = s.run(&["run"]).await;
    assert_eq!(out.status.code(), Some(1), "refused");
    let err = common::sandbox::stderr(&out);
    assert!(err.contains(&format!("{} is a symbolic link", lock.display())), "{err}");
    assert!(err.contains("remove it"), "{err}");
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious", "never truncated");
    assert_eq!(s.spotify.request_count(DEVICES), 0, "no daemon ran");
}

/// The daemon's memory holds the tokens: `spotguard run` makes itself non-dumpable, so no
/// other process of its user may ptrace it or read `/proc/PID/mem` or `environ`. The kernel
/// shows that from outside by giving the files in `/proc/PID` to root (proc(5)); the test
/// runs both processes as a user that is not root (nobody when the test runs as root) and
/// compares with another long-running spotguard command started the same way, which keeps its
/// owner.
#[tokio::test(flavor = "multi_thread")]
async fn the_daemon_is_not_dumpable_so_its_own_user_cannot_read_its_memory() {
    use std::os::unix::fs::MetadataExt as _;
    use std::os::unix::process::CommandExt as _;
    use std::process::{Command, Stdio};

    let me = std::fs::metadata("/proc/self").expect("/proc").uid();
    // As root, run as nobody: root owns every process's /proc entries anyway.
    let user = if me == 0 { 65534 } else { me };
    let dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::chown(dir.path(), Some(user), Some(user)).expect("give the dir to the user");
    let config = dir.path().join("config.toml");
    let db = dir.path().join("data/spotguard.db");
    std::fs::write(
        &config,
        format!(
            "[spotify]\napi_base = \"http://127.0.0.1:9/v1\"\naccounts_base = \"http://127.0.0.1:9\"\n\
             [storage]\ndatabase = \"{}\"\n[notify]\ndesktop = false\n[auth]\ntoken_store = \"file\"\n",
            db.display()
        ),
    )
    .expect("config");
    let command = |args: &[&str]| {
        let mut cmd = Command::new(common::sandbox::BIN);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("xdg-config"))
            .env("XDG_DATA_HOME", dir.path().join("xdg-data"))
            .env("SPOTGUARD_CONFIG", &config)
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/spotguard-test-bus")
            .stdin(Stdio::null());
        if me == 0 {
            cmd.uid(user).gid(user);
        }
        cmd
    };
    // The entries in /proc/PID are re-owned on every lookup; the directory itself is not.
    let owner = |pid: u32| std::fs::metadata(format!("/proc/{pid}/status")).expect("/proc/PID/status").uid();

    let log = dir.path().join("daemon.log");
    let mut cmd = command(&["run"]);
    cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&log).expect("log"));
    let daemon = common::sandbox::Daemon { child: cmd.spawn().expect("spotguard run starts"), log };
    let pid = daemon.child.id();
    // The lock holds the pid once the daemon is past its start (and past making itself
    // non-dumpable, which comes first).
    let lock = dir.path().join("data/spotguard.db.lock");
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&lock).ok().and_then(|t| t.trim().parse::<u32>().ok()) != Some(pid) {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the daemon did not start:\n{}",
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ne!(user, 0);
    assert_eq!(owner(pid), 0, "non-dumpable: /proc/{pid}/* belongs to root, not to user {user}");

    let mut other = command(&["fake-spotify"]);
    other.stdout(Stdio::piped());
    let mut other = other.spawn().expect("fake-spotify starts");
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(other.stdout.take().expect("stdout")),
        &mut first,
    )
    .expect("its first line");
    assert!(first.starts_with("api_base="), "{first}");
    let control = owner(other.id());
    let _ = other.kill();
    let _ = other.wait();
    assert_eq!(control, user, "a dumpable spotguard process keeps its owner: the check can tell");
    drop(daemon);
}

/// Issue 11: names were stored as long as Spotify sent them; a 200 KB name is now kept to
/// 256 visible characters, in the devices table and in the events alike.
#[tokio::test(flavor = "multi_thread")]
async fn a_200_kb_name_is_stored_capped() {
    let s = Sandbox::new().await;
    s.seed_reviewed();
    let huge = "n".repeat(200 * 1024);
    s.spotify.set_devices(vec![fake::device("huge-1", &huge, "Smartphone", false)]);
    let mut d = s.spawn_daemon(&[]);
    s.wait_for_store("the device recorded", Duration::from_secs(15), |st| count(st, "devices") == 2).await;
    s.wait_for_polls(s.spotify.request_count(DEVICES) + 2, Duration::from_secs(10)).await;
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(10)).await.success());
    let conn = rusqlite::Connection::open(s.db_path()).expect("open");
    let longest: i64 =
        conn.query_row("SELECT max(length(name)) FROM devices", [], |r| r.get(0)).expect("names");
    assert_eq!(longest, 257, "256 characters and an ellipsis");
    let details: i64 =
        conn.query_row("SELECT max(length(details)) FROM events", [], |r| r.get(0)).expect("events");
    assert!(details < 1024, "events carry the kept name only: {details}");
    let of_kind = |kind: &str| -> i64 {
        conn.query_row("SELECT count(*) FROM events WHERE kind = ?1", [kind], |r| r.get(0)).expect("count")
    };
    assert_eq!((of_kind("device_appeared"), of_kind("device_renamed")), (1, 0), "one alert, no rename churn");
}

/// Sets a file's permission bits.
fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Issue 13: one alert reaches ntfy, a signed JSON webhook (secret from `env:` and from a
/// literal in a 0600 config), Slack and Discord, each in the shape its receiver parses, and
/// the heartbeat is pinged. No secret form, ntfy topic or heartbeat UUID reaches the trace log.
#[tokio::test(flavor = "multi_thread")]
async fn channels_get_the_alert_in_the_shapes_ntfy_webhooks_slack_and_discord_parse() {
    use hmac::Mac;
    let rx = Receiver::start().await;
    let mut s = Sandbox::new().await;
    let token_file = s.path().join("ntfy.token");
    std::fs::write(&token_file, "tk_ntfy_file_secret\n").expect("token");
    chmod(&token_file, 0o600);
    let base = &rx.base;
    s.with_config(&format!(
        "[[channels]]\ntype = \"ntfy\"\nname = \"phone\"\nurl = \"{base}/ntfy/topic-secret-3f9c2a\"\ntoken_file = \"{}\"\n\n\
         [[channels]]\ntype = \"webhook\"\nurl = \"{base}/hook\"\nsecret = \"env:SPOTGUARD_TEST_HOOK_SECRET\"\n\n\
         [[channels]]\ntype = \"webhook\"\nurl = \"{base}/hook-literal\"\nsecret = \"whsec_literal_in_config\"\n\n\
         [[channels]]\ntype = \"webhook\"\nformat = \"slack\"\nurl = \"{base}/slack\"\n\n\
         [[channels]]\ntype = \"webhook\"\nformat = \"discord\"\nurl = \"{base}/discord\"\n\n\
         [health]\nping_url = \"{base}/ping/uuid-secret-0f1e2d\"\n\n[notify]\ndesktop = true\n",
        token_file.display()
    ));
    chmod(&s.config_path(), 0o600);
    s.seed_reviewed();
    s.spotify.set_devices(vec![
        fake::device("reviewed-0", "Reviewed laptop", "Computer", false),
        fake::device("b-id", "Galaxy S24", "Smartphone", false),
    ]);
    let mut d = s.spawn_daemon(&[("RUST_LOG", "trace"), ("SPOTGUARD_TEST_HOOK_SECRET", "whsec_env_secret")]);
    let wait = Duration::from_secs(20);

    // ntfy, as https://docs.ntfy.sh/publish/#publish-as-json reads it: POST to the server
    // root with the topic in the body, priority 1-5, tags and actions as arrays.
    let n = rx.wait_for("/ntfy/", 1, wait).await.remove(0);
    assert_eq!(n.method, "POST");
    assert_eq!(n.header("authorization"), Some("Bearer tk_ntfy_file_secret"));
    assert!(n.header("content-type").is_some_and(|c| c.starts_with("application/json")), "{n:?}");
    let j = n.json();
    assert_eq!(j["topic"], "topic-secret-3f9c2a");
    assert_eq!(j["title"], "Unknown device on your Spotify account");
    let m = j["message"].as_str().expect("message");
    assert!(m.starts_with("Galaxy S24 (Smartphone) appeared at ") && m.len() < 4096, "{m}");
    assert_eq!(j["priority"], 4, "normal is ntfy's 4 (high)");
    assert_eq!(j["tags"], json!(["warning", "spotguard"]));
    assert_eq!(j["click"], "https://www.spotify.com/account/overview/");
    assert_eq!(
        j["actions"],
        json!([
            {"action": "view", "label": "Sign out everywhere", "url": "https://www.spotify.com/account/overview/"},
            {"action": "view", "label": "Review app access", "url": "https://www.spotify.com/account/apps/"},
        ])
    );

    // The JSON webhook, signed: verified as a receiver would, then the schema.
    for (path, secret) in [("/hook", "whsec_env_secret"), ("/hook-literal", "whsec_literal_in_config")] {
        let h = rx.wait_for(path, 1, wait).await.remove(0);
        assert_eq!(h.header("content-type"), Some("application/json"));
        let sig = h.header("spotguard-signature").expect("signed");
        let (t, v1) = sig
            .strip_prefix("t=")
            .and_then(|r| r.split_once(",v1="))
            .unwrap_or_else(|| panic!("signature shape: {sig}"));
        let t: i64 = t.parse().expect("t is unix seconds");
        assert!((chrono::Utc::now().timestamp() - t).abs() < 300, "a current t");
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("{t}.").as_bytes());
        mac.update(&h.body);
        let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(v1, want, "HMAC-SHA256(secret, t.body), lower-case hex");
        let j = h.json();
        let mut keys: Vec<&str> = j.as_object().expect("object").keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "account", "at", "device", "id", "kind", "links", "message", "playing", "title", "urgency",
                "version"
            ]
        );
        assert_eq!(j["version"], 1);
        assert!(j["id"].as_i64().is_some_and(|id| id > 0));
        assert_eq!(j["kind"], "device_appeared");
        assert_eq!(j["urgency"], "normal");
        assert_eq!(j["account"], "default");
        chrono::DateTime::parse_from_rfc3339(j["at"].as_str().expect("at")).expect("RFC 3339");
        assert_eq!(j["device"], json!({"name": "Galaxy S24", "type": "Smartphone", "id": "b-id"}));
        assert_eq!(j["playing"], json!(null));
        assert_eq!(j["title"], "Unknown device on your Spotify account");
        assert_eq!(
            j["links"],
            json!({"sign_out": "https://www.spotify.com/account/overview/", "apps": "https://www.spotify.com/account/apps/"})
        );
    }

    // Slack's incoming webhook: {"text"} with its link syntax; Discord: {"content"}, no pings.
    let slack = rx.wait_for("/slack", 1, wait).await.remove(0).json();
    assert_eq!(slack.as_object().expect("object").len(), 1, "{slack}");
    let text = slack["text"].as_str().expect("text");
    assert!(text.starts_with("*Unknown device on your Spotify account*\nGalaxy S24 (Smartphone)"), "{text}");
    assert!(text.contains("<https://www.spotify.com/account/overview/|Sign out everywhere>"), "{text}");
    let discord = rx.wait_for("/discord", 1, wait).await.remove(0).json();
    assert_eq!(discord["allowed_mentions"], json!({"parse": []}));
    let content = discord["content"].as_str().expect("content");
    assert!(content.contains("Galaxy S24") && content.len() <= 2000, "{content}");
    assert!(content.contains("<https://www.spotify.com/account/apps/>"), "{content}");

    // The heartbeat: a GET after the good round.
    let ping = rx.wait_for("/ping/uuid-secret-0f1e2d", 1, wait).await.remove(0);
    assert_eq!(ping.method, "GET");

    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(10)).await.success());
    let log = d.log_text();
    assert!(log.contains("TRACE"), "trace logging was on");
    for secret in [
        "tk_ntfy_file_secret",
        "whsec_env_secret",
        "whsec_literal_in_config",
        "topic-secret-3f9c2a",
        "uuid-secret-0f1e2d",
    ] {
        assert!(!log.contains(secret), "{secret} leaked into the trace log");
    }
    assert!(log.contains("alerts also go to this channel"), "{log}");
    // No session bus here: said once at start, no warning at the alert.
    assert_eq!(log.matches("alerts go to the channels only").count(), 1, "{log}");
    assert!(!log.contains("no desktop notification server, so"), "{log}");
    // Each channel got the one alert once (plus nothing else: the reviewed device is trusted).
    for path in ["/ntfy/", "/hook", "/hook-literal", "/slack", "/discord"] {
        assert_eq!(rx.accepted(path).len(), 1, "{path}");
    }
}

/// Issue 13's faults: a channel that refuses for a while gets the alert once, late; a hung
/// channel delays neither the others nor the polls; a SIGKILL while a channel is down loses
/// nothing and repeats nothing that was accepted.
#[tokio::test(flavor = "multi_thread")]
async fn a_down_channel_gets_the_alert_once_late_and_a_hung_one_delays_nothing() {
    let rx = Receiver::start().await;
    rx.answer("/down", Answer::Status(503));
    rx.answer("/flaky", Answer::Status(500));
    rx.answer("/hang", Answer::Hang);
    let mut s = Sandbox::new().await;
    let base = &rx.base;
    let hook = |name: &str| {
        format!("[[channels]]\ntype = \"webhook\"\nname = \"{name}\"\nurl = \"{base}/{name}\"\n\n")
    };
    s.with_config(&format!("{}{}{}{}", hook("hang"), hook("down"), hook("flaky"), hook("up")));
    s.seed_reviewed();
    s.spotify.set_devices(vec![
        fake::device("reviewed-0", "Reviewed laptop", "Computer", false),
        fake::device("b-id", "Galaxy S24", "Smartphone", false),
    ]);
    let mut d = s.spawn_daemon(&[]);
    let started = std::time::Instant::now();
    rx.wait_for("/up", 1, Duration::from_secs(10)).await;
    rx.wait_for("/hang", 1, Duration::from_secs(10)).await;
    rx.wait_for("/down", 1, Duration::from_secs(10)).await;
    rx.wait_for("/flaky", 1, Duration::from_secs(10)).await;
    assert!(started.elapsed() < Duration::from_secs(10), "a hung channel held nothing up");
    let polls = s.spotify.request_count(DEVICES);
    s.wait_for_polls(polls + 3, Duration::from_secs(8)).await;

    // "down" comes back: the next retry (within 5 s) delivers it.
    rx.answer("/down", Answer::Ok);
    let back = std::time::Instant::now();
    let got = loop {
        let got = rx.accepted("/down");
        if !got.is_empty() || back.elapsed() > Duration::from_secs(10) {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(got.len(), 1, "delivered late, once: {:?}", rx.requests());
    assert!(back.elapsed() <= Duration::from_secs(6), "the retry came within 5 s: {:?}", back.elapsed());

    // SIGKILL while "flaky" is still down; status says what waits.
    d.signal("KILL");
    d.wait(Duration::from_secs(10)).await;
    let out = s.run(&["status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    let channels = status["channels"].as_array().expect("channels");
    let by = |n: &str| channels.iter().find(|c| c["name"] == n).cloned().expect("listed");
    assert_eq!(by("flaky")["waiting"], 1, "{status}");
    assert!(by("flaky")["last_error"].as_str().is_some_and(|e| e.contains("HTTP 500")), "{status}");
    assert!(!by("flaky")["last_error"].as_str().unwrap_or("").contains("/flaky"), "no URL path shown");
    assert_eq!(by("up")["waiting"], 0);
    assert!(by("up")["last_delivered_at"].is_string(), "{status}");
    assert_eq!(by("down")["waiting"], 0);
    assert_eq!(by("hang")["waiting"], 1);
    assert_eq!(by("hang")["type"], "webhook");

    rx.answer("/flaky", Answer::Ok);
    let mut d2 = s.spawn_daemon(&[]);
    until(
        Duration::from_secs(15),
        || !rx.accepted("/flaky").is_empty(),
        || "flaky delivered after the restart".to_string(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    d2.signal("TERM");
    assert!(d2.wait(Duration::from_secs(10)).await.success());
    for path in ["/up", "/down", "/flaky"] {
        assert_eq!(rx.accepted(path).len(), 1, "{path}: once, no repeat after the restart");
    }
}

/// A channel's place follows where it sends: one that was down when an alert came, then is
/// given a name while a new channel is added before it (which takes its old name,
/// `webhook-1`), still gets that alert, once; the new channel does not get it.
#[tokio::test(flavor = "multi_thread")]
async fn a_channel_renamed_while_it_owes_an_alert_still_gets_it_once() {
    let rx = Receiver::start().await;
    rx.answer("/hook", Answer::Status(503));
    let mut s = Sandbox::new().await;
    let base = rx.base.clone();
    s.with_config(&format!("[[channels]]\ntype = \"webhook\"\nurl = \"{base}/hook\"\n"));
    s.seed_reviewed();
    s.spotify.set_devices(vec![
        fake::device("reviewed-0", "Reviewed laptop", "Computer", false),
        fake::device("b-id", "Galaxy S24", "Smartphone", false),
    ]);
    let mut d = s.spawn_daemon(&[]);
    rx.wait_for("/hook", 1, Duration::from_secs(10)).await;
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
    assert!(rx.accepted("/hook").is_empty(), "it was down");

    s.replace_config(&format!(
        "[[channels]]\ntype = \"webhook\"\nurl = \"{base}/other\"\n\n\
         [[channels]]\ntype = \"webhook\"\nname = \"phone\"\nurl = \"{base}/hook\"\n"
    ));
    rx.answer("/hook", Answer::Ok);
    let mut d = s.spawn_daemon(&[]);
    let got = rx.wait_for("/hook", 2, Duration::from_secs(15)).await;
    assert_eq!(got.last().expect("a request").json()["kind"], "device_appeared");
    let polls = s.spotify.request_count(DEVICES);
    s.wait_for_polls(polls + 2, WAIT).await;
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
    assert_eq!(rx.accepted("/hook").len(), 1, "owed, sent once: {:?}", rx.requests());
    assert!(rx.requests().iter().all(|r| r.path != "/other"), "the new channel starts with the next alert");
}

/// Issue 13's heartbeat: a GET after the first good round, `/fail` at once when a round fails,
/// and nothing more within 5 minutes of either.
#[tokio::test(flavor = "multi_thread")]
async fn the_heartbeat_pings_after_a_good_round_and_fail_at_once_after_a_failed_one() {
    let rx = Receiver::start().await;
    let mut s = Sandbox::new().await;
    s.with_config(&format!("[health]\nping_url = \"{}/ping/uuid-abc\"\n", rx.base));
    s.spotify.set_devices(vec![fake::device("a", "Laptop", "Computer", false)]);
    let mut d = s.spawn_daemon(&[]);
    rx.wait_for("/ping/uuid-abc", 1, Duration::from_secs(10)).await;
    let polls = s.spotify.request_count(DEVICES);
    s.wait_for_polls(polls + 2, Duration::from_secs(10)).await;
    assert_eq!(rx.requests().len(), 1, "one ping per 5 minutes, not per poll");
    s.spotify.push_fault(Fault::Unavailable);
    let fail = rx.wait_for("/ping/uuid-abc/fail", 1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(fail.method, "GET");
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(10)).await.success());
    assert_eq!(rx.requests().len(), 2, "{:?}", rx.requests());
    assert!(!d.log_text().contains("uuid-abc"), "{}", d.log_text());
}

/// Review of issue 13: a reload whose configuration passed the checks but could not start (a
/// heartbeat CA file that cannot be read) stopped the daemon, and systemd's start limit could
/// make that for good. The old configuration now runs on.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_that_cannot_start_keeps_the_old_configuration_running() {
    let mut s = Sandbox::new().await;
    s.spotify.set_devices(vec![fake::device("a", "Laptop", "Computer", false)]);
    let mut d = s.spawn_daemon(&[]);
    s.wait_for_polls(2, Duration::from_secs(10)).await;
    s.with_config("[health]\nping_url = \"http://127.0.0.1:9/ping\"\nca_file = \"/nonexistent/ca.pem\"\n");
    d.signal("HUP");
    until(
        Duration::from_secs(10),
        || d.log_text().contains("cannot start; the old one stays in force"),
        || d.log_text(),
    )
    .await;
    let polls = s.spotify.request_count(DEVICES);
    s.wait_for_polls(polls + 2, Duration::from_secs(10)).await;
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(10)).await.success(), "{}", d.log_text());
}
