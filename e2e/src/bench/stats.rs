//! Latency samples and their summary (min / median / p90 / p99 / max).
//!
//! Percentiles use the nearest-rank method: the p-th percentile is the smallest sample that
//! at least p% of the samples do not exceed. It is always a measured value (no interpolation),
//! and with fewer than 100 samples p99 is the maximum, which is what it honestly is.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The summary of one scenario's samples, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Milliseconds with microsecond resolution.
pub fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

impl Summary {
    /// Summarizes samples in milliseconds; `None` for no samples.
    pub fn of_ms(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let r = (p / 100.0 * sorted.len() as f64).ceil() as usize;
            sorted[r.clamp(1, sorted.len()) - 1]
        };
        Some(Summary {
            n: sorted.len(),
            min_ms: sorted[0],
            median_ms: rank(50.0),
            p90_ms: rank(90.0),
            p99_ms: rank(99.0),
            max_ms: sorted[sorted.len() - 1],
            mean_ms: sorted.iter().sum::<f64>() / sorted.len() as f64,
        })
    }
}

/// Samples of one measured quantity, kept raw (the chart and later analysis need them).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Samples {
    pub ms: Vec<f64>,
}

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.ms.push(ms(d));
    }

    pub fn summary(&self) -> Option<Summary> {
        Summary::of_ms(&self.ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=10).map(f64::from).collect();
        let s = Summary::of_ms(&samples).unwrap();
        assert_eq!((s.n, s.min_ms, s.median_ms, s.p90_ms, s.p99_ms, s.max_ms), (10, 1.0, 5.0, 9.0, 10.0, 10.0));
        assert_eq!(s.mean_ms, 5.5);

        let hundred: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::of_ms(&hundred).unwrap();
        assert_eq!((s.median_ms, s.p90_ms, s.p99_ms), (50.0, 90.0, 99.0));
    }

    #[test]
    fn one_sample_and_none() {
        let s = Summary::of_ms(&[3.5]).unwrap();
        assert_eq!((s.min_ms, s.median_ms, s.p99_ms, s.max_ms), (3.5, 3.5, 3.5, 3.5));
        assert!(Summary::of_ms(&[]).is_none());
    }

    #[test]
    fn durations_become_milliseconds_with_microsecond_resolution() {
        let mut s = Samples::default();
        s.push(Duration::from_micros(1_234_567));
        assert_eq!(s.ms, vec![1234.567]);
    }
}
