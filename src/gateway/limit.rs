//! Rate limiting: a token bucket per client IP (governor's keyed limiter), `--rate-limit`
//! requests a second with room for `--rate-burst` at once. The client is the peer address of
//! the connection or, with `--trust-forwarded-for` (behind a trusted proxy), the first address of
//! `X-Forwarded-For` ([`RateLimit::client`]). Clients whose address is unknown share one bucket.
//!
//! `filters::admit` asks [`RateLimit::check`] before authentication and before any route (all
//! but the [`EXEMPT`] ones). An admitted request gets an [`Allowance`] whose headers go on its
//! response; a refused one becomes [`Throttled`], which `error.rs` answers with 429.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use warp::http::{HeaderMap, HeaderValue};

/// The paths no rate limit applies to: health probes and metrics scrapes.
pub const EXEMPT: [&str; 4] = ["/health", "/health/live", "/health/ready", "/metrics"];

/// How often buckets that are full again (idle clients) are forgotten, so memory stays bounded.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

type Limiter = RateLimiter<
    Option<IpAddr>,
    DefaultKeyedStateStore<Option<IpAddr>>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// The per-client limiter of this node.
pub struct RateLimit {
    limiter: Arc<Limiter>,
    burst: u32,
    /// Whether the client is the first address of `X-Forwarded-For` (`--trust-forwarded-for`).
    trust_forwarded_for: bool,
}

/// A request let through, and what its client has left.
#[derive(Debug, Clone, Copy)]
pub struct Allowance {
    limit: u32,
    remaining: u32,
}

/// A request over its client's limit: answered 429.
#[derive(Debug, Clone, Copy)]
pub struct Throttled {
    allowance: Allowance,
    /// Whole seconds until the client's next request fits, at least 1.
    pub retry_after_secs: u64,
}

impl warp::reject::Reject for Throttled {}

impl RateLimit {
    /// A limiter of `per_second` requests a second, `burst` at once (the rate when absent),
    /// keyed on `X-Forwarded-For` when `trust_forwarded_for`. Starts a task that forgets idle
    /// clients; it ends when the limiter is dropped.
    pub fn start(
        per_second: NonZeroU32,
        burst: Option<NonZeroU32>,
        trust_forwarded_for: bool,
    ) -> RateLimit {
        let burst = burst.unwrap_or(per_second);
        let quota = Quota::per_second(per_second).allow_burst(burst);
        let limiter = Arc::new(RateLimiter::keyed(quota).with_middleware());
        tokio::spawn(sweep(Arc::downgrade(&limiter)));
        RateLimit {
            limiter,
            burst: burst.get(),
            trust_forwarded_for,
        }
    }

    /// The client of a request from `peer`: the first address of `X-Forwarded-For` when it is
    /// trusted and parses (with or without a port), otherwise the peer's.
    pub fn client(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        let forwarded = || {
            let first = headers
                .get("x-forwarded-for")?
                .to_str()
                .ok()?
                .split(',')
                .next()?;
            let first = first.trim();
            (first.parse::<IpAddr>().ok()).or_else(|| Some(first.parse::<SocketAddr>().ok()?.ip()))
        };
        (self.trust_forwarded_for.then(forwarded).flatten()).or(peer.map(|addr| addr.ip()))
    }

    /// Takes a token from the bucket of `client` (IPv4-mapped IPv6 counts as IPv4).
    pub fn check(&self, client: Option<IpAddr>) -> Result<Allowance, Throttled> {
        let key = client.map(|ip| ip.to_canonical());
        match self.limiter.check_key(&key) {
            Ok(snapshot) => Ok(Allowance {
                limit: self.burst,
                remaining: snapshot.remaining_burst_capacity(),
            }),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Err(Throttled {
                    allowance: Allowance {
                        limit: self.burst,
                        remaining: 0,
                    },
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                })
            }
        }
    }
}

async fn sweep(limiter: Weak<Limiter>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.tick().await; // the first tick is immediate
    loop {
        tick.tick().await;
        let Some(limiter) = limiter.upgrade() else {
            return;
        };
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}

impl Allowance {
    /// Sets `X-RateLimit-Limit` (the bucket size) and `X-RateLimit-Remaining`.
    pub fn stamp(&self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(self.remaining));
    }
}

impl Throttled {
    /// Sets `Retry-After` and the `X-RateLimit-*` headers of a 429.
    pub fn stamp(&self, headers: &mut HeaderMap) {
        self.allowance.stamp(headers);
        headers.insert("retry-after", HeaderValue::from(self.retry_after_secs));
    }
}
