//! Everything the CLI prints that needs formatting: tables, Docker's human sizes and ages,
//! and progress (a spinner on a terminal, plain lines otherwise).

use std::io::IsTerminal;
use std::time::{Duration, SystemTime};

/// A size as Docker prints it: decimal units, three significant digits (`4.26MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{value:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_owned();
    }
    format!("{s}{}", UNITS[unit])
}

/// A size in binary units (`32MiB`), for limits the user gave in binary units.
pub fn human_size_binary(bytes: i64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{}{}", (v * 100.0).round() / 100.0, units[u])
}

/// An age as Docker prints it (`About an hour`, `3 days`).
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (minutes, hours, days) = (secs / 60, secs / 3600, secs / 86400);
    match () {
        _ if secs < 1 => "Less than a second".into(),
        _ if secs == 1 => "1 second".into(),
        _ if secs < 60 => format!("{secs} seconds"),
        _ if minutes == 1 => "About a minute".into(),
        _ if minutes < 60 => format!("{minutes} minutes"),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if days < 14 => format!("{days} days"),
        _ if days < 60 => format!("{} weeks", days / 7),
        _ if days < 730 => format!("{} months", days / 30),
        _ => format!("{} years", days / 365),
    }
}

/// An RFC 3339 timestamp as a time; `None` when unreadable.
pub fn parse_time(rfc3339: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(rfc3339.trim_end_matches('Z')).ok()
}

/// `3 days ago` from an RFC 3339 timestamp; `N/A` when absent or unreadable.
pub fn since(created: Option<&str>) -> String {
    created
        .and_then(|c| humantime::parse_rfc3339_weak(c.trim_end_matches('Z')).ok())
        .map(|t| {
            format!(
                "{} ago",
                human_duration(SystemTime::now().duration_since(t).unwrap_or_default())
            )
        })
        .unwrap_or_else(|| "N/A".into())
}

/// Whether `c` must not reach a terminal raw: C0 and C1 control characters and DEL (ESC
/// starts every escape sequence; U+009B is an 8-bit CSI) and the bidirectional overrides
/// and isolates, which reorder what is shown.
fn unsafe_for_terminal(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Text from an image, a container or a registry made safe to print on a terminal: every
/// control character (ESC, BEL, CR, newline, ...) and bidirectional override is shown as
/// an escape (`\u{1b}`, `\n`) instead of being sent. Applying it twice changes nothing.
pub fn terminal_safe(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(unsafe_for_terminal) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if unsafe_for_terminal(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// [`terminal_safe`] for text of several lines (an error, a rendered Dockerfile excerpt):
/// newlines and tabs are kept, every other control character is escaped.
pub fn terminal_safe_text(s: &str) -> std::borrow::Cow<'_, str> {
    if !s
        .chars()
        .any(|c| c != '\n' && c != '\t' && unsafe_for_terminal(c))
    {
        return std::borrow::Cow::Borrowed(s);
    }
    s.split('\n')
        .map(|line| {
            line.split('\t')
                .map(|part| terminal_safe(part).into_owned())
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect::<Vec<_>>()
        .join("\n")
        .into()
}

/// JSON made safe to print on a terminal: serde escapes C0 characters inside strings, not
/// DEL, C1 or the bidirectional overrides; those are written as `\u` escapes here. They
/// occur only inside JSON strings, so the result is the same JSON value (raw C0 characters
/// can only be the JSON's own whitespace, and are kept).
pub fn json_terminal_safe(json: &str) -> std::borrow::Cow<'_, str> {
    let escape = |c: char| c > '\u{1f}' && unsafe_for_terminal(c);
    if !json.chars().any(escape) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if escape(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Prints rows as left-aligned columns separated by at least three spaces, like Docker.
/// Every cell goes through [`terminal_safe`]: cells hold text from images and containers.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    lines.extend(
        rows.iter()
            .map(|r| r.iter().map(|c| terminal_safe(c).into_owned()).collect()),
    );
    print_columns(&lines);
}

/// Prints lines of cells as left-aligned columns separated by at least three spaces (the
/// last cell of a line is not padded; trailing spaces are dropped).
pub fn print_columns(lines: &[Vec<String>]) {
    let mut widths: Vec<usize> = Vec::new();
    for cells in lines {
        if widths.len() < cells.len() {
            widths.resize(cells.len(), 0);
        }
        for (w, cell) in widths.iter_mut().zip(cells) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for cells in lines {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        outln!("{}", s.trim_end());
    }
}

/// Progress of one long piece of work: a spinner when stderr is a terminal, else a line at
/// the start and one at the end.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn start(message: impl Into<String>) -> Progress {
        let message = message.into();
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(100));
            bar.set_message(message);
            Progress { bar: Some(bar) }
        } else {
            errln!("{message}");
            Progress { bar: None }
        }
    }

    pub fn finish(self, message: impl Into<String>) {
        let message = message.into();
        match self.bar {
            Some(bar) => bar.finish_with_message(message),
            None => errln!("{message}"),
        }
    }
}

/// Now as RFC 3339, or `SOURCE_DATE_EPOCH` when set (reproducible images).
pub fn now_rfc3339() -> String {
    let t = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|s| std::time::UNIX_EPOCH + std::time::Duration::from_secs(s))
        .unwrap_or_else(std::time::SystemTime::now);
    humantime::format_rfc3339_seconds(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1234), "1.23kB");
        assert_eq!(human_size(4_261_234), "4.26MB");
        assert_eq!(human_size(42_600_000), "42.6MB");
        assert_eq!(human_size(426_000_000), "426MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
    }

    #[test]
    fn durations_like_docker() {
        assert_eq!(human_duration(Duration::from_secs(90)), "About a minute");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600)), "3 hours");
        assert_eq!(human_duration(Duration::from_secs(3 * 86400)), "3 days");
    }
}

#[cfg(test)]
mod terminal_tests {
    use super::*;

    #[test]
    fn terminal_safe_leaves_no_control_character() {
        for s in [
            "\u{1b}]52;c;cHduZWQ=\u{7}",
            "a\u{9b}2Jb",
            "\u{7f}\r\n\t",
            "x\u{202e}y\u{2066}",
        ] {
            let safe = terminal_safe(s);
            assert!(!safe.chars().any(unsafe_for_terminal), "{safe:?}");
            assert_eq!(terminal_safe(&safe), safe, "idempotent");
            let json = serde_json::to_string_pretty(&serde_json::json!({ "k": [s] })).unwrap();
            let safe = json_terminal_safe(&json);
            assert!(
                !safe.chars().any(|c| c != '\n' && unsafe_for_terminal(c)),
                "{safe:?}"
            );
            let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
            assert_eq!(back["k"][0], s);
        }
        assert!(matches!(
            terminal_safe("plain ünïcode"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
