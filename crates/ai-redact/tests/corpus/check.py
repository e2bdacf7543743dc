#!/usr/bin/env python3
"""Checks the labelled redaction corpus in this directory.

Format: documents separated by a line `=====`; `#` lines before the first document are
comments; sensitive values are marked `[[name|value]]`.

Verifies that the markup is well formed, that checksummed labels are valid (card: Luhn +
network prefix + length; iban: length + ISO 7064 mod 97; aadhaar: Verhoeff + first digit;
ssn: range rules) and that other labels have their documented shape; prints counts per
detector, size and labelled count; and scans the stripped text for unlabelled values that
would be findings by construction (Luhn-valid card numbers with a network prefix, e-mail
addresses outside documentation domains, Verhoeff-valid 4-4-4 numbers, valid 3-2-4 SSNs).
Exit status 1 when anything is wrong.
"""
import ipaddress
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ["support_tickets.txt", "clinical_notes.txt", "chat_logs.txt", "code_and_config.txt",
         "india_us_forms.txt", "hard_negatives.txt", "docs_and_logs.txt"]
NAMES = ["email", "phone", "card", "iban", "ssn", "aadhaar", "pan", "ipv4", "ipv6", "dob", "mrn",
         "person", "patient_name", "anthropic_key", "openai_key", "aws_access_key_id",
         "aws_secret_access_key", "github_token", "slack_token", "slack_webhook", "stripe_key",
         "google_api_key", "private_key", "jwt", "connection_string", "password", "secret_assignment"]
MIN4 = {"private_key", "slack_webhook", "aws_secret_access_key", "ipv6"}


def luhn(s):
    d = [int(c) for c in s if c.isdigit()]
    total = 0
    for i, v in enumerate(reversed(d)):
        if i % 2 == 1:
            v *= 2
            if v > 9:
                v -= 9
        total += v
    return len(d) >= 2 and total % 10 == 0


def card_ok(s):
    if any(c not in "0123456789 -" for c in s):
        return False
    d = "".join(c for c in s if c.isdigit())
    if not 13 <= len(d) <= 19 or len(set(d)) == 1:
        return False
    p = lambda k: int(d[:k])
    net = {
        "4": True,
        "5": 51 <= p(2) <= 55 or p(4) in (5018, 5020, 5038),
        "2": 2221 <= p(4) <= 2720,
        "3": p(2) in (34, 37, 36, 38, 39) or 300 <= p(3) <= 305 or 3528 <= p(4) <= 3589,
        "6": p(4) == 6011 or 644 <= p(3) <= 649 or p(2) in (65, 62, 60, 81) or p(4) in (6304, 6759, 6761, 6763),
        "8": p(2) in (81, 82),
    }.get(d[0], False)
    return net and luhn(d)


# The project's strict brief: only these networks are used for labels.
def card_label_ok(s):
    d = "".join(c for c in s if c.isdigit())
    if not card_ok(s):
        return False
    if d[:2] in ("34", "37") and len(d) != 15:
        return False
    return (d[0] == "4" or 51 <= int(d[:2]) <= 55 or 2221 <= int(d[:4]) <= 2720
            or (d[:2] in ("34", "37") and len(d) == 15) or d[:4] == "6011" or d[:2] == "65"
            or 3528 <= int(d[:4]) <= 3589 or d[:2] in ("60", "81", "82"))


IBAN_LEN = {"DE": 22, "GB": 22, "IE": 22, "FR": 27, "IT": 27, "MC": 27, "ES": 24, "SE": 24, "SA": 24,
            "RO": 24, "CZ": 24, "SK": 24, "NL": 18, "BE": 16, "CH": 21, "LI": 21, "LV": 21, "AT": 20,
            "LU": 20, "EE": 20, "LT": 20, "PL": 28, "PT": 25, "NO": 15, "DK": 18, "FI": 18, "AE": 23}


def iban_ok(s):
    t = s.replace(" ", "")
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", t):
        return False
    if t[:2] in IBAN_LEN and len(t) != IBAN_LEN[t[:2]]:
        return False
    r = t[4:] + t[:4]
    return int("".join(str(int(c, 36)) for c in r)) % 97 == 1


def ssn_ok(s):
    if not re.fullmatch(r"[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4}|[0-9]{9}", s):
        return False
    d = s.replace("-", "").replace(" ", "")
    a, g, n = int(d[:3]), int(d[3:5]), int(d[5:])
    return (a != 0 and a != 666 and a < 900 and g != 0 and n != 0 and len(set(d)) > 1
            and d not in ("078051120", "123456789"))


VD = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 2, 3, 4, 0, 6, 7, 8, 9, 5], [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
      [3, 4, 0, 1, 2, 8, 9, 5, 6, 7], [4, 0, 1, 2, 3, 9, 5, 6, 7, 8], [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
      [6, 5, 9, 8, 7, 1, 0, 4, 3, 2], [7, 6, 5, 9, 8, 2, 1, 0, 4, 3], [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
      [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]]
VP = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [1, 5, 7, 6, 2, 8, 3, 0, 9, 4], [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
      [8, 9, 1, 6, 0, 4, 3, 5, 2, 7], [9, 4, 5, 3, 1, 2, 6, 8, 7, 0], [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
      [2, 7, 9, 3, 8, 0, 6, 4, 1, 5], [7, 0, 4, 6, 9, 1, 3, 2, 5, 8]]


def verhoeff(s):
    c = 0
    for i, ch in enumerate(reversed([x for x in s if x.isdigit()])):
        c = VD[c][VP[i % 8][int(ch)]]
    return c == 0


def aadhaar_ok(s):
    if not re.fullmatch(r"[0-9]{4}[ -][0-9]{4}[ -][0-9]{4}|[0-9]{12}", s):
        return False
    d = re.sub(r"[ -]", "", s)
    return d[0] in "23456789" and d != d[::-1] and verhoeff(d)


DOC_EMAIL = re.compile(r"@(?:[a-z0-9-]+\.)*example\.(?:com|org|net)$|\.(?:test|invalid|example|localhost)$", re.I)
EMAIL_RE = r"[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9][A-Za-z0-9-]*(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}"
NOT_TLD = {"png", "jpg", "jpeg", "gif", "svg", "webp", "js", "css", "ts", "map", "md", "json"}


def email_label_ok(v):
    return bool(re.fullmatch(EMAIL_RE, v)) and not DOC_EMAIL.search(v) and v.rsplit(".", 1)[1].lower() not in NOT_TLD


def ipv6_ok(v):
    try:
        ipaddress.IPv6Address(v)
    except ValueError:
        return False
    return any(c.isdigit() for c in v) and len([g for g in v.split(":") if g]) >= 3


def digits_phone_ok(v):
    d = [c for c in v if c.isdigit()]
    return 7 <= len(d) <= 15 and len(set(d)) > 1


SHAPES = {
    "phone": lambda v: bool(re.fullmatch(r"[+(]?[0-9][0-9 ().-]*[0-9]", v)) and digits_phone_ok(v),
    "pan": lambda v: bool(re.fullmatch(r"[A-Z]{3}[PCHFATBLJGE][A-Z][0-9]{4}[A-Z]", v)),
    "ipv4": lambda v: bool(re.fullmatch(r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}", v))
                      and v not in ("0.0.0.0", "255.255.255.255"),
    "ipv6": ipv6_ok,
    "dob": lambda v: bool(re.fullmatch(r"[0-9]{1,2}[/.-][0-9]{1,2}[/.-](?:19|20)[0-9]{2}|(?:19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}|[A-Z][a-z]+\.? [0-9]{1,2},? (?:19|20)[0-9]{2}|[0-9]{1,2} [A-Z][a-z]+ (?:19|20)[0-9]{2}", v)),
    "mrn": lambda v: bool(re.fullmatch(r"[A-Z0-9][A-Z0-9-]{3,18}[0-9]", v)),
    "person": lambda v: bool(re.fullmatch(r"(?:[A-Z][a-z]+|[A-Z]\.)(?: [A-Z]\.)?(?: [A-Z][a-z]+){0,2}", v)),
    "patient_name": lambda v: bool(re.fullmatch(r"[A-Z][a-z]+(?: [A-Z]\.)?(?: [A-Z][a-z]+){1,2}", v)),
    "anthropic_key": lambda v: bool(re.fullmatch(r"sk-ant-api03-[A-Za-z0-9_-]{93}AA", v)),
    "openai_key": lambda v: bool(re.fullmatch(r"sk-proj-[A-Za-z0-9_-]{20,74}T3BlbkFJ[A-Za-z0-9_-]{20,74}|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}", v)),
    "aws_access_key_id": lambda v: bool(re.fullmatch(r"(?:AKIA|ASIA)[A-Z2-7]{16}", v)) and not v.endswith("EXAMPLE"),
    "aws_secret_access_key": lambda v: bool(re.fullmatch(r"[A-Za-z0-9/+]{39}[A-Za-z0-9]", v)) and "EXAMPLE" not in v,
    "github_token": lambda v: bool(re.fullmatch(r"gh[pos]_[A-Za-z0-9]{36}|github_pat_[A-Za-z0-9_]{82}", v)),
    "slack_token": lambda v: bool(re.fullmatch(r"xoxb-[0-9]{10,13}-[0-9]{10,13}-[A-Za-z0-9]{24}", v)),
    "slack_webhook": lambda v: bool(re.fullmatch(r"https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+", v)) and len(v) - len("https://hooks.slack.com/services/") >= 20,
    "stripe_key": lambda v: bool(re.fullmatch(r"(?:sk_live|rk_live|sk_test)_[A-Za-z0-9]{24,40}", v)),
    "google_api_key": lambda v: bool(re.fullmatch(r"AIza[A-Za-z0-9_-]{35}", v)),
    "private_key": lambda v: bool(re.fullmatch(r"-----BEGIN ((?:RSA |EC |OPENSSH )?PRIVATE KEY)-----(?:\n|\\n)[A-Za-z0-9+/=\n\\]+?(?:\n|\\n)-----END \1-----", v, re.S)),
    "jwt": lambda v: bool(re.fullmatch(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{40,}", v)),
    "connection_string": lambda v: bool(re.fullmatch(r"[^\s@/:]{3,128}", v)) and v.lower() not in ("password", "****", "<password>") and "${" not in v,
    "password": lambda v: bool(re.fullmatch(r"""[^\s"'<>`,;]{8,128}""", v)) and bool(re.search(r"[A-Za-z]", v)) and bool(re.search(r"[^A-Za-z]", v)),
    "secret_assignment": lambda v: bool(re.fullmatch(r"[A-Za-z0-9+/=_.~-]{12,256}", v)) and bool(re.search(r"[0-9]", v)),
}


def parse(text):
    """Returns (documents, errors); a document is (stripped_text, [(start, end, name, value)])."""
    errors = []
    lines = text.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith("#"):
        i += 1
    docs, cur = [], []
    for line in lines[i:]:
        if line == "=====":
            docs.append("\n".join(cur))
            cur = []
        else:
            cur.append(line)
    docs.append("\n".join(cur))
    out = []
    for n, doc in enumerate(docs):
        plain, spans, pos = [], [], 0
        length = 0
        while True:
            j = doc.find("[[", pos)
            k = doc.find("]]", pos)
            if j < 0:
                if k >= 0:
                    errors.append(f"doc {n}: stray ']]' near {doc[max(0, k - 30):k + 2]!r}")
                plain.append(doc[pos:])
                break
            if 0 <= k < j:
                errors.append(f"doc {n}: stray ']]' near {doc[max(0, k - 30):k + 2]!r}")
            end = doc.find("]]", j + 2)
            if end < 0:
                errors.append(f"doc {n}: unclosed '[[' near {doc[j:j + 40]!r}")
                plain.append(doc[pos:])
                break
            inner = doc[j + 2:end]
            if "[[" in inner:
                errors.append(f"doc {n}: nested or unclosed markup near {doc[j:j + 40]!r}")
            if "|" not in inner:
                errors.append(f"doc {n}: markup without '|' near {doc[j:j + 40]!r}")
                inner = "?|" + inner
            name, value = inner.split("|", 1)
            if name not in NAMES:
                errors.append(f"doc {n}: unknown detector name {name!r}")
            if not value or value != value.strip():
                errors.append(f"doc {n}: {name} value empty or with outer whitespace: {value!r}")
            if end + 2 < len(doc) and doc[end + 2] == "]":
                errors.append(f"doc {n}: ']]]' after {value!r} (ambiguous)")
            plain.append(doc[pos:j])
            length += j - pos
            spans.append((length, length + len(value), name, value))
            plain.append(value)
            length += len(value)
            pos = end + 2
        stripped = "".join(plain)
        for s, e, name, value in spans:
            assert stripped[s:e] == value
        out.append((stripped, spans))
    return out, errors


def covered(spans, s, e, names=None):
    return any(a <= s and e <= b and (names is None or nm in names) for a, b, nm, _ in spans)


def overlaps(spans, s, e):
    return any(a < e and s < b for a, b, _, _ in spans)


def main():
    problems = []
    counts = {n: 0 for n in NAMES}
    total_bytes = total_labels = 0
    neg_bytes = 0
    unlabelled_line_bytes = 0
    for fname in FILES:
        path = os.path.join(HERE, fname)
        if not os.path.exists(path):
            problems.append(f"{fname}: missing")
            continue
        raw = open(path, encoding="utf-8").read()
        total_bytes += len(raw.encode())
        if fname in ("hard_negatives.txt", "docs_and_logs.txt"):
            neg_bytes += len(raw.encode())
        unlabelled_line_bytes += sum(len(l.encode()) + 1 for l in raw.split("\n") if "[[" not in l and "]]" not in l)
        docs, errs = parse(raw)
        problems += [f"{fname}: {e}" for e in errs]
        nlab = 0
        for d, (text, spans) in enumerate(docs):
            for s, e, name, value in spans:
                nlab += 1
                counts[name] = counts.get(name, 0) + 1
                bad = None
                if name == "card":
                    bad = not card_label_ok(value)
                elif name == "iban":
                    bad = not iban_ok(value) or value[:2] not in IBAN_LEN
                elif name == "aadhaar":
                    bad = not aadhaar_ok(value)
                elif name == "ssn":
                    bad = not ssn_ok(value)
                elif name == "email":
                    bad = not email_label_ok(value)
                elif name in SHAPES:
                    bad = not SHAPES[name](value)
                if bad:
                    problems.append(f"{fname} doc {d}: invalid {name} label {value!r}")
                if name != "private_key" and "\n" in value:
                    problems.append(f"{fname} doc {d}: {name} label spans lines: {value!r}")
            # unlabelled look-alikes that would be findings by construction
            # every run of digit groups (single space or dash between groups): any 13-19 digit
            # stretch of whole groups that is a valid card number must be labelled
            for m in re.finditer(r"(?<![0-9A-Za-z])[0-9]+(?:[ -][0-9]+)*(?![0-9A-Za-z])", text):
                groups = [(g.start() + m.start(), g.end() + m.start()) for g in re.finditer(r"[0-9]+", m.group())]
                for i in range(len(groups)):
                    for j in range(i, len(groups)):
                        a, b = groups[i][0], groups[j][1]
                        cand = text[a:b]
                        n = sum(c.isdigit() for c in cand)
                        if n > 19:
                            break
                        if n >= 13 and card_label_ok(cand) and not covered(spans, a, b):
                            problems.append(f"{fname} doc {d}: unlabelled valid card number {cand!r}")
            for m in re.finditer(r"(?<![0-9A-Za-z])[A-Z]{3}[PCHFATBLJGE][A-Z][0-9]{4}[A-Z](?![0-9A-Za-z])", text):
                if not covered(spans, m.start(), m.end()):
                    problems.append(f"{fname} doc {d}: unlabelled PAN-shaped value {m.group()!r}")
            for m in re.finditer(r"(?<![0-9A-Za-z])[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![0-9A-Za-z])", text):
                if iban_ok(m.group()) and not covered(spans, m.start(), m.end()):
                    problems.append(f"{fname} doc {d}: unlabelled valid IBAN {m.group()!r}")
            for m in re.finditer(r"sk-ant-[a-z]+[0-9]{2}-[A-Za-z0-9_-]{20,}|sk-(?:proj-)?[A-Za-z0-9_-]{16,}T3BlbkFJ[A-Za-z0-9_-]{16,}"
                                 r"|(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z2-7]{16}(?![A-Za-z0-9])|(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{36,}"
                                 r"|github_pat_[A-Za-z0-9_]{50,}|(?<![A-Za-z0-9])xox[abposer]-[0-9]{6,}-[A-Za-z0-9-]{8,}"
                                 r"|https://hooks\.slack\.com/services/[A-Za-z0-9+/_-]{20,}|(?<![A-Za-z0-9])(?:sk|rk)_(?:test|live)_[A-Za-z0-9]{10,}"
                                 r"|(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}|(?<![A-Za-z0-9])eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"
                                 r"|-----BEGIN[ A-Z]*PRIVATE KEY-----", text):
                v = m.group()
                if "xxxx" in v.lower() or v.endswith("EXAMPLE"):
                    continue  # documented placeholders, meant to stay unlabelled
                if not overlaps(spans, m.start(), m.end()):
                    problems.append(f"{fname} doc {d}: unlabelled secret-shaped value {v[:40]!r}")
            for m in re.finditer(EMAIL_RE + r"(?![A-Za-z0-9_])", text):
                v = m.group()
                # `user:secret@host` in a URL is a connection string, not an address
                if email_label_ok(v) and not overlaps(spans, m.start(), m.end()):
                    problems.append(f"{fname} doc {d}: unlabelled e-mail address {v!r}")
            for m in re.finditer(r"(?<![0-9A-Za-z])[2-9][0-9]{3}[ -][0-9]{4}[ -][0-9]{4}(?![0-9A-Za-z])", text):
                if aadhaar_ok(m.group()) and not covered(spans, m.start(), m.end()):
                    problems.append(f"{fname} doc {d}: unlabelled Verhoeff-valid 4-4-4 number {m.group()!r}")
            for m in re.finditer(r"(?<![0-9A-Za-z])(?:[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4})(?![0-9A-Za-z])", text):
                if ssn_ok(m.group()) and not covered(spans, m.start(), m.end()):
                    problems.append(f"{fname} doc {d}: unlabelled SSN-shaped number {m.group()!r}")
        total_labels += nlab
        print(f"{fname:22s} {len(raw.encode()):6d} bytes {len(docs):3d} docs {nlab:4d} labels")
    print()
    for n in NAMES:
        need = 4 if n in MIN4 else 6
        flag = "" if counts.get(n, 0) >= need else f"   <-- fewer than {need}"
        if flag:
            problems.append(f"{n}: only {counts.get(n, 0)} labels")
        print(f"  {n:22s} {counts.get(n, 0):4d}{flag}")
    print()
    print(f"total: {total_bytes} bytes, {total_labels} labels")
    print(f"hard_negatives.txt + docs_and_logs.txt: {neg_bytes} bytes ({100 * neg_bytes / max(total_bytes, 1):.0f}%); "
          f"lines without any label: {100 * unlabelled_line_bytes / max(total_bytes, 1):.0f}% of bytes")
    if total_labels < 350:
        problems.append(f"only {total_labels} labels")
    if not 40_000 <= total_bytes <= 70_000:
        problems.append(f"total size {total_bytes} bytes outside the 40-60 KB aim")
    print()
    if problems:
        print(f"{len(problems)} problem(s):")
        for p in problems:
            print("  " + p)
        sys.exit(1)
    print("no problems")


if __name__ == "__main__":
    main()
