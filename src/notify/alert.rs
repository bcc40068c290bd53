//! What an event looks like as a desktop notification: summary, body, urgency, buttons.
//!
//! Pure rendering, no I/O, so the exact text is tested here. Device names and titles are
//! untrusted: they are cleaned, cut, and escaped when (and only when) the server renders
//! markup, since a server without `body-markup` would show `&amp;` literally. A link goes
//! in the body only when the server advertises `body-hyperlinks`.

use chrono::{DateTime, Local, Utc};

use crate::event::{Event, Urgency};
use crate::text::{MAX_NAME_CHARS, clean, escape_markup};

/// The action keys the daemon understands. `default` is a click on the notification body.
pub mod action {
    pub const DEFAULT: &str = "default";
    pub const SIGN_OUT: &str = "sign-out";
    pub const TRUST: &str = "trust";
    pub const APPS: &str = "apps";
}

/// What the notification server can do, from `GetCapabilities`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub actions: bool,
    pub body_markup: bool,
    pub body_hyperlinks: bool,
}

impl Capabilities {
    pub fn from_list(list: &[String]) -> Capabilities {
        let has = |c: &str| list.iter().any(|x| x == c);
        Capabilities {
            actions: has("actions"),
            body_markup: has("body-markup"),
            body_hyperlinks: has("body-hyperlinks"),
        }
    }
}

/// A notification ready to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub summary: String,
    pub body: String,
    pub urgency: Urgency,
    /// (key, label) pairs, in order.
    pub actions: Vec<(&'static str, &'static str)>,
}

/// Renders `event` for a server with `caps`. `None` for quiet events, which are only logged.
/// `account` is named in device alerts when `name_account` (several accounts are watched),
/// and always in alerts about the login itself.
pub fn render(
    event: &Event,
    at: DateTime<Utc>,
    account: &str,
    name_account: bool,
    caps: &Capabilities,
    sign_out_url: &str,
) -> Option<Alert> {
    // A server that renders links parses markup, whether or not it says `body-markup`: names
    // are escaped for either, or a device called `<a href=...>` becomes a live link.
    let markup = caps.body_markup || caps.body_hyperlinks;
    let text = |s: &str| {
        let s = clean(s, MAX_NAME_CHARS);
        if markup { escape_markup(&s) } else { s }
    };
    let bold = |s: &str| if caps.body_markup { format!("<b>{}</b>", text(s)) } else { text(s) };
    // Summaries are plain text by the spec, but not every server keeps to it.
    let plain = |s: &str, max: usize| {
        let s = clean(s, max);
        if markup { escape_markup(&s) } else { s }
    };
    let on = if name_account { format!(" ({})", plain(account, 32)) } else { String::new() };
    let account = text(account);
    let when = at.with_timezone(&Local).format("%H:%M");
    let device_actions = vec![
        (action::DEFAULT, "Sign out everywhere"),
        (action::SIGN_OUT, "Sign out everywhere"),
        (action::TRUST, "Trust this device"),
        (action::APPS, "Review app access"),
    ];
    let (summary, mut body, actions) = match event {
        Event::FirstRun { count, names } => (
            format!("spotguard found {count} device(s) on your Spotify account{on}"),
            format!(
                "{}. None is trusted yet: any could be someone else's. Review them with `spotguard devices`, \
                 then trust yours (`spotguard devices trust --all` if they all are).",
                names.iter().map(|n| bold(n)).collect::<Vec<_>>().join(", ")
            ),
            vec![
                (action::DEFAULT, "Sign out everywhere"),
                (action::SIGN_OUT, "Sign out everywhere"),
                (action::APPS, "Review app access"),
            ],
        ),
        Event::DeviceAppeared { name, device_type, imitates: true, .. } => (
            format!(
                "A device is imitating your \u{201c}{}\u{201d} on your Spotify account{on}",
                plain(name, MAX_NAME_CHARS)
            ),
            format!(
                "A second {} ({}) appeared at {when}, online next to your trusted one: one of them is not yours. \
                 Sign out everywhere, then change your password.",
                bold(name),
                text(device_type)
            ),
            // No "Trust this device": trusting a copy is exactly what it is made for.
            vec![
                (action::DEFAULT, "Sign out everywhere"),
                (action::SIGN_OUT, "Sign out everywhere"),
                (action::APPS, "Review app access"),
            ],
        ),
        Event::DeviceAppeared { name, device_type, .. } => (
            format!("Unknown device on your Spotify account{on}"),
            format!(
                "{} ({}) appeared at {when}. Not yours? Sign out everywhere, then change your password.",
                bold(name),
                text(device_type)
            ),
            device_actions,
        ),
        Event::UnknownPlaying { name, device_type, what, private_session, .. } => (
            format!("Unknown device is playing on your Spotify account{on}"),
            format!(
                "{} ({}) is playing {} since {when}{}. Not yours? Sign out everywhere, then change your password.",
                bold(name),
                text(device_type),
                text_long(what, caps),
                if *private_session { " in a private session" } else { "" }
            ),
            device_actions,
        ),
        Event::DeviceLimit { count, limit, window_days } => (
            format!("{count} devices used your Spotify account in {window_days} days{on}"),
            format!(
                "That reaches your limit of {limit}. Run `spotguard devices` to see them; \
                 sign out everywhere if some are not yours."
            ),
            vec![
                (action::DEFAULT, "Sign out everywhere"),
                (action::SIGN_OUT, "Sign out everywhere"),
                (action::APPS, "Review app access"),
            ],
        ),
        Event::AccessLost { .. } => (
            format!("spotguard lost access to {account}"),
            format!(
                "Spotify no longer accepts spotguard's login, so this account is not being watched. \
                 Run `spotguard login --account {account}` to watch it again."
            ),
            Vec::new(),
        ),
        Event::LoginExpiring { expires_at } => (
            format!("spotguard needs a new Spotify login soon ({account})"),
            format!(
                "Spotify ends logins six months after they are made; this one ends on {}. \
                 Run `spotguard login --account {account}` before then.",
                expires_at.with_timezone(&Local).format("%Y-%m-%d")
            ),
            Vec::new(),
        ),
        Event::DeviceRenamed { .. }
        | Event::DeviceTrusted { .. }
        | Event::LoggedIn { .. }
        | Event::DevicesMerged { .. }
        | Event::SignOutWorked { .. }
        | Event::WatchingAgain { .. }
        | Event::Unreadable { .. } => return None,
        Event::NotWatching { since, reason } => (
            format!("spotguard is not watching {account}"),
            format!(
                "spotguard has not been able to check {account} since {}: {}. Until it can, nobody is \
                 told when a stranger uses the account. See `spotguard status` and `spotguard doctor`.",
                since.with_timezone(&Local).format("%H:%M"),
                text_long(reason, caps)
            ),
            Vec::new(),
        ),
        Event::NotRecording { reason } => (
            "spotguard cannot record anything".to_string(),
            format!(
                "Its database cannot be written ({}). Alerts still come, but nothing is kept for \
                 history or review, and an alert may repeat. Free some disk space.",
                text_long(reason, caps)
            ),
            Vec::new(),
        ),
        Event::Unknown { kind } => (
            "spotguard recorded an event this version cannot show".to_string(),
            format!(
                "A newer spotguard recorded an event of kind \u{201c}{}\u{201d}. See `spotguard history`, \
                 or upgrade spotguard.",
                text(kind)
            ),
            Vec::new(),
        ),
        Event::StillOnlineAfterSignOut { name, device_type, minutes } => (
            format!("{} is still on your Spotify account{on}", plain(name, MAX_NAME_CHARS)),
            format!(
                "{} ({}) is still online {minutes} minutes after Sign out everywhere. It is probably a \
                 partner device (speaker, TV, console, car), which sign-out does not cover: remove its access \
                 on the apps page.",
                bold(name),
                text(device_type)
            ),
            vec![(action::APPS, "Review app access")],
        ),
    };
    if caps.body_hyperlinks && !actions.is_empty() {
        body.push_str(&format!(" <a href=\"{}\">Open your Spotify account</a>", escape_markup(sign_out_url)));
    }
    Some(Alert {
        summary,
        body,
        urgency: event.urgency(),
        actions: if caps.actions { actions } else { Vec::new() },
    })
}

/// Titles get more room than device names, but not unlimited.
fn text_long(s: &str, caps: &Capabilities) -> String {
    let s = clean(s, 2 * MAX_NAME_CHARS);
    if caps.body_markup || caps.body_hyperlinks { escape_markup(&s) } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_server_with_links_but_no_markup_still_gets_names_escaped() {
        let caps = Capabilities { actions: true, body_markup: false, body_hyperlinks: true };
        let e = Event::DeviceAppeared {
            name: "<a href=\"https://evil.example/\">Phone</a>".into(),
            device_type: "Smartphone".into(),
            spotify_id: None,
            imitates: true,
        };
        let a = render(&e, at(), "home", true, &caps, "https://www.spotify.com/account/overview/")
            .expect("shown");
        assert!(!a.body.contains("<a href=\"https://evil"), "{}", a.body);
        assert!(a.body.starts_with("A second &lt;a href="), "{}", a.body);
        assert!(!a.summary.contains('<'), "{}", a.summary);
    }

    #[test]
    fn not_watching_says_since_when_why_and_what_to_do() {
        let since = at();
        let e = Event::NotWatching { since, reason: "cannot reach Spotify <b>".into() };
        let a = render(&e, since, "home", false, &full(), "https://x").expect("shown");
        assert_eq!(a.summary, "spotguard is not watching home");
        let hm = since.with_timezone(&Local).format("%H:%M").to_string();
        assert!(a.body.contains(&format!("since {hm}: cannot reach Spotify &lt;b&gt;")), "{}", a.body);
        assert!(a.body.contains("spotguard status"));
        assert_eq!(a.urgency, Urgency::Critical);
        assert!(a.actions.is_empty());
        assert!(render(&Event::WatchingAgain { since }, since, "home", false, &full(), "x").is_none());
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).single().expect("valid")
    }

    fn full() -> Capabilities {
        Capabilities { actions: true, body_markup: true, body_hyperlinks: true }
    }

    fn appeared(name: &str) -> Event {
        Event::DeviceAppeared {
            name: name.into(),
            device_type: "Smartphone".into(),
            spotify_id: None,
            imitates: false,
        }
    }

    const URL: &str = "https://www.spotify.com/account/overview/";

    #[test]
    fn appeared_names_the_device_and_offers_the_four_actions() {
        let a = render(&appeared("Galaxy S24"), at(), "default", false, &full(), URL).expect("shown");
        assert_eq!(a.summary, "Unknown device on your Spotify account");
        assert!(a.body.starts_with("<b>Galaxy S24</b> (Smartphone) appeared at "), "{}", a.body);
        let keys: Vec<_> = a.actions.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["default", "sign-out", "trust", "apps"]);
        assert!(a.body.contains(&format!("<a href=\"{URL}\">")));
        assert_eq!(a.urgency, Urgency::Normal);
    }

    #[test]
    fn a_copy_of_a_trusted_device_is_named_as_such_and_cannot_be_trusted_from_the_alert() {
        let e = Event::DeviceAppeared {
            name: "Phone".into(),
            device_type: "Smartphone".into(),
            spotify_id: None,
            imitates: true,
        };
        let a = render(&e, at(), "default", false, &full(), URL).expect("shown");
        assert_eq!(a.summary, "A device is imitating your \u{201c}Phone\u{201d} on your Spotify account");
        assert!(a.body.contains("online next to your trusted one"), "{}", a.body);
        assert!(!a.actions.iter().any(|(k, _)| *k == action::TRUST));
    }

    #[test]
    fn hostile_names_are_escaped_only_for_markup_servers() {
        let evil = "<a href=\"https://evil.example\">Tap</a>\u{202e}\u{1b}[2J";
        let a = render(&appeared(evil), at(), "default", false, &full(), URL).expect("shown");
        assert!(!a.body.contains("<a href=\"https://evil"), "{}", a.body);
        assert!(
            a.body.contains("&lt;a href=&quot;https://evil.example&quot;&gt;Tap&lt;/a&gt;"),
            "{}",
            a.body
        );
        assert!(!a.body.contains('\u{202e}') && !a.body.contains('\u{1b}'));
        let plain = Capabilities { actions: true, ..Capabilities::default() };
        let a = render(&appeared("A & B"), at(), "default", false, &plain, URL).expect("shown");
        assert!(a.body.starts_with("A & B (Smartphone)"), "no markup server: no escaping: {}", a.body);
        assert!(!a.body.contains("<a href"), "no link without body-hyperlinks");
    }

    #[test]
    fn long_names_are_cut() {
        let a = render(&appeared(&"n".repeat(5000)), at(), "default", false, &full(), URL).expect("shown");
        assert!(a.body.len() < 600, "{}", a.body.len());
        assert!(a.body.contains('…'));
    }

    #[test]
    fn playing_is_critical_and_says_what() {
        let e = Event::UnknownPlaying {
            name: "Speaker".into(),
            device_type: "Speaker".into(),
            what: "\u{201c}Song\u{201d} by Band".into(),
            private_session: true,
            track: Some("Song".into()),
            artists: vec!["Band".into()],
        };
        let a = render(&e, at(), "family", true, &full(), URL).expect("shown");
        assert_eq!(a.summary, "Unknown device is playing on your Spotify account (family)");
        assert!(a.body.contains("is playing \u{201c}Song\u{201d} by Band since"), "{}", a.body);
        assert!(a.body.contains("private session"));
        assert_eq!(a.urgency, Urgency::Critical);
    }

    #[test]
    fn limit_has_no_trust_button_and_quiet_events_are_not_shown() {
        let e = Event::DeviceLimit { count: 6, limit: 6, window_days: 30 };
        let a = render(&e, at(), "default", false, &full(), URL).expect("shown");
        assert_eq!(a.summary, "6 devices used your Spotify account in 30 days");
        assert!(!a.actions.iter().any(|(k, _)| *k == action::TRUST));
        let quiet = Event::DeviceRenamed { from: "a".into(), to: "b".into(), device_type: "x".into() };
        assert_eq!(render(&quiet, at(), "default", false, &full(), URL), None);
    }

    #[test]
    fn access_lost_always_names_the_account_and_the_command() {
        let e = Event::AccessLost { reason: "invalid_grant".into() };
        let a = render(&e, at(), "kid", false, &full(), URL).expect("shown");
        assert_eq!(a.summary, "spotguard lost access to kid");
        assert!(a.body.contains("spotguard login --account kid"), "{}", a.body);
        assert_eq!(a.urgency, Urgency::Critical);
        assert!(a.actions.is_empty());
        let e = Event::LoginExpiring { expires_at: at() };
        let a = render(&e, at(), "default", false, &full(), URL).expect("shown");
        assert!(a.body.contains("ends on 2026-11-01"), "{}", a.body);
    }

    #[test]
    fn servers_without_actions_get_no_buttons() {
        let caps = Capabilities { body_markup: true, ..Capabilities::default() };
        assert!(
            render(&appeared("x"), at(), "default", false, &caps, URL).expect("shown").actions.is_empty()
        );
    }
}
