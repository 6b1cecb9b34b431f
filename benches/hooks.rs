//! One hook evaluation per backend: in-process (the work a sandbox worker does) and through the
//! sandbox pool (what httpd, render and the controller pay, pipe round trip included).
//!
//! `cargo bench --bench hooks`

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use kubelambda::hooks::eval::Evaluator;
use kubelambda::hooks::jsonnet::JsonnetOptions;
use kubelambda::hooks::sandbox::{DEFAULT_RESPONSE_CACHE_BYTES, Sandbox, SandboxConfig};
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

fn sandbox(response_cache_bytes: u64) -> Sandbox {
    Sandbox::new(SandboxConfig {
        program: PathBuf::from(env!("CARGO_BIN_EXE_kubelambda")),
        workers: 1,
        limits: Limits::default(),
        jsonnet: JsonnetOptions::default(),
        response_cache_bytes,
    })
}

/// Every request evaluated by a worker process: the response cache is off.
fn through_sandbox(c: &mut Criterion) {
    let body = request();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sandbox = sandbox(0);
    for (name, source) in sources() {
        c.bench_function(&format!("evaluate/{name}/sandbox"), |b| {
            b.iter(|| {
                rt.block_on(sandbox.evaluate(&source, &body))
                    .expect("evaluates")
            })
        });
    }
}

/// The same request again, answered from the response cache (Jsonnet only; Tera is never
/// cached).
fn through_cache(c: &mut Criterion) {
    let body = request();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sandbox = sandbox(DEFAULT_RESPONSE_CACHE_BYTES);
    let (_, source) = sources()
        .into_iter()
        .find(|(name, _)| *name == "jsonnet")
        .expect("a jsonnet source");
    // The first evaluation fills the cache; every timed one is a hit.
    rt.block_on(sandbox.evaluate(&source, &body))
        .expect("evaluates");
    c.bench_function("evaluate/jsonnet/response-cache-hit", |b| {
        b.iter(|| {
            rt.block_on(sandbox.evaluate(&source, &body))
                .expect("evaluates")
        })
    });
    let stats = sandbox.cache_stats().expect("the cache is on");
    assert!(
        stats.hits > 0,
        "the same request must hit the cache: {stats:?}"
    );
}

criterion_group!(benches, in_process, through_sandbox, through_cache);
criterion_main!(benches);
