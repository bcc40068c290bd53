//! The cost benchmark: the release `spotguard run` against the fake Spotify, on a private
//! D-Bus bus with a recording notification server. Run: `cargo bench --bench pipeline` (or
//! `scripts/bench.sh`). Prints each measure against its target and exits 1 if one is missed.
//!
//! Measured from outside the process, the way `top` would see it (Linux /proc):
//! - API requests per idle poll: the fake's request counters.
//! - resident memory: VmRSS (and the peak, VmHWM) once idle.
//! - CPU time per poll: the summed on-CPU nanoseconds of all the daemon's threads
//!   (/proc/PID/task/*/schedstat) over an idle window, divided by the polls in it. This is
//!   everything the process did in that window, scheduler ticks included.
//! - wake-ups: context switches of all threads over the same window, per poll interval.
//! - alert latency: from the fake receiving the device-list request that first shows a new
//!   device to the notification server receiving `Notify`, over several alerts.

#![allow(clippy::print_stdout)] // a benchmark reports on stdout

#[path = "../tests/e2e/common/dbus.rs"]
#[allow(dead_code)]
mod dbus;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dbus::{NotificationServer, TestBus};
use spotguard::auth::{Secret, TokenFiles, TokenSet};
use spotguard::fake::{self, FakeSpotify};

const BIN: &str = env!("CARGO_BIN_EXE_spotguard");
const TOKEN: &str = "bench-token";
const DEVICES: &str = "/v1/me/player/devices";
/// The poll interval under test: short, so the bench is quick; costs are per poll.
const EVERY_SECS: u64 = 1;
const IDLE_POLLS: usize = 30;
const ALERTS: usize = 10;

struct Target {
    name: &'static str,
    value: f64,
    unit: &'static str,
    limit: f64,
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let failed = runtime.block_on(bench());
    std::process::exit(i32::from(failed));
}

async fn bench() -> bool {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, &["actions", "body", "body-markup"]).await;
    let fake = FakeSpotify::start().await.expect("fake");
    let spotify = fake.handle();
    spotify.add_token(TOKEN);
    let trusted = vec![
        fake::device("bench-laptop", "Laptop", "Computer", false),
        fake::device("bench-phone", "Phone", "Smartphone", false),
    ];
    spotify.set_devices(trusted.clone());
    let config = write_sandbox(dir.path(), &fake.api_base());

    let mut child = spawn(&config, dir.path(), &bus.address);
    let pid = child.id();
    // The first poll sums both devices up in one alert (nothing trusted yet); then it is idle.
    server.wait_for(1, Duration::from_secs(20)).await;
    wait_polls(&spotify, 3).await;

    // Idle window.
    let polls0 = spotify.request_count(DEVICES);
    let total0 = spotify.requests().len();
    let (cpu0, switches0) = proc_counters(pid);
    let start = Instant::now();
    wait_polls(&spotify, polls0 + IDLE_POLLS).await;
    let (cpu1, switches1) = proc_counters(pid);
    let elapsed = start.elapsed();
    let polls = (spotify.request_count(DEVICES) - polls0) as f64;
    let requests = (spotify.requests().len() - total0) as f64;
    let (rss_kib, hwm_kib) = memory(pid);

    // Alert latency: one new unknown device at a time.
    let mut latencies = Vec::new();
    let mut devices = trusted;
    for i in 0..ALERTS {
        let before = server.notifications().len();
        devices.push(fake::device(
            &format!("bench-stranger-{i}"),
            &format!("Stranger {i}"),
            "Smartphone",
            false,
        ));
        spotify.set_devices(devices.clone());
        let n = server.wait_for(before + 1, Duration::from_secs(20)).await.remove(before);
        let asked = spotify.last_request_at(DEVICES).expect("a devices request");
        // The request that showed the device is the latest one at or before the Notify.
        latencies.push(n.received.saturating_duration_since(asked).as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    let _ = child.wait();

    let targets = [
        Target { name: "API requests per idle poll", value: requests / polls, unit: "", limit: 1.0 },
        Target { name: "idle resident memory (VmRSS)", value: rss_kib / 1024.0, unit: "MiB", limit: 12.0 },
        Target { name: "CPU time per poll", value: (cpu1 - cpu0) / polls / 1e6, unit: "ms", limit: 2.0 },
        Target {
            name: "alert latency, worst of 10",
            value: *latencies.last().unwrap_or(&f64::NAN),
            unit: "ms",
            limit: 100.0,
        },
    ];
    println!("spotguard pipeline benchmark: release binary, poll every {EVERY_SECS}s, {polls} idle polls");
    let mut failed = false;
    for t in &targets {
        let ok = t.value <= t.limit;
        failed |= !ok;
        println!(
            "  {:<32} {:>9.3} {:<3}  target <= {} {:<3} {}",
            t.name,
            t.value,
            t.unit,
            t.limit,
            t.unit,
            if ok { "ok" } else { "MISSED" }
        );
    }
    let per_poll = (switches1 - switches0) / polls;
    println!(
        "  {:<32} {:>9.1}      (all threads; {:.2}/s)",
        "wake-ups per poll interval",
        per_poll,
        per_poll / EVERY_SECS as f64
    );
    println!("  {:<32} {:>9.3} MiB", "peak resident memory (VmHWM)", hwm_kib / 1024.0);
    println!(
        "  {:<32} {:>9.3} ms (median of {ALERTS})",
        "alert latency, median",
        latencies[latencies.len() / 2]
    );
    println!("  idle window: {:.1}s", elapsed.as_secs_f64());
    failed
}

fn write_sandbox(dir: &Path, api_base: &str) -> std::path::PathBuf {
    let db = dir.join("data/spotguard.db");
    TokenFiles::new(dir.join("data/tokens"))
        .save("default", &TokenSet::new_login(Secret::new(TOKEN), None, chrono::Duration::hours(1)))
        .expect("token file");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[spotify]\napi_base = \"{api_base}\"\n[storage]\ndatabase = \"{}\"\n[schedule]\nevery = \"{EVERY_SECS}s\"\n[alerts]\nopener = [\"true\"]\n",
            db.display()
        ),
    )
    .expect("config");
    config
}

fn spawn(config: &Path, home: &Path, bus: &str) -> Child {
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("DBUS_SESSION_BUS_ADDRESS", bus)
        .env("SPOTGUARD_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spotguard run starts")
}

async fn wait_polls(spotify: &fake::FakeHandle, n: usize) {
    let start = Instant::now();
    while spotify.request_count(DEVICES) < n {
        assert!(start.elapsed() < Duration::from_secs(120), "the daemon stopped polling");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (on-CPU nanoseconds, context switches), summed over all threads.
fn proc_counters(pid: u32) -> (f64, f64) {
    let mut cpu = 0.0;
    let mut switches = 0.0;
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("linux /proc");
    for task in tasks.flatten() {
        let p = task.path();
        if let Ok(s) = std::fs::read_to_string(p.join("schedstat")) {
            cpu += s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        }
        if let Ok(s) = std::fs::read_to_string(p.join("status")) {
            for line in s.lines() {
                if line.starts_with("voluntary_ctxt_switches")
                    || line.starts_with("nonvoluntary_ctxt_switches")
                {
                    switches +=
                        line.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
                }
            }
        }
    }
    (cpu, switches)
}

/// (VmRSS, VmHWM) in KiB.
fn memory(pid: u32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("linux /proc");
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
