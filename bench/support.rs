//! What the benchmarks of this package share: SQLite as a user would write an events
//! table, the raw time of the disk's `fdatasync`, and the event they write. Each bench
//! uses part of it.
#![allow(dead_code)]

use es_core::NewEvent;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

/// SQLite as a user would write the events table: WAL, `synchronous=FULL` (or `OFF`), each
/// append an `IMMEDIATE` transaction that checks the stream's version, inserts and commits.
pub struct Sqlite {
    pub conn: Connection,
}

impl Sqlite {
    pub fn open(path: &Path, durable: bool) -> Sqlite {
        let conn = Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "OFF" })
            .unwrap();
        conn.busy_timeout(Duration::from_secs(60)).unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS events (
                position INTEGER PRIMARY KEY,
                stream_id TEXT NOT NULL,
                version INTEGER NOT NULL,
                event_id BLOB NOT NULL,
                event_type TEXT NOT NULL,
                schema_version INTEGER NOT NULL,
                recorded_at INTEGER NOT NULL,
                metadata TEXT,
                payload TEXT NOT NULL,
                UNIQUE(stream_id, version)
            );",
        )
        .unwrap();
        Sqlite { conn }
    }

    /// An append as a user would write it: check the expected version, insert, commit.
    pub fn append(&mut self, stream: &str, expected: u64, events: &[NewEvent]) {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        let current: u64 = tx
            .prepare_cached("SELECT max(version) FROM events WHERE stream_id = ?1")
            .unwrap()
            .query_row(params![stream], |r| r.get::<_, Option<u64>>(0))
            .optional()
            .unwrap()
            .flatten()
            .unwrap_or(0);
        assert_eq!(current, expected, "sqlite conflict");
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO events (stream_id, version, event_id, event_type, schema_version, recorded_at, metadata, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7)",
                )
                .unwrap();
            let now = 1_700_000_000_000_000i64;
            for (i, e) in events.iter().enumerate() {
                insert
                    .execute(params![
                        stream,
                        current + 1 + i as u64,
                        &e.event_id.as_bytes()[..],
                        e.event_type,
                        e.schema_version,
                        now,
                        std::str::from_utf8(&e.payload).unwrap()
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
}

/// The raw time of one `fdatasync` of a 200-byte write in `dir`, median of 50.
pub fn fdatasync_time(dir: &Path) -> Duration {
    use std::io::Write;
    let path = dir.join("sync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut times: Vec<Duration> = (0..50)
        .map(|_| {
            f.write_all(&[7u8; 200]).unwrap();
            let start = Instant::now();
            f.sync_data().unwrap();
            start.elapsed()
        })
        .collect();
    drop(f);
    let _ = std::fs::remove_file(path);
    times.sort();
    times[times.len() / 2]
}

/// The event every bench writes and decodes: about 150 to 160 bytes of JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductAdded {
    pub cart_id: String,
    pub product_id: String,
    pub quantity: u32,
    pub unit_price_cents: u64,
    pub currency: String,
    pub note: String,
}

/// The JSON payload of event `i` (of stream `i / 10`): about 150 bytes.
pub fn payload(i: u64) -> Vec<u8> {
    let p = format!(
        r#"{{"cart_id":"cart-{:08}","product_id":"product-{:06}","quantity":{},"unit_price_cents":{},"currency":"EUR","note":"{}"}}"#,
        i / 10,
        i % 997,
        1 + i % 5,
        199 + i % 5000,
        "gift wrap please, leave at door"
    );
    p.into_bytes()
}

/// A small deterministic generator (splitmix64), so that every run draws the same streams.
pub struct Draw(pub u64);

impl Draw {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i as u64 + 1) as usize);
        }
    }
}

/// Decodes a payload as every system here does: one UTF-8 check of the text (SQLite's
/// `as_str` makes the same), then serde_json's parse of checked text (as es-core's
/// `Event::decode_stored` does).
pub fn decode(payload: &[u8]) -> ProductAdded {
    serde_json::from_str(std::str::from_utf8(payload).unwrap()).unwrap()
}

/// Writes `payloads` as an independent raw log at `path`, synced: per payload a 4-byte
/// length, a CRC-32C and the payload, in one file. The physical limit of a replay.
pub fn write_raw_log(path: &Path, payloads: impl IntoIterator<Item = impl AsRef<[u8]>>) {
    use std::io::Write;
    let file = std::fs::File::create(path).unwrap();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    for p in payloads {
        let p = p.as_ref();
        out.write_all(&(p.len() as u32).to_le_bytes()).unwrap();
        out.write_all(&crc32c::crc32c(p).to_le_bytes()).unwrap();
        out.write_all(p).unwrap();
    }
    out.into_inner().unwrap().sync_all().unwrap();
}

/// Reads the raw log at `path` through a 1 MiB buffer: checks each record's CRC-32C and
/// hands its payload to `counts`; returns how many it counted.
#[inline(never)]
pub fn raw_replay(path: &Path, mut counts: impl FnMut(&[u8]) -> bool) -> u64 {
    use std::io::Read;
    let mut file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let (mut start, mut end, mut count) = (0usize, 0usize, 0u64);
    loop {
        let len = buf[start..end]
            .first_chunk::<4>()
            .map(|l| u32::from_le_bytes(*l) as usize);
        let Some(len) = len.filter(|len| end - start >= 8 + len) else {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
            let got = file.read(&mut buf[end..]).unwrap();
            if got == 0 {
                assert_eq!(end, 0, "raw log ends inside a record");
                return count;
            }
            end += got;
            continue;
        };
        let crc = u32::from_le_bytes(buf[start + 4..start + 8].try_into().unwrap());
        let body = &buf[start + 8..start + 8 + len];
        assert_eq!(crc32c::crc32c(body), crc, "raw log damaged");
        count += u64::from(counts(body));
        start += 8 + len;
    }
}
