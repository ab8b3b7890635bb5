//! The fault-injection run against the real `spool` binary: a few cycles of kill -9 and
//! SIGSTOP under load, checked by spool-chaos (see reliability/chaos/README.md).
//!
//! `SPOOL_CHAOS_CYCLES` sets the cycle count (default 10, enough for CI); `SPOOL_BIN` names the
//! broker binary, otherwise the workspace's own `spool` is built (a no-op when fresh) and used.

use std::path::PathBuf;
use std::process::Command;

const CHAOS: &str = env!("CARGO_BIN_EXE_spool-chaos");
const DEFAULT_CYCLES: u32 = 10;

/// The `spool` binary: `SPOOL_BIN`, else the one in this test's own target directory, brought
/// up to date with cargo so the test never runs a stale broker.
fn spool_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SPOOL_BIN") {
        return PathBuf::from(p);
    }
    // <target>/<profile>/deps/chaos-<hash>
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable under <target>/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .expect("target directory")
        .to_path_buf();
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("profile directory name")
        .to_string();
    let cargo_profile = if profile == "debug" { "dev" } else { &profile };
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "spool-cli", "--bin", "spool"])
        .args(["--profile", cargo_profile])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .status()
        .expect("run cargo build for the spool binary");
    assert!(
        status.success(),
        "cargo build -p spool-cli failed: {status}"
    );
    let bin = profile_dir.join(format!("spool{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} was not built", bin.display());
    bin
}

#[test]
fn kill_and_pause_cycles_lose_nothing_and_duplicate_nothing() {
    let cycles: u32 = std::env::var("SPOOL_CHAOS_CYCLES")
        .ok()
        .map(|s| s.parse().expect("SPOOL_CHAOS_CYCLES is a number"))
        .unwrap_or(DEFAULT_CYCLES);
    assert!(cycles > 0, "SPOOL_CHAOS_CYCLES must be positive");
    let spool = spool_binary();
    // A fixed seed keeps CI's fault schedule the same from run to run; the full run varies it.
    let out = Command::new(CHAOS)
        .arg("--spool")
        .arg(&spool)
        .args([
            "--cycles",
            &cycles.to_string(),
            "--seed",
            "20261124",
            "--json",
        ])
        .args(["--max-load-ms", "1500"])
        .output()
        .expect("run spool-chaos");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "spool-chaos failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    let s: serde_json::Value = serde_json::from_str(&stdout).expect("JSON summary");
    let n = |k: &str| {
        s[k].as_u64()
            .unwrap_or_else(|| panic!("summary field {k} missing: {stdout}"))
    };
    // The run did what it claims: every cycle injected a fault, records flowed and were checked.
    assert_eq!(n("cycles"), u64::from(cycles), "{stderr}");
    assert_eq!(
        n("kills") + n("term_kills") + n("pauses"),
        u64::from(cycles),
        "{stderr}"
    );
    assert!(n("acknowledged") > 0, "{stderr}");
    assert_eq!(n("checked"), n("acknowledged"), "{stderr}");
    assert!(n("consumed") > 0, "{stderr}");
    assert!(n("consumer_seen_checked") > 0, "{stderr}");
    assert!(n("commits_acknowledged") > 0, "{stderr}");
    for k in [
        "lost",
        "misplaced",
        "duplicated",
        "gaps",
        "reordered",
        "phantom",
        "consumer_mismatch",
        "consumer_regressions",
        "commit_regressions",
        "wrong_partition",
        "stalls",
        "violations",
    ] {
        assert_eq!(n(k), 0, "{k}:\n{stderr}\n{stdout}");
    }
}
