//! The loopback side of `spotguard login`: wait for Spotify's redirect to the callback.
//!
//! Listens on the host and port of `spotify.redirect_uri` (a loopback literal; Spotify
//! refuses `localhost`) until a GET of the callback path carries this login's `state`, or the
//! time limit passes. Anything else (another path or method, a missing or wrong `state`)
//! gets a 400 page and the wait goes on: any program on the machine can reach a loopback
//! port, so a stray or hostile request must neither end the login nor feed it a code. The
//! first wrong request is logged once. An `error` from Spotify is kept escaped for the
//! terminal. The code is a secret: it is never logged.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::Html;
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
        let shared = Arc::new(Shared {
            path: self.path,
            expected_state: state.clone(),
            result: Mutex::new(Some(tx)),
            warned: AtomicBool::new(false),
        });
        // One handler for every path and method: it decides what is the callback.
        let app = axum::Router::new().fallback(callback).with_state(shared);
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
    /// The redirect URI's path: the only one answered.
    path: String,
    expected_state: Secret,
    /// Taken by the first request that carries the state: one answer per login.
    result: Mutex<Option<oneshot::Sender<Result<Secret, CallbackError>>>>,
    /// Whether a refused request was logged already (once per login, so a flood of them
    /// cannot flood the terminal).
    warned: AtomicBool,
}

/// Compares without stopping at the first difference, so timing tells nothing of the state.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn callback(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> (StatusCode, Html<String>) {
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let ours = method == Method::GET
        && uri.path() == shared.path
        && q.get("state").is_some_and(|s| same_secret(s, shared.expected_state.expose()));
    if !ours {
        if !shared.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the login callback refused a request that was not Spotify's answer to this login (another \
                 program on this machine, or an old browser tab); still waiting for the right one"
            );
        }
        return (
            StatusCode::BAD_REQUEST,
            page(
                "Not this login",
                "This is not Spotify's answer to the login spotguard is waiting for, so it was ignored. \
                 If you are logging in, finish on Spotify's page in the tab spotguard opened.",
            ),
        );
    }
    let result = match (q.get("error"), q.get("code")) {
        (Some(e), _) if e == "access_denied" => Err(CallbackError::Denied),
        (Some(e), _) => Err(CallbackError::Failed(shown(e))),
        (None, Some(code)) if !code.is_empty() => Ok(Secret::new(code.clone())),
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

/// The authorization server's `error` as the terminal may show it: at most 60 characters,
/// controls, bidi overrides and invisible characters escaped (`\u{1b}`), never raw.
fn shown(error: &str) -> String {
    let mut cut: String = error.chars().take(60).collect();
    if cut.len() < error.len() {
        cut.push('…');
    }
    crate::text::terminal(&cut)
}

fn page(title: &str, text: &str) -> Html<String> {
    let text = crate::text::escape_markup(text);
    Html(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>spotguard: {title}</title></head>\
         <body style=\"font-family:sans-serif;max-width:36em;margin:4em auto\"><h1>{title}</h1><p>{text}</p></body></html>"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_from_the_callback_is_escaped_and_cut() {
        let e = shown("server_error\u{1b}]0;pwned\u{7}\u{202e}txt.exe");
        assert!(!e.chars().any(|c| c.is_control() || c == '\u{202e}'), "{e:?}");
        assert!(e.contains("\\u{1b}") && e.contains("\\u{202e}"), "{e}");
        assert_eq!(shown(&"x".repeat(100)).chars().count(), 61);
    }

    #[test]
    fn the_state_comparison_needs_every_byte() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }
}
