//! Certificates made with openssl (Debian's) for the TLS tests: a CA and server
//! certificates it signs, as a deployment has for its cross-host links.

use std::path::{Path, PathBuf};

/// A CA's certificate and key.
pub struct Ca {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A server's certificate (signed by a [`Ca`]) and key.
pub struct ServerCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str]) -> Result<(), String> {
    crate::run_tool("openssl", args)
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// `openssl req -x509` of a new P-256 key, valid two days, subject `/CN=<name>`, with the
/// extensions `extensions`, written to `cert` and `key`.
fn self_signed_with(
    cert: &Path,
    key: &Path,
    name: &str,
    extensions: &[&str],
) -> Result<(), String> {
    let subject = format!("/CN={name}");
    let mut args = vec![
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &subject,
    ];
    for extension in extensions {
        args.extend(["-addext", extension]);
    }
    args.extend(["-keyout", path(key), "-out", path(cert)]);
    openssl(&args)
}

/// A new P-256 CA named `name`, its files `<name>.pem` and `<name>.key` in `dir`.
pub fn ca(dir: &Path, name: &str) -> Result<Ca, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let ca = Ca {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    self_signed_with(
        &ca.cert,
        &ca.key,
        name,
        &[
            "basicConstraints=critical,CA:TRUE",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )?;
    Ok(ca)
}

/// An end-entity certificate for 127.0.0.1 that is its own trust anchor, in
/// `dir/cert.pem` and `dir/key.pem` (rustls refuses a CA certificate as the server's own,
/// and names without a subjectAltName).
pub fn self_signed(dir: &Path, name: &str) -> Result<ServerCert, String> {
    let server = ServerCert {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    self_signed_with(
        &server.cert,
        &server.key,
        name,
        &[
            "subjectAltName=IP:127.0.0.1",
            "basicConstraints=critical,CA:FALSE",
        ],
    )?;
    Ok(server)
}

/// A server certificate for `ip` (its subjectAltName), signed by `ca`.
pub fn server(dir: &Path, ca: &Ca, name: &str, ip: &str) -> Result<ServerCert, String> {
    let server = ServerCert {
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    let csr = dir.join(format!("{name}.csr"));
    let extensions = dir.join(format!("{name}.ext"));
    std::fs::write(
        &extensions,
        format!(
            "subjectAltName=IP:{ip}\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        path(&server.key),
        "-out",
        path(&csr),
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        path(&csr),
        "-CA",
        path(&ca.cert),
        "-CAkey",
        path(&ca.key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        path(&extensions),
        "-out",
        path(&server.cert),
    ])?;
    Ok(server)
}
