//! Go `strconv` parsing as go-yaml v2 uses it to resolve scalars.

/// Go `strconv.ParseUint(s, 0, 64)` on a string without underscores: `0x`/`0o`/`0b` prefixes
/// (either case, only with at least one more character), a leading `0` means octal.
pub(crate) fn parse_uint(s: &str) -> Option<u64> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let (base, digits) = if bytes[0] == b'0' {
        match bytes.get(1).map(u8::to_ascii_lowercase) {
            Some(b'b') if bytes.len() >= 3 => (2, &s[2..]),
            Some(b'o') if bytes.len() >= 3 => (8, &s[2..]),
            Some(b'x') if bytes.len() >= 3 => (16, &s[2..]),
            _ => (8, &s[1..]),
        }
    } else {
        (10, s)
    };
    let mut value: u64 = 0;
    for c in digits.chars() {
        let digit = c.to_digit(base)?;
        value = value
            .checked_mul(u64::from(base))?
            .checked_add(u64::from(digit))?;
    }
    Some(value)
}

/// Go `strconv.ParseInt(s, 0, 64)`: an optional sign, then [`parse_uint`] within `i64` range.
pub(crate) fn parse_int(s: &str) -> Option<i64> {
    let (negative, magnitude) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let magnitude = parse_uint(magnitude)?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// A decimal float that Go's `ParseFloat` accepts without a range error.
pub(crate) fn parse_float_finite(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|f| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_with_go_base_prefixes() {
        assert_eq!(parse_uint("17"), Some(17));
        assert_eq!(parse_uint("017"), Some(15));
        assert_eq!(parse_uint("0o17"), Some(15));
        assert_eq!(parse_uint("0X1f"), Some(31));
        assert_eq!(parse_uint("0b101"), Some(5));
        assert_eq!(parse_uint("0x"), None);
        assert_eq!(parse_uint("09"), None);
        assert_eq!(parse_uint(""), None);
        assert_eq!(parse_uint("18446744073709551616"), None);
        assert_eq!(parse_int("-0x10"), Some(-16));
        assert_eq!(parse_int("+7"), Some(7));
        assert_eq!(parse_int("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int("9223372036854775808"), None);
        assert_eq!(parse_float_finite("1e3"), Some(1000.0));
        assert_eq!(parse_float_finite("1e400"), None);
    }
}
