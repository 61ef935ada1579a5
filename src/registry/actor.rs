//! The registry actor: the one owner of the registry's state (instances, leases, recent changes).
//!
//! `Registry` (in `registry.rs`) sends it [`RegistryMsg`]s on behalf of the routes and of this
//! node's own services; it answers through `RpcReplyPort`s and publishes an immutable
//! [`Snapshot`] through a `watch` channel after every change. A timer sends it
//! [`RegistryMsg::CheckLeases`]: a lease that ran out marks its instance DOWN, and an instance
//! that stayed expired for [`RETENTION`] is removed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::instance::{Action, Instance, Status};
use super::replication::{instance_of, Replication};
use super::snapshot::{now_millis, Change, Lease, Record, Snapshot, RETENTION};

/// What the registry actor is asked to do. Requests about one instance name it by its [`Key`];
/// their reply says whether that instance was known.
pub(crate) enum RegistryMsg {
    /// Add or replace an instance; its lease starts now and lasts `lease`.
    Register {
        instance: Box<Instance>,
        lease: Duration,
        reply: RpcReplyPort<()>,
    },
    /// Extend a lease; `false` if the instance is unknown or its lease had run out.
    Renew { key: Key, reply: RpcReplyPort<bool> },
    /// Remove an instance.
    Cancel { key: Key, reply: RpcReplyPort<bool> },
    /// Force a status whatever the client reports (`PUT .../status?value=`).
    OverrideStatus {
        key: Key,
        status: Status,
        reply: RpcReplyPort<bool>,
    },
    /// Drop the override; the status becomes `status`, or else what the client last reported.
    RemoveOverride {
        key: Key,
        status: Option<Status>,
        reply: RpcReplyPort<bool>,
    },
    /// Add or replace metadata entries.
    UpdateMetadata {
        key: Key,
        entries: BTreeMap<String, String>,
        reply: RpcReplyPort<bool>,
    },
    /// Timer tick: expire leases that ran out, drop old changes and long-expired instances.
    CheckLeases,
    /// From now on, send every change made here to `sink` (the cluster sends it to the peers).
    ReplicateTo(mpsc::UnboundedSender<Replication>),
    /// A change a peer made: apply it, without sending it on.
    Replicated(Replication),
    /// Answer, to show the actor is serving (`/health`).
    Ping(RpcReplyPort<()>),
}

/// Names one instance: its app (upper case) and its instance id (decoded).
pub(crate) struct Key {
    pub app: String,
    pub id: String,
}

impl Key {
    pub(crate) fn new(app: &str, id: &str) -> Key {
        Key {
            app: app.to_ascii_uppercase(),
            id: id.to_owned(),
        }
    }
}

impl ractor::Message for RegistryMsg {}

pub(crate) struct RegistryActor;

pub(crate) struct RegistryArgs {
    pub node: String,
    /// Period of the [`RegistryMsg::CheckLeases`] timer.
    pub tick: Duration,
    pub publish: watch::Sender<Arc<Snapshot>>,
    /// When the registry first started on this node (kept across restarts of the actor).
    pub started_ms: u64,
}

pub(crate) struct RegistryState {
    snapshot: Snapshot,
    publish: watch::Sender<Arc<Snapshot>>,
    /// The lease timer; aborted when the actor stops.
    timer: JoinHandle<()>,
    /// Where changes made here go when the node is in a cluster.
    replicate: Option<mpsc::UnboundedSender<Replication>>,
}

impl Actor for RegistryActor {
    type Msg = RegistryMsg;
    type State = RegistryState;
    type Arguments = RegistryArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: RegistryArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let snapshot = Snapshot {
            node: args.node,
            started_ms: args.started_ms,
            ..Snapshot::default()
        };
        args.publish.send_replace(Arc::new(snapshot.clone()));
        let timer = myself.send_interval(args.tick, || RegistryMsg::CheckLeases);
        Ok(RegistryState {
            snapshot,
            publish: args.publish,
            timer,
            replicate: None,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.timer.abort();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        msg: RegistryMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        let changed = match msg {
            RegistryMsg::Register {
                instance,
                lease,
                reply,
            } => {
                let key = Key::new(&instance.app, &instance.instance_id);
                state.register(*instance, lease, now);
                state.replicate(&key, Replication::register);
                answer(reply, ())
            }
            RegistryMsg::Renew { key, reply } => {
                let renewed = state.renew(&key, now);
                if renewed {
                    state.replicate(&key, Replication::renew);
                }
                answer(reply, renewed)
            }
            RegistryMsg::Cancel { key, reply } => {
                let found = state.cancel(&key, now);
                if let (true, Some(sink)) = (found, &state.replicate) {
                    let _ = sink.send(Replication::Cancel {
                        app: key.app,
                        id: key.id,
                    });
                }
                answer(reply, found)
            }
            RegistryMsg::OverrideStatus { key, status, reply } => {
                let found = state.modify(&key, now, |r| {
                    r.info.overridden_status = status;
                    r.info.status = status;
                });
                state.replicate(&key, Replication::register);
                answer(reply, found)
            }
            RegistryMsg::RemoveOverride { key, status, reply } => {
                let found = state.modify(&key, now, |r| {
                    r.info.overridden_status = Status::Unknown;
                    r.info.status = status.unwrap_or(r.reported);
                });
                state.replicate(&key, Replication::register);
                answer(reply, found)
            }
            RegistryMsg::UpdateMetadata {
                key,
                entries,
                reply,
            } => {
                let found = state.modify(&key, now, |r| r.info.metadata.extend(entries));
                state.replicate(&key, Replication::register);
                answer(reply, found)
            }
            RegistryMsg::CheckLeases => state.check_leases(now),
            RegistryMsg::ReplicateTo(sink) => {
                state.replicate = Some(sink);
                false
            }
            RegistryMsg::Replicated(change) => state.apply_replicated(change, now),
            RegistryMsg::Ping(reply) => {
                let _ = reply.send(());
                false
            }
        };
        if changed {
            state.publish.send_replace(Arc::new(state.snapshot.clone()));
        }
        Ok(())
    }
}

/// Replies (a caller that gave up waiting is no error of the registry's) and reports that the
/// snapshot may have changed.
fn answer<T>(reply: RpcReplyPort<T>, value: T) -> bool {
    if reply.send(value).is_err() {
        tracing::debug!("registry: caller left before the reply");
    }
    true
}

impl RegistryState {
    /// Sends the instance `key` names, as `change` renders it, to the peers (if clustered).
    fn replicate(&self, key: &Key, change: fn(&Instance, Duration) -> Replication) {
        if let (Some(sink), Some(record)) = (&self.replicate, self.snapshot.find(&key.app, &key.id))
        {
            let _ = sink.send(change(&record.info, record.lease.duration));
        }
    }

    fn apply_replicated(&mut self, change: Replication, now: Instant) -> bool {
        match change {
            Replication::Register { instance, lease_ms } => {
                if let Some((info, lease)) = instance_of(&instance, lease_ms) {
                    self.register(info, lease, now);
                }
            }
            Replication::Renew { instance, lease_ms } => {
                if let Some((info, lease)) = instance_of(&instance, lease_ms) {
                    let key = Key::new(&info.app, &info.instance_id);
                    if !self.renew(&key, now) {
                        self.register(info, lease, now);
                    }
                }
            }
            Replication::Cancel { app, id } => {
                self.cancel(&Key::new(&app, &id), now);
            }
        }
        true
    }

    fn register(&mut self, mut info: Instance, lease: Duration, now: Instant) {
        let millis = now_millis();
        let previous = self.snapshot.find(&info.app, &info.instance_id).cloned();
        let reported = info.status;
        if info.overridden_status == Status::Unknown {
            if let Some(previous) = &previous {
                info.overridden_status = previous.info.overridden_status;
            }
        }
        if info.overridden_status != Status::Unknown {
            info.status = info.overridden_status;
        }
        let service_up = previous.map_or(0, |p| p.info.lease_info.service_up_timestamp);
        info.lease_info.registration_timestamp = millis;
        info.lease_info.last_renewal_timestamp = millis;
        info.lease_info.eviction_timestamp = 0;
        info.lease_info.service_up_timestamp = match (service_up, info.status) {
            (0, Status::Up) => millis,
            (kept, _) => kept,
        };
        info.last_updated_timestamp = millis;
        if info.last_dirty_timestamp == 0 {
            info.last_dirty_timestamp = millis;
        }
        let change = Arc::new(info.clone());
        let record = Record {
            info,
            reported,
            action: Action::Added,
            lease: Lease::new(lease, now),
        };
        self.snapshot
            .apps
            .entry(record.info.app.clone())
            .or_default()
            .insert(record.info.instance_id.clone(), Arc::new(record));
        self.record_change(Action::Added, change, now);
    }

    fn record_mut(&mut self, key: &Key) -> Option<&mut Arc<Record>> {
        self.snapshot.apps.get_mut(&key.app)?.get_mut(&key.id)
    }

    fn renew(&mut self, key: &Key, now: Instant) -> bool {
        let Some(record) = self.record_mut(key) else {
            return false;
        };
        if record.lease.expired.is_some() {
            return false;
        }
        if record.lease.ran_out(now) {
            self.expire(key, now);
            return false;
        }
        let record = Arc::make_mut(record);
        record.lease.renewed = now;
        record.info.lease_info.last_renewal_timestamp = now_millis();
        self.snapshot.renewals.record();
        true
    }

    fn cancel(&mut self, key: &Key, now: Instant) -> bool {
        let Some(instances) = self.snapshot.apps.get_mut(&key.app) else {
            return false;
        };
        let Some(record) = instances.remove(&key.id) else {
            return false;
        };
        if instances.is_empty() {
            self.snapshot.apps.remove(&key.app);
        }
        let mut info = record.info.clone();
        info.last_updated_timestamp = now_millis();
        self.record_change(Action::Deleted, Arc::new(info), now);
        true
    }

    /// Applies `edit` to a known instance and records a MODIFIED change.
    fn modify(&mut self, key: &Key, now: Instant, edit: impl FnOnce(&mut Record)) -> bool {
        let Some(record) = self.record_mut(key) else {
            return false;
        };
        let record = Arc::make_mut(record);
        edit(record);
        record.action = Action::Modified;
        record.info.last_updated_timestamp = now_millis();
        let change = Arc::new(record.info.clone());
        self.record_change(Action::Modified, change, now);
        true
    }

    fn expire(&mut self, key: &Key, now: Instant) {
        tracing::info!(
            app = key.app,
            id = key.id,
            "registry: lease ran out, instance is DOWN"
        );
        self.modify(key, now, |r| {
            r.lease.expired = Some(now);
            r.info.status = Status::Down;
            r.info.lease_info.eviction_timestamp = now_millis();
        });
    }

    fn check_leases(&mut self, now: Instant) -> bool {
        let mut ran_out = Vec::new();
        let mut gone = Vec::new();
        for record in self.snapshot.records() {
            let key = Key::new(&record.info.app, &record.info.instance_id);
            match record.lease.expired {
                None if record.lease.ran_out(now) => ran_out.push(key),
                Some(at) if now.saturating_duration_since(at) > RETENTION => gone.push(key),
                _ => {}
            }
        }
        for key in &ran_out {
            self.expire(key, now);
        }
        for key in &gone {
            self.cancel(key, now);
        }
        let changes = self.snapshot.changes.len();
        self.snapshot
            .changes
            .retain(|c| now.saturating_duration_since(c.at) <= RETENTION);
        !ran_out.is_empty() || !gone.is_empty() || changes != self.snapshot.changes.len()
    }

    /// Bumps the version and keeps `info` as the latest change of its instance.
    fn record_change(&mut self, action: Action, info: Arc<Instance>, now: Instant) {
        self.snapshot.version += 1;
        self.snapshot.changes.retain(|c| {
            (c.info.app != info.app || c.info.instance_id != info.instance_id)
                && now.saturating_duration_since(c.at) <= RETENTION
        });
        self.snapshot.changes.push(Change {
            at: now,
            action,
            info,
        });
    }
}
