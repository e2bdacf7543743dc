//! The tamper suite: each kind of damage to a real log is named at the exact place by
//! `verify_dir` and by the `audit-verify` binary; an untouched log of 100k records verifies.

use ai_audit::{
    FileSink, FileSinkConfig, ProblemKind, PublicKey, SigningKey, Sink, segment_name, verify_dir,
};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::process::Command;

fn record(i: u64) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "kind": "record", "v": 1, "record_id": format!("ar_{i:024x}"),
            "request_id": format!("gw_{i}"), "outcome": "complete", "status": 200,
            "requested_model": "claude-sonnet-4-5", "latency_ms": 12.5,
        })
        .to_string(),
    )
}

/// A log of `records` records in segments of about `rotate` bytes, checkpoints every 10.
fn write_log(dir: &Path, records: u64, rotate: u64) -> PublicKey {
    let (key, _) = SigningKey::generate().expect("key");
    let public = key.public_key().clone();
    let mut cfg = FileSinkConfig::new(dir, key);
    cfg.rotate_size = rotate;
    cfg.checkpoint_every = 10;
    let mut sink = FileSink::open(cfg).expect("open");
    let batch: Vec<Bytes> = (0..records).map(record).collect();
    for chunk in batch.chunks(7) {
        sink.append(chunk).expect("append");
    }
    sink.sync().expect("sync");
    sink.close().expect("close");
    public
}

fn seg(dir: &Path, n: u64) -> PathBuf {
    dir.join(segment_name(n))
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).expect("write");
}

fn seq_of(line: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(line).expect("json")["seq"]
        .as_u64()
        .expect("seq")
}

/// The index of the first record line at or after `from`.
fn record_line(lines: &[String], from: usize) -> usize {
    (from..lines.len())
        .find(|&i| lines[i].contains("\"kind\":\"record\""))
        .expect("a record line")
}

fn fresh(records: u64, rotate: u64) -> (tempfile::TempDir, PublicKey) {
    let dir = tempfile::tempdir().expect("tmp");
    let key = write_log(dir.path(), records, rotate);
    (dir, key)
}

fn expect(dir: &Path, key: &PublicKey, kind: ProblemKind, segment: u64, line: Option<u64>) {
    let report = verify_dir(dir, std::slice::from_ref(key)).expect("verify");
    let p = report.problem.expect("a break must be found");
    assert_eq!(
        (p.kind, p.segment, p.line),
        (kind, segment, line),
        "found: {p}"
    );
    // The binary names the same place.
    let out = Command::new(env!("CARGO_BIN_EXE_audit-verify"))
        .arg("--public-key")
        .arg(key.to_base64())
        .arg(dir)
        .output()
        .expect("run audit-verify");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("FAIL {}", kind.as_str())),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("segment {segment} (")), "{stdout}");
    if let Some(l) = line {
        assert!(stdout.contains(&format!(" line {l}")), "{stdout}");
    }
}

#[test]
fn untouched_log_verifies_with_the_binary_too() {
    let (dir, key) = fresh(200, 4096);
    let report = verify_dir(dir.path(), std::slice::from_ref(&key)).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problem);
    assert_eq!(report.records, 200);
    assert!(report.segments > 3, "rotation by size: {}", report.segments);
    let out = Command::new(env!("CARGO_BIN_EXE_audit-verify"))
        .args(["--public-key", &key.to_base64()])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK "));
}

#[test]
fn one_edited_byte_is_named() {
    let (dir, key) = fresh(50, 1 << 20);
    let p = seg(dir.path(), 1);
    let mut l = lines(&p);
    let i = record_line(&l, 20);
    l[i] = l[i].replace("\"latency_ms\":12.5", "\"latency_ms\":12.6");
    write_lines(&p, &l);
    expect(dir.path(), &key, ProblemKind::Edited, 1, Some(i as u64 + 1));
}

#[test]
fn a_deleted_record_is_named() {
    let (dir, key) = fresh(50, 1 << 20);
    let p = seg(dir.path(), 1);
    let mut l = lines(&p);
    let i = record_line(&l, 20);
    let gone = seq_of(&l[i]);
    l.remove(i);
    write_lines(&p, &l);
    let report = verify_dir(dir.path(), std::slice::from_ref(&key)).expect("verify");
    assert_eq!(report.problem.as_ref().and_then(|p| p.seq), Some(gone));
    expect(
        dir.path(),
        &key,
        ProblemKind::Deleted,
        1,
        Some(i as u64 + 1),
    );
}

#[test]
fn two_swapped_records_are_named() {
    let (dir, key) = fresh(50, 1 << 20);
    let p = seg(dir.path(), 1);
    let mut l = lines(&p);
    let i = record_line(&l, 20);
    let j = record_line(&l, i + 1);
    assert_eq!(j, i + 1, "adjacent records");
    l.swap(i, j);
    write_lines(&p, &l);
    expect(
        dir.path(),
        &key,
        ProblemKind::Reordered,
        1,
        Some(i as u64 + 1),
    );
}

#[test]
fn an_inserted_record_is_named() {
    let (dir, key) = fresh(50, 1 << 20);
    let p = seg(dir.path(), 1);
    let mut l = lines(&p);
    let i = record_line(&l, 20);
    let copy = l[record_line(&l, 5)].clone();
    l.insert(i, copy);
    write_lines(&p, &l);
    expect(
        dir.path(),
        &key,
        ProblemKind::Inserted,
        1,
        Some(i as u64 + 1),
    );
}

#[test]
fn a_truncated_segment_is_named() {
    // Cut lines off the end of a sealed segment.
    let (dir, key) = fresh(60, 2048);
    let p = seg(dir.path(), 2);
    let mut l = lines(&p);
    l.truncate(l.len() - 3);
    let keep = l.len() as u64;
    write_lines(&p, &l);
    expect(dir.path(), &key, ProblemKind::Truncated, 2, Some(keep));

    // Cut mid-line.
    let (dir, key) = fresh(60, 2048);
    let p = seg(dir.path(), 2);
    let bytes = std::fs::read(&p).expect("read");
    let cut = bytes.len() - 40;
    std::fs::write(&p, &bytes[..cut]).expect("write");
    let full_lines = bytes[..cut].iter().filter(|&&b| b == b'\n').count() as u64;
    expect(
        dir.path(),
        &key,
        ProblemKind::Truncated,
        2,
        Some(full_lines + 1),
    );
}

#[test]
fn a_dropped_segment_is_named() {
    let (dir, key) = fresh(60, 2048);
    std::fs::remove_file(seg(dir.path(), 3)).expect("rm");
    expect(dir.path(), &key, ProblemKind::MissingSegment, 3, None);
}

/// Recomputes every `prev` from line `from` of segment `n` on (and of every later
/// segment): what someone who can rewrite the files does to hide an edit.
fn rechain(dir: &Path, key: Option<&Attacker>) {
    let mut prev: Option<String> = None;
    let mut n = 1;
    while seg(dir, n).exists() {
        let p = seg(dir, n);
        let mut out = Vec::new();
        for line in lines(&p) {
            let mut v: serde_json::Value = serde_json::from_str(&line).expect("json");
            if let Some(h) = &prev {
                v["prev"] = serde_json::Value::from(h.clone());
            }
            if let (Some(k), Some(kind @ ("checkpoint" | "seal" | "segment_start"))) =
                (key, v["kind"].as_str())
            {
                let detail = match kind {
                    "segment_start" => v["checkpoint_every"].as_u64().map(|c| c.to_string()),
                    _ => v["reason"].as_str().map(str::to_owned),
                };
                let msg = ai_audit::signed_message(
                    n,
                    v["seq"].as_u64().expect("seq"),
                    v["prev"].as_str().expect("prev"),
                    kind,
                    detail.as_deref(),
                );
                v["key_id"] = serde_json::Value::from(k.key_id.clone());
                v["sig"] = serde_json::Value::from(k.sign(msg.as_bytes()));
            }
            // Keep the writer's key order: seq, prev first.
            let seq = v["seq"].clone();
            let pv = v["prev"].clone();
            let mut m = v.as_object().expect("object").clone();
            m.remove("seq");
            m.remove("prev");
            let rest = serde_json::Value::Object(m).to_string();
            let text = format!("{{\"seq\":{seq},\"prev\":{pv},{}", &rest[1..]);
            prev = Some(hex_sha256(text.as_bytes()));
            out.push(text);
        }
        write_lines(&p, &out);
        n += 1;
    }
}

fn hex_sha256(b: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    d.as_ref().iter().map(|x| format!("{x:02x}")).collect()
}

/// Someone with write access and their own key.
struct Attacker {
    pair: ring::signature::Ed25519KeyPair,
    key_id: String,
}

impl Attacker {
    fn new() -> Self {
        use ring::signature::KeyPair as _;
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).expect("seed");
        let key_id = hex_sha256(pair.public_key().as_ref())[..16].to_owned();
        Attacker { pair, key_id }
    }

    fn sign(&self, msg: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.pair.sign(msg).as_ref())
    }
}

#[test]
fn a_rewritten_log_with_a_recomputed_chain_is_caught_by_the_signature() {
    let (dir, key) = fresh(50, 1 << 20);
    let p = seg(dir.path(), 1);
    let mut l = lines(&p);
    let i = record_line(&l, 3);
    l[i] = l[i].replace("\"outcome\":\"complete\"", "\"outcome\":\"rejected\"");
    write_lines(&p, &l);
    rechain(dir.path(), None);
    // The chain is whole again; the first checkpoint after the edit no longer verifies.
    let first_cp = (i..l.len())
        .find(|&j| l[j].contains("\"kind\":\"checkpoint\""))
        .expect("checkpoint");
    expect(
        dir.path(),
        &key,
        ProblemKind::BadSignature,
        1,
        Some(first_cp as u64 + 1),
    );
}

#[test]
fn a_log_re_signed_with_another_key_is_caught() {
    let (dir, key) = fresh(50, 1 << 20);
    let p = seg(dir.path(), 1);
    let mut l = lines(&p);
    let i = record_line(&l, 3);
    l[i] = l[i].replace("\"outcome\":\"complete\"", "\"outcome\":\"rejected\"");
    write_lines(&p, &l);
    rechain(dir.path(), Some(&Attacker::new()));
    // The first signed entry, the segment_start, names the attacker's key.
    expect(dir.path(), &key, ProblemKind::UntrustedKey, 1, Some(1));
    // Without the trusted key the rewrite would pass: the report says signatures were
    // not checked.
    let report = verify_dir(dir.path(), &[]).expect("verify");
    assert!(report.is_ok());
    assert!(report.notes.iter().any(|n| n.contains("NOT checked")));
}

#[test]
fn a_hundred_thousand_records_verify() {
    let dir = tempfile::tempdir().expect("tmp");
    let (key, _) = SigningKey::generate().expect("key");
    let public = key.public_key().clone();
    let mut cfg = FileSinkConfig::new(dir.path(), key);
    cfg.rotate_size = 8 << 20;
    let mut sink = FileSink::open(cfg).expect("open");
    let batch: Vec<Bytes> = (0..1000).map(record).collect();
    for _ in 0..100 {
        sink.append(&batch).expect("append");
    }
    sink.close().expect("close");
    let report = verify_dir(dir.path(), &[public]).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problem);
    assert_eq!(report.records, 100_000);
    assert!(report.signatures >= 100, "a checkpoint every 1000 records");
}

#[test]
fn a_restart_after_a_crash_cuts_the_torn_line_and_seals() {
    let dir = tempfile::tempdir().expect("tmp");
    let (key, seed) = SigningKey::generate().expect("key");
    let public = key.public_key().clone();
    let mut sink = FileSink::open(FileSinkConfig::new(dir.path(), key)).expect("open");
    sink.append(&[record(1), record(2)]).expect("append");
    sink.sync().expect("sync");
    drop(sink); // no seal: a crash
    // A torn write at the end.
    let p = seg(dir.path(), 1);
    let mut bytes = std::fs::read(&p).expect("read");
    bytes.extend_from_slice(b"{\"seq\":3,\"prev\":\"ab");
    std::fs::write(&p, &bytes).expect("write");
    let report = verify_dir(dir.path(), std::slice::from_ref(&public)).expect("verify");
    // In the last segment a torn line is what a crash leaves: a note, cut at the next start.
    assert!(report.is_ok(), "{:?}", report.problem);
    assert!(
        report.notes.iter().any(|n| n.contains("mid-line")),
        "{:?}",
        report.notes
    );
    let key = SigningKey::from_base64(&seed).expect("seed");
    let mut sink = FileSink::open(FileSinkConfig::new(dir.path(), key)).expect("reopen");
    assert_eq!(sink.segment(), 2);
    sink.append(&[record(3)]).expect("append");
    sink.close().expect("close");
    let report = verify_dir(dir.path(), &[public]).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problem);
    assert_eq!(report.records, 3);
    assert!(
        lines(&p)
            .last()
            .expect("line")
            .contains("\"reason\":\"recovered\"")
    );
}

#[test]
fn a_failed_rotation_is_retried_and_writes_nothing_twice() {
    let dir = tempfile::tempdir().expect("tmp");
    let (key, _) = SigningKey::generate().expect("key");
    let public = key.public_key().clone();
    let mut cfg = FileSinkConfig::new(dir.path(), key);
    cfg.rotate_size = 1024;
    let mut sink = FileSink::open(cfg).expect("open");
    // Something sits where the next segment would go: its creation fails.
    let blocker = seg(dir.path(), 2);
    std::fs::create_dir(&blocker).expect("blocker");
    for i in 0..10 {
        sink.append(&[record(i)])
            .expect("the batch is written even when rotation fails");
    }
    assert_eq!(sink.segment(), 1);
    std::fs::remove_dir(&blocker).expect("rm");
    sink.append(&[record(10)]).expect("append");
    assert_eq!(sink.segment(), 2, "the rotation was retried");
    sink.close().expect("close");
    let report = verify_dir(dir.path(), &[public]).expect("verify");
    assert!(report.is_ok(), "{:?}", report.problem);
    assert_eq!(report.records, 11, "no record written twice or lost");
}

#[test]
fn the_newest_segments_removed_are_named() {
    // The last remaining segment ends with a rotation seal, not a shutdown: the log went on.
    let (dir, key) = fresh(60, 2048);
    let last = ai_audit::list_segments(dir.path())
        .expect("segments")
        .last()
        .expect("one")
        .0;
    std::fs::remove_file(seg(dir.path(), last)).expect("rm");
    expect(dir.path(), &key, ProblemKind::MissingSegment, last, None);
}

#[test]
fn a_seal_forged_from_a_checkpoint_is_caught() {
    // Cut the last segment after a checkpoint and relabel it a shutdown seal: the
    // signature covers the kind and the reason.
    let (dir, key) = fresh(50, 1 << 20);
    let p = seg(dir.path(), 1);
    let mut l = lines(&p);
    let cp = (0..l.len())
        .find(|&j| l[j].contains("\"kind\":\"checkpoint\""))
        .expect("checkpoint");
    l.truncate(cp + 1);
    l[cp] = l[cp].replace(
        "\"kind\":\"checkpoint\"",
        "\"kind\":\"seal\",\"reason\":\"shutdown\"",
    );
    write_lines(&p, &l);
    expect(
        dir.path(),
        &key,
        ProblemKind::BadSignature,
        1,
        Some(cp as u64 + 1),
    );
}

#[test]
fn a_head_kept_elsewhere_catches_removed_newest_entries() {
    // Cut the newest records and the shutdown seal off the last segment: what is left is
    // a whole chain ending in an open segment, which the chain alone cannot tell from a
    // gateway still writing. The head printed by an earlier run is no longer in the log.
    let (dir, key) = fresh(60, 2048);
    let before = ai_audit::verify_dir(dir.path(), std::slice::from_ref(&key)).expect("verify");
    let head = before.head.clone().expect("head");
    let ok = ai_audit::verify_dir_expecting(
        dir.path(),
        std::slice::from_ref(&key),
        std::slice::from_ref(&head),
    )
    .expect("verify");
    assert!(ok.is_ok(), "{:?}", ok.problem);
    let last = ai_audit::list_segments(dir.path())
        .expect("segments")
        .last()
        .expect("one")
        .0;
    let p = seg(dir.path(), last);
    let mut l = lines(&p);
    l.truncate(l.len() - 3);
    write_lines(&p, &l);
    let chain_only = ai_audit::verify_dir(dir.path(), std::slice::from_ref(&key)).expect("verify");
    assert!(chain_only.is_ok(), "the chain alone cannot see it");
    let report = ai_audit::verify_dir_expecting(
        dir.path(),
        std::slice::from_ref(&key),
        std::slice::from_ref(&head),
    )
    .expect("verify");
    assert_eq!(report.problem.map(|p| p.kind), Some(ProblemKind::Deleted));
    let out = Command::new(env!("CARGO_BIN_EXE_audit-verify"))
        .args(["--public-key", &key.to_base64(), "--expect-head", &head])
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL deleted"));
}
