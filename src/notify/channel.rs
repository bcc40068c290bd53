//! The extra channels (ntfy, webhooks, e-mail): what an event becomes for each, and sending
//! one message. Delivery order, retries and giving up are [`super::outbox`]'s.
//!
//! Every channel says the same words as the desktop: the title and text come from
//! [`super::render`] for a plain-text server. Nothing here logs or returns a secret or a URL
//! path: errors name the channel's host only ([`redact_url`]), reqwest errors are stripped of
//! their URL, and secrets are read once, at build time, into [`Secret`]s.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use lettre::AsyncTransport as _;
use serde::Serialize;
use serde_json::json;
use sha2::Sha256;

use super::alert::{Capabilities, render};
use crate::auth::Secret;
use crate::config::Config;
use crate::config::channels::{
    ChannelSection, MinUrgency, SecretError, WebhookFormat, expand_path, resolve_secret,
};
use crate::event::{Event, Urgency};
use crate::store::StoredEvent;
use crate::text::{MAX_NAME_CHARS, clean};

/// A request to a channel (connect, TLS, answer) takes at most this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// ntfy refuses longer messages (it would turn them into attachments).
const NTFY_MAX_MESSAGE: usize = 4000;
/// Discord refuses longer content.
const DISCORD_MAX: usize = 1900;

/// What an event says on any channel: plain text, plus the structured parts webhooks carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The event's id in `history`; `None` for an alert that could not be recorded (a full
    /// disk), sent once from memory.
    pub id: Option<i64>,
    /// As `history --json` names it, or `test`.
    pub kind: &'static str,
    pub imitation: bool,
    pub urgency: Urgency,
    pub account: String,
    pub at: DateTime<Utc>,
    /// (name, type, Spotify id as last seen)
    pub device: Option<(String, String, Option<String>)>,
    /// (track, artists)
    pub playing: Option<(Option<String>, Vec<String>)>,
    pub title: String,
    pub message: String,
    pub sign_out: String,
    pub apps: String,
}

/// The links every message carries, and whether to name accounts.
#[derive(Debug, Clone)]
pub struct Links {
    pub sign_out: String,
    pub apps: String,
    pub name_accounts: bool,
}

impl Links {
    pub fn from_config(config: &Config) -> Links {
        Links {
            sign_out: config.alerts.sign_out_url.as_str().to_string(),
            apps: config.alerts.apps_url.as_str().to_string(),
            name_accounts: config.account_names().len() > 1,
        }
    }
}

impl Message {
    /// The message for a stored event; `None` for what is only logged.
    pub fn from_event(ev: &StoredEvent, spotify_id: Option<String>, links: &Links) -> Option<Message> {
        let alert = render(
            &ev.event,
            ev.at,
            &ev.account,
            links.name_accounts,
            &Capabilities::default(),
            &links.sign_out,
        )?;
        let name = |s: &str| clean(s, MAX_NAME_CHARS);
        let (device, playing, imitation) = match &ev.event {
            Event::DeviceAppeared { name: n, device_type, spotify_id: id, imitates, looks_like, .. } => (
                Some((name(n), name(device_type), id.clone().or(spotify_id))),
                None,
                *imitates || looks_like.is_some(),
            ),
            Event::UnknownPlaying { name: n, device_type, track, artists, looks_like, .. } => (
                Some((name(n), name(device_type), spotify_id)),
                Some((track.as_deref().map(name), artists.iter().map(|a| name(a)).collect())),
                looks_like.is_some(),
            ),
            Event::StillOnlineAfterSignOut { name: n, device_type, .. } => {
                (Some((name(n), name(device_type), spotify_id)), None, false)
            }
            _ => (None, None, false),
        };
        Some(Message {
            id: Some(ev.id),
            kind: ev.event.kind(),
            imitation,
            urgency: alert.urgency,
            account: ev.account.clone(),
            at: ev.at,
            device,
            playing,
            title: alert.summary,
            message: alert.body,
            sign_out: links.sign_out.clone(),
            apps: links.apps.clone(),
        })
    }

    /// The message for an event of `account` that could not be recorded (no id, no
    /// device record to take a Spotify id from); `None` for what is only logged.
    pub fn unrecorded(account: &str, event: &Event, links: &Links) -> Option<Message> {
        let ev = StoredEvent {
            id: 0,
            account: account.to_string(),
            device: None,
            at: Utc::now(),
            event: event.clone(),
            attempts: 0,
        };
        Message::from_event(&ev, None, links).map(|m| Message { id: None, ..m })
    }

    /// What `spotguard channels test` and `doctor --notify` send.
    pub fn test(links: &Links) -> Message {
        Message {
            id: Some(0),
            kind: "test",
            imitation: false,
            urgency: Urgency::Normal,
            account: String::new(),
            at: Utc::now(),
            device: None,
            playing: None,
            title: "spotguard test message".into(),
            message: "If you can read this, spotguard's alerts reach you here.".into(),
            sign_out: links.sign_out.clone(),
            apps: links.apps.clone(),
        }
    }

    /// Critical, or an imitation (a copy of a trusted device is as bad as a stranger playing).
    pub fn critical(&self) -> bool {
        self.urgency == Urgency::Critical || self.imitation
    }

    /// The text with both links, for e-mail and chat.
    fn text_with_links(&self) -> String {
        format!(
            "{}\n\nSign out everywhere: {}\nReview app access: {}\n",
            self.message, self.sign_out, self.apps
        )
    }
}

/// Why a channel cannot be built, in one sentence naming the fix.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("channel {channel}: {source}")]
    Secret { channel: String, source: SecretError },
    #[error("channel {channel}: cannot read ca_file {path}: {why}")]
    CaFile { channel: String, path: std::path::PathBuf, why: String },
    #[error("channel {channel}: {why}")]
    Invalid { channel: String, why: String },
}

/// A configured channel, ready to send.
#[derive(Debug)]
pub struct Channel {
    pub name: String,
    /// `ntfy`, `webhook` or `email`.
    pub kind: &'static str,
    pub min_urgency: MinUrgency,
    /// Where it sends, safe to show.
    pub target: String,
    /// Where it sends, as a fingerprint: what its place in the outbox follows.
    pub destination: String,
    sender: Sender,
}

enum Sender {
    Ntfy {
        publish: reqwest::Url,
        topic: String,
        token: Option<Secret>,
        http: reqwest::Client,
    },
    Webhook {
        url: reqwest::Url,
        format: WebhookFormat,
        secret: Option<Secret>,
        http: reqwest::Client,
    },
    Email {
        transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
        from: lettre::message::Mailbox,
        to: Vec<lettre::message::Mailbox>,
        has_login: bool,
    },
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sender::Ntfy { .. } => "Ntfy(***)",
            Sender::Webhook { .. } => "Webhook(***)",
            Sender::Email { .. } => "Email(***)",
        })
    }
}

/// HTTP clients shared by the channels (and the heartbeat) that add no CA of their own: each
/// client holds the OS trust store parsed, a few hundred KiB, so one is built, not one each.
#[derive(Debug, Default)]
pub struct Clients {
    shared: Option<reqwest::Client>,
}

impl Clients {
    /// The shared client, or for a `ca` (PEM) a client of its own.
    pub fn get(&mut self, channel: &str, ca: Option<&[u8]>) -> Result<reqwest::Client, ChannelError> {
        match (ca, &self.shared) {
            (Some(pem), _) => http_client(channel, Some(pem)),
            (None, Some(c)) => Ok(c.clone()),
            (None, None) => {
                let c = http_client(channel, None)?;
                self.shared = Some(c.clone());
                Ok(c)
            }
        }
    }
}

/// Builds every configured channel: reads secrets and CA files, builds TLS.
pub fn build_all(config: &Config, path: &Path, clients: &mut Clients) -> Result<Vec<Channel>, ChannelError> {
    let names = crate::config::channels::channel_names(&config.channels);
    config.channels.iter().zip(names).map(|(c, name)| build(c, name, config, path, clients)).collect()
}

/// Builds one channel named `name` from its section.
pub fn build(
    c: &ChannelSection,
    name: String,
    config: &Config,
    path: &Path,
    clients: &mut Clients,
) -> Result<Channel, ChannelError> {
    let secret = |key: &str, lit, file: Option<&std::path::PathBuf>| {
        resolve_secret(key, lit, file.map(|p| p.as_path()), path, config.file_mode)
            .map_err(|source| ChannelError::Secret { channel: name.clone(), source })
    };
    let ca = read_ca(&name, c.ca_file(), path)?;
    let sender = match c {
        ChannelSection::Ntfy(n) => {
            let token = secret("token", n.token.as_ref(), n.token_file.as_ref())?;
            let mut segments: Vec<&str> = n.url.0.path_segments().map(|s| s.collect()).unwrap_or_default();
            let topic = segments.pop().filter(|t| !t.is_empty()).ok_or_else(|| ChannelError::Invalid {
                channel: name.clone(),
                why: "the ntfy url needs a topic, e.g. https://ntfy.sh/<an unguessable topic>".into(),
            })?;
            let mut publish = n.url.0.clone();
            publish.set_path(&format!("{}/", segments.join("/")));
            publish.set_query(None);
            Sender::Ntfy {
                publish,
                topic: topic.to_string(),
                token,
                http: clients.get(&name, ca.as_deref())?,
            }
        }
        ChannelSection::Webhook(w) => Sender::Webhook {
            url: w.url.0.clone(),
            format: w.format,
            secret: secret("secret", w.secret.as_ref(), w.secret_file.as_ref())?,
            http: clients.get(&name, ca.as_deref())?,
        },
        ChannelSection::Email(e) => {
            let password = secret("password", e.password.as_ref(), e.password_file.as_ref())?;
            let invalid = |why: String| ChannelError::Invalid { channel: name.clone(), why };
            let mut tls = lettre::transport::smtp::client::TlsParameters::builder(e.smtp.host.clone());
            if let Some(pem) = &ca {
                let cert = lettre::transport::smtp::client::Certificate::from_pem(pem)
                    .map_err(|e| invalid(format!("ca_file is not a PEM certificate ({e})")))?;
                tls = tls.add_root_certificate(cert);
            }
            let tls = tls.build_rustls().map_err(|e| invalid(format!("cannot set up TLS ({e})")))?;
            use lettre::transport::smtp::client::Tls;
            let mut builder =
                lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(e.smtp.host.clone())
                    .port(e.smtp.port)
                    // Wrapper: TLS from the first byte. Required: STARTTLS or nothing; lettre sends
                    // neither AUTH nor MAIL over a connection that is not encrypted.
                    .tls(if e.smtp.implicit_tls { Tls::Wrapper(tls) } else { Tls::Required(tls) })
                    .timeout(Some(REQUEST_TIMEOUT));
            let has_login = password.is_some();
            if let (Some(user), Some(pw)) = (&e.username, &password) {
                use lettre::transport::smtp::authentication::{Credentials, Mechanism};
                // PLAIN (under TLS, which is required): one round trip, and the mechanism
                // every server offers; LOGIN says the same in two.
                builder = builder
                    .credentials(Credentials::new(user.clone(), pw.expose().to_string()))
                    .authentication(vec![Mechanism::Plain]);
            }
            let mailbox = |a: &str| {
                a.parse::<lettre::message::Mailbox>()
                    .map_err(|_| invalid(format!("{a:?} is not an e-mail address")))
            };
            Sender::Email {
                transport: builder.build(),
                from: mailbox(&e.from)?,
                to: e.to.iter().map(|a| mailbox(a)).collect::<Result<_, _>>()?,
                has_login,
            }
        }
    };
    Ok(Channel {
        target: c.shown_target(),
        destination: c.destination(),
        name,
        kind: c.kind(),
        min_urgency: c.min_urgency(),
        sender,
    })
}

fn read_ca(channel: &str, ca_file: Option<&Path>, config: &Path) -> Result<Option<Vec<u8>>, ChannelError> {
    let Some(file) = ca_file else { return Ok(None) };
    let path = expand_path(file, config);
    std::fs::read(&path).map(Some).map_err(|e| ChannelError::CaFile {
        channel: channel.to_string(),
        path,
        why: e.to_string(),
    })
}

/// An HTTP client for a channel: the OS trust store plus `ca` (PEM), 30 s per request, no
/// redirects (a redirect could carry the signed body elsewhere), and no idle connections
/// (quiet when idle: no pool reaper, nothing kept open between alerts).
pub fn http_client(channel: &str, ca: Option<&[u8]>) -> Result<reqwest::Client, ChannelError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(REQUEST_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("spotguard/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .tls_built_in_webpki_certs(false)
        .tls_built_in_native_certs(true);
    if let Some(pem) = ca {
        let cert = reqwest::Certificate::from_pem(pem).map_err(|e| ChannelError::Invalid {
            channel: channel.to_string(),
            why: format!("ca_file is not a PEM certificate ({})", e.without_url()),
        })?;
        b = b.add_root_certificate(cert);
    }
    b.build().map_err(|e| ChannelError::Invalid {
        channel: channel.to_string(),
        why: format!("cannot set up HTTPS ({})", e.without_url()),
    })
}

impl Channel {
    /// Whether this channel gets `msg` (by `min_urgency`).
    pub fn wants(&self, msg: &Message) -> bool {
        self.min_urgency == MinUrgency::Normal || msg.critical()
    }

    /// Sends one message; the error is one line without secrets or URL paths.
    pub async fn send(&self, msg: &Message) -> Result<(), String> {
        match tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(5), self.send_inner(msg)).await {
            Ok(r) => r,
            Err(_) => Err(format!("{} did not answer within 30 s", self.target)),
        }
    }

    async fn send_inner(&self, msg: &Message) -> Result<(), String> {
        match &self.sender {
            Sender::Ntfy { publish, topic, token, http } => {
                let mut req = http.post(publish.clone()).json(&ntfy_body(topic, msg));
                if let Some(t) = token {
                    req = req.bearer_auth(t.expose());
                }
                answer(req.send().await, &self.target).await
            }
            Sender::Webhook { url, format, secret, http } => {
                let body = match format {
                    WebhookFormat::Json => serde_json::to_vec(&webhook_body(msg)),
                    WebhookFormat::Slack => serde_json::to_vec(&slack_body(msg)),
                    WebhookFormat::Discord => serde_json::to_vec(&discord_body(msg)),
                }
                .map_err(|e| e.to_string())?;
                let mut req = http.post(url.clone()).header("Content-Type", "application/json");
                if let (Some(secret), WebhookFormat::Json) = (secret, format) {
                    // Signed now, for this attempt: a receiver rejects an old `t`.
                    req = req.header("Spotguard-Signature", sign(secret, Utc::now().timestamp(), &body));
                }
                answer(req.body(body).send().await, &self.target).await
            }
            Sender::Email { transport, from, to, has_login } => {
                let email = email(msg, from, to).map_err(|e| format!("cannot build the e-mail: {e}"))?;
                transport.send(email).await.map(|_| ()).map_err(|e| smtp_error(&e, &self.target, *has_login))
            }
        }
    }

    /// Checks the channel can be reached without sending: DNS, TCP and TLS for HTTP channels,
    /// and for e-mail the SMTP greeting, TLS and login.
    pub async fn probe(&self) -> Result<String, String> {
        match &self.sender {
            Sender::Ntfy { publish: url, http, .. } | Sender::Webhook { url, http, .. } => {
                // A HEAD answers whatever its status; only the connection is being checked.
                match http.head(url.clone()).send().await {
                    Ok(r) => Ok(format!("{} answers (HTTP {})", self.target, r.status().as_u16())),
                    Err(e) => Err(http_error(e, &self.target)),
                }
            }
            Sender::Email { transport, has_login, .. } => match transport.test_connection().await {
                Ok(true) if *has_login => Ok(format!("{} accepts TLS and the login", self.target)),
                Ok(true) => Ok(format!("{} accepts TLS", self.target)),
                Ok(false) => Err(format!("{} did not answer like an SMTP server", self.target)),
                Err(e) => Err(smtp_error(&e, &self.target, *has_login)),
            },
        }
    }
}

async fn answer(sent: Result<reqwest::Response, reqwest::Error>, target: &str) -> Result<(), String> {
    let r = sent.map_err(|e| http_error(e, target))?;
    let status = r.status();
    if status.is_success() {
        return Ok(());
    }
    // The URL's path and query are the capability (a webhook's secret path, the ntfy topic),
    // and receivers echo them in error pages ("Cannot POST /hooks/<secret>"): cut them out.
    let secret_parts: Vec<String> = [r.url().path(), r.url().query().unwrap_or("")]
        .into_iter()
        .flat_map(|p| p.split('/'))
        .filter(|part| part.len() >= 6)
        .map(str::to_string)
        .collect();
    let mut body = r.text().await.unwrap_or_default();
    for part in &secret_parts {
        body = body.replace(part.as_str(), "…");
    }
    let said = clean(body.trim(), 120);
    Err(if said.is_empty() {
        format!("{target} answered HTTP {}", status.as_u16())
    } else {
        format!("{target} answered HTTP {}: {said}", status.as_u16())
    })
}

/// A reqwest error in one line, without the URL (whose path may be a secret).
pub fn http_error(e: reqwest::Error, target: &str) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        return format!("{target} did not answer within 30 s");
    }
    let mut why = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        why = s.to_string();
        source = s.source();
    }
    if e.is_connect() { format!("cannot connect to {target}: {why}") } else { format!("{target}: {why}") }
}

fn smtp_error(e: &lettre::transport::smtp::Error, target: &str, has_login: bool) -> String {
    let code = e.status().map(|c| c.to_string()).unwrap_or_default();
    if has_login && (code == "535" || code == "534" || code == "530") {
        return format!(
            "{target} refused the login ({code}): check `username` and the password (password_file)"
        );
    }
    let text = clean(&e.to_string(), 200);
    if e.is_timeout() {
        format!("{target} did not answer within 30 s")
    } else if e.is_tls() {
        format!("TLS with {target} failed: {text}")
    } else if text.contains("STARTTLS") || text.to_ascii_lowercase().contains("starttls") {
        format!("{target} does not offer STARTTLS, so nothing was sent (no login, no mail): {text}")
    } else {
        format!("{target}: {text}")
    }
}

/// `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (Stripe's scheme).
pub fn sign(secret: &Secret, t: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length: new_from_slice cannot fail.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).expect("HMAC accepts any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// ntfy's JSON publish body (<https://docs.ntfy.sh/publish/#publish-as-json>).
pub fn ntfy_body(topic: &str, msg: &Message) -> serde_json::Value {
    json!({
        "topic": topic,
        "title": msg.title,
        "message": cut(&msg.message, NTFY_MAX_MESSAGE),
        "priority": if msg.critical() { 5 } else { 4 },
        "tags": [if msg.critical() { "rotating_light" } else { "warning" }, "spotguard"],
        "click": msg.sign_out,
        "actions": [
            {"action": "view", "label": "Sign out everywhere", "url": msg.sign_out},
            {"action": "view", "label": "Review app access", "url": msg.apps},
        ],
    })
}

/// The documented, versioned JSON body (README: "Webhook").
#[derive(Debug, Serialize)]
pub struct WebhookBody<'a> {
    pub version: u32,
    pub id: Option<i64>,
    pub kind: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub imitation: bool,
    pub urgency: &'a str,
    pub account: &'a str,
    pub at: String,
    pub device: Option<serde_json::Value>,
    pub playing: Option<serde_json::Value>,
    pub title: &'a str,
    pub message: &'a str,
    pub links: serde_json::Value,
}

pub fn webhook_body(msg: &Message) -> WebhookBody<'_> {
    WebhookBody {
        version: 1,
        id: msg.id,
        kind: msg.kind,
        imitation: msg.imitation,
        urgency: if msg.urgency == Urgency::Critical { "critical" } else { "normal" },
        account: &msg.account,
        at: msg.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        device: msg.device.as_ref().map(|(name, kind, id)| json!({"name": name, "type": kind, "id": id})),
        playing: msg.playing.as_ref().map(|(track, artists)| json!({"track": track, "artists": artists})),
        title: &msg.title,
        message: &msg.message,
        links: json!({"sign_out": msg.sign_out, "apps": msg.apps}),
    }
}

/// Slack's `&`, `<` and `>` escaping for text (<https://api.slack.com/reference/surfaces/formatting>).
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub fn slack_body(msg: &Message) -> serde_json::Value {
    json!({
        "text": format!(
            "*{}*\n{}\n<{}|Sign out everywhere> · <{}|Review app access>",
            slack_escape(&msg.title),
            slack_escape(&msg.message),
            msg.sign_out,
            msg.apps
        )
    })
}

pub fn discord_body(msg: &Message) -> serde_json::Value {
    let text = format!(
        "**{}**\n{}\nSign out everywhere: <{}>\nReview app access: <{}>",
        msg.title,
        cut(&msg.message, 1500),
        msg.sign_out,
        msg.apps
    );
    // No pings, whatever a device is called (`@everyone`).
    json!({"content": cut(&text, DISCORD_MAX), "allowed_mentions": {"parse": []}})
}

/// `s` cut to at most `max` bytes on a character boundary, with `…` when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `Auto-Submitted: auto-generated` (RFC 3834): no out-of-office replies to alerts.
#[derive(Debug, Clone)]
struct AutoSubmitted;

impl lettre::message::header::Header for AutoSubmitted {
    fn name() -> lettre::message::header::HeaderName {
        lettre::message::header::HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> lettre::message::header::HeaderValue {
        lettre::message::header::HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

/// The subject: "[spotguard] Unknown device on your Spotify account: Galaxy S24".
pub fn subject(msg: &Message) -> String {
    match (&msg.device, msg.kind) {
        (Some((name, _, _)), "device_appeared" | "unknown_playing") if !msg.imitation => {
            format!("[spotguard] {}: {name}", msg.title)
        }
        _ => format!("[spotguard] {}", msg.title),
    }
}

fn email(
    msg: &Message,
    from: &lettre::message::Mailbox,
    to: &[lettre::message::Mailbox],
) -> Result<lettre::Message, lettre::error::Error> {
    let mut b = lettre::Message::builder().from(from.clone());
    for t in to {
        b = b.to(t.clone());
    }
    b.subject(subject(msg))
        .date_now()
        .header(AutoSubmitted)
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(msg.text_with_links())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_error_page_that_echoes_the_secret_path_is_told_without_it() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let body = "Cannot POST /hooks/s3cr3t-path-0123";
            let reply = format!("HTTP/1.1 404 Not Found\r\ncontent-length: {}\r\n\r\n{body}", body.len());
            let _ = sock.write_all(reply.as_bytes()).await;
        });
        let sent = reqwest::Client::new().post(format!("http://{addr}/hooks/s3cr3t-path-0123")).send().await;
        let e = answer(sent, "127.0.0.1").await.expect_err("404");
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(e.contains("answered HTTP 404: Cannot POST /hooks/…"), "{e}");
    }

    fn msg() -> Message {
        let links = Links {
            sign_out: "https://www.spotify.com/account/overview/".into(),
            apps: "https://www.spotify.com/account/apps/".into(),
            name_accounts: false,
        };
        let ev = StoredEvent {
            id: 7,
            account: "default".into(),
            device: Some(3),
            at: chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 1, 12, 0, 0).single().expect("t"),
            event: Event::UnknownPlaying {
                name: "Galaxy <S24> & co".into(),
                device_type: "Smartphone".into(),
                what: "\u{201c}Song\u{201d} by Band".into(),
                private_session: false,
                track: Some("Song".into()),
                artists: vec!["Band".into(), "Other".into()],
                looks_like: None,
                generic: None,
            },
            attempts: 0,
        };
        Message::from_event(&ev, Some("sp-id".into()), &links).expect("shown")
    }

    #[test]
    fn webhook_json_has_the_documented_schema() {
        let v = serde_json::to_value(webhook_body(&msg())).expect("json");
        assert_eq!(v["version"], 1);
        assert_eq!(v["id"], 7);
        assert_eq!(v["kind"], "unknown_playing");
        assert_eq!(v["urgency"], "critical");
        assert_eq!(v["at"], "2026-11-01T12:00:00Z");
        assert_eq!(v["device"], json!({"name": "Galaxy <S24> & co", "type": "Smartphone", "id": "sp-id"}));
        assert_eq!(v["playing"], json!({"track": "Song", "artists": ["Band", "Other"]}));
        assert_eq!(v["links"]["apps"], "https://www.spotify.com/account/apps/");
        assert!(v.get("imitation").is_none());
    }

    #[test]
    fn signature_is_hmac_sha256_of_t_dot_body() {
        // RFC 4231 test case 2 uses key "Jefe"; here the input is "<t>.<body>".
        let s = sign(&Secret::new("Jefe"), 0, b"what do ya want for nothing?");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"0.what do ya want for nothing?");
        let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(s, format!("t=0,v1={want}"));
        assert_eq!(want.len(), 64);
    }

    #[test]
    fn slack_escapes_and_discord_mentions_nobody() {
        let s = slack_body(&msg())["text"].as_str().expect("text").to_string();
        assert!(s.contains("Galaxy &lt;S24&gt; &amp; co"), "{s}");
        assert!(s.contains("<https://www.spotify.com/account/overview/|Sign out everywhere>"), "{s}");
        let d = discord_body(&msg());
        assert_eq!(d["allowed_mentions"], json!({"parse": []}));
        assert!(d["content"].as_str().expect("content").len() <= DISCORD_MAX);
    }

    #[test]
    fn ntfy_is_urgent_for_critical_and_cuts_long_text() {
        let mut m = msg();
        let v = ntfy_body("t", &m);
        assert_eq!(v["priority"], 5);
        m.urgency = Urgency::Normal;
        m.message = "é".repeat(5000);
        let v = ntfy_body("t", &m);
        assert_eq!(v["priority"], 4);
        assert!(v["message"].as_str().expect("m").len() < 4096);
        assert_eq!(
            subject(&msg()),
            "[spotguard] Unknown device is playing on your Spotify account: Galaxy <S24> & co"
        );
    }
}
