//! cronhook's metrics, rendered in the Prometheus text format (served by
//! `cronhook_runtime::serve_metrics`). Plain atomics: recording is a relaxed add, cheap
//! enough for the delivery hot path, and the set of series is fixed (no unbounded labels).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Returns the value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Adds `d` (may be negative).
    pub fn add(&self, d: i64) {
        self.0.fetch_add(d, Ordering::Relaxed);
    }

    /// Returns the value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Upper bounds (seconds) of the lateness histogram.
pub const LATENESS_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

/// A histogram of seconds with [`LATENESS_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; LATENESS_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation of `ms` milliseconds (negative values count as 0).
    pub fn observe_ms(&self, ms: i64) {
        let secs = ms.max(0) as f64 / 1000.0;
        for (i, b) in LATENESS_BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(ms.max(0) as u64 * 1000, Ordering::Relaxed);
    }

    /// Returns how many observations were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Every metric of a cronhook process (one per process, shared by its roles).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Ticks recorded to fire.
    pub ticks_planned: Counter,
    /// Ticks recorded as missed (outside the catch-up window).
    pub ticks_missed: Counter,
    /// Ticks recorded as skipped because their schedule was paused.
    pub ticks_skipped_paused: Counter,
    /// Ticks skipped by the overlap policy (the previous run still going).
    pub ticks_skipped_overlap: Counter,
    /// Rule fire times before the schedule's start, recorded as skipped.
    pub ticks_skipped_before_start: Counter,
    /// Rule fire times at or after the schedule's end, recorded as skipped.
    pub ticks_skipped_after_end: Counter,
    /// Catch-up ticks whose fire time the planner's pace moved later.
    pub ticks_paced: Counter,
    /// Ticks published to the queue (including republications).
    pub ticks_published: Counter,
    /// Ticks republished by reconciliation (published, no run after the grace period).
    pub ticks_republished: Counter,
    /// Parked retries dispatched by planners.
    pub retries_dispatched: Counter,
    /// Planner writes rejected by the epoch check.
    pub fenced_writes: Counter,
    /// Shards this process plans.
    pub shards_owned: Gauge,
    /// Runs that ended delivered.
    pub runs_succeeded: Counter,
    /// Runs that ended failed.
    pub runs_failed: Counter,
    /// Attempts that got a 2xx.
    pub attempts_ok: Counter,
    /// Attempts that failed.
    pub attempts_failed: Counter,
    /// Ticks received whose run was already final (deduplicated).
    pub ticks_deduplicated: Counter,
    /// Ticks held by workers now.
    pub worker_in_flight: Gauge,
    /// First-attempt send start minus nominal time.
    pub fire_lateness: Histogram,
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
}

fn gauge(out: &mut String, name: &str, help: &str, v: i64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

impl Metrics {
    /// Renders every metric in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(4096);
        counter(&mut o, "cronhook_ticks_planned_total", "Ticks recorded to fire.", self.ticks_planned.get());
        counter(
            &mut o,
            "cronhook_ticks_missed_total",
            "Ticks recorded as missed (outside the catch-up window).",
            self.ticks_missed.get(),
        );
        let _ = writeln!(
            o,
            "# HELP cronhook_ticks_skipped_total Ticks recorded as skipped, by reason.\n# TYPE cronhook_ticks_skipped_total counter\n\
             cronhook_ticks_skipped_total{{reason=\"paused\"}} {}\ncronhook_ticks_skipped_total{{reason=\"overlap\"}} {}\n\
             cronhook_ticks_skipped_total{{reason=\"before_start\"}} {}\ncronhook_ticks_skipped_total{{reason=\"after_end\"}} {}",
            self.ticks_skipped_paused.get(),
            self.ticks_skipped_overlap.get(),
            self.ticks_skipped_before_start.get(),
            self.ticks_skipped_after_end.get()
        );
        counter(
            &mut o,
            "cronhook_ticks_paced_total",
            "Catch-up ticks whose fire time the planner's pace moved later.",
            self.ticks_paced.get(),
        );
        counter(
            &mut o,
            "cronhook_ticks_published_total",
            "Ticks published to the queue, republications included.",
            self.ticks_published.get(),
        );
        counter(
            &mut o,
            "cronhook_ticks_republished_total",
            "Ticks republished by reconciliation (published, still no run after the grace period).",
            self.ticks_republished.get(),
        );
        counter(
            &mut o,
            "cronhook_retries_dispatched_total",
            "Parked retries dispatched to workers.",
            self.retries_dispatched.get(),
        );
        counter(
            &mut o,
            "cronhook_fenced_writes_total",
            "Planner writes rejected by the shard epoch check.",
            self.fenced_writes.get(),
        );
        gauge(&mut o, "cronhook_shards_owned", "Shards this process plans.", self.shards_owned.get());
        let _ = writeln!(
            o,
            "# HELP cronhook_runs_total Runs that ended, by outcome.\n# TYPE cronhook_runs_total counter\n\
             cronhook_runs_total{{outcome=\"succeeded\"}} {}\ncronhook_runs_total{{outcome=\"failed\"}} {}",
            self.runs_succeeded.get(),
            self.runs_failed.get()
        );
        let _ = writeln!(
            o,
            "# HELP cronhook_attempts_total HTTP attempts, by result.\n# TYPE cronhook_attempts_total counter\n\
             cronhook_attempts_total{{result=\"ok\"}} {}\ncronhook_attempts_total{{result=\"failed\"}} {}",
            self.attempts_ok.get(),
            self.attempts_failed.get()
        );
        counter(
            &mut o,
            "cronhook_ticks_deduplicated_total",
            "Ticks received again after their run ended.",
            self.ticks_deduplicated.get(),
        );
        gauge(&mut o, "cronhook_worker_in_flight", "Ticks held by the worker now.", self.worker_in_flight.get());
        let h = &self.fire_lateness;
        let _ = writeln!(
            o,
            "# HELP cronhook_fire_lateness_seconds First attempt's send start minus the tick's nominal time.\n\
             # TYPE cronhook_fire_lateness_seconds histogram"
        );
        for (i, b) in LATENESS_BUCKETS.iter().enumerate() {
            let _ = writeln!(
                o,
                "cronhook_fire_lateness_seconds_bucket{{le=\"{b}\"}} {}",
                h.counts[i].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(o, "cronhook_fire_lateness_seconds_bucket{{le=\"+Inf\"}} {}", h.count());
        let _ = writeln!(o, "cronhook_fire_lateness_seconds_sum {}", h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(o, "cronhook_fire_lateness_seconds_count {}", h.count());
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.ticks_republished.add(3);
        m.fire_lateness.observe_ms(7);
        m.fire_lateness.observe_ms(300);
        m.fire_lateness.observe_ms(-5);
        let text = m.render();
        assert!(text.contains("cronhook_ticks_republished_total 3\n"));
        assert!(text.contains("cronhook_fire_lateness_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("cronhook_fire_lateness_seconds_bucket{le=\"0.01\"} 2\n"));
        assert!(text.contains("cronhook_fire_lateness_seconds_bucket{le=\"0.5\"} 3\n"));
        assert!(text.contains("cronhook_fire_lateness_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("cronhook_fire_lateness_seconds_count 3\n"));
    }
}
