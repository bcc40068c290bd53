//! `spotguard login`, `logout` and the daemon's use of the tokens, end to end: the built
//! binary against the fake Spotify, driven as a browser would drive it (the authorize URL
//! from stdout, Spotify's 302, the loopback callback), requests that are not that answer
//! (issue 11: a wrong state, another path, another Spotify user), plus refresh with and without
//! rotation, a 401 mid-run, revoked access while the daemon runs, recovery from it through
//! any other stored login (also across a restart), a daemon and `check` runs refreshing at
//! once, the six-month login warning, and secrets kept out of every log.

use crate::common;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Months, Utc};
use common::dbus::{NotificationServer, TestBus};
use common::sandbox::{CLIENT_ID, Daemon, Sandbox, TOKEN, stderr, stdout, token_set};
use reqwest::Url;
use serde_json::Value;
use spotguard::auth::{Secret, TokenSet};
use spotguard::fake;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);
const DEVICES: &str = "/v1/me/player/devices";
const APPS: &str = "https://www.spotify.com/account/apps/";
const NOTIFY_CAPS: &[&str] = &["actions", "body", "body-markup", "body-hyperlinks"];

/// A `spotguard login --no-browser` in progress, its stdout read line by line as it comes.
struct Login {
    child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    stdout: Vec<String>,
    stderr: tokio::task::JoinHandle<String>,
    started: Instant,
}

/// How a login ended.
#[derive(Debug)]
struct Done {
    code: Option<i32>,
    stdout: Vec<String>,
    stderr: String,
    took: Duration,
}

impl Done {
    fn output(&self) -> String {
        format!("{}\n{}", self.stdout.join("\n"), self.stderr)
    }
}

impl Login {
    fn start(s: &Sandbox, extra: &[&str], env: &[(&str, &str)]) -> Login {
        let mut args = vec!["login", "--no-browser"];
        args.extend_from_slice(extra);
        let mut cmd = s.cmd(&args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = tokio::process::Command::from(cmd).kill_on_drop(true).spawn().expect("login starts");
        let out = child.stdout.take().expect("stdout is piped");
        let mut err = child.stderr.take().expect("stderr is piped");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut out = BufReader::new(out).lines();
            while let Ok(Some(line)) = out.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Read stderr as it comes too: with RUST_LOG=trace it can outgrow the pipe.
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text).await;
            text
        });
        Login { child, lines, stdout: Vec::new(), stderr, started: Instant::now() }
    }

    /// Waits for the line that is the authorize URL.
    async fn authorize_url(&mut self, s: &Sandbox) -> Url {
        let prefix = format!("{}/authorize?", s.fake.accounts_base());
        loop {
            let line = tokio::time::timeout(WAIT, self.lines.recv())
                .await
                .expect("login printed its URL in time")
                .unwrap_or_else(|| panic!("login ended before printing its URL: {:?}", self.stdout));
            self.stdout.push(line.clone());
            if line.starts_with(&prefix) {
                return Url::parse(&line).expect("the authorize URL parses");
            }
        }
    }

    /// Waits for the process to exit and collects what it printed.
    async fn finish(mut self) -> Done {
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("login did not exit in time; stdout so far: {:?}", self.stdout))
            .expect("wait for login");
        let took = self.started.elapsed();
        while let Some(line) = tokio::time::timeout(WAIT, self.lines.recv()).await.expect("stdout closes") {
            self.stdout.push(line);
        }
        let stderr = self.stderr.await.expect("stderr reader");
        Done { code: status.code(), stdout: self.stdout, stderr, took }
    }
}

/// A browser that shows redirects instead of following them, and talks to loopback directly.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(WAIT)
        .build()
        .expect("http client")
}

/// Opens Spotify's authorize page: its 302 `Location`, the callback with code (or error) and state.
async fn consent(b: &reqwest::Client, url: &Url) -> Url {
    let response = b.get(url.clone()).send().await.expect("the authorize page answers");
    assert_eq!(response.status().as_u16(), 302, "authorize redirects back: {:?}", response);
    let location = response.headers()["location"].to_str().expect("ASCII Location").to_string();
    Url::parse(&location).expect("Location parses")
}

/// GETs a URL: (status, body).
async fn visit(b: &reqwest::Client, url: &Url) -> (u16, String) {
    let response = b.get(url.clone()).send().await.expect("the page answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("page body"))
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// `url` with parameter `name` set to `value` (others kept in order).
fn with_param(url: &Url, name: &str, value: &str) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name { value.to_string() } else { v.into_owned() };
            (k.into_owned(), v)
        })
        .collect();
    let mut out = url.clone();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out
}

/// A whole login as a person would do it: (how it ended, the callback URL the browser got).
async fn log_in(s: &Sandbox, env: &[(&str, &str)]) -> (Done, Url) {
    let b = browser();
    let mut login = Login::start(s, &[], env);
    let url = login.authorize_url(s).await;
    let callback = consent(&b, &url).await;
    let (status, page) = visit(&b, &callback).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("finishing the login"), "{page}");
    (login.finish().await, callback)
}

/// Runs the binary with extra environment.
async fn run_env(s: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = s.cmd(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("spotguard runs")).await.expect("join")
}

/// `spotguard status --json`, the entry of `account`.
async fn status_of(s: &Sandbox, account: &str) -> Value {
    let out = s.run(&["status", "--json"]).await;
    assert!(out.status.success(), "status: {}", stderr(&out));
    let status: Value = serde_json::from_str(&stdout(&out)).expect("status --json is JSON");
    let list = &status["accounts"];
    list.as_array()
        .expect("an array")
        .iter()
        .find(|a| a["account"] == account)
        .unwrap_or_else(|| panic!("no account {account} in {list}"))
        .clone()
}

/// Writes a real, refreshable login for `account` (minted by the fake), access token
/// expiring `expires_in` from now. Returns what was written.
fn seed(s: &Sandbox, account: &str, expires_in: chrono::Duration, authorized_at: DateTime<Utc>) -> TokenSet {
    let (access, refresh) = s.spotify.issue_tokens(CLIENT_ID);
    let tokens = TokenSet {
        refresh_token: Some(Secret::new(refresh)),
        expires_at: Utc::now() + expires_in,
        authorized_at,
        ..token_set(&access)
    };
    s.tokens().save(account, &tokens).expect("seed the token file");
    tokens
}

fn token_file(s: &Sandbox, account: &str) -> std::path::PathBuf {
    s.path().join(format!("data/tokens/{account}.json"))
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn one_line(text: &str) -> &str {
    let text = text.trim();
    assert_eq!(text.lines().count(), 1, "one line on stderr: {text:?}");
    text
}

/// Waits until `check` holds, polling every 50 ms.
async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn stop(mut d: Daemon) -> String {
    d.signal("TERM");
    let status = d.wait(WAIT).await;
    let log = d.log_text();
    assert!(status.success(), "clean exit; log:\n{log}");
    log
}

#[tokio::test(flavor = "multi_thread")]
async fn login_stores_private_tokens_names_the_user_and_the_daemon_can_use_them() {
    let s = Sandbox::new().await;
    std::fs::remove_file(token_file(&s, "default")).expect("start logged out");
    s.spotify.set_devices(vec![fake::device("phone-1", "Phone", "Smartphone", false)]);

    let (done, callback) = log_in(&s, &[]).await;
    assert_eq!(done.code, Some(0), "{}", done.output());
    let last = done.stdout.last().expect("stdout");
    let file = token_file(&s, "default");
    assert!(last.starts_with("Logged in:"), "{last}");
    assert!(last.contains("Fake User"), "{last}");
    assert!(last.contains("account default"), "{last}");
    assert!(last.contains(&file.display().to_string()), "{last}");
    assert!(callback.as_str().starts_with(&format!("{}?", s.redirect_uri)), "{callback}");

    // The token file: private, in a private dir, holding what the fake issued.
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(file.parent().expect("dir")), 0o700);
    let tokens = s.tokens().load("default").expect("tokens stored");
    assert!(tokens.refresh_token.is_some());
    assert_eq!(tokens.scope, "user-read-playback-state");
    assert!(tokens.expires_at > Utc::now() + chrono::Duration::minutes(50));
    assert!(Utc::now() - tokens.authorized_at < chrono::Duration::minutes(1));
    assert_eq!(s.spotify.token_requests("authorization_code"), 1);

    // What was asked of Spotify: PKCE S256, a state, this app, this callback, one read scope.
    let query = s.spotify.last_authorize_query().expect("authorize was asked");
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("response_type"), Some("code"));
    assert_eq!(get("code_challenge_method"), Some("S256"));
    assert!(get("state").is_some_and(|st| st.len() >= 16), "{query:?}");
    assert_eq!(get("state").map(str::to_string), param(&callback, "state"));
    assert_eq!(get("client_id"), Some(CLIENT_ID));
    assert_eq!(get("redirect_uri"), Some(s.redirect_uri.as_str()));
    assert_eq!(get("scope"), Some("user-read-playback-state"));

    let st = status_of(&s, "default").await;
    assert_eq!(st["logged_in"], true, "{st}");
    assert_eq!(st["spotify_user"], "fakeuser", "{st}");

    // The new token (the only one on disk) works: one untrusted device, exit 3.
    let out = s.run(&["check", "--json"]).await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).expect("check --json");
    assert_eq!(json["devices"][0]["name"], "Phone");
}

#[tokio::test(flavor = "multi_thread")]
async fn another_path_or_method_gets_400_and_the_login_goes_on() {
    let s = Sandbox::new().await;
    let b = browser();
    let mut login = Login::start(&s, &[], &[]);
    let url = login.authorize_url(&s).await;
    let callback = consent(&b, &url).await;
    let mut favicon = callback.clone();
    favicon.set_path("/favicon.ico");
    favicon.set_query(None);
    assert_eq!(visit(&b, &favicon).await.0, 400);
    // Another path with the right state and code is still not the callback.
    let mut other = callback.clone();
    other.set_path("/other");
    assert_eq!(visit(&b, &other).await.0, 400);
    let posted = b.post(callback.clone()).send().await.expect("answers");
    assert_eq!(posted.status().as_u16(), 400, "only a GET is Spotify's redirect");
    let (status, page) = visit(&b, &callback).await;
    assert_eq!(status, 200, "{page}");
    let done = login.finish().await;
    assert_eq!(done.code, Some(0), "{}", done.output());
    assert!(done.stdout.last().is_some_and(|l| l.starts_with("Logged in:")), "{}", done.output());
}

/// Issue 11: `curl .../callback?state=WRONG` ended a login in progress. Now requests with a
/// wrong or no state get a 400 and change nothing; the browser's own answer still completes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_state_cannot_end_or_feed_the_login_and_the_right_answer_completes_it() {
    let s = Sandbox::new().await;
    let b = browser();
    let mut login = Login::start(&s, &[], &[]);
    let url = login.authorize_url(&s).await;
    let callback = consent(&b, &url).await;
    let mut no_state = Url::parse(&s.redirect_uri).expect("redirect URI");
    no_state.query_pairs_mut().append_pair("code", "ATTACKER");
    let forged = with_param(&with_param(&callback, "state", "WRONG"), "code", "ATTACKER");
    let mut denied = Url::parse(&s.redirect_uri).expect("redirect URI");
    denied.query_pairs_mut().append_pair("error", "access_denied").append_pair("state", "WRONG");
    let mut bare = Url::parse(&s.redirect_uri).expect("redirect URI");
    bare.set_query(None);
    for attack in [&forged, &no_state, &denied, &bare] {
        let (status, page) = visit(&b, attack).await;
        assert_eq!(status, 400, "{attack}: {page}");
        assert!(page.contains("Not this login"), "{page}");
    }
    assert_eq!(s.spotify.token_requests("authorization_code"), 0, "no forged code was exchanged");
    let (status, page) = visit(&b, &callback).await;
    assert_eq!(status, 200, "{page}");
    let done = login.finish().await;
    assert_eq!(done.code, Some(0), "{}", done.output());
    assert!(done.stdout.last().is_some_and(|l| l.starts_with("Logged in:")), "{}", done.output());
    assert_eq!(done.stderr.matches("refused a request").count(), 1, "said once: {}", done.stderr);
    assert_eq!(s.spotify.token_requests("authorization_code"), 1);
    assert_eq!(status_of(&s, "default").await["spotify_user"], "fakeuser");
}

/// Issue 11: with the state (it is in the browser's argv) another person's code was accepted
/// and the account's tokens replaced. The user `/me` names must be the one recorded.
#[tokio::test(flavor = "multi_thread")]
async fn a_login_as_another_spotify_user_is_refused_unless_switch_user() {
    let s = Sandbox::new().await;
    let (first, _) = log_in(&s, &[]).await;
    assert_eq!(first.code, Some(0), "{}", first.output());
    let kept = std::fs::read(token_file(&s, "default")).expect("token file");

    s.spotify.set_user(serde_json::json!({ "id": "attacker", "display_name": "Mallory", "type": "user" }));
    let (second, _) = log_in(&s, &[]).await;
    assert_eq!(second.code, Some(1), "{}", second.output());
    let line = one_line(&second.stderr);
    assert!(line.contains("Spotify user \u{201c}Mallory\u{201d} (attacker)"), "{line}");
    assert!(line.contains("account default watches Spotify user fakeuser"), "{line}");
    assert!(line.contains("nothing was stored") && line.contains("--switch-user"), "{line}");
    assert_eq!(std::fs::read(token_file(&s, "default")).expect("token file"), kept, "tokens kept");
    assert_eq!(status_of(&s, "default").await["spotify_user"], "fakeuser");

    let b = browser();
    let mut third = Login::start(&s, &["--switch-user"], &[]);
    let url = third.authorize_url(&s).await;
    let (status, page) = visit(&b, &consent(&b, &url).await).await;
    assert_eq!(status, 200, "{page}");
    let done = third.finish().await;
    assert_eq!(done.code, Some(0), "{}", done.output());
    assert!(
        done.output().contains("Switching account default from Spotify user fakeuser"),
        "{}",
        done.output()
    );
    assert_ne!(std::fs::read(token_file(&s, "default")).expect("token file"), kept, "new tokens");
    assert_eq!(status_of(&s, "default").await["spotify_user"], "attacker");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_in_the_callback_reaches_the_terminal_escaped() {
    let s = Sandbox::new().await;
    let b = browser();
    let mut login = Login::start(&s, &[], &[]);
    let url = login.authorize_url(&s).await;
    let state = param(&url, "state").expect("a state");
    let mut hostile = Url::parse(&s.redirect_uri).expect("redirect URI");
    hostile
        .query_pairs_mut()
        .append_pair("error", "server_error\u{1b}]0;pwned\u{7}\u{202e}exe.txt")
        .append_pair("state", &state);
    let (status, page) = visit(&b, &hostile).await;
    assert_eq!(status, 400, "{page}");
    let done = login.finish().await;
    assert_eq!(done.code, Some(1), "{}", done.output());
    let line = one_line(&done.stderr);
    assert!(
        line.contains("answered with an error (server_error\\u{1b}]0;pwned\\u{7}\\u{202e}exe.txt)"),
        "{line}"
    );
    assert!(!line.contains(['\u{1b}', '\u{7}', '\u{202e}']), "nothing raw: {line:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_consent_fails_the_login_and_stores_nothing() {
    let s = Sandbox::new().await;
    std::fs::remove_file(token_file(&s, "default")).expect("start logged out");
    s.spotify.set_consent(false);
    let b = browser();
    let mut login = Login::start(&s, &[], &[]);
    let url = login.authorize_url(&s).await;
    let callback = consent(&b, &url).await;
    assert_eq!(param(&callback, "error").as_deref(), Some("access_denied"));
    let (status, page) = visit(&b, &callback).await;
    assert_eq!(status, 400, "{page}");
    let done = login.finish().await;
    assert_eq!(done.code, Some(1), "{}", done.output());
    let line = one_line(&done.stderr);
    assert!(line.contains("the login was refused"), "{line}");
    assert!(line.contains("nothing was stored"), "{line}");
    assert!(!token_file(&s, "default").exists(), "no token file");
    assert_eq!(s.spotify.token_requests("authorization_code"), 0);
    let st = status_of(&s, "default").await;
    assert_eq!(st["logged_in"], false, "{st}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_used_authorization_code_is_refused_and_the_earlier_login_kept() {
    let s = Sandbox::new().await;
    let (first, callback) = log_in(&s, &[]).await;
    assert_eq!(first.code, Some(0), "{}", first.output());
    let old_code = param(&callback, "code").expect("a code");
    let kept = std::fs::read(token_file(&s, "default")).expect("token file");

    let b = browser();
    let mut second = Login::start(&s, &[], &[]);
    let url = second.authorize_url(&s).await;
    let state = param(&url, "state").expect("a state");
    assert_ne!(Some(&state), param(&callback, "state").as_ref(), "a new state per login");
    let mut replay = Url::parse(&s.redirect_uri).expect("redirect URI");
    replay.query_pairs_mut().append_pair("code", &old_code).append_pair("state", &state);
    visit(&b, &replay).await;
    let done = second.finish().await;
    assert_eq!(done.code, Some(1), "{}", done.output());
    let line = one_line(&done.stderr);
    assert!(line.contains("authorization code (it expired or was already used)"), "{line}");
    assert!(line.contains("spotguard login"), "{line}");
    assert_eq!(s.spotify.token_requests("authorization_code"), 2);
    assert_eq!(std::fs::read(token_file(&s, "default")).expect("token file"), kept, "login #1 kept");
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_answering_times_out() {
    let s = Sandbox::new().await;
    let before = std::fs::read(token_file(&s, "default")).expect("token file");
    let mut login = Login::start(&s, &["--timeout", "1s"], &[]);
    login.authorize_url(&s).await;
    let done = login.finish().await;
    assert_eq!(done.code, Some(1), "{}", done.output());
    assert!(done.took < Duration::from_secs(5), "took {:?}", done.took);
    let line = one_line(&done.stderr);
    assert!(line.contains("no answer from Spotify within 1s"), "{line}");
    assert_eq!(std::fs::read(token_file(&s, "default")).expect("token file"), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_callback_port_is_named() {
    let s = Sandbox::new().await;
    let url = Url::parse(&s.redirect_uri).expect("redirect URI");
    let port = url.port().expect("a port");
    let _taken = std::net::TcpListener::bind(("127.0.0.1", port)).expect("take the callback port");
    let out = s.run(&["login", "--no-browser", "--timeout", "5s"]).await;
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let line = one_line(&stderr(&out)).to_string();
    assert!(line.contains(&format!("port {port} on 127.0.0.1 is in use")), "{line}");
    assert!(!stdout(&out).contains("/authorize?"), "no URL to a login that cannot finish");
}

#[tokio::test(flavor = "multi_thread")]
async fn login_without_a_client_id_names_the_setting() {
    let s = Sandbox::new().await;
    let text = std::fs::read_to_string(s.config_path()).expect("config");
    let line = format!("client_id = \"{CLIENT_ID}\"");
    assert!(text.contains(&line), "{text}");
    let other = s.path().join("no-client.toml");
    std::fs::write(&other, text.replace(&line, "client_id = \"\"")).expect("write config");
    let other = other.display().to_string();
    let out =
        run_env(&s, &["login", "--no-browser", "--timeout", "5s"], &[("SPOTGUARD_CONFIG", &other)]).await;
    assert_eq!(out.status.code(), Some(1), "{}{}", stdout(&out), stderr(&out));
    let line = one_line(&stderr(&out)).to_string();
    assert!(line.contains("spotify.client_id"), "{line}");
    assert!(line.contains(&other), "names the file to edit: {line}");
    assert_eq!(s.spotify.request_count("/authorize"), 0);
}

/// The daemon refreshes an expired token once, then polls with the new one.
async fn refresh_case(rotate: bool) {
    let s = Sandbox::new().await;
    s.spotify.set_rotation(rotate);
    let authorized_at = Utc::now() - chrono::Duration::days(1);
    let seeded = seed(&s, "default", chrono::Duration::minutes(-1), authorized_at);
    // The old access token no longer works at all: polls succeed only with the refreshed one.
    s.spotify.expire_access_tokens();
    let d = s.spawn_daemon(&[]);
    s.wait_for_polls(1, WAIT).await;
    wait_until("the refresh", || s.spotify.token_requests("refresh_token") >= 1).await;
    let after = s.tokens().load("default").expect("tokens");
    assert_ne!(after.access_token, seeded.access_token, "a new access token");
    assert!(after.expires_at > Utc::now() + chrono::Duration::minutes(50));
    assert_eq!(after.authorized_at, authorized_at, "refreshing does not extend the login");
    if rotate {
        assert!(after.refresh_token.is_some());
        assert_ne!(after.refresh_token, seeded.refresh_token, "the rotated refresh token is saved");
    } else {
        assert_eq!(after.refresh_token, seeded.refresh_token, "no new one: the old one is kept");
    }
    assert_eq!(mode(&token_file(&s, "default")), 0o600);
    let n = s.spotify.request_count(DEVICES);
    s.wait_for_polls(n + 2, WAIT).await;
    assert_eq!(s.spotify.token_requests("refresh_token"), 1, "one refresh for an hour-long token");
    let st = status_of(&s, "default").await;
    assert_eq!(st["last_error"], Value::Null, "{st}");
    assert_eq!(st["logged_in"], true, "{st}");
    assert!(st["last_poll_at"].is_string(), "{st}");
    let log = stop(d).await;
    assert!(!log.contains("poll failed"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_refreshed_and_the_rotated_refresh_token_saved() {
    refresh_case(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_rotation_the_refresh_token_stays() {
    refresh_case(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_mid_run_gets_one_refresh_and_polling_goes_on() {
    let s = Sandbox::new().await;
    let seeded = seed(&s, "default", chrono::Duration::hours(1), Utc::now() - chrono::Duration::days(1));
    let d = s.spawn_daemon(&[]);
    s.wait_for_polls(1, WAIT).await;
    assert_eq!(s.spotify.token_requests("refresh_token"), 0, "a fresh token is not refreshed");
    s.spotify.expire_access_tokens();
    let n = s.spotify.request_count(DEVICES);
    // The 401, its retry, then two more polls.
    s.wait_for_polls(n + 4, WAIT).await;
    assert_eq!(s.spotify.token_requests("refresh_token"), 1);
    let after = s.tokens().load("default").expect("tokens");
    assert_ne!(after.access_token, seeded.access_token);
    let st = status_of(&s, "default").await;
    assert_eq!(st["last_error"], Value::Null, "{st}");
    assert_eq!(st["logged_in"], true, "{st}");
    let log = stop(d).await;
    assert!(!log.contains("poll failed"), "{log}");
}

fn poll_of(s: &Sandbox, account: &str) -> spotguard::store::AccountStatus {
    s.store()
        .account_status()
        .expect("account status")
        .into_iter()
        .find(|a| a.name == account)
        .unwrap_or_else(|| panic!("no account {account}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_access_alerts_once_the_other_account_goes_on_and_a_new_login_resumes() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, NOTIFY_CAPS).await;
    let mut s = Sandbox::new().await;
    s.with_config(
        "[notify]\ndesktop = true\n\n[[accounts]]\nname = \"me\"\n\n[[accounts]]\nname = \"kid\"\n",
    );
    let first = seed(&s, "me", chrono::Duration::hours(1), Utc::now() - chrono::Duration::days(10));
    s.spotify.add_token("kid-static-token");
    s.tokens().save("kid", &token_set("kid-static-token")).expect("kid's token file");
    let d = s.spawn_daemon(&[("DBUS_SESSION_BUS_ADDRESS", &bus.address)]);
    s.wait_for_polls(2, WAIT).await;
    s.wait_for_store("both accounts polled", WAIT, |st| {
        st.account_status().expect("status").iter().filter(|a| a.last_poll_at.is_some()).count() == 2
    })
    .await;

    s.spotify.revoke_refresh_tokens();
    s.spotify.expire_access_tokens();
    let lost = server.wait_for(1, WAIT).await.remove(0);
    assert_eq!(lost.summary, "spotguard lost access to me");
    assert!(lost.body.contains("spotguard login --account me"), "{}", lost.body);
    assert_eq!(lost.urgency, Some(2), "critical: the watcher is blind");
    let me_polled = poll_of(&s, "me").last_poll_at;

    // Only kid is polled now: one device request per tick, and no second alert.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (n, kid_before) = (s.spotify.request_count(DEVICES), poll_of(&s, "kid").last_poll_at);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let during = s.spotify.request_count(DEVICES) - n;
    assert!((2..=4).contains(&during), "{during} device requests in 3.5 s with one account polled");
    assert!(poll_of(&s, "kid").last_poll_at > kid_before, "kid is still polled");
    assert_eq!(poll_of(&s, "me").last_poll_at, me_polled, "me is not polled");
    assert_eq!(server.notifications().len(), 1, "one alert for one lost login");
    assert_eq!(s.spotify.token_requests("refresh_token"), 1, "no refresh retried after invalid_grant");

    let me = status_of(&s, "me").await;
    assert_eq!(me["logged_in"], false, "{me}");
    assert!(me["access_lost_at"].is_string(), "{me}");
    let kid = status_of(&s, "kid").await;
    assert_eq!(kid["logged_in"], true, "{kid}");
    assert_eq!(kid["access_lost_at"], Value::Null, "{kid}");

    // A new login for me (as `spotguard login` writes it) is picked up without a restart.
    let relogin_at = Utc::now();
    let second = seed(&s, "me", chrono::Duration::hours(1), relogin_at);
    assert!(second.authorized_at > first.authorized_at);
    let log = s.path().join("daemon.log");
    wait_until("the new login to be found", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("new login found; watching again")
    })
    .await;
    s.wait_for_store("me polled again", WAIT, |st| {
        st.account_status().expect("status").iter().any(|a| {
            a.name == "me" && a.last_poll_at.is_some_and(|t| t > relogin_at) && a.access_lost_at.is_none()
        })
    })
    .await;
    let n = s.spotify.request_count(DEVICES);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let during = s.spotify.request_count(DEVICES) - n;
    assert!(during >= 5, "{during} device requests in 3.5 s with two accounts polled");
    assert_eq!(server.notifications().len(), 1, "no further lost-access alert");
    let me = status_of(&s, "me").await;
    assert_eq!(me["logged_in"], true, "{me}");
    assert_eq!(me["access_lost_at"], Value::Null, "{me}");
    let log = stop(d).await;
    assert_eq!(log.matches("new login found; watching again").count(), 1, "{log}");
}

/// The last successful poll of `account` came after `t`, and access is not marked lost.
async fn polled_after(s: &Sandbox, account: &str, t: DateTime<Utc>, what: &str) {
    s.wait_for_store(what, WAIT, |st| {
        st.account_status()
            .expect("status")
            .iter()
            .any(|a| a.name == account && a.last_poll_at.is_some_and(|p| p > t) && a.access_lost_at.is_none())
    })
    .await;
}

/// Spotify refuses every refresh token and every access token issued so far, as "Remove
/// access" and an hour's wait do; waits until the daemon has marked access lost.
async fn lose_access(s: &Sandbox, account: &str) {
    s.spotify.revoke_refresh_tokens();
    s.spotify.expire_access_tokens();
    s.wait_for_store("access marked lost", WAIT, |st| {
        st.account_status().expect("status").iter().any(|a| a.name == account && a.access_lost_at.is_some())
    })
    .await;
}

/// Issue 10: the daemon, `check` and `doctor` each refresh on their own, and a rotating
/// Accounts service makes a refresh token single-use: two processes spending the same one
/// would lose the login for good. A daemon and two `check` runs meet an expired token at the
/// same moment (the first refresh is slow, so the others come while it runs), then a 401 on
/// the refreshed one: each time one refresh is made and the others use its token.
#[tokio::test(flavor = "multi_thread")]
async fn a_daemon_and_two_concurrent_checks_at_token_expiry_never_lose_access_to_a_rotating_login() {
    let s = Sandbox::new().await;
    s.spotify.set_rotation(true);
    let seeded = seed(&s, "default", chrono::Duration::minutes(-1), Utc::now() - chrono::Duration::days(1));
    s.spotify.expire_access_tokens();
    let mut spent = vec![seeded.refresh_token.clone().expect("refresh token")];
    let d = s.spawn_daemon(&[]);
    for round in 1..=2 {
        s.spotify.push_token_fault(fake::Fault::Hang { millis: 500 });
        let started = Utc::now();
        let (a, b) = tokio::join!(s.run(&["check", "--json"]), s.run(&["check", "--json"]));
        for out in [&a, &b] {
            assert_eq!(out.status.code(), Some(0), "round {round}: {}", stderr(out));
            for secret in &spent {
                assert!(!stdout(out).contains(secret.expose()) && !stderr(out).contains(secret.expose()));
            }
        }
        polled_after(&s, "default", started, "a daemon poll with the refreshed token").await;
        assert_eq!(s.spotify.token_requests("refresh_token"), round, "round {round}: one refresh for three");
        let now = s.tokens().load("default").expect("tokens");
        assert!(!spent.contains(now.refresh_token.as_ref().expect("refresh token")), "rotated and saved");
        spent.push(now.refresh_token.clone().expect("refresh token"));
        // Next round: Spotify refuses the access token everyone now holds.
        s.spotify.expire_access_tokens();
    }
    let file = token_file(&s, "default");
    let text = std::fs::read(&file).expect("token file");
    serde_json::from_slice::<Value>(&text).expect("the token file is valid JSON");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(mode(&s.path().join("data/tokens/default.lock")), 0o600);
    let dir: Vec<String> = std::fs::read_dir(file.parent().expect("dir"))
        .expect("tokens dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(dir.iter().all(|n| n == "default.json" || n == "default.lock"), "no temp file left: {dir:?}");
    let st = status_of(&s, "default").await;
    assert_eq!(st["logged_in"], true, "{st}");
    assert_eq!(st["access_lost_at"], Value::Null, "{st}");
    let log = stop(d).await;
    assert!(!log.contains("invalid_grant") && !log.contains("not polling"), "{log}");
    for secret in &spent {
        assert!(!log.contains(secret.expose()), "a refresh token in the log");
    }
}

/// Issue 10: "access lost" cleared only when `authorized_at` changed, so a good login put in
/// the store with the same one (a refresh made by `spotguard check` in another process, say)
/// left the daemon not watching, even across a restart. Another refresh token is another
/// login: polling resumes, in a running daemon and in one started later; the dead login itself
/// still keeps a restarted daemon from polling.
#[tokio::test(flavor = "multi_thread")]
async fn after_access_lost_another_refresh_token_with_the_same_authorized_at_resumes_polling_also_after_a_restart()
 {
    let s = Sandbox::new().await;
    let authorized_at = Utc::now() - chrono::Duration::days(10);
    seed(&s, "default", chrono::Duration::hours(1), authorized_at);
    let d = s.spawn_daemon(&[]);
    s.wait_for_polls(1, WAIT).await;
    lose_access(&s, "default").await;

    // Another login with the same authorisation time, while the daemon runs.
    let placed = Utc::now();
    seed(&s, "default", chrono::Duration::hours(1), authorized_at);
    polled_after(&s, "default", placed, "polling to resume in the running daemon").await;

    // Lost again; a restarted daemon with the dead login still stored does not poll.
    lose_access(&s, "default").await;
    let log = stop(d).await;
    assert_eq!(log.matches("new login found; watching again").count(), 1, "{log}");
    let polls = s.spotify.request_count(DEVICES);
    let d = s.spawn_daemon(&[]);
    let log_path = d.log.clone();
    wait_until("the restarted daemon to say it is not watching", || {
        std::fs::read_to_string(&log_path).unwrap_or_default().contains("not watching")
    })
    .await;
    // No event marks a skipped tick: give it two ticks (polls are every second) to misbehave.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert_eq!(s.spotify.request_count(DEVICES), polls, "the dead login is not used");
    stop(d).await;

    // Another login with the same authorisation time, put in place while no daemon runs.
    let placed = Utc::now();
    seed(&s, "default", chrono::Duration::hours(1), authorized_at);
    let d = s.spawn_daemon(&[]);
    polled_after(&s, "default", placed, "polling to resume after the restart").await;
    let log = stop(d).await;
    assert!(!log.contains("not watching"), "{log}");
    let st = s.store();
    let id = st.find_account("default").expect("find").expect("the account");
    let lost_events = st
        .recent_events(id, 100)
        .expect("events")
        .iter()
        .filter(|e| matches!(e.event, spotguard::event::Event::AccessLost { .. }))
        .count();
    assert_eq!(lost_events, 2, "one alert per lost login, none for the restart");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_ending_within_a_week_is_warned_about_once() {
    let bus = TestBus::start();
    let server = NotificationServer::start(&bus, NOTIFY_CAPS).await;
    let mut s = Sandbox::new().await;
    s.with_config("[notify]\ndesktop = true\n");
    let authorized_at =
        (Utc::now() + chrono::Duration::days(3)).checked_sub_months(Months::new(6)).expect("six months ago");
    let tokens = TokenSet { authorized_at, ..token_set(TOKEN) };
    s.tokens().save("default", &tokens).expect("token file");
    let d = s.spawn_daemon(&[("DBUS_SESSION_BUS_ADDRESS", &bus.address)]);
    let warned = server.wait_for(1, WAIT).await.remove(0);
    assert!(warned.summary.starts_with("spotguard needs a new Spotify login soon"), "{}", warned.summary);
    assert!(warned.body.contains("spotguard login --account default"), "{}", warned.body);
    let n = s.spotify.request_count(DEVICES);
    s.wait_for_polls(n + 3, WAIT).await;
    assert_eq!(server.notifications().len(), 1, "warned once, not once per poll");
    stop(d).await;

    let out = s.run(&["status"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let ends = tokens.login_expires_at().with_timezone(&chrono::Local).format("%Y-%m-%d").to_string();
    assert!(text.contains(&format!("login: valid until {ends} (soon")), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_code_or_token_appears_in_any_output_even_at_trace() {
    let s = Sandbox::new().await;
    let trace = [("RUST_LOG", "trace")];
    let (done, callback) = log_in(&s, &trace).await;
    assert_eq!(done.code, Some(0), "{}", done.output());
    let code = param(&callback, "code").expect("a code");
    let login = s.tokens().load("default").expect("tokens");
    assert!(done.stderr.contains("TRACE") || done.stderr.contains("DEBUG"), "trace is on: {}", done.stderr);

    // Make the daemon refresh at once.
    let expired = TokenSet { expires_at: Utc::now() - chrono::Duration::minutes(1), ..login.clone() };
    s.tokens().save("default", &expired).expect("token file");
    let (out_path, err_path) = (s.path().join("run.out"), s.path().join("run.err"));
    let mut cmd = s.cmd(&["run"]);
    cmd.env("RUST_LOG", "trace")
        .stdout(std::fs::File::create(&out_path).expect("out file"))
        .stderr(std::fs::File::create(&err_path).expect("err file"));
    let mut daemon = Daemon { child: cmd.spawn().expect("spotguard run starts"), log: err_path.clone() };
    wait_until("the refresh", || s.spotify.token_requests("refresh_token") >= 1).await;
    let n = s.spotify.request_count(DEVICES);
    s.wait_for_polls(n + 2, WAIT).await;
    daemon.signal("TERM");
    assert!(daemon.wait(WAIT).await.success(), "{}", daemon.log_text());
    let refreshed = s.tokens().load("default").expect("tokens");
    assert_ne!(refreshed.access_token, login.access_token, "refreshed");

    let all = format!(
        "{}\n{}\n{}",
        done.output(),
        std::fs::read_to_string(&out_path).expect("run stdout"),
        std::fs::read_to_string(&err_path).expect("run stderr")
    );
    assert!(all.contains("access token refreshed"), "the daemon's debug lines are there");
    let mut secrets = vec![("authorization code", code)];
    for (when, t) in [("login", &login), ("refresh", &refreshed)] {
        secrets.push((when, t.access_token.expose().to_string()));
        if let Some(r) = &t.refresh_token {
            secrets.push((when, r.expose().to_string()));
        }
    }
    for (what, secret) in secrets {
        assert!(secret.len() >= 20, "{what}: a real secret");
        // A third of it is enough to tell: cut, wrapped or escaped copies count too.
        let piece = &secret[..secret.len() / 3];
        assert!(!all.contains(piece), "a secret ({what}) appears in the output");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_removes_the_tokens_and_points_to_the_apps_page() {
    let s = Sandbox::new().await;
    let file = token_file(&s, "default");
    assert!(file.exists());
    let out = s.run(&["logout"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Removed the stored tokens of account default"), "{text}");
    assert!(text.contains(APPS), "{text}");
    assert!(!file.exists(), "token file removed");
    let st = status_of(&s, "default").await;
    assert_eq!(st["logged_in"], false, "{st}");

    let out = s.run(&["logout"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Account default had no stored tokens"), "{text}");
    assert!(text.contains(APPS), "{text}");
}
