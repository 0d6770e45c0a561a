//! The latency chart: the cumulative distribution of the full pod cycle for each runtime,
//! on a logarithmic time axis (a 10x gap is then a fixed distance, and both curves stay
//! readable however far apart they are). SVG, text left to the viewer's fonts.

use std::path::Path;

use plotters::prelude::*;

use super::error::{BenchError, Result};

/// One curve: a label and its samples in milliseconds.
pub struct Series<'a> {
    pub label: &'a str,
    pub samples_ms: &'a [f64],
}

const COLORS: [RGBColor; 4] = [RGBColor(0x1f, 0x77, 0xb4), RGBColor(0xd6, 0x27, 0x28), GREEN, BLACK];

/// Draws the CDF of every series into an SVG file at `path`.
pub fn latency_cdf(path: &Path, title: &str, series: &[Series]) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| BenchError::Chart { path: path.to_owned(), message: e.to_string() };
    let all = series.iter().flat_map(|s| s.samples_ms.iter().copied()).filter(|v| *v > 0.0);
    let (lo, hi) = all.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return Err(fail(&"no samples to draw"));
    }
    // A margin around the data; the log axis puts its labels at round values inside.
    let (x0, x1) = (lo / 1.3, hi * 1.3);

    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(60)
        .build_cartesian_2d((x0..x1).log_scale(), 0.0..1.0)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc("latency (ms, log scale)")
        .y_desc("fraction of cycles")
        .light_line_style(WHITE.mix(0.0))
        .x_label_formatter(&|v| format_ms(*v))
        .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
        .draw()
        .map_err(|e| fail(&e))?;

    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points = cdf_steps(s.samples_ms);
        let median = crate::bench::stats::Summary::of_ms(s.samples_ms).map_or(0.0, |m| m.median_ms);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label(format!("{} (n={}, median {})", s.label, s.samples_ms.len(), format_ms(median)))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().skip(1).step_by(2).map(|&p| Circle::new(p, 2, color.filled())))
            .map_err(|e| fail(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))
}

/// The empirical CDF as a staircase: for each sorted sample, the level before and after it.
fn cdf_steps(samples: &[f64]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| *v > 0.0).collect();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let mut points = Vec::with_capacity(sorted.len() * 2);
    for (i, v) in sorted.iter().enumerate() {
        points.push((*v, i as f64 / n));
        points.push((*v, (i + 1) as f64 / n));
    }
    points
}

fn format_ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1} s", v / 1000.0)
    } else if v >= 1.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.2} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_is_a_staircase_to_one() {
        assert_eq!(cdf_steps(&[3.0, 1.0]), vec![(1.0, 0.0), (1.0, 0.5), (3.0, 0.5), (3.0, 1.0)]);
    }

    #[test]
    fn draws_an_svg_with_both_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cycle.svg");
        let fast: Vec<f64> = (1..=20).map(|i| 10.0 + f64::from(i)).collect();
        let slow: Vec<f64> = (1..=20).map(|i| 300.0 + 5.0 * f64::from(i)).collect();
        let series = [Series { label: "corral", samples_ms: &fast }, Series { label: "containerd", samples_ms: &slow }];
        latency_cdf(&path, "full pod cycle", &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("corral (n=20, median 20 ms)"));
        assert!(svg.contains("containerd (n=20, median 350 ms)"));
        assert!(svg.contains("<polyline"));

        let err = latency_cdf(&path, "empty", &[Series { label: "x", samples_ms: &[] }]).unwrap_err();
        assert!(err.to_string().contains("no samples"), "{err}");
    }
}
