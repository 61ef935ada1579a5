//! The peer actor: this node's door for other nodes. It is the one actor with a serialisable
//! message type, so ractor_cluster advertises it to every connected node; it joins the process
//! groups `agora.peers` (everyone) and `agora.peer.{node}` (this node), which ractor keeps in
//! sync across the cluster, and that is how others find it.
//!
//! A call carries an encoded [`Envelope`]; each is served in its own task (so a slow entity
//! never holds up the others) by the routing layer (`Directory::serve`), under a span with the
//! caller's request id. A replication message goes to the local registry; a raft message to
//! this node's raft groups.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::actors::entity::RemoteRequest;
use crate::codec;
use crate::error::ShopError;
use crate::registry::{Registry, Replication};
use crate::routing::Directory;
use crate::service::{self, ServiceSpec, Supervision};

/// One request from another node, as it crosses the wire (through the project's codec).
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The calling node.
    pub from: String,
    /// The request id of the HTTP request that caused this call, logged on both nodes.
    pub request_id: Option<String>,
    pub request: RemoteRequest,
}

/// The process group every node's peer actor joins.
pub const ALL_PEERS: &str = "agora.peers";

/// The process group of one node's peer actor.
pub fn group_of(node: &str) -> String {
    format!("agora.peer.{node}")
}

#[derive(RactorClusterMessage)]
pub enum PeerMsg {
    /// A registry change made on another node (an encoded [`Replication`]).
    Replicate(Vec<u8>),
    /// An encoded [`Envelope`]; the answer is what `Directory::serve` encodes.
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// An encoded raft message for this node's groups (`raft::network`).
    #[rpc]
    Raft(Vec<u8>, RpcReplyPort<Vec<u8>>),
}

pub struct PeerActor;

pub struct PeerArgs {
    pub node: String,
    pub directory: Directory,
    pub registry: Registry,
    /// This node's raft groups, in a replicated cluster.
    pub groups: Option<Arc<dyn RaftDoor>>,
}

/// Where raft messages for this node go: its raft groups (`raft::network`).
#[async_trait::async_trait]
pub trait RaftDoor: Send + Sync + 'static {
    /// Answers an encoded raft message, encoded.
    async fn serve(&self, message: Vec<u8>) -> Vec<u8>;
}

impl Actor for PeerActor {
    type Msg = PeerMsg;
    type State = PeerArgs;
    type Arguments = PeerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<PeerMsg>,
        args: PeerArgs,
    ) -> Result<PeerArgs, ActorProcessingErr> {
        ractor::pg::join(ALL_PEERS.into(), vec![myself.get_cell()]);
        ractor::pg::join(group_of(&args.node), vec![myself.get_cell()]);
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<PeerMsg>,
        message: PeerMsg,
        state: &mut PeerArgs,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            PeerMsg::Replicate(bytes) => match codec::decode::<Replication>(&bytes) {
                Ok(change) => state.registry.apply_replicated(change),
                Err(e) => tracing::warn!(error = %e, "a peer's registry change does not decode"),
            },
            PeerMsg::Call(bytes, reply) => {
                let directory = state.directory.clone();
                tokio::spawn(async move {
                    let answer = serve_call(&directory, &bytes).await;
                    let _ = reply.send(answer);
                });
            }
            PeerMsg::Raft(bytes, reply) => match &state.groups {
                Some(groups) => {
                    let groups = groups.clone();
                    tokio::spawn(async move {
                        let _ = reply.send(groups.serve(bytes).await);
                    });
                }
                None => tracing::debug!("a raft message, but this cluster is not replicated"),
            },
        }
        Ok(())
    }
}

async fn serve_call(directory: &Directory, bytes: &[u8]) -> Vec<u8> {
    let envelope = match codec::decode::<Envelope>(bytes) {
        Ok(envelope) => envelope,
        Err(e) => {
            let error: Result<(), ShopError> = Err(ShopError::Internal(format!(
                "a request does not decode: {e}"
            )));
            return codec::encode(&error).unwrap_or_default();
        }
    };
    let request_id = envelope.request_id.unwrap_or_default();
    let span = tracing::info_span!("remote", request_id = %request_id, from = %envelope.from);
    async {
        tracing::debug!(request = ?envelope.request, "serving a request from another node");
        directory.serve(envelope.request).await
    }
    .instrument(span)
    .await
}

/// Spawns this node's peer actor under a service supervisor of `supervision`; a restarted one
/// joins its process groups again, which is how the other nodes find it.
pub async fn spawn_peer(args: PeerArgs, supervision: &Supervision) -> anyhow::Result<()> {
    let name = format!("{}/peer", args.node);
    let spawn = service::actor(move || {
        let args = PeerArgs {
            node: args.node.clone(),
            directory: args.directory.clone(),
            registry: args.registry.clone(),
            groups: args.groups.clone(),
        };
        (PeerActor, args)
    });
    let spec = ServiceSpec {
        service: "peer",
        name,
        spawn,
        escalated: service::drop_message,
    };
    supervision.spawn(spec).await?;
    Ok(())
}
