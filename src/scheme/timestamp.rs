//! A signed timestamp: parsed strictly, and checked against the tolerance.

use std::time::{Duration, SystemTime};

use http::HeaderName;

use super::{VerifyError, VerifyErrorKind};
use crate::clock::unix_seconds;

/// An optional `-` and ASCII digits as an `i64`; `None` for anything else, or a number out
/// of range. `str::parse` alone would also take a leading `+`.
fn parse_seconds(text: &[u8]) -> Option<i64> {
    if text.first() == Some(&b'+') {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// How a sender writes its timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeText {
    /// Unix seconds: `1700000000`.
    Seconds,
    /// Unix milliseconds: `1700000000123` (Linear, HubSpot).
    Millis,
    /// RFC 3339: `2023-11-14T22:13:20.123456789Z` (Twitch). The fraction is read and dropped.
    Rfc3339,
}

impl TimeText {
    /// The Unix seconds `text` stands for; `None` for anything malformed.
    pub(crate) fn parse(self, text: &[u8]) -> Option<i64> {
        match self {
            TimeText::Seconds => parse_seconds(text),
            TimeText::Millis => parse_seconds(text).map(|millis| millis.div_euclid(1000)),
            TimeText::Rfc3339 => parse_rfc3339(text),
        }
    }

    /// `seconds` written as the sender writes it.
    pub(crate) fn write(self, seconds: i64) -> String {
        match self {
            TimeText::Seconds => seconds.to_string(),
            TimeText::Millis => (i128::from(seconds) * 1000).to_string(),
            TimeText::Rfc3339 => write_rfc3339(seconds),
        }
    }
}

/// Days from 1970-01-01 to the proleptic Gregorian date `y-m-d`.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date `days` after 1970-01-01, as (year, month, day).
pub(crate) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`, strictly, as Unix seconds.
fn parse_rfc3339(text: &[u8]) -> Option<i64> {
    fn digits(text: &[u8]) -> Option<i64> {
        text.iter().try_fold(0i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    }
    if text.len() < 20 || !text.is_ascii() {
        return None;
    }
    let (date, rest) = text.split_at(10);
    let (time, mut zone) = rest.split_at(9);
    if date[4] != b'-' || date[7] != b'-' || !matches!(time[0], b'T' | b't') {
        return None;
    }
    if time[3] != b':' || time[6] != b':' {
        return None;
    }
    let (y, m, d) = (
        digits(&date[..4])?,
        digits(&date[5..7])?,
        digits(&date[8..])?,
    );
    let (hh, mm, ss) = (
        digits(&time[1..3])?,
        digits(&time[4..6])?,
        digits(&time[7..])?,
    );
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let days_in_month = *month_days.get(usize::try_from(m).ok()?.checked_sub(1)?)?;
    if d < 1 || d > days_in_month || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    if let Some(fraction) = zone.strip_prefix(b".") {
        let n = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        zone = &fraction[n..];
    }
    let offset = match zone {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (h, m) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if h > 23 || m > 59 {
                return None;
            }
            let offset = h * 3600 + m * 60;
            if *sign == b'+' {
                offset
            } else {
                -offset
            }
        }
        _ => return None,
    };
    Some(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss - offset)
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn write_rfc3339(seconds: i64) -> String {
    let (days, second) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        second / 3600,
        second / 60 % 60,
        second % 60
    )
}

/// Parses a time written as `format` and checks it lies within `tolerance` of `now`.
///
/// Seconds and milliseconds are an optional `-` and ASCII digits only: the signed text must
/// be the number itself, so `+17` or ` 17` are malformed rather than quietly normalised.
pub(crate) fn check_time(
    text: &[u8],
    format: TimeText,
    header: &HeaderName,
    now: SystemTime,
    tolerance: Duration,
) -> Result<i64, VerifyError> {
    let timestamp = format
        .parse(text)
        .ok_or_else(|| VerifyError::invalid_header(header.clone()))?;
    check_age(timestamp, now, tolerance)
}

/// `timestamp` itself if it lies within `tolerance` of `now`.
pub(crate) fn check_age(
    timestamp: i64,
    now: SystemTime,
    tolerance: Duration,
) -> Result<i64, VerifyError> {
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    let now = unix_seconds(now);
    // i128 so that no pair of i64 values can overflow the difference.
    let age = i128::from(now) - i128::from(timestamp);
    if age > i128::from(tolerance) {
        Err(VerifyError::new(VerifyErrorKind::TimestampTooOld))
    } else if -age > i128::from(tolerance) {
        Err(VerifyError::new(VerifyErrorKind::TimestampTooNew))
    } else {
        Ok(timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn rfc3339_reads_and_writes() {
        let read = |text: &str| TimeText::Rfc3339.parse(text.as_bytes());
        assert_eq!(read("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(read("2023-11-14T22:13:20Z"), Some(1_700_000_000));
        assert_eq!(read("2023-11-14T22:13:20.123456789Z"), Some(1_700_000_000));
        assert_eq!(read("2023-11-14t22:13:20.5z"), Some(1_700_000_000));
        assert_eq!(read("2023-11-15T00:13:20+02:00"), Some(1_700_000_000));
        assert_eq!(read("2023-11-14T21:43:20-00:30"), Some(1_700_000_000));
        assert_eq!(read("2024-02-29T00:00:00Z"), Some(1_709_164_800));
        assert_eq!(read("1969-12-31T23:59:59Z"), Some(-1));
        for bad in [
            "2023-02-29T00:00:00Z",
            "2023-13-01T00:00:00Z",
            "2023-00-01T00:00:00Z",
            "2023-11-14T24:00:00Z",
            "2023-11-14T22:60:00Z",
            "2023-11-14T22:13:20",
            "2023-11-14T22:13:20.Z",
            "2023-11-14 22:13:20Z",
            "2023-11-14T22:13:20+2:00",
            "2023-11-14T22:13:20+24:00",
            "2023-11-14T22:13:20Zjunk",
            "+023-11-14T22:13:20Z",
            "2023-11-14T22:13:20é",
            "",
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
        for seconds in [0, 1_700_000_000, -1, 951_782_400, 4_102_444_799] {
            let text = TimeText::Rfc3339.write(seconds);
            assert_eq!(read(&text), Some(seconds), "{text}");
        }
        assert_eq!(
            TimeText::Rfc3339.write(1_700_000_000),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            TimeText::Millis.parse(b"1700000000999"),
            Some(1_700_000_000)
        );
        assert_eq!(TimeText::Millis.write(1_700_000_000), "1700000000000");
    }

    const H: HeaderName = HeaderName::from_static("webhook-timestamp");

    fn check_timestamp(
        text: &[u8],
        header: &HeaderName,
        now: SystemTime,
        tolerance: Duration,
    ) -> Result<i64, VerifyError> {
        check_time(text, TimeText::Seconds, header, now, tolerance)
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn seconds_parse_as_str_parse_does_for_digits() {
        for text in [
            "0",
            "1700000000",
            "-1",
            "-0",
            "0001700000000",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            // Either side of the 18 digits summed without checks.
            "999999999999999999",
            "-999999999999999999",
            "1000000000000000000",
            "-1000000000000000000",
            "0000000000000000001700000000",
        ] {
            assert_eq!(
                parse_seconds(text.as_bytes()),
                text.parse::<i64>().ok(),
                "{text}"
            );
        }
        for text in ["", "-", "+1", " 1", "1 ", "1.0", "1e9", "--1", "1-", "١٢"] {
            assert_eq!(parse_seconds(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn timestamps_within_tolerance_both_ways() {
        let tol = Duration::from_secs(300);
        assert_eq!(check_timestamp(b"1000", &H, at(1300), tol), Ok(1000));
        assert_eq!(check_timestamp(b"1300", &H, at(1000), tol), Ok(1300));
        assert_eq!(
            check_timestamp(b"999", &H, at(1300), tol)
                .unwrap_err()
                .kind(),
            VerifyErrorKind::TimestampTooOld
        );
        assert_eq!(
            check_timestamp(b"1301", &H, at(1000), tol)
                .unwrap_err()
                .kind(),
            VerifyErrorKind::TimestampTooNew
        );
    }

    #[test]
    fn malformed_timestamps() {
        let tol = Duration::from_secs(300);
        for text in [
            "",
            "-",
            "+1000",
            " 1000",
            "1e3",
            "10.5",
            "abc",
            "99999999999999999999",
        ] {
            assert_eq!(
                check_timestamp(text.as_bytes(), &H, at(1000), tol)
                    .unwrap_err()
                    .kind(),
                VerifyErrorKind::InvalidHeader,
                "{text:?}"
            );
        }
        assert_eq!(
            check_timestamp(b"-9223372036854775808", &H, at(1000), tol)
                .unwrap_err()
                .kind(),
            VerifyErrorKind::TimestampTooOld
        );
        assert_eq!(
            check_timestamp(b"9223372036854775807", &H, at(1000), Duration::MAX).map(|_| ()),
            Ok(())
        );
    }
}
