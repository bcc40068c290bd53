//! What an event looks like as a desktop notification: summary, body, urgency, buttons.
//!
//! Pure rendering, no I/O, so the exact text is tested here. Device names and titles are
//! untrusted: they are cleaned, cut, and escaped when (and only when) the server renders
//! markup, since a server without `body-markup` would show `&amp;` literally. A link goes
//! in the body only when the server advertises `body-hyperlinks`.

use chrono::{DateTime, Local, Utc};

use crate::event::{Event, GenericSighting, LookAlike, Urgency, article, how_it_differs, short_id};
use crate::spotify::model::MAX_DEVICES_PER_ANSWER;
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
    // No "Trust this device": for a look-alike, trusting it is exactly what it is made for;
    // for a summary, one button cannot say which device.
    let untrustable_actions = vec![
        (action::DEFAULT, "Sign out everywhere"),
        (action::SIGN_OUT, "Sign out everywhere"),
        (action::APPS, "Review app access"),
    ];
    // "It is not your trusted “Phone”: its name has invisible characters (U+200B)."
    let not_it = |name: &str, device_type: &str, original: &LookAlike| {
        format!(
            "It is not your trusted {}: {}.",
            bold(&original.name),
            text_long(&how_it_differs(name, device_type, original).join("; "), caps)
        )
    };
    let not_read = |n: u32| match n {
        0 => String::new(),
        n => format!(
            " Spotify listed {n} more that spotguard did not read (it reads {MAX_DEVICES_PER_ANSWER} per answer)."
        ),
    };
    // For a generic name the Trust button can only vouch for this one session (this id).
    let session_actions = vec![
        (action::DEFAULT, "Sign out everywhere"),
        (action::SIGN_OUT, "Sign out everywhere"),
        (action::TRUST, "Trust this session"),
        (action::APPS, "Review app access"),
    ];
    let jam_note = |jam: bool| {
        if jam {
            " Hosting a Jam? Guests' devices show up on your account: `spotguard devices mute NAME --for 4h` \
             quiets one (README: \u{201c}Spotify Jam\u{201d})."
        } else {
            ""
        }
    };
    // The question a generic sighting asks, the same for a device that connects or plays.
    let was_this_you = |g: &GenericSighting| {
        if g.trusted_before {
            format!(
                "You have trusted {} {} before: was this you? If not, sign out everywhere, then change your password.",
                article(&g.noun),
                text(&g.noun)
            )
        } else {
            "Not yours? Sign out everywhere, then change your password.".to_string()
        }
    };
    let names_list = |names: &[String]| names.iter().map(|n| bold(n)).collect::<Vec<_>>().join(", ");
    let (summary, mut body, actions) = match event {
        Event::FirstRun { count, names, not_read: unread } => (
            format!("spotguard found {count} device(s) on your Spotify account{on}"),
            format!(
                "{}.{} None is trusted yet: any could be someone else's. Review them with `spotguard devices`, \
                 then trust yours (`spotguard devices trust --all` if they all are).",
                names_list(names),
                not_read(*unread)
            ),
            untrustable_actions,
        ),
        Event::NewDevices { count, names, imitating, not_read: unread, jam } => (
            format!("{count} new devices on your Spotify account{on}"),
            format!(
                "{}{} appeared at {when}.{}{} Not yours? Sign out everywhere, then change your password. \
                 Review them with `spotguard devices`.{}",
                names_list(names),
                if *count as usize > names.len() {
                    format!(" and {} more", *count as usize - names.len())
                } else {
                    String::new()
                },
                match imitating {
                    0 => String::new(),
                    n => format!(" {n} of them look like your trusted devices."),
                },
                not_read(*unread),
                jam_note(*jam)
            ),
            untrustable_actions,
        ),
        Event::DeviceAppeared {
            name,
            device_type,
            spotify_id,
            imitates: true,
            looks_like: Some(original),
            ..
        } => (
            format!(
                "A device looks like your trusted \u{201c}{}\u{201d} on your Spotify account{on}",
                clean(&original.name, MAX_NAME_CHARS)
            ),
            format!(
                "{} ({}, {}) appeared at {when}. {} Sign out everywhere, then change your password.",
                bold(name),
                text(device_type),
                text(&short_id(spotify_id.as_deref())),
                not_it(name, device_type, original)
            ),
            untrustable_actions,
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
            untrustable_actions,
        ),
        Event::DeviceAppeared { name, device_type, generic: Some(g), jam, .. } => {
            let a = article(&g.noun);
            (
                format!("{} {} connected to your Spotify account{on}", capitalised(a), plain(&g.noun, 64)),
                format!(
                    "{} {} connected to your Spotify account ({}, {}, {when}). {}{}{}",
                    capitalised(a),
                    text(&g.noun),
                    bold(name),
                    text(device_type),
                    was_this_you(g),
                    if g.explain {
                        format!(
                            " Why ask: many devices share this name, so spotguard no longer takes a new session \
                             of it for your trusted one. Trust this session here, or let every session of it pass \
                             with `spotguard devices trust \"{}\" --any-session`.",
                            text(name)
                        )
                    } else {
                        String::new()
                    },
                    jam_note(*jam)
                ),
                session_actions,
            )
        }
        Event::DeviceAppeared { name, device_type, jam, .. } => (
            format!("Unknown device on your Spotify account{on}"),
            format!(
                "{} ({}) appeared at {when}. Not yours? Sign out everywhere, then change your password.{}",
                bold(name),
                text(device_type),
                jam_note(*jam)
            ),
            device_actions,
        ),
        Event::UnknownPlaying {
            name,
            device_type,
            what,
            private_session,
            looks_like: Some(original),
            ..
        } => (
            format!(
                "A device that looks like your trusted \u{201c}{}\u{201d} is playing on your Spotify account{on}",
                clean(&original.name, MAX_NAME_CHARS)
            ),
            format!(
                "{} ({}) is playing {} since {when}{}. {} Sign out everywhere, then change your password.",
                bold(name),
                text(device_type),
                text_long(what, caps),
                if *private_session { " in a private session" } else { "" },
                not_it(name, device_type, original)
            ),
            untrustable_actions,
        ),
        // A generic name says nothing about whose device plays: say so, ask as the "connected"
        // alert does, and trust this session only.
        Event::UnknownPlaying {
            name,
            device_type,
            what,
            private_session,
            looks_like: None,
            generic: Some(g),
            ..
        } => {
            let a = article(&g.noun);
            (
                format!("{} {} is playing on your Spotify account{on}", capitalised(a), plain(&g.noun, 64)),
                format!(
                    "{} {} is playing {} on your Spotify account ({}, {}, since {when}{}). Many devices share this \
                     name, so spotguard cannot tell whether this one is yours. {} If it is yours, trust this \
                     session{}.",
                    capitalised(a),
                    text(&g.noun),
                    text_long(what, caps),
                    bold(name),
                    text(device_type),
                    if *private_session { ", in a private session" } else { "" },
                    was_this_you(g),
                    if g.explain {
                        format!(
                            " here, or let every session of it pass with `spotguard devices trust \"{}\" \
                             --any-session`",
                            text(name)
                        )
                    } else {
                        String::new()
                    }
                ),
                session_actions,
            )
        }
        Event::UnknownPlaying { name, device_type, what, private_session, looks_like: None, .. } => (
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
        | Event::DeviceIdChanged { .. }
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

fn capitalised(word: &str) -> String {
    let mut c = word.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
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
            looks_like: None,
            generic: None,
            jam: false,
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
            looks_like: None,
            generic: None,
            jam: false,
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
        // As written before look-alikes were recorded with what they look like.
        let e = Event::DeviceAppeared {
            name: "Phone".into(),
            device_type: "Smartphone".into(),
            spotify_id: None,
            imitates: true,
            looks_like: None,
            generic: None,
            jam: false,
        };
        let a = render(&e, at(), "default", false, &full(), URL).expect("shown");
        assert_eq!(a.summary, "A device is imitating your \u{201c}Phone\u{201d} on your Spotify account");
        assert!(a.body.contains("online next to your trusted one"), "{}", a.body);
        assert!(!a.actions.iter().any(|(k, _)| *k == action::TRUST));
    }

    fn look_alike(name: &str, device_type: &str) -> Event {
        Event::DeviceAppeared {
            name: name.into(),
            device_type: device_type.into(),
            spotify_id: Some("4f2a9c1b7e5d3a0b9c8d7e6f5a4b3c2d1e0f9a8b".into()),
            imitates: true,
            looks_like: Some(LookAlike { name: "Phone".into(), device_type: "Smartphone".into() }),
            generic: None,
            jam: false,
        }
    }

    #[test]
    fn a_look_alike_says_what_it_looks_like_its_id_and_what_differs_without_a_trust_button() {
        let a = render(&look_alike("Phone\u{200b}", "Smartphone"), at(), "default", false, &full(), URL)
            .expect("shown");
        assert_eq!(
            a.summary,
            "A device looks like your trusted \u{201c}Phone\u{201d} on your Spotify account"
        );
        assert!(a.body.starts_with("<b>Phone</b> (Smartphone, id 4f2a9c1b…) appeared at "), "{}", a.body);
        assert!(
            a.body
                .contains("It is not your trusted <b>Phone</b>: its name has invisible characters (U+200B)."),
            "{}",
            a.body
        );
        assert!(!a.actions.iter().any(|(k, _)| *k == action::TRUST), "{:?}", a.actions);
        let a = render(&look_alike("Ph\u{43e}ne", "Computer"), at(), "default", false, &full(), URL)
            .expect("shown");
        assert!(
            a.body.contains(
                "its name has other characters (U+043E); its type is Computer, yours is Smartphone"
            ),
            "{}",
            a.body
        );
        let a =
            render(&look_alike("Phone", "Smartphone"), at(), "default", false, &full(), URL).expect("shown");
        assert!(a.body.contains("only its id differs"), "{}", a.body);
    }

    #[test]
    fn many_new_devices_are_one_summary_without_a_trust_button() {
        let e = Event::NewDevices {
            count: 500,
            names: (0..10).map(|i| format!("Stranger {i}")).collect(),
            imitating: 2,
            not_read: 1500,
            jam: false,
        };
        let a = render(&e, at(), "default", false, &full(), URL).expect("shown");
        assert_eq!(a.summary, "500 new devices on your Spotify account");
        assert!(a.body.starts_with("<b>Stranger 0</b>, <b>Stranger 1</b>"), "{}", a.body);
        assert!(a.body.contains("<b>Stranger 9</b> and 490 more appeared at "), "{}", a.body);
        assert!(a.body.contains("2 of them look like your trusted devices."), "{}", a.body);
        assert!(a.body.contains("Spotify listed 1500 more that spotguard did not read"), "{}", a.body);
        assert!(!a.actions.iter().any(|(k, _)| *k == action::TRUST));
        assert_eq!(a.urgency, Urgency::Normal);
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
            looks_like: None,
            generic: None,
            track: Some("Song".into()),
            artists: vec!["Band".into()],
        };
        let a = render(&e, at(), "family", true, &full(), URL).expect("shown");
        assert_eq!(a.summary, "Unknown device is playing on your Spotify account (family)");
        assert!(a.body.contains("is playing \u{201c}Song\u{201d} by Band since"), "{}", a.body);
        assert!(a.body.contains("private session"));
        assert_eq!(a.urgency, Urgency::Critical);
        assert!(a.actions.iter().any(|(k, _)| *k == action::TRUST));
        let e = Event::UnknownPlaying {
            name: "Phone\u{3164}".into(),
            device_type: "Smartphone".into(),
            what: "a podcast episode".into(),
            private_session: false,
            looks_like: Some(LookAlike { name: "Phone".into(), device_type: "Smartphone".into() }),
            generic: None,
            track: None,
            artists: Vec::new(),
        };
        let a = render(&e, at(), "default", false, &full(), URL).expect("shown");
        assert_eq!(
            a.summary,
            "A device that looks like your trusted \u{201c}Phone\u{201d} is playing on your Spotify account"
        );
        assert!(a.body.contains("invisible characters (U+3164)"), "{}", a.body);
        assert!(
            !a.actions.iter().any(|(k, _)| *k == action::TRUST),
            "a playing look-alike cannot be trusted"
        );
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
    fn a_web_player_with_a_generic_name_asks_was_this_you_and_trusts_this_session_only() {
        let e = Event::DeviceAppeared {
            name: "Web Player (Chrome)".into(),
            device_type: "Computer".into(),
            spotify_id: Some("w-2".into()),
            imitates: false,
            looks_like: None,
            generic: Some(crate::event::GenericSighting {
                noun: "web player".into(),
                trusted_before: true,
                explain: false,
            }),
            jam: false,
        };
        let a = render(&e, at(), "default", false, &full(), URL).expect("shown");
        let hm = at().with_timezone(&Local).format("%H:%M").to_string();
        assert_eq!(a.summary, "A web player connected to your Spotify account");
        assert!(
            a.body.starts_with(&format!(
                "A web player connected to your Spotify account (<b>Web Player (Chrome)</b>, Computer, {hm}). \
                 You have trusted a web player before: was this you?"
            )),
            "{}",
            a.body
        );
        assert!(!a.body.contains("--any-session"), "explained once only: {}", a.body);
        assert_eq!(a.urgency, Urgency::Normal);
        assert!(a.actions.contains(&(action::TRUST, "Trust this session")), "{:?}", a.actions);
        let Event::DeviceAppeared { generic: Some(g), .. } = &e else { unreachable!() };
        let first = Event::DeviceAppeared {
            name: "iPhone".into(),
            device_type: "Smartphone".into(),
            spotify_id: None,
            imitates: false,
            looks_like: None,
            generic: Some(crate::event::GenericSighting {
                noun: "iPhone".into(),
                explain: true,
                ..g.clone()
            }),
            jam: false,
        };
        let a = render(&first, at(), "default", false, &full(), URL).expect("shown");
        assert_eq!(a.summary, "An iPhone connected to your Spotify account");
        assert!(a.body.contains("`spotguard devices trust \"iPhone\" --any-session`"), "{}", a.body);
    }

    fn generic_playing(name: &str, trusted_before: bool, explain: bool) -> Event {
        Event::UnknownPlaying {
            name: name.into(),
            device_type: "Computer".into(),
            what: "\u{201c}Song\u{201d} by Band".into(),
            private_session: false,
            looks_like: None,
            generic: Some(crate::event::GenericSighting {
                noun: "web player".into(),
                trusted_before,
                explain,
            }),
            track: Some("Song".into()),
            artists: vec!["Band".into()],
        }
    }

    #[test]
    fn a_generic_name_playing_says_it_cannot_tell_whose_it_is_and_trusts_this_session_only() {
        let e = generic_playing("Web Player (Chrome)", true, false);
        let a = render(&e, at(), "default", false, &full(), URL).expect("shown");
        let hm = at().with_timezone(&Local).format("%H:%M").to_string();
        assert_eq!(a.summary, "A web player is playing on your Spotify account");
        assert!(
            a.body.starts_with(&format!(
                "A web player is playing \u{201c}Song\u{201d} by Band on your Spotify account \
                 (<b>Web Player (Chrome)</b>, Computer, since {hm}). Many devices share this name, so spotguard \
                 cannot tell whether this one is yours. You have trusted a web player before: was this you? \
                 If not, sign out everywhere, then change your password. If it is yours, trust this session."
            )),
            "{}",
            a.body
        );
        assert_eq!(a.urgency, Urgency::Critical, "still the loud alert");
        assert!(a.actions.contains(&(action::TRUST, "Trust this session")), "{:?}", a.actions);
        assert!(a.actions.contains(&(action::SIGN_OUT, "Sign out everywhere")), "{:?}", a.actions);
        // Nothing trusted of this name: the plain question; the first one says how to let all pass.
        let a = render(
            &generic_playing("Web Player (Chrome)", false, true),
            at(),
            "default",
            false,
            &full(),
            URL,
        )
        .expect("shown");
        assert!(
            a.body.contains("cannot tell whether this one is yours. Not yours? Sign out everywhere"),
            "{}",
            a.body
        );
        assert!(!a.body.contains("trusted a web player"), "{}", a.body);
        assert!(
            a.body.ends_with(
                "If it is yours, trust this session here, or let every session of it pass with \
                 `spotguard devices trust \"Web Player (Chrome)\" --any-session`. \
                 <a href=\"https://www.spotify.com/account/overview/\">Open your Spotify account</a>"
            ),
            "{}",
            a.body
        );
    }

    #[test]
    fn a_generic_name_playing_is_escaped_only_for_markup_servers() {
        // `Web Player (*)` is generic whatever the browser part says.
        let e = generic_playing("Web Player (<a href=\"x\">&</a>)", true, true);
        let a = render(&e, at(), "default", false, &full(), URL).expect("shown");
        assert!(!a.body.contains("<a href=\"x\""), "{}", a.body);
        assert!(
            a.body.contains("<b>Web Player (&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;)</b>"),
            "{}",
            a.body
        );
        assert!(a.body.contains("trust \"Web Player (&lt;a href="), "{}", a.body);
        let plain = Capabilities { actions: true, ..Capabilities::default() };
        let a = render(&e, at(), "default", false, &plain, URL).expect("shown");
        assert!(
            a.body.contains("(Web Player (<a href=\"x\">&</a>), Computer,"),
            "no markup: as is: {}",
            a.body
        );
        assert!(!a.body.contains("Open your Spotify account"), "no link without body-hyperlinks");
    }

    #[test]
    fn several_new_devices_while_a_trusted_one_plays_mention_a_jam() {
        let mut e = appeared("Guest phone");
        if let Event::DeviceAppeared { jam, .. } = &mut e {
            *jam = true;
        }
        let a = render(&e, at(), "default", false, &full(), URL).expect("shown");
        assert!(a.body.contains("Hosting a Jam? Guests' devices show up on your account"), "{}", a.body);
        assert!(a.body.contains("Not yours? Sign out everywhere"), "still an alert: {}", a.body);
        let a = render(&appeared("Guest phone"), at(), "default", false, &full(), URL).expect("shown");
        assert!(!a.body.contains("Jam"), "{}", a.body);
    }

    #[test]
    fn servers_without_actions_get_no_buttons() {
        let caps = Capabilities { body_markup: true, ..Capabilities::default() };
        assert!(
            render(&appeared("x"), at(), "default", false, &caps, URL).expect("shown").actions.is_empty()
        );
    }
}
