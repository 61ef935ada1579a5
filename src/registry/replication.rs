//! Replication between the registries of a cluster, as Eureka servers replicate to their
//! peers: every change a client (or this node's own services) makes here is sent to every other
//! node, and changes that arrive from a peer are applied without being sent on.
//!
//! Instances travel as Eureka's own JSON body (what `POST /eureka/apps/{APP}` takes), inside
//! the project's codec. A node's renewals are its heartbeat: when they stop arriving, the
//! peers' lease checks mark its instances DOWN, whether it was killed, frozen or cut off.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::instance::{Action, Instance};
use super::wire::instance_body;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Replication {
    /// Registered or changed: the instance's JSON body and its lease.
    Register {
        instance: String,
        lease_ms: u64,
    },
    /// Renewed; a peer that does not know it (or let it expire) registers it from the body.
    Renew {
        instance: String,
        lease_ms: u64,
    },
    Cancel {
        app: String,
        id: String,
    },
}

impl Replication {
    pub(crate) fn register(info: &Instance, lease: Duration) -> Replication {
        Replication::Register {
            instance: body(info),
            lease_ms: millis(lease),
        }
    }

    pub(crate) fn renew(info: &Instance, lease: Duration) -> Replication {
        Replication::Renew {
            instance: body(info),
            lease_ms: millis(lease),
        }
    }
}

/// Parses a replicated body back into an instance and its lease.
pub(crate) fn instance_of(body: &str, lease_ms: u64) -> Option<(Instance, Duration)> {
    match Instance::from_register_body(body.as_bytes()) {
        Ok(info) => Some((info, Duration::from_millis(lease_ms))),
        Err(e) => {
            tracing::warn!(error = %e, "registry: a peer sent an instance that does not parse");
            None
        }
    }
}

fn body(info: &Instance) -> String {
    instance_body(info, Action::Added)
}

fn millis(lease: Duration) -> u64 {
    u64::try_from(lease.as_millis()).unwrap_or(u64::MAX)
}
