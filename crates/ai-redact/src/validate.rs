//! Validators: checksums and range rules that turn a shape into a finding.
//!
//! Each takes the matched text (separators included) and answers whether it is what the
//! detector claims. They never allocate.

/// The digits of `s`, ignoring spaces, dashes and dots; `None` past 32 digits.
fn digits(s: &str) -> Option<([u8; 32], usize)> {
    let mut out = [0u8; 32];
    let mut n = 0;
    for b in s.bytes() {
        match b {
            b'0'..=b'9' => {
                *out.get_mut(n)? = b - b'0';
                n += 1;
            }
            b' ' | b'-' | b'.' | b':' => {}
            _ => return None,
        }
    }
    Some((out, n))
}

/// Luhn (mod 10) over the digits of `s`.
pub fn luhn(s: &str) -> bool {
    let Some((d, n)) = digits(s) else {
        return false;
    };
    if n < 2 {
        return false;
    }
    let mut sum = 0u32;
    for (i, &x) in d[..n].iter().rev().enumerate() {
        let mut v = u32::from(x);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// A payment card number: 13 to 19 digits, a known network's leading digits (Visa,
/// Mastercard incl. the 2-series, Amex, Discover, JCB, Diners, Maestro, UnionPay, RuPay)
/// and a valid Luhn check digit. Repeated-digit numbers are refused.
pub fn card(s: &str) -> bool {
    let Some((d, n)) = digits(s) else {
        return false;
    };
    if !(13..=19).contains(&n) || d[..n].iter().all(|&x| x == d[0]) {
        return false;
    }
    let p = |k: usize| d[..k].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let network = match d[0] {
        4 => true,
        5 => (51..=55).contains(&p(2)) || matches!(p(4), 5018 | 5020 | 5038),
        2 => (2221..=2720).contains(&p(4)),
        3 => {
            matches!(p(2), 34 | 37 | 36 | 38 | 39)
                || (300..=305).contains(&p(3))
                || (3528..=3589).contains(&p(4))
        }
        6 => {
            p(4) == 6011
                || (644..=649).contains(&p(3))
                || p(2) == 65
                || p(2) == 62
                || p(2) == 60
                || matches!(p(4), 6304 | 6759 | 6761 | 6763)
                || p(2) == 81
        }
        8 => p(2) == 81 || p(2) == 82,
        _ => false,
    };
    network && luhn(s)
}

/// IBAN lengths by country (SWIFT IBAN registry) for the countries most often seen; other
/// countries are accepted at 15 to 34 characters.
fn iban_len(country: &[u8]) -> Option<usize> {
    Some(match country {
        b"DE" | b"GB" | b"IE" => 22,
        b"FR" | b"IT" | b"MC" => 27,
        b"ES" | b"SE" | b"SA" | b"RO" | b"CZ" | b"SK" => 24,
        b"NL" => 18,
        b"BE" => 16,
        b"CH" | b"LI" | b"LV" => 21,
        b"AT" | b"LU" | b"EE" | b"LT" => 20,
        b"PL" => 28,
        b"PT" => 25,
        b"NO" => 15,
        b"DK" | b"FI" => 18,
        b"AE" => 23,
        _ => return None,
    })
}

/// An IBAN: country code, check digits and BBAN (spaces allowed), the country's length
/// and ISO 7064 MOD 97-10 equal to 1.
pub fn iban(s: &str) -> bool {
    let mut buf = [0u8; 34];
    let mut n = 0;
    for b in s.bytes() {
        match b {
            b' ' => {}
            b'0'..=b'9' | b'A'..=b'Z' => {
                let Some(slot) = buf.get_mut(n) else {
                    return false;
                };
                *slot = b;
                n += 1;
            }
            b'a'..=b'z' => {
                let Some(slot) = buf.get_mut(n) else {
                    return false;
                };
                *slot = b.to_ascii_uppercase();
                n += 1;
            }
            _ => return false,
        }
    }
    if n < 15
        || !buf[..2].iter().all(u8::is_ascii_uppercase)
        || !buf[2..4].iter().all(u8::is_ascii_digit)
    {
        return false;
    }
    if let Some(len) = iban_len(&buf[..2]) {
        if n != len {
            return false;
        }
    }
    let mut rem = 0u32;
    for &b in buf[4..n].iter().chain(&buf[..4]) {
        if b.is_ascii_digit() {
            rem = (rem * 10 + u32::from(b - b'0')) % 97;
        } else {
            let v = u32::from(b - b'A') + 10;
            rem = (rem * 100 + v) % 97;
        }
    }
    rem == 1
}

/// A US Social Security Number: nine digits whose area is not 000, 666 or 900-999,
/// group not 00 and serial not 0000 (the rules since randomization in 2011), and not a
/// run of one digit or the well-known advertising number 078-05-1120.
pub fn ssn(s: &str) -> bool {
    let Some((d, n)) = digits(s) else {
        return false;
    };
    if n != 9 {
        return false;
    }
    let area = u32::from(d[0]) * 100 + u32::from(d[1]) * 10 + u32::from(d[2]);
    let group = d[3] * 10 + d[4];
    let serial = d[5..9].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
    let all_same = d[..9].iter().all(|&x| x == d[0]);
    area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && !all_same
        && !(area == 78 && group == 5 && serial == 1120)
        && !(area == 123 && group == 45 && serial == 6789)
}

const VERHOEFF_D: [[u8; 10]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
    [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
    [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
    [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
    [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
    [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
    [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
    [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
];

const VERHOEFF_P: [[u8; 10]; 8] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
    [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
    [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
    [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
    [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
    [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
    [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
    [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
];

/// Verhoeff over the digits of `s` (the check digit included): valid when the checksum
/// is 0.
pub fn verhoeff(s: &str) -> bool {
    let Some((d, n)) = digits(s) else {
        return false;
    };
    let mut c = 0u8;
    for (i, &x) in d[..n].iter().rev().enumerate() {
        c = VERHOEFF_D[usize::from(c)][usize::from(VERHOEFF_P[i % 8][usize::from(x)])];
    }
    n > 1 && c == 0
}

/// An Aadhaar number: 12 digits, first digit 2-9, Verhoeff check digit, not a palindrome.
pub fn aadhaar(s: &str) -> bool {
    let Some((d, n)) = digits(s) else {
        return false;
    };
    if n != 12 || d[0] < 2 {
        return false;
    }
    let palindrome = (0..6).all(|i| d[i] == d[11 - i]);
    !palindrome && verhoeff(s)
}

/// Shannon entropy of `s` in bits per byte.
pub fn entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[usize::from(b)] += 1;
    }
    let n = s.len() as f64;
    if n == 0.0 {
        return 0.0;
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Whether `s` is a UUID (8-4-4-4-12 hex).
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A value that reads like a secret: at least 8 characters with letters and digits (or
/// symbols), entropy of at least 3 bits per character, and not a UUID, a bare hex digest
/// shorter than 32, a placeholder (`<...>`, `${...}`, `xxxx`, `changeme`, `your_...`) or a
/// code expression (calls, attribute paths).
pub fn secret_value(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 || is_uuid(s) {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    const PLACEHOLDERS: [&str; 14] = [
        "xxxx",
        "****",
        "....",
        "changeme",
        "your_",
        "your-",
        "<",
        "${",
        "{{",
        "%s",
        "example",
        "redacted",
        "placeholder",
        "dummy",
    ];
    if PLACEHOLDERS.iter().any(|p| lower.contains(p)) {
        return false;
    }
    if b.contains(&b'(') || b.contains(&b'[') {
        return false;
    }
    // File paths (`PWD=/home/deploy`).
    if b[0] == b'/' || b.starts_with(b"./") || b.starts_with(b"~/") {
        return false;
    }
    let has_digit = b.iter().any(u8::is_ascii_digit);
    let has_alpha = b.iter().any(u8::is_ascii_alphabetic);
    let has_symbol = b.iter().any(|c| !c.is_ascii_alphanumeric());
    if !has_alpha || !(has_digit || has_symbol) {
        return false;
    }
    // `settings.database.url`, `os.environ`: identifiers joined by dots.
    if !has_digit
        && b.iter()
            .all(|c| c.is_ascii_alphabetic() || *c == b'_' || *c == b'.' || *c == b'-')
    {
        return false;
    }
    entropy(s) >= 3.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_and_cards() {
        assert!(luhn("79927398713"));
        assert!(!luhn("79927398710"));
        assert!(card("4111 1111 1111 1111"));
        assert!(card("5555-5555-5555-4444"));
        assert!(card("378282246310005"));
        assert!(card("2223003122003222"));
        assert!(card("6011111111111117"));
        assert!(!card("4111 1111 1111 1112"), "bad check digit");
        assert!(!card("1234567812345670"), "no network starts with 1");
        assert!(!card("0000000000000000"));
        assert!(!card("4111"));
    }

    #[test]
    fn ibans() {
        assert!(iban("DE89 3704 0044 0532 0130 00"));
        assert!(iban("GB82WEST12345698765432"));
        assert!(iban("FR1420041010050500013M02606"));
        assert!(!iban("DE89 3704 0044 0532 0130 01"));
        assert!(
            !iban("DE89 3704 0044 0532 0130"),
            "German IBANs have 22 characters"
        );
    }

    #[test]
    fn ssns() {
        assert!(ssn("536-22-8726"));
        assert!(!ssn("000-12-3456"));
        assert!(!ssn("666-12-3456"));
        assert!(!ssn("912-12-3456"));
        assert!(!ssn("536-00-3456"));
        assert!(!ssn("536-22-0000"));
        assert!(!ssn("078-05-1120"));
        assert!(!ssn("111-11-1111"));
    }

    #[test]
    fn verhoeff_and_aadhaar() {
        assert!(verhoeff("2363"));
        assert!(!verhoeff("2364"));
        assert!(aadhaar("2345 6789 0124"));
        assert!(!aadhaar("2345 6789 0123"));
        assert!(
            !aadhaar("1345 6789 0124"),
            "first digit 0 or 1 is never issued"
        );
    }

    #[test]
    fn secrets_and_lookalikes() {
        assert!(secret_value("hZ8#kq2LmN4vQ9xB"));
        assert!(!secret_value("123e4567-e89b-12d3-a456-426614174000"));
        assert!(!secret_value("changeme123"));
        assert!(!secret_value("os.environ.get"));
        assert!(!secret_value("get_password()"));
        assert!(!secret_value("<your-api-key>"));
        assert!(!secret_value("aaaaaaaa1"));
        assert!(entropy("abcd") > 1.9 && entropy("abcd") < 2.1);
    }
}
