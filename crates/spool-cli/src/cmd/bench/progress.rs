//! The live progress line on stderr.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::report::progress_line;

/// Totals a benchmark updates as it goes and the progress task reads.
#[derive(Debug, Default)]
pub struct Counters {
    records: AtomicU64,
    bytes: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    /// `n` more records of `bytes` bytes in all.
    pub fn add(&self, n: u64, bytes: u64) {
        self.records.fetch_add(n, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// One more failed record.
    pub fn fail(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// (records, bytes, failed) so far.
    pub fn get(&self) -> (u64, u64, u64) {
        (
            self.records.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// The running progress task; [`Progress::finish`] stops it and clears its line.
pub struct Progress {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Progress {
    /// Prints `bench`'s rate every second, rewriting one line, when stderr is a terminal;
    /// otherwise one line every 5 s (logs stay readable).
    pub fn start(bench: &'static str, counters: Arc<Counters>) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let every = if tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(5)
        };
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            let (mut last, mut last_at) = ((0, 0), Instant::now());
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let (records, bytes, failed) = counters.get();
                let now = Instant::now();
                let line = progress_line(
                    bench,
                    records,
                    failed,
                    records - last.0,
                    bytes - last.1,
                    now - last_at,
                );
                (last, last_at) = ((records, bytes), now);
                let mut err = std::io::stderr().lock();
                let _ = if tty {
                    write!(err, "\r\x1b[K{line}")
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
            }
            if tty {
                let _ = write!(std::io::stderr(), "\r\x1b[K");
            }
        });
        Progress {
            stop: Some(stop),
            task,
        }
    }

    /// Stops printing; the line is cleared so the report starts on a clean terminal.
    pub async fn finish(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}
