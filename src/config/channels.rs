//! `[[channels]]` (ntfy, webhooks, e-mail) and `[health]` (the heartbeat): what the person
//! writes, checked while it is parsed, and the secrets they name, read by [`resolve_secret`].
//!
//! Secrets follow the ssh rule: a literal in the config only when the config file has no
//! group or other bits, `env:NAME`, or a `*_file` with no group or other bits. Nothing here
//! ever puts a secret, an ntfy topic or a heartbeat UUID into a message: URLs are shown
//! through [`redact_url`], which keeps the scheme, host and port only.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::Secret;

/// Which alerts a channel gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MinUrgency {
    /// Every alert.
    #[default]
    Normal,
    /// Only critical ones: playing, access lost, not watching (and an imitation).
    Critical,
}

/// A webhook's body shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// spotguard's documented, versioned JSON (README), signed when a secret is set.
    #[default]
    Json,
    /// Slack's incoming-webhook `{"text": ...}`.
    Slack,
    /// Discord's webhook `{"content": ...}`.
    Discord,
}

/// A secret written in the config: a literal, or `env:NAME`. Its `Debug` shows neither.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct SecretValue(String);

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

/// One `[[channels]]` table, told apart by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ChannelSection {
    Ntfy(NtfySection),
    Webhook(WebhookSection),
    Email(EmailSection),
}

/// `type = "ntfy"`: <https://docs.ntfy.sh/publish/>.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NtfySection {
    /// Labels the channel in `status`, `doctor` and logs; default `ntfy-N`.
    pub name: Option<String>,
    /// Server and topic in one URL, e.g. `https://ntfy.sh/spotguard-3f9c2a`.
    pub url: ChannelUrl,
    /// An access token (`Authorization: Bearer`): literal or `env:NAME`.
    pub token: Option<SecretValue>,
    pub token_file: Option<PathBuf>,
    #[serde(default)]
    pub min_urgency: MinUrgency,
    /// One more CA to trust (PEM), besides the operating system's.
    pub ca_file: Option<PathBuf>,
}

/// `type = "webhook"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSection {
    pub name: Option<String>,
    pub url: ChannelUrl,
    #[serde(default)]
    pub format: WebhookFormat,
    /// The HMAC key of `Spotguard-Signature` (json only).
    pub secret: Option<SecretValue>,
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub min_urgency: MinUrgency,
    pub ca_file: Option<PathBuf>,
}

/// `type = "email"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSection {
    pub name: Option<String>,
    /// `smtps://host[:465]` (TLS from the start) or `smtp://host[:587]` (STARTTLS required).
    pub smtp: SmtpUrl,
    pub username: Option<String>,
    pub password: Option<SecretValue>,
    pub password_file: Option<PathBuf>,
    /// `"spotguard <me@example.org>"`
    pub from: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub min_urgency: MinUrgency,
    pub ca_file: Option<PathBuf>,
}

/// `[health]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    /// A healthchecks.io-style URL: GET after good rounds, `/fail` after failed ones.
    pub ping_url: Option<ChannelUrl>,
    pub ca_file: Option<PathBuf>,
}

impl ChannelSection {
    /// `ntfy`, `webhook` or `email`.
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelSection::Ntfy(_) => "ntfy",
            ChannelSection::Webhook(_) => "webhook",
            ChannelSection::Email(_) => "email",
        }
    }

    /// The name the person gave, if any.
    pub fn given_name(&self) -> Option<&str> {
        match self {
            ChannelSection::Ntfy(c) => c.name.as_deref(),
            ChannelSection::Webhook(c) => c.name.as_deref(),
            ChannelSection::Email(c) => c.name.as_deref(),
        }
    }

    pub fn min_urgency(&self) -> MinUrgency {
        match self {
            ChannelSection::Ntfy(c) => c.min_urgency,
            ChannelSection::Webhook(c) => c.min_urgency,
            ChannelSection::Email(c) => c.min_urgency,
        }
    }

    pub fn ca_file(&self) -> Option<&Path> {
        match self {
            ChannelSection::Ntfy(c) => c.ca_file.as_deref(),
            ChannelSection::Webhook(c) => c.ca_file.as_deref(),
            ChannelSection::Email(c) => c.ca_file.as_deref(),
        }
    }

    /// Where it sends, as a fingerprint ([`crate::text::fingerprint`]; the URL's path and the
    /// topic are secrets): a channel's place in the outbox follows it when the channel is
    /// renamed or moves in the file (which renumbers unnamed ones).
    pub fn destination(&self) -> String {
        let place = match self {
            ChannelSection::Ntfy(c) => c.url.0.to_string(),
            ChannelSection::Webhook(c) => c.url.0.to_string(),
            ChannelSection::Email(c) => format!("{} {}", c.smtp, c.to.join(",")),
        };
        crate::text::fingerprint(&format!("spotguard {} channel", self.kind()), &place)
    }

    /// Where it sends, safe to show: scheme, host and port.
    pub fn shown_target(&self) -> String {
        match self {
            ChannelSection::Ntfy(c) => redact_url(&c.url.0),
            ChannelSection::Webhook(c) => redact_url(&c.url.0),
            ChannelSection::Email(c) => c.smtp.to_string(),
        }
    }
}

/// The names of `channels`, in order: the given one, or `TYPE-N` (N counting that type from 1).
pub fn channel_names(channels: &[ChannelSection]) -> Vec<String> {
    let mut counts = std::collections::HashMap::new();
    channels
        .iter()
        .map(|c| {
            let n = counts.entry(c.kind()).or_insert(0);
            *n += 1;
            c.given_name().map_or_else(|| format!("{}-{n}", c.kind()), str::to_string)
        })
        .collect()
}

/// A URL something is sent to: `https`, or `http` to a loopback host (tests, a local relay).
/// No `user:password@`: a secret goes in a secret key, where it is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelUrl(pub reqwest::Url);

impl<'de> Deserialize<'de> for ChannelUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        // The message may not quote the URL: its path can be a capability (a topic, a UUID).
        let url =
            reqwest::Url::parse(&text).map_err(|e| serde::de::Error::custom(format!("not a URL ({e})")))?;
        check_url(&url).map_err(serde::de::Error::custom)?;
        Ok(ChannelUrl(url))
    }
}

fn check_url(url: &reqwest::Url) -> Result<(), String> {
    let shown = redact_url(url);
    if url.host_str().is_none() {
        return Err(format!("{shown} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{shown} carries a user name or password; put a token in `token_file`/`secret_file` instead"
        ));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        _ => Err(format!("{shown} must be https (http only to a loopback host such as 127.0.0.1)")),
    }
}

/// 127.0.0.0/8, ::1 or `localhost`.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// `scheme://host[:port]/…`: the path and query of a channel URL are often its secret (an
/// ntfy topic, a Slack or Discord webhook key, a heartbeat UUID), so they are never shown.
pub fn redact_url(url: &reqwest::Url) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(h) => h.to_string(),
        None => String::new(),
    };
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let path = if url.path().len() > 1 || url.query().is_some() { "/…" } else { "/" };
    format!("{}://{host}{port}{path}", url.scheme())
}

/// `smtps://host[:port]` or `smtp://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    /// TLS from the first byte (`smtps`), else STARTTLS, which is required.
    pub implicit_tls: bool,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.implicit_tls { "smtps" } else { "smtp" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl<'de> Deserialize<'de> for SmtpUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let bad = |why: &str| serde::de::Error::custom(format!("\"{text}\" {why}"));
        let url =
            reqwest::Url::parse(&text).map_err(|_| bad("is not a URL like smtps://smtp.example.org:465"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(serde::de::Error::custom(
                "the smtp URL carries a user name or password; use `username` and `password_file`",
            ));
        }
        let implicit_tls = match url.scheme() {
            "smtps" => true,
            "smtp" => false,
            _ => return Err(bad("must start with smtps:// (port 465) or smtp:// (port 587, STARTTLS)")),
        };
        let host = url.host_str().ok_or_else(|| bad("has no host"))?.trim_matches(['[', ']']).to_string();
        if url.path().len() > 1 || url.query().is_some() {
            return Err(bad("has a path or query; give only the host and port"));
        }
        let port = url.port().unwrap_or(if implicit_tls { 465 } else { 587 });
        Ok(SmtpUrl { implicit_tls, host, port })
    }
}

/// Why a secret could not be read, in one sentence that names the fix (never the secret).
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{key} is written in the config file {config}, which others can read (mode {mode:04o}); run `chmod 600 {config}`, or use {key}_file or {key} = \"env:NAME\""
    )]
    LiteralInReadableConfig { key: String, config: PathBuf, mode: u32 },
    #[error("{key} = \"env:{var}\", but the environment variable {var} is not set or empty")]
    MissingEnv { key: String, var: String },
    #[error("cannot read {key}_file {path}: {source}")]
    Read { key: String, path: PathBuf, source: std::io::Error },
    #[error("{key}_file {path} can be read by others (mode {mode:04o}); run `chmod 600 {path}`")]
    FileMode { key: String, path: PathBuf, mode: u32 },
    #[error("{key}_file {path} is empty")]
    Empty { key: String, path: PathBuf },
    #[error("set either {key} or {key}_file, not both")]
    Both { key: String },
}

/// Reads a secret given as `key = literal | "env:NAME"` or `key_file = path`. `config` is the
/// config file and `config_mode` its permission bits (`None`: not known, e.g. no file).
/// `~/` in a file path is the home directory; a relative path is relative to the config's
/// directory. Whitespace around a file's content (a final newline) is dropped.
pub fn resolve_secret(
    key: &str,
    literal: Option<&SecretValue>,
    file: Option<&Path>,
    config: &Path,
    config_mode: Option<u32>,
) -> Result<Option<Secret>, SecretError> {
    match (literal, file) {
        (Some(_), Some(_)) => Err(SecretError::Both { key: key.to_string() }),
        (None, None) => Ok(None),
        (Some(SecretValue(v)), None) => match v.strip_prefix("env:") {
            Some(var) => match std::env::var(var) {
                Ok(value) if !value.trim().is_empty() => Ok(Some(Secret::new(value.trim()))),
                _ => Err(SecretError::MissingEnv { key: key.to_string(), var: var.to_string() }),
            },
            None => match config_mode {
                Some(mode) if mode & 0o077 == 0 => Ok(Some(Secret::new(v.clone()))),
                mode => Err(SecretError::LiteralInReadableConfig {
                    key: key.to_string(),
                    config: config.to_path_buf(),
                    mode: mode.unwrap_or(0o644),
                }),
            },
        },
        (None, Some(path)) => {
            let path = expand_path(path, config);
            let read = |source| SecretError::Read { key: key.to_string(), path: path.clone(), source };
            let mode = file_mode(&path).map_err(read)?;
            if mode & 0o077 != 0 {
                return Err(SecretError::FileMode { key: key.to_string(), path, mode });
            }
            let mut text = std::fs::read_to_string(&path).map_err(read)?;
            let value = Secret::new(text.trim());
            zeroize::Zeroize::zeroize(&mut text);
            if value.expose().is_empty() {
                return Err(SecretError::Empty { key: key.to_string(), path });
            }
            Ok(Some(value))
        }
    }
}

/// `~/x` under the home directory; a relative path beside the config file.
pub fn expand_path(path: &Path, config: &Path) -> PathBuf {
    if let Ok(rest) = path.strip_prefix("~")
        && let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty())
    {
        return PathBuf::from(home).join(rest);
    }
    if path.is_relative() {
        return config.parent().unwrap_or_else(|| Path::new(".")).join(path);
    }
    path.to_path_buf()
}

/// The permission bits of `path` (Unix); 0 elsewhere, where the rule cannot be checked.
pub fn file_mode(path: &Path) -> std::io::Result<u32> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Ok(meta.permissions().mode() & 0o777)
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn url(s: &str) -> reqwest::Url {
        reqwest::Url::parse(s).expect("url")
    }

    #[test]
    fn urls_are_shown_without_their_path() {
        assert_eq!(redact_url(&url("https://ntfy.sh/spotguard-3f9c2a")), "https://ntfy.sh/…");
        assert_eq!(redact_url(&url("http://127.0.0.1:8080/x?y=1")), "http://127.0.0.1:8080/…");
        assert_eq!(redact_url(&url("http://[::1]:9/a")), "http://[::1]:9/…");
        assert_eq!(redact_url(&url("https://hc-ping.com")), "https://hc-ping.com/");
    }

    #[test]
    fn only_https_or_loopback_http_and_no_userinfo() {
        for ok in ["https://ntfy.sh/t", "http://127.0.0.2:1/t", "http://[::1]/t", "http://localhost:9/t"] {
            check_url(&url(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["http://ntfy.sh/t", "http://127.0.0.1.evil.example/t", "ftp://x/y", "https://u:p@x/t"] {
            let e = check_url(&url(bad)).expect_err(bad);
            assert!(!e.contains("/t"), "the path is not shown: {e}");
        }
    }

    #[test]
    fn unnamed_channels_are_type_n() {
        let text = "[[channels]]\ntype = \"ntfy\"\nurl = \"https://ntfy.sh/a\"\n\
                    [[channels]]\ntype = \"webhook\"\nurl = \"https://x.example/h\"\n\
                    [[channels]]\ntype = \"ntfy\"\nurl = \"https://ntfy.sh/b\"\n\
                    [[channels]]\ntype = \"ntfy\"\nname = \"phone\"\nurl = \"https://ntfy.sh/c\"\n";
        #[derive(Deserialize)]
        struct T {
            channels: Vec<ChannelSection>,
        }
        let t: T = toml::from_str(text).expect("valid");
        assert_eq!(channel_names(&t.channels), ["ntfy-1", "webhook-1", "ntfy-2", "phone"]);
    }

    #[test]
    fn secret_rules() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        let lit = SecretValue("s3cret-literal".into());
        let e = resolve_secret("token", Some(&lit), None, &config, Some(0o644)).expect_err("readable");
        let m = e.to_string();
        assert!(m.contains("chmod 600") && m.contains("config.toml") && !m.contains("s3cret"), "{m}");
        let ok = resolve_secret("token", Some(&lit), None, &config, Some(0o600)).expect("ok");
        assert_eq!(ok.expect("some").expose(), "s3cret-literal");

        let file = dir.path().join("t.token");
        std::fs::write(&file, "  tk_file_value\n").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let m = resolve_secret("token", None, Some(Path::new("t.token")), &config, None)
            .expect_err("group bit")
            .to_string();
        assert!(m.contains("chmod 600") && m.contains("t.token") && m.contains("0640"), "{m}");
        assert!(!m.contains("tk_file_value"), "{m}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        let ok = resolve_secret("token", None, Some(Path::new("t.token")), &config, None).expect("ok");
        assert_eq!(ok.expect("some").expose(), "tk_file_value", "relative to the config, trimmed");

        let env = SecretValue("env:SPOTGUARD_TEST_UNSET_VAR_XYZ".into());
        let m = resolve_secret("secret", Some(&env), None, &config, None).expect_err("unset").to_string();
        assert!(m.contains("SPOTGUARD_TEST_UNSET_VAR_XYZ"), "{m}");
        assert!(matches!(
            resolve_secret("secret", Some(&lit), Some(&file), &config, Some(0o600)),
            Err(SecretError::Both { .. })
        ));
        assert_eq!(format!("{lit:?}"), "SecretValue(***)");
    }

    #[test]
    fn smtp_urls() {
        #[derive(Deserialize)]
        struct T {
            smtp: SmtpUrl,
        }
        let t: T = toml::from_str("smtp = \"smtps://mail.example.org\"").expect("ok");
        assert_eq!(t.smtp, SmtpUrl { implicit_tls: true, host: "mail.example.org".into(), port: 465 });
        let t: T = toml::from_str("smtp = \"smtp://127.0.0.1:2525\"").expect("ok");
        assert_eq!(t.smtp.port, 2525);
        assert!(!t.smtp.implicit_tls);
        assert!(toml::from_str::<T>("smtp = \"smtp://me:pw@x\"").is_err());
        assert!(toml::from_str::<T>("smtp = \"https://x\"").is_err());
    }
}
