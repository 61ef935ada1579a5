//! The notifier: forwards the sled outbox to Kafka (the transactional-outbox pattern).
//!
//! The order actor writes each event into the `outbox` tree just before the order itself (crash
//! recovery drops an event whose order was lost) and casts [`NotifierMsg::OutboxChanged`] once
//! both are durable. Only durable events are sent, so Kafka never announces an order that a
//! crash then loses. The notifier produces outbox events to the topic, keyed by order number,
//! and deletes each one only after Kafka acknowledged it, so nothing is lost while Kafka is
//! down: the outbox simply grows, and drains when Kafka is back. A crash between the
//! acknowledgement and the delete sends the event again; the notification service records each
//! event id once. The gateway asks it for [`NotifierMsg::Health`]. The producer's settings are
//! in [`crate::kafka`].
//!
//! No Kafka fault fails the notifier (its `ActorRef`, held by order actors and the routing
//! directory, stays valid): a producer that cannot recover by itself — a fatal idempotence error,
//! or deliveries that keep timing out while the broker answers metadata — is rebuilt in place,
//! with a backoff, and every event still in the outbox is sent again through the new one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio::task::{JoinHandle, JoinSet};

use self::replicated::ReplicatedOutbox;
use crate::actors::entity::Replicas;
use crate::health::ComponentHealth;
use crate::kafka::{self, OutageContext, ProducerFault};
use crate::metrics::Metrics;
use crate::storage::Storage;

/// How often the whole outbox is re-read, to retry failed deliveries.
const TICK: Duration = Duration::from_secs(1);
/// Most events handed to the producer and not yet acknowledged.
const MAX_IN_FLIGHT: usize = 10_000;
/// An error this old no longer degrades health once the outbox is empty.
const RECENT: Duration = Duration::from_secs(30);
/// The least wait between two producer rebuilds; it doubles with each rebuild up to
/// [`MAX_BACKOFF`] and falls back once a delivery succeeds.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub enum NotifierMsg {
    /// New events may be in the outbox: send them.
    OutboxChanged,
    /// How is delivery to Kafka going?
    Health(RpcReplyPort<ComponentHealth>),
    /// Periodic: re-read the whole outbox and send whatever is not in flight.
    Tick,
    /// Kafka acknowledged the event stored under this outbox key, sent by the producer of this
    /// `generation`.
    Delivered { key: u64, generation: u64 },
    /// The event under this outbox key was not delivered; it stays in the outbox.
    DeliveryFailed {
        key: u64,
        generation: u64,
        error: String,
        fault: ProducerFault,
    },
    /// librdkafka reported that the cluster cannot be reached, or (`fatal`) that the producer
    /// of this `generation` is unusable: then it is rebuilt.
    ClientError {
        error: String,
        fatal: bool,
        generation: u64,
    },
    /// Whether the broker answered metadata while deliveries of this `generation` time out.
    Probed { generation: u64, answers: bool },
    /// The backoff has passed: rebuild the producer.
    Rebuild { reason: String },
    /// In a replicated cluster: the removal of these delivered events was committed, or not.
    Removed { keys: Vec<u64>, removed: bool },
}

impl ractor::Message for NotifierMsg {}

pub struct NotifierArgs {
    pub storage: Storage,
    pub brokers: String,
    pub topic: String,
    pub metrics: Arc<Metrics>,
    /// In a replicated cluster: only the leader of an event's partition sends it.
    pub replicas: Option<Arc<dyn Replicas>>,
    /// The broker's log dies with this process (the embedded one): see
    /// [`Storage::event_delivered`].
    pub keep_delivered: bool,
}

pub struct Notifier;

pub struct NotifierState {
    storage: Storage,
    /// `Some` in a replicated cluster (see `replicated`).
    replicated: Option<ReplicatedOutbox>,
    keep_delivered: bool,
    brokers: String,
    topic: String,
    metrics: Arc<Metrics>,
    /// Counts producers built; every delivery outcome names the one that sent it, so that an
    /// outcome from a replaced producer does not touch the new one's bookkeeping.
    generation: u64,
    /// `Some` until `post_stop`, which drops it off the async threads (dropping flushes).
    producer: Option<FutureProducer<OutageContext>>,
    /// Outbox keys handed to the producer whose outcome has not arrived: never sent twice at once.
    in_flight: HashSet<u64>,
    /// The highest outbox key ever sent: `OutboxChanged` reads only past it, a tick reads all.
    sent_up_to: Option<u64>,
    /// Outbox keys whose record does not decode: logged once, left for an operator.
    unreadable: HashSet<u64>,
    /// One task per in-flight delivery, awaiting its acknowledgement.
    deliveries: JoinSet<()>,
    ticker: JoinHandle<()>,
    /// The latest error since the last successful delivery, and when it happened.
    failing: Option<(String, Instant)>,
    /// A metadata probe is running (at most one at a time).
    probing: bool,
    /// A rebuild is scheduled (at most one at a time).
    rebuild_pending: bool,
    /// No rebuild before this instant; `backoff` is the wait after the next one.
    next_rebuild_at: Instant,
    backoff: Duration,
}

/// Starts the notifier under `supervisor`.
pub async fn spawn_notifier(
    name: String,
    args: NotifierArgs,
    supervisor: ractor::ActorCell,
) -> anyhow::Result<ActorRef<NotifierMsg>> {
    let (notifier, _) = Actor::spawn_linked(Some(name.clone()), Notifier, args, supervisor)
        .await
        .with_context(|| format!("cannot start the notifier {name}"))?;
    Ok(notifier)
}

impl Actor for Notifier {
    type Msg = NotifierMsg;
    type State = NotifierState;
    type Arguments = NotifierArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NotifierMsg>,
        args: NotifierArgs,
    ) -> Result<NotifierState, ActorProcessingErr> {
        let producer = build_producer(&args.brokers, &myself, 0)?;
        let ticker = myself.send_interval(TICK, || NotifierMsg::Tick);
        let mut state = NotifierState {
            storage: args.storage,
            replicated: args.replicas.map(ReplicatedOutbox::new),
            keep_delivered: args.keep_delivered,
            brokers: args.brokers,
            topic: args.topic,
            metrics: args.metrics,
            generation: 0,
            producer: Some(producer),
            in_flight: HashSet::new(),
            sent_up_to: None,
            unreadable: HashSet::new(),
            deliveries: JoinSet::new(),
            ticker,
            failing: None,
            probing: false,
            rebuild_pending: false,
            next_rebuild_at: Instant::now(),
            backoff: MIN_BACKOFF,
        };
        state.pump(&myself, true)?;
        tracing::info!(topic = %state.topic, "notifier started");
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<NotifierMsg>,
        msg: NotifierMsg,
        state: &mut NotifierState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NotifierMsg::OutboxChanged => state.pump(&myself, false)?,
            NotifierMsg::Tick => {
                if let Some(outbox) = &mut state.replicated {
                    outbox.propose_removals(&state.storage, &myself);
                }
                state.pump(&myself, true)?;
                // `outbox.len()` walks the whole tree: once a tick, never once per event (with a
                // backlog of 100k events that turned every delivery into a scan).
                state.metrics.outbox_depth.set(state.depth());
            }
            NotifierMsg::Health(reply) => {
                let _ = reply.send(state.health());
            }
            NotifierMsg::Delivered { key, generation } => {
                if generation == state.generation {
                    state.in_flight.remove(&key);
                    state.backoff = MIN_BACKOFF;
                }
                // An acknowledgement from a replaced producer still means Kafka has the event.
                match &mut state.replicated {
                    Some(outbox) => outbox.delivered(key),
                    None => (state.storage.event_delivered(key, state.keep_delivered))
                        .context("cannot delete a delivered event from the outbox")?,
                }
                state.metrics.kafka_delivered.inc();
                state.failing = None;
                state.reap();
            }
            NotifierMsg::DeliveryFailed {
                key,
                generation,
                error,
                fault,
            } => {
                state.metrics.kafka_delivery_errors.inc();
                if generation != state.generation {
                    // The new producer has been handed this event again.
                    return Ok(());
                }
                state.in_flight.remove(&key);
                tracing::warn!(%error, "event not delivered to Kafka; it stays in the outbox");
                match fault {
                    ProducerFault::Fatal => state.want_rebuild(&myself, error.clone()),
                    ProducerFault::TimedOut => state.probe(&myself),
                    ProducerFault::Other => {}
                }
                state.fail(error);
                state.reap();
            }
            NotifierMsg::ClientError {
                error,
                fatal,
                generation,
            } => {
                // A replaced producer's complaints say nothing of the one in use.
                if generation == state.generation {
                    if fatal {
                        state.want_rebuild(&myself, error.clone());
                    }
                    state.fail(error);
                }
            }
            NotifierMsg::Probed {
                generation,
                answers,
            } => {
                state.probing = false;
                if answers && generation == state.generation {
                    let reason = "deliveries time out while the broker answers metadata";
                    state.want_rebuild(&myself, reason.into());
                }
            }
            NotifierMsg::Rebuild { reason } => state.rebuild(&myself, &reason)?,
            NotifierMsg::Removed { keys, removed } => {
                if let Some(outbox) = &mut state.replicated {
                    outbox.removed(keys, removed);
                }
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<NotifierMsg>,
        state: &mut NotifierState,
    ) -> Result<(), ActorProcessingErr> {
        state.ticker.abort();
        state.deliveries.abort_all();
        if let Some(producer) = state.producer.take() {
            // Dropping purges and flushes for up to 500 ms and joins librdkafka's thread.
            tokio::task::spawn_blocking(move || drop(producer)).await?;
        }
        Ok(())
    }
}

/// A producer of this `generation` whose client errors reach `notifier`.
fn build_producer(
    brokers: &str,
    notifier: &ActorRef<NotifierMsg>,
    generation: u64,
) -> anyhow::Result<FutureProducer<OutageContext>> {
    let notifier = notifier.clone();
    kafka::producer(brokers, move |error, fatal| {
        let _ = notifier.cast(NotifierMsg::ClientError {
            error,
            fatal,
            generation,
        });
    })
}

impl NotifierState {
    /// Schedules a rebuild of the producer once the backoff allows, unless one is scheduled.
    fn want_rebuild(&mut self, myself: &ActorRef<NotifierMsg>, reason: String) {
        if self.rebuild_pending {
            return;
        }
        self.rebuild_pending = true;
        let wait = self
            .next_rebuild_at
            .saturating_duration_since(Instant::now());
        myself.send_after(wait, move || NotifierMsg::Rebuild { reason });
    }

    /// Replaces the producer and sends the whole outbox again through the new one: outcomes
    /// of the old one's deliveries no longer count, and it is dropped off the async threads.
    /// If the new producer cannot be built, the old one stays and a rebuild is tried again.
    fn rebuild(&mut self, myself: &ActorRef<NotifierMsg>, reason: &str) -> anyhow::Result<()> {
        self.rebuild_pending = false;
        self.next_rebuild_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        let generation = self.generation + 1;
        let producer = match build_producer(&self.brokers, myself, generation) {
            Ok(producer) => producer,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "cannot rebuild the Kafka producer");
                self.fail(format!("{e:#}"));
                self.want_rebuild(myself, reason.to_owned());
                return Ok(());
            }
        };
        self.generation = generation;
        if let Some(old) = self.producer.replace(producer) {
            tokio::task::spawn_blocking(move || drop(old));
        }
        self.deliveries.abort_all();
        self.in_flight.clear();
        self.sent_up_to = None;
        self.metrics.kafka_producer_rebuilds.inc();
        tracing::warn!(reason, generation, "Kafka producer rebuilt");
        self.pump(myself, true)
    }

    /// Asks the broker for the topic's metadata through the producer (unless a probe runs): if
    /// it answers while deliveries time out, the producer is stuck.
    fn probe(&mut self, myself: &ActorRef<NotifierMsg>) {
        let Some(producer) = self.producer.clone().filter(|_| !self.probing) else {
            return;
        };
        self.probing = true;
        let (notifier, topic, generation) = (myself.clone(), self.topic.clone(), self.generation);
        tokio::task::spawn_blocking(move || {
            let answers = kafka::topic_answers(producer.client(), &topic);
            let _ = notifier.cast(NotifierMsg::Probed {
                generation,
                answers,
            });
        });
    }

    /// Sends durable outbox events that are not in flight: all of them (`full`), or those past
    /// the highest key sent so far (keys are written in increasing order).
    fn pump(&mut self, myself: &ActorRef<NotifierMsg>, full: bool) -> anyhow::Result<()> {
        let Some(producer) = &self.producer else {
            return Ok(());
        };
        let after = self.sent_up_to.filter(|_| !full);
        let outbox = self.storage.outbox.clone();
        for entry in outbox.entries_after(after.as_ref()) {
            if self.in_flight.len() >= MAX_IN_FLIGHT {
                break;
            }
            let (key, stored) = entry.context("cannot read the outbox")?;
            match &self.replicated {
                // Every applied entry is committed; events of partitions led elsewhere wait.
                Some(outbox) if !outbox.sends(key) => continue,
                Some(_) => {}
                // Keys only grow, so every later one is newer still; the writer's flush wakes us.
                None if !self.storage.is_durable_event(key) => break,
                None => {}
            }
            if self.in_flight.contains(&key) || self.unreadable.contains(&key) {
                continue;
            }
            let event = match stored.read() {
                Ok(event) => event,
                Err(e) => {
                    tracing::error!(error = %e, "outbox record skipped");
                    self.unreadable.insert(key);
                    continue;
                }
            };
            let order_number = event.order_number.to_string();
            let payload = event.to_json().to_string();
            let record = FutureRecord::to(&self.topic)
                .key(&order_number)
                .payload(&payload);
            let delivery = match producer.send_result(record) {
                Ok(delivery) => delivery,
                Err((error, _)) => {
                    // Typically the local queue is full; the next tick tries again.
                    self.metrics.kafka_delivery_errors.inc();
                    self.failing = Some((error.to_string(), Instant::now()));
                    if kafka::producer_fault(&error) == ProducerFault::Fatal {
                        self.want_rebuild(myself, error.to_string());
                    }
                    break;
                }
            };
            if self.sent_up_to.is_none_or(|high| key > high) {
                self.sent_up_to = Some(key);
            }
            self.in_flight.insert(key);
            let (notifier, generation) = (myself.clone(), self.generation);
            self.deliveries.spawn(async move {
                let outcome = match delivery.await {
                    Ok(Ok(_)) => NotifierMsg::Delivered { key, generation },
                    Ok(Err((error, _))) => NotifierMsg::DeliveryFailed {
                        key,
                        generation,
                        fault: kafka::producer_fault(&error),
                        error: error.to_string(),
                    },
                    Err(_) => NotifierMsg::DeliveryFailed {
                        key,
                        generation,
                        error: "the producer was dropped".into(),
                        fault: ProducerFault::Other,
                    },
                };
                let _ = notifier.cast(outcome);
            });
        }
        Ok(())
    }

    /// Drops finished delivery tasks from the set.
    fn reap(&mut self) {
        while self.deliveries.try_join_next().is_some() {}
    }

    fn fail(&mut self, error: String) {
        self.failing = Some((error, Instant::now()));
    }

    fn depth(&self) -> i64 {
        i64::try_from(self.storage.outbox.len()).unwrap_or(i64::MAX)
    }

    fn health(&self) -> ComponentHealth {
        let depth = self.depth();
        match &self.failing {
            Some((error, at)) if depth > 0 || at.elapsed() < RECENT => ComponentHealth::degraded(
                format!("Kafka delivery failing ({error}); {depth} events wait in the outbox"),
            ),
            _ if !self.unreadable.is_empty() => ComponentHealth::degraded(format!(
                "{} outbox records do not decode; {depth} events in the outbox",
                self.unreadable.len()
            )),
            _ => ComponentHealth::up(format!("{depth} events in the outbox")),
        }
    }
}

mod replicated;
#[cfg(test)]
mod tests;
