//! Metrics: the Prometheus registry and every series agora exports at `/metrics`.
//!
//! The gateway records requests; supervisors (of entities and of services) record restarts;
//! the notifier records outbox depth, delivery errors and producer rebuilds; the notification
//! service records what it received and consumer rebuilds; the raft groups record the
//! partitions a node leads and follows and, per partition, leader changes, commit latency,
//! replication lag, log size and snapshots, and writes of unknown outcome. Names follow
//! Prometheus conventions (`_total`, `_seconds`).

use std::sync::atomic::Ordering;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::storage::FlushStats;

/// All series, registered once per process and shared by `Arc`.
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub actor_restarts: IntCounterVec,
    pub actor_passivations: IntCounterVec,
    pub actor_escalations: IntCounterVec,
    pub service_restarts: IntCounterVec,
    pub service_escalations: IntCounterVec,
    pub orders: IntCounterVec,
    pub outbox_depth: IntGauge,
    pub kafka_delivered: IntCounter,
    pub kafka_delivery_errors: IntCounter,
    pub kafka_producer_rebuilds: IntCounter,
    pub kafka_consumer_rebuilds: IntCounter,
    pub notifications_received: IntCounter,
    pub notifications_duplicate: IntCounter,
    /// Partitions this node leads and follows (replicated cluster).
    pub raft_partitions: IntGaugeVec,
    /// Per partition (label `partition`).
    pub raft_leader_changes: IntCounterVec,
    pub raft_commit_duration: HistogramVec,
    /// Per partition and replica, on the leader: entries the replica lacks.
    pub raft_replication_lag: IntGaugeVec,
    pub raft_log_entries: IntGaugeVec,
    pub raft_snapshots: IntCounterVec,
    pub raft_unknown_outcomes: IntCounter,
    storage_flushes: IntCounter,
    storage_flush_waiters: IntCounter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new_custom(Some("agora".into()), None).expect("valid prefix");
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ],
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(http_duration.clone()))
            .expect("unique metric");
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let raft_partitions = gauge_vec(
            "raft_partitions",
            "Partitions this node leads or follows",
            &["role"],
        );
        let raft_commit_duration = HistogramVec::new(
            HistogramOpts::new(
                "raft_commit_duration_seconds",
                "Time from a write's proposal to its commit, on the partition's leader",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0,
            ]),
            &["partition"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(raft_commit_duration.clone()))
            .expect("unique metric");
        let outbox_depth = IntGauge::new("outbox_depth", "Events waiting in the outbox for Kafka")
            .expect("valid metric");
        registry
            .register(Box::new(outbox_depth.clone()))
            .expect("unique metric");
        Metrics {
            http_requests: counter_vec(
                "http_requests_total",
                "HTTP requests by route, method and status",
                &["route", "method", "status"],
            ),
            http_duration,
            actor_restarts: counter_vec(
                "actor_restarts_total",
                "Entity actors restarted after a failure",
                &["kind"],
            ),
            actor_passivations: counter_vec(
                "actor_passivations_total",
                "Entity actors passivated (idle, or not worth keeping)",
                &["kind"],
            ),
            actor_escalations: counter_vec(
                "actor_escalations_total",
                "Entity actors that failed past the restart limit",
                &["kind"],
            ),
            service_restarts: counter_vec(
                "service_restarts_total",
                "Service actors (notifier, registry, links, ...) restarted after a failure",
                &["service"],
            ),
            service_escalations: counter_vec(
                "service_escalations_total",
                "Service actors that failed past the restart limit",
                &["service"],
            ),
            orders: counter_vec("orders_total", "Order outcomes", &["outcome"]),
            outbox_depth,
            kafka_delivered: counter("kafka_delivered_total", "Events acknowledged by Kafka"),
            kafka_delivery_errors: counter(
                "kafka_delivery_errors_total",
                "Failed deliveries to Kafka",
            ),
            kafka_producer_rebuilds: counter(
                "kafka_producer_rebuilds_total",
                "Kafka producers rebuilt after a fault they cannot recover from by themselves",
            ),
            kafka_consumer_rebuilds: counter(
                "kafka_consumer_rebuilds_total",
                "Kafka consumers recreated after a fatal error or a lasting error",
            ),
            notifications_received: counter(
                "notifications_received_total",
                "Events recorded by the notification service",
            ),
            notifications_duplicate: counter(
                "notifications_duplicate_total",
                "Events received again and ignored (already recorded)",
            ),
            raft_partitions,
            raft_leader_changes: counter_vec(
                "raft_leader_changes_total",
                "Changes of a partition's leader seen by this node",
                &["partition"],
            ),
            raft_commit_duration,
            raft_replication_lag: gauge_vec(
                "raft_replication_lag",
                "Log entries a replica lacks, as the partition's leader sees it",
                &["partition", "replica"],
            ),
            raft_log_entries: gauge_vec(
                "raft_log_entries",
                "Entries of a partition's log kept on this node (compacted by snapshots)",
                &["partition"],
            ),
            raft_snapshots: counter_vec(
                "raft_snapshots_total",
                "Snapshots of a partition this node built or installed",
                &["partition"],
            ),
            raft_unknown_outcomes: counter(
                "raft_unknown_outcomes_total",
                "Writes whose commit failed with an unknown outcome (a leader change, a timeout)",
            ),
            storage_flushes: counter("storage_flushes_total", "Group-commit flushes"),
            storage_flush_waiters: counter(
                "storage_flush_waiters_total",
                "Writers served by group-commit flushes",
            ),
            registry,
        }
    }

    /// Renders every series in the Prometheus text format.
    pub fn render(&self, flush: &FlushStats) -> String {
        let sync = |c: &IntCounter, v: u64| c.inc_by(v.saturating_sub(c.get()));
        sync(&self.storage_flushes, flush.flushes.load(Ordering::Relaxed));
        sync(
            &self.storage_flush_waiters,
            flush.waiters.load(Ordering::Relaxed),
        );
        let mut out = Vec::new();
        let encoder = TextEncoder::new();
        if encoder.encode(&self.registry.gather(), &mut out).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
