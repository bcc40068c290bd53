//! End to end on a real private D-Bus session bus (`dbus-daemon`) with a dunst-like
//! notification server: the alert's text, urgency and buttons as they reach the server, and
//! what each button does. Never skipped: CI installs dbus.

use crate::common;

use std::time::Duration;

use common::dbus::{NotificationServer, Recorded, TestBus};
use common::sandbox::{Daemon, Sandbox};
use spotguard::fake;

const FULL: &[&str] = &["actions", "body", "body-markup", "body-hyperlinks"];
const WAIT: Duration = Duration::from_secs(15);
const SIGN_OUT: &str = "https://www.spotify.com/account/overview/";
const APPS: &str = "https://www.spotify.com/account/apps/";

async fn desktop_sandbox() -> Sandbox {
    let mut s = Sandbox::new().await;
    s.with_config("[notify]\ndesktop = true\naction_timeout = \"5m\"\n");
    s
}

/// A desktop sandbox past its first run: new devices alert one by one.
async fn reviewed_desktop_sandbox() -> Sandbox {
    let s = desktop_sandbox().await;
    s.seed_reviewed();
    s
}

fn start(s: &Sandbox, bus: &TestBus) -> Daemon {
    s.spawn_daemon(&[("DBUS_SESSION_BUS_ADDRESS", &bus.address)])
}

async fn opened(s: &Sandbox, n: usize) -> Vec<String> {
    let start = std::time::Instant::now();
    loop {
        let text = std::fs::read_to_string(s.opened_path()).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(start.elapsed() < WAIT, "opener was called {} times, wanted {n}", lines.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn trusted_by(s: &Sandbox, name: &str) -> Option<String> {
    let conn = rusqlite::Connection::open(s.db_path()).expect("open db");
    conn.query_row("SELECT trusted_by FROM devices WHERE name = ?1 AND trusted = 1", [name], |r| r.get(0))
        .ok()
}

async fn click(server: &NotificationServer, n: &Recorded, key: &str) {
    server.wait_until_subscribed(n.id, WAIT).await;
    server.invoke_action(n.id, key).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_device_alert_reaches_the_server_escaped_with_its_buttons() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let s = reviewed_desktop_sandbox().await;
    let hostile = "<a href=\"https://evil.example\">Phone</a> & \u{202e}co";
    s.spotify.set_devices(vec![fake::device("evil-1", hostile, "Smartphone", false)]);
    let mut d = start(&s, &bus);

    let n = server.wait_for(1, WAIT).await.remove(0);
    assert_eq!(n.app_name, "spotguard");
    assert_eq!(n.summary, "Unknown device on your Spotify account");
    assert!(
        n.body.starts_with(
            "<b>&lt;a href=&quot;https://evil.example&quot;&gt;Phone&lt;/a&gt; &amp; co</b> (Smartphone) appeared at "
        ),
        "{}",
        n.body
    );
    assert!(!n.body.contains('\u{202e}'));
    assert!(
        n.body.contains(&format!("<a href=\"{SIGN_OUT}\">")),
        "link only because body-hyperlinks: {}",
        n.body
    );
    assert_eq!(n.action_keys(), ["default", "sign-out", "trust", "apps"]);
    assert_eq!(n.action_label("sign-out").as_deref(), Some("Sign out everywhere"));
    assert_eq!(n.action_label("trust").as_deref(), Some("Trust this device"));
    assert_eq!(n.action_label("apps").as_deref(), Some("Review app access"));
    assert_eq!(n.urgency, Some(1));
    assert_eq!(n.category.as_deref(), Some("security"));

    // "Trust this device" trusts it in the store (names are stored as Spotify sent them;
    // only what is displayed is cleaned), and records who did.
    click(&server, &n, "trust").await;
    s.wait_for_store("trusted from the notification", WAIT, |_| trusted_by(&s, hostile).is_some()).await;
    assert_eq!(trusted_by(&s, hostile).as_deref(), Some("notification"));
    // The server is asked to close it (dunst leaves it open after an action).
    let start = std::time::Instant::now();
    while !server.close_requests().contains(&n.id) {
        assert!(start.elapsed() < WAIT, "notification not closed after the action");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
    assert!(!std::fs::exists(s.opened_path()).unwrap_or(false), "trust opens nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn click_and_sign_out_open_the_sign_out_page_and_apps_opens_the_apps_page() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let s = reviewed_desktop_sandbox().await;
    let mut devices = Vec::new();
    let mut d = start(&s, &bus);
    for (i, key) in ["default", "sign-out", "apps"].into_iter().enumerate() {
        devices.push(fake::device(&format!("id-{i}"), &format!("Stranger {i}"), "Computer", false));
        s.spotify.set_devices(devices.clone());
        let n = server.wait_for(i + 1, WAIT).await.remove(i);
        assert!(n.body.contains(&format!("Stranger {i}")), "{}", n.body);
        click(&server, &n, key).await;
        let lines = opened(&s, i + 1).await;
        let want = if key == "apps" { APPS } else { SIGN_OUT };
        assert_eq!(lines[i], want, "{key} opens {want}");
    }
    // A close is not an action: nothing opens, nothing is trusted.
    devices.push(fake::device("id-9", "Stranger 9", "Computer", false));
    s.spotify.set_devices(devices);
    let n = server.wait_for(4, WAIT).await.remove(3);
    server.wait_until_subscribed(n.id, WAIT).await;
    server.close(n.id, 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(opened(&s, 3).await.len(), 3, "closing opened something");
    assert_eq!(trusted_by(&s, "Stranger 9"), None);
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_playback_is_critical_and_names_what_plays() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let s = reviewed_desktop_sandbox().await;
    // A chosen name: a default one ("Living room") gets the generic wording (`identity::`).
    let speaker = fake::device("spk-1", "Garage hifi", "Speaker", true);
    s.spotify.set_devices(vec![speaker.clone()]);
    s.spotify.set_playback(Some(fake::playing(speaker, "Song <3", "Band & Co")));
    let mut d = start(&s, &bus);
    let n = server.wait_for(1, WAIT).await.remove(0);
    assert_eq!(n.summary, "Unknown device is playing on your Spotify account");
    assert!(n.body.contains("is playing \u{201c}Song &lt;3\u{201d} by Band &amp; Co"), "{}", n.body);
    assert_eq!(n.urgency, Some(2), "critical");
    assert_eq!(n.expire_timeout, 0, "critical alerts do not expire");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(server.notifications().len(), 1, "one alert for one play, not one per poll");
    d.signal("TERM");
    d.wait(WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_markup_gets_plain_text_and_no_link() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, &["actions", "body"]).await;
    let s = reviewed_desktop_sandbox().await;
    s.spotify.set_devices(vec![fake::device("x", "Tom & Jerry's <TV>", "TV", false)]);
    let mut d = start(&s, &bus);
    let n = server.wait_for(1, WAIT).await.remove(0);
    assert!(n.body.starts_with("Tom & Jerry's <TV> (TV) appeared at "), "{}", n.body);
    assert!(!n.body.contains("<a href"), "{}", n.body);
    d.signal("TERM");
    d.wait(WAIT).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn headless_daemon_warns_once_keeps_running_and_keeps_the_log() {
    let bus = TestBus::start(); // a session bus, but nothing owns org.freedesktop.Notifications
    let s = desktop_sandbox().await;
    s.spotify.set_devices(vec![fake::device("a", "One", "Computer", false)]);
    let mut d = start(&s, &bus);
    s.wait_for_polls(1, WAIT).await;
    s.spotify.set_devices(vec![
        fake::device("a", "One", "Computer", false),
        fake::device("b", "Two", "TV", false),
    ]);
    s.wait_for_store("both alerts delivered to the log", WAIT, |st| {
        st.pending().expect("outbox") == 0
            && st.row_counts().expect("counts").iter().any(|(t, n)| *t == "events" && *n == 2)
    })
    .await;
    s.wait_for_polls(s.spotify.request_count("/v1/me/player/devices") + 1, WAIT).await;
    assert!(d.child.try_wait().expect("try_wait").is_none(), "still running");
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
    let log = d.log_text();
    assert_eq!(log.matches("no desktop notification server").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_committed_but_not_shown_is_shown_after_a_restart() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let s = desktop_sandbox().await;
    // What a crash between commit and delivery leaves (here: the first run's summary): an undelivered event in the outbox.
    {
        let mut store = s.store();
        common::sandbox::record_seen(&mut store, "ghost", "Ghost", "Tablet");
        assert_eq!(store.undelivered(10).expect("outbox").len(), 1);
    }
    // Spotify shows nothing now; the alert still comes, once.
    let mut d = start(&s, &bus);
    let n = server.wait_for(1, WAIT).await.remove(0);
    assert!(n.body.starts_with("<b>Ghost</b>. None is trusted yet"), "{}", n.body);
    s.wait_for_polls(2, WAIT).await;
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
    assert_eq!(server.notifications().len(), 1);
    assert!(s.store().undelivered(10).expect("outbox").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn buttons_still_work_after_a_reload() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let s = reviewed_desktop_sandbox().await;
    s.spotify.set_devices(vec![fake::device("r-1", "Stranger", "Computer", false)]);
    let mut d = start(&s, &bus);
    let n = server.wait_for(1, WAIT).await.remove(0);
    server.wait_until_subscribed(n.id, WAIT).await;
    d.signal("HUP");
    let start = std::time::Instant::now();
    while !d.log_text().contains("configuration reloaded") {
        assert!(start.elapsed() < WAIT, "{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.invoke_action(n.id, "sign-out").await;
    assert_eq!(opened(&s, 1).await, [SIGN_OUT], "the click made before the reload is still carried out");
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_passes_every_check_and_sends_a_test_notification() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let s = desktop_sandbox().await;
    s.spotify.set_devices(vec![fake::device("a", "Laptop", "Computer", false)]);
    let mut cmd = s.cmd(&["doctor", "--notify"]);
    cmd.env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("doctor runs")).await.expect("join");
    let text = common::sandbox::stdout(&out);
    assert!(out.status.success(), "{text}");
    for line in [
        "ok    config:",
        "ok    database:",
        "ok    login (default):",
        "ok    refresh (default):",
        "ok    Spotify API (default): answered: 1 device(s) online",
        "ok    notifications: a server answers (actions, body-markup, body-hyperlinks)",
        "ok    test notification: sent",
        "warn  daemon: not running",
    ] {
        assert!(text.lines().any(|l| l.starts_with(line)), "missing {line:?} in\n{text}");
    }
    let n = server.wait_for(1, WAIT).await.remove(0);
    assert_eq!(n.summary, "spotguard test notification");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_out_is_followed_up_and_recorded_when_the_device_is_gone() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let s = reviewed_desktop_sandbox().await;
    s.spotify.set_devices(vec![fake::device("in-1", "Intruder", "Smartphone", false)]);
    let mut d = start(&s, &bus);
    let n = server.wait_for(1, WAIT).await.remove(0);
    click(&server, &n, "sign-out").await;
    let signed_out = |s: &Sandbox| -> Option<i64> {
        let conn = rusqlite::Connection::open(s.db_path()).expect("open db");
        conn.query_row("SELECT signout_at FROM devices WHERE name = 'Intruder'", [], |r| r.get(0))
            .expect("row")
    };
    s.wait_for_store("the sign-out noted", WAIT, |_| signed_out(&s).is_some()).await;
    // Spotify's sign-out took effect: the device is gone at the next poll.
    s.spotify.set_devices(vec![]);
    s.wait_for_store("the remedy recorded", WAIT, |st| {
        st.history(chrono::Utc::now() - chrono::Duration::hours(1), None, None, 20)
            .expect("history")
            .iter()
            .any(|e| e.event.kind() == "sign_out_worked")
    })
    .await;
    assert_eq!(signed_out(&s), None, "the follow-up is over");
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
    assert_eq!(server.notifications().len(), 1, "the remedy is recorded, not notified");
}

/// Waits until the daemon's log holds `text` `n` times.
async fn logged(d: &Daemon, text: &str, n: usize) {
    let start = std::time::Instant::now();
    while d.log_text().matches(text).count() < n {
        assert!(start.elapsed() < WAIT, "{text:?} not logged {n} time(s):\n{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const IGNORED: &str = "ignored a button press that was not offered or not sent by the notification server";

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_click_from_another_connection_or_an_unoffered_key_trusts_nothing() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let s = reviewed_desktop_sandbox().await;
    // The trusted original online next to a copy of it (no Trust offered), and a stranger.
    s.spotify.set_devices(vec![
        fake::device("reviewed-0", "Reviewed laptop", "Computer", false),
        fake::device("copy-1", "Reviewed laptop", "Computer", false),
        fake::device("evil-1", "Stranger", "Smartphone", false),
    ]);
    let mut d = start(&s, &bus);
    let shown = server.wait_for(2, WAIT).await;
    let copy = shown
        .iter()
        .find(|n| n.summary.contains("looks like your trusted"))
        .expect("the imitation alert")
        .clone();
    let stranger = shown.iter().find(|n| n.summary.starts_with("Unknown device")).expect("the alert").clone();
    assert!(!copy.action_keys().contains(&"trust".to_string()));

    // Another program on the bus presses Trust on the stranger's alert: ignored.
    server.wait_until_subscribed(stranger.id, WAIT).await;
    server.forge_action(&bus, stranger.id, "trust").await;
    logged(&d, IGNORED, 1).await;
    // The server itself "presses" a Trust that the imitation alert never offered: ignored.
    server.wait_until_subscribed(copy.id, WAIT).await;
    server.invoke_action(copy.id, "trust").await;
    logged(&d, IGNORED, 2).await;
    assert_eq!(trusted_by(&s, "Stranger"), None, "a forged click trusted the stranger");
    let copies_trusted: i64 = rusqlite::Connection::open(s.db_path())
        .expect("db")
        .query_row("SELECT count(*) FROM devices WHERE name = 'Reviewed laptop' AND trusted = 1", [], |r| {
            r.get(0)
        })
        .expect("count");
    assert_eq!(copies_trusted, 1, "only the original is trusted");

    // The real button on the real alert still works.
    click(&server, &stranger, "trust").await;
    s.wait_for_store("trusted from the notification", WAIT, |_| trusted_by(&s, "Stranger").is_some()).await;
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
    assert!(!d.log_text().contains('\u{1b}'), "{}", d.log_text());
}

/// Issue 11 ("Never fooled"): with a trusted "Phone" online, each of these was alerted as an
/// ordinary unknown "Phone (Smartphone)" with a Trust button; only a byte-exact copy was
/// flagged. Each is now an imitation: named as looking like the trusted phone, with the start
/// of its id and what differs, and no Trust button.
#[tokio::test(flavor = "multi_thread")]
async fn every_look_alike_of_a_trusted_phone_is_an_imitation_alert_without_a_trust_button() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let mut s = desktop_sandbox().await;
    // Six devices at once would reach the default device limit: not what this is about.
    let alerts = format!("[alerts]\n{}\ndevice_limit = 100\n", s.opener_line());
    s.with_config(&alerts);
    s.seed_trusted("orig-phone-0001", "Phone", "Smartphone");
    let look_alikes = [
        ("Phone\u{200b}", "invisible characters (U+200B)"),
        ("Phone ", "extra spaces"),
        ("Phone\u{E0041}", "invisible characters (U+E0041)"),
        ("Phone\u{3164}", "invisible characters (U+3164)"),
        ("Ph\u{43e}ne", "other characters (U+043E)"),
    ];
    let mut devices = vec![fake::device("orig-phone-0001", "Phone", "Smartphone", false)];
    for (i, (name, _)) in look_alikes.iter().enumerate() {
        devices.push(fake::device(&format!("copy{i}-5f3a9c1b7e"), name, "Smartphone", false));
    }
    s.spotify.set_devices(devices);
    let mut d = start(&s, &bus);

    let shown = server.wait_for(look_alikes.len(), WAIT).await;
    for (i, (_, differs)) in look_alikes.iter().enumerate() {
        let n = shown
            .iter()
            .find(|n| n.body.contains(&format!("id copy{i}-5f…")))
            .unwrap_or_else(|| panic!("no alert for look-alike {i}: {shown:#?}"));
        assert_eq!(
            n.summary,
            "A device looks like your trusted \u{201c}Phone\u{201d} on your Spotify account"
        );
        // The name as it reads (invisible characters dropped), its type and the start of its id.
        let reads = if i == 4 { "Ph\u{43e}ne" } else { "Phone" };
        let head = format!("<b>{reads}</b> (Smartphone, id copy{i}-5f…) appeared at ");
        assert!(n.body.starts_with(&head), "{}", n.body);
        assert!(
            n.body.contains(&format!("It is not your trusted <b>Phone</b>: its name has {differs}.")),
            "{}",
            n.body
        );
        assert_eq!(n.action_keys(), ["default", "sign-out", "apps"], "no Trust button: {}", n.body);
    }
    let polls = s.spotify.request_count("/v1/me/player/devices");
    s.wait_for_polls(polls + 2, WAIT).await;
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
    assert_eq!(server.notifications().len(), look_alikes.len(), "one each, nothing about the original");
}

/// Issue 11: 15,000 new devices made 15,000 alerts. 2,000 now make one summary: the first 500
/// are read (the rest counted), and more than 5 alerts at once are summarised.
#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_new_devices_give_one_summary() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let mut s = reviewed_desktop_sandbox().await;
    let alerts = format!("[alerts]\n{}\ndevice_limit = 100000\n", s.opener_line());
    s.with_config(&alerts);
    let crowd: Vec<_> = (0..2000)
        .map(|i| fake::device(&format!("crowd-{i:04}"), &format!("Stranger {i}"), "Computer", false))
        .collect();
    s.spotify.set_devices(crowd);
    let mut d = start(&s, &bus);

    let n = server.wait_for(1, WAIT).await.remove(0);
    assert_eq!(n.summary, "500 new devices on your Spotify account");
    assert!(n.body.starts_with("<b>Stranger 0</b>, <b>Stranger 1</b>, "), "{}", n.body);
    assert!(n.body.contains("<b>Stranger 9</b> and 490 more appeared at "), "{}", n.body);
    assert!(
        n.body.contains("Spotify listed 1500 more that spotguard did not read (it reads 500 per answer)"),
        "{}",
        n.body
    );
    assert_eq!(n.action_keys(), ["default", "sign-out", "apps"]);
    let polls = s.spotify.request_count("/v1/me/player/devices");
    s.wait_for_polls(polls + 2, WAIT).await;
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
    assert_eq!(server.notifications().len(), 1, "one summary, and the later polls are quiet");
    let st = s.store();
    let account = st.find_account("default").expect("read").expect("account");
    assert_eq!(st.devices(account, false).expect("devices").len(), 501, "the reviewed one and 500 read");
    let log = d.log_text();
    assert_eq!(log.matches("more devices than spotguard reads").count(), 1, "said once:\n{log}");
}

/// Issue 11 (Spotify Jam): two strangers joining while the owner's trusted laptop plays are
/// probably Jam guests. Both are still alerted, and the alerts say a Jam may be why.
#[tokio::test(flavor = "multi_thread")]
async fn guests_joining_while_a_trusted_device_plays_are_alerted_with_the_jam_hint() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let s = reviewed_desktop_sandbox().await;
    let laptop = fake::device("reviewed-0", "Reviewed laptop", "Computer", true);
    s.spotify.set_devices(vec![
        laptop.clone(),
        fake::device("guest-1", "Anna's Pixel", "Smartphone", false),
        fake::device("guest-2", "Ben's iPad", "Tablet", false),
    ]);
    s.spotify.set_playback(Some(fake::playing(laptop, "Song", "Band")));
    let mut d = start(&s, &bus);
    let shown = server.wait_for(2, WAIT).await;
    for n in &shown {
        assert!(n.body.contains("Hosting a Jam? Guests' devices show up on your account"), "{}", n.body);
        assert!(n.action_keys().contains(&"sign-out".to_string()), "still an alert with its remedy");
    }
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
}
