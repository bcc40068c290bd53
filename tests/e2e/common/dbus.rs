//! A private D-Bus session bus and a recording notification server, for integration tests.
//!
//! [`TestBus`] runs the real `dbus-daemon` (Debian package `dbus-daemon`) on a socket in a
//! temporary directory, with a minimal configuration: no service directories, so nothing
//! on the machine (a real dunst, say) can be auto-started onto it.
//!
//! [`NotificationServer`] owns `org.freedesktop.Notifications` on that bus and records every
//! `Notify` call. Like dunst, it sends `ActionInvoked` and `NotificationClosed` only to the
//! connection that sent the notification (unicast), never as a broadcast.
//!
//! Typical use (the server needs a running tokio runtime; use
//! `#[tokio::test(flavor = "multi_thread")]` and never block the test's thread while the
//! program under test talks to the server):
//!
//! ```ignore
//! let bus = TestBus::start();
//! let server = NotificationServer::start(&bus, &["actions", "body"]).await;
//! // spawn spotguard with DBUS_SESSION_BUS_ADDRESS=bus.address ...
//! let sent = server.wait_for(1, Duration::from_secs(10)).await;
//! server.wait_until_subscribed(sent[0].id, Duration::from_secs(10)).await;
//! server.invoke_action(sent[0].id, "default").await;
//! ```
//!
//! # How subscription is detected
//! notify-rust calls `AddMatch` for `ActionInvoked`, then for `NotificationClosed`, and only
//! then creates the stream that actually receives signals; a signal that arrives earlier is
//! dropped by the client even though the bus delivers it. At start the server opens a second
//! connection that becomes a bus monitor (`org.freedesktop.DBus.Monitoring.BecomeMonitor`)
//! and tracks every connection's active match rules from its `AddMatch` and `RemoveMatch`
//! calls (and forgets them when the connection leaves the bus).
//! [`NotificationServer::wait_until_subscribed`] waits until the sender of a notification
//! holds a rule that matches this server's `ActionInvoked` to it, then gives the client
//! [`SUBSCRIBE_SETTLE`] to finish its setup.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::num::NonZeroUsize;
use std::path::Path;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use zbus::export::futures_core::Stream;
use zbus::message::{Header, Type};
use zbus::{Connection, MatchRule, Message, MessageStream, OwnedMatchRule, OwnedVariant, Variant};

/// Object path of the notification server.
pub const PATH: &str = "/org/freedesktop/Notifications";
/// Interface and well-known bus name of the notification server.
pub const INTERFACE: &str = "org.freedesktop.Notifications";
/// What `GetServerInformation` answers: name, vendor, version, spec version.
pub const SERVER_INFORMATION: (&str, &str, &str, &str) = ("spotguard-test", "spotguard", "1.0", "1.2");
/// How long [`NotificationServer::wait_until_subscribed`] waits after it has seen the
/// subscription, for the client to finish setting up (notify-rust sends a second `AddMatch`
/// and then creates its message stream).
pub const SUBSCRIBE_SETTLE: Duration = Duration::from_millis(200);

/// How often the `wait_*` helpers poll.
const POLL: Duration = Duration::from_millis(20);
/// The message bus itself.
const BUS_NAME: &str = "org.freedesktop.DBus";
/// Capacity of the bus monitor connection's message queue (it sees every AddMatch on the bus).
const MONITOR_QUEUE: NonZeroUsize = NonZeroUsize::new(4096).expect("4096 is not zero");
/// Longest unix socket path the kernel accepts is 107 bytes; stay well below.
const MAX_SOCKET_PATH: usize = 100;

/// A private `dbus-daemon --session`, killed on drop.
#[derive(Debug)]
pub struct TestBus {
    /// The address to connect to, as printed by the daemon; use it as
    /// `DBUS_SESSION_BUS_ADDRESS` for programs under test.
    pub address: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TestBus {
    /// Starts `dbus-daemon --config-file=<minimal session config> --nofork --print-address=1`
    /// listening on a socket in a fresh temporary directory, and waits until it printed its
    /// address (by then it accepts connections).
    ///
    /// # Panics
    /// If `dbus-daemon` is not installed (it is a test dependency: CI installs it, tests
    /// never skip) or does not start.
    pub fn start() -> TestBus {
        let dir = bus_dir();
        let socket = dir.path().join("bus");
        let config = dir.path().join("session.conf");
        let log = dir.path().join("dbus-daemon.log");
        std::fs::write(&config, session_config(&socket)).expect("write dbus-daemon config");
        let log_file = std::fs::File::create(&log).expect("create dbus-daemon log file");

        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config.display()))
            .args(["--nofork", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    panic!(
                        "dbus-daemon is not installed: the D-Bus tests need it \
                         (Debian/Ubuntu: apt-get install dbus-daemon); tests never skip"
                    )
                }
                panic!("cannot run dbus-daemon: {e}")
            });

        let stdout = child.stdout.take().expect("dbus-daemon stdout is piped");
        let mut address = String::new();
        let read = BufReader::new(stdout).read_line(&mut address);
        let address = address.trim().to_owned();
        if read.is_err() || address.is_empty() {
            let _ = child.kill();
            let status = child.wait();
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("dbus-daemon did not print its address ({read:?}, exit {status:?}); its log:\n{log}");
        }
        TestBus { address, child, _dir: dir }
    }

    /// A new connection to this bus (it has said `Hello`, so it has a unique name).
    pub async fn connect(&self) -> Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .build()
            .await
            .expect("connect to the test bus")
    }
}

impl Drop for TestBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary directory whose `bus` socket path fits in a unix socket address.
fn bus_dir() -> tempfile::TempDir {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("spotguard-bus-");
        b
    };
    let dir = builder.tempdir().expect("create a temporary directory");
    if dir.path().join("bus").as_os_str().len() <= MAX_SOCKET_PATH {
        return dir;
    }
    builder.tempdir_in("/tmp").expect("create a temporary directory in /tmp")
}

/// A minimal session-bus configuration: one socket, same-user auth, everything allowed
/// (monitoring included), and no service directories.
fn session_config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        escape_address_value(socket)
    )
}

/// Escapes a value for a D-Bus address (`%XX` for bytes outside the optionally-escaped set);
/// the result contains nothing that needs XML escaping.
fn escape_address_value(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"-_/.\\*".contains(&b) {
            out.push(char::from(b));
        } else {
            write!(out, "%{b:02x}").expect("writing to a String cannot fail");
        }
    }
    out
}

/// One recorded `Notify` call.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The id the server answered.
    pub id: u32,
    /// Unique bus name (`:1.N`) of the connection that sent it.
    pub sender: String,
    pub app_name: String,
    pub replaces_id: u32,
    pub icon: String,
    pub summary: String,
    pub body: String,
    /// Flat `key, label, key, label, ...` as sent.
    pub actions: Vec<String>,
    /// The `urgency` hint, when sent as a byte (0 low, 1 normal, 2 critical).
    pub urgency: Option<u8>,
    /// The `category` hint, when sent as a string.
    pub category: Option<String>,
    pub expire_timeout: i32,
    /// When the server received the call.
    pub received: Instant,
}

impl Recorded {
    /// The action keys, in order.
    pub fn action_keys(&self) -> Vec<String> {
        self.actions.iter().step_by(2).cloned().collect()
    }

    /// The label sent for action `key`.
    pub fn action_label(&self, key: &str) -> Option<String> {
        self.actions.chunks(2).find(|pair| pair[0] == key).and_then(|pair| pair.get(1).cloned())
    }
}

/// State shared by the D-Bus interface, the monitor task and the test.
#[derive(Debug, Default)]
struct Shared {
    notifications: Mutex<Vec<Recorded>>,
    /// Ids passed to `CloseNotification`, in call order.
    close_requests: Mutex<Vec<u32>>,
    /// Active match rules per unique name, as seen by the monitor.
    rules: Mutex<HashMap<String, Vec<OwnedMatchRule>>>,
    /// Every `AddMatch` rule string per unique name, in order, never removed (for messages).
    added: Mutex<HashMap<String, Vec<String>>>,
    /// `Notify` calls a hung server never answered.
    unanswered: std::sync::atomic::AtomicUsize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn sender_of(&self, id: u32) -> Option<String> {
        lock(&self.notifications).iter().rev().find(|n| n.id == id).map(|n| n.sender.clone())
    }
}

/// The `org.freedesktop.Notifications` interface served on the bus.
#[derive(Debug)]
struct Interface {
    shared: Arc<Shared>,
    capabilities: Vec<String>,
    /// A wedged server: `Notify` is counted, then never answered.
    hung: bool,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Interface {
    #[allow(clippy::too_many_arguments)]
    async fn notify(
        &self,
        #[zbus(header)] header: Header<'_>,
        app_name: String,
        replaces_id: u32,
        app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        hints: HashMap<String, OwnedVariant>,
        expire_timeout: i32,
    ) -> u32 {
        if self.hung {
            self.shared.unanswered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        let urgency = match hints.get("urgency").map(|v| &**v) {
            Some(Variant::U8(u)) => Some(*u),
            _ => None,
        };
        let category = match hints.get("category").map(|v| &**v) {
            Some(Variant::Str(s)) => Some(s.to_string()),
            _ => None,
        };
        let mut notifications = lock(&self.shared.notifications);
        // As the spec says: replacing keeps the id; otherwise ids start at 1 and increase.
        let id = if replaces_id != 0 {
            replaces_id
        } else {
            notifications.iter().map(|n| n.id).max().unwrap_or(0) + 1
        };
        notifications.push(Recorded {
            id,
            sender: header.sender().map(|s| s.to_string()).unwrap_or_default(),
            app_name,
            replaces_id,
            icon: app_icon,
            summary,
            body,
            actions,
            urgency,
            category,
            expire_timeout,
            received: Instant::now(),
        });
        id
    }

    async fn close_notification(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] conn: &Connection,
        id: u32,
    ) -> zbus::fdo::Result<()> {
        lock(&self.shared.close_requests).push(id);
        let caller = header.sender().map(|s| s.to_string());
        let Some(dest) = self.shared.sender_of(id).or(caller) else {
            return Ok(());
        };
        // Reason 3: closed by a call to CloseNotification.
        conn.emit_signal(Some(dest.as_str()), PATH, INTERFACE, "NotificationClosed", &(id, 3u32))
            .await
            .map_err(|e| zbus::fdo::Error::Failed(e.to_string()))
    }

    async fn get_capabilities(&self) -> Vec<String> {
        self.capabilities.clone()
    }

    async fn get_server_information(&self) -> (String, String, String, String) {
        let (name, vendor, version, spec) = SERVER_INFORMATION;
        (name.into(), vendor.into(), version.into(), spec.into())
    }
}

/// An `org.freedesktop.Notifications` server on a [`TestBus`] that records what it is sent
/// and, like dunst, sends its signals only to the notification's sender.
#[derive(Debug)]
pub struct NotificationServer {
    conn: Connection,
    shared: Arc<Shared>,
    monitor: tokio::task::JoinHandle<()>,
}

impl NotificationServer {
    /// Starts the bus monitor (so no `AddMatch` is missed), then connects, serves
    /// `/org/freedesktop/Notifications` and takes the name `org.freedesktop.Notifications`.
    /// `capabilities` is what `GetCapabilities` answers, e.g.
    /// `&["actions", "body", "body-markup", "body-hyperlinks"]`.
    ///
    /// Needs a tokio runtime; the server stops when this value is dropped.
    pub async fn start(bus: &TestBus, capabilities: &[&str]) -> NotificationServer {
        NotificationServer::start_with(bus, capabilities, false).await
    }

    /// A server that answers `GetCapabilities` but never answers `Notify` (a wedged server).
    pub async fn start_hung(bus: &TestBus, capabilities: &[&str]) -> NotificationServer {
        NotificationServer::start_with(bus, capabilities, true).await
    }

    /// How many `Notify` calls a hung server has left unanswered.
    pub fn unanswered(&self) -> usize {
        self.shared.unanswered.load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn start_with(bus: &TestBus, capabilities: &[&str], hung: bool) -> NotificationServer {
        let shared = Arc::new(Shared::default());
        let monitor = start_monitor(bus, Arc::clone(&shared)).await;

        let interface = Interface {
            shared: Arc::clone(&shared),
            capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
            hung,
        };
        // zbus 6 reports an invalid address, path or name from build().
        let conn = zbus::connection::Builder::address(bus.address.as_str())
            .serve_at(PATH, interface)
            .name(INTERFACE)
            .build()
            .await
            .expect("connect the notification server and own org.freedesktop.Notifications");
        NotificationServer { conn, shared, monitor }
    }

    /// The server connection's unique bus name.
    pub fn unique_name(&self) -> String {
        self.conn.unique_name().expect("a bus connection has a unique name").to_string()
    }

    /// Everything recorded so far, in call order.
    pub fn notifications(&self) -> Vec<Recorded> {
        lock(&self.shared.notifications).clone()
    }

    /// Ids passed to `CloseNotification` so far, in call order.
    pub fn close_requests(&self) -> Vec<u32> {
        lock(&self.shared.close_requests).clone()
    }

    /// Waits (polling every 20 ms) until at least `n` notifications were recorded and returns
    /// them all.
    ///
    /// # Panics
    /// After `timeout`, with what was recorded.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.notifications();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected at least {n} notification(s) within {timeout:?}, got {}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the connection that sent notification `id` holds a match rule under which
    /// this server's `ActionInvoked` reaches it (seen through the bus monitor), then another
    /// [`SUBSCRIBE_SETTLE`] for the client to finish setting up its stream.
    ///
    /// # Panics
    /// If `id` was never sent, or after `timeout`, with the rules the sender did add.
    pub async fn wait_until_subscribed(&self, id: u32, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_subscribed(id) {
                tokio::time::sleep(SUBSCRIBE_SETTLE).await;
                return;
            }
            if Instant::now() >= deadline {
                let sender = self.shared.sender_of(id);
                let added = sender.as_ref().and_then(|s| lock(&self.shared.added).get(s).cloned());
                panic!(
                    "{sender:?} (sender of notification {id}) did not subscribe to \
                     ActionInvoked within {timeout:?}; its AddMatch calls: {added:#?}"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether, as far as the monitor has seen so far, the sender of notification `id` holds
    /// a match rule under which this server's `ActionInvoked` reaches it. The monitor runs
    /// concurrently, so a just-made `AddMatch` or `RemoveMatch` may not show yet: poll.
    ///
    /// # Panics
    /// If `id` was never sent.
    pub fn is_subscribed(&self, id: u32) -> bool {
        let sender =
            self.shared.sender_of(id).unwrap_or_else(|| panic!("no notification with id {id} was recorded"));
        let probe = Message::signal(PATH, INTERFACE, "ActionInvoked")
            .sender(self.unique_name())
            .destination(sender.as_str())
            .build(&(id, "default"))
            .expect("build the probe ActionInvoked message");
        lock(&self.shared.rules)
            .get(&sender)
            .is_some_and(|rules| rules.iter().any(|r| r.matches(&probe).unwrap_or(false)))
    }

    /// Emits `ActionInvoked(id, key)` to the sender of `id` only, like dunst.
    ///
    /// # Panics
    /// If `id` was never sent, or the signal cannot be sent.
    pub async fn invoke_action(&self, id: u32, key: &str) {
        self.emit_to_sender(id, "ActionInvoked", &(id, key)).await;
    }

    /// Emits `NotificationClosed(id, reason)` to the sender of `id` only (reasons: 1 expired,
    /// 2 dismissed by the user, 3 closed by `CloseNotification`, 4 undefined).
    ///
    /// # Panics
    /// If `id` was never sent, or the signal cannot be sent.
    pub async fn close(&self, id: u32, reason: u32) {
        self.emit_to_sender(id, "NotificationClosed", &(id, reason)).await;
    }

    /// Another program on the bus pretending a button was pressed: `ActionInvoked(id, key)`
    /// sent from a connection of its own to the sender of `id`.
    ///
    /// # Panics
    /// If `id` was never sent, or the signal cannot be sent.
    pub async fn forge_action(&self, bus: &TestBus, id: u32, key: &str) {
        let sender =
            self.shared.sender_of(id).unwrap_or_else(|| panic!("no notification with id {id} was recorded"));
        let forger = bus.connect().await;
        forger
            .emit_signal(Some(sender.as_str()), PATH, INTERFACE, "ActionInvoked", &(id, key))
            .await
            .unwrap_or_else(|e| panic!("forge ActionInvoked for notification {id}: {e}"));
    }

    async fn emit_to_sender<B>(&self, id: u32, signal: &str, body: &B)
    where
        B: serde::Serialize + zbus::DynamicType,
    {
        let sender =
            self.shared.sender_of(id).unwrap_or_else(|| panic!("no notification with id {id} was recorded"));
        self.conn
            .emit_signal(Some(sender.as_str()), PATH, INTERFACE, signal, body)
            .await
            .unwrap_or_else(|e| panic!("emit {signal} for notification {id} to {sender}: {e}"));
    }
}

impl Drop for NotificationServer {
    fn drop(&mut self) {
        self.monitor.abort();
    }
}

/// Connects a monitor that records every connection's `AddMatch`/`RemoveMatch` calls into
/// `shared.rules`. Returns once the bus has made it a monitor.
async fn start_monitor(bus: &TestBus, shared: Arc<Shared>) -> tokio::task::JoinHandle<()> {
    let conn = zbus::connection::Builder::address(bus.address.as_str())
        .max_queued(MONITOR_QUEUE)
        .build()
        .await
        .expect("connect the bus monitor");
    // The stream exists before BecomeMonitor, so nothing after it is lost.
    let mut stream = MessageStream::from(&conn);
    let rules: Vec<MatchRule<'_>> = [
        "type='method_call',member='AddMatch'",
        "type='method_call',member='RemoveMatch'",
        "type='signal',sender='org.freedesktop.DBus',member='NameOwnerChanged'",
    ]
    .into_iter()
    .map(|r| MatchRule::try_from(r).expect("valid monitor rule"))
    .collect();
    zbus::fdo::MonitoringProxy::new(&conn)
        .await
        .expect("monitoring proxy")
        .become_monitor(&rules, 0)
        .await
        .expect("BecomeMonitor on the test bus");
    tokio::spawn(async move {
        // The connection must outlive the stream's use; after BecomeMonitor it may not send.
        let _conn = conn;
        while let Some(msg) = next_message(&mut stream).await {
            if let Ok(msg) = msg {
                observe(&shared, &msg);
            }
        }
    })
}

/// Updates the per-connection match rules from one monitored message.
fn observe(shared: &Shared, msg: &Message) {
    let header = msg.header();
    let Some(member) = header.member().map(|m| m.as_str()) else {
        return;
    };
    match (header.message_type(), member) {
        (Type::MethodCall, "AddMatch" | "RemoveMatch") => {
            let to_bus = header.destination().is_some_and(|d| d.as_str() == BUS_NAME);
            let (Some(sender), true) = (header.sender(), to_bus) else {
                return;
            };
            let Ok(text) = msg.body().deserialize::<String>() else {
                return;
            };
            let sender = sender.to_string();
            let parsed = MatchRule::try_from(text.as_str()).map(OwnedMatchRule::from);
            if member == "AddMatch" {
                lock(&shared.added).entry(sender.clone()).or_default().push(text);
                if let Ok(rule) = parsed {
                    lock(&shared.rules).entry(sender).or_default().push(rule);
                }
            } else if let (Ok(rule), Some(rules)) = (parsed, lock(&shared.rules).get_mut(&sender))
                && let Some(i) = rules.iter().position(|r| *r == rule)
            {
                rules.remove(i);
            }
        }
        (Type::Signal, "NameOwnerChanged") => {
            if let Ok((name, _old, new)) = msg.body().deserialize::<(String, String, String)>()
                && name.starts_with(':')
                && new.is_empty()
            {
                lock(&shared.rules).remove(&name);
            }
        }
        _ => {}
    }
}

/// The next message of a zbus stream (zbus re-exports the `Stream` trait; no extra crate).
pub async fn next_message(stream: &mut MessageStream) -> Option<zbus::Result<Message>> {
    std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

/// The next signal named `member` on `stream` (other messages are skipped), or `None` if
/// none arrives within `timeout`.
pub async fn next_signal(stream: &mut MessageStream, member: &str, timeout: Duration) -> Option<Message> {
    tokio::time::timeout(timeout, async {
        while let Some(msg) = next_message(stream).await {
            let Ok(msg) = msg else { continue };
            let header = msg.header();
            if header.message_type() == Type::Signal && header.member().is_some_and(|m| m.as_str() == member)
            {
                return Some(msg);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}
