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

use super::actor::{Key, RegistryMsg};
use super::dashboard;
use super::instance::{BadInstance, Instance, Status};
use super::wire::{self, Format};
use super::Registry;

/// Every route under /eureka (Eureka REST API + the HTML dashboard at GET /eureka/web).
/// Paths are matched first and methods after, so a known path with a wrong method gives warp's
/// 405 rejection and an unknown path under /eureka gives warp's not-found rejection (the gateway
/// turns rejections into JSON errors). Handled errors (404 unknown app/instance, 400 bad body)
/// are returned as responses with a small JSON body {"error": "...", "message": "..."}.
/// Largest accepted register body: an InstanceInfo is a few kilobytes.
const MAX_REGISTER_BODY: u64 = 64 * 1024;

pub fn routes(registry: Registry) -> BoxedFilter<(Response,)> {
    let reg = warp::any().map(move || registry.clone());
    let format = warp::header::headers_cloned().map(|headers: HeaderMap| {
        Format::from_accept(headers.get(ACCEPT).and_then(|v| v.to_str().ok()))
    });
    // What a query reads: the registry's latest snapshot, in the format the client asked for.
    let read = reg.clone().and(format);
    let query = warp::query::<BTreeMap<String, String>>;

    let full = path!("eureka" / "apps")
        .and(warp::get())
        .and(read.clone())
        .map(|r: Registry, f| wire::applications(&r.snapshot().view(|_| true), f));
    let delta = path!("eureka" / "apps" / "delta")
        .and(warp::get())
        .and(read.clone())
        .map(|r: Registry, f| wire::applications(&r.snapshot().delta(), f));
    let get_app = path!("eureka" / "apps" / String)
        .and(warp::get())
        .and(read.clone())
        .map(app_of);
    let get_instance = path!("eureka" / "apps" / String / String)
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
        .map(|vip: String, r: Registry, f| by_vip(&vip, &r, f, false));
    let svips = path!("eureka" / "svips" / String)
        .and(warp::get())
        .and(read)
        .map(|vip: String, r: Registry, f| by_vip(&vip, &r, f, true));
    let web = path!("eureka" / "web")
        .and(warp::get())
        .and(reg.clone())
        .map(|r: Registry| dashboard::page(&r.snapshot()));

    let register = path!("eureka" / "apps" / String)
        .and(warp::post())
        .and(warp::body::content_length_limit(MAX_REGISTER_BODY))
        .and(warp::body::bytes())
        .and(reg.clone())
        .then(register_instance);
    let renew = path!("eureka" / "apps" / String / String)
        .and(warp::put())
        .and(reg.clone())
        .then(|app, id, r| update(r, app, id, |key, reply| RegistryMsg::Renew { key, reply }));
    let cancel = path!("eureka" / "apps" / String / String)
        .and(warp::delete())
        .and(reg.clone())
        .then(|app, id, r| update(r, app, id, |key, reply| RegistryMsg::Cancel { key, reply }));
    let status = path!("eureka" / "apps" / String / String / "status");
    let override_status = status
        .and(warp::put())
        .and(query())
        .and(reg.clone())
        .then(set_override);
    let remove_override = status
        .and(warp::delete())
        .and(query())
        .and(reg.clone())
        .then(remove_override);
    let metadata = path!("eureka" / "apps" / String / String / "metadata")
        .and(warp::put())
        .and(query())
        .and(reg)
        .then(|app, id, entries, r| {
            let update_metadata = |key, reply| RegistryMsg::UpdateMetadata {
                key,
                entries,
                reply,
            };
            update(r, app, id, update_metadata)
        });

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

fn app_of(app: String, registry: Registry, format: Format) -> Response {
    let app = decode(&app).to_ascii_uppercase();
    let snapshot = registry.snapshot();
    let view = snapshot.view(|i| i.app == app);
    match view.apps.first() {
        Some(found) => wire::application(found, format),
        None => wire::error(StatusCode::NOT_FOUND, format!("no application {app}")),
    }
}

fn instance_of(app: String, id: String, registry: Registry, format: Format) -> Response {
    let key = target(&app, &id);
    match registry.snapshot().find(&key.app, &key.id) {
        Some(record) => wire::instance(&record.info, record.action, format),
        None => unknown_instance(&key.app, &key.id),
    }
}

fn instance_by_id(id: String, registry: Registry, format: Format) -> Response {
    let id = decode(&id);
    let snapshot = registry.snapshot();
    let found = snapshot.records().find(|r| r.info.instance_id == id);
    match found {
        Some(record) => wire::instance(&record.info, record.action, format),
        None => wire::error(StatusCode::NOT_FOUND, format!("no instance {id}")),
    }
}

fn by_vip(vip: &str, registry: &Registry, format: Format, secure: bool) -> Response {
    let vip = decode(vip);
    wire::applications(
        &registry.snapshot().view(|i| i.serves_vip(&vip, secure)),
        format,
    )
}

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

async fn set_override(
    app: String,
    id: String,
    query: BTreeMap<String, String>,
    registry: Registry,
) -> Response {
    let Some(status) = query.get("value").and_then(|v| Status::parse(v)) else {
        return wire::error(
            StatusCode::BAD_REQUEST,
            "query parameter value must be UP, DOWN, STARTING, OUT_OF_SERVICE or UNKNOWN",
        );
    };
    let set = move |key, reply| RegistryMsg::OverrideStatus { key, status, reply };
    update(registry, app, id, set).await
}

async fn remove_override(
    app: String,
    id: String,
    query: BTreeMap<String, String>,
    registry: Registry,
) -> Response {
    let status = query.get("value").and_then(|v| Status::parse(v));
    let remove = move |key, reply| RegistryMsg::RemoveOverride { key, status, reply };
    update(registry, app, id, remove).await
}

/// Sends the request `build` makes for the instance named in the path: 200 if it was known,
/// 404 if not, 503 if the registry actor did not answer.
async fn update(
    registry: Registry,
    app: String,
    id: String,
    build: impl FnOnce(Key, RpcReplyPort<bool>) -> RegistryMsg,
) -> Response {
    let key = target(&app, &id);
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

/// The instance named by a path's app and id segments, decoded.
fn target(app: &str, id: &str) -> Key {
    Key::new(&decode(app), &decode(id))
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
