//! The wake-up for live subscribers: a thread that LISTENs on the store's channel and
//! publishes each notified head. Only a hint: waiters read the head from the database
//! themselves, and keep polling when no notification comes. On a replica, which cannot
//! LISTEN, the thread stops after its first attempt.

use es_core::backend::HeadSignal;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long the thread waits for a notification before it looks at its stop flag.
const TICK: Duration = Duration::from_millis(250);
/// Longest pause between attempts to (re)connect.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a replica is asked again to LISTEN.
const REPLICA_RETRY: Duration = Duration::from_secs(300);
/// How long the server's end of the listening connection waits for the notifications it
/// sent to be acknowledged before it drops the connection (the server's
/// `tcp_user_timeout`, set for this session).
///
/// NOTIFY goes into the server's notification queue inside each append's transaction, and
/// the queue is kept until every listener has read it. A listener whose process is frozen
/// (stopped, paused in a debugger, a suspended machine) reads nothing: once the socket's
/// buffers are full its backend waits, its place in the queue stays, and when the queue
/// is full every append fails ("too many notifications in the NOTIFY queue"). With this
/// timeout the server drops such a listener (Linux applies it to a peer whose receive
/// window stays closed); the listener connects again when its process wakes. A listener
/// that is merely busy acknowledges at once: its kernel reads the socket.
const SERVER_SEND_TIMEOUT: &str = "60s";
/// Keepalives of the listening connection: idle time, pause between probes, probes. The
/// listener sends nothing while it waits, so without them a server that vanished (a
/// machine lost, a network cut) would leave it waiting on a dead connection for ever;
/// with them the connection fails after about a minute and is opened again.
const KEEPALIVES: (Duration, Duration, u32) = (Duration::from_secs(30), Duration::from_secs(10), 3);

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

/// The store's connection settings with the listener's keepalives, where the connection
/// string left the library's defaults (two hours of idle time before the first probe).
/// The store's own connections get them too: a connection waiting for the answer to a
/// commit on a server that vanished fails within about a minute instead of hours.
pub(crate) fn with_keepalives(config: &postgres::Config) -> postgres::Config {
    let mut config = config.clone();
    let (idle, interval, retries) = KEEPALIVES;
    if config.get_keepalives() && config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(idle);
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(interval);
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(retries);
    }
    config
}

/// Opens a connection that LISTENs on `channel`, with the server's send timeout set
/// ([`SERVER_SEND_TIMEOUT`]).
fn open(config: &postgres::Config, channel: &str) -> Result<Client, postgres::Error> {
    let mut client = config.connect(NoTls)?;
    match client.batch_execute(&format!("SET tcp_user_timeout = '{SERVER_SEND_TIMEOUT}'")) {
        // servers before PostgreSQL 12 have no such setting
        Err(e) if e.code() == Some(&postgres::error::SqlState::UNDEFINED_OBJECT) => {}
        other => other?,
    }
    client.batch_execute(&format!("LISTEN \"{channel}\""))?;
    Ok(client)
}

fn listen(config: &postgres::Config, channel: &str, head: &HeadSignal, stop: &AtomicBool) {
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    let config = with_keepalives(config);
    while !stop.load(Ordering::Relaxed) {
        let listening = open(&config, channel);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listening_connection_asks_the_server_to_drop_it_when_notifications_stay_unacknowledged()
    {
        let Some(server) = crate::start_server(&[]) else {
            return;
        };
        let config: postgres::Config = server.url.parse().unwrap();
        let mut client = open(&with_keepalives(&config), "es_head_test").unwrap();
        let timeout: String = client
            .query_one("SHOW tcp_user_timeout", &[])
            .unwrap()
            .get(0);
        // read back from the server's socket, in milliseconds
        assert_eq!(timeout, "60000");
        let listening: i64 = client
            .query_one("SELECT count(*) FROM pg_listening_channels()", &[])
            .unwrap()
            .get(0);
        assert_eq!(listening, 1);
    }

    #[test]
    fn the_listener_probes_an_idle_connection_unless_the_connection_string_says_otherwise() {
        let config: postgres::Config = "host=localhost user=es".parse().unwrap();
        let listening = with_keepalives(&config);
        assert_eq!(listening.get_keepalives_idle(), Duration::from_secs(30));
        assert_eq!(
            listening.get_keepalives_interval(),
            Some(Duration::from_secs(10))
        );
        assert_eq!(listening.get_keepalives_retries(), Some(3));

        let config: postgres::Config =
            "host=localhost user=es keepalives_idle=600 keepalives_retries=9"
                .parse()
                .unwrap();
        let listening = with_keepalives(&config);
        assert_eq!(listening.get_keepalives_idle(), Duration::from_secs(600));
        assert_eq!(listening.get_keepalives_retries(), Some(9));
    }
}
