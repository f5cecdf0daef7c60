//! A Redis server of our own.

use crate::process::Proc;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub struct Redis {
    pub port: u16,
    /// The address it listens on.
    host: String,
    /// Set for a TLS-only server: its certificate, key and CA.
    tls: Option<[PathBuf; 3]>,
    proc: Option<Proc>,
}

impl Redis {
    pub fn start(dir: &Path, port: u16, bind: &str) -> Result<Self, String> {
        Self::start_with(dir, port, bind, None)
    }

    /// A server that speaks only TLS on `port` (no plaintext port), with `cert`, `key`
    /// and the `ca` redis-cli checks it against; clients need no certificate.
    pub fn start_tls(
        dir: &Path,
        port: u16,
        bind: &str,
        cert: &Path,
        key: &Path,
        ca: &Path,
    ) -> Result<Self, String> {
        Self::start_with(
            dir,
            port,
            bind,
            Some([cert.to_owned(), key.to_owned(), ca.to_owned()]),
        )
    }

    fn start_with(
        dir: &Path,
        port: u16,
        bind: &str,
        tls: Option<[PathBuf; 3]>,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let mut redis = Self {
            port,
            host: bind.to_owned(),
            tls,
            proc: None,
        };
        redis.launch(dir)?;
        Ok(redis)
    }

    /// The url clients use: `rediss://` for a TLS-only server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://{}:{}/0", self.host, self.port)
    }

    /// `--port`, or `--port 0` and the TLS options.
    fn port_args(&self) -> Vec<String> {
        let port = self.port.to_string();
        match &self.tls {
            None => vec!["--port".into(), port],
            Some([cert, key, ca]) => vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port,
                "--tls-cert-file".into(),
                cert.display().to_string(),
                "--tls-key-file".into(),
                key.display().to_string(),
                "--tls-ca-cert-file".into(),
                ca.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ],
        }
    }

    /// redis-cli's options to reach this server.
    fn cli_args(&self) -> Vec<String> {
        let mut args = vec![
            "-h".into(),
            self.host.clone(),
            "-p".into(),
            self.port.to_string(),
        ];
        if let Some([_, _, ca]) = &self.tls {
            args.extend(["--tls".into(), "--cacert".into(), ca.display().to_string()]);
        }
        args
    }

    fn launch(&mut self, dir: &Path) -> Result<(), String> {
        let mut command = crate::hosts::command(&self.host, "redis-server");
        command
            .args(self.port_args())
            .args(["--bind", &self.host, "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir);
        let proc = Proc::spawn(
            &format!("redis:{}", self.port),
            command,
            &dir.join(format!("redis-{}.log", self.port)),
        )
        .map_err(|e| format!("redis-server: {e} (is redis-server installed?)"))?;
        self.proc = Some(proc);
        let ready = || match self.tls {
            None => ping(&self.host, self.port),
            Some(_) => self.cli(&["PING"]) == "PONG",
        };
        if crate::wait_until(Duration::from_secs(10), ready) {
            Ok(())
        } else {
            Err(format!("redis on port {} did not start", self.port))
        }
    }

    /// Stops the server (an outage).
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts it again after [`Redis::stop`], empty.
    pub fn restart(&mut self, dir: &Path) -> Result<(), String> {
        self.launch(dir)
    }

    pub fn detach(mut self) -> Option<u32> {
        self.proc.take().map(Proc::detach)
    }

    /// Hands the process over (to [`crate::appliance::Appliance`]).
    pub fn into_proc(mut self) -> Option<Proc> {
        self.proc.take()
    }

    /// Runs one command with redis-cli and returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(self.cli_args())
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    }
}

pub fn ping(host: &str, port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect((host, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buffer = [0u8; 16];
    matches!(stream.read(&mut buffer), Ok(n) if buffer[..n].starts_with(b"+PONG"))
}
