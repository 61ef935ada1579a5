//! The route table: every route the gateway and the registry serve, as (method, path template),
//! and from it the `Allow` header of a 405 ([`allowed_methods`]).
//!
//! It is written out, not read from the OpenAPI document, because the document is built from
//! the handlers, which all use `error.rs`: reading it here would make the error module depend on
//! every route. The OpenAPI tests check that the document lists exactly these routes.

/// Every route (the fault hook `/_test/panic` aside), in lower-case method and path template.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/product"),
    ("post", "/api/product"),
    ("get", "/api/product/{id}"),
    ("put", "/api/product/{id}"),
    ("delete", "/api/product/{id}"),
    ("get", "/api/inventory"),
    ("put", "/api/inventory/{skuCode}"),
    ("get", "/api/order"),
    ("post", "/api/order"),
    ("get", "/api/order/{orderNumber}"),
    ("post", "/api/order/{orderNumber}/cancel"),
    ("get", "/api/notifications"),
    ("get", "/api/notifications/stream"),
    ("get", "/health"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/metrics"),
    ("get", "/cluster"),
    ("post", "/cluster/leave"),
    ("get", "/console"),
    ("get", "/console/state"),
    ("get", "/gateway/routes"),
    ("get", "/openapi.json"),
    ("get", "/eureka/apps"),
    ("get", "/eureka/apps/delta"),
    ("get", "/eureka/apps/{appId}"),
    ("post", "/eureka/apps/{appId}"),
    ("get", "/eureka/apps/{appId}/{instanceId}"),
    ("put", "/eureka/apps/{appId}/{instanceId}"),
    ("delete", "/eureka/apps/{appId}/{instanceId}"),
    ("put", "/eureka/apps/{appId}/{instanceId}/status"),
    ("delete", "/eureka/apps/{appId}/{instanceId}/status"),
    ("put", "/eureka/apps/{appId}/{instanceId}/metadata"),
    ("get", "/eureka/instances/{instanceId}"),
    ("get", "/eureka/vips/{vipAddress}"),
    ("get", "/eureka/svips/{svipAddress}"),
    ("get", "/eureka/web"),
];

/// The `Allow` header for a request `path` whose method no route takes: the methods of every
/// path template it fits (`{name}` fits any segment). `None` for a path no route has.
pub fn allowed_methods(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let fits = |template: &str| {
        let parts: Vec<&str> = template.trim_matches('/').split('/').collect();
        parts.len() == segments.len()
            && parts.iter().zip(&segments).all(|(part, segment)| {
                part == segment || (part.starts_with('{') && !segment.is_empty())
            })
    };
    let methods: std::collections::BTreeSet<String> = (ROUTES.iter())
        .filter(|(_, template)| fits(template))
        .map(|(method, _)| method.to_ascii_uppercase())
        .collect();
    (!methods.is_empty()).then(|| methods.into_iter().collect::<Vec<_>>().join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_allows_the_methods_of_the_templates_it_fits() {
        let allowed = |path| allowed_methods(path).unwrap_or_default();
        assert_eq!(allowed("/api/product"), "GET, POST");
        assert_eq!(allowed("/api/product/42/"), "DELETE, GET, PUT");
        // "delta" is also an app name: register takes POST there.
        assert_eq!(allowed("/eureka/apps/delta"), "GET, POST");
        assert_eq!(allowed("/api/nothing/here"), "");
    }
}
