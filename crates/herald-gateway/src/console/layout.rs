//! The page shell every console page shares (navigation, styles, script) and the small
//! formatting helpers pages use.

use axum::response::Html;
use maud::{DOCTYPE, Markup, html};

/// The sections in the navigation: (path, label).
const SECTIONS: [(&str, &str); 7] = [
    ("/", "Overview"),
    ("/topics", "Topics"),
    ("/groups", "Consumer groups"),
    ("/dead-letters", "Dead letters"),
    ("/schemas", "Schemas"),
    ("/sagas", "Sagas"),
    ("/projections", "Projections"),
];

/// A whole page: `title`, the navigation with `active` marked, and `body`.
pub(crate) fn page(title: &str, active: &str, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Herald" }
                link rel="icon" href="data:,";
                link rel="stylesheet" href=(super::assets::CSS_PATH);
                script src=(super::assets::JS_PATH) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header {
                    nav aria-label="Sections" {
                        a.brand href="/" { "Herald" }
                        @for (path, label) in SECTIONS {
                            @if path == active {
                                a href=(path) aria-current="page" { (label) }
                            } @else {
                                a href=(path) { (label) }
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    };
    Html(markup.into_string())
}

/// `text` percent-encoded for a URL path segment or query value.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Bytes in B, KiB, MiB or GiB.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let (mut value, mut unit) = (n as f64, 0);
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// A time (ms since the epoch) in RFC 3339.
pub(crate) fn time(ms: i64) -> String {
    herald_common::time::rfc3339_from_millis(ms)
}

/// Seconds with one decimal, or a dash for none.
pub(crate) fn seconds(s: f64) -> String {
    if s <= 0.0 { "0".to_string() } else { format!("{s:.1}") }
}

/// A rate per second, or a dash when not known yet.
pub(crate) fn rate(per_second: Option<f64>) -> String {
    per_second.map_or_else(|| "–".to_string(), |r| format!("{r:.1}/s"))
}

/// A JSON value indented for reading.
pub(crate) fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_encoded_for_urls_and_sizes_read_well() {
        assert_eq!(encode("orders.v1"), "orders.v1");
        assert_eq!(encode("a b/c?d&e"), "a%20b%2Fc%3Fd%26e");
        assert_eq!(encode("é"), "%C3%A9");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn page_text_is_escaped() {
        let Html(text) = page("<t>", "/", html! { p { ("<script>alert(1)</script>") } });
        assert!(text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!text.contains("<script>alert"));
    }
}
