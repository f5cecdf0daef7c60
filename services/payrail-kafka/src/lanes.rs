//! Shard lanes: one shard's outage never holds up another shard's events.
//!
//! Every topic has one partition (see [`crate::topics`]: partitions cost the local broker
//! CPU on every fetch), so one partition carries every shard's payments. A consumer that
//! retried a down shard's write before moving on would stall every shard behind it. So a
//! consumer hands each event to its shard's *lane* and goes on polling:
//!
//! - A lane is a task that applies its shard's events in arrival order, in batches of what
//!   has queued up, retrying (with backoff) while its shard is down. A payment lives on one
//!   shard, so its events keep their order; shards are independent of each other.
//! - Offsets: per partition, the consumer stores the offset of the oldest event still in a
//!   lane (or the offset past the last event, when none is). A crash redelivers what a lane
//!   had not applied, and every consumer deduplicates (job id, `eventId`).
//! - Bound: at most `max_waiting` events wait in lanes. Past that the consumer pauses its
//!   partitions, still polling so it keeps its group membership, and resumes when half have
//!   drained. An event already fetched when the pause takes effect is still dispatched.
//! - The consumer never waits on a database, so `max.poll.interval.ms` cannot evict it.
//!
//! Shard-aligned partitions with per-shard pausing would do the same without lanes, at the
//! price of a partition per shard per topic on the broker.

use crate::consumer::BatchConsumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Where an event sits: (index into the topic names, partition, offset).
type Position = (usize, i32, i64);

/// Offsets of one partition: those still in a lane, and the one past the newest seen.
#[derive(Default)]
struct Partition {
    waiting: BTreeSet<i64>,
    next: i64,
    stored: i64,
}

pub struct Lanes<T> {
    senders: BTreeMap<u16, mpsc::UnboundedSender<(Position, T)>>,
    done: mpsc::UnboundedReceiver<Vec<Position>>,
    topics: Vec<String>,
    partitions: HashMap<(usize, i32), Partition>,
    waiting: usize,
    max_waiting: usize,
    paused: bool,
}

impl<T: Send + Sync + 'static> Lanes<T> {
    /// Starts a lane per shard. `apply(shard, events)` makes a batch of one shard's events
    /// durable; an error is logged and the same batch is tried again after a backoff.
    pub fn start<F, Fut>(
        shards: impl IntoIterator<Item = u16>,
        batch_max: usize,
        max_waiting: usize,
        apply: F,
    ) -> Self
    where
        F: Fn(u16, Arc<Vec<T>>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let apply = Arc::new(apply);
        let (done_tx, done) = mpsc::unbounded_channel();
        let mut senders = BTreeMap::new();
        for shard in shards {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(lane(
                shard,
                rx,
                done_tx.clone(),
                batch_max.max(1),
                Arc::clone(&apply),
            ));
            senders.insert(shard, tx);
        }
        Self {
            senders,
            done,
            topics: Vec::new(),
            partitions: HashMap::new(),
            waiting: 0,
            max_waiting: max_waiting.max(1),
            paused: false,
        }
    }

    /// Events waiting in all lanes.
    pub fn waiting(&self) -> usize {
        self.waiting
    }

    fn position(&mut self, message: &OwnedMessage) -> Position {
        let topic = match self.topics.iter().position(|t| t == message.topic()) {
            Some(i) => i,
            None => {
                self.topics.push(message.topic().to_owned());
                self.topics.len() - 1
            }
        };
        let partition = self
            .partitions
            .entry((topic, message.partition()))
            .or_insert_with(|| Partition {
                stored: -1,
                ..Partition::default()
            });
        partition.next = partition.next.max(message.offset() + 1);
        (topic, message.partition(), message.offset())
    }

    /// Queues `item` (from `message`) on `shard`'s lane. A shard without a lane is the
    /// caller's error: it must dead-letter events that name no shard of the deployment.
    pub fn dispatch(&mut self, shard: u16, message: &OwnedMessage, item: T) {
        let position = self.position(message);
        let Some(sender) = self.senders.get(&shard) else {
            tracing::error!(shard, "an event for a shard without a lane was skipped");
            return;
        };
        if let Some(p) = self.partitions.get_mut(&(position.0, position.1)) {
            p.waiting.insert(position.2);
        }
        self.waiting += 1;
        // The lane task lives as long as the runtime; a send fails only at shutdown.
        let _ = sender.send((position, item));
    }

    /// Records a message handled without a lane (dead-lettered): its offset may be stored.
    pub fn skip(&mut self, message: &OwnedMessage) {
        self.position(message);
    }

    /// Takes the lanes' completions, stores the offsets they allow, and pauses or resumes
    /// the consumer's partitions by the bound.
    pub fn settle(&mut self, consumer: &BatchConsumer) {
        while let Ok(applied) = self.done.try_recv() {
            self.waiting = self.waiting.saturating_sub(applied.len());
            for (topic, partition, offset) in applied {
                if let Some(p) = self.partitions.get_mut(&(topic, partition)) {
                    p.waiting.remove(&offset);
                }
            }
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), p) in &mut self.partitions {
            let storable = p.waiting.first().copied().unwrap_or(p.next);
            if storable > p.stored {
                let _ = list.add_partition_offset(
                    &self.topics[*topic],
                    *partition,
                    Offset::Offset(storable),
                );
                p.stored = storable;
            }
        }
        if list.count() > 0 {
            consumer.store(&list);
        }
        if !self.paused && self.waiting >= self.max_waiting {
            tracing::warn!(
                waiting = self.waiting,
                "shard lanes full: pausing consumption until they drain"
            );
            self.paused = consumer.pause_all();
        } else if self.paused && self.waiting <= self.max_waiting / 2 {
            self.paused = !consumer.resume_all();
        }
    }

    /// How long the consumer may wait for a message before settling again: while events
    /// wait in lanes, their completions should be stored soon.
    pub fn idle(&self) -> Option<Duration> {
        (self.waiting > 0).then_some(Duration::from_millis(200))
    }
}

async fn lane<T, F, Fut>(
    shard: u16,
    mut events: mpsc::UnboundedReceiver<(Position, T)>,
    done: mpsc::UnboundedSender<Vec<Position>>,
    batch_max: usize,
    apply: Arc<F>,
) where
    F: Fn(u16, Arc<Vec<T>>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    while let Some(first) = events.recv().await {
        let mut positions = vec![first.0];
        let mut items = vec![first.1];
        while items.len() < batch_max {
            match events.try_recv() {
                Ok((position, item)) => {
                    positions.push(position);
                    items.push(item);
                }
                Err(_) => break,
            }
        }
        let items = Arc::new(items);
        let mut backoff = Duration::from_millis(100);
        // Database trouble is transient: retry until it works, never skip or dead-letter.
        while let Err(error) = apply(shard, Arc::clone(&items)).await {
            tracing::warn!(shard, %error, batch = items.len(), "shard lane: batch failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        if done.send(positions).is_err() {
            return;
        }
    }
}
