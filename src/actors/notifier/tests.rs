//! The whole path — outbox, notifier, embedded broker, notification service — on real parts:
//! the [`Pipeline`] fixture, and the tests of the notifier and of the notification service that
//! need all of it. They live on the notifier's side so that the dependency runs one way: these
//! tests use the notification service, and its own tests (`notification/tests.rs`) use nothing
//! of the notifier. The fault-injection tests are in `tests/faults.rs`.

use super::*;
use crate::actors::notification::{
    spawn_notification, NotificationArgs, NotificationMsg, NotificationRecord,
};
use crate::broker::EmbeddedBroker;
use crate::domain::{now_ms, EventType, OrderEvent, OrderNumber, Price};
use crate::health::Status;
use crate::test_support::{eventually, TestRoot, TestRootMsg};

const TOPIC: &str = "order-events";
/// How long a test waits for the path to get somewhere.
const DEADLINE: Duration = Duration::from_secs(30);

struct Pipeline {
    broker: EmbeddedBroker,
    storage: Storage,
    metrics: Arc<Metrics>,
    notifier: ActorRef<NotifierMsg>,
    /// `Some` except while a test replaces it.
    service: Option<ActorRef<NotificationMsg>>,
    root: ActorRef<TestRootMsg>,
    dir: tempfile::TempDir,
}

impl Pipeline {
    /// `name` keeps actor names unique among tests running at once.
    async fn start(name: &str) -> Pipeline {
        let broker = EmbeddedBroker::start(TOPIC).unwrap();
        Pipeline::start_in(name, tempfile::tempdir().unwrap(), broker).await
    }

    /// A pipeline on the sled database in `dir` (kept from an earlier pipeline, maybe) and
    /// the running `broker`.
    async fn start_in(name: &str, dir: tempfile::TempDir, broker: EmbeddedBroker) -> Pipeline {
        // An earlier pipeline's flusher releases sled's lock once it notices its handle is gone.
        let start = Instant::now();
        let storage = loop {
            match Storage::open(dir.path()) {
                Ok(storage) => break storage,
                Err(e) => assert!(
                    start.elapsed() < DEADLINE,
                    "cannot open the database: {e:#}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let metrics = Arc::new(Metrics::new());
        let root = TestRoot::spawn().await;
        let notifier = spawn_notifier(
            format!("{name}-notifier"),
            NotifierArgs {
                storage: storage.clone(),
                brokers: broker.bootstrap_servers(),
                topic: TOPIC.into(),
                metrics: metrics.clone(),
                replicas: None,
                keep_delivered: true,
            },
            root.get_cell(),
        )
        .await
        .unwrap();
        let mut pipeline = Pipeline {
            broker,
            storage,
            metrics,
            notifier,
            service: None,
            root,
            dir,
        };
        pipeline.service = Some(pipeline.spawn_service(name, "notificationId").await);
        pipeline
    }

    /// A notification service named after `name` in consumer group `group`.
    async fn spawn_service(&self, name: &str, group: &str) -> ActorRef<NotificationMsg> {
        spawn_notification(
            format!("{name}-notification"),
            NotificationArgs {
                storage: self.storage.clone(),
                brokers: self.broker.bootstrap_servers(),
                topic: TOPIC.into(),
                group_id: group.into(),
                metrics: self.metrics.clone(),
                replicas: None,
            },
            self.root.get_cell(),
        )
        .await
        .unwrap()
    }

    fn service(&self) -> &ActorRef<NotificationMsg> {
        self.service
            .as_ref()
            .expect("the notification service runs")
    }

    /// What the order actor does: store the event in the outbox, make it durable, then tell
    /// the notifier.
    async fn put(&self, event: &OrderEvent) {
        self.storage.put_event(event, || Ok(())).unwrap();
        self.storage.durable().await.unwrap();
        self.notifier.cast(NotifierMsg::OutboxChanged).unwrap();
    }

    async fn records(&self) -> Vec<NotificationRecord> {
        ractor::call!(self.service(), |reply| NotificationMsg::List {
            after: None,
            limit: 100,
            reply
        })
        .unwrap()
        .unwrap()
    }

    async fn notifier_health(&self) -> ComponentHealth {
        ractor::call!(self.notifier, NotifierMsg::Health).unwrap()
    }

    async fn stop(self) {
        self.shutdown().await;
    }

    /// Stops every actor and closes the database; what is left to start another pipeline on.
    async fn shutdown(self) -> (tempfile::TempDir, EmbeddedBroker) {
        self.notifier.stop_and_wait(None, None).await.unwrap();
        self.service().stop_and_wait(None, None).await.unwrap();
        self.root.stop_and_wait(None, None).await.unwrap();
        (self.dir, self.broker)
    }
}

fn event() -> OrderEvent {
    OrderEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: EventType::OrderPlaced,
        order_number: OrderNumber::new(),
        lines: Vec::new(),
        total: Price::from_cents(1_990).unwrap(),
        timestamp_ms: now_ms(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_wait_in_the_outbox_while_kafka_is_down() {
    let p = Pipeline::start("outage").await;
    p.broker.brokers_down().unwrap();
    let sent: Vec<OrderEvent> = (0..3).map(|_| event()).collect();
    for event in &sent {
        p.put(event).await;
    }
    eventually("the notifier reports DEGRADED", DEADLINE, || async {
        p.notifier_health().await.status == Status::Degraded
    })
    .await;
    let health = p.notifier_health().await;
    assert!(health.detail.contains("3 events wait"), "{}", health.detail);
    assert_eq!(p.storage.outbox.len(), 3);
    assert!(p.records().await.is_empty());

    p.broker.brokers_up().unwrap();
    eventually(
        "the outbox drains and every event is recorded",
        DEADLINE,
        || async { p.storage.outbox.is_empty() && p.records().await.len() == sent.len() },
    )
    .await;
    let got: HashSet<String> = p.records().await.into_iter().map(|r| r.event_id).collect();
    let want: HashSet<String> = sent.iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(got, want);
    assert_eq!(p.notifier_health().await.status, Status::Up);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_reaches_the_notification_service_once() {
    let p = Pipeline::start("once").await;
    let mut feed = ractor::call!(p.service(), NotificationMsg::Subscribe).unwrap();
    let sent = event();
    p.put(&sent).await;
    // The depth gauge refreshes once a tick, so it is polled too.
    eventually(
        "the event is recorded and the outbox is empty",
        DEADLINE,
        || async {
            p.records().await.len() == 1
                && p.storage.outbox.is_empty()
                && p.metrics.outbox_depth.get() == 0
        },
    )
    .await;
    let record = &p.records().await[0];
    assert_eq!(record.event_id, sent.event_id.to_string());
    assert_eq!(record.order_number, sent.order_number.to_string());
    assert_eq!(record.event(), sent.to_json());
    assert_eq!(feed.recv().await.unwrap(), *record);
    assert_eq!(p.metrics.kafka_delivered.get(), 1);
    assert_eq!(p.notifier_health().await.status, Status::Up);
    let health = ractor::call!(p.service(), NotificationMsg::Health).unwrap();
    assert_eq!(health.status, Status::Up, "{}", health.detail);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_twice_is_recorded_once() {
    let p = Pipeline::start("twice").await;
    let sent = event();
    p.put(&sent).await;
    p.put(&sent).await;
    eventually("both copies are consumed", DEADLINE, || async {
        p.metrics.notifications_received.get() + p.metrics.notifications_duplicate.get() == 2
    })
    .await;
    assert!(p.storage.outbox.is_empty());
    assert_eq!(p.records().await.len(), 1);
    assert_eq!(p.metrics.notifications_duplicate.get(), 1);
    p.stop().await;
}

mod faults;
