//! Gateway-issued keys: `gwk_<id>_<secret>`. The id (16 hex digits) finds the record; the
//! secret (43 base64url characters, 256 random bits) is never stored: a record keeps
//! `HMAC-SHA256(pepper, secret)`, and a presented secret is checked against it in constant
//! time. An unknown id costs the same HMAC and comparison as a wrong secret.

use ai_core::{AllowedModels, Principal};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// SHA-256 of `bytes` (token cache keys, key-file versions).
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The prefix of every gateway key.
pub const KEY_PREFIX: &str = "gwk_";
const ID_LEN: usize = 16;
const SECRET_LEN: usize = 43;

/// A key as presented: its id and its secret.
pub(crate) struct Presented<'a> {
    pub(crate) id: &'a str,
    pub(crate) secret: &'a str,
}

/// Whether `id` is 16 lowercase hex digits.
pub(crate) fn valid_id(id: &str) -> bool {
    id.len() == ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Splits `gwk_<id>_<secret>`; `None` when it is not of that form.
pub(crate) fn parse(key: &str) -> Option<Presented<'_>> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_at_checked(ID_LEN)?;
    let secret = secret.strip_prefix('_')?;
    let b64 = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    (valid_id(id) && secret.len() == SECRET_LEN && b64(secret)).then_some(Presented { id, secret })
}

#[cfg(test)]
std::thread_local! {
    /// HMAC checks made on this thread (tests: every refusal path does the same work).
    pub(crate) static VERIFICATIONS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// The keyed hash that stands for secrets: HMAC-SHA256 under a pepper that lives outside
/// the key file (an environment variable), so a leaked file cannot be checked offline.
#[derive(Clone)]
pub struct KeyHasher {
    key: hmac::Key,
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher { .. }")
    }
}

/// A pepper shorter than this is refused.
pub const MIN_PEPPER_LEN: usize = 16;

impl KeyHasher {
    /// A hasher with this pepper (at least [`MIN_PEPPER_LEN`] bytes).
    pub fn new(pepper: &[u8]) -> Result<Self, KeyError> {
        if pepper.len() < MIN_PEPPER_LEN {
            return Err(KeyError(format!(
                "the key pepper must be at least {MIN_PEPPER_LEN} bytes"
            )));
        }
        Ok(KeyHasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, pepper),
        })
    }

    /// The hash of `secret`, hex-encoded, as a key file stores it.
    pub fn hash_hex(&self, secret: &str) -> String {
        to_hex(hmac::sign(&self.key, secret.as_bytes()).as_ref())
    }

    /// Constant-time check of `secret` against a stored hash.
    pub(crate) fn verify(&self, secret: &str, hash: &[u8; 32]) -> bool {
        #[cfg(test)]
        VERIFICATIONS.with(|c| c.set(c.get() + 1));
        hmac::verify(&self.key, secret.as_bytes(), hash).is_ok()
    }
}

/// A new key: the text to give the caller once, its id and the hash to store.
#[derive(Clone)]
pub struct MintedKey {
    /// The whole key, `gwk_<id>_<secret>`: shown once, never stored.
    pub key: String,
    /// Its id (what a key file and logs name).
    pub id: String,
    /// The hex HMAC of its secret (what a key file stores).
    pub hash: String,
}

impl fmt::Debug for MintedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MintedKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MintedKey {
    /// A fresh key from the system's secure random source.
    pub fn generate(hasher: &KeyHasher) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let mut id = [0u8; ID_LEN / 2];
        let mut secret = [0u8; 32];
        rng.fill(&mut id)
            .and_then(|()| rng.fill(&mut secret))
            .map_err(|_| KeyError("the system random source failed".into()))?;
        let id = to_hex(&id);
        let secret = base64url(&secret);
        Ok(MintedKey {
            key: format!("{KEY_PREFIX}{id}_{secret}"),
            hash: hasher.hash_hex(&secret),
            id,
        })
    }
}

/// What a key stands for: the principal it authenticates as, and its limits.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// The key's id (16 hex digits).
    pub id: String,
    /// Hex HMAC-SHA256 of the secret under the pepper.
    #[serde(deserialize_with = "hash32")]
    pub hash: [u8; 32],
    /// Who calls with it (a person, a service account).
    pub subject: String,
    /// Tenant / organisation.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Team within the tenant.
    #[serde(default)]
    pub team: Option<String>,
    /// Service tier, e.g. `free`, `pro`.
    #[serde(default)]
    pub tier: Option<String>,
    /// Granted scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Models it may use (exact, or a prefix ending in `*`); empty: every model.
    #[serde(default)]
    pub models: Vec<String>,
    /// Unix time (seconds) after which the key no longer works.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// A disabled key never works.
    #[serde(default)]
    pub disabled: bool,
    /// `user` (the default) or `agent`: an agent key acts for a person, named on each
    /// request in the `x-acting-for` header, and only for the persons listed in `acts_for`.
    #[serde(default)]
    pub kind: KeyKind,
    /// For an agent key: the ids of the person keys it may act for.
    #[serde(default)]
    pub acts_for: Vec<String>,
}

/// Whose key it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// A person's or a service's own key.
    #[default]
    User,
    /// An agent's key: it acts for a person (see [`KeyRecord::acts_for`]).
    Agent,
}

/// What a valid key yields, built once per record (cheap to clone per request).
#[derive(Clone, Debug)]
pub(crate) struct Resolved {
    pub(crate) record: Arc<KeyRecord>,
    pub(crate) principal: Principal,
    pub(crate) models: AllowedModels,
}

impl Resolved {
    pub(crate) fn new(record: KeyRecord) -> Self {
        let arc = |s: &Option<String>| s.as_deref().map(Arc::from);
        let principal = Principal {
            subject: Arc::from(record.subject.as_str()),
            tenant: arc(&record.tenant),
            team: arc(&record.team),
            agent: None,
            tier: arc(&record.tier),
            scopes: record
                .scopes
                .iter()
                .map(|s| Arc::from(s.as_str()))
                .collect(),
        };
        let models = AllowedModels(
            record
                .models
                .iter()
                .map(|s| Arc::from(s.as_str()))
                .collect(),
        );
        Resolved {
            record: Arc::new(record),
            principal,
            models,
        }
    }

    pub(crate) fn expired(&self, now: SystemTime) -> bool {
        self.record.expires_at.is_some_and(|t| {
            now.duration_since(UNIX_EPOCH)
                .map_or(true, |d| d.as_secs() >= t)
        })
    }
}

/// A key, key file or pepper that cannot be used.
#[derive(Debug, Clone)]
pub struct KeyError(pub(crate) String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

fn hash32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
    let text = String::deserialize(d)?;
    from_hex32(&text).ok_or_else(|| serde::de::Error::custom("hash must be 64 hex digits"))
}

pub(crate) fn from_hex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn base64url(bytes: &[u8; 32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(SECRET_LEN);
    let mut acc = 0u32;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> KeyHasher {
        KeyHasher::new(b"a pepper of enough length").expect("pepper")
    }

    #[test]
    fn minted_keys_parse_and_verify() {
        let h = hasher();
        let k = MintedKey::generate(&h).expect("mint");
        let p = parse(&k.key).expect("parses");
        assert_eq!(p.id, k.id);
        assert_eq!(p.secret.len(), SECRET_LEN);
        let hash = from_hex32(&k.hash).expect("hex");
        assert!(h.verify(p.secret, &hash));
        assert!(!h.verify(&p.secret.replace(|_: char| true, "A"), &hash));
        let other = MintedKey::generate(&h).expect("mint");
        assert_ne!(other.id, k.id);
        assert!(!format!("{k:?}").contains(p.secret));
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        let good = "gwk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(parse(good).is_some());
        for bad in [
            "",
            "gwk_",
            "sk-ant-api03-xyz",
            "gwk_0123456789ABCDEF_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "gwk_0123456789abcdef_AAAA",
            "gwk_0123456789abcdefAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "gwk_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "gwk_0123456789abcdé_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_short_pepper_is_refused() {
        assert!(KeyHasher::new(b"short").is_err());
    }
}
