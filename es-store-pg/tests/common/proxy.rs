//! A TCP proxy in front of the test server, to stand in for faults of the network and of
//! the server: it can cut every connection right after a COMMIT has been passed on (so
//! that the commit happens but its answer never arrives) and then refuse new connections,
//! answer LISTEN as a replica does, measure the largest answer to one request, and freeze
//! at a COMMIT (a client process stopped in the middle of its transaction: nothing more
//! reaches the server, nothing comes back, and the sockets stay open).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct State {
    /// Cut every connection after the next COMMIT passed on.
    cut_after_commit: AtomicBool,
    /// Close new connections at once.
    refusing: AtomicBool,
    /// Answer LISTEN with the error of a server in recovery.
    replica: AtomicBool,
    /// Freeze every connection at the next COMMIT, before passing it on.
    freeze_at_commit: AtomicBool,
    /// Frozen: nothing is passed on either way, and no socket is closed.
    frozen: AtomicBool,
    /// Bytes per second passed on to the server (0: as fast as they come).
    upstream_rate: AtomicU64,
    listens: AtomicU64,
    accepted: AtomicU64,
    /// The most bytes the server sent back between two sends of the client.
    largest_answer: AtomicU64,
    clients: Mutex<Vec<TcpStream>>,
}

impl State {
    fn cut_all(&self) {
        for client in self.clients.lock().unwrap().drain(..) {
            let _ = client.shutdown(Shutdown::Both);
        }
    }
}

/// A running proxy; it lives as long as the test process.
pub struct Proxy {
    /// The connection string of the server, through the proxy.
    pub url: String,
    state: Arc<State>,
}

impl Proxy {
    /// A proxy in front of the server of `url` (a `postgres://` URL with a port).
    pub fn start(url: &str) -> Proxy {
        let config: postgres::Config = url.parse().unwrap();
        let port = config.get_ports()[0];
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let upstream = format!("127.0.0.1:{port}");
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                if shared.refusing.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                shared
                    .clients
                    .lock()
                    .unwrap()
                    .push(client.try_clone().unwrap());
                relay(Arc::clone(&shared), client, server);
            }
        });
        Proxy {
            url: url.replacen(&format!(":{port}/"), &format!(":{proxy_port}/"), 1),
            state,
        }
    }

    /// Cuts every connection right after the next COMMIT reaches the server, and refuses
    /// new connections until [`Proxy::accept`].
    pub fn cut_after_next_commit(&self) {
        self.state.cut_after_commit.store(true, Ordering::SeqCst);
    }

    /// Whether the COMMIT armed by [`Proxy::cut_after_next_commit`] has passed.
    pub fn has_cut(&self) -> bool {
        !self.state.cut_after_commit.load(Ordering::SeqCst)
            && self.state.refusing.load(Ordering::SeqCst)
    }

    /// Freezes at the next COMMIT, which never reaches the server: from then on nothing
    /// is passed on either way and no socket is closed, as for a client process stopped
    /// in the middle of its transaction, or cut off by a network that drops packets.
    pub fn freeze_at_next_commit(&self) {
        self.state.freeze_at_commit.store(true, Ordering::SeqCst);
    }

    /// Whether the freeze armed by [`Proxy::freeze_at_next_commit`] has happened.
    pub fn is_frozen(&self) -> bool {
        self.state.frozen.load(Ordering::SeqCst)
    }

    /// Passes what clients send on to the server at `bytes_per_second` (a slow link).
    pub fn throttle_upstream(&self, bytes_per_second: u64) {
        self.state
            .upstream_rate
            .store(bytes_per_second, Ordering::SeqCst);
    }

    /// Takes new connections again.
    pub fn accept(&self) {
        self.state.refusing.store(false, Ordering::SeqCst);
    }

    /// Answers every LISTEN as a server in recovery does.
    pub fn act_as_replica(&self) {
        self.state.replica.store(true, Ordering::SeqCst);
    }

    /// LISTEN statements received.
    pub fn listens(&self) -> u64 {
        self.state.listens.load(Ordering::SeqCst)
    }

    /// The most bytes the server sent back to one request so far.
    pub fn largest_answer(&self) -> u64 {
        self.state.largest_answer.load(Ordering::SeqCst)
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The answer of a server in recovery to LISTEN: an error, then ready for a query.
fn recovery_error() -> Vec<u8> {
    let mut fields = Vec::new();
    for (kind, text) in [
        (b'S', "ERROR"),
        (b'V', "ERROR"),
        (b'C', "25006"),
        (b'M', "cannot execute LISTEN during recovery"),
    ] {
        fields.push(kind);
        fields.extend_from_slice(text.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(&fields);
    message.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I']);
    message
}

fn relay(state: Arc<State>, mut client: TcpStream, mut server: TcpStream) {
    let answer = Arc::new(AtomicU64::new(0));
    let (mut client_back, mut server_back) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (up_state, up_answer) = (Arc::clone(&state), Arc::clone(&answer));
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let chunk = &buf[..n];
            if contains(chunk, b"COMMIT\0")
                && up_state.freeze_at_commit.swap(false, Ordering::SeqCst)
            {
                up_state.frozen.store(true, Ordering::SeqCst);
            }
            if up_state.frozen.load(Ordering::SeqCst) {
                continue;
            }
            up_answer.store(0, Ordering::SeqCst);
            if up_state.replica.load(Ordering::SeqCst) && contains(chunk, b"LISTEN ") {
                up_state.listens.fetch_add(1, Ordering::SeqCst);
                if client.write_all(&recovery_error()).is_err() {
                    break;
                }
                continue;
            }
            if contains(chunk, b"LISTEN ") {
                up_state.listens.fetch_add(1, Ordering::SeqCst);
            }
            if contains(chunk, b"COMMIT\0")
                && up_state.cut_after_commit.swap(false, Ordering::SeqCst)
            {
                up_state.refusing.store(true, Ordering::SeqCst);
                // the answers stop here; the COMMIT goes on to the server
                up_state.cut_all();
                let _ = server.write_all(chunk);
                let _ = server.shutdown(Shutdown::Write);
                break;
            }
            if send(&up_state, &mut server, chunk).is_err() {
                break;
            }
        }
        if up_state.frozen.load(Ordering::SeqCst) {
            hold(client, server);
        }
        let _ = server.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_back.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if state.frozen.load(Ordering::SeqCst) {
                continue;
            }
            let total = answer.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            state.largest_answer.fetch_max(total, Ordering::SeqCst);
            if client_back.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        if state.frozen.load(Ordering::SeqCst) {
            hold(client_back, server_back);
        }
        let _ = client_back.shutdown(Shutdown::Both);
    });
}

/// Writes `chunk` to the server, at the upstream rate when one is set.
fn send(state: &State, server: &mut TcpStream, chunk: &[u8]) -> std::io::Result<()> {
    let rate = state.upstream_rate.load(Ordering::SeqCst);
    if rate == 0 {
        return server.write_all(chunk);
    }
    // a tenth of a second's worth at a time
    let piece = (rate / 10).max(1) as usize;
    for part in chunk.chunks(piece) {
        server.write_all(part)?;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(())
}

/// Keeps a frozen connection's sockets open for as long as the test process lives.
fn hold(client: TcpStream, server: TcpStream) -> ! {
    let _open = (client, server);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
