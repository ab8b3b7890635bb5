//! Group commit: many callers waiting for durability share one fsync.
//!
//! At most one fsync round runs at a time, on a blocking thread. A caller whose offset is not
//! yet durable asks for it ([`GroupCommit::kick`], which returns at once) and waits. Asking
//! starts a chain of rounds on a blocking thread if none runs; each round covers everything
//! appended before it started, and the chain runs another while anyone asked for an offset the
//! last round did not cover, so everyone who asked during a round is served by at most one more.
//! No waiter has to be polled for rounds to go on: the broker asks as it appends and awaits the
//! answer only when the answer's turn comes. The chain updates the shared state itself, so a
//! caller that stops waiting (a cancelled request) cannot wedge the others. A chain hands its
//! thread back every few rounds, and a panicking round takes the log offline.

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
    /// A chain of rounds is running.
    running: bool,
    /// Highest offset asked for; the chain goes on until it is durable.
    wanted: i64,
    failed: Option<String>,
}

/// Captures what a round must sync (takes the log's lock): called by the chain before each
/// round, with the durability as of then.
pub(crate) type JobSource = Box<dyn Fn(Durable) -> SyncJob + Send + Sync>;

/// The group-commit state of one partition log.
pub(crate) struct GroupCommit {
    /// Partition directory, for error messages.
    path: PathBuf,
    state: Mutex<State>,
    notify: Notify,
    rounds: AtomicU64,
    /// Mirrors `failed.is_some()` so appends can check it without the lock.
    offline: AtomicBool,
    make_job: JobSource,
    /// Held while an fsync runs and its result is recorded, by chains and by `sync_now` alike:
    /// of two overlapping fsyncs of one file, only one would see a write-back error.
    round: Mutex<()>,
    /// Test hook: holds the next round until released, to observe callers arriving meanwhile.
    #[cfg(test)]
    pub(crate) gate: Mutex<Option<TestGate>>,
}

/// (signal that the round started, wait for release).
#[cfg(test)]
pub(crate) type TestGate = (std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>);

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("path", &self.path)
            .field("state", &self.state)
            .field("rounds", &self.rounds)
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    pub(crate) fn new(path: PathBuf, durable: Durable, make_job: JobSource) -> Self {
        GroupCommit {
            path,
            state: Mutex::new(State {
                durable,
                running: false,
                wanted: -1,
                failed: None,
            }),
            notify: Notify::new(),
            rounds: AtomicU64::new(0),
            offline: AtomicBool::new(false),
            make_job,
            round: Mutex::new(()),
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

    /// Asks for `offset` to become durable and returns at once: starts a chain of rounds on a
    /// blocking thread unless one runs (it will run another round for this offset if the
    /// current one does not cover it). Must be called inside a Tokio runtime.
    pub(crate) fn kick(self: &Arc<Self>, offset: i64) {
        let start = {
            let mut s = self.lock();
            if s.failed.is_some() || s.durable.end > offset {
                return;
            }
            self.ask(&mut s, offset)
        };
        if start {
            self.start_chain();
        }
    }

    /// Records the wish for `offset` and claims the chain if none runs (true: the caller must
    /// start it, without awaiting anything first).
    fn ask(&self, s: &mut State, offset: i64) -> bool {
        s.wanted = s.wanted.max(offset);
        let start = !s.running;
        s.running = true;
        start
    }

    fn start_chain(self: &Arc<Self>) {
        Chain::spawn(Arc::clone(self), tokio::runtime::Handle::current());
    }

    /// Resolves once `offset` is durable, asking for it first (see [`kick`](Self::kick)).
    pub(crate) async fn sync_to(self: &Arc<Self>, offset: i64) -> Result<(), LogError> {
        loop {
            let (notified, start) = {
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
                (notified, self.ask(&mut s, offset))
            };
            if start {
                self.start_chain();
            }
            notified.await;
        }
    }

    /// Runs `job` on the calling thread (flush policy, shutdown) and records its result.
    pub(crate) fn sync_now(&self, job: SyncJob) -> Result<(), LogError> {
        if let Some(reason) = &self.lock().failed {
            return Err(self.offline(reason));
        }
        let result = {
            let _round = self.round.lock().unwrap_or_else(PoisonError::into_inner);
            let result = job.run();
            self.record(&job, &result, false);
            result
        };
        result.map_err(|e| self.offline(&e.to_string()))
    }

    /// Records a round's result and wakes the waiters. For a chain's round (`chained`), also
    /// decides whether the chain runs another: true while an offset asked for is not durable.
    fn record(&self, job: &SyncJob, result: &io::Result<()>, chained: bool) -> bool {
        let more = {
            let mut s = self.lock();
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
            let more = chained && s.failed.is_none() && s.wanted >= s.durable.end;
            if chained && !more {
                s.running = false;
            }
            more
        };
        self.rounds.fetch_add(1, Ordering::Relaxed);
        self.notify.notify_waiters();
        more
    }
}

/// Rounds a chain runs before it hands its blocking thread back: with steady acks=all load a
/// chain would otherwise keep it for good, and with more loaded partitions than the blocking
/// pool has threads the other partitions' chains (and all other blocking work) would starve.
const ROUNDS_PER_TURN: u32 = 32;

/// A chain of rounds, run on a blocking thread: one thread wake-up for a stream of rounds.
struct Chain {
    commit: Arc<GroupCommit>,
    runtime: tokio::runtime::Handle,
    started: bool,
    done: bool,
}

impl Chain {
    /// Queues a turn of the chain on the blocking pool; `running` is already claimed for it.
    fn spawn(commit: Arc<GroupCommit>, runtime: tokio::runtime::Handle) {
        let chain = Chain {
            commit,
            runtime: runtime.clone(),
            started: false,
            done: false,
        };
        // If the runtime drops the closure unrun, `Chain`'s drop clears `running`.
        runtime.spawn_blocking(move || chain.run());
    }

    fn run(mut self) {
        self.started = true;
        for turn in 1.. {
            // Read without holding the state's lock while the job takes the log's: appends
            // and `close` take the log's lock first.
            let durable = self.commit.lock().durable;
            let job = (self.commit.make_job)(durable);
            #[cfg(test)]
            {
                let gate = self.commit.gate.lock().unwrap().take();
                if let Some((started, release)) = gate {
                    let _ = started.send(());
                    let _ = release.recv();
                }
            }
            let more = {
                let _round = self
                    .commit
                    .round
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let result = job.run();
                self.commit.record(&job, &result, true)
            };
            if !more {
                break;
            }
            if turn >= ROUNDS_PER_TURN {
                // The next turn queues behind whatever else waits for a blocking thread.
                Chain::spawn(Arc::clone(&self.commit), self.runtime.clone());
                break;
            }
        }
        self.done = true;
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        {
            let mut s = self.commit.lock();
            s.running = false;
            if self.started {
                // A round panicked: whether its fsync happened is unknown, so no offset past
                // the durable one may be acknowledged, now or after a retry.
                tracing::error!(path = %self.commit.path.display(), "fsync round panicked, log goes offline");
                s.failed
                    .get_or_insert_with(|| "an fsync round panicked".to_string());
                self.commit.offline.store(true, Ordering::Release);
            }
        }
        self.commit.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
            Box::new(|_| unreachable!("no chain in this test")),
        );
        gc.sync_now(job(f, 5)).unwrap();
        assert_eq!(gc.durable().unwrap().end, 5);
        assert_eq!(gc.rounds(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_long_chain_hands_its_thread_back_and_goes_on() {
        // Each round makes one more offset durable, so offset 99 takes 100 rounds: several
        // turns of `ROUNDS_PER_TURN`.
        let next = Arc::new(AtomicU64::new(0));
        let gc = Arc::new(GroupCommit::new(
            PathBuf::from("p"),
            Durable {
                end: 0,
                dir_generation: 0,
            },
            Box::new(move |_| SyncJob {
                files: Vec::new(),
                dir: None,
                end: next.fetch_add(1, Ordering::Relaxed) as i64 + 1,
                dir_generation: 0,
            }),
        ));
        gc.kick(99);
        // A chain that stopped without handing on would leave this waiting for good.
        tokio::time::timeout(Duration::from_secs(10), gc.sync_to(99))
            .await
            .expect("the chain went on")
            .unwrap();
        assert_eq!(gc.rounds(), 100);
        assert!(100 > u64::from(ROUNDS_PER_TURN) * 2);
    }

    #[tokio::test]
    async fn a_round_that_panics_takes_the_log_offline() {
        let gc = Arc::new(GroupCommit::new(
            PathBuf::from("p"),
            Durable {
                end: 0,
                dir_generation: 0,
            },
            Box::new(|_| panic!("test: a round panics")),
        ));
        // Retried panics instead would keep this waiting for good.
        let result = tokio::time::timeout(Duration::from_secs(10), gc.sync_to(0)).await;
        assert!(matches!(result, Ok(Err(LogError::Offline { .. }))));
        assert!(gc.check_online().is_err());
        assert!(!gc.lock().running);
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
            Box::new(|_| unreachable!("no chain in this test")),
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
