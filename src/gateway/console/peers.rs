//! Peers: replication lag per partition and replica, which no single node's view holds (each
//! node knows only how far it applied). The sampler asks every other reachable member for its
//! `GET /cluster` (an open route) and compares each replica's applied index with its leader's.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::actors::entity::ClusterView;

/// Partition → replica → log entries it applied fewer than its leader.
pub type Lags = BTreeMap<u32, BTreeMap<String, u64>>;

/// How long one member may take to answer; a slower one is left out of this round.
const ASK_TIMEOUT: Duration = Duration::from_millis(500);
/// The largest `/cluster` answer read.
const MAX_VIEW_BYTES: usize = 1 << 20;

pub type PeerClient = Client<HttpConnector, Empty<Bytes>>;

pub fn client() -> PeerClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(ASK_TIMEOUT));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Asks the other reachable members of `mine` for their views, then compares.
pub async fn lags(client: &PeerClient, mine: &ClusterView) -> Lags {
    let others = (mine.members.iter()).filter(|m| m.reachable && m.name != mine.node);
    let asks = others.map(|m| async move { (m.name.clone(), ask(client, &m.http_addr).await) });
    let mut views: BTreeMap<String, ClusterView> = (futures::future::join_all(asks).await)
        .into_iter()
        .filter_map(|(name, view)| Some((name, view?)))
        .collect();
    views.insert(mine.node.clone(), mine.clone());
    compare(&views)
}

async fn ask(client: &PeerClient, http_addr: &str) -> Option<ClusterView> {
    let uri = format!("http://{http_addr}/cluster").parse().ok()?;
    let answer = async {
        let response = client.get(uri).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = response.into_body().collect().await.ok()?.to_bytes();
        (body.len() <= MAX_VIEW_BYTES)
            .then(|| serde_json::from_slice(&body).ok())
            .flatten()
    };
    tokio::time::timeout(ASK_TIMEOUT, answer).await.ok()?
}

/// From each node's own view (node → its view): per partition, how far each replica whose
/// view is known trails the leader's applied index.
fn compare(views: &BTreeMap<String, ClusterView>) -> Lags {
    let applied = |node: &str, partition: u32| {
        let view = views.get(node)?;
        let part = view.partitions.iter().find(|p| p.partition == partition)?;
        part.last_applied
    };
    let mut lags = Lags::new();
    let Some(any) = views.values().next() else {
        return lags;
    };
    for part in &any.partitions {
        let Some(leader) = &part.leader else { continue };
        let Some(lead) = applied(leader, part.partition) else {
            continue;
        };
        let replicas = part.replicas.iter().chain(&part.learners);
        let lag = replicas.filter_map(|replica| {
            let behind = lead.saturating_sub(applied(replica, part.partition)?);
            Some((replica.clone(), behind))
        });
        lags.insert(part.partition, lag.collect());
    }
    lags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::entity::PartitionView;

    fn view(node: &str, applied: u64) -> ClusterView {
        ClusterView {
            node: node.into(),
            replicas_wanted: 2,
            members: Vec::new(),
            partitions: vec![PartitionView {
                partition: 0,
                leader: Some("a".into()),
                replicas: vec!["a".into(), "b".into()],
                learners: Vec::new(),
                term: 1,
                last_applied: Some(applied),
            }],
        }
    }

    #[test]
    fn a_replica_trails_its_leader_by_the_entries_it_has_not_applied() {
        let views = BTreeMap::from([("a".into(), view("a", 10)), ("b".into(), view("b", 7))]);
        let lags = compare(&views);
        assert_eq!(lags[&0], BTreeMap::from([("a".into(), 0), ("b".into(), 3)]));
    }
}
