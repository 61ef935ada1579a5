//! Health: the status each component reports for `GET /health`.
//!
//! Actors answer a health request with a [`ComponentHealth`]; the gateway gathers them (and its
//! OpenAPI document describes them).

use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Up,
    /// Working, but something it depends on is not (for example Kafka is unreachable and
    /// events wait in the outbox).
    Degraded,
    Down,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ComponentHealth {
    pub status: Status,
    /// One line a human can act on.
    pub detail: String,
}

impl ComponentHealth {
    pub fn up(detail: impl Into<String>) -> Self {
        ComponentHealth {
            status: Status::Up,
            detail: detail.into(),
        }
    }

    pub fn degraded(detail: impl Into<String>) -> Self {
        ComponentHealth {
            status: Status::Degraded,
            detail: detail.into(),
        }
    }

    pub fn down(detail: impl Into<String>) -> Self {
        ComponentHealth {
            status: Status::Down,
            detail: detail.into(),
        }
    }
}
