//! The HTML report: one self-contained page with a presence timeline per device, the devices
//! on record and the recent events, the picture a person would rather look at than read.
//!
//! Pure rendering (data in, text out). The page fetches nothing: no script, no font, no
//! image, and a Content-Security-Policy that forbids every fetch, so opening it leaks nothing.
//! Every name is untrusted and HTML-escaped after the usual cleaning. The devices table's
//! Identity column uses the words of `devices` (`identity::Strength::word`).

use chrono::{DateTime, Local, Utc};

use crate::store::{DeviceRow, Presence, StoredEvent};
use crate::text::{MAX_NAME_CHARS, clean, escape_markup};

/// What the page shows.
#[derive(Debug, Clone)]
pub struct ReportData {
    pub account: String,
    pub generated: DateTime<Utc>,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub devices: Vec<DeviceRow>,
    /// Stretches online overlapping the window.
    pub presence: Vec<Presence>,
    /// Newest first.
    pub events: Vec<StoredEvent>,
}

/// The timeline's width in SVG units.
const WIDTH: f64 = 1000.0;
/// The narrowest bar drawn, in SVG units.
const MIN_BAR: f64 = 4.0;

fn h(s: &str) -> String {
    escape_markup(&clean(s, MAX_NAME_CHARS))
}

fn local(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string()
}

/// Renders the page.
pub fn render(d: &ReportData) -> String {
    let span = (d.to - d.from).num_milliseconds().max(1) as f64;
    let x = |t: DateTime<Utc>| (((t - d.from).num_milliseconds() as f64 / span) * WIDTH).clamp(0.0, WIDTH);
    let mut rows = String::new();
    for dev in &d.devices {
        let status = if dev.trusted { "trusted" } else { "unknown" };
        let mut bars = String::new();
        for (_, start, end) in d.presence.iter().filter(|(k, _, _)| *k == dev.key) {
            // A stretch of one poll still shows: at least MIN_BAR wide, kept inside the box.
            let x0 = x(*start).min(WIDTH - MIN_BAR);
            let w = (x(*end) - x0).max(MIN_BAR);
            bars.push_str(&format!(
                "<rect class=\"{status}\" x=\"{x0:.1}\" y=\"2\" width=\"{w:.1}\" height=\"16\"><title>{} to {}</title></rect>",
                local(*start),
                local(*end)
            ));
        }
        let label = dev
            .label
            .as_deref()
            .map(|l| format!(" <span class=\"label\">({})</span>", h(l)))
            .unwrap_or_default();
        rows.push_str(&format!(
            "<tr class=\"device {status}\" data-device=\"{}\"><th>{}{label}<br><small>{} · {}</small></th>\
             <td><svg viewBox=\"0 0 {WIDTH} 20\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"presence of {}\">{bars}</svg></td></tr>\n",
            h(&dev.name),
            h(&dev.name),
            h(&dev.kind),
            if dev.trusted { "trusted" } else { "NOT TRUSTED" },
            h(&dev.name),
        ));
    }
    let mut ticks = String::new();
    let days = (d.to - d.from).num_days().clamp(1, 60);
    for i in 0..=days {
        let t = d.from + chrono::Duration::days(i);
        ticks.push_str(&format!(
            "<span style=\"left:{:.2}%\">{}</span>",
            x(t) / WIDTH * 100.0,
            t.with_timezone(&Local).format("%b %d")
        ));
    }
    let mut table = String::new();
    for dev in &d.devices {
        table.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"identity\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            h(&dev.name),
            h(&dev.kind),
            if dev.trusted { "trusted" } else { "unknown" },
            if dev.trusted { "yes" } else { "NO" },
            dev.strength.word(dev.any_session),
            local(dev.first_seen),
            local(dev.last_seen),
            dev.label.as_deref().map(h).unwrap_or_default()
        ));
    }
    let mut events = String::new();
    for e in &d.events {
        events.push_str(&format!(
            "<li class=\"event {}\"><time>{}</time> {}</li>\n",
            e.event.kind(),
            local(e.at),
            escape_markup(&clean(&e.event.describe(), 4 * MAX_NAME_CHARS))
        ));
    }
    if events.is_empty() {
        events.push_str("<li>Nothing happened in this window.</li>");
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>spotguard report: {account}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
h1 {{ font-size: 1.4em; }} small {{ color: #666; font-weight: normal; }}
table.timeline {{ width: 100%; border-collapse: collapse; }}
table.timeline th {{ width: 16em; text-align: left; padding: .3em .5em; vertical-align: top; }}
table.timeline td {{ border-left: 1px solid #ccc; }}
svg {{ width: 100%; height: 20px; display: block; background: #f4f4f4; }}
rect.trusted {{ fill: #2e8b57; }} rect.unknown {{ fill: #d1342f; }}
tr.unknown th {{ color: #b00; }}
.axis {{ position: relative; height: 1.4em; margin-left: calc(17rem + 1px); font-size: .8em; color: #666; }}
.axis span {{ position: absolute; transform: translateX(-50%); white-space: nowrap; }}
table.devices td, table.devices th {{ padding: .2em .8em; text-align: left; }}
td.unknown {{ color: #b00; font-weight: bold; }}
li.event {{ margin: .2em 0; }} li.unknown_playing, li.device_appeared, li.access_lost {{ color: #b00; }}
</style></head>
<body>
<h1>spotguard report: account {account}</h1>
<p>From {from} to {to}. Green: a trusted device was online; red: a device you have not trusted.
Generated {generated}.</p>
<h2>Who was online when</h2>
<div class="axis">{ticks}</div>
<table class="timeline">
{rows}</table>
<h2>Devices</h2>
<table class="devices"><tr><th>Name</th><th>Type</th><th>Trusted</th><th>Identity</th><th>First seen</th><th>Last seen</th><th>Label</th></tr>
{table}</table>
<h2>What happened</h2>
<ul class="events">
{events}</ul>
</body></html>
"#,
        account = h(&d.account),
        from = local(d.from),
        to = local(d.to),
        generated = local(d.generated),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::DeviceKey;

    fn device(key: DeviceKey, name: &str, trusted: bool) -> DeviceRow {
        DeviceRow {
            key,
            id: Some(format!("id{key}")),
            name: name.into(),
            kind: "Computer".into(),
            trusted,
            first_seen: Utc::now(),
            last_seen: Utc::now(),
            online: true,
            label: None,
            forgotten: false,
            muted_until: None,
            strength: crate::identity::Strength::Named,
            any_session: false,
        }
    }

    #[test]
    fn the_page_is_self_contained_and_escapes_names() {
        let to = Utc::now();
        let from = to - chrono::Duration::days(7);
        let data = ReportData {
            account: "default".into(),
            generated: to,
            from,
            to,
            devices: vec![device(1, "Laptop", true), device(2, "<script>alert(1)</script>", false)],
            presence: vec![
                (1, from, from + chrono::Duration::days(1)),
                (2, to - chrono::Duration::hours(1), to),
            ],
            events: vec![],
        };
        let html = render(&data);
        assert!(!html.contains("<script"), "escaped");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("default-src 'none'"));
        for external in ["http://", "https://", "src=", "<link", "@import", "url("] {
            assert!(!html.contains(external), "fetches nothing: {external}");
        }
        // The laptop's day at the start: from x=0, a seventh of the width.
        assert!(html.contains("<rect class=\"trusted\" x=\"0.0\" y=\"2\" width=\"142.9\""), "{html}");
        assert!(html.contains("<rect class=\"unknown\""));
        assert!(html.contains("Nothing happened in this window."));
    }

    #[test]
    fn the_devices_table_says_each_identity_in_the_words_of_devices() {
        let to = Utc::now();
        let tab =
            DeviceRow { strength: crate::identity::Strength::Weak, ..device(1, "Web Player (Chrome)", true) };
        let opened = DeviceRow { any_session: true, ..device(2, "iPhone", true) };
        let data = ReportData {
            account: "default".into(),
            generated: to,
            from: to - chrono::Duration::days(7),
            to,
            devices: vec![tab, opened, device(3, "Laptop", false)],
            presence: vec![],
            events: vec![],
        };
        let html = render(&data);
        assert!(html.contains("<th>Trusted</th><th>Identity</th>"), "{html}");
        for (name, trusted, word) in [
            ("Web Player (Chrome)", "yes", "weak"),
            ("iPhone", "yes", "any session"),
            ("Laptop", "NO", "named"),
        ] {
            let row = format!("<tr><td>{name}</td><td>Computer</td>");
            let row = html.lines().find(|l| l.starts_with(&row)).unwrap_or_else(|| panic!("{name}: {html}"));
            assert!(row.contains(&format!(">{trusted}</td><td class=\"identity\">{word}</td>")), "{row}");
        }
    }
}
