//! Tests of the registry through its routes, as real Eureka clients call them, and through the
//! `Registry` handle, as agora's own services do. Each test starts its own registry under its own
//! node name (actor names are process-wide) and serves `routes` on a free local port: warp's
//! `test` feature is not enabled in this crate, so requests go over HTTP with reqwest.
//!
//! This file holds what the tests share ([`start`], [`Api`], a py-eureka-client's registration);
//! the tests are in `tests/`, one file per concern: reading the registry (`fetch.rs`), changing
//! it (`updates.rs`) and the handle agora's services use (`handle.rs`). The dashboard's and the
//! replication's tests sit beside their code and start a registry here.

mod fetch;
mod handle;
mod updates;

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::{routes, Registry};
use crate::service::Supervision;
use crate::test_support::TestRoot;

/// The routes, served on a free port.
pub(super) struct Api {
    client: reqwest::Client,
    base: String,
}

pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) content_type: String,
    pub(super) body: String,
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

    pub(super) async fn call(&self, method: &str, path: &str) -> Reply {
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
    let root = TestRoot::spawn().await;
    let supervision = Supervision::for_tests(root.get_cell());
    let registry = Registry::start(node, lease, &supervision)
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
