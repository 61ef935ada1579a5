//! Kafka clients: every setting agora gives librdkafka, and the client context that reports
//! broker outages.
//!
//! The notifier's producer ([`producer`]), the notification service's consumer ([`consumer`])
//! and the embedded broker's mock-cluster client ([`mock_cluster_client`]) are built here and
//! nowhere else, so the settings can be read side by side; each one that differs from
//! librdkafka's default says why it is set. The producer and the consumer carry an
//! [`OutageContext`], which calls back into their actor when the cluster cannot be reached.
//! [`producer_fault`] and [`topic_answers`] tell the actors when a client cannot recover by
//! itself and must be rebuilt.

use anyhow::Context;
use std::time::Duration;

use rdkafka::client::Client;
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DefaultProducerContext, FutureProducer};
use rdkafka::{ClientConfig, ClientContext};

/// How long [`topic_answers`] waits for the broker's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(1);

/// Hears librdkafka's client-level errors (which no message or delivery carries) and reports
/// an outage — every broker unreachable, or a fatal error that leaves the client unusable — to
/// its actor at once, so health degrades before the first delivery times out.
pub(crate) struct OutageContext {
    /// Called with the error text and whether it is fatal.
    report: Box<dyn Fn(String, bool) + Send + Sync>,
}

impl OutageContext {
    fn new(report: impl Fn(String, bool) + Send + Sync + 'static) -> Self {
        OutageContext {
            report: Box::new(report),
        }
    }
}

impl ClientContext for OutageContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka client error");
        let fatal = error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal);
        if fatal || error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            (self.report)(format!("{error}: {reason}"), fatal);
        }
    }
}

impl ConsumerContext for OutageContext {}

/// What every client that talks to `brokers` is given.
fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // Reconnect quickly once Kafka is back (the default backoff grows to 10 s).
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "1000");
    config
}

/// The notifier's producer; `report` hears of outages (see [`OutageContext`]).
pub(crate) fn producer(
    brokers: &str,
    report: impl Fn(String, bool) + Send + Sync + 'static,
) -> anyhow::Result<FutureProducer<OutageContext>> {
    client_config(brokers)
        // No duplicates or reordering from librdkafka's own retries; every replica has it.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // librdkafka retries internally until this (the alias `delivery.timeout.ms` is the same
        // setting); then the failure reaches us and the event is sent again on a later tick. It
        // is short because a timeout is how a stuck producer shows: one whose idempotence state
        // the broker no longer accepts (a broker restarted without its state) retries silently
        // until then. At 3 s the notifier hears of it, sees the broker answer metadata, and
        // rebuilds the producer well within 5 s of the broker's return; the outbox keeps every
        // event meanwhile, so a short timeout loses nothing. Idempotence and acks=all stay: a
        // rebuilt producer may resend, and the notification service absorbs those by event id.
        .set("message.timeout.ms", "3000")
        // Events are few and latency matters more than batching.
        .set("linger.ms", "5")
        .create_with_context(OutageContext::new(report))
        .context("cannot create the Kafka producer")
}

/// What a failed delivery says about the producer that attempted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerFault {
    /// The idempotent producer's state is refused (or librdkafka raised its fatal flag): it
    /// will never deliver again and must be rebuilt.
    Fatal,
    /// The delivery timed out: the broker is down, or the producer is stuck (see
    /// [`topic_answers`]).
    TimedOut,
    /// Anything else: the event is simply sent again.
    Other,
}

/// Classifies a delivery error.
pub(crate) fn producer_fault(error: &KafkaError) -> ProducerFault {
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::UnknownProducerId
            | RDKafkaErrorCode::OutOfOrderSequenceNumber
            | RDKafkaErrorCode::InvalidProducerEpoch,
        ) => ProducerFault::Fatal,
        Some(RDKafkaErrorCode::MessageTimedOut) => ProducerFault::TimedOut,
        _ => ProducerFault::Other,
    }
}

/// Whether the broker answers metadata for `topic` through `client`, with every partition led:
/// then a client that keeps failing is stuck rather than cut off. Blocks up to 1 s.
pub(crate) fn topic_answers<C: ClientContext>(client: &Client<C>, topic: &str) -> bool {
    client
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .is_ok_and(|metadata| {
            metadata.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && !t.partitions().is_empty()
                    && t.partitions()
                        .iter()
                        .all(|p| p.error().is_none() && p.leader() >= 0)
            })
        })
}

/// The notification service's consumer in consumer group `group`, not yet subscribed; `report`
/// hears of outages (see [`OutageContext`]).
pub(crate) fn consumer(
    brokers: &str,
    group: &str,
    report: impl Fn(String, bool) + Send + Sync + 'static,
) -> anyhow::Result<StreamConsumer<OutageContext>> {
    client_config(brokers)
        .set("group.id", group)
        // Offsets are committed by hand, only after the record is durable.
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // A lost member is noticed within 6 s (the usual broker minimum); heartbeats every
        // 500 ms let a rebalance complete quickly.
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        // Events are few: answer a fetch after 100 ms rather than waiting for data (500 ms).
        .set("fetch.wait.max.ms", "100")
        .create_with_context(OutageContext::new(report))
        .context("cannot create the Kafka consumer")
}

/// A client that creates and owns a mock cluster of one broker on loopback, for the embedded
/// broker (which says why it is made this way rather than with `MockCluster::new`).
pub(crate) fn mock_cluster_client() -> anyhow::Result<BaseProducer<DefaultProducerContext>> {
    ClientConfig::new()
        .set("test.mock.num.brokers", "1")
        .create()
        .context("cannot create the mock cluster")
}
