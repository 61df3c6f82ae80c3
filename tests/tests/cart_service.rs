//! The shopping cart HTTP service, started on a loopback port and driven over real HTTP:
//! commands, `ETag`/`If-Match` (412 on a stale version), 422 for a refused command, 404
//! for a missing cart, the audit history, the materialized view, two concurrent writers
//! on one cart, and a change-feed client that reconnects with `Last-Event-ID` and misses
//! nothing.

use es_examples::cart_service::start;
use es_store_fs::{FileCheckpoints, FileStore};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A response: status, headers (lower-case names), body.
struct Reply {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Value,
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<BTreeMap<_, _>>();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|t| t == "chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// Starts the service on an ephemeral loopback port.
async fn serve(dir: &std::path::Path) -> SocketAddr {
    let store = Arc::new(FileStore::open(dir.join("events")).unwrap());
    let service = start(
        store,
        FileCheckpoints::open(dir.join("checkpoints")).unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, service.router).await });
    addr
}

/// Starts the service on PostgreSQL (`ES_PG_URL`), in a schema of its own. The
/// synchronous client runs its own runtime, so it connects off the async threads.
async fn serve_pg(url: String) -> SocketAddr {
    let (store, checkpoints) = tokio::task::spawn_blocking(move || {
        let schema = format!("cart_service_{}", std::process::id());
        let store = es_store_pg::PgStore::connect_with(
            &url,
            es_store_pg::PgStoreOptions {
                schema: schema.clone(),
                ..Default::default()
            },
        )
        .unwrap();
        let checkpoints = es_store_pg::projection::PgCheckpoints::connect(&url, &schema).unwrap();
        (Arc::new(store), checkpoints)
    })
    .await
    .unwrap();
    let service = start(store, checkpoints);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, service.router).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_versions_errors_history_and_the_view_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(dir.path()).await;
    scenario(addr).await;
}

/// The same on PostgreSQL, when a server is given (CI starts one and sets `ES_PG_URL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_service_on_postgres() {
    let Ok(url) = std::env::var("ES_PG_URL") else {
        eprintln!("SKIPPED: ES_PG_URL is not set; the service's PostgreSQL run needs a server");
        assert!(std::env::var_os("CI").is_none(), "CI must set ES_PG_URL");
        return;
    };
    let addr = serve_pg(url).await;
    scenario(addr).await;
}

async fn scenario(addr: SocketAddr) {
    let missing = request(addr, "GET", "/carts/42", &[], None).await;
    assert_eq!(missing.status, 404);
    let add_to_missing = request(
        addr,
        "POST",
        "/carts/9/items",
        &[],
        Some(json!({"product": "tea", "quantity": 1})),
    )
    .await;
    assert_eq!(add_to_missing.status, 404);

    let created = request(
        addr,
        "POST",
        "/carts/42",
        &[("x-actor", "alice")],
        Some(json!({"user_id": "alice"})),
    )
    .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.headers["etag"], "\"1\"");
    assert_eq!(created.body["user_id"], "alice");

    let added = request(
        addr,
        "POST",
        "/carts/42/items",
        &[("if-match", "\"1\""), ("x-actor", "alice")],
        Some(json!({"product": "tea", "quantity": 3, "unit_price_cents": 350})),
    )
    .await;
    assert_eq!(added.status, 200);
    assert_eq!(added.headers["etag"], "\"2\"");

    // a client that read version 1 and writes now: 412, nothing written
    let stale = request(
        addr,
        "POST",
        "/carts/42/items",
        &[("if-match", "\"1\"")],
        Some(json!({"product": "cups", "quantity": 1, "unit_price_cents": 900})),
    )
    .await;
    assert_eq!(stale.status, 412);
    assert_eq!(stale.headers["etag"], "\"2\"");

    // a refused command: 422 with the cart's own message
    let refused = request(addr, "DELETE", "/carts/42/items/tea?quantity=5", &[], None).await;
    assert_eq!(refused.status, 422);
    assert_eq!(
        refused.body["error"],
        "cannot remove 5 of `tea`: the cart holds 3"
    );
    let removed = request(addr, "DELETE", "/carts/42/items/tea?quantity=1", &[], None).await;
    assert_eq!(removed.status, 200);

    let got = request(addr, "GET", "/carts/42", &[], None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.headers["etag"], "\"3\"");
    assert_eq!(got.body["items"]["tea"]["quantity"], 2);

    let bought = request(
        addr,
        "POST",
        "/carts/42/checkout",
        &[("if-match", "\"3\"")],
        None,
    )
    .await;
    assert_eq!(bought.status, 200);
    assert_eq!(bought.body["purchased"], true);
    let again = request(addr, "POST", "/carts/42/checkout", &[], None).await;
    assert_eq!(again.status, 422);

    let history = request(addr, "GET", "/carts/42/history", &[], None).await;
    let types: Vec<&str> = history
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "CartCreated",
            "ProductAdded",
            "ProductRemoved",
            "CartPurchased"
        ]
    );
    assert_eq!(history.body[0]["actor"], "alice");

    // the materialized view catches up
    let mut sold = Value::Null;
    for _ in 0..200 {
        let view = request(addr, "GET", "/views/quantity-sold", &[], None).await;
        sold = view.body["quantity_sold"].clone();
        if sold["tea"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sold["tea"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_on_one_cart() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(dir.path()).await;
    request(
        addr,
        "POST",
        "/carts/7",
        &[],
        Some(json!({"user_id": "bob"})),
    )
    .await;
    // without If-Match both land (the second retried on fresh state)
    let writers: Vec<_> = (0..2)
        .map(|i| {
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for n in 0..10 {
                    let r = request(
                        addr,
                        "POST",
                        "/carts/7/items",
                        &[],
                        Some(json!({"product": format!("p{i}-{n}"), "quantity": 1})),
                    )
                    .await;
                    statuses.push(r.status);
                }
                statuses
            })
        })
        .collect();
    for w in writers {
        let statuses = w.await.unwrap();
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    }
    let cart = request(addr, "GET", "/carts/7", &[], None).await;
    assert_eq!(cart.headers["etag"], "\"21\"");
    // with If-Match on the same version, exactly one wins
    let racers: Vec<_> = (0..2)
        .map(|i| {
            tokio::spawn(async move {
                request(
                    addr,
                    "POST",
                    "/carts/7/items",
                    &[("if-match", "\"21\"")],
                    Some(json!({"product": format!("race-{i}"), "quantity": 1})),
                )
                .await
                .status
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for r in racers {
        statuses.push(r.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [200, 412]);
}

/// Reads SSE events (id, data) from a feed connection until `n` arrive.
async fn read_events(
    lines: &mut tokio::io::Lines<BufReader<TcpStream>>,
    n: usize,
) -> Vec<(u64, Value)> {
    let mut out = Vec::new();
    let mut id = None;
    while out.len() < n {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("the feed delivers")
            .unwrap()
            .expect("the feed stays open");
        // chunked framing lines (sizes) carry no "id:" or "data:" prefix
        if let Some(v) = line.strip_prefix("id:") {
            id = Some(v.trim().parse::<u64>().unwrap());
        } else if let Some(v) = line.strip_prefix("data:") {
            out.push((id.take().unwrap(), serde_json::from_str(v.trim()).unwrap()));
        }
    }
    out
}

async fn open_feed(
    addr: SocketAddr,
    last_event_id: Option<u64>,
) -> tokio::io::Lines<BufReader<TcpStream>> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = "GET /feed HTTP/1.1\r\nhost: test\r\naccept: text/event-stream\r\n".to_owned();
    if let Some(last) = last_event_id {
        head.push_str(&format!("last-event-id: {last}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    BufReader::new(stream).lines()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_feed_resumes_with_last_event_id_and_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let addr = serve(dir.path()).await;
    request(addr, "POST", "/carts/1", &[], Some(json!({"user_id": "a"}))).await;
    let mut feed = open_feed(addr, None).await;
    let first = read_events(&mut feed, 1).await;
    assert_eq!(first[0].0, 1);
    assert_eq!(first[0].1["event_type"], "CartCreated");
    // live: appends after the connection
    for n in 0..5 {
        request(
            addr,
            "POST",
            "/carts/1/items",
            &[],
            Some(json!({"product": format!("p{n}"), "quantity": 1})),
        )
        .await;
    }
    let live = read_events(&mut feed, 3).await;
    assert_eq!(live.iter().map(|e| e.0).collect::<Vec<_>>(), [2, 3, 4]);
    drop(feed);
    // more events while disconnected, then resume after the last one seen
    for n in 0..3 {
        request(
            addr,
            "POST",
            "/carts/1/items",
            &[],
            Some(json!({"product": format!("q{n}"), "quantity": 1})),
        )
        .await;
    }
    let mut feed = open_feed(addr, Some(4)).await;
    let resumed = read_events(&mut feed, 5).await;
    assert_eq!(
        resumed.iter().map(|e| e.0).collect::<Vec<_>>(),
        [5, 6, 7, 8, 9],
        "every event after the last one seen, once, in order"
    );
}
