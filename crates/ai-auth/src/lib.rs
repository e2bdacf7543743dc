//! Caller authentication for the ai-gateway layers: who is calling, and which models they
//! may use.
//!
//! | what | how |
//! |---|---|
//! | credential | a gateway-issued key `gwk_<id>_<secret>` in `x-api-key` (as the Anthropic SDK sends its key) or `authorization: Bearer` |
//! | storage | only `HMAC-SHA256(pepper, secret)`; the pepper stays outside the key file |
//! | check | lookup by id, constant-time comparison; an unknown id costs the same HMAC as a wrong secret |
//! | result | [`Principal`](ai_core::Principal) and [`AllowedModels`](ai_core::AllowedModels) in the request extensions; `x-api-key` and `authorization` removed |
//! | refusal | 401 `authentication_error` with one message ([`INVALID_KEY`]) for unknown, wrong, disabled and expired keys; the reason in [`AuthFailure`](ai_core::AuthFailure) on the response and the debug log; a key in the query string refused |
//! | stores | [`MemoryKeys`], [`FileKeys`] (TOML or JSON, reloaded on change) |
//! | tokens | JWT bearer tokens of configured issuers ([`JwtIssuer`]): each key bound to one algorithm, static or published at a JWKS URL ([`Jwks`], fetched on first use, refreshed on expiry and on an unknown `kid` at most once per interval); `iss`/`aud`/`exp`/`nbf`; claims mapped to the principal; RFC 8693 `act` for agents acting for a person; verified tokens cached until `exp` |
//! | models | [`ModelAccessLayer`]: 403 `permission_error` naming the model |
//! | to the vendor | [`UserPseudonymLayer`]: `metadata.user_id` = a keyed pseudonym of tenant + subject, never the raw id |
//!
//! [`AuthLayer`] works on any `http::Request<B>` and any response body, so it guards the
//! Anthropic stack and a plain axum router alike (rejections as Anthropic JSON, or plain
//! text with [`Rejection::PlainText`]).
//!
//! ```
//! use ai_auth::{AuthLayer, KeyHasher, KeyRecord, MemoryKeys, MintedKey};
//! use ai_core::Principal;
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hasher = KeyHasher::new(b"pepper from a secret store, 16+ bytes")?;
//! let minted = MintedKey::generate(&hasher)?; // minted.key goes to the caller, once
//! let record: KeyRecord = serde_json::from_value(serde_json::json!({
//!     "id": minted.id, "hash": minted.hash, "subject": "alice", "tenant": "acme",
//! }))?;
//! let svc = ServiceBuilder::new()
//!     .layer(AuthLayer::keys(MemoryKeys::new(vec![record])?, hasher))
//!     .service(service_fn(|req: Request<()>| async move {
//!         let who = req.extensions().get::<Principal>().unwrap().subject.clone();
//!         assert!(req.headers().get("x-api-key").is_none(), "the credential goes no further");
//!         Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Full::new(
//!             bytes::Bytes::from(format!("hello {who}")),
//!         )))
//!     }));
//!
//! let ok = Request::get("/").header("x-api-key", &minted.key).body(())?;
//! assert_eq!(svc.clone().oneshot(ok).await?.status(), 200);
//! let wrong = Request::get("/").header("x-api-key", "gwk_0000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").body(())?;
//! assert_eq!(svc.oneshot(wrong).await?.status(), 401);
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod jwt;
mod key;
mod layer;
mod models;
pub mod pseudonym;
mod store;

pub use jwt::{ClaimMap, Jwks, JwtAlgorithm, JwtIssuer};
pub use key::{KEY_PREFIX, KeyError, KeyHasher, KeyKind, KeyRecord, MIN_PEPPER_LEN, MintedKey};
pub use layer::{ACTING_FOR, Auth, AuthBody, AuthLayer, INVALID_KEY, Rejection, ResponseFuture};
pub use models::{ModelAccess, ModelAccessLayer};
pub use pseudonym::{UserPseudonym, UserPseudonymLayer};
pub use store::{FileKeys, KeyStore, MemoryKeys, ResolvedKey};

/// The response future of [`ModelAccess`].
pub mod future {
    pub use crate::models::ResponseFuture as ModelAccessFuture;
}
