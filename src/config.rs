//! Configuration: defaults, the TOML file, validation, and the platform paths.
//!
//! Owns what the person can set and what is allowed. Every key has a default in a `Default`
//! impl, mirrored in `config.example.toml`. Unknown keys are errors: in a security tool a typo
//! must not silently switch an alert off. Values are checked while they are parsed, so the
//! TOML parser's error names the key and its line. This module does no I/O beyond reading
//! the one file it is given.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod channels;
pub use channels::{ChannelSection, HealthSection, MinUrgency, WebhookFormat, redact_url};

/// Spotify's account page, where "Sign out everywhere" lives.
pub const DEFAULT_SIGN_OUT_URL: &str = "https://www.spotify.com/account/overview/";
/// Spotify's page listing partner devices and apps, which sign-out-everywhere does not cover.
pub const DEFAULT_APPS_URL: &str = "https://www.spotify.com/account/apps/";

/// The whole configuration, as read from the file and completed with defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the Spotify Web API and Accounts service are, and the registered app.
    pub spotify: SpotifySection,
    /// When to poll.
    pub schedule: ScheduleSection,
    /// Where the database lives.
    pub storage: StorageSection,
    /// What counts as alarming and where the alerts send the person.
    pub alerts: AlertsSection,
    /// How alerts reach the person.
    pub notify: NotifySection,
    /// Where tokens are kept.
    pub auth: AuthSection,
    /// The Spotify accounts to watch; none means one account named `default`.
    pub accounts: Vec<AccountSection>,
    /// Devices recorded but never alerted: `[[ignore]]` with `name` (a `*` pattern) and/or `type`.
    pub ignore: Vec<crate::audit::IgnoreRule>,
    /// Where else alerts go: `[[channels]]` of type ntfy, webhook or email.
    pub channels: Vec<ChannelSection>,
    /// The heartbeat.
    pub health: HealthSection,
    /// The config file's permission bits, read by [`Config::load`]: a secret written in the
    /// file is refused unless it has no group or other bits (the ssh rule).
    #[serde(skip)]
    pub file_mode: Option<u32>,
}

/// `[auth]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Where tokens are kept: the OS secret store, a 0600 file, or the first that works.
    pub token_store: TokenStoreKind,
}

/// `auth.token_store`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenStoreKind {
    /// The OS secret store where one answers, else the file.
    #[default]
    Auto,
    Keyring,
    File,
}

/// One `[[accounts]]` table: a Spotify account to watch, with optional overrides.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSection {
    /// A short name of your choosing (letters, digits, `-`, `_`), used in alerts and commands.
    pub name: String,
    /// This account's app, if not `spotify.client_id`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Overrides `alerts.device_limit` for this account.
    #[serde(default)]
    pub device_limit: Option<u32>,
    /// Overrides `alerts.realert_after` for this account.
    #[serde(default)]
    pub realert_after: Option<HumanDuration>,
}

/// The name of the one account when the config names none.
pub const DEFAULT_ACCOUNT: &str = "default";

/// `[spotify]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpotifySection {
    /// The Client ID of the app the person registered on developer.spotify.com.
    pub client_id: String,
    /// The loopback redirect URI registered for that app (Spotify refuses `localhost`).
    pub redirect_uri: BaseUrl,
    /// Base of the Web API; tests and the demo point it at the fake on loopback.
    pub api_base: BaseUrl,
    /// Base of the Accounts service (authorize and token endpoints).
    pub accounts_base: BaseUrl,
}

impl Default for SpotifySection {
    fn default() -> Self {
        Self {
            client_id: String::new(),
            redirect_uri: BaseUrl("http://127.0.0.1:8898/callback".into()),
            api_base: BaseUrl("https://api.spotify.com/v1".into()),
            accounts_base: BaseUrl("https://accounts.spotify.com".into()),
        }
    }
}

/// `[schedule]`: exactly one of `every` and `cron`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleSection {
    /// A fixed interval such as `"60s"` or `"5m"`.
    pub every: Option<HumanDuration>,
    /// A 6-field cron line, seconds first, e.g. `"0 */2 * * * *"`.
    pub cron: Option<CronLine>,
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    /// The SQLite file; tokens are kept in `tokens/` beside it. Default: the data dir.
    pub database: Option<PathBuf>,
    /// Events and presence older than this are deleted, so the database stays small for years.
    pub keep_events: HumanDuration,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self { database: None, keep_events: HumanDuration(Duration::from_secs(400 * 86_400)) }
    }
}

/// `[alerts]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsSection {
    /// Opened by the notification's click and its "Sign out everywhere" button.
    pub sign_out_url: SpotifyPageUrl,
    /// Opened by "Review app access": partner devices are removed there.
    pub apps_url: SpotifyPageUrl,
    /// The command that opens a URL; the URL is appended as the last argument.
    pub opener: Vec<String>,
    /// Alert when this many distinct devices were seen within 30 days.
    pub device_limit: u32,
    /// An unknown device is alerted again only after this long.
    pub realert_after: HumanDuration,
    /// With no successful poll of an account for this long, one "not watching" notice;
    /// zero turns it off.
    pub silent_after: HumanDuration,
}

impl Default for AlertsSection {
    fn default() -> Self {
        let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
        Self {
            sign_out_url: SpotifyPageUrl(DEFAULT_SIGN_OUT_URL.into()),
            apps_url: SpotifyPageUrl(DEFAULT_APPS_URL.into()),
            opener: vec![opener.into()],
            device_limit: 6,
            realert_after: HumanDuration(Duration::from_secs(24 * 3600)),
            silent_after: HumanDuration(Duration::from_secs(3600)),
        }
    }
}

/// `[notify]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifySection {
    /// Show desktop notifications (the audit log is always written).
    pub desktop: bool,
    /// How long a shown notification's buttons stay answerable. Bounded because some
    /// servers never report a click or a close, and each wait holds a bus connection.
    pub action_timeout: HumanDuration,
}

impl Default for NotifySection {
    fn default() -> Self {
        Self { desktop: true, action_timeout: HumanDuration(Duration::from_secs(3600)) }
    }
}

/// What went wrong with the configuration, in one sentence that names the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config file {path}: {key}: {message}")]
    Invalid { path: PathBuf, key: &'static str, message: String },
    #[error("no home directory found: set XDG_CONFIG_HOME and XDG_DATA_HOME, or pass --config")]
    NoHome,
}

/// Where the configuration came from: a file, or only defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    /// The default path had no file; every value is a default.
    Defaults(PathBuf),
}

impl Source {
    /// The path, whether or not a file is there.
    pub fn path(&self) -> &Path {
        match self {
            Source::File(p) | Source::Defaults(p) => p,
        }
    }
}

/// The schedule as the daemon uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Every(Duration),
    Cron(String),
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Every(d) => write!(f, "every {}", humantime::format_duration(*d)),
            Schedule::Cron(c) => write!(f, "cron \"{c}\""),
        }
    }
}

/// The default polling interval when the file names none.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(60);
/// Below this the daemon warns: Spotify rate-limits per app over 30 s windows.
pub const WARN_EVERY_BELOW: Duration = Duration::from_secs(15);

impl Config {
    /// Loads the configuration: `explicit` (from `--config` or `SPOTGUARD_CONFIG`) must
    /// exist; the default path may be absent, which means all defaults.
    pub fn load(explicit: Option<&Path>) -> Result<(Config, Source), ConfigError> {
        let (path, must_exist) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => (default_config_path()?, false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut config = Config::parse(&text, &path)?;
                config.file_mode = channels::file_mode(&path).ok();
                Ok((config, Source::File(path)))
            }
            Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => {
                let config = Config::default();
                config.validate(&path)?;
                Ok((config, Source::Defaults(path)))
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Parses and validates TOML text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: one_line_toml_error(&e, text),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks what single values cannot: combinations of keys.
    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            message: message.to_string(),
        };
        if self.schedule.every.is_some() && self.schedule.cron.is_some() {
            return Err(invalid("schedule", "set either `every` or `cron`, not both"));
        }
        if let Some(every) = &self.schedule.every
            && every.0 < Duration::from_secs(1)
        {
            return Err(invalid("schedule.every", "the interval must be at least 1s"));
        }
        if self.alerts.opener.is_empty() || self.alerts.opener[0].trim().is_empty() {
            return Err(invalid("alerts.opener", "give the command that opens a URL, e.g. [\"xdg-open\"]"));
        }
        let mut names = std::collections::HashSet::new();
        for a in &self.accounts {
            let ok = !a.name.is_empty()
                && a.name.len() <= 64
                && a.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    key: "accounts.name",
                    message: format!("{:?} is not allowed: use letters, digits, '-' and '_'", a.name),
                });
            }
            if !names.insert(a.name.as_str()) {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    key: "accounts.name",
                    message: format!("{:?} is named twice", a.name),
                });
            }
            if a.device_limit == Some(0) {
                return Err(invalid("accounts.device_limit", "the limit must be 1 or more"));
            }
        }
        if self.ignore.iter().any(|r| r.name.is_none() && r.device_type.is_none()) {
            return Err(invalid("ignore", "each [[ignore]] needs a name pattern, a type, or both"));
        }
        let mut seen = std::collections::HashSet::new();
        for name in channels::channel_names(&self.channels) {
            let ok = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    key: "channels.name",
                    message: format!("{name:?} is not allowed: use letters, digits, '-' and '_'"),
                });
            }
            if !seen.insert(name.clone()) {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    key: "channels.name",
                    message: format!("{name:?} is named twice; channel names must be unique"),
                });
            }
        }
        for c in &self.channels {
            if let ChannelSection::Email(e) = c {
                if e.to.is_empty() {
                    return Err(invalid(
                        "channels.to",
                        "an email channel needs at least one address in `to`",
                    ));
                }
                for a in e.to.iter().chain(std::iter::once(&e.from)) {
                    if a.parse::<lettre::message::Mailbox>().is_err() {
                        return Err(ConfigError::Invalid {
                            path: path.to_path_buf(),
                            key: "channels.from/to",
                            message: format!("{a:?} is not an e-mail address like \"me <me@example.org>\""),
                        });
                    }
                }
                if (e.password.is_some() || e.password_file.is_some()) && e.username.is_none() {
                    return Err(invalid("channels.username", "a password needs a username"));
                }
            }
        }
        if self.storage.keep_events.0 < Duration::from_secs(86_400) {
            return Err(invalid("storage.keep_events", "keep at least a day of history, e.g. \"400d\""));
        }
        if self.alerts.device_limit == 0 {
            return Err(invalid("alerts.device_limit", "the limit must be 1 or more"));
        }
        for (key, base) in [
            ("spotify.api_base", &self.spotify.api_base),
            ("spotify.accounts_base", &self.spotify.accounts_base),
        ] {
            if !secure_or_loopback(base.as_str()) {
                return Err(invalid(
                    key,
                    &format!(
                        "\"{}\" is plain http to a host that is not this machine: tokens would cross the \
                         network unencrypted; use https (http is only for 127.0.0.1, [::1] or localhost)",
                        crate::text::terminal(base.as_str())
                    ),
                ));
            }
        }
        if let Some(db) = &self.storage.database
            && db.to_string_lossy().chars().any(char::is_control)
        {
            return Err(invalid(
                "storage.database",
                &format!(
                    "{} holds a control character (such as a newline), which no path spotguard writes \
                     into a service file may hold; choose another path",
                    crate::text::terminal(&db.to_string_lossy())
                ),
            ));
        }
        if loopback_redirect(self.spotify.redirect_uri.as_str()).is_none() {
            return Err(invalid(
                "spotify.redirect_uri",
                "Spotify accepts only a loopback literal here, e.g. \"http://127.0.0.1:8898/callback\" (not localhost)",
            ));
        }
        Ok(())
    }

    /// The accounts to watch, in order: the `[[accounts]]` tables, or `default` alone.
    pub fn account_names(&self) -> Vec<String> {
        if self.accounts.is_empty() {
            vec![DEFAULT_ACCOUNT.to_string()]
        } else {
            self.accounts.iter().map(|a| a.name.clone()).collect()
        }
    }

    /// The `[[accounts]]` table of `name`, if any.
    pub fn account(&self, name: &str) -> Option<&AccountSection> {
        self.accounts.iter().find(|a| a.name == name)
    }

    /// The Client ID to use for `account`: its own, else `spotify.client_id`.
    pub fn client_id(&self, account: &str) -> &str {
        self.account(account).and_then(|a| a.client_id.as_deref()).unwrap_or(&self.spotify.client_id)
    }

    /// The schedule to run: the configured one, or every 60 s.
    pub fn schedule(&self) -> Schedule {
        match (&self.schedule.every, &self.schedule.cron) {
            (_, Some(cron)) => Schedule::Cron(cron.0.clone()),
            (Some(every), None) => Schedule::Every(every.0),
            (None, None) => Schedule::Every(DEFAULT_EVERY),
        }
    }

    /// The database file: the configured one, or `<data dir>/spotguard.db`.
    pub fn database_path(&self) -> Result<PathBuf, ConfigError> {
        match &self.storage.database {
            Some(p) => Ok(p.clone()),
            None => Ok(project_dirs()?.data_dir().join("spotguard.db")),
        }
    }

    /// Where token files live: `tokens/` beside the database, so one data directory holds
    /// everything that belongs to one installation.
    pub fn tokens_dir(&self) -> Result<PathBuf, ConfigError> {
        let db = self.database_path()?;
        Ok(db.parent().unwrap_or_else(|| Path::new(".")).join("tokens"))
    }
}

/// The address and path the login callback listens on, if `uri` is what Spotify accepts for
/// a local app and the listener can bind: `http`, a loopback IP literal (not `localhost`), an
/// explicit port. The one definition of that rule, for the config check and the listener.
pub fn loopback_redirect(uri: &str) -> Option<(std::net::SocketAddr, String)> {
    let url = reqwest::Url::parse(uri).ok()?;
    let ip: std::net::IpAddr = url.host_str()?.trim_matches(['[', ']']).parse().ok()?;
    (url.scheme() == "http" && ip.is_loopback())
        .then(|| url.port().map(|port| (std::net::SocketAddr::new(ip, port), url.path().to_string())))
        .flatten()
}

/// Whether `url` is https, or http to this machine: 127.0.0.0/8, `[::1]` or `localhost`
/// (the fake Spotify of the tests and the demo). Anything else would carry tokens in clear.
pub fn secure_or_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else { return false };
    match url.scheme() {
        "https" => true,
        "http" => url.host_str().is_some_and(|host| {
            // The URL parser has already normalised the host: lowercase, IPv4 in dotted form.
            host == "localhost"
                || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }),
        _ => false,
    }
}

/// `$XDG_CONFIG_HOME/spotguard/config.toml` on Linux; the platform's equivalent elsewhere.
pub fn default_config_path() -> Result<PathBuf, ConfigError> {
    Ok(project_dirs()?.config_dir().join("config.toml"))
}

fn project_dirs() -> Result<directories::ProjectDirs, ConfigError> {
    directories::ProjectDirs::from("", "", "spotguard").ok_or(ConfigError::NoHome)
}

/// toml's Display is several lines with a source excerpt; a person reading a log or a
/// terminal wants one line that still names the key: `line 3 (device_limit = "six"): <what>`.
fn one_line_toml_error(e: &toml::de::Error, text: &str) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line = text[..start].matches('\n').count() + 1;
            let source = text.lines().nth(line - 1).unwrap_or("").trim();
            let mut source: String = source.chars().take(80).collect();
            // In `[[channels]]` and `[health]` a value may be a secret or a capability URL
            // (even under a misspelt key): show the key only.
            let section = text.lines().take(line).filter(|l| l.trim_start().starts_with('[')).last();
            if section.is_some_and(|s| s.contains("channels") || s.contains("health"))
                && let Some((key, _)) = source.split_once('=')
            {
                source = format!("{} = …", key.trim());
            }
            if source.is_empty() {
                format!("line {line}: {message}")
            } else {
                format!("line {line} ({source}): {message}")
            }
        }
        None => message,
    }
}

/// A duration written the human way: `"90s"`, `"5m"`, `"24h"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(text.trim()).map(HumanDuration).map_err(|_| {
            serde::de::Error::custom(format!(
                "\"{text}\" is not a duration; write it like \"60s\", \"5m\" or \"24h\""
            ))
        })
    }
}

/// A cron line of 6 fields (seconds first), checked by the scheduler's own parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronLine(pub String);

impl<'de> Deserialize<'de> for CronLine {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        check_cron(&text).map(CronLine).map_err(serde::de::Error::custom)
    }
}

/// Accepts a 6-field cron line; a classic 5-field line gets the fix spelled out.
pub fn check_cron(text: &str) -> Result<String, String> {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let fields = line.split(' ').filter(|f| !f.is_empty()).count();
    if fields == 5 {
        return Err(format!(
            "\"{text}\" has 5 fields, but spotguard's cron has 6 with seconds first: \
             did you mean \"0 {line}\"?"
        ));
    }
    if fields != 6 {
        return Err(format!(
            "\"{text}\" has {fields} fields; a cron line here has 6: sec min hour day month weekday"
        ));
    }
    crate::schedule::validate_cron(&line).map_err(|e| format!("\"{text}\" is not a valid cron line: {e}"))?;
    Ok(line)
}

/// An absolute `http` or `https` URL; trailing slashes are dropped so paths join cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(pub String);

impl BaseUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for BaseUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let url = reqwest::Url::parse(&text)
            .map_err(|e| serde::de::Error::custom(format!("\"{text}\" is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(serde::de::Error::custom(format!(
                "\"{text}\" must be an http or https URL with a host"
            )));
        }
        Ok(BaseUrl(text.trim_end_matches('/').to_string()))
    }
}

/// A page on spotify.com over https: the alert's links must not be redirectable elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpotifyPageUrl(pub String);

impl SpotifyPageUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SpotifyPageUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let ok = reqwest::Url::parse(&text).ok().filter(|u| {
            u.scheme() == "https"
                && u.host_str().is_some_and(|h| h == "spotify.com" || h.ends_with(".spotify.com"))
                && u.username().is_empty()
                && u.password().is_none()
        });
        match ok {
            Some(_) => Ok(SpotifyPageUrl(text)),
            None => Err(serde::de::Error::custom(format!(
                "\"{text}\" is not allowed: only https URLs on spotify.com are, e.g. \"{DEFAULT_SIGN_OUT_URL}\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/tmp/c.toml"))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let c = parse("").expect("empty config is valid");
        assert_eq!(c.spotify.api_base.as_str(), "https://api.spotify.com/v1");
        assert_eq!(c.spotify.accounts_base.as_str(), "https://accounts.spotify.com");
        assert_eq!(c.spotify.redirect_uri.as_str(), "http://127.0.0.1:8898/callback");
        assert_eq!(c.schedule(), Schedule::Every(Duration::from_secs(60)));
        assert_eq!(c.alerts.sign_out_url.as_str(), DEFAULT_SIGN_OUT_URL);
        assert_eq!(c.alerts.apps_url.as_str(), DEFAULT_APPS_URL);
        assert_eq!(c.alerts.device_limit, 6);
        assert_eq!(c.alerts.realert_after.0, Duration::from_secs(86400));
        assert!(c.notify.desktop);
    }

    #[test]
    fn example_file_parses_and_matches_defaults() {
        let text = include_str!("../config.example.toml");
        let c = parse(text).expect("config.example.toml must be valid");
        let d = Config::default();
        assert_eq!(c.schedule(), d.schedule());
        assert_eq!(c.alerts.device_limit, d.alerts.device_limit);
        assert_eq!(c.alerts.realert_after, d.alerts.realert_after);
        assert_eq!(c.spotify.api_base, d.spotify.api_base);
        assert_eq!(c.notify.action_timeout, d.notify.action_timeout);
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let e = err("[alerts]\ndevice_limit = 6\nrealert_afer = \"1h\"\n");
        assert!(e.contains("/tmp/c.toml"), "{e}");
        assert!(e.contains("line 3"), "{e}");
        assert!(e.contains("realert_afer"), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn bad_duration_names_the_allowed_form() {
        let e = err("[schedule]\nevery = \"5 minutes please\"\n");
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("\"60s\""), "{e}");
    }

    #[test]
    fn every_and_cron_are_exclusive() {
        let e = err("[schedule]\nevery = \"60s\"\ncron = \"0 * * * * *\"\n");
        assert!(e.contains("schedule: set either"), "{e}");
    }

    #[test]
    fn five_field_cron_gets_the_fix() {
        let e = err("[schedule]\ncron = \"*/5 * * * *\"\n");
        assert!(e.contains("6 with seconds first"), "{e}");
        assert!(e.contains("did you mean \"0 */5 * * * *\"?"), "{e}");
    }

    #[test]
    fn six_field_cron_is_accepted_and_garbage_is_not() {
        let c = parse("[schedule]\ncron = \"0 */2 * * * *\"\n").expect("valid cron");
        assert_eq!(c.schedule(), Schedule::Cron("0 */2 * * * *".into()));
        let e = err("[schedule]\ncron = \"0 99 * * * *\"\n");
        assert!(e.contains("not a valid cron line"), "{e}");
    }

    #[test]
    fn sub_second_interval_is_refused() {
        let e = err("[schedule]\nevery = \"500ms\"\n");
        assert!(e.contains("at least 1s"), "{e}");
        parse("[schedule]\nevery = \"1s\"\n").expect("1s is allowed");
    }

    #[test]
    fn alert_pages_must_be_https_spotify() {
        for bad in [
            "http://www.spotify.com/account/overview/",
            "https://spotify.com.evil.example/",
            "https://evilspotify.com/",
            "https://user@www.spotify.com/",
            "javascript:alert(1)",
        ] {
            let e = err(&format!("[alerts]\nsign_out_url = \"{bad}\"\n"));
            assert!(e.contains("only https URLs on spotify.com"), "{bad}: {e}");
        }
        parse("[alerts]\napps_url = \"https://support.spotify.com/x\"\n").expect("subdomain ok");
    }

    #[test]
    fn redirect_uri_must_be_loopback_literal() {
        let e = err("[spotify]\nredirect_uri = \"http://localhost:8898/callback\"\n");
        assert!(e.contains("not localhost"), "{e}");
        parse("[spotify]\nredirect_uri = \"http://[::1]:9000/cb\"\n").expect("::1 ok");
        for bad in
            ["http://127.0.0.1.evil.example:8898/cb", "http://127.0.0.1/cb", "https://127.0.0.1:8898/cb"]
        {
            let e = err(&format!("[spotify]\nredirect_uri = \"{bad}\"\n"));
            assert!(e.contains("spotify.redirect_uri"), "{bad}: {e}");
        }
    }

    #[test]
    fn plain_http_base_urls_only_reach_this_machine() {
        for key in ["api_base", "accounts_base"] {
            for bad in [
                "http://api.spotify.com/v1",
                "http://10.0.0.1:8080",
                "http://127.0.0.1.evil.example/",
                "http://[::ffff:7f00:1]/",
            ] {
                let e = err(&format!("[spotify]\n{key} = \"{bad}\"\n"));
                assert!(e.contains(&format!("spotify.{key}:")), "{bad}: {e}");
                assert!(e.contains("use https"), "{bad}: {e}");
            }
            for good in [
                "https://api.example.com/v1",
                "http://127.0.0.1:9/v1",
                "http://127.8.9.10:9",
                "http://[::1]:9",
                "http://localhost:9",
                "http://LOCALHOST:9",
            ] {
                parse(&format!("[spotify]\n{key} = \"{good}\"\n")).unwrap_or_else(|e| panic!("{good}: {e}"));
            }
        }
    }

    #[test]
    fn a_control_character_in_the_database_path_is_a_config_error() {
        let e = err("[storage]\ndatabase = \"/tmp/x\\nExecStartPre=/bin/evil/db.sqlite\"\n");
        assert!(e.contains("storage.database:"), "{e}");
        assert!(e.contains("control character"), "{e}");
        assert!(!e.contains('\n'), "shown escaped: {e:?}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let e = err("[alerts]\ndevice_limit = \"six\"\n");
        assert!(e.contains("line 2 (device_limit = \"six\")"), "{e}");
        let e = err("[alerts]\nopener = []\n");
        assert!(e.contains("alerts.opener"), "{e}");
    }

    #[test]
    fn missing_default_file_means_defaults_but_explicit_must_exist() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.toml");
        let e = Config::load(Some(&missing)).expect_err("explicit path must exist");
        assert!(e.to_string().contains("cannot read the config file"), "{e}");
    }

    #[test]
    fn accounts_default_to_one_and_validate_names() {
        let c = parse("").expect("valid");
        assert_eq!(c.account_names(), ["default"]);
        assert_eq!(c.auth.token_store, TokenStoreKind::Auto);
        let c = parse(
            "[spotify]\nclient_id = \"main\"\n[[accounts]]\nname = \"me\"\n[[accounts]]\nname = \"kid\"\nclient_id = \"other\"\ndevice_limit = 3\n",
        )
        .expect("valid");
        assert_eq!(c.account_names(), ["me", "kid"]);
        assert_eq!(c.client_id("me"), "main");
        assert_eq!(c.client_id("kid"), "other");
        let e = err("[[accounts]]\nname = \"../x\"\n");
        assert!(e.contains("accounts.name"), "{e}");
        let e = err("[[accounts]]\nname = \"a\"\n[[accounts]]\nname = \"a\"\n");
        assert!(e.contains("named twice"), "{e}");
        let e = err("[auth]\ntoken_store = \"vault\"\n");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn tokens_live_beside_the_database() {
        let c = parse("[storage]\ndatabase = \"/x/y/db.sqlite\"\n").expect("valid");
        assert_eq!(c.tokens_dir().expect("dir"), PathBuf::from("/x/y/tokens"));
    }

    #[test]
    fn channels_parse_and_their_errors_show_no_secret() {
        let c = parse(
            "[[channels]]\ntype = \"ntfy\"\nurl = \"https://ntfy.sh/topic-abc\"\nmin_urgency = \"critical\"\n\
             [[channels]]\ntype = \"email\"\nsmtp = \"smtps://mail.example.org\"\nfrom = \"s <s@example.org>\"\nto = [\"me@example.org\"]\n\
             [health]\nping_url = \"https://hc-ping.com/uuid-123\"\n",
        )
        .expect("valid");
        assert_eq!(channels::channel_names(&c.channels), ["ntfy-1", "email-1"]);
        assert_eq!(c.channels[0].min_urgency(), MinUrgency::Critical);
        let e =
            err("[[channels]]\ntype = \"ntfy\"\nurl = \"https://ntfy.sh/t\"\ntokne = \"tk_typo_secret\"\n");
        assert!(e.contains("`tokne`") && !e.contains("tk_typo_secret"), "{e}");
        let e = err("[[channels]]\ntype = \"sms\"\nurl = \"https://x.example/t\"\n");
        assert!(e.contains("sms"), "{e}");
        let e = err("[[channels]]\ntype = \"ntfy\"\nurl = \"http://ntfy.sh/secret-topic\"\n");
        assert!(e.contains("must be https") && !e.contains("secret-topic"), "{e}");
        let e = err("[[channels]]\ntype = \"ntfy\"\nname = \"a\"\nurl = \"https://x.example/t\"\n\
             [[channels]]\ntype = \"webhook\"\nname = \"a\"\nurl = \"https://x.example/t\"\n");
        assert!(e.contains("named twice"), "{e}");
        let e = err("[health]\nping_url = \"https://hc-ping.com/u\"\nevery = \"1m\"\n");
        assert!(e.contains("every"), "{e}");
    }
}
