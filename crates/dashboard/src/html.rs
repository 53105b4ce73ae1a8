//! HTML building blocks: escaping, the page layout, times and small widgets.
//!
//! Pages are plain `format!` strings, so every value that did not come from
//! this crate goes through [`esc`]: app metadata, event content and tags are
//! attacker-controlled. The layout links one stylesheet and one script from
//! `/static` so the Content-Security-Policy can forbid inline code.

use std::fmt::{self, Write as _};

use axum::response::Html;

use crate::auth::{AdminSession, Viewer};

/// A string escaped for HTML text and attribute values when displayed.
pub struct Esc<'a>(&'a str);

/// Escape `text` for HTML (text and quoted attributes).
pub fn esc(text: &str) -> Esc<'_> {
    Esc(text)
}

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            match c {
                '&' => f.write_str("&amp;")?,
                '<' => f.write_str("&lt;")?,
                '>' => f.write_str("&gt;")?,
                '"' => f.write_str("&quot;")?,
                '\'' => f.write_str("&#39;")?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// The section a page belongs to (highlighted in the navigation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Pending requests.
    Pending,
    /// Connections (sessions).
    Connections,
    /// Pairing (tokens, nostrconnect).
    Pair,
    /// The audit log.
    Audit,
    /// Keys and the kill switch.
    Keys,
}

impl Section {
    const ALL: [(Section, &'static str, &'static str); 5] = [
        (Section::Pending, "/", "Pending"),
        (Section::Connections, "/connections", "Connections"),
        (Section::Pair, "/pair", "Connect an app"),
        (Section::Audit, "/audit", "Audit log"),
        (Section::Keys, "/keys", "Keys"),
    ];
}

impl Section {
    /// Whether `viewer`'s role has this section at all.
    pub fn open_to(self, viewer: &Viewer) -> bool {
        match self {
            Section::Pending | Section::Pair => viewer.decides(),
            Section::Connections => true,
            Section::Audit => viewer.reads_audit(),
            Section::Keys => viewer.owns(),
        }
    }
}

/// A page for a logged-in user: navigation (the sections its role has),
/// who is logged in, logout, and the CSRF token for scripts.
pub fn page(title: &str, section: Section, session: &AdminSession, body: &str) -> Html<String> {
    let csrf = session.csrf();
    let viewer = session.viewer();
    let mut nav = String::new();
    for (s, href, label) in Section::ALL {
        if !s.open_to(viewer) {
            continue;
        }
        let current = if s == section {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{href}\"{current}>{label}</a>");
    }
    let header = format!(
        "<header class=\"top\"><a class=\"brand\" href=\"/\">Rampart</a><nav>{nav}</nav>\
         <span class=\"muted small\" id=\"viewer\">{who}</span>\
         <form method=\"post\" action=\"/logout\" class=\"logout\">{hidden}\
         <button class=\"link\">Log out</button></form></header>",
        who = esc(&viewer.label()),
        hidden = csrf_field(csrf)
    );
    document(title, Some(csrf), &header, body)
}

/// A page without navigation (login, errors).
pub fn bare_page(title: &str, body: &str) -> Html<String> {
    let header = "<header class=\"top\"><span class=\"brand\">Rampart</span></header>";
    document(title, None, header, body)
}

fn document(title: &str, csrf: Option<&str>, header: &str, body: &str) -> Html<String> {
    let meta = csrf
        .map(|c| format!("<meta name=\"csrf-token\" content=\"{}\">", esc(c)))
        .unwrap_or_default();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"same-origin\">{meta}\
         <title>{title} · Rampart</title><link rel=\"stylesheet\" href=\"/static/app.css\">\
         <script src=\"/static/app.js\" defer></script></head>\
         <body>{header}<main>{body}</main></body></html>",
        title = esc(title)
    ))
}

/// The hidden form field carrying the CSRF token.
pub fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// A `<time>` showing a UTC date (scripts switch it to local time).
pub fn time(secs: u64) -> String {
    format!("<time data-ts=\"{secs}\">{}</time>", utc(secs))
}

/// `2024-05-01 13:45:00 UTC`.
pub fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// How long ago, roughly: `just now`, `5 min ago`, `3 h ago`, `2 days ago`.
pub fn ago(now: u64, secs: u64) -> String {
    let d = now.saturating_sub(secs);
    match d {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", d / 60),
        3600..=86_399 => format!("{} h ago", d / 3600),
        _ => format!("{} days ago", d / 86_400),
    }
}

/// The first and last characters of a long identifier.
pub fn short(id: &str) -> String {
    if id.len() <= 16 {
        return id.to_owned();
    }
    format!("{}…{}", &id[..10], &id[id.len() - 4..])
}

/// `<option>`s, the one whose value is `selected` marked.
pub fn options(choices: &[(&str, &str)], selected: &str) -> String {
    let mut out = String::new();
    for (value, label) in choices {
        let sel = if *value == selected { " selected" } else { "" };
        let _ = write!(
            out,
            "<option value=\"{}\"{sel}>{}</option>",
            esc(value),
            esc(label)
        );
    }
    out
}

/// Durations offered for "remember" and expiry choices (humantime values).
pub const DURATIONS: [(&str, &str); 6] = [
    ("", "until I change it"),
    ("1h", "for 1 hour"),
    ("8h", "for 8 hours"),
    ("1day", "for 1 day"),
    ("7days", "for 7 days"),
    ("30days", "for 30 days"),
];

/// A success or information banner.
pub fn notice(kind: &str, text: &str) -> String {
    format!("<div class=\"notice {kind}\">{}</div>", esc(text))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_matters() {
        let evil = "<script>alert('x')</script>\"&";
        assert_eq!(
            esc(evil).to_string(),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"
        );
    }

    #[test]
    fn dates_and_durations() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(ago(1000, 1000), "just now");
        assert_eq!(ago(4000, 1000), "50 min ago");
        assert_eq!(short(&"ab".repeat(32)), "ababababab…abab");
        for (value, _) in DURATIONS.iter().skip(1) {
            assert!(humantime::parse_duration(value).is_ok(), "{value}");
        }
    }
}
