//! Spool's own client as a peer of the interop matrix: runs one scenario of
//! `interop/SCENARIOS.md` against any Kafka-compatible broker and exits 0 only when every
//! check held.
//!
//! `spool-interop-peer --bootstrap HOST:PORT --scenario NAME --prefix PREFIX`
//!
//! Besides the matrix scenarios it has `group-member` (join `PREFIX-g`, read `--count` records
//! of `PREFIX-shared`, print `PARTITION OFFSET VALUE` lines, commit after each poll; `--assignor`
//! picks one), which the mixed-group test pairs with a Java consumer.

mod scenarios;
mod support;

use std::process::ExitCode;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Spool client interop peer (see interop/SCENARIOS.md)"
)]
struct Args {
    /// Broker address, `host:port`.
    #[arg(long)]
    bootstrap: String,
    /// Scenario name (interop/SCENARIOS.md), or `group-member`.
    #[arg(long)]
    scenario: String,
    /// Prefix of every topic and group this run creates.
    #[arg(long)]
    prefix: String,
    /// `group-member` only: records to read before leaving.
    #[arg(long, default_value_t = 0)]
    count: usize,
    /// `group-member` only: the assignor, by its Java name (range, roundrobin, sticky,
    /// cooperative-sticky); default: the client's list (range, cooperative-sticky).
    #[arg(long)]
    assignor: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let ctx = support::Ctx::new(&args.bootstrap, &args.prefix);
    let run = async {
        match args.scenario.as_str() {
            "produce-codecs" => scenarios::produce_codecs(&ctx).await,
            "produce-headers-nulls" => scenarios::produce_headers_nulls(&ctx).await,
            "produce-idempotent" => scenarios::produce_idempotent(&ctx).await,
            "produce-split" => scenarios::produce_split(&ctx).await,
            "consume-offsets" => scenarios::consume_offsets(&ctx).await,
            "consume-timestamp" => scenarios::consume_timestamp(&ctx).await,
            "group-rebalance" => scenarios::group_rebalance(&ctx).await,
            "offsets-commit-fetch" => scenarios::offsets_commit_fetch(&ctx).await,
            "admin-topics" => scenarios::admin_topics(&ctx).await,
            "admin-groups" => scenarios::admin_groups(&ctx).await,
            "group-member" => {
                scenarios::group_member(&ctx, args.count, args.assignor.as_deref()).await
            }
            other => Err(anyhow::anyhow!("unknown scenario {other:?}")),
        }
    };
    // Every wait inside has its own deadline; this one only guards against a forgotten one.
    match tokio::time::timeout(support::SCENARIO_LIMIT, run).await {
        Ok(Ok(())) => {
            println!("scenario {} passed", args.scenario);
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("scenario {} FAILED: {e:#}", args.scenario);
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!(
                "scenario {} FAILED: did not finish within {:?}",
                args.scenario,
                support::SCENARIO_LIMIT
            );
            ExitCode::FAILURE
        }
    }
}
