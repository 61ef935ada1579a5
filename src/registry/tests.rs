//! Tests of the registry through its routes, as real Eureka clients call them, and through the
//! `Registry` handle, as agora's own services do. Each test starts its own registry under its own
//! node name (actor names are process-wide) and serves `routes` on a free local port: warp's
//! `test` feature is not enabled in this crate, so requests go over HTTP with reqwest.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use reqwest::Method;
use serde_json::Value;

use super::*;

/// A throwaway supervisor for the registry actor.
struct Root;

impl Actor for Root {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _myself: ActorRef<()>, _args: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// The routes, served on a free port.
pub(super) struct Api {
    client: reqwest::Client,
    base: String,
}

pub(super) struct Reply {
    pub(super) status: u16,
    content_type: String,
    body: String,
}

impl Api {
    async fn send(
        &self,
        method: &str,
        path: &str,
        accept: Option<&str>,
        body: Option<&str>,
    ) -> Reply {
        let method = Method::from_bytes(method.as_bytes()).expect("valid method");
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if let Some(accept) = accept {
            req = req.header("accept", accept);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let res = req.send().await.expect("request is answered");
        let content_type = res
            .headers()
            .get("content-type")
            .map_or("", |v| v.to_str().unwrap_or(""));
        Reply {
            status: res.status().as_u16(),
            content_type: content_type.to_owned(),
            body: res.text().await.expect("body reads"),
        }
    }

    async fn call(&self, method: &str, path: &str) -> Reply {
        self.send(method, path, None, None).await
    }

    pub(super) async fn post(&self, path: &str, body: &str) -> Reply {
        self.send("POST", path, None, Some(body)).await
    }

    async fn get_json(&self, path: &str) -> Value {
        let res = self.send("GET", path, Some("application/json"), None).await;
        assert_eq!(res.status, 200, "{path}: {}", res.body);
        assert_eq!(res.content_type, "application/json");
        serde_json::from_str(&res.body).expect("JSON body")
    }
}

pub(super) async fn start(node: &str, lease: Duration) -> (Registry, Api) {
    let (root, _) = Actor::spawn(None, Root, ())
        .await
        .expect("root actor starts");
    let registry = Registry::start(node, lease, root.get_cell())
        .await
        .expect("registry starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("free port");
    let base = format!("http://{}", listener.local_addr().expect("bound address"));
    tokio::spawn(
        warp::serve(routes(registry.clone()))
            .incoming(listener)
            .run(),
    );
    (
        registry,
        Api {
            client: reqwest::Client::new(),
            base,
        },
    )
}

const PY_BODY: &str = r#"{"instance":{"instanceId":"127.0.0.1:interop-svc:37873","hostName":"127.0.0.1","app":"INTEROP-SVC",
"ipAddr":"127.0.0.1","status":"UP","overriddenstatus":"UNKNOWN","port":{"$":37873,"@enabled":"true"},
"securePort":{"$":9443,"@enabled":"false"},"countryId":1,
"dataCenterInfo":{"@class":"com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo","name":"MyOwn"},
"leaseInfo":{"renewalIntervalInSecs":2,"durationInSecs":90,"registrationTimestamp":0,"lastRenewalTimestamp":0,"evictionTimestamp":0,"serviceUpTimestamp":0},
"metadata":{"management.port":"37873","zone":"default"},"homePageUrl":"http://127.0.0.1:37873/",
"statusPageUrl":"http://127.0.0.1:37873/info","healthCheckUrl":"http://127.0.0.1:37873/health",
"secureHealthCheckUrl":"","vipAddress":"interop-svc","secureVipAddress":"interop-svc",
"isCoordinatingDiscoveryServer":"false","lastUpdatedTimestamp":"1795522271261","lastDirtyTimestamp":"1795522271261"}}"#;

const PY_INSTANCE: &str = "/eureka/apps/INTEROP-SVC/127.0.0.1%3Ainterop-svc%3A37873";

async fn register_py(api: &Api) {
    let res = api.post("/eureka/apps/INTEROP-SVC", PY_BODY).await;
    assert_eq!(res.status, 204, "{}", res.body);
}

/// Polls `check` until it holds; the lease timer ticks every second at least.
async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn py_client_registers_and_renews_with_an_encoded_id() {
    let (_, api) = start("t-renew", Duration::from_secs(90)).await;
    register_py(&api).await;
    let renew = format!("{PY_INSTANCE}?status=UP&lastDirtyTimestamp=1795522271261");
    assert_eq!(api.call("PUT", &renew).await.status, 200);

    let res = api.call("PUT", "/eureka/apps/INTEROP-SVC/nobody").await;
    assert_eq!(res.status, 404);
    let body: Value = serde_json::from_str(&res.body).expect("JSON error");
    assert_eq!(body["error"], "Not Found");
    assert!(body["message"]
        .as_str()
        .is_some_and(|m| m.contains("nobody")));
}

#[tokio::test]
async fn full_fetch_is_xml_without_accept() {
    let (_, api) = start("t-xml", Duration::from_secs(90)).await;
    register_py(&api).await;
    for path in ["/eureka/apps", "/eureka/apps/"] {
        let res = api.call("GET", path).await;
        assert_eq!(res.status, 200);
        assert_eq!(res.content_type, "application/xml");
        let xml = res.body;
        assert!(
            xml.starts_with("<applications><versions__delta>1</versions__delta>"),
            "{xml}"
        );
        assert!(
            xml.contains("<apps__hashcode>UP_1_</apps__hashcode>"),
            "{xml}"
        );
        assert!(
            xml.contains("<application><name>INTEROP-SVC</name><instance>"),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<port enabled="true">37873</port>"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<securePort enabled="false">9443</securePort>"#),
            "{xml}"
        );
        assert!(xml.contains(
            r#"<dataCenterInfo class="com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"><name>MyOwn</name></dataCenterInfo>"#
        ), "{xml}");
        assert!(
            xml.contains("<management.port>37873</management.port>"),
            "{xml}"
        );
        assert!(xml.contains("<durationInSecs>90</durationInSecs>"), "{xml}");
        assert!(
            xml.contains("<lastDirtyTimestamp>1795522271261</lastDirtyTimestamp>"),
            "{xml}"
        );
    }
    let one = api.call("GET", PY_INSTANCE).await.body;
    assert!(
        one.starts_with("<instance><instanceId>127.0.0.1:interop-svc:37873</instanceId>"),
        "{one}"
    );
}

#[tokio::test]
async fn json_fetch_uses_arrays_and_eureka_types() {
    let (_, api) = start("t-json", Duration::from_secs(90)).await;
    register_py(&api).await;
    let body = api.get_json("/eureka/apps").await;
    let apps = &body["applications"];
    assert_eq!(apps["versions__delta"], "1");
    assert_eq!(apps["apps__hashcode"], "UP_1_");
    let instance = &apps["application"][0]["instance"][0];
    assert_eq!(instance["port"]["$"], 37873);
    assert_eq!(instance["port"]["@enabled"], "true");
    assert_eq!(instance["countryId"], 1);
    assert_eq!(instance["lastDirtyTimestamp"], "1795522271261");
    assert_eq!(
        instance["dataCenterInfo"]["@class"],
        "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
    );
    assert_eq!(instance["actionType"], "ADDED");
    assert!(instance["leaseInfo"]["registrationTimestamp"]
        .as_u64()
        .is_some_and(|t| t > 0));

    let app = api.get_json("/eureka/apps/interop-svc").await;
    assert!(app["application"]["instance"].is_array());
    let vip = api.get_json("/eureka/vips/interop-svc").await;
    assert_eq!(
        vip["applications"]["application"][0]["instance"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let svip = api.get_json("/eureka/svips/nothing").await;
    assert_eq!(svip["applications"]["application"], serde_json::json!([]));
    let by_id = api
        .get_json("/eureka/instances/127.0.0.1%3Ainterop-svc%3A37873")
        .await;
    assert_eq!(by_id["instance"]["app"], "INTEROP-SVC");
    assert_eq!(api.call("GET", "/eureka/apps/NOPE").await.status, 404);
}

#[tokio::test]
async fn delta_lists_changes_with_the_full_hash() {
    let (_, api) = start("t-delta", Duration::from_secs(90)).await;
    let empty = api.get_json("/eureka/apps/delta").await;
    assert_eq!(empty["applications"]["application"], serde_json::json!([]));
    register_py(&api).await;
    let delta = api.get_json("/eureka/apps/delta").await;
    assert_eq!(delta["applications"]["apps__hashcode"], "UP_1_");
    assert_eq!(
        delta["applications"]["application"][0]["instance"][0]["actionType"],
        "ADDED"
    );

    assert_eq!(api.call("DELETE", PY_INSTANCE).await.status, 200);
    assert_eq!(api.call("DELETE", PY_INSTANCE).await.status, 404);
    assert_eq!(
        api.call("GET", "/eureka/apps/INTEROP-SVC").await.status,
        404
    );
    let delta = api.get_json("/eureka/apps/delta").await;
    let apps = &delta["applications"];
    assert_eq!(apps["versions__delta"], "2");
    assert_eq!(apps["apps__hashcode"], "");
    assert_eq!(
        apps["application"][0]["instance"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        apps["application"][0]["instance"][0]["actionType"],
        "DELETED"
    );
}

#[tokio::test]
async fn status_override_and_metadata() {
    let (_, api) = start("t-status", Duration::from_secs(90)).await;
    register_py(&api).await;
    let path = format!("{PY_INSTANCE}/status?value=OUT_OF_SERVICE&lastDirtyTimestamp=1");
    assert_eq!(api.call("PUT", &path).await.status, 200);
    let body = api.get_json(PY_INSTANCE).await;
    assert_eq!(body["instance"]["status"], "OUT_OF_SERVICE");
    assert_eq!(body["instance"]["overriddenStatus"], "OUT_OF_SERVICE");
    assert_eq!(body["instance"]["actionType"], "MODIFIED");
    let delta = api.get_json("/eureka/apps/delta").await;
    assert_eq!(delta["applications"]["apps__hashcode"], "OUT_OF_SERVICE_1_");
    assert_eq!(delta["applications"]["versions__delta"], "2");

    // Re-registering keeps the override, as Eureka does.
    register_py(&api).await;
    assert_eq!(
        api.get_json(PY_INSTANCE).await["instance"]["status"],
        "OUT_OF_SERVICE"
    );
    assert_eq!(
        api.call("DELETE", &format!("{PY_INSTANCE}/status"))
            .await
            .status,
        200
    );
    assert_eq!(api.get_json(PY_INSTANCE).await["instance"]["status"], "UP");

    assert_eq!(
        api.call("PUT", &format!("{PY_INSTANCE}/status?value=SLEEPY"))
            .await
            .status,
        400
    );
    assert_eq!(
        api.call("PUT", "/eureka/apps/INTEROP-SVC/x/status?value=UP")
            .await
            .status,
        404
    );

    let meta = format!("{PY_INSTANCE}/metadata?zone=eu%2D1&weight=3");
    assert_eq!(api.call("PUT", &meta).await.status, 200);
    let metadata = &api.get_json(PY_INSTANCE).await["instance"]["metadata"];
    assert_eq!(metadata["zone"], "eu-1");
    assert_eq!(metadata["weight"], "3");
    assert_eq!(metadata["management.port"], "37873");
}

#[tokio::test]
async fn app_names_are_upper_cased_and_defaults_filled() {
    let (_, api) = start("t-upper", Duration::from_secs(90)).await;
    let body = r#"{"instance":{"hostName":"js-host","app":"jsapp","ipAddr":"10.0.0.2","vipAddress":"jsapp",
        "port":{"$":3000,"@enabled":true},"dataCenterInfo":{"@class":"com.netflix.appinfo.MyDataCenterInfo","name":"MyOwn"}}}"#;
    let res = api.post("/eureka/apps/jsapp", body).await;
    assert_eq!(res.status, 204, "{}", res.body);
    let app = api.get_json("/eureka/apps/JSAPP").await;
    let instance = &app["application"]["instance"][0];
    assert_eq!(app["application"]["name"], "JSAPP");
    assert_eq!(instance["instanceId"], "js-host");
    assert_eq!(instance["securePort"]["@enabled"], "false");
    assert_eq!(instance["leaseInfo"]["durationInSecs"], 90);
    assert_eq!(
        api.call("PUT", "/eureka/apps/jsapp/js-host").await.status,
        200
    );
}

#[tokio::test]
async fn bad_bodies_are_400_naming_the_field() {
    let (_, api) = start("t-bad", Duration::from_secs(90)).await;
    let missing =
        r#"{"instance":{"app":"A","ipAddr":"1.2.3.4","dataCenterInfo":{"name":"MyOwn"}}}"#;
    for (body, field) in [(missing, "hostName"), ("{}", "instance"), ("nope", "JSON")] {
        let res = api.post("/eureka/apps/A", body).await;
        assert_eq!(res.status, 400);
        assert!(res.body.contains(field), "{}", res.body);
    }
    let res = api.post("/eureka/apps/OTHER", PY_BODY).await;
    assert_eq!(res.status, 400);
}

#[tokio::test]
async fn wrong_method_is_405_and_unknown_path_404() {
    let (_, api) = start("t-405", Duration::from_secs(90)).await;
    assert_eq!(api.call("PATCH", PY_INSTANCE).await.status, 405);
    assert_eq!(api.call("POST", "/eureka/apps").await.status, 405);
    assert_eq!(
        api.call("POST", &format!("{PY_INSTANCE}/metadata"))
            .await
            .status,
        405
    );
    assert_eq!(api.call("GET", "/eureka/nothing/here").await.status, 404);
}

#[tokio::test]
async fn expired_lease_marks_down_then_renew_is_404() {
    let (registry, api) = start("t-lease", Duration::from_millis(200)).await;
    let local = LocalInstance {
        app: ORDER_SERVICE,
        node: "t-lease".into(),
        actor_name: "t-lease/orders".into(),
        http_addr: "127.0.0.1:8080".parse().expect("address"),
    };
    let id = registry
        .register_local(local.clone())
        .await
        .expect("registers");
    assert_eq!(registry.summary().instances_up, 1);
    eventually("the lease ran out", || {
        registry.summary().instances_down == 1
    })
    .await;
    assert_eq!(registry.actor_name(ORDER_SERVICE), None);
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
async fn actor_name_prefers_this_node() {
    let (registry, api) = start("t-actor", Duration::from_secs(90)).await;
    assert_eq!(registry.actor_name(PRODUCT_SERVICE), None);
    let remote = r#"{"instance":{"hostName":"h2","app":"PRODUCT-SERVICE","ipAddr":"10.0.0.9",
        "metadata":{"node":"other","actor":"other/products"},"dataCenterInfo":{"name":"MyOwn"}}}"#;
    let res = api.post("/eureka/apps/PRODUCT-SERVICE", remote).await;
    assert_eq!(res.status, 204);
    assert_eq!(
        registry.actor_name(PRODUCT_SERVICE).as_deref(),
        Some("other/products")
    );

    let id = registry
        .register_local(LocalInstance {
            app: PRODUCT_SERVICE,
            node: "t-actor".into(),
            actor_name: "t-actor/products".into(),
            http_addr: "127.0.0.1:9000".parse().expect("address"),
        })
        .await
        .expect("registers");
    assert_eq!(id, "t-actor:product-service");
    assert_eq!(
        registry.actor_name("product-service").as_deref(),
        Some("t-actor/products")
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
    assert_eq!(
        registry.actor_name(PRODUCT_SERVICE).as_deref(),
        Some("other/products")
    );
}

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
