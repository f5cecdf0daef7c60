//! The Nix code, checked as far as this machine can (nixpkgs cannot be fetched here, so
//! nothing is built or evaluated): every `.nix` file parses with `nix-instantiate --parse`,
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
