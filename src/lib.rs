//! kubelambda: turn a small declarative hook into a full Kubernetes controller.
//!
//! Data flow (see DESIGN.md): `api` (CRD types) → `engine` (informers, queue, sync) → `hooks`
//! (the hook contract and its backends) → back to `engine` (manage children, write status).
//! `httpd` and `render` expose the same hooks without a cluster.

/// mimalloc instead of the system allocator: jrsonnet allocates a small object for nearly every
/// value and thunk, and glibc's malloc/free was the largest single cost inside a hook evaluation
/// (about a fifth of a worker's time under load, measured with `perf record`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod cli;
pub mod client_limit;
pub mod engine;
pub mod gocompat;
pub mod hooks;
pub mod httpd;
pub mod leader;
pub mod render;
pub mod selector;
pub mod telemetry;
pub mod yaml;
