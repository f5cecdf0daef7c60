//! The Nix code, checked as far as this machine can (nixpkgs cannot be fetched here, so
//! nothing is built; evaluation runs through ../shared/nix-eval where it exists): every
//! `.nix` file parses with `nix-instantiate --parse`,
//! is formatted as alejandra formats it, and has no dead bindings (deadnix); every Grafana
//! dashboard is valid JSON with Prometheus targets. (That every metric a dashboard queries
//! is exported by a running service is checked in `two_host.rs`, which runs the stack.)

use payrail_tests::repo_root;
use std::path::{Path, PathBuf};

fn files_with(ext: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if !matches!(name.as_ref(), "target" | ".stack" | ".git" | "node_modules") {
                    walk(&path, ext, out);
                }
            } else if name.ends_with(ext) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&repo_root(), ext, &mut out);
    out.sort();
    out
}

#[test]
fn every_nix_file_parses_is_formatted_and_has_no_dead_code() {
    let files = files_with(".nix");
    assert!(
        files.len() >= 12,
        "expected the flake, the modules, both hosts and the tests; found {files:?}"
    );
    let mut problems = Vec::new();
    for file in &files {
        let shown = file
            .strip_prefix(repo_root())
            .unwrap_or(file)
            .display()
            .to_string();
        let output = std::process::Command::new("nix-instantiate")
            .arg("--parse")
            .arg(file)
            .output()
            .expect("nix-instantiate runs (apt-get install nix-bin; cargo xtask installs it)");
        if !output.status.success() {
            problems.push(format!(
                "{shown}: does not parse: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
            continue;
        }
        let text = std::fs::read_to_string(file).expect("readable");
        match alejandra::format::in_memory(shown.clone(), text.clone()) {
            (alejandra::format::Status::Changed(false), _) => {}
            (alejandra::format::Status::Changed(true), _) => {
                problems.push(format!("{shown}: not formatted (cargo xtask fmt-nix)"));
            }
            (alejandra::format::Status::Error(error), _) => {
                problems.push(format!("{shown}: alejandra: {error}"));
            }
        }
        let ast = rnix::Root::parse(&text);
        let dead = deadnix::Settings {
            no_lambda_arg: false,
            no_lambda_pattern_names: false,
            no_underscore: false,
            warn_used_underscore: false,
        }
        .find_dead_code(&ast.syntax());
        for d in dead {
            problems.push(format!("{shown}: unused binding `{}`", d.binding.name));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn dashboards_are_valid_grafana_json_with_prometheus_queries() {
    let dashboards = files_with(".json")
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("dashboards")))
        .collect::<Vec<_>>();
    let titles: Vec<String> = dashboards
        .iter()
        .map(|path| {
            let json: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(path).expect("readable"))
                    .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            let panels = json["panels"].as_array().expect("panels");
            assert!(!panels.is_empty(), "{}: no panels", path.display());
            for panel in panels {
                let targets = panel["targets"].as_array().expect("targets");
                assert!(
                    targets
                        .iter()
                        .all(|t| t["expr"].as_str().is_some_and(|e| e.contains("payrail_"))),
                    "{}: panel {} has a target without a payrail query",
                    path.display(),
                    panel["title"]
                );
                assert_eq!(panel["datasource"]["uid"], "payrail-prometheus");
            }
            json["title"].as_str().unwrap_or("").to_owned()
        })
        .collect();
    for wanted in [
        "Overview",
        "Performance",
        "Settlement & Refund",
        "Circuit Breaker",
    ] {
        assert!(
            titles.iter().any(|t| t.ends_with(wanted)),
            "dashboard {wanted} is missing: {titles:?}"
        );
    }
}

/// The evaluation kit beside the checkout (`../shared/nix-eval`), when this machine has it.
fn nix_eval_kit() -> Option<PathBuf> {
    let kit = repo_root().join("../shared/nix-eval");
    if kit.join("run").exists() {
        // The real path: a restricted evaluation refuses a file reached through a link
        // when the kit's search path names the link.
        Some(std::fs::canonicalize(&kit).unwrap_or(kit))
    } else {
        eprintln!(
            "skipped: no evaluation kit at {} (the flake, hosts and VM test are evaluated only where it exists)",
            kit.display()
        );
        None
    }
}

/// `../shared/nix-eval/run .`: the flake's outputs, both hosts and the two-host test's nodes
/// evaluate with nixpkgs' real `lib`, no assertion fails, and a pure (restricted) evaluation
/// as `nix flake check` does it passes.
#[test]
fn the_flake_hosts_and_vm_test_evaluate_purely() {
    let Some(kit) = nix_eval_kit() else { return };
    let output = std::process::Command::new("bash")
        .arg(kit.join("run"))
        .arg(std::fs::canonicalize(repo_root()).unwrap_or_else(|_| repo_root()))
        .output()
        .expect("bash runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("ok    pure (restrict-eval)"), "{text}");
}

fn unit_facts(kit: &Path) -> serde_json::Value {
    let output = std::process::Command::new("nix-instantiate")
        .args(["--eval", "--strict", "--readonly-mode", "--json"])
        .arg(repo_root().join("tests/nixos/unit-facts.nix"))
        .arg("--arg")
        .arg("harness")
        .arg(kit.join("harness"))
        .arg("--arg")
        .arg("proj")
        .arg(repo_root())
        .output()
        .expect("nix-instantiate runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// Every string in a config that names a file in a credentials directory, anywhere inside.
fn credential_paths(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => {
            if let Some(at) = s.find("/run/credentials/") {
                let path = &s[at..];
                out.push(path.split('}').next().unwrap_or(path).to_owned());
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| credential_paths(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| credential_paths(v, out)),
        _ => {}
    }
}

/// The example hosts and the VM test's nodes (store links and gateway over TLS).
const HOSTS: [&str; 4] = ["vm1", "vm2", "test-vm1", "test-vm2"];

/// On the example hosts and the VM test's nodes: every payrail unit runs a binary the package builds, and every
/// secret a unit's config names lies in that unit's own credentials directory and is
/// loaded by that unit's LoadCredential (a oneshot reading another unit's directory, or
/// Grafana reading root's secret files, fails at run time, never at evaluation).
#[test]
fn every_unit_runs_a_built_binary_and_loads_the_credentials_its_config_names() {
    let Some(kit) = nix_eval_kit() else { return };
    let facts = unit_facts(&kit);
    let package = std::fs::read_to_string(repo_root().join("services/package.nix"))
        .expect("services/package.nix");
    let mut problems = Vec::new();
    let mut checked = 0;
    for host in HOSTS {
        let units = facts[host]["units"].as_object().expect("units");
        let loaded = |unit: &str| -> Vec<String> {
            units[unit]["loadCredential"]
                .as_array()
                .map(|l| {
                    l.iter()
                        .filter_map(|c| c.as_str()?.split_once(':').map(|(id, _)| id.to_owned()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut configs: Vec<(String, serde_json::Value)> = facts[host]["settings"]
            .as_object()
            .expect("settings")
            .iter()
            .map(|(u, s)| (u.clone(), s.clone()))
            .collect();
        if !facts[host]["grafana"]
            .as_object()
            .is_none_or(|g| g.is_empty())
        {
            configs.push(("grafana".to_owned(), facts[host]["grafana"].clone()));
        }
        for (unit, settings) in &configs {
            if !units.contains_key(unit) {
                problems.push(format!("{host}: config for {unit}, which is not a unit"));
                continue;
            }
            let mut paths = Vec::new();
            credential_paths(settings, &mut paths);
            for path in paths {
                checked += 1;
                let rest = &path["/run/credentials/".len()..];
                let (dir, id) = rest.split_once('/').unwrap_or((rest, ""));
                if dir != format!("{unit}.service") {
                    problems.push(format!(
                        "{host}: {unit} reads {path}, another unit's directory"
                    ));
                } else if !loaded(unit).iter().any(|l| l == id) {
                    problems.push(format!(
                        "{host}: {unit} reads {path} but loads no credential {id}"
                    ));
                }
            }
        }
        for (unit, facts) in units {
            let exec = facts["execStart"].as_str().unwrap_or("");
            let Some(program) = exec
                .split_whitespace()
                .next()
                .and_then(|p| p.split_once("/bin/"))
                .map(|(_, b)| b.to_owned())
            else {
                continue;
            };
            if exec.contains("-payrail-") && !exec.contains("fake-") {
                checked += 1;
                let built = package.contains(&format!("\"{program}\""))
                    && repo_root()
                        .join(format!("services/{program}/Cargo.toml"))
                        .exists();
                if !built {
                    problems.push(format!(
                        "{host}: {unit} runs {program}, which the package does not build"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 30, "only {checked} facts checked: {facts}");
}

/// The exposure bound of issue 14: "OK" in systemd's own words.
const EXPOSURE_MAX: f64 = 2.0;

/// Every payrail unit of the example hosts and the VM test's nodes, written as a unit file from the evaluated
/// `serviceConfig` and scored by `systemd-analyze security --offline=true`: each at most
/// 2.0. Prints the table the README records.
#[test]
fn every_unit_is_hardened_to_exposure_2_or_less() {
    let Some(kit) = nix_eval_kit() else { return };
    let facts = unit_facts(&kit);
    let dir = repo_root().join("target/unit-security");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut table = Vec::new();
    let mut problems = Vec::new();
    for host in HOSTS {
        for (unit, facts) in facts[host]["units"].as_object().expect("units") {
            if !unit.starts_with("payrail-") {
                continue;
            }
            let mut text = format!("[Unit]\nDescription={unit}\n\n[Service]\n");
            for (key, value) in facts["serviceConfig"].as_object().expect("serviceConfig") {
                match value {
                    serde_json::Value::Array(items)
                        if key == "SystemCallFilter"
                            || key == "LoadCredential"
                            || key == "Environment" =>
                    {
                        for item in items {
                            text.push_str(&format!("{key}={}\n", item.as_str().unwrap_or("")));
                        }
                    }
                    serde_json::Value::Array(items) => {
                        let words: Vec<&str> = items.iter().filter_map(|i| i.as_str()).collect();
                        text.push_str(&format!("{key}={}\n", words.join(" ")));
                    }
                    serde_json::Value::Bool(b) => {
                        text.push_str(&format!("{key}={}\n", if *b { "yes" } else { "no" }))
                    }
                    other => text.push_str(&format!("{key}={}\n", other.as_str().unwrap_or(""))),
                }
            }
            let file = dir.join(format!("{host}-{unit}.service"));
            std::fs::write(&file, text).expect("unit file");
            let output = std::process::Command::new("systemd-analyze")
                .args(["security", "--offline=true", "--no-pager"])
                .arg(&file)
                .output()
                .expect("systemd-analyze runs (Debian's systemd)");
            let stdout = String::from_utf8_lossy(&output.stdout);
            let Some(exposure) = stdout
                .lines()
                .find(|l| l.contains("Overall exposure level"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<f64>().ok())
            else {
                problems.push(format!(
                    "{host} {unit}: no exposure in {stdout}{}",
                    String::from_utf8_lossy(&output.stderr)
                ));
                continue;
            };
            table.push(format!("| {host} | {unit} | {exposure:.1} |"));
            if exposure > EXPOSURE_MAX {
                problems.push(format!(
                    "{host} {unit}: exposure {exposure} > {EXPOSURE_MAX}"
                ));
            }
        }
    }
    println!(
        "| host | unit | exposure |\n|---|---|---|\n{}",
        table.join("\n")
    );
    assert!(table.len() >= 14, "only {} units scored", table.len());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
