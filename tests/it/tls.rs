//! TLS at the gateway (issue 14): HTTPS with the certificate from files, TLS 1.2 and up
//! only, keep-alive, HSTS, and a new certificate after SIGHUP without a restart. curl and
//! openssl are the clients (both from Debian).

use payrail_tests::mcp::McpClient;
use payrail_tests::services;
use payrail_tests::stack::TestStack;
use std::path::Path;
use std::process::Command;

fn self_signed(dir: &Path, name: &str) {
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .arg("-subj")
        .arg(format!("/CN={name}"))
        // An end-entity certificate for 127.0.0.1 that is its own trust anchor (rustls
        // refuses a CA certificate as the server's own, and names without a SAN).
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .output()
        .expect("openssl runs");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
}

fn curl(args: &[&str]) -> (bool, String) {
    let output = Command::new("curl")
        .args(["-sk", "-v", "--max-time", "5"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[test]
fn the_gateway_speaks_tls_and_reloads_its_certificate() {
    let stack = TestStack::start("tls");
    let dir = stack.dir.join("gateway");
    std::fs::create_dir_all(&dir).expect("dir");
    self_signed(&dir, "payrail-first");
    let plain = format!("127.0.0.1:{}", payrail_tests::free_port());
    let secure = format!("127.0.0.1:{}", payrail_tests::free_port());
    // Monitoring behind the gateway, for the MCP server over https.
    let monitoring_dir = stack.dir.join("monitoring");
    std::fs::create_dir_all(&monitoring_dir).expect("dir");
    let token_file = monitoring_dir.join("admin-token");
    std::fs::write(&token_file, "tls-test-admin-token-0123456789abcdef\n").expect("token");
    let monitoring_listen = format!("127.0.0.1:{}", payrail_tests::free_port());
    let _monitoring = services::start_monitoring(
        &monitoring_dir,
        &monitoring_listen,
        &token_file,
        &stack.settings[0],
        "",
    )
    .expect("monitoring");
    let gateway = services::start_gateway(
        &dir,
        std::slice::from_ref(&plain),
        &[format!("http://{}", stack.addr())],
        &[format!("http://{monitoring_listen}")],
        &format!(
            "[tls]\nlisten = [\"{secure}\"]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        ),
    )
    .expect("gateway");
    let url = format!("https://{secure}/health");

    // HTTPS answers, with HSTS, and two requests share one connection (keep-alive).
    let (ok, out) = curl(&[&url, &url]);
    assert!(ok, "{out}");
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    assert!(
        out.to_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{out}"
    );
    assert!(
        out.contains("Re-using existing connection") || out.contains("Reusing existing connection"),
        "keep-alive: {out}"
    );
    assert!(out.contains("CN=payrail-first"), "{out}");
    // A payment route through TLS reaches ingest.
    let (ok, out) = curl(&[&format!("https://{secure}/api/payments?merchantId=M-TLS")]);
    assert!(ok && out.contains("HTTP/1.1 200"), "{out}");
    // TLS 1.1 and older are refused; 1.2 and 1.3 are taken.
    let (ok, _) = curl(&["--tlsv1.1", "--tls-max", "1.1", &url]);
    assert!(!ok, "TLS 1.1 must be refused");
    let (ok, out) = curl(&["--tlsv1.2", "--tls-max", "1.2", &url]);
    assert!(ok && out.contains("TLSv1.2"), "{out}");
    let (ok, out) = curl(&["--tlsv1.3", &url]);
    assert!(ok && out.contains("TLSv1.3"), "{out}");
    // Plain HTTP on the TLS port gets no answer in clear.
    let plain_on_tls = payrail_tests::http::request(&secure, "GET", "/health", &[], None);
    assert!(plain_on_tls.map_or(true, |r| r.status != 200));
    // The plain listener has no HSTS (it is not a secure origin).
    let reply = payrail_tests::http::get(&plain, "/health");
    assert_eq!(reply.status, 200);
    assert!(reply.header("Strict-Transport-Security").is_none());

    // The MCP server reads the admin API over https, trusting the certificate by ca_file.
    let mcp_config = dir.join("mcp.toml");
    std::fs::write(
        &mcp_config,
        format!(
            "admin_url = \"https://{secure}\"\ntoken_file = \"{}\"\nca_file = \"{}\"\n",
            token_file.display(),
            dir.join("cert.pem").display()
        ),
    )
    .expect("mcp config");
    let mut client = McpClient::spawn(&mcp_config);
    client.initialize();
    let (error, text) = client.call("statistics", serde_json::json!({}));
    assert!(!error, "the statistics tool over https: {text}");
    let stats: serde_json::Value = serde_json::from_str(&text).expect("JSON text");
    assert!(stats["payments"]["shards"].is_array(), "{stats}");
    drop(client);

    // A new certificate on disk, then SIGHUP: new connections get it, without a restart.
    self_signed(&dir, "payrail-second");
    let pid = gateway.pid().expect("gateway pid");
    let _ = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status();
    let reloaded = payrail_tests::wait_until(std::time::Duration::from_secs(5), || {
        curl(&[&url]).1.contains("CN=payrail-second")
    });
    assert!(reloaded, "the certificate was not reloaded on SIGHUP");
    assert_eq!(gateway.pid(), Some(pid));
}
