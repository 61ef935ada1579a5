//! The root supervisor: parent of the entity supervisors and of the service supervisors
//! (`crate::service`) of the registry, the notifier, the notification service and the cluster's
//! links and peer actors.
//!
//! Each of those has its own restart policy (entities restarted per key, service actors
//! restarted with backoff and, past their limit, escalated to a degraded component), so a
//! failure that reaches the root is one the node cannot serve on from: a service failing on
//! storage past its limit, or a supervisor's own bug. The root reports it to `app`, which shuts
//! the node down with an error (a process supervisor restarts it; start-up recovery makes that
//! safe).

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::mpsc;

pub struct Root;

/// The root has nothing to be asked; it only supervises.
pub enum RootMsg {}

impl ractor::Message for RootMsg {}

impl Actor for Root {
    type Msg = RootMsg;
    type State = mpsc::UnboundedSender<String>;
    type Arguments = mpsc::UnboundedSender<String>;

    async fn pre_start(
        &self,
        _myself: ActorRef<RootMsg>,
        fatal: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(fatal)
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        fatal: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, error) = event {
            let name = cell.get_name().unwrap_or_else(|| cell.get_id().to_string());
            tracing::error!(actor = %name, %error, "a supervisor failed");
            let _ = fatal.send(format!("supervisor {name} failed: {error}"));
        }
        Ok(())
    }
}
