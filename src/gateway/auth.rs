//! Authentication: who may call what. Owns the JWT check for `/api` (bearer tokens, HS256 with a
//! shared secret or RS256 with a public key, as the original's OAuth2 resource server did) and
//! the HTTP basic check for writes to `/eureka` (the original's eureka/password).
//!
//! Built once at start from [`SecurityConfig`] (the key is loaded then); `filters::admit` asks
//! [`Auth::check`] before any route runs, and a refusal becomes [`AuthFailure`], which
//! `error.rs` turns into a 401 with its `WWW-Authenticate` challenge. The console (`/console`)
//! takes either credential. `/health`, `/metrics` and reads of `/eureka` stay open.

use anyhow::{bail, Context};
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use warp::http::{HeaderMap, HeaderValue, Method};

use crate::config::{Secret, SecurityConfig};

/// An HS256 secret shorter than this is accepted, with a warning (RFC 7518 §3.2).
const MIN_SECRET_BYTES: usize = 32;

/// Tolerated clock skew for `exp` and `nbf`, as Spring's default.
const LEEWAY_SECS: u64 = 60;

/// The checks this node makes, fixed at start.
pub struct Auth {
    bearer: Option<Bearer>,
    registry: Option<BasicCredentials>,
    /// SHA-256 of the cluster cookie: the password of writes to `/cluster` (any user).
    cluster: Option<[u8; 32]>,
}

/// What a bearer token must satisfy.
struct Bearer {
    key: DecodingKey,
    validation: Validation,
}

/// The registry's user and password, kept only as a SHA-256 of `user:password` so a comparison
/// takes the same time whatever the input's length or content.
struct BasicCredentials {
    digest: [u8; 32],
}

/// Which scheme a refused request must use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer`, with `error="invalid_token"` when a token was sent but refused (RFC 6750).
    Bearer {
        token_sent: bool,
    },
    Basic,
    /// Basic credentials whose password is the cluster cookie.
    Cluster,
}

/// Why a request was refused: answered 401.
#[derive(Debug, Clone)]
pub struct AuthFailure {
    pub challenge: Challenge,
    pub reason: &'static str,
}

impl warp::reject::Reject for AuthFailure {}

impl AuthFailure {
    /// The `WWW-Authenticate` value.
    pub fn www_authenticate(&self) -> HeaderValue {
        HeaderValue::from_static(match self.challenge {
            Challenge::Bearer { token_sent: false } => "Bearer",
            Challenge::Bearer { token_sent: true } => "Bearer error=\"invalid_token\"",
            Challenge::Basic => "Basic realm=\"eureka\"",
            Challenge::Cluster => "Basic realm=\"agora cluster\"",
        })
    }
}

impl Auth {
    /// Builds the checks `config` asks for; reads and parses the public key file now.
    pub fn from_config(config: &SecurityConfig) -> anyhow::Result<Auth> {
        let bearer = match (&config.auth_jwt_secret, &config.auth_jwt_public_key) {
            (Some(secret), _) => {
                if secret.expose().len() < MIN_SECRET_BYTES {
                    tracing::warn!(
                        "the JWT secret is shorter than {MIN_SECRET_BYTES} bytes: easy to guess"
                    );
                }
                let key = DecodingKey::from_secret(secret.expose().as_bytes());
                Some(Bearer::new(key, Algorithm::HS256, config))
            }
            (None, Some(path)) => {
                let pem = std::fs::read(path).with_context(|| {
                    format!("cannot read the JWT public key file {}", path.display())
                })?;
                if String::from_utf8_lossy(&pem).contains("PRIVATE KEY") {
                    bail!(
                        "{} holds a private key; give agora the public key (openssl pkey -pubout)",
                        path.display()
                    );
                }
                let key = DecodingKey::from_rsa_pem(&pem).with_context(|| {
                    format!("{} is not an RSA public key in PEM", path.display())
                })?;
                Some(Bearer::new(key, Algorithm::RS256, config))
            }
            (None, None) => {
                tracing::warn!(
                    "the API is unauthenticated: anyone can call /api (set --auth-jwt-secret \
                     or --auth-jwt-public-key)"
                );
                None
            }
        };
        let registry = match (&config.registry_user, &config.registry_password) {
            (Some(user), _) if user.contains(':') => {
                bail!("the registry user cannot contain ':' (HTTP basic auth splits there)")
            }
            (Some(user), Some(password)) => Some(BasicCredentials {
                digest: digest(format!("{user}:{}", password.expose()).as_bytes()),
            }),
            _ => None,
        };
        Ok(Auth {
            bearer,
            registry,
            cluster: None,
        })
    }

    /// The same checks, and writes to `/cluster` (a node leaving) only with `cookie` as the
    /// basic password.
    pub fn with_cluster_cookie(self, cookie: Option<&Secret>) -> Auth {
        let cluster = cookie.map(|c| digest(c.expose().as_bytes()));
        Auth { cluster, ..self }
    }

    /// Whether a request may go on to its route. `path` is the request's path.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<(), AuthFailure> {
        if method == Method::OPTIONS {
            return Ok(()); // CORS preflights carry no credentials
        }
        let first = path.split('/').find(|segment| !segment.is_empty());
        match (first, &self.bearer, &self.registry) {
            (Some("api"), Some(bearer), _) => bearer.check(headers),
            (Some("eureka"), _, Some(registry)) if !is_read(method) => registry.check(headers),
            (Some("console"), bearer, registry) => console_check(bearer, registry, headers),
            (Some("cluster"), _, _) if !is_read(method) => match &self.cluster {
                Some(cookie) => cookie_check(cookie, headers),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// The console takes either credential that is configured: the registry's user (what a
/// browser sends after its basic-auth prompt) or a bearer token; it is open when neither is.
/// A refusal asks for basic credentials when they would do, so a browser prompts for them.
fn console_check(
    bearer: &Option<Bearer>,
    registry: &Option<BasicCredentials>,
    headers: &HeaderMap,
) -> Result<(), AuthFailure> {
    let basic = registry.as_ref().map(|r| r.check(headers));
    let token = bearer.as_ref().map(|b| b.check(headers));
    match (basic, token) {
        (None, None) | (Some(Ok(())), _) | (_, Some(Ok(()))) => Ok(()),
        (Some(Err(refused)), _) => Err(refused),
        (None, Some(Err(refused))) => Err(refused),
    }
}

/// Basic credentials whose password is the cluster cookie, whatever the user.
fn cookie_check(cookie: &[u8; 32], headers: &HeaderMap) -> Result<(), AuthFailure> {
    let refuse = |reason| AuthFailure {
        challenge: Challenge::Cluster,
        reason,
    };
    let encoded = credentials(headers, "Basic").ok_or_else(|| {
        refuse("cluster operations need the cluster cookie as the basic password")
    })?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| refuse("the basic credentials are not base64"))?;
    let password = decoded.splitn(2, |b| *b == b':').nth(1).unwrap_or_default();
    match bool::from(digest(password).ct_eq(cookie)) {
        true => Ok(()),
        false => Err(refuse("wrong cluster cookie")),
    }
}

fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The credentials of `scheme` in the `Authorization` header, if any.
fn credentials<'h>(headers: &'h HeaderMap, scheme: &str) -> Option<&'h str> {
    let value = headers.get("authorization")?.to_str().ok()?.trim();
    let (given, rest) = value.split_once(' ')?;
    given.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Bearer {
    fn new(key: DecodingKey, algorithm: Algorithm, config: &SecurityConfig) -> Bearer {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        let mut required = vec!["exp"];
        if let Some(issuer) = &config.auth_jwt_issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &config.auth_jwt_audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // As Spring: a token's audience matters only when one is configured.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Bearer { key, validation }
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), AuthFailure> {
        let refuse = |token_sent, reason| AuthFailure {
            challenge: Challenge::Bearer { token_sent },
            reason,
        };
        let token = credentials(headers, "Bearer")
            .ok_or_else(|| refuse(false, "a bearer token is required"))?;
        let decoded = jsonwebtoken::decode::<serde_json::Value>(token, &self.key, &self.validation);
        decoded.map(drop).map_err(|e| {
            let reason = match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet",
                ErrorKind::InvalidIssuer => "the token's issuer is not accepted",
                ErrorKind::InvalidAudience => "the token's audience is not accepted",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted",
                ErrorKind::InvalidSignature => "the token's signature is invalid",
                _ => "the token is malformed",
            };
            tracing::debug!(error = %e, "bearer token refused");
            refuse(true, reason)
        })
    }
}

impl BasicCredentials {
    fn check(&self, headers: &HeaderMap) -> Result<(), AuthFailure> {
        let refuse = |reason| AuthFailure {
            challenge: Challenge::Basic,
            reason,
        };
        let encoded = credentials(headers, "Basic")
            .ok_or_else(|| refuse("registry writes need HTTP basic credentials"))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| refuse("the basic credentials are not base64"))?;
        if bool::from(digest(&decoded).ct_eq(&self.digest)) {
            Ok(())
        } else {
            Err(refuse("wrong registry user or password"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let config = SecurityConfig {
            auth_jwt_secret: Some("s".repeat(MIN_SECRET_BYTES).parse().unwrap()),
            registry_user: Some("eureka".into()),
            registry_password: Some("password".parse().unwrap()),
            ..SecurityConfig::default()
        };
        Auth::from_config(&config).unwrap()
    }

    fn challenge(method: Method, path: &str, authorization: Option<&str>) -> Option<Challenge> {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert("authorization", HeaderValue::from_str(value).unwrap());
        }
        auth()
            .check(&method, path, &headers)
            .err()
            .map(|f| f.challenge)
    }

    #[test]
    fn paths_are_classified_whatever_their_slashes() {
        let bearer = Some(Challenge::Bearer { token_sent: false });
        for path in ["/api", "/api/product", "//api/product", "/api/"] {
            assert_eq!(challenge(Method::GET, path, None), bearer, "{path}");
        }
        for path in ["/health", "/metrics", "/apiary", "/", "/eureka/apps"] {
            assert_eq!(challenge(Method::GET, path, None), None, "{path}");
        }
        assert_eq!(challenge(Method::OPTIONS, "/api/product", None), None);
        assert_eq!(challenge(Method::HEAD, "/eureka/apps", None), None);
        let basic = Some(Challenge::Basic);
        for method in [Method::POST, Method::PUT, Method::DELETE] {
            assert_eq!(challenge(method, "/eureka/apps/X", None), basic);
        }
    }

    #[test]
    fn basic_credentials_must_match_exactly() {
        let basic = |pair: &str| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            challenge(
                Method::POST,
                "/eureka/apps/X",
                Some(&format!("basic {encoded}")),
            )
        };
        assert_eq!(basic("eureka:password"), None, "scheme is case-insensitive");
        for wrong in [
            "eureka:passwor",
            "eureka:password ",
            "eurek:password",
            "eureka",
        ] {
            assert_eq!(basic(wrong), Some(Challenge::Basic), "{wrong}");
        }
        let bearer = Some(Challenge::Bearer { token_sent: false });
        assert_eq!(challenge(Method::GET, "/api", Some("Basic eA==")), bearer);
    }

    #[test]
    fn the_console_takes_either_credential() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("eureka:password");
        let basic = format!("Basic {encoded}");
        assert_eq!(challenge(Method::GET, "/console", Some(&basic)), None);
        assert_eq!(challenge(Method::GET, "/console/state", Some(&basic)), None);
        let refused = Some(Challenge::Basic);
        assert_eq!(challenge(Method::GET, "/console", None), refused);
        assert_eq!(
            challenge(Method::GET, "/console/state", Some("Basic eA==")),
            refused
        );
        let open = Auth::from_config(&SecurityConfig::default()).unwrap();
        assert!(open
            .check(&Method::GET, "/console", &HeaderMap::new())
            .is_ok());
    }
}
