//! A small blocking HTTP/1.1 client for tests: one connection per request, and raw bytes
//! for requests no well-behaved client would send.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `code` of an error body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_owned()
    }
}

/// Sends `bytes` as they are and reads one response.
pub fn raw(addr: &str, bytes: &[u8]) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(bytes)?;
    read_reply(&mut stream)
}

pub fn read_reply(stream: &mut TcpStream) -> std::io::Result<Reply> {
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    Ok(Reply {
        status,
        headers,
        body,
    })
}

pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Reply> {
    let mut bytes =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    for (k, v) in headers {
        bytes.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    if let Some(b) = body {
        bytes.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
    }
    bytes.extend_from_slice(b"\r\n");
    if let Some(b) = body {
        bytes.extend_from_slice(b);
    }
    raw(addr, &bytes)
}

/// POST a JSON value; panics if the connection fails (tests want to know).
pub fn post(addr: &str, path: &str, body: &serde_json::Value) -> Reply {
    let bytes = body.to_string().into_bytes();
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        Some(&bytes),
    )
    .unwrap_or_else(|e| panic!("POST {path} to {addr}: {e}"))
}

pub fn get(addr: &str, path: &str) -> Reply {
    request(addr, "GET", path, &[], None).unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"))
}

/// An admin API call: `Authorization: Bearer <token>` when a token is given, a JSON body
/// for POST (empty when none). Panics if the connection fails.
pub fn admin(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    if let Some(b) = bearer.as_deref() {
        headers.push(("Authorization", b));
    }
    let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    request(
        addr,
        method,
        path,
        &headers,
        (method == "POST").then_some(bytes.as_slice()),
    )
    .unwrap_or_else(|e| panic!("{method} {path} to {addr}: {e}"))
}
