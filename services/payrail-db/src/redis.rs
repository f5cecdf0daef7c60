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
    let tls = url.starts_with("rediss://");
    match tls_ca_file {
        Some(path) if tls => {
            let ca = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let certificates = ::redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca),
            };
            ::redis::Client::build_with_tls(info, certificates)
                .map_err(|e| format!("redis tls: {e}"))
        }
        Some(_) => Err("redis tls_ca_file needs a rediss:// url".to_owned()),
        None => ::redis::Client::open(info).map_err(|e| format!("redis client: {e}")),
    }
}
