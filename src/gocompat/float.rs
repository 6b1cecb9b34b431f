//! Go's float formatting: `encoding/json` (ES6 rules) and `strconv.FormatFloat(x, 'g', -1, 32|64)`,
//! with Go's round-half-to-even choice between equally short digit strings.

use std::fmt::Write as _;

/// A `float64` exactly as Go's `encoding/json` encodes it (ES6 number-to-string rules).
///
/// Shortest round-tripping digits; plain decimal (`'f'`) for `1e-6 <= |x| < 1e21` (so integral
/// values carry no decimal point: `3`, `-0`), otherwise exponent form (`'e'`) with Go's clean-up
/// of a single-digit negative exponent: `1e+21`, `1.5e-7`, `1e-10`.
///
/// `encoding/json` refuses NaN and ±Inf (`json: unsupported value`); JSON values cannot hold
/// them, and for direct callers this returns Go's `strconv` spelling (`NaN`, `+Inf`, `-Inf`).
pub fn format_float_go_json(x: f64) -> String {
    if !x.is_finite() {
        return go_non_finite(x).to_string();
    }
    let decimal = Decimal::shortest_f64(x);
    let abs = x.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let mut s = decimal.exponent_form();
        // Go's encoder turns "e-07" into "e-7" (only a single leading zero, only when negative).
        let len = s.len();
        if len >= 4 && s.as_bytes()[len - 4] == b'e' && &s[len - 3..len - 1] == "-0" {
            s.remove(len - 2);
        }
        s
    } else {
        decimal.fixed_form()
    }
}

/// `strconv.FormatFloat(x, 'g', -1, 64)`: shortest digits; for the shortest `'g'` format Go
/// decides with precision 6, so the exponent form (at least two exponent digits) is used when the
/// decimal exponent is `< -4` or `>= 6`: `1e+06`, `1.5e+20`, `1e-05`, but `123456`, `0.0001`.
/// go-yaml v2 prints floats this way.
pub(crate) fn format_float_go_g64(x: f64) -> String {
    if !x.is_finite() {
        return go_non_finite(x).to_string();
    }
    Decimal::shortest_f64(x).g_form()
}

/// `strconv.FormatFloat(x, 'g', -1, 32)`: like [`format_float_go_g64`] but with the shortest
/// digits that identify the value as a `float32`. sigs.k8s.io/yaml formats float map keys so.
pub(crate) fn format_float_go_g32(x: f64) -> String {
    if !x.is_finite() {
        return go_non_finite(x).to_string();
    }
    // Go converts the float64 to float32 (round to nearest) before formatting: `as` does that.
    let y = x as f32;
    if !y.is_finite() {
        return go_non_finite(f64::from(y)).to_string();
    }
    Decimal::shortest_f32(y).g_form()
}

fn go_non_finite(x: f64) -> &'static str {
    if x.is_nan() {
        "NaN"
    } else if x > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
}

/// A finite float as `±0.d1d2…dn × 10^(exp+1)`, i.e. `d1.d2…dn × 10^exp`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    /// Significant digits without leading or trailing zeros; `"0"` for zero.
    digits: String,
    /// Decimal exponent of the first digit.
    exp: i32,
}

impl Decimal {
    /// Go's shortest digits for a `float64`.
    fn shortest_f64(x: f64) -> Self {
        Self::shortest(x, &format!("{x:e}"), |text| {
            text.parse::<f64>().ok() == Some(x)
        })
    }

    /// Go's shortest digits for a `float32`.
    fn shortest_f32(y: f32) -> Self {
        Self::shortest(f64::from(y), &format!("{y:e}"), |text| {
            text.parse::<f32>().ok() == Some(y)
        })
    }

    /// The fewest significant digits that read back as the same float and, among those, the
    /// closest to its exact value. Rust's shortest formatting (`repr`) agrees with Go except when
    /// the exact value lies exactly halfway between two such candidates: Rust rounds the tie up,
    /// Go's Ryu implementation rounds it to the even digit (`853951514273350.25` prints as
    /// `8.539515142733502e+14` in Go). Such a tie means the exact value has exactly one digit more
    /// than the shortest form, ending in 5, which exact formatting reveals.
    fn shortest(value: f64, repr: &str, round_trips: impl Fn(&str) -> bool) -> Self {
        let decimal = Self::parse(repr);
        let n = decimal.digits.len();
        if decimal.digits == "0" {
            return decimal;
        }
        // Cheap filter: n + 1 correctly rounded digits end in 5 whenever there is a tie.
        let probe = Self::parse(&format!("{:.*e}", n, value.abs()));
        if !probe.digits.ends_with('5') {
            return decimal;
        }
        // A float64 has at most 767 significant decimal digits, so this is its exact value.
        let exact = Self::parse(&format!("{:.767e}", value.abs()));
        let significant = exact.digits.trim_end_matches('0');
        if significant.len() != n + 1 || !significant.ends_with('5') {
            return decimal;
        }
        let down = &significant[..n];
        let even = if down.ends_with(['0', '2', '4', '6', '8']) {
            down.to_string()
        } else {
            // Rounding up an odd last digit; a 9 would carry, and then the shorter result
            // would already have been the shortest form.
            let mut up = down.as_bytes().to_vec();
            match up.last_mut() {
                Some(last) if *last < b'9' => *last += 1,
                _ => return decimal,
            }
            String::from_utf8(up).unwrap_or_default()
        };
        let candidate = Self {
            negative: decimal.negative,
            digits: {
                let trimmed = even.trim_end_matches('0');
                if trimmed.is_empty() { "0" } else { trimmed }.to_string()
            },
            exp: exact.exp,
        };
        if candidate != decimal && round_trips(&candidate.exponent_form()) {
            candidate
        } else {
            decimal
        }
    }

    /// Splits Rust's `{:e}`/`{:.Ne}` output (`-1.2345e-7`, `1e21`, `0e0`); trailing zeros of the
    /// fixed-precision form are kept.
    fn parse(repr: &str) -> Self {
        let (negative, rest) = match repr.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, repr),
        };
        let (mantissa, exp) = rest.split_once('e').unwrap_or((rest, "0"));
        Self {
            negative,
            digits: mantissa.chars().filter(char::is_ascii_digit).collect(),
            exp: exp.parse().unwrap_or(0),
        }
    }

    /// Go's `'e'` format with shortest precision: `d[.ddd]e±XX`, exponent at least two digits.
    fn exponent_form(&self) -> String {
        let mut s = String::with_capacity(self.digits.len() + 8);
        if self.negative {
            s.push('-');
        }
        let (first, rest) = self.digits.split_at(1.min(self.digits.len()));
        s.push_str(if first.is_empty() { "0" } else { first });
        if !rest.is_empty() {
            s.push('.');
            s.push_str(rest);
        }
        s.push('e');
        s.push(if self.exp < 0 { '-' } else { '+' });
        let _ = write!(s, "{:02}", self.exp.unsigned_abs());
        s
    }

    /// Go's `'f'` format with shortest precision: no exponent, no trailing zeros after the point.
    fn fixed_form(&self) -> String {
        let mut s = String::with_capacity(self.digits.len() + 8);
        if self.negative {
            s.push('-');
        }
        if self.digits == "0" {
            s.push('0');
            return s;
        }
        let len = self.digits.len();
        if self.exp < 0 {
            s.push_str("0.");
            s.extend(std::iter::repeat_n(
                '0',
                (-self.exp - 1).unsigned_abs() as usize,
            ));
            s.push_str(&self.digits);
        } else {
            let integral = self.exp.unsigned_abs() as usize + 1;
            if len <= integral {
                s.push_str(&self.digits);
                s.extend(std::iter::repeat_n('0', integral - len));
            } else {
                s.push_str(&self.digits[..integral]);
                s.push('.');
                s.push_str(&self.digits[integral..]);
            }
        }
        s
    }

    /// Go's `'g'` format with shortest precision (exponent form below 1e-4 and from 1e6 on).
    fn g_form(&self) -> String {
        if self.digits != "0" && !(-4..6).contains(&self.exp) {
            self.exponent_form()
        } else {
            self.fixed_form()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_formatting_matches_encoding_json() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (3.0, "3"),
            (-3.0, "-3"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (1e-10, "1e-10"),
            (1.2345e-300, "1.2345e-300"),
            (123456789.0, "123456789"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (1e100, "1e+100"),
            (-2.5e22, "-2.5e+22"),
            (9007199254740993.0, "9007199254740992"),
            (0.000123, "0.000123"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ];
        for (x, want) in cases {
            assert_eq!(format_float_go_json(*x), *want, "formatting {x:e}");
        }
        assert_eq!(format_float_go_json(f64::NAN), "NaN");
    }

    #[test]
    fn float_ties_round_to_even_like_go() {
        // Exact values ending in ...25 / ...75 (written as sums: the literals themselves would be
        // "excessively precise"): two shortest candidates are equally close.
        let tie = 853_951_514_273_350.0 + 0.25;
        assert_eq!(format_float_go_json(tie), "853951514273350.2");
        assert_eq!(format_float_go_json(tie + 0.5), "853951514273350.8");
        assert_eq!(
            format_float_go_json(1_817_587_900_046_491.0 + 0.25),
            "1817587900046491.2"
        );
        assert_eq!(
            format_float_go_json(-811_291_951_910_112.0 - 0.25),
            "-811291951910112.2"
        );
        assert_eq!(format_float_go_g64(tie), "8.539515142733502e+14");
        assert_eq!(format_float_go_g64(1e23), "1e+23");
        assert_eq!(format_float_go_g64(5e-324), "5e-324");
        assert_eq!(format_float_go_g32(33554434.0), "3.3554432e+07");
        assert_eq!(format_float_go_g32(3.4028235e38), "3.4028235e+38");
        assert_eq!(format_float_go_g32(1e-45), "1e-45");
        assert_eq!(format_float_go_json(f64::INFINITY), "+Inf");
    }

    #[test]
    fn float_g_formatting_matches_strconv() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (1.5, "1.5"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1234567.5, "1.2345675e+06"),
            (1e20, "1e+20"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-1.5e-7, "-1.5e-07"),
            (1e100, "1e+100"),
        ];
        for (x, want) in cases {
            assert_eq!(format_float_go_g64(*x), *want, "formatting {x:e}");
        }
        assert_eq!(format_float_go_g32(std::f64::consts::PI), "3.1415927");
        assert_eq!(format_float_go_g32(1e6), "1e+06");
        assert_eq!(format_float_go_g32(0.1), "0.1");
        assert_eq!(format_float_go_g32(1e40), "+Inf");
    }
}
