//! [`AuthLayer`] / [`Auth`]: a credential in, a [`Principal`] out, or a 401.

use crate::jwt::{JwtIssuer, JwtVerifier};
use crate::key::{self, KeyHasher, KeyKind};
use crate::store::KeyStore;
use ai_core::{AiError, AuthFailure, ErrorKind, Principal};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;
use tower::{Layer, Service};

/// The message of every rejected credential: nothing that tells a guesser which part
/// was wrong (the reason goes to [`AuthFailure`] and the debug log).
pub const INVALID_KEY: &str = "invalid api key";

/// How a rejection is written, to fit the service the layer guards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// Anthropic's JSON error body (`authentication_error`), or OpenAI's
    /// (`{"error": {"message", "type", "code": "invalid_api_key"}}`) for OpenAI clients
    /// ([`ai_core::openai::is_openai_caller`]). The default.
    #[default]
    Anthropic,
    /// `text/plain`, for a plain HTTP service.
    PlainText,
    /// A gRPC status (`UNAUTHENTICATED`, or `PERMISSION_DENIED` for an agent asking for
    /// too much) in a trailers-only response, for a tonic service.
    Grpc,
}

struct Shared {
    keys: Option<(Arc<dyn KeyStore>, KeyHasher)>,
    jwt: Option<Arc<JwtVerifier>>,
    rejection: Rejection,
}

/// Authenticates callers by gateway key. See the [crate docs](crate).
#[derive(Clone)]
pub struct AuthLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("rejection", &self.shared.rejection)
            .finish_non_exhaustive()
    }
}

impl AuthLayer {
    /// Checks gateway keys against `store`, with secrets hashed by `hasher`.
    pub fn keys(store: impl KeyStore, hasher: KeyHasher) -> Self {
        AuthLayer {
            shared: Arc::new(Shared {
                keys: Some((Arc::new(store), hasher)),
                jwt: None,
                rejection: Rejection::Anthropic,
            }),
        }
    }

    /// Checks JWT bearer tokens from these issuers (see [`JwtIssuer`]).
    pub fn jwt(issuers: Vec<JwtIssuer>) -> Self {
        AuthLayer {
            shared: Arc::new(Shared {
                keys: None,
                jwt: Some(Arc::new(JwtVerifier::new(issuers))),
                rejection: Rejection::Anthropic,
            }),
        }
    }

    /// Also accepts JWT bearer tokens from these issuers (gateway keys keep working).
    pub fn with_jwt(self, issuers: Vec<JwtIssuer>) -> Self {
        AuthLayer {
            shared: Arc::new(Shared {
                keys: self.shared.keys.clone(),
                jwt: Some(Arc::new(JwtVerifier::new(issuers))),
                rejection: self.shared.rejection,
            }),
        }
    }

    /// How many verified JWTs are remembered (until their `exp`) so a repeated token costs
    /// a hash lookup instead of a signature check; 0 turns the cache off. Default 10,000.
    pub fn jwt_cache_capacity(self, capacity: usize) -> Self {
        AuthLayer {
            shared: Arc::new(Shared {
                keys: self.shared.keys.clone(),
                jwt: self
                    .shared
                    .jwt
                    .as_ref()
                    .map(|v| Arc::new(v.with_capacity(capacity))),
                rejection: self.shared.rejection,
            }),
        }
    }

    /// How rejections are written. Default [`Rejection::Anthropic`].
    pub fn rejection(self, rejection: Rejection) -> Self {
        AuthLayer {
            shared: Arc::new(Shared {
                keys: self.shared.keys.clone(),
                jwt: self.shared.jwt.clone(),
                rejection,
            }),
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The authentication service. See the [crate docs](crate).
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for Auth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Auth<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// Query parameters that carry credentials in other APIs; a request with one is refused
/// (a key in a URL ends up in proxy and server logs).
const QUERY_CREDENTIALS: &[&str] = &[
    "key",
    "api_key",
    "apikey",
    "x-api-key",
    "access_token",
    "token",
];

/// `%XX` decoded (invalid escapes kept as they are) and `+` as a space: for checking only.
fn percent_decoded(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn key_in_query(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        let decoded = percent_decoded(q).to_ascii_lowercase();
        decoded.contains(key::KEY_PREFIX)
            || decoded.split(['&', ';']).any(|pair| {
                let name = pair.split_once('=').map_or(pair, |(n, _)| n).trim();
                QUERY_CREDENTIALS.contains(&name)
            })
    })
}

/// The presented credential: `x-api-key`, else `authorization: Bearer`.
/// `Some("")` for a credential that is present but not text (refused as malformed).
fn credential(headers: &http::HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-api-key") {
        return Some(v.to_str().unwrap_or(""));
    }
    let Ok(v) = headers.get(header::AUTHORIZATION)?.to_str() else {
        return Some("");
    };
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A message as gRPC carries it (percent-encoded; ours are plain ASCII with spaces).
fn grpc_message(message: &'static str) -> &'static str {
    match message {
        INVALID_KEY => "invalid%20api%20key",
        "the acting agent asks for scopes its person does not hold" => {
            "the%20acting%20agent%20asks%20for%20scopes%20its%20person%20does%20not%20hold"
        }
        "an agent key acts for a person: name the person's key id in x-acting-for" => {
            "an%20agent%20key%20acts%20for%20a%20person%3A%20name%20the%20person%27s%20key%20id%20in%20x-acting-for"
        }
        "this agent key may not act for that person" => {
            "this%20agent%20key%20may%20not%20act%20for%20that%20person"
        }
        "only an agent key acts for a person (x-acting-for)" => {
            "only%20an%20agent%20key%20acts%20for%20a%20person%20%28x-acting-for%29"
        }
        "credentials are not accepted in the query string" => {
            "credentials%20are%20not%20accepted%20in%20the%20query%20string"
        }
        _ => "no%20api%20key%3A%20send%20it%20as%20x-api-key%20or%20authorization%3A%20Bearer",
    }
}

/// What is decided about a request.
enum Check {
    Granted((Principal, ai_core::AllowedModels)),
    Refused(&'static str),
    Fetch(String, Arc<JwtVerifier>),
}

enum Decision {
    Refuse(&'static str),
    Fetch(String, Arc<JwtVerifier>),
}

impl From<&'static str> for Decision {
    fn from(reason: &'static str) -> Self {
        Decision::Refuse(reason)
    }
}

/// The header an agent key names its person in (the person key's id).
pub const ACTING_FOR: &str = "x-acting-for";

/// Lets the request through as `principal`: the credential headers go, the principal and
/// its model grants come in.
fn admit<B>(req: &mut Request<B>, (principal, models): (Principal, ai_core::AllowedModels)) {
    let id = credential(req.headers())
        .and_then(key::parse)
        .map(|k| ai_core::CredentialId(k.id.into()));
    if let Some(id) = id {
        req.extensions_mut().insert(id);
    }
    let h = req.headers_mut();
    h.remove("x-api-key");
    h.remove(header::AUTHORIZATION);
    h.remove(ACTING_FOR);
    req.extensions_mut().insert(principal);
    req.extensions_mut().insert(models);
}

/// A fixed hash that no secret matches, checked when the id is unknown so that an unknown
/// key and a wrong secret cost the same work.
const DECOY: [u8; 32] = [0x5a; 32];

impl Shared {
    /// The principal and model grants of a request, or why it is refused; a token whose
    /// issuer's published keys must be fetched first comes back as [`Check::Fetch`].
    fn authenticate(&self, headers: &http::HeaderMap, query: Option<&str>) -> Check {
        match self.check_now(headers, query) {
            Ok(granted) => Check::Granted(granted),
            Err(Decision::Refuse(reason)) => Check::Refused(reason),
            Err(Decision::Fetch(token, jwt)) => Check::Fetch(token, jwt),
        }
    }

    fn check_now(
        &self,
        headers: &http::HeaderMap,
        query: Option<&str>,
    ) -> Result<(Principal, ai_core::AllowedModels), Decision> {
        if key_in_query(query) {
            return Err("credential_in_query".into());
        }
        let presented = credential(headers).ok_or("missing_credential")?;
        if !presented.starts_with(key::KEY_PREFIX) {
            if let Some(jwt) = &self.jwt {
                return match jwt.verify_now(presented) {
                    Ok(v) => Ok((v.principal, v.models)),
                    Err(Some(reason)) => Err(Decision::Refuse(reason)),
                    Err(None) => Err(Decision::Fetch(presented.to_owned(), jwt.clone())),
                };
            }
        }
        let (store, hasher) = self.keys.as_ref().ok_or("malformed_key")?;
        let parsed = key::parse(presented).ok_or("malformed_key")?;
        let found = store.resolve(parsed.id);
        let hash = found.as_ref().map_or(&DECOY, |r| &r.0.record.hash);
        let matches = hasher.verify(parsed.secret, hash);
        let Some(found) = found else {
            return Err("unknown_key".into());
        };
        if !matches {
            return Err("wrong_secret".into());
        }
        if found.0.record.disabled {
            return Err("disabled_key".into());
        }
        let now = SystemTime::now();
        if found.0.expired(now) {
            return Err("expired_key".into());
        }
        let acting_for = headers.get(ACTING_FOR);
        match (found.0.record.kind, acting_for) {
            (KeyKind::User, None) => Ok((found.0.principal.clone(), found.0.models.clone())),
            (KeyKind::User, Some(_)) => Err("acting_for_without_agent_key".into()),
            (KeyKind::Agent, None) => Err("agent_without_person".into()),
            (KeyKind::Agent, Some(person)) => {
                let person = person.to_str().map_err(|_| "agent_not_bound_to_person")?;
                // The binding lives in the agent's record, which only the operator writes.
                if !found.0.record.acts_for.iter().any(|p| p == person) {
                    return Err("agent_not_bound_to_person".into());
                }
                let Some(p) = store.resolve(person) else {
                    return Err("agent_not_bound_to_person".into());
                };
                if p.0.record.disabled || p.0.expired(now) || p.0.record.kind != KeyKind::User {
                    return Err("agent_not_bound_to_person".into());
                }
                let agent = &found.0.principal;
                // An agent's listed scopes must all be its person's; with none listed it
                // takes the person's.
                // A person with no scopes is not limited by scope, so any narrower list is fine.
                if !p.0.principal.scopes.is_empty()
                    && agent.scopes.iter().any(|s| !p.0.principal.has_scope(s))
                {
                    return Err("agent_scope_exceeds_person".into());
                }
                let scopes = if agent.scopes.is_empty() {
                    p.0.principal.scopes.clone()
                } else {
                    agent.scopes.clone()
                };
                Ok((
                    Principal {
                        agent: Some(agent.subject.clone()),
                        scopes,
                        ..p.0.principal.clone()
                    },
                    p.0.models.clone(),
                ))
            }
        }
    }

    fn reject(
        &self,
        reason: &'static str,
        request_id: Option<&HeaderValue>,
        openai: bool,
    ) -> Response<Bytes> {
        tracing::debug!(reason, "request refused by authentication");
        let (message, kind) = match reason {
            "missing_credential" => (
                "no api key: send it as x-api-key or authorization: Bearer",
                ErrorKind::Authentication,
            ),
            "credential_in_query" => (
                "credentials are not accepted in the query string",
                ErrorKind::Authentication,
            ),
            "agent_scope_exceeds_person" => (
                "the acting agent asks for scopes its person does not hold",
                ErrorKind::Permission,
            ),
            "agent_without_person" => (
                "an agent key acts for a person: name the person's key id in x-acting-for",
                ErrorKind::Permission,
            ),
            "agent_not_bound_to_person" => (
                "this agent key may not act for that person",
                ErrorKind::Permission,
            ),
            "acting_for_without_agent_key" => (
                "only an agent key acts for a person (x-acting-for)",
                ErrorKind::Permission,
            ),
            _ => (INVALID_KEY, ErrorKind::Authentication),
        };
        let (body, content_type) = match self.rejection {
            Rejection::Anthropic => {
                let mut e = AiError::new(kind, message);
                if let Some(id) = request_id.and_then(|v| v.to_str().ok()) {
                    e = e.with_request_id(id.to_owned());
                }
                if openai {
                    // An OpenAI client (`/v1/chat/completions`) reads OpenAI's shape.
                    let body =
                        serde_json::to_vec(&ai_core::openai::error_body(&e)).unwrap_or_default();
                    (Bytes::from(body), "application/json")
                } else {
                    (e.to_json(), "application/json")
                }
            }
            Rejection::Grpc => {
                let code = if kind == ErrorKind::Permission {
                    "7"
                } else {
                    "16"
                };
                let mut resp = Response::new(Bytes::new());
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/grpc"),
                );
                h.insert("grpc-status", HeaderValue::from_static(code));
                h.insert(
                    "grpc-message",
                    HeaderValue::from_static(grpc_message(message)),
                );
                resp.extensions_mut().insert(AuthFailure(reason));
                return resp;
            }
            Rejection::PlainText => (
                Bytes::from(format!(
                    "{} {}: {message}\n",
                    kind.status().as_u16(),
                    kind.status().canonical_reason().unwrap_or("")
                )),
                "text/plain; charset=utf-8",
            ),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = kind.status();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(id) = request_id {
            resp.headers_mut().insert("request-id", id.clone());
        }
        resp.extensions_mut().insert(AuthFailure(reason));
        resp
    }
}

impl<S, B, RB> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    RB: Body<Data = Bytes>,
{
    type Response = Response<AuthBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let state = match self.shared.authenticate(req.headers(), req.uri().query()) {
            Check::Granted(granted) => {
                admit(&mut req, granted);
                FutureState::Inner {
                    fut: self.inner.call(req),
                }
            }
            Check::Refused(reason) => FutureState::Rejected {
                resp: Some(self.shared.reject(
                    reason,
                    req.headers().get("x-request-id"),
                    ai_core::openai::is_openai_caller(&req),
                )),
            },
            Check::Fetch(token, jwt) => {
                // The ready inner service goes with the request; a clone stays.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                FutureState::Fetching {
                    check: Box::pin(jwt.verify_fetching(token)),
                    waiting: Some((inner, req, self.shared.clone())),
                }
            }
        };
        ResponseFuture { state }
    }
}

type CheckFuture =
    Pin<Box<dyn Future<Output = Result<crate::jwt::Verified, &'static str>> + Send + 'static>>;

pin_project! {
    /// The response future of [`Auth`].
    #[must_use = "futures do nothing unless polled"]
    pub struct ResponseFuture<S: Service<Request<B>>, B> {
        #[pin]
        state: FutureState<S, B>,
    }
}

pin_project! {
    #[project = FutureStateProj]
    enum FutureState<S: Service<Request<B>>, B> {
        Inner { #[pin] fut: S::Future },
        Rejected { resp: Option<Response<Bytes>> },
        Fetching { check: CheckFuture, waiting: Option<(S, Request<B>, Arc<Shared>)> },
    }
}

impl<S: Service<Request<B>>, B> fmt::Debug for ResponseFuture<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResponseFuture { .. }")
    }
}

impl<S, B, RB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Output = Result<Response<AuthBody<RB>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                FutureStateProj::Inner { fut } => {
                    let resp = ready!(fut.poll(cx))?;
                    return Poll::Ready(Ok(resp.map(|inner| AuthBody {
                        kind: BodyKind::Inner { inner },
                    })));
                }
                FutureStateProj::Rejected { resp } => {
                    // Polled again after it answered: still a refusal, never a success.
                    let resp = resp.take().unwrap_or_else(|| {
                        let mut r = Response::new(Bytes::new());
                        *r.status_mut() = http::StatusCode::UNAUTHORIZED;
                        r
                    });
                    return Poll::Ready(Ok(resp.map(|b| AuthBody {
                        kind: BodyKind::Rejection {
                            bytes: (!b.is_empty()).then_some(b),
                        },
                    })));
                }
                FutureStateProj::Fetching { check, waiting } => {
                    let outcome = ready!(check.as_mut().poll(cx));
                    let Some((mut inner, mut req, shared)) = waiting.take() else {
                        let mut r = Response::new(AuthBody {
                            kind: BodyKind::Rejection { bytes: None },
                        });
                        *r.status_mut() = http::StatusCode::UNAUTHORIZED;
                        return Poll::Ready(Ok(r));
                    };
                    match outcome {
                        Ok(v) => {
                            admit(&mut req, (v.principal, v.models));
                            FutureState::Inner {
                                fut: inner.call(req),
                            }
                        }
                        Err(reason) => FutureState::Rejected {
                            resp: Some(shared.reject(
                                reason,
                                req.headers().get("x-request-id"),
                                ai_core::openai::is_openai_caller(&req),
                            )),
                        },
                    }
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}

pin_project! {
    /// The response body of [`Auth`]: the inner body, or the rejection's bytes.
    pub struct AuthBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<B> {
        Inner { #[pin] inner: B },
        Rejection { bytes: Option<Bytes> },
    }
}

impl<B> fmt::Debug for AuthBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            BodyKind::Inner { .. } => f.write_str("AuthBody::Inner"),
            BodyKind::Rejection { .. } => f.write_str("AuthBody::Rejection"),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for AuthBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            BodyKindProj::Inner { inner } => inner.poll_frame(cx),
            BodyKindProj::Rejection { bytes } => {
                Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner { inner } => inner.is_end_stream(),
            BodyKind::Rejection { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Inner { inner } => inner.size_hint(),
            BodyKind::Rejection { bytes } => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{KeyRecord, MintedKey, VERIFICATIONS};
    use crate::store::MemoryKeys;
    use http::StatusCode;
    use http_body_util::{BodyExt, Full};
    use tower::ServiceExt;

    struct Fixture {
        layer: AuthLayer,
        alice: String,
        bob: String,
        disabled: String,
        expired: String,
    }

    fn record(m: &MintedKey, subject: &str, tenant: &str) -> KeyRecord {
        serde_json::from_value(serde_json::json!({
            "id": m.id, "hash": m.hash, "subject": subject, "tenant": tenant,
            "scopes": ["messages"], "models": ["claude-sonnet-4-*"],
        }))
        .expect("record")
    }

    fn fixture() -> Fixture {
        let hasher = KeyHasher::new(b"test pepper, long enough").expect("pepper");
        let mint = || MintedKey::generate(&hasher).expect("mint");
        let (a, b, d, e) = (mint(), mint(), mint(), mint());
        let mut dr = record(&d, "dora", "acme");
        dr.disabled = true;
        let mut er = record(&e, "eve", "acme");
        er.expires_at = Some(1);
        let store = MemoryKeys::new(vec![
            record(&a, "alice", "acme"),
            record(&b, "bob", "globex"),
            dr,
            er,
        ])
        .expect("store");
        Fixture {
            layer: AuthLayer::keys(store, hasher),
            alice: a.key,
            bob: b.key,
            disabled: d.key,
            expired: e.key,
        }
    }

    /// The inner service answers with who it saw and which credential headers reached it.
    async fn call(
        layer: &AuthLayer,
        req: Request<()>,
    ) -> (StatusCode, String, Option<AuthFailure>) {
        let svc = layer.layer(tower::service_fn(|req: Request<()>| async move {
            let p = req
                .extensions()
                .get::<Principal>()
                .cloned()
                .expect("principal");
            let leaked = req.headers().contains_key("x-api-key")
                || req.headers().contains_key(header::AUTHORIZATION);
            let body = format!(
                "{}/{}/{leaked}",
                p.subject,
                p.tenant.as_deref().unwrap_or("-")
            );
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body))))
        }));
        let resp = svc.oneshot(req).await.expect("infallible");
        let status = resp.status();
        let failure = resp.extensions().get::<AuthFailure>().copied();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (
            status,
            String::from_utf8(body.to_vec()).expect("utf8"),
            failure,
        )
    }

    fn with_key(key: &str) -> Request<()> {
        Request::post("/v1/messages")
            .header("x-api-key", key)
            .body(())
            .expect("request")
    }

    #[tokio::test]
    async fn a_valid_key_yields_its_principal_and_goes_no_further() {
        let f = fixture();
        let (s, body, _) = call(&f.layer, with_key(&f.alice)).await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "alice/acme/false"));
        let bearer = Request::post("/")
            .header("authorization", format!("Bearer {}", f.bob))
            .body(())
            .expect("request");
        let (s, body, _) = call(&f.layer, bearer).await;
        assert_eq!((s, body.as_str()), (StatusCode::OK, "bob/globex/false"));
    }

    #[tokio::test]
    async fn every_bad_key_gets_the_same_answer_and_its_own_reason() {
        let f = fixture();
        let (_, good_body, _) = call(&f.layer, with_key(&f.alice)).await;
        assert!(good_body.starts_with("alice"));
        let alice_id = &f.alice[4..20];
        let bob_secret = &f.bob[21..];
        let cases = [
            (format!("gwk_{alice_id}_{bob_secret}"), "wrong_secret"),
            (format!("gwk_0000000000000000_{bob_secret}"), "unknown_key"),
            (f.disabled.clone(), "disabled_key"),
            (f.expired.clone(), "expired_key"),
            ("garbage".to_owned(), "malformed_key"),
            (f.alice[..f.alice.len() - 1].to_owned(), "malformed_key"),
            ("x".repeat(1 << 20), "malformed_key"),
            ("alg=none.e30.".to_owned(), "malformed_key"),
        ];
        let mut bodies = Vec::new();
        for (key, reason) in cases {
            let (s, body, failure) = call(&f.layer, with_key(&key)).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{reason}");
            assert_eq!(failure, Some(AuthFailure(reason)));
            let v: serde_json::Value = serde_json::from_str(&body).expect("json");
            assert_eq!(v["error"]["type"], "authentication_error");
            bodies.push(body);
        }
        assert!(
            bodies.windows(2).all(|w| w[0] == w[1]),
            "one message for all: {bodies:?}"
        );
    }

    #[tokio::test]
    async fn an_unknown_key_costs_the_same_check_as_a_wrong_secret() {
        let f = fixture();
        let alice_id = &f.alice[4..20];
        let secret = &f.bob[21..];
        for key in [
            format!("gwk_{alice_id}_{secret}"),
            format!("gwk_0000000000000000_{secret}"),
        ] {
            VERIFICATIONS.with(|c| c.set(0));
            let _ = call(&f.layer, with_key(&key)).await;
            assert_eq!(
                VERIFICATIONS.with(|c| c.get()),
                1,
                "one HMAC check for {key}"
            );
        }
    }

    #[tokio::test]
    async fn credentials_in_the_query_string_are_refused() {
        let f = fixture();
        for q in [
            format!("/v1/messages?api_key={}", f.alice),
            "/v1/messages?beta=true&key=x".to_owned(),
            format!("/v1/messages?x={}", f.alice),
            format!("/v1/messages?auth=Bearer%20{}", f.alice),
            format!("/v1/messages?x=GWK%5F{}", &f.alice[4..]),
            "/v1/messages?a=1;Key=abc".to_owned(),
        ] {
            let req = Request::post(q.as_str())
                .header("x-api-key", &f.alice)
                .body(())
                .expect("request");
            let (s, body, failure) = call(&f.layer, req).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{q}");
            assert_eq!(failure, Some(AuthFailure("credential_in_query")));
            assert!(body.contains("query string"));
        }
        let req = Request::post("/v1/messages?beta=true")
            .header("x-api-key", &f.alice)
            .body(())
            .expect("request");
        assert_eq!(call(&f.layer, req).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn an_agent_key_acts_for_its_bound_person_and_never_gains_a_scope() {
        let hasher = KeyHasher::new(b"test pepper, long enough").expect("pepper");
        let mint = || MintedKey::generate(&hasher).expect("mint");
        let (alice, bob, bot, greedy) = (mint(), mint(), mint(), mint());
        let rec = |m: &MintedKey, v: serde_json::Value| -> KeyRecord {
            let mut base = serde_json::json!({"id": m.id, "hash": m.hash});
            for (k, x) in v.as_object().expect("object") {
                base[k] = x.clone();
            }
            serde_json::from_value(base).expect("record")
        };
        let store = MemoryKeys::new(vec![
            rec(&alice, serde_json::json!({"subject": "alice", "tenant": "acme", "scopes": ["messages", "models"], "models": ["claude-*"]})),
            rec(&bob, serde_json::json!({"subject": "bob", "tenant": "acme", "scopes": ["messages"]})),
            rec(&bot, serde_json::json!({"subject": "agent:release-bot", "kind": "agent", "acts_for": [alice.id], "scopes": ["messages"]})),
            rec(&greedy, serde_json::json!({"subject": "agent:greedy", "kind": "agent", "acts_for": [bob.id], "scopes": ["messages", "models"]})),
        ])
        .expect("store");
        let layer = AuthLayer::keys(store, hasher);
        let svc = layer.layer(tower::service_fn(|req: Request<()>| async move {
            let p = req
                .extensions()
                .get::<Principal>()
                .cloned()
                .expect("principal");
            let m = req
                .extensions()
                .get::<ai_core::AllowedModels>()
                .cloned()
                .expect("models");
            assert!(req.headers().get(ACTING_FOR).is_none());
            let body = format!(
                "{}/{}/{}/{}",
                p.subject,
                p.agent.as_deref().unwrap_or("-"),
                p.scopes.iter().map(|s| &**s).collect::<Vec<_>>().join(","),
                m.allows("claude-x")
            );
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body))))
        }));
        let ask = |key: &str, person: Option<&str>| {
            let mut r = Request::post("/").header("x-api-key", key);
            if let Some(p) = person {
                r = r.header(ACTING_FOR, p);
            }
            r.body(()).expect("request")
        };
        let run = |req| {
            let svc = svc.clone();
            async move {
                let resp = svc.oneshot(req).await.expect("infallible");
                let status = resp.status();
                let f = resp.extensions().get::<AuthFailure>().copied();
                let b = resp.into_body().collect().await.expect("body").to_bytes();
                (status, f, String::from_utf8_lossy(&b).into_owned())
            }
        };
        let (s, _, body) = run(ask(&bot.key, Some(&alice.id))).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            body, "alice/agent:release-bot/messages/true",
            "the person, the agent, the narrower scopes, the person's models"
        );
        for (req, reason) in [
            (ask(&bot.key, None), "agent_without_person"),
            (ask(&bot.key, Some(&bob.id)), "agent_not_bound_to_person"),
            (
                ask(&bot.key, Some("0000000000000000")),
                "agent_not_bound_to_person",
            ),
            (
                ask(&greedy.key, Some(&bob.id)),
                "agent_scope_exceeds_person",
            ),
            (
                ask(&alice.key, Some(&bob.id)),
                "acting_for_without_agent_key",
            ),
        ] {
            let (s, f, body) = run(req).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{reason}: {body}");
            assert_eq!(f, Some(AuthFailure(reason)));
            assert!(body.contains("permission_error"), "{body}");
        }
        // A wrong agent secret is still the generic 401.
        let wrong = format!("gwk_{}_{}", bot.id, &alice.key[21..]);
        assert_eq!(
            run(ask(&wrong, Some(&alice.id))).await.0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn a_missing_key_says_how_to_send_one_and_plain_text_fits_plain_services() {
        let f = fixture();
        let (s, body, failure) = call(&f.layer, Request::get("/").body(()).expect("request")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(failure, Some(AuthFailure("missing_credential")));
        assert!(body.contains("x-api-key"), "{body}");
        let plain = f.layer.clone().rejection(Rejection::PlainText);
        let (s, body, _) = call(&plain, with_key("nope")).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(body, "401 Unauthorized: invalid api key\n");
    }
}
