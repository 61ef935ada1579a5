//! Tests of the route table: parsing, matching, filters, and the mistakes refused at start.

use super::*;

fn route(predicates: &str, filters: &str) -> RouteSpec {
    let text = format!(
        "[[routes]]\nid = 'r'\nuri = 'lb://shop'\npredicates = [{predicates}]\nfilters = [{filters}]"
    );
    parse(&text).expect("parses").pop().expect("one route")
}

/// Why a file of one route `r` with the lines `rest` is refused.
fn refused(rest: &str) -> String {
    let text = format!("[[routes]]\nid = 'r'\n{rest}");
    format!("{:#}", parse(&text).expect_err("refused"))
}

#[test]
fn path_patterns_match_segments() {
    let r = route("'Path=/shop/**,/item/{id}/*'", "");
    for yes in ["/shop", "/shop/", "/shop/a/b", "/item/7/x"] {
        assert!(r.matches_path(yes), "{yes}");
    }
    for no in ["/shopping", "/", "/item/7", "/item//x", "/item/7/x/y"] {
        assert!(!r.matches_path(no), "{no}");
    }
    assert_eq!(r.target, Target::Balanced("SHOP".into()));
    assert!(r.accepts(&Method::DELETE));
}

#[test]
fn filters_apply_in_order() {
    let r = route(
        "'Path=/a/**', 'Method=get,POST'",
        r"'StripPrefix=1', 'RewritePath=/v1/(?<rest>.*), /v2/$\{rest}'",
    );
    assert_eq!(r.rewrite("/a/v1/x/y"), "/v2/x/y");
    assert_eq!(r.rewrite("/a"), "/");
    assert!(r.accepts(&Method::GET) && !r.accepts(&Method::PUT));
}

#[test]
fn mistakes_are_named_at_start() {
    let cases = [
        (
            "uri = 'lb://x'\npredicates = ['Host=a']",
            "unknown predicate \"Host\"",
        ),
        ("uri = 'lb://x'", "needs a Path predicate"),
        (
            "uri = 'https://h:1'\npredicates = ['Path=/**']",
            "no TLS client",
        ),
        (
            "uri = 'http://h:1/p'\npredicates = ['Path=/**']",
            "no path or query",
        ),
        (
            "uri = 'lb://x'\npredicates = ['Path=/a*/b']",
            "a segment is a literal",
        ),
        (
            "uri = 'lb://x'\npredicates = ['Path=/**/b']",
            "a segment is a literal",
        ),
        (
            "uri = 'lb://x'\npredicates = ['Path=/a', 'Method=GTE']",
            "unknown method",
        ),
        (
            "uri = 'lb://x'\npredicates = ['Path=/a']\nfilters = ['RewritePath=(, /']",
            "regex",
        ),
        (
            "uri = 'lb://x'\npredicates = ['Path=/a']\nretries = -1",
            "retries",
        ),
        (
            "uri = 'lb://x'\npredicates = ['Path=/a']\ntimeout = 1",
            "unknown field",
        ),
        (
            "uri = 'lb://x'\npredicates = ['Path=/a']\nresponse-timeout-ms = 500",
            "exceeds",
        ),
    ];
    for (rest, expected) in cases {
        let message = refused(rest);
        assert!(message.contains(expected), "{rest}: {message}");
    }
    let twice = "uri = 'lb://x'\npredicates = ['Path=/a']\n[[routes]]\nid = 'r'\nuri = 'lb://y'";
    assert!(refused(twice).contains("two routes have the id"));
}

#[test]
fn settings_fall_back_to_defaults() {
    let text = "[defaults]\nretries = 3\nconnect-timeout-ms = 200\n[[routes]]\nid = 'r'\n\
                uri = 'http://127.0.0.1:9'\npredicates = ['Path=/**']\nretries = 0";
    let r = &parse(text).expect("parses")[0];
    assert_eq!(r.target, Target::Fixed("127.0.0.1:9".into()));
    assert_eq!(r.retries, 0);
    assert_eq!(r.connect_timeout, Duration::from_millis(200));
    assert_eq!(
        r.response_timeout,
        Duration::from_millis(DEFAULT_RESPONSE_TIMEOUT_MS)
    );
}
