//! JWT bearer tokens from identity providers (OIDC issuers), with keys given statically.
//!
//! - Each issuer names its `iss`, the audiences it accepts, and its keys; **each key is
//!   bound to one algorithm** (RS256, ES256, EdDSA, HS256, ...). A token is checked only
//!   with a key of its issuer whose algorithm equals the token's `alg` (and whose `kid`
//!   matches, when the token names one): `alg: none`, or an HS256 token made with an RSA
//!   public key as its secret, find no key.
//! - `iss`, `aud`, `exp` and `sub` are required; `exp` and `nbf` are checked with the
//!   issuer's leeway (default 30 s). Claims of the wrong type are refused.
//! - Claims map to the [`Principal`] ([`ClaimMap`]): subject, tenant, team, tier, scopes
//!   (a space-separated string or a list), models.
//! - **Delegation** (RFC 8693 `act`): a token whose `sub` is a person and whose `act.sub`
//!   names an agent yields `subject` = the person and `agent` = the agent. When `act`
//!   carries its own `scope`, those are the agent's scopes, and each must be one the
//!   person holds: an agent never gains a scope its person lacks.
//! - A verified token is cached (by its SHA-256) until its `exp`, so a repeated token costs
//!   a hash and a lookup, not a signature check.

use ai_core::{AllowedModels, Principal};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use jsonwebtoken::Algorithm as JwtAlgorithm;

/// Longest token accepted (a larger one is refused before any decoding).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Longest a verified token is remembered, whatever its `exp` (seconds).
const MAX_CACHE_SECS: u64 = 300;

/// Default number of verified tokens kept in the cache.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// Where each part of the [`Principal`] comes from in the token's claims (also the
/// `[auth.issuers.claims]` table of the example gateway's configuration).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimMap {
    /// The subject claim. Default `sub`.
    pub subject: String,
    /// The tenant claim. Default `tenant_id`.
    pub tenant: Option<String>,
    /// The team claim. Default none.
    pub team: Option<String>,
    /// The tier claim. Default none.
    pub tier: Option<String>,
    /// The scopes claim: a space-separated string or a list of strings. Default `scope`.
    pub scopes: Option<String>,
    /// The allowed-models claim (a list). Default none: every model.
    pub models: Option<String>,
}

impl Default for ClaimMap {
    fn default() -> Self {
        ClaimMap {
            subject: "sub".to_owned(),
            tenant: Some("tenant_id".to_owned()),
            team: None,
            tier: None,
            scopes: Some("scope".to_owned()),
            models: None,
        }
    }
}

#[derive(Clone)]
struct IssuerKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

type HttpsClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    http_body_util::Empty<bytes::Bytes>,
>;

/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The keys an issuer publishes at a JWKS URL: fetched on first use, cached, fetched again
/// when they expire or a token names a key id not among them, at most once per
/// `min_refresh_interval` (so a flood of made-up `kid`s cannot hammer the identity
/// provider). Symmetric (`oct`) keys from a URL are never used.
pub struct Jwks {
    url: http::Uri,
    client: HttpsClient,
    algorithms: Vec<Algorithm>,
    keys: std::sync::RwLock<(Arc<Vec<IssuerKey>>, Option<std::time::Instant>)>,
    last_fetch: tokio::sync::Mutex<Option<std::time::Instant>>,
    ttl: Duration,
    min_refresh_interval: Duration,
    fetches: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwks")
            .field("url", &self.url)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

/// The algorithm a published key is for: its `alg`, else what its type implies.
fn jwk_algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    use jsonwebtoken::jwk::{AlgorithmParameters as P, EllipticCurve as C, KeyAlgorithm as K};
    if let Some(ka) = &jwk.common.key_algorithm {
        return Some(match ka {
            K::RS256 => Algorithm::RS256,
            K::RS384 => Algorithm::RS384,
            K::RS512 => Algorithm::RS512,
            K::PS256 => Algorithm::PS256,
            K::PS384 => Algorithm::PS384,
            K::PS512 => Algorithm::PS512,
            K::ES256 => Algorithm::ES256,
            K::ES384 => Algorithm::ES384,
            K::EdDSA => Algorithm::EdDSA,
            _ => return None,
        });
    }
    match &jwk.algorithm {
        P::RSA(_) => Some(Algorithm::RS256),
        P::EllipticCurve(ec) => match ec.curve {
            C::P256 => Some(Algorithm::ES256),
            C::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        P::OctetKeyPair(_) => Some(Algorithm::EdDSA),
        P::OctetKey(_) => None,
    }
}

impl Jwks {
    /// Keys from `url` (https, or http for a local identity provider), used only for the
    /// `algorithms` listed (never HMAC).
    pub fn new(url: &str, algorithms: &[Algorithm]) -> Result<Self, crate::KeyError> {
        let url: http::Uri = url
            .parse()
            .map_err(|_| crate::KeyError(format!("invalid jwks url: {url}")))?;
        let Some(host) = url.host() else {
            return Err(crate::KeyError("the jwks url needs a host".into()));
        };
        let loopback = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if url.scheme_str() != Some("https") && !loopback {
            return Err(crate::KeyError(
                "the jwks url must be https (plain http only for a loopback address)".into(),
            ));
        }
        if algorithms
            .iter()
            .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
        {
            return Err(crate::KeyError(
                "keys from a jwks url are never used for HMAC".into(),
            ));
        }
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| crate::KeyError(format!("tls setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https);
        Ok(Jwks {
            url,
            client,
            algorithms: algorithms.to_vec(),
            keys: std::sync::RwLock::new((Arc::new(Vec::new()), None)),
            last_fetch: tokio::sync::Mutex::new(None),
            ttl: Duration::from_secs(300),
            min_refresh_interval: Duration::from_secs(30),
            fetches: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How long fetched keys are used before they are fetched again. Default 5 minutes.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Least time between two fetches, whatever asks for them. Default 30 seconds.
    pub fn min_refresh_interval(mut self, d: Duration) -> Self {
        self.min_refresh_interval = d;
        self
    }

    /// How many times the document was fetched (for tests and metrics).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The keys in force, and whether they are stale (never fetched, or expired).
    fn snapshot(&self) -> (Arc<Vec<IssuerKey>>, bool) {
        let g = match self.keys.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let stale = g.1.is_none_or(|until| std::time::Instant::now() >= until);
        (g.0.clone(), stale)
    }

    /// Fetches the document again unless a fetch happened within the minimum interval.
    async fn refresh(&self) {
        // A fetch already under way: do not queue behind it (the keys in force are used).
        let Ok(mut last) = self.last_fetch.try_lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed() < self.min_refresh_interval) {
            return;
        }
        *last = Some(std::time::Instant::now());
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.fetch().await {
            Ok(keys) => {
                tracing::debug!(url = %self.url, keys = keys.len(), "jwks fetched");
                let until = std::time::Instant::now() + self.ttl;
                match self.keys.write() {
                    Ok(mut g) => *g = (Arc::new(keys), Some(until)),
                    Err(p) => *p.into_inner() = (Arc::new(keys), Some(until)),
                }
            }
            // The keys already in force stay; the next refresh is after the interval.
            Err(e) => tracing::warn!(url = %self.url, error = %e, "jwks fetch failed"),
        }
    }

    async fn fetch(&self) -> Result<Vec<IssuerKey>, String> {
        use http_body_util::BodyExt;
        let req = http::Request::get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(http_body_util::Empty::new())
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("http {}", resp.status().as_u16()));
        }
        let body = tokio::time::timeout(
            Duration::from_secs(10),
            http_body_util::Limited::new(resp.into_body(), MAX_JWKS_BYTES).collect(),
        )
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?
        .to_bytes();
        #[derive(Deserialize)]
        struct Doc {
            keys: Vec<Value>,
        }
        let doc: Doc =
            serde_json::from_slice(&body).map_err(|e| format!("not a jwks document: {e}"))?;
        // Each key on its own: one of a kind we do not use does not spoil the others.
        let set: Vec<jsonwebtoken::jwk::Jwk> = doc
            .keys
            .into_iter()
            .filter(|k| k.get("use").and_then(Value::as_str) != Some("enc"))
            .filter_map(|k| serde_json::from_value(k).ok())
            .collect();
        Ok(set
            .iter()
            .filter_map(|jwk| {
                let alg = jwk_algorithm(jwk).filter(|a| self.algorithms.contains(a))?;
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some(IssuerKey {
                    kid: jwk.common.key_id.clone(),
                    alg,
                    key,
                })
            })
            .collect())
    }
}

/// One trusted token issuer. See the [module docs](self).
pub struct JwtIssuer {
    issuer: String,
    audiences: Vec<String>,
    keys: Vec<IssuerKey>,
    jwks: Option<Arc<Jwks>>,
    leeway: Duration,
    claims: ClaimMap,
}

impl fmt::Debug for JwtIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtIssuer")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field(
                "keys",
                &self
                    .keys
                    .iter()
                    .map(|k| (k.kid.clone(), k.alg))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn key_error(what: &str, e: jsonwebtoken::errors::Error) -> crate::KeyError {
    crate::KeyError(format!("{what}: {e}"))
}

impl JwtIssuer {
    /// An issuer with this `iss` accepting tokens for any of `audiences`. Add keys with
    /// the `*_key` methods; a token is accepted only with one of them.
    pub fn new(issuer: impl Into<String>, audiences: &[&str]) -> Self {
        JwtIssuer {
            issuer: issuer.into(),
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            keys: Vec::new(),
            jwks: None,
            leeway: Duration::from_secs(30),
            claims: ClaimMap::default(),
        }
    }

    /// An RSA public key (PEM) for `alg` (RS256/384/512, PS256/384/512).
    pub fn rsa_key(
        mut self,
        kid: Option<&str>,
        alg: Algorithm,
        pem: &[u8],
    ) -> Result<Self, crate::KeyError> {
        if !matches!(
            alg,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ) {
            return Err(crate::KeyError(format!("{alg:?} is not an RSA algorithm")));
        }
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| key_error("rsa key", e))?;
        self.keys.push(IssuerKey {
            kid: kid.map(str::to_owned),
            alg,
            key,
        });
        Ok(self)
    }

    /// An EC public key (PEM) for ES256 or ES384.
    pub fn ec_key(
        mut self,
        kid: Option<&str>,
        alg: Algorithm,
        pem: &[u8],
    ) -> Result<Self, crate::KeyError> {
        if !matches!(alg, Algorithm::ES256 | Algorithm::ES384) {
            return Err(crate::KeyError(format!("{alg:?} is not an EC algorithm")));
        }
        let key = DecodingKey::from_ec_pem(pem).map_err(|e| key_error("ec key", e))?;
        self.keys.push(IssuerKey {
            kid: kid.map(str::to_owned),
            alg,
            key,
        });
        Ok(self)
    }

    /// An Ed25519 public key (PEM), for EdDSA.
    pub fn ed_key(mut self, kid: Option<&str>, pem: &[u8]) -> Result<Self, crate::KeyError> {
        let key = DecodingKey::from_ed_pem(pem).map_err(|e| key_error("ed25519 key", e))?;
        self.keys.push(IssuerKey {
            kid: kid.map(str::to_owned),
            alg: Algorithm::EdDSA,
            key,
        });
        Ok(self)
    }

    /// A shared secret for HS256 (at least 32 bytes).
    pub fn hs256_secret(
        mut self,
        kid: Option<&str>,
        secret: &[u8],
    ) -> Result<Self, crate::KeyError> {
        if secret.len() < 32 {
            return Err(crate::KeyError(
                "an HS256 secret must be at least 32 bytes".into(),
            ));
        }
        self.keys.push(IssuerKey {
            kid: kid.map(str::to_owned),
            alg: Algorithm::HS256,
            key: DecodingKey::from_secret(secret),
        });
        Ok(self)
    }

    /// Keys published at a JWKS URL (see [`Jwks`]), besides any static ones.
    pub fn jwks(mut self, jwks: Jwks) -> Self {
        self.jwks = Some(Arc::new(jwks));
        self
    }

    /// The JWKS source, if any.
    pub fn jwks_source(&self) -> Option<&Jwks> {
        self.jwks.as_deref()
    }

    /// Clock skew allowed on `exp` and `nbf`. Default 30 seconds.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Where the principal comes from in the claims. Default [`ClaimMap::default`].
    pub fn claims(mut self, claims: ClaimMap) -> Self {
        self.claims = claims;
        self
    }

    /// The key for a token's `alg` and `kid`, static keys first, then the published ones
    /// (`true`: a published key).
    fn key_for(&self, alg: Algorithm, kid: Option<&str>) -> Option<(IssuerKey, bool)> {
        let fits = |k: &&IssuerKey| {
            k.alg == alg
                && match (kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    (Some(_), None) => false,
                    (None, _) => true,
                }
        };
        if let Some(k) = self.keys.iter().find(fits) {
            return Some((k.clone(), false));
        }
        let (published, _) = self.jwks.as_ref()?.snapshot();
        published.iter().find(fits).map(|k| (k.clone(), true))
    }
}

/// What a verified token yields.
#[derive(Clone, Debug)]
pub(crate) struct Verified {
    pub(crate) principal: Principal,
    pub(crate) models: AllowedModels,
}

/// Why a token is refused (the reason recorded in `AuthFailure`).
pub(crate) type Reason = &'static str;

/// Checks tokens against a set of issuers, with a cache of verified tokens.
pub(crate) struct JwtVerifier {
    issuers: Arc<[JwtIssuer]>,
    cache: Mutex<HashMap<[u8; 32], (u64, Verified)>>,
    capacity: usize,
}

impl fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuers", &self.issuers)
            .finish_non_exhaustive()
    }
}

/// Why a token could not be decided at once.
enum Needs {
    /// Its issuer's published keys must be fetched.
    Fetch,
    /// It is refused.
    Refuse(Reason),
}

impl From<Reason> for Needs {
    fn from(r: Reason) -> Self {
        Needs::Refuse(r)
    }
}

fn token_digest(token: &str) -> [u8; 32] {
    crate::key::sha256(token.as_bytes())
}

#[derive(Deserialize)]
struct Unverified {
    iss: Option<Value>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn scopes_of(v: Option<&Value>) -> Result<Vec<String>, Reason> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).ok_or("jwt_bad_claim"))
            .collect(),
        Some(_) => Err("jwt_bad_claim"),
    }
}

fn string_claim(
    claims: &Map<String, Value>,
    name: Option<&String>,
) -> Result<Option<Arc<str>>, Reason> {
    match name.and_then(|n| claims.get(n)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(Arc::from(s.as_str()))),
        Some(_) => Err("jwt_bad_claim"),
    }
}

impl JwtVerifier {
    pub(crate) fn new(issuers: Vec<JwtIssuer>) -> Self {
        JwtVerifier {
            issuers: issuers.into(),
            cache: Mutex::new(HashMap::new()),
            capacity: DEFAULT_CACHE_CAPACITY,
        }
    }

    /// The same issuers with a cache of `capacity` tokens (0: none).
    pub(crate) fn with_capacity(&self, capacity: usize) -> Self {
        JwtVerifier {
            issuers: self.issuers.clone(),
            cache: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Checks a token without waiting: `Err(None)` means its issuer's published keys must
    /// be fetched first ([`JwtVerifier::verify_fetching`]).
    pub(crate) fn verify_now(&self, token: &str) -> Result<Verified, Option<Reason>> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Some("jwt_malformed"));
        }
        let digest = token_digest(token);
        if self.capacity > 0 {
            if let Ok(cache) = self.cache.lock() {
                if let Some((exp, v)) = cache.get(&digest) {
                    if *exp > now_secs() {
                        return Ok(v.clone());
                    }
                }
            }
        }
        match self.verify_uncached(token, false) {
            Ok((exp, v)) => {
                self.remember(digest, exp, &v);
                Ok(v)
            }
            Err(Needs::Fetch) => Err(None),
            Err(Needs::Refuse(r)) => Err(Some(r)),
        }
    }

    /// Fetches the issuer's published keys (rate-limited), then checks the token once more.
    pub(crate) async fn verify_fetching(
        self: Arc<Self>,
        token: String,
    ) -> Result<Verified, Reason> {
        if let Some(jwks) = self.issuer_of(&token).and_then(|i| i.jwks.clone()) {
            jwks.refresh().await;
        }
        // After one (attempted) fetch, the keys in force are used even if a fetch failed:
        // an identity provider that is down does not lock out tokens of known keys.
        match self.verify_uncached(&token, true) {
            Ok((exp, v)) => {
                self.remember(token_digest(&token), exp, &v);
                Ok(v)
            }
            Err(Needs::Fetch) => Err("jwt_unknown_kid"),
            Err(Needs::Refuse(r)) => Err(r),
        }
    }

    fn issuer_of(&self, token: &str) -> Option<&JwtIssuer> {
        let u = jsonwebtoken::dangerous::insecure_decode::<Unverified>(token).ok()?;
        let Some(Value::String(iss)) = u.claims.iss else {
            return None;
        };
        self.issuers.iter().find(|i| i.issuer == iss)
    }

    fn remember(&self, digest: [u8; 32], exp: u64, verified: &Verified) {
        if self.capacity == 0 {
            return;
        }
        let now = now_secs();
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= self.capacity {
                cache.retain(|_, (e, _)| *e > now);
                if cache.len() >= self.capacity {
                    cache.clear();
                }
            }
            // Never longer than a key set lives, so a key rotated out stops its tokens soon.
            cache.insert(digest, (exp.min(now + MAX_CACHE_SECS), verified.clone()));
        }
    }

    fn verify_uncached(&self, token: &str, after_fetch: bool) -> Result<(u64, Verified), Needs> {
        // The unverified `iss` only picks whose keys to try; everything is then verified.
        let unverified = jsonwebtoken::dangerous::insecure_decode::<Unverified>(token)
            .map_err(|_| "jwt_malformed")?;
        let iss = match unverified.claims.iss {
            Some(Value::String(s)) => s,
            _ => return Err(Needs::Refuse("jwt_unknown_issuer")),
        };
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or("jwt_unknown_issuer")?;
        let header = unverified.header;
        let stale = issuer.jwks.as_ref().is_some_and(|j| j.snapshot().1);
        let key = match issuer.key_for(header.alg, header.kid.as_deref()) {
            Some((k, false)) => k,
            // Published keys past their time are fetched again before use.
            Some(_) if stale && !after_fetch => return Err(Needs::Fetch),
            Some((k, true)) => k,
            None if issuer.jwks.is_some() && !after_fetch && (stale || header.kid.is_some()) => {
                return Err(Needs::Fetch);
            }
            None if header.kid.is_some() => return Err(Needs::Refuse("jwt_unknown_kid")),
            None => return Err(Needs::Refuse("jwt_algorithm_not_allowed")),
        };
        let mut v = Validation::new(key.alg);
        v.set_issuer(&[&issuer.issuer]);
        v.set_audience(&issuer.audiences);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = issuer.leeway.as_secs();
        v.validate_nbf = true;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature => "jwt_expired",
                    K::ImmatureSignature => "jwt_not_yet_valid",
                    K::InvalidIssuer => "jwt_wrong_issuer",
                    K::InvalidAudience => "jwt_wrong_audience",
                    K::InvalidSignature => "jwt_bad_signature",
                    K::InvalidAlgorithm => "jwt_algorithm_not_allowed",
                    K::MissingRequiredClaim(_) | K::InvalidClaimFormat(_) => "jwt_bad_claim",
                    _ => "jwt_malformed",
                }
            })?;
        let claims = data.claims;
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or("jwt_bad_claim")?;
        let map = &issuer.claims;
        let subject = string_claim(&claims, Some(&map.subject))?.ok_or("jwt_bad_claim")?;
        let mut scopes = scopes_of(map.scopes.as_ref().and_then(|n| claims.get(n)))?;
        let mut agent = None;
        if let Some(act) = claims.get("act") {
            let act = act.as_object().ok_or("jwt_bad_claim")?;
            let sub = act
                .get("sub")
                .and_then(Value::as_str)
                .ok_or("jwt_bad_claim")?;
            agent = Some(Arc::from(sub));
            if act.contains_key("scope") {
                let asked = scopes_of(act.get("scope"))?;
                // An empty list would read as "no limits": never wider than the person.
                if asked.is_empty()
                    || (!scopes.is_empty() && asked.iter().any(|s| !scopes.contains(s)))
                {
                    return Err(Needs::Refuse("agent_scope_exceeds_person"));
                }
                scopes = asked;
            }
        }
        let models = match map.models.as_ref().and_then(|n| claims.get(n)) {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => scopes_of(Some(v))?,
        };
        let principal = Principal {
            subject,
            tenant: string_claim(&claims, map.tenant.as_ref())?,
            team: string_claim(&claims, map.team.as_ref())?,
            agent,
            tier: string_claim(&claims, map.tier.as_ref())?,
            scopes: scopes.iter().map(|s| Arc::from(s.as_str())).collect(),
        };
        let models = AllowedModels(models.iter().map(|s| Arc::from(s.as_str())).collect());
        Ok((exp, Verified { principal, models }))
    }
}
