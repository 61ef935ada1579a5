//! Page: the console's HTML, rendered on the server from a [`ConsoleState`] so that it reads
//! with JavaScript off. The template, the style and the script are files beside this one,
//! compiled in; the script renders the same sections again from `/console/state` (the markup
//! here and in `console.js` is the same, element for element) and draws the charts. Every value
//! is HTML-escaped; the state is embedded as JSON for the script's first draw.

use std::fmt::Write;

use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::state::{ClusterPanel, ConsoleState};
use crate::health::{ComponentHealth, Status};
use crate::registry::escape_html as escape;

const TEMPLATE: &str = include_str!("page.html");
const STYLE: &str = include_str!("console.css");
const SCRIPT: &str = include_str!("console.js");

/// The whole page.
pub fn render(state: &ConsoleState) -> Response {
    // Inside <script>, "</" would end the element: JSON allows "<\/" for it.
    let json = serde_json::to_string(state).unwrap_or_default();
    let parts = [
        ("{{node}}", escape(&state.node)),
        ("{{style}}", STYLE.to_owned()),
        ("{{head}}", head(state)),
        ("{{shop}}", shop(state)),
        ("{{charts}}", charts()),
        ("{{routes}}", routes(state)),
        ("{{health}}", health(state)),
        ("{{entities}}", entities(state)),
        ("{{cluster}}", cluster(state.cluster.as_ref())),
        ("{{registry}}", registry(state)),
        // `<` only occurs inside JSON strings, where `\u003c` means the same: no value can
        // close or confuse the script element that holds it.
        ("{{state}}", json.replace('<', "\\u003c")),
        ("{{script}}", SCRIPT.to_owned()),
    ];
    // One pass over the template, so a value that looks like a slot stays as it is.
    let mut html = String::with_capacity(TEMPLATE.len() + json.len() * 3);
    let mut rest = TEMPLATE;
    while let Some(at) = rest.find("{{") {
        html.push_str(&rest[..at]);
        rest = &rest[at..];
        match parts.iter().find(|(slot, _)| rest.starts_with(slot)) {
            Some((slot, value)) => {
                html.push_str(value);
                rest = &rest[slot.len()..];
            }
            None => {
                html.push_str("{{");
                rest = &rest[2..];
            }
        }
    }
    html.push_str(rest);
    let reply = warp::reply::with_header(html, "content-type", "text/html; charset=utf-8");
    let mut response = reply.into_response();
    response
        .headers_mut()
        .insert("cache-control", "no-store".parse().expect("a header value"));
    *response.status_mut() = StatusCode::OK;
    response
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Up => "UP",
        Status::Degraded => "DEGRADED",
        Status::Down => "DOWN",
    }
}

fn head(state: &ConsoleState) -> String {
    let status = status_name(state.health.status);
    format!(
        "<h1>agora console · <span data-testid=\"node\">{node}</span></h1>\
         <span>status <b class=\"{status}\" data-testid=\"overall\">{status}</b></span>\
         <span>up {uptime} s</span>\
         <span>updated <time data-testid=\"updated-at\" data-ms=\"{at}\">{clock}</time> \
         <span id=\"age\"></span></span>\
         <a href=\"/eureka/web\">registry</a><a href=\"/metrics\">metrics</a>",
        node = escape(&state.node),
        uptime = state.uptime_secs,
        at = state.generated_at_ms,
        clock = clock(state.generated_at_ms),
    )
}

/// `HH:MM:SS.mmm UTC` of a time in ms since the epoch, as the script shows it.
fn clock(ms: u64) -> String {
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    format!("{h:02}:{m:02}:{s:02}.{millis:03} UTC")
}

fn shop(state: &ConsoleState) -> String {
    let s = &state.shop;
    let tiles = [
        ("orders-total", "orders placed", s.orders_placed.to_string()),
        (
            "orders-refused",
            "orders refused",
            s.orders_refused.to_string(),
        ),
        (
            "orders-cancelled",
            "cancelled",
            s.orders_cancelled.to_string(),
        ),
        ("outbox-depth", "outbox depth", s.outbox_depth.to_string()),
        (
            "kafka-delivered",
            "Kafka delivered",
            s.kafka_delivered.to_string(),
        ),
        ("kafka-failed", "Kafka failures", s.kafka_failed.to_string()),
        (
            "notifications-received",
            "notifications received",
            s.notifications_received.to_string(),
        ),
    ];
    let mut html = String::from("<div class=\"tiles\">");
    for (id, label, value) in tiles {
        let _ = write!(
            html,
            "<div class=\"tile\"><b data-testid=\"{id}\">{value}</b><span>{label}</span></div>"
        );
    }
    html + "</div>"
}

fn charts() -> String {
    "<h2>Last 5 minutes</h2><p class=\"muted\">The page's script draws the charts (orders/s, \
     outbox depth, Kafka deliveries and failures/s, notifications/s); the figures above are as \
     of loading the page.</p>"
        .to_owned()
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.1} ms"))
}

fn routes(state: &ConsoleState) -> String {
    let mut html = String::from(
        "<h2>Routes, last 5 minutes</h2><table><colgroup><col style=\"width:22%\">\
         <col span=\"5\" style=\"width:8%\"><col style=\"width:19%\"><col style=\"width:19%\">\
         </colgroup><tr><th>route</th><th>requests</th><th>5xx</th><th>error rate</th>\
         <th>p50</th><th>p99</th><th>requests/s (5xx red)</th><th>p50 / p99 (ms)</th></tr>",
    );
    for r in &state.routes {
        let _ = write!(
            html,
            "<tr><td>{route}</td><td>{requests}</td><td>{errors}</td><td>{rate:.1} %</td>\
             <td>{p50}</td><td>{p99}</td><td class=\"spark\"></td><td class=\"spark\"></td></tr>",
            route = escape(&r.route),
            requests = r.requests,
            errors = r.errors,
            rate = r.error_rate * 100.0,
            p50 = ms(r.p50_ms),
            p99 = ms(r.p99_ms),
        );
    }
    if state.routes.is_empty() {
        html.push_str("<tr><td colspan=\"8\" class=\"muted\">No requests yet.</td></tr>");
    }
    html + "</table>"
}

fn component_row(html: &mut String, name: &str, health: &ComponentHealth) {
    let status = status_name(health.status);
    let _ = write!(
        html,
        "<tr><td>{name}</td><td class=\"{status}\" data-testid=\"health-{name}\">{status}</td>\
         <td>{detail}</td></tr>",
        name = escape(name),
        detail = escape(&health.detail),
    );
}

fn health(state: &ConsoleState) -> String {
    let c = &state.health.components;
    let mut html = String::from(
        "<h2>Health</h2><table><colgroup><col style=\"width:16%\"><col style=\"width:20%\">\
         <col></colgroup><tr><th>component</th><th>status</th><th>detail</th></tr>",
    );
    for (name, health) in [
        ("storage", &c.storage),
        ("kafka", &c.kafka),
        ("registry", &c.registry),
        ("actors", &c.actors),
        ("cluster", &c.cluster),
    ] {
        component_row(&mut html, name, health);
    }
    html + "</table>"
}

fn entities(state: &ConsoleState) -> String {
    let e = &state.entities;
    let mut html = format!(
        "<h2>Entity actors</h2><p class=\"muted\">At most {} live actors of each kind (the \
         least recently used is passivated past it); an actor idle for {} s is passivated.</p>\
         <table><tr><th>kind</th><th>live</th><th>passivated</th>\
         <th>restarts</th><th>escalations</th><th>supervisor</th></tr>",
        e.limit, e.idle_secs
    );
    for kind in &e.kinds {
        let _ = write!(
            html,
            "<tr><td>{name}</td><td data-testid=\"live-{name}\">{live}</td>\
             <td>{passivations}</td><td>{restarts}</td><td>{escalations}</td>\
             <td class=\"{status}\">{status}</td></tr>",
            name = escape(&kind.kind),
            live = kind.live.map_or_else(|| "?".to_owned(), |n| n.to_string()),
            passivations = kind.passivations,
            restarts = kind.restarts,
            escalations = kind.escalations,
            status = status_name(kind.health.status),
        );
    }
    html + "</table>"
}

fn cluster(panel: Option<&ClusterPanel>) -> String {
    let Some(panel) = panel else {
        return "<h2>Cluster</h2><p class=\"muted\">A single node: no cluster.</p>".into();
    };
    let mut html = format!(
        "<h2>Cluster ({mode}, {n} replicas wanted)</h2><div class=\"grid4\"><div>\
         <table><tr><th>member</th><th>state</th></tr>",
        mode = escape(&panel.mode),
        n = panel.replicas_wanted,
    );
    for m in &panel.members {
        let status = status_name(m.state);
        let _ = write!(
            html,
            "<tr><td>{name}{me}</td><td class=\"{status}\" data-testid=\"member-{name}\">\
             {status}</td></tr>",
            name = escape(&m.name),
            me = if m.this_node { " (this node)" } else { "" },
        );
    }
    html.push_str(
        "</table></div><div style=\"grid-column:span 3\"><table><colgroup>\
         <col style=\"width:9%\"><col style=\"width:13%\"><col style=\"width:9%\">\
         <col style=\"width:12%\"><col></colgroup><tr><th>partition</th><th>leader</th>\
         <th>term</th><th>applied here</th><th>replicas (lag in entries)</th></tr>",
    );
    for partition in &panel.partitions {
        let p = &partition.view;
        let replicas: Vec<String> = (p.replicas.iter().chain(&p.learners))
            .map(|r| match partition.lag.get(r) {
                Some(lag) => format!("{} ({lag})", escape(r)),
                None => format!("{} (?)", escape(r)),
            })
            .collect();
        let _ = write!(
            html,
            "<tr><td>{n}</td><td data-testid=\"leader-{n}\">{leader}</td><td>{term}</td>\
             <td>{applied}</td><td>{replicas}</td></tr>",
            n = p.partition,
            leader = p
                .leader
                .as_deref()
                .map_or_else(|| "election".into(), escape),
            term = p.term,
            applied = p.last_applied.map_or_else(|| "–".into(), |a| a.to_string()),
            replicas = replicas.join(", "),
        );
    }
    html.push_str("</table></div></div><h2>Recent events</h2><ul class=\"events\">");
    for event in panel.events.iter().rev() {
        let _ = write!(
            html,
            "<li><time data-ms=\"{}\">{}</time> {}</li>",
            event.at_ms,
            clock(event.at_ms),
            escape(&event.text)
        );
    }
    if panel.events.is_empty() {
        html.push_str("<li class=\"muted\">None since this node started.</li>");
    }
    html + "</ul>"
}

fn registry(state: &ConsoleState) -> String {
    let r = &state.registry;
    let s = &r.status;
    let replicas = match s.replicas.is_empty() {
        true => "none".to_owned(),
        false => (s.replicas.iter().map(|r| escape(r)))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let mut html = format!(
        "<h2>Registry · <a href=\"{link}\">/eureka/web</a></h2><p>renews last minute \
         {renews} (threshold {threshold}) · lease expiration enabled · self-preservation off · \
         DS replicas: {replicas}</p><table><tr><th>application</th><th>instance</th>\
         <th>status</th><th>node</th><th>address</th><th>lease age</th></tr>",
        link = escape(&r.dashboard),
        renews = s.renews_last_min,
        threshold = s.renews_threshold,
    );
    for i in &r.instances {
        let _ = write!(
            html,
            "<tr><td>{app}</td><td>{id}</td><td class=\"{status}\">{status}</td><td>{node}</td>\
             <td>{address}</td><td>{age} s</td></tr>",
            app = escape(&i.app),
            id = escape(&i.instance_id),
            status = escape(&i.status),
            node = escape(&i.node),
            address = escape(&i.address),
            age = i.lease_age_secs,
        );
    }
    html + "</table>"
}
