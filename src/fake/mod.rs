//! A fake Spotify Web API and Accounts service served over HTTP on loopback, for
//! integration tests, `spotguard demo` and the benchmark script.
//!
//! It owns its in-memory state (devices, playback, user, accepted tokens, queued
//! faults, request log) and answers like the real API: same status codes, the
//! `{"error":{"status":N,"message":"..."}}` body, 204 with no body, `Retry-After`.
//! The Accounts service (`/authorize`, `/api/token`: PKCE, refresh-token rotation,
//! access-token expiry) lives in `accounts.rs` and is served by the same server.
//! It never listens on anything but a loopback address, never talks to the real
//! Spotify, and never persists anything.

mod accounts;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Most request records kept by [`FakeHandle::requests`]; older ones are dropped
/// (per-path counts stay exact).
const MAX_LOGGED_REQUESTS: usize = 10_000;

/// Largest [`Fault::Huge`] accepted over `POST /__fake/faults`, so a stray
/// benchmark value cannot make the fake allocate gigabytes.
const MAX_HUGE_BYTES_OVER_HTTP: usize = 256 * 1024 * 1024;

/// How long [`FakeSpotify::stop`] waits for in-flight requests before aborting.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Message of the 401 the fake sends for a missing or unknown bearer token.
const UNAUTHORIZED_MESSAGE: &str = "Missing/invalid/expired access token";

/// A running fake Spotify server. Dropping it also stops serving (without waiting);
/// call [`FakeSpotify::stop`] to wait until the server task has ended.
#[derive(Debug)]
pub struct FakeSpotify {
    /// The bound loopback address.
    addr: SocketAddr,
    /// Shared state, also handed out as [`FakeHandle`].
    handle: FakeHandle,
    /// Flipped to `true` (or dropped) to start graceful shutdown.
    shutdown: watch::Sender<bool>,
    /// The spawned axum server.
    task: JoinHandle<io::Result<()>>,
}

impl FakeSpotify {
    /// Binds 127.0.0.1:0 and serves in a spawned tokio task.
    pub async fn start() -> io::Result<FakeSpotify> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Binds the given address; refuses (io::ErrorKind::InvalidInput) a non-loopback address.
    pub async fn start_on(addr: SocketAddr) -> io::Result<FakeSpotify> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("the fake Spotify only listens on loopback, not on {addr}"),
            ));
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let handle = FakeHandle::new();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let app = App { handle: handle.clone(), shutdown: shutdown_rx.clone() };
        let router = router(app);
        let mut signal_rx = shutdown_rx;
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    // Err means the sender was dropped: stop as well.
                    let _ = signal_rx.wait_for(|stopping| *stopping).await;
                })
                .await
        });
        tracing::debug!(%addr, "fake Spotify listening");
        Ok(FakeSpotify { addr, handle, shutdown, task })
    }

    /// The bound loopback address (with the real port when started on port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the Web API, e.g. "http://127.0.0.1:PORT/v1".
    pub fn api_base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Base URL of the Accounts service, e.g. "http://127.0.0.1:PORT": it serves
    /// `GET /authorize` and `POST /api/token` (see the `FakeHandle` Accounts methods,
    /// starting with [`FakeHandle::register_app`]).
    pub fn accounts_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A cheap, cloneable handle to script and inspect the fake's state.
    pub fn handle(&self) -> FakeHandle {
        self.handle.clone()
    }

    /// Stops serving (graceful shutdown of the axum server), waits for the task.
    ///
    /// Pending [`Fault::Hang`] sleeps are cut short; if requests are still in
    /// flight after a few seconds the task is aborted.
    pub async fn stop(self) {
        let FakeSpotify { addr, shutdown, mut task, .. } = self;
        shutdown.send_replace(true);
        match tokio::time::timeout(STOP_GRACE, &mut task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::warn!(%addr, %err, "fake Spotify server failed"),
            Ok(Err(err)) => tracing::warn!(%addr, %err, "fake Spotify task failed"),
            Err(_) => {
                tracing::warn!(%addr, "fake Spotify did not stop in time; aborting");
                task.abort();
                let _ = task.await;
            }
        }
        tracing::debug!(%addr, "fake Spotify stopped");
    }
}

/// Handle to the state of a running [`FakeSpotify`]; clones share the same state.
#[derive(Clone, Debug)]
pub struct FakeHandle {
    /// The shared state, only ever locked briefly and never across an `.await`.
    state: Arc<Mutex<State>>,
}

impl FakeHandle {
    /// A fresh state: no devices, nothing playing, default user, no tokens, no faults.
    fn new() -> Self {
        FakeHandle { state: Arc::new(Mutex::new(State::default())) }
    }

    /// Locks the state, ignoring poisoning (the state stays usable after a panic).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the devices (raw DeviceObject JSON) served as `{"devices":[...]}`.
    pub fn set_devices(&self, devices: Vec<Value>) {
        self.lock().devices = devices;
    }

    /// Sets the playback state served by `GET /v1/me/player`; `None` => 204 with an empty body.
    pub fn set_playback(&self, playback: Option<Value>) {
        self.lock().playback = playback;
    }

    /// Sets the user served by `GET /v1/me` (default
    /// `{"id":"fakeuser","display_name":"Fake User","type":"user","uri":"spotify:user:fakeuser"}`).
    pub fn set_user(&self, user: Value) {
        self.lock().user = user;
    }

    /// Queues a fault; each API request (not `/__fake`) that passes the token
    /// check consumes the next one, in order.
    pub fn push_fault(&self, fault: Fault) {
        self.lock().faults.push_back(fault);
    }

    /// Adds an access token the API accepts as `Authorization: Bearer <token>`.
    pub fn add_token(&self, token: &str) {
        self.lock().tokens.insert(token.to_owned());
    }

    /// Forgets all access tokens, added or issued by the token endpoint: every API
    /// request then gets 401 until [`FakeHandle::add_token`] or a new token is issued.
    /// Refresh tokens are untouched (see [`FakeHandle::revoke_refresh_tokens`]).
    pub fn revoke_tokens(&self) {
        let mut state = self.lock();
        state.tokens.clear();
        state.accounts.forget_access_tokens();
    }

    /// Every API request seen (not `/__fake` ones), in order; only the last
    /// 10 000 are kept.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().log.iter().cloned().collect()
    }

    /// How many API requests hit exactly this path (e.g. "/v1/me/player/devices"),
    /// query string excluded. Exact even after the request log dropped old records.
    pub fn request_count(&self, path: &str) -> usize {
        self.lock().counts.get(path).copied().unwrap_or(0)
    }

    /// When each bearer token asked for the device list (its last 1,000 times).
    pub fn polls_by_token(&self) -> HashMap<String, Vec<std::time::Instant>> {
        self.lock().polls_by_token.iter().map(|(t, p)| (t.clone(), p.iter().copied().collect())).collect()
    }

    /// When `path` was last requested (the request's arrival), if ever.
    pub fn last_request_at(&self, path: &str) -> Option<std::time::Instant> {
        self.lock().last_at.get(path).copied()
    }

    /// Records one API request in the bounded log and the exact counters.
    fn record(&self, record: RequestRecord) {
        let mut state = self.lock();
        *state.counts.entry(record.path.clone()).or_insert(0) += 1;
        state.last_at.insert(record.path.clone(), std::time::Instant::now());
        state.total += 1;
        if state.log.len() >= MAX_LOGGED_REQUESTS {
            state.log.pop_front();
        }
        state.log.push_back(record);
    }
}

/// One API request the fake saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method, e.g. "GET".
    pub method: String,
    /// Request path without the query, e.g. "/v1/me/player".
    pub path: String,
    /// Raw query string without the `?`, if any.
    pub query: Option<String>,
}

/// A scripted misbehaviour, consumed by one API request.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// Any status with the Web API error body; message given.
    Status {
        /// HTTP status code (100..=999; an invalid one is answered as 500).
        status: u16,
        /// The `error.message` of the body.
        message: String,
    },
    /// 429 with `Retry-After: <secs>`; if `quota` is true the error body carries "reason": "QUOTA_EXCEEDED" inside the error object.
    RateLimited {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: u64,
        /// Whether to add `"reason":"QUOTA_EXCEEDED"` to the error object.
        quota: bool,
    },
    /// 503 with a Spotify error body.
    Unavailable,
    /// Accept the request and never answer within this many milliseconds (sleep then answer normally).
    Hang {
        /// How long to sleep before answering.
        millis: u64,
    },
    /// 200 with a body that is not JSON: `{"devices": [` truncated.
    Malformed,
    /// 202 Accepted with empty body (the old Connect "not ready yet" answer).
    Accepted,
    /// 200 whose body is larger than `bytes` bytes (valid JSON devices list padded with a long string field), to test response-size caps.
    Huge {
        /// The body is strictly longer than this many bytes.
        bytes: usize,
    },
}

/// Builds a DeviceObject with all documented fields (volume 50, not private, not restricted):
/// the demo's stand-in builds them, and the fake serves the same.
pub use crate::cli::demo::stand_in::device;

/// Builds a `/v1/me/player` CurrentlyPlayingContextObject: `device` is playing
/// `track` by `artist` right now. Track and artist ids are derived from the names,
/// so the same arguments give the same URIs.
pub fn playing(device: Value, track: &str, artist: &str) -> Value {
    let track_id = fake_id(&format!("track:{artist}:{track}"));
    let artist_id = fake_id(&format!("artist:{artist}"));
    json!({
        "device": device,
        "shuffle_state": false,
        "repeat_state": "off",
        "timestamp": chrono::Utc::now().timestamp_millis(),
        "context": null,
        "progress_ms": 42_000,
        "is_playing": true,
        "currently_playing_type": "track",
        "item": {
            "id": track_id,
            "name": track,
            "type": "track",
            "uri": format!("spotify:track:{track_id}"),
            "duration_ms": 215_000,
            "is_local": false,
            "artists": [{
                "id": artist_id,
                "name": artist,
                "type": "artist",
                "uri": format!("spotify:artist:{artist_id}"),
            }],
            "album": { "name": format!("{track} (Single)"), "type": "album" },
        },
        "actions": { "disallows": {} },
    })
}

/// A deterministic 22-character base62 id (the shape of Spotify ids) from a seed.
fn fake_id(seed: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    // FNV-1a, then an LCG to stretch it to 22 digits.
    let mut x = seed
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    (0..22)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            char::from(ALPHABET[((x >> 33) % 62) as usize])
        })
        .collect()
}

/// Everything the fake knows. Locked briefly; never held across an `.await`.
struct State {
    /// Served by `GET /v1/me/player/devices`.
    devices: Vec<Value>,
    /// Served by `GET /v1/me/player`; `None` => 204.
    playback: Option<Value>,
    /// Served by `GET /v1/me`.
    user: Value,
    /// Pending faults, consumed front first.
    faults: VecDeque<Fault>,
    /// Accepted bearer tokens that never expire ([`FakeHandle::add_token`]).
    tokens: HashSet<String>,
    /// The Accounts service: apps, codes, issued access and refresh tokens.
    accounts: accounts::Accounts,
    /// The last [`MAX_LOGGED_REQUESTS`] API requests.
    log: VecDeque<RequestRecord>,
    /// Exact number of API requests per path.
    counts: BTreeMap<String, usize>,
    /// Exact number of API requests.
    total: u64,
    /// When each path was last requested, for latency measurements.
    last_at: BTreeMap<String, std::time::Instant>,
    /// When each bearer token asked for the device list (the last [`MAX_POLLS_PER_TOKEN`]):
    /// one token per account, so the clock benchmark sees each account's polls.
    polls_by_token: HashMap<String, VecDeque<std::time::Instant>>,
}

/// How many device-list requests per token [`FakeHandle::polls_by_token`] keeps.
const MAX_POLLS_PER_TOKEN: usize = 1000;

impl Default for State {
    fn default() -> Self {
        State {
            devices: Vec::new(),
            playback: None,
            user: json!({
                "id": "fakeuser",
                "display_name": "Fake User",
                "type": "user",
                "uri": "spotify:user:fakeuser",
            }),
            faults: VecDeque::new(),
            tokens: HashSet::new(),
            accounts: accounts::Accounts::default(),
            log: VecDeque::new(),
            counts: BTreeMap::new(),
            total: 0,
            last_at: BTreeMap::new(),
            polls_by_token: HashMap::new(),
        }
    }
}

impl fmt::Debug for State {
    /// A summary: token values and the full request log are left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("devices", &self.devices.len())
            .field("playing", &self.playback.is_some())
            .field("faults", &self.faults)
            .field("tokens", &self.tokens.len())
            .field("accounts", &self.accounts)
            .field("logged_requests", &self.log.len())
            .field("total_requests", &self.total)
            .finish_non_exhaustive()
    }
}

/// What the axum handlers share.
#[derive(Clone)]
struct App {
    /// The fake's state.
    handle: FakeHandle,
    /// Becomes `true` when the server is stopping; cuts [`Fault::Hang`] short.
    shutdown: watch::Receiver<bool>,
}

impl App {
    /// [`Fault::Hang`]: answer nothing for `millis`, or until the server stops.
    async fn hang(&self, millis: u64) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(millis)) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => {}
        }
    }
}

/// The Accounts service, control endpoints under `/__fake`; everything else goes to [`api`].
fn router(app: App) -> Router {
    Router::new()
        .route("/authorize", any(accounts::authorize))
        .route("/api/token", any(accounts::token))
        .route("/__fake/apps", post(accounts::control_apps))
        .route("/__fake/consent", put(accounts::control_consent))
        .route("/__fake/rotation", put(accounts::control_rotation))
        .route("/__fake/revoke_refresh", post(accounts::control_revoke_refresh))
        .route("/__fake/token_faults", post(accounts::control_token_fault))
        .route("/__fake/devices", put(control_devices))
        .route("/__fake/playback", put(control_playback))
        .route("/__fake/user", put(control_user))
        .route("/__fake/faults", post(control_fault))
        .route("/__fake/tokens", post(control_add_token).delete(control_revoke_tokens))
        .route("/__fake/stats", get(control_stats))
        .fallback(api)
        .with_state(app)
}

/// The Web API error body `{"error":{"status":N,"message":"..."}}`, plus `reason` if given.
fn api_error(status: StatusCode, message: &str, reason: Option<&str>) -> Response {
    let mut error = json!({ "status": status.as_u16(), "message": message });
    if let (Some(reason), Some(obj)) = (reason, error.as_object_mut()) {
        obj.insert("reason".to_owned(), Value::from(reason));
    }
    (status, axum::Json(json!({ "error": error }))).into_response()
}

/// A 200 with a JSON body given as raw text.
fn raw_json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response()
}

/// A response with no body at all (no content type either).
fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// Whether `Authorization: Bearer <token>` carries a token the fake accepts: one
/// added, or one the token endpoint issued that has not expired.
fn authorized(headers: &HeaderMap, handle: &FakeHandle) -> bool {
    let Some(token) = bearer(headers) else {
        return false;
    };
    let state = handle.lock();
    state.tokens.contains(token) || state.accounts.access_valid(token, std::time::Instant::now())
}

/// Every request that is not a control endpoint: record, check the token (under
/// `/v1`), apply the next fault, then answer like the Web API.
async fn api(AxumState(app): AxumState<App>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_owned();
    if path == "/__fake" || path.starts_with("/__fake/") {
        return api_error(StatusCode::NOT_FOUND, "Unknown control endpoint", None);
    }
    tracing::trace!(%method, %path, "fake Spotify request");
    app.handle.record(RequestRecord {
        method: method.as_str().to_owned(),
        path: path.clone(),
        query: uri.query().map(str::to_owned),
    });
    if path != "/v1" && !path.starts_with("/v1/") {
        return api_error(StatusCode::NOT_FOUND, "Service not found", None);
    }
    if !authorized(&headers, &app.handle) {
        return api_error(StatusCode::UNAUTHORIZED, UNAUTHORIZED_MESSAGE, None);
    }
    if path == "/v1/me/player/devices"
        && let Some(token) = bearer(&headers)
    {
        let mut state = app.handle.lock();
        let polls = state.polls_by_token.entry(token.to_owned()).or_default();
        if polls.len() >= MAX_POLLS_PER_TOKEN {
            polls.pop_front();
        }
        polls.push_back(std::time::Instant::now());
    }
    let fault = app.handle.lock().faults.pop_front();
    match fault {
        None => {}
        Some(Fault::Hang { millis }) => app.hang(millis).await,
        Some(other) => {
            if let Some(response) = fault_response(other, &app.handle) {
                return response;
            }
        }
    }
    answer(&method, &path, &app.handle)
}

/// The answer a fault forces, or `None` when the request is answered normally
/// ([`Fault::Hang`], whose sleep happens in [`api`]).
fn fault_response(fault: Fault, handle: &FakeHandle) -> Option<Response> {
    let response = match fault {
        Fault::Status { status, message } => match StatusCode::from_u16(status) {
            Ok(status) => api_error(status, &message, None),
            Err(_) => api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("fake: invalid fault status {status}: {message}"),
                None,
            ),
        },
        Fault::RateLimited { retry_after_secs, quota } => {
            let reason = quota.then_some("QUOTA_EXCEEDED");
            let mut response = api_error(StatusCode::TOO_MANY_REQUESTS, "API rate limit exceeded", reason);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
        Fault::Unavailable => api_error(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable", None),
        Fault::Malformed => raw_json(StatusCode::OK, "{\"devices\": [".to_owned()),
        Fault::Accepted => empty(StatusCode::ACCEPTED),
        Fault::Huge { bytes } => {
            let devices = serde_json::to_string(&handle.lock().devices).unwrap_or_else(|_| "[]".to_owned());
            let head = format!("{{\"devices\":{devices},\"padding\":\"");
            let tail = "\"}";
            let pad = bytes.saturating_sub(head.len() + tail.len()) + 1;
            let mut body = String::with_capacity(head.len() + pad + tail.len());
            body.push_str(&head);
            body.extend(std::iter::repeat_n('x', pad));
            body.push_str(tail);
            raw_json(StatusCode::OK, body)
        }
        Fault::Hang { .. } => return None,
    };
    Some(response)
}

/// The normal Web API answer for an authorized `/v1` request.
fn answer(method: &Method, path: &str, handle: &FakeHandle) -> Response {
    let known = matches!(path, "/v1/me" | "/v1/me/player" | "/v1/me/player/devices");
    if !known {
        return api_error(StatusCode::NOT_FOUND, "Service not found", None);
    }
    if method != Method::GET {
        return api_error(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", None);
    }
    let state = handle.lock();
    match path {
        "/v1/me" => (StatusCode::OK, axum::Json(state.user.clone())).into_response(),
        "/v1/me/player" => match &state.playback {
            Some(playback) => (StatusCode::OK, axum::Json(playback.clone())).into_response(),
            None => empty(StatusCode::NO_CONTENT),
        },
        _ => (StatusCode::OK, axum::Json(json!({ "devices": state.devices.clone() }))).into_response(),
    }
}

/// A 400 for a control request whose body is unusable.
fn bad_control(message: String) -> Response {
    api_error(StatusCode::BAD_REQUEST, &message, None)
}

/// `PUT /__fake/devices` with a JSON array of DeviceObjects.
async fn control_devices(AxumState(app): AxumState<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<Vec<Value>>(&body) {
        Ok(devices) => {
            app.handle.set_devices(devices);
            empty(StatusCode::NO_CONTENT)
        }
        Err(err) => bad_control(format!("expected a JSON array of devices: {err}")),
    }
}

/// `PUT /__fake/playback` with a JSON object, or `null` for nothing playing.
async fn control_playback(AxumState(app): AxumState<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Null) => {
            app.handle.set_playback(None);
            empty(StatusCode::NO_CONTENT)
        }
        Ok(playback @ Value::Object(_)) => {
            app.handle.set_playback(Some(playback));
            empty(StatusCode::NO_CONTENT)
        }
        Ok(_) => bad_control("expected a JSON object or null".to_owned()),
        Err(err) => bad_control(format!("expected a JSON object or null: {err}")),
    }
}

/// `PUT /__fake/user` with the JSON object `GET /v1/me` should serve.
async fn control_user(AxumState(app): AxumState<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<Value>(&body) {
        Ok(user @ Value::Object(_)) => {
            app.handle.set_user(user);
            empty(StatusCode::NO_CONTENT)
        }
        Ok(_) => bad_control("expected a JSON object".to_owned()),
        Err(err) => bad_control(format!("expected a JSON object: {err}")),
    }
}

/// `POST /__fake/faults` with one [`Fault`] as JSON, e.g. `{"kind":"unavailable"}`.
async fn control_fault(AxumState(app): AxumState<App>, body: Bytes) -> Response {
    let fault = match serde_json::from_slice::<Fault>(&body) {
        Ok(fault) => fault,
        Err(err) => return bad_control(format!("expected a fault: {err}")),
    };
    if let Err(message) = check_fault(&fault) {
        return bad_control(message);
    }
    app.handle.push_fault(fault);
    empty(StatusCode::NO_CONTENT)
}

/// Refuses a fault received over HTTP that has an invalid status or is too huge.
fn check_fault(fault: &Fault) -> Result<(), String> {
    match fault {
        Fault::Status { status, .. } if StatusCode::from_u16(*status).is_err() => {
            Err(format!("invalid HTTP status {status}"))
        }
        Fault::Huge { bytes } if *bytes > MAX_HUGE_BYTES_OVER_HTTP => {
            Err(format!("huge fault of {bytes} bytes exceeds {MAX_HUGE_BYTES_OVER_HTTP}"))
        }
        _ => Ok(()),
    }
}

/// Body of `POST /__fake/tokens`.
#[derive(serde::Deserialize)]
struct TokenBody {
    /// The access token to accept.
    token: String,
}

/// `POST /__fake/tokens` with `{"token":"..."}`.
async fn control_add_token(AxumState(app): AxumState<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<TokenBody>(&body) {
        Ok(TokenBody { token }) if !token.trim().is_empty() && token.trim() == token => {
            app.handle.add_token(&token);
            empty(StatusCode::NO_CONTENT)
        }
        Ok(_) => bad_control("token must be non-empty without surrounding spaces".to_owned()),
        Err(err) => bad_control(format!("expected {{\"token\":\"...\"}}: {err}")),
    }
}

/// `DELETE /__fake/tokens`: revoke every token.
async fn control_revoke_tokens(AxumState(app): AxumState<App>) -> Response {
    app.handle.revoke_tokens();
    empty(StatusCode::NO_CONTENT)
}

/// `GET /__fake/stats` → `{"requests": {"<path>": count, ...}, "total": n}`.
async fn control_stats(AxumState(app): AxumState<App>) -> Response {
    let state = app.handle.lock();
    let stats = json!({ "requests": state.counts, "total": state.total });
    drop(state);
    (StatusCode::OK, axum::Json(stats)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A client that never goes through a proxy from the environment.
    fn new_client() -> reqwest::Client {
        reqwest::Client::builder().no_proxy().build().unwrap_or_else(|e| panic!("client: {e}"))
    }

    /// Starts a fake that accepts the token "tok".
    async fn started() -> (FakeSpotify, FakeHandle, reqwest::Client) {
        let fake = FakeSpotify::start().await.unwrap_or_else(|e| panic!("start: {e}"));
        let handle = fake.handle();
        handle.add_token("tok");
        (fake, handle, new_client())
    }

    /// `GET {api_base}{path}` with the bearer token "tok".
    async fn get(fake: &FakeSpotify, client: &reqwest::Client, path: &str) -> reqwest::Response {
        client
            .get(format!("{}{path}", fake.api_base()))
            .bearer_auth("tok")
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// The body parsed as JSON.
    async fn json_of(response: reqwest::Response) -> Value {
        response.json().await.unwrap_or_else(|e| panic!("json body: {e}"))
    }

    /// Asserts the Spotify error body shape and returns the error object.
    async fn error_of(response: reqwest::Response, status: u16) -> Value {
        assert_eq!(response.status().as_u16(), status);
        let body = json_of(response).await;
        assert_eq!(body["error"]["status"], status);
        assert!(body["error"]["message"].is_string(), "{body}");
        body["error"].clone()
    }

    #[tokio::test]
    async fn addresses_and_non_loopback_refused() {
        let fake = FakeSpotify::start().await.unwrap_or_else(|e| panic!("start: {e}"));
        let addr = fake.addr();
        assert!(addr.ip().is_loopback());
        assert_ne!(addr.port(), 0);
        assert_eq!(fake.api_base(), format!("http://127.0.0.1:{}/v1", addr.port()));
        assert_eq!(fake.accounts_base(), format!("http://127.0.0.1:{}", addr.port()));
        fake.stop().await;

        for bad in ["0.0.0.0:0", "192.0.2.1:0", "[::]:0"] {
            let addr: SocketAddr = bad.parse().unwrap_or_else(|e| panic!("{bad}: {e}"));
            let err = FakeSpotify::start_on(addr).await.err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[tokio::test]
    async fn dropping_stops_serving() {
        let fake = FakeSpotify::start().await.unwrap_or_else(|e| panic!("start: {e}"));
        let addr = fake.addr();
        drop(fake);
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("still serving on {addr} after drop");
    }

    #[tokio::test]
    async fn token_check() {
        let fake = FakeSpotify::start().await.unwrap_or_else(|e| panic!("start: {e}"));
        let handle = fake.handle();
        let client = new_client();
        let url = format!("{}/me/player/devices", fake.api_base());

        // Fresh fake: no token is valid, and no header at all is refused too.
        let r = client.get(&url).send().await.unwrap_or_else(|e| panic!("{e}"));
        let error = error_of(r, 401).await;
        assert_eq!(error["message"], UNAUTHORIZED_MESSAGE);
        let r = get(&fake, &client, "/me/player/devices").await;
        error_of(r, 401).await;

        handle.add_token("tok");
        assert_eq!(get(&fake, &client, "/me/player/devices").await.status(), 200);
        let r = client.get(&url).bearer_auth("other").send().await.unwrap_or_else(|e| panic!("{e}"));
        error_of(r, 401).await;

        handle.revoke_tokens();
        error_of(get(&fake, &client, "/me/player/devices").await, 401).await;
        // 401s are still counted as requests.
        assert_eq!(handle.request_count("/v1/me/player/devices"), 5);
        fake.stop().await;
    }

    #[tokio::test]
    async fn devices_playback_user_and_404() {
        let (fake, handle, client) = started().await;

        let body = json_of(get(&fake, &client, "/me/player/devices").await).await;
        assert_eq!(body, json!({ "devices": [] }));

        let phone = device("d1", "Phone", "Smartphone", true);
        handle.set_devices(vec![phone.clone(), device("d2", "Den", "Speaker", false)]);
        let body = json_of(get(&fake, &client, "/me/player/devices").await).await;
        assert_eq!(body["devices"][0], phone);
        assert_eq!(body["devices"][1]["name"], "Den");
        assert_eq!(body["devices"][1]["supports_volume"], true);

        // Nothing playing: 204 with an empty body.
        let r = get(&fake, &client, "/me/player").await;
        assert_eq!(r.status(), 204);
        let bytes = r.bytes().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(bytes.is_empty());

        let now = playing(phone.clone(), "Song", "Band");
        handle.set_playback(Some(now.clone()));
        let body = json_of(get(&fake, &client, "/me/player").await).await;
        assert_eq!(body, now);
        assert_eq!(body["device"]["id"], "d1");
        assert_eq!(body["item"]["artists"][0]["name"], "Band");
        assert!(body["item"]["uri"].as_str().is_some_and(|u| u.starts_with("spotify:track:")));
        assert_eq!(playing(phone, "Song", "Band")["item"]["uri"], now["item"]["uri"]);

        let body = json_of(get(&fake, &client, "/me").await).await;
        assert_eq!(body["id"], "fakeuser");
        handle.set_user(json!({ "id": "alice", "type": "user" }));
        assert_eq!(json_of(get(&fake, &client, "/me").await).await["id"], "alice");

        let error = error_of(get(&fake, &client, "/me/nope").await, 404).await;
        assert_eq!(error["message"], "Service not found");
        let r = client
            .post(format!("{}/me/player/devices", fake.api_base()))
            .bearer_auth("tok")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        error_of(r, 405).await;
        fake.stop().await;
    }

    #[tokio::test]
    async fn faults_in_order() {
        let (fake, handle, client) = started().await;
        handle.set_devices(vec![device("d1", "Phone", "Smartphone", true)]);
        let path = "/me/player/devices";

        handle.push_fault(Fault::Status {
            status: 403,
            message: "User not registered in the Developer Dashboard".to_owned(),
        });
        handle.push_fault(Fault::RateLimited { retry_after_secs: 17, quota: false });
        handle.push_fault(Fault::RateLimited { retry_after_secs: 86_400, quota: true });
        handle.push_fault(Fault::Unavailable);
        handle.push_fault(Fault::Malformed);
        handle.push_fault(Fault::Accepted);
        handle.push_fault(Fault::Huge { bytes: 100_000 });

        let error = error_of(get(&fake, &client, path).await, 403).await;
        assert_eq!(error["message"], "User not registered in the Developer Dashboard");

        let r = get(&fake, &client, path).await;
        assert_eq!(r.headers()[header::RETRY_AFTER.as_str()], "17");
        let error = error_of(r, 429).await;
        assert!(error.get("reason").is_none());

        let r = get(&fake, &client, path).await;
        assert_eq!(r.headers()[header::RETRY_AFTER.as_str()], "86400");
        let error = error_of(r, 429).await;
        assert_eq!(error["reason"], "QUOTA_EXCEEDED");

        error_of(get(&fake, &client, path).await, 503).await;

        let r = get(&fake, &client, path).await;
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");

        let r = get(&fake, &client, path).await;
        assert_eq!(r.status(), 202);
        assert!(r.bytes().await.unwrap_or_else(|e| panic!("{e}")).is_empty());

        let r = get(&fake, &client, path).await;
        assert_eq!(r.status(), 200);
        let bytes = r.bytes().await.unwrap_or_else(|e| panic!("{e}"));
        assert!(bytes.len() > 100_000, "{}", bytes.len());
        let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body["devices"][0]["id"], "d1");

        // Queue drained: normal answers again.
        let body = json_of(get(&fake, &client, path).await).await;
        assert_eq!(body["devices"][0]["id"], "d1");
        fake.stop().await;
    }

    #[tokio::test]
    async fn fault_not_consumed_by_401() {
        let (fake, handle, client) = started().await;
        handle.push_fault(Fault::Unavailable);
        let r = client.get(format!("{}/me", fake.api_base())).send().await.unwrap_or_else(|e| panic!("{e}"));
        error_of(r, 401).await;
        error_of(get(&fake, &client, "/me").await, 503).await;
        assert_eq!(get(&fake, &client, "/me").await.status(), 200);
        fake.stop().await;
    }

    #[tokio::test]
    async fn hang_delays_then_answers() {
        let (fake, handle, client) = started().await;
        handle.push_fault(Fault::Hang { millis: 300 });
        let started_at = Instant::now();
        let r = get(&fake, &client, "/me/player").await;
        assert!(started_at.elapsed() >= Duration::from_millis(300));
        assert_eq!(r.status(), 204);

        // A client timeout shorter than the hang fires.
        handle.push_fault(Fault::Hang { millis: 5_000 });
        let err = client
            .get(format!("{}/me", fake.api_base()))
            .bearer_auth("tok")
            .timeout(Duration::from_millis(100))
            .send()
            .await
            .err()
            .unwrap_or_else(|| panic!("hang answered early"));
        assert!(err.is_timeout(), "{err}");

        // Stopping does not wait for pending hangs.
        handle.push_fault(Fault::Hang { millis: 60_000 });
        let base = fake.api_base();
        let pending =
            tokio::spawn(
                async move { new_client().get(format!("{base}/me")).bearer_auth("tok").send().await },
            );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stopping = Instant::now();
        fake.stop().await;
        assert!(stopping.elapsed() < Duration::from_secs(2));
        let _ = pending.await;
    }

    #[tokio::test]
    async fn control_endpoints_over_http() {
        let (fake, handle, client) = started().await;
        let base = fake.accounts_base();
        let send = |request: reqwest::RequestBuilder| async move {
            request.send().await.unwrap_or_else(|e| panic!("{e}"))
        };

        let devices = json!([device("x1", "Laptop", "Computer", true)]);
        let r = send(client.put(format!("{base}/__fake/devices")).json(&devices)).await;
        assert_eq!(r.status(), 204);
        let body = json_of(get(&fake, &client, "/me/player/devices").await).await;
        assert_eq!(body["devices"], devices);

        let now = playing(devices[0].clone(), "Tune", "Artist");
        let r = send(client.put(format!("{base}/__fake/playback")).json(&now)).await;
        assert_eq!(r.status(), 204);
        assert_eq!(json_of(get(&fake, &client, "/me/player").await).await, now);
        let r = send(client.put(format!("{base}/__fake/playback")).body("null")).await;
        assert_eq!(r.status(), 204);
        assert_eq!(get(&fake, &client, "/me/player").await.status(), 204);

        let r = send(
            client
                .post(format!("{base}/__fake/faults"))
                .body(r#"{"kind":"rate_limited","retry_after_secs":5,"quota":true}"#),
        )
        .await;
        assert_eq!(r.status(), 204);
        let r = get(&fake, &client, "/me").await;
        assert_eq!(r.headers()[header::RETRY_AFTER.as_str()], "5");
        assert_eq!(error_of(r, 429).await["reason"], "QUOTA_EXCEEDED");

        let r = send(client.post(format!("{base}/__fake/tokens")).json(&json!({ "token": "second" }))).await;
        assert_eq!(r.status(), 204);
        let r = send(client.get(format!("{}/me", fake.api_base())).bearer_auth("second")).await;
        assert_eq!(r.status(), 200);

        // Bad control bodies are refused and change nothing.
        for (path, body) in [
            ("/__fake/devices", r#"{"devices":[]}"#),
            ("/__fake/playback", "[1]"),
            ("/__fake/playback", "not json"),
        ] {
            let r = send(client.put(format!("{base}{path}")).body(body)).await;
            error_of(r, 400).await;
        }
        for body in [r#"{"kind":"explode"}"#, r#"{"kind":"status","status":42,"message":"x"}"#] {
            let r = send(client.post(format!("{base}/__fake/faults")).body(body)).await;
            error_of(r, 400).await;
        }
        let r = send(client.post(format!("{base}/__fake/tokens")).body(r#"{"token":""}"#)).await;
        error_of(r, 400).await;
        assert_eq!(json_of(get(&fake, &client, "/me/player/devices").await).await["devices"], devices);

        let r = send(client.delete(format!("{base}/__fake/tokens"))).await;
        assert_eq!(r.status(), 204);
        error_of(get(&fake, &client, "/me").await, 401).await;

        let r = send(client.get(format!("{base}/__fake/stats"))).await;
        let stats = json_of(r).await;
        assert_eq!(stats["requests"]["/v1/me/player/devices"], 2);
        assert_eq!(stats["requests"]["/v1/me/player"], 2);
        assert_eq!(stats["requests"]["/v1/me"], 3);
        assert_eq!(stats["total"], 7);
        // Control requests are never recorded.
        assert_eq!(handle.requests().len(), 7);
        assert!(handle.requests().iter().all(|r| !r.path.starts_with("/__fake")));
        fake.stop().await;
    }

    #[tokio::test]
    async fn request_log_and_counts() {
        let (fake, handle, client) = started().await;
        let r = client
            .get(format!("{}/me/player?market=SE&additional_types=episode", fake.api_base()))
            .bearer_auth("tok")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), 204);
        get(&fake, &client, "/me/player/devices").await;
        let r = client
            .get(format!("{}/nope", fake.accounts_base()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        error_of(r, 404).await;

        assert_eq!(
            handle.requests(),
            vec![
                RequestRecord {
                    method: "GET".to_owned(),
                    path: "/v1/me/player".to_owned(),
                    query: Some("market=SE&additional_types=episode".to_owned()),
                },
                RequestRecord {
                    method: "GET".to_owned(),
                    path: "/v1/me/player/devices".to_owned(),
                    query: None,
                },
                RequestRecord { method: "GET".to_owned(), path: "/nope".to_owned(), query: None },
            ]
        );
        assert_eq!(handle.request_count("/v1/me/player"), 1);
        assert_eq!(handle.request_count("/v1/me/player/devices"), 1);
        assert_eq!(handle.request_count("/v1/me"), 0);
        fake.stop().await;
    }

    #[test]
    fn request_log_is_bounded_counts_exact() {
        let handle = FakeHandle::new();
        for i in 0..MAX_LOGGED_REQUESTS + 5 {
            handle.record(RequestRecord {
                method: "GET".to_owned(),
                path: "/v1/me".to_owned(),
                query: Some(i.to_string()),
            });
        }
        let log = handle.requests();
        assert_eq!(log.len(), MAX_LOGGED_REQUESTS);
        assert_eq!(log[0].query.as_deref(), Some("5"));
        assert_eq!(handle.request_count("/v1/me"), MAX_LOGGED_REQUESTS + 5);
    }

    #[test]
    fn fault_json_shape() {
        let fault: Fault =
            serde_json::from_value(json!({ "kind": "hang", "millis": 10 })).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(fault, Fault::Hang { millis: 10 });
        let value = serde_json::to_value(Fault::Huge { bytes: 3 }).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(value, json!({ "kind": "huge", "bytes": 3 }));
        let value = serde_json::to_value(Fault::Unavailable).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(value, json!({ "kind": "unavailable" }));
    }
}
