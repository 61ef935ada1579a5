//! Forwarding: one request sent upstream with hyper-util's client and its answer streamed back.
//!
//! `upstream.rs` picks the route and the authorities; this module copies the method, the headers
//! (less hop-by-hop ones, plus `X-Forwarded-For/-Host/-Proto` and `X-Request-Id`) and the body,
//! bounds each attempt by the route's response timeout (its client bounds connecting by the
//! connect timeout), and sends a failed GET to the next authority while the route's retries
//! last. Other methods are sent once.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyDataStream, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use warp::http::header::{CONNECTION, CONTENT_LENGTH, HOST};
use warp::http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use warp::reply::{Reply, Response};

use super::Route;
use crate::gateway::error::{ApiError, UpstreamError};
use crate::gateway::filters::Call;

/// The client a route sends with; it pools connections per authority.
pub(super) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// How long an idle pooled connection to an upstream is kept.
const POOL_IDLE: Duration = Duration::from_secs(30);

/// Headers that concern one connection only (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A client whose connections give up after `connect_timeout`.
pub(super) fn client(connect_timeout: Duration) -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .build(connector)
}

/// Sends `call` to `path` (query kept) at one of `authorities`, round-robin; a GET that fails
/// goes to the next authority while `route.spec.retries` last.
pub(super) async fn send(
    route: &Route,
    authorities: &[String],
    path: &str,
    call: Call,
    remote: Option<SocketAddr>,
) -> Result<Response, ApiError> {
    let body = call.body()?.clone();
    let path_and_query = match call.query.as_str() {
        "" => path.to_owned(),
        query => format!("{path}?{query}"),
    };
    let headers = outgoing_headers(&call.headers, remote, &call.request_id);
    let spec = &route.spec;
    let attempts = if call.method == Method::GET {
        spec.retries + 1
    } else {
        1
    };
    let first = route.next.fetch_add(1, Ordering::Relaxed);
    let mut failure = None;
    for attempt in 0..attempts {
        let target = &authorities[(first + attempt as usize) % authorities.len()];
        let mut request = Request::builder()
            .method(call.method.clone())
            .uri(format!("http://{target}{path_and_query}"))
            .body(Full::new(body.clone()))
            .map_err(|e| ApiError::BadRequest(format!("cannot forward this path: {e}")))?;
        *request.headers_mut() = headers.clone();
        let error = match tokio::time::timeout(spec.response_timeout, route.client.request(request))
            .await
        {
            Ok(Ok(response)) => return Ok(incoming(response)),
            Ok(Err(e)) => UpstreamError::Unreachable {
                route: spec.id.clone(),
                target: target.clone(),
                attempts: attempt + 1,
                reason: error_chain(&e),
            },
            Err(_) => UpstreamError::Timeout {
                route: spec.id.clone(),
                target: target.clone(),
                ms: spec.response_timeout.as_millis(),
            },
        };
        tracing::warn!(route = spec.id, attempt, error = %error, "upstream attempt failed");
        failure = Some(error);
    }
    Err(failure.expect("a route makes at least one attempt").into())
}

/// The request's headers as sent upstream.
fn outgoing_headers(
    incoming: &HeaderMap,
    remote: Option<SocketAddr>,
    request_id: &str,
) -> HeaderMap {
    let mut headers = incoming.clone();
    strip_hop_by_hop(&mut headers);
    // The client sets both for the upstream: its authority, and the body's length.
    headers.remove(HOST);
    headers.remove(CONTENT_LENGTH);
    if let Some(ip) = remote.map(|addr| addr.ip()) {
        let chain = match incoming
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(earlier) => format!("{earlier}, {ip}"),
            None => ip.to_string(),
        };
        if let Ok(value) = HeaderValue::from_str(&chain) {
            headers.insert("x-forwarded-for", value);
        }
    }
    if let Some(host) = incoming.get(HOST) {
        headers
            .entry("x-forwarded-host")
            .or_insert_with(|| host.clone());
    }
    headers
        .entry("x-forwarded-proto")
        .or_insert(HeaderValue::from_static("http"));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
    headers
}

/// Removes the hop-by-hop headers, and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The upstream's response, its body streamed through.
fn incoming(response: hyper::Response<Incoming>) -> Response {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let mut reply = warp::reply::stream(BodyDataStream::new(body)).into_response();
    *reply.status_mut() = parts.status;
    *reply.headers_mut() = parts.headers;
    reply
}

/// An error with its causes, which say what went wrong (`connection refused`).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}
