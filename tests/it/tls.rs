//! TLS (issue 14). At the gateway: HTTPS with the certificate from files, TLS 1.2 and up
//! only, keep-alive, HSTS, and a new certificate after SIGHUP without a restart; curl and
//! openssl are the clients (both from Debian). On the links to the stores: MariaDB shards
//! and Redis that speak only TLS, reached by ingest with the deployment's CA, and not at
//! all by an ingest that trusts another CA.

use payrail_tests::http;
use payrail_tests::mcp::McpClient;
use payrail_tests::services;
use payrail_tests::stack::{Options, TestStack};
use std::path::Path;
use std::process::Command;

/// Runs `command`: whether it succeeded, and its stdout and stderr together.
fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("the client runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn curl(args: &[&str]) -> (bool, String) {
    run(Command::new("curl")
        .args(["-sk", "-v", "--max-time", "5"])
        .args(args))
}

#[test]
fn the_gateway_speaks_tls_and_reloads_its_certificate() {
    let stack = TestStack::start("tls");
    let dir = stack.dir.join("gateway");
    std::fs::create_dir_all(&dir).expect("dir");
    payrail_tests::certs::self_signed(&dir, "payrail-first").expect("certificate");
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
    // This stack's ingest runs merchant_auth = "off": the gateway's /health says so once its
    // health check has read ingest's.
    assert!(
        payrail_tests::wait_until(std::time::Duration::from_secs(10), || {
            payrail_tests::http::get(&plain, "/health").json()["merchantAuth"] == "off"
        }),
        "{}",
        payrail_tests::http::get(&plain, "/health").text()
    );

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
    payrail_tests::certs::self_signed(&dir, "payrail-second").expect("certificate");
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

/// The MariaDB client over TCP to `shard`, as the `payrail` user; `tls` adds `--ssl` with
/// the CA, else `--skip-ssl`.
fn mariadb_over_tcp(stack: &TestStack, shard: usize, tls: Option<&Path>) -> (bool, String) {
    let db = &stack.shards[shard - 1];
    let mut command = Command::new("mariadb");
    command
        .args(["-h", "127.0.0.1", "-P", &db.port.to_string()])
        .arg(format!("-u{}", db.user))
        .arg(format!("-p{}", db.password));
    match tls {
        Some(ca) => command
            .arg("--ssl")
            .arg(format!("--ssl-ca={}", ca.display())),
        None => command.arg("--skip-ssl"),
    };
    run(command.args(["--batch", "-e", "SHOW SESSION STATUS LIKE 'Ssl_version'"]))
}

#[test]
fn ingest_reaches_tls_only_stores_with_the_deployment_ca_and_not_with_another() {
    let stack = TestStack::start_with(
        "store_tls",
        Options {
            store_tls: true,
            ..Options::default()
        },
    );
    let ca = stack.store_ca.clone().expect("store_tls sets a CA");

    // The stores refuse clear text: MariaDB over TCP without TLS, Redis's plaintext port.
    for shard in 1..=2 {
        let (ok, out) = mariadb_over_tcp(&stack, shard, None);
        // MariaDB 10.11 answers a refused clear-text login as "Access denied" (the same
        // account and password get in with --ssl just below, and without
        // require_secure_transport get in clear).
        assert!(!ok, "shard {shard} answered in clear: {out}");
        assert!(out.contains("ERROR 1045"), "{out}");
        let (ok, out) = mariadb_over_tcp(&stack, shard, Some(&ca));
        assert!(
            ok && out.contains("TLSv1."),
            "shard {shard} over TLS: {out}"
        );
    }
    assert!(
        !payrail_tests::redis::ping("127.0.0.1", stack.redis.port),
        "Redis answered in clear"
    );

    // The payment path runs over TLS: a payment on each shard, read back, and the rate
    // limiter's counter in Redis.
    let first = stack.authorize("M-TLS-2", 1_000, "tls-1");
    let second = stack.authorize("M-TLS-3", 2_000, "tls-2");
    assert_ne!(first >> 42, second >> 42, "one payment on each shard");
    for (id, merchant) in [(first, "M-TLS-2"), (second, "M-TLS-3")] {
        let reply = http::get(
            stack.addr(),
            &format!("/api/payments/{id}?merchantId={merchant}"),
        );
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(stack.status_of(id), "AUTHORIZED");
    }
    assert_eq!(
        stack.redis.cli(&["GET", "payrail:rl:authorize:M-TLS-2"]),
        "1"
    );
    let health = http::get(stack.addr(), "/health").json();
    assert_eq!(health["status"], "UP", "{health}");
    assert_eq!(health["checks"]["redis"], "UP", "{health}");

    // An ingest that trusts another CA for Redis: it serves (Redis is an accelerator,
    // fail-open), but its probe finds Redis DOWN and it writes nothing there.
    let other = payrail_tests::certs::ca(&stack.dir.join("pki"), "other-ca").expect("CA");
    let mut settings = stack.settings[0].clone();
    settings.instance = "ingest-other-redis-ca".into();
    settings.listen = format!("127.0.0.1:{}", payrail_tests::free_port());
    settings.redis_tls_ca_file = Some(other.cert.clone());
    let _redis_untrusting = services::start_ingest(&stack.dir, &settings).expect("ingest");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let health = http::get(&settings.listen, "/health").json();
    assert_eq!(health["checks"]["redis"], "DOWN", "{health}");
    let reply = http::post(
        &settings.listen,
        "/api/payments/authorize",
        &payrail_tests::authorize_body("M-TLS-4", 3_000, "tls-3"),
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        stack.redis.cli(&["EXISTS", "payrail:rl:authorize:M-TLS-4"]),
        "0"
    );

    // An ingest that trusts another CA for the shards never reaches them: it logs the
    // certificate it refused, never serves, and writes nothing.
    let mut settings = stack.settings[0].clone();
    settings.instance = "ingest-other-shard-ca".into();
    settings.listen = format!("127.0.0.1:{}", payrail_tests::free_port());
    for shard in &mut settings.shards {
        shard.tls_ca_file = Some(other.cert.clone());
    }
    let before = stack.count_all("SELECT COUNT(*) FROM payment");
    let _shard_untrusting = services::spawn_ingest(&stack.dir, &settings).expect("ingest");
    let log = services::ingest_log(&stack.dir, &settings);
    assert!(
        payrail_tests::wait_until(std::time::Duration::from_secs(20), || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("invalid peer certificate: UnknownIssuer")
        }),
        "no refused certificate in {}",
        log.display()
    );
    assert!(http::request(&settings.listen, "GET", "/health", &[], None).is_err());
    assert_eq!(stack.count_all("SELECT COUNT(*) FROM payment"), before);
}
