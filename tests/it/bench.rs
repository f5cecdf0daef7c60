//! The benchmarks in short, as `cargo xtask test` runs them (the two run side by side):
//! - `cargo xtask bench --quick`: a short bench on its own appliance (two-host mirror,
//!   durable broker), checking only that the report is produced and that its numbers are
//!   sane (never a timing). The full bench is `cargo xtask bench`.
//! - `cargo xtask soak` in short: the report, the drain, and retention at work.
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
        counted: bench::counted(&appliance.layout),
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

/// `cargo xtask soak` in short (issue 13's soak): three 15-second segments at 20 it/s
/// with a 20-second retention. The report is written, the pipeline drains and reconciles,
/// and the retention shows: published events are purged while payments accumulate, so
/// the outbox holds a falling share of them (without the purge the share stays level).
#[test]
fn short_soak_shows_the_outbox_bounded_by_its_retention() {
    assert!(
        TwoHost::available(),
        "network namespaces are not available (run as root): the soak test cannot run"
    );
    let out_dir =
        payrail_tests::repo_root().join(format!("target/soak-test-results-{}", std::process::id()));
    let file = payrail_tests::soak::run(&payrail_tests::soak::Options {
        minutes: 3,
        rate: 20,
        segment_seconds: 15,
        retention_seconds: 20,
        full_size: false,
        mirror: ("prsq".into(), 69),
        dir_name: "soak-test".into(),
        out_dir: out_dir.clone(),
    })
    .unwrap_or_else(|e| panic!("soak: {e}"));
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("soak json")).expect("json");
    let report = std::fs::read_to_string(file.with_extension("md")).expect("soak report");
    let _ = std::fs::remove_dir_all(&out_dir);
    assert!(
        report.contains("## Growth over the second half"),
        "{report}"
    );
    assert_eq!(result["reconciled"], true, "{}", result["reconcileReport"]);
    let samples = result["samples"].as_array().expect("samples");
    assert_eq!(samples.len(), 4, "a baseline and three segments");
    let share = |s: &serde_json::Value| {
        let outbox = s["rows"]["outbox_event"].as_f64().unwrap_or(0.0);
        let payments = s["rows"]["payment"].as_f64().unwrap_or(0.0);
        assert!(payments > 0.0, "no payments in {s}");
        outbox / payments
    };
    let (first, last) = (share(&samples[1]), share(&samples[3]));
    assert!(
        last < first * 0.75,
        "published events are not purged: outbox rows per payment {first:.2} after the first segment, {last:.2} after the last"
    );
    for s in samples {
        let rss = s["rssMB"].as_object().expect("rss");
        assert!(rss.len() >= 12, "RSS of only {} processes: {s}", rss.len());
    }
}
