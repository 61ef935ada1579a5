//! Configuration: the command line, with an environment-variable fallback for every flag.
//!
//! `main` parses it; `app::Node::build` consumes a [`ServeConfig`]. Tests build a `ServeConfig`
//! with [`ServeConfig::for_tests`], from the same clap definitions: every default is written
//! once, in the `#[arg]` attributes.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "agora",
    version,
    about = "An e-commerce backend of supervised actors"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command line with every environment fallback removed: only the arguments count.
    fn without_env() -> clap::Command {
        Cli::command().mut_subcommand("serve", |serve| serve.mut_args(|arg| arg.env(None)))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the shop: gateway, registry, entity actors, notifier and notification service.
    Serve(ServeConfig),
}

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address of the HTTP gateway (port 0 picks a free port).
    #[arg(long = "http", env = "AGORA_HTTP", default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,

    /// Directory of the node's sled database.
    #[arg(long = "data", env = "AGORA_DATA", default_value = "./agora-data")]
    pub data: PathBuf,

    /// Kafka bootstrap servers; when absent an embedded Kafka-protocol broker is started.
    #[arg(long = "kafka-brokers", env = "AGORA_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Topic the notifier produces to and the notification service consumes.
    #[arg(
        long = "topic",
        env = "AGORA_TOPIC",
        default_value = "notificationTopic"
    )]
    pub topic: String,

    /// Name of this node, as shown in the registry.
    #[arg(long = "node", env = "AGORA_NODE", default_value = "node1")]
    pub node: String,

    /// Lease of this node's own registrations in seconds: a node not heard from for this long
    /// is DOWN on its peers (a few seconds suits a cluster on one network).
    #[arg(long = "lease-secs", env = "AGORA_LEASE_SECS", default_value_t = 5)]
    pub lease_secs: u64,

    /// Seconds an entity actor may stay idle before it is passivated.
    #[arg(long = "idle-secs", env = "AGORA_IDLE_SECS", default_value_t = 120)]
    pub idle_secs: u64,
    /// Live entity actors of each kind allowed at once on this node; past it the least
    /// recently used one is passivated, so memory is bounded whatever the stream of new keys
    #[arg(
        long = "max-live-entities",
        env = "AGORA_MAX_LIVE_ENTITIES",
        default_value_t = 100_000,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_live_entities: u64,
    /// sled's page cache in MiB: with the live-entity limit, what bounds resident memory as
    /// new keys keep coming (sled's own default is 1024).
    #[arg(
        long = "cache-mb",
        env = "AGORA_CACHE_MB",
        default_value_t = crate::storage::DEFAULT_CACHE_MB,
        value_parser = clap::value_parser!(u64).range(16..)
    )]
    pub cache_mb: u64,

    /// Per-request timeout in milliseconds; past it the gateway answers 504.
    #[arg(
        long = "request-timeout-ms",
        env = "AGORA_REQUEST_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub request_timeout_ms: u64,

    /// Largest accepted request body in bytes; larger bodies get 413.
    #[arg(long = "max-body-bytes", env = "AGORA_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: u64,

    /// Restarts of one entity actor allowed within the restart window before it is escalated.
    #[arg(long = "max-restarts", env = "AGORA_MAX_RESTARTS", default_value_t = 5)]
    pub max_restarts: u32,

    /// The restart window in seconds.
    #[arg(
        long = "restart-window-secs",
        env = "AGORA_RESTART_WINDOW_SECS",
        default_value_t = 10
    )]
    pub restart_window_secs: u64,

    /// OpenTelemetry collector (OTLP/HTTP base URL, e.g. http://localhost:4318) to export the
    /// request spans to; no export when absent.
    #[arg(long = "otlp-endpoint", env = "AGORA_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// TOML file of gateway routes (`Path`/`Method` predicates, `StripPrefix`/`RewritePath`
    /// filters, `lb://APP` or `http://host:port` targets); checked at start.
    #[arg(long = "routes", env = "AGORA_ROUTES")]
    pub routes: Option<PathBuf>,

    /// Expose the test-only fault hook `POST /_test/panic/{kind}/{key}`. Never in production.
    #[arg(long = "fault-injection", env = "AGORA_FAULT_INJECTION", hide = true)]
    pub fault_injection: bool,

    #[command(flatten)]
    pub security: SecurityConfig,

    #[command(flatten)]
    pub cluster: ClusterConfig,
}

/// Clustering: off unless `--cluster` gives a node-to-node address.
#[derive(Debug, Clone, Args)]
pub struct ClusterConfig {
    /// Node-to-node listen address (ractor_cluster); without it the node runs alone.
    #[arg(long = "cluster", env = "AGORA_CLUSTER")]
    pub listen: Option<SocketAddr>,

    /// The host other nodes reach this one by (with the `--cluster` port); defaults to the
    /// `--cluster` IP, so set it when listening on 0.0.0.0 (containers).
    #[arg(long = "cluster-host", env = "AGORA_CLUSTER_HOST")]
    pub host: Option<String>,

    /// Seed nodes' cluster addresses; one reachable seed is enough to meet every node.
    #[arg(long = "join", env = "AGORA_JOIN", value_delimiter = ',')]
    pub join: Vec<String>,

    /// Reach node NAME at ADDR rather than at the address it advertises (through a NAT, a
    /// proxy, or a test's link that can be cut): `NAME=HOST:PORT`. With it, this node connects
    /// to each member itself and not to the addresses its peers list (ractor_cluster's isolated
    /// mode), so that every connection it makes goes where `--dial` says.
    #[arg(long = "dial", env = "AGORA_DIAL", value_delimiter = ',')]
    pub dial: Vec<DialSpec>,

    /// Shared secret of the cluster; a node with another cookie is refused.
    #[arg(long = "cookie", env = "AGORA_COOKIE", hide_env_values = true)]
    pub cookie: Option<Secret>,

    /// What this node runs: any of gateway, product, inventory, order, notification.
    #[arg(
        long = "roles",
        env = "AGORA_ROLES",
        value_delimiter = ',',
        default_value = "gateway,product,inventory,order,notification"
    )]
    pub roles: Vec<Role>,

    /// A static cluster: the nodes that own entity partitions, fixed for the cluster's life,
    /// each key on one node only (no replication): `NAME` (every entity role) or
    /// `NAME=ROLE+ROLE`. Without it, `--cluster` runs a replicated cluster whose members are
    /// the nodes that joined.
    #[arg(long = "members", env = "AGORA_MEMBERS", value_delimiter = ',')]
    pub members: Vec<MemberSpec>,

    /// Number of partitions keys are spread over (about ten per node); fixed for the cluster.
    #[arg(long = "partitions", env = "AGORA_PARTITIONS", default_value_t = 32)]
    pub partitions: u32,

    /// Replicas of each partition in a replicated cluster (capped by the number of members):
    /// 3 survives the loss of any one node.
    #[arg(long = "replicas", env = "AGORA_REPLICAS", default_value_t = 3)]
    pub replicas: usize,

    /// In a replicated cluster: a partition's state is snapshotted after this many log
    /// entries, and its log then compacted up to a tenth of them behind the snapshot (so logs
    /// stay bounded under load; a replica too far behind receives the snapshot).
    #[arg(
        long = "snapshot-logs",
        env = "AGORA_SNAPSHOT_LOGS",
        default_value_t = 5000
    )]
    pub snapshot_logs: u64,

    /// In a replicated cluster: how long a member may be unreachable before the others
    /// remove it and rebuild its replicas on the remaining members, in seconds. Five minutes:
    /// longer than a restart or an upgrade takes, as rebuilding copies every partition the
    /// member held; a node that comes back later rejoins as a new member.
    #[arg(
        long = "replace-after",
        env = "AGORA_REPLACE_AFTER_SECS",
        default_value_t = 300
    )]
    pub replace_after_secs: u64,

    /// Timeout of one call to another node, in milliseconds: how long a request for a key
    /// whose owner froze waits before it answers 503 (a second, as a client expects of an
    /// unavailable partition).
    #[arg(
        long = "remote-timeout-ms",
        env = "AGORA_REMOTE_TIMEOUT_MS",
        default_value_t = 1000
    )]
    pub remote_timeout_ms: u64,
}

impl ClusterConfig {
    /// Whether this node is in a replicated cluster: `--cluster` without `--members`.
    pub fn is_replicated(&self) -> bool {
        self.listen.is_some() && self.members.is_empty()
    }
}

/// One part of the shop a node can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Role {
    Gateway,
    Product,
    Inventory,
    Order,
    Notification,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Gateway,
        Role::Product,
        Role::Inventory,
        Role::Order,
        Role::Notification,
    ];
    /// The roles that own entities, and so partitions.
    pub const ENTITIES: [Role; 3] = [Role::Product, Role::Inventory, Role::Order];
}

/// A member of the cluster and the entity roles it owns partitions for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSpec {
    pub name: String,
    /// Only entity roles; never empty.
    pub roles: Vec<Role>,
}

impl FromStr for MemberSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<MemberSpec, String> {
        let (name, roles) = match s.split_once('=') {
            Some((name, roles)) => {
                let roles = roles
                    .split('+')
                    .map(|r| <Role as clap::ValueEnum>::from_str(r.trim(), true))
                    .collect::<Result<Vec<Role>, String>>()?;
                (name, roles)
            }
            None => (s, Role::ENTITIES.to_vec()),
        };
        let roles: Vec<Role> = roles
            .into_iter()
            .filter(|r| Role::ENTITIES.contains(r))
            .collect();
        let name = name.trim();
        if name.is_empty() || roles.is_empty() {
            return Err(format!(
                "member {s:?}: give NAME or NAME=ROLE+ROLE with product, inventory or order"
            ));
        }
        Ok(MemberSpec {
            name: name.to_owned(),
            roles,
        })
    }
}

/// One `--dial NAME=HOST:PORT`: where this node reaches the node named NAME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialSpec {
    pub name: String,
    pub addr: String,
}

impl FromStr for DialSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<DialSpec, String> {
        match s.split_once('=') {
            Some((name, addr)) if !name.trim().is_empty() && addr.contains(':') => Ok(DialSpec {
                name: name.trim().to_owned(),
                addr: addr.trim().to_owned(),
            }),
            _ => Err(format!("dial {s:?}: give NAME=HOST:PORT")),
        }
    }
}

/// Who may call the gateway, and how often. Everything is off by default: no option, no check.
#[derive(Debug, Clone, Default, Args)]
pub struct SecurityConfig {
    /// HS256 secret: every /api route then needs a bearer JWT signed with it.
    #[arg(
        long = "auth-jwt-secret",
        env = "AGORA_AUTH_JWT_SECRET",
        hide_env_values = true,
        conflicts_with = "auth_jwt_public_key"
    )]
    pub auth_jwt_secret: Option<Secret>,

    /// RS256 public key (PEM file): every /api route then needs a bearer JWT signed by its pair.
    #[arg(long = "auth-jwt-public-key", env = "AGORA_AUTH_JWT_PUBLIC_KEY")]
    pub auth_jwt_public_key: Option<PathBuf>,

    /// The `iss` a token must carry (checked only when set).
    #[arg(long = "auth-jwt-issuer", env = "AGORA_AUTH_JWT_ISSUER")]
    pub auth_jwt_issuer: Option<String>,

    /// The `aud` a token must carry (checked only when set).
    #[arg(long = "auth-jwt-audience", env = "AGORA_AUTH_JWT_AUDIENCE")]
    pub auth_jwt_audience: Option<String>,

    /// User for writes to /eureka (HTTP basic auth); reads stay open.
    #[arg(
        long = "registry-user",
        env = "AGORA_REGISTRY_USER",
        requires = "registry_password"
    )]
    pub registry_user: Option<String>,

    /// Password for writes to /eureka.
    #[arg(
        long = "registry-password",
        env = "AGORA_REGISTRY_PASSWORD",
        hide_env_values = true,
        requires = "registry_user"
    )]
    pub registry_password: Option<Secret>,

    /// Requests per second allowed per client IP (token bucket); off when absent.
    #[arg(long = "rate-limit", env = "AGORA_RATE_LIMIT")]
    pub rate_limit: Option<NonZeroU32>,

    /// Bucket size: requests a client may send at once (defaults to the rate).
    #[arg(long = "rate-burst", env = "AGORA_RATE_BURST", requires = "rate_limit")]
    pub rate_burst: Option<NonZeroU32>,

    /// Key the rate limit on the first address of X-Forwarded-For (the peer's address when it
    /// is absent or unparsable). Only behind a trusted proxy: clients can write the header.
    #[arg(long = "trust-forwarded-for", env = "AGORA_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
}

/// A secret from the command line or the environment; `Debug` does not show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl ServeConfig {
    /// A configuration for tests: clap's defaults but for a free port, the given data
    /// directory, a 90 s lease (no peer expires mid-test) and the fault hook on. It reads no
    /// `AGORA_*` variable (the environment fallbacks are taken off its clap command), so a
    /// developer's environment cannot change a test.
    pub fn for_tests(data: PathBuf) -> ServeConfig {
        let options = "agora serve --http 127.0.0.1:0 --lease-secs 90 --fault-injection --data";
        let args = options.split(' ').map(OsString::from).chain([data.into()]);
        let matches = Cli::without_env()
            .try_get_matches_from(args)
            .expect("valid test arguments");
        let Cli {
            command: Command::Serve(config),
        } = Cli::from_arg_matches(&matches).expect("a serve configuration");
        config
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs.max(1))
    }

    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.idle_secs.max(1))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.max(1))
    }

    pub fn remote_timeout(&self) -> Duration {
        Duration::from_millis(self.cluster.remote_timeout_ms.max(1))
    }

    /// Whether this node runs `role`.
    pub fn runs(&self, role: Role) -> bool {
        self.cluster.roles.contains(&role)
    }

    pub fn restart_window(&self) -> Duration {
        Duration::from_secs(self.restart_window_secs.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_configuration_reads_no_environment_variable() {
        let command = Cli::without_env();
        let serve = command.find_subcommand("serve").expect("serve");
        let read = serve.get_arguments().filter_map(|a| a.get_env());
        assert_eq!(read.count(), 0);
        let with_env = Cli::command();
        let serve = with_env.find_subcommand("serve").expect("serve");
        assert!(serve.get_arguments().any(|a| a.get_env().is_some()));
    }

    #[test]
    fn the_test_configuration_keeps_the_defaults_it_does_not_set() {
        let config = ServeConfig::for_tests("d".into());
        assert_eq!(config.http.port(), 0);
        assert_eq!(config.data, PathBuf::from("d"));
        assert_eq!(config.lease_secs, 90);
        assert!(config.fault_injection);
        assert_eq!(config.cluster.roles, Role::ALL);
        assert!(config.cluster.listen.is_none() && config.security.auth_jwt_secret.is_none());
    }
}
