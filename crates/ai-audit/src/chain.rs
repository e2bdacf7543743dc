//! The log format: every line a JSON object that starts with its sequence number and the
//! SHA-256 of the line before it, and signed checkpoints over the chain head.
//!
//! ```text
//! {"seq":0,"prev":"000…0","kind":"segment_start","format":"ai-audit/v1","segment":1,…}
//! {"seq":1,"prev":"<sha256 of line 0>","kind":"record",…}
//! {"seq":2,"prev":"<sha256 of line 1>","kind":"checkpoint","segment":1,"key_id":"…","sig":"…"}
//! ```
//!
//! A line's hash is the SHA-256 of its bytes without the newline. A signature is Ed25519
//! over [`signed_message`]: the format name, the segment number, the `seq`, `prev` and
//! `kind` of the signing line and its detail, so it covers every line before it and what
//! the signing line says about itself.

use crate::hash::{Digest, hex, sha256};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use std::fmt;

/// The format name, in every `segment_start` and every signed message.
pub const FORMAT: &str = "ai-audit/v1";

/// The `prev` of the very first line of a log: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The bytes a signed entry signs: the format, the segment, the entry's `seq` and `prev`,
/// its `kind` (`segment_start`, `checkpoint`, `seal`) and its detail (a seal's `reason`,
/// a `segment_start`'s `checkpoint_every`; empty for a checkpoint).
pub fn signed_message(
    segment: u64,
    seq: u64,
    prev: &str,
    kind: &str,
    detail: Option<&str>,
) -> String {
    format!(
        "{FORMAT}\n{segment}\n{seq}\n{prev}\n{kind}\n{}",
        detail.unwrap_or("")
    )
}

/// An error in a key given as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(&'static str);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for KeyError {}

fn decode32(text: &str, what: &'static str) -> Result<[u8; 32], KeyError> {
    let bytes = B64.decode(text.trim()).map_err(|_| KeyError(what))?;
    bytes.try_into().map_err(|_| KeyError(what))
}

fn key_id(public: &[u8]) -> String {
    hex(&sha256(public))[..16].to_owned()
}

/// The Ed25519 key that signs checkpoints: a 32-byte seed, given as standard base64.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.public.id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// The key from its 32-byte seed in base64.
    pub fn from_base64(seed: &str) -> Result<Self, KeyError> {
        let seed = decode32(
            seed,
            "the signing key must be 32 bytes in standard base64 (an Ed25519 seed)",
        )?;
        Self::from_seed(&seed)
    }

    /// The key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| KeyError("not a valid Ed25519 seed"))?;
        let bytes: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| KeyError("unexpected public key length"))?;
        Ok(SigningKey {
            public: PublicKey {
                id: key_id(&bytes),
                bytes,
            },
            pair,
        })
    }

    /// A fresh key from the system's random source, with its seed in base64 (keep it
    /// secret; the public half verifies the log).
    pub fn generate() -> Result<(Self, String), KeyError> {
        use ring::rand::SecureRandom as _;
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| KeyError("the system random source failed"))?;
        Ok((Self::from_seed(&seed)?, B64.encode(seed)))
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// Signs `msg`; the signature in base64.
    pub(crate) fn sign(&self, msg: &[u8]) -> String {
        B64.encode(self.pair.sign(msg).as_ref())
    }
}

/// An Ed25519 public key that verifies checkpoints. Its id (`key_id` in the log) is the
/// first 16 hex digits of the SHA-256 of the 32 key bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
    id: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

impl PublicKey {
    /// The key from its 32 bytes in standard base64.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = decode32(
            text,
            "a public key must be 32 bytes in standard base64 (Ed25519)",
        )?;
        Ok(PublicKey {
            id: key_id(&bytes),
            bytes,
        })
    }

    /// The key in base64.
    pub fn to_base64(&self) -> String {
        B64.encode(self.bytes)
    }

    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// Whether `sig` (base64) is this key's signature of `msg`.
    pub fn verify(&self, msg: &[u8], sig: &str) -> bool {
        let Ok(sig) = B64.decode(sig) else {
            return false;
        };
        UnparsedPublicKey::new(&ED25519, &self.bytes)
            .verify(msg, &sig)
            .is_ok()
    }
}

/// Builds one log line: `{"seq":N,"prev":"<hex>",` followed by `body` without its `{`.
/// `body` must be a JSON object.
pub(crate) fn line(seq: u64, prev: &Digest, body: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"prev\":\"");
    out.extend_from_slice(hex(prev).as_bytes());
    out.push(b'"');
    match body.get(1..) {
        Some(rest) if rest.first() != Some(&b'}') => {
            out.push(b',');
            out.extend_from_slice(rest);
        }
        _ => out.push(b'}'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let (key, seed) = SigningKey::generate().expect("key");
        let again = SigningKey::from_base64(&seed).expect("seed");
        assert_eq!(key.public_key(), again.public_key());
        let msg = signed_message(1, 5, GENESIS, "checkpoint", None);
        let sig = key.sign(msg.as_bytes());
        let public = PublicKey::from_base64(&key.public_key().to_base64()).expect("pub");
        assert!(public.verify(msg.as_bytes(), &sig));
        assert!(!public.verify(
            signed_message(1, 6, GENESIS, "checkpoint", None).as_bytes(),
            &sig
        ));
        assert!(!public.verify(
            signed_message(1, 5, GENESIS, "seal", Some("shutdown")).as_bytes(),
            &sig
        ));
        let (other, _) = SigningKey::generate().expect("key");
        assert!(!other.public_key().verify(msg.as_bytes(), &sig));
        assert_ne!(other.public_key().key_id(), key.public_key().key_id());
        assert!(SigningKey::from_base64("c2hvcnQ=").is_err());
    }

    #[test]
    fn line_prefixes_the_chain_fields() {
        let mut out = Vec::new();
        line(7, &[0u8; 32], br#"{"kind":"record"}"#, &mut out);
        let s = String::from_utf8(out).expect("utf8");
        assert_eq!(
            s,
            format!(r#"{{"seq":7,"prev":"{GENESIS}","kind":"record"}}"#)
        );
        let mut out = Vec::new();
        line(1, &[0u8; 32], b"{}", &mut out);
        assert!(serde_json::from_slice::<serde_json::Value>(&out).is_ok());
    }
}
