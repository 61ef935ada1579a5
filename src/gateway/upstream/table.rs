//! The route table of `--routes`: a TOML file parsed and checked once at start into
//! [`RouteSpec`]s. Predicates and filters use Spring Cloud Gateway's shortcut notation
//! (`Path=/shop/**`, `Method=GET,POST`, `StripPrefix=1`, `RewritePath=REGEX, REPLACEMENT`).
//!
//! Pure data and matching, no IO but reading the file: `upstream.rs` owns the table and asks it
//! which route takes a request and what path to send; `forward.rs` sends it.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use regex::Regex;
use serde::Deserialize;
use warp::http::Method;

use super::RouteJson;

const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 1000;
const DEFAULT_RESPONSE_TIMEOUT_MS: u64 = 5000;
const DEFAULT_RETRIES: u32 = 1;

/// The methods a `Method` predicate may name.
const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::DELETE,
    Method::PATCH,
    Method::OPTIONS,
];

/// The file: `[defaults]` and `[[routes]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    #[serde(default)]
    defaults: Settings,
    #[serde(default)]
    routes: Vec<RouteEntry>,
}

/// Timeouts and retries: in `[defaults]`, and per route where a route overrides them.
#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Settings {
    connect_timeout_ms: Option<u64>,
    response_timeout_ms: Option<u64>,
    retries: Option<u32>,
}

impl Settings {
    /// These settings where set, `defaults` elsewhere.
    fn over(self, defaults: Settings) -> Settings {
        Settings {
            connect_timeout_ms: self.connect_timeout_ms.or(defaults.connect_timeout_ms),
            response_timeout_ms: self.response_timeout_ms.or(defaults.response_timeout_ms),
            retries: self.retries.or(defaults.retries),
        }
    }
}

/// One `[[routes]]` table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RouteEntry {
    id: String,
    uri: String,
    #[serde(default)]
    predicates: Vec<String>,
    #[serde(default)]
    filters: Vec<String>,
    connect_timeout_ms: Option<u64>,
    response_timeout_ms: Option<u64>,
    retries: Option<u32>,
}

/// Where a route sends its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `lb://APP`: round-robin over the UP instances of APP (upper case) in the registry.
    Balanced(String),
    /// `http://host:port`: always that authority.
    Fixed(String),
}

/// One path segment of a `Path` pattern.
#[derive(Debug)]
enum Segment {
    Literal(String),
    /// `*` or `{name}`: any one non-empty segment.
    One,
    /// `**` (last only): any rest of the path, none included.
    Rest,
}

#[derive(Debug)]
struct PathPattern(Vec<Segment>);

/// Changes the path before it is sent, in the order written.
#[derive(Debug)]
enum PathFilter {
    StripPrefix(usize),
    RewritePath { regex: Regex, replacement: String },
}

/// A checked route.
#[derive(Debug)]
pub struct RouteSpec {
    pub id: String,
    pub target: Target,
    uri: String,
    paths: Vec<PathPattern>,
    /// `None`: every method.
    methods: Option<Vec<Method>>,
    filters: Vec<PathFilter>,
    /// Bounds connecting to the upstream (a failure to connect is retried like any other).
    pub connect_timeout: Duration,
    /// Bounds waiting for the response's headers, from sending the request, connecting included.
    pub response_timeout: Duration,
    /// Further attempts, on the next instance, for a GET whose attempt failed.
    pub retries: u32,
    /// The predicates and filters as written, for the listing.
    predicate_text: Vec<String>,
    filter_text: Vec<String>,
}

/// Reads and checks the route file at `path`.
pub fn load(path: &Path) -> anyhow::Result<Vec<RouteSpec>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the route file {}", path.display()))?;
    parse(&text).with_context(|| format!("bad route file {}", path.display()))
}

/// Parses and checks a route file's text.
pub fn parse(text: &str) -> anyhow::Result<Vec<RouteSpec>> {
    let file: RouteFile = toml::from_str(text)?;
    let mut ids = HashSet::new();
    let mut routes = Vec::with_capacity(file.routes.len());
    for entry in file.routes {
        let id = entry.id.clone();
        ensure!(!id.trim().is_empty(), "a route has an empty id");
        ensure!(ids.insert(id.clone()), "two routes have the id {id:?}");
        routes.push(RouteSpec::new(entry, file.defaults).with_context(|| format!("route {id:?}"))?);
    }
    Ok(routes)
}

impl RouteSpec {
    fn new(entry: RouteEntry, defaults: Settings) -> anyhow::Result<RouteSpec> {
        let own = Settings {
            connect_timeout_ms: entry.connect_timeout_ms,
            response_timeout_ms: entry.response_timeout_ms,
            retries: entry.retries,
        };
        let settings = own.over(defaults);
        let millis = |ms: Option<u64>, default, name| -> anyhow::Result<Duration> {
            let ms = ms.unwrap_or(default);
            ensure!(ms > 0, "{name} must be above 0");
            Ok(Duration::from_millis(ms))
        };
        let mut route = RouteSpec {
            target: Target::parse(&entry.uri)?,
            id: entry.id,
            uri: entry.uri,
            paths: Vec::new(),
            methods: None,
            filters: Vec::new(),
            connect_timeout: millis(
                settings.connect_timeout_ms,
                DEFAULT_CONNECT_TIMEOUT_MS,
                "connect-timeout-ms",
            )?,
            response_timeout: millis(
                settings.response_timeout_ms,
                DEFAULT_RESPONSE_TIMEOUT_MS,
                "response-timeout-ms",
            )?,
            retries: settings.retries.unwrap_or(DEFAULT_RETRIES),
            predicate_text: entry.predicates.clone(),
            filter_text: entry.filters.clone(),
        };
        ensure!(
            route.connect_timeout <= route.response_timeout,
            "connect-timeout-ms exceeds response-timeout-ms (connecting is part of waiting for the response)"
        );
        for predicate in &entry.predicates {
            route
                .add_predicate(predicate)
                .with_context(|| format!("predicate {predicate:?}"))?;
        }
        ensure!(
            !route.paths.is_empty(),
            "a route needs a Path predicate (Path=/** takes every path)"
        );
        for filter in &entry.filters {
            route
                .filters
                .push(PathFilter::parse(filter).with_context(|| format!("filter {filter:?}"))?);
        }
        Ok(route)
    }

    fn add_predicate(&mut self, text: &str) -> anyhow::Result<()> {
        let (name, args) = shortcut(text)?;
        let list = args.split(',').map(str::trim).filter(|a| !a.is_empty());
        match name {
            "Path" => {
                ensure!(
                    self.paths.is_empty(),
                    "a route takes one Path predicate (list patterns with commas)"
                );
                self.paths = list
                    .map(PathPattern::parse)
                    .collect::<anyhow::Result<_>>()?;
                ensure!(!self.paths.is_empty(), "Path needs a pattern");
            }
            "Method" => {
                ensure!(
                    self.methods.is_none(),
                    "a route takes one Method predicate (list methods with commas)"
                );
                let methods = list
                    .map(|m| {
                        METHODS
                            .iter()
                            .find(|known| known.as_str().eq_ignore_ascii_case(m))
                            .cloned()
                            .with_context(|| format!("unknown method {m:?}"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                ensure!(!methods.is_empty(), "Method needs a method");
                self.methods = Some(methods);
            }
            other => bail!("unknown predicate {other:?} (known: Path, Method)"),
        }
        Ok(())
    }

    /// Whether one of the route's `Path` patterns matches `path` (without its query).
    pub fn matches_path(&self, path: &str) -> bool {
        self.paths.iter().any(|pattern| pattern.matches(path))
    }

    /// Whether the route's `Method` predicate, if any, lets `method` through.
    pub fn accepts(&self, method: &Method) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(method))
    }

    /// The methods the route's `Method` predicate names; `None` without one (every method).
    pub fn methods(&self) -> Option<&[Method]> {
        self.methods.as_deref()
    }

    /// The path to send upstream: `path` through the route's filters, in order.
    pub fn rewrite(&self, path: &str) -> String {
        self.filters
            .iter()
            .fold(path.to_owned(), |path, filter| filter.apply(&path))
    }

    /// The route as `GET /gateway/routes` lists it, with the `instances` it would send to now.
    pub fn describe(&self, instances: Vec<String>) -> RouteJson {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        RouteJson {
            id: self.id.clone(),
            uri: self.uri.clone(),
            predicates: self.predicate_text.clone(),
            filters: self.filter_text.clone(),
            connect_timeout_ms: millis(self.connect_timeout),
            response_timeout_ms: millis(self.response_timeout),
            retries: self.retries,
            instances,
        }
    }
}

/// Splits `Name=args`.
fn shortcut(text: &str) -> anyhow::Result<(&str, &str)> {
    let (name, args) = text
        .split_once('=')
        .context("expected Name=arguments, as in Path=/shop/**")?;
    Ok((name.trim(), args.trim()))
}

impl Target {
    fn parse(uri: &str) -> anyhow::Result<Target> {
        if let Some(app) = uri.strip_prefix("lb://") {
            let app = app.trim_end_matches('/');
            ensure!(
                !app.is_empty()
                    && app
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
                "uri {uri:?}: lb:// takes an application name (letters, digits, - _ .)"
            );
            return Ok(Target::Balanced(app.to_ascii_uppercase()));
        }
        let parsed: warp::http::Uri = uri.parse().with_context(|| format!("uri {uri:?}"))?;
        ensure!(
            parsed.scheme_str() == Some("http"),
            "uri {uri:?}: use lb://APP or http://host:port (no TLS client for https)"
        );
        ensure!(
            matches!(parsed.path(), "" | "/") && parsed.query().is_none(),
            "uri {uri:?}: a target has no path or query (filters change the path)"
        );
        let authority = parsed
            .authority()
            .filter(|a| !a.as_str().contains('@'))
            .with_context(|| format!("uri {uri:?}: needs host:port and nothing else"))?;
        Ok(Target::Fixed(match authority.port() {
            Some(_) => authority.to_string(),
            None => format!("{authority}:80"),
        }))
    }
}

impl PathPattern {
    fn parse(text: &str) -> anyhow::Result<PathPattern> {
        let rest = text
            .strip_prefix('/')
            .with_context(|| format!("path pattern {text:?} must start with /"))?;
        let segments: Vec<&str> = rest.split('/').collect();
        let last = segments.len() - 1;
        let segments = segments
            .iter()
            .enumerate()
            .map(|(i, segment)| match *segment {
                "**" if i == last => Ok(Segment::Rest),
                "*" => Ok(Segment::One),
                s if s.len() > 2 && s.starts_with('{') && s.ends_with('}') => Ok(Segment::One),
                s if s.contains(['*', '{', '}']) => {
                    bail!("path pattern {text:?}: a segment is a literal, *, {{name}} or (last) **")
                }
                s => Ok(Segment::Literal(s.to_owned())),
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(PathPattern(segments))
    }

    fn matches(&self, path: &str) -> bool {
        let mut parts = path.strip_prefix('/').unwrap_or(path).split('/');
        for segment in &self.0 {
            let ok = match segment {
                Segment::Rest => return true,
                Segment::One => parts.next().is_some_and(|p| !p.is_empty()),
                Segment::Literal(literal) => parts.next() == Some(literal.as_str()),
            };
            if !ok {
                return false;
            }
        }
        parts.next().is_none()
    }
}

impl PathFilter {
    fn parse(text: &str) -> anyhow::Result<PathFilter> {
        match shortcut(text)? {
            ("StripPrefix", n) => {
                let n: usize = n
                    .parse()
                    .context("StripPrefix takes a number of segments")?;
                ensure!(n > 0, "StripPrefix takes at least 1");
                Ok(PathFilter::StripPrefix(n))
            }
            ("RewritePath", args) => {
                let (regex, replacement) = args
                    .rsplit_once(',')
                    .context("RewritePath takes REGEX, REPLACEMENT")?;
                Ok(PathFilter::RewritePath {
                    regex: Regex::new(regex.trim()).context("RewritePath's regex")?,
                    // Spring's YAML escapes `${` as `$\{`; both mean a named group here.
                    replacement: replacement.trim().replace("$\\{", "${"),
                })
            }
            (other, _) => bail!("unknown filter {other:?} (known: StripPrefix, RewritePath)"),
        }
    }

    fn apply(&self, path: &str) -> String {
        let changed = match self {
            PathFilter::StripPrefix(n) => path
                .strip_prefix('/')
                .unwrap_or(path)
                .splitn(n + 1, '/')
                .nth(*n)
                .unwrap_or("")
                .to_owned(),
            PathFilter::RewritePath { regex, replacement } => {
                regex.replace_all(path, replacement.as_str()).into_owned()
            }
        };
        if changed.starts_with('/') {
            changed
        } else {
            format!("/{changed}")
        }
    }
}

#[cfg(test)]
mod tests;
