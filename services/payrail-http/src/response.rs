//! A response under construction. The buffers live as long as the connection and are
//! cleared, not freed, between requests, so a keep-alive connection allocates only when a
//! response outgrows every earlier one.

pub struct Response {
    status: u16,
    /// Extra header lines, already encoded as `Name: value\r\n`.
    headers: Vec<u8>,
    body: Vec<u8>,
    content_type: &'static str,
    close: bool,
    abort: bool,
}

impl Default for Response {
    fn default() -> Self {
        Self::new()
    }
}

impl Response {
    pub fn new() -> Self {
        Self {
            status: 200,
            headers: Vec::with_capacity(256),
            body: Vec::with_capacity(1024),
            content_type: "application/json",
            close: false,
            abort: false,
        }
    }

    pub fn reset(&mut self) {
        self.status = 200;
        self.headers.clear();
        self.body.clear();
        self.content_type = "application/json";
        self.close = false;
        self.abort = false;
    }

    pub fn content_type(&mut self, content_type: &'static str) -> &mut Self {
        self.content_type = content_type;
        self
    }

    pub fn status(&mut self, status: u16) -> &mut Self {
        self.status = status;
        self
    }

    pub fn status_code(&self) -> u16 {
        self.status
    }

    pub fn header(&mut self, name: &str, value: &str) -> &mut Self {
        self.headers.extend_from_slice(name.as_bytes());
        self.headers.extend_from_slice(b": ");
        self.headers.extend_from_slice(value.as_bytes());
        self.headers.extend_from_slice(b"\r\n");
        self
    }

    pub fn header_u64(&mut self, name: &str, value: u64) -> &mut Self {
        let mut digits = itoa::Buffer::new();
        self.header(name, digits.format(value))
    }

    pub fn body_mut(&mut self) -> &mut Vec<u8> {
        &mut self.body
    }

    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// A JSON answer with this status and body.
    pub fn json(&mut self, status: u16, body: &[u8]) {
        self.status = status;
        self.body.clear();
        self.body.extend_from_slice(body);
    }

    /// Close the connection after this response.
    pub fn close(&mut self) {
        self.close = true;
    }

    /// Close the connection without answering at all. Only test doubles want this (pg-mock's
    /// "applied, answer lost" fault); a real service always answers.
    pub fn abort(&mut self) {
        self.abort = true;
    }

    pub(crate) fn wants_abort(&self) -> bool {
        self.abort
    }

    pub(crate) fn wants_close(&self) -> bool {
        self.close
    }

    /// Encodes status line, headers and body into `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        let mut digits = itoa::Buffer::new();
        out.extend_from_slice(digits.format(self.status).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason(self.status).as_bytes());
        out.extend_from_slice(b"\r\nContent-Type: ");
        out.extend_from_slice(self.content_type.as_bytes());
        out.extend_from_slice(b"\r\nContent-Length: ");
        out.extend_from_slice(digits.format(self.body.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        if self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(&self.headers);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
