//! What the console and the command line show of times and bodies: RFC 3339 in UTC (no
//! calendar crate for one format), and a body pretty-printed where it is JSON.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::scheme::timestamp::{civil_from_days, days_from_civil};

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

/// Reads `2026-11-01`, `2026-11-01T12:00:00Z` or `2026-11-01 12:00:00` (UTC; a trailing
/// `Z` optional, fractions of a second ignored).
pub(crate) fn parse_time(text: &str) -> Result<SystemTime, String> {
    let wrong =
        || format!("{text:?} is not a date (2026-11-01) or a UTC time (2026-11-01T12:00:00Z)");
    let text = text.trim();
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time.trim_end_matches('Z'))),
        None => (text, None),
    };
    let mut parts = date.split('-');
    let mut number = |max: u32| -> Result<u32, String> {
        let value: u32 = parts
            .next()
            .ok_or_else(wrong)?
            .parse()
            .map_err(|_| wrong())?;
        (value <= max).then_some(value).ok_or_else(wrong)
    };
    let (year, month, day) = (number(9999)?, number(12)?, number(31)?);
    if parts.next().is_some() || month == 0 || day == 0 || year < 1970 {
        return Err(wrong());
    }
    let mut secs = 0;
    if let Some(time) = time {
        let time = time.split('.').next().unwrap_or_default();
        let mut fields = time.split(':');
        for (unit, max) in [(3600, 23), (60, 59), (1, 60)] {
            let Some(field) = fields.next() else { break };
            let value: u64 = field.parse().map_err(|_| wrong())?;
            if value > max {
                return Err(wrong());
            }
            secs += value * unit;
        }
        if fields.next().is_some() {
            return Err(wrong());
        }
    }
    let days = days_from_civil(i64::from(year), i64::from(month), i64::from(day));
    let days = u64::try_from(days).map_err(|_| wrong())?;
    Ok(UNIX_EPOCH + Duration::from_secs(days * 86_400 + secs))
}

/// How long an attempt took, or that it is still running.
pub(crate) fn took(duration: Option<Duration>) -> String {
    duration.map_or_else(|| "running".to_owned(), |d| format!("{} ms", d.as_millis()))
}

/// `body` as text to show, at most `cap` bytes of it: pretty-printed where it is JSON,
/// else as UTF-8 (bytes that are not, replaced); and whether it was cut.
pub(crate) fn body_text(body: &[u8], cap: usize) -> (String, bool) {
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => serde_json::to_string_pretty(&value)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned()),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    if text.len() <= cap {
        return (text, false);
    }
    let mut end = cap;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (text[..end].to_owned(), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_back() {
        let at = UNIX_EPOCH + Duration::from_millis(1_764_971_007_120);
        assert_eq!(rfc3339(at), "2025-12-05T21:43:27.120Z");
        assert_eq!(
            parse_time("2025-12-05T21:43:27Z"),
            Ok(UNIX_EPOCH + Duration::from_secs(1_764_971_007))
        );
        assert_eq!(
            parse_time("2024-02-29"),
            Ok(UNIX_EPOCH + Duration::from_secs(1_709_164_800))
        );
        assert_eq!(parse_time("1970-01-01 00:00"), Ok(UNIX_EPOCH));
        for wrong in [
            "",
            "2024-13-01",
            "yesterday",
            "2024-01-01T25:00",
            "2024-01-01-01",
        ] {
            assert!(parse_time(wrong).is_err(), "{wrong}");
        }
    }

    #[test]
    fn bodies_are_pretty_and_capped() {
        assert_eq!(body_text(br#"{"a":1}"#, 100).0, "{\n  \"a\": 1\n}");
        assert_eq!(body_text(b"plain \xff", 100).0, "plain \u{fffd}");
        let (text, cut) = body_text("ééé".as_bytes(), 3);
        assert_eq!((text.as_str(), cut), ("é", true));
    }
}
