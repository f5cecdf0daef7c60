//! The producer every payrail service sends with: a future per message, like rdkafka's
//! `FutureProducer`, but its delivery reports are served by a thread that waits in
//! librdkafka five seconds at a time.
//!
//! Why not `FutureProducer`: its polling thread calls `poll` with 100 ms, and rdkafka 0.39
//! hands librdkafka the remaining time in whole milliseconds, so the last fraction of a
//! millisecond of every call becomes a zero timeout that the loop repeats until the
//! deadline passes: up to 1 ms of spinning per 100 ms. Measured with `perf record -a` on
//! the idle appliance (2-core AMD EPYC VM), its eight polling threads were 7 % of a core,
//! half of everything the idle appliance used (one-second calls still cost 0.1 % each).
//! With five-second calls the same rounding costs at most 1 ms in 5 s, and a delivery
//! report still wakes the thread at once.

use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, ToBytes};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureRecord, ProducerContext};
use rdkafka::ClientContext;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long the polling thread waits in librdkafka per call; also how long a dropped
/// producer's thread may take to notice and let go of it.
const POLL_WAIT: Duration = Duration::from_secs(5);

/// Where a message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// Sends each delivery report to the message's waiting future.
pub struct Reports;

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<KafkaResult<Delivered>>>;

    fn delivery(
        &self,
        result: &rdkafka::producer::DeliveryResult<'_>,
        waiting: Self::DeliveryOpaque,
    ) {
        let _ = waiting.send(match result {
            Ok(message) => Ok(Delivered {
                partition: message.partition(),
                offset: message.offset(),
            }),
            Err((error, _)) => Err(error.clone()),
        });
    }
}

struct Shared {
    producer: BaseProducer<Reports>,
    stop: AtomicBool,
}

/// Stops the polling thread when the last clone of a [`Producer`] is dropped; the thread
/// then drops the librdkafka producer, which fails what is still queued (each future gets
/// its error).
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.stop.store(true, Ordering::Release);
    }
}

/// An idempotent Kafka producer (see [`crate::KafkaConfig::producer`]); cheap to clone.
#[derive(Clone)]
pub struct Producer {
    handle: Arc<Handle>,
}

/// The broker's answer for one message.
pub struct DeliveryFuture(oneshot::Receiver<KafkaResult<Delivered>>);

impl Future for DeliveryFuture {
    type Output = KafkaResult<Delivered>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.unwrap_or(Err(KafkaError::Canceled)))
    }
}

impl Producer {
    /// Creates the producer and its polling thread (`kafka-reports`).
    pub fn create(config: &ClientConfig) -> KafkaResult<Self> {
        let shared = Arc::new(Shared {
            producer: BaseProducer::from_config_and_context(config, Reports)?,
            stop: AtomicBool::new(false),
        });
        let polled = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("kafka-reports".into())
            .spawn(move || {
                while !polled.stop.load(Ordering::Acquire) {
                    polled.producer.poll(POLL_WAIT);
                }
            })
            .map_err(|error| {
                KafkaError::ClientCreation(format!("producer polling thread: {error}"))
            })?;
        Ok(Self {
            handle: Arc::new(Handle(shared)),
        })
    }

    fn base(&self) -> &BaseProducer<Reports> {
        &self.handle.0.producer
    }

    /// Whether the broker answers a metadata request for `topic` within `timeout`, on this
    /// producer's connection. Blocks the calling thread for up to `timeout`.
    pub fn broker_answers(&self, topic: &str, timeout: Duration) -> bool {
        rdkafka::producer::Producer::client(self.base())
            .fetch_metadata(Some(topic), timeout)
            .is_ok()
    }

    /// Hands `record` to librdkafka without waiting: an error now means it was not queued
    /// (queue full, or the producer is closing).
    pub fn enqueue<K, P>(&self, record: FutureRecord<'_, K, P>) -> KafkaResult<DeliveryFuture>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let (tx, rx) = oneshot::channel();
        self.base()
            .send(base_record(record, Box::new(tx)))
            .map_err(|(error, _)| error)?;
        Ok(DeliveryFuture(rx))
    }

    /// Sends `record` and waits for the broker's answer; a full queue is retried for up to
    /// `queue_timeout`.
    pub async fn send<K, P>(
        &self,
        record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> KafkaResult<Delivered>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        let mut record = base_record(record, Box::new(tx));
        loop {
            match self.base().send(record) {
                Ok(()) => return DeliveryFuture(rx).await,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if started.elapsed() < queue_timeout =>
                {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err((error, _)) => return Err(error),
            }
        }
    }
}

fn base_record<'a, K, P>(
    record: FutureRecord<'a, K, P>,
    waiting: Box<oneshot::Sender<KafkaResult<Delivered>>>,
) -> BaseRecord<'a, K, P, Box<oneshot::Sender<KafkaResult<Delivered>>>>
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    let mut base = BaseRecord::with_opaque_to(record.topic, waiting);
    base.partition = record.partition;
    base.payload = record.payload;
    base.key = record.key;
    base.timestamp = record.timestamp;
    base.headers = record.headers;
    base
}
