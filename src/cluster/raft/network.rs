//! Raft's messages between nodes: what crosses ([`RaftRpc`]), how a group's RPCs reach the
//! peer actor of another node (openraft's `RaftNetworkFactory` over ractor_cluster), and how an
//! arriving one is answered by the local group ([`serve`]).
//!
//! Every group of a node uses the same peer actor; a message names its group. A node that is
//! not connected is `Unreachable` to openraft, which backs off before trying again; a peer that
//! does not answer within the RPC's time to live is a network error.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::AnyError;
use ractor::rpc::CallResult;
use ractor::ActorRef;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::types::{GroupId, Member, NodeId, Proposal, Raft};
use super::Groups;
use crate::cluster::peer::{group_of, PeerMsg};
use crate::codec;

/// One raft message for a group of another node, or a request to the meta group.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRpc {
    /// A group's messages name the raft id they are for: a node that took over the name of a
    /// wiped one (a new incarnation, a new id) must not answer for the old id.
    Append(NodeId, GroupId, AppendEntriesRequest<Raft>),
    Vote(NodeId, GroupId, VoteRequest<NodeId>),
    Snapshot(NodeId, GroupId, InstallSnapshotRequest<Raft>),
    /// A node asks to become a member (any node passes it on to the meta group's leader),
    /// with the id of the cluster its data belongs to, if any; answered with the cluster's id.
    Join(NodeId, Member, Option<u64>),
    /// Which cluster is this node's (its id, once it has one)?
    Hello,
    /// A proposal for a group this node leads, from a node that does not.
    Propose(GroupId, Proposal),
    /// Remove this member (any node passes it on to the meta group's leader).
    Remove(NodeId),
    /// Which partitions do you lead, at which term, and who are their replicas?
    Led,
    /// Is this raft id a member, as you see the members (`None` when you are not one)?
    IsMember(NodeId),
}

/// What travels back: the group's answer, or why there is none.
type Answer<T> = Result<T, String>;

/// Answers `bytes` (an encoded [`RaftRpc`]) with the local groups.
pub async fn serve(groups: &Groups, bytes: &[u8]) -> Vec<u8> {
    let rpc = match codec::decode::<RaftRpc>(bytes) {
        Ok(rpc) => rpc,
        Err(e) => return encode::<()>(Err(format!("a raft message does not decode: {e}"))),
    };
    match rpc {
        RaftRpc::Append(to, group, rpc) => match groups.addressed(to, group) {
            Ok(raft) => encode(raft.append_entries(rpc).await.map_err(|e| e.to_string())),
            Err(why) => encode::<()>(Err(why)),
        },
        RaftRpc::Vote(to, group, rpc) => match groups.addressed(to, group) {
            Ok(raft) => encode(raft.vote(rpc).await.map_err(|e| e.to_string())),
            Err(why) => encode::<()>(Err(why)),
        },
        RaftRpc::Snapshot(to, group, rpc) => match groups.addressed(to, group) {
            Ok(raft) => encode(raft.install_snapshot(rpc).await.map_err(|e| e.to_string())),
            Err(why) => encode::<()>(Err(why)),
        },
        RaftRpc::Join(id, member, cluster) => encode(groups.admit(id, member, cluster).await),
        RaftRpc::Hello => encode(Ok(groups.cluster_id())),
        RaftRpc::Propose(group, proposal) => encode(groups.propose_here(group, proposal).await),
        RaftRpc::Remove(id) => encode(groups.remove_member(id).await),
        RaftRpc::Led => encode(Ok(groups.led())),
        RaftRpc::IsMember(id) => {
            let member = groups
                .is_member()
                .then(|| groups.members().contains_key(&id));
            encode(Ok(member))
        }
    }
}

fn encode<T: Serialize>(answer: Answer<T>) -> Vec<u8> {
    codec::encode(&answer).unwrap_or_default()
}

/// Sends `rpc` to the node named `node` and decodes its answer; `timeout` bounds the wait.
pub async fn call<T: DeserializeOwned>(
    node: &str,
    rpc: &RaftRpc,
    timeout: Duration,
) -> Result<T, CallError> {
    let peer = ractor::pg::get_members(&group_of(node))
        .into_iter()
        .find(|cell| !cell.get_id().is_local())
        .map(ActorRef::<PeerMsg>::from)
        .ok_or(CallError::Unreachable)?;
    let bytes = codec::encode(rpc).map_err(|e| CallError::Failed(e.to_string()))?;
    match peer
        .call(|reply| PeerMsg::Raft(bytes, reply), Some(timeout))
        .await
    {
        Ok(CallResult::Success(answer)) => codec::decode::<Answer<T>>(&answer)
            .map_err(|e| CallError::Failed(format!("an answer does not decode: {e}")))?
            .map_err(CallError::Refused),
        Ok(CallResult::Timeout) => Err(CallError::Failed(format!(
            "{node} did not answer within {timeout:?}"
        ))),
        _ => Err(CallError::Unreachable),
    }
}

/// Why a call to another node's groups got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("not connected")]
    Unreachable,
    #[error("{0}")]
    Failed(String),
    /// The other node answered with an error.
    #[error("{0}")]
    Refused(String),
}

impl CallError {
    /// As openraft sees it: a remote error is a network error too (either is retried).
    fn into_rpc<E: std::error::Error>(self) -> RPCError<NodeId, Member, E> {
        match self {
            CallError::Unreachable => RPCError::Unreachable(Unreachable::new(&self)),
            CallError::Failed(_) => RPCError::Network(NetworkError::new(&self)),
            CallError::Refused(why) => RPCError::Network(NetworkError::from(AnyError::error(why))),
        }
    }
}

/// Makes the connections of one group.
pub struct Network {
    pub group: GroupId,
}

impl RaftNetworkFactory<Raft> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Connection {
        Connection {
            group: self.group,
            target,
            name: node.name.clone(),
        }
    }
}

/// One group's link to one other node.
pub struct Connection {
    group: GroupId,
    target: NodeId,
    /// The other node's name: its peer actor's process group.
    name: String,
}

impl Connection {
    async fn send<T: DeserializeOwned, E: std::error::Error>(
        &self,
        rpc: RaftRpc,
        option: &RPCOption,
    ) -> Result<T, RPCError<NodeId, Member, E>> {
        call(&self.name, &rpc, option.hard_ttl())
            .await
            .map_err(CallError::into_rpc)
    }
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl RaftNetwork<Raft> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Raft>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.send(RaftRpc::Append(self.target, self.group, rpc), &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Raft>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.send(RaftRpc::Snapshot(self.target, self.group, rpc), &option)
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        self.send(RaftRpc::Vote(self.target, self.group, rpc), &option)
            .await
    }
}
