//! A parsed request, borrowing the connection's read buffer.

pub struct Request<'a> {
    pub method: &'a str,
    /// The path without the query string.
    pub path: &'a str,
    /// The raw query string after `?`, or empty.
    pub query: &'a str,
    pub headers: &'a [httparse::Header<'a>],
    pub body: &'a [u8],
    /// `X-Request-Id` if the client (or the gateway) sent one.
    pub request_id: Option<&'a str>,
    /// The connection's peer address (the gateway throttles failed authentication by it).
    pub peer: Option<std::net::IpAddr>,
}

impl<'a> Request<'a> {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    }

    /// Number of headers with this name (used to refuse ambiguous duplicates).
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count()
    }

    /// The value of `name` in the query string, not percent-decoded (our query values are
    /// ids, statuses and merchant ids, none of which need escaping).
    pub fn query_param(&self, name: &str) -> Option<&'a str> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then_some(value)
        })
    }

    /// True when the body is declared as JSON (`application/json`, any parameters).
    pub fn is_json(&self) -> bool {
        match self.header("content-type") {
            Some(value) => {
                let value = std::str::from_utf8(value).unwrap_or("");
                let media = value.split(';').next().unwrap_or("").trim();
                media.eq_ignore_ascii_case("application/json")
            }
            None => false,
        }
    }
}
