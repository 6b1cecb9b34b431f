//! Parsers for flag values written the way Metacontroller's Go binary takes them: Go durations
//! (`20s`, `1m30s`), Go booleans (`true`, `1`, `F`), zap log levels (`info`, `4`). Each returns a
//! message that says what was wrong; clap puts the flag's name in front of it.

use std::time::Duration;

use crate::client_limit::RateLimit;

/// A Go `time.Duration` (`20s`, `1m30s`, `30m`, `1.5h`, `0`).
pub fn go_duration(text: &str) -> Result<Duration, String> {
    crate::api::parse_go_duration(text).map_err(|e| {
        format!("{text:?} is not a duration ({e}); write it as Go does, e.g. 20s, 1m30s, 30m")
    })
}

/// A Go duration greater than zero (a period to repeat something on).
pub fn positive_go_duration(text: &str) -> Result<Duration, String> {
    match go_duration(text)? {
        d if d.is_zero() => Err("the interval must be greater than 0".to_owned()),
        d => Ok(d),
    }
}

/// A Go boolean, as `strconv.ParseBool` reads it.
pub fn go_bool(text: &str) -> Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "{text:?} is not a boolean (true, false, 1, 0, t, f); note that Go takes a boolean's value only as --flag=value"
        )),
    }
}

/// A Go integer (`strconv.Atoi`: optional sign, decimal digits).
fn go_int(text: &str) -> Result<i64, String> {
    text.parse::<i64>()
        .map_err(|_| format!("{text:?} is not an integer"))
}

/// A Go float64 (`strconv.ParseFloat`), finite.
fn go_float(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(format!("{text:?} is not a finite number")),
    }
}

/// `--workers`: at least one, or nothing would ever sync.
pub fn workers(text: &str) -> Result<usize, String> {
    match go_int(text)? {
        n if n < 1 => Err(
            "at least 1 worker per controller is needed, or no parent is ever synced".to_owned(),
        ),
        n => usize::try_from(n).map_err(|_| "too many workers".to_owned()),
    }
}

/// `--client-go-qps`. A negative rate means no limit, as in client-go (`rest.Config.QPS < 0`);
/// zero is refused: client-go would silently use 5, and "no requests at all" cannot work.
pub fn client_qps(text: &str) -> Result<f64, String> {
    match go_float(text)? {
        0.0 => Err(
            "a limit of 0 requests per second cannot work; give a positive rate, a negative one for no limit, or leave the flag out (no limit)".to_owned(),
        ),
        x => Ok(x),
    }
}

/// `--client-go-burst`: zero means client-go's default (10); negative cannot work.
pub fn client_burst(text: &str) -> Result<u32, String> {
    match go_int(text)? {
        0 => Ok(RateLimit::DEFAULT_BURST),
        n if n < 0 => Err(format!(
            "the burst must be at least 1 (0 means the default, {})",
            RateLimit::DEFAULT_BURST
        )),
        n => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
    }
}

/// `--events-qps`: checked as Metacontroller would (a float), then unused.
pub fn events_qps(text: &str) -> Result<f64, String> {
    go_float(text)
}

/// `--events-burst`: checked as Metacontroller would (an integer), then unused.
pub fn events_burst(text: &str) -> Result<i64, String> {
    go_int(text)
}

/// `--target-label-selector`: the API server's selector syntax, checked now rather than on every
/// watch. Empty means every controller.
pub fn label_selector(text: &str) -> Result<String, String> {
    crate::selector::text::validate_query(text)
        .map(|()| text.to_owned())
        .map_err(|e| format!("{text:?} is not a label selector: {e}"))
}

/// A zap log level as controller-runtime's `--zap-log-level` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZapLevel {
    Error,
    Warn,
    Info,
    /// Debug verbosity N ≥ 1 (`debug` is 1). Metacontroller logs API actions at 4, diffs at 5,
    /// hook bodies at 6 and discovery at 7.
    Debug(u8),
}

impl ZapLevel {
    /// The `tracing` filter for this level. Verbose levels apply to kubelambda's own logs only,
    /// so that `--zap-log-level=4` (in Metacontroller's production manifest) does not turn on
    /// the HTTP and TLS libraries' debug output: 1–4 → debug, 5 and up → trace.
    pub fn filter(self) -> &'static str {
        match self {
            ZapLevel::Error => "error",
            ZapLevel::Warn => "warn",
            ZapLevel::Info => "info",
            ZapLevel::Debug(1..=4) => "info,kubelambda=debug",
            ZapLevel::Debug(_) => "info,kubelambda=trace",
        }
    }
}

/// `--zap-log-level`: `debug`, `info`, `warn`, `error` (`dpanic`, `panic` and `fatal` log errors
/// only), or a verbosity N ≥ 0 (0 is info).
pub fn zap_level(text: &str) -> Result<ZapLevel, String> {
    match text.to_ascii_lowercase().as_str() {
        "debug" => return Ok(ZapLevel::Debug(1)),
        "info" => return Ok(ZapLevel::Info),
        "warn" => return Ok(ZapLevel::Warn),
        "error" | "dpanic" | "panic" | "fatal" => return Ok(ZapLevel::Error),
        _ => {}
    }
    match go_int(text) {
        Ok(0) => Ok(ZapLevel::Info),
        Ok(n) if n > 0 => Ok(ZapLevel::Debug(u8::try_from(n).unwrap_or(u8::MAX))),
        _ => Err(format!(
            "{text:?} is not a log level (debug, info, warn, error, or a verbosity 0, 1, 2, …: 4 logs API actions, 5 diffs, 6 hook bodies)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zap_levels_map_to_filters() {
        let filter = |t: &str| zap_level(t).map(ZapLevel::filter);
        assert_eq!(filter("error"), Ok("error"));
        assert_eq!(filter("panic"), Ok("error"));
        assert_eq!(filter("warn"), Ok("warn"));
        assert_eq!(filter("info"), Ok("info"));
        assert_eq!(filter("0"), Ok("info"));
        assert_eq!(filter("debug"), Ok("info,kubelambda=debug"));
        assert_eq!(filter("1"), Ok("info,kubelambda=debug"));
        assert_eq!(filter("4"), Ok("info,kubelambda=debug"));
        assert_eq!(filter("5"), Ok("info,kubelambda=trace"));
        assert_eq!(filter("6"), Ok("info,kubelambda=trace"));
        assert_eq!(filter("300"), Ok("info,kubelambda=trace"));
        assert!(zap_level("-1").is_err());
        assert!(zap_level("loud").is_err());
    }

    #[test]
    fn go_values() {
        assert_eq!(go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(go_duration("30m"), Ok(Duration::from_secs(1800)));
        assert!(go_duration("20").is_err());
        assert!(positive_go_duration("0").is_err());
        assert_eq!(go_bool("T"), Ok(true));
        assert_eq!(go_bool("0"), Ok(false));
        assert!(go_bool("yes").is_err());
        assert_eq!(client_qps("-1"), Ok(-1.0));
        assert_eq!(client_qps("0.5"), Ok(0.5));
        assert!(client_qps("0").is_err());
        assert!(client_qps("NaN").is_err());
        assert_eq!(client_burst("0"), Ok(10));
        assert!(client_burst("-3").is_err());
        assert_eq!(workers("50"), Ok(50));
        assert!(workers("0").is_err());
        assert!(workers("-2").is_err());
    }
}
