//! `audit-verify`: checks an ai-audit log directory offline.
//!
//! ```text
//! audit-verify [--public-key BASE64 | --public-key-file PATH]... DIR
//! audit-verify --generate-key
//! ```
//!
//! Exit status 0 when the log verifies, 1 with the first break named, 2 on usage errors.

use ai_audit::{PublicKey, SigningKey, verify_dir_expecting};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: audit-verify [--public-key BASE64 | --public-key-file PATH]... [--expect-head HEX]... DIR
       audit-verify --generate-key

Checks every segment of the audit log in DIR: the hash chain, the sequence, the
segment seals and every checkpoint signature against the trusted public keys.
Prints the first break (edited, deleted, reordered, inserted, truncated, missing
segment, bad signature, untrusted key) and exits 1, or prints a summary and exits 0.

--expect-head HEX: a head printed by an earlier run (or shipped elsewhere) must still be
an entry of the log; one removed with the newest entries or segments is reported.

--generate-key prints a new Ed25519 signing key (keep it secret; give it to the
gateway as audit.signing_key = \"${VAR}\") and its public key (give it to audit-verify).";

fn main() -> ExitCode {
    let mut keys = Vec::new();
    let mut heads = Vec::new();
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            "--generate-key" => {
                return match SigningKey::generate() {
                    Ok((key, seed)) => {
                        println!("signing key (secret): {seed}");
                        println!("public key:           {}", key.public_key().to_base64());
                        println!("key id:               {}", key.public_key().key_id());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("audit-verify: {e}");
                        ExitCode::from(2)
                    }
                };
            }
            "--expect-head" => {
                let Some(v) = args
                    .next()
                    .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
                else {
                    eprintln!("audit-verify: --expect-head needs 64 hex digits\n\n{USAGE}");
                    return ExitCode::from(2);
                };
                heads.push(v.to_ascii_lowercase());
            }
            "--public-key" | "--public-key-file" => {
                let Some(v) = args.next() else {
                    eprintln!("audit-verify: {a} needs a value\n\n{USAGE}");
                    return ExitCode::from(2);
                };
                let text = if a == "--public-key-file" {
                    match std::fs::read_to_string(&v) {
                        Ok(t) => t,
                        Err(e) => {
                            eprintln!("audit-verify: {v}: {e}");
                            return ExitCode::from(2);
                        }
                    }
                } else {
                    v
                };
                match PublicKey::from_base64(&text) {
                    Ok(k) => keys.push(k),
                    Err(e) => {
                        eprintln!("audit-verify: {a}: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            other if other.starts_with('-') => {
                eprintln!("audit-verify: unknown option {other}\n\n{USAGE}");
                return ExitCode::from(2);
            }
            other => {
                if dir.replace(PathBuf::from(other)).is_some() {
                    eprintln!("audit-verify: one directory only\n\n{USAGE}");
                    return ExitCode::from(2);
                }
            }
        }
    }
    let Some(dir) = dir else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let report = match verify_dir_expecting(&dir, &keys, &heads) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("audit-verify: {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    for n in &report.notes {
        println!("note: {n}");
    }
    match &report.problem {
        Some(p) => {
            println!("FAIL {p}");
            ExitCode::from(1)
        }
        None => {
            println!(
                "OK {} segments, {} records, {} signatures verified; head {}",
                report.segments,
                report.records,
                report.signatures,
                report.head.as_deref().unwrap_or("-")
            );
            ExitCode::SUCCESS
        }
    }
}
