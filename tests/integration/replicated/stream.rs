//! Reading `GET /api/notifications/stream` as a client does: the server-sent events of one
//! node, from a `Last-Event-ID`, until enough came, and the whole stream of a cluster read
//! across a reconnect to another node.

use std::collections::BTreeSet;

use futures::StreamExt;
use reqwest::Method;
use serde_json::Value;

use super::shop::PATIENCE;
use crate::integration::support::TestApp;

/// One server-sent event: its id and its data.
pub struct Event {
    pub id: String,
    pub data: Value,
}

/// Reads the stream of `app` from `last_event_id` until `n` events came (failing after
/// [`PATIENCE`] without one), then hangs up.
pub async fn read(app: &TestApp, last_event_id: Option<&str>, n: usize) -> Vec<Event> {
    let mut request = app.http(Method::GET, "/api/notifications/stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.expect("the stream answers");
    assert!(
        response.status().is_success(),
        "stream: {}",
        response.status()
    );
    let mut body = response.bytes_stream();
    let (mut text, mut events) = (String::new(), Vec::new());
    while events.len() < n {
        let chunk = tokio::time::timeout(PATIENCE, body.next()).await;
        let chunk =
            chunk.unwrap_or_else(|_| panic!("{} of {n} events after {PATIENCE:?}", events.len()));
        let chunk = chunk.expect("the stream goes on").expect("a chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            events.extend(parse(&block));
        }
    }
    events.truncate(n);
    events
}

/// An event block (`id:`, `event:`, `data:` lines); `None` for a keep-alive comment.
fn parse(block: &str) -> Option<Event> {
    let field = |name: &str| {
        let lines = block.lines().filter_map(|l| l.strip_prefix(name));
        lines.map(|v| v.trim_start().to_owned()).next()
    };
    let data = serde_json::from_str(&field("data:")?).expect("an event's data is JSON");
    Some(Event {
        id: field("id:")?,
        data,
    })
}

/// The `n` notifications of the cluster as a client streams them: the first half from
/// `first`, the rest from `then` after a reconnect with the last id. Fails unless each event
/// came once and they are the `n` that `then` lists.
pub async fn across_a_reconnect(first: &TestApp, then: &TestApp, n: usize) {
    let before = read(first, None, n / 2).await;
    let last = before.last().map(|e| e.id.clone());
    let after = read(then, last.as_deref(), n - before.len()).await;
    let streamed: Vec<&Value> = before.iter().chain(&after).map(|e| &e.data).collect();
    let ids: BTreeSet<&str> = (streamed.iter())
        .filter_map(|d| d["eventId"].as_str())
        .collect();
    assert_eq!(
        ids.len(),
        n,
        "every event once across the reconnect: {streamed:?}"
    );
    let listed = then.wait_for_notifications(n).await;
    let listed: BTreeSet<&str> = listed
        .iter()
        .filter_map(|n| n["eventId"].as_str())
        .collect();
    assert_eq!(ids, listed, "the stream has what the list has");
}
