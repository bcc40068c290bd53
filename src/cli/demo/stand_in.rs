//! The demo's stand-in for the Spotify Web API: the two endpoints a poll reads, one token,
//! on loopback.
//!
//! `spotguard demo` needs no more than this: `GET /v1/me/player/devices` and
//! `GET /v1/me/player` (204 while nothing plays), each refused with Spotify's 401 body without
//! the one access token. The full fake Spotify (the Accounts service, faults, the request log,
//! control routes) is test code behind the `fake` feature and is not in the release binary.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::State as AxumState;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// What the stand-in serves now.
#[derive(Debug, Default)]
struct Served {
    devices: Vec<Value>,
    playback: Option<Value>,
}

#[derive(Debug, Clone)]
struct App {
    token: Arc<str>,
    served: Arc<Mutex<Served>>,
}

/// The running stand-in; stopped when [`StandIn::stop`] is called or it is dropped.
#[derive(Debug)]
pub struct StandIn {
    addr: SocketAddr,
    served: Arc<Mutex<Served>>,
    task: tokio::task::JoinHandle<()>,
}

impl StandIn {
    /// Serves on 127.0.0.1 (a free port), accepting `token` only.
    pub async fn start(token: &str) -> std::io::Result<StandIn> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let served = Arc::new(Mutex::new(Served::default()));
        let app = App { token: token.into(), served: served.clone() };
        let router = axum::Router::new()
            .route("/v1/me/player/devices", get(devices))
            .route("/v1/me/player", get(playback))
            .with_state(app);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!("the demo's stand-in for Spotify stopped: {e}");
            }
        });
        Ok(StandIn { addr, served, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Web API base URL, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn api_base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn set_devices(&self, devices: Vec<Value>) {
        self.lock().devices = devices;
    }

    pub fn set_playback(&self, playback: Option<Value>) {
        self.lock().playback = playback;
    }

    pub fn stop(self) {
        self.task.abort();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Served> {
        self.served.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A DeviceObject as the Web API sends it.
pub fn device(id: &str, name: &str, kind: &str, active: bool) -> Value {
    json!({
        "id": id,
        "is_active": active,
        "is_private_session": false,
        "is_restricted": false,
        "name": name,
        "type": kind,
        "volume_percent": 50,
        "supports_volume": true,
    })
}

/// A `/v1/me/player` answer: `device` is playing `track` by `artist`.
pub fn playing(device: Value, track: &str, artist: &str) -> Value {
    json!({
        "device": device,
        "is_playing": true,
        "currently_playing_type": "track",
        "progress_ms": 42_000,
        "item": { "name": track, "type": "track", "artists": [{ "name": artist, "type": "artist" }] },
    })
}

fn authorized(app: &App, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == &*app.token)
}

fn unauthorized() -> Response {
    let body = json!({ "error": { "status": 401, "message": "Invalid access token" } });
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

async fn devices(AxumState(app): AxumState<App>, headers: HeaderMap) -> Response {
    if !authorized(&app, &headers) {
        return unauthorized();
    }
    let devices = app.served.lock().unwrap_or_else(PoisonError::into_inner).devices.clone();
    axum::Json(json!({ "devices": devices })).into_response()
}

async fn playback(AxumState(app): AxumState<App>, headers: HeaderMap) -> Response {
    if !authorized(&app, &headers) {
        return unauthorized();
    }
    match app.served.lock().unwrap_or_else(PoisonError::into_inner).playback.clone() {
        Some(p) => axum::Json(p).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Secret;
    use crate::spotify::Client;

    #[tokio::test]
    async fn the_client_reads_what_the_stand_in_serves_and_only_with_its_token() {
        let s = StandIn::start("demo-token").await.expect("start");
        let client = Client::new(&s.api_base()).expect("client");
        s.set_devices(vec![device("a1", "My laptop", "Computer", true)]);
        let seen = client.devices(&Secret::new("demo-token")).await.expect("devices");
        assert_eq!(seen.devices.len(), 1);
        assert!(client.playback(&Secret::new("demo-token")).await.expect("204").is_none());
        s.set_playback(Some(playing(device("a1", "My laptop", "Computer", true), "Song", "Band")));
        let p = client.playback(&Secret::new("demo-token")).await.expect("playback").expect("playing");
        assert!(p.is_playing);
        let refused = client.devices(&Secret::new("another")).await;
        assert!(matches!(refused, Err(crate::spotify::SpotifyError::Unauthorized)), "{refused:?}");
        s.stop();
    }
}
