//! A Redis server of our own.

use crate::process::Proc;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub struct Redis {
    pub port: u16,
    proc: Option<Proc>,
}

impl Redis {
    pub fn start(dir: &Path, port: u16, bind: &str) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let mut redis = Self { port, proc: None };
        redis.launch(dir, bind)?;
        Ok(redis)
    }

    fn launch(&mut self, dir: &Path, bind: &str) -> Result<(), String> {
        let mut command = crate::hosts::command(bind, "redis-server");
        command
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                bind,
                "--save",
                "",
                "--appendonly",
                "no",
            ])
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
        let port = self.port;
        let host = bind.to_owned();
        if crate::wait_until(Duration::from_secs(10), || ping(&host, port)) {
            Ok(())
        } else {
            Err(format!("redis on port {port} did not start"))
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
        self.launch(dir, "127.0.0.1")
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
            .args(["-p", &self.port.to_string()])
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
