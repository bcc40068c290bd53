//! How much a device's name and id say about *which* device it is (issue 12).
//!
//! Most default device names are not chosen by anyone: every web player is `Web Player
//! (Chrome)`, every iPhone since iOS 16 is `iPhone`, librespot players are `librespot`. And
//! ids help less than they seem: librespot, spotifyd, raspotify and Cast ids are a sha1 or md5
//! of the name (the same on every install with that name, on any account); web player,
//! iPhone and Echo ids change per session or every day or so. So each device record gets an
//! [`Strength`], which the audit rules use to decide how much a matching name may prove.
//!
//! Pure: no I/O, no clock (the time is a parameter). The list of generic names is
//! [`GENERIC_NAMES`]: one row per pattern, easy to extend, each row tested at the bottom.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How far a record's name and ids identify one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// A generic name (a default many devices share, or an id-like name): a name match proves
    /// nothing, so a new id is linked only on continuity (`audit` module docs).
    Weak,
    /// The id is the sha1 or md5 of the name (librespot, spotifyd, raspotify, Google Cast):
    /// anyone naming a device so gets that id, so the id adds nothing, and the same name with
    /// another id is another program.
    NameDerived,
    /// One id seen over [`STRONG_AFTER`] or more: a device that keeps its id (the desktop app).
    Strong,
    /// A name a person chose, with no long-lived id (yet).
    Named,
}

impl Strength {
    /// The stable word stored in the database and printed in `devices --json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strength::Weak => "weak",
            Strength::NameDerived => "name_derived",
            Strength::Strong => "strong",
            Strength::Named => "named",
        }
    }

    /// Reads [`Strength::as_str`]; anything else (a newer version's word, NULL) is the
    /// cautious [`Strength::Weak`].
    pub fn parse(s: Option<&str>) -> Strength {
        match s {
            Some("name_derived") => Strength::NameDerived,
            Some("strong") => Strength::Strong,
            Some("named") => Strength::Named,
            _ => Strength::Weak,
        }
    }

    /// The word listings print for a record's identity (`devices` IDENTITY, `check`,
    /// `report`): its strength, or "any session" once the person let every session of its
    /// name and type pass (`devices trust --any-session`), since that is what then decides.
    pub fn word(self, any_session: bool) -> &'static str {
        match (self, any_session) {
            (_, true) => "any session",
            (Strength::Weak, false) => "weak",
            (Strength::NameDerived, false) => "name-id",
            (Strength::Strong, false) => "strong",
            (Strength::Named, false) => "named",
        }
    }

    /// Whether a name match alone may link a new id to a record of this strength.
    pub fn name_is_enough(self) -> bool {
        matches!(self, Strength::Strong | Strength::Named)
    }
}

/// How long one id must be seen (first to last sighting) for its record to be [`Strength::Strong`]:
/// "weeks" (web player, iPhone and Echo ids rotate within a day or so).
pub const STRONG_AFTER: chrono::TimeDelta = chrono::TimeDelta::days(14);

/// One Spotify id a record was seen with, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct IdSpan {
    pub id: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// What kind of generic device a name is, for the alert ("A web player connected ...").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generic {
    WebPlayer,
    Iphone,
    Ipad,
    Android,
    Librespot,
    Speaker,
    /// A name equal to the device's id, or made of hex digits.
    IdLike,
}

impl Generic {
    /// The noun an alert uses: "web player", as in "A web player connected ...".
    pub fn noun(self) -> &'static str {
        match self {
            Generic::WebPlayer => "web player",
            Generic::Iphone => "iPhone",
            Generic::Ipad => "iPad",
            Generic::Android => "Android phone",
            Generic::Librespot => "librespot-family player",
            Generic::Speaker => "speaker or TV with a default name",
            Generic::IdLike => "device named by its id",
        }
    }
}

/// Default names shared by many devices: `*` is any run of characters, `?` one; compared
/// case-insensitively with spaces collapsed. Add a row here when a client's default name turns
/// up; the test `each_generic_row_matches_its_example` wants one example per row.
pub const GENERIC_NAMES: &[(&str, Generic)] = &[
    // Browsers: open.spotify.com and the Web Playback SDK's default; users cannot rename it.
    ("web player", Generic::WebPlayer),
    ("web player (*)", Generic::WebPlayer),
    // iOS 16+ gives apps only the model, never the name the person chose.
    ("iphone", Generic::Iphone),
    ("ipad", Generic::Ipad),
    ("ipod touch", Generic::Iphone),
    // Android reports its model code (Samsung SM-/GT-, Google Pixel); other codes by shape
    // (`is_model_code`).
    ("sm-*", Generic::Android),
    ("gt-*", Generic::Android),
    ("pixel", Generic::Android),
    ("pixel ?", Generic::Android),
    ("pixel ? *", Generic::Android),
    ("pixel ??", Generic::Android),
    ("pixel ?? *", Generic::Android),
    ("android", Generic::Android),
    // librespot and the players built on it, as shipped.
    ("librespot", Generic::Librespot),
    ("go-librespot", Generic::Librespot),
    ("raspotify", Generic::Librespot),
    ("raspotify (*)", Generic::Librespot),
    ("spotifyd", Generic::Librespot),
    ("spotifyd@*", Generic::Librespot),
    ("spotify-player", Generic::Librespot),
    ("spotify_player", Generic::Librespot),
    ("ncspot", Generic::Librespot),
    ("spotify connect", Generic::Librespot),
    // Echo and Cast devices default to their product or the room they were set up in.
    ("echo", Generic::Speaker),
    ("echo *", Generic::Speaker),
    ("*'s echo*", Generic::Speaker),
    ("this device", Generic::Speaker),
    ("chromecast", Generic::Speaker),
    ("google home", Generic::Speaker),
    ("google home mini", Generic::Speaker),
    ("nest *", Generic::Speaker),
    ("google nest *", Generic::Speaker),
    ("tv", Generic::Speaker),
    ("speaker", Generic::Speaker),
];

/// Rooms Echo and Cast set-ups offer as names; a room alone, or followed by one of
/// [`ROOM_DEVICES`], is a default (`Living Room`, `Kitchen speaker`), while `Kitchen Pi` is not.
pub const ROOMS: &[&str] = &[
    "living room",
    "kitchen",
    "bedroom",
    "master bedroom",
    "office",
    "family room",
    "dining room",
    "den",
    "basement",
    "garage",
    "bathroom",
    "hallway",
    "patio",
];

/// What may follow a room in a default name.
pub const ROOM_DEVICES: &[&str] = &["speaker", "tv", "display", "echo", "dot", "home", "mini"];

/// The generic kind of `name`, if it is one: a row of [`GENERIC_NAMES`], an Android model
/// code by shape, the device's own id (`id`), or hex digits.
pub fn generic(name: &str, id: Option<&str>) -> Option<Generic> {
    let folded = fold(name);
    if let Some((_, g)) = GENERIC_NAMES.iter().find(|(p, _)| crate::audit::glob(p, &folded)) {
        return Some(*g);
    }
    let room_default = ROOMS.iter().any(|room| {
        folded.strip_prefix(room).is_some_and(|rest| {
            rest.is_empty() || rest.strip_prefix(' ').is_some_and(|word| ROOM_DEVICES.contains(&word))
        })
    });
    if room_default {
        return Some(Generic::Speaker);
    }
    if id.is_some_and(|id| fold(id) == folded) || is_hex_name(&folded) {
        return Some(Generic::IdLike);
    }
    is_model_code(name).then_some(Generic::Android)
}

/// Lowercase, trimmed, runs of whitespace made one space.
fn fold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

/// Hex digits (8 or more), possibly grouped by `-`, `:` or `_`: an id or a MAC, not a name.
fn is_hex_name(folded: &str) -> bool {
    let digits = folded.chars().filter(char::is_ascii_hexdigit).count();
    digits >= 8 && folded.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, '-' | ':' | '_'))
}

/// An Android model code such as `M2101K6G` or `CPH2211`: one word of capitals and digits,
/// both present, 5 to 14 characters, starting with a capital.
fn is_model_code(name: &str) -> bool {
    let n = name.trim();
    (5..=14).contains(&n.len())
        && n.starts_with(|c: char| c.is_ascii_uppercase())
        && n.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
        && n.chars().any(|c| c.is_ascii_digit())
        && n.chars().filter(char::is_ascii_uppercase).count() >= 2
}

/// Whether `id` is the sha1 or md5 (hex, either case) of `name`, as librespot, spotifyd,
/// raspotify and Google Cast make their ids.
pub fn name_derived(name: &str, id: &str) -> bool {
    use md5::Digest as _;
    let id = id.trim().to_ascii_lowercase();
    match id.len() {
        40 => hex(&sha1::Sha1::digest(name.as_bytes())) == id,
        32 => hex(&md5::Md5::digest(name.as_bytes())) == id,
        _ => false,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The strength of a record named `name` that was seen with `ids` (no `null` id is ever
/// recorded, so a device without an id never makes a record strong).
pub fn classify(name: &str, ids: &[IdSpan]) -> Strength {
    if ids.iter().any(|i| name_derived(name, &i.id)) {
        return Strength::NameDerived;
    }
    let newest = ids.iter().max_by_key(|i| i.last_seen);
    if generic(name, newest.map(|i| i.id.as_str())).is_some() {
        return Strength::Weak;
    }
    match newest {
        Some(i) if i.last_seen - i.first_seen >= STRONG_AFTER => Strength::Strong,
        _ => Strength::Named,
    }
}

/// Whether `new` has the same shape as `old` for a kind of device known to rotate its id in
/// a recognisable way: an Echo's `<uuid>_amzn_<n>` keeps the uuid. Extend with other shapes
/// as they are documented.
pub fn same_shape(old: &str, new: &str) -> bool {
    const ECHO: &str = "_amzn_";
    match (old.split_once(ECHO), new.split_once(ECHO)) {
        (Some((a, _)), Some((b, _))) => a.len() >= 16 && a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// One example per row of [`GENERIC_NAMES`], in order.
    const EXAMPLES: &[&str] = &[
        "Web Player",
        "Web Player (Chrome)",
        "iPhone",
        "iPad",
        "iPod touch",
        "SM-G935F",
        "GT-I9300",
        "Pixel",
        "Pixel 7",
        "Pixel 7 Pro",
        "Pixel 10",
        "Pixel 10 Pro XL",
        "Android",
        "librespot",
        "go-librespot",
        "raspotify",
        "Raspotify (raspberrypi)",
        "Spotifyd",
        "Spotifyd@myhost",
        "spotify-player",
        "spotify_player",
        "ncspot",
        "Spotify Connect",
        "Echo",
        "Echo Dot",
        "Anna's Echo Dot",
        "This Device",
        "Chromecast",
        "Google Home",
        "Google Home Mini",
        "Nest Audio",
        "Google Nest Mini",
        "TV",
        "Speaker",
    ];

    #[test]
    fn each_generic_row_matches_its_example() {
        assert_eq!(EXAMPLES.len(), GENERIC_NAMES.len(), "one example per row");
        for (example, (pattern, kind)) in EXAMPLES.iter().zip(GENERIC_NAMES) {
            assert_eq!(generic(example, None), Some(*kind), "{example:?} should match {pattern:?}");
        }
        assert_eq!(generic("  web   player (Firefox) ", None), Some(Generic::WebPlayer));
        for name in ["Living Room", "Living Room TV", "Kitchen speaker", "Master Bedroom", "Office Dot"] {
            assert_eq!(generic(name, None), Some(Generic::Speaker), "{name:?}");
        }
        for name in ["Kitchen Pi", "Living Room hifi by Anna", "Dentist"] {
            assert_eq!(generic(name, None), None, "{name:?}");
        }
    }

    #[test]
    fn the_strength_table() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).single().expect("valid");
        let span_from = |id: &str, from: i64, days: i64| IdSpan {
            id: id.into(),
            first_seen: t0 + chrono::TimeDelta::days(from),
            last_seen: t0 + chrono::TimeDelta::days(from + days),
        };
        let span = |id: &str, days: i64| span_from(id, 0, days);
        let rows: Vec<(&str, Vec<IdSpan>, Strength)> = vec![
            // Generic names, whatever the id.
            ("Web Player (Chrome)", vec![span("a1b2c3", 0)], Strength::Weak),
            ("Web Player (Chrome)", vec![span("a1b2c3", 60)], Strength::Weak),
            ("iPhone", vec![span("x", 1)], Strength::Weak),
            ("SM-G935F", vec![span("x", 1)], Strength::Weak),
            ("M2101K6G", vec![span("x", 1)], Strength::Weak),
            ("librespot", vec![span("x", 1)], Strength::Weak),
            ("Raspotify (raspberrypi)", vec![span("x", 1)], Strength::Weak),
            ("Living Room", vec![span("cast-7", 1)], Strength::Weak),
            ("Echo Dot", vec![], Strength::Weak),
            ("deadbeef0123", vec![span("x", 30)], Strength::Weak),
            ("0f:1e:2d:3c:4b:5a", vec![span("x", 30)], Strength::Weak),
            ("same-as-id", vec![span("same-as-id", 30)], Strength::Weak),
            // Ids made from the name.
            ("Living Room", vec![span(&hex(&md5_of("Living Room")), 1)], Strength::NameDerived),
            ("Kitchen Pi", vec![span(&hex(&sha1_of("Kitchen Pi")).to_uppercase(), 1)], Strength::NameDerived),
            // Chosen names: strong once one id lasted weeks.
            ("Anna's MacBook", vec![span("desk-1", 30)], Strength::Strong),
            ("Anna's MacBook", vec![span("old", 30), span_from("new", 31, 0)], Strength::Named),
            ("Anna's MacBook", vec![span("desk-1", 13)], Strength::Named),
            ("Anna's MacBook", vec![], Strength::Named),
            ("Phone", vec![span("p", 1)], Strength::Named),
            ("XPS 13", vec![span("p", 1)], Strength::Named),
        ];
        for (name, ids, want) in rows {
            assert_eq!(classify(name, &ids), want, "{name:?} {ids:?}");
        }
    }

    fn md5_of(s: &str) -> Vec<u8> {
        use md5::Digest as _;
        md5::Md5::digest(s.as_bytes()).to_vec()
    }

    fn sha1_of(s: &str) -> Vec<u8> {
        use sha1::Digest as _;
        sha1::Sha1::digest(s.as_bytes()).to_vec()
    }

    #[test]
    fn name_derived_ids_are_sha1_or_md5_of_the_name() {
        // librespot: sha1("librespot"); a Cast speaker: md5 of its name.
        assert!(name_derived("librespot", &hex(&sha1_of("librespot"))));
        assert!(name_derived("Living Room", &hex(&md5_of("Living Room"))));
        assert!(!name_derived("Living room", &hex(&md5_of("Living Room"))), "exact bytes");
        assert!(!name_derived("librespot", "not-a-hash"));
    }

    #[test]
    fn echo_ids_rotate_in_the_same_shape() {
        let uuid = "8a4f7e21-3c5b-4d6e-9f10-2b3c4d5e6f70";
        assert!(same_shape(&format!("{uuid}_amzn_1"), &format!("{uuid}_amzn_2")));
        assert!(!same_shape(&format!("{uuid}_amzn_1"), "0b4f7e21-3c5b-4d6e-9f10-2b3c4d5e6f70_amzn_1"));
        assert!(!same_shape("abc", "abd"));
        assert!(!same_shape("_amzn_1", "_amzn_2"), "an empty uuid proves nothing");
    }

    #[test]
    fn chosen_names_are_not_generic() {
        for name in ["Anna's phone", "Work laptop", "Phone", "Kitchen Pi", "XPS13 laptop", "Büro"] {
            assert_eq!(generic(name, None), None, "{name:?}");
        }
        assert_eq!(Strength::parse(Some("strong")), Strength::Strong);
        assert_eq!(Strength::parse(None), Strength::Weak, "unknown is the cautious answer");
        for s in [Strength::Weak, Strength::NameDerived, Strength::Strong, Strength::Named] {
            assert_eq!(Strength::parse(Some(s.as_str())), s);
            assert_eq!(s.word(true), "any session", "what decides once opened to any session");
        }
        let words: Vec<_> = [Strength::Weak, Strength::NameDerived, Strength::Strong, Strength::Named]
            .map(|s| s.word(false))
            .into();
        assert_eq!(words, ["weak", "name-id", "strong", "named"], "the IDENTITY column's words");
    }
}
