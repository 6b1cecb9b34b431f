//! Go's `time.ParseDuration`, the syntax Kubernetes uses for `metav1.Duration` fields such as
//! `webhook.timeout` and kubelambda's duration flags.

use std::time::Duration;

/// Why a duration string was rejected by [`parse_go_duration`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The input was empty.
    #[error("empty duration")]
    Empty,
    /// A number was expected at the given byte offset.
    #[error("expected a number at byte {0}")]
    ExpectedNumber(usize),
    /// A number had no unit after it (only "0" may omit the unit).
    #[error("missing unit after number at byte {0} (units: ns, us, ms, s, m, h)")]
    MissingUnit(usize),
    /// The unit is not one of Go's.
    #[error("unknown unit {0:?} (units: ns, us, ms, s, m, h)")]
    UnknownUnit(String),
    /// The value does not fit in Go's range (about 292 years).
    #[error("duration out of range")]
    Overflow,
    /// A negative duration where only non-negative ones make sense.
    #[error("negative duration")]
    Negative,
}

/// Largest duration Go can represent: i64::MAX nanoseconds.
const GO_MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go `time.Duration` string ("10s", "500ms", "1m30s", "1.5s", "2h45m", "0"), the
/// format Kubernetes uses for `metav1.Duration` fields such as `webhook.timeout`. Negative
/// durations are rejected here; `Webhook::timeout` maps them to the default instead.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    match parse_signed_duration(input)? {
        (true, duration) if !duration.is_zero() => Err(DurationError::Negative),
        (_, duration) => Ok(duration),
    }
}

/// Go's `time.ParseDuration` grammar: `[+-]` then one or more `<decimal><unit>` terms.
/// Returns (negative, magnitude).
pub(crate) fn parse_signed_duration(input: &str) -> Result<(bool, Duration), DurationError> {
    let (negative, body, mut offset) = match input.as_bytes().first() {
        None => return Err(DurationError::Empty),
        Some(b'-') => (true, &input[1..], 1),
        Some(b'+') => (false, &input[1..], 1),
        Some(_) => (false, input, 0),
    };
    if body == "0" {
        return Ok((negative, Duration::ZERO));
    }
    if body.is_empty() {
        return Err(DurationError::ExpectedNumber(offset));
    }
    let mut rest = body;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..digits_end];
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        // Go accepts "1.", ".5" but not "." or a second dot.
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
            return Err(DurationError::ExpectedNumber(offset));
        }
        let after_number = &rest[digits_end..];
        let unit_end = after_number
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after_number.len());
        let unit = &after_number[..unit_end];
        let nanos_per_unit: u128 = match unit {
            "" => return Err(DurationError::MissingUnit(offset + digits_end)),
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            other => return Err(DurationError::UnknownUnit(other.to_string())),
        };
        let whole_value: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| DurationError::Overflow)?
        };
        let mut term = whole_value
            .checked_mul(nanos_per_unit)
            .ok_or(DurationError::Overflow)?;
        // Fractional digits beyond nanosecond precision are dropped, as Go does.
        let mut scale = nanos_per_unit;
        for digit in fraction.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            term += u128::from(digit - b'0') * scale;
        }
        total = total.checked_add(term).ok_or(DurationError::Overflow)?;
        if total > GO_MAX_NANOS {
            return Err(DurationError::Overflow);
        }
        offset += digits_end + unit_end;
        rest = &after_number[unit_end..];
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| DurationError::Overflow)?;
    let nanos = u32::try_from(total % 1_000_000_000).map_err(|_| DurationError::Overflow)?;
    Ok((negative, Duration::new(secs, nanos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let cases = [
            ("10s", Duration::from_secs(10)),
            ("500ms", Duration::from_millis(500)),
            ("1m30s", Duration::from_secs(90)),
            ("1.5s", Duration::from_millis(1500)),
            ("2h45m", Duration::from_secs(2 * 3600 + 45 * 60)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("+5s", Duration::from_secs(5)),
            ("1.s", Duration::from_secs(1)),
            (".5m", Duration::from_secs(30)),
            ("100us", Duration::from_micros(100)),
            ("100\u{b5}s", Duration::from_micros(100)),
            ("7ns", Duration::from_nanos(7)),
            ("1h1m1s1ms1us1ns", Duration::new(3661, 1_001_001)),
            ("0.0000000019s", Duration::from_nanos(1)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_go_duration(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn go_duration_errors_are_clear() {
        let cases = [
            ("", "empty duration"),
            ("s", "expected a number at byte 0"),
            ("-", "expected a number at byte 1"),
            (
                "10",
                "missing unit after number at byte 2 (units: ns, us, ms, s, m, h)",
            ),
            (
                "1m30",
                "missing unit after number at byte 4 (units: ns, us, ms, s, m, h)",
            ),
            ("10x", "unknown unit \"x\" (units: ns, us, ms, s, m, h)"),
            ("10 s", "unknown unit \" s\" (units: ns, us, ms, s, m, h)"),
            ("1d", "unknown unit \"d\" (units: ns, us, ms, s, m, h)"),
            ("1.2.3s", "expected a number at byte 0"),
            ("1s.", "expected a number at byte 2"),
            ("-3s", "negative duration"),
            ("3000000h", "duration out of range"),
            (
                "99999999999999999999999999999999999999999s",
                "duration out of range",
            ),
        ];
        for (text, expected) in cases {
            match parse_go_duration(text) {
                Ok(duration) => panic!("{text:?} parsed as {duration:?}"),
                Err(error) => assert_eq!(error.to_string(), expected, "{text:?}"),
            }
        }
        // The largest Go duration is accepted.
        assert_eq!(
            parse_go_duration("2562047h47m16.854775807s"),
            Ok(Duration::new(9_223_372_036, 854_775_807))
        );
    }
}
