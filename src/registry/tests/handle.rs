//! The `Registry` handle as agora's own services use it: local registration and lease expiry,
//! which nodes serve an app, and the addresses the gateway balances over.

use std::collections::BTreeMap;
use std::time::Duration;

use super::start;
use crate::registry::{LocalInstance, RegistrySummary, ORDER_SERVICE, PRODUCT_SERVICE};
use crate::test_support::eventually;

#[tokio::test]
async fn expired_lease_marks_down_then_renew_is_404() {
    let (registry, api) = start("t-lease", Duration::from_millis(200)).await;
    let local = LocalInstance {
        app: ORDER_SERVICE,
        node: "t-lease".into(),
        http_addr: "127.0.0.1:8080".parse().expect("address"),
    };
    let id = registry
        .register_local(local.clone())
        .await
        .expect("registers");
    assert_eq!(registry.summary().instances_up, 1);
    // The lease timer ticks every second at least.
    eventually("the lease ran out", Duration::from_secs(4), || async {
        registry.summary().instances_down == 1
    })
    .await;
    assert!(!registry.nodes_of(ORDER_SERVICE)["t-lease"]);
    let path = format!("/eureka/apps/{ORDER_SERVICE}/t-lease%3Aorder-service");
    assert_eq!(api.call("PUT", &path).await.status, 404);
    assert!(!registry
        .renew(ORDER_SERVICE, &id)
        .await
        .expect("renew answers"));
    let xml = api.call("GET", &path).await.body;
    assert!(xml.contains("<status>DOWN</status>"), "{xml}");

    registry
        .register_local(local)
        .await
        .expect("registers again");
    assert!(registry
        .renew(ORDER_SERVICE, &id)
        .await
        .expect("renew answers"));
}

#[tokio::test]
async fn local_and_remote_instances_count_per_node() {
    let (registry, api) = start("t-actor", Duration::from_secs(90)).await;
    let up = |nodes: &[&str]| -> BTreeMap<String, bool> {
        nodes.iter().map(|n| (n.to_string(), true)).collect()
    };
    assert_eq!(registry.nodes_of(PRODUCT_SERVICE), up(&[]));
    let remote = r#"{"instance":{"hostName":"h2","app":"PRODUCT-SERVICE","ipAddr":"10.0.0.9",
        "metadata":{"node":"other","actor":"other/products"},"dataCenterInfo":{"name":"MyOwn"}}}"#;
    let res = api.post("/eureka/apps/PRODUCT-SERVICE", remote).await;
    assert_eq!(res.status, 204);
    assert_eq!(registry.nodes_of(PRODUCT_SERVICE), up(&["other"]));

    let id = registry
        .register_local(LocalInstance {
            app: PRODUCT_SERVICE,
            node: "t-actor".into(),
            http_addr: "127.0.0.1:9000".parse().expect("address"),
        })
        .await
        .expect("registers");
    assert_eq!(id, "t-actor:product-service");
    assert_eq!(
        registry.nodes_of("product-service"),
        up(&["other", "t-actor"])
    );
    assert_eq!(
        registry.summary(),
        RegistrySummary {
            instances_up: 2,
            instances_down: 0,
            apps: 1
        }
    );
    let instance = &api
        .get_json("/eureka/apps/PRODUCT-SERVICE/t-actor%3Aproduct-service")
        .await["instance"];
    assert_eq!(instance["port"]["$"], 9000);
    assert_eq!(instance["vipAddress"], "product-service");
    assert_eq!(instance["metadata"]["node"], "t-actor");

    assert!(registry
        .cancel(PRODUCT_SERVICE, &id)
        .await
        .expect("cancel answers"));
    assert_eq!(registry.nodes_of(PRODUCT_SERVICE), up(&["other"]));
}

#[tokio::test]
async fn up_instances_are_up_with_an_enabled_port_in_id_order() {
    let (registry, api) = start("t-up", Duration::from_secs(90)).await;
    for (id, port, enabled) in [("b", 9002, true), ("a", 9001, true), ("c", 9003, false)] {
        let body = format!(
            r#"{{"instance":{{"instanceId":"{id}","hostName":"h-{id}","app":"SHOP","ipAddr":"127.0.0.1",
            "port":{{"$":{port},"@enabled":"{enabled}"}},"dataCenterInfo":{{"name":"MyOwn"}}}}}}"#
        );
        assert_eq!(api.post("/eureka/apps/SHOP", &body).await.status, 204);
    }
    let up = |port| ("127.0.0.1".to_owned(), port);
    assert_eq!(registry.up_instances("shop"), vec![up(9001), up(9002)]);
    let res = api
        .call("PUT", "/eureka/apps/SHOP/a/status?value=OUT_OF_SERVICE")
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(registry.up_instances("SHOP"), vec![up(9002)]);
    assert!(registry.up_instances("nobody").is_empty());
}
