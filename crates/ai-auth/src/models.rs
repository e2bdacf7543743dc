//! [`ModelAccessLayer`]: refuses a model the caller's key does not allow, for the typed
//! middle (`Request<MessagesRequest>`), after [`AuthLayer`](crate::AuthLayer) set
//! [`AllowedModels`].

use ai_core::{AiError, AllowedModels, ErrorKind, MessagesRequest};
use http::{Request, Response};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Layer, Service};

/// Builds [`ModelAccess`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ModelAccessLayer;

impl ModelAccessLayer {
    /// The layer.
    pub const fn new() -> Self {
        ModelAccessLayer
    }
}

impl<S> Layer<S> for ModelAccessLayer {
    type Service = ModelAccess<S>;

    fn layer(&self, inner: S) -> ModelAccess<S> {
        ModelAccess { inner }
    }
}

/// Answers `permission_error` (403) naming the model when the request's model is not in
/// the caller's [`AllowedModels`]; a request without them (no authentication layer, or
/// an open gateway) passes.
#[derive(Debug, Clone)]
pub struct ModelAccess<S> {
    inner: S,
}

impl<S, RB> Service<Request<MessagesRequest>> for ModelAccess<S>
where
    S: Service<Request<MessagesRequest>, Response = Response<RB>, Error = AiError>,
{
    type Response = Response<RB>;
    type Error = AiError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), AiError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<MessagesRequest>) -> Self::Future {
        let model = &req.body().model;
        // A restricted key names its model: an empty one is not a way around the grant.
        let refused = req
            .extensions()
            .get::<AllowedModels>()
            .is_some_and(|m| !m.0.is_empty() && (model.is_empty() || !m.allows(model)))
            && req.extensions().get::<ai_core::Endpoint>().is_none_or(|e| {
                matches!(
                    e,
                    ai_core::Endpoint::Messages | ai_core::Endpoint::CountTokens
                )
            });
        // Scopes, when the principal has any: `messages` for the Messages endpoints,
        // `models` for the model list.
        let needed = match req.extensions().get::<ai_core::Endpoint>() {
            Some(ai_core::Endpoint::ListModels | ai_core::Endpoint::GetModel(_)) => "models",
            _ => "messages",
        };
        let lacks_scope = req
            .extensions()
            .get::<ai_core::Principal>()
            .is_some_and(|p| !p.scopes.is_empty() && !p.has_scope(needed));
        if lacks_scope {
            return ResponseFuture {
                state: State::Refused {
                    err: Some(AiError::new(
                        ErrorKind::Permission,
                        format!("this api key lacks the scope `{needed}`"),
                    )),
                },
            };
        }
        if refused {
            // The model is the caller's own input; its grants are not told.
            let shown: String = model.chars().take(128).collect();
            return ResponseFuture {
                state: State::Refused {
                    err: Some(AiError::new(
                        ErrorKind::Permission,
                        format!("this api key may not use the model {shown}"),
                    )),
                },
            };
        }
        ResponseFuture {
            state: State::Inner {
                fut: self.inner.call(req),
            },
        }
    }
}

pin_project! {
    /// The response future of [`ModelAccess`].
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = Proj]
    enum State<F> {
        Inner { #[pin] fut: F },
        Refused { err: Option<AiError> },
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture { .. }")
    }
}

impl<F, R> Future for ResponseFuture<F>
where
    F: Future<Output = Result<R, AiError>>,
{
    type Output = Result<R, AiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            Proj::Inner { fut } => fut.poll(cx),
            Proj::Refused { err } => Poll::Ready(Err(err
                .take()
                .unwrap_or_else(|| AiError::new(ErrorKind::Permission, "refused")))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ai_core::test_util::{MockProvider, Script};
    use ai_core::{Endpoint, Principal};
    use std::sync::Arc;
    use tower::ServiceExt;

    async fn ask(
        scopes: &[&str],
        models: &[&str],
        model: &str,
        endpoint: Endpoint,
    ) -> Result<(), AiError> {
        let mock = MockProvider::always(Script::text("ok"));
        let mut req = Request::new(MessagesRequest {
            model: model.into(),
            max_tokens: Some(1),
            ..Default::default()
        });
        req.extensions_mut().insert(Principal {
            scopes: scopes.iter().map(|s| Arc::from(*s)).collect(),
            ..Principal::new("p")
        });
        req.extensions_mut().insert(AllowedModels(
            models.iter().map(|s| Arc::from(*s)).collect(),
        ));
        req.extensions_mut().insert(endpoint);
        ModelAccessLayer::new()
            .layer(mock)
            .oneshot(req)
            .await
            .map(|_| ())
    }

    #[tokio::test]
    async fn scopes_and_models_are_checked_against_the_request() {
        assert!(
            ask(&[], &[], "any", Endpoint::Messages).await.is_ok(),
            "no scopes, no limits"
        );
        assert!(
            ask(&["messages"], &[], "any", Endpoint::Messages)
                .await
                .is_ok()
        );
        let e = ask(&["models"], &[], "any", Endpoint::Messages)
            .await
            .expect_err("scope");
        assert_eq!(e.kind(), ErrorKind::Permission);
        assert_eq!(e.message(), "this api key lacks the scope `messages`");
        assert!(
            ask(&["models"], &[], "", Endpoint::ListModels)
                .await
                .is_ok()
        );
        assert!(
            ask(&["messages"], &[], "", Endpoint::ListModels)
                .await
                .is_err()
        );
        let e = ask(&[], &["claude-*"], "gpt-4o", Endpoint::Messages)
            .await
            .expect_err("model");
        assert_eq!(e.message(), "this api key may not use the model gpt-4o");
        assert!(
            ask(&[], &["claude-*"], "", Endpoint::CountTokens)
                .await
                .is_err(),
            "an empty model"
        );
        assert!(
            ask(&[], &["claude-*"], "claude-x", Endpoint::CountTokens)
                .await
                .is_ok()
        );
    }
}
