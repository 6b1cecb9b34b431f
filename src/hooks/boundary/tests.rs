//! The import boundary's rules, alone and through the Jsonnet evaluator.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use super::*;
use crate::hooks::eval::Evaluator;
use crate::hooks::jsonnet::JsonnetOptions;
use crate::hooks::{EvalError, HookSource, Limits};

/// A temporary tree: `hooks/` (a hook dir), `lib/` (a -J dir), `outside/secret.txt`.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["hooks", "lib", "outside"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
        }
        std::fs::write(dir.path().join("outside/secret.txt"), "secret").expect("write");
        std::fs::write(dir.path().join("lib/lib.libsonnet"), "{ v: 'lib' }").expect("write");
        Self { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        // Real paths, so expectations compare equal whatever /tmp is.
        std::fs::canonicalize(self.dir.path())
            .expect("canonical tempdir")
            .join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn roots(&self) -> ImportRoots {
        ImportRoots::for_file(&self.path("hooks/sync.jsonnet"), &[], &[self.path("lib")])
    }
}

#[test]
fn lexical_folding_never_climbs_above_the_root() {
    assert_eq!(
        absolute_lexical(Path::new("/a/./b/../c")),
        PathBuf::from("/a/c")
    );
    assert_eq!(
        absolute_lexical(Path::new("/../../etc/hostname")),
        PathBuf::from("/etc/hostname")
    );
    assert!(absolute_lexical(Path::new("rel/x")).is_absolute());
}

#[test]
fn an_absolute_path_outside_the_roots_is_refused_naming_path_and_roots() {
    let tree = Tree::new();
    let roots = tree.roots();
    let err = roots
        .check(Path::new("/etc/hostname"), Path::new("/etc/hostname"))
        .expect_err("refused");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "import \"/etc/hostname\": /etc/hostname is outside the hook's import roots (hook dir: "
        ),
        "{text}"
    );
    assert!(
        text.contains(&tree.path("hooks").display().to_string()),
        "{text}"
    );
    assert!(
        text.contains(&format!("-J: {}", tree.path("lib").display())),
        "{text}"
    );
}

#[test]
fn dot_dot_out_of_the_roots_is_refused_before_the_file_system_is_asked() {
    let tree = Tree::new();
    let roots = tree.roots();
    let import = Path::new("../outside/secret.txt");
    let err = roots
        .check(import, &tree.path("hooks").join(import))
        .expect_err("refused");
    assert!(
        matches!(&err, BoundaryError::Outside { resolved, .. } if *resolved == tree.path("outside/secret.txt").display().to_string()),
        "{err}"
    );
    // A file that does not exist outside gets the same answer: no existence oracle.
    let err = roots
        .check(Path::new("../nope"), &tree.path("hooks/../nope"))
        .expect_err("refused");
    assert!(matches!(err, BoundaryError::Outside { .. }), "{err}");
}

#[test]
fn dot_dot_that_stays_inside_another_root_is_allowed() {
    let tree = Tree::new();
    let found = tree
        .roots()
        .check(
            Path::new("../lib/lib.libsonnet"),
            &tree.path("hooks/../lib/lib.libsonnet"),
        )
        .expect("inside -J");
    assert_eq!(found, Some(tree.path("lib/lib.libsonnet")));
}

#[test]
fn proc_sys_and_dev_are_refused_even_under_a_root_of_slash() {
    let roots = ImportRoots::inline(&[], &[PathBuf::from("/")]);
    for path in ["/proc/self/environ", "/sys/kernel/hostname", "/dev/zero"] {
        let err = roots
            .check(Path::new(path), Path::new(path))
            .expect_err(path);
        assert!(
            err.to_string().contains("which hooks may never read"),
            "{err}"
        );
    }
    // `-J /` itself still works for everything else.
    assert!(
        roots
            .check(Path::new("/etc/hostname"), Path::new("/etc/hostname"))
            .is_ok()
    );
}

#[test]
fn a_symlink_out_of_the_roots_is_refused_and_one_inside_is_followed() {
    let tree = Tree::new();
    symlink(tree.path("outside/secret.txt"), tree.path("hooks/out.txt")).expect("symlink");
    symlink(
        tree.path("lib/lib.libsonnet"),
        tree.path("hooks/in.libsonnet"),
    )
    .expect("symlink");
    let roots = tree.roots();
    let err = roots
        .check(Path::new("out.txt"), &tree.path("hooks/out.txt"))
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        format!(
            "import \"out.txt\": {} is a symlink to {}, outside the hook's import roots ({})",
            tree.path("hooks/out.txt").display(),
            tree.path("outside/secret.txt").display(),
            roots.describe()
        )
    );
    let found = roots
        .check(Path::new("in.libsonnet"), &tree.path("hooks/in.libsonnet"))
        .expect("inside");
    assert_eq!(found, Some(tree.path("lib/lib.libsonnet")));
    // A link into /proc is refused as /proc.
    symlink("/proc/self/environ", tree.path("hooks/env")).expect("symlink");
    let err = roots
        .check(Path::new("env"), &tree.path("hooks/env"))
        .expect_err("refused");
    assert!(
        matches!(err, BoundaryError::Denied { tree: "/proc", .. }),
        "{err}"
    );
}

#[test]
fn a_mounted_configmap_layout_resolves_through_its_data_links() {
    // kubelet's layout: hooks/sync.jsonnet -> ..data/sync.jsonnet, ..data -> ..2024_01
    let tree = Tree::new();
    std::fs::create_dir(tree.path("hooks/..2024_01")).expect("mkdir");
    tree.write("hooks/..2024_01/lib.libsonnet", "{}");
    symlink("..2024_01", tree.path("hooks/..data")).expect("symlink");
    symlink("..data/lib.libsonnet", tree.path("hooks/lib.libsonnet")).expect("symlink");
    let found = tree
        .roots()
        .check(
            Path::new("lib.libsonnet"),
            &tree.path("hooks/lib.libsonnet"),
        )
        .expect("inside");
    assert_eq!(found, Some(tree.path("hooks/..2024_01/lib.libsonnet")));
}

#[test]
fn a_root_that_is_a_symlink_matches_by_either_name() {
    let tree = Tree::new();
    symlink(tree.path("lib"), tree.path("liblink")).expect("symlink");
    let roots = ImportRoots::inline(&[tree.path("liblink")], &[]);
    let by_link = tree.path("liblink/lib.libsonnet");
    assert_eq!(
        roots.check(&by_link, &by_link).expect("inside"),
        Some(tree.path("lib/lib.libsonnet"))
    );
    assert_eq!(
        roots
            .check(Path::new("missing"), &tree.path("liblink/missing"))
            .expect("inside, missing"),
        None
    );
}

#[test]
fn inline_hooks_have_no_directory_of_their_own() {
    let roots = ImportRoots::inline(&[], &[]);
    assert_eq!(
        roots.describe(),
        "hook dir: none (inline hook); jpath: none; -J: none; and the bundled library"
    );
    let cwd_file = std::env::current_dir().expect("cwd").join("Cargo.toml");
    assert!(roots.check(Path::new("Cargo.toml"), &cwd_file).is_err());
}

#[test]
fn spec_paths_must_lie_in_the_operators_hook_dirs() {
    let tree = Tree::new();
    let none = HookDirs::default();
    let err = none
        .confine("/hooks/sync.jsonnet", "spec.hooks.sync.jsonnet.file")
        .expect_err("no --hook-dir");
    assert_eq!(
        err.to_string(),
        "spec.hooks.sync.jsonnet.file: /hooks/sync.jsonnet is outside the directories hook files may come from (none: start kubelambda run with --hook-dir DIR to allow `file` and `jpath` in controller specs)"
    );

    let dirs = HookDirs::new(&[tree.path("hooks")]);
    let inside = tree.path("hooks/sync.jsonnet");
    assert_eq!(
        dirs.confine(&inside.display().to_string(), "f"),
        Ok(inside.clone())
    );
    let climbing = format!("{}/../outside/secret.txt", tree.path("hooks").display());
    let err = dirs
        .confine(&climbing, "spec.hooks.sync.jsonnet.jpath[0]")
        .expect_err("..");
    assert!(
        err.to_string()
            .contains(&format!("(--hook-dir {})", tree.path("hooks").display())),
        "{err}"
    );
    symlink(tree.path("outside"), tree.path("hooks/escape")).expect("symlink");
    assert!(
        dirs.confine(&tree.path("hooks/escape").display().to_string(), "f")
            .is_err()
    );
    assert!(
        HookDirs::new(&[PathBuf::from("/")])
            .confine("/proc/1/environ", "f")
            .is_err()
    );
    // The path keeps its symlinks: a ConfigMap update swaps the link, and the hook follows it.
    symlink(
        tree.path("hooks/sync.jsonnet"),
        tree.path("hooks/link.jsonnet"),
    )
    .expect("symlink");
    tree.write("hooks/sync.jsonnet", "{}");
    assert_eq!(
        dirs.confine(&tree.path("hooks/link.jsonnet").display().to_string(), "f"),
        Ok(tree.path("hooks/link.jsonnet"))
    );
}

fn evaluate(source: &HookSource, global: &[PathBuf]) -> Result<String, EvalError> {
    let options = JsonnetOptions {
        jpath: global.to_vec(),
        ..Default::default()
    };
    Evaluator::new(options, &Limits::default()).evaluate(source, b"{}")
}

fn hook_error(result: Result<String, EvalError>) -> String {
    match result {
        Err(EvalError::Hook(text)) => text,
        other => panic!("expected a hook error, got {other:?}"),
    }
}

#[test]
fn the_evaluator_refuses_every_escape_from_a_file_hook() {
    let tree = Tree::new();
    symlink(tree.path("outside/secret.txt"), tree.path("hooks/link.txt")).expect("symlink");
    let cases = [
        (
            "importstr '/etc/hostname'",
            "/etc/hostname is outside the hook's import roots",
        ),
        (
            "importstr '../outside/secret.txt'",
            "secret.txt is outside the hook's import roots",
        ),
        (
            "importstr '/proc/self/environ'",
            "/proc/self/environ is under /proc, which hooks may never read",
        ),
        (
            "importbin '/dev/zero'",
            "is under /dev, which hooks may never read",
        ),
        ("import 'link.txt'", "is a symlink to"),
    ];
    for (code, wanted) in cases {
        let hook = tree.write(
            "hooks/sync.jsonnet",
            &format!("function(request) {{ x: {code} }}"),
        );
        let text = hook_error(evaluate(
            &HookSource::JsonnetFile {
                path: hook,
                jpath: vec![],
            },
            &[tree.path("lib")],
        ));
        assert!(text.contains(wanted), "{code}: {text}");
        assert!(!text.contains("secret\""), "{code} leaked: {text}");
    }
    // What is inside still works: beside the hook, the -J dir, the bundled library.
    tree.write("hooks/beside.libsonnet", "'beside'");
    let hook = tree.write(
        "hooks/sync.jsonnet",
        "function(request) { a: import 'beside.libsonnet', b: (import 'lib.libsonnet').v, c: std.type(import 'kubelambda.libsonnet') }",
    );
    let out = evaluate(
        &HookSource::JsonnetFile {
            path: hook,
            jpath: vec![],
        },
        &[tree.path("lib")],
    )
    .expect("inside the roots");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"a": "beside", "b": "lib", "c": "object"})
    );
}

#[test]
fn the_evaluator_refuses_every_escape_from_an_inline_hook() {
    let tree = Tree::new();
    symlink(tree.path("outside/secret.txt"), tree.path("lib/link.txt")).expect("symlink");
    let cases = [
        (
            "importstr '/etc/hostname'",
            "/etc/hostname is outside the hook's import roots (hook dir: none (inline hook)",
        ),
        (
            "importstr '../outside/secret.txt'",
            "secret.txt is outside the hook's import roots",
        ),
        (
            "importstr '/proc/self/environ'",
            "is under /proc, which hooks may never read",
        ),
        ("importstr 'link.txt'", "is a symlink to"),
        (
            "importstr 'no-such-file'",
            "import \"no-such-file\": no such file in the hook's import roots",
        ),
    ];
    for (code, wanted) in cases {
        let source = HookSource::JsonnetInline {
            name: "cc spec.hooks.sync.jsonnet".into(),
            code: format!("function(request) {{ x: {code} }}"),
            jpath: vec![],
        };
        let text = hook_error(evaluate(&source, &[tree.path("lib")]));
        assert!(text.contains(wanted), "{code}: {text}");
    }
    // The hook's own jpath is a root like -J.
    let source = HookSource::JsonnetInline {
        name: "cc".into(),
        code: "function(request) (import 'lib.libsonnet').v".into(),
        jpath: vec![tree.path("lib")],
    };
    assert_eq!(evaluate(&source, &[]).expect("jpath"), "\"lib\"\n");
}

#[test]
fn a_hook_file_under_proc_is_refused_to_load() {
    let sources = [
        HookSource::JsonnetFile {
            path: PathBuf::from("/proc/self/environ"),
            jpath: vec![],
        },
        HookSource::TeraFile {
            path: PathBuf::from("/proc/self/environ"),
        },
    ];
    for source in sources {
        match evaluate(&source, &[]) {
            Err(EvalError::Load { path, reason }) => {
                assert_eq!(path, "/proc/self/environ");
                assert!(reason.contains("which hooks may never read"), "{reason}");
            }
            other => panic!("{source:?}: {other:?}"),
        }
    }
}

fn tera(template: &str, env: &[(&str, Option<&str>)]) -> Result<String, EvalError> {
    let env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect();
    let source = HookSource::TeraInline {
        name: "cc spec.hooks.sync.tera".into(),
        template: template.into(),
    };
    Evaluator::with_tera_env(JsonnetOptions::default(), &Limits::default(), env)
        .evaluate(&source, b"{}")
}

#[test]
fn tera_get_env_sees_only_the_names_the_operator_allowed() {
    // PATH is set in every test process; without the flag a template cannot read it, with or
    // without a default.
    for call in [
        r#"get_env(name="PATH")"#,
        r#"get_env(name="PATH", default="x")"#,
    ] {
        let text = hook_error(tera(&format!("v: {{{{ {call} }}}}"), &[]));
        assert!(
            text.contains(
                "get_env(name=\"PATH\"): PATH is not an allowed environment variable; the operator can allow it with --tera-env-allow PATH"
            ),
            "{text}"
        );
    }
    let env = [("CLUSTER", Some("prod")), ("UNSET", None)];
    assert_eq!(
        tera(r#"v: {{ get_env(name="CLUSTER") }}"#, &env).expect("allowed"),
        "{\n   \"v\": \"prod\"\n}\n"
    );
    assert_eq!(
        tera(r#"v: {{ get_env(name="UNSET", default="d") }}"#, &env).expect("default"),
        "{\n   \"v\": \"d\"\n}\n"
    );
    let text = hook_error(tera(r#"v: {{ get_env(name="UNSET") }}"#, &env));
    assert!(text.contains("UNSET is allowed but not set"), "{text}");
}

#[test]
fn tera_include_and_import_reach_no_files() {
    for template in [
        r#"{% include "/etc/hostname" %}"#,
        r#"{% import "/etc/hostname" as m %}v: 1"#,
        r#"{% extends "/etc/hostname" %}"#,
    ] {
        match tera(template, &[]) {
            Err(EvalError::Hook(text)) => {
                assert!(text.contains("/etc/hostname"), "{template}: {text}")
            }
            other => panic!("{template}: {other:?}"),
        }
    }
}
