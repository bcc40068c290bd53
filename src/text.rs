//! Making untrusted text (device names, track titles from Spotify) safe for where it goes.
//!
//! Anyone who can sign in to the account can name a device anything: control characters,
//! terminal escape sequences, bidi overrides that reverse what a reader sees, notification
//! markup (`<a href=...>`), or a name of ten thousand characters. Each medium gets its own
//! treatment: [`clean`] for any human-facing text, [`escape_markup`] for notification bodies
//! on servers that render markup, [`terminal`] for what is printed. Pure; no I/O.

/// Characters that change how the surrounding text is *ordered* on screen.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Invisible characters that make two names look the same while differing (a copy of
/// "Phone" with a zero-width space in it reads exactly like the original).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{180E}')
}

/// The longest name shown; longer ones are cut with an ellipsis.
pub const MAX_NAME_CHARS: usize = 64;

/// Drops control and bidi-override characters, folds runs of white space into one space, and
/// cuts to `max_chars` with an ellipsis. An empty result reads "(no name)".
pub fn clean(s: &str, max_chars: usize) -> String {
    let kept: String = s
        .chars()
        .filter(|&c| c.is_whitespace() || !(c.is_control() || is_bidi_control(c) || is_invisible(c)))
        .collect();
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
mod tests {
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
