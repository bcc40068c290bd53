//! A throwaway installation of spotguard: a temp dir with a config, a token file, a real
//! SQLite database path, and the fake Spotify on loopback, plus ways to run the built binary.
//!
//! The binary runs with HOME and the XDG dirs inside the temp dir, so nothing of the machine's
//! own configuration leaks in, and with `SPOTGUARD_CONFIG` pointing at the sandbox's config.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use spotguard::auth::{Secret, TokenFiles, TokenSet};
use spotguard::fake::{FakeHandle, FakeSpotify};
use spotguard::store::Store;

/// The access token the fake accepts and the token file holds.
pub const TOKEN: &str = "test-access-token-c0ffee";

/// The Client ID the sandbox's config names and its fake knows.
pub const CLIENT_ID: &str = "spotguard-test-client";

/// The spotguard binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_spotguard");

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub fake: FakeSpotify,
    pub spotify: FakeHandle,
    /// Extra TOML appended to the generated config.
    extra: String,
    /// The login callback: `http://127.0.0.1:<free port>/callback`, registered in the fake.
    pub redirect_uri: String,
}

impl Sandbox {
    /// A sandbox with a logged-in `default` account and a fake that accepts its token.
    pub async fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = FakeSpotify::start().await.expect("fake spotify starts");
        let spotify = fake.handle();
        spotify.add_token(TOKEN);
        let redirect_uri = format!("http://127.0.0.1:{}/callback", free_port());
        spotify.register_app(CLIENT_ID, &[&redirect_uri]);
        let sandbox = Sandbox { dir, fake, spotify, extra: String::new(), redirect_uri };
        sandbox.tokens().save("default", &token_set(TOKEN)).expect("token file");
        sandbox.write_config();
        sandbox
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db_path(&self) -> PathBuf {
        self.path().join("data/spotguard.db")
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.toml")
    }

    /// Where the opener script writes the URLs it is asked to open, one per line.
    pub fn opened_path(&self) -> PathBuf {
        self.path().join("opened.txt")
    }

    pub fn tokens(&self) -> TokenFiles {
        TokenFiles::new(self.path().join("data/tokens"))
    }

    /// Adds TOML to the config (sections must not repeat the generated ones' keys).
    pub fn with_config(&mut self, extra: &str) -> &mut Sandbox {
        self.extra.push_str(extra);
        self.extra.push('\n');
        self.write_config();
        self
    }

    /// Replaces what [`Sandbox::with_config`] added, as a person editing the file would.
    pub fn replace_config(&mut self, extra: &str) -> &mut Sandbox {
        self.extra.clear();
        self.with_config(extra)
    }

    /// The config: the fake's base URL, the temp database, 1 s polls, no desktop by default,
    /// and an opener that appends its last argument to `opened.txt`.
    fn write_config(&self) {
        let opener = format!("printf '%s\\n' \"$1\" >> '{}'", self.opened_path().display());
        let base = format!(
            "[spotify]\napi_base = \"{api}\"\naccounts_base = \"{accounts}\"\nclient_id = \"{CLIENT_ID}\"\n\
             redirect_uri = \"{redirect}\"\n\n[storage]\ndatabase = \"{db}\"\n\n",
            api = self.fake.api_base(),
            accounts = self.fake.accounts_base(),
            redirect = self.redirect_uri,
            db = self.db_path().display(),
        );
        let has = |section: &str| self.extra.contains(&format!("[{section}]"));
        let mut text = base;
        if !has("schedule") {
            text.push_str("[schedule]\nevery = \"1s\"\n\n");
        }
        if !has("alerts") {
            text.push_str(&format!(
                "[alerts]\nopener = [\"sh\", \"-c\", {}, \"opener\"]\n\n",
                toml_string(&opener)
            ));
        }
        if !has("notify") {
            text.push_str("[notify]\ndesktop = false\n\n");
        }
        text.push_str(&self.extra);
        std::fs::write(self.config_path(), text).expect("write config");
    }

    /// The TOML line that sets the opener, for tests that write their own `[alerts]`.
    pub fn opener_line(&self) -> String {
        let opener = format!("printf '%s\\n' \"$1\" >> '{}'", self.opened_path().display());
        format!("opener = [\"sh\", \"-c\", {}, \"opener\"]", toml_string(&opener))
    }

    /// A command for the binary, isolated from the machine's own config and session bus.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.path())
            .env("XDG_CONFIG_HOME", self.path().join("xdg-config"))
            .env("XDG_DATA_HOME", self.path().join("xdg-data"))
            .env("SPOTGUARD_CONFIG", self.config_path())
            // No bus unless a test gives one: a headless machine.
            .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/nonexistent/spotguard-test-bus")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs the binary to completion off the async threads (the fake is served on them).
    pub async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.cmd(args);
        tokio::task::spawn_blocking(move || cmd.output().expect("spotguard runs")).await.expect("join")
    }

    /// Starts `spotguard run` with stderr captured to `daemon.log`.
    pub fn spawn_daemon(&self, env: &[(&str, &str)]) -> Daemon {
        let log = self.path().join("daemon.log");
        let mut cmd = self.cmd(&["run"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&log).expect("log file"));
        Daemon { child: cmd.spawn().expect("spotguard run starts"), log }
    }

    /// Records one reviewed, trusted device, as after a first run the person went through:
    /// from then on every new device is alerted on its own (not summarised).
    pub fn seed_reviewed(&self) {
        self.seed_trusted("reviewed-0", "Reviewed laptop", "Computer");
    }

    /// Records one device as seen and trusted, its alerts delivered: a reviewed account whose
    /// one trusted device is this one.
    pub fn seed_trusted(&self, id: &str, name: &str, kind: &str) {
        let mut store = self.store();
        let now = chrono::Utc::now();
        let account = record_seen(&mut store, id, name, kind);
        for d in store.devices(account, false).expect("devices") {
            store.trust(d.key, spotguard::event::TrustedBy::Cli, now).expect("trust");
        }
        for e in store.undelivered(100).expect("outbox") {
            store.mark_delivered(e.id, now).expect("delivered");
        }
    }

    /// Opens the database the binary writes (WAL: safe beside a running daemon).
    pub fn store(&self) -> Store {
        Store::open(&self.db_path()).expect("open the sandbox database")
    }

    /// Waits until `check` on the store holds, polling every 50 ms.
    pub async fn wait_for_store<F: Fn(&Store) -> bool>(&self, what: &str, timeout: Duration, check: F) {
        let start = Instant::now();
        loop {
            if self.db_path().exists() && check(&self.store()) {
                return;
            }
            assert!(start.elapsed() < timeout, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the fake has served `n` device-list requests in all.
    pub async fn wait_for_polls(&self, n: usize, timeout: Duration) {
        until(
            timeout,
            || self.spotify.request_count("/v1/me/player/devices") >= n,
            || format!("timed out waiting for {n} polls"),
        )
        .await;
    }
}

/// Waits until `done` holds, looking every 20 ms; past `timeout` the test fails with `why()`.
pub async fn until(timeout: Duration, done: impl Fn() -> bool, why: impl Fn() -> String) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "{}", why());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Records, through the library, one successful poll of `default` that saw one device, as
/// the daemon would (rules, then one transaction). Returns the account's id.
pub fn record_seen(store: &mut Store, id: &str, name: &str, kind: &str) -> i64 {
    use spotguard::audit::{Policy, Snapshot, evaluate};
    use spotguard::store::Recording;
    let now = chrono::Utc::now();
    let account = store.account("default", now).expect("account");
    let seen = spotguard::spotify::Device {
        id: Some(id.into()),
        name: name.into(),
        kind: kind.into(),
        ..Default::default()
    };
    let policy = Policy { realert_after: Duration::from_secs(86_400), device_limit: 6, ignore: Vec::new() };
    let snapshot = Snapshot { devices: vec![seen], playback: None, skipped: 0, cut: 0 };
    store
        .poll(account, now, Duration::ZERO, Recording::Record, |known| {
            evaluate(known, &snapshot, &policy, now)
        })
        .expect("record");
    account
}

/// A running `spotguard run`; killed on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Sends a signal by name (`TERM`, `INT`, `KILL`) with the system's `kill`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "daemon did not exit in {timeout:?}; log:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn token_set(token: &str) -> TokenSet {
    TokenSet::new_login(
        Secret::new(token),
        Some(Secret::new("test-refresh-token-deadbeef")),
        chrono::Duration::hours(1),
    )
}

/// A loopback port free at this moment (bound, read, released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("addr").port()
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
