//! Dashboard: the HTML page at `GET /eureka/web`, in the role of Eureka's status page.
//!
//! Rendered by `routes.rs` from the latest snapshot: Eureka's status block (uptime, lease
//! expiration, renews threshold and renews in the last minute, self-preservation, the peers it
//! replicates with as "DS Replicas", all from `status.rs`), then every app and instance with its
//! status, node, address and lease age. Self-contained (inline style, no scripts or external
//! assets); every value from a client is HTML-escaped. It links to the node's console.

use std::fmt::Write;

use warp::http::StatusCode;
use warp::reply::Response;

use super::snapshot::Snapshot;
use super::status::RegistryStatus;
use super::wire;

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;width:100%;margin-bottom:1.5em}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}\
th{background:#eee}.UP{color:#070}.DOWN{color:#b00}.OUT_OF_SERVICE,.STARTING,.UNKNOWN{color:#a60}\
.warn{color:#b00;font-weight:bold}";

pub(crate) fn page(snapshot: &Snapshot, status: &RegistryStatus) -> Response {
    let rows = snapshot.instance_rows();
    let mut html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>agora registry</title>\
         <style>{STYLE}</style></head><body><h1>agora registry</h1>\
         <p>Node {node} &middot; {apps} applications &middot; {up} of {total} instances UP \
         &middot; version {version} &middot; hash {hash} &middot; <a href=\"/console\">console</a></p>",
        node = escape(&snapshot.node),
        apps = snapshot.apps.len(),
        up = snapshot.up_count(),
        total = rows.len(),
        version = snapshot.version,
        hash = escape(&snapshot.hashcode()),
    );
    status_block(&mut html, status);
    if rows.is_empty() {
        html.push_str("<h2>Instances</h2><p>No instances registered.</p>");
    } else {
        html.push_str(
            "<h2>Instances</h2><table><tr><th>Application</th><th>Instance</th><th>Status</th>\
             <th>Node</th><th>Address</th><th>Lease age</th><th>Lease</th></tr>",
        );
        for row in rows {
            // Writing to a String cannot fail.
            let _ = write!(
                html,
                "<tr><td>{app}</td><td>{id}</td><td class=\"{status}\">{status}{expired}</td>\
                 <td>{node}</td><td>{address}</td><td>{age} s</td><td>{lease} s</td></tr>",
                app = escape(&row.app),
                id = escape(&row.instance_id),
                status = row.status,
                expired = if row.lease_expired {
                    " (lease expired)"
                } else {
                    ""
                },
                node = escape(&row.node),
                address = escape(&row.address),
                age = row.lease_age_secs,
                lease = row.lease_secs,
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</body></html>");
    wire::typed_response(StatusCode::OK, "text/html; charset=utf-8", html)
}

/// Eureka's "General Info" figures and its "DS Replicas", with Eureka's warning when renewals
/// fall below the threshold.
fn status_block(html: &mut String, status: &RegistryStatus) {
    let on_off = |on: bool| if on { "ON" } else { "OFF" };
    let replicas = match status.replicas.is_empty() {
        true => "none (a single node)".to_owned(),
        false => (status.replicas.iter().map(|r| escape(r)))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let _ = write!(
        html,
        "<h2>System status</h2><table id=\"status\">\
         <tr><th>Uptime</th><td data-testid=\"uptime\">{uptime}</td></tr>\
         <tr><th>Lease expiration enabled</th><td>{expiration}</td></tr>\
         <tr><th>Renews threshold</th><td data-testid=\"renews-threshold\">{threshold}</td></tr>\
         <tr><th>Renews (last min)</th><td data-testid=\"renews-last-min\">{renews}</td></tr>\
         <tr><th>Self-preservation mode</th><td>{preservation} (agora always expires leases)</td></tr>\
         </table><h2>DS Replicas</h2><p data-testid=\"replicas\">{replicas}</p>",
        uptime = uptime(status.uptime_secs),
        expiration = status.lease_expiration_enabled,
        threshold = status.renews_threshold,
        renews = status.renews_last_min,
        preservation = on_off(status.self_preservation),
    );
    if status.renews_last_min < status.renews_threshold {
        html.push_str(
            "<p class=\"warn\">Renewals are below the threshold: Eureka would enter \
             self-preservation here; agora still expires leases that run out.</p>",
        );
    }
}

/// `01:02` (hours and minutes), or `3 day(s) 01:02`, as Eureka shows its uptime.
fn uptime(secs: u64) -> String {
    let (days, hours, minutes) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    match days {
        0 => format!("{hours:02}:{minutes:02}"),
        days => format!("{days} day(s) {hours:02}:{minutes:02}"),
    }
}

/// `text` with the characters HTML gives a meaning escaped (the console uses it too).
pub fn escape(text: &str) -> String {
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

    #[tokio::test]
    async fn dashboard_shows_eurekas_status_block() {
        let (_, api) = start("t-status", Duration::from_secs(90)).await;
        let body = r#"{"instance":{"instanceId":"i1","hostName":"h","app":"WEB","ipAddr":"1.2.3.4",
            "leaseInfo":{"renewalIntervalInSecs":30},"dataCenterInfo":{"name":"MyOwn"}}}"#;
        assert_eq!(api.post("/eureka/apps/web", body).await.status, 204);
        assert_eq!(api.call("PUT", "/eureka/apps/WEB/i1").await.status, 200);
        let html = api.call("GET", "/eureka/web").await.body;
        for figure in [
            "Lease expiration enabled</th><td>true",
            // one instance renewing every 30 s: 2 a minute, 85 % of it
            "data-testid=\"renews-threshold\">1<",
            "data-testid=\"renews-last-min\">1<",
            "Self-preservation mode</th><td>OFF",
            "DS Replicas",
            "none (a single node)",
            "data-testid=\"uptime\">00:00<",
        ] {
            assert!(html.contains(figure), "{figure} in {html}");
        }
    }
}
