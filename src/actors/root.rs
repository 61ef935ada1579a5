//! The root supervisor: parent of the registry, the entity supervisors, the notifier and the
//! notification service.
//!
//! Those service actors have no restart policy of their own: if one fails, the node can no longer
//! keep its promises, so the root reports it to `app`, which shuts the node down with an error
//! (a process supervisor restarts it; start-up recovery makes that safe).

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
            tracing::error!(actor = %name, %error, "a service actor failed");
            let _ = fatal.send(format!("service actor {name} failed: {error}"));
        }
        Ok(())
    }
}
