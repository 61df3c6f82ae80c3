//! The async face (feature `tokio`): commands from many tasks on one aggregate, the same
//! typed errors, a panicking command resumed as a panic, and live subscriptions as
//! streams that catch up, follow, and end when dropped.

use es_core::asynchronous::{AsyncRepository, subscribe};
use es_core::doc_support::{Account, AccountError};
use es_core::subscription::Filter;
use es_core::{CommandError, EventStore, ExpectedVersion, MemoryStore, NewEvent, Repository};
use std::sync::Arc;
use std::time::Duration;

fn accounts() -> AsyncRepository<Account, Arc<MemoryStore>> {
    AsyncRepository::new(Repository::new(Arc::new(MemoryStore::new())).with_max_attempts(1000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_on_one_account_all_land() {
    let accounts = accounts();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let accounts = accounts.clone();
            tokio::spawn(async move { accounts.execute("7", |a| a.deposit(1)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let account = accounts.load("7").await.unwrap();
    assert_eq!((account.balance, account.version), (64, 64));
    assert_eq!(accounts.history("7").await.unwrap().len(), 64);
    assert_eq!(accounts.load_at("7", 10).await.unwrap().balance, 10);
}

#[tokio::test]
async fn errors_are_the_synchronous_ones() {
    let accounts = accounts();
    let err = accounts.execute("7", |a| a.withdraw(5)).await.unwrap_err();
    assert!(matches!(
        err,
        CommandError::Rejected(AccountError::InsufficientFunds { .. })
    ));
    let err = accounts.execute("", |a| a.deposit(5)).await.unwrap_err();
    assert!(matches!(err, CommandError::Store(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_command_is_resumed_as_a_panic() {
    let accounts = accounts();
    let task = tokio::spawn(async move {
        accounts
            .execute("7", |_| -> Result<(), AccountError> {
                panic!("the command broke")
            })
            .await
    });
    let err = task.await.unwrap_err();
    assert!(err.is_panic());
    let message = err.into_panic();
    assert_eq!(message.downcast_ref::<&str>(), Some(&"the command broke"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_catches_up_follows_and_filters() {
    let store = Arc::new(MemoryStore::new());
    let event = |t: &str| NewEvent::new(t, 1, b"{}".to_vec());
    store
        .append("cart-1", ExpectedVersion::Any, vec![event("CartCreated")])
        .unwrap();
    store
        .append("user-1", ExpectedVersion::Any, vec![event("Visited")])
        .unwrap();
    let mut feed = subscribe(store.clone(), 1, Filter::all().kinds(["cart"]));
    let first = feed.next_event().await.unwrap().unwrap();
    assert_eq!(
        (first.position, first.event_type.as_str()),
        (1, "CartCreated")
    );
    let writer = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || {
            for _ in 0..20 {
                store
                    .append("user-1", ExpectedVersion::Any, vec![event("Visited")])
                    .unwrap();
                store
                    .append("cart-1", ExpectedVersion::Any, vec![event("ProductAdded")])
                    .unwrap();
            }
        })
    };
    let mut last = 1;
    for _ in 0..20 {
        let e = tokio::time::timeout(Duration::from_secs(10), feed.next_event())
            .await
            .expect("live events arrive")
            .unwrap()
            .unwrap();
        assert_eq!(e.stream_id, "cart-1");
        assert!(e.position > last, "in order, once each");
        last = e.position;
    }
    writer.await.unwrap();
    drop(feed);
}

#[test]
fn subscriptions_do_not_take_the_blocking_threads_commands_need() {
    // a current-thread runtime whose blocking pool has one thread, and two live
    // subscriptions: commands still run (the feeds read on threads of their own)
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = Arc::new(MemoryStore::new());
        let accounts = AsyncRepository::new(Repository::<Account, _>::new(Arc::clone(&store)));
        let mut first = subscribe(Arc::clone(&store), 1, Filter::all());
        let mut second = subscribe(Arc::clone(&store), 1, Filter::all());
        let done = tokio::time::timeout(Duration::from_secs(10), async {
            accounts.execute("1", |a| a.deposit(5)).await.unwrap();
            let a = first.next_event().await.unwrap().unwrap();
            let b = second.next_event().await.unwrap().unwrap();
            (a.position, b.position)
        })
        .await;
        assert_eq!(
            done.expect("a command waited behind the subscriptions"),
            (1, 1)
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_and_loads_as_of_a_time_run_off_the_async_threads() {
    let accounts = accounts();
    accounts.execute("payer", |a| a.deposit(100)).await.unwrap();
    let cause = accounts
        .repository()
        .store()
        .read_stream("account-payer", 1)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    for reaction in ["line-1", "line-2"] {
        let done = accounts
            .execute_caused_by_as("shop", cause.clone(), reaction, |a| a.deposit(5))
            .await
            .unwrap();
        assert!(!done.already_applied, "{reaction}");
    }
    let again = accounts
        .execute_caused_by_as("shop", cause.clone(), "line-2", |a| a.deposit(5))
        .await
        .unwrap();
    assert!(again.already_applied);
    let unnamed = accounts
        .execute_caused_by("shop", cause.clone(), |a| a.deposit(1))
        .await
        .unwrap();
    assert!(!unnamed.already_applied);
    let now = accounts.load("shop").await.unwrap();
    assert_eq!((now.balance, now.version), (11, 3));
    let before = accounts
        .load_as_of("shop", cause.timestamp - chrono::Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!(before.version, 0);
}

/// A reaction's future keeps only its cause's ids: it is `Send` (spawned on a
/// multi-threaded runtime) whatever holds the event, an `Rc` included, and the reaction is
/// the one the recorded event drives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reactions_future_is_send_whatever_holds_its_cause() {
    fn spawned<T: Send>(future: T) -> T {
        future
    }
    let store = Arc::new(MemoryStore::new());
    let accounts = AsyncRepository::new(Repository::<Account, _>::new(Arc::clone(&store)));
    accounts.execute("payer", |a| a.deposit(1)).await.unwrap();
    let recorded = store.read_all(1).unwrap().next().unwrap().unwrap();
    let held = std::rc::Rc::new(recorded.clone());
    let done = spawned(accounts.execute_caused_by("shop", held, |a| a.deposit(1)))
        .await
        .unwrap();
    assert!(!done.already_applied);
    let again = accounts
        .execute_caused_by_as("shop", recorded, "", |a| a.deposit(1))
        .await
        .unwrap();
    assert!(again.already_applied);
}
