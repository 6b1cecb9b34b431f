//! The worker process: `kubelambda __worker`, started by the pool, never by a user.
//!
//! It evaluates one request at a time from stdin and answers on stdout. Limits that cannot be
//! enforced from inside an evaluation are enforced around it: the address space is capped with
//! `RLIMIT_AS` (a hook that builds gigabytes makes an allocation fail and the worker abort), and the
//! pool kills the worker when the deadline passes.
//!
//! Before anything else it confines itself (see [`confine`](super::confine)): no new
//! privileges, and a seccomp filter against network, exec and reading other processes. It reports
//! what it managed to the pool in answer to the init frame.

use std::io::{self, BufReader, BufWriter, Write};

use super::confine::{self, Confinement};
use super::wire::{self, TAG_CONFINEMENT, TAG_ERR, TAG_OK, WorkerInit};
use crate::hooks::eval::Evaluator;
use crate::hooks::{EvalError, HookSource};

/// Evaluation can recurse deeply before jrsonnet's own depth limit stops it; give it room.
const EVAL_THREAD_STACK: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker I/O: {0}")]
    Io(#[from] io::Error),
    #[error("worker received a bad init frame: {0}")]
    Init(serde_json::Error),
    #[error("the pool closed the pipe before sending the init frame")]
    NoInit,
}

/// Runs the worker loop until stdin closes.
pub fn run() -> Result<(), WorkerError> {
    die_with_parent();
    // Before the evaluation thread starts, so it inherits the filter.
    let confinement = confine::confine_self();
    let handle = std::thread::Builder::new()
        .name("kubelambda-eval".into())
        .stack_size(EVAL_THREAD_STACK)
        .spawn(move || serve(confinement))?;
    handle.join().unwrap_or_else(|_| {
        Err(WorkerError::Io(io::Error::other(
            "evaluation thread panicked",
        )))
    })
}

fn serve(confinement: Confinement) -> Result<(), WorkerError> {
    let mut input = BufReader::new(io::stdin().lock());
    let mut output = BufWriter::new(io::stdout().lock());
    let init = wire::read_frame(&mut input)?.ok_or(WorkerError::NoInit)?;
    let init: WorkerInit = serde_json::from_slice(&init).map_err(WorkerError::Init)?;
    limit_memory(init.limits.max_memory_bytes);
    if init.report_confinement {
        output.write_all(&[TAG_CONFINEMENT])?;
        wire::write_frame(
            &mut output,
            &serde_json::to_vec(&confinement).unwrap_or_default(),
        )?;
        output.flush()?;
    }
    let mut evaluator = Evaluator::with_tera_env(init.options, &init.limits, init.tera_env);

    while let Some(header) = wire::read_frame(&mut input)? {
        let Some(request) = wire::read_frame(&mut input)? else {
            break;
        };
        let result = match serde_json::from_slice::<HookSource>(&header) {
            Ok(source) => evaluator.evaluate(&source, &request).map(|text| {
                let dependencies = init
                    .report_dependencies
                    .then(|| evaluator.dependencies(&source))
                    .flatten();
                (text, dependencies)
            }),
            Err(e) => Err(EvalError::Worker(format!("bad request header: {e}"))),
        };
        match result {
            Ok((text, dependencies)) => {
                output.write_all(&[TAG_OK])?;
                wire::write_frame(&mut output, text.as_bytes())?;
                let dependencies = serde_json::to_vec(&dependencies).unwrap_or_default();
                wire::write_frame(&mut output, &dependencies)?;
            }
            Err(error) => {
                let json = serde_json::to_vec(&error).unwrap_or_default();
                output.write_all(&[TAG_ERR])?;
                wire::write_frame(&mut output, &json)?;
            }
        }
        output.flush()?;
    }
    Ok(())
}

/// A worker must not outlive the process that started it, even if that process is killed.
fn die_with_parent() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and has no memory effects.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
}

fn limit_memory(bytes: u64) {
    if bytes == 0 {
        return;
    }
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit reads a properly initialised rlimit struct.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    if rc != 0 {
        tracing::warn!(
            "cannot cap worker memory at {bytes} bytes: {}",
            io::Error::last_os_error()
        );
    }
}
