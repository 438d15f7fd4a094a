//! n, median, p95, p99, max of a set of samples.
//!
//! Percentiles are nearest-rank (the smallest sample with at least p% of the
//! samples at or below it): a reported p99 is always a value that was
//! measured. With fewer than 100 samples p99 is the max; the table's n says
//! how much a tail figure is worth.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// `None` for no samples.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let index = (p / 100.0 * sorted.len() as f64).ceil() as usize;
            sorted[index.clamp(1, sorted.len()) - 1]
        };
        Some(Summary {
            n: sorted.len(),
            min: sorted[0],
            median: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
            max: sorted[sorted.len() - 1],
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        })
    }
}

/// Milliseconds, the unit of every latency in the report.
/// The median of `samples` (NaN when there are none).
pub fn median(samples: &[f64]) -> f64 {
    Summary::of(samples).map_or(f64::NAN, |s| s.median)
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// A `google.protobuf.Duration` from a reply, in milliseconds.
pub fn proto_ms(duration: Option<&prost_types::Duration>) -> f64 {
    duration.map_or(f64::NAN, |d| d.seconds as f64 * 1e3 + f64::from(d.nanos) / 1e6)
}

/// The steps a restore reports (`RestoreSnapshotResponse.steps`), sampled
/// over many restores, in the order they first came.
#[derive(Debug, Default)]
pub struct StepTimes(Vec<(String, Vec<f64>)>);

impl StepTimes {
    pub fn add(&mut self, steps: &[rollpoint::api::proto::RestoreStep]) {
        for step in steps {
            let took = proto_ms(step.took.as_ref());
            match self.0.iter_mut().find(|(name, _)| *name == step.name) {
                Some((_, samples)) => samples.push(took),
                None => self.0.push((step.name.clone(), vec![took])),
            }
        }
    }

    /// "prepare 1.2 ms, stop 3.4 ms, ...": each step's median.
    pub fn medians(&self) -> String {
        let text: Vec<String> =
            self.0.iter().map(|(name, samples)| format!("{name} {:.1} ms", median(samples))).collect();
        text.join(", ")
    }
}
