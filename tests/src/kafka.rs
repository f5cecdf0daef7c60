//! A Kafka-protocol broker of our own (nisshi, tansu's successor, durable SQLite storage
//! in its own dir) and a consumer that reads a topic from the beginning.

use crate::process::Proc;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Broker {
    pub port: u16,
    pub dir: PathBuf,
    storage: &'static str,
    proc: Option<Proc>,
}

/// The broker's storage: durable SQLite in its directory, or with
/// `PAYRAIL_KAFKA_STORAGE=memory` the broker's in-memory engine (not durable; for benchmarks
/// that should measure payrail rather than the stand-in broker's SQLite engine).
pub fn storage_engine() -> &'static str {
    match std::env::var("PAYRAIL_KAFKA_STORAGE").as_deref() {
        Ok("memory") => MEMORY,
        _ => SQLITE,
    }
}

pub const SQLITE: &str = "sqlite://broker.db";
pub const MEMORY: &str = "memory://nisshi/";

/// The broker the stack and the tests run, and the version `cargo xtask` installs.
/// nisshi 0.8.1 (tansu's successor): tansu 0.6's SQLite engine sustained ~470 events/s
/// and panicked on resumed idempotent producers after restarts (issue 11).
pub const BROKER: &str = "nisshi";
pub const BROKER_VERSION: &str = "0.8.1";

/// `nisshi` from `~/.cargo/bin` or PATH.
pub fn broker_binary() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cargo_bin = home.join(".cargo/bin").join(BROKER);
    if cargo_bin.exists() {
        cargo_bin
    } else {
        PathBuf::from(BROKER)
    }
}

impl Broker {
    pub fn start(dir: &Path, port: u16, bind: &str, advertised: &str) -> Result<Self, String> {
        Self::start_with(dir, port, bind, advertised, storage_engine())
    }

    /// [`Broker::start`] with an explicit storage engine ([`SQLITE`] or [`MEMORY`]).
    pub fn start_with(
        dir: &Path,
        port: u16,
        bind: &str,
        advertised: &str,
        storage: &'static str,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let mut broker = Self {
            port,
            dir: dir.to_owned(),
            storage,
            proc: None,
        };
        broker.launch(bind, advertised)?;
        Ok(broker)
    }

    fn launch(&mut self, bind: &str, advertised: &str) -> Result<(), String> {
        let mut command = crate::hosts::command(bind, broker_binary());
        command
            .arg("broker")
            .arg("--listener-url")
            .arg(format!("tcp://{bind}:{}", self.port))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{advertised}:{}", self.port))
            .arg("--storage-engine")
            .arg(self.storage)
            .current_dir(&self.dir);
        self.proc = Some(
            Proc::spawn(
                &format!("{BROKER}:{}", self.port),
                command,
                &self.dir.join("broker.log"),
            )
            .map_err(|e| format!("{BROKER}: {e} (cargo xtask up installs it)"))?,
        );
        let port = self.port;
        if crate::wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect((bind, port)).is_ok()
        }) {
            Ok(())
        } else {
            Err(format!(
                "{BROKER} on port {port} did not start; see {}",
                self.dir.join("broker.log").display()
            ))
        }
    }

    /// The broker process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(|p| p.pid())
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (an outage). Its data stays on disk.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    pub fn restart(&mut self) -> Result<(), String> {
        self.launch("127.0.0.1", "127.0.0.1")
    }

    pub fn detach(mut self) -> Option<u32> {
        self.proc.take().map(Proc::detach)
    }

    /// Hands the process over (to [`crate::appliance::Appliance`]).
    pub fn into_proc(mut self) -> Option<Proc> {
        self.proc.take()
    }
}

/// Whether a broker answers the Kafka protocol (a metadata request) within `timeout`:
/// the number of topics it reports. A process can run and not answer (a stopped or wedged
/// broker), which a pid check does not see.
pub fn answers(bootstrap: &str, timeout: Duration) -> Result<usize, String> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create()
        .map_err(|e| e.to_string())?;
    consumer
        .fetch_metadata(None, timeout)
        .map(|m| m.topics().len())
        .map_err(|e| e.to_string())
}

#[derive(Debug, Clone)]
pub struct Received {
    pub key: String,
    pub payload: serde_json::Value,
    pub event_id_header: Option<String>,
    pub partition: i32,
}

/// Reads `topic` from the beginning with a fresh consumer group until `enough` says so
/// or `timeout` passes; returns everything read.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
    enough: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let group = format!(
        "test-reader-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos() ^ (crate::free_port() as u128)
    );
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .unwrap_or_else(|e| panic!("test consumer: {e}"));
    consumer
        .subscribe(&[topic])
        .unwrap_or_else(|e| panic!("subscribe {topic}: {e}"));
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while Instant::now() < deadline && !enough(&out) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let key = message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            let payload = message
                .payload()
                .and_then(|p| serde_json::from_slice(p).ok())
                .unwrap_or(serde_json::Value::Null);
            let event_id_header = message.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == "eventId")
                    .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            });
            out.push(Received {
                key,
                payload,
                event_id_header,
                partition: message.partition(),
            });
        }
    }
    out
}
