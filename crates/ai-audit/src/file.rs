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
    /// Bytes written to the current file since its last successful fsync, and the file's
    /// length then. After a failed fsync the kernel may have dropped those pages while
    /// marking them clean, so a later fsync proves nothing: the tail is cut and written
    /// again before the next one.
    unsynced: Vec<u8>,
    synced_len: u64,
    sync_failed: bool,
    /// Cutting a failed write off the file failed too: nothing is written until the file
    /// is back to `size`.
    needs_repair: bool,
    /// The current file has no `segment_start` yet (its write failed).
    needs_start: bool,
    /// A rotation is due but failed (e.g. the disk was full): retried on the next append
    /// and tick.
    rotate_due: Option<&'static str>,
    /// Held for the sink's lifetime: one writer per directory.
    _lock: DirLock,
}

#[derive(Clone, Copy)]
struct Saved {
    seq: u64,
    head: Digest,
    size: u64,
    since_checkpoint: u64,
    records_in_segment: u64,
    last_checkpoint: Instant,
    unsynced_len: usize,
}

/// An exclusive lock on `<dir>/.lock` (flock on Unix): a second gateway on the same
/// directory would seal the first one's open segment and both chains would break.
#[derive(Debug)]
struct DirLock(#[allow(dead_code)] File);

impl DirLock {
    fn take(dir: &Path) -> io::Result<Self> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))?;
        #[cfg(unix)]
        rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "{} is in use by another process (one writer per audit directory)",
                        dir.display()
                    ),
                )
            },
        )?;
        Ok(DirLock(f))
    }
}

impl FileSink {
    /// Opens the log in `cfg.dir`: recovers the last segment, then starts a new one.
    /// Fails when another process writes to the directory.
    pub fn open(cfg: FileSinkConfig) -> io::Result<Self> {
        fs::create_dir_all(&cfg.dir)?;
        let lock = DirLock::take(&cfg.dir)?;
        let mut segments = list_segments(&cfg.dir)?;
        let mut state = None;
        while let Some((n, path)) = segments.last() {
            // A segment created just before a crash, with nothing (whole) in it yet, is
            // removed; the one before it is recovered.
            match recover(path, *n, &cfg.key)? {
                Some(s) => {
                    state = Some((n + 1, s.0, s.1));
                    break;
                }
                None => {
                    tracing::warn!(
                        segment = n,
                        "audit log: removing a segment left empty by a crash"
                    );
                    fs::remove_file(path)?;
                    segments.pop();
                }
            }
        }
        let (segment, seq, head) = state.unwrap_or((1, 0, [0u8; 32]));
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
            unsynced: Vec::new(),
            synced_len: 0,
            sync_failed: false,
            needs_repair: false,
            needs_start: true,
            rotate_due: None,
            _lock: lock,
            cfg,
        };
        sink.write_start()?;
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

    /// A signed entry: `kind` `segment_start`, `checkpoint` or `seal`.
    fn push_signed(&mut self, kind: &str, reason: Option<&str>) {
        let prev = crate::hash::hex(&self.head);
        let reason_text = match kind {
            "segment_start" => Some(self.cfg.checkpoint_every.to_string()),
            _ => reason.map(str::to_owned),
        };
        let sig = self.cfg.key.sign(
            chain::signed_message(self.segment, self.seq, &prev, kind, reason_text.as_deref())
                .as_bytes(),
        );
        let mut body = serde_json::json!({
            "kind": kind,
            "segment": self.segment,
            "at": now_rfc3339(),
            "key_id": self.cfg.key.public_key().key_id(),
        });
        if kind == "segment_start" {
            body["format"] = serde_json::Value::from(chain::FORMAT);
            body["checkpoint_every"] = serde_json::Value::from(self.cfg.checkpoint_every);
        } else {
            self.since_checkpoint = 0;
            self.last_checkpoint = Instant::now();
        }
        if let Some(r) = reason {
            body["reason"] = serde_json::Value::from(r);
        }
        body["sig"] = serde_json::Value::from(sig);
        self.push_line(body.to_string().as_bytes());
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.file.write_all(&self.buf)?;
        self.size += self.buf.len() as u64;
        self.unsynced.extend_from_slice(&self.buf);
        self.buf.clear();
        Ok(())
    }

    /// Puts the file back to `size` after a failed write or a failed rotation.
    fn repair(&mut self) -> io::Result<()> {
        if self.needs_repair {
            self.file.set_len(self.size)?;
            self.file.seek(SeekFrom::End(0))?;
            self.needs_repair = false;
        }
        Ok(())
    }

    /// Writes the buffered lines, or puts everything back as it was.
    fn commit(&mut self, saved: Saved) -> io::Result<()> {
        if let Err(e) = self.flush_buf() {
            self.rollback(saved);
            return Err(e);
        }
        Ok(())
    }

    /// Cuts what was written since `saved` and restores the chain state.
    fn rollback(&mut self, saved: Saved) {
        self.restore(saved);
        if self.file.set_len(saved.size).is_err() || self.file.seek(SeekFrom::End(0)).is_err() {
            self.needs_repair = true;
        }
    }

    fn save(&self) -> Saved {
        Saved {
            seq: self.seq,
            head: self.head,
            size: self.size,
            since_checkpoint: self.since_checkpoint,
            records_in_segment: self.records_in_segment,
            last_checkpoint: self.last_checkpoint,
            unsynced_len: self.unsynced.len(),
        }
    }

    fn restore(&mut self, s: Saved) {
        self.seq = s.seq;
        self.head = s.head;
        self.size = s.size;
        self.since_checkpoint = s.since_checkpoint;
        self.records_in_segment = s.records_in_segment;
        self.last_checkpoint = s.last_checkpoint;
        self.unsynced.truncate(s.unsynced_len);
        self.buf.clear();
    }

    /// fsync, rewriting the unsynced tail first when an earlier fsync failed.
    fn sync_file(&mut self) -> io::Result<()> {
        if self.sync_failed {
            self.file.set_len(self.synced_len)?;
            self.file.seek(SeekFrom::End(0))?;
            self.file.write_all(&self.unsynced)?;
        }
        match self.file.sync_data() {
            Ok(()) => {
                self.sync_failed = false;
                self.synced_len = self.size;
                self.unsynced.clear();
                Ok(())
            }
            Err(e) => {
                self.sync_failed = true;
                Err(e)
            }
        }
    }

    /// Seals the current segment and starts the next. The next file is created first and
    /// the seal is cut off again when it cannot be made durable, so a failure leaves the
    /// current segment open (the rotation is retried) and a sealed segment never gets
    /// another line.
    fn rotate(&mut self, reason: &'static str) -> io::Result<()> {
        self.rotate_due = Some(reason);
        self.repair()?;
        let next = self.segment + 1;
        let next_path = self.cfg.dir.join(segment_name(next));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&next_path)?;
        let saved = self.save();
        self.buf.clear();
        self.push_signed("seal", Some(reason));
        if let Err(e) = self.commit(saved).and_then(|()| self.sync_file()) {
            if self.size != saved.size {
                self.rollback(saved);
            }
            let _ = fs::remove_file(&next_path);
            return Err(e);
        }
        self.rotate_due = None;
        self.file = file;
        self.segment = next;
        self.size = 0;
        self.synced_len = 0;
        self.unsynced.clear();
        self.records_in_segment = 0;
        self.opened = Instant::now();
        self.needs_start = true;
        self.write_start()
    }

    /// Writes the signed `segment_start` of a new file and makes the file and its
    /// directory entry durable (kept due when it fails).
    fn write_start(&mut self) -> io::Result<()> {
        self.repair()?;
        let saved = self.save();
        self.buf.clear();
        self.push_signed("segment_start", None);
        self.commit(saved)?;
        if let Err(e) = self.sync_file().and_then(|()| sync_dir(&self.cfg.dir)) {
            self.rollback(saved);
            return Err(e);
        }
        self.needs_start = false;
        Ok(())
    }

    fn ready(&mut self) -> io::Result<()> {
        self.repair()?;
        if self.needs_start {
            self.write_start()?;
        }
        Ok(())
    }
}

impl Sink for FileSink {
    fn append(&mut self, batch: &[Bytes]) -> io::Result<()> {
        self.ready()?;
        let saved = self.save();
        self.buf.clear();
        for r in batch {
            // Only JSON objects on one line can be entries.
            if r.first() != Some(&b'{') || r.contains(&b'\n') {
                tracing::error!("audit log: refusing a record that is not a one-line JSON object");
                continue;
            }
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
        self.ready()?;
        self.sync_file()
    }

    fn tick(&mut self) -> io::Result<()> {
        self.ready()?;
        if self.sync_failed {
            self.sync_file()?;
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
            self.sync_file()?;
        }
        if self.records_in_segment > 0 && self.opened.elapsed() >= self.cfg.rotate_interval {
            self.rotate("age")?;
        }
        Ok(())
    }

    fn close(&mut self) -> io::Result<()> {
        self.ready()?;
        let saved = self.save();
        self.buf.clear();
        self.push_signed("seal", Some("shutdown"));
        self.commit(saved)?;
        self.sync_file()
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // Makes a new file's directory entry durable (POSIX: fsync the directory).
    File::open(dir)?.sync_all()
}

#[derive(serde::Deserialize)]
struct Tail {
    seq: u64,
    prev: String,
    kind: String,
}

/// Recovers segment `n` at `path` after a stop. A tail a crash left behind (a torn last
/// line, or zero-filled blocks) was never acknowledged (acknowledgement follows fsync) and
/// is cut; the segment is sealed (`recovered`) when it was not. Any other damage refuses
/// the start: recovery never cuts what could be evidence. Returns the next `seq` and the
/// hash of the last line, or `None` when nothing whole is left (the caller removes the
/// file).
fn recover(path: &Path, n: u64, key: &SigningKey) -> io::Result<Option<(u64, Digest)>> {
    let data = fs::read(path)?;
    let damaged = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "audit segment {}: {what}; run audit-verify, the log cannot be continued",
                path.display()
            ),
        )
    };
    // Walk the chain of this segment; stop at the first line that is not a whole entry.
    let mut good = 0usize;
    let mut last: Option<(u64, Digest, String)> = None;
    let mut pos = 0usize;
    while pos < data.len() {
        let Some(len) = data[pos..].iter().position(|&b| b == b'\n') else {
            break;
        };
        let line = &data[pos..pos + len];
        let Ok(t) = serde_json::from_slice::<Tail>(line) else {
            break;
        };
        let h = sha256(line);
        if let Some((seq, head, _)) = &last {
            if t.seq != seq + 1 || t.prev != crate::hash::hex(head) {
                return Err(damaged(format!("the chain breaks at byte {pos}")));
            }
        }
        last = Some((t.seq, h, t.kind));
        pos += len + 1;
        good = pos;
    }
    let tail = &data[good..];
    if !tail.is_empty() {
        // A torn last line, or blocks a crash left zero-filled: nothing after them.
        let torn_line = !tail[..tail.len() - 1].contains(&b'\n');
        let zeros = tail.iter().all(|&b| b == 0 || b == b'\n');
        if !torn_line && !zeros {
            return Err(damaged(format!("unreadable entries after byte {good}")));
        }
        tracing::warn!(
            segment = n,
            bytes = tail.len(),
            "audit log: cutting a tail torn by a crash (never acknowledged)"
        );
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(good as u64)?;
        f.sync_all()?;
    }
    let Some((seq, mut head, kind)) = last else {
        return Ok(None);
    };
    let mut next = seq + 1;
    if kind != "seal" {
        let prev = crate::hash::hex(&head);
        let sig =
            key.sign(chain::signed_message(n, next, &prev, "seal", Some("recovered")).as_bytes());
        let body = serde_json::json!({
            "kind": "seal",
            "segment": n,
            "at": now_rfc3339(),
            "key_id": key.public_key().key_id(),
            "reason": "recovered",
            "sig": sig,
        });
        let mut line = Vec::new();
        chain::line(next, &head, body.to_string().as_bytes(), &mut line);
        head = sha256(&line);
        line.push(b'\n');
        let mut f = OpenOptions::new().append(true).open(path)?;
        f.write_all(&line)?;
        f.sync_all()?;
        next += 1;
        tracing::info!(
            segment = n,
            "audit log: sealed the segment left open by the last run"
        );
    }
    Ok(Some((next, head)))
}
