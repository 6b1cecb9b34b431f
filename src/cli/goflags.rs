//! Rewrites a command line written for Metacontroller's Go binary into one clap reads the same
//! way, so that a Deployment that swaps only its image keeps its `args`:
//!
//! - no subcommand, but flags (`kubelambda --zap-log-level=4 --discovery-interval=20s`) means
//!   `run`;
//! - Go's single-dash long flags (`-zap-log-level=4`, `-workers 5`) become `--…`;
//! - the flags Metacontroller itself removed (the klog flags such as `-v`, `--debug-addr`,
//!   `--client-config-path`) stop with an error that says what replaced them, rather than clap's
//!   generic "unexpected argument".
//!
//! Only `run` (explicit or implied) is rewritten; the other subcommands are kubelambda's own.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;

/// A flag the user gave that Metacontroller no longer takes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgvError {
    #[error(
        "{flag}: this klog flag was removed from Metacontroller in v2.0 and kubelambda does not take it either; set the log level with --zap-log-level=N (4 logs API actions, 5 diffs, 6 hook bodies) or --log-level"
    )]
    RemovedKlog { flag: String },
    #[error(
        "{flag}: Metacontroller replaced this flag with {replacement} in v2.0; use {replacement}"
    )]
    Replaced {
        flag: String,
        replacement: &'static str,
    },
}

/// klog's flags, which Metacontroller accepted before v2.0.
const KLOG_FLAGS: &[&str] = &[
    "v",
    "vmodule",
    "logtostderr",
    "alsologtostderr",
    "stderrthreshold",
    "log_dir",
    "log_file",
    "log_file_max_size",
    "log_backtrace_at",
    "skip_headers",
    "skip_log_headers",
    "add_dir_header",
    "one_output",
];

/// Metacontroller flags renamed in v2.0, and their replacements.
const REPLACED_FLAGS: &[(&str, &str)] = &[
    ("debug-addr", "--metrics-address"),
    ("client-config-path", "--kubeconfig"),
];

/// The subcommand that Metacontroller's flags belong to.
const RUN: &str = "run";

/// What the rewriting needs to know about the command line's flags.
#[derive(Clone, Debug, Default)]
pub struct FlagTable {
    /// Long names (and aliases) of `run`'s flags and the global ones → whether the flag takes its
    /// value as the next argument (`--workers 5`) rather than only as `--flag=value`.
    long: HashMap<String, bool>,
    /// One-letter flags of `run` → whether they take a value (`-J dir`).
    short: HashMap<char, bool>,
    subcommands: HashSet<String>,
}

impl FlagTable {
    /// Reads the flags of `root`'s `run` subcommand and `root`'s own (global) flags.
    pub fn from_command(root: &clap::Command) -> Self {
        let mut root = root.clone();
        root.build();
        let mut table = FlagTable::default();
        let mut add = |arg: &clap::Arg| {
            let separate = arg.get_action().takes_values() && !arg.is_require_equals_set();
            if let Some(long) = arg.get_long() {
                table.long.insert(long.to_owned(), separate);
            }
            for alias in arg.get_all_aliases().unwrap_or_default() {
                table.long.insert(alias.to_owned(), separate);
            }
            if let Some(short) = arg.get_short() {
                table.short.insert(short, separate);
            }
        };
        for arg in root.get_arguments() {
            add(arg);
        }
        for sub in root.get_subcommands() {
            if sub.get_name() == RUN {
                for arg in sub.get_arguments() {
                    add(arg);
                }
            }
        }
        table.subcommands = root
            .get_subcommands()
            .map(|s| s.get_name().to_owned())
            .chain(["help".to_owned()])
            .collect();
        table
    }

    /// Whether `-name`/`--name` (without `=value`) consumes the next argument as its value.
    fn takes_next(&self, dashes: usize, name: &str) -> bool {
        if let Some(&separate) = self.long.get(name) {
            return separate;
        }
        let mut chars = name.chars();
        match (dashes, chars.next(), chars.next()) {
            (1, Some(c), None) => self.short.get(&c).copied().unwrap_or(false),
            _ => false,
        }
    }
}

/// A flag argument split up: `--name=value` → (2, "name", true).
fn split_flag(arg: &str) -> Option<(usize, &str, bool)> {
    let body = arg.strip_prefix('-')?;
    let (dashes, body) = match body.strip_prefix('-') {
        Some(rest) => (2, rest),
        None => (1, body),
    };
    if body.is_empty() {
        return None;
    }
    match body.split_once('=') {
        Some((name, _)) => Some((dashes, name, true)),
        None => Some((dashes, body, false)),
    }
}

/// Help and version requests, which keep their meaning at the top level.
fn is_help_or_version(arg: &str) -> bool {
    matches!(arg, "-h" | "--help" | "-help" | "-V" | "--version")
}

/// Where the subcommand is: the first argument that is neither a flag nor a flag's value.
/// `None` when there is none before `--` or the end, or when that argument is not a subcommand.
fn find_subcommand(args: &[OsString], table: &FlagTable) -> Option<usize> {
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].to_str()?;
        if arg == "--" {
            return None;
        }
        match split_flag(arg) {
            Some((dashes, name, false)) if table.takes_next(dashes, name) => i += 2,
            Some(_) => i += 1,
            None => return table.subcommands.contains(arg).then_some(i),
        }
    }
    None
}

/// Rewrites `argv` (program name first) as described in the module docs.
pub fn normalise(
    argv: impl IntoIterator<Item = OsString>,
    table: &FlagTable,
) -> Result<Vec<OsString>, ArgvError> {
    let mut args: Vec<OsString> = argv.into_iter().collect();
    if args.len() < 2 {
        return Ok(args);
    }
    match find_subcommand(&args[1..], table) {
        Some(i) if args[1 + i] == RUN => {}
        Some(_) => return Ok(args),
        None => {
            let first = args[1].to_str().unwrap_or("");
            if !first.starts_with('-') || is_help_or_version(first) {
                if first == "-help" {
                    args[1] = "--help".into();
                }
                return Ok(args);
            }
            args.insert(1, RUN.into());
        }
    }
    rewrite_go_flags(&mut args[1..], table)?;
    Ok(args)
}

/// Turns Go's `-name` into `--name` and refuses removed flags, up to `--`.
fn rewrite_go_flags(args: &mut [OsString], table: &FlagTable) -> Result<(), ArgvError> {
    let mut i = 0;
    while i < args.len() {
        let Some(arg) = args[i].to_str() else {
            i += 1;
            continue;
        };
        if arg == "--" {
            break;
        }
        let Some((dashes, name, has_value)) = split_flag(arg) else {
            i += 1;
            continue;
        };
        if KLOG_FLAGS.contains(&name) {
            return Err(ArgvError::RemovedKlog {
                flag: format!("{}{name}", "-".repeat(dashes)),
            });
        }
        if let Some((_, replacement)) = REPLACED_FLAGS.iter().find(|(old, _)| *old == name) {
            return Err(ArgvError::Replaced {
                flag: format!("{}{name}", "-".repeat(dashes)),
                replacement,
            });
        }
        let skip_value = !has_value && table.takes_next(dashes, name);
        // One dash and a long name is Go's form. A name that is not a long flag either, and does
        // not start with one of `run`'s short flags (clap's `-Jdir`), is made long too, so that
        // clap reports it as `--name` rather than as a cluster of one-letter flags.
        let first_is_short = name
            .chars()
            .next()
            .is_some_and(|c| table.short.contains_key(&c));
        if dashes == 1
            && name.chars().count() > 1
            && (table.long.contains_key(name) || !first_is_short)
        {
            args[i] = format!("-{arg}").into();
        }
        i += if skip_value { 2 } else { 1 };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> FlagTable {
        use clap::{Arg, ArgAction, Command};
        let root = Command::new("kubelambda")
            .arg(Arg::new("log-level").long("log-level").global(true))
            .subcommand(
                Command::new("run")
                    .arg(Arg::new("workers").long("workers"))
                    .arg(
                        Arg::new("zap-devel")
                            .long("zap-devel")
                            .num_args(0..=1)
                            .require_equals(true),
                    )
                    .arg(
                        Arg::new("field-manager")
                            .long("field-manager")
                            .visible_alias("apply-strategy-ssa-field-manager"),
                    )
                    .arg(Arg::new("jpath").short('J').action(ArgAction::Append)),
            )
            .subcommand(Command::new("crds"));
        FlagTable::from_command(&root)
    }

    fn norm(args: &[&str]) -> Result<Vec<String>, ArgvError> {
        let argv = std::iter::once("kubelambda")
            .chain(args.iter().copied())
            .map(OsString::from);
        normalise(argv, &table()).map(|v| {
            v.into_iter()
                .skip(1)
                .map(|s| s.into_string().expect("utf-8"))
                .collect()
        })
    }

    #[test]
    fn flags_without_a_subcommand_mean_run() {
        assert_eq!(norm(&["--workers=5"]).unwrap(), ["run", "--workers=5"]);
        assert_eq!(
            norm(&["--workers", "5"]).unwrap(),
            ["run", "--workers", "5"]
        );
        assert_eq!(
            norm(&["--log-level", "debug"]).unwrap(),
            ["run", "--log-level", "debug"]
        );
        // A flag's value that happens to be a subcommand's name is still a value.
        assert_eq!(
            norm(&["--workers", "crds"]).unwrap(),
            ["run", "--workers", "crds"]
        );
    }

    #[test]
    fn subcommands_help_and_version_are_left_alone() {
        assert_eq!(norm(&["crds"]).unwrap(), ["crds"]);
        assert_eq!(
            norm(&["--log-level", "debug", "crds"]).unwrap(),
            ["--log-level", "debug", "crds"]
        );
        assert_eq!(norm(&["--help"]).unwrap(), ["--help"]);
        assert_eq!(norm(&["-help"]).unwrap(), ["--help"]);
        assert_eq!(norm(&["-V"]).unwrap(), ["-V"]);
        assert!(norm(&[]).unwrap().is_empty());
        // Another subcommand's arguments are not Go's: `-l` stays as it is.
        assert_eq!(norm(&["crds", "-workers"]).unwrap(), ["crds", "-workers"]);
    }

    #[test]
    fn go_single_dash_flags_become_double_dash() {
        assert_eq!(
            norm(&[
                "-workers=5",
                "-log-level",
                "info",
                "-apply-strategy-ssa-field-manager",
                "m"
            ])
            .unwrap(),
            [
                "run",
                "--workers=5",
                "--log-level",
                "info",
                "--apply-strategy-ssa-field-manager",
                "m"
            ]
        );
        assert_eq!(
            norm(&["run", "-zap-devel", "-J", "-workers", "-Jdir"]).unwrap(),
            ["run", "--zap-devel", "-J", "-workers", "-Jdir"],
            "-J takes the next argument as its value, even one that looks like a flag"
        );
        assert_eq!(
            norm(&["run", "-unknown-thing"]).unwrap(),
            ["run", "--unknown-thing"]
        );
        // Nothing after `--` is touched.
        assert_eq!(
            norm(&["run", "--", "-workers"]).unwrap(),
            ["run", "--", "-workers"]
        );
    }

    #[test]
    fn removed_flags_say_what_replaced_them() {
        assert_eq!(
            norm(&["-v=4"]),
            Err(ArgvError::RemovedKlog { flag: "-v".into() })
        );
        assert_eq!(
            norm(&["run", "--logtostderr"]),
            Err(ArgvError::RemovedKlog {
                flag: "--logtostderr".into()
            })
        );
        assert_eq!(
            norm(&["--debug-addr=:9999"]),
            Err(ArgvError::Replaced {
                flag: "--debug-addr".into(),
                replacement: "--metrics-address"
            })
        );
        let message = norm(&["-client-config-path", "x"]).unwrap_err().to_string();
        assert_eq!(
            message,
            "-client-config-path: Metacontroller replaced this flag with --kubeconfig in v2.0; use --kubeconfig"
        );
    }
}
