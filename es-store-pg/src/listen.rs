//! The wake-up for live subscribers: a thread that LISTENs on the store's channel and
//! publishes each notified head. Only a hint: waiters read the head from the database
//! themselves, and keep polling when no notification comes. On a replica, which cannot
//! LISTEN, the thread stops after its first attempt.

use es_core::backend::HeadSignal;
use postgres::NoTls;
use postgres::fallible_iterator::FallibleIterator;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long the thread waits for a notification before it looks at its stop flag.
const TICK: Duration = Duration::from_millis(250);
/// Longest pause between attempts to (re)connect.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a replica is asked again to LISTEN.
const REPLICA_RETRY: Duration = Duration::from_secs(300);

/// The listening thread; it stops within a tick after this is dropped.
pub(crate) struct Listener {
    stop: Arc<AtomicBool>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Listener {
    pub(crate) fn spawn(
        config: postgres::Config,
        channel: String,
        head: Arc<HeadSignal>,
    ) -> Listener {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("es-store-pg-listen".into())
            .spawn(move || listen(&config, &channel, &head, &flag));
        if let Err(e) = spawned {
            // subscribers still poll; they are only woken later
            tracing::warn!("cannot start the notification listener: {e}");
        }
        Listener { stop }
    }
}

fn pause(stop: &AtomicBool, total: Duration) {
    let mut left = total;
    while !left.is_zero() && !stop.load(Ordering::Relaxed) {
        let step = left.min(TICK);
        std::thread::sleep(step);
        left -= step;
    }
}

fn listen(config: &postgres::Config, channel: &str, head: &HeadSignal, stop: &AtomicBool) {
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    while !stop.load(Ordering::Relaxed) {
        let listening = config.connect(NoTls).and_then(|mut client| {
            client.batch_execute(&format!("LISTEN \"{channel}\""))?;
            Ok(client)
        });
        let mut client = match listening {
            Ok(client) => client,
            Err(e) if in_recovery(&e) => {
                // a replica cannot LISTEN for as long as it is one: asked again only now
                // and then (a promotion makes it a primary that can)
                if !warned {
                    tracing::info!(
                        "not listening for new events on a replica (subscribers poll): {e}"
                    );
                    warned = true;
                }
                pause(stop, REPLICA_RETRY);
                continue;
            }
            Err(e) => {
                if !warned {
                    tracing::info!("not listening for new events (subscribers poll): {e}");
                    warned = true;
                }
                pause(stop, backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        warned = false;
        while !stop.load(Ordering::Relaxed) {
            let mut notifications = client.notifications();
            let mut waiting = notifications.timeout_iter(TICK);
            match waiting.next() {
                Ok(Some(n)) => {
                    if let Ok(position) = n.payload().parse::<u64>() {
                        head.publish(position);
                    }
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
}

/// Whether LISTEN failed because the server is a replica (in recovery): "cannot execute
/// LISTEN during recovery".
fn in_recovery(e: &postgres::Error) -> bool {
    e.as_db_error().is_some_and(|db| {
        *db.code() == postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION
            && db.message().contains("recovery")
    })
}
