//! Percent-encoding of a URL query or path component (RFC 3986 unreserved characters
//! pass, every other byte becomes `%XX`).

pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_everything_but_unreserved() {
        assert_eq!(
            super::encode_component("MERCHANT-1_a.b~"),
            "MERCHANT-1_a.b~"
        );
        assert_eq!(
            super::encode_component("sum(rate(x{a=\"5..\"}[1m]))"),
            "sum%28rate%28x%7Ba%3D%225..%22%7D%5B1m%5D%29%29"
        );
        assert_eq!(super::encode_component("é"), "%C3%A9");
    }
}
