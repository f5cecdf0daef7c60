//! The Redis client, built the same way by every service that uses Redis (ingest's rate
//! limits and idempotency cache, monitoring's admin reads).

use std::path::Path;

/// A client for `url` (`redis://host:port/db`, or `rediss://` for TLS), with the password
/// from `password_file` and, over TLS, the server certificate checked against the CA in
/// `tls_ca_file` alone (the system roots without it). Connections open lazily.
pub fn client(
    url: &str,
    password_file: Option<&Path>,
    tls_ca_file: Option<&Path>,
) -> Result<::redis::Client, String> {
    let mut info = ::redis::IntoConnectionInfo::into_connection_info(url)
        .map_err(|e| format!("redis url: {e}"))?;
    if let Some(path) = password_file {
        let password = payrail_core::config::read_secret(path).map_err(|e| e.to_string())?;
        let settings = info.redis_settings().clone().set_password(password);
        info = info.set_redis_settings(settings);
    }
    match tls_ca_file {
        // build_with_tls refuses a url that is not rediss:// itself.
        Some(path) => {
            let ca = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let certificates = ::redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca),
            };
            ::redis::Client::build_with_tls(info, certificates)
                .map_err(|e| format!("redis tls_ca_file: {e}"))
        }
        None => ::redis::Client::open(info).map_err(|e| format!("redis client: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::client;

    #[test]
    fn a_ca_file_needs_a_rediss_url() {
        let ca = std::env::temp_dir().join(format!("payrail-redis-ca-{}", std::process::id()));
        std::fs::write(&ca, b"").expect("write");
        let plain = client("redis://127.0.0.1:6379/0", None, Some(&ca));
        let tls = client("rediss://127.0.0.1:6379/0", None, Some(&ca));
        let _ = std::fs::remove_file(&ca);
        let Err(error) = plain else {
            panic!("a plain url with a CA must be refused");
        };
        assert!(error.contains("rediss://"), "{error}");
        assert!(tls.is_ok());
    }
}
