//! The Credits parser (`crates/domain/src/credits.rs`).
//!
//! Input: any bytes, read as text (lossily). Oracles:
//! * `parse` agrees with an independent reference (plain `i128`
//!   arithmetic over the documented grammar `-?[0-9]+(\.[0-9]{1,3})?`),
//!   value and kind of error alike;
//! * `Display` round-trips: what an amount shows parses back to it, and
//!   shows the same again;
//! * serde agrees with `parse` (a JSON string) and with whole credits (a
//!   JSON integer);
//! * the first eight bytes as milli-credits round-trip through `Display`.

use std::str::FromStr;

use creditgate_domain::{Credits, ParseCreditsError};

/// What the documented grammar says of `s`: milli-credits or the error's kind.
fn reference(s: &str) -> Result<i64, &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = match body.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (body, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || frac.is_some_and(|f| !digits(f)) {
        return Err("syntax");
    }
    let frac = frac.unwrap_or("");
    if frac.len() > 3 {
        return Err("too precise");
    }
    // Past 10^30 the value is out of range anyway: stop growing.
    let cap: i128 = 10i128.pow(30);
    let mut value: i128 = 0;
    for b in whole.bytes() {
        value = (value * 10 + i128::from(b - b'0')).min(cap);
    }
    value *= 1000;
    let mut scale = 100;
    for b in frac.bytes() {
        value += i128::from(b - b'0') * scale;
        scale /= 10;
    }
    if negative {
        value = -value;
    }
    i64::try_from(value).map_err(|_| "out of range")
}

fn kind(e: &ParseCreditsError) -> &'static str {
    match e {
        ParseCreditsError::Empty => "empty",
        ParseCreditsError::Syntax(_) => "syntax",
        ParseCreditsError::TooPrecise(_) => "too precise",
        ParseCreditsError::OutOfRange(_) => "out of range",
    }
}

fn assert_round_trip(c: Credits) {
    let shown = c.to_string();
    let back =
        Credits::from_str(&shown).unwrap_or_else(|e| panic!("{c:?} shows as {shown:?}, which does not parse: {e}"));
    assert_eq!(back, c, "{shown:?} parses to another amount");
    assert_eq!(back.to_string(), shown, "the display of {c:?} is not canonical");
    let json = serde_json::to_string(&c).expect("serialize");
    assert_eq!(json, format!("\"{shown}\""));
    assert_eq!(
        serde_json::from_str::<Credits>(&json).ok(),
        Some(c),
        "serde round trip of {c:?}"
    );
}

pub fn target(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let parsed = Credits::from_str(&text);
    match (&parsed, reference(&text)) {
        (Ok(c), Ok(millis)) => assert_eq!(c.millis(), millis, "{text:?}"),
        (Err(e), Err(expected)) => {
            assert_eq!(kind(e), expected, "{text:?}: {e}");
            let _ = e.to_string();
        }
        (got, expected) => panic!("{text:?}: parsed as {got:?}, the grammar says {expected:?}"),
    }
    if let Ok(c) = parsed {
        assert_round_trip(c);
    }
    // A JSON string holding the text is read with the same parser.
    let quoted = serde_json::to_string(&*text).expect("serialize a string");
    assert_eq!(
        serde_json::from_str::<Credits>(&quoted).ok(),
        parsed.as_ref().ok().copied(),
        "serde disagrees with parse on {text:?}"
    );
    // The bytes as JSON: an integer is whole credits.
    if let Ok(c) = serde_json::from_slice::<Credits>(data)
        && let Ok(whole) = serde_json::from_slice::<i64>(data)
    {
        assert_eq!(Some(c), Credits::from_whole(whole), "{text:?} as whole credits");
    }
    if let Some(first) = data.first_chunk::<8>() {
        assert_round_trip(Credits::from_millis(i64::from_le_bytes(*first)));
    }
}
