//! Bad input: every malformed request gets its documented 4xx and changes nothing.

use payrail_tests::http::{self, Reply};
use payrail_tests::stack::TestStack;
use payrail_tests::{authorize_body, settle};
use serde_json::json;

enum Send {
    /// POST JSON text with `Content-Type: application/json`.
    Json(&'static str, String),
    /// Any method, path, headers and body.
    Request(
        &'static str,
        String,
        Vec<(&'static str, String)>,
        Option<Vec<u8>>,
    ),
    /// Raw bytes on the socket.
    Raw(Vec<u8>),
}

struct Case {
    name: &'static str,
    send: Send,
    status: u16,
    code: &'static str,
}

fn case(name: &'static str, send: Send, status: u16, code: &'static str) -> Case {
    Case {
        name,
        send,
        status,
        code,
    }
}

const AUTH: &str = "/api/payments/authorize";

fn auth(body: &str) -> Send {
    Send::Json(AUTH, body.to_owned())
}

fn fingerprint(stack: &TestStack) -> Vec<Vec<String>> {
    (1..=2).flat_map(|s| stack.rows(s, "CHECKSUM TABLE payment, refund, outbox_event, idempotency_record, payment_status_history")).collect()
}

#[test]
fn malformed_requests_get_documented_4xx_and_change_nothing() {
    let stack = TestStack::start("malformed");
    let addr = stack.addr().to_owned();
    // One authorized and one captured payment for the capture/refund/void cases.
    let authorized = http::post(&addr, AUTH, &authorize_body("M-2", 1000, "seed-1")).json()
        ["paymentId"]
        .as_u64()
        .unwrap_or(0);
    let captured = http::post(&addr, AUTH, &authorize_body("M-2", 1000, "seed-2")).json()
        ["paymentId"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        http::post(
            &addr,
            &format!("/api/payments/capture/{captured}"),
            &json!({"merchantId": "M-2"})
        )
        .status,
        200
    );
    settle(&stack, captured);

    let capture = |id: &str, body: &str| {
        Send::Json(
            Box::leak(format!("/api/payments/capture/{id}").into_boxed_str()),
            body.to_owned(),
        )
    };
    let refund = |body: &str| {
        Send::Json(
            Box::leak(format!("/api/payments/refund/{captured}").into_boxed_str()),
            body.to_owned(),
        )
    };
    let a = authorized.to_string();
    let long_merchant = "M".repeat(33);
    let long_key = "k".repeat(65);
    let long_reason = "r".repeat(129);
    let ok_fields = r#""merchantId":"M-2","amount":1000,"currency":"KRW","idempotencyKey":"x-1""#;
    let cases = vec![
        case("not JSON", auth("not json"), 400, "MALFORMED_JSON"),
        case("empty body", auth(""), 400, "MALFORMED_JSON"),
        case("JSON array", auth("[1,2]"), 400, "MALFORMED_JSON"),
        case("JSON string", auth("\"x\""), 400, "MALFORMED_JSON"),
        case("JSON null", auth("null"), 400, "MALFORMED_JSON"),
        case("truncated JSON", auth(r#"{"merchantId":"M-2""#), 400, "MALFORMED_JSON"),
        case("trailing garbage", auth(&format!("{{{ok_fields}}} x")), 400, "MALFORMED_JSON"),
        case("duplicate key", auth(&format!("{{{ok_fields},\"amount\":5}}")), 400, "MALFORMED_JSON"),
        case("amount as string", auth(r#"{"merchantId":"M-2","amount":"1000","currency":"KRW","idempotencyKey":"x"}"#), 400, "MALFORMED_JSON"),
        case("fractional amount", auth(r#"{"merchantId":"M-2","amount":10.5,"currency":"KRW","idempotencyKey":"x"}"#), 400, "MALFORMED_JSON"),
        case("amount written as float", auth(r#"{"merchantId":"M-2","amount":100.0,"currency":"KRW","idempotencyKey":"x"}"#), 400, "MALFORMED_JSON"),
        case("amount as bool", auth(r#"{"merchantId":"M-2","amount":true,"currency":"KRW","idempotencyKey":"x"}"#), 400, "MALFORMED_JSON"),
        case("merchantId as number", auth(r#"{"merchantId":12,"amount":1,"currency":"KRW","idempotencyKey":"x"}"#), 400, "MALFORMED_JSON"),
        case("currency as array", auth(r#"{"merchantId":"M-2","amount":1,"currency":["KRW"],"idempotencyKey":"x"}"#), 400, "MALFORMED_JSON"),
        case("idempotencyKey as object", auth(r#"{"merchantId":"M-2","amount":1,"currency":"KRW","idempotencyKey":{}}"#), 400, "MALFORMED_JSON"),
        case("invalid UTF-8", Send::Request("POST", AUTH.into(), vec![("Content-Type", "application/json".into())], Some(b"{\"merchantId\":\"M-\xff\",\"amount\":1,\"currency\":\"KRW\",\"idempotencyKey\":\"x\"}".to_vec())), 400, "MALFORMED_JSON"),
        case("missing merchantId", auth(r#"{"amount":1,"currency":"KRW","idempotencyKey":"x"}"#), 400, "VALIDATION_FAILED"),
        case("missing amount", auth(r#"{"merchantId":"M-2","currency":"KRW","idempotencyKey":"x"}"#), 400, "VALIDATION_FAILED"),
        case("missing currency", auth(r#"{"merchantId":"M-2","amount":1,"idempotencyKey":"x"}"#), 400, "VALIDATION_FAILED"),
        case("missing idempotencyKey", auth(r#"{"merchantId":"M-2","amount":1,"currency":"KRW"}"#), 400, "VALIDATION_FAILED"),
        case("null amount", auth(r#"{"merchantId":"M-2","amount":null,"currency":"KRW","idempotencyKey":"x"}"#), 400, "VALIDATION_FAILED"),
        case("empty object", auth("{}"), 400, "VALIDATION_FAILED"),
        case("empty merchantId", auth(r#"{"merchantId":"","amount":1,"currency":"KRW","idempotencyKey":"x"}"#), 400, "VALIDATION_FAILED"),
        case("overlong merchantId", auth(&format!(r#"{{"merchantId":"{long_merchant}","amount":1,"currency":"KRW","idempotencyKey":"x"}}"#)), 400, "VALIDATION_FAILED"),
        case("merchantId with a space", auth(r#"{"merchantId":"M 2","amount":1,"currency":"KRW","idempotencyKey":"x"}"#), 400, "VALIDATION_FAILED"),
        case("merchantId with non-ASCII", auth(r#"{"merchantId":"M-\u00e9","amount":1,"currency":"KRW","idempotencyKey":"x"}"#), 400, "VALIDATION_FAILED"),
        case("zero amount", auth(r#"{"merchantId":"M-2","amount":0,"currency":"KRW","idempotencyKey":"x"}"#), 400, "VALIDATION_FAILED"),
        case("negative amount", auth(r#"{"merchantId":"M-2","amount":-1,"currency":"KRW","idempotencyKey":"x"}"#), 400, "VALIDATION_FAILED"),
        case("amount above the maximum", auth(r#"{"merchantId":"M-2","amount":1000000000001,"currency":"KRW","idempotencyKey":"x"}"#), 400, "VALIDATION_FAILED"),
        // Beyond u64 the JSON parser cannot represent the number at all.
        case("amount beyond 64 bits", auth(r#"{"merchantId":"M-2","amount":99999999999999999999999,"currency":"KRW","idempotencyKey":"x"}"#), 400, "MALFORMED_JSON"),
        case("amount beyond i64", auth(r#"{"merchantId":"M-2","amount":18446744073709551615,"currency":"KRW","idempotencyKey":"x"}"#), 400, "VALIDATION_FAILED"),
        case("unknown currency", auth(r#"{"merchantId":"M-2","amount":1,"currency":"XYZ","idempotencyKey":"x"}"#), 400, "VALIDATION_FAILED"),
        case("lower-case currency", auth(r#"{"merchantId":"M-2","amount":1,"currency":"krw","idempotencyKey":"x"}"#), 400, "VALIDATION_FAILED"),
        case("empty currency", auth(r#"{"merchantId":"M-2","amount":1,"currency":"","idempotencyKey":"x"}"#), 400, "VALIDATION_FAILED"),
        case("empty idempotencyKey", auth(r#"{"merchantId":"M-2","amount":1,"currency":"KRW","idempotencyKey":""}"#), 400, "VALIDATION_FAILED"),
        case("overlong idempotencyKey", auth(&format!(r#"{{"merchantId":"M-2","amount":1,"currency":"KRW","idempotencyKey":"{long_key}"}}"#)), 400, "VALIDATION_FAILED"),
        case("control character in idempotencyKey", auth(r#"{"merchantId":"M-2","amount":1,"currency":"KRW","idempotencyKey":"a\u0001b"}"#), 400, "VALIDATION_FAILED"),
        case("unknown field", auth(&format!("{{{ok_fields},\"card\":\"4111\"}}")), 400, "VALIDATION_FAILED"),
        case("bad capture mode", auth(&format!("{{{ok_fields},\"capture\":\"sometimes\"}}")), 400, "VALIDATION_FAILED"),
        case("header key differs from body key", Send::Request("POST", AUTH.into(), vec![("Content-Type", "application/json".into()), ("Idempotency-Key", "other".into())], Some(format!("{{{ok_fields}}}").into_bytes())), 400, "VALIDATION_FAILED"),
        case("text/plain body", Send::Request("POST", AUTH.into(), vec![("Content-Type", "text/plain".into())], Some(format!("{{{ok_fields}}}").into_bytes())), 415, "UNSUPPORTED_MEDIA_TYPE"),
        case("no content type", Send::Request("POST", AUTH.into(), vec![], Some(format!("{{{ok_fields}}}").into_bytes())), 415, "UNSUPPORTED_MEDIA_TYPE"),
        case("oversized body", Send::Request("POST", AUTH.into(), vec![("Content-Type", "application/json".into())], Some(vec![b' '; 20_000])), 413, "PAYLOAD_TOO_LARGE"),
        case("chunked body", Send::Raw(format!("POST {AUTH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").into_bytes()), 411, "LENGTH_REQUIRED"),
        case("non-numeric Content-Length", Send::Raw(format!("POST {AUTH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{{}}").into_bytes()), 400, "MALFORMED_REQUEST"),
        case("not HTTP", Send::Raw(b"HELLO THERE\r\n\r\n".to_vec()), 400, "MALFORMED_REQUEST"),
        case("too many headers", Send::Raw({
            let mut r = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
            for i in 0..40 { r.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes()); }
            r.extend_from_slice(b"\r\n");
            r
        }), 431, "HEADERS_TOO_LARGE"),
        case("oversized head", Send::Raw(format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(10_000)).into_bytes()), 431, "HEADERS_TOO_LARGE"),
        case("capture: non-numeric id", capture("abc", r#"{"merchantId":"M-2"}"#), 400, "VALIDATION_FAILED"),
        case("capture: id zero", capture("0", r#"{"merchantId":"M-2"}"#), 400, "VALIDATION_FAILED"),
        case("capture: id beyond 2^53", capture("9007199254740993", r#"{"merchantId":"M-2"}"#), 400, "VALIDATION_FAILED"),
        case("capture: zero amount", capture(&a, r#"{"merchantId":"M-2","amount":0}"#), 400, "VALIDATION_FAILED"),
        case("capture: missing merchantId", capture(&a, "{}"), 400, "VALIDATION_FAILED"),
        case("capture: amount above authorized", capture(&a, r#"{"merchantId":"M-2","amount":1001}"#), 400, "VALIDATION_FAILED"),
        case("refund: missing reason", refund(r#"{"merchantId":"M-2"}"#), 400, "VALIDATION_FAILED"),
        case("refund: overlong reason", refund(&format!(r#"{{"merchantId":"M-2","reason":"{long_reason}"}}"#)), 400, "VALIDATION_FAILED"),
        case("refund: negative amount", refund(r#"{"merchantId":"M-2","reason":"x","amount":-5}"#), 400, "VALIDATION_FAILED"),
        case("refund: amount as string", refund(r#"{"merchantId":"M-2","reason":"x","amount":"5"}"#), 400, "MALFORMED_JSON"),
        case("void: array body", Send::Json(Box::leak(format!("/api/payments/void/{authorized}").into_boxed_str()), "[]".into()), 400, "MALFORMED_JSON"),
        case("get: bad merchantId", Send::Request("GET", format!("/api/payments/{authorized}?merchantId=a%20b"), vec![], None), 400, "VALIDATION_FAILED"),
        case("get: no merchantId", Send::Request("GET", format!("/api/payments/{authorized}"), vec![], None), 400, "VALIDATION_FAILED"),
        case("list: limit zero", Send::Request("GET", "/api/payments?merchantId=M-2&limit=0".into(), vec![], None), 400, "VALIDATION_FAILED"),
        case("list: bad cursor", Send::Request("GET", "/api/payments?merchantId=M-2&cursor=xyz".into(), vec![], None), 400, "VALIDATION_FAILED"),
    ];
    assert!(cases.len() >= 40, "the contract asks for at least 40 cases");

    let before = fingerprint(&stack);
    let mut failures = Vec::new();
    for c in &cases {
        let reply: Reply = match &c.send {
            Send::Json(path, body) => http::request(
                &addr,
                "POST",
                path,
                &[("Content-Type", "application/json")],
                Some(body.as_bytes()),
            ),
            Send::Request(method, path, headers, body) => {
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                http::request(&addr, method, path, &headers, body.as_deref())
            }
            Send::Raw(bytes) => http::raw(&addr, bytes),
        }
        .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        if reply.status != c.status
            || reply.code() != c.code
            || !reply.text().contains("\"message\"")
        {
            failures.push(format!(
                "{}: expected {} {}, got {} {}",
                c.name,
                c.status,
                c.code,
                reply.status,
                reply.text()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(fingerprint(&stack), before, "bad input must change nothing");
    // The server is still healthy after all of it.
    assert_eq!(http::get(&addr, "/health").status, 200);
}

#[test]
fn slow_clients_are_cut_off() {
    use std::io::{Read, Write};
    let stack = TestStack::start_with(
        "malformed_slow",
        payrail_tests::stack::Options {
            ingest_toml: "[http]\nheader_read_timeout_ms = 500\nbody_read_timeout_ms = 500\n"
                .into(),
            ..Default::default()
        },
    );
    // A head that never completes: 408 after the header timeout.
    let mut stream = std::net::TcpStream::connect(stack.addr()).unwrap_or_else(|e| panic!("{e}"));
    stream
        .write_all(b"POST /api/payments/authorize HTTP/1.1\r\nHost: x\r\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let reply = http::read_reply(&mut stream).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply.status, 408);
    assert_eq!(reply.code(), "REQUEST_TIMEOUT");
    // A body that never arrives: 408 too.
    let mut stream = std::net::TcpStream::connect(stack.addr()).unwrap_or_else(|e| panic!("{e}"));
    stream.write_all(b"POST /api/payments/authorize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\"").unwrap_or_else(|e| panic!("{e}"));
    let reply = http::read_reply(&mut stream).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply.status, 408);
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "the connection is closed after a 408");
}
