//! The operator console (issue 16) in a real browser: headless Chromium (`browser.rs`) opens
//! `/console`, the test acts through the API meanwhile, and reads what the page shows once its
//! script ran: the new order count on a single node, a killed member of a three-node cluster
//! DOWN and its partitions' leaders moved, and the outbox rising while the Kafka broker is
//! down. Each state is saved as `target/console/<state>.png`, and each test prints how stale
//! the page was (the age of the state on screen, kept by the page's script) and how long the
//! page took to show the change. Without JavaScript the same figures are in the HTML.

mod browser;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::Method;
use serde_json::Value;
use tempfile::TempDir;

use self::browser::Browser;
use super::support::{free_addr, retry, TestApp};

/// Orders each test places.
const ORDERS: u64 = 5;

/// Opens the console of `app` and waits until its script has polled the state once.
async fn open_console(app: &TestApp) -> Browser {
    let mut page = Browser::open(&format!("{}/console", app.base)).await;
    page.wait_for(
        "a state fetched by its script",
        "Number(document.body.dataset.polls) > 0",
    )
    .await;
    page
}

/// What `testid` shows, as a number.
async fn number(page: &mut Browser, testid: &str) -> u64 {
    let text = page.text(testid).await.unwrap_or_default();
    text.parse()
        .unwrap_or_else(|_| panic!("{testid} shows {text:?}"))
}

/// The page fits 1280 px: nothing to scroll sideways.
async fn fits_the_width(page: &mut Browser) {
    let wide = page
        .eval("document.documentElement.scrollWidth <= window.innerWidth")
        .await;
    assert_eq!(
        wide,
        Value::Bool(true),
        "the page scrolls sideways at 1280×800"
    );
}

/// Prints the page's staleness now and at its worst, after `state`.
async fn report(page: &mut Browser, state: &str, shown_after: Duration, shot: &std::path::Path) {
    let (age, worst) = page.staleness().await;
    eprintln!(
        "console {state}: the page showed it {shown_after:?} after the API; state on screen \
         {age} ms old, at most {worst} ms since the page opened; screenshot {}",
        shot.display()
    );
    // It polls twice a second; the bound leaves room for a machine busy with other tests.
    assert!(worst < 3_000, "the page was {worst} ms stale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_shows_new_orders() {
    let app = TestApp::spawn().await;
    app.product("console-1", 3.0, 100).await;
    let mut page = open_console(&app).await;
    assert_eq!(number(&mut page, "orders-total").await, 0);
    assert_eq!(page.text("health-storage").await.as_deref(), Some("UP"));
    for _ in 0..ORDERS {
        assert_eq!(app.order(&[("console-1", 1)]).await.status(), 201);
    }
    let shown = page
        .wait_for(
            "the new order count",
            &format!("document.querySelector('[data-testid=\"orders-total\"]').textContent == '{ORDERS}'"),
        )
        .await;
    // A chart point a second: wait for the second that holds the orders, then the route's row.
    page.wait_for(
        "the orders in the orders/s chart and the route table",
        "[...document.querySelectorAll('#routes td')].some(td => td.textContent == '/api/order')",
    )
    .await;
    let paths = page
        .eval("document.querySelectorAll('#charts svg path').length")
        .await;
    assert!(paths.as_u64() >= Some(5), "charts drawn: {paths}");
    fits_the_width(&mut page).await;
    let shot = page.screenshot("single-node-orders").await;
    report(&mut page, "single node, orders placed", shown, &shot).await;

    // Without JavaScript: the server rendered the same figures into the HTML.
    let html = app.get("/console").await.text().await.expect("HTML");
    assert!(
        html.contains(&format!("data-testid=\"orders-total\">{ORDERS}<")),
        "{html}"
    );
    assert!(html.contains("data-testid=\"health-storage\">UP<"));
    // And so a browser with JavaScript off shows them.
    let mut plain = Browser::open_without_script(&format!("{}/console", app.base)).await;
    assert_eq!(number(&mut plain, "orders-total").await, ORDERS);
    assert_eq!(plain.text("health-storage").await.as_deref(), Some("UP"));
    let polls = plain.eval("document.body.dataset.polls").await;
    assert_eq!(polls, "0", "the script ran with JavaScript off");
    fits_the_width(&mut plain).await;
    let shot = plain.screenshot("single-node-without-javascript").await;
    eprintln!(
        "console without JavaScript: {ORDERS} orders shown; screenshot {}",
        shot.display()
    );
    let state = app.json("/console/state").await;
    assert_eq!(state["shop"]["ordersPlaced"], ORDERS);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_shows_the_outbox_rising_while_kafka_is_down() {
    let app = TestApp::spawn().await;
    app.product("console-k", 3.0, 100).await;
    assert_eq!(app.order(&[("console-k", 1)]).await.status(), 201);
    app.wait_for_notifications(1).await;
    let mut page = open_console(&app).await;
    page.wait_for(
        "the first order announced",
        "document.querySelector('[data-testid=\"notifications-received\"]').textContent == '1'",
    )
    .await;
    let before = number(&mut page, "outbox-depth").await;
    let broker = app.embedded_broker();
    broker.brokers_down().expect("the broker goes down");
    // One order at a time, each seen in the outbox on the page before the next.
    let (mut seen, mut shown) = (vec![before], Duration::ZERO);
    for placed in 1..=ORDERS {
        assert_eq!(app.order(&[("console-k", 1)]).await.status(), 201);
        let took = page
            .wait_for(
                "the outbox holding every order placed during the outage",
                &format!(
                    "Number(document.querySelector('[data-testid=\"outbox-depth\"]').textContent) >= {}",
                    before + placed
                ),
            )
            .await;
        shown = shown.max(took);
        seen.push(number(&mut page, "outbox-depth").await);
    }
    let kafka = page
        .wait_for(
            "Kafka DEGRADED with its reason",
            "document.querySelector('[data-testid=\"health-kafka\"]').textContent != 'UP'",
        )
        .await;
    let reason = page
        .eval("document.querySelector('[data-testid=\"health-kafka\"]').nextElementSibling.textContent")
        .await;
    let shot = page.screenshot("kafka-outage-outbox").await;
    eprintln!("console Kafka outage: outbox depth on the page went {seen:?}; Kafka not UP after {kafka:?}: {reason}");
    report(&mut page, "broker down, outbox rising", shown, &shot).await;
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "rising: {seen:?}");
    broker.brokers_up().expect("the broker comes back");
    page.wait_for(
        "the outbox emptied once the broker is back",
        "document.querySelector('[data-testid=\"outbox-depth\"]').textContent == '0'",
    )
    .await;
    drop(broker);
    app.shutdown().await;
}

#[tokio::test]
async fn the_console_asks_for_the_registrys_credentials_when_configured() {
    let app = TestApp::spawn_with(|c| {
        c.security.registry_user = Some("eureka".into());
        c.security.registry_password = Some("s3cret-pass".parse().expect("a secret"));
    })
    .await;
    for path in ["/console", "/console/state"] {
        let refused = app.get(path).await;
        assert_eq!(refused.status(), 401, "{path}");
        assert!(refused.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic"));
        let basic = base64::engine::general_purpose::STANDARD.encode("eureka:s3cret-pass");
        let allowed = app
            .http(Method::GET, path)
            .header("authorization", format!("Basic {basic}"))
            .send()
            .await
            .expect("answered");
        assert_eq!(allowed.status(), 200, "{path}");
        let body = allowed.text().await.expect("a body");
        assert!(!body.contains("s3cret-pass"), "{path} shows the password");
    }
    app.shutdown().await;
}

/// Three replicated nodes, formed from a seed; each with its data directory.
struct Cluster {
    nodes: BTreeMap<&'static str, TestApp>,
    _dirs: Vec<TempDir>,
}

const NODES: [&str; 3] = ["c1", "c2", "c3"];
/// The cluster's shared secret, which no page may show.
const COOKIE: &str = "console-test-cookie";

/// The body of `GET path` on c1.
async fn watcher_text(cluster: &Cluster, path: &str) -> String {
    let answer = cluster.nodes["c1"].get(path).await;
    assert_eq!(answer.status(), 200, "{path}");
    answer.text().await.expect("a body")
}

impl Cluster {
    async fn form() -> Cluster {
        let addrs: BTreeMap<&str, String> = NODES.map(|n| (n, free_addr().to_string())).into();
        let (mut nodes, mut dirs, mut kafka) = (BTreeMap::new(), Vec::new(), String::new());
        for node in NODES {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut env = vec![
                ("AGORA_NODE", node),
                ("AGORA_CLUSTER", addrs[node].as_str()),
                ("AGORA_COOKIE", COOKIE),
                ("AGORA_PARTITIONS", "8"),
                ("AGORA_REPLICAS", "3"),
                ("AGORA_LEASE_SECS", "2"),
            ];
            if node != NODES[0] {
                env.push(("AGORA_JOIN", addrs[NODES[0]].as_str()));
                env.push(("AGORA_KAFKA_BROKERS", kafka.as_str()));
            }
            let app = TestApp::spawn_process(dir.path(), &env).await;
            if node == NODES[0] {
                kafka.clone_from(&app.kafka_brokers);
            }
            nodes.insert(node, app);
            dirs.push(dir);
        }
        let cluster = Cluster { nodes, _dirs: dirs };
        for app in cluster.nodes.values() {
            retry(
                Duration::from_millis(100),
                Duration::from_secs(60),
                || async {
                    let view: Value = app
                        .get("/cluster")
                        .await
                        .json()
                        .await
                        .map_err(|e| e.to_string())?;
                    let reachable = view["members"].as_array().into_iter().flatten();
                    let up = reachable.filter(|m| m["reachable"] == true).count();
                    let parts = view["partitions"].as_array().cloned().unwrap_or_default();
                    let whole = parts.len() == 8
                        && parts.iter().all(|p| {
                            p["leader"].is_string()
                                && p["replicas"].as_array().map(Vec::len) == Some(3)
                        });
                    match up == 3 && whole {
                        true => Ok(()),
                        false => Err(format!("not whole yet: {view}")),
                    }
                },
            )
            .await;
        }
        cluster
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_shows_a_killed_member_down_and_its_leaders_moved() {
    let mut cluster = Cluster::form().await;
    let watcher = &cluster.nodes["c1"];
    watcher.product("console-c", 3.0, 100).await;
    for gateway in ["c1", "c3"] {
        for _ in 0..ORDERS {
            let placed = cluster.nodes[gateway].order(&[("console-c", 1)]).await;
            assert_eq!(placed.status(), 201, "through {gateway}");
        }
    }
    let mut page = open_console(watcher).await;
    // The victim: c2 or c3, whichever leads partitions on the page.
    let leaders = "Object.fromEntries([...document.querySelectorAll('[data-testid^=\"leader-\"]')].map(e => [e.dataset.testid.slice(7), e.textContent]))";
    page.wait_for("every member UP", "[...document.querySelectorAll('[data-testid^=\"member-\"]')].filter(e => e.textContent == 'UP').length == 3").await;
    // The seed leads every partition at first; placement spreads the leaders soon after.
    page.wait_for(
        "c2 or c3 leading a partition",
        &format!("Object.values({leaders}).some(l => l == 'c2' || l == 'c3')"),
    )
    .await;
    let before = page.eval(leaders).await;
    let led = |victim: &str| -> Vec<String> {
        let parts = before.as_object().expect("leaders").iter();
        parts
            .filter(|(_, l)| *l == victim)
            .map(|(p, _)| p.clone())
            .collect()
    };
    let victim = ["c2", "c3"]
        .into_iter()
        .max_by_key(|v| led(v).len())
        .expect("a victim");
    let moved = led(victim);
    assert!(
        !moved.is_empty(),
        "neither c2 nor c3 leads a partition: {before}"
    );
    let app = cluster.nodes.remove(victim).expect("running");
    app.kill9();
    let killed = Instant::now();
    let down = page
        .wait_for(
            "the killed member DOWN",
            &format!(
                "document.querySelector('[data-testid=\"member-{victim}\"]').textContent == 'DOWN'"
            ),
        )
        .await;
    let relead = page
        .wait_for(
            "new leaders for the killed member's partitions",
            &format!(
                "(l => {moved:?}.every(p => l[p] != '{victim}' && l[p] != 'election'))({leaders})"
            ),
        )
        .await;
    let after = page.eval(leaders).await;
    // Events come from the sampler's diff of successive views, at most a second behind.
    let events = "document.querySelector('ul.events').textContent";
    page.wait_for(
        "the leader changes and the member DOWN among the recent events",
        &format!(
            "(t => /leader {victim} (→|lost)/.test(t) && t.includes('{victim} is unreachable'))({events})"
        ),
    )
    .await;
    fits_the_width(&mut page).await;
    for path in ["/console", "/console/state"] {
        let body = watcher_text(&cluster, path).await;
        assert!(!body.contains(COOKIE), "{path} shows the cluster's cookie");
    }
    let shot = page.screenshot("cluster-member-killed").await;
    eprintln!(
        "console cluster: kill -9 of {victim} (leader of partitions {moved:?}); DOWN on the page \
         after {down:?}, new leaders after {:?}: before {before}, after {after}",
        down + relead
    );
    report(&mut page, "member killed", killed.elapsed(), &shot).await;
}
