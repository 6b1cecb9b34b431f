//! The client side of `benches/convergence.sh`: loads parents, watches for convergence, counts
//! API calls at the API server and samples the controller's process tree from /proc. The script
//! runs the control plane and the controllers; this binary does the parts that need a fast
//! Kubernetes client. It is a `harness = false` bench target so that it builds with the
//! crate's own dependencies; run without a subcommand (as `cargo bench` and
//! `cargo test --all-targets` do) it only says how to run the benchmark.
//!
//! Subcommands (all take `--kubeconfig FILE`):
//!   apply FILE|-          server-side apply every document of a multi-document YAML file;
//!                         waits for CustomResourceDefinitions to be Established
//!   delete FILE|-         delete every document (missing ones are fine)
//!   phase ...             one timed phase in a fresh namespace; prints one JSON line
//!   clean --namespace NS  delete a namespace and wait until it is gone

mod apiserver_metrics;
mod manifests;
mod phase;
mod procfs;

use std::error::Error;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Errors carry their context in the message; this binary only reports them and exits 1.
pub type BoxError = Box<dyn Error + Send + Sync>;

#[derive(Parser)]
#[command(name = "convergence", about = "client side of benches/convergence.sh")]
struct Cli {
    #[arg(long, global = true, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Server-side apply every document of a YAML file ("-": stdin).
    Apply { file: String },
    /// Delete every document of a YAML file ("-": stdin); absent objects are fine.
    Delete { file: String },
    /// One timed phase; prints its result as one JSON line.
    Phase(phase::PhaseArgs),
    /// Delete a namespace and wait until it is gone.
    Clean {
        #[arg(long)]
        namespace: String,
        #[arg(long, default_value_t = 600)]
        timeout_seconds: u64,
    },
}

fn main() {
    // `cargo bench` passes `--bench`, `cargo test --all-targets` passes nothing: neither has a
    // control plane to run against, so say how to run the benchmark and succeed.
    let args: Vec<String> = std::env::args().collect();
    let known = ["apply", "delete", "phase", "clean", "help", "--help", "-h"];
    if !args.iter().skip(1).any(|a| known.contains(&a.as_str())) {
        println!(
            "convergence: the client side of benches/convergence.sh; run that script (see its header)"
        );
        return;
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("convergence: cannot start the tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("convergence: {e}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<(), BoxError> {
    let client = client(cli.kubeconfig.as_deref()).await?;
    match cli.command {
        Command::Apply { file } => manifests::apply(&client, &manifests::read(&file)?).await,
        Command::Delete { file } => manifests::delete(&client, &manifests::read(&file)?).await,
        Command::Phase(args) => {
            let result = phase::run(&client, &args).await?;
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        Command::Clean {
            namespace,
            timeout_seconds,
        } => manifests::delete_namespace(&client, &namespace, timeout_seconds).await,
    }
}

async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, BoxError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("reading kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no --kubeconfig and no usable default: {e}"))?,
    };
    Ok(kube::Client::try_from(config).map_err(|e| format!("building the client: {e}"))?)
}
