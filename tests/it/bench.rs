//! `cargo xtask bench --quick` as `cargo xtask test` runs it: a short bench on its own
//! appliance (two-host mirror, durable broker), checking only that the report is produced
//! and that its numbers are sane (never a timing). The full bench is `cargo xtask bench`.

use payrail_tests::appliance::{Appliance, Layout};
use payrail_tests::bench::{self, Options, Target};
use payrail_tests::hosts::TwoHost;
use payrail_tests::repo_root;

#[test]
fn quick_bench_writes_a_sane_report() {
    assert!(
        TwoHost::available(),
        "network namespaces are not available (run as root): the bench test cannot run"
    );
    let mirror = TwoHost::create("prbn", 43).expect("namespaces and veths");
    let dir = repo_root().join(format!("target/bench-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let password_file = dir.join("db-password");
    std::fs::write(&password_file, "bench-test\n").expect("password");
    let layout = Layout {
        vm1: mirror.vm1.clone(),
        vm2: mirror.vm2.clone(),
        gateway_extra_listen: Vec::new(),
        pg_behaviour: "latency_min_ms = 5\nlatency_max_ms = 15".into(),
        kafka_storage: payrail_tests::kafka::SQLITE,
    };
    let mut procs = Vec::new();
    let appliance = Appliance::start(
        &dir,
        layout.clone(),
        "bench-test",
        &password_file,
        |name, pid| {
            procs.push((name.to_owned(), pid));
            Ok(())
        },
    )
    .expect("the appliance starts");
    let token = std::fs::read_to_string(appliance.admin_token_file()).expect("token");
    let target = Target {
        gateway: layout.gateway(),
        procs,
        client: Some(&mirror),
        admin_token: token.trim().to_owned(),
        ledger_config: dir.join("ledger/ledger.toml"),
        config: vec![("layout".into(), "bench test".into())],
    };
    let out_dir = dir.join("results");
    let result = bench::run(
        &target,
        &Options {
            quick: true,
            out_dir: out_dir.clone(),
        },
    );
    let checked = result.as_ref().map_err(Clone::clone).and_then(|file| {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?;
        bench::check_sane(&json, &out_dir)
    });
    appliance.stop();
    mirror.destroy();
    checked.unwrap_or_else(|e| panic!("quick bench: {e}"));
}
