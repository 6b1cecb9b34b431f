//! The `kubelambda` command line. Parses arguments and calls the library; nothing else lives here.
//! The arguments' shape is in `kubelambda::cli::args`, where the tests parse it too.

use std::process::ExitCode;

use kubelambda::cli::args::{self, CliError, Command, EvalArgs};
use kubelambda::cli::{self, EvalOptions};

/// Resolves the evaluation flags, then runs `job` on a Tokio runtime.
fn with_eval<F, Fut>(eval: EvalArgs, job: F) -> ExitCode
where
    F: FnOnce(EvalOptions) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    with_eval_on(eval, None, job)
}

/// Like [`with_eval`], with `threads` runtime worker threads (`None`: Tokio's default, one per
/// CPU).
fn with_eval_on<F, Fut>(eval: EvalArgs, threads: Option<usize>, job: F) -> ExitCode
where
    F: FnOnce(EvalOptions) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let eval = match eval.resolve() {
        Ok(eval) => eval,
        Err(e) => {
            eprintln!("kubelambda: {e}");
            return ExitCode::from(2);
        }
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        runtime.worker_threads(threads.max(1));
    }
    match runtime.enable_all().build() {
        Ok(rt) => rt.block_on(job(eval)),
        Err(e) => {
            eprintln!("kubelambda: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = match args::parse_from(std::env::args_os()) {
        Ok(cli) => cli,
        Err(CliError::Clap(e)) => e.exit(),
        Err(e @ CliError::Argv(_)) => {
            eprintln!("kubelambda: {e}");
            return ExitCode::from(2);
        }
    };
    let logging = cli.log_settings();
    // Traces only from the controller: not from httpd, render or the evaluation workers.
    let _traces = kubelambda::telemetry::init_observability(
        &logging.filter,
        logging.format,
        matches!(cli.command, Command::Run(_)),
    );
    // SAFETY: only the main thread exists; the async runtime starts below.
    unsafe { kubelambda::telemetry::export_to_workers(&logging.filter, logging.format) };
    match cli.command {
        Command::Worker => match kubelambda::hooks::sandbox::worker::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("kubelambda worker: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Httpd {
            listen_addr,
            max_body,
            http_threads,
            limits,
            eval,
            files,
        } => with_eval_on(
            eval,
            Some(http_threads.unwrap_or_else(cli::default_http_threads)),
            |eval| async move {
                let body_limit = usize::try_from(max_body).unwrap_or(usize::MAX);
                cli::httpd(&listen_addr, &files, body_limit, &limits, &eval).await
            },
        ),
        Command::Render {
            hook,
            request,
            controller,
            eval,
        } => with_eval(eval, |eval| async move {
            match (hook, request) {
                (Some(hook), Some(request)) => cli::render(&hook, &request, &eval).await,
                _ => cli::render_controller(&controller, &eval).await,
            }
        }),
        Command::Crds => cli::crds(),
        Command::Run(run) => {
            let options = run.options();
            with_eval(
                run.eval,
                |eval| async move { cli::run(options, &eval).await },
            )
        }
    }
}
