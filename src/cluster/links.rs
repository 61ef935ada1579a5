//! Links to the other nodes: which peer is reachable, a circuit breaker per node, and the
//! calls themselves. [`Links`] is the cluster's side of the routing layer's `Remote` trait:
//! who owns a key (the [`Layout`]) and a call to the owner.
//!
//! The links actor owns the breakers and rebuilds a [`View`] every tick from three sources:
//! the process groups (a node whose TCP session closed has left them), the registry (a node
//! whose heartbeats stopped is DOWN there after its lease, which catches a frozen node whose
//! socket stays open; a connected node it has no entry for yet is "not yet heard from"), and
//! the breakers (three failed calls in a row open one for a second, then a call may probe it
//! again). Callers read the latest view without a round trip, so a call to a node known down
//! fails at once with `Unavailable` (503 with Retry-After), and report each call's outcome
//! back with a cast.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::layout::Layout;
use super::peer::{group_of, Envelope, PeerMsg, ALL_PEERS};
use super::raft::Groups;
use super::trace::current_request_id;
use crate::actors::entity::{ClusterView, Remote, RemoteRequest, Replicas};
use crate::codec;
use crate::config::Role;
use crate::error::ShopError;
use crate::registry::Registry;
use crate::service::{self, ServiceSpec, Supervision};

/// Failed calls in a row that open a node's breaker.
const FAILURES_TO_OPEN: u32 = 3;
/// How long an open breaker refuses calls before it lets a probe through.
const OPEN_FOR: Duration = Duration::from_secs(1);
/// How often the view is rebuilt.
const TICK: Duration = Duration::from_millis(200);

/// What callers know of each other node.
#[derive(Default)]
pub struct View {
    peers: HashMap<String, Reach>,
}

#[derive(Clone)]
enum Reach {
    Up(ActorRef<PeerMsg>),
    Down(&'static str),
}

/// A handle for calls to other nodes; cheap to clone.
#[derive(Clone)]
pub struct Links {
    node: String,
    layout: Arc<Layout>,
    /// In a replicated cluster: the raft groups, whose leaders own the keys (the layout then
    /// only names this node).
    groups: Option<Groups>,
    view: watch::Receiver<Arc<View>>,
    actor: ActorRef<LinksMsg>,
    timeout: Duration,
}

#[async_trait::async_trait]
impl Remote for Links {
    fn owner(&self, role: Role, key: &str) -> Result<Option<String>, ShopError> {
        if let Some(groups) = &self.groups {
            let partition = groups.partition(key);
            return match groups.leader_of(partition) {
                Some(leader) if leader == self.node => Ok(None),
                Some(leader) => Ok(Some(leader)),
                None => Err(ShopError::Unavailable(format!(
                    "partition {partition} has no leader (an election is under way): retry"
                ))),
            };
        }
        if self.layout.is_single() {
            return Ok(None);
        }
        let owner = self.layout.owner(role, key).ok_or_else(|| {
            ShopError::Unavailable(format!("no member of the cluster runs {role:?}"))
        })?;
        Ok((owner != self.node).then(|| owner.to_owned()))
    }

    fn members_with(&self, role: Role) -> Vec<String> {
        match &self.groups {
            Some(groups) => groups.members().into_values().map(|m| m.name).collect(),
            None => self.layout.members_with(role).map(str::to_owned).collect(),
        }
    }

    fn peers(&self) -> Vec<(String, bool)> {
        let view = self.view.borrow();
        let up = |node: &str| matches!(view.peers.get(node), Some(Reach::Up(_)));
        let names: Vec<String> = match &self.groups {
            Some(groups) => groups.members().into_values().map(|m| m.name).collect(),
            None => self.layout.peers().map(str::to_owned).collect(),
        };
        (names.into_iter())
            .filter(|node| *node != self.node)
            .map(|node| {
                let reachable = up(&node);
                (node, reachable)
            })
            .collect()
    }

    fn describe(&self) -> Option<ClusterView> {
        let groups = self.groups.as_ref()?;
        let peers: HashMap<String, bool> = self.peers().into_iter().collect();
        Some(groups.describe(|name| name == self.node || peers.get(name) == Some(&true)))
    }

    fn leave(&self) -> Option<bool> {
        self.groups.as_ref().map(Groups::leave)
    }

    /// Sends `request` to `node`; its answer comes back encoded. Fails at once when the node
    /// is known down, and after the remote timeout when it does not answer.
    async fn call(&self, node: &str, request: RemoteRequest) -> Result<Vec<u8>, ShopError> {
        let peer = match self.view.borrow().peers.get(node) {
            Some(Reach::Up(peer)) => peer.clone(),
            Some(Reach::Down(why)) => {
                return Err(ShopError::Unavailable(format!("node {node} is {why}")))
            }
            None => {
                return Err(ShopError::Unavailable(format!(
                    "node {node} is not known yet"
                )))
            }
        };
        let envelope = Envelope {
            from: self.node.clone(),
            request_id: current_request_id(),
            request,
        };
        let bytes = codec::encode(&envelope)
            .map_err(|e| ShopError::Internal(format!("a request does not encode: {e}")))?;
        let outcome = peer
            .call(|reply| PeerMsg::Call(bytes, reply), Some(self.timeout))
            .await;
        let answered = matches!(outcome, Ok(CallResult::Success(_)));
        let _ = self.actor.cast(LinksMsg::Outcome {
            node: node.to_owned(),
            answered,
        });
        match outcome {
            Ok(CallResult::Success(answer)) => Ok(answer),
            Ok(CallResult::Timeout) => Err(ShopError::Unavailable(format!(
                "node {node} did not answer within {:?}",
                self.timeout
            ))),
            _ => Err(ShopError::Unavailable(format!("node {node} went away"))),
        }
    }
}

impl Links {
    /// Sends a registry change to every connected peer, without waiting.
    pub fn broadcast(&self, change: Vec<u8>) {
        for cell in ractor::pg::get_members(&ALL_PEERS.to_owned()) {
            if !cell.get_id().is_local() {
                let _ = ActorRef::<PeerMsg>::from(cell).cast(PeerMsg::Replicate(change.clone()));
            }
        }
    }
}

pub enum LinksMsg {
    Tick,
    Outcome { node: String, answered: bool },
}

impl ractor::Message for LinksMsg {}

#[derive(Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

struct LinksActor;

struct LinksState {
    registry: Registry,
    /// The other nodes to watch: the members, and any node seen in the peer group.
    nodes: BTreeSet<String>,
    node: String,
    breakers: HashMap<String, Breaker>,
    publish: watch::Sender<Arc<View>>,
    timer: JoinHandle<()>,
}

struct LinksArgs {
    node: String,
    members: BTreeSet<String>,
    registry: Registry,
    publish: watch::Sender<Arc<View>>,
}

impl Actor for LinksActor {
    type Msg = LinksMsg;
    type State = LinksState;
    type Arguments = LinksArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<LinksMsg>,
        args: LinksArgs,
    ) -> Result<LinksState, ActorProcessingErr> {
        Ok(LinksState {
            registry: args.registry,
            nodes: args.members,
            node: args.node,
            breakers: HashMap::new(),
            publish: args.publish,
            timer: myself.send_interval(TICK, || LinksMsg::Tick),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<LinksMsg>,
        state: &mut LinksState,
    ) -> Result<(), ActorProcessingErr> {
        state.timer.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<LinksMsg>,
        message: LinksMsg,
        state: &mut LinksState,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        match message {
            LinksMsg::Tick => {}
            LinksMsg::Outcome { node, answered } => {
                let breaker = state.breakers.entry(node.clone()).or_default();
                if answered {
                    *breaker = Breaker::default();
                    return Ok(());
                }
                breaker.failures += 1;
                if breaker.failures >= FAILURES_TO_OPEN {
                    if breaker.open_until.is_none_or(|until| until <= now) {
                        tracing::warn!(node, "circuit breaker open: calls to it fail fast");
                    }
                    breaker.open_until = Some(now + OPEN_FOR);
                }
            }
        }
        state.publish_view(now);
        Ok(())
    }
}

impl LinksState {
    fn publish_view(&mut self, now: Instant) {
        let prefix = group_of("");
        for group in ractor::pg::which_groups() {
            if let Some(node) = group.strip_prefix(&prefix) {
                if node != self.node {
                    self.nodes.insert(node.to_owned());
                }
            }
        }
        let mut view = View::default();
        let heard = self.registry.nodes();
        for node in &self.nodes {
            let peer = ractor::pg::get_members(&group_of(node))
                .into_iter()
                .find(|cell| !cell.get_id().is_local());
            let open = self
                .breakers
                .get(node)
                .and_then(|b| b.open_until)
                .is_some_and(|until| until > now);
            let why = unreachable_because(peer.is_some(), heard.get(node).copied(), open);
            let reach = match (peer, why) {
                (Some(cell), None) => Reach::Up(ActorRef::from(cell)),
                (_, why) => Reach::Down(why.unwrap_or("not connected")),
            };
            view.peers.insert(node.clone(), reach);
        }
        self.publish.send_replace(Arc::new(view));
    }
}

/// Why a peer cannot be called, or `None` when it can, from whether it is `connected` (in the
/// process groups), what the registry says of it (`None`: nothing yet, as right after start;
/// `Some(false)`: its lease ran out) and whether its breaker is `open`.
fn unreachable_because(connected: bool, heard: Option<bool>, open: bool) -> Option<&'static str> {
    match (connected, heard) {
        (false, _) => Some("not connected"),
        (true, None) => Some("not yet heard from"),
        (true, Some(false)) => Some("DOWN (its lease ran out)"),
        (true, Some(true)) if open => Some("failing (circuit breaker open)"),
        (true, Some(true)) => None,
    }
}

/// Starts the links actor under a service supervisor of `supervision`. A restarted one starts
/// with closed breakers and publishes to the same view.
pub async fn start_links(
    layout: Arc<Layout>,
    groups: Option<Groups>,
    registry: Registry,
    timeout: Duration,
    supervision: &Supervision,
) -> anyhow::Result<Links> {
    let (publish, view) = watch::channel(Arc::new(View::default()));
    let node = layout.node().to_owned();
    let members: BTreeSet<String> = layout.peers().map(str::to_owned).collect();
    let child_node = node.clone();
    let spawn = service::actor(move || {
        let args = LinksArgs {
            node: child_node.clone(),
            members: members.clone(),
            registry: registry.clone(),
            publish: publish.clone(),
        };
        (LinksActor, args)
    });
    let spec = ServiceSpec {
        service: "links",
        name: format!("{node}/links"),
        spawn,
        escalated: service::drop_message,
    };
    Ok(Links {
        node,
        layout,
        groups,
        view,
        actor: supervision.spawn(spec).await?,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::unreachable_because;

    #[test]
    fn a_peer_not_heard_from_yet_is_not_one_whose_lease_ran_out() {
        assert_eq!(
            unreachable_because(true, None, false),
            Some("not yet heard from")
        );
        assert_eq!(
            unreachable_because(true, Some(false), false),
            Some("DOWN (its lease ran out)")
        );
        assert_eq!(
            unreachable_because(false, Some(true), false),
            Some("not connected")
        );
        assert_eq!(
            unreachable_because(true, Some(true), true),
            Some("failing (circuit breaker open)")
        );
        assert_eq!(unreachable_because(true, Some(true), false), None);
    }
}
