//! One hook evaluation per backend: in-process (the work a sandbox worker does) and through the
//! sandbox pool (what httpd, render and the controller pay, pipe round trip included).
//!
//! `cargo bench --bench hooks`

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use kubelambda::hooks::eval::Evaluator;
use kubelambda::hooks::jsonnet::JsonnetOptions;
use kubelambda::hooks::sandbox::{Sandbox, SandboxConfig};
use kubelambda::hooks::{HookSource, Limits};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn sources() -> Vec<(&'static str, HookSource)> {
    let jsonnet = HookSource::from_file(
        &root().join("examples/useless-controller/sync.jsonnet"),
        &[],
    )
    .expect("jsonnet hook");
    let tera = HookSource::from_file(&root().join("tests/fixtures/hooks/sync.tera"), &[])
        .expect("tera hook");
    vec![("jsonnet", jsonnet), ("tera", tera)]
}

fn request() -> Vec<u8> {
    std::fs::read(root().join("examples/useless-controller/request.json")).expect("request.json")
}

fn in_process(c: &mut Criterion) {
    let body = request();
    let mut evaluator = Evaluator::new(JsonnetOptions::default(), &Limits::default());
    for (name, source) in sources() {
        c.bench_function(&format!("evaluate/{name}/in-process"), |b| {
            b.iter(|| evaluator.evaluate(&source, &body).expect("evaluates"))
        });
    }
}

fn through_sandbox(c: &mut Criterion) {
    let body = request();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sandbox = Sandbox::new(SandboxConfig {
        program: PathBuf::from(env!("CARGO_BIN_EXE_kubelambda")),
        workers: 1,
        limits: Limits::default(),
        jsonnet: JsonnetOptions::default(),
    });
    for (name, source) in sources() {
        c.bench_function(&format!("evaluate/{name}/sandbox"), |b| {
            b.iter(|| {
                rt.block_on(sandbox.evaluate(&source, &body))
                    .expect("evaluates")
            })
        });
    }
}

criterion_group!(benches, in_process, through_sandbox);
criterion_main!(benches);
