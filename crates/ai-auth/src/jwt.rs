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
use ring::digest;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use jsonwebtoken::Algorithm as JwtAlgorithm;

/// Longest token accepted (a larger one is refused before any decoding).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Default number of verified tokens kept in the cache.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// Where each part of the [`Principal`] comes from in the token's claims.
#[derive(Clone, Debug)]
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

struct IssuerKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// One trusted token issuer. See the [module docs](self).
pub struct JwtIssuer {
    issuer: String,
    audiences: Vec<String>,
    keys: Vec<IssuerKey>,
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

    fn key_for(&self, alg: Algorithm, kid: Option<&str>) -> Option<&IssuerKey> {
        self.keys.iter().find(|k| {
            k.alg == alg
                && match (kid, &k.kid) {
                    (Some(want), Some(have)) => want == have,
                    (Some(_), None) => false,
                    (None, _) => true,
                }
        })
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

    pub(crate) fn verify(&self, token: &str) -> Result<Verified, Reason> {
        if token.len() > MAX_TOKEN_LEN {
            return Err("jwt_malformed");
        }
        let digest: [u8; 32] = digest::digest(&digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .map_err(|_| "jwt_malformed")?;
        let now = now_secs();
        if self.capacity == 0 {
            return self.verify_uncached(token).map(|(_, v)| v);
        }
        if let Ok(cache) = self.cache.lock() {
            if let Some((exp, v)) = cache.get(&digest) {
                if *exp > now {
                    return Ok(v.clone());
                }
            }
        }
        let (exp, verified) = self.verify_uncached(token)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= self.capacity {
                cache.retain(|_, (e, _)| *e > now);
                if cache.len() >= self.capacity {
                    cache.clear();
                }
            }
            cache.insert(digest, (exp, verified.clone()));
        }
        Ok(verified)
    }

    fn verify_uncached(&self, token: &str) -> Result<(u64, Verified), Reason> {
        // The unverified `iss` only picks whose keys to try; everything is then verified.
        let unverified = jsonwebtoken::dangerous::insecure_decode::<Unverified>(token)
            .map_err(|_| "jwt_malformed")?;
        let iss = match unverified.claims.iss {
            Some(Value::String(s)) => s,
            _ => return Err("jwt_unknown_issuer"),
        };
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.issuer == iss)
            .ok_or("jwt_unknown_issuer")?;
        let header = unverified.header;
        let key =
            issuer
                .key_for(header.alg, header.kid.as_deref())
                .ok_or(if header.kid.is_some() {
                    "jwt_unknown_kid"
                } else {
                    "jwt_algorithm_not_allowed"
                })?;
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
                if asked.iter().any(|s| !scopes.contains(s)) {
                    return Err("agent_scope_exceeds_person");
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
