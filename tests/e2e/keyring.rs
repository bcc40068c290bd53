//! Tokens in the OS secret store: the real GNOME Keyring (`gnome-keyring-daemon`, Debian's
//! `gnome-keyring`) on a private session bus, unlocked with a test password, and the real
//! binary logging in, polling, and logging out with `auth.token_store = "keyring"`.
//! Never skipped: CI installs gnome-keyring and libsecret-tools.

use crate::common;

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dbus::TestBus;
use common::sandbox::{Sandbox, stderr, stdout};
use spotguard::fake;

/// A gnome-keyring-daemon serving org.freedesktop.secrets on the test bus; killed on drop.
struct Keyring {
    child: Child,
    _home: tempfile::TempDir,
}

impl Keyring {
    async fn start(bus: &TestBus) -> Keyring {
        let home = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("HOME", home.path())
            .env("XDG_DATA_HOME", home.path().join("data"))
            .env("XDG_RUNTIME_DIR", home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon is a test dependency (Debian: apt-get install gnome-keyring); tests never skip");
        // The login keyring is created and unlocked with this password.
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"spotguard-test").expect("password");
        drop(stdin);
        let conn = bus.connect().await;
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.expect("bus proxy");
        let start = Instant::now();
        loop {
            let name = zbus::names::BusName::try_from("org.freedesktop.secrets").expect("name");
            if dbus.name_has_owner(name).await.unwrap_or(false) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "gnome-keyring-daemon did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Keyring { child, _home: home }
    }
}

impl Drop for Keyring {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `secret-tool lookup` on the test bus: what the keyring holds for the account.
fn lookup(bus: &TestBus, account: &str) -> Option<String> {
    let out = Command::new("secret-tool")
        .args(["lookup", "application", "spotguard", "account", account])
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .output()
        .expect("secret-tool is a test dependency (Debian: apt-get install libsecret-tools)");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_live_in_the_keyring_and_leave_with_logout() {
    let bus = TestBus::start();
    let _keyring = Keyring::start(&bus).await;
    let mut s = Sandbox::new().await;
    s.with_config("[auth]\ntoken_store = \"keyring\"\n");
    std::fs::remove_file(s.path().join("data/tokens/default.json")).expect("no file login to start with");
    let out = browser_login(&s, &bus).await;
    assert!(out.status.success(), "login: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("tokens are kept in the OS secret store"), "{text}");
    assert!(!s.path().join("data/tokens/default.json").exists(), "no token file with the keyring store");
    let stored = lookup(&bus, "default").expect("the keyring holds the tokens");
    let tokens: serde_json::Value = serde_json::from_str(&stored).expect("JSON token set");
    assert!(tokens["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(tokens["refresh_token"].as_str().is_some_and(|t| !t.is_empty()));

    // The daemon's side reads them from there: a check polls with that token.
    s.spotify.set_devices(vec![fake::device("k-1", "Laptop", "Computer", false)]);
    let mut check = s.cmd(&["check", "--json"]);
    check.env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    let out = tokio::task::spawn_blocking(move || check.output().expect("check runs")).await.expect("join");
    assert_eq!(out.status.code(), Some(3), "polled with the keyring's token: {}", stderr(&out));

    let mut logout = s.cmd(&["logout"]);
    logout.env("DBUS_SESSION_BUS_ADDRESS", &bus.address);
    let out = tokio::task::spawn_blocking(move || logout.output().expect("logout runs")).await.expect("join");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Removed the stored tokens of account default."), "{}", stdout(&out));
    assert_eq!(lookup(&bus, "default"), None, "logout removed the keyring item");
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_prefers_the_keyring_and_moves_a_file_login_there() {
    let bus = TestBus::start();
    let _keyring = Keyring::start(&bus).await;
    let s = Sandbox::new().await; // token_store = auto by default; a file login exists
    let out = browser_login(&s, &bus).await;
    assert!(out.status.success(), "login: {}", stderr(&out));
    assert!(lookup(&bus, "default").is_some(), "auto saved to the keyring");
    assert!(!s.path().join("data/tokens/default.json").exists(), "and removed the file copy");
}

/// Login driven as a browser: read the printed URL, GET it, follow the redirect.
async fn browser_login(s: &Sandbox, bus: &TestBus) -> std::process::Output {
    let mut cmd = s.cmd(&["login", "--no-browser", "--timeout", "20s"]);
    cmd.env("DBUS_SESSION_BUS_ADDRESS", &bus.address).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("login starts");
    let stdout = child.stdout.take().expect("stdout");
    let prefix = format!("{}/authorize?", s.fake.accounts_base());
    let (tx, rx) = tokio::sync::oneshot::channel();
    let reader = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with(&prefix)
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line.clone());
            }
            seen.push(line);
        }
        seen
    });
    let url = tokio::time::timeout(Duration::from_secs(20), rx).await.expect("URL printed").expect("URL");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .expect("http");
    let answer = http.get(&url).send().await.expect("authorize");
    assert_eq!(answer.status(), reqwest::StatusCode::FOUND);
    let back = answer.headers()["location"].to_str().expect("location").to_string();
    let page = http.get(&back).send().await.expect("callback");
    assert!(page.status().is_success(), "callback page {}", page.status());
    let lines = reader.await.expect("reader");
    let mut out =
        tokio::task::spawn_blocking(move || child.wait_with_output()).await.expect("join").expect("wait");
    out.stdout = lines.join("\n").into_bytes();
    out
}
