#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

fn scanner(b: Builtin) -> Scanner {
    Scanner::new(&[b], &[]).unwrap()
}

fn all() -> Scanner {
    Scanner::new(&Builtin::ALL, &[]).unwrap()
}

/// The matched substrings of detector `b` alone.
fn hits(b: Builtin, text: &str) -> Vec<String> {
    scanner(b)
        .scan(text)
        .into_iter()
        .map(|f| {
            assert_eq!(f.detector, b.name());
            text[f.start..f.end].to_owned()
        })
        .collect()
}

fn assert_hit(b: Builtin, sample: &str) {
    let text = format!("see {sample} here");
    assert_eq!(
        hits(b, &text),
        vec![sample.to_owned()],
        "{b:?} should match {sample:?}"
    );
}

fn assert_miss(b: Builtin, text: &str) {
    assert_eq!(
        hits(b, text),
        Vec::<String>::new(),
        "{b:?} should not match {text:?}"
    );
}

#[test]
fn names_round_trip() {
    for b in Builtin::ALL {
        assert_eq!(Builtin::from_name(b.name()), Some(b));
    }
    assert_eq!(Builtin::from_name("nope"), None);
    assert_eq!(Builtin::Card.name(), "card");
}

#[test]
fn scanner_is_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Scanner>();
}

#[test]
fn cards_positive() {
    for c in [
        // Visa
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4012888888881881",
        "4222222222222",
        // Mastercard
        "5555555555554444",
        "5105 1051 0510 5100",
        "2221000000000009",
        // Amex
        "378282246310005",
        "3714 496353 98431",
        // Discover
        "6011111111111117",
        "6011-0009-9013-9424",
        // JCB
        "3530111333300000",
        "3566002020360505",
        // Diners
        "30569309025904",
        "3056 930902 5904",
        "38520000023237",
    ] {
        assert_hit(Builtin::Card, c);
    }
    assert_eq!(
        hits(Builtin::Card, "card:4111111111111111."),
        vec!["4111111111111111"]
    );
    // A card after an unrelated number in the same run of groups.
    assert_eq!(
        hits(Builtin::Card, "order 12345 4111 1111 1111 1111"),
        vec!["4111 1111 1111 1111"]
    );
}

#[test]
fn cards_negative() {
    for t in [
        // Luhn failures
        "4111111111111112",
        "4111 1111 1111 1112",
        "5555555555554445",
        "378282246310006",
        // Luhn-valid but no known issuer prefix
        "1234567812345670",
        "9999999999999995",
        // inside a longer digit run
        "44111111111111111",
        "41111111111111110000",
        "x4111111111111111",
        "4111111111111111abc",
        // mixed separators, odd grouping
        "4111 1111-1111 1111",
        "41 11 11 11 11 11 11 11",
        // decimals
        "3.4111111111111111",
        "4111111111111111.25",
        // order numbers, timestamps, short numbers
        "Order #100234987 shipped",
        "timestamp 1700000000000",
        "call 415 555 0132",
    ] {
        assert_miss(Builtin::Card, t);
    }
}

#[test]
fn ssn() {
    for s in ["123-45-6789", "123 45 6789", "078-05-1120", "899-99-9999"] {
        assert_hit(Builtin::Ssn, s);
    }
    assert_eq!(hits(Builtin::Ssn, "SSN: 123456789"), vec!["123456789"]);
    assert_eq!(
        hits(Builtin::Ssn, "my social security number is 123456789."),
        vec!["123456789"]
    );
    for t in [
        "000-12-3456",
        "666-12-3456",
        "900-12-3456",
        "999-12-3456",
        "123-00-4567",
        "123-45-0000",
        "123-45 6789",
        "1123-45-6789",
        "123-45-67890",
        "12-123-45-6789",
        "id 123456789",
        "ssn 000123456",
        "ssn 1234567890",
    ] {
        assert_miss(Builtin::Ssn, t);
    }
}

#[test]
fn iban() {
    for s in [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91 ABNA 0417 1643 00",
        "CH93 0076 2011 6238 5295 7",
        "BE68 5390 0754 7034",
        "ES91 2100 0418 4502 0005 1332",
        "IT60 X054 2811 1010 0000 0123 456",
    ] {
        assert_hit(Builtin::Iban, s);
    }
    // Followed by unrelated capitals.
    assert_eq!(
        hits(Builtin::Iban, "pay GB82 WEST 1234 5698 7654 32 ASAP"),
        vec!["GB82 WEST 1234 5698 7654 32"]
    );
    for t in [
        "DE88 3704 0044 0532 0130 00",
        "GB83 WEST 1234 5698 7654 32",
        "DE89 3704 0044 0532 0130 0",
        "DE89370400440532013000X",
        "de89 3704 0044 0532 0130 00",
        "AB12 ABCD EFGH IJKL",
        "ISO 9001 2015",
    ] {
        assert_miss(Builtin::Iban, t);
    }
}

#[test]
fn email() {
    for s in [
        "alice@example.com",
        "first.last+tag@mail.example.co.uk",
        "x_y-z%1@sub-domain.io",
    ] {
        assert_hit(Builtin::Email, s);
    }
    assert_eq!(
        hits(Builtin::Email, "<bob@example.org>."),
        vec!["bob@example.org"]
    );
    assert_eq!(
        hits(Builtin::Email, "..bob@example.org"),
        vec!["bob@example.org"]
    );
    for t in [
        "alice@localhost",
        "@example.com",
        "alice@.com",
        "alice@example.c",
        "user at example dot com",
    ] {
        assert_miss(Builtin::Email, t);
    }
}

#[test]
fn phone() {
    for s in [
        "+14155550132",
        "+1 415 555 0132",
        "+1 (415) 555-0132",
        "+44 20 7946 0958",
        "+49-30-123456",
        "(415) 555-0132",
        "(415)555-0132",
        "415-555-0132",
        "415.555.0132",
        "1-415-555-0132",
    ] {
        assert_hit(Builtin::Phone, s);
    }
    for t in [
        "2024-01-15",
        "on 2024-01-15 at 10:30",
        "version 1.2.3 or 10.15.7",
        "costs $1,234.56 or 415.55",
        "+1234567",
        "+1234567890123456",
        "415-555-01324",
        "1415-555-0132-7",
        "415-555.0132",
        "115-555-0132",
        "415-155-0132",
        "4155550132",
        "12.345.6789",
        "192.168.100.200",
    ] {
        assert_miss(Builtin::Phone, t);
    }
}

#[test]
fn phones_yield_to_cards_and_ssns() {
    let s = all();
    let text = "+4111 1111 1111 1111";
    let f = s.scan(text);
    assert!(f.iter().all(|f| f.detector != "phone"), "{f:?}");
    // An SSN is not a phone either.
    let f = s.scan("ssn 123-45-6789");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].detector, "ssn");
    // A card is not a phone.
    let f = s.scan("4111-1111-1111-1111");
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].detector, "card");
}

#[test]
fn secrets() {
    let gh = format!("ghp_{}", "a1B2c3D4e5".repeat(4));
    let gho = format!("gho_{}", "Z9y8X7w6V5".repeat(4));
    let pat = format!("github_pat_11ABCDEFG0{}", "x_Y1".repeat(15));
    let google = format!("AIza{}", "SyD-abc_123".repeat(4).get(..35).unwrap());
    for s in [
        "AKIAIOSFODNN7EXAMPLE",
        "ASIAY34FZKBOKMUTVV7A",
        gh.as_str(),
        gho.as_str(),
        pat.as_str(),
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXyZ",
        "sk-ABCdef1234567890ghiJKLmnop",
        "sk-ant-api03-AbCdEf0123456789_-xyzXYZ",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
        "rk_live_51H8abcdEFGHijklMNOP",
        google.as_str(),
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ] {
        assert_hit(Builtin::Secret, s);
    }
    for t in [
        "AKIAIOSFODNN7EXAMPL",
        "AKIAIOSFODNN7EXAMPLEX",
        "xAKIAIOSFODNN7EXAMPLE",
        "ghp_short123",
        "ghx_a1B2c3D4e5a1B2c3D4e5a1B2c3D4e5a1B2c3D4e5",
        "sk-short",
        "sk-learn-compatible-estimators-everywhere",
        "task-1234567890abcdefghijklmnop",
        "xoxz-123456789012-abc",
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "AIzaShort",
        "eyJhbGciOiJIUzI1NiJ9 is just base64",
        "-----BEGIN PUBLIC KEY-----",
        "-----BEGIN CERTIFICATE-----",
    ] {
        assert_miss(Builtin::Secret, t);
    }
}

#[test]
fn pem_blocks() {
    let block =
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabcd==\n-----END RSA PRIVATE KEY-----";
    let text = format!("key:\n{block}\nthanks");
    assert_eq!(hits(Builtin::Secret, &text), vec![block.to_owned()]);
    let open = "-----BEGIN OPENSSH PRIVATE KEY-----";
    let text = format!("{open}\nb3BlbnNzaC1rZXktdjEAAAAA (truncated)");
    assert_eq!(hits(Builtin::Secret, &text), vec![open.to_owned()]);
    let plain = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----";
    assert_eq!(hits(Builtin::Secret, plain), vec![plain.to_owned()]);
}

#[test]
fn custom_rules() {
    let s = Scanner::new(
        &[],
        &[
            ("employee_id".to_owned(), r"\bEMP-[0-9]{6}\b".to_owned()),
            ("empty".to_owned(), r"x*".to_owned()),
        ],
    )
    .unwrap();
    let text = "ids EMP-123456 and EMP-12 and EMP-654321";
    let f = s.scan(text);
    assert_eq!(
        f,
        vec![
            Finding {
                detector: "employee_id".to_owned(),
                start: 4,
                end: 14
            },
            Finding {
                detector: "employee_id".to_owned(),
                start: 30,
                end: 40
            },
        ]
    );
}

#[test]
fn bad_custom_pattern() {
    let err = Scanner::new(&[], &[("broken".to_owned(), "(unclosed".to_owned())]).unwrap_err();
    let GuardrailError::Pattern { name, .. } = &err;
    assert_eq!(name, "broken");
    assert!(
        err.to_string()
            .starts_with("custom rule `broken`: invalid pattern:"),
        "{err}"
    );
    // A pattern that would compile to a huge program is refused.
    let err = Scanner::new(
        &[],
        &[("huge".to_owned(), r"\w{1000}\w{1000}\w{1000}".to_owned())],
    )
    .unwrap_err();
    let GuardrailError::Pattern { name, .. } = &err;
    assert_eq!(name, "huge");
}

#[test]
fn redact_output() {
    let s = all();
    let text = "Mail alice@example.com, card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE.";
    let f = s.scan(text);
    assert_eq!(
        redact(text, &f),
        "Mail [REDACTED:email], card [REDACTED:card], key [REDACTED:secret]."
    );
    assert_eq!(redact("nothing", &[]), "nothing");
    // Unsorted, overlapping and out-of-range findings are tolerated.
    let fs = vec![
        Finding {
            detector: "b".into(),
            start: 4,
            end: 6,
        },
        Finding {
            detector: "a".into(),
            start: 0,
            end: 2,
        },
        Finding {
            detector: "c".into(),
            start: 5,
            end: 7,
        },
        Finding {
            detector: "d".into(),
            start: 9,
            end: 99,
        },
    ];
    assert_eq!(redact("0123456789", &fs), "[REDACTED:a]23[REDACTED:b]6789");
}

#[test]
fn overlaps_resolved() {
    // A custom rule overlapping a builtin: the earlier start wins.
    let s = Scanner::new(
        &Builtin::ALL,
        &[
            ("mail_domain".to_owned(), r"example\.com".to_owned()),
            ("acct".to_owned(), r"acct 4111".to_owned()),
            ("same".to_owned(), r"bob@example\.com".to_owned()),
        ],
    )
    .unwrap();
    let text = "acct 4111111111111111 bob@example.com";
    let f = s.scan(text);
    let got: Vec<(&str, &str)> = f
        .iter()
        .map(|f| (f.detector.as_str(), &text[f.start..f.end]))
        .collect();
    // `acct 4111` starts first and wins over the card; the email wins over
    // the same-span custom rule (builtins first) and the later domain rule.
    assert_eq!(
        got,
        vec![("acct", "acct 4111"), ("email", "bob@example.com")]
    );
    for w in f.windows(2) {
        assert!(w[0].end <= w[1].start);
    }
}

#[test]
fn mixed_prompt() {
    let s = all();
    let text = "Hi, I'm Jane (jane.doe@corp.example), call +1 (415) 555-0132. \
        SSN 123-45-6789, IBAN DE89 3704 0044 0532 0130 00, card 5555-5555-5555-4444. \
        Meeting on 2024-01-15, budget $12,500.00, release v2.3.14, order 100234987.";
    let got: Vec<String> = s.scan(text).into_iter().map(|f| f.detector).collect();
    assert_eq!(got, vec!["email", "phone", "ssn", "iban", "card"]);
}

#[test]
fn non_ascii_text() {
    let s = all();
    let text = "Grüße — Zürich, café: 4111 1111 1111 1111 ✓ ünïcödé@example.com";
    let f = s.scan(text);
    assert!(f.iter().any(|f| f.detector == "card"));
    let r = redact(text, &f);
    assert!(r.contains("[REDACTED:card]"), "{r}");
}

pub(crate) fn sample_prompt() -> String {
    let para = "Please summarise the following customer ticket. The customer, reachable at \
        jane.doe@example.com or 415-555-0132, reports that order 100234987 placed on 2024-01-15 \
        was charged twice ($129.99 each) to the card ending 4242. They are on version 2.14.3 of \
        the app and would like a refund to IBAN DE89 3704 0044 0532 0130 00 within 5 business days. ";
    let mut s = String::new();
    while s.len() < 2048 {
        s.push_str(para);
    }
    s.truncate(2048);
    s
}

#[test]
#[ignore = "timing; run with --release --ignored --nocapture"]
#[allow(clippy::print_stdout)]
fn timing() {
    let s = Scanner::new(
        &Builtin::ALL,
        &[("employee_id".to_owned(), r"\bEMP-[0-9]{6}\b".to_owned())],
    )
    .unwrap();
    let text = sample_prompt();
    let mut n = 0;
    for _ in 0..1000 {
        n += s.scan(&text).len();
    }
    // Minimum and median of 20 batches of 1000 scans: robust to a busy machine.
    let mut batches: Vec<std::time::Duration> = (0..20)
        .map(|_| {
            let t = std::time::Instant::now();
            for _ in 0..1000 {
                n += s.scan(std::hint::black_box(&text)).len();
            }
            t.elapsed() / 1000
        })
        .collect();
    batches.sort();
    println!(
        "scan of {} bytes: min {:?}, median {:?} per scan ({n} findings total)",
        text.len(),
        batches[0],
        batches[10]
    );
}

#[test]
fn token_edge_cases() {
    // Unformatted IBAN glued to a word is not one; followed by text it is.
    assert_miss(Builtin::Iban, "XDE89370400440532013000");
    assert_eq!(
        hits(Builtin::Iban, "IBAN:DE89370400440532013000, thanks"),
        vec!["DE89370400440532013000"]
    );
    // Unknown country: mod-97 alone decides (length 15–34).
    assert_miss(Builtin::Iban, "ZZ00 1234 5678 9012 3456");
    // Bare SSN keyword variants.
    assert_eq!(
        hits(Builtin::Ssn, "Social Security No. 078051120"),
        vec!["078051120"]
    );
    assert_miss(Builtin::Ssn, "ssn list follows, see page 4 then 078051120");
    assert_miss(Builtin::Ssn, "lessons 078051120");
    // Paren NANP glued to a word, or after a plus, is not one.
    assert_miss(Builtin::Phone, "x(415) 555-0132");
    assert_eq!(
        hits(Builtin::Phone, "call (415)555-0132."),
        vec!["(415)555-0132"]
    );
    // Dotted and slashed numbers are not cards.
    assert_miss(Builtin::Card, "1/4111111111111111");
    assert_miss(Builtin::Card, "4111.1111.1111.1111");
}

#[test]
#[ignore = "timing; run with --release --ignored --nocapture"]
#[allow(clippy::print_stdout)]
fn timing_per_detector() {
    let text = sample_prompt();
    for b in Builtin::ALL {
        let s = scanner(b);
        let mut n = 0;
        let mut batches: Vec<std::time::Duration> = (0..10)
            .map(|_| {
                let t = std::time::Instant::now();
                for _ in 0..1000 {
                    n += s.scan(std::hint::black_box(&text)).len();
                }
                t.elapsed() / 1000
            })
            .collect();
        batches.sort();
        println!("{}: min {:?} ({n} findings)", b.name(), batches[0]);
    }
}
