//! The notification service's consumer task: reads the topic, hands each batch to the actor,
//! commits offsets once recorded, and recreates the consumer when it cannot recover by itself.
//!
//! librdkafka recovers from most faults alone, but not all: a fatal error leaves the client
//! unusable, and a coordinator that failed the offset fetch of a new assignment leaves the
//! consumer assigned yet never fetching. So once the consumer has been in trouble (a client
//! error, and no message since) for [`STUCK`], the task checks whether it is stuck — the broker
//! answers metadata and an assigned partition has unread messages the consumer is not reading
//! — and then replaces it. Nothing is skipped or doubled by that: the new consumer resumes from
//! the committed offsets (or the earliest, see [`crate::kafka::consumer`]), and the actor
//! records each event id once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::FutureExt;
use ractor::ActorRef;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::Offset;
use tokio::sync::oneshot;

use super::{parse_event, NotificationMsg};
use crate::kafka::{self, OutageContext};
use crate::metrics::Metrics;

/// Wait before handing an event to the actor again after it failed to record it.
const RETRY: Duration = Duration::from_secs(1);
/// Most messages recorded with one flush. A batch is recorded in one actor turn, which holds a
/// runtime thread: 500 put the p99 of orders at 64 connections above 10 ms, 64 keeps it near.
const BATCH: usize = 64;
/// How long the consumer may be in trouble before the task checks whether it is stuck.
const STUCK: Duration = Duration::from_secs(3);
/// How long the task waits for a message before it looks at the consumer's trouble.
const IDLE: Duration = Duration::from_millis(500);
/// How long the stuck check waits for each answer from the broker.
const PROBE: Duration = Duration::from_secs(1);
/// Wait after a consumer was recreated (or could not be), doubling while trouble goes on.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

type EventConsumer = StreamConsumer<OutageContext>;

/// The consumer's trouble since its last message, shared with its client context.
#[derive(Default)]
struct Trouble {
    /// Since when errors have come without a message in between.
    since: Mutex<Option<Instant>>,
    /// librdkafka reported a fatal error: the consumer is unusable.
    fatal: AtomicBool,
}

impl Trouble {
    fn report(&self, fatal: bool) {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        since.get_or_insert_with(Instant::now);
        if fatal {
            self.fatal.store(true, Ordering::Relaxed);
        }
    }

    fn clear(&self) {
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Still in trouble, but counted from now.
    fn postpone(&self) {
        *self.since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    fn is_fatal(&self) -> bool {
        self.fatal.load(Ordering::Relaxed)
    }

    /// Why the consumer may need replacing: fatal, or in trouble for [`STUCK`].
    fn suspect(&self) -> Option<&'static str> {
        if self.is_fatal() {
            return Some("fatal consumer error");
        }
        let since = *self.since.lock().unwrap_or_else(|e| e.into_inner());
        since
            .filter(|at| at.elapsed() >= STUCK)
            .map(|_| "the consumer stays in error and reads nothing while the broker answers")
    }
}

/// Where the consumer reads and whom it tells: enough to build it again.
pub(super) struct Source {
    pub(super) brokers: String,
    pub(super) topic: String,
    pub(super) group_id: String,
    pub(super) service: ActorRef<NotificationMsg>,
    pub(super) metrics: Arc<Metrics>,
}

/// A subscribed consumer and the trouble its context reports.
pub(super) struct Client {
    consumer: Arc<EventConsumer>,
    trouble: Arc<Trouble>,
}

impl Source {
    /// A new consumer in the group, subscribed to the topic.
    pub(super) fn connect(&self) -> anyhow::Result<Client> {
        let trouble = Arc::new(Trouble::default());
        let (service, reported) = (self.service.clone(), trouble.clone());
        let consumer = kafka::consumer(&self.brokers, &self.group_id, move |error, fatal| {
            reported.report(fatal);
            let _ = service.cast(NotificationMsg::ConsumerError(error));
        })?;
        consumer
            .subscribe(&[&self.topic])
            .with_context(|| format!("cannot subscribe to {}", self.topic))?;
        Ok(Client {
            consumer: Arc::new(consumer),
            trouble,
        })
    }
}

/// Whether the broker answers for `topic` while a partition assigned to `consumer` has
/// messages past its position. Blocks on the broker (up to [`PROBE`] per question).
fn stuck(consumer: &EventConsumer, topic: &str) -> bool {
    if !kafka::topic_answers(consumer.client(), topic) {
        return false;
    }
    let Ok(assignment) = consumer.assignment() else {
        return false;
    };
    let positions = consumer.position().unwrap_or(assignment);
    positions.elements_for_topic(topic).iter().any(|p| {
        let high = consumer
            .fetch_watermarks(topic, p.partition(), PROBE)
            .map_or(0, |(_, high)| high);
        high > 0 && !matches!(p.offset(), Offset::Offset(at) if at >= high)
    })
}

/// The consumer task: receives messages until told to stop, hands each batch to the actor and
/// commits its offsets once recorded; replaces the consumer when it is stuck (see the module).
pub(super) async fn consume(source: Source, mut client: Client, mut stop: oneshot::Receiver<()>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            // The service is gone: nothing to hand messages to.
            alive = next(&client, &source.service) => if !alive { break },
        }
        let Some(reason) = client.trouble.suspect() else {
            backoff = FIRST_BACKOFF;
            continue;
        };
        if !client.trouble.is_fatal() {
            let (consumer, topic) = (client.consumer.clone(), source.topic.clone());
            let check = tokio::task::spawn_blocking(move || stuck(&consumer, &topic));
            if !check.await.unwrap_or(false) {
                // Cut off rather than stuck (librdkafka reconnects by itself): look again later.
                client.trouble.postpone();
                continue;
            }
        }
        match source.connect() {
            Ok(fresh) => {
                let old = std::mem::replace(&mut client, fresh);
                source.metrics.kafka_consumer_rebuilds.inc();
                tracing::warn!(reason, "Kafka consumer recreated");
                close(old).await;
            }
            Err(e) => {
                let error = format!("cannot recreate the Kafka consumer: {e:#}");
                let _ = source.service.cast(NotificationMsg::ConsumerError(error));
            }
        }
        // A consumer that turns fatal at once, or cannot be made, is not retried in a hot loop.
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    close(client).await;
}

/// Closes a consumer off the async threads: it leaves the group and blocks until it has.
async fn close(client: Client) {
    let _ = tokio::task::spawn_blocking(move || drop(client)).await;
}

/// Handles the next messages: the first to arrive within [`IDLE`] and up to [`BATCH`] more
/// already waiting, recorded with one flush; false when the actor is gone.
async fn next(client: &Client, service: &ActorRef<NotificationMsg>) -> bool {
    let consumer = &client.consumer;
    let mut messages = match tokio::time::timeout(IDLE, consumer.recv()).await {
        Err(_) => return true,
        Ok(Ok(message)) => vec![message],
        Ok(Err(e)) => {
            client.trouble.report(false);
            return service
                .cast(NotificationMsg::ConsumerError(e.to_string()))
                .is_ok();
        }
    };
    client.trouble.clear();
    while messages.len() < BATCH {
        match consumer.recv().now_or_never() {
            Some(Ok(message)) => messages.push(message),
            _ => break,
        }
    }
    let mut events = Vec::with_capacity(messages.len());
    for message in &messages {
        match parse_event(message.payload()) {
            Ok(event) => events.push(event),
            Err(reason) => tracing::warn!(
                partition = message.partition(),
                offset = message.offset(),
                %reason,
                "Kafka message skipped"
            ),
        }
    }
    if !events.is_empty() {
        loop {
            let events = events.clone();
            match ractor::call!(service, |reply| NotificationMsg::Received { events, reply }) {
                Ok(Ok(())) => break,
                Ok(Err(_)) => tokio::time::sleep(RETRY).await,
                Err(_) => return false,
            }
        }
    }
    for message in &messages {
        if let Err(e) = consumer.commit_message(message, CommitMode::Async) {
            let error = NotificationMsg::ConsumerError(format!("offset commit: {e}"));
            return service.cast(error).is_ok();
        }
    }
    true
}
