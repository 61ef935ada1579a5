//! Tree: an instance described once, format-neutrally, as a list of [`Node`]s in Eureka's
//! element order, with its `actionType`.
//!
//! Both renderers walk it, the JSON one in `wire.rs` and the XML one in `xml.rs`, so the two
//! formats carry the same fields; it reads only the instance (`instance.rs`). A node says how
//! clients parse its value: in XML everything is text, with integers where py-eureka-client
//! calls `int()`; JSON sends [`Node::Int`] as a number and [`Node::IntText`] as a string.

use std::collections::BTreeMap;

use super::instance::{Action, DataCenter, Instance, Port};

/// One element of an instance description.
pub(crate) enum Node<'a> {
    Text(&'a str),
    /// An integer that JSON sends as a string (Eureka's Jackson codec does so).
    IntText(u64),
    Int(u64),
    Port(&'a Port),
    DataCenter(&'a DataCenter),
    Map(&'a BTreeMap<String, String>),
    Group(Vec<(&'static str, Node<'a>)>),
}

/// An instance in Eureka's element order, with its `actionType`.
pub(crate) fn instance_nodes(i: &Instance, action: Action) -> Vec<(&'static str, Node<'_>)> {
    let lease = &i.lease_info;
    vec![
        ("instanceId", Node::Text(&i.instance_id)),
        ("hostName", Node::Text(&i.host_name)),
        ("app", Node::Text(&i.app)),
        ("ipAddr", Node::Text(&i.ip_addr)),
        ("status", Node::Text(i.status.as_str())),
        ("overriddenstatus", Node::Text(i.overridden_status.as_str())),
        ("port", Node::Port(&i.port)),
        ("securePort", Node::Port(&i.secure_port)),
        ("countryId", Node::Int(i.country_id)),
        ("dataCenterInfo", Node::DataCenter(&i.data_center)),
        (
            "leaseInfo",
            Node::Group(vec![
                (
                    "renewalIntervalInSecs",
                    Node::Int(lease.renewal_interval_in_secs),
                ),
                ("durationInSecs", Node::Int(lease.duration_in_secs)),
                (
                    "registrationTimestamp",
                    Node::Int(lease.registration_timestamp),
                ),
                (
                    "lastRenewalTimestamp",
                    Node::Int(lease.last_renewal_timestamp),
                ),
                ("evictionTimestamp", Node::Int(lease.eviction_timestamp)),
                ("serviceUpTimestamp", Node::Int(lease.service_up_timestamp)),
            ]),
        ),
        ("metadata", Node::Map(&i.metadata)),
        ("homePageUrl", Node::Text(&i.home_page_url)),
        ("statusPageUrl", Node::Text(&i.status_page_url)),
        ("healthCheckUrl", Node::Text(&i.health_check_url)),
        (
            "secureHealthCheckUrl",
            Node::Text(&i.secure_health_check_url),
        ),
        ("vipAddress", Node::Text(&i.vip_address)),
        ("secureVipAddress", Node::Text(&i.secure_vip_address)),
        (
            "isCoordinatingDiscoveryServer",
            Node::Text(if i.is_coordinating_discovery_server {
                "true"
            } else {
                "false"
            }),
        ),
        (
            "lastUpdatedTimestamp",
            Node::IntText(i.last_updated_timestamp),
        ),
        ("lastDirtyTimestamp", Node::IntText(i.last_dirty_timestamp)),
        ("actionType", Node::Text(action.as_str())),
    ]
}
