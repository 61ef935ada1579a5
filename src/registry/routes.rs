//! Routes: the warp filters of Eureka's REST API under `/eureka`, and the dashboard at
//! `/eureka/web`.
//!
//! The gateway mounts [`routes`]. Updates go to the registry actor through [`Registry`]; queries
//! read the latest snapshot. Each route matches its path first and its method after, so a known
//! path with a wrong method is warp's 405 rejection and an unknown path its not-found rejection.
//! Path segments arrive percent-encoded (`127.0.0.1%3Aapp%3A8080`) and are decoded here.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use warp::filters::BoxedFilter;
use warp::http::header::ACCEPT;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;
use warp::{path, Filter};

use ractor::RpcReplyPort;
use utoipa::{IntoParams, OpenApi};

use super::actor::{Key, RegistryMsg};
use super::dashboard;
use super::instance::{BadInstance, Instance, Status};
use super::wire::{
    self, ApplicationJson, ApplicationsJson, Format, InstanceEnvelope, RegistryError,
};
use super::Registry;

/// Every route under /eureka (Eureka REST API + the HTML dashboard at GET /eureka/web).
/// Paths are matched first and methods after, so a known path with a wrong method gives warp's
/// 405 rejection and an unknown path under /eureka gives warp's not-found rejection (the gateway
/// turns rejections into JSON errors). Handled errors (404 unknown app/instance, 400 bad body)
/// are returned as responses with a small JSON body {"error": "...", "message": "..."}.
/// Largest accepted register body: an InstanceInfo is a few kilobytes.
const MAX_REGISTER_BODY: u64 = 64 * 1024;

/// A query string, by key.
type QueryPairs = BTreeMap<String, String>;

pub fn routes(registry: Registry) -> BoxedFilter<(Response,)> {
    let reg = warp::any().map(move || registry.clone());
    let format = warp::header::headers_cloned().map(|headers: HeaderMap| {
        Format::from_accept(headers.get(ACCEPT).and_then(|v| v.to_str().ok()))
    });
    // What a query reads: the registry's latest snapshot, in the format the client asked for.
    let read = reg.clone().and(format);
    let query = warp::query::<QueryPairs>;

    let full = path!("eureka" / "apps")
        .and(warp::get())
        .and(read.clone())
        .map(all_apps);
    let delta = path!("eureka" / "apps" / "delta")
        .and(warp::get())
        .and(read.clone())
        .map(delta);
    let get_app = path!("eureka" / "apps" / String)
        .and(warp::get())
        .and(read.clone())
        .map(app_of);
    let instance = || path!("eureka" / "apps" / String / String).map(InstancePath::new);
    let get_instance = instance()
        .and(warp::get())
        .and(read.clone())
        .map(instance_of);
    let by_id = path!("eureka" / "instances" / String)
        .and(warp::get())
        .and(read.clone())
        .map(instance_by_id);
    let vips = path!("eureka" / "vips" / String)
        .and(warp::get())
        .and(read.clone())
        .map(by_vip);
    let svips = path!("eureka" / "svips" / String)
        .and(warp::get())
        .and(read)
        .map(by_secure_vip);
    let web = path!("eureka" / "web")
        .and(warp::get())
        .and(reg.clone())
        .map(web);

    let register = path!("eureka" / "apps" / String)
        .and(warp::post())
        .and(warp::body::content_length_limit(MAX_REGISTER_BODY))
        .and(warp::body::bytes())
        .and(reg.clone())
        .then(register_instance);
    let renew = instance().and(warp::put()).and(reg.clone()).then(renew);
    let cancel = instance().and(warp::delete()).and(reg.clone()).then(cancel);
    let status = || path!("eureka" / "apps" / String / String / "status").map(InstancePath::new);
    let override_status = status()
        .and(warp::put())
        .and(query())
        .and(reg.clone())
        .then(set_override);
    let remove_override = status()
        .and(warp::delete())
        .and(query())
        .and(reg.clone())
        .then(remove_override);
    let metadata = path!("eureka" / "apps" / String / String / "metadata")
        .map(InstancePath::new)
        .and(warp::put())
        .and(query())
        .and(reg)
        .then(update_metadata);

    let rest = [
        delta.boxed(),
        get_app.boxed(),
        get_instance.boxed(),
        by_id.boxed(),
        vips.boxed(),
        svips.boxed(),
        web.boxed(),
        register.boxed(),
        renew.boxed(),
        cancel.boxed(),
        override_status.boxed(),
        remove_override.boxed(),
        metadata.boxed(),
    ];
    // `delta` is tried before `get_app`, which would take "delta" for an app name.
    rest.into_iter()
        .fold(full.boxed(), |all, next| all.or(next).unify().boxed())
}

/// The OpenAPI description of these routes (the gateway's document includes it).
#[derive(OpenApi)]
#[openapi(
    paths(
        all_apps,
        delta,
        app_of,
        instance_of,
        instance_by_id,
        by_vip,
        by_secure_vip,
        web,
        register_instance,
        renew,
        cancel,
        set_override,
        remove_override,
        update_metadata,
    ),
    components(schemas(Status))
)]
pub struct RegistryApi;

/// Every application and its instances.
#[utoipa::path(get, path = "/eureka/apps", responses(
    (status = 200, description = "The registry", content(
        (ApplicationsJson = "application/json"), ("application/xml"))),
))]
fn all_apps(registry: Registry, format: Format) -> Response {
    wire::applications(&registry.snapshot().view(|_| true), format)
}

/// What changed lately (registrations, changes, cancels), for clients that poll.
#[utoipa::path(get, path = "/eureka/apps/delta", responses(
    (status = 200, description = "The recent changes", content(
        (ApplicationsJson = "application/json"), ("application/xml"))),
))]
fn delta(registry: Registry, format: Format) -> Response {
    wire::applications(&registry.snapshot().delta(), format)
}

/// One application and its instances.
#[utoipa::path(get, path = "/eureka/apps/{appId}", params(("appId" = String, Path)), responses(
    (status = 200, description = "The application", content(
        (ApplicationJson = "application/json"), ("application/xml"))),
    (status = 404, description = "No such application", body = RegistryError),
))]
fn app_of(app: String, registry: Registry, format: Format) -> Response {
    let app = decode(&app).to_ascii_uppercase();
    let snapshot = registry.snapshot();
    let view = snapshot.view(|i| i.app == app);
    match view.apps.first() {
        Some(found) => wire::application(found, format),
        None => wire::error(StatusCode::NOT_FOUND, format!("no application {app}")),
    }
}

/// One instance of an application.
#[utoipa::path(get, path = "/eureka/apps/{appId}/{instanceId}", params(InstancePath), responses(
    (status = 200, description = "The instance", content(
        (InstanceEnvelope = "application/json"), ("application/xml"))),
    (status = 404, description = "No such instance", body = RegistryError),
))]
fn instance_of(path: InstancePath, registry: Registry, format: Format) -> Response {
    let key = path.key();
    match registry.snapshot().find(&key.app, &key.id) {
        Some(record) => wire::instance(&record.info, record.action, format),
        None => unknown_instance(&key.app, &key.id),
    }
}

/// One instance, whatever its application.
#[utoipa::path(get, path = "/eureka/instances/{instanceId}",
    params(("instanceId" = String, Path)),
    responses(
        (status = 200, description = "The instance", content(
            (InstanceEnvelope = "application/json"), ("application/xml"))),
        (status = 404, description = "No such instance", body = RegistryError),
    ))]
fn instance_by_id(id: String, registry: Registry, format: Format) -> Response {
    let id = decode(&id);
    let snapshot = registry.snapshot();
    let found = snapshot.records().find(|r| r.info.instance_id == id);
    match found {
        Some(record) => wire::instance(&record.info, record.action, format),
        None => wire::error(StatusCode::NOT_FOUND, format!("no instance {id}")),
    }
}

/// The instances that serve a VIP address.
#[utoipa::path(get, path = "/eureka/vips/{vipAddress}", params(("vipAddress" = String, Path)),
    responses((status = 200, description = "The instances", content(
        (ApplicationsJson = "application/json"), ("application/xml")))))]
fn by_vip(vip: String, registry: Registry, format: Format) -> Response {
    vip_apps(&vip, &registry, format, false)
}

/// The instances that serve a secure VIP address.
#[utoipa::path(get, path = "/eureka/svips/{svipAddress}", params(("svipAddress" = String, Path)),
    responses((status = 200, description = "The instances", content(
        (ApplicationsJson = "application/json"), ("application/xml")))))]
fn by_secure_vip(vip: String, registry: Registry, format: Format) -> Response {
    vip_apps(&vip, &registry, format, true)
}

fn vip_apps(vip: &str, registry: &Registry, format: Format, secure: bool) -> Response {
    let vip = decode(vip);
    wire::applications(
        &registry.snapshot().view(|i| i.serves_vip(&vip, secure)),
        format,
    )
}

/// The dashboard: every application and instance, for a person.
#[utoipa::path(get, path = "/eureka/web", responses(
    (status = 200, description = "An HTML page", content_type = "text/html", body = String),
))]
fn web(registry: Registry) -> Response {
    dashboard::page(&registry.snapshot(), &registry.status())
}

/// Registers an instance (Eureka's `InstanceInfo` in JSON); its lease starts.
#[utoipa::path(post, path = "/eureka/apps/{appId}", params(("appId" = String, Path)),
    request_body = InstanceEnvelope,
    responses(
        (status = 204, description = "Registered"),
        (status = 400, description = "Not an instance, or of another app", body = RegistryError),
    ))]
async fn register_instance(app: String, body: Bytes, registry: Registry) -> Response {
    let app = decode(&app).to_ascii_uppercase();
    let parsed = Instance::from_register_body(&body).and_then(|instance| {
        if instance.app == app {
            Ok(instance)
        } else {
            Err(BadInstance::AppMismatch {
                body: instance.app,
                path: app,
            })
        }
    });
    let instance = match parsed {
        Ok(instance) => instance,
        Err(bad) => return wire::error(StatusCode::BAD_REQUEST, bad.to_string()),
    };
    let lease = Duration::from_secs(instance.lease_info.duration_in_secs);
    match registry.register(instance, lease).await {
        Ok(()) => wire::empty(StatusCode::NO_CONTENT),
        Err(e) => unavailable(&e),
    }
}

/// Renews an instance's lease (Eureka's heartbeat).
#[utoipa::path(put, path = "/eureka/apps/{appId}/{instanceId}", params(InstancePath),
    responses((status = 200, description = "Renewed")))]
async fn renew(path: InstancePath, registry: Registry) -> Response {
    let renew = |key, reply| RegistryMsg::Renew { key, reply };
    update(registry, path, renew).await
}

/// Removes an instance (Eureka's cancel, on a client's shutdown).
#[utoipa::path(delete, path = "/eureka/apps/{appId}/{instanceId}", params(InstancePath),
    responses((status = 200, description = "Removed")))]
async fn cancel(path: InstancePath, registry: Registry) -> Response {
    let cancel = |key, reply| RegistryMsg::Cancel { key, reply };
    update(registry, path, cancel).await
}

/// Overrides an instance's status (e.g. `OUT_OF_SERVICE`).
#[utoipa::path(put, path = "/eureka/apps/{appId}/{instanceId}/status",
    params(InstancePath, ("value" = Status, Query)),
    responses(
        (status = 200, description = "Done"),
        (status = 400, description = "No valid `value`", body = RegistryError),
    ))]
async fn set_override(path: InstancePath, query: QueryPairs, registry: Registry) -> Response {
    let Some(status) = query.get("value").and_then(|v| Status::parse(v)) else {
        return wire::error(
            StatusCode::BAD_REQUEST,
            "query parameter value must be UP, DOWN, STARTING, OUT_OF_SERVICE or UNKNOWN",
        );
    };
    let set = move |key, reply| RegistryMsg::OverrideStatus { key, status, reply };
    update(registry, path, set).await
}

/// Removes a status override; `value`, if given, becomes the instance's status.
#[utoipa::path(delete, path = "/eureka/apps/{appId}/{instanceId}/status",
    params(InstancePath, ("value" = Option<Status>, Query)),
    responses((status = 200, description = "Done")))]
async fn remove_override(path: InstancePath, query: QueryPairs, registry: Registry) -> Response {
    let status = query.get("value").and_then(|v| Status::parse(v));
    let remove = move |key, reply| RegistryMsg::RemoveOverride { key, status, reply };
    update(registry, path, remove).await
}

/// Sets metadata entries of an instance (`?key=value&...`).
#[utoipa::path(put, path = "/eureka/apps/{appId}/{instanceId}/metadata",
    params(
        InstancePath,
        ("entries" = inline(BTreeMap<String, String>), Query, style = Form, explode),
    ),
    responses((status = 200, description = "Done")))]
async fn update_metadata(path: InstancePath, entries: QueryPairs, registry: Registry) -> Response {
    let set = |key, reply| RegistryMsg::UpdateMetadata {
        key,
        entries,
        reply,
    };
    update(registry, path, set).await
}

/// Sends the request `build` makes for the instance named in the path: 200 if it was known,
/// 404 if not, 503 if the registry actor did not answer.
async fn update(
    registry: Registry,
    path: InstancePath,
    build: impl FnOnce(Key, RpcReplyPort<bool>) -> RegistryMsg,
) -> Response {
    let key = path.key();
    let (app, id) = (key.app.clone(), key.id.clone());
    match registry.ask(|reply| build(key, reply)).await {
        Ok(true) => wire::empty(StatusCode::OK),
        Ok(false) => unknown_instance(&app, &id),
        Err(e) => unavailable(&e),
    }
}

fn unknown_instance(app: &str, id: &str) -> Response {
    wire::error(
        StatusCode::NOT_FOUND,
        format!("no instance {id} of application {app}"),
    )
}

fn unavailable(e: &anyhow::Error) -> Response {
    tracing::warn!("registry unavailable: {e:#}");
    wire::error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}"))
}

/// An instance named in a path, `/eureka/apps/{appId}/{instanceId}` and below: percent-encoded
/// segments (`127.0.0.1%3Aapp%3A8080`).
#[derive(IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
struct InstancePath {
    app_id: String,
    instance_id: String,
}

impl InstancePath {
    fn new(app_id: String, instance_id: String) -> InstancePath {
        InstancePath {
            app_id,
            instance_id,
        }
    }

    /// The instance's key, decoded.
    fn key(&self) -> Key {
        Key::new(&decode(&self.app_id), &decode(&self.instance_id))
    }
}

/// Percent-decodes a path segment (`+` stays `+`; a `%` without two hex digits stays as is).
fn decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        match (bytes[i], hex) {
            (b'%', Some(hex)) => {
                let hex = std::str::from_utf8(hex).expect("hex digits are ASCII");
                out.push(u8::from_str_radix(hex, 16).expect("two hex digits fit a byte"));
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(decode("127.0.0.1%3Aapp%3a8080"), "127.0.0.1:app:8080");
        assert_eq!(decode("a+b%2"), "a+b%2");
        assert_eq!(decode("%E2%9C%93%zz"), "✓%zz");
    }
}
