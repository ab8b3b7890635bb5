//! Sleeps with microsecond precision on the async runtime, for constant-rate runs.
//!
//! tokio's timer wheel ticks every millisecond: at 10k records/s its sleeps would send records
//! in bursts of ten, each up to 1 ms after its due time, and that lateness counts as latency.
//! A Linux timerfd is a high-resolution kernel timer whose expiry wakes the runtime's own
//! epoll, so the send loop needs no thread of its own and no hand-off to the runtime per
//! record. No maintained crate wraps a timerfd for tokio; rustix makes the system calls and
//! tokio's `AsyncFd` waits for it.

use std::io;
use std::time::Duration;

/// A one-shot timer that can be re-armed.
pub(super) struct Timer {
    #[cfg(target_os = "linux")]
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

#[cfg(target_os = "linux")]
impl Timer {
    /// A timer on the monotonic clock (the one `Instant` reads), registered with the runtime.
    pub fn new() -> io::Result<Timer> {
        use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // Deprecated (tokio#8587) because a type's raw fd may change or close while tokio
        // watches it; an `OwnedFd` keeps one fd open for as long as the `AsyncFd` holds it,
        // which is what the `unsafe` replacement asks callers to promise (and this workspace
        // forbids `unsafe`).
        #[allow(deprecated)]
        let fd = tokio::io::unix::AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)?;
        Ok(Timer { fd })
    }

    /// Returns after `wait` has passed (at once for zero).
    pub async fn sleep(&mut self, wait: Duration) -> io::Result<()> {
        use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
        if wait.is_zero() {
            // An all-zero it_value would disarm the timer instead.
            return Ok(());
        }
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: wait.as_secs().try_into().unwrap_or(i64::MAX),
                tv_nsec: wait.subsec_nanos().into(),
            },
        };
        timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec)?;
        loop {
            let mut ready = self.fd.readable().await?;
            // Reading the expiry count resets the timer's readiness; the timer is re-armed
            // only by the next sleep, so clearing tokio's readiness here loses no expiry.
            let mut expiries = [0u8; 8];
            match rustix::io::read(self.fd.get_ref(), &mut expiries) {
                Ok(_) => {
                    ready.clear_ready();
                    return Ok(());
                }
                // Readiness left from an earlier expiry: not this one yet.
                Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
impl Timer {
    /// Elsewhere: tokio's timer, to within a millisecond.
    pub fn new() -> io::Result<Timer> {
        Ok(Timer {})
    }

    /// Returns after `wait` has passed, rounded up to tokio's millisecond tick.
    pub async fn sleep(&mut self, wait: Duration) -> io::Result<()> {
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn a_sleep_lasts_at_least_as_long_as_asked_and_can_be_repeated() {
        let mut timer = Timer::new().unwrap();
        for wait in [300, 1, 2_000, 150, 0] {
            let wait = Duration::from_micros(wait);
            let t0 = Instant::now();
            // A timer that never fires (zero disarms a timerfd) fails here instead of hanging.
            tokio::time::timeout(Duration::from_secs(10), timer.sleep(wait))
                .await
                .unwrap_or_else(|_| panic!("a sleep of {wait:?} did not end"))
                .unwrap();
            assert!(t0.elapsed() >= wait, "woke before {wait:?}");
        }
    }
}
