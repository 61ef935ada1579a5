//! Notification routes: `GET /api/notifications` (what the notification service received from
//! Kafka, oldest first, `?after=` cursor) and `GET /api/notifications/stream` (server-sent
//! events; in a replicated cluster the whole cluster's, resumable on any node: `cluster`).
//! Talks to the notification service actor; [`NotificationJson`] is a record as the
//! API shows it.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;

use futures::StreamExt;
use ractor::ActorRef;
use serde::Serialize;
use tokio_stream::wrappers::BroadcastStream;
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};
use warp::Filter;

mod cluster;

use super::error::{ApiError, ErrorBody};
use super::filters::{call, page, serve, Call};
use super::GatewayCtx;
use crate::actors::call as call_actor;
use crate::actors::notification::{NotificationMsg, NotificationRecord};
use crate::domain::Invalid;
use crate::error::ShopError;
use crate::registry::NOTIFICATION_SERVICE;

/// A record as the API shows it (`GET /api/notifications` and its event stream).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationJson {
    pub seq: u64,
    pub event_id: String,
    pub event_type: String,
    pub order_number: String,
    /// Milliseconds since the Unix epoch.
    pub received_at: u64,
    /// The Kafka value as received: the event's JSON (or its text, if it was not JSON).
    pub event: serde_json::Value,
}

impl From<&NotificationRecord> for NotificationJson {
    fn from(record: &NotificationRecord) -> NotificationJson {
        NotificationJson {
            seq: record.seq,
            event_id: record.event_id.clone(),
            event_type: record.event_type.clone(),
            order_number: record.order_number.clone(),
            received_at: record.received_ms,
            event: record.event(),
        }
    }
}

pub fn routes(ctx: Arc<GatewayCtx>) -> BoxedFilter<(Response,)> {
    let list_route = warp::path!("api" / "notifications")
        .and(warp::get())
        .and(call(ctx.clone()))
        .then(|c| serve(c, "/api/notifications", list));
    let stream_route = warp::path!("api" / "notifications" / "stream")
        .and(warp::get())
        .and(call(ctx))
        .then(|c| serve(c, "/api/notifications/stream", stream));
    list_route.or(stream_route).unify().boxed()
}

fn service(call: &Call) -> Result<&ActorRef<NotificationMsg>, ApiError> {
    let service = call.ctx.directory.notification.as_ref().ok_or_else(|| {
        ShopError::Unavailable("this node does not run the notification service".into())
    })?;
    Ok(service)
}

/// What the notification service received from Kafka, oldest first.
#[utoipa::path(get, path = "/api/notifications", operation_id = "listNotifications",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Items per page"),
        ("after" = Option<u64>, Query, description = "The `seq` the previous page ended with"),
    ),
    responses(
        (status = 200, description = "One page", body = Vec<NotificationJson>),
        (status = 400, description = "A bad `limit` or `after` (`invalid_input`)",
            body = ErrorBody),
    ))]
async fn list(call: Call) -> Result<Response, ApiError> {
    let limit = call.limit()?;
    let after = match call.query_param("after")? {
        Some(raw) => Some(
            raw.parse::<u64>()
                .map_err(|_| Invalid::new("after", "must be a notification seq"))?,
        ),
        None => None,
    };
    let ctx = &call.ctx;
    let mut nodes: Vec<String> = (ctx.registry.nodes_of(NOTIFICATION_SERVICE))
        .into_keys()
        .collect();
    let single = nodes.len() <= 1;
    if nodes.is_empty() {
        nodes.push(ctx.node.clone());
    }
    let directory = &ctx.directory;
    let mut gathered = directory.list_notifications(nodes, after, limit).await?;
    if directory.replicas.is_some() {
        // Each record once, listed by the leader of its partition; `seq` (the key) orders the
        // pages, partition by partition (the client continues after the last one).
        gathered.first_page(limit, |r| r.seq);
    } else if !single {
        // Several nodes consume the topic; a rebalance may give an event to two of them.
        let records = &mut gathered.items;
        records.sort_by(|a, b| (a.received_ms, &a.event_id).cmp(&(b.received_ms, &b.event_id)));
        let mut seen = HashSet::new();
        records.retain(|r| seen.insert(r.event_id.clone()));
        records.truncate(limit);
    }
    let records: Vec<NotificationJson> = (gathered.items.iter())
        .map(NotificationJson::from)
        .collect();
    Ok(page(&records, None, &gathered.missing))
}

/// Notifications as server-sent events (`event` = event type, `data` = the notification's
/// JSON); the stream does not end. On a node alone, the new ones as they arrive (`id` = seq).
/// In a replicated cluster, every notification of the cluster from any node, partition by
/// partition, each `id` a cursor that `Last-Event-ID` resumes from on any node (`cluster`).
#[utoipa::path(get, path = "/api/notifications/stream", operation_id = "streamNotifications",
    params(("Last-Event-ID" = Option<String>, Header,
        description = "In a replicated cluster: the id of the last event received")),
    responses(
        (status = 200, description = "An endless event stream",
            content_type = "text/event-stream", body = String),
        (status = 400, description = "A `Last-Event-ID` this stream did not send",
            body = ErrorBody),
    ))]
async fn stream(call: Call) -> Result<Response, ApiError> {
    let mut shutdown = call.ctx.shutdown.clone();
    let stopping = async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };
    if call.ctx.directory.replicas.is_some() {
        let last = call
            .headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok());
        let events = cluster::events(call.ctx.directory.clone(), last)?.take_until(stopping);
        return Ok(warp::sse::reply(warp::sse::keep_alive().stream(events)).into_response());
    }
    let actor = service(&call)?;
    let receiver = call_actor(actor, NotificationMsg::Subscribe, call.ctx.request_timeout).await?;
    let events = BroadcastStream::new(receiver).filter_map(|record| async move {
        let record = record.ok()?;
        let event = warp::sse::Event::default()
            .id(record.seq.to_string())
            .event(record.event_type.clone());
        event
            .json_data(NotificationJson::from(&record))
            .ok()
            .map(Ok::<_, Infallible>)
    });
    let events = events.take_until(stopping);
    Ok(warp::sse::reply(warp::sse::keep_alive().stream(events)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_render_their_payload_as_json() {
        let record = NotificationRecord {
            seq: 7,
            event_id: "e".into(),
            event_type: "OrderPlaced".into(),
            order_number: "o".into(),
            received_ms: 5,
            payload: r#"{"orderNumber":"o"}"#.into(),
        };
        let json = serde_json::to_value(NotificationJson::from(&record)).unwrap();
        assert_eq!(json["event"]["orderNumber"], "o");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["receivedAt"], 5);
    }
}
