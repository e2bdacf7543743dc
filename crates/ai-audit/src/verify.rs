//! Offline verification of a log directory: every segment's chain and signatures, naming
//! the first place where the log is not what the gateway wrote.

use crate::chain::{self, GENESIS, PublicKey};
use crate::file::{list_segments, segment_name};
use crate::hash::{Digest, hex, sha256};
use serde::Deserialize;
use std::fmt;
use std::io;
use std::path::Path;

/// What kind of damage was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// An entry's bytes changed: its hash no longer matches the next entry's `prev`, or it
    /// is no longer a valid entry.
    Edited,
    /// Entries are missing from the sequence.
    Deleted,
    /// Entries are out of order.
    Reordered,
    /// An entry that does not belong was added.
    Inserted,
    /// A segment ends early (cut mid-line, or without its seal).
    Truncated,
    /// A whole segment file is missing.
    MissingSegment,
    /// A checkpoint or seal signature does not verify with the trusted key.
    BadSignature,
    /// A checkpoint or seal is signed by a key that is not trusted.
    UntrustedKey,
    /// More records than `checkpoint_every` without a signed checkpoint.
    MissingCheckpoint,
    /// A segment could not be read.
    Unreadable,
}

impl ProblemKind {
    /// A short name (`edited`, `deleted`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Edited => "edited",
            ProblemKind::Deleted => "deleted",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Truncated => "truncated",
            ProblemKind::MissingSegment => "missing segment",
            ProblemKind::BadSignature => "bad signature",
            ProblemKind::UntrustedKey => "untrusted key",
            ProblemKind::MissingCheckpoint => "missing checkpoint",
            ProblemKind::Unreadable => "unreadable",
        }
    }
}

/// The first break found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What it is.
    pub kind: ProblemKind,
    /// The segment number.
    pub segment: u64,
    /// The line in that segment (1-based), when the problem is at a line.
    pub line: Option<u64>,
    /// The entry's `seq`, when known.
    pub seq: Option<u64>,
    /// Details.
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: segment {} ({})",
            self.kind.as_str(),
            self.segment,
            segment_name(self.segment)
        )?;
        if let Some(l) = self.line {
            write!(f, " line {l}")?;
        }
        if let Some(s) = self.seq {
            write!(f, " seq {s}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// The result of a verification.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Segments read.
    pub segments: u64,
    /// Records checked.
    pub records: u64,
    /// Signatures checked.
    pub signatures: u64,
    /// The hash of the last entry (the chain head).
    pub head: Option<String>,
    /// Remarks that are not breaks (an open last segment, a log that starts after
    /// retention removed older segments, unchecked signatures).
    pub notes: Vec<String>,
    /// The first break, if any.
    pub problem: Option<Problem>,
    /// The expected heads found in the chain.
    seen_heads: Vec<String>,
    /// The last segment read.
    last_segment: u64,
}

impl Report {
    /// Whether the log verified.
    pub fn is_ok(&self) -> bool {
        self.problem.is_none()
    }
}

#[derive(Deserialize)]
struct Entry {
    seq: u64,
    prev: String,
    kind: String,
    #[serde(default)]
    segment: Option<u64>,
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    sig: Option<String>,
    #[serde(default)]
    checkpoint_every: Option<u64>,
    #[serde(default)]
    reason: Option<String>,
}

struct Last {
    hash: Digest,
    seq: u64,
    segment: u64,
    line: u64,
}

/// Verifies the log in `dir` against the `trusted` public keys. With no trusted key the
/// signatures cannot be checked: the report says so in its notes, and a rewritten log
/// would pass.
pub fn verify_dir(dir: &Path, trusted: &[PublicKey]) -> io::Result<Report> {
    verify_dir_expecting(dir, trusted, &[])
}

/// [`verify_dir`], and each of `heads` (hex SHA-256 of an entry, e.g. a head printed by an
/// earlier run or shipped to another system) must be an entry of the chain: a log whose
/// newest entries or segments were removed, or whose history was rewritten, no longer
/// holds a head recorded before. A missing head is reported as
/// [`ProblemKind::Deleted`].
pub fn verify_dir_expecting(
    dir: &Path,
    trusted: &[PublicKey],
    heads: &[String],
) -> io::Result<Report> {
    let mut report = verify_chain(dir, trusted, heads)?;
    if report.problem.is_none() {
        if let Some(missing) = heads.iter().find(|h| !report.seen_heads.contains(*h)) {
            report.problem = Some(Problem {
                kind: ProblemKind::Deleted,
                segment: report.last_segment,
                line: None,
                seq: None,
                detail: format!(
                    "the head {missing} recorded earlier is not an entry of this log: entries after it were removed, or the log was rewritten"
                ),
            });
        }
    }
    Ok(report)
}

fn verify_chain(dir: &Path, trusted: &[PublicKey], heads: &[String]) -> io::Result<Report> {
    let segments = list_segments(dir)?;
    let mut report = Report::default();
    if segments.is_empty() {
        report
            .notes
            .push(format!("no segments in {}", dir.display()));
        return Ok(report);
    }
    if trusted.is_empty() {
        report.notes.push(
            "no public key given: signatures NOT checked (a rewritten log would pass)".to_owned(),
        );
    }
    // A segment file being created (rotation creates the next file before it seals the
    // current one): not part of the log yet.
    let mut segments = segments;
    if segments.len() > 1 {
        if let Some((n, path)) = segments.last() {
            if std::fs::metadata(path)
                .map(|m| m.len() == 0)
                .unwrap_or(false)
            {
                report.notes.push(format!(
                    "segment {n} is empty (being created, or created just before a crash): not verified"
                ));
                segments.pop();
            }
        }
    }
    let mut v = Verifier {
        heads,
        trusted,
        report,
        last: None,
        prev_prev: None,
    };
    let first = segments[0].0;
    let count = segments.len();
    for (i, (n, path)) in segments.iter().enumerate() {
        let expected = first + i as u64;
        if *n != expected {
            let n_expected = expected;
            v.report.problem = Some(Problem {
                kind: ProblemKind::MissingSegment,
                segment: n_expected,
                line: None,
                seq: v.last.as_ref().map(|l| l.seq + 1),
                detail: format!(
                    "segment {n_expected} is missing (the files go from segment {} to segment {n})",
                    n_expected - 1
                ),
            });
            return Ok(v.report);
        }
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => {
                v.report.problem = Some(Problem {
                    kind: ProblemKind::Unreadable,
                    segment: *n,
                    line: None,
                    seq: None,
                    detail: e.to_string(),
                });
                return Ok(v.report);
            }
        };
        v.report.segments += 1;
        if let Err(p) = v.segment(*n, &data, i + 1 == count) {
            v.report.problem = Some(p);
            return Ok(v.report);
        }
    }
    if first != 1 {
        v.report.notes.push(format!(
            "the log starts at segment {first}: earlier segments are not here (retention?); the chain is anchored at that segment's first prev"
        ));
    }
    v.report.head = v.last.as_ref().map(|l| hex(&l.hash));
    Ok(v.report)
}

struct Verifier<'a> {
    heads: &'a [String],
    trusted: &'a [PublicKey],
    report: Report,
    last: Option<Last>,
    prev_prev: Option<Digest>,
}

impl Verifier<'_> {
    fn segment(&mut self, n: u64, data: &[u8], is_last: bool) -> Result<(), Problem> {
        let problem = |kind, line: Option<u64>, seq: Option<u64>, detail: String| Problem {
            kind,
            segment: n,
            line,
            seq,
            detail,
        };
        let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let lines: Vec<&[u8]> = if complete == 0 {
            Vec::new()
        } else {
            data[..complete - 1].split(|&b| b == b'\n').collect()
        };
        if lines.is_empty() && complete == data.len() {
            return Err(problem(
                ProblemKind::Truncated,
                Some(1),
                None,
                "the segment is empty".to_owned(),
            ));
        }
        let mut checkpoint_every = u64::MAX;
        let mut since_checkpoint = 0u64;
        let mut last_kind = String::new();
        let mut last_reason: Option<String> = None;
        for (i, raw) in lines.iter().enumerate() {
            let lineno = i as u64 + 1;
            let entry: Entry = match serde_json::from_slice(raw) {
                Ok(e) => e,
                Err(e) => {
                    return Err(problem(
                        ProblemKind::Edited,
                        Some(lineno),
                        None,
                        format!("the line is no longer a valid entry ({e})"),
                    ));
                }
            };
            let next_seq = || {
                lines
                    .get(i + 1)
                    .and_then(|l| serde_json::from_slice::<Entry>(l).ok())
                    .map(|e| e.seq)
            };
            if let Some(last) = &self.last {
                let expected = last.seq + 1;
                if entry.seq > expected {
                    return Err(if next_seq() == Some(expected) {
                        problem(
                            ProblemKind::Reordered,
                            Some(lineno),
                            Some(entry.seq),
                            format!(
                                "seq {} comes before seq {expected}: entries swapped",
                                entry.seq
                            ),
                        )
                    } else {
                        problem(
                            ProblemKind::Deleted,
                            Some(lineno),
                            Some(expected),
                            format!(
                                "seq {expected}..{} missing before this line: {} entries deleted",
                                entry.seq - 1,
                                entry.seq - expected
                            ),
                        )
                    });
                }
                if entry.seq < expected {
                    if self.prev_prev.is_some_and(|pp| entry.prev == hex(&pp)) {
                        return Err(Problem {
                            kind: ProblemKind::Inserted,
                            segment: last.segment,
                            line: Some(last.line),
                            seq: Some(last.seq),
                            detail: "this entry was inserted: the entry after it chains to the entry before it".to_owned(),
                        });
                    }
                    return Err(if next_seq() == Some(expected) {
                        problem(
                            ProblemKind::Inserted,
                            Some(lineno),
                            Some(entry.seq),
                            format!("seq {} appears again here: entry inserted", entry.seq),
                        )
                    } else {
                        problem(
                            ProblemKind::Reordered,
                            Some(lineno),
                            Some(entry.seq),
                            format!(
                                "seq {} where seq {expected} was expected: entries out of order",
                                entry.seq
                            ),
                        )
                    });
                }
                if entry.prev != hex(&last.hash) {
                    return Err(Problem {
                        kind: ProblemKind::Edited,
                        segment: last.segment,
                        line: Some(last.line),
                        seq: Some(last.seq),
                        detail: "entry edited: its hash no longer matches the prev of the entry after it".to_owned(),
                    });
                }
            } else if n == 1 && (entry.seq != 0 || entry.prev != GENESIS) {
                return Err(problem(
                    ProblemKind::Edited,
                    Some(1),
                    Some(entry.seq),
                    "the first entry of the log must have seq 0 and the genesis prev".to_owned(),
                ));
            }
            if lineno == 1 {
                if entry.kind != "segment_start" || entry.segment != Some(n) {
                    return Err(problem(
                        ProblemKind::Edited,
                        Some(1),
                        Some(entry.seq),
                        format!(
                            "the segment does not start with its segment_start entry (found kind {:?})",
                            entry.kind
                        ),
                    ));
                }
                let Some(every) = entry.checkpoint_every.filter(|&e| e > 0) else {
                    return Err(problem(
                        ProblemKind::Edited,
                        Some(1),
                        Some(entry.seq),
                        "the segment_start has no checkpoint_every".to_owned(),
                    ));
                };
                checkpoint_every = every;
                self.check_signature(n, 1, &entry)?;
            } else if last_kind == "seal" {
                return Err(problem(
                    ProblemKind::Inserted,
                    Some(lineno),
                    Some(entry.seq),
                    "entries after the segment's seal".to_owned(),
                ));
            }
            match entry.kind.as_str() {
                "record" => {
                    self.report.records += 1;
                    since_checkpoint += 1;
                    if since_checkpoint > checkpoint_every {
                        return Err(problem(
                            ProblemKind::MissingCheckpoint,
                            Some(lineno),
                            Some(entry.seq),
                            format!(
                                "more than {checkpoint_every} records without a signed checkpoint (checkpoints removed, or the log rewritten)"
                            ),
                        ));
                    }
                }
                "checkpoint" | "seal" => {
                    if entry.segment != Some(n) {
                        return Err(problem(
                            ProblemKind::Edited,
                            Some(lineno),
                            Some(entry.seq),
                            "a signature entry names another segment".to_owned(),
                        ));
                    }
                    self.check_signature(n, lineno, &entry)?;
                    since_checkpoint = 0;
                }
                "segment_start" if lineno == 1 => {}
                other => {
                    return Err(problem(
                        ProblemKind::Inserted,
                        Some(lineno),
                        Some(entry.seq),
                        format!("unexpected entry kind {other:?}"),
                    ));
                }
            }
            self.prev_prev = self.last.as_ref().map(|l| l.hash);
            let hash = sha256(raw);
            if !self.heads.is_empty() {
                let h = hex(&hash);
                if self.heads.contains(&h) {
                    self.report.seen_heads.push(h);
                }
            }
            self.report.last_segment = n;
            self.last = Some(Last {
                hash,
                seq: entry.seq,
                segment: n,
                line: lineno,
            });
            last_reason = entry.reason.clone();
            last_kind = entry.kind;
        }
        if complete < data.len() {
            if is_last && last_kind != "seal" {
                // A line being written, or torn by a crash (the next start cuts it).
                self.report.notes.push(format!(
                    "segment {n} ends mid-line ({} bytes after the last newline): a line being written, or torn by a crash; not verified",
                    data.len() - complete
                ));
            } else {
                return Err(problem(
                    ProblemKind::Truncated,
                    Some(lines.len() as u64 + 1),
                    None,
                    format!(
                        "the segment ends mid-line ({} bytes after the last newline)",
                        data.len() - complete
                    ),
                ));
            }
        }
        if is_last && last_kind == "seal" && last_reason.as_deref() != Some("shutdown") {
            // Only a shutdown seal ends a log: after any other the gateway went on in a
            // next segment.
            return Err(Problem {
                kind: ProblemKind::MissingSegment,
                segment: n + 1,
                line: None,
                seq: self.last.as_ref().map(|l| l.seq + 1),
                detail: format!(
                    "the log ends with a {:?} seal of segment {n}: the segments after it are missing",
                    last_reason.as_deref().unwrap_or("")
                ),
            });
        }
        if last_kind != "seal" {
            if is_last {
                self.report.notes.push(format!(
                    "segment {n} is open (the gateway is writing it, or stopped without sealing it: the next start seals it); records after its last checkpoint are covered by the chain only"
                ));
            } else {
                return Err(problem(
                    ProblemKind::Truncated,
                    Some(lines.len() as u64),
                    self.last.as_ref().map(|l| l.seq),
                    "the segment ends without its seal: entries cut off".to_owned(),
                ));
            }
        }
        Ok(())
    }

    fn check_signature(&mut self, n: u64, lineno: u64, e: &Entry) -> Result<(), Problem> {
        if self.trusted.is_empty() {
            return Ok(());
        }
        let problem = |kind, detail: String| Problem {
            kind,
            segment: n,
            line: Some(lineno),
            seq: Some(e.seq),
            detail,
        };
        let key_id = e.key_id.as_deref().unwrap_or("");
        let Some(key) = self.trusted.iter().find(|k| k.key_id() == key_id) else {
            return Err(problem(
                ProblemKind::UntrustedKey,
                format!(
                    "{} signed by key {key_id:?}, which is not a trusted key (the head was re-signed)",
                    e.kind
                ),
            ));
        };
        let detail = match e.kind.as_str() {
            "segment_start" => e.checkpoint_every.map(|c| c.to_string()),
            _ => e.reason.clone(),
        };
        let msg = chain::signed_message(n, e.seq, &e.prev, &e.kind, detail.as_deref());
        if !key.verify(msg.as_bytes(), e.sig.as_deref().unwrap_or("")) {
            return Err(problem(
                ProblemKind::BadSignature,
                format!(
                    "the {} signature does not verify: the entries before it were changed, or it was re-signed with another key",
                    e.kind
                ),
            ));
        }
        self.report.signatures += 1;
        Ok(())
    }
}
