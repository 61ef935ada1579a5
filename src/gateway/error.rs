//! API errors: every failure a request can meet, and the one place where each maps to an HTTP
//! status and a JSON body, [`ErrorBody`] (`{error, message, requestId, ...}`), which the OpenAPI
//! document (`openapi.rs`) describes for every error response.
//!
//! Every gateway module depends on this one, so it depends on none of them but the leaves
//! `auth` and `limit` (whose refusals it answers): the failures of forwarding ([`UpstreamError`])
//! are declared here, and the `Allow` header of a 405 comes from the route table in `allow`.

pub(super) mod allow;

use serde::Serialize;
use utoipa::ToSchema;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::auth::AuthFailure;
use super::limit::Throttled;
use crate::domain::Invalid;
use crate::error::ShopError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(u64),
    #[error("the request body did not arrive in time")]
    BodyTimeout,
    #[error("no route matches this path")]
    RouteNotFound,
    /// `allow` lists the methods the path takes, for the `Allow` header, when they are known.
    #[error("this path does not accept this method")]
    MethodNotAllowed { allow: Option<String> },
    #[error("the request did not complete within {0} ms")]
    Timeout(u128),
    #[error("{}", .0.reason)]
    Unauthorized(AuthFailure),
    #[error("too many requests from this client; retry in {} s", .0.retry_after_secs)]
    RateLimited(Throttled),
    #[error(transparent)]
    Shop(#[from] ShopError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// Why a request could not be forwarded along a configured route (`upstream`).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no instance of {0} is UP")]
    NoInstance(String),
    #[error("route {route}: {target} sent no response within {ms} ms")]
    Timeout {
        route: String,
        target: String,
        ms: u128,
    },
    #[error("route {route}: {target} failed after {attempts} attempt(s): {reason}")]
    Unreachable {
        route: String,
        target: String,
        attempts: u32,
        reason: String,
    },
}

/// The body of every error answer of the gateway.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// A machine-readable code, e.g. `not_found`, `invalid_input`, `out_of_stock`.
    #[schema(example = "out_of_stock")]
    pub error: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// The request's id, as in the `X-Request-Id` header and the logs.
    pub request_id: String,
    /// The field that failed validation (`invalid_input` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The SKUs concerned (`out_of_stock`, `unknown_sku`, `price_changed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku_codes: Option<Vec<String>>,
}

impl ApiError {
    /// The status and the machine-readable `error` code.
    fn status(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Invalid(_) | ApiError::Shop(ShopError::Invalid(_)) => {
                (StatusCode::BAD_REQUEST, "invalid_input")
            }
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::RouteNotFound | ApiError::Shop(ShopError::NotFound(_)) => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            ApiError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::BodyTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::Shop(ShopError::OutOfStock(_)) => (StatusCode::CONFLICT, "out_of_stock"),
            ApiError::Shop(ShopError::PriceChanged(_)) => (StatusCode::CONFLICT, "price_changed"),
            ApiError::Shop(ShopError::AlreadyCancelled(_)) => {
                (StatusCode::CONFLICT, "already_cancelled")
            }
            ApiError::Shop(ShopError::SkuTaken(_)) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Shop(ShopError::UnknownSku(_)) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unknown_sku")
            }
            ApiError::Shop(ShopError::IdempotencyMismatch) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
            }
            ApiError::Shop(ShopError::Unavailable(_) | ShopError::NotLeader(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ApiError::Shop(ShopError::Internal(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            ApiError::Upstream(UpstreamError::NoInstance(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            ApiError::Upstream(UpstreamError::Timeout { .. }) => {
                (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout")
            }
            ApiError::Upstream(UpstreamError::Unreachable { .. }) => {
                (StatusCode::BAD_GATEWAY, "bad_gateway")
            }
        }
    }

    /// Turns a warp rejection (refused before routing, or no route matched) of a request for
    /// `path` into the matching error.
    pub fn from_rejection(rejection: &warp::Rejection, path: &str) -> ApiError {
        if let Some(failure) = rejection.find::<AuthFailure>() {
            ApiError::Unauthorized(failure.clone())
        } else if let Some(throttled) = rejection.find::<Throttled>() {
            ApiError::RateLimited(*throttled)
        } else if rejection.is_not_found() {
            ApiError::RouteNotFound
        } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
            ApiError::MethodNotAllowed {
                allow: allow::allowed_methods(path),
            }
        } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
            ApiError::PayloadTooLarge(0)
        } else if rejection
            .find::<warp::reject::UnsupportedMediaType>()
            .is_some()
        {
            ApiError::UnsupportedMediaType
        } else {
            ApiError::BadRequest(format!("the request was rejected: {rejection:?}"))
        }
    }

    pub fn into_response(self, request_id: &str) -> Response {
        let (status, code) = self.status();
        if status.is_server_error() {
            tracing::warn!(request_id, error = %self, "request failed");
        }
        let field = match &self {
            ApiError::Invalid(invalid) => Some(invalid.field.clone()),
            _ => None,
        };
        let sku_codes = match &self {
            ApiError::Shop(
                ShopError::OutOfStock(skus)
                | ShopError::UnknownSku(skus)
                | ShopError::PriceChanged(skus),
            ) => Some(skus.clone()),
            _ => None,
        };
        let body = ErrorBody {
            error: code,
            message: self.to_string(),
            request_id: request_id.to_owned(),
            field,
            sku_codes,
        };
        let mut response =
            warp::reply::with_status(warp::reply::json(&body), status).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unauthorized(failure) => {
                headers.insert("www-authenticate", failure.www_authenticate());
            }
            ApiError::RateLimited(throttled) => throttled.stamp(headers),
            ApiError::MethodNotAllowed { allow: Some(allow) } => {
                if let Ok(allow) = warp::http::HeaderValue::from_str(allow) {
                    headers.insert(warp::http::header::ALLOW, allow);
                }
            }
            _ if status == StatusCode::SERVICE_UNAVAILABLE => {
                headers.insert("retry-after", warp::http::HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}
