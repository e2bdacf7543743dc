//! [`UserPseudonymLayer`]: tells the vendor *that* calls come from one user, never *who*.
//!
//! With a key set, every Messages request's `metadata.user_id` becomes
//! `u_` + the first 128 bits (hex) of `HMAC-SHA256(key, tenant \x1f subject)` of the
//! authenticated [`Principal`], so the vendor's abuse signals are per user while the user
//! stays unnamed. A `user_id` the caller set (an application's own end user) is folded in
//! (`tenant \x1f subject \x1f user_id`): end users stay apart, and their ids stay private
//! too. Other `metadata` members pass as sent. Without a principal nothing changes.

use ai_core::wire::RawJson;
use ai_core::{AiError, MessagesRequest, Principal};
use http::{Request, Response};
use ring::hmac;
use std::fmt;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Builds [`UserPseudonym`].
#[derive(Clone)]
pub struct UserPseudonymLayer {
    key: Option<hmac::Key>,
}

impl fmt::Debug for UserPseudonymLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserPseudonymLayer")
            .field("enabled", &self.key.is_some())
            .finish()
    }
}

impl UserPseudonymLayer {
    /// Pseudonyms keyed with `secret` (at least 16 bytes).
    pub fn new(secret: &[u8]) -> Result<Self, crate::KeyError> {
        if secret.len() < crate::MIN_PEPPER_LEN {
            return Err(crate::KeyError(format!(
                "the pseudonym key must be at least {} bytes",
                crate::MIN_PEPPER_LEN
            )));
        }
        Ok(UserPseudonymLayer {
            key: Some(hmac::Key::new(hmac::HMAC_SHA256, secret)),
        })
    }

    /// A layer that changes nothing (no key configured).
    pub const fn disabled() -> Self {
        UserPseudonymLayer { key: None }
    }

    /// The pseudonym of a principal (and an optional caller-given user id).
    pub fn pseudonym(&self, principal: &Principal, caller_user: Option<&str>) -> Option<String> {
        let key = self.key.as_ref()?;
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(principal.tenant.as_deref().unwrap_or("").as_bytes());
        ctx.update(b"\x1f");
        ctx.update(principal.subject.as_bytes());
        if let Some(u) = caller_user {
            ctx.update(b"\x1f");
            ctx.update(u.as_bytes());
        }
        let tag = ctx.sign();
        let mut out = String::with_capacity(34);
        out.push_str("u_");
        for b in &tag.as_ref()[..16] {
            out.push_str(&format!("{b:02x}"));
        }
        Some(out)
    }
}

impl<S> Layer<S> for UserPseudonymLayer {
    type Service = UserPseudonym<S>;

    fn layer(&self, inner: S) -> UserPseudonym<S> {
        UserPseudonym {
            inner,
            layer: self.clone(),
        }
    }
}

/// Sets `metadata.user_id` to a keyed pseudonym. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct UserPseudonym<S> {
    inner: S,
    layer: UserPseudonymLayer,
}

impl<S, RB> Service<Request<MessagesRequest>> for UserPseudonym<S>
where
    S: Service<Request<MessagesRequest>, Response = Response<RB>, Error = AiError>,
{
    type Response = Response<RB>;
    type Error = AiError;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AiError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<MessagesRequest>) -> S::Future {
        if self.layer.key.is_some() {
            if let Some(principal) = req.extensions().get::<Principal>().cloned() {
                let body = req.body_mut();
                let mut meta = body
                    .metadata
                    .as_ref()
                    .and_then(|m| m.parse::<serde_json::Map<String, serde_json::Value>>().ok())
                    .unwrap_or_default();
                let caller = meta
                    .get("user_id")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned);
                if let Some(p) = self.layer.pseudonym(&principal, caller.as_deref()) {
                    meta.insert("user_id".to_owned(), serde_json::Value::String(p));
                    body.metadata = Some(RawJson::from_value(&serde_json::Value::Object(meta)));
                }
            }
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ai_core::test_util::{MockProvider, Script};
    use std::sync::Arc;
    use tower::ServiceExt;

    fn principal(tenant: &str, subject: &str) -> Principal {
        Principal {
            tenant: Some(Arc::from(tenant)),
            ..Principal::new(subject)
        }
    }

    async fn sent(
        layer: &UserPseudonymLayer,
        p: Option<Principal>,
        metadata: Option<&str>,
    ) -> Option<String> {
        let mock = MockProvider::always(Script::text("ok"));
        let mut req = Request::new(MessagesRequest {
            model: "m".into(),
            max_tokens: Some(1),
            metadata: metadata.map(|m| RawJson::from_string(m.to_owned()).expect("json")),
            ..Default::default()
        });
        if let Some(p) = p {
            req.extensions_mut().insert(p);
        }
        layer.layer(mock.clone()).oneshot(req).await.expect("ok");
        mock.requests()[0]
            .body
            .metadata
            .as_ref()
            .map(|m| m.get().to_owned())
    }

    #[tokio::test]
    async fn the_vendor_sees_a_stable_pseudonym_never_the_person() {
        let l = UserPseudonymLayer::new(b"pseudonym key, 16+ bytes").expect("key");
        let a1 = sent(&l, Some(principal("acme", "alice@acme.example")), None)
            .await
            .expect("set");
        let a2 = sent(&l, Some(principal("acme", "alice@acme.example")), None)
            .await
            .expect("set");
        let other_tenant = sent(&l, Some(principal("globex", "alice@acme.example")), None)
            .await
            .expect("set");
        assert_eq!(a1, a2, "stable per person");
        assert_ne!(a1, other_tenant, "tenants apart");
        assert!(!a1.contains("alice") && !a1.contains("acme"), "{a1}");
        let v: serde_json::Value = serde_json::from_str(&a1).expect("json");
        let id = v["user_id"].as_str().expect("user_id");
        assert!(id.starts_with("u_") && id.len() == 34, "{id}");
    }

    #[tokio::test]
    async fn a_caller_s_own_user_id_is_folded_in_and_other_metadata_kept() {
        let l = UserPseudonymLayer::new(b"pseudonym key, 16+ bytes").expect("key");
        let p = || Some(principal("acme", "app"));
        let one = sent(&l, p(), Some(r#"{"user_id":"end-user-1","x":1}"#))
            .await
            .expect("set");
        let two = sent(&l, p(), Some(r#"{"user_id":"end-user-2"}"#))
            .await
            .expect("set");
        let v1: serde_json::Value = serde_json::from_str(&one).expect("json");
        let v2: serde_json::Value = serde_json::from_str(&two).expect("json");
        assert_ne!(v1["user_id"], v2["user_id"]);
        assert_eq!(v1["x"], 1);
        assert!(!one.contains("end-user-1"));
    }

    #[tokio::test]
    async fn without_a_key_or_a_principal_nothing_changes() {
        let off = UserPseudonymLayer::disabled();
        assert_eq!(
            sent(
                &off,
                Some(principal("acme", "a")),
                Some(r#"{"user_id": "x"}"#)
            )
            .await
            .as_deref(),
            Some(r#"{"user_id": "x"}"#)
        );
        let on = UserPseudonymLayer::new(b"pseudonym key, 16+ bytes").expect("key");
        assert_eq!(sent(&on, None, None).await, None);
        assert!(UserPseudonymLayer::new(b"short").is_err());
    }
}
