//! `spool`: a Kafka-compatible broker, client and demo in one binary.

mod cmd;

use clap::{Parser, Subcommand};

/// Spool: a Kafka-compatible streaming platform in one binary.
#[derive(Debug, Parser)]
#[command(name = "spool", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The seed's program: a producer sending a random integer every 500 ms and N consumer threads reading it back.
    Demo(cmd::demo::Args),
    /// Run a standalone broker.
    Broker(cmd::broker::Args),
    /// Produce lines from stdin to a topic.
    Produce(cmd::produce::Args),
    /// Consume records from a topic and print them.
    Consume(cmd::consume::Args),
    /// Create, list, describe and delete topics.
    Topics(cmd::topics::Args),
    /// List, describe, reset offsets of and delete consumer groups.
    Groups(cmd::groups::Args),
    /// Measure producer and consumer throughput and latency against a cluster.
    Bench(cmd::bench::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let verbose_default = matches!(cli.command, Command::Broker(_));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SPOOL_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(if verbose_default { "info" } else { "warn" })
            }),
        )
        .init();
    let runtime = match runtime_for(&cli.command) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Demo(args) => cmd::demo::run(args).await,
            Command::Broker(args) => cmd::broker::run(args).await,
            Command::Produce(args) => cmd::produce::run(args).await,
            Command::Consume(args) => cmd::consume::run(args).await,
            Command::Topics(args) => cmd::topics::run(args).await,
            Command::Groups(args) => cmd::groups::run(args).await,
            Command::Bench(args) => cmd::bench::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader of our output went away (`spool topics list | head -1`): not an error.
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One readable line: the chain of causes, outermost first.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The broker (and the demo, which embeds one) gets a worker per core. Client commands run their
/// own loop on the main thread (`block_on`) and the client's background tasks on few workers:
/// with the default of one per core, on 2 cores shared with a broker, `spool bench produce` of
/// 100 B records ran at 1.2-1.9M records/s against 2.1-2.7M with one worker, the extra worker
/// mostly waking up to steal the sender task; with no worker at all (a current-thread
/// runtime), 1.7M: the send loop and the sender then take turns on one thread. (Constant-rate
/// benchmarks move their loop onto the worker: see `cmd::bench::run`.)
fn runtime_for(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let workers = match command {
        Command::Demo(_) | Command::Broker(_) => return tokio::runtime::Runtime::new(),
        Command::Bench(args) => args.threads.into(),
        Command::Produce(_) | Command::Consume(_) | Command::Topics(_) | Command::Groups(_) => 1,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
