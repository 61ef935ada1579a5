//! The notification service: consumes the order-events topic and records each event once.
//!
//! A consumer task reads the topic (consumer group `group_id`) and hands each parsed event to
//! the actor, which records it in the `notifications` tree — unless its event id is already in
//! `seen_events` — and makes that durable before the task commits the message's offset. So an
//! event is never lost (a crash before the commit redelivers it) and never recorded twice (a
//! redelivery finds its id). The gateway lists the records, subscribes to new ones for
//! server-sent events, and asks for health. The consumer's settings are in [`crate::kafka`];
//! the consumer task, which also replaces a consumer that cannot recover by itself, is in
//! `notification/consume.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use crate::actors::entity::Replicas;
use crate::domain::now_ms;
use crate::error::ShopError;
use crate::health::ComponentHealth;
use crate::metrics::Metrics;
use crate::storage::{Storage, StorageError, Table};

/// A consumer error this old no longer degrades health.
const RECENT: Duration = Duration::from_secs(30);
/// Live-feed records buffered per subscriber; a slower subscriber misses the oldest.
const FEED_CAPACITY: usize = 1024;

/// One event as the notification service recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRecord {
    /// Increases with each record; the key in the `notifications` tree.
    pub seq: u64,
    pub event_id: String,
    pub event_type: String,
    pub order_number: String,
    pub received_ms: u64,
    /// The Kafka value, JSON text.
    pub payload: String,
}

/// Stored in the notifications table; its layout never changed.
impl crate::codec::Record for NotificationRecord {}

impl NotificationRecord {
    /// The Kafka value as received: the event's JSON (or its text, if it was not JSON).
    pub fn event(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload)
            .unwrap_or_else(|_| serde_json::Value::String(self.payload.clone()))
    }
}

/// The fields of a Kafka message the service needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEvent {
    pub event_id: String,
    pub event_type: String,
    pub order_number: String,
    pub payload: String,
}

/// Reads a message value: JSON with `eventId` and `orderNumber`; `eventType` defaults to
/// `OrderPlaced` (the original service's events carry only the order number).
fn parse_event(value: Option<&[u8]>) -> Result<ReceivedEvent, String> {
    let bytes = value.ok_or("message has no value")?;
    let payload = std::str::from_utf8(bytes).map_err(|_| "value is not UTF-8")?;
    let json: serde_json::Value =
        serde_json::from_str(payload).map_err(|e| format!("value is not JSON: {e}"))?;
    let field = |name: &str| json.get(name).and_then(serde_json::Value::as_str);
    let required = |name: &str| {
        field(name)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("value has no {name}"))
    };
    Ok(ReceivedEvent {
        event_id: required("eventId")?,
        order_number: required("orderNumber")?,
        event_type: field("eventType").unwrap_or("OrderPlaced").to_owned(),
        payload: payload.to_owned(),
    })
}

pub enum NotificationMsg {
    /// Records after `after` (oldest first), at most `limit`.
    List {
        after: Option<u64>,
        limit: usize,
        reply: RpcReplyPort<Result<Vec<NotificationRecord>, String>>,
    },
    /// A live feed of records as they are recorded, for server-sent events.
    Subscribe(RpcReplyPort<broadcast::Receiver<NotificationRecord>>),
    /// Is the consumer running?
    Health(RpcReplyPort<ComponentHealth>),
    /// From the consumer task: record these events (each once) and make them durable with one
    /// flush; the task commits their offsets when the reply is `Ok`.
    Received {
        events: Vec<ReceivedEvent>,
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// From the consumer task or librdkafka: something went wrong.
    ConsumerError(String),
}

impl ractor::Message for NotificationMsg {}

pub struct NotificationArgs {
    pub storage: Storage,
    pub brokers: String,
    pub topic: String,
    pub group_id: String,
    pub metrics: Arc<Metrics>,
    /// In a replicated cluster: records are committed in their event id's partition.
    pub replicas: Option<Arc<dyn Replicas>>,
}

pub struct NotificationService;

pub struct NotificationState {
    storage: Storage,
    replicas: Option<Arc<dyn Replicas>>,
    metrics: Arc<Metrics>,
    feed: broadcast::Sender<NotificationRecord>,
    /// `Some` until `post_stop`; sending on it ends the consumer task.
    stop: Option<oneshot::Sender<()>>,
    consumer: Option<JoinHandle<()>>,
    /// The latest consumer error, cleared when a message arrives again.
    last_error: Option<(String, Instant)>,
}

/// Starts the notification service under `supervisor`.
pub async fn spawn_notification(
    name: String,
    args: NotificationArgs,
    supervisor: ractor::ActorCell,
) -> anyhow::Result<ActorRef<NotificationMsg>> {
    let (service, _) =
        Actor::spawn_linked(Some(name.clone()), NotificationService, args, supervisor)
            .await
            .with_context(|| format!("cannot start the notification service {name}"))?;
    Ok(service)
}

impl Actor for NotificationService {
    type Msg = NotificationMsg;
    type State = NotificationState;
    type Arguments = NotificationArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NotificationMsg>,
        args: NotificationArgs,
    ) -> Result<NotificationState, ActorProcessingErr> {
        let source = consume::Source {
            brokers: args.brokers,
            topic: args.topic.clone(),
            group_id: args.group_id.clone(),
            service: myself,
            metrics: args.metrics.clone(),
        };
        let client = source.connect()?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(consume::consume(source, client, stopped));
        tracing::info!(topic = %args.topic, group = %args.group_id, "notification service started");
        Ok(NotificationState {
            storage: args.storage,
            replicas: args.replicas,
            metrics: args.metrics,
            feed: broadcast::channel(FEED_CAPACITY).0,
            stop: Some(stop),
            consumer: Some(task),
            last_error: None,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<NotificationMsg>,
        msg: NotificationMsg,
        state: &mut NotificationState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            NotificationMsg::List {
                after,
                limit,
                reply,
            } => {
                let records = match &state.replicas {
                    Some(replicas) => replicated::list(&state.storage, &**replicas, after, limit),
                    None => (records(&state.storage).scan(after.as_ref(), limit))
                        .map(|rows| rows.into_iter().map(|(_, record)| record).collect()),
                };
                let records = records.map_err(|e| e.to_string());
                let _ = reply.send(records);
            }
            NotificationMsg::Subscribe(reply) => {
                let _ = reply.send(state.feed.subscribe());
            }
            NotificationMsg::Health(reply) => {
                let _ = reply.send(state.health());
            }
            NotificationMsg::Received { events, reply } => {
                state.last_error = None;
                match state.record(events).await {
                    Ok(recorded) => {
                        let _ = reply.send(Ok(()));
                        recorded.into_iter().for_each(|r| state.announce(r));
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot record a notification");
                        state.last_error = Some((e.to_string(), Instant::now()));
                        let _ = reply.send(Err(e.to_string()));
                    }
                }
            }
            NotificationMsg::ConsumerError(error) => {
                state.last_error = Some((error, Instant::now()));
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<NotificationMsg>,
        state: &mut NotificationState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(stop) = state.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = state.consumer.take() {
            // Leaving the group cleanly takes a moment; do not wait on a dead cluster forever.
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        Ok(())
    }
}

/// What [`NotificationState::record`] did with an event.
enum Recorded {
    New(NotificationRecord),
    Duplicate(String),
}

/// The sequence `event_id` was given, if it was seen, and whether its record is written.
pub(crate) fn lookup(
    storage: &Storage,
    event_id: &str,
) -> Result<Option<(u64, bool)>, StorageError> {
    storage
        .seen_events
        .get(&event_id.to_owned())?
        .map(|seq| Ok((seq, records(storage).contains_key(&seq)?)))
        .transpose()
}

/// The `notifications` table, holding this service's records.
fn records(storage: &Storage) -> Table<u64, NotificationRecord> {
    storage.notifications()
}

impl NotificationState {
    /// Records each event unless its id was seen, then waits until all are durable (one flush;
    /// in a replicated cluster, each committed in its partition).
    async fn record(&self, events: Vec<ReceivedEvent>) -> Result<Vec<Recorded>, ShopError> {
        if let Some(replicas) = &self.replicas {
            return replicated::record(replicas, events).await;
        }
        let recorded = events
            .into_iter()
            .map(|e| self.record_one(e))
            .collect::<Result<Vec<_>, _>>()?;
        self.storage.durable().await?;
        Ok(recorded)
    }

    /// Records one event unless its id was seen (not yet durable). Two plain writes, no sled
    /// transaction (see `storage`): the event id first, naming the sequence its record will
    /// have, then the record. sled recovers a prefix of its log, so a crash between the two
    /// leaves an id without its record; the message is delivered again (its offset is committed
    /// only once durable), and the record is then written under the sequence the id names.
    fn record_one(&self, event: ReceivedEvent) -> Result<Recorded, StorageError> {
        let seq = match lookup(&self.storage, &event.event_id)? {
            Some((_, true)) => return Ok(Recorded::Duplicate(event.order_number)),
            Some((seq, false)) => seq,
            None => {
                let seq = self.storage.next_id()?;
                self.storage.seen_events.put(&event.event_id, &seq)?;
                seq
            }
        };
        let record = NotificationRecord {
            seq,
            event_id: event.event_id,
            event_type: event.event_type,
            order_number: event.order_number,
            received_ms: now_ms(),
            payload: event.payload,
        };
        records(&self.storage).put(&seq, &record)?;
        // Recorded: an embedded broker's restart need not send it again (a no-op otherwise).
        self.storage.delivered.remove(&record.event_id)?;
        Ok(Recorded::New(record))
    }

    fn announce(&self, recorded: Recorded) {
        match recorded {
            Recorded::New(record) => {
                tracing::info!("Received notification for order {}", record.order_number);
                self.metrics.notifications_received.inc();
                // No subscribers is fine.
                let _ = self.feed.send(record);
            }
            Recorded::Duplicate(order_number) => {
                tracing::info!("Duplicate notification for order {order_number} ignored");
                self.metrics.notifications_duplicate.inc();
            }
        }
    }

    fn health(&self) -> ComponentHealth {
        if self.consumer.as_ref().is_none_or(JoinHandle::is_finished) {
            return ComponentHealth::down("the Kafka consumer is not running");
        }
        match &self.last_error {
            Some((error, at)) if at.elapsed() < RECENT => {
                ComponentHealth::degraded(format!("Kafka consumer error: {error}"))
            }
            _ => ComponentHealth::up("consuming"),
        }
    }
}

mod consume;
pub mod replicated;
#[cfg(test)]
mod tests;
