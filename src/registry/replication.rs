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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::Replication;
    use crate::registry::tests::start;

    const BODY: &str = r#"{"instance":{"instanceId":"x-1","hostName":"h","app":"SHOP","ipAddr":"127.0.0.1",
        "port":{"$":9001,"@enabled":"true"},"metadata":{"node":"a"},"dataCenterInfo":{"name":"MyOwn"}}}"#;

    #[tokio::test]
    async fn changes_reach_a_peer_once_and_a_renewal_restores_a_lost_instance() {
        let (a, api) = start("t-rep-a", Duration::from_secs(90)).await;
        let (b, _) = start("t-rep-b", Duration::from_secs(90)).await;
        let (to_peers, mut sent) = mpsc::unbounded_channel();
        a.replicate_to(to_peers);
        let (from_b, mut b_sent) = mpsc::unbounded_channel();
        b.replicate_to(from_b);

        assert_eq!(api.post("/eureka/apps/SHOP", BODY).await.status, 204);
        let register = sent.recv().await.expect("the register goes to the peers");
        assert!(matches!(register, Replication::Register { .. }));
        b.apply_replicated(register);
        assert!(a.renew("SHOP", "x-1").await.unwrap());
        let renew = sent.recv().await.expect("the renewal goes to the peers");
        assert!(matches!(renew, Replication::Renew { .. }));
        assert!(b.node_up("a"));

        // A peer that lost the instance registers it again from the renewal.
        assert!(b.cancel("SHOP", "x-1").await.unwrap());
        assert!(!b.node_up("a"));
        b.apply_replicated(renew);
        assert!(b.renew("SHOP", "x-1").await.unwrap());
        assert!(b.node_up("a"));
        assert_eq!(b.up_instances("shop"), vec![("127.0.0.1".to_owned(), 9001)]);

        // b sent on only its own changes (the cancel and the renew above), none it applied.
        let mut own = Vec::new();
        while let Ok(change) = b_sent.try_recv() {
            own.push(change);
        }
        assert!(
            matches!(
                own[..],
                [Replication::Cancel { .. }, Replication::Renew { .. }]
            ),
            "{own:?}"
        );
    }
}
