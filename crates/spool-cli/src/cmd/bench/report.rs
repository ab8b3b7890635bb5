//! Latency histograms and the final report, as text or JSON.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, 3 significant digits, up to an hour (longer ones count as an hour).
pub struct Latencies {
    hist: Histogram<u64>,
}

/// The highest latency recorded exactly, in microseconds.
const MAX_MICROS: u64 = 3_600_000_000;

impl Default for Latencies {
    fn default() -> Self {
        Latencies {
            hist: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"),
        }
    }
}

impl Latencies {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.hist.saturating_record(micros.min(MAX_MICROS));
    }

    /// Percentiles in milliseconds; `None` when nothing was recorded.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.hist.is_empty() {
            return None;
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Some(LatencySummary {
            p50: ms(self.hist.value_at_quantile(0.5)),
            p99: ms(self.hist.value_at_quantile(0.99)),
            p99_9: ms(self.hist.value_at_quantile(0.999)),
            max: ms(self.hist.max()),
        })
    }
}

/// Latency percentiles in milliseconds (HdrHistogram: values are exact to 3 significant digits).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// Largest.
    pub max: f64,
}

/// What a benchmark prints at the end. The JSON form has exactly these fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `produce`, `consume` or `e2e`.
    pub bench: &'static str,
    /// The topic used.
    pub topic: String,
    /// Records produced and acknowledged (produce), or read (consume, e2e).
    pub records: u64,
    /// Records that failed: not acknowledged, or refused by the producer.
    pub failed: u64,
    /// Bytes of those records (keys and values).
    pub bytes: u64,
    /// From the first send (or fetch) to the last acknowledgement (or record read).
    pub seconds: f64,
    /// `records / seconds`.
    pub records_per_sec: f64,
    /// `bytes / seconds`, in MB (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// Latency percentiles; `null` for `consume`.
    pub latency_ms: Option<LatencySummary>,
}

impl Report {
    /// A report with its rates computed (0 for a zero-length run).
    pub fn new(
        bench: &'static str,
        topic: &str,
        records: u64,
        failed: u64,
        bytes: u64,
        elapsed: Duration,
        latency_ms: Option<LatencySummary>,
    ) -> Report {
        let seconds = elapsed.as_secs_f64();
        let per_sec = |n: f64| if seconds > 0.0 { n / seconds } else { 0.0 };
        Report {
            bench,
            topic: topic.to_string(),
            records,
            failed,
            bytes,
            seconds,
            records_per_sec: per_sec(records as f64),
            mb_per_sec: per_sec(bytes as f64) / 1e6,
            latency_ms,
        }
    }

    /// The human-readable form, several lines ending in a newline.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} {}: {} records ({} failed) in {:.2} s",
            self.bench, self.topic, self.records, self.failed, self.seconds
        );
        let _ = writeln!(
            out,
            "throughput: {:.1} records/s, {:.2} MB/s",
            self.records_per_sec, self.mb_per_sec
        );
        if let Some(l) = &self.latency_ms {
            let _ = writeln!(
                out,
                "latency ms: p50 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3}",
                l.p50, l.p99, l.p99_9, l.max
            );
        }
        out
    }

    /// One JSON object on one line.
    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a report serializes")
    }
}

/// The live progress line: totals and the rate over the last interval.
pub fn progress_line(
    bench: &str,
    records: u64,
    failed: u64,
    interval_records: u64,
    interval_bytes: u64,
    interval: Duration,
) -> String {
    let secs = interval.as_secs_f64();
    let per_sec = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    let mut line = format!(
        "{bench}: {records} records, {:.1} records/s, {:.2} MB/s",
        per_sec(interval_records),
        per_sec(interval_bytes) / 1e6
    );
    if failed > 0 {
        let _ = write!(line, ", {failed} failed");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_out_in_milliseconds() {
        let mut l = Latencies::default();
        assert_eq!(l.summary(), None);
        for ms in 1..=1000u64 {
            l.record(Duration::from_millis(ms));
        }
        assert_eq!(l.hist.len(), 1000);
        let s = l.summary().unwrap();
        // Three significant digits: within 0.1% of the exact value.
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.001;
        assert!(near(s.p50, 500.0), "{s:?}");
        assert!(near(s.p99, 990.0), "{s:?}");
        assert!(near(s.p99_9, 999.0), "{s:?}");
        assert!(near(s.max, 1000.0), "{s:?}");
    }

    #[test]
    fn zero_and_huge_latencies_are_recorded_not_lost() {
        let mut l = Latencies::default();
        l.record(Duration::ZERO);
        l.record(Duration::from_secs(10 * 3600));
        assert_eq!(l.hist.len(), 2);
        let s = l.summary().unwrap();
        assert_eq!(s.p50, 0.0);
        assert!(s.max >= 3_600_000.0 * 0.999, "{s:?}");
    }

    fn sample() -> Report {
        Report::new(
            "produce",
            "t",
            2000,
            1,
            200_000,
            Duration::from_millis(500),
            Some(LatencySummary {
                p50: 1.5,
                p99: 2.25,
                p99_9: 3.0,
                max: 4.125,
            }),
        )
    }

    #[test]
    fn rates_are_per_second_and_zero_for_an_empty_run() {
        let r = sample();
        assert_eq!(r.records_per_sec, 4000.0);
        assert_eq!(r.mb_per_sec, 0.4);
        let r = Report::new("consume", "t", 0, 0, 0, Duration::ZERO, None);
        assert_eq!((r.records_per_sec, r.mb_per_sec), (0.0, 0.0));
    }

    #[test]
    fn the_text_report_names_every_figure() {
        assert_eq!(
            sample().text(),
            "produce t: 2000 records (1 failed) in 0.50 s\n\
             throughput: 4000.0 records/s, 0.40 MB/s\n\
             latency ms: p50 1.500, p99 2.250, p99.9 3.000, max 4.125\n"
        );
        let r = Report::new("consume", "t", 10, 0, 1000, Duration::from_secs(1), None);
        assert!(!r.text().contains("latency"), "{}", r.text());
    }

    #[test]
    fn the_json_report_has_the_same_fields() {
        let v: serde_json::Value = serde_json::from_str(&sample().json()).unwrap();
        assert_eq!(v["bench"], "produce");
        assert_eq!(v["topic"], "t");
        assert_eq!(v["records"], 2000);
        assert_eq!(v["failed"], 1);
        assert_eq!(v["bytes"], 200_000);
        assert_eq!(v["seconds"], 0.5);
        assert_eq!(v["records_per_sec"], 4000.0);
        assert_eq!(v["mb_per_sec"], 0.4);
        assert_eq!(v["latency_ms"]["p50"], 1.5);
        assert_eq!(v["latency_ms"]["p99"], 2.25);
        assert_eq!(v["latency_ms"]["p99_9"], 3.0);
        assert_eq!(v["latency_ms"]["max"], 4.125);
        assert!(!sample().json().contains('\n'));
        let r = Report::new("consume", "t", 1, 0, 1, Duration::from_secs(1), None);
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert!(v["latency_ms"].is_null());
    }

    #[test]
    fn the_progress_line_shows_the_interval_rate() {
        assert_eq!(
            progress_line("produce", 5000, 0, 2000, 2_000_000, Duration::from_secs(2)),
            "produce: 5000 records, 1000.0 records/s, 1.00 MB/s"
        );
        assert_eq!(
            progress_line("e2e", 10, 3, 10, 0, Duration::from_secs(1)),
            "e2e: 10 records, 10.0 records/s, 0.00 MB/s, 3 failed"
        );
    }
}
