//! Commands per second: the `Repository` against cqrs-es (`CqrsFramework` on its
//! `MemStore`, as its documentation sets it up), on the same aggregate logic and the same
//! events (a ~160-byte JSON `ProductAdded`), and reactions against a long target stream.
//!
//! `cargo bench -p es-bench --bench commands` prints Markdown tables to stderr.
//! `ES_BENCH_QUICK=1` shrinks every workload (a smoke run); `ES_BENCH_ONLY=commands` or
//! `ES_BENCH_ONLY=reactions` runs one part; `ES_BENCH_SYSTEMS=cache on` keeps, beside
//! cqrs-es, the systems whose names contain one of the `|`-separated phrases.
//!
//! Commands: one event per command, to random instances out of 10,000 (the same ids in
//! the same order for every system), each instance first given 10 events by the system
//! itself. The systems are measured in turn, in slices of 20,000 commands, for 7 rounds,
//! so that the machine's drift hits them alike; the figure is the median slice, and the
//! ratio the median of the rounds' ratios. Streams grow by 2 events per round.
//!
//! `ES_BENCH_INSTANCES` and `ES_BENCH_PRELOAD` change the number of instances and the
//! events each is given first (short streams: `ES_BENCH_INSTANCES=100000
//! ES_BENCH_PRELOAD=1`).
//!
//! cqrs-es's `MemStore` prints two lines per command on stdout; this bench points its
//! stdout at /dev/null (writes there are cheap, a terminal is not) and reports on stderr.
//!
//! Reactions: a target stream of 100,000 events in the file store without fsync, one
//! reaction per cause (a new cause each time), against a plain command on the same
//! instance, and against what a reaction cost before it could ask the store for its id:
//! a fold of the whole target stream (an uncached command on an aggregate without
//! snapshots reads and folds exactly that).

use cqrs_es::mem_store::MemStore;
use cqrs_es::{Aggregate as CqrsAggregate, CqrsFramework, DomainEvent};
use es_core::prelude::*;
use es_core::{CacheOptions, NewEvent, RecordedEvent};
use es_store_fs::{Durability, FileStore, FileStoreOptions};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

const NOTE: &str = "gift wrap please, leave at the front door";

#[event]
#[derive(Debug, Clone, PartialEq)]
pub struct ProductAdded {
    pub cart_id: String,
    pub product_id: String,
    pub quantity: u32,
    pub unit_price_cents: u64,
    pub currency: String,
    pub note: String,
}

#[event]
#[derive(Debug, Clone, PartialEq)]
pub enum CartEvent {
    ProductAdded(ProductAdded),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CartError {
    #[error("quantity must be at least 1")]
    ZeroQuantity,
    #[error("the cart is full")]
    Full,
}

/// The aggregate state both frameworks fold.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct CartState {
    pub lines: u32,
    pub items: u64,
    pub total_cents: u64,
}

impl CartState {
    fn add(&mut self, e: &ProductAdded) {
        self.lines += 1;
        self.items += u64::from(e.quantity);
        self.total_cents += u64::from(e.quantity) * e.unit_price_cents;
    }

    /// The command's logic, shared by both frameworks.
    fn decide(&self, cart_id: &str, product: u64) -> Result<ProductAdded, CartError> {
        let quantity = 1 + (product % 5) as u32;
        if quantity == 0 {
            return Err(CartError::ZeroQuantity);
        }
        if self.lines >= 1_000_000 {
            return Err(CartError::Full);
        }
        Ok(ProductAdded {
            cart_id: cart_id.to_owned(),
            product_id: format!("product-{:06}", product % 997),
            quantity,
            unit_price_cents: 199 + product % 5000,
            currency: "EUR".to_owned(),
            note: NOTE.to_owned(),
        })
    }
}

#[derive(Debug, Default, Clone, Aggregate)]
#[aggregate(kind = "cart", event = CartEvent)]
pub struct Cart {
    state: CartState,
}

impl Apply<ProductAdded> for Cart {
    fn apply(&mut self, e: &ProductAdded) {
        self.state.add(e);
    }
}

/// The same cart, snapshotted every 1,000 events.
#[derive(Debug, Default, Clone, Serialize, Deserialize, Aggregate)]
#[aggregate(kind = "cart", event = CartEvent, snapshot_every = 1000)]
pub struct SnapshotCart {
    state: CartState,
}

impl Apply<ProductAdded> for SnapshotCart {
    fn apply(&mut self, e: &ProductAdded) {
        self.state.add(e);
    }
}

// ---- cqrs-es: the same logic, written as its documentation shows ----

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CqrsCart {
    state: CartState,
}

pub enum CqrsCommand {
    AddProduct { cart_id: String, product: u64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CqrsEvent {
    ProductAdded(ProductAdded),
}

impl DomainEvent for CqrsEvent {
    fn event_type(&self) -> String {
        "ProductAdded".to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl CqrsAggregate for CqrsCart {
    const TYPE: &'static str = "cart";
    type Command = CqrsCommand;
    type Event = CqrsEvent;
    type Error = CartError;
    type Services = ();

    async fn handle(
        &mut self,
        command: CqrsCommand,
        _services: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), CartError> {
        match command {
            CqrsCommand::AddProduct { cart_id, product } => {
                let event = self.state.decide(&cart_id, product)?;
                sink.write(CqrsEvent::ProductAdded(event), self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: CqrsEvent) {
        match event {
            CqrsEvent::ProductAdded(e) => self.state.add(&e),
        }
    }
}

// ---- the systems compared ----

/// A system that runs one command on instance `id`.
trait System {
    fn name(&self) -> String;
    fn run(&mut self, ids: &[String], seed: u64);
}

struct Es<S: EventStore> {
    name: &'static str,
    repository: Repository<Cart, S>,
}

impl<S: EventStore> System for Es<S> {
    fn name(&self) -> String {
        self.name.to_owned()
    }
    fn run(&mut self, ids: &[String], seed: u64) {
        for (i, id) in ids.iter().enumerate() {
            let product = seed + i as u64;
            self.repository
                .execute(id, |c| c.state.decide(id, product))
                .expect("command");
        }
    }
}

struct Cqrs {
    runtime: tokio::runtime::Runtime,
    framework: CqrsFramework<CqrsCart, MemStore<CqrsCart>>,
}

impl System for Cqrs {
    fn name(&self) -> String {
        "cqrs-es 0.5, MemStore".to_owned()
    }
    fn run(&mut self, ids: &[String], seed: u64) {
        let framework = &self.framework;
        self.runtime.block_on(async {
            for (i, id) in ids.iter().enumerate() {
                let command = CqrsCommand::AddProduct {
                    cart_id: id.clone(),
                    product: seed + i as u64,
                };
                framework.execute(id, command).await.expect("command");
            }
        });
    }
}

/// A small deterministic generator (xorshift64*), so that every system sees the same ids.
struct Ids(u64);

impl Ids {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn file_store(dir: &Path) -> FileStore {
    FileStore::open_with(
        dir,
        FileStoreOptions {
            durability: Durability::None,
            ..FileStoreOptions::default()
        },
    )
    .expect("open the file store")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Points stdout at /dev/null: cqrs-es's MemStore prints on every command.
fn silence_stdout() {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("open /dev/null");
    // SAFETY: dup2 on two valid descriptors; stdout is not in use by another thread now
    let done = unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) };
    assert!(done >= 0, "dup2 failed");
}

/// The measured slices, apart from the preload (`valgrind --tool=callgrind
/// --toggle-collect=commands::measured` profiles them alone).
#[inline(never)]
fn measured(system: &mut dyn System, batch: &[String], first: u64) {
    system.run(batch, first);
}

fn commands(quick: bool, root: &Path) {
    let setting = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let instances = setting("ES_BENCH_INSTANCES", 10_000);
    let (preload, slice, rounds) = if quick {
        (2, 2_000, 2)
    } else {
        (10, 20_000, 7)
    };
    let preload = setting("ES_BENCH_PRELOAD", preload);
    let sample = CartState::default().decide("cart-00001234", 1234).unwrap();
    let payload_len = serde_json::to_vec(&sample).unwrap().len();
    let cache = CacheOptions::default().max_entries(instances as usize);
    let mem_cached = Es {
        name: "es, MemoryStore, cache on",
        repository: Repository::new(MemoryStore::new()).with_cache(cache),
    };
    let mem_plain = Es {
        name: "es, MemoryStore, cache off",
        repository: Repository::new(MemoryStore::new()),
    };
    let fs_cached = Es {
        name: "es, file store without fsync, cache on",
        repository: Repository::new(file_store(&root.join("cached"))).with_cache(cache),
    };
    let fs_plain = Es {
        name: "es, file store without fsync, cache off",
        repository: Repository::new(file_store(&root.join("plain"))),
    };
    let cqrs = Cqrs {
        runtime: tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime"),
        framework: CqrsFramework::new(MemStore::default(), vec![], ()),
    };
    let mut systems: Vec<Box<dyn System>> = vec![
        Box::new(cqrs),
        Box::new(mem_cached),
        Box::new(mem_plain),
        Box::new(fs_cached),
        Box::new(fs_plain),
    ];
    // `ES_BENCH_SYSTEMS=MemoryStore` keeps the systems whose names contain a phrase (for
    // profiling one); cqrs-es stays as the baseline
    if let Ok(keep) = std::env::var("ES_BENCH_SYSTEMS") {
        let mut index = 0;
        systems.retain(|s| {
            index += 1;
            index == 1 || keep.split('|').any(|k| s.name().contains(k))
        });
    }
    let names: Vec<String> = (0..instances).map(|i| format!("{i:08}")).collect();
    for system in &mut systems {
        for round in 0..preload {
            system.run(&names, round * instances);
        }
    }
    let mut rates = vec![Vec::new(); systems.len()];
    let mut ids = Ids(0x9E37_79B9_7F4A_7C15);
    for round in 0..rounds {
        let batch: Vec<String> = (0..slice)
            .map(|_| names[ids.next(instances) as usize].clone())
            .collect();
        // alternate the order, so that no system always follows the same one
        let order: Vec<usize> = if round % 2 == 0 {
            (0..systems.len()).collect()
        } else {
            (0..systems.len()).rev().collect()
        };
        for i in order {
            let start = Instant::now();
            measured(&mut *systems[i], &batch, 1_000_000 + round * slice);
            rates[i].push(slice as f64 / start.elapsed().as_secs_f64());
        }
    }
    eprintln!(
        "\n### Commands/s, one ~{payload_len}-byte event each, random ids over {instances} instances\n"
    );
    eprintln!(
        "{} rounds of {slice} commands per system, interleaved; {preload} events per instance before; 1 thread.\n",
        rounds
    );
    eprintln!("| system | commands/s (median slice) | vs cqrs-es (median of rounds) |");
    eprintln!("|---|---|---|");
    for (i, system) in systems.iter().enumerate() {
        let ratios: Vec<f64> = rates[i].iter().zip(&rates[0]).map(|(a, b)| a / b).collect();
        eprintln!(
            "| {} | {:.0} | {:.2}x |",
            system.name(),
            median(rates[i].clone()),
            median(ratios)
        );
    }
}

fn reactions(quick: bool, root: &Path) {
    let length: u64 = if quick { 10_000 } else { 100_000 };
    let (rounds, per_slice, before_per_slice) = if quick { (2, 200, 2) } else { (5, 2_000, 3) };
    let store = file_store(&root.join("reactions"));
    let target = "00000001";
    let stream = Cart::stream_id(target);
    // the target's history, written in appends of 1,000 events
    let events: Vec<NewEvent> = (0..length)
        .map(|i| {
            let e = CartState::default().decide(target, i).unwrap();
            NewEvent::from_encoded(CartEvent::ProductAdded(e).encode().unwrap())
        })
        .collect();
    let mut rest = events;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(1000));
        let batch = std::mem::replace(&mut rest, tail);
        store.append(&stream, ExpectedVersion::Any, batch).unwrap();
    }
    // causes: one event each in other streams
    let mut causes = 0u64;
    let mut next_cause = |store: &FileStore| -> RecordedEvent {
        let n = causes;
        causes += 1;
        let e = NewEvent::new("OrderPlaced", 1, br#"{"n":1}"#.to_vec());
        let r = store
            .append(&format!("order-{n}"), ExpectedVersion::NoStream, vec![e])
            .unwrap();
        store
            .read_all(r.first_position)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
    };
    let cached = Repository::<SnapshotCart, _>::new(&store).with_cache(CacheOptions::default());
    let cold = Repository::<SnapshotCart, _>::new(&store);
    let before = Repository::<Cart, _>::new(&store);
    // a first command writes the snapshot the others start from; the cached repository
    // starts warm
    cold.execute(target, |c| c.state.decide(target, 1)).unwrap();
    cached.load(target).unwrap();
    let mut rates: [Vec<f64>; 4] = Default::default();
    let labels = [
        "command, cache on",
        "reaction, cache on",
        "reaction, no cache (from the snapshot)",
        "reaction as before: fold of the whole stream",
    ];
    for round in 0..rounds {
        for (which, rate) in rates.iter_mut().enumerate() {
            let n = if which == 3 {
                before_per_slice
            } else {
                per_slice
            };
            let prepared: Vec<RecordedEvent> = if which == 0 {
                Vec::new()
            } else {
                (0..n).map(|_| next_cause(&store)).collect()
            };
            let start = Instant::now();
            for i in 0..n {
                let product = round * 10_000 + i;
                let decide = |c: &CartState| c.decide(target, product);
                match which {
                    0 => {
                        cached.execute(target, |c| decide(&c.state)).unwrap();
                    }
                    1 => {
                        let done = cached
                            .execute_caused_by(target, &prepared[i as usize], |c| decide(&c.state))
                            .unwrap();
                        assert!(!done.already_applied);
                    }
                    2 => {
                        cold.execute_caused_by(target, &prepared[i as usize], |c| decide(&c.state))
                            .unwrap();
                    }
                    _ => {
                        // what a reaction did before: fold all of the target's events
                        let meta = Metadata::caused_by(&prepared[i as usize]);
                        before
                            .execute_with(target, meta, |c| decide(&c.state))
                            .unwrap();
                    }
                }
            }
            rate.push(n as f64 / start.elapsed().as_secs_f64());
        }
    }
    let command = median(rates[0].clone());
    eprintln!(
        "\n### Reactions/s against a target stream of {length} events (file store, no fsync)\n"
    );
    eprintln!(
        "{rounds} rounds, interleaved; a new cause per reaction; snapshots every 1,000 events.\n"
    );
    eprintln!("| what | per second (median slice) | vs a command, cache on |");
    eprintln!("|---|---|---|");
    for (label, r) in labels.iter().zip(&rates) {
        let rate = median(r.clone());
        eprintln!("| {label} | {rate:.0} | {:.2}x |", rate / command);
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` smoke-runs nothing here
    }
    let quick = std::env::var_os("ES_BENCH_QUICK").is_some();
    let only = std::env::var("ES_BENCH_ONLY").ok();
    let enabled = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|p| p == name))
    };
    let root = tempfile::tempdir_in(
        std::env::var_os("ES_BENCH_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )
    .unwrap();
    silence_stdout();
    if enabled("commands") {
        commands(quick, root.path());
    }
    if enabled("reactions") {
        reactions(quick, root.path());
    }
}
