//! Gateway filters: what every route shares. [`admit`] runs before routing (rate limit, then
//! authentication); [`call`] extracts a [`Call`] (context, request id, headers, query, body
//! stream, parsed as JSON by [`Call::json`], with [`WholeNumber`] for integer fields);
//! [`serve`] runs a handler under the request timeout (or, [`serve_within`], a route's own)
//! inside a tracing span that carries the request id, renders its error as JSON, echoes
//! `X-Request-Id` and records the request's metrics. [`LineJson`] is an order line as answers
//! show it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt, TryStreamExt};
use serde::de::{self, DeserializeOwned, Unexpected};
use serde::{Deserialize, Deserializer, Serialize};
use tracing::Instrument;
use utoipa::ToSchema;
use warp::filters::path::FullPath;
use warp::http::{HeaderMap, HeaderValue, Method};
use warp::reply::Response;
use warp::Filter;

use super::error::ApiError;
use super::limit::{Allowance, EXEMPT};
use super::GatewayCtx;
use crate::domain::{Amount, OrderLine, Sku};

/// How far past the limit an oversized body is still read (and dropped), so the client gets its
/// 413 on a healthy connection instead of a reset.
const DRAIN_FACTOR: u64 = 16;

/// The request body, read before the handler runs.
enum Body {
    Read(Bytes),
    TooLarge,
    Failed(String),
    TimedOut,
}

/// The query of a list route, `?limit=&after=`, as the OpenAPI document describes it; read by
/// [`Call::limit`] and the route's own `after` parsing.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Paging {
    /// Items per page.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<u32>,
    /// Where the previous page ended: its `X-Next-Cursor`.
    #[param(format = "uuid")]
    pub after: Option<String>,
}

/// An integer in a request body: a JSON integer, or a number with a zero fraction (`3.0`), which
/// JSON Schema counts as an integer too. Anything else does not deserialize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeNumber(pub i64);

impl<'de> Deserialize<'de> for WholeNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<WholeNumber, D::Error> {
        struct Whole;
        impl de::Visitor<'_> for Whole {
            type Value = WholeNumber;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an integer")
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<WholeNumber, E> {
                Ok(WholeNumber(n))
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<WholeNumber, E> {
                let fits = i64::try_from(n).map(WholeNumber);
                fits.map_err(|_| E::invalid_value(Unexpected::Unsigned(n), &self))
            }

            fn visit_f64<E: de::Error>(self, n: f64) -> Result<WholeNumber, E> {
                // Below 2^63 in size, so the cast is exact.
                let whole = n.fract() == 0.0 && n.abs() < 9.223_372_036_854_776e18;
                if whole {
                    Ok(WholeNumber(n as i64))
                } else {
                    Err(E::invalid_type(Unexpected::Float(n), &self))
                }
            }
        }
        deserializer.deserialize_any(Whole)
    }
}

/// An order line as JSON shows it, in API answers and in events.
// (`OrderEvent::to_json` writes the event's lines; a test below checks that they agree.)
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineJson {
    #[schema(value_type = Sku)]
    pub sku_code: String,
    /// The unit price.
    pub price: Amount,
    pub quantity: u32,
}

impl From<&OrderLine> for LineJson {
    fn from(line: &OrderLine) -> LineJson {
        LineJson {
            sku_code: line.sku.as_str().to_owned(),
            price: line.price.amount(),
            quantity: line.quantity,
        }
    }
}

/// One request as a handler sees it.
pub struct Call {
    pub ctx: Arc<GatewayCtx>,
    pub request_id: String,
    pub method: Method,
    pub headers: HeaderMap,
    /// The raw query string, empty when there is none.
    pub query: String,
    body: Body,
}

/// The request id: the client's `X-Request-Id` if it is sane, otherwise a new UUID.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Lets a request through to routing or refuses it: the client's rate limit first (every path
/// but the [`EXEMPT`] ones), then authentication. Extracts the client's allowance (`None`
/// when there is no limit); rejects with `Throttled` or `AuthFailure`.
pub fn admit(
    ctx: Arc<GatewayCtx>,
) -> impl Filter<Extract = (Option<Allowance>,), Error = warp::Rejection> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::addr::remote())
        .and_then(
            move |method: Method,
                  path: FullPath,
                  headers: HeaderMap,
                  remote: Option<SocketAddr>| {
                let ctx = ctx.clone();
                async move {
                    let path = path.as_str();
                    let exempt = (EXEMPT.iter()).any(|p| p[1..] == *path.trim_matches('/'));
                    let allowance = match &ctx.rate_limit {
                        Some(limit) if !exempt => {
                            let client = limit.client(&headers, remote);
                            Some(limit.check(client).map_err(warp::reject::custom)?)
                        }
                        _ => None,
                    };
                    ctx.auth
                        .check(&method, path, &headers)
                        .map_err(warp::reject::custom)?;
                    Ok::<_, warp::Rejection>(allowance)
                }
            },
        )
}

/// Extracts a [`Call`]; put it after the path and method filters.
pub fn call(
    ctx: Arc<GatewayCtx>,
) -> impl Filter<Extract = (Call,), Error = warp::Rejection> + Clone {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::any()
        .map(move || ctx.clone())
        .and(warp::method())
        .and(warp::header::headers_cloned())
        .and(query)
        .and(warp::body::stream())
        .then(
            |ctx: Arc<GatewayCtx>, method, headers: HeaderMap, query, body| async move {
                let chunks = TryStreamExt::map_ok(body, |mut chunk| {
                    let len = Buf::remaining(&chunk);
                    Buf::copy_to_bytes(&mut chunk, len)
                });
                let body =
                    read_body(Box::pin(chunks), ctx.max_body_bytes, ctx.request_timeout).await;
                Call {
                    ctx,
                    request_id: request_id(&headers),
                    method,
                    headers,
                    query,
                    body,
                }
            },
        )
}

/// Reads a body of at most `limit` bytes within `timeout`; a larger one is drained up to
/// [`DRAIN_FACTOR`] times the limit and reported as too large.
async fn read_body(
    mut chunks: Pin<Box<dyn Stream<Item = Result<Bytes, warp::Error>> + Send>>,
    limit: u64,
    timeout: Duration,
) -> Body {
    let read = async {
        let (mut body, mut seen) = (BytesMut::new(), 0u64);
        while let Some(chunk) = chunks.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => return Body::Failed(e.to_string()),
            };
            seen += chunk.len() as u64;
            if seen > limit.saturating_mul(DRAIN_FACTOR) {
                return Body::TooLarge;
            }
            if seen <= limit {
                body.extend_from_slice(&chunk);
            }
        }
        if seen > limit {
            Body::TooLarge
        } else {
            Body::Read(body.freeze())
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Body::TimedOut)
}

impl Call {
    /// Reads the body (at most the configured size) and parses it as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json"
            && !(mime.starts_with("application/") && mime.ends_with("+json"))
        {
            return Err(ApiError::UnsupportedMediaType);
        }
        serde_json::from_slice(self.body()?).map_err(|e| {
            ApiError::BadRequest(format!("the body is not valid JSON for this route: {e}"))
        })
    }

    /// The body as read (at most the configured size), whatever its content type.
    pub fn body(&self) -> Result<&Bytes, ApiError> {
        match &self.body {
            Body::Read(body) => Ok(body),
            Body::TooLarge => Err(ApiError::PayloadTooLarge(self.ctx.max_body_bytes)),
            Body::TimedOut => Err(ApiError::BodyTimeout),
            Body::Failed(e) => Err(ApiError::BadRequest(format!(
                "the request body could not be read: {e}"
            ))),
        }
    }

    /// The query string's pairs, in order (keys may repeat).
    pub fn query_pairs(&self) -> Result<Vec<(String, String)>, ApiError> {
        serde_urlencoded::from_str(&self.query)
            .map_err(|e| ApiError::BadRequest(format!("bad query string: {e}")))
    }

    /// The single value of query parameter `name`, if present.
    pub fn query_param(&self, name: &str) -> Result<Option<String>, ApiError> {
        Ok(self
            .query_pairs()?
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v))
    }

    /// `?limit=` between 1 and 1000, default 100.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.query_param("limit")? {
            None => Ok(100),
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| {
                    ApiError::Invalid(crate::domain::Invalid::new(
                        "limit",
                        "must be between 1 and 1000",
                    ))
                }),
        }
    }
}

/// Runs `handler` for one route: the node's request timeout, span with the request id, JSON
/// errors, metrics.
pub async fn serve<F, Fut>(call: Call, route: &'static str, handler: F) -> Response
where
    F: FnOnce(Call) -> Fut,
    Fut: Future<Output = Result<Response, ApiError>>,
{
    let timeout = call.ctx.request_timeout;
    serve_within(call, route, timeout, handler).await
}

/// [`serve`] with a timeout of the route's own (a gateway route's retries and timeouts).
pub async fn serve_within<F, Fut>(
    call: Call,
    route: &str,
    timeout: Duration,
    handler: F,
) -> Response
where
    F: FnOnce(Call) -> Fut,
    Fut: Future<Output = Result<Response, ApiError>>,
{
    let started = Instant::now();
    let (ctx, request_id, method) = (
        call.ctx.clone(),
        call.request_id.clone(),
        call.method.clone(),
    );
    let span = tracing::info_span!("request", request_id = %request_id, %method, route);
    let result = async {
        match tokio::time::timeout(timeout, handler(call)).await {
            Ok(result) => result,
            Err(_) => Err(ApiError::Timeout(timeout.as_millis())),
        }
    }
    .instrument(span.clone())
    .await;
    let response = result.unwrap_or_else(|e| span.in_scope(|| e.into_response(&request_id)));
    finish(&ctx, route, &method, &request_id, started, response)
}

/// Echoes the request id and records the request's metrics.
pub fn finish(
    ctx: &GatewayCtx,
    route: &str,
    method: &Method,
    request_id: &str,
    started: Instant,
    mut response: Response,
) -> Response {
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    let status = response.status().as_str().to_owned();
    let labels = [route, method.as_str(), status.as_str()];
    ctx.metrics.http_requests.with_label_values(&labels).inc();
    ctx.metrics
        .http_duration
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    tracing::debug!(request_id, route, %status, elapsed_us = started.elapsed().as_micros() as u64, "request done");
    response
}

/// A JSON response with `status`.
pub fn json_response(status: warp::http::StatusCode, body: &impl serde::Serialize) -> Response {
    use warp::Reply;
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

/// One page of a list: a 200 with the items, and `X-Next-Cursor` (the `?after=` of the next
/// page) when the page was full. `missing` names the parts that are absent (a cluster node
/// that did not answer, a partition whose leader changed while listing), said in
/// `X-Partial-Results` and a `Warning`.
pub fn page(
    items: &[impl serde::Serialize],
    next_cursor: Option<String>,
    missing: &[String],
) -> Response {
    let mut response = json_response(warp::http::StatusCode::OK, &items);
    if let Some(value) = next_cursor.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert("x-next-cursor", value);
    }
    if !missing.is_empty() {
        let nodes = missing.join(",");
        let warning = format!("199 agora \"partial list: {nodes} missing\"");
        for (name, value) in [("x-partial-results", nodes), ("warning", warning)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    response
}

/// A 201 with a `Location` header.
pub fn created(location: String, body: &impl serde::Serialize) -> Response {
    let mut response = json_response(warp::http::StatusCode::CREATED, body);
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert("location", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::{LineJson, WholeNumber};
    use crate::domain::{EventType, Order, OrderEvent, OrderLine, OrderNumber, OrderStatus};
    use crate::domain::{Price, Sku};

    #[test]
    fn whole_numbers_may_have_a_zero_fraction() {
        let parse = |text| serde_json::from_str::<WholeNumber>(text).map(|n| n.0);
        assert_eq!(parse("3").unwrap(), 3);
        assert_eq!(parse("-3").unwrap(), -3);
        assert_eq!(parse("1664.0").unwrap(), 1664);
        assert_eq!(parse("1e3").unwrap(), 1000);
        for bad in ["1.5", "\"3\"", "null", "1e19", "9223372036854775808"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_show_lines_as_the_api_does() {
        let line = |cents, quantity| OrderLine {
            sku: Sku::parse("iphone_13").unwrap(),
            price: Price::from_cents(cents).unwrap(),
            quantity,
        };
        let order = Order {
            number: OrderNumber::new(),
            status: OrderStatus::Placed,
            lines: vec![line(1_990, 3), line(100_000, 1)],
            total: Price::from_cents(105_970).unwrap(),
            created_ms: 0,
            fingerprint: 0,
            restocked: true,
            saga: Default::default(),
        };
        let api: Vec<LineJson> = order.lines.iter().map(LineJson::from).collect();
        let event = OrderEvent::for_order(&order, EventType::OrderPlaced, 0).to_json();
        assert_eq!(event["lines"], serde_json::to_value(api).unwrap());
    }
}
