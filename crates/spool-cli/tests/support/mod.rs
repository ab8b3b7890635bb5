//! A `spool broker` child process, for the tests that need a real process (signals, its RSS,
//! its own file descriptors). Each test binary uses a different part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The binary under test.
pub const SPOOL: &str = env!("CARGO_BIN_EXE_spool");

/// A `spool broker` on a free port over a data directory; killed on drop if still running.
pub struct BrokerProcess {
    pub child: Child,
    /// The address it printed in its "listening on" line.
    pub addr: String,
}

impl BrokerProcess {
    /// Starts `spool broker --listen 127.0.0.1:0 --data-dir DIR EXTRA...` and waits for its
    /// "listening on" line.
    pub fn start(dir: &Path, extra: &[&str]) -> BrokerProcess {
        let mut child = Command::new(SPOOL)
            .args(["broker", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap().to_string());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("broker printed no 'listening on' line");
        BrokerProcess { child, addr }
    }

    /// SIGTERM (a graceful stop), then waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        sigterm(&self.child);
        self.child.wait().unwrap()
    }

    /// SIGKILL: the process gets no chance to flush, snapshot or mark a clean shutdown.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// (VmRSS, VmHWM) of the process in KiB.
    pub fn memory_kb(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap()
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to a child process.
pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
