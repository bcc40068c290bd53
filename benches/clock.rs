//! The clock benchmark: what the release `spotguard run` costs while nothing happens, and how
//! it spreads a thousand accounts. Run: `cargo bench --bench clock` (or `scripts/bench.sh`);
//! `SPOTGUARD_BENCH=idle` or `=accounts` runs one part. Prints each measure against its
//! target and exits 1 if one is missed. Everything is read from outside the process (Linux
//! /proc), against the fake Spotify on loopback, on a private D-Bus bus with a notification
//! server, with systemd's watchdog on (NOTIFY_SOCKET and WATCHDOG_USEC as under the unit).
//!
//! - **idle** (`every = "60s"`, 5 minutes, then `every = "1s"`, 60 polls):
//!   - wake-ups per minute for the whole process: every thread's run count
//!     (`/proc/PID/task/*/schedstat`, third field) sampled every 10 ms; activity more than
//!     100 ms after the previous activity counts as one wake-up (so a poll, with its few
//!     context switches, is one). Target: at most 3 per minute. Raw context switches per
//!     minute are printed beside it.
//!   - CPU per idle poll (on-CPU time of all threads over the window / polls), at 60 s and at
//!     1 s. Target: at most 0.3 ms. CPU-seconds per day at 60 s.
//!   - idle resident memory (VmRSS). Target: at most 12 MiB.
//!   - beside each, the floor: this executable run again as the least a poller can do (a
//!     bare sleep loop; plus one blocking HTTP GET over a new TCP connection and its JSON;
//!     plus one SQLite commit), measured the same way over the same window. No target: it
//!     says what this machine charges for any wake-up and request, whatever the program.
//! - **tls** (`every = "3s"`, 20 polls each, needs `--features test-ca`): the fake behind a TLS
//!   front with a throwaway CA; CPU per poll with the connection kept alive, with the server
//!   closing idle connections and resuming sessions (TLS 1.3 tickets), and with every
//!   reconnection a full handshake. Reported, no target.
//! - **accounts** (1,000 accounts, each with its own token, `every = "60s"`, 10 minutes):
//!   every gap between an account's polls 60 s ± 3 s and every account polled throughout;
//!   the most polls in any one second (target: N/60 × 2 ≈ 34, or what random phases give);
//!   VmRSS each minute (target: at most 64 MiB, and flat: the tenth minute within 10% of the
//!   second); CPU per account-poll.

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

#[path = "../tests/e2e/common/dbus.rs"]
#[allow(dead_code)]
mod dbus;

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbus::{NotificationServer, TestBus};
use spotguard::auth::{Secret, TokenFiles, TokenSet};
use spotguard::fake::{self, FakeSpotify};

const DEVICES: &str = "/v1/me/player/devices";
/// The binary under test: this build's, or `SPOTGUARD_BENCH_BIN` (to measure an older one).
fn bin() -> String {
    std::env::var("SPOTGUARD_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_spotguard").to_string())
}

struct Report {
    failed: bool,
}

impl Report {
    fn target(&mut self, name: &str, value: f64, unit: &str, limit: f64) {
        let ok = value <= limit;
        self.failed |= !ok;
        println!(
            "  {name:<44} {value:>10.3} {unit:<4} target <= {limit} {unit:<4} {}",
            if ok { "ok" } else { "MISSED" }
        );
    }

    fn info(&self, name: &str, value: f64, unit: &str) {
        println!("  {name:<44} {value:>10.3} {unit}");
    }
}

fn main() {
    if let Ok(spec) = std::env::var(REFERENCE_ENV) {
        reference_client(&spec);
    }
    let part = std::env::var("SPOTGUARD_BENCH").unwrap_or_else(|_| "all".into());
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut report = Report { failed: false };
    runtime.block_on(async {
        if part == "all" || part == "idle" {
            idle(&mut report).await;
        }
        if part == "all" || part == "tls" {
            tls(&mut report).await;
        }
        if part == "all" || part == "accounts" {
            accounts(&mut report, 1000, Duration::from_secs(600)).await;
        }
    });
    std::process::exit(i32::from(report.failed));
}

/// A running daemon with its sandbox.
struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
    _notify: UnixDatagram,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

/// Starts `spotguard run` polling every `every` for the named accounts, each with its own token.
fn start(fake: &FakeSpotify, bus: &str, every: &str, accounts: &[String]) -> Daemon {
    start_with(&fake.handle(), &fake.api_base(), &[], bus, every, accounts)
}

/// [`start`] against `api_base` (the TLS front), with extra environment.
fn start_with(
    spotify: &fake::FakeHandle,
    api_base: &str,
    env: &[(&str, &str)],
    bus: &str,
    every: &str,
    accounts: &[String],
) -> Daemon {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("data/spotguard.db");
    let tokens = TokenFiles::new(dir.path().join("data/tokens"));
    let mut config = format!(
        "[spotify]\napi_base = \"{api_base}\"\n[storage]\ndatabase = \"{}\"\n[schedule]\nevery = \"{every}\"\n\
         [alerts]\nopener = [\"true\"]\n",
        db.display()
    );
    for name in accounts {
        let token = format!("bench-token-{name}");
        spotify.add_token(&token);
        tokens
            .save(name, &TokenSet::new_login(Secret::new(&token), None, chrono::Duration::hours(12)))
            .expect("token file");
        if accounts.len() > 1 || name != "default" {
            config.push_str(&format!("[[accounts]]\nname = \"{name}\"\n"));
        }
    }
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, config).expect("config");
    // The service manager's side of the notify protocol: the daemon pings the watchdog into it.
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    // Read it as systemd does: a socket nobody reads fills up (10 datagrams) and blocks the sender.
    let reader = notify.try_clone().expect("clone");
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while reader.recv(&mut buf).is_ok() {}
    });
    let mut cmd = Command::new(bin());
    cmd.args(["run", "--config"]).arg(&config_path).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "120000000")
        .env("SPOTGUARD_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spotguard run starts");
    Daemon { child, _dir: dir, _notify: notify }
}

async fn wait_polls(spotify: &fake::FakeHandle, n: usize, limit: Duration) {
    let start = Instant::now();
    while spotify.request_count(DEVICES) < n {
        assert!(start.elapsed() < limit, "the daemon stopped polling");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every thread's /proc/PID/task/*/schedstat: (on-CPU ns, times run), summed.
fn schedstat(pid: u32) -> (u64, u64) {
    let mut cpu = 0;
    let mut runs = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                let f: Vec<u64> = s.split_whitespace().filter_map(|v| v.parse().ok()).collect();
                cpu += f.first().copied().unwrap_or(0);
                runs += f.get(2).copied().unwrap_or(0);
            }
        }
    }
    (cpu, runs)
}

/// Voluntary and involuntary context switches of all threads.
fn context_switches(pid: u32) -> u64 {
    let mut n = 0;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("status")) {
                n += s
                    .lines()
                    .filter(|l| {
                        l.starts_with("voluntary_ctxt_switches")
                            || l.starts_with("nonvoluntary_ctxt_switches")
                    })
                    .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum::<u64>();
            }
        }
    }
    n
}

fn rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Samples the process every 10 ms for `window`; wake-ups as defined in the module docs.
/// Returns (wake-ups, on-CPU ns, context switches).
async fn watch_idle(pid: u32, window: Duration) -> (u64, u64, u64) {
    let (cpu0, mut runs) = schedstat(pid);
    let switches0 = context_switches(pid);
    let start = Instant::now();
    let mut last_activity: Option<Instant> = None;
    let mut wakeups = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    while start.elapsed() < window {
        tick.tick().await;
        let (_, r) = schedstat(pid);
        if r != runs {
            runs = r;
            let now = Instant::now();
            if last_activity.is_none_or(|t| now - t > Duration::from_millis(100)) {
                wakeups += 1;
            }
            last_activity = Some(now);
        }
    }
    let (cpu1, _) = schedstat(pid);
    (wakeups, cpu1 - cpu0, context_switches(pid) - switches0)
}

/// A private bus with a notification server, and the fake with one device online.
async fn stage() -> (TestBus, NotificationServer, FakeSpotify) {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, &["actions", "body", "body-markup"]).await;
    let fake = FakeSpotify::start().await.expect("fake");
    fake.handle().set_devices(vec![fake::device("bench-laptop", "Laptop", "Computer", false)]);
    (bus, server, fake)
}

/// The daemon's CPU per poll (ms) over the next `n` polls, and the polls counted.
async fn cpu_per_poll(pid: u32, spotify: &fake::FakeHandle, n: usize) -> (f64, f64) {
    let polls0 = spotify.request_count(DEVICES);
    let (cpu0, _) = schedstat(pid);
    wait_polls(spotify, polls0 + n, Duration::from_secs(120)).await;
    let (cpu1, _) = schedstat(pid);
    let polls = (spotify.request_count(DEVICES) - polls0) as f64;
    ((cpu1 - cpu0) as f64 / polls / 1e6, polls)
}

async fn idle(report: &mut Report) {
    let (bus, _server, fake) = stage().await;
    let spotify = fake.handle();
    let daemon = || polls_of(&spotify, "bench-token-default");

    // At 60 s: the first poll (and its first-look summary) out of the way, then 5 minutes,
    // with the reference pollers (see [`Reference`]) running beside it over the same window.
    let d = start(&fake, &bus.address, "60s", &["default".to_string()]);
    let pid = d.child.id();
    wait_until(|| daemon() >= 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let minutes = std::env::var("SPOTGUARD_BENCH_MINUTES").ok().and_then(|m| m.parse().ok()).unwrap_or(5u64);
    let references = Reference::start_all(&fake, Duration::from_secs(60)).await;
    let polls0 = daemon();
    let (wakeups, cpu_ns, switches) = watch_idle(pid, Duration::from_secs(60 * minutes)).await;
    let polls = (daemon() - polls0).max(1) as f64;
    let rss = rss_mib(pid);
    drop(d);
    println!(
        "spotguard clock benchmark, idle: release binary, every 60s, {minutes} min, {polls} polls, watchdog on"
    );
    report.target("wake-ups per minute (whole process)", wakeups as f64 / minutes as f64, "", 3.0);
    report.info("context switches per minute (all threads)", switches as f64 / minutes as f64, "");
    report.target("CPU per idle poll at 60s", cpu_ns as f64 / polls / 1e6, "ms", 0.3);
    report.info("CPU-seconds per day at 60s", cpu_ns as f64 / 1e9 / (minutes as f64 * 60.0) * 86_400.0, "s");
    report.target("idle resident memory (VmRSS)", rss, "MiB", 12.0);
    for r in &references {
        report.info(&format!("floor at 60s: {}", r.label()), r.cpu_per_round(&spotify), "ms");
    }
    drop(references);

    // At 1 s: CPU per poll when polls dominate, with the references beside it again.
    let d = start(&fake, &bus.address, "1s", &["default".to_string()]);
    let pid = d.child.id();
    let base = daemon();
    wait_until(|| daemon() >= base + 3, Duration::from_secs(30)).await;
    let references = Reference::start_all(&fake, Duration::from_secs(1)).await;
    let (polls0, (cpu0, _)) = (daemon(), schedstat(pid));
    wait_until(|| daemon() >= polls0 + 60, Duration::from_secs(120)).await;
    let (cpu1, _) = schedstat(pid);
    let polls = (daemon() - polls0) as f64;
    drop(d);
    println!("spotguard clock benchmark, idle: every 1s, {polls} polls");
    report.target("CPU per idle poll at 1s", (cpu1 - cpu0) as f64 / polls / 1e6, "ms", 0.3);
    for r in &references {
        report.info(&format!("floor at 1s: {}", r.label()), r.cpu_per_round(&spotify), "ms");
    }
}

/// How many device lists `token` asked for (its last 1,000).
fn polls_of(spotify: &fake::FakeHandle, token: &str) -> usize {
    spotify.polls_by_token().get(token).map_or(0, Vec::len)
}

async fn wait_until(done: impl Fn() -> bool, limit: Duration) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "the daemon stopped polling");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The environment variable that turns this executable into a reference poller.
const REFERENCE_ENV: &str = "SPOTGUARD_BENCH_REFERENCE";

/// What the least a poller can do costs on this machine, measured from /proc exactly as the
/// daemon is: this executable run again as a bare loop with no async runtime, no TLS-capable
/// client, no logging. Its figure is the floor under the daemon's CPU per poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Floor {
    /// Sleeps an interval, and nothing else.
    Wake,
    /// Also one blocking HTTP/1.1 GET of the device list over a new loopback TCP
    /// connection, with the JSON parsed.
    Get,
    /// Also one SQLite commit (one row updated) in a WAL database, as a poll records.
    GetRecord,
}

impl Floor {
    const ALL: [Floor; 3] = [Floor::Wake, Floor::Get, Floor::GetRecord];

    fn name(self) -> &'static str {
        match self {
            Floor::Wake => "wake",
            Floor::Get => "get",
            Floor::GetRecord => "get-record",
        }
    }
}

/// A running reference poller.
struct Reference {
    floor: Floor,
    child: Child,
    token: String,
    cpu0: u64,
    runs0: u64,
    _dir: tempfile::TempDir,
}

impl Reference {
    async fn start_all(fake: &FakeSpotify, interval: Duration) -> Vec<Reference> {
        let mut all = Vec::new();
        for floor in Floor::ALL {
            all.push(Reference::start(fake, floor, interval).await);
        }
        all
    }

    async fn start(fake: &FakeSpotify, floor: Floor, interval: Duration) -> Reference {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = format!("reference-{}-{}", floor.name(), interval.as_millis());
        fake.handle().add_token(&token);
        let spec = format!(
            "{} {} {} {} {}",
            floor.name(),
            interval.as_millis(),
            fake.addr(),
            token,
            dir.path().join("reference.db").display()
        );
        let child = Command::new(std::env::current_exe().expect("this executable"))
            .env(REFERENCE_ENV, spec)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("reference poller starts");
        // Its set-up (the SQLite file) is not a round: start counting at its first sleep.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (cpu0, runs0) = schedstat(child.id());
        Reference { floor, child, token, cpu0, runs0, _dir: dir }
    }

    fn label(&self) -> &'static str {
        match self.floor {
            Floor::Wake => "wake only",
            Floor::Get => "+ GET (new TCP), JSON",
            Floor::GetRecord => "+ GET, JSON, SQLite commit",
        }
    }

    /// CPU per round (ms) since start: rounds are its device-list requests, or, for a bare
    /// wake, the times it was scheduled (one per round: it has one thread and does nothing).
    fn cpu_per_round(&self, spotify: &fake::FakeHandle) -> f64 {
        let (cpu, runs) = schedstat(self.child.id());
        let rounds = match self.floor {
            Floor::Wake => runs - self.runs0,
            Floor::Get | Floor::GetRecord => polls_of(spotify, &self.token) as u64,
        };
        (cpu - self.cpu0) as f64 / rounds.max(1) as f64 / 1e6
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reference poller's loop (see [`Floor`]); `spec` is "MODE INTERVAL_MS ADDR TOKEN DB".
fn reference_client(spec: &str) -> ! {
    use std::io::{Read, Write};
    let parts: Vec<&str> = spec.split(' ').collect();
    let [mode, interval, addr, token, db] = parts[..] else { panic!("bad reference spec {spec}") };
    let interval = Duration::from_millis(interval.parse().expect("interval"));
    let conn = (mode == Floor::GetRecord.name()).then(|| {
        let conn = rusqlite::Connection::open(db).expect("reference db");
        let _: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).expect("wal");
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL; CREATE TABLE polls (id INTEGER PRIMARY KEY, at INTEGER, devices INTEGER);
             INSERT INTO polls VALUES (1, 0, 0);",
        )
        .expect("schema");
        conn
    });
    let request = format!(
        "GET /v1/me/player/devices HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
    );
    loop {
        #[allow(clippy::disallowed_methods)] // sleeping between rounds is what it measures
        std::thread::sleep(interval);
        if mode == Floor::Wake.name() {
            continue;
        }
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream.write_all(request.as_bytes()).expect("request");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("answer");
        let body = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(&answer[..], |i| &answer[i + 4..]);
        let devices: serde_json::Value = serde_json::from_slice(body).expect("json");
        let n = devices["devices"].as_array().map_or(0, Vec::len) as i64;
        if let Some(conn) = &conn {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time");
            conn.prepare_cached("UPDATE polls SET at = ?1, devices = ?2 WHERE id = 1")
                .and_then(|mut s| s.execute([now.as_millis() as i64, n]))
                .expect("record");
        }
    }
}

async fn accounts(report: &mut Report, n: usize, window: Duration) {
    let (bus, _server, fake) = stage().await;
    let spotify = fake.handle();
    let names: Vec<String> = (0..n).map(|i| format!("acct{i:04}")).collect();
    let d = start(&fake, &bus.address, "60s", &names);
    let pid = d.child.id();
    let t0 = Instant::now();
    let (cpu0, _) = schedstat(pid);
    let mut rss = Vec::new();
    while t0.elapsed() < window {
        tokio::time::sleep(Duration::from_secs(60)).await;
        rss.push(rss_mib(pid));
    }
    let (cpu1, _) = schedstat(pid);
    let polls = spotify.polls_by_token();
    drop(d);

    let total: usize = polls.values().map(Vec::len).sum();
    // Skip the first minute (start-up spread) for the gaps and the per-second peak.
    let settled = t0 + Duration::from_secs(60);
    let mut worst_gap = Duration::ZERO;
    let mut best_gap = Duration::MAX;
    let mut starved = 0;
    let mut per_second = std::collections::HashMap::<u64, u32>::new();
    for name in &names {
        let times = polls.get(&format!("bench-token-{name}")).cloned().unwrap_or_default();
        if times.len() < (window.as_secs() / 60) as usize - 1 {
            starved += 1;
        }
        for w in times.windows(2) {
            if w[0] >= settled {
                worst_gap = worst_gap.max(w[1] - w[0]);
                best_gap = best_gap.min(w[1] - w[0]);
            }
        }
        for t in times.iter().filter(|t| **t >= settled) {
            *per_second.entry((*t - t0).as_secs()).or_default() += 1;
        }
    }
    let peak = per_second.values().copied().max().unwrap_or(0);
    println!(
        "spotguard clock benchmark, {n} accounts: every 60s, {} min, {total} polls",
        window.as_secs() / 60
    );
    report.target("accounts polled fewer than every minute", starved as f64, "", 0.0);
    report.target("longest gap between an account's polls", worst_gap.as_secs_f64(), "s", 63.0);
    report.info("shortest gap between an account's polls", best_gap.as_secs_f64(), "s");
    report.target("most polls in any one second", f64::from(peak), "", (n as f64 / 60.0 * 2.0).ceil());
    report.target(
        "peak resident memory, sampled each minute",
        rss.iter().copied().fold(0.0, f64::max),
        "MiB",
        64.0,
    );
    let flat = rss.last().copied().unwrap_or(f64::NAN) / rss.get(1).copied().unwrap_or(f64::NAN);
    report.target("RSS growth, last minute / second minute", flat, "x", 1.10);
    println!(
        "  RSS by minute (MiB): {}",
        rss.iter().map(|r| format!("{r:.1}")).collect::<Vec<_>>().join(" ")
    );
    report.info("CPU per account-poll", (cpu1 - cpu0) as f64 / total.max(1) as f64 / 1e6, "ms");
}

/// A TLS front for the fake: a throwaway CA, a certificate for 127.0.0.1 signed by it, and a
/// proxy that terminates TLS and forwards the bytes to the plain fake. With `close_idle`, it
/// closes a connection idle that long, as servers do between a client's polls; without
/// `resumption` it issues no tickets and keeps no session cache, so every reconnection is a
/// full handshake. Counts (connections, resumed ones).
struct TlsFront {
    addr: std::net::SocketAddr,
    ca_file: tempfile::NamedTempFile,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    resumed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tls_front(
    backend: std::net::SocketAddr,
    resumption: bool,
    close_idle: Option<Duration>,
) -> TlsFront {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages =
        vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
    let ca =
        rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().expect("key")).expect("ca");
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    let ca_file = tempfile::NamedTempFile::new().expect("ca file");
    std::fs::write(ca_file.path(), ca.pem()).expect("write ca");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).expect("key der"),
        )
        .expect("server config");
    if resumption {
        config.ticketer = rustls::crypto::ring::Ticketer::new().expect("ticketer");
    } else {
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let connections = Arc::new(AtomicUsize::new(0));
    let resumed = Arc::new(AtomicUsize::new(0));
    let (c, r) = (connections.clone(), resumed.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let (acceptor, c, r) = (acceptor.clone(), c.clone(), r.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                c.fetch_add(1, Ordering::Relaxed);
                if tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                    r.fetch_add(1, Ordering::Relaxed);
                }
                let Ok(back) = tokio::net::TcpStream::connect(backend).await else { return };
                let (mut cr, mut cw) = tokio::io::split(tls);
                let (mut br, mut bw) = back.into_split();
                let (mut up, mut down) = (vec![0u8; 16 * 1024], vec![0u8; 64 * 1024]);
                let idle = close_idle.unwrap_or(Duration::from_secs(3600));
                loop {
                    tokio::select! {
                        n = cr.read(&mut up) => match n {
                            Ok(0) | Err(_) => break,
                            Ok(n) => if bw.write_all(&up[..n]).await.is_err() { break },
                        },
                        n = br.read(&mut down) => match n {
                            Ok(0) | Err(_) => break,
                            Ok(n) => if cw.write_all(&down[..n]).await.is_err() || cw.flush().await.is_err() { break },
                        },
                        () = tokio::time::sleep(idle) => break,
                    }
                }
                let _ = cw.shutdown().await;
            });
        }
    });
    TlsFront { addr, ca_file, connections, resumed, task }
}

async fn tls(report: &mut Report) {
    use std::sync::atomic::Ordering;
    let (bus, _server, fake) = stage().await;
    let spotify = fake.handle();
    println!("spotguard clock benchmark, HTTPS: every 3s, 20 polls per mode (rustls, TLS 1.3)");
    for (label, resumption, close_idle) in [
        ("CPU per poll, HTTPS, connection kept alive", true, None),
        ("CPU per poll, HTTPS, reconnect, resumed", true, Some(Duration::from_secs(1))),
        ("CPU per poll, HTTPS, reconnect, full handshake", false, Some(Duration::from_secs(1))),
    ] {
        let front = tls_front(fake.addr(), resumption, close_idle).await;
        let api_base = format!("https://{}/v1", front.addr);
        let ca = front.ca_file.path().to_str().expect("utf-8").to_string();
        let d = start_with(
            &spotify,
            &api_base,
            &[("SPOTGUARD_TEST_CA_FILE", ca.as_str())],
            &bus.address,
            "3s",
            &["default".to_string()],
        );
        let pid = d.child.id();
        let base = spotify.request_count(DEVICES);
        wait_polls(&spotify, base + 2, Duration::from_secs(30)).await;
        let conns0 = front.connections.load(Ordering::Relaxed);
        let resumed0 = front.resumed.load(Ordering::Relaxed);
        let (cpu_ms, polls) = cpu_per_poll(pid, &spotify, 20).await;
        drop(d);
        report.info(label, cpu_ms, "ms");
        println!(
            "    ({} new connections, {} of them resumed, over {polls} polls)",
            front.connections.load(Ordering::Relaxed) - conns0,
            front.resumed.load(Ordering::Relaxed) - resumed0
        );
    }
}
