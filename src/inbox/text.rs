//! What the console and the command line show of times and bodies, and read of times: RFC
//! 3339 out in UTC, in with any offset (`time` reads it), bodies pretty-printed where they
//! are JSON, and sender text made safe for a terminal.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::scheme::timestamp::civil_from_days;

/// `at` as `2026-12-05T21:43:27.120Z`.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX);
    let (year, month, day) = civil_from_days(days);
    let rest = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Reads a date (`2026-11-01`, its midnight in UTC) or an RFC 3339 time with any offset
/// (`2026-11-01T12:00:00.25+05:00`); a time without an offset (`2026-11-01 12:00` or
/// `2026-11-01T12:00:00`) is read as UTC. Everything given is used or the whole is refused:
/// an impossible date (`2026-02-31`) or anything left over is an error, never ignored.
pub(crate) fn parse_time(text: &str) -> Result<SystemTime, String> {
    let wrong = || {
        format!(
            "{text:?} is not a date (2026-11-01) or an RFC 3339 time \
             (2026-11-01T12:00:00Z, 2026-11-01T12:00:00.5+05:00)"
        )
    };
    let text = text.trim();
    let mut full = text.to_owned();
    if full.len() == 10 {
        full.push_str("T00:00:00Z");
    } else {
        // RFC 3339 lets a space stand for the `T` (its section 5.6, the note).
        if full.as_bytes().get(10) == Some(&b' ') {
            full.replace_range(10..11, "T");
        }
        let clock = full.get(11..).unwrap_or_default();
        if !clock.contains(['Z', 'z', '+', '-']) {
            if clock.len() == 5 {
                full.push_str(":00");
            }
            full.push('Z');
        }
    }
    let at = time::OffsetDateTime::parse(&full, &time::format_description::well_known::Rfc3339)
        .map_err(|_| wrong())?;
    if at.unix_timestamp() < 0 {
        return Err(format!("{text:?} is before 1970"));
    }
    Ok(SystemTime::from(at))
}

/// `text` with every control character written as an escape (`\u{1b}`), and the characters
/// that reorder what follows them (bidirectional overrides): what a delivery's sender wrote
/// reaches the operator's terminal as text, never as a command to it. Newlines and tabs are
/// kept where `lines` says so (a body), escaped elsewhere (one field of one line).
pub(crate) fn printable(text: &str, lines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && !(lines && matches!(c, '\n' | '\t')))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.contains(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// How long an attempt took, or that it is still running.
pub(crate) fn took(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "running".to_owned(), |d| format!("{} ms", d.as_millis()))
}

/// `body` as text to show, at most about `cap` bytes of it: pretty-printed where it is JSON
/// and no longer than `cap`, else its first `cap` bytes as UTF-8 (bytes that are not,
/// replaced); and whether it was cut. A body over `cap` is never parsed: what a page costs
/// stays bounded by `cap`, whatever the body's size.
pub(crate) fn body_text(body: &[u8], cap: usize) -> (String, bool) {
    if body.len() > cap {
        let mut end = cap;
        // Not inside one UTF-8 character: back to the start of the one the cap cuts.
        while end > 0 && end < body.len() && (body[end] & 0xC0) == 0x80 && cap - end < 3 {
            end -= 1;
        }
        return (String::from_utf8_lossy(&body[..end]).into_owned(), true);
    }
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => serde_json::to_string_pretty(&value)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned()),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    (text, false)
}

/// What a secret's value is shown as.
pub(crate) const REDACTED: &str = "[redacted]";

/// `body` with the values of `fields` shown as [`REDACTED`]: at any depth of a JSON body, or
/// the fields of a form body (Slack's slash commands). The body as it is where it holds
/// none of them.
pub(crate) fn redacted<'b>(body: &'b [u8], fields: &[String]) -> Cow<'b, [u8]> {
    if fields.is_empty() {
        return Cow::Borrowed(body);
    }
    if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) {
        if redact(&mut value, fields) {
            return Cow::Owned(serde_json::to_vec(&value).unwrap_or_default());
        }
        return Cow::Borrowed(body);
    }
    let pairs: Vec<_> = form_urlencoded::parse(body).collect();
    if !pairs
        .iter()
        .any(|(name, _)| fields.iter().any(|f| f == name))
    {
        return Cow::Borrowed(body);
    }
    let mut form = form_urlencoded::Serializer::new(String::new());
    for (name, value) in &pairs {
        let secret = fields.iter().any(|f| f == name);
        form.append_pair(name, if secret { REDACTED } else { value });
    }
    Cow::Owned(form.finish().into_bytes())
}

/// Replaces the values of `fields` in `value`, at any depth: whether any was there.
fn redact(value: &mut serde_json::Value, fields: &[String]) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            let mut any = false;
            for (name, inner) in map.iter_mut() {
                if fields.iter().any(|f| f == name) {
                    *inner = serde_json::Value::String(REDACTED.to_owned());
                    any = true;
                } else {
                    any |= redact(inner, fields);
                }
            }
            any
        }
        serde_json::Value::Array(items) => items
            .iter_mut()
            .fold(false, |any, item| redact(item, fields) | any),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_back() {
        let at = UNIX_EPOCH + Duration::from_millis(1_764_971_007_120);
        assert_eq!(rfc3339(at), "2025-12-05T21:43:27.120Z");
        let secs = |s| Ok(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(parse_time("2025-12-05T21:43:27Z"), secs(1_764_971_007));
        assert_eq!(parse_time("2024-02-29"), secs(1_709_164_800));
        assert_eq!(parse_time("1970-01-01 00:00"), secs(0));
        assert_eq!(parse_time("2025-12-05 21:43:27"), secs(1_764_971_007));
        // An offset after a fraction is read, not dropped (it once was).
        assert_eq!(
            parse_time("2026-12-06T07:55:18.208931+05:00"),
            Ok(UNIX_EPOCH + Duration::from_micros(1_796_525_718_208_931))
        );
        assert_eq!(parse_time("2025-12-05T23:43:27+02:00"), secs(1_764_971_007));
        assert_eq!(
            parse_time("2025-12-05T19:43:27.000-02:00"),
            secs(1_764_971_007)
        );
        for wrong in [
            "",
            "2024-13-01",
            "2026-02-31",
            "2025-02-29",
            "2026-04-31",
            "yesterday",
            "2024-01-01T25:00",
            "2024-01-01-01",
            "2024-01-01T12:00:00+25:00",
            "2024-01-01T12:00:00Zjunk",
            "2024-01-01T12:00:00.5+05:00 extra",
            "1969-12-31T23:59:59Z",
            "2024-01-0é",
            "2024-01-01Té",
        ] {
            assert!(parse_time(wrong).is_err(), "{wrong}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_is_read_or_refused(text in "\\PC{0,40}") {
            let _ = parse_time(&text);
        }

        #[test]
        fn any_offset_is_honoured(
            secs in 0_i64..4_000_000_000,
            nanos in 0_u32..1_000_000_000,
            offset_minutes in -(23 * 60 + 59)..=(23 * 60 + 59_i32),
        ) {
            let utc = time::OffsetDateTime::from_unix_timestamp(secs).unwrap()
                + time::Duration::nanoseconds(i64::from(nanos));
            let offset = time::UtcOffset::from_whole_seconds(offset_minutes * 60).unwrap();
            let local = utc.to_offset(offset);
            let sign = if offset_minutes < 0 { '-' } else { '+' };
            let text = format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}{sign}{:02}:{:02}",
                local.year(), u8::from(local.month()), local.day(),
                local.hour(), local.minute(), local.second(), local.nanosecond(),
                offset_minutes.abs() / 60, offset_minutes.abs() % 60,
            );
            proptest::prop_assert_eq!(parse_time(&text), Ok(SystemTime::from(utc)), "{}", text);
        }

        #[test]
        fn printable_text_has_no_control_characters(text in "\\PC*|[\\x00-\\x1f\\x7f-\\u{9f}a]{0,20}") {
            let shown = printable(&text, false);
            proptest::prop_assert!(!shown.chars().any(char::is_control), "{:?}", shown);
        }
    }

    #[test]
    fn terminal_escapes_are_shown_as_text() {
        let body = "title \u{1b}]0;pwned\u{7}red \u{1b}[31m\u{9b}2J\u{202e}\nnext\tline";
        assert_eq!(
            printable(body, true),
            "title \\u{1b}]0;pwned\\u{7}red \\u{1b}[31m\\u{9b}2J\\u{202e}\nnext\tline"
        );
        assert_eq!(printable("a\nb", false), "a\\u{a}b");
        assert!(matches!(
            printable("plain", false),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn secrets_in_bodies_are_redacted() {
        let fields = ["clientState".to_owned(), "token".to_owned()];
        let graph = br#"{"value":[{"clientState":"s3cret","changeType":"created"},{"clientState":"s3cret"}]}"#;
        let shown = redacted(graph, &fields);
        let shown = std::str::from_utf8(&shown).unwrap();
        assert!(
            !shown.contains("s3cret") && shown.contains("created"),
            "{shown}"
        );
        assert_eq!(shown.matches(REDACTED).count(), 2);
        let form = redacted(b"token=s3cret&command=%2Fdeploy&text=a+b", &fields);
        assert_eq!(&*form, b"token=%5Bredacted%5D&command=%2Fdeploy&text=a+b");
        assert!(matches!(redacted(br#"{"a":1}"#, &fields), Cow::Borrowed(_)));
        assert!(matches!(redacted(b"plain text", &fields), Cow::Borrowed(_)));
        assert!(matches!(redacted(graph, &[]), Cow::Borrowed(_)));
    }

    #[test]
    fn bodies_are_pretty_and_capped() {
        assert_eq!(body_text(br#"{"a":1}"#, 100).0, "{\n  \"a\": 1\n}");
        assert_eq!(body_text(b"plain \xff", 100).0, "plain \u{fffd}");
        let (text, cut) = body_text("ééé".as_bytes(), 3);
        assert_eq!((text.as_str(), cut), ("é", true));
        // Over the cap, a JSON body is shown as it is, never parsed whole.
        let big = format!("{{\"a\":\"{}\"}}", "x".repeat(200));
        let (text, cut) = body_text(big.as_bytes(), 64);
        assert_eq!((text.as_str(), cut), (&big[..64], true));
    }
}
