//! The API's error body: `{ "code", "message", "paymentId", "details"? }`.

use crate::response::Response;

/// One offending field, for the optional `details` array.
pub struct Detail<'a> {
    pub field: &'a str,
    pub problem: &'a str,
}

/// Writes an error answer with no details.
pub fn write(
    response: &mut Response,
    status: u16,
    code: &str,
    message: &str,
    payment_id: Option<u64>,
) {
    write_with(response, status, code, message, payment_id, &[], None);
}

/// Writes an error answer. `status_field` adds the payment's current `status` (409s).
pub fn write_with(
    response: &mut Response,
    status: u16,
    code: &str,
    message: &str,
    payment_id: Option<u64>,
    details: &[Detail<'_>],
    status_field: Option<&str>,
) {
    response.status(status);
    let body = response.body_mut();
    body.clear();
    encode(body, code, message, payment_id, details, status_field);
}

/// Appends the error body to `body`.
pub fn encode(
    body: &mut Vec<u8>,
    code: &str,
    message: &str,
    payment_id: Option<u64>,
    details: &[Detail<'_>],
    status_field: Option<&str>,
) {
    body.extend_from_slice(b"{\"code\":");
    push_json_string(body, code);
    body.extend_from_slice(b",\"message\":");
    push_json_string(body, message);
    body.extend_from_slice(b",\"paymentId\":");
    match payment_id {
        Some(id) => body.extend_from_slice(itoa::Buffer::new().format(id).as_bytes()),
        None => body.extend_from_slice(b"null"),
    }
    if let Some(status) = status_field {
        body.extend_from_slice(b",\"status\":");
        push_json_string(body, status);
    }
    if !details.is_empty() {
        body.extend_from_slice(b",\"details\":[");
        for (i, detail) in details.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{\"field\":");
            push_json_string(body, detail.field);
            body.extend_from_slice(b",\"problem\":");
            push_json_string(body, detail.problem);
            body.push(b'}');
        }
        body.push(b']');
    }
    body.push(b'}');
}

pub use payrail_core::json::push_string as push_json_string;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_shape() {
        let mut r = Response::new();
        write_with(
            &mut r,
            400,
            "VALIDATION_FAILED",
            "amount \"x\"",
            None,
            &[Detail {
                field: "amount",
                problem: "must be >= 1",
            }],
            None,
        );
        assert_eq!(r.status_code(), 400);
        assert_eq!(
            std::str::from_utf8(r.body()).unwrap_or(""),
            r#"{"code":"VALIDATION_FAILED","message":"amount \"x\"","paymentId":null,"details":[{"field":"amount","problem":"must be >= 1"}]}"#
        );
    }
}
