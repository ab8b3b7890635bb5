//! Group commit: many callers waiting for durability share one fsync.
//!
//! At most one fsync round runs at a time, on a blocking thread. A caller whose offset is not
//! yet durable starts a round if none runs, else waits for the running one to end and checks
//! again; the next round covers everything appended before it started, so everyone who arrived
//! during a round is served by at most one more. The round itself updates the shared state when
//! it ends, so a caller that stops waiting (a cancelled request) cannot wedge the others.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::error::LogError;
use crate::fsutil::{sync_dir, sync_segment_data};

/// How far the log is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Durable {
    /// Every offset below this one is on stable storage.
    pub end: i64,
    /// Segment files created up to this count have durable directory entries.
    pub dir_generation: u64,
}

/// A segment file to fsync.
#[derive(Debug)]
pub(crate) struct SyncFile {
    pub file: Arc<File>,
    /// Bytes of data when the job was captured; past them the file may hold a zeroed runway.
    pub data_end: u64,
}

/// What one fsync round must sync, captured from the log when the round is set up.
#[derive(Debug)]
pub(crate) struct SyncJob {
    /// Segment files holding data not yet durable.
    pub files: Vec<SyncFile>,
    /// The partition directory, when segments were created since it was last synced.
    pub dir: Option<PathBuf>,
    /// Log end offset when captured: durable once the round succeeds.
    pub end: i64,
    /// Segment creation count when captured.
    pub dir_generation: u64,
}

impl SyncJob {
    fn run(&self) -> io::Result<()> {
        for f in &self.files {
            sync_segment_data(&f.file, f.data_end)?;
        }
        if let Some(dir) = &self.dir {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct State {
    durable: Durable,
    running: bool,
    failed: Option<String>,
}

/// The group-commit state of one partition log.
#[derive(Debug)]
pub(crate) struct GroupCommit {
    /// Partition directory, for error messages.
    path: PathBuf,
    state: Mutex<State>,
    notify: Notify,
    rounds: AtomicU64,
    /// Mirrors `failed.is_some()` so appends can check it without the lock.
    offline: AtomicBool,
    /// Test hook: holds the next round until released, to observe callers arriving meanwhile.
    #[cfg(test)]
    pub(crate) gate: Mutex<Option<TestGate>>,
}

/// (signal that the round started, wait for release).
#[cfg(test)]
pub(crate) type TestGate = (std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>);

impl GroupCommit {
    pub(crate) fn new(path: PathBuf, durable: Durable) -> Self {
        GroupCommit {
            path,
            state: Mutex::new(State {
                durable,
                running: false,
                failed: None,
            }),
            notify: Notify::new(),
            rounds: AtomicU64::new(0),
            offline: AtomicBool::new(false),
            #[cfg(test)]
            gate: Mutex::new(None),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Only plain assignments happen under this lock; its data stays consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn offline(&self, reason: &str) -> LogError {
        LogError::Offline {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }

    /// Current durability, or the sticky error of a failed fsync.
    pub(crate) fn durable(&self) -> Result<Durable, LogError> {
        let s = self.lock();
        match &s.failed {
            Some(reason) => Err(self.offline(reason)),
            None => Ok(s.durable),
        }
    }

    /// Fails once an fsync has failed: the log takes no more writes.
    pub(crate) fn check_online(&self) -> Result<(), LogError> {
        if self.offline.load(Ordering::Acquire) {
            self.durable()?;
        }
        Ok(())
    }

    /// fsync rounds completed (including synchronous flushes).
    pub(crate) fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Resolves once `offset` is durable. `make_job` captures what to sync; it is called
    /// without this state's lock held, by the caller that starts a round.
    pub(crate) async fn sync_to(
        self: &Arc<Self>,
        offset: i64,
        make_job: impl Fn(Durable) -> SyncJob,
    ) -> Result<(), LogError> {
        loop {
            let (notified, lead) = {
                let mut s = self.lock();
                if let Some(reason) = &s.failed {
                    return Err(self.offline(reason));
                }
                if s.durable.end > offset {
                    return Ok(());
                }
                // Created under the lock, before the running round can finish: it is registered
                // for the `notify_waiters` that ends the round.
                let notified = self.notify.notified();
                let lead = (!s.running).then_some(s.durable);
                s.running = true;
                (notified, lead)
            };
            if let Some(durable) = lead {
                // Only the leader captures a job (it takes the log's lock), so waiters do not
                // contend with appends. No await between claiming the round and spawning it.
                let round = Round {
                    commit: Arc::clone(self),
                    job: make_job(durable),
                    done: false,
                };
                // If the runtime drops the closure unrun, `Round`'s drop clears `running`.
                tokio::task::spawn_blocking(move || round.run());
            }
            notified.await;
        }
    }

    /// Runs `job` on the calling thread (flush policy, shutdown) and records its result.
    pub(crate) fn sync_now(&self, job: SyncJob) -> Result<(), LogError> {
        if let Some(reason) = &self.lock().failed {
            return Err(self.offline(reason));
        }
        let result = job.run();
        self.record(&job, &result, false);
        result.map_err(|e| self.offline(&e.to_string()))
    }

    fn record(&self, job: &SyncJob, result: &io::Result<()>, ends_round: bool) {
        {
            let mut s = self.lock();
            if ends_round {
                s.running = false;
            }
            match result {
                Ok(()) => {
                    s.durable.end = s.durable.end.max(job.end);
                    s.durable.dir_generation = s.durable.dir_generation.max(job.dir_generation);
                }
                Err(e) => {
                    tracing::error!(path = %self.path.display(), "fsync failed, log goes offline: {e}");
                    s.failed.get_or_insert_with(|| e.to_string());
                    self.offline.store(true, Ordering::Release);
                }
            }
        }
        self.rounds.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_waiters();
    }
}

/// One asynchronous round, run on a blocking thread.
struct Round {
    commit: Arc<GroupCommit>,
    job: SyncJob,
    done: bool,
}

impl Round {
    fn run(mut self) {
        #[cfg(test)]
        {
            let gate = self.commit.gate.lock().unwrap().take();
            if let Some((started, release)) = gate {
                let _ = started.send(());
                let _ = release.recv();
            }
        }
        let result = self.job.run();
        self.commit.record(&self.job, &result, true);
        self.done = true;
    }
}

impl Drop for Round {
    fn drop(&mut self) {
        if !self.done {
            self.commit.lock().running = false;
            self.commit.notify.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(file: File, end: i64) -> SyncJob {
        SyncJob {
            files: vec![SyncFile {
                file: Arc::new(file),
                data_end: u64::MAX,
            }],
            dir: None,
            end,
            dir_generation: 0,
        }
    }

    #[test]
    fn successful_sync_advances_durability() {
        let f = tempfile::tempfile().unwrap();
        let gc = GroupCommit::new(
            PathBuf::from("p"),
            Durable {
                end: 0,
                dir_generation: 0,
            },
        );
        gc.sync_now(job(f, 5)).unwrap();
        assert_eq!(gc.durable().unwrap().end, 5);
        assert_eq!(gc.rounds(), 1);
    }

    #[test]
    fn failed_fsync_takes_the_log_offline_for_good() {
        // procfs files have no fsync: the kernel answers EINVAL, a real fsync failure.
        let bad = File::open("/proc/self/stat").unwrap();
        let gc = GroupCommit::new(
            PathBuf::from("p"),
            Durable {
                end: 0,
                dir_generation: 0,
            },
        );
        assert!(matches!(
            gc.sync_now(job(bad, 5)),
            Err(LogError::Offline { .. })
        ));
        assert!(gc.check_online().is_err());
        let good = tempfile::tempfile().unwrap();
        assert!(matches!(
            gc.sync_now(job(good, 6)),
            Err(LogError::Offline { .. })
        ));
        assert_eq!(gc.lock().durable.end, 0);
    }
}
