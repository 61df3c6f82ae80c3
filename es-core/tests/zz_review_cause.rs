use es_core::doc_support::{Account, AccountError};
use es_core::{MemoryStore, Metadata, RecordedEvent, Repository, EventStore};
use std::sync::Arc;

#[test]
fn zz_cause_forms() {
    let store = MemoryStore::new();
    let accounts = Repository::<Account, _>::new(&store);
    accounts.execute("payer", |a| a.deposit(5)).unwrap();
    let recorded: RecordedEvent = store.read_all(1).unwrap().next().unwrap().unwrap();
    let r2 = &recorded;
    accounts.execute_caused_by("a", &r2, |a| a.deposit(1)).unwrap(); // &&
    let mut m = recorded.clone();
    accounts.execute_caused_by("b", &mut m, |a| a.deposit(1)).unwrap(); // &mut
    // let boxed = Box::new(recorded.clone());
    // accounts.execute_caused_by("c", &boxed, |a| a.deposit(1)).unwrap();
    //let arc = Arc::new(recorded.clone());
    // accounts.execute_caused_by("d", &arc, |a| a.deposit(1)).unwrap();
    // x;
    let _ = accounts.execute_caused_by::<_, AccountError>("e", &recorded, |a| a.deposit(1));
}
