//! Text in images (feature `ocr`): base64 images are read with Tesseract (the Debian
//! package `tesseract-ocr` with its `tesseract-ocr-eng` data) and the text goes through
//! the same detectors, so a photographed card or clinical note is classified too.
//!
//! Tesseract runs as a child process (`tesseract stdin stdout`), with a timeout, one image
//! at a time per request; the async runtime is never blocked.

use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How images are read.
#[derive(Clone, Debug)]
pub struct Ocr {
    program: PathBuf,
    lang: String,
    timeout: Duration,
    max_images: usize,
    max_bytes: usize,
}

impl Default for Ocr {
    fn default() -> Self {
        Ocr {
            program: PathBuf::from("tesseract"),
            lang: "eng".to_owned(),
            timeout: Duration::from_secs(10),
            max_images: 8,
            max_bytes: 20 << 20,
        }
    }
}

/// Why an image could not be read.
#[derive(Debug)]
pub struct OcrError(pub String);

impl fmt::Display for OcrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for OcrError {}

impl Ocr {
    /// `tesseract` from `PATH`, English, 10 s per image, at most 8 images of 20 MiB each.
    pub fn new() -> Self {
        Ocr::default()
    }

    /// The Tesseract binary.
    pub fn program(mut self, path: impl Into<PathBuf>) -> Self {
        self.program = path.into();
        self
    }

    /// Tesseract languages, e.g. `eng+hin`.
    pub fn lang(mut self, lang: impl Into<String>) -> Self {
        self.lang = lang.into();
        self
    }

    /// Longest one image may take.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Most images read per request; a request with more is refused (fail closed).
    pub fn max_images(mut self, n: usize) -> Self {
        self.max_images = n;
        self
    }

    /// The most images one request may carry.
    pub fn image_limit(&self) -> usize {
        self.max_images
    }

    /// The text Tesseract reads in `image` (PNG, JPEG, GIF, WebP, TIFF, BMP bytes).
    pub async fn read(&self, image: &[u8]) -> Result<String, OcrError> {
        if image.len() > self.max_bytes {
            return Err(OcrError(format!(
                "an image of {} bytes is over the OCR limit",
                image.len()
            )));
        }
        let mut child = tokio::process::Command::new(&self.program)
            .args(["stdin", "stdout", "-l", &self.lang])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| OcrError(format!("cannot run {}: {e}", self.program.display())))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| OcrError("no stdin".to_owned()))?;
        let mut stdout = child
            .stdout
            .take()
            .ok_or_else(|| OcrError("no stdout".to_owned()))?;
        let work = async {
            let data = image.to_vec();
            let write = async move {
                let r = stdin.write_all(&data).await;
                drop(stdin);
                r
            };
            let mut out = Vec::new();
            let (w, r) = tokio::join!(write, stdout.read_to_end(&mut out));
            w.and(r).map_err(|e| OcrError(format!("OCR pipe: {e}")))?;
            let status = child
                .wait()
                .await
                .map_err(|e| OcrError(format!("OCR: {e}")))?;
            if !status.success() {
                return Err(OcrError(format!("tesseract exited with {status}")));
            }
            Ok(String::from_utf8_lossy(&out).into_owned())
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| OcrError(format!("OCR took longer than {:?}", self.timeout)))?
    }
}
