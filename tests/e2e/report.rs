//! The HTML report as a browser shows it: Debian's Chromium, headless, renders the page the
//! real binary wrote, and the test reads back what it shows. Never skipped: CI installs
//! chromium. And how the page is written: private, never through a planted link.

use crate::common;

use std::process::Command;
use std::time::Duration;

use common::sandbox::{Sandbox, stderr, stdout};
use spotguard::fake;

/// Chromium the way this machine allows it: headless, as root without its sandbox, and with
/// no background networking (nothing here reaches the internet).
fn chromium(args: &[&str], profile: &std::path::Path) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium is a test dependency (Debian: apt-get install chromium); tests never skip")
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_renders_the_timeline_with_the_unknown_device_marked() {
    let s = Sandbox::new().await;
    s.seed_reviewed();
    s.seed_trusted("tab-1", "Web Player (Chrome)", "Computer");
    s.spotify.set_devices(vec![
        fake::device("laptop-1", "Laptop", "Computer", false),
        fake::device("intruder-1", "Galaxy <S24>", "Smartphone", false),
        fake::device("tab-1", "Web Player (Chrome)", "Computer", false),
    ]);
    let mut d = s.spawn_daemon(&[]);
    s.wait_for_polls(3, Duration::from_secs(10)).await;
    d.signal("TERM");
    assert!(d.wait(Duration::from_secs(10)).await.success());
    assert!(s.run(&["devices", "trust", "Laptop"]).await.status.success());

    let page = s.path().join("report.html");
    let out = s.run(&["report", "--html", page.to_str().expect("utf-8 path"), "--days", "2"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("Wrote "), "{}", stdout(&out));

    let profile = tempfile::tempdir().expect("profile");
    let url = format!("file://{}", page.display());
    let dom = chromium(&["--dump-dom", &url], profile.path());
    assert!(dom.status.success(), "chromium: {}", String::from_utf8_lossy(&dom.stderr));
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    // What the browser built: a timeline row per device, the stranger marked unknown.
    assert!(dom.contains("<tr class=\"device unknown\" data-device=\"Galaxy &lt;S24&gt;\">"), "{dom}");
    assert!(dom.contains("<tr class=\"device trusted\" data-device=\"Laptop\">"), "{dom}");
    assert!(dom.contains("<tr class=\"device trusted\" data-device=\"Reviewed laptop\">"), "{dom}");
    assert_eq!(dom.matches("<rect class=\"unknown\"").count(), 1, "one stretch online for the stranger");
    assert!(dom.contains("unknown device “Galaxy &lt;S24&gt;” (Smartphone) is online"), "the event list");
    assert!(!dom.contains("<S24>"), "the name is text, not markup");
    // The devices table says how much each name proves, in the words of `spotguard devices`.
    for (row, identity) in [
        ("<tr><td>Web Player (Chrome)</td><td>Computer</td><td class=\"trusted\">yes</td>", "weak"),
        ("<tr><td>Laptop</td><td>Computer</td><td class=\"trusted\">yes</td>", "named"),
    ] {
        assert!(
            dom.contains(&format!("{row}<td class=\"identity\">{identity}</td>")),
            "{row} {identity}: {dom}"
        );
    }

    let shot = s.path().join("report.png");
    let out = chromium(
        &["--window-size=1200,700", &format!("--screenshot={}", shot.display()), &url],
        profile.path(),
    );
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::metadata(&shot).expect("screenshot").len() > 10_000, "a real picture");
    if let Ok(dir) = std::env::var("SPOTGUARD_KEEP_REPORT") {
        std::fs::copy(&shot, std::path::Path::new(&dir).join("report.png")).expect("keep");
        std::fs::copy(&page, std::path::Path::new(&dir).join("report.html")).expect("keep");
    }
}

/// Issue 11: `report --html` wrote through a symlink planted at its fixed temporary name (the
/// target was overwritten) and left the page 0644. Every temporary name the old code used is
/// planted here; their targets stay as they were and the page is private.
#[tokio::test(flavor = "multi_thread")]
async fn a_symlink_planted_at_the_temporary_name_is_not_followed_and_the_page_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = Sandbox::new().await;
    s.seed_reviewed();
    let victim = s.path().join("victim.txt");
    std::fs::write(&victim, "precious").expect("victim");
    let page = s.path().join("OUT.html");
    let planted = ["OUT.tmp", "OUT.html.tmp", ".OUT.html.tmp"].map(|n| s.path().join(n));
    for link in &planted {
        std::os::unix::fs::symlink(&victim, link).expect("plant a symlink");
    }
    let out = s.run(&["report", "--html", page.to_str().expect("utf-8 path")]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "precious", "the target is untouched");
    for link in &planted {
        assert!(std::fs::symlink_metadata(link).expect("still there").file_type().is_symlink());
    }
    let meta = std::fs::symlink_metadata(&page).expect("the page");
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "private: it lists the account's devices");
    assert!(std::fs::read_to_string(&page).expect("page").contains("Reviewed laptop"));
    let left: Vec<String> = std::fs::read_dir(s.path())
        .expect("dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".tmp") && !planted.iter().any(|p| p.ends_with(n)))
        .collect();
    assert!(left.is_empty(), "no temporary file left: {left:?}");
}
