//! The embedded Kafka-protocol broker: librdkafka's mock cluster, used when no `--kafka-brokers`
//! is given (a single node then needs no Kafka install) and by the Kafka tests.
//!
//! librdkafka's mock cluster is not `Send` (it holds a raw pointer), so one dedicated thread owns
//! it and takes [`Command`]s over a channel. The notifier produces to it and the notification
//! service consumes from it through ordinary `bootstrap.servers`, exactly as with a real Kafka.
//! The client that creates the cluster is configured in [`crate::kafka`]. Its fault injection
//! (brokers down, requests answered with an error, a topic reported missing) serves the outage
//! tests and the `kafka_faults` bench.

use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Context};
use rdkafka::bindings;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use crate::kafka;

/// Partitions of the topic the embedded broker creates.
const PARTITIONS: i32 = 3;

/// What the owning thread is asked to do.
enum Command {
    /// Takes every broker down (`true`) or brings it back up (`false`).
    SetDown(bool, mpsc::Sender<anyhow::Result<()>>),
    /// Answers the next requests of this kind with these errors, one each.
    RequestErrors(
        RDKafkaApiKey,
        Vec<RDKafkaRespErr>,
        mpsc::Sender<anyhow::Result<()>>,
    ),
    /// Drops the errors still queued for requests of this kind.
    ClearRequestErrors(RDKafkaApiKey, mpsc::Sender<anyhow::Result<()>>),
    /// Reports the topic with this error in metadata (`RD_KAFKA_RESP_ERR_NO_ERROR` clears it).
    TopicError(String, RDKafkaRespErr, mpsc::Sender<anyhow::Result<()>>),
}

/// A running mock cluster of one broker on loopback. Dropping it stops the cluster.
pub struct EmbeddedBroker {
    bootstrap: String,
    /// `Some` until drop; dropping the sender ends the owning thread.
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a mock cluster of 1 broker on loopback and creates `topic` (3 partitions).
    pub fn start(topic: &str) -> anyhow::Result<EmbeddedBroker> {
        let (commands, inbox) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let topic = topic.to_owned();
        let thread = std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || run(&topic, &ready_tx, &inbox))
            .context("cannot start the embedded broker thread")?;
        let bootstrap = ready_rx
            .recv()
            .context("the embedded broker thread stopped while starting")??;
        tracing::info!(%bootstrap, "embedded Kafka broker started");
        Ok(EmbeddedBroker {
            bootstrap,
            commands: Some(commands),
            thread: Some(thread),
        })
    }

    pub fn bootstrap_servers(&self) -> String {
        self.bootstrap.clone()
    }

    /// Takes the broker down: connections are closed and refused (for outage tests).
    pub fn brokers_down(&self) -> anyhow::Result<()> {
        self.command(|reply| Command::SetDown(true, reply))
    }

    /// Brings the broker back up on the same port.
    pub fn brokers_up(&self) -> anyhow::Result<()> {
        self.command(|reply| Command::SetDown(false, reply))
    }

    /// Answers the next `errors.len()` requests of kind `api` with these errors, in order (e.g.
    /// Produce with `OUT_OF_ORDER_SEQUENCE_NUMBER`, for fault tests).
    pub fn request_errors(
        &self,
        api: RDKafkaApiKey,
        errors: &[RDKafkaRespErr],
    ) -> anyhow::Result<()> {
        self.command(|reply| Command::RequestErrors(api, errors.to_vec(), reply))
    }

    /// Drops the errors [`EmbeddedBroker::request_errors`] queued for `api` and not yet used.
    pub fn clear_request_errors(&self, api: RDKafkaApiKey) -> anyhow::Result<()> {
        self.command(|reply| Command::ClearRequestErrors(api, reply))
    }

    /// Reports `topic` with `error` in metadata requests, as if it were gone
    /// (`RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART`), until called with
    /// `RD_KAFKA_RESP_ERR_NO_ERROR`. The mock cluster cannot delete a topic; this is the nearest.
    pub fn topic_error(&self, topic: &str, error: RDKafkaRespErr) -> anyhow::Result<()> {
        self.command(|reply| Command::TopicError(topic.to_owned(), error, reply))
    }

    fn command(
        &self,
        make: impl FnOnce(mpsc::Sender<anyhow::Result<()>>) -> Command,
    ) -> anyhow::Result<()> {
        let (reply, answer) = mpsc::channel();
        self.commands
            .as_ref()
            .context("the embedded broker is stopping")?
            .send(make(reply))
            .map_err(|_| anyhow!("the embedded broker thread has stopped"))?;
        answer
            .recv()
            .context("the embedded broker thread has stopped")?
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.commands.take();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the embedded broker thread panicked");
            }
        }
    }
}

/// The owning thread: starts the cluster, reports its address, then serves commands until the
/// handle is dropped.
fn run(topic: &str, ready: &mpsc::Sender<anyhow::Result<String>>, inbox: &mpsc::Receiver<Command>) {
    // A client configured with `test.mock.num.brokers` creates and owns the mock cluster (rather
    // than `MockCluster::new`), because only then can we reach the cluster's handle to turn off
    // the group coordinator's 3 s initial rebalance delay: consumers join at once.
    let client = match kafka::mock_cluster_client() {
        Ok(client) => client,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let started = client
        .client()
        .mock_cluster()
        .context("the client created no mock cluster")
        .and_then(|cluster| {
            cluster
                .create_topic(topic, PARTITIONS, 1)
                .with_context(|| format!("cannot create topic {topic}"))?;
            Ok(cluster)
        });
    let cluster = match started {
        Ok(cluster) => cluster,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    // SAFETY: the client owns the mock cluster and outlives this call, so the handle is valid.
    unsafe {
        let handle = bindings::rd_kafka_handle_mock_cluster(client.client().native_ptr());
        bindings::rd_kafka_mock_group_initial_rebalance_delay_ms(handle, 0);
    }
    let _ = ready.send(Ok(cluster.bootstrap_servers()));
    serve(&cluster, inbox);
    tracing::info!("embedded Kafka broker stopped");
}

fn serve(cluster: &MockCluster<'_, DefaultProducerContext>, inbox: &mpsc::Receiver<Command>) {
    while let Ok(command) = inbox.recv() {
        match command {
            Command::SetDown(down, reply) => {
                // -1: every broker.
                let result = if down {
                    cluster.broker_down(-1)
                } else {
                    cluster.broker_up(-1)
                };
                let _ = reply.send(result.context("cannot change the broker state"));
            }
            Command::RequestErrors(api, errors, reply) => {
                cluster.request_errors(api, &errors);
                let _ = reply.send(Ok(()));
            }
            Command::ClearRequestErrors(api, reply) => {
                cluster.clear_request_errors(api);
                let _ = reply.send(Ok(()));
            }
            Command::TopicError(topic, error, reply) => {
                let result = cluster.topic_error(&topic, error);
                let _ = reply.send(result.context("cannot set the topic error"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_goes_down_and_up_and_stops() {
        let broker = EmbeddedBroker::start("t").unwrap();
        assert!(broker.bootstrap_servers().starts_with("127.0.0.1:"));
        broker.brokers_down().unwrap();
        broker.brokers_up().unwrap();
        drop(broker);
    }
}
