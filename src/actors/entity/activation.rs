//! An activation: one entity in memory, and the task that runs its work. Between commands the
//! kind's supervisor holds each live entity's [`Loaded`] state; when work comes for the key it
//! hands the state, with the work queued for the key, to [`run`] in a task of its own, and the
//! task gives the state back ([`Outcome`]) through [`super::SupervisorMsg::Done`]. A key has at
//! most one such task, so one writer, and its commands run in the order they arrived.
//!
//! This is an entity actor in the sense of Orleans' activations or Akka's sharded entities, not
//! a ractor actor: a ractor actor is a task with two unbounded channels, each allocating a
//! block of 32 message slots up front, and a supervision tree, about 17 KB live. An activation
//! costs its state and the supervisor's map entry while idle, a task only while it works.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use ractor::ActorProcessingErr;

use super::replica::Writes;
use super::reply::reject;
use super::{Deps, Entity};
use crate::error::ShopError;

/// Work for one entity, queued in its slot until a task runs it.
pub enum Work<E: Entity> {
    Command(E::Command),
    /// Panic while handling it, to exercise supervision (fault injection only).
    Panic,
}

/// An entity's state between commands, with the tenure it was loaded under.
pub struct Loaded<E: Entity> {
    state: E::State,
    /// Its own: a new activation starts with fresh flags and no tenure.
    writes: Writes,
}

/// How a run ended.
pub enum Outcome<E: Entity> {
    /// Every command was handled; the state is valid for the next one.
    Kept(Loaded<E>),
    /// The state may differ from storage's (a write's outcome is unknown) or the node stopped
    /// leading the key's partition: the work left runs on a state loaded afresh.
    Dropped { rest: Vec<Work<E>> },
    /// The state could not be loaded: the work was refused with this error.
    Refused(ShopError),
    /// A command failed or panicked: the supervisor restarts the entity from storage (or
    /// escalates) and runs what is left, without the failed command (its reply answered
    /// `Unavailable`).
    Failed { error: String, rest: Vec<Work<E>> },
}

/// Runs `work` on the entity `key`: on `loaded`, or on its state loaded from storage. A panic
/// outside a command (loading, confirming leadership) fails the run with the work left.
pub async fn run<E: Entity>(
    deps: Deps<E>,
    key: E::Key,
    loaded: Option<Loaded<E>>,
    work: Vec<Work<E>>,
) -> Outcome<E> {
    match AssertUnwindSafe(handle_all(deps, &key, loaded, work))
        .catch_unwind()
        .await
    {
        Ok(outcome) => outcome,
        Err(panic) => Outcome::Failed {
            error: panic_message(panic.as_ref()),
            rest: Vec::new(),
        },
    }
}

async fn handle_all<E: Entity>(
    mut deps: Deps<E>,
    key: &E::Key,
    loaded: Option<Loaded<E>>,
    work: Vec<Work<E>>,
) -> Outcome<E> {
    let mut state = match loaded {
        Some(Loaded { state, writes }) => {
            deps.writes = writes;
            state
        }
        None => match load(&mut deps, key).await {
            Ok(state) => state,
            Err(error) => {
                reject(work, error.clone());
                return Outcome::Refused(error);
            }
        },
    };
    let mut work = work.into_iter();
    while let Some(next) = work.next() {
        let command = match next {
            Work::Command(command) => command,
            Work::Panic => {
                let text = format!("fault injection: {} {key} panics", E::KIND);
                let error = caught(injected_panic(text)).await.err();
                return failed(error.unwrap_or_default(), work);
            }
        };
        match deps.lead(key).await {
            Ok(false) => {}
            Ok(true) => match E::load(&deps, key) {
                Ok(reloaded) => state = reloaded,
                Err(e) => return failed(e, work),
            },
            Err(e) => {
                reject([command], e);
                return Outcome::Dropped {
                    rest: work.collect(),
                };
            }
        }
        // A panic is caught here, so the work behind it still runs after the restart.
        if let Err(error) = caught(E::handle(&deps, key, &mut state, command)).await {
            return failed(error, work);
        }
        if deps.writes.is_stale() {
            return Outcome::Dropped {
                rest: work.collect(),
            };
        }
    }
    Outcome::Kept(Loaded {
        state,
        writes: deps.writes,
    })
}

/// A new activation's state: its tenure confirmed first, then read from storage.
async fn load<E: Entity>(deps: &mut Deps<E>, key: &E::Key) -> Result<E::State, ShopError> {
    deps.writes.for_new_actor();
    deps.lead(key).await?;
    E::load(deps, key)
        .map_err(|e| ShopError::Internal(format!("cannot load {} {key}: {e}", E::KIND)))
}

/// Runs one command's handling with its panic caught: what failed, if it did.
async fn caught(
    handling: impl Future<Output = Result<(), ActorProcessingErr>>,
) -> Result<(), String> {
    match AssertUnwindSafe(handling).catch_unwind().await {
        Ok(handled) => handled.map_err(|e| e.to_string()),
        Err(panic) => Err(panic_message(panic.as_ref())),
    }
}

/// What [`Work::Panic`] runs.
async fn injected_panic(text: String) -> Result<(), ActorProcessingErr> {
    panic!("{text}")
}

fn failed<E: Entity>(
    error: impl std::fmt::Display,
    rest: impl Iterator<Item = Work<E>>,
) -> Outcome<E> {
    Outcome::Failed {
        error: error.to_string(),
        rest: rest.collect(),
    }
}

impl<E: Entity> Loaded<E> {
    /// Answers `command` now if it only reads ([`Entity::read`]); gives it back otherwise.
    pub fn read(&self, key: &E::Key, command: E::Command) -> Result<(), E::Command> {
        E::read(key, &self.state, command)
    }

    /// Whether the entity stays in memory after its work ([`Entity::keep_alive`]).
    pub fn keep_alive(&self) -> bool {
        E::keep_alive(&self.state)
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    let text = (panic.downcast_ref::<String>().map(String::as_str))
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic");
    format!("panicked: {text}")
}
