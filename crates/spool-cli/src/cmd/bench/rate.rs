//! When each record is due in constant-rate mode.

use std::time::Duration;

/// A constant send rate: record `i` (0-based) is due `i / rate` seconds after the start.
///
/// Due times come from the record's index, not from when the previous record went out, so a
/// stall does not shift the schedule: the records that should have been sent during it are
/// sent late, and their latency (measured from the due time) shows the stall.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: f64,
}

impl Schedule {
    /// `rate` records per second; must be positive and finite.
    pub fn new(rate: f64) -> Schedule {
        assert!(rate.is_finite() && rate > 0.0, "rate must be positive");
        Schedule { rate }
    }

    /// How long after the start record `i` is due.
    pub fn due(&self, i: u64) -> Duration {
        // f64 holds every index below 2^53 exactly; one division per record, so no drift.
        Duration::from_nanos((i as f64 * 1e9 / self.rate).round() as u64)
    }

    /// How many records are due strictly before `elapsed` (the count a run of that length sends).
    pub fn count_before(&self, elapsed: Duration) -> u64 {
        (elapsed.as_secs_f64() * self.rate).ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_due_at_even_intervals_from_the_start() {
        let s = Schedule::new(1000.0);
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_millis(1));
        assert_eq!(s.due(1000), Duration::from_secs(1));
        let s = Schedule::new(3.0);
        assert_eq!(s.due(1), Duration::from_nanos(333_333_333));
        assert_eq!(s.due(3), Duration::from_secs(1));
        let s = Schedule::new(0.5);
        assert_eq!(s.due(1), Duration::from_secs(2));
    }

    #[test]
    fn the_schedule_does_not_drift_over_long_runs() {
        let s = Schedule::new(10_000.0);
        assert_eq!(s.due(36_000_000), Duration::from_secs(3600));
        let s = Schedule::new(7.0);
        assert_eq!(s.due(7 * 86_400), Duration::from_secs(86_400));
    }

    #[test]
    fn a_run_sends_the_records_due_before_its_end() {
        let s = Schedule::new(10_000.0);
        assert_eq!(s.count_before(Duration::from_secs(10)), 100_000);
        assert!(s.due(99_999) < Duration::from_secs(10));
        assert_eq!(s.due(100_000), Duration::from_secs(10));
        let s = Schedule::new(3.0);
        // Due at 0, 1/3 and 2/3 s.
        assert_eq!(s.count_before(Duration::from_secs(1)), 3);
        assert_eq!(s.count_before(Duration::from_millis(500)), 2);
        assert_eq!(s.count_before(Duration::ZERO), 0);
    }

    #[test]
    #[should_panic(expected = "rate must be positive")]
    fn a_zero_rate_is_refused() {
        Schedule::new(0.0);
    }
}
