//! Results of a load run: one [`Point`] per scenario and connection count, the audit, and their
//! outputs: `target/bench-results/load.json`, an SVG chart (throughput and p99 against
//! connections, one line per scenario), and a markdown table for the README.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use plotters::prelude::*;
use serde::Serialize;

use crate::cluster::Comparison;
use crate::driver::Outcome;

#[derive(Debug, Serialize)]
pub struct Side {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub errors: u64,
    /// The errors by HTTP status (`connection` for a connection that failed or broke).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub answers: BTreeMap<String, u64>,
    /// Connections still waiting for an answer long after the run ended.
    #[serde(skip_serializing_if = "is_zero")]
    pub stalled: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Side {
    pub fn of(outcome: &Outcome) -> Side {
        let ms = |q| outcome.histogram.value_at_quantile(q) as f64 / 1000.0;
        Side {
            requests_per_sec: outcome.per_sec(),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            errors: outcome.errors,
            answers: answer_names(&outcome.answers),
            stalled: outcome.stalled,
        }
    }

    /// `errors 0`, or the errors by status: `errors 12 (503: 10, connection: 2)`.
    pub fn errors_line(&self) -> String {
        let mut line = format!("errors {}", self.errors);
        if !self.answers.is_empty() {
            let each: Vec<String> = self
                .answers
                .iter()
                .map(|(s, n)| format!("{s}: {n}"))
                .collect();
            line += &format!(" ({})", each.join(", "));
        }
        if self.stalled > 0 {
            line += &format!(", {} connections stalled", self.stalled);
        }
        line
    }
}

/// HTTP statuses by name, `0` (no answer) as `connection`.
pub fn answer_names(answers: &BTreeMap<u16, u64>) -> BTreeMap<String, u64> {
    let name = |s: u16| match s {
        0 => "connection".to_owned(),
        s => s.to_string(),
    };
    answers.iter().map(|(s, n)| (name(*s), *n)).collect()
}

#[derive(Debug, Serialize)]
pub struct Point {
    pub scenario: &'static str,
    pub connections: usize,
    pub agora: Side,
    pub ceiling: Side,
    /// agora's requests/s over the ceiling's, measured back to back in this run.
    pub ratio: f64,
}

impl Point {
    pub fn new(
        scenario: &'static str,
        connections: usize,
        agora: &Outcome,
        ceiling: &Outcome,
    ) -> Point {
        let (agora, ceiling) = (Side::of(agora), Side::of(ceiling));
        let ratio = agora.requests_per_sec / ceiling.requests_per_sec.max(1.0);
        Point {
            scenario,
            connections,
            agora,
            ceiling,
            ratio,
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{:<22} {:>4} conns  {:>8.0} req/s ({:>5.1}% of {:>7.0})  p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>7.2} ms  errors {}",
            self.scenario,
            self.connections,
            self.agora.requests_per_sec,
            self.ratio * 100.0,
            self.ceiling.requests_per_sec,
            self.agora.p50_ms,
            self.agora.p99_ms,
            self.agora.p999_ms,
            self.agora.errors
        )
    }
}

#[derive(Debug, Serialize)]
pub struct Audit {
    pub orders: usize,
    pub acknowledged: usize,
    /// Acknowledged orders that cannot be read back.
    pub missing: usize,
    /// SKUs where stock + sold differs from the initial stock.
    pub skus_unbalanced: usize,
    /// Orders whose event is not in the notifications exactly once.
    pub events_not_once: usize,
}

impl Audit {
    pub fn clean(&self) -> bool {
        self.lossless() && self.orders == self.acknowledged
    }

    /// `clean`, `clean (N placed without an answer)` (orders whose answer was an error but
    /// which were placed: a write of unknown outcome, or cut by a kill), or `FAILED`.
    pub fn verdict(&self) -> String {
        match (
            self.lossless(),
            self.orders.saturating_sub(self.acknowledged),
        ) {
            (false, _) => "FAILED".to_owned(),
            (true, 0) => "clean".to_owned(),
            (true, cut) => format!("clean ({cut} placed without an answer)"),
        }
    }

    /// Every acknowledged order found, stock + sold = initial, every event once; orders
    /// placed without an answer (cut by a kill) allowed.
    pub fn lossless(&self) -> bool {
        self.missing == 0 && self.skus_unbalanced == 0 && self.events_not_once == 0
    }

    pub fn line(&self) -> String {
        format!(
            "{} orders ({} acknowledged), missing {}, SKUs unbalanced {}, events not exactly once {}",
            self.orders, self.acknowledged, self.missing, self.skus_unbalanced, self.events_not_once
        )
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

/// Writes the JSON and the SVG; returns the results directory.
/// Everything one run measured.
pub struct Results<'a> {
    pub points: &'a [Point],
    /// The same scenarios through wrk, one run a side (empty without `LOAD_WRK=1`).
    pub wrk: &'a [Point],
    pub audit: Option<&'a Audit>,
    /// After wrk's runs: nothing lost, every SKU balanced, every event once.
    pub wrk_audit: Option<&'a Audit>,
    pub cluster: Option<&'a Comparison>,
}

pub fn write(results: &Results, measure: Duration, rounds: usize) -> anyhow::Result<PathBuf> {
    let Results {
        points,
        wrk,
        audit,
        wrk_audit,
        cluster,
    } = *results;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|p| p.join("bench-results"))
        .unwrap_or_else(|| "bench-results".into());
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::json!({
        "machine": machine(),
        "measured_secs_per_round": measure.as_secs_f64(),
        "rounds_per_point": rounds,
        "each_side_keeps": "its median round by requests/s (errors summed over all rounds)",
        "load_generator": "same machine, hyper HTTP/1.1 keep-alive, one task per connection",
        "points": points,
        "wrk": wrk,
        "audit_after_wrk": wrk_audit,
        "audit_after_wrk_lossless": wrk_audit.map(Audit::lossless),
        "audit": audit,
        "audit_clean": audit.map(Audit::clean),
        "cluster": cluster,
    });
    std::fs::write(dir.join("load.json"), serde_json::to_vec_pretty(&json)?)?;
    if !points.is_empty() {
        chart(points, &dir.join("load.svg"))?;
    }
    Ok(dir)
}

/// What one panel of the chart plots.
type Metric = fn(&Point) -> f64;

fn chart(points: &[Point], path: &std::path::Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1100, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(550);
    let mut scenarios: Vec<&str> = points.iter().map(|p| p.scenario).collect();
    scenarios.dedup();
    let max_conns = points.iter().map(|p| p.connections).max().unwrap_or(1) as f64;
    let panels: [(_, &str, Metric); 2] = [
        (&left, "requests/s", |p| p.agora.requests_per_sec),
        (&right, "p99 latency (ms)", |p| p.agora.p99_ms),
    ];
    for (area, label, value) in panels {
        let top = points.iter().map(value).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("agora: {label} vs connections"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d((1f64..max_conns * 1.2).log_scale(), 0f64..top)?;
        chart
            .configure_mesh()
            .x_desc("connections")
            .y_desc(label)
            .draw()?;
        for (i, scenario) in scenarios.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let series: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.scenario == *scenario)
                .map(|p| (p.connections as f64, value(p)))
                .collect();
            chart
                .draw_series(LineSeries::new(series.clone(), color.stroke_width(2)))?
                .label(*scenario)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart.draw_series(
                series
                    .into_iter()
                    .map(|xy| Circle::new(xy, 3, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// The table for the README.
pub fn markdown(results: &Results) -> String {
    let mut out = format!("Machine: {}\n", machine());
    table(&mut out, results.points);
    if !results.wrk.is_empty() {
        out.push_str("\nThe same scenarios through wrk (`wrk -t1`, one run a side):\n");
        table(&mut out, results.wrk);
    }
    if let Some(audit) = results.audit {
        out.push_str(&format!(
            "\nAudit: {}: {}\n",
            audit.line(),
            if audit.clean() { "clean" } else { "FAILED" }
        ));
    }
    if let Some(audit) = results.wrk_audit {
        let verdict = if audit.lossless() { "clean" } else { "FAILED" };
        out.push_str(&format!(
            "\nAudit after wrk (its orders are not known one by one): {}: {verdict}\n",
            audit.line()
        ));
    }
    if let Some(cluster) = results.cluster {
        out.push('\n');
        out.push_str(&cluster.markdown());
    }
    out
}

fn table(out: &mut String, points: &[Point]) {
    if !points.is_empty() {
        out.push_str("\n| scenario | conns | agora req/s | ceiling req/s | ratio | p50 ms | p99 ms | p99.9 ms | errors |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    }
    for p in points {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.0} | {:.0}% | {:.2} | {:.2} | {:.2} | {} |\n",
            p.scenario,
            p.connections,
            p.agora.requests_per_sec,
            p.ceiling.requests_per_sec,
            p.ratio * 100.0,
            p.agora.p50_ms,
            p.agora.p99_ms,
            p.agora.p999_ms,
            p.agora.errors
        ));
    }
}
