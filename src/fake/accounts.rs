//! The fake Accounts service (`accounts.spotify.com`), served next to the fake Web API.
//!
//! It owns the registered apps and their redirect URIs, the consent answer, the pending
//! authorization codes, the access tokens it issued (with their expiry), the refresh
//! tokens (with rotation and the 6-month lifetime), the token endpoint's own fault queue
//! and its per-grant request counts. It answers like the real service does for the
//! Authorization Code with PKCE flow:
//!
//! - `GET /authorize` checks the client, the redirect URI (exact match, loopback
//!   literals registered without a port accept any port, `localhost` and plain-HTTP
//!   hosts are refused as insecure), `response_type=code` and the S256 challenge, then
//!   redirects (302) back with `code` and `state`, or with `error=access_denied`.
//! - `POST /api/token` (form-encoded, no client secret, no Basic auth) exchanges a code
//!   once against its verifier, and refreshes, rotating the refresh token unless told
//!   not to. Errors use the RFC 6749 body `{"error":"...","error_description":"..."}`.
//!
//! Token values, codes and verifiers are never logged, and the `Debug` output of the
//! state only counts them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{DateTime, Months, Utc};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{App, FakeHandle, Fault, RequestRecord, bad_control, check_fault, empty, raw_json};

/// How long an authorization code can be exchanged.
const CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// Default access-token lifetime, the `expires_in` Spotify sends in practice.
const DEFAULT_ACCESS_LIFETIME_SECS: u64 = 3600;

/// Refresh tokens die this long after the user's authorization; refreshing does not extend it.
const REFRESH_LIFETIME: Months = Months::new(6);

/// The scope of the tokens minted by [`FakeHandle::issue_tokens`].
const ISSUED_SCOPE: &str = "user-read-playback-state";

/// Characters of the random codes and tokens (the base64url alphabet, as Spotify's are).
const TOKEN_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Authorize-page errors, shown as HTML with status 400 (no redirect back to the app).
const INVALID_CLIENT: &str = "INVALID_CLIENT: Invalid client";
/// The redirect URI is not registered for the app.
const INVALID_REDIRECT_URI: &str = "INVALID_CLIENT: Invalid redirect URI";
/// `localhost`, or plain HTTP to anything but a loopback IP literal.
const INSECURE_REDIRECT_URI: &str = "INVALID_CLIENT: Insecure redirect URI";

/// One app registered in the (fake) developer dashboard.
struct Registered {
    /// Redirect URIs, compared exactly (see [`redirect_allowed`]).
    redirect_uris: Vec<String>,
}

/// What `/authorize` remembers about a code until it is exchanged or expires.
struct PendingCode {
    /// The app it was issued to.
    client_id: String,
    /// The redirect URI of the authorize request; the exchange must repeat it exactly.
    redirect_uri: String,
    /// The S256 challenge the verifier must hash to.
    challenge: String,
    /// The scope requested, whitespace-normalised.
    scope: String,
    /// After this the code is refused.
    expires_at: Instant,
}

/// What a refresh token stands for.
#[derive(Clone)]
struct RefreshGrant {
    /// The app it was issued to.
    client_id: String,
    /// The granted scope, carried to every access token minted from it.
    scope: String,
    /// When the user authorised the app; the token dies [`REFRESH_LIFETIME`] later.
    authorized_at: DateTime<Utc>,
}

/// The Accounts service's state, a part of the fake's state (locked with it).
pub(super) struct Accounts {
    /// Registered apps by client id.
    apps: BTreeMap<String, Registered>,
    /// Whether the user approves the consent screen.
    approve: bool,
    /// Whether a refresh answers with a new refresh token and invalidates the old one.
    rotate: bool,
    /// `expires_in` of newly issued access tokens, in seconds.
    access_lifetime_secs: u64,
    /// Codes not exchanged yet.
    codes: HashMap<String, PendingCode>,
    /// Issued access tokens and when they expire (`None`: too far away to represent).
    access: HashMap<String, Option<Instant>>,
    /// Valid refresh tokens.
    refresh: HashMap<String, RefreshGrant>,
    /// Token-endpoint faults, consumed front first by each `POST /api/token`.
    faults: VecDeque<Fault>,
    /// `POST /api/token` requests per `grant_type` as sent ("" when absent).
    token_requests: BTreeMap<String, usize>,
    /// The decoded query of the last `GET /authorize`.
    last_authorize_query: Option<Vec<(String, String)>>,
}

impl Default for Accounts {
    fn default() -> Self {
        Accounts {
            apps: BTreeMap::new(),
            approve: true,
            rotate: true,
            access_lifetime_secs: DEFAULT_ACCESS_LIFETIME_SECS,
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            faults: VecDeque::new(),
            token_requests: BTreeMap::new(),
            last_authorize_query: None,
        }
    }
}

impl fmt::Debug for Accounts {
    /// A summary: codes and tokens are only counted, never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Accounts")
            .field("apps", &self.apps.keys().collect::<Vec<_>>())
            .field("approve", &self.approve)
            .field("rotate", &self.rotate)
            .field("access_lifetime_secs", &self.access_lifetime_secs)
            .field("codes", &self.codes.len())
            .field("access_tokens", &self.access.len())
            .field("refresh_tokens", &self.refresh.len())
            .field("token_faults", &self.faults)
            .field("token_requests", &self.token_requests)
            .finish_non_exhaustive()
    }
}

/// An RFC 6749 error answer of the token endpoint.
#[derive(Debug)]
struct OAuthError {
    /// HTTP status (400 for everything the client got wrong).
    status: StatusCode,
    /// The `error` code, e.g. "invalid_grant".
    error: &'static str,
    /// The `error_description`.
    description: String,
}

impl OAuthError {
    /// A 400 with this error code and description.
    fn bad(error: &'static str, description: impl Into<String>) -> Self {
        OAuthError { status: StatusCode::BAD_REQUEST, error, description: description.into() }
    }

    /// 400 `invalid_request`.
    fn request(description: impl Into<String>) -> Self {
        Self::bad("invalid_request", description)
    }

    /// 400 `invalid_client` "Invalid client".
    fn client() -> Self {
        Self::bad("invalid_client", "Invalid client")
    }

    /// 400 `invalid_grant`.
    fn grant(description: &str) -> Self {
        Self::bad("invalid_grant", description)
    }

    /// The JSON body.
    fn body(&self) -> Value {
        json!({ "error": self.error, "error_description": self.description })
    }
}

impl Accounts {
    /// Whether `token` is an issued access token that has not expired at `now`.
    pub(super) fn access_valid(&self, token: &str, now: Instant) -> bool {
        self.access.get(token).is_some_and(|expires_at| expires_at.is_none_or(|at| at > now))
    }

    /// Forgets every issued access token.
    pub(super) fn forget_access_tokens(&mut self) {
        self.access.clear();
    }

    /// A new access token valid for the configured lifetime (expired ones are dropped).
    fn mint_access(&mut self, now: Instant) -> String {
        self.access.retain(|_, expires_at| expires_at.is_none_or(|at| at > now));
        let token = random_token("BQ", 128);
        let expires_at = now.checked_add(Duration::from_secs(self.access_lifetime_secs));
        self.access.insert(token.clone(), expires_at);
        token
    }

    /// A new refresh token for `grant`.
    fn mint_refresh(&mut self, grant: RefreshGrant) -> String {
        let token = random_token("AQ", 128);
        self.refresh.insert(token.clone(), grant);
        token
    }

    /// The token response JSON: a new access token, plus `refresh_token` if given.
    fn token_json(&mut self, scope: &str, refresh_token: Option<String>, now: Instant) -> Value {
        let mut body = json!({
            "access_token": self.mint_access(now),
            "token_type": "Bearer",
            "scope": scope,
            "expires_in": self.access_lifetime_secs,
        });
        if let (Some(refresh_token), Some(object)) = (refresh_token, body.as_object_mut()) {
            object.insert("refresh_token".to_owned(), Value::from(refresh_token));
        }
        body
    }

    /// Decides a `GET /authorize`: the redirect back to the app, or the page shown instead.
    fn authorize(&mut self, query: &[(String, String)], now: Instant) -> Response {
        let Some(app) = param(query, "client_id").and_then(|id| self.apps.get(id)) else {
            return error_page(INVALID_CLIENT);
        };
        let Some(redirect_uri) = param(query, "redirect_uri") else {
            return error_page(INVALID_REDIRECT_URI);
        };
        if let Err(message) = redirect_allowed(&app.redirect_uris, redirect_uri) {
            return error_page(message);
        }
        if let Some(name) = repeated(query) {
            return plain(StatusCode::BAD_REQUEST, &format!("Parameter {name} given more than once"));
        }
        match param(query, "response_type") {
            Some("code") => {}
            Some(other) => {
                return plain(StatusCode::BAD_REQUEST, &format!("Unsupported response_type: {other}"));
            }
            None => return plain(StatusCode::BAD_REQUEST, "Missing required parameter: response_type"),
        }
        if param(query, "code_challenge_method") != Some("S256") {
            return plain(StatusCode::BAD_REQUEST, "code_challenge_method must be S256");
        }
        let Some(challenge) = param(query, "code_challenge") else {
            return plain(StatusCode::BAD_REQUEST, "Missing required parameter: code_challenge");
        };
        if challenge.len() != 43
            || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return plain(
                StatusCode::BAD_REQUEST,
                "code_challenge must be base64url(SHA-256(code_verifier)) without padding",
            );
        }
        let state = param(query, "state");
        if !self.approve {
            let mut params = vec![("error", "access_denied")];
            params.extend(state.map(|state| ("state", state)));
            return redirect(redirect_uri, &params);
        }
        let client_id = param(query, "client_id").unwrap_or_default().to_owned();
        let scope =
            param(query, "scope").unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
        self.codes.retain(|_, pending| pending.expires_at > now);
        let code = random_token("AQ", 160);
        let pending = PendingCode {
            client_id,
            redirect_uri: redirect_uri.to_owned(),
            challenge: challenge.to_owned(),
            scope,
            expires_at: now + CODE_LIFETIME,
        };
        let mut params = vec![("code", code.as_str())];
        params.extend(state.map(|state| ("state", state)));
        let response = redirect(redirect_uri, &params);
        if response.status() == StatusCode::FOUND {
            self.codes.insert(code, pending);
        }
        response
    }

    /// Decides a `POST /api/token` whose form was decoded: the token JSON or the error.
    fn token(
        &mut self,
        headers: &HeaderMap,
        form: &[(String, String)],
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Result<Value, OAuthError> {
        if let Some(name) = repeated(form) {
            return Err(OAuthError::request(format!("Parameter {name} given more than once")));
        }
        let grant_type = required(form, "grant_type")?;
        if grant_type != "authorization_code" && grant_type != "refresh_token" {
            return Err(OAuthError::bad(
                "unsupported_grant_type",
                format!("grant_type must be authorization_code or refresh_token, not {grant_type}"),
            ));
        }
        // A PKCE client has no secret to send; any secret sent is a wrong one.
        if headers.contains_key(header::AUTHORIZATION) || param(form, "client_secret").is_some() {
            return Err(OAuthError::bad("invalid_client", "Invalid client secret"));
        }
        let client_id = required(form, "client_id")?;
        if grant_type == "authorization_code" {
            self.exchange_code(form, client_id, now, wall)
        } else {
            self.refresh(form, client_id, now, wall)
        }
    }

    /// `grant_type=authorization_code`: exchanges a code once, checking the PKCE verifier.
    fn exchange_code(
        &mut self,
        form: &[(String, String)],
        client_id: &str,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Result<Value, OAuthError> {
        let code = required(form, "code")?;
        let redirect_uri = required(form, "redirect_uri")?;
        let verifier = required(form, "code_verifier")?;
        if !valid_verifier(verifier) {
            return Err(OAuthError::request(
                "code_verifier must be 43-128 characters of A-Z, a-z, 0-9, '-', '.', '_' and '~'",
            ));
        }
        if !self.apps.contains_key(client_id) {
            return Err(OAuthError::client());
        }
        let pending = match self.codes.get(code) {
            Some(pending) if pending.expires_at > now => pending,
            _ => return Err(OAuthError::grant("Invalid authorization code")),
        };
        if pending.client_id != client_id {
            return Err(OAuthError::client());
        }
        if pending.redirect_uri != redirect_uri {
            return Err(OAuthError::grant("Invalid redirect URI"));
        }
        if challenge_of(verifier) != pending.challenge {
            return Err(OAuthError::grant("code_verifier was incorrect"));
        }
        let Some(pending) = self.codes.remove(code) else {
            return Err(OAuthError::grant("Invalid authorization code"));
        };
        let grant =
            RefreshGrant { client_id: pending.client_id, scope: pending.scope.clone(), authorized_at: wall };
        let refresh_token = self.mint_refresh(grant);
        Ok(self.token_json(&pending.scope, Some(refresh_token), now))
    }

    /// `grant_type=refresh_token`: a new access token, and a new refresh token if rotating.
    fn refresh(
        &mut self,
        form: &[(String, String)],
        client_id: &str,
        now: Instant,
        wall: DateTime<Utc>,
    ) -> Result<Value, OAuthError> {
        let refresh_token = required(form, "refresh_token")?;
        if !self.apps.contains_key(client_id) {
            return Err(OAuthError::client());
        }
        let Some(grant) = self.refresh.get(refresh_token).cloned() else {
            return Err(OAuthError::grant("Refresh token revoked"));
        };
        if grant.client_id != client_id {
            return Err(OAuthError::client());
        }
        if grant.authorized_at.checked_add_months(REFRESH_LIFETIME).is_none_or(|end| wall >= end) {
            self.refresh.remove(refresh_token);
            return Err(OAuthError::grant("Refresh token expired"));
        }
        let rotated = if self.rotate {
            self.refresh.remove(refresh_token);
            Some(self.mint_refresh(grant.clone()))
        } else {
            None
        };
        Ok(self.token_json(&grant.scope, rotated, now))
    }
}

impl FakeHandle {
    /// Registers an app (or replaces the redirect URIs of a registered one), as in
    /// Spotify's developer dashboard. Redirect URIs must then match exactly, except that
    /// `http://127.0.0.1/path` or `http://[::1]/path` registered without a port accept
    /// that URI with any port. `localhost` URIs and plain-HTTP URIs to other hosts are
    /// accepted here but refused by `/authorize` as insecure, as Spotify does since 2025-11-27.
    pub fn register_app(&self, client_id: &str, redirect_uris: &[&str]) {
        let redirect_uris = redirect_uris.iter().map(|uri| (*uri).to_owned()).collect();
        self.lock().accounts.apps.insert(client_id.to_owned(), Registered { redirect_uris });
    }

    /// Whether the user approves the consent screen (default `true`); when `false`,
    /// `/authorize` redirects back with `error=access_denied`.
    pub fn set_consent(&self, approve: bool) {
        self.lock().accounts.approve = approve;
    }

    /// Whether a refresh rotates the refresh token (default `true`, what Spotify does for
    /// PKCE): the answer carries a new `refresh_token` and the old one gets
    /// `invalid_grant`. When `false` the answer has no `refresh_token` and the old one
    /// stays valid.
    pub fn set_rotation(&self, rotate: bool) {
        self.lock().accounts.rotate = rotate;
    }

    /// Lifetime (`expires_in`) of access tokens issued from now on, in seconds (default 3600).
    /// Tokens already issued keep their expiry.
    pub fn set_access_lifetime(&self, secs: u64) {
        self.lock().accounts.access_lifetime_secs = secs;
    }

    /// Invalidates every refresh token, as "Remove access" on Spotify's apps page does:
    /// refreshing then gets 400 `invalid_grant` "Refresh token revoked". Access tokens
    /// already issued keep working until they expire, as with the real service.
    pub fn revoke_refresh_tokens(&self) {
        self.lock().accounts.refresh.clear();
    }

    /// Queues a fault for the token endpoint; each `POST /api/token` consumes the next
    /// one, before looking at the request (so a faulted request changes no token state).
    /// [`Fault::Unavailable`] gives 503, [`Fault::Status`] that status with
    /// `{"error":"server_error","error_description":message}`, [`Fault::RateLimited`] 429
    /// with `Retry-After`, [`Fault::Malformed`] a 200 with truncated JSON,
    /// [`Fault::Accepted`] a 202 with no body. [`Fault::Hang`] delays and
    /// [`Fault::Huge`] pads the body; both then answer the request normally.
    /// This queue is separate from the Web API's ([`FakeHandle::push_fault`]).
    pub fn push_token_fault(&self, fault: Fault) {
        self.lock().accounts.faults.push_back(fault);
    }

    /// How many `POST /api/token` requests carried this `grant_type` (e.g.
    /// "authorization_code", "refresh_token"; "" counts those without one), including
    /// refused and faulted ones.
    pub fn token_requests(&self, grant_type: &str) -> usize {
        self.lock().accounts.token_requests.get(grant_type).copied().unwrap_or(0)
    }

    /// Mints a valid (access token, refresh token) pair for `client_id` without the browser
    /// dance, as if the user had just authorised the app with scope
    /// "user-read-playback-state". Registers the app (with no redirect URIs) if it is unknown.
    /// The access token expires like any issued one; the refresh token rotates like any other.
    pub fn issue_tokens(&self, client_id: &str) -> (String, String) {
        let mut state = self.lock();
        let accounts = &mut state.accounts;
        accounts.apps.entry(client_id.to_owned()).or_insert_with(|| Registered { redirect_uris: Vec::new() });
        let access = accounts.mint_access(Instant::now());
        let refresh = accounts.mint_refresh(RefreshGrant {
            client_id: client_id.to_owned(),
            scope: ISSUED_SCOPE.to_owned(),
            authorized_at: Utc::now(),
        });
        (access, refresh)
    }

    /// Expires every access token issued by the token endpoint or [`FakeHandle::issue_tokens`]
    /// now: the Web API answers 401 to them. Tokens added with [`FakeHandle::add_token`]
    /// never expire and are not affected; refresh tokens stay valid.
    pub fn expire_access_tokens(&self) {
        self.lock().accounts.forget_access_tokens();
    }

    /// The decoded query of the last `GET /authorize`, in order (e.g. to check the scopes,
    /// `code_challenge_method=S256` and `state`); `None` before the first one.
    pub fn last_authorize_query(&self) -> Option<Vec<(String, String)>> {
        self.lock().accounts.last_authorize_query.clone()
    }
}

/// Records an Accounts request in the fake's request log (path only, never a body).
fn record(handle: &FakeHandle, method: &Method, uri: &Uri) {
    tracing::trace!(%method, path = uri.path(), "fake Spotify Accounts request");
    handle.record(RequestRecord {
        method: method.as_str().to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
    });
}

/// `GET /authorize`: validates the request and redirects back to the app.
pub(super) async fn authorize(AxumState(app): AxumState<App>, method: Method, uri: Uri) -> Response {
    record(&app.handle, &method, &uri);
    if method != Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed");
    }
    let query = match Query::<Vec<(String, String)>>::try_from_uri(&uri) {
        Ok(Query(query)) => query,
        Err(err) => return plain(StatusCode::BAD_REQUEST, &format!("Malformed query: {err}")),
    };
    let mut state = app.handle.lock();
    let response = state.accounts.authorize(&query, Instant::now());
    state.accounts.last_authorize_query = Some(query);
    response
}

/// `POST /api/token`: consumes a token fault, then exchanges a code or refreshes.
pub(super) async fn token(
    AxumState(app): AxumState<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    record(&app.handle, &method, &uri);
    if method != Method::POST {
        let error = OAuthError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            error: "invalid_request",
            description: "Method not allowed".to_owned(),
        };
        return token_answer(Err(error), None);
    }
    let form = form.map(|Form(form)| form);
    let fault = {
        let mut state = app.handle.lock();
        let grant_type = form.as_deref().ok().and_then(|form| param(form, "grant_type")).unwrap_or_default();
        *state.accounts.token_requests.entry(grant_type.to_owned()).or_insert(0) += 1;
        state.accounts.faults.pop_front()
    };
    let mut pad_beyond = None;
    match fault {
        None => {}
        Some(Fault::Hang { millis }) => app.hang(millis).await,
        Some(Fault::Huge { bytes }) => pad_beyond = Some(bytes),
        Some(other) => return token_fault_response(other),
    }
    let outcome = match form {
        Ok(form) => app.handle.lock().accounts.token(&headers, &form, Instant::now(), Utc::now()),
        Err(FormRejection::InvalidFormContentType(_)) => {
            Err(OAuthError::request("Content-Type must be application/x-www-form-urlencoded"))
        }
        Err(err) => Err(OAuthError::request(format!("Malformed form body: {err}"))),
    };
    token_answer(outcome, pad_beyond)
}

/// The token endpoint's JSON answer (no caching, as RFC 6749 requires), padded with a
/// `padding` string field so the body is longer than `pad_beyond` bytes if given.
fn token_answer(outcome: Result<Value, OAuthError>, pad_beyond: Option<usize>) -> Response {
    let (status, body) = match outcome {
        Ok(body) => (StatusCode::OK, body),
        Err(error) => (error.status, error.body()),
    };
    let mut text = body.to_string();
    if let Some(bytes) = pad_beyond
        && text.ends_with('}')
        && text.len() > 2
    {
        text.pop();
        let pad = bytes.saturating_sub(text.len() + 14) + 1;
        text.push_str(",\"padding\":\"");
        text.extend(std::iter::repeat_n('x', pad));
        text.push_str("\"}");
    }
    let mut response = raw_json(status, text);
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The answer a token fault forces ([`Fault::Hang`] and [`Fault::Huge`] are handled by
/// [`token`] and answered normally).
fn token_fault_response(fault: Fault) -> Response {
    let server_error = |status: StatusCode, message: &str| {
        let error = OAuthError { status, error: "server_error", description: message.to_owned() };
        token_answer(Err(error), None)
    };
    match fault {
        Fault::Status { status, message } => match StatusCode::from_u16(status) {
            Ok(status) => server_error(status, &message),
            Err(_) => server_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("fake: invalid fault status {status}: {message}"),
            ),
        },
        Fault::RateLimited { retry_after_secs, .. } => {
            let mut response = server_error(StatusCode::TOO_MANY_REQUESTS, "API rate limit exceeded");
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            response
        }
        Fault::Unavailable => server_error(StatusCode::SERVICE_UNAVAILABLE, "Service unavailable"),
        Fault::Malformed => raw_json(StatusCode::OK, "{\"access_token\": \"".to_owned()),
        Fault::Accepted => empty(StatusCode::ACCEPTED),
        Fault::Hang { .. } | Fault::Huge { .. } => {
            server_error(StatusCode::INTERNAL_SERVER_ERROR, "fake: fault handled elsewhere")
        }
    }
}

/// The Spotify-style HTML error page the browser shows instead of redirecting.
fn error_page(message: &'static str) -> Response {
    let body = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Error - Spotify</title></head>\
         <body><h1>Oops! Something went wrong</h1><p class=\"error\">{message}</p></body></html>\n"
    );
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// A plain-text answer.
fn plain(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message.to_owned()).into_response()
}

/// A 302 to `base` with `params` appended to its query (percent-encoded).
fn redirect(base: &str, params: &[(&str, &str)]) -> Response {
    let mut location = base.to_owned();
    let mut separator = if base.contains('?') { '&' } else { '?' };
    for (name, value) in params {
        location.push(separator);
        location.push_str(name);
        location.push('=');
        location.push_str(&percent_encode(value));
        separator = '&';
    }
    match HeaderValue::from_str(&location) {
        Ok(location) => {
            let mut response = empty(StatusCode::FOUND);
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        Err(_) => error_page(INVALID_REDIRECT_URI),
    }
}

/// Percent-encodes everything but the RFC 3986 unreserved characters.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The first value of parameter `name`, if present and not empty.
fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str()).filter(|v| !v.is_empty())
}

/// Parameter `name` of a token request, or 400 `invalid_request`.
fn required<'a>(form: &'a [(String, String)], name: &str) -> Result<&'a str, OAuthError> {
    param(form, name).ok_or_else(|| OAuthError::request(format!("Missing required parameter: {name}")))
}

/// The name of the first parameter given twice (RFC 6749 forbids repeating one).
fn repeated(pairs: &[(String, String)]) -> Option<&str> {
    pairs
        .iter()
        .enumerate()
        .find(|(i, (key, _))| pairs[..*i].iter().any(|(earlier, _)| earlier == key))
        .map(|(_, (key, _))| key.as_str())
}

/// Whether `redirect_uri` may be used with an app that registered `registered`:
/// `Err` carries the page's message.
fn redirect_allowed(registered: &[String], redirect_uri: &str) -> Result<(), &'static str> {
    if insecure(redirect_uri) {
        return Err(INSECURE_REDIRECT_URI);
    }
    if redirect_uri.contains('#') {
        return Err(INVALID_REDIRECT_URI);
    }
    if registered.iter().any(|uri| uri == redirect_uri) {
        return Ok(());
    }
    match without_loopback_port(redirect_uri) {
        Some(portless) if registered.contains(&portless) => Ok(()),
        _ => Err(INVALID_REDIRECT_URI),
    }
}

/// Whether Spotify refuses this redirect URI as insecure: any `localhost` host, or plain
/// HTTP to anything but the loopback literals `127.0.0.1` and `[::1]`.
fn insecure(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or_default()),
        None => host_port.split(':').next().unwrap_or_default().to_owned(),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    scheme.eq_ignore_ascii_case("http") && host != "127.0.0.1" && host != "[::1]"
}

/// For `http://127.0.0.1:PORT/...` or `http://[::1]:PORT/...` with a valid port, the same
/// URI without the port (the form registered for dynamic ports).
fn without_loopback_port(uri: &str) -> Option<String> {
    ["http://127.0.0.1:", "http://[::1]:"].into_iter().find_map(|prefix| {
        let rest = uri.strip_prefix(prefix)?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (port, tail) = rest.split_at(end);
        let valid = port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p != 0);
        valid.then(|| format!("{}{tail}", prefix.trim_end_matches(':')))
    })
}

/// Whether a PKCE code verifier has the allowed length (43-128) and characters.
fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The S256 challenge of a verifier: base64url(SHA-256(verifier)) without padding.
fn challenge_of(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A random token: `prefix` then `len` characters of the base64url alphabet.
fn random_token(prefix: &str, len: usize) -> String {
    let mut token = String::with_capacity(prefix.len() + len);
    token.push_str(prefix);
    token.extend((0..len).map(|_| char::from(TOKEN_ALPHABET[fastrand::usize(..TOKEN_ALPHABET.len())])));
    token
}

/// Body of `POST /__fake/apps`.
#[derive(serde::Deserialize)]
struct AppBody {
    /// The app's client id.
    client_id: String,
    /// Its registered redirect URIs.
    redirect_uris: Vec<String>,
}

/// `POST /__fake/apps` with `{"client_id":"...","redirect_uris":["..."]}`.
pub(super) async fn control_apps(AxumState(app): AxumState<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<AppBody>(&body) {
        Ok(AppBody { client_id, redirect_uris }) if !client_id.trim().is_empty() => {
            let uris: Vec<&str> = redirect_uris.iter().map(String::as_str).collect();
            app.handle.register_app(&client_id, &uris);
            empty(StatusCode::NO_CONTENT)
        }
        Ok(_) => bad_control("client_id must not be empty".to_owned()),
        Err(err) => bad_control(format!("expected {{\"client_id\":\"...\",\"redirect_uris\":[...]}}: {err}")),
    }
}

/// Body of `PUT /__fake/consent`.
#[derive(serde::Deserialize)]
struct ConsentBody {
    /// Whether the user approves.
    approve: bool,
}

/// `PUT /__fake/consent` with `{"approve":bool}`.
pub(super) async fn control_consent(AxumState(app): AxumState<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<ConsentBody>(&body) {
        Ok(ConsentBody { approve }) => {
            app.handle.set_consent(approve);
            empty(StatusCode::NO_CONTENT)
        }
        Err(err) => bad_control(format!("expected {{\"approve\":true|false}}: {err}")),
    }
}

/// Body of `PUT /__fake/rotation`.
#[derive(serde::Deserialize)]
struct RotationBody {
    /// Whether refreshes rotate the refresh token.
    rotate: bool,
}

/// `PUT /__fake/rotation` with `{"rotate":bool}`.
pub(super) async fn control_rotation(AxumState(app): AxumState<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<RotationBody>(&body) {
        Ok(RotationBody { rotate }) => {
            app.handle.set_rotation(rotate);
            empty(StatusCode::NO_CONTENT)
        }
        Err(err) => bad_control(format!("expected {{\"rotate\":true|false}}: {err}")),
    }
}

/// `POST /__fake/revoke_refresh`: every refresh token becomes invalid.
pub(super) async fn control_revoke_refresh(AxumState(app): AxumState<App>) -> Response {
    app.handle.revoke_refresh_tokens();
    empty(StatusCode::NO_CONTENT)
}

/// `POST /__fake/token_faults` with one [`Fault`] as JSON, for the token endpoint.
pub(super) async fn control_token_fault(AxumState(app): AxumState<App>, body: Bytes) -> Response {
    match serde_json::from_slice::<Fault>(&body) {
        Ok(fault) => match check_fault(&fault) {
            Ok(()) => {
                app.handle.push_token_fault(fault);
                empty(StatusCode::NO_CONTENT)
            }
            Err(message) => bad_control(message),
        },
        Err(err) => bad_control(format!("expected a fault: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeSpotify;

    /// The app most tests register.
    const CLIENT: &str = "spotguard-test-client";
    /// Registered without a port, so any port works.
    const REGISTERED: &str = "http://127.0.0.1/callback";
    /// What the login command would send: the registered URI plus the port it listens on.
    const REDIRECT: &str = "http://127.0.0.1:43123/callback";
    /// The scopes the login asks for.
    const SCOPE: &str = "user-read-playback-state user-read-currently-playing";

    /// A running fake with [`CLIENT`] registered for [`REGISTERED`], and a client that
    /// neither follows redirects nor uses a proxy.
    struct Setup {
        /// The server.
        fake: FakeSpotify,
        /// Its state.
        handle: FakeHandle,
        /// The HTTP client.
        client: reqwest::Client,
    }

    async fn setup() -> Setup {
        let fake = FakeSpotify::start().await.expect("fake Spotify starts on loopback");
        let handle = fake.handle();
        handle.register_app(CLIENT, &[REGISTERED]);
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client builds");
        Setup { fake, handle, client }
    }

    /// A fresh random PKCE verifier (64 unreserved characters).
    fn new_verifier() -> String {
        const UNRESERVED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
        (0..64).map(|_| char::from(UNRESERVED[fastrand::usize(..UNRESERVED.len())])).collect()
    }

    /// The S256 challenge, computed here independently of the fake's code path.
    fn challenge(verifier: &str) -> String {
        let digest = Sha256::digest(verifier.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    }

    /// A complete, valid authorize query for `redirect_uri` and `verifier`.
    fn authorize_query(redirect_uri: &str, verifier: &str, state: &str) -> Vec<(&'static str, String)> {
        vec![
            ("client_id", CLIENT.to_owned()),
            ("response_type", "code".to_owned()),
            ("redirect_uri", redirect_uri.to_owned()),
            ("state", state.to_owned()),
            ("scope", SCOPE.to_owned()),
            ("code_challenge_method", "S256".to_owned()),
            ("code_challenge", challenge(verifier)),
        ]
    }

    /// `query` without parameter `name`.
    fn without(mut query: Vec<(&'static str, String)>, name: &str) -> Vec<(&'static str, String)> {
        query.retain(|(key, _)| *key != name);
        query
    }

    /// `query` with parameter `name` set to `value`.
    fn with(
        mut query: Vec<(&'static str, String)>,
        name: &'static str,
        value: &str,
    ) -> Vec<(&'static str, String)> {
        query.retain(|(key, _)| *key != name);
        query.push((name, value.to_owned()));
        query
    }

    /// `GET /authorize` with this query.
    async fn authorize(s: &Setup, query: &[(&str, String)]) -> reqwest::Response {
        s.client
            .get(format!("{}/authorize", s.fake.accounts_base()))
            .query(query)
            .send()
            .await
            .expect("GET /authorize answers")
    }

    /// Asserts a 302 and returns the `Location` and its decoded query.
    fn redirected(response: &reqwest::Response) -> (String, Vec<(String, String)>) {
        assert_eq!(response.status(), 302);
        let location = response
            .headers()
            .get(header::LOCATION)
            .expect("a redirect has a Location")
            .to_str()
            .expect("Location is ASCII")
            .to_owned();
        let url = reqwest::Url::parse(&location).expect("Location is a URL");
        let query = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        (location, query)
    }

    /// Runs `/authorize` (consent approved) and returns the code.
    async fn code_for(s: &Setup, redirect_uri: &str, verifier: &str) -> String {
        let response = authorize(s, &authorize_query(redirect_uri, verifier, "st")).await;
        let (_, query) = redirected(&response);
        query.into_iter().find(|(k, _)| k == "code").map(|(_, v)| v).expect("the redirect carries a code")
    }

    /// `POST /api/token` with this form.
    async fn token_post(s: &Setup, form: &[(&str, &str)]) -> reqwest::Response {
        s.client
            .post(format!("{}/api/token", s.fake.accounts_base()))
            .form(form)
            .send()
            .await
            .expect("POST /api/token answers")
    }

    /// The code exchange, as the login sends it.
    async fn exchange(s: &Setup, code: &str, redirect_uri: &str, verifier: &str) -> reqwest::Response {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", CLIENT),
            ("code_verifier", verifier),
        ];
        token_post(s, &form).await
    }

    /// A refresh, as the daemon sends it.
    async fn refresh(s: &Setup, refresh_token: &str) -> reqwest::Response {
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", CLIENT)];
        token_post(s, &form).await
    }

    /// Asserts a 200 token response and returns it.
    async fn tokens_of(response: reqwest::Response) -> Value {
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let body: Value = response.json().await.expect("token response is JSON");
        assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()), "no access token");
        assert_eq!(body["token_type"], "Bearer");
        body
    }

    /// Asserts an RFC 6749 error with this status and `error`, returns the description.
    async fn oauth_error(response: reqwest::Response, status: u16, error: &str) -> String {
        assert_eq!(response.status().as_u16(), status);
        let body: Value = response.json().await.expect("error body is JSON");
        assert_eq!(body["error"], error, "{body}");
        body["error_description"].as_str().expect("error_description is a string").to_owned()
    }

    /// Asserts a 400 page and returns its text.
    async fn refused(response: reqwest::Response) -> String {
        assert_eq!(response.status(), 400);
        response.text().await.expect("page text")
    }

    /// The status of `GET /v1/me` with this bearer token.
    async fn web_api_status(s: &Setup, token: &str) -> u16 {
        let response = s
            .client
            .get(format!("{}/me", s.fake.api_base()))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET /v1/me answers");
        response.status().as_u16()
    }

    /// A string field of a token response.
    fn field(body: &Value, name: &str) -> String {
        body[name].as_str().unwrap_or_else(|| panic!("{name} missing in token response")).to_owned()
    }

    #[test]
    fn s256_matches_rfc_7636_example() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(challenge_of(verifier), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        assert_eq!(challenge(verifier), challenge_of(verifier));
    }

    #[tokio::test]
    async fn pkce_round_trip() {
        let s = setup().await;
        let verifier = new_verifier();
        let state = "x y&z=1/é";
        let response = authorize(&s, &authorize_query(REDIRECT, &verifier, state)).await;
        let (location, query) = redirected(&response);
        assert!(location.starts_with(&format!("{REDIRECT}?code=")), "{location}");
        assert_eq!(query.len(), 2, "{query:?}");
        assert_eq!(query[1], ("state".to_owned(), state.to_owned()));
        let code = query[0].1.clone();

        let seen = s.handle.last_authorize_query().expect("authorize was recorded");
        let get = |name: &str| seen.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        assert_eq!(get("scope"), Some(SCOPE));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("state"), Some(state));
        assert_eq!(get("code_challenge"), Some(challenge(&verifier).as_str()));

        let body = tokens_of(exchange(&s, &code, REDIRECT, &verifier).await).await;
        assert_eq!(body["scope"], SCOPE);
        assert_eq!(body["expires_in"], 3600);
        let access = field(&body, "access_token");
        assert!(!field(&body, "refresh_token").is_empty());
        assert_eq!(web_api_status(&s, &access).await, 200);
        assert_eq!(s.handle.token_requests("authorization_code"), 1);
        assert_eq!(s.handle.request_count("/api/token"), 1);
        assert_eq!(s.handle.request_count("/authorize"), 1);

        // Each code is accepted once.
        let description =
            oauth_error(exchange(&s, &code, REDIRECT, &verifier).await, 400, "invalid_grant").await;
        assert_eq!(description, "Invalid authorization code");
        assert_eq!(s.handle.token_requests("authorization_code"), 2);
        s.fake.stop().await;
    }

    #[tokio::test]
    async fn authorize_without_state_or_scope() {
        let s = setup().await;
        let verifier = new_verifier();
        let query = without(without(authorize_query(REDIRECT, &verifier, ""), "state"), "scope");
        let (_, redirect) = redirected(&authorize(&s, &query).await);
        assert_eq!(redirect.len(), 1);
        assert_eq!(redirect[0].0, "code");
        let body = tokens_of(exchange(&s, &redirect[0].1, REDIRECT, &verifier).await).await;
        assert_eq!(body["scope"], "");
        s.fake.stop().await;
    }

    #[tokio::test]
    async fn authorize_refusals() {
        let s = setup().await;
        s.handle.register_app("other", &["https://example.com/cb", "http://localhost:8888/callback"]);
        let verifier = new_verifier();
        let good = authorize_query(REDIRECT, &verifier, "st");

        let page = refused(authorize(&s, &with(good.clone(), "client_id", "nobody")).await).await;
        assert!(page.contains("INVALID_CLIENT: Invalid client"), "{page}");
        let page = refused(authorize(&s, &without(good.clone(), "client_id")).await).await;
        assert!(page.contains("INVALID_CLIENT: Invalid client"), "{page}");

        for uri in [
            "http://127.0.0.1:43123/callback/",
            "http://127.0.0.1:43123/Callback",
            "http://127.0.0.1:43123/other",
            "http://127.0.0.1:0/callback",
            "http://127.0.0.1:99999/callback",
            "http://127.0.0.1:x/callback",
            "https://127.0.0.1:43123/callback",
            "https://example.com/cb",
        ] {
            let page = refused(authorize(&s, &with(good.clone(), "redirect_uri", uri)).await).await;
            assert!(page.contains("INVALID_CLIENT: Invalid redirect URI"), "{uri}: {page}");
        }
        let page = refused(authorize(&s, &without(good.clone(), "redirect_uri")).await).await;
        assert!(page.contains("INVALID_CLIENT: Invalid redirect URI"), "{page}");

        // The other app registered these; localhost and plain HTTP are refused anyway.
        let other = with(good.clone(), "client_id", "other");
        for uri in ["http://localhost:8888/callback", "http://example.com/cb", "http://LocalHost/cb"] {
            let response = authorize(&s, &with(other.clone(), "redirect_uri", uri)).await;
            assert_eq!(response.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
            let page = refused(response).await;
            assert!(page.contains("INVALID_CLIENT: Insecure redirect URI"), "{uri}: {page}");
        }
        // While its HTTPS one works.
        let response = authorize(&s, &with(other, "redirect_uri", "https://example.com/cb")).await;
        assert_eq!(response.status(), 302);

        for (query, expected) in [
            (with(good.clone(), "response_type", "token"), "response_type"),
            (without(good.clone(), "response_type"), "response_type"),
            (with(good.clone(), "code_challenge_method", "plain"), "S256"),
            (without(good.clone(), "code_challenge_method"), "S256"),
            (without(good.clone(), "code_challenge"), "code_challenge"),
            (with(good.clone(), "code_challenge", &format!("{}=", challenge(&verifier))), "code_challenge"),
        ] {
            let response = authorize(&s, &query).await;
            assert_eq!(response.headers()[header::CONTENT_TYPE], "text/plain; charset=utf-8");
            let text = refused(response).await;
            assert!(text.contains(expected), "{text}");
        }
        let mut twice = good.clone();
        twice.push(("state", "again".to_owned()));
        assert!(refused(authorize(&s, &twice).await).await.contains("state"));

        // Only the HTTPS request made a code; the last query is recorded even when refused.
        assert_eq!(s.handle.lock().accounts.codes.len(), 1);
        let last = s.handle.last_authorize_query().expect("recorded");
        assert_eq!(last.last(), Some(&("state".to_owned(), "again".to_owned())));
        s.fake.stop().await;
    }

    #[tokio::test]
    async fn loopback_any_port_rule() {
        let s = setup().await;
        s.handle.register_app(CLIENT, &[REGISTERED, "http://[::1]/cb", "http://127.0.0.1:5000/fixed"]);
        for uri in [
            "http://127.0.0.1:1/callback",
            "http://127.0.0.1:65535/callback",
            "http://127.0.0.1/callback",
            "http://[::1]:8080/cb",
            "http://127.0.0.1:5000/fixed",
        ] {
            let verifier = new_verifier();
            let code = code_for(&s, uri, &verifier).await;
            tokens_of(exchange(&s, &code, uri, &verifier).await).await;
        }
        // A port-specific registration does not open other ports.
        let query = authorize_query("http://127.0.0.1:5001/fixed", &new_verifier(), "st");
        assert!(refused(authorize(&s, &query).await).await.contains("Invalid redirect URI"));

        // The exchange must repeat the authorize request's URI exactly, port included.
        let verifier = new_verifier();
        let code = code_for(&s, REDIRECT, &verifier).await;
        let response = exchange(&s, &code, REGISTERED, &verifier).await;
        assert_eq!(oauth_error(response, 400, "invalid_grant").await, "Invalid redirect URI");
        tokens_of(exchange(&s, &code, REDIRECT, &verifier).await).await;
        s.fake.stop().await;
    }

    #[tokio::test]
    async fn deny_redirects_with_access_denied() {
        let s = setup().await;
        s.handle.set_consent(false);
        let verifier = new_verifier();
        let (location, query) =
            redirected(&authorize(&s, &authorize_query(REDIRECT, &verifier, "s t")).await);
        assert_eq!(location, format!("{REDIRECT}?error=access_denied&state=s%20t"));
        assert_eq!(query[1], ("state".to_owned(), "s t".to_owned()));
        let no_state = without(authorize_query(REDIRECT, &verifier, ""), "state");
        let (location, _) = redirected(&authorize(&s, &no_state).await);
        assert_eq!(location, format!("{REDIRECT}?error=access_denied"));
        assert!(s.handle.lock().accounts.codes.is_empty());

        s.handle.set_consent(true);
        let (location, _) = redirected(&authorize(&s, &no_state).await);
        assert!(location.starts_with(&format!("{REDIRECT}?code=")), "{location}");
        s.fake.stop().await;
    }

    #[tokio::test]
    async fn code_exchange_refusals() {
        let s = setup().await;
        s.handle.register_app("other", &[REGISTERED]);
        let verifier = new_verifier();
        let code = code_for(&s, REDIRECT, &verifier).await;
        let base = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", CLIENT),
            ("code_verifier", verifier.as_str()),
        ];
        let set = |name: &str, value: &'static str| {
            base.iter().map(|&(k, v)| if k == name { (k, value) } else { (k, v) }).collect::<Vec<_>>()
        };
        let drop = |name: &str| base.iter().copied().filter(|&(k, _)| k != name).collect::<Vec<_>>();

        let wrong = new_verifier();
        let response = exchange(&s, &code, REDIRECT, &wrong).await;
        assert_eq!(oauth_error(response, 400, "invalid_grant").await, "code_verifier was incorrect");
        for bad in ["short", &"a".repeat(42), &"a".repeat(129), &format!("{}+", "a".repeat(50))] {
            let response = exchange(&s, &code, REDIRECT, bad).await;
            let description = oauth_error(response, 400, "invalid_request").await;
            assert!(description.contains("code_verifier"), "{description}");
        }
        for name in ["code", "redirect_uri", "client_id", "code_verifier", "grant_type"] {
            let description = oauth_error(token_post(&s, &drop(name)).await, 400, "invalid_request").await;
            assert!(description.contains(name), "{name}: {description}");
        }
        let response = token_post(&s, &set("grant_type", "client_credentials")).await;
        oauth_error(response, 400, "unsupported_grant_type").await;
        let response = token_post(&s, &set("grant_type", "password")).await;
        oauth_error(response, 400, "unsupported_grant_type").await;

        let response = token_post(&s, &set("client_id", "nobody")).await;
        assert_eq!(oauth_error(response, 400, "invalid_client").await, "Invalid client");
        let response = token_post(&s, &set("client_id", "other")).await;
        assert_eq!(oauth_error(response, 400, "invalid_client").await, "Invalid client");
        let response = token_post(&s, &set("code", "AQnotacode")).await;
        assert_eq!(oauth_error(response, 400, "invalid_grant").await, "Invalid authorization code");
        let response = token_post(&s, &set("redirect_uri", "http://127.0.0.1:1/callback")).await;
        assert_eq!(oauth_error(response, 400, "invalid_grant").await, "Invalid redirect URI");

        // No client secret, no Basic auth.
        let mut with_secret = base.to_vec();
        with_secret.push(("client_secret", "s3cret"));
        oauth_error(token_post(&s, &with_secret).await, 400, "invalid_client").await;
        let response = s
            .client
            .post(format!("{}/api/token", s.fake.accounts_base()))
            .basic_auth(CLIENT, Some("s3cret"))
            .form(&base)
            .send()
            .await
            .expect("POST /api/token answers");
        oauth_error(response, 400, "invalid_client").await;
        // Form encoding only, each parameter once, POST only.
        let as_json: BTreeMap<&str, &str> = base.iter().copied().collect();
        let response = s
            .client
            .post(format!("{}/api/token", s.fake.accounts_base()))
            .json(&as_json)
            .send()
            .await
            .expect("POST /api/token answers");
        oauth_error(response, 400, "invalid_request").await;
        let mut twice = base.to_vec();
        twice.push(("code", "again"));
        oauth_error(token_post(&s, &twice).await, 400, "invalid_request").await;
        let response = s
            .client
            .get(format!("{}/api/token", s.fake.accounts_base()))
            .send()
            .await
            .expect("GET /api/token answers");
        oauth_error(response, 405, "invalid_request").await;

        // Failed attempts do not use the code up.
        tokens_of(token_post(&s, &base).await).await;
        oauth_error(token_post(&s, &base).await, 400, "invalid_grant").await;
        assert_eq!(s.handle.token_requests("authorization_code"), 18);
        assert_eq!(s.handle.token_requests("client_credentials"), 1);
        assert_eq!(s.handle.token_requests(""), 2);
        s.fake.stop().await;
    }

    #[tokio::test]
    async fn codes_expire_after_ten_minutes() {
        let s = setup().await;
        let verifier = new_verifier();
        let code = code_for(&s, REDIRECT, &verifier).await;
        {
            let mut state = s.handle.lock();
            let pending = state.accounts.codes.get_mut(&code).expect("code is pending");
            let left = pending.expires_at.saturating_duration_since(Instant::now());
            assert!(left > Duration::from_secs(590) && left <= CODE_LIFETIME, "{left:?}");
            pending.expires_at = Instant::now();
        }
        let response = exchange(&s, &code, REDIRECT, &verifier).await;
        assert_eq!(oauth_error(response, 400, "invalid_grant").await, "Invalid authorization code");
        s.fake.stop().await;
    }

    #[tokio::test]
    async fn refresh_rotates_by_default() {
        let s = setup().await;
        let verifier = new_verifier();
        let code = code_for(&s, REDIRECT, &verifier).await;
        let first = tokens_of(exchange(&s, &code, REDIRECT, &verifier).await).await;
        let old_refresh = field(&first, "refresh_token");

        let second = tokens_of(refresh(&s, &old_refresh).await).await;
        let new_refresh = field(&second, "refresh_token");
        assert_ne!(new_refresh, old_refresh);
        assert_ne!(field(&second, "access_token"), field(&first, "access_token"));
        assert_eq!(second["scope"], SCOPE);
        assert_eq!(second["expires_in"], 3600);
        assert_eq!(web_api_status(&s, &field(&second, "access_token")).await, 200);
        // The old access token keeps working until it expires.
        assert_eq!(web_api_status(&s, &field(&first, "access_token")).await, 200);

        // The old refresh token was used up.
        let description = oauth_error(refresh(&s, &old_refresh).await, 400, "invalid_grant").await;
        assert_eq!(description, "Refresh token revoked");
        tokens_of(refresh(&s, &new_refresh).await).await;
        assert_eq!(s.handle.token_requests("refresh_token"), 3);

        let description = oauth_error(refresh(&s, "AQunknown").await, 400, "invalid_grant").await;
        assert_eq!(description, "Refresh token revoked");
        let missing = [("grant_type", "refresh_token"), ("client_id", CLIENT)];
        oauth_error(token_post(&s, &missing).await, 400, "invalid_request").await;
        s.fake.stop().await;
    }

    #[tokio::test]
    async fn refresh_without_rotation() {
        let s = setup().await;
        s.handle.set_rotation(false);
        let (_, refresh_token) = s.handle.issue_tokens(CLIENT);
        for _ in 0..2 {
            let body = tokens_of(refresh(&s, &refresh_token).await).await;
            assert!(body.get("refresh_token").is_none(), "{body}");
            assert_eq!(body["scope"], ISSUED_SCOPE);
            assert_eq!(web_api_status(&s, &field(&body, "access_token")).await, 200);
        }
        // Turning rotation back on: the next refresh rotates.
        s.handle.set_rotation(true);
        let body = tokens_of(refresh(&s, &refresh_token).await).await;
        assert_ne!(field(&body, "refresh_token"), refresh_token);
        oauth_error(refresh(&s, &refresh_token).await, 400, "invalid_grant").await;
        s.fake.stop().await;
    }

    #[tokio::test]
    async fn refresh_checks_the_client() {
        let s = setup().await;
        let (_, refresh_token) = s.handle.issue_tokens("seeded-client");
        // issue_tokens registered the app.
        let form =
            [("grant_type", "refresh_token"), ("refresh_token", &refresh_token), ("client_id", CLIENT)];
        oauth_error(token_post(&s, &form).await, 400, "invalid_client").await;
        let form =
            [("grant_type", "refresh_token"), ("refresh_token", &refresh_token), ("client_id", "nobody")];
        oauth_error(token_post(&s, &form).await, 400, "invalid_client").await;
        let form = [("grant_type", "refresh_token"), ("refresh_token", &refresh_token)];
        oauth_error(token_post(&s, &form).await, 400, "invalid_request").await;
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
            ("client_id", "seeded-client"),
        ];
        tokens_of(token_post(&s, &form).await).await;
        s.fake.stop().await;
    }

    #[tokio::test]
    async fn refresh_tokens_die_six_months_after_authorization() {
        let s = setup().await;
        let (_, refresh_token) = s.handle.issue_tokens(CLIENT);
        // Rotation keeps the authorization time.
        let body = tokens_of(refresh(&s, &refresh_token).await).await;
        let rotated = field(&body, "refresh_token");
        {
            let mut state = s.handle.lock();
            let grant = state.accounts.refresh.get_mut(&rotated).expect("rotated token is valid");
            assert!(Utc::now() - grant.authorized_at < chrono::TimeDelta::minutes(1));
            grant.authorized_at = Utc::now() - chrono::TimeDelta::days(185);
        }
        let description = oauth_error(refresh(&s, &rotated).await, 400, "invalid_grant").await;
        assert_eq!(description, "Refresh token expired");
        s.fake.stop().await;
    }

    #[tokio::test]
    async fn revoke_refresh_tokens_keeps_access_tokens() {
        let s = setup().await;
        let (access, refresh_token) = s.handle.issue_tokens(CLIENT);
        let (access2, refresh2) = s.handle.issue_tokens(CLIENT);
        s.handle.revoke_refresh_tokens();
        for token in [&refresh_token, &refresh2] {
            let description = oauth_error(refresh(&s, token).await, 400, "invalid_grant").await;
            assert_eq!(description, "Refresh token revoked");
        }
        assert_eq!(web_api_status(&s, &access).await, 200);
        assert_eq!(web_api_status(&s, &access2).await, 200);
        s.fake.stop().await;
    }

    #[tokio::test]
    async fn access_tokens_expire() {
        let s = setup().await;
        s.handle.add_token("forever");
        let (access, refresh_token) = s.handle.issue_tokens(CLIENT);
        assert_eq!(web_api_status(&s, &access).await, 200);
        s.handle.expire_access_tokens();
        assert_eq!(web_api_status(&s, &access).await, 401);
        assert_eq!(web_api_status(&s, "forever").await, 200);

        // Refreshing still works and gives a token with the configured lifetime.
        s.handle.set_access_lifetime(1);
        let body = tokens_of(refresh(&s, &refresh_token).await).await;
        assert_eq!(body["expires_in"], 1);
        let short = field(&body, "access_token");
        assert_eq!(web_api_status(&s, &short).await, 200);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(web_api_status(&s, &short).await, 401);
        assert_eq!(web_api_status(&s, "forever").await, 200);

        // revoke_tokens forgets issued access tokens as well as added ones.
        s.handle.set_access_lifetime(3600);
        let (access, _) = s.handle.issue_tokens(CLIENT);
        s.handle.revoke_tokens();
        assert_eq!(web_api_status(&s, &access).await, 401);
        assert_eq!(web_api_status(&s, "forever").await, 401);
        s.fake.stop().await;
    }

    #[tokio::test]
    async fn token_faults_in_order() {
        let s = setup().await;
        s.handle.add_token("tok");
        let (_, refresh_token) = s.handle.issue_tokens(CLIENT);
        s.handle.push_token_fault(Fault::Unavailable);
        s.handle.push_token_fault(Fault::Malformed);
        s.handle.push_token_fault(Fault::Status { status: 500, message: "boom".to_owned() });
        s.handle.push_token_fault(Fault::RateLimited { retry_after_secs: 7, quota: false });
        s.handle.push_token_fault(Fault::Accepted);
        s.handle.push_token_fault(Fault::Hang { millis: 300 });
        s.handle.push_token_fault(Fault::Huge { bytes: 50_000 });

        // Web API requests do not consume token faults.
        assert_eq!(web_api_status(&s, "tok").await, 200);

        assert_eq!(
            oauth_error(refresh(&s, &refresh_token).await, 503, "server_error").await,
            "Service unavailable"
        );
        let response = refresh(&s, &refresh_token).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.expect("body");
        assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
        assert_eq!(oauth_error(refresh(&s, &refresh_token).await, 500, "server_error").await, "boom");
        let response = refresh(&s, &refresh_token).await;
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
        oauth_error(response, 429, "server_error").await;
        let response = refresh(&s, &refresh_token).await;
        assert_eq!(response.status(), 202);
        assert!(response.bytes().await.expect("body").is_empty());

        // The faulted requests changed nothing: the refresh token was never rotated.
        let started = Instant::now();
        let body = tokens_of(refresh(&s, &refresh_token).await).await;
        assert!(started.elapsed() >= Duration::from_millis(300));
        let rotated = field(&body, "refresh_token");

        let response = refresh(&s, &rotated).await;
        assert_eq!(response.status(), 200);
        let bytes = response.bytes().await.expect("body");
        assert!(bytes.len() > 50_000, "{}", bytes.len());
        let body: Value = serde_json::from_slice(&bytes).expect("huge body is JSON");
        assert!(body["refresh_token"].is_string());

        // Queue drained.
        tokens_of(refresh(&s, &field(&body, "refresh_token")).await).await;
        assert_eq!(s.handle.token_requests("refresh_token"), 8);
        s.fake.stop().await;
    }

    #[tokio::test]
    async fn control_endpoints_over_http() {
        let s = setup().await;
        let base = s.fake.accounts_base();
        let send = |request: reqwest::RequestBuilder| async move {
            request.send().await.expect("control endpoint answers").status().as_u16()
        };

        let app = json!({ "client_id": "http-app", "redirect_uris": ["http://127.0.0.1/cb"] });
        assert_eq!(send(s.client.post(format!("{base}/__fake/apps")).json(&app)).await, 204);
        let verifier = new_verifier();
        let query = with(authorize_query("http://127.0.0.1:9/cb", &verifier, "st"), "client_id", "http-app");
        assert_eq!(authorize(&s, &query).await.status(), 302);

        let consent = s.client.put(format!("{base}/__fake/consent")).json(&json!({ "approve": false }));
        assert_eq!(send(consent).await, 204);
        let (_, redirect) = redirected(&authorize(&s, &query).await);
        assert_eq!(redirect[0], ("error".to_owned(), "access_denied".to_owned()));
        let consent = s.client.put(format!("{base}/__fake/consent")).json(&json!({ "approve": true }));
        assert_eq!(send(consent).await, 204);

        let rotation = s.client.put(format!("{base}/__fake/rotation")).json(&json!({ "rotate": false }));
        assert_eq!(send(rotation).await, 204);
        let (_, refresh_token) = s.handle.issue_tokens(CLIENT);
        let body = tokens_of(refresh(&s, &refresh_token).await).await;
        assert!(body.get("refresh_token").is_none());

        assert_eq!(send(s.client.post(format!("{base}/__fake/revoke_refresh"))).await, 204);
        oauth_error(refresh(&s, &refresh_token).await, 400, "invalid_grant").await;

        let fault = s.client.post(format!("{base}/__fake/token_faults")).body(r#"{"kind":"unavailable"}"#);
        assert_eq!(send(fault).await, 204);
        oauth_error(refresh(&s, &refresh_token).await, 503, "server_error").await;

        for (path, body) in [
            ("/__fake/apps", r#"{"client_id":"","redirect_uris":[]}"#),
            ("/__fake/apps", r#"{"client_id":"x"}"#),
            ("/__fake/token_faults", r#"{"kind":"status","status":42,"message":"x"}"#),
            ("/__fake/token_faults", r#"{"kind":"explode"}"#),
        ] {
            assert_eq!(send(s.client.post(format!("{base}{path}")).body(body)).await, 400, "{path} {body}");
        }
        for (path, body) in [("/__fake/consent", "{}"), ("/__fake/rotation", r#"{"rotate":"yes"}"#)] {
            assert_eq!(send(s.client.put(format!("{base}{path}")).body(body)).await, 400, "{path} {body}");
        }
        assert!(s.handle.lock().accounts.faults.is_empty());
        // Control requests are never recorded.
        assert!(s.handle.requests().iter().all(|r| !r.path.starts_with("/__fake")));
        s.fake.stop().await;
    }

    #[tokio::test]
    async fn debug_never_shows_secrets() {
        let s = setup().await;
        let verifier = new_verifier();
        let code = code_for(&s, REDIRECT, &verifier).await;
        let (access, refresh_token) = s.handle.issue_tokens(CLIENT);
        let debug = format!("{:?} {:?}", s.handle, s.fake);
        for secret in [&code, &access, &refresh_token, &verifier, &challenge(&verifier)] {
            assert!(!debug.contains(secret.as_str()), "{debug}");
        }
        assert!(debug.contains("refresh_tokens: 1"), "{debug}");
        s.fake.stop().await;
    }
}
