//! [`FileSink`]: append-only JSONL segments, hash-chained, with signed checkpoints.
//!
//! Files are `audit-<segment, 10 digits>.jsonl` in one directory. Each segment starts
//! with a `segment_start` line whose `prev` is the hash of the previous segment's last
//! line (its seal), so the chain runs across segments. A signed `checkpoint` follows every
//! `checkpoint_every` records and, when records were written, every
//! `checkpoint_interval`; a signed `seal` ends a segment (rotation by size or age,
//! shutdown, or recovery after a crash).
//!
//! On open, the last segment is recovered: a line torn by a crash (no newline) is cut off
//! (it was never acknowledged: acknowledgement follows `fsync`), the segment is sealed
//! with reason `recovered` if it was not sealed, and a new segment starts.

use crate::chain::{self, SigningKey};
use crate::hash::{Digest, sha256};
use crate::sink::Sink;
use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Settings of a [`FileSink`].
#[derive(Debug, Clone)]
pub struct FileSinkConfig {
    /// The directory of the segments (created if missing).
    pub dir: PathBuf,
    /// Start a new segment when the current one reaches this size. Default 64 MiB.
    pub rotate_size: u64,
    /// Start a new segment when the current one is this old (and holds records).
    /// Default 24 hours.
    pub rotate_interval: Duration,
    /// A signed checkpoint after this many records. Default 1000.
    pub checkpoint_every: u64,
    /// A signed checkpoint this long after the last one when records came since.
    /// Default 10 seconds.
    pub checkpoint_interval: Duration,
    /// The key that signs checkpoints and seals.
    pub key: Arc<SigningKey>,
}

impl FileSinkConfig {
    /// Defaults for `dir`, signing with `key`.
    pub fn new(dir: impl Into<PathBuf>, key: SigningKey) -> Self {
        FileSinkConfig {
            dir: dir.into(),
            rotate_size: 64 * 1024 * 1024,
            rotate_interval: Duration::from_secs(24 * 3600),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(10),
            key: Arc::new(key),
        }
    }
}

/// The name of segment `n`.
pub fn segment_name(n: u64) -> String {
    format!("audit-{n:010}.jsonl")
}

/// The segment number in a file name, if it is a segment.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, sorted by number.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_segment_name) {
            out.push((n, entry.path()));
        }
    }
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// The hash-chained, signed segment log (see the module docs).
#[derive(Debug)]
pub struct FileSink {
    cfg: FileSinkConfig,
    file: File,
    segment: u64,
    /// The `seq` of the next line.
    seq: u64,
    /// Hash of the last line written.
    head: Digest,
    size: u64,
    opened: Instant,
    records_in_segment: u64,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    buf: Vec<u8>,
    /// The current file has no `segment_start` yet (its write failed): the next append
    /// writes it first.
    needs_start: bool,
    /// A rotation is due but failed (e.g. the disk was full): retried on the next append
    /// and tick.
    rotate_due: Option<&'static str>,
}

#[derive(serde::Deserialize)]
struct Tail {
    seq: u64,
    kind: String,
}

impl FileSink {
    /// Opens the log in `cfg.dir`: recovers the last segment, then starts a new one.
    pub fn open(cfg: FileSinkConfig) -> io::Result<Self> {
        fs::create_dir_all(&cfg.dir)?;
        let mut segments = list_segments(&cfg.dir)?;
        // A segment file created just before a crash, with nothing in it yet.
        while let Some((_, path)) = segments.last() {
            if fs::metadata(path)?.len() > 0 {
                break;
            }
            fs::remove_file(path)?;
            segments.pop();
        }
        let (segment, seq, head) = match segments.last() {
            None => (1, 0, [0u8; 32]),
            Some((n, path)) => {
                let (seq, head) = recover(path, *n, &cfg.key)?;
                (n + 1, seq, head)
            }
        };
        let path = cfg.dir.join(segment_name(segment));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        let mut sink = FileSink {
            file,
            segment,
            seq,
            head,
            size: 0,
            opened: Instant::now(),
            records_in_segment: 0,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            buf: Vec::with_capacity(64 * 1024),
            needs_start: false,
            rotate_due: None,
            cfg,
        };
        sink.buf.clear();
        sink.push_segment_start();
        sink.flush_buf()?;
        sink.file.sync_all()?;
        sync_dir(&sink.cfg.dir)?;
        Ok(sink)
    }

    /// The current segment number.
    pub fn segment(&self) -> u64 {
        self.segment
    }

    /// The `seq` the next line will get.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    fn push_line(&mut self, body: &[u8]) {
        let start = self.buf.len();
        chain::line(self.seq, &self.head, body, &mut self.buf);
        self.head = sha256(&self.buf[start..]);
        self.buf.push(b'\n');
        self.seq += 1;
    }

    fn push_segment_start(&mut self) {
        let body = serde_json::json!({
            "kind": "segment_start",
            "format": chain::FORMAT,
            "segment": self.segment,
            "at": now_rfc3339(),
            "key_id": self.cfg.key.public_key().key_id(),
            "checkpoint_every": self.cfg.checkpoint_every,
        });
        self.push_line(body.to_string().as_bytes());
    }

    fn push_signed(&mut self, kind: &str, reason: Option<&str>) {
        let prev = crate::hash::hex(&self.head);
        let sig = self
            .cfg
            .key
            .sign(chain::signed_message(self.segment, self.seq, &prev).as_bytes());
        let mut body = serde_json::json!({
            "kind": kind,
            "segment": self.segment,
            "at": now_rfc3339(),
            "key_id": self.cfg.key.public_key().key_id(),
            "sig": sig,
        });
        if let Some(r) = reason {
            body["reason"] = serde_json::Value::from(r);
        }
        self.push_line(body.to_string().as_bytes());
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.file.write_all(&self.buf)?;
        self.size += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes the buffered lines, or puts everything back as it was.
    fn commit(&mut self, saved: Saved) -> io::Result<()> {
        if let Err(e) = self.flush_buf() {
            // Cut whatever part of the batch reached the file.
            let _ = self.file.set_len(saved.size);
            let _ = self.file.seek(SeekFrom::End(0));
            self.restore(saved);
            return Err(e);
        }
        Ok(())
    }

    fn save(&self) -> Saved {
        Saved {
            seq: self.seq,
            head: self.head,
            size: self.size,
            since_checkpoint: self.since_checkpoint,
            records_in_segment: self.records_in_segment,
            last_checkpoint: self.last_checkpoint,
        }
    }

    fn restore(&mut self, s: Saved) {
        self.seq = s.seq;
        self.head = s.head;
        self.size = s.size;
        self.since_checkpoint = s.since_checkpoint;
        self.records_in_segment = s.records_in_segment;
        self.last_checkpoint = s.last_checkpoint;
        self.buf.clear();
    }

    /// Seals the current segment and starts the next. The next file is created first, so
    /// a failure leaves the current segment open and unsealed (the rotation is retried);
    /// once sealed, nothing more is written to it.
    fn rotate(&mut self, reason: &'static str) -> io::Result<()> {
        let next = self.segment + 1;
        let next_path = self.cfg.dir.join(segment_name(next));
        let file = match OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&next_path)
        {
            Ok(f) => f,
            Err(e) => {
                self.rotate_due = Some(reason);
                return Err(e);
            }
        };
        let saved = self.save();
        self.buf.clear();
        self.push_signed("seal", Some(reason));
        if let Err(e) = self.commit(saved).and_then(|()| self.file.sync_all()) {
            let _ = fs::remove_file(&next_path);
            self.rotate_due = Some(reason);
            return Err(e);
        }
        self.rotate_due = None;
        self.file = file;
        self.segment = next;
        self.size = 0;
        self.records_in_segment = 0;
        self.opened = Instant::now();
        self.needs_start = true;
        self.write_start()?;
        sync_dir(&self.cfg.dir)
    }

    /// Writes the `segment_start` of a new file (kept due when it fails).
    fn write_start(&mut self) -> io::Result<()> {
        let saved = self.save();
        self.buf.clear();
        self.push_segment_start();
        self.commit(saved)?;
        self.needs_start = false;
        self.file.sync_all()
    }
}

struct Saved {
    seq: u64,
    head: Digest,
    size: u64,
    since_checkpoint: u64,
    records_in_segment: u64,
    last_checkpoint: Instant,
}

impl Sink for FileSink {
    fn append(&mut self, batch: &[Bytes]) -> io::Result<()> {
        if self.needs_start {
            self.write_start()?;
        }
        let saved = self.save();
        self.buf.clear();
        for r in batch {
            self.push_line(r);
            self.records_in_segment += 1;
            self.since_checkpoint += 1;
            if self.since_checkpoint >= self.cfg.checkpoint_every {
                self.push_signed("checkpoint", None);
            }
        }
        self.commit(saved)?;
        // The batch is written: a rotation that fails now is retried later, never
        // reported as a failure of the batch (which would then be written twice).
        let due = self
            .rotate_due
            .or((self.size >= self.cfg.rotate_size).then_some("size"));
        if let Some(reason) = due {
            if let Err(e) = self.rotate(reason) {
                tracing::warn!(error = %e, "audit log: rotation failed; retrying later");
            }
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn tick(&mut self) -> io::Result<()> {
        if self.needs_start {
            self.write_start()?;
        }
        if let Some(reason) = self.rotate_due {
            self.rotate(reason)?;
        }
        if self.since_checkpoint > 0
            && self.last_checkpoint.elapsed() >= self.cfg.checkpoint_interval
        {
            let saved = self.save();
            self.buf.clear();
            self.push_signed("checkpoint", None);
            self.commit(saved)?;
            self.file.sync_data()?;
        }
        if self.records_in_segment > 0 && self.opened.elapsed() >= self.cfg.rotate_interval {
            self.rotate("age")?;
        }
        Ok(())
    }

    fn close(&mut self) -> io::Result<()> {
        if self.needs_start {
            self.write_start()?;
        }
        let saved = self.save();
        self.buf.clear();
        self.push_signed("seal", Some("shutdown"));
        self.commit(saved)?;
        self.file.sync_all()
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // Makes a new file's directory entry durable (POSIX: fsync the directory).
    File::open(dir)?.sync_all()
}

/// Recovers segment `n` at `path` after a stop: cuts a torn last line, seals it when it
/// is not sealed. Returns the next `seq` and the hash of its last line.
fn recover(path: &Path, n: u64, key: &SigningKey) -> io::Result<(u64, Digest)> {
    let mut data = fs::read(path)?;
    let mut file = OpenOptions::new().append(true).open(path)?;
    let complete = match data.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None => 0,
    };
    if complete < data.len() {
        tracing::warn!(
            segment = n,
            torn_bytes = data.len() - complete,
            "audit log: cutting a line torn by a crash (never acknowledged)"
        );
        file.set_len(complete as u64)?;
        data.truncate(complete);
    }
    let body = &data[..complete.saturating_sub(1)];
    let last = match body.iter().rposition(|&b| b == b'\n') {
        Some(i) => &body[i + 1..],
        None => body,
    };
    if last.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "audit segment {} is empty: the log cannot be continued",
                path.display()
            ),
        ));
    }
    let tail: Tail = serde_json::from_slice(last).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "audit segment {}: last line is not an entry ({e}); run audit-verify",
                path.display()
            ),
        )
    })?;
    let mut head = sha256(last);
    let mut seq = tail.seq + 1;
    if tail.kind != "seal" {
        let prev = crate::hash::hex(&head);
        let sig = key.sign(chain::signed_message(n, seq, &prev).as_bytes());
        let body = serde_json::json!({
            "kind": "seal",
            "segment": n,
            "at": now_rfc3339(),
            "key_id": key.public_key().key_id(),
            "sig": sig,
            "reason": "recovered",
        });
        let mut line = Vec::new();
        chain::line(seq, &head, body.to_string().as_bytes(), &mut line);
        head = sha256(&line);
        line.push(b'\n');
        file.seek(SeekFrom::End(0))?;
        file.write_all(&line)?;
        file.sync_all()?;
        seq += 1;
        tracing::info!(
            segment = n,
            "audit log: sealed the segment left open by the last run"
        );
    }
    Ok((seq, head))
}
