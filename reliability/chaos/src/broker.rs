//! The broker under test: a `spool broker` child process, killed, paused and restarted on the
//! same port and data directory.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

/// How long a start may take before it counts as failed (recovery of a large log included).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Restarts after a kill may find the port still taken for a moment; tried this many times.
const START_ATTEMPTS: u32 = 10;

/// A `spool broker` process.
pub struct Broker {
    spool: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    addr: Option<SocketAddr>,
    child: Option<Child>,
    paused: bool,
}

impl Broker {
    /// A broker that will run `spool` on `data_dir`, appending its stderr to `log`.
    pub fn new(spool: PathBuf, data_dir: PathBuf, log: PathBuf) -> Broker {
        Broker {
            spool,
            data_dir,
            log,
            addr: None,
            child: None,
            paused: false,
        }
    }

    /// The address it listens on (known after the first start).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Starts the broker: the first time on a free port, then on the same one. Returns how long
    /// it took to print its "listening on" line.
    pub async fn start(&mut self) -> Result<Duration> {
        let began = Instant::now();
        let mut last = None;
        for attempt in 0..START_ATTEMPTS {
            match self.start_once().await {
                Ok(()) => return Ok(began.elapsed()),
                Err(e) => {
                    // A port still held by the killed process's sockets clears within moments.
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(4))).await;
                }
            }
        }
        Err(last.expect("at least one attempt")).context("starting the broker")
    }

    async fn start_once(&mut self) -> Result<()> {
        let listen = self
            .addr
            .map_or_else(|| "127.0.0.1:0".to_string(), |a| a.to_string());
        let mut child = Command::new(&self.spool)
            .args(["broker", "--listen", &listen])
            .args(["--group-initial-rebalance-delay-ms", "0"])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("running {}", self.spool.display()))?;
        let stderr = child.stderr.take().context("broker stderr")?;
        let (tx, rx) = oneshot::channel::<SocketAddr>();
        let log_path = self.log.clone();
        tokio::spawn(async move {
            let mut log = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .await
                .ok();
            let mut tx = Some(tx);
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(f) = log.as_mut() {
                    let _ = f.write_all(format!("{line}\n").as_bytes()).await;
                }
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
                    if let (Some(addr), Some(tx)) = (addr, tx.take()) {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        let addr = match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(addr)) => addr,
            Ok(Err(_)) => {
                let status = child.wait().await?;
                bail!(
                    "broker exited ({status}) before listening; see {}",
                    self.log.display()
                )
            }
            Err(_) => {
                let _ = child.kill().await;
                bail!("broker printed no 'listening on' line within {START_TIMEOUT:?}")
            }
        };
        if let Some(want) = self.addr {
            if want != addr {
                bail!("broker listens on {addr}, expected {want}");
            }
        }
        self.addr = Some(addr);
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    fn pid(&self) -> Result<u32> {
        self.child
            .as_ref()
            .and_then(|c| c.id())
            .context("the broker is not running")
    }

    async fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.pid()?;
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .await?;
        if !status.success() {
            bail!("kill {sig} {pid} failed: {status}");
        }
        Ok(())
    }

    /// SIGKILL, then waits for the process to be gone.
    pub async fn kill9(&mut self) -> Result<()> {
        let mut child = self.child.take().context("the broker is not running")?;
        child.kill().await.context("kill -9 the broker")?;
        self.paused = false;
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `delay`: a clean shutdown cut short, as an impatient
    /// operator or init system does. Waits for the process to be gone.
    pub async fn term_then_kill(&mut self, delay: Duration) -> Result<()> {
        self.signal("-TERM").await?;
        let mut child = self.child.take().context("the broker is not running")?;
        if tokio::time::timeout(delay, child.wait()).await.is_err() {
            child.kill().await.context("kill -9 the broker")?;
        }
        self.paused = false;
        Ok(())
    }

    /// SIGSTOP.
    pub async fn pause(&mut self) -> Result<()> {
        self.signal("-STOP").await?;
        self.paused = true;
        Ok(())
    }

    /// SIGCONT.
    pub async fn resume(&mut self) -> Result<()> {
        self.signal("-CONT").await?;
        self.paused = false;
        Ok(())
    }

    /// SIGTERM (a clean shutdown) and waits up to `limit`; kills it after that.
    pub async fn stop(&mut self, limit: Duration) -> Result<()> {
        if self.paused {
            self.resume().await?;
        }
        self.signal("-TERM").await?;
        let mut child = self.child.take().context("the broker is not running")?;
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("the broker exited with {status} on SIGTERM");
                }
                Ok(())
            }
            Err(_) => {
                let _ = child.kill().await;
                bail!("the broker did not stop within {limit:?} of SIGTERM")
            }
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // A stopped process ignores nothing but SIGKILL, which kill_on_drop sends anyway;
            // start_kill makes it explicit and immediate.
            let _ = child.start_kill();
        }
    }
}
