//! The pipeline under Kafka faults injected into the embedded broker (librdkafka's mock
//! cluster): fatal idempotence errors on produce, brokers down and up, the topic gone and back,
//! a consumer group without offsets, and a restart on the same database after a rebuild. Each
//! asserts that every outbox event is recorded exactly once and that the notifier is still the
//! actor it was (never failed), and prints how long delivery took to resume after the fault
//! ended, with the rebuild counts (`cargo test --lib faults -- --nocapture` shows them).

use ractor::ActorStatus;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use super::*;

/// Errors queued for produce requests: more than a test can use up, until cleared.
const ENDLESS: usize = 1_000;

/// Puts a first event through, so the producer has its idempotence state and the consumer its
/// partitions before the fault; returns it.
async fn warm_up(p: &Pipeline) -> OrderEvent {
    let first = event();
    p.put(&first).await;
    eventually("the first event is recorded", DEADLINE, || async {
        p.records().await.len() == 1
    })
    .await;
    first
}

/// Puts `n` new events into the outbox.
async fn put_events(p: &Pipeline, n: usize) -> Vec<OrderEvent> {
    let events: Vec<OrderEvent> = (0..n).map(|_| event()).collect();
    for event in &events {
        p.put(event).await;
    }
    events
}

/// Waits for the next delivery acknowledged by Kafka after `fault_ended`, and prints how long
/// it took with the rebuild counts.
async fn resumed(p: &Pipeline, fault: &str, fault_ended: Instant) {
    let delivered = p.metrics.kafka_delivered.get();
    eventually("a delivery succeeds again", DEADLINE, || async {
        p.metrics.kafka_delivered.get() > delivered
    })
    .await;
    println!(
        "kafka fault {fault}: first delivery {} ms after the fault ended; producer rebuilds {}, \
         consumer rebuilds {}",
        fault_ended.elapsed().as_millis(),
        p.metrics.kafka_producer_rebuilds.get(),
        p.metrics.kafka_consumer_rebuilds.get(),
    );
}

/// Every event of `sent` is recorded exactly once, the outbox is empty, and the notifier is the
/// actor started as `name` and still running.
async fn all_recorded_once(p: &Pipeline, name: &str, sent: &[OrderEvent]) {
    eventually(
        "the outbox drains and every event is recorded",
        DEADLINE,
        || async { p.storage.outbox.is_empty() && p.records().await.len() >= sent.len() },
    )
    .await;
    let mut got: Vec<String> = p.records().await.into_iter().map(|r| r.event_id).collect();
    let mut want: Vec<String> = sent.iter().map(|e| e.event_id.to_string()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "each event recorded exactly once");
    assert_eq!(p.notifier.get_status(), ActorStatus::Running);
    let registered = ractor::registry::where_is(format!("{name}-notifier"));
    assert_eq!(
        registered.map(|cell| cell.get_id()),
        Some(p.notifier.get_id()),
        "the notifier is the actor first started"
    );
}

/// (a) Produce requests answer an idempotence error the producer cannot get past: it is
/// rebuilt, and once the broker accepts produce requests again every event arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_refused_by_the_broker_is_rebuilt() {
    let errors = [
        (
            "unknown-pid",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID,
        ),
        (
            "out-of-order",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
        ),
        (
            "bad-epoch",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH,
        ),
    ];
    for (name, error) in errors {
        let p = Pipeline::start(name).await;
        let mut sent = vec![warm_up(&p).await];
        p.broker
            .request_errors(RDKafkaApiKey::Produce, &[error; ENDLESS])
            .unwrap();
        sent.extend(put_events(&p, 3).await);
        eventually("the producer is rebuilt", DEADLINE, || async {
            p.metrics.kafka_producer_rebuilds.get() >= 1
        })
        .await;
        assert_eq!(p.storage.outbox.len(), 3, "nothing is delivered meanwhile");
        p.broker
            .clear_request_errors(RDKafkaApiKey::Produce)
            .unwrap();
        resumed(&p, name, Instant::now()).await;
        all_recorded_once(&p, name, &sent).await;
        p.stop().await;
    }
}

/// (b) Every broker down, then up: the events wait, then arrive once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_when_the_brokers_are_back() {
    let p = Pipeline::start("down-up").await;
    let mut sent = vec![warm_up(&p).await];
    p.broker.brokers_down().unwrap();
    sent.extend(put_events(&p, 3).await);
    eventually("a delivery fails", DEADLINE, || async {
        p.metrics.kafka_delivery_errors.get() > 0
    })
    .await;
    p.broker.brokers_up().unwrap();
    resumed(&p, "down-up", Instant::now()).await;
    all_recorded_once(&p, "down-up", &sent).await;
    p.stop().await;
}

/// (c) The topic is deleted and re-created. librdkafka's mock cluster cannot delete a topic, so
/// meanwhile the broker reports it unknown, in metadata and to produce requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_when_the_topic_is_back() {
    let p = Pipeline::start("topic").await;
    let mut sent = vec![warm_up(&p).await];
    let unknown = RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    p.broker.topic_error(TOPIC, unknown).unwrap();
    p.broker
        .request_errors(RDKafkaApiKey::Produce, &[unknown; ENDLESS])
        .unwrap();
    sent.extend(put_events(&p, 3).await);
    eventually("a delivery fails", DEADLINE, || async {
        p.metrics.kafka_delivery_errors.get() > 0
    })
    .await;
    p.broker
        .topic_error(TOPIC, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
        .unwrap();
    p.broker
        .clear_request_errors(RDKafkaApiKey::Produce)
        .unwrap();
    resumed(&p, "topic", Instant::now()).await;
    all_recorded_once(&p, "topic", &sent).await;
    p.stop().await;
}

/// (d) The group coordinator has no offsets for the group (a new group id, as after a broker
/// that forgot them) and fails an offset fetch and an offset commit: the consumer that lost its
/// offset fetch is stuck and replaced, reads the topic from the start, records nothing twice
/// and skips nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_without_offsets_reads_from_the_start_and_records_once() {
    let mut p = Pipeline::start("offsets").await;
    let mut sent = vec![warm_up(&p).await];
    sent.extend(put_events(&p, 2).await);
    eventually("the events are recorded", DEADLINE, || async {
        p.records().await.len() == sent.len()
    })
    .await;
    if let Some(service) = p.service.take() {
        service.stop_and_wait(None, None).await.unwrap();
    }
    let coordinator = RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR;
    for api in [RDKafkaApiKey::OffsetFetch, RDKafkaApiKey::OffsetCommit] {
        p.broker.request_errors(api, &[coordinator]).unwrap();
    }
    let restarted = Instant::now();
    p.service = Some(p.spawn_service("offsets-2", "forgotten-offsets").await);
    sent.extend(put_events(&p, 2).await);
    eventually("the earlier events are read again", DEADLINE, || async {
        p.metrics.notifications_duplicate.get() >= 3
    })
    .await;
    println!(
        "kafka fault offsets: earlier events read again {} ms after the service restarted; \
         consumer rebuilds {}",
        restarted.elapsed().as_millis(),
        p.metrics.kafka_consumer_rebuilds.get(),
    );
    all_recorded_once(&p, "offsets", &sent).await;
    p.stop().await;
}

/// (e) The node stops while the outbox holds events whose producer was rebuilt, and starts
/// again on the same database: nothing is lost, nothing doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_a_rebuild_loses_and_doubles_nothing() {
    let p = Pipeline::start("restart").await;
    let mut sent = vec![warm_up(&p).await];
    let fatal = RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER;
    p.broker
        .request_errors(RDKafkaApiKey::Produce, &[fatal; ENDLESS])
        .unwrap();
    sent.extend(put_events(&p, 3).await);
    eventually("the producer is rebuilt", DEADLINE, || async {
        p.metrics.kafka_producer_rebuilds.get() >= 1
    })
    .await;
    assert_eq!(p.storage.outbox.len(), 3);
    println!(
        "kafka fault restart: {} producer rebuilds before the restart",
        p.metrics.kafka_producer_rebuilds.get()
    );
    let (dir, broker) = p.shutdown().await;
    broker.clear_request_errors(RDKafkaApiKey::Produce).unwrap();
    let restarted = Instant::now();
    let p = Pipeline::start_in("restart-2", dir, broker).await;
    resumed(&p, "restart", restarted).await;
    all_recorded_once(&p, "restart-2", &sent).await;
    p.stop().await;
}
