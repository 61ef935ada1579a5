//! Instance: Eureka's `InstanceInfo` as a typed record, and its lenient parsing from the JSON body
//! of a register request.
//!
//! Real clients disagree on types (`"@enabled":"true"` or `true`, timestamps as strings or
//! numbers) and leave fields out (eureka-js-client sends no instanceId, leaseInfo, securePort or
//! metadata), so parsing accepts both spellings and fills Eureka's defaults. The routes parse;
//! the actor stores; `wire` and `xml` render.

use std::collections::BTreeMap;

use serde_json::Value;

/// Eureka's default lease duration and renewal interval, used when a client sends none.
const DEFAULT_LEASE_SECS: u64 = 90;
const DEFAULT_RENEWAL_SECS: u64 = 30;
const DEFAULT_PORT: u64 = 7001;
const DEFAULT_SECURE_PORT: u64 = 7002;
const DEFAULT_DATA_CENTER_CLASS: &str = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo";

/// An instance's status, as Eureka spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, utoipa::ToSchema)]
#[schema(as = InstanceStatus, rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Status {
    Up,
    Down,
    Starting,
    OutOfService,
    Unknown,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Up => "UP",
            Status::Down => "DOWN",
            Status::Starting => "STARTING",
            Status::OutOfService => "OUT_OF_SERVICE",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// Parses Eureka's spelling (case-insensitive); `None` for anything else.
    pub(crate) fn parse(text: &str) -> Option<Status> {
        [
            Status::Up,
            Status::Down,
            Status::Starting,
            Status::OutOfService,
            Status::Unknown,
        ]
        .into_iter()
        .find(|status| status.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// What happened to an instance last, as sent in `actionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Added,
    Modified,
    Deleted,
}

impl Action {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Added => "ADDED",
            Action::Modified => "MODIFIED",
            Action::Deleted => "DELETED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Port {
    pub number: u64,
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DataCenter {
    /// The Java class name clients send as `@class` (rendered as the XML `class` attribute).
    pub class: String,
    pub name: String,
    /// Only Amazon data centers carry metadata; empty otherwise.
    pub metadata: BTreeMap<String, String>,
}

/// Eureka's `leaseInfo`. Timestamps are milliseconds since the Unix epoch, 0 when unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseInfo {
    pub renewal_interval_in_secs: u64,
    pub duration_in_secs: u64,
    pub registration_timestamp: u64,
    pub last_renewal_timestamp: u64,
    pub eviction_timestamp: u64,
    pub service_up_timestamp: u64,
}

/// One registered instance, with every field a client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instance {
    /// Unique within its app; falls back to `host_name` when the client sends none.
    pub instance_id: String,
    pub host_name: String,
    /// Always upper case.
    pub app: String,
    pub ip_addr: String,
    /// The effective status: the override when one is set, else what the client reported.
    pub status: Status,
    /// `Unknown` when no override is set.
    pub overridden_status: Status,
    pub port: Port,
    pub secure_port: Port,
    pub country_id: u64,
    pub data_center: DataCenter,
    pub lease_info: LeaseInfo,
    pub metadata: BTreeMap<String, String>,
    pub home_page_url: String,
    pub status_page_url: String,
    pub health_check_url: String,
    pub secure_health_check_url: String,
    pub vip_address: String,
    pub secure_vip_address: String,
    pub is_coordinating_discovery_server: bool,
    pub last_updated_timestamp: u64,
    pub last_dirty_timestamp: u64,
}

impl Instance {
    /// A minimal UP instance with Eureka's defaults; callers fill in the rest.
    pub(crate) fn new(app: &str, instance_id: &str, host_name: &str, ip_addr: &str) -> Instance {
        Instance {
            instance_id: instance_id.to_owned(),
            host_name: host_name.to_owned(),
            app: app.to_ascii_uppercase(),
            ip_addr: ip_addr.to_owned(),
            status: Status::Up,
            overridden_status: Status::Unknown,
            port: Port {
                number: DEFAULT_PORT,
                enabled: true,
            },
            secure_port: Port {
                number: DEFAULT_SECURE_PORT,
                enabled: false,
            },
            country_id: 1,
            data_center: DataCenter {
                class: DEFAULT_DATA_CENTER_CLASS.to_owned(),
                name: "MyOwn".to_owned(),
                metadata: BTreeMap::new(),
            },
            lease_info: LeaseInfo {
                renewal_interval_in_secs: DEFAULT_RENEWAL_SECS,
                duration_in_secs: DEFAULT_LEASE_SECS,
                registration_timestamp: 0,
                last_renewal_timestamp: 0,
                eviction_timestamp: 0,
                service_up_timestamp: 0,
            },
            metadata: BTreeMap::new(),
            home_page_url: String::new(),
            status_page_url: String::new(),
            health_check_url: String::new(),
            secure_health_check_url: String::new(),
            vip_address: String::new(),
            secure_vip_address: String::new(),
            is_coordinating_discovery_server: false,
            last_updated_timestamp: 0,
            last_dirty_timestamp: 0,
        }
    }

    /// Parses the body of `POST /eureka/apps/{APP}`: `{"instance":{...}}`.
    pub(crate) fn from_register_body(body: &[u8]) -> Result<Instance, BadInstance> {
        let root: Value =
            serde_json::from_slice(body).map_err(|e| BadInstance::NotJson(e.to_string()))?;
        let v = root
            .get("instance")
            .ok_or(BadInstance::Missing("instance"))?;
        if !v.is_object() {
            return Err(BadInstance::Missing("instance"));
        }
        let host_name = required(v, "hostName")?;
        let instance_id = text(v, "instanceId")
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| host_name.clone());
        let ip_addr = required(v, "ipAddr")?;
        let app = required(v, "app")?;
        let dc = v.get("dataCenterInfo").unwrap_or(&Value::Null);
        let dc_name =
            required(dc, "name").map_err(|_| BadInstance::Missing("dataCenterInfo.name"))?;

        let mut instance = Instance::new(&app, &instance_id, &host_name, &ip_addr);
        instance.data_center = DataCenter {
            class: text(dc, "@class").unwrap_or_else(|| DEFAULT_DATA_CENTER_CLASS.to_owned()),
            name: dc_name,
            metadata: string_map(dc.get("metadata")),
        };
        let defaults = instance.clone();
        let status_of = |key| text(v, key).and_then(|s| Status::parse(&s));
        instance.status = status_of("status").unwrap_or(Status::Up);
        instance.overridden_status = status_of("overriddenStatus")
            .or_else(|| status_of("overriddenstatus"))
            .unwrap_or(Status::Unknown);
        instance.port = port(v.get("port"), defaults.port);
        instance.secure_port = port(v.get("securePort"), defaults.secure_port);
        instance.country_id = int(v, "countryId").unwrap_or(defaults.country_id);
        if let Some(lease) = v.get("leaseInfo") {
            let positive = |key| int(lease, key).filter(|n| *n > 0);
            let d = &defaults.lease_info;
            instance.lease_info.renewal_interval_in_secs =
                positive("renewalIntervalInSecs").unwrap_or(d.renewal_interval_in_secs);
            instance.lease_info.duration_in_secs =
                positive("durationInSecs").unwrap_or(d.duration_in_secs);
        }
        instance.metadata = string_map(v.get("metadata"));
        let string = |key| text(v, key).unwrap_or_default();
        instance.home_page_url = string("homePageUrl");
        instance.status_page_url = string("statusPageUrl");
        instance.health_check_url = string("healthCheckUrl");
        instance.secure_health_check_url = string("secureHealthCheckUrl");
        instance.vip_address = string("vipAddress");
        instance.secure_vip_address = string("secureVipAddress");
        instance.is_coordinating_discovery_server = v
            .get("isCoordinatingDiscoveryServer")
            .and_then(flag)
            .unwrap_or(false);
        instance.last_dirty_timestamp = int(v, "lastDirtyTimestamp").unwrap_or(0);
        Ok(instance)
    }

    /// Whether `vip` is one of the instance's comma-separated VIP addresses (or secure ones).
    pub(crate) fn serves_vip(&self, vip: &str, secure: bool) -> bool {
        let list = if secure {
            &self.secure_vip_address
        } else {
            &self.vip_address
        };
        list.split(',').any(|v| v.trim().eq_ignore_ascii_case(vip))
    }
}

/// Why a register body was refused (answered with 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum BadInstance {
    #[error("request body is not JSON: {0}")]
    NotJson(String),
    #[error("missing field: {0}")]
    Missing(&'static str),
    #[error("app {body} in the body does not match app {path} in the path")]
    AppMismatch { body: String, path: String },
}

fn required(v: &Value, key: &'static str) -> Result<String, BadInstance> {
    text(v, key)
        .filter(|s| !s.is_empty())
        .ok_or(BadInstance::Missing(key))
}

/// A string field; numbers and booleans are taken as their text, null as absent.
fn text(v: &Value, key: &str) -> Option<String> {
    scalar_text(v.get(key)?)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A non-negative integer field, sent as a number or a string.
fn int(v: &Value, key: &str) -> Option<u64> {
    number(v.get(key)?)
}

fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A boolean, sent as `true` or `"true"`.
fn flag(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `{"$": 8080, "@enabled": "true"}`, or a bare number (enabled).
fn port(v: Option<&Value>, default: Port) -> Port {
    match v {
        Some(obj @ Value::Object(_)) => Port {
            number: obj.get("$").and_then(number).unwrap_or(default.number),
            enabled: obj
                .get("@enabled")
                .and_then(flag)
                .unwrap_or(default.enabled),
        },
        Some(other) => match number(other) {
            Some(n) => Port {
                number: n,
                enabled: true,
            },
            None => default,
        },
        None => default,
    }
}

/// A string map; Jackson's `"@class"` marker (`java.util.Collections$EmptyMap`) is dropped.
fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    let Some(Value::Object(map)) = v else {
        return BTreeMap::new();
    };
    map.iter()
        .filter(|(k, _)| k.as_str() != "@class")
        .filter_map(|(k, v)| Some((k.clone(), scalar_text(v)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn js_client_body_gets_defaults() {
        let body = br#"{"instance":{"hostName":"h","app":"jsapp","ipAddr":"10.0.0.1",
            "port":{"$":"8080","@enabled":true},"vipAddress":"jsapp",
            "dataCenterInfo":{"@class":"x.MyDataCenterInfo","name":"MyOwn"},
            "metadata":{"@class":"java.util.Collections$EmptyMap"}}}"#;
        let i = Instance::from_register_body(body).expect("parses");
        assert_eq!(i.instance_id, "h");
        assert_eq!(i.app, "JSAPP");
        assert_eq!(
            i.port,
            Port {
                number: 8080,
                enabled: true
            }
        );
        assert_eq!(
            i.secure_port,
            Port {
                number: 7002,
                enabled: false
            }
        );
        assert_eq!(i.lease_info.duration_in_secs, 90);
        assert!(i.metadata.is_empty());
        assert_eq!(i.data_center.class, "x.MyDataCenterInfo");
    }

    #[test]
    fn missing_fields_are_named() {
        let body = br#"{"instance":{"hostName":"h","app":"a","ipAddr":"1.2.3.4"}}"#;
        assert_eq!(
            Instance::from_register_body(body),
            Err(BadInstance::Missing("dataCenterInfo.name"))
        );
        let body = br#"{"instance":{"hostName":"h","app":"a"}}"#;
        assert_eq!(
            Instance::from_register_body(body),
            Err(BadInstance::Missing("ipAddr"))
        );
        assert!(matches!(
            Instance::from_register_body(b"nope"),
            Err(BadInstance::NotJson(_))
        ));
    }
}
