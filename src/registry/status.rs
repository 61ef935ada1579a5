//! Status: the figures of Eureka's own status block (uptime, lease expiration, renews threshold
//! and renews in the last minute, self-preservation, the peers it replicates with), and the
//! instances as a table, both read from a [`Snapshot`]. The dashboard (`dashboard.rs`) renders
//! them; [`super::Registry::status`] and [`super::Registry::instances`] hand them to the console.
//! The renewals in the last minute are counted by the snapshot's `Renewals`, which the actor
//! records into and publishes, so reading them costs no round trip.

use serde::Serialize;
use utoipa::ToSchema;

use super::instance::Status;
use super::snapshot::{now_millis, Snapshot};

/// Eureka's `renewalPercentThreshold`: below this share of the expected renewals, Eureka would
/// enter self-preservation.
const RENEWAL_PERCENT_THRESHOLD: f64 = 0.85;

/// Eureka's status block, as this node's registry has it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryStatus {
    /// Since the registry started on this node.
    pub uptime_secs: u64,
    /// Always true: a lease that runs out marks its instance DOWN.
    pub lease_expiration_enabled: bool,
    /// 85 % of the renewals the registered instances should send per minute.
    pub renews_threshold: u64,
    pub renews_last_min: u64,
    /// Always false: agora has no self-preservation and expires leases whatever the renew rate.
    pub self_preservation: bool,
    /// The other nodes whose registrations this registry holds and replicates with (Eureka's
    /// "DS Replicas"); empty on a single node.
    pub replicas: Vec<String>,
}

/// One registered instance, as the dashboard and the console list it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRow {
    pub app: String,
    pub instance_id: String,
    /// `UP`, `DOWN`, `STARTING`, `OUT_OF_SERVICE` or `UNKNOWN`.
    pub status: String,
    pub lease_expired: bool,
    /// The node in its metadata, else its host name.
    pub node: String,
    /// `ip:port`.
    pub address: String,
    /// Seconds since its last renewal.
    pub lease_age_secs: u64,
    pub lease_secs: f64,
}

impl Snapshot {
    /// The status block; `replicating` says whether this registry sends its changes to peers.
    pub(crate) fn status(&self, replicating: bool) -> RegistryStatus {
        let per_minute: f64 = (self.records())
            .filter(|r| r.lease.expired.is_none())
            .map(|r| 60.0 / r.info.lease_info.renewal_interval_in_secs.max(1) as f64)
            .sum();
        let mut replicas: Vec<String> = match replicating {
            true => (self.records())
                .filter_map(|r| r.info.metadata.get("node"))
                .filter(|node| **node != self.node)
                .cloned()
                .collect(),
            false => Vec::new(),
        };
        replicas.sort();
        replicas.dedup();
        RegistryStatus {
            uptime_secs: now_millis().saturating_sub(self.started_ms) / 1000,
            lease_expiration_enabled: true,
            renews_threshold: (per_minute * RENEWAL_PERCENT_THRESHOLD).floor() as u64,
            renews_last_min: self.renewals.last_minute(),
            self_preservation: false,
            replicas,
        }
    }

    /// Every instance, by app and instance id.
    pub(crate) fn instance_rows(&self) -> Vec<InstanceRow> {
        let now = now_millis();
        (self.records())
            .map(|record| {
                let info = &record.info;
                InstanceRow {
                    app: info.app.clone(),
                    instance_id: info.instance_id.clone(),
                    status: info.status.as_str().to_owned(),
                    lease_expired: record.lease.expired.is_some(),
                    node: (info.metadata.get("node").unwrap_or(&info.host_name)).clone(),
                    address: format!("{}:{}", info.ip_addr, info.port.number),
                    lease_age_secs: now.saturating_sub(info.lease_info.last_renewal_timestamp)
                        / 1000,
                    lease_secs: record.lease.duration.as_secs_f64(),
                }
            })
            .collect()
    }

    /// How many instances are UP.
    pub(crate) fn up_count(&self) -> usize {
        (self.records())
            .filter(|r| r.info.status == Status::Up)
            .count()
    }
}
