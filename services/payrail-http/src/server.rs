//! The HTTP/1.1 server loop: one may coroutine per connection.
//!
//! Hand-written because this is the hot path and the limits matter (see the crate docs
//! for what may_minihttp 0.1.11 lacks). Every malformed or abusive request gets an
//! answer with a status code and a JSON error body, then the connection is closed:
//! after a framing error the byte stream cannot be trusted for the next request.

use crate::error_body;
use crate::request::Request;
use crate::response::Response;
use crate::tls::{Secure, Tls, Transport};
use may::net::TcpListener;
use serde::Deserialize;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A listener on `address` that a second process cannot share.
///
/// may's own `TcpListener::bind` sets `SO_REUSEPORT`, so a second instance started on the
/// same address binds without error and the kernel splits the connections between the
/// two: a stale process from an earlier run (or a misconfigured second service) would
/// silently answer part of the traffic with its own state. So the address is first bound
/// without `SO_REUSEPORT` (std's listener, `SO_REUSEADDR` only, so a restart still rebinds
/// at once past `TIME_WAIT`), which the kernel refuses while any socket listens there, and
/// a port in use is an `AddrInUse` error at startup. Then that probe is closed and may
/// binds. (Handing the probe's descriptor to may instead would need `unsafe`.)
pub fn bind(address: &str) -> io::Result<TcpListener> {
    let probe = std::net::TcpListener::bind(address).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("cannot listen on {address}: {error} (is another instance running?)"),
        )
    })?;
    let bound = probe.local_addr()?;
    drop(probe);
    TcpListener::bind(bound)
}

/// Most header lines a request may carry; more is answered 431.
const HEADERS_MAX: usize = 32;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Open connections at most; one more is answered 503 and closed, so a flood of idle
    /// connections cannot exhaust memory. Default 4 096.
    pub connections_max: usize,
    /// Largest request body; larger is answered 413 without reading it. Default 16 384.
    pub body_size_max_bytes: usize,
    /// Largest request head (request line plus headers); larger is answered 431. Default 8 192.
    pub header_size_max_bytes: usize,
    /// Time allowed from a request's first byte to its last header byte; slower is 408.
    /// Default 5 000 ms.
    pub header_read_timeout_ms: u64,
    /// Time allowed to receive the body once the head is in; slower is 408. Default 5 000 ms.
    pub body_read_timeout_ms: u64,
    /// An idle keep-alive connection is closed after this long. Default 60 000 ms.
    pub keep_alive_idle_timeout_ms: u64,
    /// A client that does not read its response within this long is dropped. Default 10 000 ms.
    pub write_timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            connections_max: 4096,
            body_size_max_bytes: 16 * 1024,
            header_size_max_bytes: 8 * 1024,
            header_read_timeout_ms: 5_000,
            body_read_timeout_ms: 5_000,
            keep_alive_idle_timeout_ms: 60_000,
            write_timeout_ms: 10_000,
        }
    }
}

/// The application: called once per request on the connection's coroutine. It must not
/// block the thread (use [`crate::Bridge`] for I/O).
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, request: &Request<'_>, response: &mut Response);
}

/// Accepts connections on `listener` until the process ends. Returns the accept loop's
/// coroutine handle.
pub fn serve<H: Handler>(
    listener: TcpListener,
    config: ServerConfig,
    handler: Arc<H>,
) -> may::coroutine::JoinHandle<()> {
    serve_draining(listener, config, handler, Arc::new(AtomicBool::new(false)))
}

/// [`serve`], with a switch for graceful shutdown: once `draining` is set, new
/// connections are closed unanswered and every response on an open connection carries
/// `Connection: close`, so requests in flight finish and clients move elsewhere.
pub fn serve_draining<H: Handler>(
    listener: TcpListener,
    config: ServerConfig,
    handler: Arc<H>,
    draining: Arc<AtomicBool>,
) -> may::coroutine::JoinHandle<()> {
    serve_tls(listener, config, handler, draining, None)
}

/// [`serve_draining`], speaking TLS on every connection when `tls` is given.
pub fn serve_tls<H: Handler>(
    listener: TcpListener,
    config: ServerConfig,
    handler: Arc<H>,
    draining: Arc<AtomicBool>,
    tls: Option<Arc<Tls>>,
) -> may::coroutine::JoinHandle<()> {
    let open = Arc::new(AtomicUsize::new(0));
    let config = Arc::new(config);
    let spawn = move || {
        for stream in listener.incoming() {
            let stream = match stream {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    may::coroutine::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            if draining.load(Ordering::Acquire) {
                drop(stream);
                continue;
            }
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            let draining = draining.clone();
            let config = config.clone();
            let open = open.clone();
            let tls = tls.clone();
            let over_cap = open.fetch_add(1, Ordering::AcqRel) >= config.connections_max;
            let go = move || {
                match tls {
                    None => {
                        let mut stream = stream;
                        run(&mut stream, over_cap, &config, &*handler, &draining);
                        let _ = stream.shutdown(std::net::Shutdown::Both);
                    }
                    Some(tls) => {
                        if let Ok(stream) = tls.accept(stream) {
                            let mut secure = Secure {
                                stream,
                                hsts: tls.hsts.clone(),
                            };
                            run(&mut secure, over_cap, &config, &*handler, &draining);
                            let _ = secure.shutdown_write();
                        }
                    }
                }
                open.fetch_sub(1, Ordering::AcqRel);
            };
            may::go!(go);
        }
    };
    may::go!(spawn)
}

fn run<T: Transport, H: Handler>(
    stream: &mut T,
    over_cap: bool,
    config: &ServerConfig,
    handler: &H,
    draining: &AtomicBool,
) {
    if over_cap {
        refuse_overloaded(stream, config);
    } else {
        connection(stream, config, handler, draining);
    }
}

fn refuse_overloaded<T: Transport>(stream: &mut T, config: &ServerConfig) {
    let mut response = Response::new();
    error_body::write(
        &mut response,
        503,
        "OVERLOADED",
        "too many open connections; retry shortly",
        None,
    );
    response.header("Retry-After", "1");
    response.close();
    let mut out = Vec::with_capacity(256);
    response.encode(&mut out);
    let _ = stream.set_write_timeout(Some(Duration::from_millis(config.write_timeout_ms)));
    let _ = stream.write_all(&out);
}

/// What the head told us before the body is read.
struct Head {
    head_len: usize,
    content_length: usize,
    close: bool,
}

enum HeadError {
    /// Answer with this status and code, then close.
    Answer(u16, &'static str, &'static str),
}

/// Checks the framing of a complete head (`head`: its bytes, as `request` parsed them).
fn inspect_head(
    request: &httparse::Request<'_, '_>,
    head: &[u8],
    body_max: usize,
) -> Result<Head, HeadError> {
    // httparse takes a bare LF as a line end; a proxy that does not would see other
    // headers than we do (request smuggling).
    if has_bare_lf(head) {
        return Err(HeadError::Answer(
            400,
            "MALFORMED_REQUEST",
            "end header lines with CRLF",
        ));
    }
    let mut content_length: Option<usize> = None;
    let mut close = request.version == Some(0);
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let parsed = parse_content_length(header.value).ok_or(HeadError::Answer(
                400,
                "MALFORMED_REQUEST",
                "Content-Length must be a decimal number",
            ))?;
            // Two Content-Length headers are refused even when they agree: a proxy in front
            // may have picked either (request smuggling).
            if content_length.is_some() {
                return Err(HeadError::Answer(
                    400,
                    "MALFORMED_REQUEST",
                    "send exactly one Content-Length header",
                ));
            }
            content_length = Some(parsed);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::Answer(
                411,
                "LENGTH_REQUIRED",
                "send the body with a Content-Length header; chunked bodies are not accepted",
            ));
        } else if header.name.eq_ignore_ascii_case("connection") {
            let value = header.value;
            if value.eq_ignore_ascii_case(b"close") {
                close = true;
            } else if value.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > body_max {
        return Err(HeadError::Answer(
            413,
            "PAYLOAD_TOO_LARGE",
            "request body exceeds the size limit",
        ));
    }
    Ok(Head {
        head_len: head.len(),
        content_length,
        close,
    })
}

fn parse_content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0')),
    )
}

enum ReadOutcome {
    Data,
    Closed,
    TimedOut,
}

/// Reads more bytes into `buffer`, waiting at most until `deadline`.
fn read_more<T: Transport>(
    stream: &mut T,
    buffer: &mut Vec<u8>,
    deadline: Instant,
) -> io::Result<ReadOutcome> {
    let now = Instant::now();
    if now >= deadline {
        return Ok(ReadOutcome::TimedOut);
    }
    stream.set_read_timeout(Some(deadline - now))?;
    let start = buffer.len();
    if buffer.capacity() - start < 4096 {
        buffer.reserve(8192);
    }
    buffer.resize(buffer.capacity(), 0);
    let result = stream.read(&mut buffer[start..]);
    match result {
        Ok(0) => {
            buffer.truncate(start);
            Ok(ReadOutcome::Closed)
        }
        Ok(n) => {
            buffer.truncate(start + n);
            Ok(ReadOutcome::Data)
        }
        Err(error) => {
            buffer.truncate(start);
            match error.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(ReadOutcome::TimedOut),
                _ => Err(error),
            }
        }
    }
}

fn connection<T: Transport, H: Handler>(
    stream: &mut T,
    config: &ServerConfig,
    handler: &H,
    draining: &AtomicBool,
) {
    let _ = stream.set_write_timeout(Some(Duration::from_millis(config.write_timeout_ms)));
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let mut buffer: Vec<u8> = Vec::with_capacity(8192);
    let mut out: Vec<u8> = Vec::with_capacity(8192);
    let mut response = Response::new();
    // A new connection must start its first request within the head timeout, not the
    // keep-alive one: idle floods and slowloris are shed in seconds, not a minute.
    let mut first = true;
    loop {
        // 1. The head. An idle connection waits up to the keep-alive timeout for the first
        //    byte; once a request has started, the head must complete within its timeout.
        let mut started: Option<Instant> = if buffer.is_empty() {
            None
        } else {
            Some(Instant::now())
        };
        let head = loop {
            if !buffer.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
                let mut parsed = httparse::Request::new(&mut headers);
                match parsed.parse(&buffer) {
                    Ok(httparse::Status::Complete(head_len))
                        if head_len > config.header_size_max_bytes =>
                    {
                        answer_and_close(
                            stream,
                            &mut response,
                            &mut out,
                            431,
                            "HEADERS_TOO_LARGE",
                            "request head exceeds the size limit",
                        );
                        return;
                    }
                    Ok(httparse::Status::Complete(head_len)) => {
                        match inspect_head(&parsed, &buffer[..head_len], config.body_size_max_bytes)
                        {
                            Ok(head) => break head,
                            Err(HeadError::Answer(status, code, message)) => {
                                answer_and_close(
                                    stream,
                                    &mut response,
                                    &mut out,
                                    status,
                                    code,
                                    message,
                                );
                                return;
                            }
                        }
                    }
                    Ok(httparse::Status::Partial) => {
                        if buffer.len() > config.header_size_max_bytes {
                            answer_and_close(
                                stream,
                                &mut response,
                                &mut out,
                                431,
                                "HEADERS_TOO_LARGE",
                                "request head exceeds the size limit",
                            );
                            return;
                        }
                    }
                    Err(httparse::Error::TooManyHeaders) => {
                        answer_and_close(
                            stream,
                            &mut response,
                            &mut out,
                            431,
                            "HEADERS_TOO_LARGE",
                            "too many header lines",
                        );
                        return;
                    }
                    Err(_) => {
                        answer_and_close(
                            stream,
                            &mut response,
                            &mut out,
                            400,
                            "MALFORMED_REQUEST",
                            "the request is not valid HTTP/1.1",
                        );
                        return;
                    }
                }
            }
            let deadline = match started {
                Some(at) => at + Duration::from_millis(config.header_read_timeout_ms),
                None if first => {
                    Instant::now() + Duration::from_millis(config.header_read_timeout_ms)
                }
                None => Instant::now() + Duration::from_millis(config.keep_alive_idle_timeout_ms),
            };
            match read_more(stream, &mut buffer, deadline) {
                Ok(ReadOutcome::Data) => {
                    started.get_or_insert_with(Instant::now);
                }
                Ok(ReadOutcome::Closed) | Err(_) => return,
                Ok(ReadOutcome::TimedOut) => {
                    if started.is_some() {
                        answer_and_close(
                            stream,
                            &mut response,
                            &mut out,
                            408,
                            "REQUEST_TIMEOUT",
                            "the request head arrived too slowly",
                        );
                    }
                    return;
                }
            }
        };

        // 2. The body, within its own deadline.
        let total = head.head_len + head.content_length;
        let body_deadline = Instant::now() + Duration::from_millis(config.body_read_timeout_ms);
        while buffer.len() < total {
            match read_more(stream, &mut buffer, body_deadline) {
                Ok(ReadOutcome::Data) => {}
                Ok(ReadOutcome::Closed) | Err(_) => return,
                Ok(ReadOutcome::TimedOut) => {
                    answer_and_close(
                        stream,
                        &mut response,
                        &mut out,
                        408,
                        "REQUEST_TIMEOUT",
                        "the request body arrived too slowly",
                    );
                    return;
                }
            }
        }

        // 3. The application. The head is parsed again over the now complete buffer; that
        //    costs well under a microsecond and keeps the borrows simple.
        response.reset();
        {
            let mut headers = [httparse::EMPTY_HEADER; HEADERS_MAX];
            let mut parsed = httparse::Request::new(&mut headers);
            if !matches!(
                parsed.parse(&buffer[..head.head_len]),
                Ok(httparse::Status::Complete(_))
            ) {
                answer_and_close(
                    stream,
                    &mut response,
                    &mut out,
                    400,
                    "MALFORMED_REQUEST",
                    "the request is not valid HTTP/1.1",
                );
                return;
            }
            let target = parsed.path.unwrap_or("/");
            let (path, query) = target.split_once('?').unwrap_or((target, ""));
            let request_id = parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("x-request-id"))
                .and_then(|h| std::str::from_utf8(h.value).ok());
            let request = Request {
                method: parsed.method.unwrap_or("GET"),
                path,
                query,
                headers: parsed.headers,
                body: &buffer[head.head_len..total],
                request_id,
                peer,
            };
            handler.handle(&request, &mut response);
            if let Some(hsts) = stream.hsts() {
                response.header("Strict-Transport-Security", hsts);
            }
            if let Some(id) = request_id {
                if id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) {
                    response.header("X-Request-Id", id);
                }
            }
        }
        if response.wants_abort() {
            return;
        }
        if head.close || draining.load(Ordering::Acquire) {
            response.close();
        }
        out.clear();
        response.encode(&mut out);
        if stream.write_all(&out).is_err() || response.wants_close() {
            return;
        }
        buffer.drain(..total);
        first = false;
        // Give back memory a single large request grew, so idle connections stay small.
        if buffer.capacity() > 64 * 1024 && buffer.len() < 8192 {
            buffer.shrink_to(16 * 1024);
        }
    }
}

fn answer_and_close<T: Transport>(
    stream: &mut T,
    response: &mut Response,
    out: &mut Vec<u8>,
    status: u16,
    code: &str,
    message: &str,
) {
    response.reset();
    error_body::write(response, status, code, message, None);
    response.close();
    out.clear();
    response.encode(out);
    if stream.write_all(out).is_ok() {
        linger(stream);
    }
}

/// Most a lingering close reads and throws away, and for how long: enough for a client
/// that sends a whole oversized body before it reads the 413.
const LINGER_BYTES_MAX: usize = 4 * 1024 * 1024;
const LINGER_MS: u64 = 2_000;

/// Closes lingeringly: ends our side, then reads what the client still sends (bounded in
/// bytes and time), so the kernel does not answer its unread bytes with a reset that
/// destroys the answer before the client reads it.
fn linger<T: Transport>(stream: &mut T) {
    let _ = stream.shutdown_write();
    let deadline = Instant::now() + Duration::from_millis(LINGER_MS);
    let mut sink = [0u8; 16 * 1024];
    let mut drained = 0;
    while drained < LINGER_BYTES_MAX {
        let now = Instant::now();
        if now >= deadline || stream.set_read_timeout(Some(deadline - now)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// True when a line of the head ends in LF without CR.
fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, b)| *b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

#[cfg(test)]
mod tests {
    use super::{bind, has_bare_lf, parse_content_length};

    #[test]
    fn a_second_listener_on_a_bound_address_is_refused() {
        let first = bind("127.0.0.1:0").expect("first listener");
        let address = first.local_addr().expect("its address").to_string();
        let second = bind(&address).expect_err("a second listener must not bind");
        assert_eq!(second.kind(), std::io::ErrorKind::AddrInUse);
        assert!(second.to_string().contains(&address), "{second}");
        // may's own bind (`SO_REUSEPORT`) is what this guards against: it shares the port.
        drop(first);
        let again = bind(&address).expect("free again once the first is closed");
        drop(again);
    }

    #[test]
    fn bare_line_feeds_are_found() {
        assert!(!has_bare_lf(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(has_bare_lf(b"GET / HTTP/1.1\nHost: a\r\n\r\n"));
        assert!(has_bare_lf(b"GET / HTTP/1.1\r\nHost: a\n\n"));
    }

    #[test]
    fn content_length_is_strict() {
        assert_eq!(parse_content_length(b"0"), Some(0));
        assert_eq!(parse_content_length(b"16384"), Some(16384));
        assert_eq!(parse_content_length(b""), None);
        assert_eq!(parse_content_length(b"-1"), None);
        assert_eq!(parse_content_length(b"1e3"), None);
        assert_eq!(parse_content_length(b" 12"), None);
        assert_eq!(parse_content_length(b"99999999999999999999999"), None);
    }
}
