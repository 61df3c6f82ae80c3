//! Whether a faster JSON parser pays for the store's payloads: decodes the ~150-byte event
//! of the other benches into its typed struct (four owned strings, two numbers) with
//! serde_json (from checked text, as es-core's `Event::decode_stored` does), sonic-rs and
//! simd-json, interleaved in rounds, and prints nanoseconds per decode.
//!
//! `cargo bench -p es-bench --bench parsers` (`ES_PARSE_DECODES` decodes per parser and
//! round, default 2,000,000; 5 rounds, the first a warm-up).

mod support;

use std::hint::black_box;
use std::time::Instant;
use support::{ProductAdded, payload};

/// What a decoded event weighs, so that no field goes unread.
fn weight(e: &ProductAdded) -> u64 {
    (e.cart_id.len() + e.product_id.len() + e.currency.len() + e.note.len()) as u64
        + u64::from(e.quantity)
        + e.unit_price_cents
}

fn time(n: usize, mut decode: impl FnMut(usize) -> u64) -> (f64, u64) {
    let start = Instant::now();
    let mut sum = 0u64;
    for i in 0..n {
        sum = sum.wrapping_add(decode(i));
    }
    (start.elapsed().as_nanos() as f64 / n as f64, sum)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` smoke-runs nothing here
    }
    let n: usize = std::env::var("ES_PARSE_DECODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let payloads: Vec<Vec<u8>> = (0..4096).map(payload).collect();
    let at = |i: usize| &payloads[i & 4095];
    let mut scratch = Vec::new();
    println!(
        "payload {} bytes; ns per decode into the typed event",
        payloads[0].len()
    );
    println!("| round | serde_json (checked text) | sonic-rs | simd-json (copy to scratch) |");
    println!("|---|---|---|---|");
    for round in 0..5 {
        let (serde, a) = time(n, |i| {
            let text = std::str::from_utf8(at(i)).expect("UTF-8");
            weight(black_box(
                &serde_json::from_str::<ProductAdded>(text).expect("decode"),
            ))
        });
        let (sonic, b) = time(n, |i| {
            weight(black_box(
                &sonic_rs::from_slice::<ProductAdded>(at(i)).expect("decode"),
            ))
        });
        let (simd, c) = time(n, |i| {
            scratch.clear();
            scratch.extend_from_slice(at(i));
            weight(black_box(
                &simd_json::serde::from_slice::<ProductAdded>(&mut scratch).expect("decode"),
            ))
        });
        assert!(a == b && b == c, "the parsers decode the same events");
        if round > 0 {
            println!("| {round} | {serde:.0} | {sonic:.0} | {simd:.0} |");
        }
    }
}
