//! The loopback side of `spotguard login`: wait for Spotify's redirect to the callback.
//!
//! Listens on the host and port of `spotify.redirect_uri` (a loopback literal; Spotify
//! refuses `localhost`), answers only the callback path (anything else, such as
//! `/favicon.ico`, gets a 404 and the wait goes on), checks `state`, and gives the browser a
//! plain page either way. Bounded by a time limit. The code is a secret: it is never logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::Secret;

/// How `spotguard login` can fail before tokens exist.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    #[error("the login was refused on Spotify's page (access_denied); nothing was stored")]
    Denied,
    #[error("Spotify's login page answered with an error ({0}); nothing was stored")]
    Failed(String),
    #[error(
        "the callback's state did not match this login (an old or forged redirect); nothing was \
         stored: run `spotguard login` again"
    )]
    StateMismatch,
    #[error("the callback carried no authorization code; nothing was stored")]
    MissingCode,
    #[error("no answer from Spotify within {}; run `spotguard login` again", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error(
        "port {port} on {host} is in use, so the login callback cannot listen there: stop what uses \
         it, or set spotify.redirect_uri to another port and register that URI for your app"
    )]
    PortInUse { host: String, port: u16 },
    #[error("cannot listen for the login callback on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error(
        "spotify.redirect_uri {0:?} must be http on a loopback literal with a port and a path, e.g. \
         http://127.0.0.1:8898/callback"
    )]
    BadRedirect(String),
}

/// A listener bound to the redirect URI's address, ready before the browser is sent off.
#[derive(Debug)]
pub struct Callback {
    listener: TcpListener,
    path: String,
}

impl Callback {
    /// Binds the loopback address of `redirect_uri`.
    pub async fn bind(redirect_uri: &str) -> Result<Callback, CallbackError> {
        let (addr, path) = crate::config::loopback_redirect(redirect_uri)
            .ok_or_else(|| CallbackError::BadRedirect(redirect_uri.to_string()))?;
        let listener = TcpListener::bind(addr).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                CallbackError::PortInUse { host: addr.ip().to_string(), port: addr.port() }
            }
            _ => CallbackError::Listen { addr: addr.to_string(), reason: e.to_string() },
        })?;
        Ok(Callback { listener, path })
    }

    /// Waits for the redirect, at most `limit`; returns the authorization code.
    pub async fn wait(self, state: &Secret, limit: Duration) -> Result<Secret, CallbackError> {
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared { expected_state: state.clone(), result: Mutex::new(Some(tx)) });
        let app = axum::Router::new()
            .route(&self.path, get(callback))
            .fallback(|| async { (StatusCode::NOT_FOUND, "Not found") })
            .with_state(shared);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(self.listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await
        });
        let outcome = tokio::time::timeout(limit, rx).await;
        // Let the browser receive its page before the listener goes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
        match outcome {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CallbackError::MissingCode),
            Err(_) => Err(CallbackError::TimedOut(limit)),
        }
    }
}

struct Shared {
    expected_state: Secret,
    /// Taken by the first callback: one answer per login.
    result: Mutex<Option<oneshot::Sender<Result<Secret, CallbackError>>>>,
}

async fn callback(
    State(shared): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, Html<String>) {
    let result = match (q.get("error"), q.get("state"), q.get("code")) {
        (_, state, _) if state.map(String::as_str) != Some(shared.expected_state.expose()) => {
            Err(CallbackError::StateMismatch)
        }
        (Some(e), _, _) if e == "access_denied" => Err(CallbackError::Denied),
        (Some(e), _, _) => Err(CallbackError::Failed(crate::text::clean(e, 60))),
        (None, _, Some(code)) if !code.is_empty() => Ok(Secret::new(code.clone())),
        _ => Err(CallbackError::MissingCode),
    };
    let page = match &result {
        // The code is exchanged after this page is sent: the terminal has the final word.
        Ok(_) => page(
            "Almost done",
            "spotguard received Spotify's answer and is finishing the login: the terminal says when it is done. \
             You can close this tab.",
        ),
        Err(e) => page("Login failed", &format!("spotguard did not log in: {e}. You can close this tab.")),
    };
    let status = if result.is_ok() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    let sender = shared.result.lock().unwrap_or_else(|e| e.into_inner()).take();
    match sender {
        Some(tx) => {
            let _ = tx.send(result);
            (status, page)
        }
        None => (StatusCode::GONE, self::page("Already done", "This login has already finished.")),
    }
}

fn page(title: &str, text: &str) -> Html<String> {
    let text = crate::text::escape_markup(text);
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>spotguard: {title}</title></head>\
         <body style=\"font-family:sans-serif;max-width:36em;margin:4em auto\"><h1>{title}</h1><p>{text}</p></body></html>"
    ))
}
