// The console's script: polls /console/state twice a second, renders the sections as page.rs
// does (same markup), draws the charts as inline SVG, and shows how old the state on screen is.
"use strict";
(function () {
  const POLL_MS = 500;
  const esc = (v) => String(v).replace(/[&<>"']/g, (c) =>
    ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const ms = (v) => (v == null ? "–" : v.toFixed(1) + " ms");
  const clock = (t) => new Date(t).toISOString().slice(11, 23) + " UTC";
  let shown = null;
  let maxAge = 0;

  // A line chart of one or more series over the five-minute window, newest at the right (null
  // values leave a gap, a lone point is a short dash), as an SVG string.
  const WINDOW = 300;
  function chart(seriesList, colors, height) {
    const w = 300, h = height || 70;
    const all = seriesList.flat().filter((v) => v != null);
    const max = Math.max(1, ...all);
    const lines = seriesList.map((s, k) => {
      let d = "";
      s.forEach((v, i) => {
        if (v == null) return;
        const x = w - ((s.length - 1 - i) * w) / (WINDOW - 1), y = h - 2 - (v / max) * (h - 4);
        const joined = i > 0 && s[i - 1] != null;
        d += (joined ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1);
        if (!joined && (i + 1 >= s.length || s[i + 1] == null)) d += "h-2";
      });
      return `<path d="${d}" fill="none" stroke="${colors[k]}" stroke-width="1.5"/>`;
    });
    return `<svg viewBox="0 0 ${w} ${h}" preserveAspectRatio="none" role="img">` +
      `<title>max ${max.toFixed(max < 10 ? 1 : 0)}</title>${lines.join("")}</svg>`;
  }

  function head(s) {
    const st = s.health.status;
    return `<h1>agora console · <span data-testid="node">${esc(s.node)}</span></h1>` +
      `<span>status <b class="${st}" data-testid="overall">${st}</b></span>` +
      `<span>up ${s.uptimeSecs} s</span>` +
      `<span>updated <time data-testid="updated-at" data-ms="${s.generatedAtMs}">${clock(s.generatedAtMs)}</time> ` +
      `<span id="age"></span></span>` +
      `<a href="/eureka/web">registry</a><a href="/metrics">metrics</a>`;
  }

  function shop(s) {
    const p = s.shop;
    const tiles = [
      ["orders-total", "orders placed", p.ordersPlaced],
      ["orders-refused", "orders refused", p.ordersRefused],
      ["orders-cancelled", "cancelled", p.ordersCancelled],
      ["outbox-depth", "outbox depth", p.outboxDepth],
      ["kafka-delivered", "Kafka delivered", p.kafkaDelivered],
      ["kafka-failed", "Kafka failures", p.kafkaFailed],
      ["notifications-received", "notifications received", p.notificationsReceived],
    ];
    return `<div class="tiles">` + tiles.map(([id, label, v]) =>
      `<div class="tile"><b data-testid="${id}">${v}</b><span>${label}</span></div>`).join("") + `</div>`;
  }

  function charts(s) {
    const x = s.series;
    const last = (a) => (a.length ? a[a.length - 1] : 0);
    const most = (...lists) => Math.max(0, ...lists.flat());
    const box = (title, now, max, svg) =>
      `<div class="chart"><div class="cap"><span>${title}</span><span>now ${now} · max ${max}</span></div>${svg}</div>`;
    return `<h2>Last 5 minutes (one point a second)</h2><div class="grid4">` +
      box("orders/s", last(x.orders), most(x.orders), chart([x.orders], ["#2f6db3"])) +
      box("outbox depth", last(x.outboxDepth), most(x.outboxDepth),
        chart([x.outboxDepth], ["#a65e00"])) +
      box("Kafka delivered/s · <span class=\"DOWN\">failed/s</span>",
        last(x.kafkaDelivered) + " · " + last(x.kafkaFailed),
        most(x.kafkaDelivered, x.kafkaFailed),
        chart([x.kafkaDelivered, x.kafkaFailed], ["#137333", "#b3261e"])) +
      box("notifications/s", last(x.notifications), most(x.notifications),
        chart([x.notifications], ["#6b4fb3"])) +
      `</div>`;
  }

  function routes(s) {
    let html = `<h2>Routes, last 5 minutes</h2><table><colgroup><col style="width:22%">` +
      `<col span="5" style="width:8%"><col style="width:19%"><col style="width:19%">` +
      `</colgroup><tr><th>route</th><th>requests</th><th>5xx</th><th>error rate</th>` +
      `<th>p50</th><th>p99</th><th>requests/s (5xx red)</th><th>p50 / p99 (ms)</th></tr>`;
    for (const r of s.routes) {
      html += `<tr><td>${esc(r.route)}</td><td>${r.requests}</td><td>${r.errors}</td>` +
        `<td>${(r.errorRate * 100).toFixed(1)} %</td><td>${ms(r.p50Ms)}</td><td>${ms(r.p99Ms)}</td>` +
        `<td class="spark">${chart([r.requestsPerSec, r.errorsPerSec], ["#2f6db3", "#b3261e"], 28)}</td>` +
        `<td class="spark">${chart([r.p50PerSec, r.p99PerSec], ["#137333", "#a65e00"], 28)}</td></tr>`;
    }
    if (!s.routes.length) html += `<tr><td colspan="8" class="muted">No requests yet.</td></tr>`;
    return html + `</table>`;
  }

  function health(s) {
    const c = s.health.components;
    let html = `<h2>Health</h2><table><colgroup><col style="width:16%"><col style="width:20%">` +
      `<col></colgroup><tr><th>component</th><th>status</th><th>detail</th></tr>`;
    for (const name of ["storage", "kafka", "registry", "actors", "cluster"]) {
      const h = c[name];
      html += `<tr><td>${name}</td><td class="${h.status}" data-testid="health-${name}">${h.status}</td>` +
        `<td>${esc(h.detail)}</td></tr>`;
    }
    return html + `</table>`;
  }

  function entities(s) {
    const e = s.entities;
    let html = `<h2>Entity actors</h2><p class="muted">At most ${e.limit} live actors of each kind ` +
      `(the least recently used is passivated past it); an actor idle for ` +
      `${e.idleSecs} s is passivated.</p><table><tr><th>kind</th>` +
      `<th>live</th><th>passivated</th><th>restarts</th><th>escalations</th><th>supervisor</th></tr>`;
    for (const k of e.kinds) {
      html += `<tr><td>${esc(k.kind)}</td><td data-testid="live-${esc(k.kind)}">${k.live == null ? "?" : k.live}</td>` +
        `<td>${k.passivations}</td><td>${k.restarts}</td><td>${k.escalations}</td><td class="${k.health.status}">${k.health.status}</td></tr>`;
    }
    return html + `</table>`;
  }

  function cluster(p) {
    if (!p) return `<h2>Cluster</h2><p class="muted">A single node: no cluster.</p>`;
    let html = `<h2>Cluster (${esc(p.mode)}, ${p.replicasWanted} replicas wanted)</h2><div class="grid4"><div>` +
      `<table><tr><th>member</th><th>state</th></tr>`;
    for (const m of p.members) {
      html += `<tr><td>${esc(m.name)}${m.thisNode ? " (this node)" : ""}</td>` +
        `<td class="${m.state}" data-testid="member-${esc(m.name)}">${m.state}</td></tr>`;
    }
    html += `</table></div><div style="grid-column:span 3"><table><colgroup>` +
      `<col style="width:9%"><col style="width:13%"><col style="width:9%">` +
      `<col style="width:12%"><col></colgroup><tr><th>partition</th><th>leader</th>` +
      `<th>term</th><th>applied here</th><th>replicas (lag in entries)</th></tr>`;
    for (const q of p.partitions) {
      const replicas = q.replicas.concat(q.learners).map((r) =>
        `${esc(r)} (${q.lag[r] == null ? "?" : q.lag[r]})`).join(", ");
      html += `<tr><td>${q.partition}</td><td data-testid="leader-${q.partition}">` +
        `${q.leader == null ? "election" : esc(q.leader)}</td><td>${q.term}</td>` +
        `<td>${q.lastApplied == null ? "–" : q.lastApplied}</td><td>${replicas}</td></tr>`;
    }
    html += `</table></div></div><h2>Recent events</h2><ul class="events">`;
    for (const ev of p.events.slice().reverse()) {
      html += `<li><time data-ms="${ev.atMs}">${clock(ev.atMs)}</time> ${esc(ev.text)}</li>`;
    }
    if (!p.events.length) html += `<li class="muted">None since this node started.</li>`;
    return html + `</ul>`;
  }

  function registry(s) {
    const r = s.registry, st = r.status;
    const replicas = st.replicas.length ? st.replicas.map(esc).join(", ") : "none";
    let html = `<h2>Registry · <a href="${esc(r.dashboard)}">/eureka/web</a></h2><p>renews last minute ` +
      `${st.renewsLastMin} (threshold ${st.renewsThreshold}) · lease expiration enabled · self-preservation off · ` +
      `DS replicas: ${replicas}</p><table><tr><th>application</th><th>instance</th>` +
      `<th>status</th><th>node</th><th>address</th><th>lease age</th></tr>`;
    for (const i of r.instances) {
      html += `<tr><td>${esc(i.app)}</td><td>${esc(i.instanceId)}</td><td class="${esc(i.status)}">${esc(i.status)}</td>` +
        `<td>${esc(i.node)}</td><td>${esc(i.address)}</td><td>${i.leaseAgeSecs} s</td></tr>`;
    }
    return html + `</table>`;
  }

  const sections = { head, shop, charts, routes, health, entities, registry,
    cluster: (s) => cluster(s.cluster) };

  function render(s) {
    for (const [id, draw] of Object.entries(sections)) {
      document.getElementById(id).innerHTML = draw(s);
    }
    shown = s;
    age();
  }

  // How old the state on screen is; the largest age seen is kept for the browser tests.
  function age() {
    if (!shown) return;
    const a = Math.max(0, Date.now() - shown.generatedAtMs);
    maxAge = Math.max(maxAge, a);
    document.body.dataset.ageMs = String(a);
    document.body.dataset.maxAgeMs = String(maxAge);
    const el = document.getElementById("age");
    if (el) {
      el.textContent = `(${(a / 1000).toFixed(1)} s ago)`;
      el.className = a > 2000 ? "stale" : "";
    }
  }

  async function poll() {
    try {
      const answer = await fetch("/console/state", { cache: "no-store", credentials: "same-origin" });
      if (answer.ok) {
        render(await answer.json());
        document.body.dataset.polls = String(Number(document.body.dataset.polls) + 1);
      }
    } catch (e) {
      // The node is away: the age shown keeps growing until it answers again.
    }
    setTimeout(poll, POLL_MS);
  }

  const initial = document.getElementById("initial-state");
  try { render(JSON.parse(initial.textContent)); } catch (e) { /* the server's HTML stays */ }
  setInterval(age, 100);
  setTimeout(poll, POLL_MS);
})();
