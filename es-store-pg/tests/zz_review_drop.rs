mod common;
use std::cell::RefCell;

thread_local! {
    static KEPT: RefCell<Option<es_store_pg::PgStore>> = const { RefCell::new(None) };
    static KEPT_CP: RefCell<Option<es_store_pg::projection::PgCheckpoints>> = const { RefCell::new(None) };
}

#[test]
fn zz_dropped_in_a_thread_local_destructor() {
    let Some((store, guard)) = common::store() else { return };
    let url = guard.url.clone();
    let schema = guard.schema.clone();
    let h = std::thread::spawn(move || {
        let cp = es_store_pg::projection::PgCheckpoints::connect(&url, &schema).unwrap();
        KEPT.with(|k| *k.borrow_mut() = Some(store));
        KEPT_CP.with(|k| *k.borrow_mut() = Some(cp));
    });
    let r = h.join();
    eprintln!("thread exit with store in TLS: {:?}", r.as_ref().map_err(|e| e.downcast_ref::<String>().cloned().or(e.downcast_ref::<&str>().map(|s| s.to_string()))));
    r.unwrap();
}

#[test]
fn zz_dropped_while_unwinding_on_a_tokio_thread() {
    let Some((store, _guard)) = common::store() else { return };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async move {
            let _s = store;
            panic!("task failed");
        })
    }));
    assert!(r.is_err());
}

#[test]
fn zz_dropped_inside_a_scope_holding_a_mutex() {
    let Some((store, _guard)) = common::store() else { return };
    let m = std::sync::Mutex::new(Some(store));
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut g = m.lock().unwrap();
            g.take();
        });
    });
}
