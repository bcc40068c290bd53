//! Small formatting helpers shared by the commands: relative times and plain tables.

use chrono::{DateTime, Utc};

use crate::text::{MAX_NAME_CHARS, clean, terminal};

/// "just now", "3 min ago", "5 h ago", "12 days ago".
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = now.signed_duration_since(t).num_seconds();
    match secs {
        s if s < 60 => "just now".to_string(),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    }
}

/// A device name as printed: cleaned and cut like everywhere, then any escape made visible.
pub fn name(s: &str) -> String {
    terminal(&clean(s, MAX_NAME_CHARS))
}

/// Renders rows as left-aligned columns separated by two spaces.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ago_reads_naturally() {
        let now = Utc::now();
        assert_eq!(ago(now, now), "just now");
        assert_eq!(ago(now - chrono::Duration::minutes(3), now), "3 min ago");
        assert_eq!(ago(now - chrono::Duration::hours(5), now), "5 h ago");
        assert_eq!(ago(now - chrono::Duration::days(12), now), "12 days ago");
    }

    #[test]
    fn table_aligns_by_characters() {
        let t = table(&["A", "B"], &[vec!["ééé".into(), "x".into()], vec!["b".into(), "y".into()]]);
        assert_eq!(t, "A    B\nééé  x\nb    y");
    }

    #[test]
    fn names_cannot_inject_escapes() {
        assert_eq!(name("a\u{1b}[2Jb"), "a[2Jb");
    }
}
