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

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::task::{JoinHandle, JoinSet};

use crate::health::ComponentHealth;
use crate::kafka::{self, OutageContext};
use crate::metrics::Metrics;
use crate::storage::Storage;

/// How often the whole outbox is re-read, to retry failed deliveries.
const TICK: Duration = Duration::from_secs(1);
/// Most events handed to the producer and not yet acknowledged.
const MAX_IN_FLIGHT: usize = 10_000;
/// An error this old no longer degrades health once the outbox is empty.
const RECENT: Duration = Duration::from_secs(30);

pub enum NotifierMsg {
    /// New events may be in the outbox: send them.
    OutboxChanged,
    /// How is delivery to Kafka going?
    Health(RpcReplyPort<ComponentHealth>),
    /// Periodic: re-read the whole outbox and send whatever is not in flight.
    Tick,
    /// Kafka acknowledged the event stored under this outbox key.
    Delivered { key: u64 },
    /// The event under this outbox key was not delivered; it stays in the outbox.
    DeliveryFailed { key: u64, error: String },
    /// librdkafka reported that the cluster cannot be reached, or (`fatal`) that the producer
    /// is unusable: then the notifier fails and its supervisor restarts it with a new producer.
    ClientError { error: String, fatal: bool },
}

impl ractor::Message for NotifierMsg {}

pub struct NotifierArgs {
    pub storage: Storage,
    pub brokers: String,
    pub topic: String,
    pub metrics: Arc<Metrics>,
}

pub struct Notifier;

pub struct NotifierState {
    storage: Storage,
    topic: String,
    metrics: Arc<Metrics>,
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
        let notifier = myself.clone();
        let producer = kafka::producer(&args.brokers, move |error, fatal| {
            let _ = notifier.cast(NotifierMsg::ClientError { error, fatal });
        })?;
        let ticker = myself.send_interval(TICK, || NotifierMsg::Tick);
        let mut state = NotifierState {
            storage: args.storage,
            topic: args.topic,
            metrics: args.metrics,
            producer: Some(producer),
            in_flight: HashSet::new(),
            sent_up_to: None,
            unreadable: HashSet::new(),
            deliveries: JoinSet::new(),
            ticker,
            failing: None,
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
                state.pump(&myself, true)?;
                // `outbox.len()` walks the whole tree: once a tick, never once per event (with a
                // backlog of 100k events that turned every delivery into a scan).
                state.metrics.outbox_depth.set(state.depth());
            }
            NotifierMsg::Health(reply) => {
                let _ = reply.send(state.health());
            }
            NotifierMsg::Delivered { key } => {
                state.in_flight.remove(&key);
                state
                    .storage
                    .outbox
                    .remove(&key)
                    .context("cannot delete a delivered event from the outbox")?;
                state.metrics.kafka_delivered.inc();
                state.failing = None;
                state.reap();
            }
            NotifierMsg::DeliveryFailed { key, error } => {
                state.in_flight.remove(&key);
                state.metrics.kafka_delivery_errors.inc();
                tracing::warn!(%error, "event not delivered to Kafka; it stays in the outbox");
                state.fail(error);
                state.reap();
            }
            NotifierMsg::ClientError { error, fatal } => {
                if fatal {
                    return Err(anyhow::anyhow!("the Kafka producer failed: {error}").into());
                }
                state.fail(error);
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

impl NotifierState {
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
            if !self.storage.is_durable_event(key) {
                // Keys only grow, so every later one is newer still; the writer's flush wakes us.
                break;
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
                    break;
                }
            };
            if self.sent_up_to.is_none_or(|high| key > high) {
                self.sent_up_to = Some(key);
            }
            self.in_flight.insert(key);
            let notifier = myself.clone();
            self.deliveries.spawn(async move {
                let outcome = match delivery.await {
                    Ok(Ok(_)) => NotifierMsg::Delivered { key },
                    Ok(Err((error, _))) => NotifierMsg::DeliveryFailed {
                        key,
                        error: error.to_string(),
                    },
                    Err(_) => NotifierMsg::DeliveryFailed {
                        key,
                        error: "the producer was dropped".into(),
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

#[cfg(test)]
mod tests;
