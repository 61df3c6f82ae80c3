//! Adversarial review tests (temporary; deleted after the review).
mod common;

use es_core::projection::CheckpointStore;
use es_core::{EventStore, ExpectedVersion, Metadata, NewEvent, StoreError};
use es_store_pg::projection::{PgCheckpoints, PgProjection, PgReadModel};
use es_store_pg::{PgStore, PgStoreOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

fn opts(schema: &str) -> PgStoreOptions {
    PgStoreOptions {
        schema: schema.to_owned(),
        ..PgStoreOptions::default()
    }
}

fn ev(n: u64) -> NewEvent {
    NewEvent::new("E", 1, format!("{{\"n\":{n}}}").into_bytes())
}

// ---------------------------------------------------------------- least privilege

struct Nothing;
impl PgReadModel for Nothing {
    fn apply(
        &mut self,
        _: &mut postgres::Transaction<'_>,
        _: &es_core::RecordedEvent,
    ) -> Result<(), es_core::projection::BoxError> {
        Ok(())
    }
    fn reset(
        &mut self,
        _: &mut postgres::Transaction<'_>,
    ) -> Result<(), es_core::projection::BoxError> {
        Ok(())
    }
}

#[test]
fn review_least_privilege_role_can_use_existing_tables() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _g = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let store = PgStore::connect_with(&url, opts(&schema)).unwrap();
    store
        .append("s", ExpectedVersion::NoStream, vec![ev(1)])
        .unwrap();
    let role = format!("r_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             GRANT USAGE ON SCHEMA \"{schema}\" TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA \"{schema}\" TO {role};"
        ))
        .unwrap();
    let role_url = url.replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    // the store itself works with DML privileges only
    let s2 = PgStore::connect_with(&role_url, opts(&schema));
    eprintln!(
        "PgStore::connect as DML-only role: {:?}",
        s2.as_ref().map(|_| ())
    );
    if let Ok(s2) = &s2 {
        eprintln!(
            "append: {:?}",
            s2.append("s", ExpectedVersion::Exact(1), vec![ev(2)])
                .map(|r| r.last_position)
        );
    }
    let c = PgCheckpoints::connect(&role_url, &schema);
    eprintln!(
        "PgCheckpoints::connect as DML-only role: {:?}",
        c.as_ref().map(|_| ()).map_err(|e| e.to_string())
    );
    let p = PgProjection::connect(&role_url, &schema, "p", Nothing);
    eprintln!(
        "PgProjection::connect as DML-only role: {:?}",
        p.as_ref().map(|_| ()).map_err(|e| e.to_string())
    );
    let _ = admin.batch_execute(&format!(
        "REVOKE ALL ON ALL TABLES IN SCHEMA \"{schema}\" FROM {role}; REVOKE ALL ON SCHEMA \"{schema}\" FROM {role};"
    ));
    drop(s2);
    assert!(
        c.is_ok() && p.is_ok(),
        "checkpoints/projection refuse a role that can read and write es_checkpoints"
    );
    if let Ok(c) = c {
        c.save("x", 1).unwrap();
    }
}

// ---------------------------------------------------------------- black-hole network

/// A proxy that, once armed, swallows the next COMMIT and everything after it, keeping
/// every socket open (a network partition / a frozen client process).
struct BlackHole {
    url: String,
    armed: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
}

fn black_hole(url: &str) -> BlackHole {
    let config: postgres::Config = url.parse().unwrap();
    let port = config.get_ports()[0];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let pport = listener.local_addr().unwrap().port();
    let armed = Arc::new(AtomicBool::new(false));
    let frozen = Arc::new(AtomicBool::new(false));
    let keep: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let (a, f) = (armed.clone(), frozen.clone());
    std::thread::spawn(move || {
        for c in listener.incoming() {
            let Ok(mut client) = c else { continue };
            let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            keep.lock().unwrap().push(client.try_clone().unwrap());
            keep.lock().unwrap().push(server.try_clone().unwrap());
            let (mut cb, mut sb) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (a1, f1, f2) = (a.clone(), f.clone(), f.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let chunk = &buf[..n];
                    if a1.load(Ordering::SeqCst) && chunk.windows(7).any(|w| w == b"COMMIT\0") {
                        f1.store(true, Ordering::SeqCst);
                    }
                    if f1.load(Ordering::SeqCst) {
                        continue; // swallowed
                    }
                    if server.write_all(chunk).is_err() {
                        break;
                    }
                }
                // keep sockets open: never shut down
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            });
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                loop {
                    let n = match sb.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if f2.load(Ordering::SeqCst) {
                        continue;
                    }
                    if cb.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            });
        }
    });
    BlackHole {
        url: url.replacen(&format!(":{port}/"), &format!(":{pport}/"), 1),
        armed,
        frozen,
    }
}

#[test]
fn review_one_partitioned_writer_blocks_every_writer() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _g = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let hole = black_hole(&url);
    let a = Arc::new(
        PgStore::connect_with(
            &hole.url,
            PgStoreOptions {
                connect_timeout: Duration::from_secs(2),
                ..opts(&schema)
            },
        )
        .unwrap(),
    );
    let b = Arc::new(
        PgStore::connect_with(
            &url,
            PgStoreOptions {
                connect_timeout: Duration::from_secs(2),
                ..opts(&schema)
            },
        )
        .unwrap(),
    );
    a.append("a-1", ExpectedVersion::NoStream, vec![ev(1)])
        .unwrap();
    hole.armed.store(true, Ordering::SeqCst);
    let (ta, ra) = mpsc::channel();
    let a2 = a.clone();
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = a2.append("a-2", ExpectedVersion::NoStream, vec![ev(2)]);
        let _ = ta.send((
            r.map(|r| r.last_position).map_err(|e| e.to_string()),
            t.elapsed(),
        ));
    });
    let t0 = Instant::now();
    while !hole.frozen.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(hole.frozen.load(Ordering::SeqCst));
    let (tb, rb) = mpsc::channel();
    let b2 = b.clone();
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = b2.append("b-1", ExpectedVersion::NoStream, vec![ev(3)]);
        let _ = tb.send((
            r.map(|r| r.last_position).map_err(|e| e.to_string()),
            t.elapsed(),
        ));
    });
    let got_b = rb.recv_timeout(Duration::from_secs(30));
    let got_a = ra.try_recv();
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    for row in admin
        .query(
            "SELECT pid, state, wait_event_type, coalesce(wait_event,''), left(query, 60) FROM pg_stat_activity
             WHERE application_name = 'es-store-pg' AND state <> 'idle'",
            &[],
        )
        .unwrap()
    {
        let (pid, state, wt, we, q): (i32, String, Option<String>, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        eprintln!("backend {pid}: {state} wait={wt:?}/{we} query={q:?}");
    }
    eprintln!(
        "after 30 s: store B (other process, other stream) = {got_b:?}; store A (partitioned) = {got_a:?}"
    );
    assert!(
        got_b.is_ok(),
        "an append of another process to another stream waited >30 s behind a partitioned writer"
    );
}

// ---------------------------------------------------------------- hostile input

#[test]
fn review_hostile_input_round_trips_or_is_refused_typed() {
    let Some((store, _g)) = common::store() else {
        return;
    };
    // NUL in ids/types: typed refusals
    let e = store
        .append("a\0b", ExpectedVersion::Any, vec![ev(1)])
        .unwrap_err();
    assert!(matches!(e, StoreError::InvalidStreamId { .. }), "{e:?}");
    let mut bad = ev(1);
    bad.event_type = "T\0".into();
    let e = store
        .append("s", ExpectedVersion::Any, vec![bad])
        .unwrap_err();
    assert!(matches!(e, StoreError::InvalidEvent { .. }), "{e:?}");
    let mut raw_nul = ev(1);
    raw_nul.payload = b"{\"a\":\"x\0y\"}".to_vec();
    let e = store
        .append("s", ExpectedVersion::Any, vec![raw_nul])
        .unwrap_err();
    assert!(matches!(e, StoreError::InvalidEvent { .. }), "{e:?}");
    // escaped NUL, unicode, metadata with NULs
    let sid = "流-😀-\u{202e}rtl-e\u{301}-\u{fffe}";
    let mut e1 = NewEvent::new(
        "Τύπος-😀",
        7,
        br#"{"s":"a\u0000b","k":"\ud83d\ude00","lone":"\ud800"}"#.to_vec(),
    );
    let mut md = Metadata::new();
    md.actor = Some("act\0or".into());
    md.extra.insert(
        "k\0ey".into(),
        serde_json::json!({"v":"\u{0}", "big": u64::MAX, "f": 1.5e300}),
    );
    e1.metadata = md.clone();
    e1.timestamp = Some("1969-12-31T23:59:59.999999999Z".parse().unwrap());
    let r = store
        .append(sid, ExpectedVersion::NoStream, vec![e1.clone()])
        .unwrap();
    let back: Vec<_> = store
        .read_stream(sid, 1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].payload, e1.payload);
    assert_eq!(back[0].metadata, md);
    assert_eq!(back[0].event_type, e1.event_type);
    assert_eq!(back[0].timestamp, e1.timestamp.unwrap());
    assert_eq!(back[0].position, r.first_position);
    // idempotent retry of the unicode append
    let again = store
        .append(sid, ExpectedVersion::NoStream, vec![e1])
        .unwrap();
    assert!(again.retried);
}

#[test]
fn review_long_stream_id_under_raised_limit() {
    let Some((store, _g)) = common::store_with(PgStoreOptions {
        limits: es_core::Limits {
            max_stream_id_len: 100_000,
            ..Default::default()
        },
        ..Default::default()
    }) else {
        return;
    };
    // incompressible 6000-byte id
    let id: String = (0..3000).map(|_| format!("{:02x}", rand_byte())).collect();
    let ok_first = store.append("short", ExpectedVersion::NoStream, vec![ev(1)]);
    assert!(ok_first.is_ok());
    let r = store.append(&id, ExpectedVersion::NoStream, vec![ev(2)]);
    eprintln!(
        "6000-byte stream id: {:?}",
        r.as_ref().map(|r| r.last_position).map_err(|e| (
            e.to_string(),
            format!("{e:?}").chars().take(200).collect::<String>()
        ))
    );
    let v = store.stream_version(&id);
    eprintln!("stream_version: {v:?}");
}

fn rand_byte() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0]
}

// ---------------------------------------------------------------- idempotency across processes

#[test]
fn review_same_append_from_many_stores_at_once_is_written_once() {
    let Some(url) = common::url() else { return };
    let schema = common::fresh_schema();
    let _g = common::SchemaGuard {
        url: url.clone(),
        schema: schema.clone(),
    };
    let stores: Vec<Arc<PgStore>> = (0..4)
        .map(|_| Arc::new(PgStore::connect_with(&url, opts(&schema)).unwrap()))
        .collect();
    for round in 0..30u64 {
        let batch = vec![ev(round), ev(round + 1000)];
        let expected = if round % 2 == 0 {
            ExpectedVersion::Any
        } else {
            ExpectedVersion::StreamExists
        };
        if round == 0 {
            stores[0]
                .append("seed", ExpectedVersion::NoStream, vec![ev(0)])
                .unwrap();
        }
        let stream = if round % 3 == 0 {
            "shared".to_string()
        } else {
            format!("r-{round}")
        };
        if expected == ExpectedVersion::StreamExists
            && stores[0].stream_version(&stream).unwrap() == 0
        {
            stores[0]
                .append(&stream, ExpectedVersion::NoStream, vec![ev(round + 5000)])
                .unwrap();
        }
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let s = stores[i % 4].clone();
                let (b, st) = (batch.clone(), stream.clone());
                std::thread::spawn(move || s.append(&st, expected, b))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let fresh = results
            .iter()
            .filter(|r| matches!(r, Ok(r) if !r.retried))
            .count();
        let firsts: std::collections::BTreeSet<_> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|r| r.first_position))
            .collect();
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(fresh, 1, "{results:?}");
        assert_eq!(firsts.len(), 1, "{results:?}");
    }
    let all: Vec<_> = stores[0]
        .read_all(1)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let ids: std::collections::BTreeSet<_> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), all.len());
}
