#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use super::*;

/// Positive samples of every detector (and a custom rule), with the
/// detector alone that finds them.
fn samples() -> Vec<(Option<Builtin>, String)> {
    let gh = format!("ghp_{}", "a1B2c3D4e5".repeat(4));
    let pem =
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabcd==\n-----END RSA PRIVATE KEY-----";
    let mut v: Vec<(Option<Builtin>, String)> = Vec::new();
    for s in [
        "4111 1111 1111 1111",
        "5555-5555-5555-4444",
        "378282246310005",
    ] {
        v.push((Some(Builtin::Card), s.to_owned()));
    }
    for s in ["123-45-6789", "123 45 6789", "SSN: 078051120"] {
        v.push((Some(Builtin::Ssn), s.to_owned()));
    }
    for s in [
        "DE89 3704 0044 0532 0130 00",
        "GB82WEST12345698765432",
        "GB82 WEST 1234 5698 7654 32",
    ] {
        v.push((Some(Builtin::Iban), s.to_owned()));
    }
    for s in ["jane.doe+tag@mail.example.com", "a@b.io"] {
        v.push((Some(Builtin::Email), s.to_owned()));
    }
    for s in [
        "+1 (415) 555-0132",
        "(415) 555-0132",
        "415.555.0132",
        "+44 20 7946 0958",
    ] {
        v.push((Some(Builtin::Phone), s.to_owned()));
    }
    for s in [
        "AKIAIOSFODNN7EXAMPLE",
        gh.as_str(),
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXyZ",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N",
        pem,
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    ] {
        v.push((Some(Builtin::Secret), s.to_owned()));
    }
    v.push((None, "EMP-123456".to_owned()));
    v
}

/// Prose around a sample: at the start, mid-sentence with non-ASCII text,
/// and at the very end; plus near misses that must stay unredacted.
fn texts(sample: &str) -> Vec<String> {
    vec![
        format!("{sample} opens it."),
        format!("Grüße — here it is: {sample}. Thanks, café ✓ done"),
        format!("value\n{sample}"),
        format!("x,{sample} and {sample}!"),
    ]
}

fn near_misses() -> Vec<String> {
    vec![
        "order 4111 1111 1111 1111 2 is glued".to_owned(),
        "abc4111111111111111 and 1/4111111111111111".to_owned(),
        "IBAN DE89 3704 0044 0532 0130 00 ASAP please".to_owned(),
        "PLEASE NOTE GB82 WEST 1234 5698 7654 32 THANKS A LOT".to_owned(),
        "REF AB12 CDEF GHIJ and XY99 ZZZZ 0000 0000".to_owned(),
        "call x(415) 555-0132 or 415 555 0132".to_owned(),
        "the ssn list follows, see page 4 then 078051120".to_owned(),
        "-----BEGIN PUBLIC KEY----- and sk-learn-compatible-estimators".to_owned(),
        "version 2.14.3, $129.99, 2024-01-15 — naïve résumé".to_owned(),
    ]
}

fn whole(s: &Scanner, text: &str) -> (String, Vec<(String, usize)>) {
    let f = s.scan(text);
    let mut counts: Vec<(String, usize)> = Vec::new();
    for x in &f {
        match counts.iter_mut().find(|(d, _)| *d == x.detector) {
            Some((_, n)) => *n += 1,
            None => counts.push((x.detector.clone(), 1)),
        }
    }
    (redact(text, &f), counts)
}

fn streamed(s: &Scanner, chunks: &[&str]) -> (String, Vec<(String, usize)>) {
    let mut r = StreamRedactor::new(s);
    let mut out = String::new();
    for c in chunks {
        out.push_str(&r.push(c));
    }
    out.push_str(&r.finish());
    (out, r.found().to_vec())
}

/// Every split into two chunks at each char boundary, and one chunk per
/// character, give the whole-text result.
fn check_all_splits(s: &Scanner, text: &str) {
    let expected = whole(s, text);
    for (i, _) in text.char_indices().chain([(text.len(), ' ')]) {
        let got = streamed(s, &[&text[..i], &text[i..]]);
        assert_eq!(got, expected, "split at {i} of {text:?}");
    }
    let chars: Vec<String> = text.chars().map(String::from).collect();
    let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(streamed(s, &refs), expected, "per char: {text:?}");
}

fn custom_scanner(builtins: &[Builtin]) -> Scanner {
    Scanner::new(
        builtins,
        &[("employee_id".to_owned(), r"\bEMP-[0-9]{6}\b".to_owned())],
    )
    .unwrap()
}

#[test]
fn every_split_matches_whole_text_per_detector() {
    for (b, sample) in samples() {
        let s = match b {
            Some(b) => Scanner::new(&[b], &[]).unwrap(),
            None => custom_scanner(&[]),
        };
        for text in texts(&sample) {
            let (redacted, _) = whole(&s, &text);
            assert!(redacted.contains("[REDACTED:"), "{b:?} {text:?}");
            assert!(!redacted.contains(&sample), "{b:?} {text:?}");
            check_all_splits(&s, &text);
        }
    }
}

#[test]
fn every_split_matches_whole_text_all_detectors() {
    let s = custom_scanner(&Builtin::ALL);
    for (_, sample) in samples() {
        for text in texts(&sample) {
            check_all_splits(&s, &text);
        }
    }
    for text in near_misses() {
        check_all_splits(&s, &text);
    }
    let mixed = "Hi, I'm Jane (jane.doe@corp.example), call +1 (415) 555-0132. \
        SSN 123-45-6789, IBAN DE89 3704 0044 0532 0130 00, card 5555-5555-5555-4444.";
    check_all_splits(&s, mixed);
}

#[test]
fn every_pair_of_splits_on_a_card() {
    let s = Scanner::new(&Builtin::ALL, &[]).unwrap();
    let text = "pay with 4111 1111 1111 1111, then 5555-5555-5555-4444 ok";
    let expected = whole(&s, text);
    for i in 0..=text.len() {
        for j in i..=text.len() {
            let got = streamed(&s, &[&text[..i], &text[i..j], &text[j..]]);
            assert_eq!(got, expected, "splits {i},{j}");
        }
    }
}

#[test]
fn prose_flows_holding_only_the_last_word() {
    let s = Scanner::new(&Builtin::ALL, &[]).unwrap();
    let mut r = StreamRedactor::new(&s);
    let out = r.push("The quick brown fox jumps");
    assert_eq!(out, "The quick brown fox ");
    assert_eq!(r.held(), "jumps".len());
    // A trailing dot could still join a number (`0132.5`): held.
    assert_eq!(r.push(" over."), "jumps ");
    assert_eq!(r.push("\n"), "over.\n");
    assert_eq!(r.held(), 0);
    // Digit groups joined by spaces are held together; a word ends them.
    assert_eq!(r.push("Card 4111 1111"), "Card ");
    assert_eq!(r.held(), "4111 1111".len());
    assert_eq!(r.push(" 1111 1111 thanks"), "[REDACTED:card] ");
    assert_eq!(r.finish(), "thanks");
    assert_eq!(r.found(), &[("card".to_owned(), 1)]);
    // Capitals are held only as far as an IBAN could reach back.
    assert_eq!(r.push("THIS IS VERY LOUD"), "THIS IS VERY ");
    assert_eq!(r.push(" GB82 WEST"), "LOUD ");
    assert_eq!(r.held(), "GB82 WEST".len());
}

#[test]
fn pem_block_is_held_until_its_end_line() {
    let s = Scanner::new(&[Builtin::Secret], &[]).unwrap();
    let mut r = StreamRedactor::new(&s);
    assert_eq!(r.push("key: -----BEGIN RSA PRI"), "key: ");
    assert_eq!(r.push("VATE KEY-----\nMIIE owIB AAKC\n"), "");
    assert_eq!(
        r.push("-----END RSA PRIVATE KEY----- done"),
        "[REDACTED:secret] "
    );
    assert_eq!(r.finish(), "done");
}

#[test]
fn block_mode_stops_before_the_match() {
    let s = Scanner::new(&[Builtin::Card], &[]).unwrap();
    let mut r = StreamRedactor::new(&s);
    assert_eq!(
        r.push_or_block("your card is 4111 1111").unwrap(),
        "your card is "
    );
    let b = r.push_or_block(" 1111 1111 ok").unwrap_err();
    assert_eq!(b.detector, "card");
    assert_eq!(b.before, "");
    assert_eq!(r.push_or_block(" more").unwrap(), "");
    assert_eq!(r.finish_or_block().unwrap(), "");
    // At the end of the stream.
    let mut r = StreamRedactor::new(&s);
    assert_eq!(r.push_or_block("a b ").unwrap(), "a b ");
    assert_eq!(r.push_or_block("c 4111111111111111").unwrap(), "c ");
    let b = r.finish_or_block().unwrap_err();
    assert_eq!((b.detector.as_str(), b.before.as_str()), ("card", ""));
}

#[test]
fn custom_rules_hold_a_bounded_window() {
    let s = custom_scanner(&[]);
    let mut r = StreamRedactor::new(&s);
    let long = "word ".repeat(100);
    let out = r.push(&long);
    assert_eq!(out.len(), long.len() - CUSTOM_HOLD);
    // Less than a step more: nothing goes out yet.
    assert_eq!(r.push(&"x".repeat(CUSTOM_STEP - 1)), "");
    assert_eq!(r.held(), CUSTOM_HOLD + CUSTOM_STEP - 1);
    let mut rest = r.push("y");
    rest.push_str(&r.finish());
    assert_eq!(
        format!("{out}{rest}"),
        format!("{long}{}y", "x".repeat(CUSTOM_STEP - 1))
    );
}

#[test]
fn long_runs_are_cut_at_max_hold_without_splitting_chars() {
    let s = Scanner::new(&Builtin::ALL, &[]).unwrap();
    let mut r = StreamRedactor::new(&s);
    let run = "a".repeat(MAX_HOLD + 100);
    let mut out = r.push(&run);
    assert_eq!(out.len(), 100);
    assert!(r.held() <= MAX_HOLD);
    out.push_str(&r.push("é"));
    out.push_str(&r.finish());
    assert_eq!(out, format!("{run}é"));
}

#[test]
fn works_with_a_shared_scanner() {
    let s = Arc::new(Scanner::new(&[Builtin::Email], &[]).unwrap());
    let mut r = StreamRedactor::new(Arc::clone(&s));
    let mut out = r.push("mail jane@exa");
    out.push_str(&r.push("mple.com now"));
    out.push_str(&r.finish());
    assert_eq!(out, "mail [REDACTED:email] now");
}

/// Cost of the stream redactor per chunk: a 2 KB answer in 4-byte chunks
/// (about a token each), every built-in detector plus one custom rule, and
/// built-ins only.
#[test]
#[ignore = "timing; run with --release --ignored --nocapture"]
#[allow(clippy::print_stdout)]
fn timing_stream() {
    let text = crate::tests::sample_prompt();
    let chunks: Vec<&str> = text
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    for (label, s) in [
        ("builtins", Scanner::new(&Builtin::ALL, &[]).unwrap()),
        ("builtins + custom", custom_scanner(&Builtin::ALL)),
    ] {
        let mut n = 0;
        let mut run = || {
            let mut r = StreamRedactor::new(&s);
            for c in &chunks {
                n += r.push(std::hint::black_box(c)).len();
            }
            n += r.finish().len();
        };
        for _ in 0..100 {
            run();
        }
        let mut batches: Vec<std::time::Duration> = (0..20)
            .map(|_| {
                let t = std::time::Instant::now();
                for _ in 0..100 {
                    run();
                }
                t.elapsed() / (100 * chunks.len() as u32)
            })
            .collect();
        batches.sort();
        println!(
            "{label}: {} chunks of 4 bytes: min {:?}, median {:?} per chunk ({n} bytes out)",
            chunks.len(),
            batches[0],
            batches[10]
        );
    }
}

/// Every sample and near miss in one text, joined by assorted separators,
/// pushed in pseudo-random chunk sizes (1–16 bytes, on char boundaries):
/// the result is always the whole-text one.
#[test]
fn random_chunking_of_everything() {
    let s = custom_scanner(&Builtin::ALL);
    let seps = [
        " ", "\n", ", ", " — ", "(", ") ", ": ", "\t", "  ", "/", ".",
    ];
    let mut text = String::new();
    for (i, (_, sample)) in samples().into_iter().enumerate() {
        text.push_str(&sample);
        text.push_str(seps[i % seps.len()]);
        text.push_str("word ");
    }
    for (i, t) in near_misses().into_iter().enumerate() {
        text.push_str(&t);
        text.push_str(seps[(i + 3) % seps.len()]);
    }
    let expected = whole(&s, &text);
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..300 {
        let mut chunks = Vec::new();
        let mut i = 0;
        while i < text.len() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut j = (i + 1 + (seed % 16) as usize).min(text.len());
            while !text.is_char_boundary(j) {
                j += 1;
            }
            chunks.push(&text[i..j]);
            i = j;
        }
        assert_eq!(streamed(&s, &chunks), expected, "{chunks:?}");
    }
}
