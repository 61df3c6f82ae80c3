//! What the async face costs: commands per second through `AsyncRepository` against the
//! synchronous `Repository`, on the file store with durable appends, in the same run.
//!
//! `cargo bench -p es-store-fs --bench async_facade`
//!
//! Workload: a bank-account-like aggregate, one event per command (about 40 bytes of
//! JSON), each task or thread on its own aggregate (random-free: ids `t-0` … `t-63`), a
//! fresh store per measurement. "1 task" is one caller issuing commands back to back;
//! "64 tasks" is 64 OS threads (sync) or 64 tokio tasks on a 2-worker runtime (async).
//! Sync and async slices alternate (5 rounds each) and the medians are compared; the raw
//! `fdatasync` time of a small write is measured between rounds and printed beside them.

use es_core::Repository;
use es_core::asynchronous::AsyncRepository;
use es_core::doc_support::Account;
use es_store_fs::FileStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

const COMMANDS_ONE: u64 = 400;
const COMMANDS_EACH: u64 = 40;
const TASKS: u64 = 64;
const ROUNDS: usize = 5;

fn store() -> (tempfile::TempDir, Arc<FileStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::open(dir.path().join("events")).unwrap());
    (dir, store)
}

fn sync_one() -> f64 {
    let (_dir, store) = store();
    let accounts = Repository::<Account, _>::new(store);
    let start = Instant::now();
    for _ in 0..COMMANDS_ONE {
        accounts.execute("t-0", |a| a.deposit(1)).unwrap();
    }
    COMMANDS_ONE as f64 / start.elapsed().as_secs_f64()
}

fn sync_many() -> f64 {
    let (_dir, store) = store();
    let accounts = Arc::new(Repository::<Account, _>::new(store));
    let start = Instant::now();
    let threads: Vec<_> = (0..TASKS)
        .map(|t| {
            let accounts = Arc::clone(&accounts);
            std::thread::spawn(move || {
                for _ in 0..COMMANDS_EACH {
                    accounts
                        .execute(&format!("t-{t}"), |a| a.deposit(1))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    (TASKS * COMMANDS_EACH) as f64 / start.elapsed().as_secs_f64()
}

fn async_one(rt: &tokio::runtime::Runtime) -> f64 {
    let (_dir, store) = store();
    let accounts = AsyncRepository::new(Repository::<Account, _>::new(store));
    rt.block_on(async move {
        let start = Instant::now();
        for _ in 0..COMMANDS_ONE {
            accounts.execute("t-0", |a| a.deposit(1)).await.unwrap();
        }
        COMMANDS_ONE as f64 / start.elapsed().as_secs_f64()
    })
}

fn async_many(rt: &tokio::runtime::Runtime) -> f64 {
    let (_dir, store) = store();
    let accounts = AsyncRepository::new(Repository::<Account, _>::new(store));
    rt.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let accounts = accounts.clone();
                tokio::spawn(async move {
                    for _ in 0..COMMANDS_EACH {
                        accounts
                            .execute(format!("t-{t}"), |a| a.deposit(1))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        (TASKS * COMMANDS_EACH) as f64 / start.elapsed().as_secs_f64()
    })
}

/// The raw time of one `fdatasync` of a 200-byte write, median of 50.
fn fdatasync_time() -> Duration {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("probe")).unwrap();
    let mut times: Vec<Duration> = (0..50)
        .map(|_| {
            f.write_all(&[7u8; 200]).unwrap();
            let start = Instant::now();
            f.sync_data().unwrap();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut s1, mut a1, mut sn, mut an, mut syncs) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        syncs.push(fdatasync_time());
        s1.push(sync_one());
        a1.push(async_one(&rt));
        sn.push(sync_many());
        an.push(async_many(&rt));
    }
    syncs.sort();
    println!(
        "raw fdatasync of a small write, median per round: {:?} .. {:?}",
        syncs[0],
        syncs[syncs.len() - 1]
    );
    println!("| callers | sync Repository | AsyncRepository | async / sync |");
    println!("|---|---|---|---|");
    for (what, s, a) in [("1 task", s1, a1), ("64 tasks", sn, an)] {
        let (s, a) = (median(s), median(a));
        println!(
            "| {what} | {s:.0} commands/s | {a:.0} commands/s | {:.2} |",
            a / s
        );
    }
}
