//! Fault injection against a real `spool broker` process, with a history checker in the
//! spirit of Jepsen's Kafka workload.
//!
//! Idempotent `acks=all` producers write unique values (`p<producer>-<seq>`) to a
//! multi-partition topic while group consumers read and commit. Each cycle, after a random
//! stretch of load, the broker is either killed with SIGKILL and restarted on the same port and
//! data directory, or stopped with SIGSTOP for a random moment and continued. After each cycle
//! the whole log is read back from offset 0 and checked: every acknowledged record at its
//! acknowledged offset, no value twice, offsets contiguous, each producer's records in send
//! order, consumers' offsets increasing within an assignment, committed offsets never going
//! back. Exits 1 on any violation, 2 when the run itself failed.
//!
//! ```text
//! spool-chaos --spool target/release/spool --cycles 50 --seed 1
//! ```

mod broker;
mod checker;
mod driver;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Kill -9 and pause a spool broker under load; check the history (Jepsen-style)"
)]
struct Args {
    /// The `spool` binary to run as the broker.
    #[arg(long, env = "SPOOL_BIN")]
    spool: PathBuf,
    /// Fault cycles.
    #[arg(long, default_value_t = 50)]
    cycles: u32,
    /// Partitions of the test topic.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: i32,
    /// Idempotent producers.
    #[arg(long, default_value_t = 3)]
    producers: u32,
    /// Group consumers (one group).
    #[arg(long, default_value_t = 2)]
    consumers: usize,
    /// Seed of the fault schedule (random when absent; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON summary on stdout (cycle lines go to stderr).
    #[arg(long)]
    json: bool,
    /// Records per second per producer.
    #[arg(long, default_value_t = 400)]
    rate: u32,
    /// Most unacknowledged sends per producer.
    #[arg(long, default_value_t = 200)]
    window: usize,
    /// Shortest load before a fault, ms.
    #[arg(long, default_value_t = 300)]
    min_load_ms: u64,
    /// Longest load before a fault, ms.
    #[arg(long, default_value_t = 2000)]
    max_load_ms: u64,
    /// Shortest SIGSTOP, ms.
    #[arg(long, default_value_t = 100)]
    min_pause_ms: u64,
    /// Longest SIGSTOP, ms (keep it below the consumers' 10 s session timeout).
    #[arg(long, default_value_t = 3000)]
    max_pause_ms: u64,
    /// Probability that a cycle's fault is kill -9.
    #[arg(long, default_value_t = 0.4)]
    kill_ratio: f64,
    /// Probability that it is SIGTERM then kill -9 (a clean shutdown cut short); the remaining
    /// cycles pause the broker.
    #[arg(long, default_value_t = 0.2)]
    term_kill_ratio: f64,
    /// Longest delay between that SIGTERM and the SIGKILL, ms.
    #[arg(long, default_value_t = 300)]
    term_kill_ms: u64,
    /// Seconds every producer and the group may take to make progress after a fault.
    #[arg(long, default_value_t = 60)]
    stall_timeout_secs: u64,
    /// `segment.bytes` of the test topic (Kafka's minimum, 1 MiB, by default, so segments roll
    /// during the run).
    #[arg(long, default_value_t = 1_048_576)]
    segment_bytes: u64,
    /// The consumers' assignor: range, roundrobin, sticky or cooperative-sticky (default: the
    /// client's list, range then cooperative-sticky, which rebalances eagerly).
    #[arg(long, value_parser = ["range", "roundrobin", "sticky", "cooperative-sticky"])]
    assignor: Option<String>,
    /// Static group membership: each consumer has a `group.instance.id`.
    #[arg(long = "static")]
    static_members: bool,
    /// The producers' `delivery.timeout.ms`; below the longest pause, sends fail and the
    /// checker counts them as uncertain.
    #[arg(long, default_value_t = 120_000)]
    delivery_timeout_ms: u64,
    /// The producers' `request.timeout.ms`.
    #[arg(long, default_value_t = 15_000)]
    request_timeout_ms: u64,
    /// Directory for the broker's data and log (kept); default: a temporary one, kept only
    /// when the run fails.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.min_load_ms > args.max_load_ms || args.min_pause_ms > args.max_pause_ms {
        eprintln!("spool-chaos: a --min-* flag is above its --max-* flag");
        return ExitCode::from(2);
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let opts = driver::Options {
        spool: args.spool,
        cycles: args.cycles,
        partitions: args.partitions,
        producers: args.producers.max(1),
        consumers: args.consumers.max(1),
        seed,
        rate: args.rate.max(1),
        window: args.window.max(1),
        load_ms: (args.min_load_ms, args.max_load_ms),
        pause_ms: (args.min_pause_ms, args.max_pause_ms),
        kill_ratio: args.kill_ratio,
        term_kill_ratio: args.term_kill_ratio,
        term_kill_ms: args.term_kill_ms,
        stall_limit: Duration::from_secs(args.stall_timeout_secs),
        data_dir: args.data_dir,
        segment_bytes: args.segment_bytes,
        assignor: args.assignor,
        static_members: args.static_members,
        delivery_timeout: Duration::from_millis(args.delivery_timeout_ms),
        request_timeout: Duration::from_millis(args.request_timeout_ms.max(1)),
    };
    let json = args.json;
    let mut print = |line: &str| {
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    print(&format!(
        "spool-chaos: seed {seed}, {} cycles, {} partitions, {} producers x {}/s, {} consumers",
        opts.cycles, opts.partitions, opts.producers, opts.rate, opts.consumers
    ));
    let summary = match driver::run(opts, &mut print).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("spool-chaos: the run failed (seed {seed}): {e:#}");
            return ExitCode::from(2);
        }
    };
    if json {
        match serde_json::to_string_pretty(&summary) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("spool-chaos: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        print_summary(&summary);
    }
    if summary.violations == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_summary(s: &driver::Summary) {
    println!("---");
    println!(
        "cycles {} (kills {}, term-then-kills {}, pauses {}), seed {}",
        s.cycles, s.kills, s.term_kills, s.pauses, s.seed
    );
    println!(
        "records: sent {}, acknowledged {}, checked {}, in log {}, uncertain {} ({} present, {} absent)",
        s.sent,
        s.acknowledged,
        s.checked,
        s.log_records,
        s.uncertain,
        s.uncertain_present,
        s.uncertain_absent
    );
    println!(
        "violations: lost {}, misplaced {}, duplicated {}, gaps {}, reordered {}, phantom {}, read mismatches {}, consumer regressions {}, commit regressions {}, wrong partition {}, stalls {}",
        s.lost,
        s.misplaced,
        s.duplicated,
        s.gaps,
        s.reordered,
        s.phantom,
        s.consumer_mismatch,
        s.consumer_regressions,
        s.commit_regressions,
        s.wrong_partition,
        s.stalls
    );
    println!(
        "consumed {} (verified against the log {}), commits acknowledged {}, slowest restart {} ms, slowest recovery {} ms",
        s.consumed, s.consumer_seen_checked, s.commits_acknowledged, s.restart_ms_max, s.recovery_ms_max
    );
    if !s.client_errors.is_empty() {
        println!("client errors (expected during faults):");
        for (e, n) in &s.client_errors {
            println!("  {n:>6}  {e}");
        }
    }
    for e in &s.examples {
        println!("  violation: {e}");
    }
    if let Some(d) = &s.data_dir {
        println!("data directory and broker log kept in {}", d.display());
    }
    println!(
        "{}",
        if s.violations == 0 {
            "PASS".to_string()
        } else {
            format!("FAIL: {} violations", s.violations)
        }
    );
}
