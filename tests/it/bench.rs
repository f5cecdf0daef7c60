//! `cargo xtask bench --quick` as `cargo xtask test` runs it: a short bench on its own
//! appliance (two-host mirror, durable broker), checking only that the report is produced
//! and that its numbers are sane (never a timing). The full bench is `cargo xtask bench`.

use payrail_tests::appliance::Appliance;
use payrail_tests::bench::{self, Options, Target};
use payrail_tests::hosts::TwoHost;

#[test]
fn quick_bench_writes_a_sane_report() {
    assert!(
        TwoHost::available(),
        "network namespaces are not available (run as root): the bench test cannot run"
    );
    let (mirror, appliance, procs) = Appliance::start_on_mirror(
        "prbn",
        43,
        "bench-test",
        payrail_tests::kafka::SQLITE,
        |l| l.merchant_auth = true,
    )
    .expect("the appliance starts");
    let dir = appliance.dir.clone();
    let token = std::fs::read_to_string(appliance.admin_token_file()).expect("token");
    let target = Target {
        gateway: appliance.layout.gateway(),
        procs,
        client: Some(&mirror),
        admin_token: token.trim().to_owned(),
        ledger_config: dir.join("ledger/ledger.toml"),
        config: vec![("layout".into(), "bench test".into())],
        keys_file: None,
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
