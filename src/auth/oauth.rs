//! Spotify's Accounts service through the `oauth2` crate: Authorization Code with PKCE (S256),
//! no client secret anywhere. Builds the authorize URL, exchanges the code, refreshes.
//!
//! Errors are sorted by what the caller must do: `invalid_grant` means the login is over
//! (revoked, password changed, six months passed, or a code already used); an unreachable
//! or failing token endpoint is transient. Nothing here prints a token, a code or a
//! verifier: oauth2's own errors can carry the response body, so they are never shown as is.

use std::time::Duration;

use chrono::{DateTime, Utc};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, EndpointNotSet, EndpointSet, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};

use super::{Secret, TOKEN_FILE_VERSION, TokenSet};

/// Only what the daemon reads: the Connect devices and what plays. Nothing that can change
/// playback or data. GET /me needs no scope for the id and display name.
pub const SCOPES: &[&str] = &["user-read-playback-state"];

/// Spotify says access tokens live an hour; used when an answer omits `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// No access token is believed to live longer than this, whatever the answer says.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// Why the token endpoint did not give tokens.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error(
        "Spotify no longer accepts this login (invalid_grant): access was removed, the password \
         changed, or the login is over six months old"
    )]
    Revoked,
    #[error("Spotify does not know the Client ID {0:?} (invalid_client); check spotify.client_id")]
    BadClient(String),
    #[error("Spotify's token service refused the request ({0})")]
    Refused(String),
    #[error("cannot reach Spotify's token service: {0}")]
    Unreachable(String),
    #[error("Spotify's token service gave an answer that is not a token ({0})")]
    Malformed(String),
    #[error("there is no refresh token for this account; run `spotguard login`")]
    NoRefreshToken,
}

impl TokenError {
    /// Whether trying again later may work without the person doing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, TokenError::Unreachable(_) | TokenError::Malformed(_))
    }
}

/// The Accounts service for one Client ID.
#[derive(Debug, Clone)]
pub struct OAuth {
    client: Client,
    http: reqwest::Client,
    client_id: String,
}

/// A started login: the URL to open, and what the callback must be checked against.
#[derive(Debug)]
pub struct Authorization {
    pub url: String,
    pub state: Secret,
    verifier: PkceCodeVerifier,
}

/// What a bad URL in the configuration is.
#[derive(Debug, thiserror::Error)]
#[error("invalid {what} URL {url:?}: {reason}")]
pub struct UrlError {
    what: &'static str,
    url: String,
    reason: String,
}

impl OAuth {
    /// `http` must not follow redirects (a token endpoint that redirects is not Spotify's).
    pub fn new(
        client_id: &str,
        accounts_base: &str,
        redirect_uri: &str,
        http: reqwest::Client,
    ) -> Result<OAuth, UrlError> {
        let url_err = |what, url: &str, e: oauth2::url::ParseError| UrlError {
            what,
            url: url.to_string(),
            reason: e.to_string(),
        };
        let auth = format!("{accounts_base}/authorize");
        let token = format!("{accounts_base}/api/token");
        let client = BasicClient::new(ClientId::new(client_id.to_string()))
            .set_auth_uri(AuthUrl::new(auth.clone()).map_err(|e| url_err("authorize", &auth, e))?)
            .set_token_uri(TokenUrl::new(token.clone()).map_err(|e| url_err("token", &token, e))?)
            .set_redirect_uri(
                RedirectUrl::new(redirect_uri.to_string())
                    .map_err(|e| url_err("redirect", redirect_uri, e))?,
            );
        Ok(OAuth { client, http, client_id: client_id.to_string() })
    }

    /// A new authorize URL with a random state and an S256 PKCE challenge.
    pub fn authorize(&self) -> Authorization {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state) = self
            .client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(SCOPES.iter().map(|s| Scope::new((*s).to_string())))
            .set_pkce_challenge(challenge)
            .url();
        Authorization { url: url.to_string(), state: Secret::new(state.secret().clone()), verifier }
    }

    /// Exchanges the callback's code for tokens; the login is authorised `now`.
    pub async fn exchange(&self, code: Secret, auth: Authorization) -> Result<TokenSet, TokenError> {
        let now = Utc::now();
        let answer = self
            .client
            .exchange_code(AuthorizationCode::new(code.expose().to_string()))
            .set_pkce_verifier(auth.verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| self.classify(e))?;
        Ok(token_set(&answer, None, now, now))
    }

    /// Trades the refresh token for a new access token. Spotify's PKCE refresh tokens are
    /// single-use in practice: the answer's new refresh token replaces the old one, which is
    /// kept only when the answer carries none.
    pub async fn refresh(&self, current: &TokenSet) -> Result<TokenSet, TokenError> {
        let refresh = current.refresh_token.as_ref().ok_or(TokenError::NoRefreshToken)?;
        let now = Utc::now();
        let answer = self
            .client
            .exchange_refresh_token(&RefreshToken::new(refresh.expose().to_string()))
            .request_async(&self.http)
            .await
            .map_err(|e| self.classify(e))?;
        let mut next = token_set(&answer, Some(refresh), now, current.authorized_at);
        if next.scope.is_empty() {
            next.scope = current.scope.clone();
        }
        Ok(next)
    }

    fn classify<E: std::error::Error + 'static>(
        &self,
        e: RequestTokenError<E, oauth2::basic::BasicErrorResponse>,
    ) -> TokenError {
        match e {
            RequestTokenError::ServerResponse(r) => match r.error() {
                BasicErrorResponseType::InvalidGrant => TokenError::Revoked,
                BasicErrorResponseType::InvalidClient | BasicErrorResponseType::UnauthorizedClient => {
                    TokenError::BadClient(self.client_id.clone())
                }
                BasicErrorResponseType::Extension(code)
                    if code == "server_error" || code == "temporarily_unavailable" =>
                {
                    TokenError::Unreachable(format!("it answered {code}"))
                }
                // The server's own words: shown, so made safe for a terminal first.
                other => TokenError::Refused(crate::text::clean(other.as_ref(), 120)),
            },
            RequestTokenError::Request(e) => TokenError::Unreachable(root_cause(&e)),
            // The body may hold a token: name the problem, never the body.
            RequestTokenError::Parse(e, _) => TokenError::Malformed(format!("at {}", e.path())),
            RequestTokenError::Other(why) => TokenError::Malformed(crate::text::clean(&why, 200)),
        }
    }
}

/// The innermost cause: "connection refused" says more than "error sending request".
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    cause
}

fn token_set(
    answer: &oauth2::basic::BasicTokenResponse,
    old_refresh: Option<&Secret>,
    now: DateTime<Utc>,
    authorized_at: DateTime<Utc>,
) -> TokenSet {
    let lifetime = answer.expires_in().unwrap_or(DEFAULT_LIFETIME).min(MAX_LIFETIME);
    TokenSet {
        version: TOKEN_FILE_VERSION,
        access_token: Secret::new(answer.access_token().secret().clone()),
        refresh_token: answer
            .refresh_token()
            .map(|r| Secret::new(r.secret().clone()))
            .or_else(|| old_refresh.cloned()),
        expires_at: now + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::hours(1)),
        scope: answer
            .scopes()
            .map(|s| s.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        authorized_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_services_error_words_never_reach_a_terminal_raw() {
        let oauth =
            OAuth::new("id", "http://127.0.0.1:9", "http://127.0.0.1:9/callback", reqwest::Client::new())
                .expect("urls");
        let hostile = BasicErrorResponseType::Extension("\u{1b}]0;PWNED\u{7}\u{1b}[2J\u{202e}x".into());
        let e: RequestTokenError<std::io::Error, _> =
            RequestTokenError::ServerResponse(oauth2::basic::BasicErrorResponse::new(hostile, None, None));
        let text = oauth.classify(e).to_string();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{202e}'),
            "{text:?}"
        );
        assert!(text.contains("]0;PWNED"), "the words stay, only the controls go: {text:?}");
    }
}
