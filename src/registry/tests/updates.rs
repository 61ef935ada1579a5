//! Changing the registry as Eureka clients do: register and renew (with an encoded instance id),
//! the status override and metadata, the defaults a sparse body gets, and the 400, 404 and 405
//! answers.

use std::time::Duration;

use serde_json::Value;

use super::{register_py, start, PY_BODY, PY_INSTANCE};

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
