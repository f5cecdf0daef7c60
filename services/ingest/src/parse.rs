//! Request bodies: JSON → validated inputs, or the exact 400 the API contract names.
//!
//! Hand-written over simd-json's tape instead of `serde::Deserialize` because the contract
//! distinguishes errors serde folds together: a duplicate key or a wrong type is
//! `MALFORMED_JSON`, a missing, empty, unknown or out-of-range field is
//! `VALIDATION_FAILED`, and the answer lists every offending field, not just the first.
//! Walking the tape also avoids building an intermediate map per request.

use payrail_core::validate;
use simd_json::prelude::*;
use simd_json::ValueType;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureMode {
    Manual,
    Automatic,
}

#[derive(Debug, Clone)]
pub struct AuthorizeInput {
    pub merchant_id: String,
    pub amount: i64,
    pub currency: String,
    pub idempotency_key: String,
    pub capture: CaptureMode,
}

#[derive(Debug, Clone)]
pub struct CaptureInput {
    pub merchant_id: String,
    pub amount: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct RefundInput {
    pub merchant_id: String,
    pub amount: Option<i64>,
    pub reason: String,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct VoidInput {
    pub merchant_id: String,
}

/// Why a body was refused: (field, problem) pairs, and which 400 code applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: &'static str,
    pub message: String,
    pub details: Vec<(String, &'static str)>,
}

/// The code of the 403 for a request naming another merchant than its key's.
pub const MERCHANT_MISMATCH: &str = "MERCHANT_MISMATCH";

impl Rejection {
    pub fn mismatch() -> Self {
        Self {
            code: MERCHANT_MISMATCH,
            message:
                "merchantId differs from the API key's merchant; leave it out or send the key's own"
                    .to_owned(),
            details: vec![("merchantId".to_owned(), "is not the API key's merchant")],
        }
    }

    fn malformed(message: &str) -> Self {
        Self {
            code: "MALFORMED_JSON",
            message: message.to_owned(),
            details: Vec::new(),
        }
    }
}

/// Collects field problems; wrong types make the whole answer `MALFORMED_JSON`.
#[derive(Default)]
struct Problems {
    wrong_type: bool,
    details: Vec<(String, &'static str)>,
}

impl Problems {
    fn add(&mut self, field: &str, problem: &'static str) {
        self.details.push((field.to_owned(), problem));
    }

    fn type_error(&mut self, field: &str, problem: &'static str) {
        self.wrong_type = true;
        self.add(field, problem);
    }

    fn into_result(self) -> Result<(), Rejection> {
        if self.details.is_empty() {
            return Ok(());
        }
        let (code, message) = if self.wrong_type {
            ("MALFORMED_JSON", "a field has the wrong JSON type")
        } else {
            ("VALIDATION_FAILED", "one or more fields are invalid")
        };
        let message = format!(
            "{message}: {}",
            self.details
                .iter()
                .map(|(f, p)| format!("{f} {p}"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        Err(Rejection {
            code,
            message,
            details: self.details,
        })
    }
}

/// The fields of one JSON object, checked for duplicates and unknown names.
struct Fields<'t, 'i> {
    entries: Vec<(&'i str, simd_json::tape::Value<'t, 'i>)>,
}

impl<'t, 'i> Fields<'t, 'i> {
    fn get(&self, name: &str) -> Option<&simd_json::tape::Value<'t, 'i>> {
        self.entries
            .iter()
            .find(|(k, v)| *k == name && v.value_type() != ValueType::Null)
            .map(|(_, v)| v)
    }
}

fn object_fields<'t, 'i>(
    tape: &'t simd_json::tape::Tape<'i>,
    known: &[&str],
    problems: &mut Problems,
) -> Result<Fields<'t, 'i>, Rejection> {
    let object = tape
        .as_value()
        .as_object()
        .ok_or_else(|| Rejection::malformed("the body must be a JSON object"))?;
    let mut entries: Vec<(&'i str, simd_json::tape::Value<'t, 'i>)> =
        Vec::with_capacity(object.len());
    for (key, value) in object.iter() {
        if entries.iter().any(|(k, _)| *k == key) {
            return Err(Rejection {
                code: "MALFORMED_JSON",
                message: format!("duplicate key \"{}\"", key.escape_default()),
                details: vec![(key.to_owned(), "appears more than once")],
            });
        }
        if !known.contains(&key) {
            problems.add(key, "is not a known field");
        }
        entries.push((key, value));
    }
    Ok(Fields { entries })
}

fn parse_tape<'i>(body: &'i mut [u8]) -> Result<simd_json::tape::Tape<'i>, Rejection> {
    if body.is_empty() {
        return Err(Rejection::malformed(
            "the body is empty; send a JSON object",
        ));
    }
    simd_json::to_tape(body).map_err(|_| Rejection::malformed("the body is not valid JSON"))
}

fn string_field(fields: &Fields<'_, '_>, name: &str, problems: &mut Problems) -> Option<String> {
    match fields.get(name) {
        None => {
            problems.add(name, "is required");
            None
        }
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_owned()),
            None => {
                problems.type_error(name, "must be a string");
                None
            }
        },
    }
}

fn optional_string(fields: &Fields<'_, '_>, name: &str, problems: &mut Problems) -> Option<String> {
    let value = fields.get(name)?;
    match value.as_str() {
        Some(s) => Some(s.to_owned()),
        None => {
            problems.type_error(name, "must be a string");
            None
        }
    }
}

fn amount_field(
    fields: &Fields<'_, '_>,
    name: &str,
    required: bool,
    problems: &mut Problems,
) -> Option<i64> {
    let Some(value) = fields.get(name) else {
        if required {
            problems.add(name, "is required");
        }
        return None;
    };
    let amount = match value.value_type() {
        ValueType::I64 => value.as_i64(),
        // Larger than i64: certainly out of range, but a number, so a validation error.
        ValueType::U64 => value.as_i64().or(Some(i64::MAX)),
        ValueType::F64 => {
            // Integer literals beyond u64 arrive as floats: still a number, out of range.
            let v = value.as_f64().unwrap_or(0.5);
            if v.fract() == 0.0 && v.abs() > validate::AMOUNT_MAX as f64 {
                problems.add(
                    name,
                    if v > 0.0 {
                        "must be <= 1000000000000"
                    } else {
                        "must be >= 1"
                    },
                );
            } else {
                problems.type_error(name, "must be an integer in minor units");
            }
            return None;
        }
        _ => {
            problems.type_error(name, "must be a JSON integer");
            return None;
        }
    };
    let amount = amount?;
    if let Err(problem) = validate::amount(amount) {
        problems.add(name, problem);
        return None;
    }
    Some(amount)
}

fn check(problems: &mut Problems, field: &str, result: Result<(), &'static str>) {
    if let Err(problem) = result {
        problems.add(field, problem);
    }
}

pub fn authorize(
    body: &mut [u8],
    header_key: Option<&str>,
    currencies: &[String],
    caller: Option<&str>,
) -> Result<AuthorizeInput, Rejection> {
    let tape = parse_tape(body)?;
    let mut problems = Problems::default();
    let fields = object_fields(
        &tape,
        &[
            "merchantId",
            "amount",
            "currency",
            "idempotencyKey",
            "capture",
        ],
        &mut problems,
    )?;
    let merchant_id = merchant_field(&fields, &mut problems, caller)?;
    let amount = amount_field(&fields, "amount", true, &mut problems);
    let currency = string_field(&fields, "currency", &mut problems);
    let body_key = optional_string(&fields, "idempotencyKey", &mut problems);
    let capture = optional_string(&fields, "capture", &mut problems);
    if let Some(c) = &currency {
        check(&mut problems, "currency", validate::currency(c, currencies));
    }
    let idempotency_key = match (body_key, header_key) {
        (Some(b), Some(h)) if b != h => {
            problems.add("idempotencyKey", "differs from the Idempotency-Key header");
            None
        }
        (Some(k), _) => Some(k),
        (None, Some(h)) => Some(h.to_owned()),
        (None, None) => {
            problems.add(
                "idempotencyKey",
                "is required (body field or Idempotency-Key header)",
            );
            None
        }
    };
    if let Some(k) = &idempotency_key {
        check(
            &mut problems,
            "idempotencyKey",
            validate::idempotency_key(k),
        );
    }
    let capture = match capture.as_deref() {
        None | Some("manual") => Some(CaptureMode::Manual),
        Some("automatic") => Some(CaptureMode::Automatic),
        Some(_) => {
            problems.add("capture", "must be \"manual\" or \"automatic\"");
            None
        }
    };
    problems.into_result()?;
    match (merchant_id, amount, currency, idempotency_key, capture) {
        (Some(merchant_id), Some(amount), Some(currency), Some(idempotency_key), Some(capture)) => {
            Ok(AuthorizeInput {
                merchant_id,
                amount,
                currency,
                idempotency_key,
                capture,
            })
        }
        _ => Err(Rejection::malformed("invalid request")),
    }
}

/// The request's merchant: the API key's (`caller`), which a `merchantId` field may
/// repeat but not contradict; or, with merchant auth off, the required field.
fn merchant_field(
    fields: &Fields<'_, '_>,
    problems: &mut Problems,
    caller: Option<&str>,
) -> Result<Option<String>, Rejection> {
    let Some(caller) = caller else {
        let merchant_id = string_field(fields, "merchantId", problems);
        if let Some(m) = &merchant_id {
            check(problems, "merchantId", validate::merchant_id(m));
        }
        return Ok(merchant_id);
    };
    let named = optional_string(fields, "merchantId", problems);
    own_merchant(caller, named.as_deref()).map(Some)
}

/// The API key's merchant (`caller`), which a `merchantId` the request names may repeat
/// but not contradict (403 `MERCHANT_MISMATCH`). Bodies and query strings alike.
pub fn own_merchant(caller: &str, named: Option<&str>) -> Result<String, Rejection> {
    match named {
        Some(named) if named != caller => Err(Rejection::mismatch()),
        _ => Ok(caller.to_owned()),
    }
}

pub fn capture(body: &mut [u8], caller: Option<&str>) -> Result<CaptureInput, Rejection> {
    let tape = parse_tape(body)?;
    let mut problems = Problems::default();
    let fields = object_fields(&tape, &["merchantId", "amount"], &mut problems)?;
    let merchant_id = merchant_field(&fields, &mut problems, caller)?;
    let amount = amount_field(&fields, "amount", false, &mut problems);
    problems.into_result()?;
    let merchant_id = merchant_id.ok_or_else(|| Rejection::malformed("invalid request"))?;
    Ok(CaptureInput {
        merchant_id,
        amount,
    })
}

pub fn refund(
    body: &mut [u8],
    header_key: Option<&str>,
    caller: Option<&str>,
) -> Result<RefundInput, Rejection> {
    let tape = parse_tape(body)?;
    let mut problems = Problems::default();
    let fields = object_fields(
        &tape,
        &["merchantId", "amount", "reason", "idempotencyKey"],
        &mut problems,
    )?;
    let merchant_id = merchant_field(&fields, &mut problems, caller)?;
    let amount = amount_field(&fields, "amount", false, &mut problems);
    let reason = string_field(&fields, "reason", &mut problems);
    if let Some(r) = &reason {
        check(&mut problems, "reason", validate::reason(r));
    }
    let body_key = optional_string(&fields, "idempotencyKey", &mut problems);
    let idempotency_key = match (body_key, header_key) {
        (Some(b), Some(h)) if b != h => {
            problems.add("idempotencyKey", "differs from the Idempotency-Key header");
            None
        }
        (Some(k), _) => Some(k),
        (None, Some(h)) => Some(h.to_owned()),
        (None, None) => None,
    };
    if let Some(k) = &idempotency_key {
        check(
            &mut problems,
            "idempotencyKey",
            validate::idempotency_key(k),
        );
    }
    problems.into_result()?;
    match (merchant_id, reason) {
        (Some(merchant_id), Some(reason)) => Ok(RefundInput {
            merchant_id,
            amount,
            reason,
            idempotency_key,
        }),
        _ => Err(Rejection::malformed("invalid request")),
    }
}

pub fn void(body: &mut [u8], caller: Option<&str>) -> Result<VoidInput, Rejection> {
    let tape = parse_tape(body)?;
    let mut problems = Problems::default();
    let fields = object_fields(&tape, &["merchantId"], &mut problems)?;
    let merchant_id = merchant_field(&fields, &mut problems, caller)?;
    problems.into_result()?;
    let merchant_id = merchant_id.ok_or_else(|| Rejection::malformed("invalid request"))?;
    Ok(VoidInput { merchant_id })
}

/// A `{paymentId}` path segment: decimal digits only, within the id range.
pub fn payment_id(segment: &str) -> Result<u64, Rejection> {
    let invalid = || Rejection {
        code: "VALIDATION_FAILED",
        message: "paymentId must be a positive decimal integer below 2^53".to_owned(),
        details: vec![(
            "paymentId".to_owned(),
            "must be a positive decimal integer below 2^53",
        )],
    };
    if segment.is_empty() || segment.len() > 16 || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let id: u64 = segment.parse().map_err(|_| invalid())?;
    if id == 0 || id >= payrail_core::id::ID_LIMIT {
        return Err(invalid());
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn currencies() -> Vec<String> {
        vec!["KRW".into(), "USD".into()]
    }

    fn auth(body: &str) -> Result<AuthorizeInput, Rejection> {
        let mut bytes = body.as_bytes().to_vec();
        authorize(&mut bytes, None, &currencies(), None)
    }

    #[test]
    fn a_valid_authorization() {
        let input = auth(
            r#"{"merchantId":"M-1","amount":50000,"currency":"KRW","idempotencyKey":"order-1"}"#,
        )
        .expect("valid");
        assert_eq!(input.amount, 50000);
        assert_eq!(input.capture, CaptureMode::Manual);
    }

    #[test]
    fn error_classes() {
        let code = |b: &str| auth(b).map(|_| ()).unwrap_err().code;
        assert_eq!(code("not json"), "MALFORMED_JSON");
        assert_eq!(code("[1]"), "MALFORMED_JSON");
        assert_eq!(
            code(
                r#"{"merchantId":"M","merchantId":"M","amount":1,"currency":"KRW","idempotencyKey":"k"}"#
            ),
            "MALFORMED_JSON"
        );
        assert_eq!(
            code(r#"{"merchantId":"M","amount":"1","currency":"KRW","idempotencyKey":"k"}"#),
            "MALFORMED_JSON"
        );
        assert_eq!(
            code(r#"{"merchantId":"M","amount":1.5,"currency":"KRW","idempotencyKey":"k"}"#),
            "MALFORMED_JSON"
        );
        assert_eq!(
            code(r#"{"merchantId":"M","amount":0,"currency":"KRW","idempotencyKey":"k"}"#),
            "VALIDATION_FAILED"
        );
        assert_eq!(
            code(
                r#"{"merchantId":"M","amount":18446744073709551615,"currency":"KRW","idempotencyKey":"k"}"#
            ),
            "VALIDATION_FAILED"
        );
        assert_eq!(
            code(r#"{"merchantId":"M","amount":1,"currency":"XXX","idempotencyKey":"k"}"#),
            "VALIDATION_FAILED"
        );
        assert_eq!(
            code(r#"{"merchantId":"M","amount":1,"currency":"KRW"}"#),
            "VALIDATION_FAILED"
        );
        assert_eq!(
            code(
                r#"{"merchantId":"M","amount":1,"currency":"KRW","idempotencyKey":"k","extra":1}"#
            ),
            "VALIDATION_FAILED"
        );
    }

    #[test]
    fn every_problem_is_listed() {
        let rejection = auth(r#"{"merchantId":"","amount":-1,"currency":"krw"}"#)
            .map(|_| ())
            .unwrap_err();
        let mut fields: Vec<&str> = rejection.details.iter().map(|(f, _)| f.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            vec!["amount", "currency", "idempotencyKey", "merchantId"]
        );
    }

    #[test]
    fn header_key_must_agree_with_the_body() {
        let mut body =
            br#"{"merchantId":"M","amount":1,"currency":"KRW","idempotencyKey":"a"}"#.to_vec();
        assert!(authorize(&mut body.clone(), Some("a"), &currencies(), None).is_ok());
        assert!(authorize(&mut body, Some("b"), &currencies(), None).is_err());
        let mut no_body_key = br#"{"merchantId":"M","amount":1,"currency":"KRW"}"#.to_vec();
        assert_eq!(
            authorize(&mut no_body_key, Some("h"), &currencies(), None)
                .map(|i| i.idempotency_key)
                .ok(),
            Some("h".to_owned())
        );
    }

    #[test]
    fn payment_ids() {
        assert_eq!(payment_id("4398046511104").ok(), Some(4_398_046_511_104));
        assert!(payment_id("abc").is_err());
        assert!(payment_id("-1").is_err());
        assert!(payment_id("0").is_err());
        assert!(payment_id("9007199254740992").is_err());
        assert!(payment_id("").is_err());
    }

    #[test]
    fn refunds_and_captures() {
        let mut b = br#"{"merchantId":"M","reason":"customer request","amount":100}"#.to_vec();
        assert_eq!(
            refund(&mut b, None, None).map(|r| r.amount).ok(),
            Some(Some(100))
        );
        let mut b = br#"{"merchantId":"M"}"#.to_vec();
        assert_eq!(
            refund(&mut b, None, None).map(|_| ()).unwrap_err().code,
            "VALIDATION_FAILED"
        );
        let mut b = br#"{"merchantId":"M"}"#.to_vec();
        assert!(capture(&mut b, None).is_ok());
        let mut b = br#"{"merchantId":"M","amount":null}"#.to_vec();
        assert_eq!(capture(&mut b, None).map(|c| c.amount).ok(), Some(None));
    }

    #[test]
    fn the_key_decides_the_merchant() {
        let auth = |json: &str, caller| {
            let mut bytes = json.as_bytes().to_vec();
            authorize(&mut bytes, None, &currencies(), caller)
        };
        let without = r#"{"amount":1,"currency":"KRW","idempotencyKey":"k"}"#;
        assert_eq!(
            auth(without, Some("M-1")).map(|a| a.merchant_id).ok(),
            Some("M-1".to_owned())
        );
        assert_eq!(auth(without, None).unwrap_err().code, "VALIDATION_FAILED");
        let same = r#"{"merchantId":"M-1","amount":1,"currency":"KRW","idempotencyKey":"k"}"#;
        assert!(auth(same, Some("M-1")).is_ok());
        assert_eq!(auth(same, Some("M-2")).unwrap_err().code, MERCHANT_MISMATCH);
        let mut b = br#"{"merchantId":"M-2"}"#.to_vec();
        assert_eq!(
            void(&mut b, Some("M-1")).unwrap_err().code,
            MERCHANT_MISMATCH
        );
        let mut b = br#"{}"#.to_vec();
        assert_eq!(
            void(&mut b, Some("M-1")).map(|v| v.merchant_id).ok(),
            Some("M-1".to_owned())
        );
    }
}
