//! Making untrusted text (device names, track titles from Spotify) safe for where it goes, and
//! comparing names by how they look.
//!
//! Anyone who can sign in to the account can name a device anything: control characters,
//! terminal escape sequences, bidi overrides that reverse what a reader sees, notification
//! markup (`<a href=...>`), invisible characters, look-alike letters from other scripts, or a
//! name of ten thousand characters. Each medium gets its own treatment: [`clean`] for any
//! human-facing text, [`escape_markup`] for notification bodies on servers that render
//! markup, [`terminal`] for what is printed. [`keep`] bounds what is kept of a name at all,
//! [`Skeleton`] is what names are compared by (issue 11: "Phone\u{200b}" and "Ph\u{43e}ne" are
//! not other names than "Phone"), and [`differences`] says in words how two look-alikes differ.
//! Pure; no I/O.

use unicode_normalization::UnicodeNormalization;

/// A short label for a secret value (16 hex digits of SHA-256 over `domain`, a NUL and
/// `value`): equal values give equal labels, and the label gives nothing of the value away.
/// Stored to recognise a login or a channel's destination without keeping either.
pub fn fingerprint(domain: &str, value: &str) -> String {
    use sha2::{Digest as _, Sha256};
    let hash = Sha256::digest(format!("{domain}\0{value}"));
    hash[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Characters that change how the surrounding text is *ordered* on screen.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters that show nothing, or a blank, and so make two names look the same while they
/// differ (a copy of "Phone" with a zero-width space reads exactly like the original):
/// every `Default_Ignorable_Code_Point` of Unicode (zero-width spaces and joiners, the soft
/// hyphen, the Hangul fillers U+115F, U+1160, U+3164 and U+FFA0, variation selectors, the tag
/// characters and the rest of the U+E0000 block, ...), and the blank Braille pattern U+2800,
/// which is not ignorable but shows as an empty cell. Checked against unicode-security's
/// table in the tests below.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{2800}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Whether [`clean`] drops `c` (white space is folded, not dropped).
fn is_hidden(c: char) -> bool {
    !c.is_whitespace() && (c.is_control() || is_bidi_control(c) || is_invisible(c))
}

/// The most of a name (or a device type, or a title) that is kept from an answer at all:
/// stored, compared, put in events. Counted in characters a person can see, so a name padded
/// with invisible ones is not cut before its visible part.
pub const MAX_KEPT_CHARS: usize = 256;

/// Characters kept at most, seen or not: invisible padding cannot make a name long either.
const MAX_KEPT_RAW_CHARS: usize = 4 * MAX_KEPT_CHARS;

/// `s` itself when it is within [`MAX_KEPT_CHARS`] visible characters (and four times that in
/// all); otherwise its start, cut there, with an ellipsis. Invisible characters within the
/// kept part stay: they are what an imitation is made of, and the alert names them.
pub fn keep(s: String) -> String {
    let mut visible = 0;
    for (n, (i, c)) in s.char_indices().enumerate() {
        if visible == MAX_KEPT_CHARS || n == MAX_KEPT_RAW_CHARS {
            let mut cut = s[..i].to_string();
            cut.push('…');
            return cut;
        }
        if !is_hidden(c) {
            visible += 1;
        }
    }
    s
}

/// How a name looks, for telling whether two names are meant to be read as the same: what
/// device identity and the imitation check compare instead of the bytes.
///
/// Invisible characters ([`is_invisible`]) and controls are dropped, the rest is normalised
/// (NFKC: full-width, ligature and other compatibility forms), case-folded, and mapped to
/// the prototypes of Unicode's confusables table (UTS #39 skeleton: Cyrillic "о" and Greek
/// "ο" become "o", "0" becomes "O"); white space is folded and trimmed. Two forms are kept:
/// case folded *before* the confusable mapping (so "PHONE" is "phone"), and after it (so a
/// capital "I" stands for the "l" it looks like, which folding first would lose). Names look
/// alike when either form is the same ([`Skeleton::looks_like`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skeleton {
    folded_first: String,
    folded_after: String,
}

impl Skeleton {
    pub fn of(name: &str) -> Skeleton {
        let seen: String =
            name.chars().filter(|&c| !is_hidden(c)).nfkc().filter(|&c| !is_hidden(c)).collect();
        let folded_first = squash(&fold(&confusable(&fold(&seen))));
        let folded_after = squash(&fold(&confusable(&seen)));
        Skeleton { folded_first, folded_after }
    }

    /// Whether a person would read the two names as the same.
    pub fn looks_like(&self, other: &Skeleton) -> bool {
        self.folded_first == other.folded_first || self.folded_after == other.folded_after
    }
}

/// UTS #39's skeleton: the confusable prototypes, between two NFDs, ignorables dropped.
fn confusable(s: &str) -> String {
    unicode_security::skeleton(s).collect()
}

/// Case folding: the full lower-case mapping, plus the two folds it lacks that matter for
/// names (sharp s to "ss", final sigma to sigma).
fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars().flat_map(char::to_lowercase) {
        match c {
            'ß' => out.push_str("ss"),
            'ς' => out.push('σ'),
            c => out.push(c),
        }
    }
    out
}

/// White space folded to single spaces and trimmed.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// How `name` differs from `original`, a name it looks like ([`Skeleton::looks_like`]), in
/// words a person can check: the invisible characters it has that the original lacks, white
/// space that differs, and the other characters it has that the original lacks (by code
/// point: "о" U+043E reads like "o" and is not). Empty when the names are the same.
pub fn differences(name: &str, original: &str) -> Vec<String> {
    let points =
        |cs: &[char]| cs.iter().map(|c| format!("U+{:04X}", *c as u32)).collect::<Vec<_>>().join(" ");
    let (mut invisible, mut spaces, mut other) = (Vec::new(), Vec::new(), Vec::new());
    for c in name.chars().filter(|&c| c != ' ' && !original.contains(c)) {
        let list = if c.is_whitespace() {
            &mut spaces
        } else if is_hidden(c) {
            &mut invisible
        } else {
            &mut other
        };
        if !list.contains(&c) && list.len() < 5 {
            list.push(c);
        }
    }
    let mut out = Vec::new();
    if !invisible.is_empty() {
        out.push(format!("invisible characters ({})", points(&invisible)));
    }
    // Spacing: runs, leading and trailing white space; which space characters, said below.
    let visible = |s: &str| {
        s.chars()
            .filter(|&c| !is_hidden(c))
            .map(|c| if c.is_whitespace() { ' ' } else { c })
            .collect::<String>()
    };
    let (a, b) = (visible(name), visible(original));
    if squash(&a) != a && squash(&b) == b {
        out.push("extra spaces".to_string());
    }
    if !spaces.is_empty() {
        out.push(format!("other spaces ({})", points(&spaces)));
    }
    if !other.is_empty() {
        out.push(format!("other characters ({})", points(&other)));
    }
    out
}

/// The longest name shown; longer ones are cut with an ellipsis.
pub const MAX_NAME_CHARS: usize = 64;

/// Drops control and bidi-override characters, folds runs of white space into one space, and
/// cuts to `max_chars` with an ellipsis. An empty result reads "(no name)".
pub fn clean(s: &str, max_chars: usize) -> String {
    let kept: String = s.chars().filter(|&c| !is_hidden(c)).collect();
    let folded = kept.split_whitespace().collect::<Vec<_>>().join(" ");
    if folded.is_empty() {
        return "(no name)".to_string();
    }
    match folded.char_indices().nth(max_chars) {
        None => folded,
        Some(_) => {
            let cut: String = folded.chars().take(max_chars.saturating_sub(1)).collect();
            format!("{}…", cut.trim_end())
        }
    }
}

/// Escapes the five characters that notification markup (a small subset of HTML) reads.
pub fn escape_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// For printing: control, bidi and invisible characters are shown escaped (`\u{1b}`), never
/// written raw, so a name cannot move the cursor, recolour or retitle the terminal.
pub fn terminal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() || is_bidi_control(c) || is_invisible(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// JSON for a terminal or a pipe: serde_json escapes only controls below U+0020, so C1
/// controls (which xterm obeys), bidi overrides and invisible characters are escaped here as
/// `\uXXXX`. Outside strings JSON has none of these characters, so this never changes meaning.
pub fn json_safe(json: String) -> String {
    if !json.chars().any(|c| (c.is_control() && c != '\n') || is_bidi_control(c) || is_invisible(c)) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if (c.is_control() && c != '\n') || is_bidi_control(c) || is_invisible(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn clean_strips_controls_and_bidi() {
        assert_eq!(clean("Kitchen\u{1b}[31m speaker", 64), "Kitchen[31m speaker");
        assert_eq!(clean("evil\u{202E}gnp.exe", 64), "evilgnp.exe");
        assert_eq!(clean("a\u{0}b\u{7}c", 64), "abc");
        assert_eq!(clean("  two   words\n\t", 64), "two words");
        assert_eq!(clean("\u{1b}\u{202e}", 64), "(no name)");
    }

    #[test]
    fn clean_cuts_long_names_with_an_ellipsis() {
        let long = "x".repeat(10_000);
        let c = clean(&long, 64);
        assert_eq!(c.chars().count(), 64);
        assert!(c.ends_with('…'));
        assert_eq!(clean(&"y".repeat(64), 64), "y".repeat(64), "exactly the limit is kept whole");
        let multi = "é".repeat(100);
        assert_eq!(clean(&multi, 10).chars().count(), 10);
    }

    #[test]
    fn invisible_characters_are_dropped_from_names() {
        assert_eq!(clean("Pho\u{200b}ne\u{feff}", 64), "Phone");
    }

    /// The look-alikes of issue 11 ("Never fooled"), each of which passed for a new name.
    pub(crate) const LOOK_ALIKES_OF_PHONE: &[&str] = &[
        "Phone\u{200b}",
        "Phone ",
        "Phone\u{E0041}",
        "Phone\u{3164}",
        "Ph\u{43e}ne",
        "Phone\u{2800}",
        "Phone\u{FE0F}",
        "Phone\u{115F}\u{1160}",
        "Phone\u{FFA0}",
        "\u{2060}Phone",
        "Pho\u{AD}ne",
        "PHONE",
        "Ｐｈｏｎｅ",
        "Ph\u{3bf}ne",
        "Ph0ne",
    ];

    #[test]
    fn look_alike_names_have_the_skeleton_of_the_name_they_imitate() {
        let phone = Skeleton::of("Phone");
        for name in LOOK_ALIKES_OF_PHONE {
            assert!(Skeleton::of(name).looks_like(&phone), "{:?} must look like Phone", name);
        }
    }

    #[test]
    fn different_names_do_not_look_alike() {
        let phone = Skeleton::of("Phone");
        for name in ["Phones", "iPhone", "Pho ne", "Laptop", "Phane", "", "Phone 2"] {
            assert!(!Skeleton::of(name).looks_like(&phone), "{name:?} is another name");
        }
        assert!(!Skeleton::of("Kitchen speaker").looks_like(&Skeleton::of("Kitchen")));
    }

    #[test]
    fn a_capital_i_for_a_small_l_is_caught_and_case_still_does_not_matter() {
        assert!(Skeleton::of("PayPaI").looks_like(&Skeleton::of("PayPal")));
        assert!(Skeleton::of("PIXEL").looks_like(&Skeleton::of("pixel")));
        assert!(Skeleton::of("STRASSE").looks_like(&Skeleton::of("Straße")));
    }

    #[test]
    fn every_default_ignorable_code_point_and_every_filler_is_invisible() {
        use unicode_security::GeneralSecurityProfile;
        use unicode_security::general_security_profile::IdentifierType;
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            // unicode-security drops exactly the default-ignorables from a skeleton.
            let dropped = unicode_security::skeleton(&c.to_string()).next().is_none();
            let ignorable = c.identifier_type() == Some(IdentifierType::Default_Ignorable);
            if dropped || ignorable {
                assert!(is_invisible(c), "U+{:04X} is default-ignorable", c as u32);
            }
        }
        for c in
            ['\u{3164}', '\u{2800}', '\u{115F}', '\u{1160}', '\u{FFA0}', '\u{E0041}', '\u{FE0F}', '\u{E0100}']
        {
            assert!(is_invisible(c), "U+{:04X}", c as u32);
        }
        assert!(!is_invisible('a') && !is_invisible(' ') && !is_invisible('\u{43e}'));
        assert_eq!(clean("Phone\u{3164}\u{2800}\u{E0041}\u{FE0F}", 64), "Phone");
        assert_eq!(terminal("a\u{3164}"), "a\\u{3164}");
    }

    #[test]
    fn how_a_look_alike_differs_is_said_by_code_point() {
        assert_eq!(differences("Phone\u{200b}", "Phone"), ["invisible characters (U+200B)"]);
        assert_eq!(differences("Phone ", "Phone"), ["extra spaces"]);
        assert_eq!(differences("Ph\u{43e}ne", "Phone"), ["other characters (U+043E)"]);
        assert_eq!(differences("Phone\u{E0041}", "Phone"), ["invisible characters (U+E0041)"]);
        assert_eq!(differences("Living\u{a0}Room", "Living Room"), ["other spaces (U+00A0)"]);
        assert!(differences("Phone", "Phone").is_empty());
    }

    #[test]
    fn a_name_is_kept_up_to_its_visible_bound() {
        let huge = "n".repeat(200 * 1024);
        let kept = keep(huge);
        assert_eq!(kept.chars().count(), MAX_KEPT_CHARS + 1);
        assert!(kept.ends_with('…'));
        assert_eq!(keep("Phone\u{200b}".into()), "Phone\u{200b}", "short names are kept as they came");
        let exact = "y".repeat(MAX_KEPT_CHARS);
        assert_eq!(keep(exact.clone()), exact);
        // Invisible padding before the name does not push the name out...
        let padded = format!("{}Phone", "\u{200b}".repeat(300));
        assert_eq!(keep(padded.clone()), padded);
        // ...but cannot make it long either.
        let padding = "\u{200b}".repeat(100_000);
        assert_eq!(keep(padding).chars().count(), 4 * MAX_KEPT_CHARS + 1);
    }

    #[test]
    fn json_output_escapes_what_serde_json_leaves_raw() {
        let raw = serde_json::to_string(&"a\u{9b}31mb\u{202e}c").expect("json");
        let safe = json_safe(raw);
        assert_eq!(safe, "\"a\\u009b31mb\\u202ec\"");
        let back: String = serde_json::from_str(&safe).expect("still JSON");
        assert_eq!(back, "a\u{9b}31mb\u{202e}c", "same value");
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(
            escape_markup("<a href=\"https://evil\">Tap</a> & 'x'"),
            "&lt;a href=&quot;https://evil&quot;&gt;Tap&lt;/a&gt; &amp; &#39;x&#39;"
        );
    }

    #[test]
    fn terminal_shows_escapes_instead_of_running_them() {
        let t = terminal("a\u{1b}]0;pwned\u{7}b\u{202e}");
        assert!(!t.contains('\u{1b}') && !t.contains('\u{7}') && !t.contains('\u{202e}'));
        assert_eq!(t, "a\\u{1b}]0;pwned\\u{7}b\\u{202e}");
    }
}
