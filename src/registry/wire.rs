//! Wire: Eureka's response format, JSON or XML as the `Accept` header asks, and the HTTP
//! responses the routes send.
//!
//! The JSON renderer here and the XML renderer in `xml.rs` both walk the same description of an
//! instance (`tree.rs`), so the two formats carry the same fields. In JSON, ports, countryId and
//! leaseInfo are numbers while `@enabled`, `isCoordinatingDiscoveryServer` and the two instance
//! timestamps are strings, as Eureka's Jackson codec writes them.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use warp::http::header::{HeaderValue, CONTENT_TYPE};
use warp::http::StatusCode;
use warp::reply::Response;

use super::instance::{Action, Instance};
use super::snapshot::{AppView, AppsView};
use super::tree::{instance_nodes, Node};
use super::xml;

/// The representation a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Xml,
}

impl Format {
    /// JSON only when `Accept` mentions json; XML otherwise, also without the header (as
    /// Eureka's server does, and as py-eureka-client expects).
    pub(crate) fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.to_ascii_lowercase().contains("json") => Format::Json,
            _ => Format::Xml,
        }
    }
}

/// `{"applications": {...}}`: the JSON of `GET /eureka/apps`, its delta and the VIP queries.
#[derive(Serialize, ToSchema)]
pub(crate) struct ApplicationsJson {
    applications: AppsJson,
}

#[derive(Serialize, ToSchema)]
struct AppsJson {
    /// The registry's version (a delta's clients compare it).
    #[serde(rename = "versions__delta")]
    version_delta: String,
    /// `UP_2_DOWN_1_`: instance counts per status.
    #[serde(rename = "apps__hashcode")]
    apps_hashcode: String,
    application: Vec<AppJson>,
}

/// `{"application": {...}}`: the JSON of `GET /eureka/apps/{appId}`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ApplicationJson {
    application: AppJson,
}

/// An application and its instances.
#[derive(Serialize, ToSchema)]
struct AppJson {
    name: String,
    instance: Vec<InstanceJson>,
}

/// `{"instance": {...}}`: the JSON of one instance, and the body a client registers with.
#[derive(Serialize, ToSchema)]
pub(crate) struct InstanceEnvelope {
    instance: InstanceJson,
}

/// An instance as Eureka describes it: `instanceId`, `hostName`, `app`, `ipAddr`, `status`,
/// `port`, `securePort`, `dataCenterInfo`, `leaseInfo`, `metadata`, `vipAddress`, ...
#[derive(Serialize, ToSchema)]
#[schema(value_type = Object)]
struct InstanceJson(Map<String, Value>);

/// A handled error of the registry.
#[derive(Serialize, ToSchema)]
pub(crate) struct RegistryError {
    /// The status's reason phrase, e.g. `Not Found`.
    error: &'static str,
    message: String,
}

/// `{"applications": {...}}` or `<applications>`.
pub(crate) fn applications(view: &AppsView<'_>, format: Format) -> Response {
    match format {
        Format::Json => {
            let body = ApplicationsJson {
                applications: AppsJson {
                    version_delta: view.version.to_string(),
                    apps_hashcode: view.hashcode.clone(),
                    application: view.apps.iter().map(app_json).collect(),
                },
            };
            json_response(StatusCode::OK, &body)
        }
        Format::Xml => xml_response(xml::applications(view)),
    }
}

/// `{"application": {...}}` or `<application>`.
pub(crate) fn application(app: &AppView<'_>, format: Format) -> Response {
    match format {
        Format::Json => {
            let body = ApplicationJson {
                application: app_json(app),
            };
            json_response(StatusCode::OK, &body)
        }
        Format::Xml => xml_response(xml::application(app)),
    }
}

/// `{"instance": {...}}` or `<instance>`.
pub(crate) fn instance(info: &Instance, action: Action, format: Format) -> Response {
    match format {
        Format::Json => typed_response(
            StatusCode::OK,
            "application/json",
            instance_body(info, action),
        ),
        Format::Xml => xml_response(xml::instance(info, action)),
    }
}

/// `{"instance": {...}}` as text: the body a client registers with, which peers replicate.
pub(crate) fn instance_body(info: &Instance, action: Action) -> String {
    let body = InstanceEnvelope {
        instance: instance_json(info, action),
    };
    serde_json::to_string(&body).expect("a JSON value serializes")
}

/// A handled error: `{"error": "...", "message": "..."}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = RegistryError {
        error: status.canonical_reason().unwrap_or("error"),
        message: message.into(),
    };
    json_response(status, &body)
}

/// A success without a body (register answers 204, renew and the updates 200).
pub(crate) fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Default::default());
    *response.status_mut() = status;
    response
}

fn app_json(app: &AppView<'_>) -> AppJson {
    AppJson {
        name: app.name.to_owned(),
        instance: app
            .instances
            .iter()
            .map(|(info, action)| instance_json(info, *action))
            .collect(),
    }
}

fn instance_json(info: &Instance, action: Action) -> InstanceJson {
    let mut object = group_json(instance_nodes(info, action));
    // Eureka's Jackson codec writes the camel-case name; older clients read the lower-case one.
    if let Some(status) = object.get("overriddenstatus").cloned() {
        object.insert("overriddenStatus".to_owned(), status);
    }
    InstanceJson(object)
}

fn group_json(nodes: Vec<(&'static str, Node<'_>)>) -> Map<String, Value> {
    nodes
        .into_iter()
        .map(|(name, node)| (name.to_owned(), node_json(node)))
        .collect()
}

fn node_json(node: Node<'_>) -> Value {
    match node {
        Node::Text(text) => Value::from(text),
        Node::IntText(n) => Value::from(n.to_string()),
        Node::Int(n) => Value::from(n),
        Node::Port(port) => {
            serde_json::json!({"$": port.number, "@enabled": port.enabled.to_string()})
        }
        Node::DataCenter(dc) => {
            let mut object = serde_json::json!({"@class": dc.class, "name": dc.name});
            if !dc.metadata.is_empty() {
                object["metadata"] = serde_json::json!(dc.metadata);
            }
            object
        }
        Node::Map(map) => serde_json::json!(map),
        Node::Group(nodes) => Value::Object(group_json(nodes)),
    }
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    let text = serde_json::to_string(body).expect("a JSON value serializes");
    typed_response(status, "application/json", text)
}

fn xml_response(body: String) -> Response {
    typed_response(StatusCode::OK, "application/xml", body)
}

/// A response with a body of the given content type (also used for the dashboard's HTML).
pub(crate) fn typed_response(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::Format;

    #[test]
    fn json_only_when_accept_mentions_it() {
        assert_eq!(Format::from_accept(None), Format::Xml);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Xml);
        assert_eq!(Format::from_accept(Some("application/xml")), Format::Xml);
        assert_eq!(
            Format::from_accept(Some("application/JSON;q=0.9")),
            Format::Json
        );
    }
}
