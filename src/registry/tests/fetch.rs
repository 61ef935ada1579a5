//! Reading the registry as Eureka clients do: the full fetch in XML (without `Accept`) and JSON,
//! one app, one instance, the VIP queries and the delta.

use std::time::Duration;

use super::{register_py, start, PY_INSTANCE};

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
