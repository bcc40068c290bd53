//! The Spotify Web API client: typed requests, error mapping, and the limits of one call.
//!
//! One pooled `reqwest` client (rustls) with connect and request timeouts and a cap on the
//! size of any answer. Errors are mapped to what the caller must do about them: refresh
//! (401), stop and tell the person (403), wait as told (429), back off (5xx, network,
//! timeouts, 202), or distrust the answer (malformed, too large). This module never retries
//! and never sleeps: the daemon owns backoff, so that a failing poll costs one request.
//! Access tokens pass through here and must never appear in an error or a log field.
//!
//! Answers are read per device ([`model`]): a device that cannot be read is skipped and
//! counted, never a reason to fail the poll. The device list is parsed with a bound on the
//! devices built ([`model::MAX_DEVICES_PER_ANSWER`]), so no answer within the size cap costs
//! more than a few milliseconds and a few MB. Each distinct kind of problem is logged once
//! per client (a small bounded set shared by its clones), not on every poll.

pub mod model;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::{StatusCode, header};
use serde::Deserialize;
use serde_json::Value;

pub use model::{Device, DeviceList, Playback, Problem, User};

use crate::auth::Secret;

/// The largest answer read. A device list is a few KiB; anything bigger is not Spotify's.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Bound on establishing a connection: a dead network should fail a poll fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one whole request, so a hung server cannot hold a poll (and shutdown) forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Distinct kinds of answer problems remembered as already logged. The kinds are few (a
/// place, a field and a JSON kind, all from `model`); the bound only keeps memory fixed.
const MAX_LOGGED_PROBLEMS: usize = 64;

/// What a Web API call can end in, sorted by what the caller must do.
#[derive(Debug, thiserror::Error)]
pub enum SpotifyError {
    #[error("Spotify refused the access token (401); it expired or access was revoked")]
    Unauthorized,
    #[error(
        "Spotify refused this user (403): the app is in development mode and this Spotify user is \
         not on its list; add them under Users Management in the Spotify Developer Dashboard"
    )]
    UserNotRegistered,
    #[error("Spotify refused the request (403): {message}")]
    Forbidden { message: String },
    #[error("Spotify is rate limiting this app (429); waiting {}", humantime::format_duration(*.retry_after))]
    RateLimited { retry_after: Duration, quota: bool },
    #[error("Spotify answered {status}, a problem on its side")]
    Server { status: u16 },
    #[error("Spotify accepted the request but had no answer yet (202)")]
    NotReady,
    #[error("Spotify did not answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    #[error("cannot reach Spotify at {base}: {reason}")]
    Network { base: String, reason: String },
    #[error("Spotify's answer to {endpoint} was not understood: {reason}")]
    Malformed { endpoint: &'static str, reason: String },
    #[error("Spotify answered {status} to {endpoint}: {message}")]
    Unexpected { endpoint: &'static str, status: u16, message: String },
}

impl SpotifyError {
    /// Whether the same request may succeed later without the person doing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SpotifyError::RateLimited { .. }
                | SpotifyError::Server { .. }
                | SpotifyError::NotReady
                | SpotifyError::Timeout
                | SpotifyError::Network { .. }
                | SpotifyError::Malformed { .. }
        )
    }
}

/// The Web API's error body: `{"error": {"status": 4xx, "message": "...", "reason": "..."}}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorObject,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorObject {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

/// A Web API client bound to one base URL. Cheap to clone: the pool is shared.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    api_base: String,
    /// Answer problems already logged, so an odd device is reported once, not every poll.
    logged: Arc<ProblemLog>,
}

impl Client {
    /// Builds the pooled client for `api_base` (e.g. `https://api.spotify.com/v1`).
    pub fn new(api_base: &str) -> Result<Client, SpotifyError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("spotguard/", env!("CARGO_PKG_VERSION")))
            // Spotify answers from one host; a redirect elsewhere would carry no token
            // (reqwest strips it) but is not an answer we trust either.
            .redirect(reqwest::redirect::Policy::none())
            // No idle connections: a daemon that polls once a minute gains nothing from them
            // (measured: CPU per poll over HTTPS is the same kept-alive, resumed or with a full
            // handshake, see benches/clock.rs), the pool's reaper would wake the process twice
            // a minute, and a connection kept across a suspend is often dead on resume, which
            // would cost the first poll a 20 s timeout. rustls resumes TLS sessions anyway.
            .pool_max_idle_per_host(0)
            // Spotify's certificates chain to the public roots built in; the OS store is for
            // the person's own servers (channels), so it is not read here.
            .tls_built_in_native_certs(false);
        #[cfg(feature = "test-ca")]
        let http = match std::env::var_os("SPOTGUARD_TEST_CA_FILE") {
            Some(path) => {
                let pem = std::fs::read(&path).map_err(|e| SpotifyError::Network {
                    base: api_base.to_string(),
                    reason: format!("SPOTGUARD_TEST_CA_FILE: {e}"),
                })?;
                let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| SpotifyError::Network {
                    base: api_base.to_string(),
                    reason: e.to_string(),
                })?;
                http.add_root_certificate(ca)
            }
            None => http,
        };
        let http = http
            .build()
            .map_err(|e| SpotifyError::Network { base: api_base.to_string(), reason: e.to_string() })?;
        Ok(Client {
            http,
            api_base: api_base.trim_end_matches('/').to_string(),
            logged: Arc::new(ProblemLog::default()),
        })
    }

    /// The pooled HTTP client (no redirects, bounded), shared with the Accounts service.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// GET /me/player/devices: the Connect devices online for the account, and how many
    /// listed devices could not be read.
    #[tracing::instrument(skip_all, level = "debug")]
    pub async fn devices(&self, token: &Secret) -> Result<DeviceList, SpotifyError> {
        let endpoint = "/me/player/devices";
        let Some(body) = self.get(endpoint, token).await? else {
            // Not documented for this endpoint, but harmless to read as "none".
            return Ok(DeviceList::default());
        };
        // Parsed with a bound on the devices built: what an answer can cost is bounded.
        let mut problems = Vec::new();
        let list = DeviceList::parse(&body, &mut problems)
            .map_err(|reason| SpotifyError::Malformed { endpoint, reason });
        self.logged.note(endpoint, &problems);
        if let Ok(list) = &list
            && list.cut > 0
        {
            let cut = list.cut;
            if self.logged.said_cut.swap(true, Ordering::Relaxed) {
                tracing::debug!(endpoint, cut, "devices beyond the bound not read");
            } else {
                tracing::warn!(
                    endpoint,
                    cut,
                    read = model::MAX_DEVICES_PER_ANSWER,
                    "Spotify listed more devices than spotguard reads from one answer; the rest are \
                     counted, not read, and absence proves nothing while they are (said once)"
                );
            }
        }
        list
    }

    /// GET /me/player: what plays where. `None` is the documented 204: nothing plays.
    #[tracing::instrument(skip_all, level = "debug")]
    pub async fn playback(&self, token: &Secret) -> Result<Option<Playback>, SpotifyError> {
        let endpoint = "/me/player?additional_types=track,episode";
        match self.get(endpoint, token).await? {
            Some(body) => self.read("/me/player", &body, Playback::read).map(Some),
            None => Ok(None),
        }
    }

    /// GET /me: who the token belongs to.
    #[tracing::instrument(skip_all, level = "debug")]
    pub async fn me(&self, token: &Secret) -> Result<User, SpotifyError> {
        let endpoint = "/me";
        match self.get(endpoint, token).await? {
            Some(body) => parse::<User>(endpoint, &body),
            None => Err(SpotifyError::Malformed { endpoint, reason: "empty answer".into() }),
        }
    }

    /// One GET; `Ok(None)` for a 2xx without a body (204, or an empty 200).
    async fn get(&self, endpoint: &'static str, token: &Secret) -> Result<Option<Vec<u8>>, SpotifyError> {
        let url = format!("{}{}", self.api_base, endpoint);
        let response = self
            .http
            .get(&url)
            .header(header::AUTHORIZATION, format!("Bearer {}", token.expose()))
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = read_capped(response, endpoint).await.map_err(|e| match e {
            ReadError::Transport(e) => self.transport_error(e),
            ReadError::TooLarge => SpotifyError::Malformed {
                endpoint,
                reason: format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes"),
            },
        })?;
        let path = endpoint.split('?').next().unwrap_or(endpoint);
        tracing::debug!(path, status = status.as_u16(), bytes = body.len(), "spotify answered");
        match status {
            StatusCode::ACCEPTED => Err(SpotifyError::NotReady),
            s if s.is_success() => Ok((!body.iter().all(u8::is_ascii_whitespace)).then_some(body)),
            _ => Err(error_for(status, retry_after, &body, endpoint)),
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> SpotifyError {
        if e.is_timeout() {
            return SpotifyError::Timeout;
        }
        // reqwest's Display names the URL; ours carries no secret, and the source chain
        // says what actually failed (refused, DNS, TLS).
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason = s.to_string();
            source = s.source();
        }
        SpotifyError::Network { base: self.api_base.clone(), reason }
    }
}

enum ReadError {
    Transport(reqwest::Error),
    TooLarge,
}

/// Reads a body chunk by chunk and stops at [`MAX_RESPONSE_BYTES`].
async fn read_capped(mut response: reqwest::Response, _endpoint: &str) -> Result<Vec<u8>, ReadError> {
    if response.content_length().is_some_and(|n| n > MAX_RESPONSE_BYTES as u64) {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(ReadError::Transport)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn parse<T: serde::de::DeserializeOwned>(endpoint: &'static str, body: &[u8]) -> Result<T, SpotifyError> {
    serde_json::from_slice(body).map_err(|e| SpotifyError::Malformed { endpoint, reason: e.to_string() })
}

impl Client {
    /// Reads a JSON answer with a tolerant `model` reader and logs what it could not read.
    /// Only JSON that does not parse, or a shape `read` refuses, is [`SpotifyError::Malformed`].
    fn read<T>(
        &self,
        endpoint: &'static str,
        body: &[u8],
        read: impl FnOnce(&Value, &mut Vec<Problem>) -> Result<T, String>,
    ) -> Result<T, SpotifyError> {
        let answer: Value = parse(endpoint, body)?;
        let mut problems = Vec::new();
        let read =
            read(&answer, &mut problems).map_err(|reason| SpotifyError::Malformed { endpoint, reason });
        self.logged.note(endpoint, &problems);
        read
    }
}

/// The kinds of answer problems already logged: each is said once per client, since the same
/// odd device comes back on every poll. Bounded; past the bound, new kinds go to debug.
#[derive(Debug, Default)]
struct ProblemLog {
    said: Mutex<HashSet<(&'static str, model::ProblemKind)>>,
    /// An answer with more devices than are read was logged.
    said_cut: AtomicBool,
}

impl ProblemLog {
    fn note(&self, endpoint: &'static str, problems: &[Problem]) {
        if problems.is_empty() {
            return;
        }
        // A panic elsewhere while holding this lock leaves a set of kinds: still usable.
        let mut said = self.said.lock().unwrap_or_else(PoisonError::into_inner);
        for problem in problems {
            let key = (endpoint, problem.kind());
            let first = !said.contains(&key) && said.len() < MAX_LOGGED_PROBLEMS;
            if !first {
                tracing::debug!(endpoint, %problem, "part of Spotify's answer not read");
                continue;
            }
            said.insert(key);
            // The problem names a place, a field and a JSON kind, never a value: safe to log.
            match problem.outcome {
                model::Outcome::DeviceSkipped => tracing::warn!(
                    endpoint,
                    %problem,
                    "a device in Spotify's answer cannot be read; it is left out of this poll and \
                     absence proves nothing while it is (said once)"
                ),
                model::Outcome::Absent => tracing::info!(
                    endpoint,
                    %problem,
                    "a field in Spotify's answer has no meaningful reading; read as absent (said once)"
                ),
            }
        }
    }
}

/// Rate limits without a Retry-After still need a wait; Spotify says it "normally" sends one.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// The longest Retry-After believed: a day. Longer values are read as a day, so that what
/// is said ("waiting 1day") is the wait actually kept (the daemon caps it the same).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

fn error_for(
    status: StatusCode,
    retry_after: Option<u64>,
    body: &[u8],
    endpoint: &'static str,
) -> SpotifyError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let message = parsed.error.message.unwrap_or_default();
    match status {
        // The message text changed in 2026; never match on it for 401.
        StatusCode::UNAUTHORIZED => SpotifyError::Unauthorized,
        StatusCode::FORBIDDEN if message.to_ascii_lowercase().contains("not registered") => {
            SpotifyError::UserNotRegistered
        }
        StatusCode::FORBIDDEN => SpotifyError::Forbidden {
            message: if message.is_empty() { "no reason given".into() } else { clip(&message) },
        },
        StatusCode::TOO_MANY_REQUESTS => SpotifyError::RateLimited {
            retry_after: retry_after
                .map_or(DEFAULT_RETRY_AFTER, |s| Duration::from_secs(s).min(MAX_RETRY_AFTER)),
            quota: parsed.error.reason.as_deref() == Some("QUOTA_EXCEEDED"),
        },
        s if s.is_server_error() => SpotifyError::Server { status: s.as_u16() },
        s => SpotifyError::Unexpected {
            endpoint,
            status: s.as_u16(),
            message: if message.is_empty() { "no message".into() } else { clip(&message) },
        },
    }
}

/// Server text in our errors is untrusted: keep it short and on one line.
/// A message from the other side, made safe for logs and terminals: no controls, no bidi
/// overrides or invisible characters, one line, at most 200 characters.
fn clip(s: &str) -> String {
    crate::text::clean(s, 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_statuses_to_what_the_caller_must_do() {
        let e = error_for(
            StatusCode::UNAUTHORIZED,
            None,
            br#"{"error":{"status":401,"message":"whatever"}}"#,
            "/x",
        );
        assert!(matches!(e, SpotifyError::Unauthorized));
        let e = error_for(
            StatusCode::FORBIDDEN,
            None,
            br#"{"error":{"status":403,"message":"User not registered in the Developer Dashboard"}}"#,
            "/x",
        );
        assert!(matches!(e, SpotifyError::UserNotRegistered));
        assert!(e.to_string().contains("Developer Dashboard"));
        let e = error_for(StatusCode::FORBIDDEN, None, b"", "/x");
        assert!(matches!(e, SpotifyError::Forbidden { .. }));
        let hostile = br#"{"error":{"status":403,"message":"no \u202e\u001b[2Jway"}}"#;
        let e = error_for(StatusCode::FORBIDDEN, None, hostile, "/me");
        assert_eq!(e.to_string(), "Spotify refused the request (403): no [2Jway", "no ESC, no U+202E");
        let e = error_for(StatusCode::TOO_MANY_REQUESTS, Some(u64::MAX), b"", "/me");
        assert_eq!(e.to_string(), "Spotify is rate limiting this app (429); waiting 1day");
        let e = error_for(StatusCode::TOO_MANY_REQUESTS, Some(7), b"", "/x");
        assert!(
            matches!(e, SpotifyError::RateLimited { retry_after, quota: false } if retry_after == Duration::from_secs(7))
        );
        let e = error_for(
            StatusCode::TOO_MANY_REQUESTS,
            None,
            br#"{"error":{"status":429,"message":"x","reason":"QUOTA_EXCEEDED"}}"#,
            "/x",
        );
        assert!(
            matches!(e, SpotifyError::RateLimited { quota: true, retry_after } if retry_after == DEFAULT_RETRY_AFTER)
        );
        assert!(matches!(
            error_for(StatusCode::BAD_GATEWAY, None, b"<html>", "/x"),
            SpotifyError::Server { status: 502 }
        ));
        assert!(matches!(
            error_for(StatusCode::NOT_FOUND, None, b"", "/x"),
            SpotifyError::Unexpected { status: 404, .. }
        ));
    }

    #[test]
    fn each_kind_of_answer_problem_is_logged_once() {
        use model::{JsonKind, Outcome, Place};
        let at = |i, found| Problem {
            place: Place::Listed(i),
            field: Some("name"),
            found,
            outcome: Outcome::DeviceSkipped,
        };
        let log = ProblemLog::default();
        let said = |log: &ProblemLog| log.said.lock().map(|s| s.len()).unwrap_or_default();
        log.note("/me/player/devices", &[at(0, JsonKind::Object), at(3, JsonKind::Object)]);
        log.note("/me/player/devices", &[at(1, JsonKind::Object)]);
        assert_eq!(said(&log), 1, "the same problem at another index, or on the next poll, is not new");
        log.note("/me/player/devices", &[at(0, JsonKind::List)]);
        log.note("/me/player", &[at(0, JsonKind::List)]);
        assert_eq!(said(&log), 3);
        let many: Vec<Problem> = (0..200)
            .map(|i| Problem { field: Some(["a", "b", "c", "d", "e"][i % 5]), ..at(i, JsonKind::Object) })
            .collect();
        for endpoint in
            ["/1", "/2", "/3", "/4", "/5", "/6", "/7", "/8", "/9", "/10", "/11", "/12", "/13", "/14"]
        {
            log.note(endpoint, &many);
        }
        assert_eq!(said(&log), MAX_LOGGED_PROBLEMS, "bounded");
    }

    #[test]
    fn server_text_is_clipped_to_one_line() {
        let long = format!("a\nb{}", "x".repeat(500));
        let c = clip(&long);
        assert!(!c.contains('\n'));
        assert!(c.chars().count() <= 201);
    }
}
