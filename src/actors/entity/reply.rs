//! [`Reply`]: where an entity command's answer goes. Every command variant carries one, next to
//! its request (`OrderCommand::Place(PlaceOrder, Reply<Placed>)`), so one protocol enum per
//! kind is both what the kind's actors handle and what crosses to another node.
//!
//! A reply goes to a caller on this node (a oneshot channel), to a caller on another node (the
//! answer is encoded and handed to the node's peer actor), or nowhere (a `tell`). Two rules
//! keep that out of the entities' code:
//! - **On the wire a reply is empty.** Encoding a command writes its request only; decoding it
//!   inside [`decode_remote`] gives each reply the sender of the remote caller's answer.
//! - **A dropped reply answers.** A reply dropped unanswered (the supervisor refused the
//!   command, or the actor failed while holding it) sends an error: the one [`reject`] names,
//!   or [`ShopError::Unavailable`]. A caller never waits for a command nobody will answer.

use std::cell::RefCell;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::oneshot;

use crate::codec::{self, CodecError};
use crate::error::ShopError;

/// Where the answer of one command goes; answered once, by [`Reply::send`] or on drop.
pub struct Reply<T: Send + 'static> {
    /// `None` once answered.
    to: Option<To<T>>,
}

enum To<T> {
    Here(oneshot::Sender<Result<T, ShopError>>),
    /// A caller on another node; the answer goes back encoded.
    Remote(Box<dyn FnOnce(Result<T, ShopError>) + Send>),
    Nobody,
}

thread_local! {
    /// The remote caller's answer sender, while [`decode_remote`] decodes its command.
    static REMOTE_CALLER: RefCell<Option<oneshot::Sender<Vec<u8>>>> = const { RefCell::new(None) };
    /// The error replies dropped inside [`reject`] answer with.
    static REJECTION: RefCell<Option<ShopError>> = const { RefCell::new(None) };
}

impl<T: Send + 'static> Reply<T> {
    /// A reply to a caller on this node, and the receiver it waits on.
    pub fn here() -> (Reply<T>, oneshot::Receiver<Result<T, ShopError>>) {
        let (sender, receiver) = oneshot::channel();
        (Reply::to(To::Here(sender)), receiver)
    }

    /// A reply nobody waits for.
    pub fn nobody() -> Reply<T> {
        Reply::to(To::Nobody)
    }

    fn to(to: To<T>) -> Reply<T> {
        Reply { to: Some(to) }
    }

    /// Answers the caller. An answer nobody waits for any more is dropped.
    pub fn send(mut self, result: Result<T, ShopError>) {
        if let Some(to) = self.to.take() {
            to.send(result);
        }
    }
}

impl<T> To<T> {
    fn send(self, result: Result<T, ShopError>) {
        match self {
            To::Here(sender) => drop(sender.send(result)),
            To::Remote(send) => send(result),
            To::Nobody => {}
        }
    }
}

impl<T: Send + 'static> Drop for Reply<T> {
    fn drop(&mut self) {
        // Nobody waits for a `tell`'s answer, nor for the copy of a command sent to another node.
        if let Some(to) = self.to.take().filter(|to| !matches!(to, To::Nobody)) {
            let error = REJECTION.with(|r| r.borrow().clone()).unwrap_or_else(|| {
                ShopError::Unavailable("the actor stopped before answering (retry)".into())
            });
            to.send(Err(error));
        }
    }
}

/// Drops `commands`, so that every reply in them answers `error`.
pub fn reject<C>(commands: impl IntoIterator<Item = C>, error: ShopError) {
    REJECTION.with(|r| *r.borrow_mut() = Some(error));
    commands.into_iter().for_each(drop);
    REJECTION.with(|r| r.borrow_mut().take());
}

/// Decodes a command from another node; its reply sends the encoded answer to `caller`.
pub fn decode_remote<C: DeserializeOwned>(
    bytes: &[u8],
    caller: oneshot::Sender<Vec<u8>>,
) -> Result<C, CodecError> {
    REMOTE_CALLER.with(|c| *c.borrow_mut() = Some(caller));
    let decoded = codec::decode(bytes);
    REMOTE_CALLER.with(|c| c.borrow_mut().take());
    decoded
}

impl<T: Send + 'static> Serialize for Reply<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }
}

impl<'de, T: Serialize + Send + 'static> Deserialize<'de> for Reply<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <()>::deserialize(deserializer)?;
        let Some(caller) = REMOTE_CALLER.with(|c| c.borrow_mut().take()) else {
            return Ok(Reply::nobody());
        };
        let encode = move |result: Result<T, ShopError>| {
            let answer = codec::encode(&result).unwrap_or_else(|e| {
                let error = ShopError::Internal(format!("an answer does not encode: {e}"));
                codec::encode(&Err::<(), _>(error)).unwrap_or_default()
            });
            let _ = caller.send(answer);
        };
        Ok(Reply::to(To::Remote(Box::new(encode))))
    }
}

/// Decodes an answer a [`Reply`] encoded on another node.
pub fn decode_answer<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ShopError> {
    codec::decode::<Result<T, ShopError>>(bytes)
        .map_err(|e| ShopError::Internal(format!("a peer's answer does not decode: {e}")))?
}
