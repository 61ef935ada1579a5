//! Dashboard: the HTML page at `GET /eureka/web`, in the role of Eureka's status page.
//!
//! Rendered by `routes.rs` from the latest snapshot: every app and instance with its status,
//! node, address and lease age. Self-contained (inline style, no scripts or external assets);
//! every value from a client is HTML-escaped.

use std::fmt::Write;

use warp::http::StatusCode;
use warp::reply::Response;

use super::instance::Status;
use super::snapshot::{now_millis, Snapshot};
use super::wire;

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}\
th{background:#eee}.UP{color:#070}.DOWN{color:#b00}.OUT_OF_SERVICE,.STARTING,.UNKNOWN{color:#a60}";

pub(crate) fn page(snapshot: &Snapshot) -> Response {
    let now = now_millis();
    let total = snapshot.records().count();
    let up = snapshot
        .records()
        .filter(|r| r.info.status == Status::Up)
        .count();
    let mut html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>agora registry</title>\
         <style>{STYLE}</style></head><body><h1>agora registry</h1>\
         <p>Node {node} &middot; {apps} applications &middot; {up} of {total} instances UP \
         &middot; version {version} &middot; hash {hash}</p>",
        node = escape(&snapshot.node),
        apps = snapshot.apps.len(),
        version = snapshot.version,
        hash = escape(&snapshot.hashcode()),
    );
    if total == 0 {
        html.push_str("<p>No instances registered.</p>");
    } else {
        html.push_str(
            "<table><tr><th>Application</th><th>Instance</th><th>Status</th><th>Node</th>\
             <th>Address</th><th>Lease age</th><th>Lease</th></tr>",
        );
        for record in snapshot.records() {
            let info = &record.info;
            let node = info.metadata.get("node").unwrap_or(&info.host_name);
            let age = now.saturating_sub(info.lease_info.last_renewal_timestamp) / 1000;
            let status = info.status.as_str();
            // Writing to a String cannot fail.
            let _ = write!(
                html,
                "<tr><td>{app}</td><td>{id}</td><td class=\"{status}\">{status}{expired}</td>\
                 <td>{node}</td><td>{ip}:{port}</td><td>{age} s</td><td>{lease} s</td></tr>",
                app = escape(&info.app),
                id = escape(&info.instance_id),
                expired = if record.lease.expired.is_some() {
                    " (lease expired)"
                } else {
                    ""
                },
                node = escape(node),
                ip = escape(&info.ip_addr),
                port = info.port.number,
                lease = record.lease.duration.as_secs_f64(),
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    wire::typed_response(StatusCode::OK, "text/html; charset=utf-8", html)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::registry::tests::start;

    #[tokio::test]
    async fn dashboard_escapes_client_values() {
        let (_, api) = start("t-web", Duration::from_secs(90)).await;
        let body = r#"{"instance":{"instanceId":"<script>x</script>","hostName":"h","app":"WEB","ipAddr":"1.2.3.4",
            "dataCenterInfo":{"name":"MyOwn"}}}"#;
        let res = api.post("/eureka/apps/web", body).await;
        assert_eq!(res.status, 204);
        let res = api.call("GET", "/eureka/web").await;
        assert_eq!(res.status, 200);
        assert_eq!(res.content_type, "text/html; charset=utf-8");
        let html = res.body;
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("WEB"), "{html}");
    }
}
