//! The `spool` binary run as a user runs it: the demo, a standalone broker, and the client
//! commands against it, including their error messages.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Output, Stdio};

fn spool(args: &[&str]) -> Output {
    Command::new(SPOOL)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run spool")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

mod support;
use support::{sigterm as terminate, BrokerProcess, SPOOL};

/// A `spool broker` child process on a free port over its own temp dir.
struct Broker {
    process: BrokerProcess,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Broker {
    fn start() -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let process =
            BrokerProcess::start(dir.path(), &["--group-initial-rebalance-delay-ms", "0"]);
        Broker {
            addr: process.addr.clone(),
            process,
            _dir: dir,
        }
    }

    fn stop(self) -> std::process::ExitStatus {
        self.process.terminate()
    }
}

#[test]
fn demo_prints_the_seeds_lines_and_every_number_comes_back() {
    let out = spool(&[
        "demo",
        "random_numbers",
        "2",
        "--count",
        "6",
        "--interval-ms",
        "20",
    ]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(&lines[..2], &["Starting thread 0", "Starting thread 1"]);
    assert_eq!(
        &lines[lines.len() - 2..],
        &["Stopping thread 0", "Stopping thread 1"]
    );
    let mut sent: Vec<u32> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("Sending to Kafka topic random_numbers: "))
        .map(|n| n.parse().unwrap())
        .collect();
    let mut received: Vec<u32> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("Received on thread "))
        .map(|rest| {
            let (thread, n) = rest.split_once(": ").unwrap();
            assert!(thread == "0" || thread == "1", "{rest}");
            n.parse().unwrap()
        })
        .collect();
    assert_eq!(sent.len(), 6);
    assert!(sent.iter().all(|n| *n < 1000));
    sent.sort();
    received.sort();
    assert_eq!(sent, received);
}

#[test]
fn demo_stops_cleanly_on_sigterm() {
    let mut child = Command::new(SPOOL)
        .args(["demo", "random_numbers", "3", "--interval-ms", "20"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    // Wait for a round trip before stopping it.
    while !seen.contains("Received on thread") {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "demo ended early: {seen}"
        );
        seen.push_str(&line);
    }
    terminate(&child);
    reader.read_to_string(&mut seen).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?}: {seen}");
    for t in 0..3 {
        assert!(seen.contains(&format!("Stopping thread {t}\n")), "{seen}");
    }
}

#[test]
fn topics_produce_and_consume_against_a_standalone_broker() {
    let broker = Broker::start();
    let b = broker.addr.as_str();
    let out = spool(&[
        "topics",
        "create",
        "events",
        "--partitions",
        "3",
        "-c",
        "retention.ms=86400000",
        "-b",
        b,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Created topic events.\n");
    assert_eq!(stdout(&spool(&["topics", "list", "-b", b])), "events\n");
    let described = stdout(&spool(&["topics", "describe", "events", "-b", b]));
    assert!(described.contains("PartitionCount: 3"), "{described}");
    assert!(described.contains("retention.ms=86400000"), "{described}");

    let mut producer = Command::new(SPOOL)
        .args(["produce", "events", "--key-separator", ":", "-b", b])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    producer
        .stdin
        .take()
        .unwrap()
        .write_all(b"k1:one\nk2:two\nk1:three\nno key here\n")
        .unwrap();
    let out = producer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    let out = spool(&[
        "consume",
        "events",
        "--from-beginning",
        "--count",
        "4",
        "-f",
        "%k=%v",
        "-b",
        b,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut got: Vec<String> = stdout(&out).lines().map(String::from).collect();
    got.sort();
    assert_eq!(got, ["=no key here", "k1=one", "k1=three", "k2=two"]);

    // Same key, same partition, in order.
    let out = spool(&[
        "consume",
        "events",
        "--from-beginning",
        "-e",
        "-f",
        "%p %k %v",
        "-b",
        b,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let k1: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ' ');
            let (p, k, v) = (it.next()?, it.next()?, it.next()?);
            (k == "k1").then_some((p, v))
        })
        .collect();
    assert_eq!(k1.len(), 2, "{text}");
    assert_eq!(k1[0].0, k1[1].0);
    assert_eq!((k1[0].1, k1[1].1), ("one", "three"));

    let out = spool(&["topics", "delete", "events", "-b", b]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&spool(&["topics", "list", "-b", b])), "");
    assert!(broker.stop().success());
}

#[test]
fn user_mistakes_get_one_readable_line_and_a_failure_code() {
    let broker = Broker::start();
    let b = broker.addr.as_str();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["topics", "create", "dup", "-p", "1", "-b", b], ""),
        (
            vec!["topics", "create", "dup", "-p", "1", "-b", b],
            "TOPIC_ALREADY_EXISTS",
        ),
        (
            vec!["topics", "create", "x", "-c", "retention.ms=soon", "-b", b],
            "INVALID_CONFIG",
        ),
        (
            vec!["topics", "delete", "missing", "-b", b],
            "UNKNOWN_TOPIC_OR_PARTITION",
        ),
        (
            vec!["consume", "dup", "--partition", "7", "-b", b],
            "has no partition 7",
        ),
        (
            vec!["produce", "dup", "--partition", "9", "-b", b],
            "has no partition 9",
        ),
        (
            vec!["consume", "bad/name", "-b", b],
            "INVALID_TOPIC_EXCEPTION",
        ),
        // Consuming never creates a topic; producing does, where the broker allows it.
        (
            vec!["consume", "fresh", "-b", b],
            "UNKNOWN_TOPIC_OR_PARTITION",
        ),
        (vec!["produce", "fresh", "-b", b], ""),
        (
            vec!["topics", "list", "-b", "127.0.0.1:1"],
            "cannot reach the cluster at 127.0.0.1:1",
        ),
        (vec!["topics", "list", "-b", "nonsense"], "is not HOST:PORT"),
    ];
    for (args, expected) in cases {
        let out = spool(&args);
        if expected.is_empty() {
            assert!(out.status.success(), "{args:?}: {}", stderr(&out));
            continue;
        }
        assert!(!out.status.success(), "{args:?} should fail");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("error: ") && err.contains(expected),
            "{args:?}: {err}"
        );
    }
    // Kafka's rule for the KIP-848 timeouts.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(SPOOL)
        .args([
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--group-consumer-session-timeout-ms",
            "3000",
            "--group-consumer-heartbeat-interval-ms",
            "3000",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("group.consumer.heartbeat.interval.ms must be less than group.consumer.session.timeout.ms"),
        "{err}"
    );
    // Malformed flags are clap's usage errors (exit 2).
    let out = spool(&["demo", "t", "zero"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid value 'zero'"));
}

#[test]
fn group_consumption_resumes_from_commits_and_groups_can_be_inspected_reset_and_deleted() {
    let broker = Broker::start();
    let b = broker.addr.as_str();
    assert!(spool(&["topics", "create", "gt", "-p", "3", "-b", b])
        .status
        .success());
    let mut producer = Command::new(SPOOL)
        .args(["produce", "gt", "-b", b])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let lines: String = (1..=30).map(|i| format!("{i}\n")).collect();
    producer
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(producer.wait().unwrap().success());

    let numbers = |out: &Output| -> Vec<u32> {
        let mut v: Vec<u32> = stdout(out).lines().map(|l| l.parse().unwrap()).collect();
        v.sort();
        v
    };
    let first = spool(&[
        "consume",
        "gt",
        "--group",
        "g",
        "--from-beginning",
        "--count",
        "10",
        "-b",
        b,
    ]);
    assert!(first.status.success(), "{}", stderr(&first));
    let rest = spool(&["consume", "gt", "--group", "g", "--count", "20", "-b", b]);
    assert!(rest.status.success(), "{}", stderr(&rest));
    let mut all = numbers(&first);
    all.extend(numbers(&rest));
    all.sort();
    assert_eq!(
        all,
        (1..=30).collect::<Vec<u32>>(),
        "every record once across the two runs"
    );

    assert_eq!(stdout(&spool(&["groups", "list", "-b", b])), "g\tEmpty\n");
    let described = stdout(&spool(&["groups", "describe", "g", "-b", b]));
    assert!(described.contains("State: Empty"), "{described}");
    let total_lag: i64 = described
        .lines()
        .filter(|l| l.starts_with("gt\t"))
        .map(|l| l.split('\t').nth(4).unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(total_lag, 0, "{described}");

    let dry = spool(&[
        "groups",
        "reset-offsets",
        "g",
        "--topic",
        "gt",
        "--to-earliest",
        "-b",
        b,
    ]);
    assert!(stdout(&dry).contains("Dry run"), "{}", stdout(&dry));
    let exec = spool(&[
        "groups",
        "reset-offsets",
        "g",
        "--topic",
        "gt",
        "--to-earliest",
        "--execute",
        "-b",
        b,
    ]);
    assert!(exec.status.success(), "{}", stderr(&exec));
    let replay = spool(&["consume", "gt", "--group", "g", "--count", "30", "-b", b]);
    assert_eq!(numbers(&replay), (1..=30).collect::<Vec<u32>>());

    let deleted = spool(&["groups", "delete", "g", "-b", b]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    let gone = spool(&["groups", "describe", "g", "-b", b]);
    assert!(
        stderr(&gone).contains("GROUP_ID_NOT_FOUND"),
        "{}",
        stderr(&gone)
    );
    assert!(broker.stop().success());
}

#[test]
fn a_second_demo_in_the_group_shares_the_partitions_and_nothing_is_lost() {
    let broker = Broker::start();
    let b = broker.addr.clone();
    let mut first = Command::new(SPOOL)
        .args(["demo", "shared", "2", "--interval-ms", "50", "-b", &b])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first_out = BufReader::new(first.stdout.take().unwrap());
    let first_lines = std::thread::spawn(move || {
        let mut all = String::new();
        first_out.read_to_string(&mut all).unwrap();
        all
    });

    let mut second = Command::new(SPOOL)
        .args(["demo", "shared", "2", "--no-produce", "-b", &b])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut second_out = BufReader::new(second.stdout.take().unwrap());
    let mut seen = String::new();
    // The second member gets a partition and receives numbers from it.
    while seen.matches("Received on thread").count() < 3 {
        let mut l = String::new();
        assert!(
            second_out.read_line(&mut l).unwrap() > 0,
            "second demo ended: {seen}"
        );
        seen.push_str(&l);
    }
    terminate(&second);
    second_out.read_to_string(&mut seen).unwrap();
    assert!(second.wait().unwrap().success());
    terminate(&first);
    assert!(first.wait().unwrap().success());
    let first_text = first_lines.join().unwrap();

    let mut sent: Vec<String> = first_text
        .lines()
        .filter_map(|l| l.strip_prefix("Sending to Kafka topic shared: "))
        .map(String::from)
        .collect();
    let numbers = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split_once("Received on thread ").map(|(_, r)| r))
            .filter_map(|r| r.split_once(": ").map(|(_, n)| n.to_string()))
            .collect()
    };
    let mut received = numbers(&first_text);
    received.extend(numbers(&seen));
    // What neither demo printed before stopping is still in the log after group1's commits.
    let left = sent.len().saturating_sub(received.len());
    if left > 0 {
        let rest = spool(&[
            "consume",
            "shared",
            "--group",
            "group1",
            "--count",
            &left.to_string(),
            "-b",
            &b,
        ]);
        assert!(rest.status.success(), "{}", stderr(&rest));
        received.extend(stdout(&rest).lines().map(String::from));
    }
    sent.sort();
    received.sort();
    assert_eq!(
        received, sent,
        "every number sent arrives exactly once across the group's members"
    );
    assert!(broker.stop().success());
}

/// `spool topics list | head -0`: a reader that goes away is not an error and never a panic.
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let broker = Broker::start();
    let b = broker.addr.as_str();
    assert!(spool(&["topics", "create", "piped", "-p", "1", "-b", b])
        .status
        .success());
    for args in [
        vec!["topics", "list", "-b", b],
        vec!["topics", "describe", "piped", "-b", b],
        vec!["groups", "list", "-b", b],
    ] {
        let mut child = Command::new(SPOOL)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before the first line is written
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{args:?}");
    }
}

#[test]
fn bench_produce_then_consume_report_counts_as_json() {
    let broker = Broker::start();
    let b = broker.addr.as_str();
    let json = |out: &Output| -> serde_json::Value {
        assert!(out.status.success(), "{}", stderr(out));
        serde_json::from_str(stdout(out).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(out)))
    };

    let produced = json(&spool(&[
        "bench",
        "produce",
        "--topic",
        "perf",
        "--partitions",
        "2",
        "--record-size",
        "100",
        "--num-records",
        "2000",
        "--acks",
        "1",
        "--json",
        "-b",
        b,
    ]));
    assert_eq!(produced["bench"], "produce");
    assert_eq!(produced["topic"], "perf");
    assert_eq!(produced["records"], 2000);
    assert_eq!(produced["failed"], 0);
    assert_eq!(produced["bytes"], 200_000);
    for field in ["seconds", "records_per_sec", "mb_per_sec"] {
        assert!(produced[field].is_number(), "{field}: {produced}");
    }
    for p in ["p50", "p99", "p99_9", "max"] {
        assert!(produced["latency_ms"][p].is_number(), "{p}: {produced}");
    }

    // A constant rate, by count: 200 more records.
    let paced = json(&spool(&[
        "bench",
        "produce",
        "--topic",
        "perf",
        "--record-size",
        "100",
        "--num-records",
        "200",
        "--throughput",
        "1000",
        "--json",
        "-b",
        b,
    ]));
    assert_eq!(
        (&paced["records"], &paced["failed"]),
        (&200.into(), &0.into())
    );

    // Without a count: everything the topic held at the start, from both partitions.
    let consumed = json(&spool(&[
        "bench", "consume", "--topic", "perf", "--json", "-b", b,
    ]));
    assert_eq!(consumed["bench"], "consume");
    assert_eq!(consumed["records"], 2200);
    assert_eq!(consumed["bytes"], 220_000);
    assert_eq!(consumed["failed"], 0);
    assert!(consumed["latency_ms"].is_null(), "{consumed}");
    let some = json(&spool(&[
        "bench",
        "consume",
        "--topic",
        "perf",
        "--num-records",
        "500",
        "--json",
        "-b",
        b,
    ]));
    assert_eq!(some["records"], 500);

    // End to end: 400 records/s for half a second is 200 records, each read back.
    let e2e = json(&spool(&[
        "bench",
        "e2e",
        "--topic",
        "perf-e2e",
        "--record-size",
        "64",
        "--throughput",
        "400",
        "--duration",
        "0.5",
        "--json",
        "-b",
        b,
    ]));
    assert_eq!(e2e["bench"], "e2e");
    assert_eq!((&e2e["records"], &e2e["failed"]), (&200.into(), &0.into()));
    assert!(e2e["latency_ms"]["p99_9"].is_number(), "{e2e}");

    // Asking for more records than there are ends with the report and a failure.
    let short = spool(&[
        "bench",
        "consume",
        "--topic",
        "perf-e2e",
        "--num-records",
        "201",
        "--timeout",
        "1",
        "--json",
        "-b",
        b,
    ]);
    assert!(!short.status.success());
    assert!(
        stdout(&short).contains("\"records\":200"),
        "{}",
        stdout(&short)
    );
    assert!(
        stderr(&short).contains("read 200 of the 201 asked"),
        "{}",
        stderr(&short)
    );

    // Records the broker refuses are counted, reported, and fail the run.
    let out = spool(&[
        "topics",
        "create",
        "small",
        "-c",
        "max.message.bytes=1000",
        "-b",
        b,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let refused = spool(&[
        "bench",
        "produce",
        "--topic",
        "small",
        "--record-size",
        "2000",
        "--num-records",
        "5",
        "--json",
        "-b",
        b,
    ]);
    assert!(!refused.status.success());
    let report: serde_json::Value = serde_json::from_str(stdout(&refused).trim()).unwrap();
    assert_eq!(
        (&report["records"], &report["failed"]),
        (&0.into(), &5.into())
    );
    assert!(
        stderr(&refused).contains("5 of 5 records were not delivered to small"),
        "{}",
        stderr(&refused)
    );
    assert!(broker.stop().success());
}
