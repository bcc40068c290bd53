//! Issue 12, "Identity you can trust", end to end: the built binary, the fake Spotify, and a
//! notification server on a private D-Bus session bus. A generic name is not an identity.

use crate::common;

use std::time::Duration;

use common::dbus::{NotificationServer, TestBus};
use common::sandbox::{Daemon, Sandbox, stdout};
use spotguard::fake;

const FULL: &[&str] = &["actions", "body", "body-markup", "body-hyperlinks"];
const WAIT: Duration = Duration::from_secs(20);
const CHROME: &str = "Web Player (Chrome)";

async fn sandbox() -> Sandbox {
    let mut s = Sandbox::new().await;
    s.with_config("[notify]\ndesktop = true\naction_timeout = \"5m\"\n");
    s
}

fn start(s: &Sandbox, bus: &TestBus) -> Daemon {
    s.spawn_daemon(&[("DBUS_SESSION_BUS_ADDRESS", &bus.address)])
}

async fn polls(s: &Sandbox, more: usize) {
    let now = s.spotify.request_count("/v1/me/player/devices");
    s.wait_for_polls(now + more, WAIT).await;
}

/// The record a Spotify id belongs to: (key, trusted).
fn record_of(s: &Sandbox, spotify_id: &str) -> Option<(i64, bool)> {
    let conn = rusqlite::Connection::open(s.db_path()).expect("open db");
    conn.query_row(
        "SELECT d.id, d.trusted FROM device_ids i JOIN devices d ON d.id = i.device_id WHERE i.spotify_id = ?1",
        [spotify_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .ok()
}

fn history_kinds(s: &Sandbox) -> Vec<&'static str> {
    s.store()
        .history(chrono::Utc::now() - chrono::Duration::hours(1), None, None, 100)
        .expect("history")
        .iter()
        .map(|e| e.event.kind())
        .collect()
}

async fn stop(mut d: Daemon) {
    d.signal("TERM");
    assert!(d.wait(WAIT).await.success());
}

/// A stranger's Chrome on open.spotify.com, while the owner's trusted tab has been closed for
/// ten polls: no longer taken for the owner's. One normal-urgency alert; Trust trusts that
/// session (that id) only.
#[tokio::test(flavor = "multi_thread")]
async fn issue_12_a_strangers_web_player_is_alerted_while_the_owners_is_offline() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let s = sandbox().await;
    s.seed_trusted("tab-owner-1", CHROME, "Computer");
    s.spotify.set_devices(vec![]);
    let d = start(&s, &bus);
    polls(&s, 10).await;
    s.spotify.set_devices(vec![fake::device("tab-stranger-2", CHROME, "Computer", false)]);

    let n = server.wait_for(1, WAIT).await.remove(0);
    assert_eq!(n.summary, "A web player connected to your Spotify account");
    assert!(n.body.contains("You have trusted a web player before: was this you?"), "{}", n.body);
    assert!(n.body.contains("--any-session"), "the first such alert says why: {}", n.body);
    assert_eq!(n.urgency, Some(1), "normal urgency");
    assert_eq!(n.action_label("trust").as_deref(), Some("Trust this session"));
    let (stranger, trusted) = record_of(&s, "tab-stranger-2").expect("recorded");
    assert!(!trusted);
    assert_ne!(Some(stranger), record_of(&s, "tab-owner-1").map(|r| r.0), "a record of its own");

    server.wait_until_subscribed(n.id, WAIT).await;
    server.invoke_action(n.id, "trust").await;
    s.wait_for_store("the session trusted", WAIT, |_| record_of(&s, "tab-stranger-2").is_some_and(|r| r.1))
        .await;
    // That session only: another tab after a gap is asked about again.
    s.spotify.set_devices(vec![]);
    polls(&s, 2).await;
    s.spotify.set_devices(vec![fake::device("tab-third-3", CHROME, "Computer", false)]);
    let shown = server.wait_for(2, WAIT).await;
    assert_eq!(shown[1].summary, "A web player connected to your Spotify account");
    assert!(!shown[1].body.contains("--any-session"), "explained once: {}", shown[1].body);
    stop(d).await;

    let out = s.run(&["devices", "--json"]).await;
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let rows = list.as_array().expect("array");
    assert_eq!(rows.len(), 3, "{list}");
    assert!(rows.iter().all(|d| d["strength"] == "weak" && d["any_session"] == false), "{list}");
    let table = stdout(&s.run(&["devices"]).await);
    assert!(table.contains("IDENTITY") && table.contains("weak"), "{table}");
}

/// A stranger's Chrome tab *playing* while the owner's trusted tab is closed: the critical
/// alert says the name is one every web player has, so spotguard cannot tell whose it is,
/// asks as the "connected" alert does, and its Trust trusts that session only.
#[tokio::test(flavor = "multi_thread")]
async fn issue_12_a_strangers_web_player_playing_is_critical_and_says_the_name_proves_nothing() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let s = sandbox().await;
    s.seed_trusted("tab-owner-1", CHROME, "Computer");
    s.spotify.set_devices(vec![]);
    let d = start(&s, &bus);
    polls(&s, 3).await;
    let stranger = fake::device("tab-stranger-2", CHROME, "Computer", true);
    s.spotify.set_playback(Some(fake::playing(stranger.clone(), "Song <3", "Band & Co")));
    s.spotify.set_devices(vec![stranger]);

    let n = server.wait_for(1, WAIT).await.remove(0);
    assert_eq!(n.summary, "A web player is playing on your Spotify account");
    assert!(
        n.body.starts_with(
            "A web player is playing \u{201c}Song &lt;3\u{201d} by Band &amp; Co on your Spotify account \
             (<b>Web Player (Chrome)</b>, Computer, since "
        ),
        "{}",
        n.body
    );
    for said in [
        "Many devices share this name, so spotguard cannot tell whether this one is yours.",
        "You have trusted a web player before: was this you? If not, sign out everywhere",
        "trust this session here, or let every session of it pass with \
         `spotguard devices trust \"Web Player (Chrome)\" --any-session`.",
    ] {
        assert!(n.body.contains(said), "{said:?} in {}", n.body);
    }
    assert_eq!(n.urgency, Some(2), "critical");
    assert_eq!(n.action_label("trust").as_deref(), Some("Trust this session"));
    server.wait_until_subscribed(n.id, WAIT).await;
    server.invoke_action(n.id, "trust").await;
    s.wait_for_store("the session trusted", WAIT, |_| record_of(&s, "tab-stranger-2").is_some_and(|r| r.1))
        .await;
    stop(d).await;
    assert_ne!(record_of(&s, "tab-stranger-2").map(|r| r.0), record_of(&s, "tab-owner-1").map(|r| r.0));
    assert_eq!(history_kinds(&s).iter().filter(|k| **k == "unknown_playing").count(), 1);
}

/// The owner's web player rotating its id between two consecutive polls, while in use: the
/// same device (continuity), no alert.
#[tokio::test(flavor = "multi_thread")]
async fn issue_12_a_trusted_web_player_rotating_its_id_in_use_is_not_alerted() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let s = sandbox().await;
    s.seed_trusted("tab-1", CHROME, "Computer");
    s.spotify.set_devices(vec![fake::device("tab-1", CHROME, "Computer", false)]);
    let d = start(&s, &bus);
    polls(&s, 2).await;
    s.spotify.set_devices(vec![fake::device("tab-2", CHROME, "Computer", false)]);
    s.wait_for_store("the new id linked", WAIT, |_| record_of(&s, "tab-2").is_some()).await;
    polls(&s, 2).await;
    stop(d).await;
    assert_eq!(record_of(&s, "tab-2"), record_of(&s, "tab-1"), "one record, both ids");
    assert!(record_of(&s, "tab-2").is_some_and(|r| r.1), "still trusted");
    assert!(server.notifications().is_empty(), "{:#?}", server.notifications());
}

/// A Cast speaker's id is the md5 of its name: it comes back by that id, quietly.
#[tokio::test(flavor = "multi_thread")]
async fn issue_12_a_trusted_cast_speaker_with_a_name_derived_id_comes_back_quietly() {
    use md5::Digest as _;
    let id: String = md5::Md5::digest(b"Living Room").iter().map(|b| format!("{b:02x}")).collect();
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let s = sandbox().await;
    s.seed_trusted(&id, "Living Room", "CastAudio");
    s.spotify.set_devices(vec![]);
    let d = start(&s, &bus);
    polls(&s, 3).await;
    s.spotify.set_devices(vec![fake::device(&id, "Living Room", "CastAudio", false)]);
    polls(&s, 3).await;
    stop(d).await;
    assert!(server.notifications().is_empty(), "{:#?}", server.notifications());
    let out = s.run(&["devices", "--json"]).await;
    let list: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(list[0]["strength"], "name_derived", "{list}");
}

/// A desktop computer that kept its id for weeks comes back after a gap with a new one:
/// linked by its chosen name as before, no alert, one quiet event in `history`.
#[tokio::test(flavor = "multi_thread")]
async fn issue_12_a_trusted_desktop_with_a_new_id_after_a_gap_is_one_quiet_history_event() {
    use spotguard::audit::{Policy, Snapshot, evaluate};
    use spotguard::store::Recording;
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, FULL).await;
    let s = sandbox().await;
    {
        // Seen with one id three weeks ago and yesterday: strong.
        let mut store = s.store();
        let now = chrono::Utc::now();
        let account = store.account("default", now).expect("account");
        let desk = spotguard::spotify::Device {
            id: Some("desk-1".into()),
            name: "Anna's desktop".into(),
            kind: "Computer".into(),
            ..Default::default()
        };
        let policy =
            Policy { realert_after: Duration::from_secs(86_400), device_limit: 6, ignore: Vec::new() };
        let snapshot = Snapshot { devices: vec![desk], playback: None, skipped: 0, cut: 0 };
        for ago in [21, 1] {
            let at = now - chrono::Duration::days(ago);
            store
                .poll(account, at, Duration::ZERO, Recording::Record, |k| evaluate(k, &snapshot, &policy, at))
                .expect("record");
        }
        let key = store.devices(account, false).expect("devices")[0].key;
        assert_eq!(store.devices(account, false).expect("devices")[0].strength.as_str(), "strong");
        store.trust(key, spotguard::event::TrustedBy::Cli, now).expect("trust");
        for e in store.undelivered(100).expect("outbox") {
            store.mark_delivered(e.id, now).expect("delivered");
        }
    }
    s.spotify.set_devices(vec![]);
    let d = start(&s, &bus);
    polls(&s, 2).await;
    s.spotify.set_devices(vec![fake::device("desk-2", "Anna's desktop", "Computer", false)]);
    s.wait_for_store("the new id linked", WAIT, |_| record_of(&s, "desk-2").is_some()).await;
    polls(&s, 2).await;
    stop(d).await;
    assert_eq!(record_of(&s, "desk-2"), record_of(&s, "desk-1"));
    assert!(server.notifications().is_empty(), "{:#?}", server.notifications());
    assert_eq!(
        history_kinds(&s).iter().filter(|k| **k == "device_id_changed").count(),
        1,
        "{:?}",
        history_kinds(&s)
    );
}
