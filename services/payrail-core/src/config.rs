//! Config files: one TOML file per service, parsed into a serde struct that denies
//! unknown fields, so a typo fails at start-up (and at NixOS build time through
//! `--check-config`) instead of silently falling back to a default.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Something that can check its own cross-field rules after parsing.
pub trait Validate {
    fn validate(&self) -> Result<(), String>;
}

pub fn load<T: DeserializeOwned + Validate>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let config: T = toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source,
    })?;
    config.validate().map_err(|message| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    })?;
    Ok(config)
}

/// Reads a secret from a file (NixOS hands these over with `LoadCredential`), trimming the
/// trailing newline editors add.
pub fn read_secret(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
        .map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })
}

/// Command line shared by every service: `<svc> --config FILE [--check-config]`.
pub struct Args {
    pub config: PathBuf,
    pub check_only: bool,
    /// Anything after the options (for example `ingest migrate`).
    pub command: Option<String>,
    /// The command's own words (`monitoring create-key M-1`: `["M-1"]`).
    pub operands: Vec<String>,
}

/// The start of every service's `main`: the command line, the config file (parsed and
/// validated), `--check-config` answered, logging on. `None` when the config was only
/// checked (the caller exits 0).
pub fn startup<T: DeserializeOwned + Validate>(
    service: &str,
) -> Result<Option<(Args, T)>, Box<dyn std::error::Error>> {
    let args = parse_args(service)?;
    let config: T = load(&args.config)?;
    if args.check_only {
        println!("{service}: config {} is valid", args.config.display());
        return Ok(None);
    }
    crate::telemetry::init_tracing();
    Ok(Some((args, config)))
}

pub fn parse_args(service: &str) -> Result<Args, String> {
    let mut config = None;
    let mut check_only = false;
    let mut command = None;
    let mut operands = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" => config = args.next().map(PathBuf::from),
            "--check-config" => check_only = true,
            "--help" | "-h" => {
                return Err(format!(
                    "usage: {service} --config FILE [--check-config] [COMMAND]"
                ))
            }
            other if !other.starts_with('-') && command.is_none() => {
                command = Some(other.to_owned())
            }
            other if !other.starts_with('-') => operands.push(other.to_owned()),
            other => return Err(format!("{service}: unknown argument {other}")),
        }
    }
    let config = config.ok_or_else(|| format!("{service}: --config FILE is required"))?;
    Ok(Args {
        config,
        check_only,
        command,
        operands,
    })
}
