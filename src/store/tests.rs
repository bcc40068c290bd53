//! Store tests on a real SQLite file in a temporary directory.

use super::poll::record_poll_tx;
use super::*;
use crate::audit::{Policy, Snapshot, evaluate};
use crate::spotify::model::Device;

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("sub/spotguard.db")).expect("open");
    (dir, store)
}

fn t(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).single().expect("valid") + chrono::Duration::minutes(minutes)
}

fn dev(id: &str, name: &str) -> Device {
    Device { id: Some(id.into()), name: name.into(), kind: "Smartphone".into(), ..Device::default() }
}

fn policy() -> Policy {
    Policy { realert_after: Duration::from_secs(86400), device_limit: 6, ignore: Vec::new() }
}

/// One poll through the real rules and the real store.
fn poll(store: &mut Store, account: AccountId, at: DateTime<Utc>, devices: Vec<Device>) -> Vec<i64> {
    poll_skipping(store, account, at, devices, 0)
}

/// One poll that read `devices` and left out `skipped` devices it could not read.
fn poll_skipping(
    store: &mut Store,
    account: AccountId,
    at: DateTime<Utc>,
    devices: Vec<Device>,
    skipped: usize,
) -> Vec<i64> {
    let snapshot = Snapshot { devices, playback: None, skipped, cut: 0 };
    let took = Duration::from_millis(3);
    let polled = store
        .poll(account, at, took, Recording::Record, |known| evaluate(known, &snapshot, &policy(), at))
        .expect("poll");
    assert!(polled.unrecorded.is_none());
    polled.ids
}

fn count(store: &Store, table: &str) -> i64 {
    store.row_counts().expect("counts").into_iter().find(|(t, _)| *t == table).expect("table").1
}

#[test]
fn open_sets_wal_and_schema_and_is_idempotent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    drop(Store::open(&path).expect("first open"));
    let store = Store::open(&path).expect("second open");
    let mode: String = store.conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).expect("pragma");
    assert_eq!(mode, "wal");
    let v: u32 = store.conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("pragma");
    assert_eq!(v as usize, MIGRATIONS.len());
}

#[test]
fn a_newer_schema_is_refused_not_clobbered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let store = Store::open(&path).expect("open");
    store.conn.pragma_update(None, "user_version", 99).expect("bump");
    drop(store);
    let e = Store::open(&path).expect_err("too new");
    assert!(e.to_string().contains("newer spotguard"), "{e}");
}

#[test]
fn presence_extends_instead_of_growing_with_polls() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    for i in 0..50 {
        poll(&mut store, a, t(i), vec![dev("x", "Phone")]);
    }
    assert_eq!(count(&store, "presence"), 1, "one interval for a device that stayed online");
    assert_eq!(count(&store, "devices"), 1);
    assert_eq!(count(&store, "device_ids"), 1);
    assert_eq!(count(&store, "events"), 1, "one alert, not one per poll");
    let (start, end): (i64, i64) = store
        .conn
        .query_row("SELECT started_at, ended_at FROM presence", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("row");
    assert_eq!((start, end), (ms(t(0)), ms(t(49))));
}

/// An idle poll (the same device under the same id) writes only the pages whose rows change:
/// the account's last poll, the device's and its id's last sighting, and its presence interval
/// with that interval's index entry. Each page is a WAL frame at every poll, so a sixth (the
/// id's index, rewritten when the id's record was set again to the same value) is a cost.
#[test]
fn an_idle_poll_writes_five_pages() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("x", "Phone")]);
    poll(&mut store, a, t(1), vec![dev("x", "Phone")]);
    let _: (i64, i64, i64) = store
        .conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("checkpoint");
    poll(&mut store, a, t(2), vec![dev("x", "Phone")]);
    let mut wal = store.path().as_os_str().to_owned();
    wal.push("-wal");
    let size = std::fs::metadata(&wal).expect("wal").len();
    let page: u64 = store.conn.pragma_query_value(None, "page_size", |r| r.get(0)).expect("page size");
    // The WAL's 32-byte header, then one 24-byte frame header and one page per written page.
    assert_eq!((size - 32) / (page + 24), 5, "pages written by an idle poll");
    assert_eq!(count(&store, "presence"), 1);
}

#[test]
fn a_gap_starts_a_new_interval_and_failures_change_nothing() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("x", "Phone")]);
    // Failed polls in between: no evidence, so the interval is still open afterwards.
    store.record_failure(a, t(1), "Spotify answered 503").expect("failure");
    store.record_failure(a, t(2), "Spotify answered 503").expect("failure");
    poll(&mut store, a, t(3), vec![dev("x", "Phone")]);
    assert_eq!(count(&store, "presence"), 1);
    // A successful poll without it, then it is back: two intervals.
    poll(&mut store, a, t(4), vec![]);
    poll(&mut store, a, t(5), vec![dev("x", "Phone")]);
    assert_eq!(count(&store, "presence"), 2);
    let status = &store.account_status().expect("status")[0];
    assert_eq!(status.last_error, None, "success clears the error");
}

/// The intervals of the device with Spotify id `id`: (start, end), oldest first.
fn intervals(store: &Store, id: &str) -> Vec<(i64, i64)> {
    let mut stmt = store
        .conn
        .prepare(
            "SELECT p.started_at, p.ended_at FROM presence p JOIN device_ids i ON i.device_id = p.device_id
             WHERE i.spotify_id = ?1 ORDER BY p.started_at",
        )
        .expect("prepare");
    stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn a_device_missing_from_a_poll_that_skipped_one_keeps_its_interval() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("x", "Phone"), dev("y", "Laptop")]);
    // x could not be read twice (say its name came as an object): that is not "x left".
    poll_skipping(&mut store, a, t(1), vec![dev("y", "Laptop")], 1);
    poll_skipping(&mut store, a, t(2), vec![dev("y", "Laptop")], 1);
    poll(&mut store, a, t(3), vec![dev("x", "Phone"), dev("y", "Laptop")]);
    assert_eq!(intervals(&store, "x"), [(ms(t(0)), ms(t(3)))], "one interval across the partial polls");
    assert_eq!(intervals(&store, "y"), [(ms(t(0)), ms(t(3)))]);
    // A full poll without x is evidence: back after it, x starts a new interval.
    poll(&mut store, a, t(4), vec![dev("y", "Laptop")]);
    poll(&mut store, a, t(5), vec![dev("x", "Phone"), dev("y", "Laptop")]);
    assert_eq!(intervals(&store, "x"), [(ms(t(0)), ms(t(3))), (ms(t(5)), ms(t(5)))]);
}

#[test]
fn partial_polls_bridge_no_further_back_than_the_presence_bridge() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    store.set_presence_bridge(Duration::from_secs(10 * 60));
    poll(&mut store, a, t(0), vec![dev("x", "Phone")]);
    for m in [5, 10, 15] {
        poll_skipping(&mut store, a, t(m), vec![dev("y", "Laptop")], 1);
    }
    // Last full poll 16 minutes ago, beyond the 10-minute bridge: x was not seen meanwhile.
    poll(&mut store, a, t(16), vec![dev("x", "Phone"), dev("y", "Laptop")]);
    assert_eq!(intervals(&store, "x"), [(ms(t(0)), ms(t(0))), (ms(t(16)), ms(t(16)))]);
    assert_eq!(intervals(&store, "y"), [(ms(t(5)), ms(t(16)))], "seen at every poll: one interval");
}

#[test]
fn failure_is_recorded_for_status() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    store.record_failure(a, t(1), "cannot reach Spotify").expect("failure");
    let s = &store.account_status().expect("status")[0];
    assert_eq!(s.last_error.as_deref(), Some("cannot reach Spotify"));
    assert_eq!(s.last_poll_at, None);
}

#[test]
fn rotated_id_becomes_an_alias_of_the_same_device() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("old", "Phone")]);
    let key = store.devices(a, false).expect("devices")[0].key;
    store.trust(key, TrustedBy::Cli, t(0)).expect("trust");
    let new_events = poll(&mut store, a, t(1), vec![dev("new", "Phone")]);
    assert!(new_events.is_empty(), "no alert for an id rotation");
    let rows = store.devices(a, false).expect("devices");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id.as_deref(), Some("new"), "the latest id is shown");
    assert!(rows[0].trusted);
    assert_eq!(count(&store, "device_ids"), 2);
    // Both ids resolve to it.
    assert!(matches!(store.find_device(a, "old").expect("find"), Found::One(d) if d.key == key));
}

#[test]
fn outbox_lists_until_marked_delivered() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    let ids = poll(&mut store, a, t(0), vec![dev("x", "Phone")]);
    assert_eq!(ids.len(), 1);
    let pending = store.undelivered(10).expect("pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].account, "default");
    assert!(matches!(pending[0].event, Event::FirstRun { ref names, .. } if names == &["Phone".to_string()]));
    store.note_attempt(ids[0]).expect("attempt");
    assert_eq!(store.undelivered(10).expect("pending")[0].attempts, 1);
    store.mark_delivered(ids[0], t(0)).expect("mark");
    assert!(store.undelivered(10).expect("pending").is_empty());
}

#[test]
fn trust_records_who_and_is_not_repeated() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("x", "Phone")]);
    let key = store.devices(a, false).expect("devices")[0].key;
    assert!(store.trust(key, TrustedBy::Notification, t(1)).expect("trust"));
    assert!(!store.trust(key, TrustedBy::Cli, t(2)).expect("again"), "already trusted");
    let (kind, details, delivered): (String, String, Option<i64>) = store
        .conn
        .query_row("SELECT kind, details, delivered_at FROM events WHERE kind = 'device_trusted'", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("event");
    assert_eq!(kind, "device_trusted");
    assert!(details.contains("\"by\":\"notification\""), "{details}");
    assert!(delivered.is_some(), "the person's own act is not notified back");
    // Trusted now: no further alerts even after the re-alert bound.
    assert!(poll(&mut store, a, t(3 * 24 * 60), vec![dev("x", "Phone")]).is_empty());
}

#[test]
fn forget_releases_the_device_so_it_alerts_again() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("x", "Phone")]);
    let key = store.devices(a, false).expect("devices")[0].key;
    store.trust(key, TrustedBy::Cli, t(0)).expect("trust");
    assert!(store.forget(key, t(1)).expect("forget"));
    assert!(store.devices(a, false).expect("devices").is_empty());
    assert_eq!(store.devices(a, true).expect("all").len(), 1);
    let ids = poll(&mut store, a, t(2), vec![dev("x", "Phone")]);
    assert_eq!(ids.len(), 1, "a forgotten device that returns is new again");
}

#[test]
fn find_device_by_key_id_prefix_and_name_with_ambiguity() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(
        &mut store,
        a,
        t(0),
        vec![dev("abcd1111", "Phone"), dev("abcd2222", "Tablet"), dev("ffff0000", "phone two")],
    );
    let rows = store.devices(a, false).expect("devices");
    let phone = rows.iter().find(|d| d.name == "Phone").expect("phone").key;
    assert!(matches!(store.find_device(a, "abcd1111").expect("f"), Found::One(d) if d.key == phone));
    assert!(matches!(store.find_device(a, "PHONE").expect("f"), Found::One(d) if d.key == phone));
    assert!(matches!(store.find_device(a, &phone.to_string()).expect("f"), Found::One(d) if d.key == phone));
    assert!(matches!(store.find_device(a, "ffff").expect("f"), Found::One(d) if d.name == "phone two"));
    assert!(matches!(store.find_device(a, "abcd").expect("f"), Found::Ambiguous(v) if v.len() == 2));
    assert!(matches!(store.find_device(a, "abc").expect("f"), Found::None), "prefixes need 4 characters");
    assert!(matches!(store.find_device(a, "nothing").expect("f"), Found::None));
}

#[test]
fn online_flag_follows_the_latest_poll() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("x", "Phone"), dev("y", "Tablet")]);
    poll(&mut store, a, t(1), vec![dev("x", "Phone")]);
    let rows = store.devices(a, false).expect("devices");
    assert_eq!(rows[0].name, "Phone", "most recent first");
    assert!(rows[0].online);
    assert!(!rows[1].online);
}

#[test]
fn an_uncommitted_poll_leaves_nothing() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    let known = store.load_known(a, t(0)).expect("load");
    let plan = evaluate(
        &known,
        &Snapshot { devices: vec![dev("x", "Phone")], playback: None, skipped: 0, cut: 0 },
        &policy(),
        t(0),
    );
    {
        let tx = store.conn.transaction().expect("tx");
        record_poll_tx(&tx, a, t(0), Duration::ZERO, &plan, DEFAULT_PRESENCE_BRIDGE).expect("write");
        // Dropped without commit: what a kill mid-poll does.
    }
    assert_eq!(count(&store, "devices"), 0);
    assert_eq!(count(&store, "events"), 0);
    assert_eq!(count(&store, "presence"), 0);
}

#[test]
fn access_lost_is_recorded_once_until_a_new_login() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    assert!(store.mark_access_lost(a, t(1), "invalid_grant", Some("aaaa")).expect("mark").is_some());
    assert!(
        store.mark_access_lost(a, t(2), "invalid_grant", Some("aaaa")).expect("again").is_none(),
        "one event"
    );
    assert_eq!(store.access_lost_at(a).expect("lost"), Some(t(1)));
    assert_eq!(store.undelivered(10).expect("outbox").len(), 1);
    assert_eq!(store.spotify_user(a).expect("user"), None, "no login recorded yet");
    store.record_login(a, t(3), "Ann", t(3)).expect("login");
    assert_eq!(store.spotify_user(a).expect("user").as_deref(), Some("Ann"));
    assert_eq!(store.access_lost_at(a).expect("lost"), None);
    assert_eq!(store.lost_login(a).expect("login"), None, "a login forgets the dead one");
    let s = &store.account_status().expect("status")[0];
    assert_eq!(s.spotify_user.as_deref(), Some("Ann"));
    assert!(
        store.mark_access_lost(a, t(4), "invalid_grant", Some("bbbb")).expect("mark").is_some(),
        "a new login can be lost again"
    );
}

/// Issue 10: which login died is kept (as a fingerprint) until another login replaces it,
/// so a restarted daemon can tell the dead login from a new one with the same authorisation time.
#[test]
fn the_lost_login_is_kept_until_access_is_back() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    let b = store.account("other", t(0)).expect("account");
    assert_eq!(store.lost_login(a).expect("none yet"), None);
    store.mark_access_lost(a, t(1), "invalid_grant", Some("aaaa")).expect("mark");
    assert_eq!(store.lost_login(a).expect("kept").as_deref(), Some("aaaa"));
    assert_eq!(store.lost_login(b).expect("other account"), None);
    // Lost again while still lost (a second login that died before polling resumed): the
    // newest dead login is the one to compare with, and there is still one event.
    assert!(store.mark_access_lost(a, t(2), "invalid_grant", Some("cccc")).expect("again").is_none());
    assert_eq!(store.lost_login(a).expect("replaced").as_deref(), Some("cccc"));
    assert_eq!(store.access_lost_at(a).expect("lost"), Some(t(1)));
    store.clear_access_lost(a).expect("clear");
    assert_eq!(store.lost_login(a).expect("cleared"), None);
    assert_eq!(store.access_lost_at(a).expect("cleared"), None);
    // Kept across a reopen, as across a daemon restart.
    store.mark_access_lost(a, t(3), "invalid_grant", Some("dddd")).expect("mark");
    let path = store.path().to_path_buf();
    drop(store);
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.lost_login(a).expect("kept").as_deref(), Some("dddd"));
}

#[test]
fn login_expiry_is_warned_once_per_login() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    assert!(store.warn_login_expiring(a, t(10), t(0), t(100)).expect("warn").is_some());
    assert!(store.warn_login_expiring(a, t(11), t(0), t(100)).expect("again").is_none());
    assert!(store.warn_login_expiring(a, t(12), t(5), t(105)).expect("new login").is_some());
}

#[test]
fn migrating_a_version_1_database_keeps_its_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    {
        let conn = Connection::open(&path).expect("open");
        conn.execute_batch(MIGRATIONS[0]).expect("v1");
        conn.pragma_update(None, "user_version", 1).expect("version");
        conn.execute("INSERT INTO accounts (name, created_at) VALUES ('old', 1)", []).expect("row");
    }
    let store = Store::open(&path).expect("migrates");
    assert_eq!(store.find_account("old").expect("find"), Some(1));
    assert_eq!(store.access_lost_at(1).expect("new column"), None);
    assert_eq!(store.lost_login(1).expect("newer column"), None);
}

#[test]
fn two_openers_of_a_new_database_migrate_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || Store::open(&path).map(|_| ()))
        })
        .collect();
    for h in handles {
        h.join().expect("thread").expect("every opener succeeds");
    }
    let store = Store::open(&path).expect("open");
    let v: u32 = store.conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("pragma");
    assert_eq!(v as usize, MIGRATIONS.len());
}

#[test]
fn history_filters_by_time_account_and_device_newest_first() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    let b = store.account("kid", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("x", "Phone")]);
    poll(&mut store, b, t(10), vec![dev("y", "Tablet")]);
    let phone = store.devices(a, false).expect("devices")[0].key;
    store.trust(phone, TrustedBy::Cli, t(20)).expect("trust");
    let all = store.history(t(0), None, None, 100).expect("history");
    let kinds: Vec<&str> = all.iter().map(|e| e.event.kind()).collect();
    assert_eq!(kinds, ["device_trusted", "first_run", "first_run"], "newest first");
    assert_eq!(store.history(t(5), None, None, 100).expect("since").len(), 2);
    assert_eq!(store.history(t(0), Some(b), None, 100).expect("account")[0].account, "kid");
    assert_eq!(store.history(t(0), None, Some(phone), 100).expect("device").len(), 1);
}

#[test]
fn untrust_and_label() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("x", "Phone")]);
    let key = store.devices(a, false).expect("devices")[0].key;
    assert!(!store.untrust(key).expect("not trusted yet"));
    store.trust(key, TrustedBy::Cli, t(1)).expect("trust");
    assert!(store.untrust(key).expect("untrust"));
    // Untrusted again, and its alert bound reset: the next poll alerts.
    assert_eq!(poll(&mut store, a, t(2), vec![dev("x", "Phone")]).len(), 1);
    assert!(store.label(key, Some("Anna's phone")).expect("label"));
    assert_eq!(store.devices(a, false).expect("devices")[0].label.as_deref(), Some("Anna's phone"));
}

#[test]
fn prune_drops_old_history_but_keeps_devices_and_undelivered_alerts() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    let ids = poll(&mut store, a, t(0), vec![dev("x", "Phone")]);
    poll(&mut store, a, t(10), vec![]);
    poll(&mut store, a, t(20), vec![dev("y", "Tablet")]);
    // The first alert was never delivered: it must survive until it is.
    assert_eq!(store.prune(t(15)).expect("prune"), 1, "only the old presence interval");
    store.mark_delivered(ids[0], t(16)).expect("delivered");
    assert_eq!(store.prune(t(15)).expect("prune"), 1, "now the old event too");
    assert_eq!(count(&store, "devices"), 2, "devices and their trust stay");
    assert_eq!(count(&store, "events"), 1);
    assert_eq!(count(&store, "presence"), 1);
}

#[test]
fn only_the_first_look_is_a_first_run() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    assert!(store.load_known(a, t(0)).expect("known").first_run);
    poll(&mut store, a, t(0), vec![]);
    assert!(store.load_known(a, t(1)).expect("known").first_run, "seeing nothing reviews nothing");
    poll(&mut store, a, t(1), vec![dev("x", "Phone")]);
    assert!(!store.load_known(a, t(2)).expect("known").first_run);
    let kinds: Vec<&str> =
        store.history(t(0), None, None, 10).expect("h").iter().map(|e| e.event.kind()).collect();
    assert_eq!(kinds, ["first_run"]);
    // The next new device is alerted on its own.
    poll(&mut store, a, t(2), vec![dev("x", "Phone"), dev("y", "Tablet")]);
    assert_eq!(store.history(t(2), None, None, 10).expect("h")[0].event.kind(), "device_appeared");
}

#[test]
fn merge_joins_two_records_and_their_histories() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("old", "Phone")]);
    let old = store.devices(a, false).expect("devices")[0].key;
    store.trust(old, TrustedBy::Cli, t(1)).expect("trust");
    // Spotify rotated the id and the name changed too: a second record, alerted.
    poll(&mut store, a, t(5), vec![dev("new", "Anna's Phone")]);
    let new =
        store.devices(a, false).expect("devices").iter().find(|d| d.name == "Anna's Phone").expect("new").key;
    store.merge(new, old, t(6)).expect("merge");
    let rows = store.devices(a, true).expect("devices");
    assert_eq!(rows.len(), 1, "one device left");
    assert!(rows[0].trusted, "trusted because the old record was");
    assert_eq!(rows[0].first_seen, t(0), "first seen from the old record");
    assert_eq!(count(&store, "device_ids"), 2, "both ids now point at it");
    assert_eq!(count(&store, "presence"), 2, "both histories kept");
    assert!(matches!(store.find_device(a, "old").expect("find"), Found::One(d) if d.key == new));
    let h = store.history(t(0), None, Some(new), 10).expect("history");
    assert_eq!(h[0].event.kind(), "devices_merged");
    assert!(h.iter().any(|e| e.event.kind() == "device_trusted"), "the old record's events moved over");
    // Seen again under either id: quiet.
    assert!(poll(&mut store, a, t(7), vec![dev("old", "Anna's Phone")]).is_empty());
}

#[test]
fn a_long_gap_between_polls_is_not_taken_as_presence() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    store.set_presence_bridge(Duration::from_secs(10 * 60));
    poll(&mut store, a, t(0), vec![dev("x", "Phone")]);
    poll(&mut store, a, t(9), vec![dev("x", "Phone")]);
    assert_eq!(count(&store, "presence"), 1, "9 minutes: bridged");
    // The laptop slept for 8 hours: seen before and after is not seen all night.
    poll(&mut store, a, t(9 + 8 * 60), vec![dev("x", "Phone")]);
    assert_eq!(count(&store, "presence"), 2);
}

#[test]
fn a_dry_run_poll_plans_from_the_store_and_writes_nothing() {
    let (_dir, mut store) = open();
    let account = store.account("default", t(0)).expect("account");
    let snapshot = Snapshot { devices: vec![dev("a", "Laptop")], playback: None, skipped: 0, cut: 0 };
    let took = Duration::from_millis(3);
    let Polled { known, plan, ids, .. } = store
        .poll(account, t(1), took, Recording::DryRun, |known| evaluate(known, &snapshot, &policy(), t(1)))
        .expect("dry run");
    assert!(known.first_run && !plan.events.is_empty() && ids.is_empty());
    assert_eq!(count(&store, "devices"), 0, "a dry run writes nothing");
    assert_eq!(count(&store, "events"), 0);
    // The same poll recorded: the rules saw the same state, and it lands in one go.
    let Polled { known, ids, .. } = store
        .poll(account, t(1), took, Recording::Record, |known| evaluate(known, &snapshot, &policy(), t(1)))
        .expect("record");
    assert!(known.first_run && !ids.is_empty());
    assert_eq!(count(&store, "devices"), 1);
    let Polled { known, .. } = store
        .poll(account, t(2), took, Recording::Record, |known| evaluate(known, &snapshot, &policy(), t(2)))
        .expect("again");
    assert!(!known.first_run, "the second poll sees what the first recorded");
}

#[test]
fn an_unreadable_outbox_row_is_set_aside_and_the_rest_delivered() {
    let (_dir, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("1", "Mine")]);
    for id in store.undelivered(10).expect("outbox").iter().map(|e| e.id) {
        store.mark_delivered(id, t(0)).expect("delivered");
    }
    // A kind a newer version wrote, a damaged row, then a real alert.
    for (kind, details) in
        [("hologram", r#"{"kind":"hologram","x":1}"#), ("device_appeared", r#"{"kind":"device_appeared"}"#)]
    {
        store
            .conn
            .execute(
                "INSERT INTO events (account_id, at, kind, details) VALUES (?1, ?2, ?3, ?4)",
                params![a, ms(t(1)), kind, details],
            )
            .expect("insert");
    }
    store
        .conn
        .execute("INSERT INTO events (account_id, at, kind, details) VALUES (?1, 'noon', 'x', '{}')", [a])
        .expect("insert a row with a text time");
    let alert = poll(&mut store, a, t(2), vec![dev("1", "Mine"), dev("2", "Stranger")]);
    assert_eq!(alert.len(), 1);

    let pending = store.undelivered(10).expect("one bad row does not fail the batch");
    let kinds: Vec<_> = pending.iter().map(|e| e.event.kind()).collect();
    assert_eq!(kinds, ["unknown", "device_appeared"], "the damaged rows are left out");
    assert_eq!(pending[1].id, alert[0]);
    let quarantined: i64 = store
        .conn
        .query_row("SELECT count(*) FROM events WHERE quarantined_at IS NOT NULL", [], |r| r.get(0))
        .expect("count");
    assert_eq!(quarantined, 2, "kept, marked");
    assert_eq!(store.undelivered(10).expect("again").len(), 2, "set aside once, not offered again");
    let history = store.history(t(-60), None, None, 50).expect("history reads every row");
    assert_eq!(history.iter().filter(|e| e.event.kind() == "unreadable").count(), 2);
}

#[test]
fn not_watching_is_told_once_per_outage_and_its_end_recorded() {
    let (_dir, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    assert!(store.watching_again(a, t(0)).expect("nothing to end").is_none());
    let first = store.not_watching(a, t(0), t(60), "cannot reach Spotify").expect("notice");
    assert!(first.is_some());
    assert!(store.not_watching(a, t(0), t(61), "cannot reach Spotify").expect("again").is_none());
    let back = store.watching_again(a, t(90)).expect("recovery").expect("an event");
    let events = store.history(t(-1), None, None, 10).expect("history");
    assert_eq!(events[0].id, back);
    assert_eq!(events[0].event, Event::WatchingAgain { since: t(0) });
    assert!(store.not_watching(a, t(100), t(160), "again").expect("a new outage").is_some());
}

fn events_of(store: &Store, kind: &str) -> i64 {
    store.conn.query_row("SELECT count(*) FROM events WHERE kind = ?1", [kind], |r| r.get(0)).expect("count")
}

/// Issue 11: a name that changed every poll wrote a rename event every poll.
#[test]
fn a_hundred_alternating_renames_write_a_bounded_number_of_events() {
    let (_dir, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("x", "Phone")]);
    for i in 1..=100 {
        let name = if i % 2 == 0 { "Phone A" } else { "Phone B" };
        poll(&mut store, a, t(i), vec![dev("x", name)]);
    }
    assert_eq!(events_of(&store, "device_renamed"), i64::from(crate::audit::MAX_RENAMES_PER_DAY));
    let d = &store.devices(a, false).expect("devices")[0];
    assert_eq!(d.name, "Phone A", "the name is kept current all the same");
    assert_eq!(count(&store, "devices"), 1);
    // A day later, renames are told again, as many times.
    for i in 0..10 {
        let name = if i % 2 == 0 { "Phone B" } else { "Phone A" };
        poll(&mut store, a, t(24 * 60 + 100 + i), vec![dev("x", name)]);
    }
    assert_eq!(events_of(&store, "device_renamed"), 2 * i64::from(crate::audit::MAX_RENAMES_PER_DAY));
}

/// Issue 11: an id that rotated every poll added an alias row every poll, never pruned.
#[test]
fn an_id_rotating_every_poll_keeps_the_newest_aliases_only() {
    let (_dir, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    for i in 0..100 {
        poll(&mut store, a, t(i), vec![dev(&format!("rotating-{i}"), "Phone")]);
    }
    assert_eq!(count(&store, "devices"), 1, "one device all along");
    assert_eq!(count(&store, "device_ids"), MAX_ALIASES);
    let known = store.load_known(a, t(100)).expect("known");
    let ids = &known.devices[0].spotify_ids;
    assert!(ids.contains(&"rotating-99".to_string()) && ids.contains(&"rotating-80".to_string()), "{ids:?}");
    assert!(!ids.contains(&"rotating-79".to_string()), "the oldest went: {ids:?}");
    // The newest id still resolves the device, with no alert.
    let before = count(&store, "events");
    poll(&mut store, a, t(101), vec![dev("rotating-99", "Phone")]);
    assert_eq!(count(&store, "events"), before);
}

/// A name that only gained an invisible character is the same device: no new record, no
/// alert, the trust kept.
#[test]
fn a_rename_that_only_adds_a_zero_width_space_keeps_the_record_and_its_trust() {
    let (_dir, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("x", "Phone")]);
    let key = store.devices(a, false).expect("devices")[0].key;
    store.trust(key, TrustedBy::Cli, t(0)).expect("trust");
    poll(&mut store, a, t(1), vec![dev("rotated", "Phone\u{200b}")]);
    let devices = store.devices(a, false).expect("devices");
    assert_eq!(devices.len(), 1);
    assert!(devices[0].trusted);
    assert_eq!(events_of(&store, "device_appeared"), 0);
}

/// Issue 12: the strength of each record is computed and stored, kept current as ids last,
/// and computed for records that predate it (as right after the migration).
#[test]
fn identity_strength_is_stored_kept_current_and_computed_for_older_rows() {
    let (dir, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    let strength_of = |s: &Store, name: &str| {
        s.devices(a, false).expect("devices").into_iter().find(|d| d.name == name).expect("row").strength
    };
    poll(&mut store, a, t(0), vec![dev("tab-1", "Web Player (Chrome)"), dev("desk-1", "Anna's desktop")]);
    assert_eq!(strength_of(&store, "Web Player (Chrome)"), Strength::Weak);
    assert_eq!(strength_of(&store, "Anna's desktop"), Strength::Named);
    // Fifteen days later the desktop still has its id: strong.
    poll(&mut store, a, t(15 * 24 * 60), vec![dev("desk-1", "Anna's desktop")]);
    assert_eq!(strength_of(&store, "Anna's desktop"), Strength::Strong);
    let known = store.load_known(a, t(15 * 24 * 60)).expect("known");
    let desk = known.devices.iter().find(|d| d.name == "Anna's desktop").expect("desk");
    assert_eq!((desk.strength, desk.id_since), (Strength::Strong, Some(t(0))));
    // Rows without a strength (every row right after the migration) get one at open.
    store.conn.execute("UPDATE devices SET strength = NULL", []).expect("clear");
    drop(store);
    let store = Store::open(&dir.path().join("sub/spotguard.db")).expect("reopen");
    assert_eq!(strength_of(&store, "Anna's desktop"), Strength::Strong);
    assert_eq!(strength_of(&store, "Web Player (Chrome)"), Strength::Weak);
    let unclassified: i64 = store
        .conn
        .query_row("SELECT count(*) FROM devices WHERE strength IS NULL", [], |r| r.get(0))
        .expect("q");
    assert_eq!(unclassified, 0);
}

#[test]
fn any_session_is_stored_shown_and_cleared_with_trust() {
    let (_dir, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("tab-1", "Web Player (Chrome)")]);
    let key = store.devices(a, false).expect("devices")[0].key;
    store.trust(key, TrustedBy::Cli, t(1)).expect("trust");
    assert!(store.set_any_session(key, true).expect("set"));
    assert!(store.load_known(a, t(2)).expect("known").devices[0].any_session);
    assert!(store.devices(a, false).expect("devices")[0].any_session);
    store.untrust(key).expect("untrust");
    assert!(!store.devices(a, false).expect("devices")[0].any_session, "untrust takes it back too");
}

#[test]
fn the_previous_poll_counts_for_continuity_only_within_the_bridge() {
    let (_dir, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("tab-1", "Web Player (Chrome)")]);
    assert_eq!(store.load_known(a, t(1)).expect("known").previous_poll, Some(t(0)));
    assert_eq!(
        store.load_known(a, t(60 * 24)).expect("known").previous_poll,
        None,
        "a night is no poll interval"
    );
}

#[test]
fn pruning_keeps_the_newest_event_so_ids_never_go_back() {
    let (_dir, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    let ids = poll(&mut store, a, t(0), vec![dev("1", "Mine")]);
    let newest = *ids.iter().max().expect("an event");
    for id in ids {
        store.mark_delivered(id, t(0)).expect("delivered");
    }
    store.prune(t(60)).expect("prune everything older than an hour");
    let later = poll(&mut store, a, t(120), vec![dev("1", "Mine"), dev("2", "Stranger")]);
    assert!(
        later.iter().all(|id| *id > newest),
        "a channel that sent up to {newest} must not take {later:?} as sent"
    );
}

/// The poll's quick call runs on the calling thread; when another process holds the write
/// lock it fails nothing: it waits for the lock on the blocking pool and then writes.
#[tokio::test]
async fn a_quick_call_runs_here_and_waits_elsewhere_while_another_process_writes() {
    let (dir, store) = open();
    let path = store.path().to_path_buf();
    let shared = SharedStore::new(store);
    let here = std::thread::current().id();
    let ran_on = shared.call_quick(|_| Ok(std::thread::current().id())).await.expect("quick call");
    assert_eq!(ran_on, here, "an uncontended call stays on this thread");

    // Another process (a command) writing: it holds the write lock.
    let other = Connection::open(&path).expect("second connection");
    other.execute_batch("BEGIN IMMEDIATE").expect("the other writer locks");
    let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = attempts.clone();
    let call = tokio::spawn({
        let shared = shared.clone();
        async move {
            shared
                .call_quick(move |s| {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    s.conn.execute("INSERT INTO accounts (name, created_at) VALUES ('later', 1)", [])?;
                    Ok(std::thread::current().id())
                })
                .await
        }
    });
    // Let the call try on this thread and move to the blocking pool, then let the writer go.
    while attempts.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    other.execute_batch("COMMIT").expect("the other writer finishes");
    let ran_on = call.await.expect("task").expect("the write waits and then succeeds");
    assert_ne!(ran_on, here, "a locked database is waited for off the async thread");
    assert!(attempts.load(std::sync::atomic::Ordering::SeqCst) >= 2, "tried here first, then again");
    let n: i64 = shared
        .call(|s| {
            Ok(s.conn.query_row("SELECT count(*) FROM accounts WHERE name = 'later'", [], |r| r.get(0))?)
        })
        .await
        .expect("count");
    assert_eq!(n, 1, "written once");
    drop(dir);
}

/// A link planted at the database's name is refused with one sentence, and the file it points
/// at is left as it was.
#[test]
fn a_symlink_at_the_database_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious").expect("victim");
    let db = dir.path().join("spotguard.db");
    std::os::unix::fs::symlink(&victim, &db).expect("plant a link");
    let e = Store::open(&db).expect_err("refused");
    assert!(matches!(e, StoreError::Symlink { .. }), "{e:?}");
    assert!(e.to_string().contains("is a symbolic link"), "{e}");
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
    // A link to another database is refused too: nothing is written through a link.
    std::fs::remove_file(&db).expect("remove");
    let real = dir.path().join("real.db");
    drop(Store::open(&real).expect("a real database"));
    std::os::unix::fs::symlink(&real, &db).expect("link to a database");
    assert!(matches!(Store::open(&db), Err(StoreError::Symlink { .. })));
    // And a link at the WAL's name, where SQLite would write first.
    std::fs::remove_file(&db).expect("remove");
    let wal = dir.path().join("spotguard.db-wal");
    std::os::unix::fs::symlink(&victim, &wal).expect("plant a link at the WAL");
    let e = Store::open(&db).expect_err("refused");
    assert!(e.to_string().contains("spotguard.db-wal is a symbolic link"), "{e}");
    assert_eq!(std::fs::read_to_string(&victim).expect("read"), "precious");
}

/// A link among the directories above the database (a data directory moved to another
/// disk and linked back) is the person's own arrangement and still works.
#[test]
fn a_linked_directory_above_the_database_still_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("elsewhere")).expect("dir");
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), dir.path().join("data")).expect("link");
    let store = Store::open(&dir.path().join("data/spotguard.db")).expect("opens through a linked directory");
    drop(store);
    assert!(dir.path().join("elsewhere/spotguard.db").exists());
}

fn entry(name: &str, destination: &str) -> ChannelEntry {
    ChannelEntry { name: name.into(), kind: "webhook".into(), destination: destination.into() }
}

/// A channel's place in the outbox follows where it sends: renamed, or renumbered because
/// another was added before it, it keeps its place (nothing lost, nothing sent twice); a name
/// that now sends elsewhere starts afresh; rows no channel claims go.
#[test]
fn a_channel_keeps_its_place_by_destination_when_renamed_or_renumbered() {
    let (_d, mut store) = open();
    let a = store.account("default", t(0)).expect("account");
    poll(&mut store, a, t(0), vec![dev("x", "Phone")]);
    let first =
        store.register_channels(&[entry("webhook-1", "D1"), entry("webhook-2", "D2")]).expect("register");
    let start = first[0].done_through;
    assert_eq!(first[1].done_through, start, "both start at the newest event");
    // Two alerts later, webhook-1 got one of them and webhook-2 is behind (down).
    let ids = poll(&mut store, a, t(1), vec![dev("x", "Phone"), dev("y", "Tablet"), dev("z", "Speaker")]);
    assert!(!ids.is_empty(), "events recorded");
    store.channel_done("webhook-1", ids[0], Some(t(1))).expect("done");
    store.channel_failed("webhook-2", t(1), "HTTP 503").expect("failed");

    // A new channel is added first in the file: the unnamed ones are renumbered, and one is
    // given a name. Each keeps its place by destination; the new one starts at the newest.
    let states = store
        .register_channels(&[entry("webhook-1", "D3"), entry("phone", "D1"), entry("webhook-3", "D2")])
        .expect("register again");
    assert_eq!(states[0].done_through, *ids.last().expect("an id"), "new: from now on");
    assert_eq!(states[1].done_through, ids[0], "webhook-1 renamed to phone keeps its place");
    assert_eq!(states[2].done_through, start, "webhook-2, now webhook-3, still owes its alerts");
    assert_eq!(states[2].attempts, 1, "and its retry state");
    let names: Vec<String> = store.channels().expect("rows").into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["phone", "webhook-1", "webhook-3"], "no stale rows");

    // The same name sending somewhere else is another channel: it starts afresh.
    let states = store.register_channels(&[entry("phone", "D9")]).expect("register");
    assert_eq!(states[0].done_through, *ids.last().expect("an id"));
    assert_eq!(states[0].last_delivered_at, None);
}

/// Rows from before destinations were kept are matched by name once, then by destination.
#[test]
fn a_channel_row_from_before_destinations_is_matched_by_name() {
    let (_d, mut store) = open();
    store
        .conn
        .execute("INSERT INTO channels (name, type, done_through) VALUES ('ntfy-1', 'ntfy', 7)", [])
        .expect("legacy row");
    let states = store.register_channels(&[entry("ntfy-1", "D1")]).expect("register");
    assert_eq!(states[0].done_through, 7);
    let states = store.register_channels(&[entry("phone", "D1")]).expect("renamed");
    assert_eq!(states[0].done_through, 7, "from now on by destination");
}
