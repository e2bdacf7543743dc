//! Feature `ocr`: text in images, read by the real Tesseract (Debian `tesseract-ocr`,
//! installed by `scripts/test.sh`), goes through the same detectors. The images in
//! `tests/images/` were rendered for this project: a photographed card, a clinical note
//! and a chart without personal data.

use ai_core::test_util::{MockProvider, Script};
use ai_core::{DataCategory, DataClassification, MessagesRequest};
use ai_redact::ocr::Ocr;
use ai_redact::{Action, RedactLayer, RedactPolicy, Redactor};
use base64::Engine;
use tower::{Layer, ServiceExt};

fn image_request(file: &str) -> http::Request<MessagesRequest> {
    let path = format!("{}/tests/images/{file}", env!("CARGO_MANIFEST_DIR"));
    let data =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).expect("image"));
    let body = serde_json::json!({
        "model": "m", "max_tokens": 32,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What does this say?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}},
        ]}],
    });
    http::Request::new(serde_json::from_value(body).expect("request"))
}

fn layer(policy: RedactPolicy, mock: &MockProvider) -> ai_redact::RedactService<MockProvider> {
    RedactLayer::new(Redactor::new(policy))
        .ocr(Ocr::new())
        .layer(mock.clone())
}

#[tokio::test]
async fn a_photographed_card_is_classified_and_never_sent() {
    let mock = MockProvider::always(Script::text("ok"));
    layer(RedactPolicy::default(), &mock)
        .oneshot(image_request("card_photo.png"))
        .await
        .expect("ok");
    let seen = &mock.requests()[0];
    let c = seen.extensions.get::<DataClassification>().expect("class");
    assert!(c.messages.categories.contains(DataCategory::Pci), "{c:?}");
    let sent = serde_json::to_string(&seen.body).expect("json");
    assert!(
        sent.contains("[IMAGE REMOVED: pci]"),
        "{}",
        &sent[..sent.len().min(300)]
    );
    assert!(!sent.contains("\"image\""), "the image itself is not sent");
}

#[tokio::test]
async fn a_clinical_note_in_an_image_can_block() {
    let mock = MockProvider::always(Script::text("ok"));
    let e = layer(
        RedactPolicy::default().set(DataCategory::Phi, Action::Block),
        &mock,
    )
    .oneshot(image_request("clinical_note.png"))
    .await
    .expect_err("blocked");
    assert_eq!(e.status(), 403);
    assert!(e.message().contains("phi"), "{}", e.message());
    assert!(!e.message().contains("00482913"));
    assert!(mock.requests().is_empty());
}

#[tokio::test]
async fn an_image_without_sensitive_text_goes_through_unchanged() {
    let mock = MockProvider::always(Script::text("ok"));
    let req = image_request("chart.png");
    let before = req.body().clone();
    layer(RedactPolicy::default(), &mock)
        .oneshot(req)
        .await
        .expect("ok");
    let seen = &mock.requests()[0];
    assert_eq!(seen.body, before);
    let c = seen.extensions.get::<DataClassification>().expect("class");
    assert!(c.overall().categories.is_empty());
}

#[tokio::test]
async fn an_image_that_cannot_be_read_is_refused() {
    let mock = MockProvider::always(Script::text("ok"));
    let svc = RedactLayer::new(Redactor::new(RedactPolicy::default()))
        .ocr(Ocr::new().program("/nonexistent/tesseract"))
        .layer(mock.clone());
    let e = svc
        .oneshot(image_request("chart.png"))
        .await
        .expect_err("fail closed");
    assert_eq!(e.status(), 503);
    assert!(mock.requests().is_empty());
}
