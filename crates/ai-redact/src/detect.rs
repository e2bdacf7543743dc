//! Detectors and the engine that runs them all in one pass.
//!
//! Every detector is a regular expression with a category, a label (what a redaction or a
//! token calls the value), a confidence, an optional validator and optional context
//! keywords, and a [`Trigger`] that says where it can match. [`Detectors`] compiles the
//! detectors of each trigger into one `regex-automata` automaton and walks a string once
//! per trigger: regions around digits (found eight bytes at a time), places where a
//! literal prefix starts (Aho-Corasick), places around an infix literal (`@`, `://`), and
//! the whole string for detectors that promise nothing. A candidate that fails its
//! validator is offered to the other detectors anchored at the same place, then the search
//! moves past the word; overlapping findings go to the more confident detector.

use crate::validate;
use aho_corasick::AhoCorasick;
use ai_core::DataCategory;
use regex_automata::hybrid;
use regex_automata::meta::Regex;
use regex_automata::util::pool::Pool;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

thread_local! {
    /// The ASCII-lower-cased copy of the text the case-insensitive keywords are found in.
    static LOWER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A check a candidate must pass to count as a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Validator {
    /// None: the pattern is enough.
    None,
    /// Luhn (mod 10) check digit.
    Luhn,
    /// Payment card: network prefix, length and Luhn.
    Card,
    /// IBAN: country length and ISO 7064 MOD 97-10.
    Iban,
    /// US SSN: area, group and serial ranges.
    Ssn,
    /// Aadhaar: first digit, Verhoeff, not a palindrome.
    Aadhaar,
    /// Verhoeff check digit.
    Verhoeff,
    /// Reads like a secret: length, character mix, entropy, not a placeholder or UUID.
    Secret,
    /// E-mail: not a documentation domain (`example.com`, `.test`, ...) nor a file name
    /// (`logo@2x.png`).
    Email,
    /// IPv4: not `0.0.0.0`, not a version string (`v1.2.3.4`, `version 10.0.0.1`).
    Ipv4,
    /// IPv6: parses, has a digit and at least three groups.
    Ipv6,
    /// Phone number: 7 to 15 digits, not one repeated digit.
    Phone,
    /// AWS access key id: not AWS's documentation key (`...EXAMPLE`).
    AwsKeyId,
    /// A person's name: no word of it is a common non-name capitalised word (`Team`,
    /// `Support`, `Stable`, ...).
    PersonName,
    /// The password of a URL: not a placeholder (`password`, `****`, `${DB_PASS}`,
    /// `<password>`).
    UrlPassword,
}

impl Validator {
    /// The validator a configuration name denotes (`luhn`, `card`, `iban`, `ssn`,
    /// `aadhaar`, `verhoeff`, `secret`, `email`, `ipv4`, `ipv6`, `phone`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "none" => Validator::None,
            "luhn" => Validator::Luhn,
            "card" => Validator::Card,
            "iban" => Validator::Iban,
            "ssn" => Validator::Ssn,
            "aadhaar" => Validator::Aadhaar,
            "verhoeff" => Validator::Verhoeff,
            "secret" | "entropy" => Validator::Secret,
            "email" => Validator::Email,
            "ipv4" => Validator::Ipv4,
            "ipv6" => Validator::Ipv6,
            "phone" => Validator::Phone,
            "person" => Validator::PersonName,
            _ => return None,
        })
    }

    fn check(self, hay: &str, start: usize, end: usize) -> bool {
        let value = &hay[start..end];
        match self {
            Validator::None => true,
            Validator::Luhn => validate::luhn(value),
            Validator::Card => validate::card(value) && !digit_adjacent(hay, start, end),
            Validator::Iban => validate::iban(value),
            Validator::Ssn => validate::ssn(value) && !in_longer_number(hay, start, end),
            Validator::Aadhaar => validate::aadhaar(value) && !in_longer_number(hay, start, end),
            Validator::Verhoeff => validate::verhoeff(value),
            Validator::Secret => validate::secret_value(value),
            Validator::Email => email_ok(value),
            Validator::Ipv4 => ipv4_ok(hay, start, end),
            Validator::Ipv6 => ipv6_ok(value),
            Validator::Phone => phone_ok(value),
            Validator::AwsKeyId => !value.ends_with("EXAMPLE"),
            Validator::PersonName => person_ok(value),
            Validator::UrlPassword => url_password_ok(value),
        }
    }
}

/// Whether a digit touches `start..end` (no separator between).
fn digit_adjacent(hay: &str, start: usize, end: usize) -> bool {
    let b = hay.as_bytes();
    b.get(end).is_some_and(u8::is_ascii_digit) || (start > 0 && b[start - 1].is_ascii_digit())
}

/// Whether `start..end` is a piece of a longer run of digit groups (`1234 5678 9012`
/// inside a 16-digit card, an SSN inside a tracking number).
fn in_longer_number(hay: &str, start: usize, end: usize) -> bool {
    let b = hay.as_bytes();
    if digit_adjacent(hay, start, end) {
        return true;
    }
    // A separator, then a group of three digits or more: the same number goes on
    // (`1234 5678 9012` inside `1234 5678 9012 3456`); a short group (`12/27`, a date)
    // does not.
    let after = match &b[end..] {
        [b' ' | b'-', rest @ ..] => rest.iter().take_while(|c| c.is_ascii_digit()).count(),
        _ => 0,
    };
    let before = match &b[..start] {
        [rest @ .., b' ' | b'-'] => rest.iter().rev().take_while(|c| c.is_ascii_digit()).count(),
        _ => 0,
    };
    after >= 3 || before >= 3
}

fn person_ok(v: &str) -> bool {
    const NOT_NAMES: [&str; 40] = [
        "Team",
        "Support",
        "Department",
        "Dept",
        "Accounts",
        "Payable",
        "Receivable",
        "Customer",
        "Service",
        "Services",
        "Billing",
        "Sales",
        "Office",
        "Desk",
        "Group",
        "Inc",
        "Ltd",
        "The",
        "Stable",
        "Room",
        "Ward",
        "Total",
        "Due",
        "Admin",
        "Management",
        "Operations",
        "Hospital",
        "Clinic",
        "Bank",
        "Company",
        "Corp",
        "Engineering",
        "Security",
        "Finance",
        "Human",
        "Resources",
        "Unknown",
        "None",
        "Regards",
        "Thanks",
    ];
    !v.split([' ', '.']).any(|w| NOT_NAMES.contains(&w))
}

fn url_password_ok(v: &str) -> bool {
    let lower = v.to_ascii_lowercase();
    const PLACEHOLDERS: [&str; 10] = [
        "password", "passwd", "pass", "secret", "changeme", "****", "xxx", "${", "<", "{{",
    ];
    !(PLACEHOLDERS
        .iter()
        .any(|p| lower == *p || lower.starts_with(p) && p.len() <= 3)
        || lower.contains("${")
        || lower.contains('<')
        || lower.contains("{{")
        || lower.contains("***")
        || lower.contains("xxx")
        || lower == "password"
        || lower.starts_with('$'))
}

fn email_ok(v: &str) -> bool {
    let Some((_, domain)) = v.rsplit_once('@') else {
        return false;
    };
    let d = domain.to_ascii_lowercase();
    const DOC: [&str; 3] = ["example.com", "example.org", "example.net"];
    if DOC.iter().any(|x| d == *x || d.ends_with(&format!(".{x}"))) {
        return false;
    }
    let tld = d.rsplit('.').next().unwrap_or("");
    const NOT_TLDS: [&str; 16] = [
        "test",
        "example",
        "invalid",
        "localhost",
        "png",
        "jpg",
        "jpeg",
        "gif",
        "svg",
        "webp",
        "js",
        "css",
        "ts",
        "map",
        "md",
        "json",
    ];
    !NOT_TLDS.contains(&tld)
}

fn ipv4_ok(hay: &str, start: usize, end: usize) -> bool {
    let v = &hay[start..end];
    if v == "0.0.0.0" || v == "255.255.255.255" {
        return false;
    }
    // `1.3.6.1.4.1.318`: an OID, not an address.
    if let [b'.', c, ..] = &hay.as_bytes()[end..] {
        if c.is_ascii_digit() {
            return false;
        }
    }
    let before = &hay.as_bytes()[..start];
    // `v1.2.3.4`, `1.2.3.4.5`: versions and OIDs, not addresses.
    if matches!(before.last(), Some(b'v' | b'V' | b'.')) {
        return false;
    }
    let tail = before
        .iter()
        .rev()
        .take(12)
        .rev()
        .map(u8::to_ascii_lowercase)
        .collect::<Vec<u8>>();
    !(tail.windows(7).any(|w| w == b"version") || tail.windows(7).any(|w| w == b"release"))
}

fn ipv6_ok(v: &str) -> bool {
    v.parse::<std::net::Ipv6Addr>().is_ok()
        && v.bytes().any(|b| b.is_ascii_digit())
        && v.bytes().filter(|b| *b == b':').count() >= 2
        && v.split(':').filter(|g| !g.is_empty()).count() >= 3
}

fn phone_ok(v: &str) -> bool {
    let d: Vec<u8> = v.bytes().filter(u8::is_ascii_digit).collect();
    (7..=15).contains(&d.len()) && !d.iter().all(|x| *x == d[0])
}

/// What lets the engine skip text a detector cannot match, so that clean text is not run
/// through the full automaton byte by byte.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trigger {
    /// Every match holds an ASCII digit and starts at most 48 bytes before its first
    /// digit: the pattern runs only in the regions around digits.
    Digit,
    /// Every match starts with one of these literals (ASCII case-insensitive when
    /// `case_insensitive`): the pattern runs only where one occurs.
    Prefix {
        /// The literals.
        literals: Vec<String>,
        /// Whether case is ignored.
        case_insensitive: bool,
    },
    /// Every match contains `literal` and starts where the run of `word` bytes (ASCII)
    /// right before its first occurrence starts: e-mail around `@`, URLs around `://`.
    /// The pattern runs anchored there only.
    Infix {
        /// The literal every match contains.
        literal: String,
        /// The bytes a match may start with, back from the literal.
        word: String,
    },
    /// No promise: the pattern runs over every byte (custom detectors without
    /// `prefixes`; one more pass per string).
    Full,
}

/// One detector: what to look for and what it is.
#[derive(Clone, Debug)]
pub struct DetectorSpec {
    /// Its name in findings, configuration and docs (`email`, `card`, ...).
    pub name: Arc<str>,
    /// The label of redactions and tokens (`EMAIL` gives `[EMAIL]` and `<EMAIL_1>`):
    /// upper-case ASCII letters, digits and `_`.
    pub label: Arc<str>,
    /// The category of what it finds.
    pub category: DataCategory,
    /// The pattern (regex syntax). When it has a capture group, group 1 is the value and
    /// the rest is context (a keyword before it).
    pub pattern: String,
    /// The check a candidate must pass.
    pub validator: Validator,
    /// Words that, found within [`CONTEXT_WINDOW`] bytes before the value (ASCII case
    /// insensitive), raise confidence.
    pub context: Vec<String>,
    /// Whether a finding needs one of the context words.
    pub context_required: bool,
    /// Confidence without context, 0 to 1 (context adds 0.3, capped at 1). Where two
    /// findings overlap the more confident one is kept.
    pub confidence: f32,
    /// What lets the engine skip text this detector cannot match.
    pub trigger: Trigger,
}

/// How far before a candidate context words are looked for, in bytes.
pub const CONTEXT_WINDOW: usize = 64;

impl DetectorSpec {
    /// A detector with no validator and no context, confidence 0.9.
    pub fn new(
        name: &str,
        label: &str,
        category: DataCategory,
        pattern: impl Into<String>,
    ) -> Self {
        DetectorSpec {
            name: name.into(),
            label: label.into(),
            category,
            pattern: pattern.into(),
            validator: Validator::None,
            context: Vec::new(),
            context_required: false,
            confidence: 0.9,
            trigger: Trigger::Full,
        }
    }

    /// Runs only around digits ([`Trigger::Digit`]).
    pub fn around_digits(mut self) -> Self {
        self.trigger = Trigger::Digit;
        self
    }

    /// Runs only around `literal` ([`Trigger::Infix`]).
    pub fn infix(mut self, literal: &str, word: &str) -> Self {
        self.trigger = Trigger::Infix {
            literal: literal.to_owned(),
            word: word.to_owned(),
        };
        self
    }

    /// Runs only where a match can start: at one of `literals` ([`Trigger::Prefix`]).
    pub fn prefixes(mut self, literals: &[&str], case_insensitive: bool) -> Self {
        self.trigger = Trigger::Prefix {
            literals: literals.iter().map(|l| (*l).to_owned()).collect(),
            case_insensitive,
        };
        self
    }

    /// With a validator.
    pub fn validator(mut self, v: Validator) -> Self {
        self.validator = v;
        self
    }

    /// With context words that raise confidence.
    pub fn context(mut self, words: &[&str]) -> Self {
        self.context = words.iter().map(|w| (*w).to_owned()).collect();
        self
    }

    /// With context words a finding needs.
    pub fn requires_context(mut self, words: &[&str]) -> Self {
        self = self.context(words);
        self.context_required = true;
        self
    }

    /// With this confidence without context.
    pub fn confidence(mut self, c: f32) -> Self {
        self.confidence = c;
        self
    }
}

/// One thing found: a byte range of the scanned string and what it is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Finding {
    /// Start of the value (byte offset, a char boundary).
    pub start: usize,
    /// End of the value.
    pub end: usize,
    /// Index of the detector in [`Detectors::specs`].
    pub detector: usize,
    /// Its category.
    pub category: DataCategory,
    /// How sure, 0 to 1.
    pub confidence: f32,
}

impl Finding {
    /// The byte range.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }
}

/// A PEM private key's first line and its optional `Name: value` header lines.
const PEM_HEAD: &str = r"-----BEGIN[ A-Z0-9_-]{0,40}PRIVATE KEY(?: BLOCK)?-----[ \t]*\r?\n?(?:[A-Za-z][A-Za-z0-9-]*:[^\r\n]*\r?\n)*";
/// Its base64 body: no `-`, so a search stops at the next `-----` line (a key without
/// its END line ends where the base64 does, and nothing scans on to the end of the text).
const PEM_BODY: &str = r"[A-Za-z0-9+/=\r\n \t\\]*";
const LOCAL_PART: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-";
const SCHEME: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-";

/// The built-in detectors (see `docs/ai-redact.md` for what each finds and misses).
pub fn builtin() -> Vec<DetectorSpec> {
    use DataCategory::{Credential, Pci, Phi, Pii, Secret};
    use Validator as V;
    const B: &str = r"(?-u:\b)";
    const MONTHS: &str = "jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec";
    let phone_words = &[
        "phone", "tel", "mobile", "cell", "call", "whatsapp", "contact", "fax", "sms", "reach",
    ];
    let d = |name: &str, label: &str, cat, pat: String| DetectorSpec::new(name, label, cat, pat);
    vec![
        // Literal-prefixed: secrets and credentials.
        d(
            "private_key",
            "PRIVATE_KEY",
            Secret,
            format!(r"{PEM_HEAD}{PEM_BODY}-----END[ A-Z0-9_-]{{0,40}}PRIVATE KEY(?: BLOCK)?-----"),
        )
        .prefixes(&["-----BEGIN"], false)
        .confidence(1.0),
        d(
            "private_key",
            "PRIVATE_KEY",
            Secret,
            format!(r"{PEM_HEAD}{PEM_BODY}"),
        )
        .prefixes(&["-----BEGIN"], false)
        .confidence(1.0),
        d(
            "anthropic_key",
            "API_KEY",
            Credential,
            r"sk-ant-[a-z]{2,8}[0-9]{2}-[A-Za-z0-9_-]{20,}".to_owned(),
        )
        .prefixes(&["sk-ant-"], false)
        .confidence(1.0),
        d(
            "openai_key",
            "API_KEY",
            Credential,
            r"sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{16,}T3BlbkFJ[A-Za-z0-9_-]{16,}|sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,}".to_owned(),
        )
        .prefixes(&["sk-"], false)
        .confidence(1.0),
        d(
            "aws_access_key_id",
            "AWS_KEY_ID",
            Credential,
            format!(r"{B}(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{{16}}{B}"),
        )
        .prefixes(&["AKIA", "ASIA", "ABIA", "ACCA"], false)
        .validator(V::AwsKeyId)
        .confidence(0.95),
        d(
            "aws_secret_access_key",
            "AWS_SECRET",
            Credential,
            format!(r#"(?i-u:aws_?secret_?access_?key|aws_?secret_?key|secret_?access_?key|aws_?secret)["']?[ \t]*[:=]{{1,2}}>?[ \t]*["']?([A-Za-z0-9/+=]{{40}}){B}"#),
        )
        .prefixes(&["aws_secret", "awssecret", "secret_access", "secretaccess"], true)
        .validator(V::Secret)
        .confidence(0.95),
        d(
            "github_token",
            "API_KEY",
            Credential,
            format!(r"{B}(?:gh[pousr]_[A-Za-z0-9]{{36,251}}|github_pat_[A-Za-z0-9_]{{50,}}){B}"),
        )
        .prefixes(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"], false)
        .validator(V::Secret)
        .confidence(1.0),
        d(
            "slack_token",
            "API_KEY",
            Credential,
            format!(r"{B}xox[abposer]-[0-9]{{6,}}-[A-Za-z0-9-]{{8,}}|{B}xapp-[0-9]-[A-Za-z0-9-]{{20,}}"),
        )
        .prefixes(&["xoxa-", "xoxb-", "xoxp-", "xoxo-", "xoxs-", "xoxe-", "xoxr-", "xapp-"], false)
        .confidence(0.95),
        d(
            "slack_webhook",
            "WEBHOOK",
            Credential,
            r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{20,}".to_owned(),
        )
        .prefixes(&["https://hooks.slack.com/"], false)
        .confidence(0.95),
        d(
            "stripe_key",
            "API_KEY",
            Credential,
            format!(r"{B}(?:sk|rk)_(?:test|live|prod)_[A-Za-z0-9]{{10,99}}{B}"),
        )
        .prefixes(&["sk_test_", "sk_live_", "sk_prod_", "rk_test_", "rk_live_", "rk_prod_"], false)
        .confidence(0.95),
        d(
            "google_api_key",
            "API_KEY",
            Credential,
            format!(r"{B}AIza[0-9A-Za-z_-]{{35}}"),
        )
        .prefixes(&["AIza"], false)
        .confidence(0.95),
        d(
            "jwt",
            "JWT",
            Credential,
            format!(r"{B}eyJ[A-Za-z0-9_-]{{10,}}\.eyJ[A-Za-z0-9_-]{{10,}}\.[A-Za-z0-9_-]{{10,}}"),
        )
        .prefixes(&["eyJ"], false)
        .confidence(0.95),
        d(
            "password",
            "PASSWORD",
            Credential,
            r#"(?i-u:password|passwd|pwd|passphrase)["']?[ \t]*(?::|=|:=|=>|is)[ \t]*["']?([!-~--["'<>`,;]]{8,128})"#.to_owned(),
        )
        .prefixes(&["password", "passwd", "pwd", "passphrase"], true)
        .validator(V::Secret)
        .confidence(0.9),
        d(
            "secret_assignment",
            "SECRET",
            Secret,
            r#"(?i-u:secret|token|api[_-]?key|apikey|access[_-]?key|auth[_-]?key|client[_-]?secret|private[_-]?key|credential)[A-Za-z0-9_.-]{0,20}["']?[ \t]*(?::|=|:=|=>)[ \t]*["']?([A-Za-z0-9+/=_.~-]{12,256})"#.to_owned(),
        )
        .prefixes(
            &[
                "secret", "token", "api_key", "api-key", "apikey", "access_key", "access-key",
                "accesskey", "auth_key", "auth-key", "authkey", "client_secret", "client-secret",
                "private_key", "private-key", "privatekey", "credential",
            ],
            true,
        )
        .validator(V::Secret)
        .confidence(0.85),
        d(
            "mrn",
            "MRN",
            Phi,
            format!(r"{B}(?i-u:mrn|medical record(?: number| no\.?| #)?|patient id|patient no\.?|health plan (?:id|number)|member id|insurance id|nhs (?:number|no\.?)|medicare (?:number|id|no\.?)|beneficiary id)[ \t]*[:#]?[ \t]*([A-Z0-9][A-Z0-9-]{{3,18}}[0-9]){B}"),
        )
        .prefixes(
            &[
                "mrn", "medical record", "patient id", "patient no", "health plan", "member id",
                "insurance id", "nhs ", "medicare ", "beneficiary id",
            ],
            true,
        )
        .confidence(0.9),
        d(
            "person",
            "PERSON",
            Pii,
            format!(r"{B}(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Shri|Smt)\.? ((?:[A-Z][a-z]+|[A-Z]\.)(?: [A-Z][a-z'-]+){{0,2}}){B}"),
        )
        .prefixes(&["Mr", "Ms", "Miss", "Mx", "Dr", "Prof", "Sir", "Dame", "Shri", "Smt"], false)
        .validator(V::PersonName)
        .confidence(0.8),
        d(
            "person",
            "PERSON",
            Pii,
            format!(r"(?i-u:my name is|name:|full name:|signed,|regards,|sincerely,|thanks,|best,|cheers,)[ \t]*\r?\n?[ \t]*([A-Z][a-z]+(?: [A-Z]\.)?(?: [A-Z][a-z'-]+){{1,2}}){B}"),
        )
        .prefixes(
            &["my name is", "name:", "signed,", "regards,", "sincerely,", "thanks,", "best,", "cheers,"],
            true,
        )
        .validator(V::PersonName)
        .confidence(0.75),
        d(
            "patient_name",
            "PERSON",
            Phi,
            format!(r"{B}(?i-u:patient name|patient|pt\.?|resident)[ \t]*:[ \t]*([A-Z][a-z]+(?: [A-Z]\.)?(?: [A-Z][a-z'-]+){{1,2}}){B}"),
        )
        .prefixes(&["patient", "pt:", "pt.", "pt ", "resident"], true)
        .validator(V::PersonName)
        .confidence(0.8),
        // Around digits and `@`.
        d(
            "email",
            "EMAIL",
            Pii,
            format!(r"[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{{2,24}}{B}"),
        )
        .infix("@", LOCAL_PART)
        .validator(V::Email)
        .confidence(0.95),
        d(
            "connection_string",
            "PASSWORD",
            Secret,
            r"[A-Za-z][A-Za-z0-9+.-]*://[!-~--[/:@]]+:([!-~--[/@]]{3,})@[A-Za-z0-9.-]+".to_owned(),
        )
        .infix("://", SCHEME)
        .validator(V::UrlPassword)
        .confidence(0.95),
        d(
            "iban",
            "IBAN",
            Pii,
            format!(r"{B}[A-Z]{{2}}[0-9]{{2}}(?: ?[A-Z0-9]{{4}}){{2,7}}(?: ?[A-Z0-9]{{1,4}})?{B}"),
        )
        .around_digits()
        .validator(V::Iban)
        .confidence(0.95),
        d(
            "pan",
            "PAN",
            Pii,
            format!(r"{B}[A-Z]{{3}}[PCHFATBLJGE][A-Z][0-9]{{4}}[A-Z]{B}"),
        )
        .around_digits()
        .context(&["pan", "permanent account", "income tax"])
        .confidence(0.7),
        d(
            "card",
            "CARD",
            Pci,
            format!(r"{B}[0-9](?:[ -]?[0-9]){{12,18}}{B}"),
        )
        .around_digits()
        .validator(V::Card)
        .context(&["card", "visa", "mastercard", "amex", "credit", "debit", "cc", "payment"])
        .confidence(0.85),
        d(
            "ssn",
            "SSN",
            Pii,
            format!(r"{B}[0-9]{{3}}-[0-9]{{2}}-[0-9]{{4}}{B}|{B}[0-9]{{3}} [0-9]{{2}} [0-9]{{4}}{B}"),
        )
        .around_digits()
        .validator(V::Ssn)
        .context(&["ssn", "social security", "social sec", "taxpayer"])
        .confidence(0.75),
        d("ssn", "SSN", Pii, format!(r"{B}[0-9]{{9}}{B}"))
            .around_digits()
            .validator(V::Ssn)
            .requires_context(&["ssn", "social security", "social sec"])
            .confidence(0.6),
        d(
            "aadhaar",
            "AADHAAR",
            Pii,
            format!(r"{B}[2-9][0-9]{{3}}[ -][0-9]{{4}}[ -][0-9]{{4}}{B}"),
        )
        .around_digits()
        .validator(V::Aadhaar)
        .context(&["aadhaar", "aadhar", "uidai", "uid"])
        .confidence(0.8),
        d("aadhaar", "AADHAAR", Pii, format!(r"{B}[2-9][0-9]{{11}}{B}"))
            .around_digits()
            .validator(V::Aadhaar)
            .requires_context(&["aadhaar", "aadhar", "uidai", "uid"])
            .confidence(0.6),
        d(
            "dob",
            "DOB",
            Pii,
            format!(r"{B}(?:[0-9]{{1,2}}[/.-][0-9]{{1,2}}[/.-](?:19|20)?[0-9]{{2}}|(?:19|20)[0-9]{{2}}-[0-9]{{2}}-[0-9]{{2}}|(?i-u:{MONTHS})[a-z]*\.? [0-9]{{1,2}},? (?:19|20)[0-9]{{2}}|[0-9]{{1,2}} (?i-u:{MONTHS})[a-z]* (?:19|20)[0-9]{{2}}){B}"),
        )
        .around_digits()
        .requires_context(&["dob", "d.o.b", "date of birth", "birth", "born", "birthday"])
        .confidence(0.6),
        d(
            "phone",
            "PHONE",
            Pii,
            format!(r"\+[1-9][0-9]{{0,2}}[ .-]?(?:\(?[0-9]{{1,4}}\)?[ .-]?)?[0-9]{{2,5}}(?:[ .-]?[0-9]{{2,5}}){{1,3}}{B}"),
        )
        .around_digits()
        .validator(V::Phone)
        .context(phone_words)
        .confidence(0.8),
        d(
            "phone",
            "PHONE",
            Pii,
            format!(r"(?:{B}|\()[2-9][0-9]{{2}}\)?[ .-][2-9][0-9]{{2}}[ .-][0-9]{{4}}{B}"),
        )
        .around_digits()
        .validator(V::Phone)
        .context(phone_words)
        .confidence(0.75),
        d("phone", "PHONE", Pii, format!(r"{B}0?[6-9][0-9]{{4}}[ -]?[0-9]{{5}}{B}"))
            .around_digits()
            .validator(V::Phone)
            .requires_context(phone_words)
            .confidence(0.6),
        d(
            "ipv4",
            "IP",
            Pii,
            format!(r"{B}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){{3}}{B}"),
        )
        .around_digits()
        .validator(V::Ipv4)
        .confidence(0.8),
        d(
            "ipv6",
            "IP",
            Pii,
            format!(r"{B}(?:[0-9A-Fa-f]{{1,4}}:){{7}}[0-9A-Fa-f]{{1,4}}{B}|(?:{B}[0-9A-Fa-f]{{1,4}})?(?::[0-9A-Fa-f]{{1,4}}){{0,6}}::(?:[0-9A-Fa-f]{{1,4}}:){{0,6}}[0-9A-Fa-f]{{1,4}}{B}"),
        )
        .around_digits()
        .validator(V::Ipv6)
        .confidence(0.8),
    ]
}

/// The shape of a token this layer hands out (`<EMAIL_1>`), found in text so that new
/// tokens never collide with it. It holds a digit, so it runs with the digit group.
const TOKEN_SHAPE: &str = r"<[A-Z][A-Z0-9_]{0,31}_[0-9]{1,9}>";

/// Bytes before a digit a [`Trigger::Digit`] match may start.
const DIGIT_BACK: usize = 48;
/// Bytes after its literal an [`Trigger::Infix`] match may end.
const INFIX_AHEAD: usize = 320;
/// Bytes after the last digit a [`Trigger::Digit`] region keeps going.
const DIGIT_AHEAD: usize = 64;

/// One automaton over a group of detectors.
#[derive(Clone, Debug)]
struct Group {
    regex: Regex,
    /// Detector index of each pattern (`usize::MAX` for the token shape).
    ids: Vec<usize>,
}

impl Group {
    fn build(patterns: &[(&str, usize)]) -> Result<Option<Group>, BuildError> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let regex = Regex::builder()
            .syntax(syntax::Config::new())
            .configure(Regex::config().hybrid_cache_capacity(4 * 1024 * 1024))
            .build_many(&patterns.iter().map(|(p, _)| *p).collect::<Vec<_>>())
            .map_err(|e| BuildError(e.to_string()))?;
        Ok(Some(Group {
            regex,
            ids: patterns.iter().map(|(_, i)| *i).collect(),
        }))
    }
}

type CacheFn = Box<
    dyn Fn() -> hybrid::dfa::Cache
        + Send
        + Sync
        + std::panic::UnwindSafe
        + std::panic::RefUnwindSafe,
>;

struct AnchoredDfa {
    dfa: hybrid::dfa::DFA,
    caches: Pool<hybrid::dfa::Cache, CacheFn>,
}

impl fmt::Debug for AnchoredDfa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AnchoredDfa")
    }
}

impl AnchoredDfa {
    fn build(patterns: &[&str]) -> Option<AnchoredDfa> {
        let dfa = hybrid::dfa::DFA::builder()
            .syntax(syntax::Config::new())
            .configure(hybrid::dfa::DFA::config().cache_capacity(2 * 1024 * 1024))
            .build_many(patterns)
            .ok()?;
        let d = dfa.clone();
        let create: CacheFn = Box::new(move || d.create_cache());
        Some(AnchoredDfa {
            dfa,
            caches: Pool::new(create),
        })
    }

    /// The leftmost-first match starting exactly at `at`: (pattern, end). `Err` when the
    /// lazy DFA gave up (the caller searches again with the meta regex).
    fn at(&self, text: &str, at: usize) -> Result<Option<(usize, usize)>, ()> {
        let mut cache = self.caches.get();
        let input = Input::new(text).range(at..).anchored(Anchored::Yes);
        match self.dfa.try_search_fwd(&mut cache, &input) {
            Ok(m) => Ok(m.map(|h| (h.pattern().as_usize(), h.offset()))),
            Err(_) => Err(()),
        }
    }
}

/// A detector that runs around a literal ([`Trigger::Infix`]).
#[derive(Clone, Debug)]
struct Infix {
    finder: memchr::memmem::Finder<'static>,
    word: Box<[bool; 256]>,
    id: usize,
}

/// Every detector compiled by trigger ([`Trigger`]): one automaton for those that run
/// around digits, one for those that run where one of their literal prefixes occurs, one
/// for the rest, and a literal finder per infix detector.
#[derive(Clone)]
pub struct Detectors {
    specs: Arc<[DetectorSpec]>,
    digit: Option<Group>,
    prefix: Option<(Group, AhoCorasick, Option<AhoCorasick>)>,
    /// The prefix group as a forward lazy DFA: at a literal the start is known, only the
    /// end is needed, so one anchored forward walk replaces the meta regex's search.
    anchored: Option<Arc<AnchoredDfa>>,
    full: Option<Group>,
    /// Each detector on its own: value groups and anchored re-tries (a small automaton
    /// is much cheaper there than the shared one).
    singles: Arc<[Regex]>,
    infix: Arc<[Infix]>,
    context: Arc<[Option<AhoCorasick>]>,
    groups: Arc<[bool]>,
    min_confidence: f32,
}

impl fmt::Debug for Detectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detectors")
            .field("detectors", &self.specs.len())
            .finish_non_exhaustive()
    }
}

/// A detector that cannot be compiled.
#[derive(Debug)]
pub struct BuildError(pub String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

const TOKEN: usize = usize::MAX;

impl Detectors {
    /// The built-in detectors.
    pub fn builtin() -> Self {
        // The built-in patterns are tested; failing here is a bug in this crate.
        #[allow(clippy::expect_used)]
        Detectors::new(builtin()).expect("the built-in detectors compile")
    }

    /// Compiles `specs` (for example [`builtin()`] plus custom ones).
    pub fn new(specs: Vec<DetectorSpec>) -> Result<Self, BuildError> {
        let mut groups = Vec::with_capacity(specs.len());
        let mut singles = Vec::with_capacity(specs.len());
        let (mut digit, mut prefix, mut full) = (Vec::new(), Vec::new(), Vec::new());
        let mut infix = Vec::new();
        let (mut literals_cs, mut literals_ci) = (Vec::new(), Vec::new());
        for (i, s) in specs.iter().enumerate() {
            if s.label.is_empty()
                || s.label.len() > 32
                || !s
                    .label
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(BuildError(format!(
                    "detector {}: label {:?} must be 1 to 32 upper-case ASCII letters, digits and _",
                    s.name, s.label
                )));
            }
            let one = Regex::new(&s.pattern)
                .map_err(|e| BuildError(format!("detector {}: {e}", s.name)))?;
            let n = one.captures_len();
            if n > 2 {
                return Err(BuildError(format!(
                    "detector {}: at most one capture group (the value); use (?:...) for others",
                    s.name
                )));
            }
            if one.is_match("") {
                return Err(BuildError(format!(
                    "detector {}: the pattern matches the empty string",
                    s.name
                )));
            }
            groups.push(n == 2);
            singles.push(one);
            match &s.trigger {
                Trigger::Digit => digit.push((s.pattern.as_str(), i)),
                Trigger::Prefix {
                    literals,
                    case_insensitive,
                } => {
                    if literals.is_empty() || literals.iter().any(String::is_empty) {
                        return Err(BuildError(format!(
                            "detector {}: prefixes must be non-empty",
                            s.name
                        )));
                    }
                    prefix.push((s.pattern.as_str(), i));
                    if *case_insensitive {
                        literals_ci.extend(literals.iter().cloned());
                    } else {
                        literals_cs.extend(literals.iter().cloned());
                    }
                }
                Trigger::Infix { literal, word } => {
                    if literal.is_empty() || !word.is_ascii() {
                        return Err(BuildError(format!(
                            "detector {}: an infix needs a literal and ASCII word bytes",
                            s.name
                        )));
                    }
                    let mut set = [false; 256];
                    for b in word.bytes() {
                        set[usize::from(b)] = true;
                    }
                    infix.push(Infix {
                        finder: memchr::memmem::Finder::new(literal.as_bytes()).into_owned(),
                        word: Box::new(set),
                        id: i,
                    });
                }
                Trigger::Full => full.push((s.pattern.as_str(), i)),
            }
        }
        digit.push((TOKEN_SHAPE, TOKEN));
        // Case-sensitive either way (case-insensitive keywords are searched lower-cased
        // in a lower-cased copy), so the SIMD prefilter (Teddy) applies; a full DFA where
        // it cannot skip.
        let ac = |lits: &[String]| {
            AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                .build(lits)
                .map_err(|e| BuildError(e.to_string()))
        };
        let anchored = if prefix.is_empty() {
            None
        } else {
            AnchoredDfa::build(&prefix.iter().map(|(p, _)| *p).collect::<Vec<_>>()).map(Arc::new)
        };
        let prefix = match Group::build(&prefix)? {
            Some(g) => {
                let cs = ac(&literals_cs)?;
                let ci = if literals_ci.is_empty() {
                    None
                } else {
                    let lower: Vec<String> =
                        literals_ci.iter().map(|l| l.to_ascii_lowercase()).collect();
                    Some(ac(&lower)?)
                };
                Some((g, cs, ci))
            }
            None => None,
        };
        let context = specs
            .iter()
            .map(|s| {
                if s.context.is_empty() {
                    return Ok(None);
                }
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(&s.context)
                    .map(Some)
                    .map_err(|e| BuildError(format!("detector {}: {e}", s.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Detectors {
            digit: Group::build(&digit)?,
            full: Group::build(&full)?,
            prefix,
            anchored,
            specs: specs.into(),
            singles: singles.into(),
            infix: infix.into(),
            context: context.into(),
            groups: groups.into(),
            min_confidence: 0.5,
        })
    }

    /// Findings under this confidence are dropped (default 0.5).
    pub fn min_confidence(mut self, c: f32) -> Self {
        self.min_confidence = c;
        self
    }

    /// The detectors, in the order findings index them.
    pub fn specs(&self) -> &[DetectorSpec] {
        &self.specs
    }

    /// Appends what `text` holds to `out`, in order and non-overlapping (where two
    /// detectors claim overlapping text the more confident one is kept). Token-shaped
    /// text (`<EMAIL_1>`) is reported through `tokens` instead, so a vault can avoid it.
    pub fn scan(&self, text: &str, out: &mut Vec<Finding>, tokens: &mut Vec<(usize, usize)>) {
        let first = out.len();
        if let Some(g) = &self.digit {
            self.scan_digits(g, text, out, tokens);
        }
        if let Some((g, cs, ci)) = &self.prefix {
            self.scan_prefixed(g, cs, text, out, tokens);
            if let Some(ci) = ci {
                // Case-insensitive keywords: found by a case-sensitive search (with its
                // SIMD prefilter) for the lower-case keywords in an ASCII-lower-cased copy
                // of the text; byte offsets are the same in both.
                LOWER.with(|l| {
                    let mut lower = l.borrow_mut();
                    lower.clear();
                    lower.extend(text.bytes().map(|b| b.to_ascii_lowercase()));
                    self.scan_prefixed_in(g, ci, text, &lower, out, tokens);
                });
            }
        }
        for inf in self.infix.iter() {
            self.scan_infix(inf, text, out);
        }
        if let Some(g) = &self.full {
            self.scan_range(g, text, 0, text.len(), out, tokens);
        }
        if out.len() - first > 1 {
            resolve_overlaps(&mut out[first..]);
            let mut keep = first;
            for i in first..out.len() {
                if out[i].end > out[i].start {
                    out[keep] = out[i];
                    keep += 1;
                }
            }
            out.truncate(keep);
        }
    }

    /// Runs the digit group over the regions around digits.
    fn scan_digits(
        &self,
        g: &Group,
        text: &str,
        out: &mut Vec<Finding>,
        tokens: &mut Vec<(usize, usize)>,
    ) {
        let b = text.as_bytes();
        let mut from = 0;
        let mut done = 0;
        while let Some(t) = next_trigger(b, from) {
            let start = floor_boundary(text, t.saturating_sub(DIGIT_BACK).max(done));
            let mut end = t + 1 + DIGIT_AHEAD;
            let mut last = t;
            // Grow the region while the next trigger is close enough to overlap it.
            while let Some(n) = next_trigger(b, last + 1) {
                if n.saturating_sub(DIGIT_BACK) > end {
                    break;
                }
                end = n + 1 + DIGIT_AHEAD;
                last = n;
            }
            let end = ceil_boundary(text, end.min(b.len()));
            done = self.scan_range(g, text, start, end, out, tokens).max(end);
            from = done.max(last + 1);
        }
    }

    /// Runs one infix detector around each occurrence of its literal.
    fn scan_infix(&self, inf: &Infix, text: &str, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        let mut covered = 0;
        for p in inf.finder.find_iter(b) {
            if p < covered {
                continue;
            }
            let mut start = p;
            while start > covered && inf.word[usize::from(b[start - 1])] {
                start -= 1;
            }
            // Leftmost match from the start of the run (it may begin a few bytes in: a
            // local part cannot start with `.`), within a bounded window.
            let end = ceil_boundary(text, (p + INFIX_AHEAD).min(b.len()));
            let input = Input::new(text).range(start..end);
            if let Some(m) = self.singles[inf.id].search(&input) {
                if let Some(f) = self.accept(text, inf.id, m.start(), m.end()) {
                    out.push(f);
                }
                covered = m.end().max(p + 1);
            }
        }
    }

    /// Runs the prefix group at every place one of its literals starts.
    fn scan_prefixed(
        &self,
        g: &Group,
        ac: &AhoCorasick,
        text: &str,
        out: &mut Vec<Finding>,
        tokens: &mut Vec<(usize, usize)>,
    ) {
        self.scan_prefixed_in(g, ac, text, text.as_bytes(), out, tokens);
    }

    /// Runs the group at every keyword `ac` finds in `hay` (the text, or a copy of it
    /// with the same byte offsets).
    fn scan_prefixed_in(
        &self,
        g: &Group,
        ac: &AhoCorasick,
        text: &str,
        hay: &[u8],
        out: &mut Vec<Finding>,
        tokens: &mut Vec<(usize, usize)>,
    ) {
        let mut at = 0;
        while at < text.len() {
            let Some(hit) = ac.find(aho_corasick::Input::new(hay).span(at..text.len())) else {
                break;
            };
            let s = hit.start();
            let found = match self.anchored.as_deref().map(|d| d.at(text, s)) {
                Some(Ok(m)) => m,
                // No lazy DFA, or it gave up: the meta regex.
                Some(Err(())) | None => {
                    let input = Input::new(text).range(s..).anchored(Anchored::Yes);
                    g.regex
                        .search(&input)
                        .map(|m| (m.pattern().as_usize(), m.end()))
                }
            };
            at = match found {
                Some((pid, end)) => match self.candidate(g, text, pid, s, end, tokens) {
                    Some(f) => {
                        out.push(f);
                        end.max(s + 1)
                    }
                    None => s + 1,
                },
                None => s + 1,
            };
            at = ceil_boundary(text, at);
        }
    }

    /// Leftmost-first matches of `g` starting in `from..to` (a match may run past `to`);
    /// returns where the last one ended.
    fn scan_range(
        &self,
        g: &Group,
        text: &str,
        from: usize,
        to: usize,
        out: &mut Vec<Finding>,
        tokens: &mut Vec<(usize, usize)>,
    ) -> usize {
        let mut at = from;
        let mut reached = from;
        while at < to {
            let Some(mut m) = g.regex.search(&Input::new(text).range(at..to)) else {
                break;
            };
            if m.end() == to && to < text.len() {
                // The region cut it: match again without the end bound.
                if let Some(id) = g.ids.get(m.pattern().as_usize()).filter(|i| **i != TOKEN) {
                    let input = Input::new(text).range(m.start()..).anchored(Anchored::Yes);
                    if let Some(full) = self.singles[*id].search(&input) {
                        m = regex_automata::Match::new(m.pattern(), full.range());
                    }
                }
            }
            reached = reached.max(m.end());
            if let Some(f) =
                self.candidate(g, text, m.pattern().as_usize(), m.start(), m.end(), tokens)
            {
                out.push(f);
                at = m.end().max(at + 1);
                continue;
            }
            // Another detector may match here where this one did not validate (a phone
            // number the card pattern swallowed).
            let mut next = None;
            for other in 0..g.ids.len() {
                if other == m.pattern().as_usize() {
                    continue;
                }
                let id = g.ids[other];
                if id == TOKEN {
                    continue;
                }
                let input = Input::new(text).range(m.start()..).anchored(Anchored::Yes);
                if let Some(mm) = self.singles[id].search(&input) {
                    if let Some(f) = self.candidate(g, text, other, mm.start(), mm.end(), tokens) {
                        out.push(f);
                        next = Some(mm.end());
                        break;
                    }
                }
            }
            at = match next {
                Some(end) => end.max(at + 1),
                None => skip_word(text, m.start()),
            };
        }
        reached
    }

    /// A match of pattern `pid` of `g`: a finding, a token shape (recorded, `None`), or
    /// nothing.
    fn candidate(
        &self,
        g: &Group,
        text: &str,
        pid: usize,
        start: usize,
        end: usize,
        tokens: &mut Vec<(usize, usize)>,
    ) -> Option<Finding> {
        let id = g.ids[pid];
        if id == TOKEN {
            tokens.push((start, end));
            return None;
        }
        self.accept(text, id, start, end)
    }

    /// The finding a candidate of detector `id` at `start..end` makes, if it passes.
    fn accept(&self, text: &str, id: usize, start: usize, end: usize) -> Option<Finding> {
        let spec = &self.specs[id];
        let (vs, ve) = if self.groups[id] {
            let one = &self.singles[id];
            let mut caps = one.create_captures();
            let input = Input::new(text).range(start..end).anchored(Anchored::Yes);
            one.search_captures(&input, &mut caps);
            match caps.get_group(1) {
                Some(s) => (s.start, s.end),
                None => (start, end),
            }
        } else {
            (start, end)
        };
        if vs >= ve {
            return None;
        }
        let mut ve = ve;
        if !spec.validator.check(text, vs, ve) {
            // A card number followed by more digit groups (expiry, CVV) was taken whole:
            // try it shorter, group by group.
            match spec.validator {
                Validator::Card => ve = card_prefix(text, vs, ve)?,
                _ => return None,
            }
        }
        let mut confidence = spec.confidence;
        if let Some(ac) = &self.context[id] {
            let from = floor_boundary(text, start.saturating_sub(CONTEXT_WINDOW));
            let window = &text[from..vs];
            // A context word counts at the start of a word: `tel` is not in `hotel`.
            let wb = window.as_bytes();
            let found = ac
                .find_iter(window)
                .any(|m| m.start() == 0 || !wb[m.start() - 1].is_ascii_alphanumeric());
            if found {
                confidence = (confidence + 0.3).min(1.0);
            } else if spec.context_required {
                return None;
            }
        }
        if confidence < self.min_confidence {
            return None;
        }
        Some(Finding {
            start: vs,
            end: ve,
            detector: id,
            category: spec.category,
            confidence,
        })
    }
}

/// The end of the longest prefix of `start..end` that ends at a group boundary and is a
/// valid card number (13 digits at least).
fn card_prefix(text: &str, start: usize, end: usize) -> Option<usize> {
    let b = text.as_bytes();
    (start + 13..end)
        .rev()
        .filter(|&e| b[e - 1].is_ascii_digit() && matches!(b[e], b' ' | b'-'))
        .find(|&e| validate::card(&text[start..e]) && !digit_adjacent(text, start, e))
}

/// How strict a category's handling is, for merging overlapping findings.
fn strictness(c: DataCategory) -> u8 {
    match c {
        DataCategory::Secret | DataCategory::Credential => 3,
        DataCategory::Pci => 2,
        DataCategory::Phi => 1,
        _ => 0,
    }
}

/// Sorts findings by start and merges overlapping ones into one covering their union,
/// under the stricter category (secret and credential, then pci, phi, pii), then the
/// more confident detector: nothing one detector claimed is left in clear because
/// another claimed part of it.
fn resolve_overlaps(f: &mut [Finding]) {
    f.sort_by_key(|x| (x.start, std::cmp::Reverse(x.end)));
    let mut kept: Option<usize> = None;
    for i in 0..f.len() {
        match kept {
            Some(k) if f[i].start < f[k].end => {
                let (a, b) = (f[k], f[i]);
                let rank = |x: &Finding| (strictness(x.category), x.confidence);
                let win = if rank(&b) > rank(&a) { b } else { a };
                f[k] = Finding {
                    start: a.start,
                    end: a.end.max(b.end),
                    ..win
                };
                f[i].end = f[i].start;
            }
            _ => kept = Some(i),
        }
    }
}

/// The next ASCII digit at or after `from`, eight bytes at a time.
fn next_trigger(b: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while i + 8 <= b.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        let x = u64::from_le_bytes(w);
        // Per byte, with the top bit cleared no addition carries into the next byte.
        let y = x & !HI;
        let ge30 = y.wrapping_add(0x50 * LO);
        let ge3a = y.wrapping_add(0x46 * LO);
        let m = ge30 & !ge3a & !x & HI;
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i.min(b.len())..]
        .iter()
        .position(u8::is_ascii_digit)
        .map(|p| p + i)
}

fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// The end of the run of ASCII letters and digits at `at` (at least one char on).
fn skip_word(text: &str, at: usize) -> usize {
    let b = text.as_bytes();
    let mut i = at;
    while i < b.len() && b[i].is_ascii_alphanumeric() {
        i += 1;
    }
    if i == at {
        i = at + text[at..].chars().next().map_or(1, char::len_utf8);
    }
    i
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The same detectors as separate regexes, each run over the whole text: the naive way,
/// kept as the benchmark's baseline. Findings are not deduplicated or validated.
#[derive(Debug)]
pub struct NaiveDetectors(Vec<Regex>);

impl NaiveDetectors {
    /// Compiles every detector on its own.
    pub fn new(specs: &[DetectorSpec]) -> Result<Self, BuildError> {
        specs
            .iter()
            .map(|s| Regex::new(&s.pattern).map_err(|e| BuildError(e.to_string())))
            .collect::<Result<Vec<_>, _>>()
            .map(NaiveDetectors)
    }

    /// How many matches every regex finds in `text`.
    pub fn count(&self, text: &str) -> usize {
        self.0.iter().map(|r| r.find_iter(text).count()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(&'static str, String)> {
        let d = Detectors::builtin();
        let (mut out, mut tok) = (Vec::new(), Vec::new());
        d.scan(text, &mut out, &mut tok);
        out.iter()
            .map(|f| {
                let name: &'static str =
                    Box::leak(d.specs()[f.detector].name.to_string().into_boxed_str());
                (name, text[f.range()].to_owned())
            })
            .collect()
    }

    #[test]
    fn finds_the_basics() {
        assert_eq!(
            found("mail jane.doe@acme.io now"),
            [("email", "jane.doe@acme.io".to_owned())]
        );
        assert_eq!(
            found("card 4111 1111 1111 1111."),
            [("card", "4111 1111 1111 1111".to_owned())]
        );
        assert_eq!(found("order 4111 1111 1111 1112."), []);
        assert_eq!(
            found("ssn 536-22-8726"),
            [("ssn", "536-22-8726".to_owned())]
        );
        assert_eq!(found("call (415) 555-2671 today")[0].0, "phone");
        assert_eq!(
            found("password = \"hZ8#kq2LmN4vQ9\"")[0].1,
            "hZ8#kq2LmN4vQ9"
        );
        assert_eq!(found("id 123e4567-e89b-12d3-a456-426614174000"), []);
        assert_eq!(found("see docs@example.com"), []);
        assert_eq!(found("<EMAIL_1> wrote"), []);
    }

    #[test]
    fn pasted_card_details_and_overlaps() {
        // Number, expiry and CVV as they are pasted.
        assert_eq!(
            found("card 4111 1111 1111 1111 12/27 123")[0],
            ("card", "4111 1111 1111 1111".to_owned())
        );
        assert_eq!(
            found("4242 4242 4242 4242 0327 123")[0],
            ("card", "4242 4242 4242 4242".to_owned())
        );
        assert_eq!(
            found("ssn 536-22-8726 12/03/1980")[0],
            ("ssn", "536-22-8726".to_owned())
        );
        // The e-mail inside a connection string's password is merged into the stricter
        // finding: nothing of the password stays in clear.
        let f = found("postgres://app:Tr0ub!4dor@db.acme.io/x");
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].0, "connection_string");
        assert!(f[0].1.starts_with("Tr0ub!4dor"), "{f:?}");
        // A private key without its END line ends with its base64.
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7x\nQ29tZQ==\n and then prose";
        let f = found(pem);
        assert_eq!(f[0].0, "private_key");
        assert!(
            f[0].1.starts_with("-----BEGIN") && f[0].1.contains("Q29tZQ=="),
            "{f:?}"
        );
    }

    #[test]
    fn reports_token_shapes() {
        let d = Detectors::builtin();
        let (mut out, mut tok) = (Vec::new(), Vec::new());
        d.scan("hi <EMAIL_3> and <X_12>", &mut out, &mut tok);
        assert_eq!(tok, [(3, 12), (17, 23)]);
    }

    #[test]
    fn bad_custom_detectors_are_refused() {
        let mut specs = builtin();
        specs.push(DetectorSpec::new("x", "lower", DataCategory::Pii, "abc"));
        assert!(Detectors::new(specs).is_err());
        let e = Detectors::new(vec![DetectorSpec::new("x", "X", DataCategory::Pii, "a*")]);
        assert!(e.is_err());
        let e = Detectors::new(vec![DetectorSpec::new(
            "x",
            "X",
            DataCategory::Pii,
            "(a)(b)",
        )]);
        assert!(e.is_err());
    }
}
