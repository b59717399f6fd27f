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

/// Parses a Unix timestamp in seconds and checks it lies within `tolerance` of `now`.
///
/// Only an optional `-` and ASCII digits are accepted: the signed text must be the number
/// itself, so `+17` or ` 17` are malformed rather than quietly normalised.
pub(crate) fn check_timestamp(
    text: &[u8],
    header: &HeaderName,
    now: SystemTime,
    tolerance: Duration,
) -> Result<i64, VerifyError> {
    let timestamp =
        parse_seconds(text).ok_or_else(|| VerifyError::invalid_header(header.clone()))?;
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

    const H: HeaderName = HeaderName::from_static("webhook-timestamp");

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
