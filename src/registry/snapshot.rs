//! Snapshot: the registry's contents at one moment, as the actor publishes them.
//!
//! The registry actor owns the only mutable copy and sends an immutable `Arc<Snapshot>` through
//! a `tokio::sync::watch` channel after every change and renewal; routes, the dashboard and
//! `Registry`'s queries read the latest one without a round trip to the actor.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::instance::{Action, Instance, Status};

/// How long changes stay in the delta, and how long an expired instance stays listed as DOWN.
pub(crate) const RETENTION: Duration = Duration::from_secs(180);

/// The lease of one instance, kept by the actor.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    pub duration: Duration,
    pub renewed: Instant,
    /// Set when the lease ran out; from then on renewals are refused until the client
    /// registers again, and after [`RETENTION`] the instance is removed.
    pub expired: Option<Instant>,
}

impl Lease {
    pub(crate) fn new(duration: Duration, now: Instant) -> Lease {
        Lease {
            duration,
            renewed: now,
            expired: None,
        }
    }

    pub(crate) fn ran_out(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.renewed) > self.duration
    }
}

/// One registered instance and what the registry knows about it.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub info: Instance,
    /// The status the client last registered with; restored when an override is removed.
    pub reported: Status,
    /// The last action, sent as `actionType` in full fetches.
    pub action: Action,
    pub lease: Lease,
}

/// A recent change, for `GET /eureka/apps/delta`.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub at: Instant,
    pub action: Action,
    /// The instance as it was right after the change.
    pub info: Arc<Instance>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Snapshot {
    /// The node this registry runs on (the dashboard shows it).
    pub node: String,
    /// App name (upper case) → instance id → record. An app with no instances is removed.
    pub apps: BTreeMap<String, BTreeMap<String, Arc<Record>>>,
    /// At most one change per instance (the latest), oldest first, none older than [`RETENTION`].
    pub changes: Vec<Change>,
    /// Increases on every change; sent as `versions__delta`.
    pub version: u64,
    /// When the registry started on this node (ms since the epoch), for its uptime.
    pub started_ms: u64,
    /// Renewals over the last minute, replicated ones included (as Eureka counts them).
    pub renewals: Renewals,
}

/// Instances grouped by app, as the wire formats render them.
pub(crate) struct AppsView<'a> {
    pub version: u64,
    pub hashcode: String,
    pub apps: Vec<AppView<'a>>,
}

pub(crate) struct AppView<'a> {
    pub name: &'a str,
    pub instances: Vec<(&'a Instance, Action)>,
}

impl Snapshot {
    pub(crate) fn records(&self) -> impl Iterator<Item = &Arc<Record>> {
        self.apps.values().flat_map(|instances| instances.values())
    }

    pub(crate) fn find(&self, app: &str, id: &str) -> Option<&Arc<Record>> {
        self.apps.get(app)?.get(id)
    }

    /// Eureka's reconcile hash of the full registry: `STATUS_count_` per status, sorted.
    pub(crate) fn hashcode(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for record in self.records() {
            *counts.entry(record.info.status.as_str()).or_default() += 1;
        }
        counts
            .iter()
            .map(|(status, n)| format!("{status}_{n}_"))
            .collect()
    }

    /// The full registry, optionally only instances matching `keep`.
    pub(crate) fn view(&self, keep: impl Fn(&Instance) -> bool) -> AppsView<'_> {
        let apps = self
            .apps
            .iter()
            .map(|(name, instances)| AppView {
                name,
                instances: instances
                    .values()
                    .filter(|r| keep(&r.info))
                    .map(|r| (&r.info, r.action))
                    .collect(),
            })
            .filter(|app| !app.instances.is_empty())
            .collect();
        AppsView {
            version: self.version,
            hashcode: self.hashcode(),
            apps,
        }
    }

    /// The recent changes, with the hash of the full registry.
    pub(crate) fn delta(&self) -> AppsView<'_> {
        let mut apps: BTreeMap<&str, Vec<(&Instance, Action)>> = BTreeMap::new();
        for change in &self.changes {
            apps.entry(&change.info.app)
                .or_default()
                .push((&change.info, change.action));
        }
        AppsView {
            version: self.version,
            hashcode: self.hashcode(),
            apps: apps
                .into_iter()
                .map(|(name, instances)| AppView { name, instances })
                .collect(),
        }
    }

    /// The address and port of every UP instance of `app` whose port is enabled, by instance id.
    pub(crate) fn up_addresses(&self, app: &str) -> Vec<(String, u16)> {
        let Some(instances) = self.apps.get(&app.to_ascii_uppercase()) else {
            return Vec::new();
        };
        instances
            .values()
            .map(|r| &r.info)
            .filter(|i| i.status == Status::Up && i.port.enabled)
            .filter_map(|i| {
                let host = if i.ip_addr.is_empty() {
                    &i.host_name
                } else {
                    &i.ip_addr
                };
                Some((host.clone(), u16::try_from(i.port.number).ok()?))
            })
            .collect()
    }
}

/// Renewals per second over the last minute, as a ring of 60 one-second buckets.
#[derive(Debug, Clone)]
pub(crate) struct Renewals {
    /// (second since the epoch, renewals in it)
    buckets: [(u64, u32); 60],
}

impl Default for Renewals {
    fn default() -> Self {
        Renewals {
            buckets: [(0, 0); 60],
        }
    }
}

impl Renewals {
    /// Counts one renewal now.
    pub(crate) fn record(&mut self) {
        let second = now_millis() / 1000;
        let bucket = &mut self.buckets[(second % 60) as usize];
        if bucket.0 != second {
            *bucket = (second, 0);
        }
        bucket.1 += 1;
    }

    /// Renewals in the 60 seconds up to now.
    pub(crate) fn last_minute(&self) -> u64 {
        let now = now_millis() / 1000;
        (self.buckets.iter())
            .filter(|(second, _)| now.saturating_sub(*second) < 60)
            .map(|(_, n)| u64::from(*n))
            .sum()
    }
}

/// Milliseconds since the Unix epoch, as Eureka's timestamps are.
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
