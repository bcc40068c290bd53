//! Proves the D-Bus test harness in `tests/common/dbus.rs` against real clients: a private
//! `dbus-daemon`, the recording notification server, raw zbus connections, and notify-rust
//! itself (run in a child process, since the session bus address comes from the
//! environment and a test must not change its own environment).

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::dbus::{INTERFACE, NotificationServer, PATH, Recorded, SERVER_INFORMATION, TestBus, next_signal};
use zbus::{Connection, MessageStream, Variant};

const CAPABILITIES: &[&str] = &["actions", "body", "body-markup", "body-hyperlinks"];
const WAIT: Duration = Duration::from_secs(10);
/// Long enough for a signal that was going to arrive to have arrived.
const QUIET: Duration = Duration::from_millis(500);

/// Env var that turns [`notify_rust_child`] on and names the file it writes its result to.
const CHILD_RESULT_ENV: &str = "SPOTGUARD_HARNESS_CHILD_RESULT";

/// Sends a notification with the raw `Notify` call and returns its id.
async fn notify(conn: &Connection, summary: &str, actions: &[&str]) -> u32 {
    let mut hints: HashMap<&str, Variant<'_>> = HashMap::new();
    hints.insert("urgency", Variant::U8(2));
    hints.insert("category", Variant::from("device.added"));
    conn.call_method(
        Some(INTERFACE),
        PATH,
        Some(INTERFACE),
        "Notify",
        &("spotguard-harness", 0u32, "dialog-warning", summary, "a <b>body</b>", actions, hints, 5000i32),
    )
    .await
    .expect("Notify call")
    .body()
    .deserialize::<u32>()
    .expect("Notify answers a u32")
}

/// Subscribes `conn` to `member` signals of the notification interface, as notify-rust does.
async fn add_match(conn: &Connection, member: &str) {
    let rule = format!("type='signal',interface='{INTERFACE}',member='{member}'");
    zbus::fdo::DBusProxy::new(conn)
        .await
        .expect("bus proxy")
        .add_match_rule(rule.as_str().try_into().expect("valid rule"))
        .await
        .expect("AddMatch");
}

fn unique_name(conn: &Connection) -> String {
    conn.unique_name().expect("bus connections have a unique name").to_string()
}

fn check_recorded(n: &Recorded, id: u32, sender: &str, summary: &str) {
    assert_eq!(n.id, id);
    assert_eq!(n.sender, sender);
    assert_eq!(n.app_name, "spotguard-harness");
    assert_eq!(n.replaces_id, 0);
    assert_eq!(n.icon, "dialog-warning");
    assert_eq!(n.summary, summary);
    assert_eq!(n.body, "a <b>body</b>");
    assert_eq!(n.urgency, Some(2));
    assert_eq!(n.category.as_deref(), Some("device.added"));
    assert_eq!(n.expire_timeout, 5000);
}

#[tokio::test(flavor = "multi_thread")]
async fn records_notify_and_sends_actions_only_to_the_sender() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, CAPABILITIES).await;

    let client = bus.connect().await;
    let mut client_stream = MessageStream::from(&client);
    let id = notify(&client, "New device", &["open", "Open", "default", "Show"]).await;
    assert_eq!(id, 1, "ids start at 1");

    let recorded = server.wait_for(1, WAIT).await;
    assert_eq!(recorded.len(), 1);
    let n = &recorded[0];
    check_recorded(n, id, &unique_name(&client), "New device");
    assert_eq!(n.actions, ["open", "Open", "default", "Show"]);
    assert_eq!(n.action_keys(), ["open", "default"]);
    assert_eq!(n.action_label("open").as_deref(), Some("Open"));
    assert_eq!(n.action_label("default").as_deref(), Some("Show"));
    assert_eq!(n.action_label("Open"), None);

    // Not subscribed yet: the wait must not return.
    let early = tokio::time::timeout(QUIET, server.wait_until_subscribed(id, Duration::from_secs(30))).await;
    assert!(early.is_err(), "wait_until_subscribed returned before any AddMatch");

    // A third connection listens for every ActionInvoked and sends its own notification.
    let other = bus.connect().await;
    let mut other_stream = MessageStream::from(&other);
    add_match(&other, "ActionInvoked").await;
    let other_id = notify(&other, "Other", &["dismiss", "Dismiss"]).await;
    assert_eq!(other_id, 2, "ids increase");
    server.wait_until_subscribed(other_id, WAIT).await;

    // The other connection's subscription does not count for the client.
    let early = tokio::time::timeout(QUIET, server.wait_until_subscribed(id, Duration::from_secs(30))).await;
    assert!(early.is_err(), "another connection's AddMatch was taken for the client's");

    let started = Instant::now();
    add_match(&client, "ActionInvoked").await;
    server.wait_until_subscribed(id, WAIT).await;
    assert!(started.elapsed() < WAIT);

    server.invoke_action(id, "open").await;
    server.invoke_action(other_id, "dismiss").await;

    let got = next_signal(&mut client_stream, "ActionInvoked", WAIT)
        .await
        .expect("the sender receives ActionInvoked");
    let header = got.header();
    assert_eq!(header.path().map(|p| p.as_str()), Some(PATH));
    assert_eq!(header.interface().map(|i| i.as_str()), Some(INTERFACE));
    assert_eq!(
        header.destination().map(|d| d.to_string()),
        Some(unique_name(&client)),
        "ActionInvoked is unicast"
    );
    assert_eq!(header.sender().map(|s| s.to_string()), Some(server.unique_name()));
    let body: (u32, String) = got.body().deserialize().expect("ActionInvoked (u, s)");
    assert_eq!(body, (id, "open".to_owned()));

    // The third connection's first ActionInvoked is its own: the client's never reached it,
    // although it was emitted first and the third connection matches every ActionInvoked.
    let got = next_signal(&mut other_stream, "ActionInvoked", WAIT)
        .await
        .expect("the other connection receives the action on its own notification");
    let body: (u32, String) = got.body().deserialize().expect("ActionInvoked (u, s)");
    assert_eq!(body, (other_id, "dismiss".to_owned()));
    assert!(
        next_signal(&mut client_stream, "ActionInvoked", QUIET).await.is_none(),
        "the client received the other connection's action"
    );

    // NotificationClosed: from the test, and from the client's CloseNotification (reason 3).
    server.close(id, 2).await;
    let got = next_signal(&mut client_stream, "NotificationClosed", WAIT)
        .await
        .expect("the sender receives NotificationClosed");
    let body: (u32, u32) = got.body().deserialize().expect("NotificationClosed (u, u)");
    assert_eq!(body, (id, 2));

    client
        .call_method(Some(INTERFACE), PATH, Some(INTERFACE), "CloseNotification", &id)
        .await
        .expect("CloseNotification call");
    let got = next_signal(&mut client_stream, "NotificationClosed", WAIT)
        .await
        .expect("CloseNotification answers with NotificationClosed");
    let body: (u32, u32) = got.body().deserialize().expect("NotificationClosed (u, u)");
    assert_eq!(body, (id, 3));
    assert_eq!(server.close_requests(), [id]);
    assert!(
        next_signal(&mut other_stream, "NotificationClosed", QUIET).await.is_none(),
        "NotificationClosed reached a connection that did not send the notification"
    );

    // Unsubscribing is noticed too.
    zbus::fdo::DBusProxy::new(&client)
        .await
        .expect("bus proxy")
        .remove_match_rule(
            format!("type='signal',interface='{INTERFACE}',member='ActionInvoked'")
                .as_str()
                .try_into()
                .expect("valid rule"),
        )
        .await
        .expect("RemoveMatch");
    let deadline = Instant::now() + WAIT;
    while server.is_subscribed(id) {
        assert!(Instant::now() < deadline, "RemoveMatch was not noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let late = tokio::time::timeout(QUIET, server.wait_until_subscribed(id, WAIT)).await;
    assert!(late.is_err(), "unsubscribed, yet wait_until_subscribed returned");

    assert_eq!(server.notifications().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn answers_capabilities_and_server_information() {
    let bus = TestBus::start();
    let _server = NotificationServer::start(&bus, CAPABILITIES).await;
    let client = bus.connect().await;

    let caps: Vec<String> = client
        .call_method(Some(INTERFACE), PATH, Some(INTERFACE), "GetCapabilities", &())
        .await
        .expect("GetCapabilities call")
        .body()
        .deserialize()
        .expect("GetCapabilities answers as");
    assert_eq!(caps, CAPABILITIES);

    let info: (String, String, String, String) = client
        .call_method(Some(INTERFACE), PATH, Some(INTERFACE), "GetServerInformation", &())
        .await
        .expect("GetServerInformation call")
        .body()
        .deserialize()
        .expect("GetServerInformation answers ssss");
    let (name, vendor, version, spec) = SERVER_INFORMATION;
    assert_eq!(info, (name.into(), vendor.into(), version.into(), spec.into()));

    // A server with other capabilities answers those.
    let bus = TestBus::start();
    let _server = NotificationServer::start(&bus, &["body"]).await;
    let client = bus.connect().await;
    let caps: Vec<String> = client
        .call_method(Some(INTERFACE), PATH, Some(INTERFACE), "GetCapabilities", &())
        .await
        .expect("GetCapabilities call")
        .body()
        .deserialize()
        .expect("GetCapabilities answers as");
    assert_eq!(caps, ["body"]);
}

/// The same round trip spotguard makes: notify-rust's `show_async`, then
/// `wait_for_action_async` on the same connection, in a child process whose session bus is
/// the test bus.
#[tokio::test(flavor = "multi_thread")]
async fn notify_rust_client_receives_the_action() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, CAPABILITIES).await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let result = dir.path().join("result");

    let mut child = tokio::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["dbus_harness::notify_rust_child", "--exact", "--test-threads=1"])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env(CHILD_RESULT_ENV, &result)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the notify-rust child");

    let sent = server.wait_for(1, WAIT).await;
    let n = &sent[0];
    assert_eq!(n.app_name, "spotguard-harness-child");
    assert_eq!(n.summary, "From notify-rust");
    assert_eq!(n.action_keys(), ["open", "default"]);
    assert_eq!(n.urgency, Some(2));
    assert_ne!(n.sender, server.unique_name());

    server.wait_until_subscribed(n.id, WAIT).await;
    server.invoke_action(n.id, "open").await;

    let out = tokio::time::timeout(WAIT, async {
        let status = child.wait().await.expect("wait for the child");
        let mut stdout = String::new();
        let mut stderr = String::new();
        if let Some(mut s) = child.stdout.take() {
            tokio::io::AsyncReadExt::read_to_string(&mut s, &mut stdout).await.expect("read child stdout");
        }
        if let Some(mut s) = child.stderr.take() {
            tokio::io::AsyncReadExt::read_to_string(&mut s, &mut stderr).await.expect("read child stderr");
        }
        (status, stdout, stderr)
    })
    .await
    .expect("the notify-rust child finishes after the action");
    let (status, stdout, stderr) = out;
    assert!(status.success(), "child failed:\n{stdout}\n{stderr}");
    let got = std::fs::read_to_string(&result)
        .unwrap_or_else(|e| panic!("child wrote no result ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(got, format!("{}:action:open", n.id));
}

/// Child half of [`notify_rust_client_receives_the_action`]; does nothing unless that test
/// runs it with [`CHILD_RESULT_ENV`] set.
#[tokio::test(flavor = "multi_thread")]
async fn notify_rust_child() {
    let Some(result) = std::env::var_os(CHILD_RESULT_ENV) else {
        return;
    };
    let handle = notify_rust::Notification::new()
        .appname("spotguard-harness-child")
        .summary("From notify-rust")
        .body("body")
        .action("open", "Open")
        .action("default", "Show")
        .urgency(notify_rust::Urgency::Critical)
        .show_async()
        .await
        .expect("notify-rust show_async on the test bus");
    let id = handle.id();
    let mut response = None;
    handle.wait_for_action_async(|r| response = Some(r.clone())).await;
    let text = match response {
        Some(notify_rust::NotificationResponse::Action(key)) => format!("{id}:action:{key}"),
        other => format!("{id}:other:{other:?}"),
    };
    std::fs::write(result, text).expect("write the child result");
}
