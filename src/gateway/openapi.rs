//! The OpenAPI 3 document, served at `GET /openapi.json`.
//!
//! Nothing in it is written by hand: utoipa builds it from the `#[utoipa::path]` annotations on
//! the handlers of `product`, `inventory`, `order`, `notification`, `ops`, `cluster`, `console`
//! and `upstream` (its
//! `GET /gateway/routes`; the routes of `--routes` are the operator's, not agora's), from the
//! types they send and receive (`ToSchema`), and from the registry's [`RegistryApi`]. [`COMMON`]
//! adds the answers that whole kinds of routes share (a bad body, the 401 and 429 of `admit`, the
//! timeout of `serve`), as reusable responses with [`ErrorBody`], and [`PARTIAL_LIST`] the
//! headers of a list gathered from the cluster's nodes. `schemas` describes the domain types the
//! bodies carry. The document is built once; it lists exactly the routes of the route table that
//! the `Allow` header of a 405 is read from (`error::allow`), which its tests check.

mod schemas;

use std::sync::{Arc, LazyLock};

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Content, Header, OpenApi as Document, Ref, RefOr, Response};
use utoipa::OpenApi;
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response as HttpResponse};
use warp::Filter;

use super::error::{ApiError, ErrorBody};
use super::filters::{call, serve, Call};
use super::limit::EXEMPT;
use super::{cluster, console, inventory, notification, ops, order, product, upstream, GatewayCtx};
use crate::registry::RegistryApi;

/// The security scheme of `/api` (`--auth-jwt-secret` or `--auth-jwt-public-key`).
const BEARER: &str = "bearer";
/// The security scheme of writes to `/eureka` (`--registry-user`).
const REGISTRY_BASIC: &str = "registryBasic";
/// The gateway's error body, and the registry's.
const ERROR_BODY: &str = "ErrorBody";
const REGISTRY_ERROR: &str = "RegistryError";

#[derive(OpenApi)]
#[openapi(
    paths(
        product::create,
        product::list,
        product::get,
        product::update,
        product::delete,
        inventory::check,
        inventory::set_stock,
        order::place,
        order::list,
        order::get,
        order::cancel,
        notification::list,
        notification::stream,
        ops::health,
        ops::live,
        ops::ready,
        ops::metrics,
        cluster::describe,
        cluster::leave,
        console::console_page,
        console::console_state,
        upstream::list,
        openapi_json,
    ),
    components(schemas(ErrorBody))
)]
struct GatewayApi;

/// One operation, as [`Common::applies`] sees it.
struct Route<'a> {
    path: &'a str,
    method: &'a str,
    has_body: bool,
}

impl Route<'_> {
    fn under(&self, prefix: &str) -> bool {
        self.path.starts_with(prefix)
    }

    /// Served by the gateway's own routes (through `filters::serve`), not by the registry.
    fn gateway(&self) -> bool {
        !self.under("/eureka")
    }

    /// A change to the registry: anything but a read of `/eureka`.
    fn registry_write(&self) -> bool {
        self.under("/eureka") && self.method != "get"
    }
}

/// An answer that every operation of a kind can give.
struct Common {
    status: &'static str,
    /// Its name among the document's reusable responses.
    name: &'static str,
    description: &'static str,
    /// The schema of its JSON body: the gateway's [`ErrorBody`] or the registry's own.
    body: &'static str,
    headers: &'static [&'static str],
    applies: fn(&Route) -> bool,
}

const COMMON: &[Common] = &[
    Common {
        status: "400",
        name: "BadRequest",
        description: "The body is not JSON of this route's shape, or a field or parameter is out \
                      of bounds (`bad_request`, `invalid_input` with `field`)",
        body: ERROR_BODY,
        headers: &[],
        applies: |r| r.gateway() && r.has_body,
    },
    Common {
        status: "401",
        name: "Unauthorized",
        description: "No valid credentials, when the node asks for them: a bearer JWT for `/api` \
                      (`--auth-jwt-*`), HTTP basic for writes to `/eureka` (`--registry-user`), \
                      either for `/console`",
        body: ERROR_BODY,
        headers: &["www-authenticate"],
        applies: |r| r.under("/api/") || r.registry_write() || r.under("/console"),
    },
    Common {
        status: "408",
        name: "BodyTimeout",
        description: "The body did not arrive within the request timeout (`request_timeout`)",
        body: ERROR_BODY,
        headers: &[],
        applies: |r| r.gateway() && r.has_body,
    },
    Common {
        status: "413",
        name: "PayloadTooLarge",
        description: "The body is larger than the node accepts (`payload_too_large`)",
        body: ERROR_BODY,
        headers: &[],
        applies: |r| r.has_body,
    },
    Common {
        status: "415",
        name: "UnsupportedMediaType",
        description: "The body is not `application/json` (`unsupported_media_type`)",
        body: ERROR_BODY,
        headers: &[],
        applies: |r| r.gateway() && r.has_body,
    },
    Common {
        status: "429",
        name: "RateLimited",
        description: "Over the client's rate, when `--rate-limit` is set (`rate_limited`)",
        body: ERROR_BODY,
        headers: &["retry-after", "x-ratelimit-limit", "x-ratelimit-remaining"],
        applies: |r| !EXEMPT.contains(&r.path),
    },
    Common {
        status: "500",
        name: "Internal",
        description: "Storage failed (`internal`)",
        body: ERROR_BODY,
        headers: &[],
        applies: |r| r.under("/api/"),
    },
    Common {
        status: "503",
        name: "Unavailable",
        description: "A service actor is not running or did not answer (`unavailable`)",
        body: ERROR_BODY,
        headers: &["retry-after"],
        applies: |r| r.under("/api/"),
    },
    Common {
        status: "504",
        name: "Timeout",
        description: "No answer within the request timeout (`timeout`)",
        body: ERROR_BODY,
        headers: &[],
        applies: |r| r.gateway(),
    },
    Common {
        status: "404",
        name: "UnknownInstance",
        description: "The registry has no such instance",
        body: REGISTRY_ERROR,
        headers: &[],
        applies: |r| r.registry_write() && r.path.contains("{instanceId}"),
    },
    Common {
        status: "503",
        name: "RegistryUnavailable",
        description: "The registry actor did not answer",
        body: REGISTRY_ERROR,
        headers: &[],
        applies: |r| r.registry_write(),
    },
];

/// The headers of a list gathered from the cluster's nodes (`filters::page`) when a part is
/// missing: a node did not answer, or a partition's leader changed while listing.
const PARTIAL_LIST: &[(&str, &str)] = &[
    (
        "x-partial-results",
        "The missing parts, comma-separated: nodes that did not answer, and `partition N` for a \
         partition whose leader changed while listing",
    ),
    (
        "warning",
        "`199 agora \"partial list: PARTS missing\"`, with `X-Partial-Results`",
    ),
];

impl Common {
    fn response(&self) -> Response {
        let body = Content::new(Some(Ref::from_schema_name(self.body)));
        let mut response = Response::new(self.description);
        response
            .content
            .insert("application/json".into(), body.into());
        for header in self.headers {
            response
                .headers
                .insert((*header).into(), Header::default().into());
        }
        response
    }
}

/// The whole document: the gateway's routes, the registry's, and the answers they share.
pub fn document() -> Document {
    let mut doc = GatewayApi::openapi();
    doc.merge(RegistryApi::openapi());
    let components = doc.components.get_or_insert_with(Default::default);
    for common in COMMON {
        components
            .responses
            .insert(common.name.into(), common.response().into());
    }
    let bearer = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("JWT");
    let basic = HttpBuilder::new().scheme(HttpAuthScheme::Basic);
    components.add_security_scheme(BEARER, SecurityScheme::Http(bearer.build()));
    components.add_security_scheme(REGISTRY_BASIC, SecurityScheme::Http(basic.build()));
    for (path, item) in doc.paths.paths.iter_mut() {
        for (method, operation) in operations(item) {
            complete(path, method, operation);
        }
    }
    doc
}

/// The operations of a path, with their methods.
fn operations(item: &mut PathItem) -> impl Iterator<Item = (&'static str, &mut Operation)> {
    [
        ("get", &mut item.get),
        ("put", &mut item.put),
        ("post", &mut item.post),
        ("delete", &mut item.delete),
    ]
    .into_iter()
    .filter_map(|(method, operation)| Some((method, operation.as_mut()?)))
}

/// Adds the shared answers that apply to `operation` (keeping any it describes itself), the
/// headers of a partial list to a page of one (an operation with `limit`) and the credentials it
/// may need, and files the registry's operations under one tag.
fn complete(path: &str, method: &str, operation: &mut Operation) {
    let route = Route {
        path,
        method,
        has_body: operation.request_body.is_some(),
    };
    if route.under("/eureka") {
        operation.tags = Some(vec!["registry".into()]);
    }
    let paged = (operation.parameters.iter().flatten())
        .any(|p| matches!(p, RefOr::T(parameter) if parameter.name == "limit"));
    if let (true, Some(RefOr::T(page))) = (paged, operation.responses.responses.get_mut("200")) {
        for (name, description) in PARTIAL_LIST {
            let mut header = Header::default();
            header.description = Some((*description).into());
            page.headers.insert((*name).into(), header.into());
        }
    }
    for common in COMMON.iter().filter(|c| (c.applies)(&route)) {
        let reference = Ref::new(format!("#/components/responses/{}", common.name));
        operation
            .responses
            .responses
            .entry(common.status.into())
            .or_insert(RefOr::Ref(reference));
    }
    let schemes: &[&str] = if route.under("/api/") {
        &[BEARER]
    } else if route.registry_write() {
        &[REGISTRY_BASIC]
    } else if route.under("/console") {
        &[REGISTRY_BASIC, BEARER]
    } else {
        return;
    };
    // Without credentials too: a node checks them only when configured.
    let no_credentials = SecurityRequirement::default();
    let with = |scheme: &&str| SecurityRequirement::new(*scheme, Vec::<String>::new());
    operation.security = Some(
        std::iter::once(no_credentials)
            .chain(schemes.iter().map(with))
            .collect(),
    );
}

/// The document's JSON, built once.
static JSON: LazyLock<String> =
    LazyLock::new(|| (document().to_json()).expect("the OpenAPI document serializes"));

/// `GET /openapi.json`.
pub fn routes(ctx: Arc<GatewayCtx>) -> BoxedFilter<(HttpResponse,)> {
    warp::path!("openapi.json")
        .and(warp::get())
        .and(call(ctx))
        .then(|c| serve(c, "/openapi.json", openapi_json))
        .boxed()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses(
    (status = 200, description = "The OpenAPI document", body = Object),
))]
async fn openapi_json(_call: Call) -> Result<HttpResponse, ApiError> {
    let body = JSON.as_str();
    Ok(warp::reply::with_header(body, "content-type", "application/json").into_response())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::gateway::error::allow::ROUTES;

    #[test]
    fn the_document_lists_every_route() {
        let mut doc = document();
        let mut listed = BTreeSet::new();
        for (path, item) in doc.paths.paths.iter_mut() {
            for (method, operation) in operations(item) {
                listed.insert((method, path.clone()));
                assert!(
                    operation
                        .responses
                        .responses
                        .keys()
                        .any(|s| s.starts_with('2')),
                    "{method} {path} has no success answer"
                );
            }
        }
        let expected = ROUTES.iter().map(|(m, p)| (*m, (*p).to_owned())).collect();
        assert_eq!(listed, expected);
    }

    #[test]
    fn no_schema_name_is_taken_twice() {
        let gateway = GatewayApi::openapi().components.unwrap_or_default();
        let registry = RegistryApi::openapi().components.unwrap_or_default();
        let both: Vec<_> = (gateway.schemas.keys())
            .filter(|name| registry.schemas.contains_key(*name))
            .collect();
        assert!(both.is_empty(), "merging would drop one of {both:?}");
    }

    #[test]
    fn gathered_lists_document_their_partial_headers() {
        let doc = serde_json::to_value(document()).unwrap();
        for path in ["/api/product", "/api/order", "/api/notifications"] {
            let headers = &doc["paths"][path]["get"]["responses"]["200"]["headers"];
            for name in ["x-partial-results", "warning"] {
                assert!(headers[name]["description"].is_string(), "{path} {name}");
            }
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = serde_json::to_value(document()).unwrap();
        let text = doc.to_string();
        for reference in text.split("\"$ref\":\"#/").skip(1) {
            let pointer = reference.split('"').next().unwrap();
            assert!(doc.pointer(&format!("/{pointer}")).is_some(), "{pointer}");
        }
    }
}
