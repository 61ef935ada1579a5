//! History: the console's memory of the last five minutes, one [`Sample`] a second, in a ring
//! filled by the sampler task (`console.rs`). Each sample is the difference between two readings
//! of the node's own Prometheus series in `crate::metrics` (read in process, no scrape):
//! orders, Kafka deliveries and failures, notifications, and per route its requests, server
//! errors and latency buckets, from which p50 and p99 are interpolated as Prometheus's
//! `histogram_quantile` does. Successive cluster views are diffed into [`ClusterEvent`]s:
//! leader changes per partition and members turning reachable or not.

use std::collections::{BTreeMap, VecDeque};

use prometheus::core::Collector;
use serde::Serialize;
use utoipa::ToSchema;

use crate::metrics::Metrics;

/// Samples kept: five minutes of one a second.
pub const WINDOW: usize = 300;
/// Cluster events kept.
const EVENTS: usize = 50;
/// Routes the charts leave out: the console's own polling would drown the shop's traffic.
const OWN_ROUTES: [&str; 2] = ["/console", "/console/state"];

/// The cumulative counters of one route at one moment.
#[derive(Debug, Clone, Default)]
struct RouteReading {
    requests: u64,
    errors: u64,
    /// Cumulative count per latency bucket, in the order of `bounds`.
    buckets: Vec<u64>,
}

/// The node's cumulative counters at one moment.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    orders: u64,
    kafka_delivered: u64,
    kafka_failed: u64,
    notifications: u64,
    routes: BTreeMap<String, RouteReading>,
}

/// What one route did in one second.
#[derive(Debug, Clone, Default)]
pub struct RouteSample {
    pub requests: u64,
    pub errors: u64,
    /// Requests per latency bucket (not cumulative), in the order of [`History::bounds`].
    pub buckets: Vec<u64>,
}

/// One second of the node's life.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub at_ms: u64,
    pub orders: u64,
    pub outbox_depth: i64,
    pub kafka_delivered: u64,
    pub kafka_failed: u64,
    pub notifications: u64,
    pub routes: BTreeMap<String, RouteSample>,
}

/// A change in the cluster this node saw between two samples.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEvent {
    pub at_ms: u64,
    /// `leader` (a partition's leader changed) or `member` (a member joined, left, or turned
    /// reachable or unreachable).
    pub kind: String,
    pub partition: Option<u32>,
    pub text: String,
}

/// What the cluster looked like at the last sample: partition → leader, member → reachable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shape {
    pub leaders: BTreeMap<u32, (Option<String>, u64)>,
    pub members: BTreeMap<String, bool>,
}

/// The ring of samples and events; the sampler writes it, the state route reads it.
#[derive(Debug, Default)]
pub struct History {
    pub samples: VecDeque<Sample>,
    pub events: VecDeque<ClusterEvent>,
    /// Upper bounds of the latency buckets, in seconds (the last is +Inf).
    pub bounds: Vec<f64>,
    last: Option<Reading>,
    shape: Option<Shape>,
}

/// Reads the node's counters now.
pub fn read(metrics: &Metrics) -> (Reading, Vec<f64>) {
    let mut reading = Reading {
        orders: label_sum(&metrics.orders, "outcome", Some("placed")),
        kafka_delivered: metrics.kafka_delivered.get(),
        kafka_failed: metrics.kafka_delivery_errors.get(),
        notifications: metrics.notifications_received.get(),
        routes: BTreeMap::new(),
    };
    for family in metrics.http_requests.collect() {
        for metric in family.get_metric() {
            let (route, status) = (label(metric, "route"), label(metric, "status"));
            let count = metric.get_counter().get_value() as u64;
            let entry = reading.routes.entry(route.to_owned()).or_default();
            entry.requests += count;
            if status.starts_with('5') {
                entry.errors += count;
            }
        }
    }
    let mut bounds = Vec::new();
    for family in metrics.http_duration.collect() {
        for metric in family.get_metric() {
            let histogram = metric.get_histogram();
            let entry = reading
                .routes
                .entry(label(metric, "route").to_owned())
                .or_default();
            let buckets = histogram.get_bucket();
            bounds = buckets.iter().map(|b| b.upper_bound()).collect();
            bounds.push(f64::INFINITY);
            entry.buckets.resize(bounds.len(), 0);
            for (i, bucket) in buckets.iter().enumerate() {
                entry.buckets[i] += bucket.cumulative_count();
            }
            entry.buckets[buckets.len()] += histogram.get_sample_count();
        }
    }
    (reading, bounds)
}

fn label<'m>(metric: &'m prometheus::proto::Metric, name: &str) -> &'m str {
    (metric.get_label().iter())
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

/// The sum of a counter vector's series whose `name` label is `value` (all of them for `None`),
/// read without creating a series.
pub fn label_sum(counters: &prometheus::IntCounterVec, name: &str, value: Option<&str>) -> u64 {
    let families = counters.collect();
    (families.iter().flat_map(|f| f.get_metric()))
        .filter(|m| value.is_none_or(|value| label(m, name) == value))
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

impl History {
    /// Adds the second that ended with `reading` (the first reading only sets the baseline),
    /// and the events between the last cluster shape and `shape`.
    pub fn record(
        &mut self,
        at_ms: u64,
        (reading, bounds): (Reading, Vec<f64>),
        outbox_depth: i64,
        shape: Option<Shape>,
    ) {
        if let Some(last) = self.last.take() {
            let routes = (reading.routes.iter())
                .filter(|(route, _)| !OWN_ROUTES.contains(&route.as_str()))
                .map(|(route, now)| (route.clone(), since(now, last.routes.get(route))))
                .collect();
            self.samples.push_back(Sample {
                at_ms,
                orders: reading.orders.saturating_sub(last.orders),
                outbox_depth,
                kafka_delivered: reading.kafka_delivered.saturating_sub(last.kafka_delivered),
                kafka_failed: reading.kafka_failed.saturating_sub(last.kafka_failed),
                notifications: reading.notifications.saturating_sub(last.notifications),
                routes,
            });
            if self.samples.len() > WINDOW {
                self.samples.pop_front();
            }
        }
        if !bounds.is_empty() {
            self.bounds = bounds;
        }
        self.last = Some(reading);
        if let Some(shape) = shape {
            if let Some(before) = &self.shape {
                for event in changes(before, &shape, at_ms) {
                    self.events.push_back(event);
                }
                while self.events.len() > EVENTS {
                    self.events.pop_front();
                }
            }
            self.shape = Some(shape);
        }
    }

    /// The given quantile (0..1) of `buckets` (counts per bucket of [`History::bounds`]), in
    /// milliseconds; `None` without requests.
    pub fn quantile(&self, buckets: &[u64], q: f64) -> Option<f64> {
        let total: u64 = buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        for (i, count) in buckets.iter().enumerate() {
            if (below + count) as f64 >= rank && *count > 0 {
                let lower = if i == 0 { 0.0 } else { self.bounds[i - 1] };
                let upper = self.bounds.get(i).copied().unwrap_or(f64::INFINITY);
                if upper.is_infinite() {
                    return Some(lower * 1000.0);
                }
                let share = (rank - below as f64) / *count as f64;
                return Some((lower + (upper - lower) * share) * 1000.0);
            }
            below += count;
        }
        None
    }
}

/// What a route did since `before` (all of it when it is new).
fn since(now: &RouteReading, before: Option<&RouteReading>) -> RouteSample {
    let zero = RouteReading::default();
    let before = before.unwrap_or(&zero);
    let cumulative: Vec<u64> = (now.buckets.iter().enumerate())
        .map(|(i, n)| n.saturating_sub(before.buckets.get(i).copied().unwrap_or(0)))
        .collect();
    // Cumulative counts to counts per bucket.
    let buckets = (cumulative.iter().enumerate())
        .map(|(i, n)| n.saturating_sub(if i == 0 { 0 } else { cumulative[i - 1] }))
        .collect();
    RouteSample {
        requests: now.requests.saturating_sub(before.requests),
        errors: now.errors.saturating_sub(before.errors),
        buckets,
    }
}

/// The leader changes and member changes from `before` to `after`.
fn changes(before: &Shape, after: &Shape, at_ms: u64) -> Vec<ClusterEvent> {
    let event = |kind: &str, partition, text| ClusterEvent {
        at_ms,
        kind: kind.to_owned(),
        partition,
        text,
    };
    let name = |leader: &Option<String>| leader.clone().unwrap_or_else(|| "none".into());
    let mut events = Vec::new();
    for (partition, (leader, term)) in &after.leaders {
        match before.leaders.get(partition) {
            Some((was, _)) if was == leader => {}
            Some((was, _)) => events.push(event(
                "leader",
                Some(*partition),
                match leader {
                    Some(_) => format!(
                        "partition {partition}: leader {} → {} (term {term})",
                        name(was),
                        name(leader)
                    ),
                    None => format!(
                        "partition {partition}: leader {} lost, election under way",
                        name(was)
                    ),
                },
            )),
            None => {}
        }
    }
    for (member, reachable) in &after.members {
        let text = match (before.members.get(member), reachable) {
            (None, _) => format!("{member} joined"),
            (Some(true), false) => format!("{member} is unreachable (DOWN)"),
            (Some(false), true) => format!("{member} is reachable again (UP)"),
            _ => continue,
        };
        events.push(event("member", None, text));
    }
    for member in before.members.keys() {
        if !after.members.contains_key(member) {
            events.push(event("member", None, format!("{member} left")));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let history = History {
            bounds: vec![0.001, 0.01, f64::INFINITY],
            ..History::default()
        };
        // 10 requests under 1 ms, 10 between 1 and 10 ms.
        let p50 = history.quantile(&[10, 10, 0], 0.5).unwrap();
        assert!((p50 - 1.0).abs() < 1e-9, "{p50}");
        let p99 = history.quantile(&[10, 10, 0], 0.99).unwrap();
        assert!((p99 - 9.82).abs() < 1e-9, "{p99}");
        assert_eq!(history.quantile(&[0, 0, 0], 0.5), None);
        assert_eq!(history.quantile(&[0, 0, 4], 0.5), Some(10.0));
    }

    #[test]
    fn samples_are_differences_and_the_ring_is_bounded() {
        let metrics = Metrics::new();
        let mut history = History::default();
        for second in 0..(WINDOW as u64 + 5) {
            metrics.orders.with_label_values(&["placed"]).inc_by(2);
            (metrics
                .http_requests
                .with_label_values(&["/api/order", "POST", "503"]))
            .inc();
            history.record(second * 1000, read(&metrics), 3, None);
        }
        assert_eq!(history.samples.len(), WINDOW);
        let last = history.samples.back().unwrap();
        assert_eq!((last.orders, last.outbox_depth), (2, 3));
        assert_eq!(last.routes["/api/order"].errors, 1);
    }

    #[test]
    fn leader_moves_and_lost_members_become_events() {
        let shape = |leader: &str, n2: bool| Shape {
            leaders: BTreeMap::from([(0, (Some(leader.to_owned()), 1))]),
            members: BTreeMap::from([("n1".to_owned(), true), ("n2".to_owned(), n2)]),
        };
        let texts: Vec<String> = (changes(&shape("n2", true), &shape("n1", false), 0))
            .into_iter()
            .map(|e| e.text)
            .collect();
        assert_eq!(
            texts,
            [
                "partition 0: leader n2 → n1 (term 1)",
                "n2 is unreachable (DOWN)"
            ]
        );
    }
}
