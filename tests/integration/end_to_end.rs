//! The whole path over HTTP: catalog, inventory, orders with their saga, idempotency, cancel,
//! notifications through Kafka (list and server-sent events), the registry, health, metrics,
//! and an entity actor that panics and comes back with its state.

use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

use super::support::{notification_counts, order_body, order_line, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_shop_works_end_to_end() {
    let app = TestApp::spawn().await;

    // Catalog: the original's body (no skuCode, no quantity) still works.
    let response = app
        .post(
            "/api/product",
            json!({"name": "iPhone 13", "description": "iPhone 13", "price": 1000}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let iphone: Value = response.json().await.unwrap();
    assert_eq!(iphone["skuCode"], "iphone_13");
    assert_eq!(iphone["quantity"], 0);
    assert_eq!(
        location,
        format!("/api/product/{}", iphone["id"].as_str().unwrap())
    );
    assert_eq!(app.json(&location).await, iphone);
    let again = app
        .post("/api/product", json!({"name": "iPhone 13", "price": 1000}))
        .await;
    assert_eq!(again.status(), 409, "one product per SKU");

    let case = app.product("case", 19.9, 10).await;
    assert_eq!(case["price"], 19.9);
    let updated = app
        .request(
            Method::PUT,
            &format!("/api/product/{}", case["id"].as_str().unwrap()),
            Some(json!({"name": "Case", "description": "blue", "price": 20})),
        )
        .await;
    assert_eq!(updated.status(), 200);
    assert_eq!(
        updated.json::<Value>().await.unwrap()["description"],
        "blue"
    );
    let list = app.json("/api/product?limit=1").await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Inventory, as the original answers it, plus the quantity.
    let set = app
        .request(
            Method::PUT,
            "/api/inventory/iphone_13",
            Some(json!({"quantity": 5})),
        )
        .await;
    assert_eq!(set.status(), 200);
    let levels = app
        .json("/api/inventory?skuCode=iphone_13&skuCode=case&skuCode=nope")
        .await;
    assert_eq!(
        levels,
        json!([{"skuCode": "iphone_13", "inStock": true, "quantity": 5}, {"skuCode": "case", "inStock": true, "quantity": 10}])
    );

    // An order takes stock from every line, at catalog prices.
    let response = app.post("/api/order", json!({"orderLineItemsDtoList": [
        {"skuCode": "iphone_13", "price": 1000, "quantity": 2}, {"skuCode": "case", "quantity": 3}]})).await;
    assert_eq!(response.status(), 201);
    let order: Value = response.json().await.unwrap();
    let number = order["orderNumber"].as_str().unwrap().to_owned();
    assert_eq!(order["status"], "PLACED");
    assert_eq!(order["total"], 2060);
    assert_eq!(
        (app.stock("iphone_13").await, app.stock("case").await),
        (3, 7)
    );
    assert_eq!(app.json(&format!("/api/order/{number}")).await, order);

    // All or nothing, with the short SKUs named; unknown SKUs and changed prices refused.
    let short = app.order(&[("iphone_13", 1), ("case", 8)]).await;
    assert_eq!(short.status(), 409);
    assert_eq!(
        short.json::<Value>().await.unwrap()["skuCodes"],
        json!(["case"])
    );
    assert_eq!(
        (app.stock("iphone_13").await, app.stock("case").await),
        (3, 7),
        "nothing reserved"
    );
    let unknown = app.order(&[("ghost", 1)]).await;
    assert_eq!(unknown.status(), 422);
    assert_eq!(
        unknown.json::<Value>().await.unwrap()["skuCodes"],
        json!(["ghost"])
    );
    let stale = app
        .post(
            "/api/order",
            json!({"orderLineItemsDtoList": [{"skuCode": "case", "price": 19.9, "quantity": 1}]}),
        )
        .await;
    assert_eq!(stale.status(), 409);
    assert_eq!(
        stale.json::<Value>().await.unwrap()["error"],
        "price_changed"
    );

    // An Idempotency-Key makes a retry return the first answer and create nothing.
    let keyed = || {
        app.http(Method::POST, "/api/order")
            .header("idempotency-key", "retry-me")
            .json(&order_body(vec![order_line("case", 1)]))
            .send()
    };
    let first: Value = keyed().await.unwrap().json().await.unwrap();
    let retry = keyed().await.unwrap();
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.json::<Value>().await.unwrap(), first);
    assert_eq!(app.stock("case").await, 6);
    assert_eq!(app.json("/api/order").await.as_array().unwrap().len(), 2);

    // Cancel returns the stock once.
    let cancel = format!("/api/order/{number}/cancel");
    let cancelled = app.post(&cancel, json!({})).await;
    assert_eq!(cancelled.status(), 200);
    assert_eq!(
        cancelled.json::<Value>().await.unwrap()["status"],
        "CANCELLED"
    );
    assert_eq!(app.post(&cancel, json!({})).await.status(), 409);
    assert_eq!(
        (app.stock("iphone_13").await, app.stock("case").await),
        (5, 9)
    );

    // Notifications arrive through Kafka, once each.
    let mut live = app
        .http(Method::GET, "/api/notifications/stream")
        .send()
        .await
        .unwrap()
        .bytes_stream();
    let placed = app
        .order(&[("case", 1)])
        .await
        .json::<Value>()
        .await
        .unwrap();
    let mut seen = String::new();
    while !seen.contains(placed["orderNumber"].as_str().unwrap()) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), live.next())
            .await
            .expect("an event arrives");
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }
    assert!(
        seen.contains("event:OrderPlaced") || seen.contains("event: OrderPlaced"),
        "{seen}"
    );
    let counts = notification_counts(&app.wait_for_notifications(4).await);
    assert_eq!(
        counts.get(&(number.clone(), "OrderPlaced".into())),
        Some(&1)
    );
    assert_eq!(
        counts.get(&(number.clone(), "OrderCancelled".into())),
        Some(&1)
    );
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");

    // Delete a product: it leaves the catalog and can no longer be ordered.
    let iphone_path = format!("/api/product/{}", iphone["id"].as_str().unwrap());
    assert_eq!(
        app.request(Method::DELETE, &iphone_path, None)
            .await
            .status(),
        204
    );
    assert_eq!(app.get(&iphone_path).await.status(), 404);
    assert_eq!(app.order(&[("iphone_13", 1)]).await.status(), 422);

    // Registry, health and metrics.
    let apps = app.get_accept("/eureka/apps", "application/json").await;
    let apps: Value = serde_json::from_str(&apps).unwrap();
    let names: Vec<&str> = apps["applications"]["application"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    for service in [
        "PRODUCT-SERVICE",
        "INVENTORY-SERVICE",
        "ORDER-SERVICE",
        "NOTIFICATION-SERVICE",
        "API-GATEWAY",
    ] {
        assert!(names.contains(&service), "{service} registered: {names:?}");
    }
    let health = app.json("/health").await;
    assert_eq!(health["status"], "UP", "{health}");
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains(
            "agora_http_requests_total{method=\"POST\",route=\"/api/order\",status=\"201\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("agora_outbox_depth"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_entity_actor_is_restarted_with_its_state() {
    let app = TestApp::spawn().await;
    let product = app.product("sturdy", 5.0, 7).await;
    let id = product["id"].as_str().unwrap();
    for (kind, key) in [("product", id), ("stock", "sturdy")] {
        let hook = app
            .post(&format!("/_test/panic/{kind}/{key}"), json!({}))
            .await;
        assert_eq!(hook.status(), 202);
        app.wait_until(|| async {
            app.get("/metrics")
                .await
                .text()
                .await
                .unwrap()
                .contains(&format!("agora_actor_restarts_total{{kind=\"{kind}\"}}"))
        })
        .await;
    }
    app.wait_until(|| async { app.get(&format!("/api/product/{id}")).await.status() == 200 })
        .await;
    assert_eq!(
        app.json(&format!("/api/product/{id}")).await,
        product,
        "state reloaded from sled"
    );
    assert_eq!(app.order(&[("sturdy", 2)]).await.status(), 201);
    assert_eq!(app.stock("sturdy").await, 5);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_entity_actors_are_passivated_and_come_back_from_storage() {
    let app = TestApp::spawn_with(|config| config.idle_secs = 1).await;
    let product = app.product("sleepy", 1.0, 3).await;
    let actors = || async {
        app.json("/health").await["components"]["actors"]["detail"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        actors().await.contains("1 product actors"),
        "{}",
        actors().await
    );
    app.wait_until(|| async {
        actors()
            .await
            .starts_with("0 product actors; 0 stock actors")
    })
    .await;
    let path = format!("/api/product/{}", product["id"].as_str().unwrap());
    assert_eq!(app.json(&path).await, product, "reloaded from sled");
    assert!(actors().await.contains("1 product actors"));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_the_live_entity_limit_the_least_recently_used_actor_is_passivated() {
    let app = TestApp::spawn_with(|config| config.max_live_entities = 3).await;
    let mut products = Vec::new();
    for n in 0..6 {
        products.push(app.product(&format!("lru-{n}"), 1.0, 5).await);
    }
    let path = |p: &serde_json::Value| format!("/api/product/{}", p["id"].as_str().unwrap());
    let live = || async {
        let detail = app.json("/health").await["components"]["actors"]["detail"]
            .as_str()
            .unwrap()
            .to_owned();
        let products: usize = detail.split(' ').next().unwrap().parse().unwrap();
        (products, detail)
    };
    app.wait_until(|| async { live().await.0 <= 3 }).await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let passivated = metrics
        .lines()
        .find(|l| l.starts_with("agora_actor_passivations_total{kind=\"product\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .expect("a product passivation count");
    assert!(
        passivated >= 3,
        "{passivated} products passivated: {metrics}"
    );
    for product in &products {
        assert_eq!(
            &app.json(&path(product)).await,
            product,
            "reloaded from sled"
        );
    }
    assert!(live().await.0 <= 3, "{}", live().await.1);
    app.shutdown().await;
}
