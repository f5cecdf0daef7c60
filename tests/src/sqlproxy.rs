//! A TCP proxy in front of a MariaDB server that can lose a COMMIT's answer: it forwards
//! the client's `COMMIT` to the server, lets the server finish it, and closes both sides
//! before the answer reaches the client: the outcome a client sees when its connection
//! drops during COMMIT.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct SqlProxy {
    pub port: u16,
    /// The start of every query the clients sent (for failure messages).
    pub queries: Arc<std::sync::Mutex<Vec<String>>>,
    lose: Arc<AtomicBool>,
    lost: Arc<AtomicUsize>,
}

impl SqlProxy {
    /// Listens on a free port of 127.0.0.1, forwarding to `127.0.0.1:upstream`.
    pub fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("proxy: {e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let (lose, lost) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let queries: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let (l, n, q) = (lose.clone(), lost.clone(), queries.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (l, n, q) = (l.clone(), n.clone(), q.clone());
                std::thread::spawn(move || relay(client, server, &l, &n, &q));
            }
        });
        Self {
            port,
            queries,
            lose,
            lost,
        }
    }

    /// The next COMMIT through the proxy (on any connection) loses its answer.
    pub fn lose_next_commit(&self) {
        self.lose.store(true, Ordering::SeqCst);
    }

    /// How many COMMIT answers were lost so far.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }
}

fn relay(
    mut client: TcpStream,
    server: TcpStream,
    lose: &AtomicBool,
    lost: &AtomicUsize,
    queries: &std::sync::Mutex<Vec<String>>,
) {
    let (Ok(mut to_server), Ok(mut from_server), Ok(mut to_client)) =
        (server.try_clone(), server.try_clone(), client.try_clone())
    else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(Shutdown::Both);
    });
    // Client → server, a packet at a time (3-byte length, sequence id, payload).
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match client.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 4 {
            let len = usize::from(buf[0]) | usize::from(buf[1]) << 8 | usize::from(buf[2]) << 16;
            if buf.len() < 4 + len {
                break;
            }
            let packet: Vec<u8> = buf.drain(..4 + len).collect();
            let payload = &packet[4..];
            if let Ok(mut q) = queries.lock() {
                q.push(String::from_utf8_lossy(&payload[..payload.len().min(24)]).into_owned());
            }
            let commit =
                payload.first() == Some(&0x03) && payload[1..].eq_ignore_ascii_case(b"COMMIT");
            if commit && lose.swap(false, Ordering::SeqCst) {
                // The client's side closes first, so the answer cannot reach it; the
                // server gets the COMMIT and commits before it sees the connection end.
                let _ = client.shutdown(Shutdown::Both);
                let _ = to_server.write_all(&packet);
                lost.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(300));
                let _ = server.shutdown(Shutdown::Both);
                return;
            }
            if to_server.write_all(&packet).is_err() {
                return;
            }
        }
    }
    let _ = server.shutdown(Shutdown::Both);
}
