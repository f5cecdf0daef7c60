//! Client settings. Every option that matters for delivery guarantees is set here, by
//! name, so a library upgrade cannot change behaviour silently.

use rdkafka::ClientConfig;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`.
    pub bootstrap_servers: String,
    /// How long the producer keeps trying to deliver one message before reporting
    /// failure. Default 10 000 ms.
    #[serde(default = "default_message_timeout")]
    pub message_timeout_ms: u64,
    /// One broker request's timeout. Default 5 000 ms.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_ms: u64,
    /// Time the producer waits to fill a batch. Default 25 ms: off the request path (the
    /// outbox row is committed before the answer), and fewer, larger produce requests are
    /// the broker's main cost. Server CPU per payment on the local stack (AMD EPYC, 2
    /// cores, nisshi on SQLite; before/after of every process's CPU around a
    /// k6 run): linger 2 / 10 / 25 / 50 ms gave 3.26 / 3.03 / 2.43–2.58 / 2.07 ms per
    /// authorization at 500/s and 8.30 / – / 5.86 / 5.90 ms per full-flow iteration at
    /// 300 it/s (3,022 / – / 0 / 100 iterations dropped): 25 ms is the knee of the full
    /// flow, whose settlement waits for these events.
    #[serde(default = "default_linger")]
    pub linger_ms: u64,
    /// Messages the producer may hold in memory; a full queue is an error, not a wait.
    /// Default 100 000.
    #[serde(default = "default_queue_max")]
    pub queue_messages_max: u64,
    /// Longest a consumer's Fetch waits at the broker for data (`fetch.wait.max.ms`).
    /// Default 2 000 ms, librdkafka's is 500: a Fetch with data returns at once, so
    /// this is only the idle wait, and nisshi spends it re-reading every partition from
    /// storage with halving sleeps (about log2 of it in rounds per Fetch), so a longer
    /// one is fewer rounds per second. New data then waits up to half of it at the
    /// broker, off the request path.
    #[serde(default = "default_fetch_wait_max")]
    pub fetch_wait_max_ms: u64,
    /// Consumer session timeout. Default 10 000 ms.
    #[serde(default = "default_session_timeout")]
    pub session_timeout_ms: u64,
    /// Longest gap between polls before a consumer leaves its group; it is also the
    /// rebalance timeout, i.e. how long a rebalance waits for a member that died. Our
    /// consumers poll continuously, so a minute is generous. Default 60 000 ms.
    #[serde(default = "default_max_poll_interval")]
    pub max_poll_interval_ms: u64,
    /// How often a consumer commits the offsets it stored after its database commit.
    /// Default 500 ms.
    #[serde(default = "default_commit_interval")]
    pub commit_interval_ms: u64,
    /// Events a consumer lets wait in its shard lanes (a shard down) before it pauses
    /// fetching (see [`crate::lanes`]). Default 50 000.
    #[serde(default = "default_lanes_max_waiting")]
    pub lanes_max_waiting: usize,
    /// A consumer holding no partition this long leaves and joins its group again
    /// (see [`crate::consumer`]). Default 20 000 ms.
    #[serde(default = "default_rejoin_after")]
    pub rejoin_after_ms: u64,
    /// librdkafka debug contexts (`debug`), e.g. `"cgrp,fetch"`, for diagnosing a client.
    #[serde(default)]
    pub debug: Option<String>,
}

fn default_lanes_max_waiting() -> usize {
    50_000
}

fn default_rejoin_after() -> u64 {
    20_000
}

fn default_commit_interval() -> u64 {
    500
}

fn default_max_poll_interval() -> u64 {
    60_000
}

fn default_message_timeout() -> u64 {
    10_000
}
fn default_request_timeout() -> u64 {
    5_000
}
fn default_linger() -> u64 {
    25
}
fn default_queue_max() -> u64 {
    100_000
}
fn default_fetch_wait_max() -> u64 {
    2_000
}
fn default_session_timeout() -> u64 {
    10_000
}

impl KafkaConfig {
    fn base(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", client_id);
        if let Some(debug) = &self.debug {
            config.set("debug", debug);
        }
        config
    }

    /// An idempotent producer: `acks=all`, `enable.idempotence=true` and at most five
    /// requests in flight, so retries neither duplicate nor reorder messages within a
    /// partition.
    pub fn producer(&self, client_id: &str) -> ClientConfig {
        let mut config = self.base(client_id);
        config
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("max.in.flight.requests.per.connection", "5")
            .set("retries", "2147483647")
            .set("message.timeout.ms", self.message_timeout_ms.to_string())
            .set("request.timeout.ms", self.request_timeout_ms.to_string())
            .set("linger.ms", self.linger_ms.to_string())
            .set(
                "queue.buffering.max.messages",
                self.queue_messages_max.to_string(),
            )
            .set("compression.type", "lz4")
            .set("socket.keepalive.enable", "true");
        config
    }

    /// A consumer in `group_id` that commits only the offsets it was told to store (after
    /// the database commit; see [`crate::consumer`]) and starts from the earliest offset on
    /// a new group.
    pub fn consumer(&self, client_id: &str, group_id: &str) -> ClientConfig {
        let mut config = self.base(client_id);
        config
            .set("group.id", group_id)
            .set("enable.auto.commit", "true")
            .set(
                "auto.commit.interval.ms",
                self.commit_interval_ms.to_string(),
            )
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "max.poll.interval.ms",
                self.max_poll_interval_ms.to_string(),
            )
            .set("fetch.wait.max.ms", self.fetch_wait_max_ms.to_string())
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "false");
        config
    }
}
